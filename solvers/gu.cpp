#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/solvers/blur.hpp>
#include <tether/solvers/gu.hpp>
#include <utility>
#include <variant>

namespace tether {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The oracles at one point: both losses, the forget gradient, and the retain gradient where
// asked for (with_retain_gradient).
struct Evaluation {
  double forget_loss = 0.0, retain_loss = 0.0;
  Vector forget_gradient, retain_gradient;
  bool has_retain_gradient = false;
};

// Returns the name of the first non-finite oracle ("" if none). A gradient of the wrong size is
// a ShapeError: the problem broke its contract.
const char* evaluate(const ForgetRetainObjective& o, const Vector& theta, bool with_retain_gradient,
                     Evaluation& e) {
  const Index n = theta.size();
  e.forget_gradient.resize(n);
  e.forget_loss = o.forget_loss(theta);
  e.retain_loss = o.retain_loss(theta);
  o.forget_gradient(theta, e.forget_gradient);
  require<ShapeError>(e.forget_gradient.size() == n, "GuSolver: the forget gradient has size ",
                      e.forget_gradient.size(), ", expected ", n);
  e.has_retain_gradient = with_retain_gradient;
  if (with_retain_gradient) {
    e.retain_gradient.resize(n);
    o.retain_gradient(theta, e.retain_gradient);
    require<ShapeError>(e.retain_gradient.size() == n, "GuSolver: the retain gradient has size ",
                        e.retain_gradient.size(), ", expected ", n);
  }
  if (!std::isfinite(e.forget_loss)) return "forget loss";
  if (!std::isfinite(e.retain_loss)) return "retain loss";
  if (!e.forget_gradient.allFinite()) return "forget gradient";
  if (with_retain_gradient && !e.retain_gradient.allFinite()) return "retain gradient";
  return "";
}

}  // namespace

bool GuOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  std::string projection_why;
  if (!projection.is_valid(&projection_why))
    return fail(detail::concat("projection: ", projection_why));
  if (refresh < 1) return fail(detail::concat("refresh must be >= 1, got ", refresh));
  if (!(blur_gamma > 0.0) || !std::isfinite(blur_gamma))
    return fail(detail::concat("blur_gamma must be finite and > 0, got ", blur_gamma));
  std::string step_why;
  if (!std::visit([&](const auto& s) { return s.is_valid(&step_why); }, step))
    return fail(detail::concat("step (", step_rule_name(step), "): ", step_why));
  if (max_iterations < 1)
    return fail(detail::concat("max_iterations must be >= 1, got ", max_iterations));
  if (!(tolerance >= 0.0) || !std::isfinite(tolerance))
    return fail(detail::concat("tolerance must be finite and >= 0, got ", tolerance));
  return true;
}

GuSolver::GuSolver(const GuOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "GuOptions: ", why);
}

GuResult GuSolver::minimize(const ForgetRetainObjective& objective, const Vector& theta0,
                            const CallbackSet& callbacks) const {
  const auto t_start = Clock::now();
  const GuOptions& o = options_;
  require(objective.forget_loss && objective.retain_loss && objective.forget_gradient &&
              objective.retain_gradient,
          "GuSolver: the objective must supply both losses and both gradients");
  require(objective.dimension >= 1, "GuSolver: the problem's dimension must be >= 1, got ",
          objective.dimension);
  require<ShapeError>(theta0.size() == objective.dimension, "GuSolver: theta0 has size ",
                      theta0.size(), ", the problem's dimension is ", objective.dimension);
  require(theta0.allFinite(), "GuSolver: theta0 must be finite");
  const Index n = theta0.size();
  const bool blur = o.base == GuOptions::Base::kBlur;
  const bool null_space = o.projection.mode == RetainProjectionMode::kNullSpace;
  auto needs_retain_gradient = [&](int k) { return blur || k % o.refresh == 0; };

  RetainProjector projector(n, o.projection);
  StepRule rule(o.step);
  const double lr = rule.learning_rate();
  const bool adam = std::holds_alternative<AdamOptions>(o.step);

  GuResult result;
  result.status = StopReason::kIterationLimit;
  Vector theta = theta0;
  Evaluation e, e_next;
  if (const char* bad = evaluate(objective, theta, needs_retain_gradient(0), e); *bad)
    throw NumericalError(detail::concat("GuSolver: the ", bad, " is NaN/Inf at theta0"));

  Vector base_direction(blur ? n : 0), proposed(n), step(n), next(n), metric(adam ? n : 0);
  double best = std::numeric_limits<double>::infinity();
  callbacks.begin(o.max_iterations);

  for (int k = 0; k < o.max_iterations; ++k) {
    const auto t_iter = Clock::now();
    if (k % o.refresh == 0) {
      projector.push(e.retain_gradient);
      ++result.retain_gradients;
    }
    if (blur) blur_direction(e.forget_gradient, e.retain_gradient, o.blur_gamma, base_direction);
    rule.direction(theta, blur ? base_direction : e.forget_gradient, proposed);
    if (!proposed.allFinite()) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the step rule's step was NaN/Inf at iteration ", k,
                                      "; the last finite iterate is kept");
      break;
    }
    if (adam && rule.preconditioner(metric)) projector.set_metric(metric);
    try {
      projector.project_step(proposed, lr, step);
    } catch (const NumericalError& error) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the projection failed at iteration ", k, " (", error.what(),
                                      "); the last finite iterate is kept");
      break;
    }
    result.rank = projector.last_report().rank;

    // The first-order retain change of the step against the latest pushed retain gradient.
    double residual = 0.0;
    const ConstVectorRef g_r = projector.latest();
    const double scale = g_r.norm() * step.norm();
    if (scale > 0.0) {
      const double change = g_r.dot(step) / scale;
      residual = null_space ? std::abs(change) : std::max(0.0, change);
    }

    next = theta + step;
    if (!next.allFinite()) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the step left the finite numbers at iteration ", k,
                                      "; the last finite iterate is kept");
      break;
    }
    const bool last = k + 1 == o.max_iterations;
    if (const char* bad = evaluate(objective, next, needs_retain_gradient(k + 1) && !last, e_next);
        *bad) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the ", bad, " was NaN/Inf after iteration ", k,
                                      "; the last finite iterate is kept");
      break;
    }

    best = std::min(best, e.forget_loss);
    IterationRecord rec;
    rec.iteration = k;
    rec.loss = e.forget_loss;
    rec.best_loss = best;
    rec.constraint_residual = residual;
    if (objective.solution_error) rec.error = objective.solution_error(theta);
    result.retain_losses.push_back(e.retain_loss);
    theta.swap(next);
    std::swap(e, e_next);
    rec.step_seconds = seconds_since(t_iter);
    result.history.push_back(rec);
    result.iterations = k + 1;
    const double step_per_lr = step.norm() / lr;
    if (!callbacks.iteration(rec)) {
      result.status = StopReason::kStoppedByCallback;
      result.message = detail::concat("a callback stopped the run after iteration ", k);
      break;
    }
    if (o.tolerance > 0.0 && step_per_lr <= o.tolerance) {
      result.status = StopReason::kConverged;
      result.message = detail::concat("|D| / lr = ", step_per_lr, " <= tolerance ", o.tolerance,
                                      " at iteration ", k);
      break;
    }
  }
  if (result.status == StopReason::kIterationLimit)
    result.message = detail::concat("ran the configured ", o.max_iterations, " iterations");

  result.theta = theta;
  result.forget_loss = e.forget_loss;
  result.retain_loss = e.retain_loss;
  result.seconds = seconds_since(t_start);
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace tether
