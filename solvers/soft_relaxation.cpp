#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/knapsack.hpp>
#include <tether/solvers/assignment_common.hpp>
#include <tether/solvers/soft_relaxation.hpp>

namespace tether {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr double kInf = std::numeric_limits<double>::infinity();

/// psi(h) and psi'(h) of the header comment.
void multiplier_term(BudgetSense sense, double h, double lambda, double rho, double* psi,
                     double* dpsi) {
  if (sense == BudgetSense::kEqual || rho == 0.0) {
    *psi = lambda * h + 0.5 * rho * h * h;
    *dpsi = lambda + rho * h;
    if (sense == BudgetSense::kAtMost) *dpsi = lambda;  // rho = 0: psi = lambda h
    return;
  }
  const double shifted = std::max(0.0, lambda + rho * h);
  *psi = (shifted * shifted - lambda * lambda) / (2.0 * rho);
  *dpsi = shifted;
}

double expected_cost(const Matrix& costs, const Matrix& alpha) {
  return costs.cwiseProduct(assignment::softmax_rows(alpha)).sum();
}

void recentre_rows(Matrix& alpha) {
  for (Index i = 0; i < alpha.rows(); ++i) alpha.row(i).array() -= alpha.row(i).maxCoeff();
}

Assignment argmax_rows(const Matrix& alpha) {
  Assignment h(static_cast<std::size_t>(alpha.rows()));
  for (Index i = 0; i < alpha.rows(); ++i) {
    Index best = 0;
    alpha.row(i).maxCoeff(&best);
    h[static_cast<std::size_t>(i)] = static_cast<int>(best);
  }
  return h;
}

}  // namespace

std::optional<RelaxedValue> relaxed_objective(const AssignmentObjective& objective,
                                              const Matrix& alpha, double lambda, double rho,
                                              Matrix* grad_alpha) {
  const Matrix& costs = objective.costs;
  require<ShapeError>(alpha.rows() == costs.rows() && alpha.cols() == costs.cols(),
                      "relaxed_objective: alpha is ", alpha.rows(), " x ", alpha.cols(),
                      ", costs are ", costs.rows(), " x ", costs.cols());
  const Matrix p = assignment::softmax_rows(alpha);
  Matrix grad_y;
  const std::optional<double> loss = assignment::evaluate(objective, p, grad_y);
  if (!loss) return std::nullopt;
  RelaxedValue out;
  out.loss = *loss;
  out.expected_cost = costs.cwiseProduct(p).sum();
  double psi = 0.0, dpsi = 0.0;
  multiplier_term(objective.sense, out.expected_cost - objective.budget, lambda, rho, &psi, &dpsi);
  out.value = *loss + psi;
  if (grad_alpha) {
    // n = J_softmax(p)^T c, so both terms go through one vector-Jacobian product.
    grad_y += dpsi * costs;
    *grad_alpha = assignment::softmax_vjp(p, grad_y);
    if (!grad_alpha->allFinite()) return std::nullopt;
  }
  if (!std::isfinite(out.value)) return std::nullopt;
  return out;
}

namespace assignment {

bool soft_settings_valid(const SoftRelaxationSettings& s, std::string* why) {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (!s.adam.is_valid(why)) return false;
  if (s.steps < 1) return fail(detail::concat("steps must be >= 1, got ", s.steps));
  if (!(s.units_per_cost > 0.0) || !std::isfinite(s.units_per_cost))
    return fail(detail::concat("units_per_cost must be finite and > 0, got ", s.units_per_cost));
  if (s.round_every < 0)
    return fail(detail::concat("round_every must be >= 0, got ", s.round_every));
  return true;
}

AssignmentResult run_soft_relaxation(const AssignmentObjective& input,
                                     const SoftRelaxationSettings& s, MultiplierSchedule& schedule,
                                     const CallbackSet& callbacks) {
  const auto t_start = Clock::now();
  // Masked options: normalised costs, logits -inf (see with_normalized_mask).
  const AssignmentObjective objective = with_normalized_mask(input);
  BudgetData data;
  if (auto trivial = check_and_solve_trivial(objective, &data)) {
    trivial->seconds = seconds_since(t_start);
    return *trivial;
  }
  const Matrix& costs = objective.costs;
  const Index n = costs.rows(), k = costs.cols();
  const double budget = objective.budget;

  Matrix alpha = Matrix::Zero(n, k);
  if (s.initial_logits) {
    const Matrix& init = *s.initial_logits;
    require<ShapeError>(init.rows() == n && init.cols() == k, s.options_name,
                        "::initial_logits is ", init.rows(), " x ", init.cols(), ", costs are ", n,
                        " x ", k);
    require(init.allFinite(), s.options_name, "::initial_logits must be finite");
    alpha = init;
  }
  mask_logits(objective, alpha);
  recentre_rows(alpha);

  std::optional<MultipleChoiceKnapsack> knapsack;
  if (s.rounding == SoftRounding::kKnapsack)
    knapsack.emplace(costs, budget, KnapsackOptions{.units_per_cost = s.units_per_cost});
  double last_gap = std::numeric_limits<double>::quiet_NaN();
  auto round = [&](const Matrix& a) -> Assignment {
    if (!knapsack) return argmax_rows(a);
    const KnapsackResult dp = knapsack->solve(log_softmax_rows(a));
    last_gap = dp.gap;
    return dp.assignment;
  };

  AssignmentResult result;
  result.budget = budget;
  result.best_seen_loss = kInf;
  result.status = StopReason::kIterationLimit;
  // The best rounded answer within budget whose true loss was evaluated (round_every > 0).
  auto consider_rounded = [&](const Matrix& a) {
    const Assignment h = round(a);
    if (assignment_cost(costs, h) > budget) return;
    const std::optional<double> loss = hard_loss(objective, h);
    ++result.loss_evaluations;
    if (loss && *loss < result.best_seen_loss) {
      result.best_seen_loss = *loss;
      result.best_seen = h;
    }
  };

  Adam adam(s.adam);
  Matrix grad(n, k), next(n, k);
  double best_soft = kInf, max_drift = 0.0;
  bool numerical_error = false;
  callbacks.begin(s.steps);

  for (int t = 0; t < s.steps; ++t) {
    const auto t_iter = Clock::now();
    const double residual = expected_cost(costs, alpha) - budget;
    max_drift = std::max(max_drift, std::abs(residual));
    if (t > 0 && schedule.update) schedule.update(t, residual, schedule.lambda, schedule.rho);
    const std::optional<RelaxedValue> value =
        relaxed_objective(objective, alpha, schedule.lambda, schedule.rho, &grad);
    ++result.loss_evaluations;
    if (!value) {
      numerical_error = true;
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the loss or its gradient was NaN/Inf at iteration ", t,
                                      "; the last finite iterate is kept");
      break;
    }
    if (s.round_every > 0 && t % s.round_every == 0) consider_rounded(alpha);
    best_soft = std::min(best_soft, value->loss);

    adam.trial(Eigen::Map<const Vector>(alpha.data(), alpha.size()),
               Eigen::Map<const Vector>(grad.data(), grad.size()),
               Eigen::Map<Vector>(next.data(), next.size()));
    recentre_rows(next);
    if (has_nan_or_positive_infinity(next)) {
      numerical_error = true;
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the Adam step left the finite range at iteration ", t,
                                      "; the last finite iterate is kept");
      break;
    }
    alpha = next;

    IterationRecord rec;
    rec.iteration = t;
    rec.loss = value->loss;
    rec.best_loss = s.round_every > 0 ? result.best_seen_loss : best_soft;
    rec.constraint_residual = residual;
    rec.step_seconds = seconds_since(t_iter);
    result.history.push_back(rec);
    result.iterations = t + 1;
    if (!callbacks.iteration(rec)) {
      result.status = StopReason::kStoppedByCallback;
      result.message = detail::concat("a callback stopped the run after iteration ", t);
      break;
    }
  }
  if (result.status == StopReason::kIterationLimit)
    result.message = detail::concat("ran the configured ", s.steps, " steps");

  result.logits = alpha;
  result.expected_cost = expected_cost(costs, alpha);
  max_drift = std::max(max_drift, std::abs(result.expected_cost - budget));
  result.max_expected_cost_drift = max_drift;
  if (!numerical_error && schedule.update)
    schedule.update(result.iterations, result.expected_cost - budget, schedule.lambda,
                    schedule.rho);

  // ---- the answer: the final rounding, or the best rounded within-budget answer seen --------
  result.final_dp = round(alpha);
  result.final_dp_gap = last_gap;
  const std::optional<double> final_loss = hard_loss(objective, result.final_dp);
  ++result.loss_evaluations;
  result.final_dp_loss = final_loss.value_or(std::numeric_limits<double>::quiet_NaN());
  const bool final_feasible = assignment_cost(costs, result.final_dp) <= budget;
  const bool take_best_seen = !result.best_seen.empty() && (!final_feasible || !final_loss ||
                                                            result.best_seen_loss < *final_loss);
  if (take_best_seen) {
    result.assignment = result.best_seen;
    result.loss = result.best_seen_loss;
  } else {
    result.assignment = result.final_dp;
    result.loss = result.final_dp_loss;
    if (final_feasible && final_loss && *final_loss < result.best_seen_loss) {
      result.best_seen = result.final_dp;
      result.best_seen_loss = *final_loss;
    }
  }
  set_cost_fields(objective, result);
  result.seconds = seconds_since(t_start);
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace assignment
}  // namespace tether
