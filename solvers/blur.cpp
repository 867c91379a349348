#include <chrono>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/solvers/blur.hpp>
#include <utility>
#include <variant>

namespace tether {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Losses and gradients of both levels at one point.
struct LevelEvaluation {
  double lower_loss = 0.0, upper_loss = 0.0;
  Vector lower_gradient, upper_gradient;
};

// Evaluates every oracle at theta; returns the name of the first non-finite one ("" if none).
// A gradient of the wrong size is a ShapeError: the problem broke its contract.
const char* evaluate(const ForgetRetainObjective& o, bool swapped, const Vector& theta,
                     LevelEvaluation& e) {
  const Index n = theta.size();
  e.lower_gradient.resize(n);
  e.upper_gradient.resize(n);
  e.lower_loss = o.forget_loss(theta);
  e.upper_loss = o.retain_loss(theta);
  o.forget_gradient(theta, e.lower_gradient);
  o.retain_gradient(theta, e.upper_gradient);
  const char* lower = swapped ? "retain" : "forget";
  const char* upper = swapped ? "forget" : "retain";
  require<ShapeError>(e.lower_gradient.size() == n, "BlurSolver: the ", lower,
                      " gradient has size ", e.lower_gradient.size(), ", expected ", n);
  require<ShapeError>(e.upper_gradient.size() == n, "BlurSolver: the ", upper,
                      " gradient has size ", e.upper_gradient.size(), ", expected ", n);
  if (!std::isfinite(e.lower_loss)) return swapped ? "retain loss" : "forget loss";
  if (!std::isfinite(e.upper_loss)) return swapped ? "forget loss" : "retain loss";
  if (!e.lower_gradient.allFinite()) return swapped ? "retain gradient" : "forget gradient";
  if (!e.upper_gradient.allFinite()) return swapped ? "forget gradient" : "retain gradient";
  return "";
}

}  // namespace

BlurDirectionCase blur_direction(ConstVectorRef g_f, ConstVectorRef g_r, double gamma,
                                 VectorRef out) {
  require<ShapeError>(g_f.size() == g_r.size() && out.size() == g_f.size(),
                      "blur_direction: g_f has size ", g_f.size(), ", g_r has size ", g_r.size(),
                      ", out has size ", out.size());
  require(gamma > 0.0 && std::isfinite(gamma), "blur_direction: gamma must be finite and > 0, got ",
          gamma);
  const double gf2 = g_f.squaredNorm();
  if (gf2 == 0.0) {  // the lower level is exactly stationary: no normal to project against
    out = g_r;
    return BlurDirectionCase::kZeroForgetGradient;
  }
  // <d, g_f> = <g_r, g_f> + (gamma - <g_r, g_f>/|g_f|^2) |g_f|^2 = gamma |g_f|^2.
  const double coefficient = gamma - g_r.dot(g_f) / gf2;
  out = g_r + coefficient * g_f;
  return BlurDirectionCase::kProjected;
}

Vector blur_direction(ConstVectorRef g_f, ConstVectorRef g_r, double gamma) {
  Vector out(g_f.size());
  blur_direction(g_f, g_r, gamma, out);
  return out;
}

void weighted_sum_direction(ConstVectorRef g_f, ConstVectorRef g_r, double weight, VectorRef out) {
  require<ShapeError>(g_f.size() == g_r.size() && out.size() == g_f.size(),
                      "weighted_sum_direction: g_f has size ", g_f.size(), ", g_r has size ",
                      g_r.size(), ", out has size ", out.size());
  require(weight >= 0.0 && std::isfinite(weight),
          "weighted_sum_direction: weight must be finite and >= 0, got ", weight);
  out = g_f + weight * g_r;
}

bool BlurOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (!(gamma > 0.0) || !std::isfinite(gamma))
    return fail(detail::concat("gamma must be finite and > 0, got ", gamma));
  if (!(weight >= 0.0) || !std::isfinite(weight))
    return fail(detail::concat("weight must be finite and >= 0, got ", weight));
  std::string step_why;
  if (!std::visit([&](const auto& s) { return s.is_valid(&step_why); }, step))
    return fail(detail::concat("step (", step_rule_name(step), "): ", step_why));
  if (max_iterations < 1)
    return fail(detail::concat("max_iterations must be >= 1, got ", max_iterations));
  if (!(tolerance >= 0.0) || !std::isfinite(tolerance))
    return fail(detail::concat("tolerance must be finite and >= 0, got ", tolerance));
  return true;
}

BlurSolver::BlurSolver(const BlurOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "BlurOptions: ", why);
}

BlurResult BlurSolver::minimize(const ForgetRetainObjective& input, const Vector& theta0,
                                const CallbackSet& callbacks) const {
  const auto t_start = Clock::now();
  const BlurOptions& o = options_;
  require(input.forget_loss && input.retain_loss && input.forget_gradient && input.retain_gradient,
          "BlurSolver: the objective must supply both losses and both gradients");
  require(input.dimension >= 1, "BlurSolver: the problem's dimension must be >= 1, got ",
          input.dimension);
  require<ShapeError>(theta0.size() == input.dimension, "BlurSolver: theta0 has size ",
                      theta0.size(), ", the problem's dimension is ", input.dimension);
  require(theta0.allFinite(), "BlurSolver: theta0 must be finite");

  // The lower level is the objective's "forget" role: swap the objective to swap the roles.
  const ForgetRetainObjective objective = o.swap_roles ? input.swapped() : input;
  const bool track_error = static_cast<bool>(objective.solution_error) && !o.swap_roles;
  const Index n = theta0.size();

  BlurResult result;
  result.status = StopReason::kIterationLimit;
  Vector theta = theta0;
  LevelEvaluation e;
  if (const char* bad = evaluate(objective, o.swap_roles, theta, e); *bad)
    throw NumericalError(detail::concat("BlurSolver: the ", bad, " is NaN/Inf at theta0"));

  StepRule rule(o.step);
  Vector d(n), next(n), last_normal;
  LevelEvaluation e_next;
  callbacks.begin(o.max_iterations);

  for (int k = 0; k < o.max_iterations; ++k) {
    const auto t_iter = Clock::now();
    const double lower_gradient_norm = e.lower_gradient.norm();
    if (o.direction == BlurOptions::Direction::kWeightedSum) {
      weighted_sum_direction(e.lower_gradient, e.upper_gradient, o.weight, d);
    } else if (blur_direction(e.lower_gradient, e.upper_gradient, o.gamma, d) ==
               BlurDirectionCase::kZeroForgetGradient) {
      ++result.guard_steps;
      if (o.zero_forget_gradient == BlurOptions::ZeroForgetGradient::kKeepLastNormal &&
          last_normal.size() == n)
        d -= d.dot(last_normal) * last_normal;
    } else if (o.zero_forget_gradient == BlurOptions::ZeroForgetGradient::kKeepLastNormal) {
      last_normal = e.lower_gradient / lower_gradient_norm;
    }
    if (!d.allFinite()) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the direction was NaN/Inf at iteration ", k,
                                      "; the last finite iterate is kept");
      break;
    }
    next = theta;
    rule.step(next, d);
    if (!next.allFinite()) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the step left the finite numbers at iteration ", k,
                                      "; the last finite iterate is kept");
      break;
    }
    if (const char* bad = evaluate(objective, o.swap_roles, next, e_next); *bad) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the ", bad, " was NaN/Inf after iteration ", k,
                                      "; the last finite iterate is kept");
      break;
    }

    IterationRecord rec;
    rec.iteration = k;
    rec.loss = e.upper_loss;
    rec.best_loss = e.upper_loss;
    rec.constraint_residual = lower_gradient_norm;
    if (track_error) rec.error = objective.solution_error(theta);
    theta.swap(next);
    std::swap(e, e_next);
    rec.step_seconds = seconds_since(t_iter);
    result.history.push_back(rec);
    result.iterations = k + 1;
    const double d_norm = d.norm();
    if (!callbacks.iteration(rec)) {
      result.status = StopReason::kStoppedByCallback;
      result.message = detail::concat("a callback stopped the run after iteration ", k);
      break;
    }
    if (o.tolerance > 0.0 && d_norm <= o.tolerance) {
      result.status = StopReason::kConverged;
      result.message =
          detail::concat("|d| = ", d_norm, " <= tolerance ", o.tolerance, " at iteration ", k);
      break;
    }
  }
  if (result.status == StopReason::kIterationLimit)
    result.message = detail::concat("ran the configured ", o.max_iterations, " iterations");

  result.theta = theta;
  result.forget_loss = o.swap_roles ? e.upper_loss : e.lower_loss;
  result.retain_loss = o.swap_roles ? e.lower_loss : e.upper_loss;
  result.lower_gradient_norm = e.lower_gradient.norm();
  result.seconds = seconds_since(t_start);
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace tether
