#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/solvers/lvhba.hpp>

namespace tether {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double>(t1 - t0).count();
}

/// max(0, max_i g_i) for inequalities, max_i |g_i| for equalities (0 when there is no g).
double constraint_violation(const Vector& g, ConstraintKind kind) {
  if (g.size() == 0) return 0.0;
  return kind == ConstraintKind::kEquality ? g.cwiseAbs().maxCoeff() : std::max(0.0, g.maxCoeff());
}

/// True iff every entry is finite, in one vectorised pass: x * 0 is 0 for finite x and NaN for
/// +-Inf and NaN, and a sum of zeros is exactly 0. (Eigen's allFinite() takes two passes and
/// was half the cost of an iteration at n = 100.) Needs IEEE semantics, i.e. no -ffast-math,
/// which would break any NaN test.
bool all_finite(const Vector& v) { return (v.array() * 0.0).sum() == 0.0; }

/// The size an oracle left in its output must be the one the solver handed it.
void expect_size(const Vector& v, Index expected, const char* what) {
  require<ShapeError>(v.size() == expected, "LvHbaSolver: the problem's ", what, " produced ",
                      v.size(), " entries, expected ", expected);
}
}  // namespace

bool LvHbaOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  auto positive = [&](double v, const char* name) {
    if (v > 0.0 && std::isfinite(v)) return true;
    fail(detail::concat(name, " must be finite and > 0, got ", v));
    return false;
  };
  if (!positive(alpha, "alpha") || !positive(beta, "beta") || !positive(eta, "eta") ||
      !positive(gamma1, "gamma1") || !positive(gamma2, "gamma2") || !positive(c0, "c0") ||
      !positive(multiplier_bound, "multiplier_bound (r)"))
    return false;
  if (!(p > 0.0 && p < 0.5)) return fail(detail::concat("p must be in (0, 1/2), got ", p));
  if (max_iterations < 0)
    return fail(detail::concat("max_iterations must be >= 0, got ", max_iterations));
  if (!(tolerance >= 0.0) || !std::isfinite(tolerance))
    return fail(detail::concat("tolerance must be finite and >= 0, got ", tolerance));
  if (!std::isfinite(initial_multiplier))
    return fail(detail::concat("initial_multiplier must be finite, got ", initial_multiplier));
  if (!initial_multipliers.allFinite()) return fail("initial_multipliers must be finite");
  if (history_every < 1)
    return fail(detail::concat("history_every must be >= 1, got ", history_every));
  return true;
}

LvHbaSolver::LvHbaSolver(const LvHbaOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "LvHbaOptions: ", why);
}

LvHbaResult LvHbaSolver::minimize(const BilevelObjective& ob, const Vector& x0, const Vector& y0,
                                  const CallbackSet& callbacks) const {
  const auto t_start = Clock::now();
  const LvHbaOptions& o = options_;
  const Index n = ob.upper_dimension, m = ob.lower_dimension, l = ob.constraint_count;

  // ---- input checks --------------------------------------------------------------------------
  require(n >= 1, "LvHbaSolver: upper_dimension must be >= 1, got ", n);
  require(m >= 1, "LvHbaSolver: lower_dimension must be >= 1, got ", m);
  require(l >= 0, "LvHbaSolver: constraint_count must be >= 0, got ", l);
  require(ob.upper_value && ob.upper_gradient && ob.lower_value && ob.lower_gradient &&
              ob.constraints && ob.constraint_adjoint && ob.project_lower && ob.project_joint,
          "LvHbaSolver: every oracle of the BilevelObjective must be set (only solution_error "
          "is optional)");
  require<ShapeError>(x0.size() == n, "LvHbaSolver: x0 has ", x0.size(),
                      " entries, the problem's upper dimension is ", n);
  require<ShapeError>(y0.size() == m, "LvHbaSolver: y0 has ", y0.size(),
                      " entries, the problem's lower dimension is ", m);
  require(x0.allFinite(), "LvHbaSolver: x0 must be finite");
  require(y0.allFinite(), "LvHbaSolver: y0 must be finite");
  const ConstraintKind kind = ob.constraint_kind;
  const double hi = o.multiplier_bound;
  const double lo = kind == ConstraintKind::kEquality ? -hi : 0.0;
  Vector lam(l);
  if (o.initial_multipliers.size() > 0) {
    require<ShapeError>(o.initial_multipliers.size() == l, "LvHbaOptions::initial_multipliers has ",
                        o.initial_multipliers.size(), " entries, the problem has ", l,
                        " constraints");
    lam = o.initial_multipliers;
  } else {
    lam.setConstant(o.initial_multiplier);
  }
  for (Index i = 0; i < l; ++i)
    require(lam[i] >= lo && lam[i] <= hi, "LvHbaOptions: initial multiplier ", i, " is ", lam[i],
            ", outside the multiplier box [", lo, ", ", hi, "] (",
            kind == ConstraintKind::kEquality ? "equality: [-r, r]" : "inequality: [0, r]", ")");

  // ---- state and pre-sized buffers: nothing below allocates inside the loop -------------------
  Vector x = x0, y = y0;
  ob.project_joint(x, y);  // an infeasible start is projected onto C, not trusted
  expect_size(x, n, "project_joint (x)");
  expect_size(y, m, "project_joint (y)");
  if (!x.allFinite() || !y.allFinite())
    throw NumericalError("LvHbaSolver: projecting the start onto C gave NaN/Inf");
  Vector theta = y;
  ob.project_lower(theta);
  expect_size(theta, m, "project_lower");
  if (!theta.allFinite())
    throw NumericalError("LvHbaSolver: projecting the start y0 onto Y gave NaN/Inf");
  Vector z = lam;
  Vector x_next(n), y_next(m), theta_next(m), lam_next(l), z_next(l);
  Vector upper_gx(n), upper_gy(m);        // grad F(x, y)
  Vector lower_gx_y(n), lower_gy_y(m);    // grad f(x, y)
  Vector lower_gx_th(n), lower_gy_th(m);  // grad f(x, theta)
  Vector adjoint_x(n), adjoint_y(m);      // J g(x, theta)^T lam
  Vector g(l);                            // g(x, theta), then g(x, y) for the history

  LvHbaResult result;
  result.status = StopReason::kIterationLimit;
  const int every = o.history_every;
  result.history.rows.reserve(
      static_cast<std::size_t>(std::min(o.max_iterations / every + 1, 1 << 20)));
  const double eta = o.eta, alpha = o.alpha, beta = o.beta;
  const double inv_g1 = 1.0 / o.gamma1, inv_g2 = 1.0 / o.gamma2;
  const bool has_error = static_cast<bool>(ob.solution_error);
  callbacks.begin(o.max_iterations);

  auto numerical_error = [&](int k, const char* what) {
    result.status = StopReason::kNumericalError;
    result.message = detail::concat("NaN/Inf in ", what, " at iteration ", k,
                                    "; the last finite iterate (after ", k, " iterations) is kept");
  };

  auto t_row = Clock::now();
  int last_row_iterations = 0;
  for (int k = 0; k < o.max_iterations; ++k) {
    const double c_k = o.c0 * std::pow(static_cast<double>(k) + 1.0, o.p);

    // (a) inner saddle step on (theta, lam): both directions at the old (theta, lam) first.
    ob.lower_gradient(x, theta, lower_gx_th, lower_gy_th);
    ob.constraint_adjoint(x, theta, lam, adjoint_x, adjoint_y);
    ob.constraints(x, theta, g);
    expect_size(lower_gx_th, n, "lower_gradient (grad_x f)");
    expect_size(lower_gy_th, m, "lower_gradient (grad_y f)");
    expect_size(adjoint_x, n, "constraint_adjoint (J_x g^T lam)");
    expect_size(adjoint_y, m, "constraint_adjoint (J_y g^T lam)");
    expect_size(g, l, "constraints");
    theta_next = theta - eta * (lower_gy_th + adjoint_y + (theta - y) * inv_g1);
    lam_next = lam - eta * ((lam - z) * inv_g2 - g);
    if (!all_finite(theta_next)) {
      numerical_error(k, "the theta step (grad_y f, J_y g^T lam)");
      break;
    }
    if (!all_finite(lam_next)) {
      numerical_error(k, "the multiplier step (g)");
      break;
    }
    ob.project_lower(theta_next);
    expect_size(theta_next, m, "project_lower");
    if (!all_finite(theta_next)) {
      numerical_error(k, "Proj_Y(theta)");
      break;
    }
    lam_next = lam_next.cwiseMax(lo).cwiseMin(hi);

    // (b) outer step on (x, y) with the NEW theta and lam.
    ob.upper_gradient(x, y, upper_gx, upper_gy);
    ob.lower_gradient(x, y, lower_gx_y, lower_gy_y);
    ob.lower_gradient(x, theta_next, lower_gx_th, lower_gy_th);
    ob.constraint_adjoint(x, theta_next, lam_next, adjoint_x, adjoint_y);
    expect_size(upper_gx, n, "upper_gradient (grad_x F)");
    expect_size(upper_gy, m, "upper_gradient (grad_y F)");
    expect_size(lower_gx_y, n, "lower_gradient (grad_x f)");
    expect_size(lower_gy_y, m, "lower_gradient (grad_y f)");
    expect_size(lower_gx_th, n, "lower_gradient (grad_x f)");
    expect_size(adjoint_x, n, "constraint_adjoint (J_x g^T lam)");
    const double inv_c = 1.0 / c_k;
    x_next = x - alpha * (upper_gx * inv_c + lower_gx_y - lower_gx_th - adjoint_x);
    y_next = y - alpha * (upper_gy * inv_c + lower_gy_y - (y - theta_next) * inv_g1);
    if (!all_finite(x_next) || !all_finite(y_next)) {
      numerical_error(k, "the (x, y) step (grad F, grad f, J_x g^T lam)");
      break;
    }
    ob.project_joint(x_next, y_next);
    expect_size(x_next, n, "project_joint (x)");
    expect_size(y_next, m, "project_joint (y)");
    if (!all_finite(x_next) || !all_finite(y_next)) {
      numerical_error(k, "Proj_C(x, y)");
      break;
    }
    z_next = (z + (beta * inv_g2) * (lam_next - z)).cwiseMax(lo).cwiseMin(hi);

    // Convergence on the step of the whole state (only when asked: tolerance > 0).
    bool converged = false;
    if (o.tolerance > 0.0) {
      const double step2 = (x_next - x).squaredNorm() + (y_next - y).squaredNorm() +
                           (theta_next - theta).squaredNorm() + (lam_next - lam).squaredNorm() +
                           (z_next - z).squaredNorm();
      const double state2 = x_next.squaredNorm() + y_next.squaredNorm() + theta_next.squaredNorm() +
                            lam_next.squaredNorm() + z_next.squaredNorm();
      converged = std::sqrt(step2) <= o.tolerance * std::max(1.0, std::sqrt(state2));
    }

    // The row is evaluated before the iterate is committed, so that NaN there keeps the last
    // finite iterate too.
    const bool last = k + 1 == o.max_iterations;
    const bool record = converged || last || (k + 1) % every == 0;
    IterationRecord rec;
    if (record) {
      rec.iteration = k;
      rec.loss = ob.upper_value(x_next, y_next);
      ob.constraints(x_next, y_next, g);
      expect_size(g, l, "constraints");
      rec.constraint_residual = constraint_violation(g, kind);
      if (has_error) rec.error = ob.solution_error(x_next, y_next);
      if (!std::isfinite(rec.loss) || !std::isfinite(rec.constraint_residual) ||
          (has_error && !std::isfinite(rec.error))) {
        numerical_error(k, "F, g or solution_error at the new iterate");
        break;
      }
    }

    x.swap(x_next);
    y.swap(y_next);
    theta.swap(theta_next);
    lam.swap(lam_next);
    z.swap(z_next);
    result.iterations = k + 1;

    if (record) {
      const auto now = Clock::now();
      rec.step_seconds = seconds_between(t_row, now) / (k + 1 - last_row_iterations);
      t_row = now;
      last_row_iterations = k + 1;
      result.history.push_back(rec);
      result.upper_value = rec.loss;
      result.constraint_residual = rec.constraint_residual;
      result.error = rec.error;
      if (!callbacks.iteration(rec)) {
        result.status = StopReason::kStoppedByCallback;
        result.message = detail::concat("a callback stopped the run after iteration ", k);
        break;
      }
    }
    if (converged) {
      result.status = StopReason::kConverged;
      result.message = detail::concat("the step fell below tolerance ", o.tolerance,
                                      " (relative) at iteration ", k);
      break;
    }
  }
  if (result.status == StopReason::kIterationLimit)
    result.message = detail::concat("ran the configured ", o.max_iterations, " iterations");

  // The values at the returned iterate (already known when its row was the last one).
  if (result.iterations == 0 || last_row_iterations != result.iterations) {
    result.upper_value = ob.upper_value(x, y);
    ob.constraints(x, y, g);
    expect_size(g, l, "constraints");
    result.constraint_residual = constraint_violation(g, kind);
    result.error = has_error ? ob.solution_error(x, y) : std::numeric_limits<double>::quiet_NaN();
    if ((!std::isfinite(result.upper_value) || !std::isfinite(result.constraint_residual)) &&
        result.status != StopReason::kNumericalError) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("F or g is NaN/Inf at the returned iterate (after ",
                                      result.iterations, " iterations)");
    }
  }
  result.x = std::move(x);
  result.y = std::move(y);
  result.theta = std::move(theta);
  result.lam = std::move(lam);
  result.z = std::move(z);
  result.seconds = seconds_between(t_start, Clock::now());
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace tether
