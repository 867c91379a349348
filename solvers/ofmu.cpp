#include <algorithm>
#include <chrono>
#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/solvers/ofmu.hpp>
#include <utility>

namespace tether {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void check_size(const Vector& x, Index n, const char* what) {
  require<ShapeError>(x.size() == n, "OFMU: the ", what, " has size ", x.size(), ", expected ", n);
}

// Everything OFMU needs at one point: u = grad l_f, v = grad l_r, cos(u, v), grad Phi.
struct PhiPoint {
  Vector u, v, grad_phi;
  double cosine = 0.0;
};

// Fills p at theta. Oracle outputs of the wrong size are ShapeErrors (a broken contract);
// non-finite values are left for the caller to judge.
void evaluate_phi(const ForgetRetainObjective& o, const Vector& theta, double beta, PhiPoint& p) {
  const Index n = theta.size();
  p.u.resize(n);
  p.v.resize(n);
  o.forget_gradient(theta, p.u);
  o.retain_gradient(theta, p.v);
  check_size(p.u, n, "forget gradient");
  check_size(p.v, n, "retain gradient");
  p.cosine = gradient_cosine(p.u, p.v);
  if (beta == 0.0) {
    p.grad_phi = p.u;
    return;
  }
  ofmu_cosine_gradient(o, theta, p.u, p.v, p.grad_phi);
  p.grad_phi = p.u - beta * p.grad_phi;
}

// Name of the first non-finite quantity of p ("" if none).
const char* first_non_finite(const PhiPoint& p) {
  if (!p.u.allFinite()) return "forget gradient";
  if (!p.v.allFinite()) return "retain gradient";
  if (!std::isfinite(p.cosine) || !p.grad_phi.allFinite()) return "gradient of Phi";
  return "";
}

void check_objective(const ForgetRetainObjective& o, const char* who) {
  require(o.forget_loss && o.retain_loss && o.forget_gradient && o.retain_gradient &&
              o.forget_hvp && o.retain_hvp,
          who, ": the objective must supply both losses, both gradients and both Hessian-vector ",
          "products (make_forget_retain_objective fills in finite differences)");
}

}  // namespace

double gradient_cosine(ConstVectorRef u, ConstVectorRef v) {
  require<ShapeError>(u.size() == v.size(), "gradient_cosine: u has size ", u.size(),
                      ", v has size ", v.size());
  const double nu = u.norm(), nv = v.norm();
  if (nu == 0.0 || nv == 0.0) return 0.0;  // undefined there; see ofmu.hpp
  return u.dot(v) / (nu * nv);
}

void ofmu_cosine_gradient(const ForgetRetainObjective& objective, const Vector& theta,
                          const Vector& u, const Vector& v, Vector& out) {
  check_objective(objective, "ofmu_cosine_gradient");
  const Index n = theta.size();
  require<ShapeError>(u.size() == n && v.size() == n, "ofmu_cosine_gradient: theta has size ", n,
                      ", u has size ", u.size(), ", v has size ", v.size());
  out.resize(n);
  const double nu = u.norm(), nv = v.norm();
  if (nu == 0.0 || nv == 0.0) {  // cos := 0 on this set, and so is its gradient
    out.setZero();
    return;
  }
  const double cosine = u.dot(v) / (nu * nv);
  // d cos / du = v/(|u||v|) - cos u/|u|^2 (and symmetrically in v); the chain rule through
  // u = grad l_f, v = grad l_r multiplies by the (symmetric) Hessians.
  const Vector p = v / (nu * nv) - (cosine / (nu * nu)) * u;
  const Vector q = u / (nu * nv) - (cosine / (nv * nv)) * v;
  Vector hf(n), hr(n);
  objective.forget_hvp(theta, p, hf);
  objective.retain_hvp(theta, q, hr);
  check_size(hf, n, "forget Hessian-vector product");
  check_size(hr, n, "retain Hessian-vector product");
  out = hf + hr;
}

double ofmu_phi(const ForgetRetainObjective& objective, const Vector& theta, double beta) {
  check_objective(objective, "ofmu_phi");
  const Index n = theta.size();
  Vector u(n), v(n);
  objective.forget_gradient(theta, u);
  objective.retain_gradient(theta, v);
  check_size(u, n, "forget gradient");
  check_size(v, n, "retain gradient");
  return objective.forget_loss(theta) - beta * gradient_cosine(u, v);
}

double ofmu_phi_gradient(const ForgetRetainObjective& objective, const Vector& theta, double beta,
                         Vector& out) {
  check_objective(objective, "ofmu_phi_gradient");
  PhiPoint p;
  evaluate_phi(objective, theta, beta, p);
  out = std::move(p.grad_phi);
  return p.cosine;
}

void ofmu_phi_hessian_vector(const ForgetRetainObjective& objective, const Vector& theta,
                             double beta, const Vector& w, Vector& out) {
  check_objective(objective, "ofmu_phi_hessian_vector");
  require<ShapeError>(w.size() == theta.size(), "ofmu_phi_hessian_vector: w has size ", w.size(),
                      ", theta has size ", theta.size());
  if (beta == 0.0) {  // Phi = l_f: H_Phi = H_f, exact where the problem's HVP is
    out.resize(theta.size());
    objective.forget_hvp(theta, w, out);
    check_size(out, theta.size(), "forget Hessian-vector product");
    return;
  }
  // The cosine's Hessian would need third derivatives of the losses: difference grad Phi.
  finite_difference_hvp(
      [&](const Vector& t, Vector& g) { ofmu_phi_gradient(objective, t, beta, g); }, theta, w, out);
}

void ofmu_penalty_gradient(const ForgetRetainObjective& objective, const Vector& theta, double beta,
                           double rho, Vector& out) {
  check_objective(objective, "ofmu_penalty_gradient");
  PhiPoint p;
  evaluate_phi(objective, theta, beta, p);
  Vector hv;
  ofmu_phi_hessian_vector(objective, theta, beta, p.grad_phi, hv);
  out = p.v + (2.0 * rho) * hv;
}

bool OfmuOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (!(beta >= 0.0) || !std::isfinite(beta))
    return fail(detail::concat("beta must be finite and >= 0, got ", beta));
  if (inner_steps < 0) return fail(detail::concat("inner_steps must be >= 0, got ", inner_steps));
  if (!(eta_in > 0.0) || !std::isfinite(eta_in))
    return fail(detail::concat("eta_in must be finite and > 0, got ", eta_in));
  if (!(eta_out > 0.0) || !std::isfinite(eta_out))
    return fail(detail::concat("eta_out must be finite and > 0, got ", eta_out));
  if (!(rho0 > 0.0) || !std::isfinite(rho0))
    return fail(detail::concat("rho0 must be finite and > 0, got ", rho0));
  if (!(rho_growth >= 1.0) || !std::isfinite(rho_growth))
    return fail(detail::concat("rho_growth must be finite and >= 1, got ", rho_growth));
  if (!(rho_max >= rho0))
    return fail(
        detail::concat("rho_max must be >= rho0 = ", rho0, " (+inf for no cap), got ", rho_max));
  if (!(stage_tolerance > 0.0) || !std::isfinite(stage_tolerance))
    return fail(detail::concat("stage_tolerance must be finite and > 0, got ", stage_tolerance));
  if (max_iterations < 1)
    return fail(detail::concat("max_iterations must be >= 1, got ", max_iterations));
  if (!(tolerance >= 0.0) || !std::isfinite(tolerance))
    return fail(detail::concat("tolerance must be finite and >= 0, got ", tolerance));
  return true;
}

OfmuSolver::OfmuSolver(const OfmuOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "OfmuOptions: ", why);
}

OfmuResult OfmuSolver::minimize(const ForgetRetainObjective& objective, const Vector& theta0,
                                const CallbackSet& callbacks) const {
  const auto t_start = Clock::now();
  const OfmuOptions& o = options_;
  check_objective(objective, "OfmuSolver");
  require(objective.dimension >= 1, "OfmuSolver: the problem's dimension must be >= 1, got ",
          objective.dimension);
  require<ShapeError>(theta0.size() == objective.dimension, "OfmuSolver: theta0 has size ",
                      theta0.size(), ", the problem's dimension is ", objective.dimension);
  require(theta0.allFinite(), "OfmuSolver: theta0 must be finite");
  const bool track_error = static_cast<bool>(objective.solution_error);
  const Index n = theta0.size();

  // The state at theta_k: its losses and its PhiPoint, all finite.
  struct State {
    double forget_loss = 0.0, retain_loss = 0.0;
    PhiPoint point;
  };
  auto evaluate_state = [&](const Vector& theta, State& s) -> const char* {
    s.forget_loss = objective.forget_loss(theta);
    s.retain_loss = objective.retain_loss(theta);
    evaluate_phi(objective, theta, o.beta, s.point);
    if (!std::isfinite(s.forget_loss)) return "forget loss";
    if (!std::isfinite(s.retain_loss)) return "retain loss";
    return first_non_finite(s.point);
  };

  OfmuResult result;
  result.status = StopReason::kIterationLimit;
  Vector theta = theta0;
  State state, state_next;
  if (const char* bad = evaluate_state(theta, state); *bad)
    throw NumericalError(detail::concat("OfmuSolver: the ", bad, " is NaN/Inf at theta0"));

  double rho = o.rho0;
  result.rho = rho;
  Vector inner(n), hv(n), outer_gradient(n), next(n);
  PhiPoint inner_point;
  callbacks.begin(o.max_iterations);
  auto fail = [&](int k, const std::string& what) {
    result.status = StopReason::kNumericalError;
    result.message = detail::concat(what, " at iteration ", k, "; the last finite iterate is kept");
  };

  for (int k = 0; k < o.max_iterations; ++k) {
    const auto t_iter = Clock::now();
    // ---- inner ascent on Phi: theta' <- theta' + eta_in grad Phi(theta') ----------------------
    inner = theta;
    const PhiPoint* at_inner = &state.point;
    bool finite = true;
    for (int t = 0; t < o.inner_steps; ++t) {
      inner += o.eta_in * at_inner->grad_phi;
      if (!inner.allFinite()) {
        fail(k, detail::concat("the inner ascent left the finite numbers (inner step ", t, ")"));
        finite = false;
        break;
      }
      evaluate_phi(objective, inner, o.beta, inner_point);
      if (const char* bad = first_non_finite(inner_point); *bad) {
        fail(k, detail::concat("the ", bad, " was NaN/Inf after inner step ", t));
        finite = false;
        break;
      }
      at_inner = &inner_point;
    }
    if (!finite) break;
    // ---- outer step on F_rho at theta': grad l_r + 2 rho H_Phi grad Phi ------------------------
    ofmu_phi_hessian_vector(objective, inner, o.beta, at_inner->grad_phi, hv);
    outer_gradient = at_inner->v + (2.0 * rho) * hv;
    if (!outer_gradient.allFinite()) {
      fail(k, "the penalty gradient was NaN/Inf");
      break;
    }
    next = inner - o.eta_out * outer_gradient;
    if (!next.allFinite()) {
      fail(k, "the outer step left the finite numbers");
      break;
    }
    if (const char* bad = evaluate_state(next, state_next); *bad) {
      fail(k, detail::concat("the ", bad, " was NaN/Inf after the step"));
      break;
    }

    IterationRecord rec;
    rec.iteration = k;
    rec.loss = state.retain_loss;
    rec.best_loss = state.retain_loss;
    rec.constraint_residual = state.point.grad_phi.norm();
    if (track_error) rec.error = objective.solution_error(theta);
    const double residual = (next - theta).norm() / o.eta_out;
    theta.swap(next);
    std::swap(state, state_next);
    rec.step_seconds = seconds_since(t_iter);
    result.history.push_back(rec);
    result.iterations = k + 1;
    if (k == 0 || rho != result.rho) ++result.stages;
    result.rho = rho;
    if (!callbacks.iteration(rec)) {
      result.status = StopReason::kStoppedByCallback;
      result.message = detail::concat("a callback stopped the run after iteration ", k);
      break;
    }
    // ---- continuation: capped geometric growth, every iteration or once per stage -------------
    const bool grow = o.rho_schedule == OfmuOptions::RhoSchedule::kEveryIteration ||
                      residual <= o.stage_tolerance;
    const double rho_next = grow ? std::min(o.rho_growth * rho, o.rho_max) : rho;
    if (rho_next == rho && o.tolerance > 0.0 && residual <= o.tolerance) {
      result.status = StopReason::kConverged;
      result.message =
          detail::concat("|theta_{k+1} - theta_k| / eta_out = ", residual, " <= tolerance ",
                         o.tolerance, " at rho = ", rho, ", iteration ", k);
      break;
    }
    rho = rho_next;
  }
  if (result.status == StopReason::kIterationLimit)
    result.message = detail::concat("ran the configured ", o.max_iterations, " iterations");

  result.theta = theta;
  result.forget_loss = state.forget_loss;
  result.retain_loss = state.retain_loss;
  result.phi_gradient_norm = state.point.grad_phi.norm();
  result.seconds = seconds_since(t_start);
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace tether
