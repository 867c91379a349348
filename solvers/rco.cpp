#include <chrono>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/assignment_common.hpp>
#include <tether/solvers/rco.hpp>
#include <tether/solvers/riemannian_adam.hpp>

namespace tether {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

bool RcoOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  AdamOptions adam{
      .learning_rate = learning_rate, .beta1 = beta1, .beta2 = beta2, .epsilon = epsilon};
  if (!adam.is_valid(why)) return false;
  if (steps < 1) return fail(detail::concat("steps must be >= 1, got ", steps));
  if (samples < 1) return fail(detail::concat("samples must be >= 1, got ", samples));
  if (antithetic && samples % 2 != 0)
    return fail(
        detail::concat("antithetic sampling needs an even number of samples, got ", samples));
  if (!(tau_initial > 0.0) || !std::isfinite(tau_initial))
    return fail(detail::concat("tau_initial must be finite and > 0, got ", tau_initial));
  if (!(tau_final > 0.0) || !std::isfinite(tau_final))
    return fail(detail::concat("tau_final must be finite and > 0, got ", tau_final));
  if (!(units_per_cost > 0.0))
    return fail(detail::concat("units_per_cost must be > 0, got ", units_per_cost));
  if (!(final_units_per_cost > 0.0))
    return fail(detail::concat("final_units_per_cost must be > 0, got ", final_units_per_cost));
  if (polish_sweeps < 0)
    return fail(detail::concat("polish_sweeps must be >= 0, got ", polish_sweeps));
  return true;
}

RcoSolver::RcoSolver(const RcoOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "RcoOptions: ", why);
}

AssignmentResult RcoSolver::minimize(const AssignmentObjective& input,
                                     const CallbackSet& callbacks) const {
  const auto t_start = Clock::now();
  // Masked options: their costs become their group's cheapest allowed cost (so ranges and grids
  // see only allowed options), their logits -inf (probability 0, never sampled, never moved).
  const AssignmentObjective objective = with_normalized_mask(input);
  BudgetData data;
  if (auto trivial = assignment::check_and_solve_trivial(objective, &data)) {
    trivial->seconds = seconds_since(t_start);
    return *trivial;
  }
  const RcoOptions& o = options_;
  const Matrix& costs = objective.costs;
  const Index n = costs.rows(), k = costs.cols();
  const BudgetManifold manifold(costs, objective.budget, objective.sense, o.retraction);
  KnapsackOptions sample_grid{.units_per_cost = o.units_per_cost};
  MultipleChoiceKnapsack knapsack(costs, objective.budget, sample_grid);

  // ---- initial point ------------------------------------------------------------------------
  Matrix alpha = Matrix::Zero(n, k);
  if (o.init == RcoOptions::Init::kGiven) {
    require<ShapeError>(o.initial_logits.rows() == n && o.initial_logits.cols() == k,
                        "RcoOptions::initial_logits is ", o.initial_logits.rows(), " x ",
                        o.initial_logits.cols(), ", costs are ", n, " x ", k);
    require(o.initial_logits.allFinite(), "RcoOptions::initial_logits must be finite");
    alpha = o.initial_logits;
  } else if (o.init == RcoOptions::Init::kSensitivities) {
    require<ShapeError>(o.sensitivities.rows() == n && o.sensitivities.cols() == k,
                        "RcoOptions::sensitivities is ", o.sensitivities.rows(), " x ",
                        o.sensitivities.cols(), ", costs are ", n, " x ", k);
    require((o.sensitivities.array() > 0.0).all() && o.sensitivities.allFinite(),
            "RcoOptions::sensitivities must be finite and > 0");
    alpha = -o.sensitivities.array().log().matrix();
  }
  assignment::mask_logits(objective, alpha);
  for (Index i = 0; i < n; ++i) alpha.row(i).array() -= alpha.row(i).maxCoeff();

  AssignmentResult result;
  result.budget = objective.budget;
  result.best_seen_loss = std::numeric_limits<double>::infinity();
  result.status = StopReason::kIterationLimit;
  const RetractionReport first = manifold.retract(alpha);
  if (!first.converged) {
    result.status = StopReason::kNumericalError;
    result.message = detail::concat("initial retraction did not reach the budget: |C - B| = ",
                                    first.max_abs_residual, " after ", first.passes, " passes");
  }

  RiemannianAdam riemannian_adam(
      manifold,
      {.learning_rate = o.learning_rate, .beta1 = o.beta1, .beta2 = o.beta2, .epsilon = o.epsilon});
  Rng rng(o.seed);
  Matrix gumbel(n, k), z(n, k), grad_alpha(n, k), grad_y(n, k);
  Matrix uniform_draws(n, k);
  double max_drift = std::abs(first.residuals[0]);
  callbacks.begin(o.steps);

  for (int t = 0; t < o.steps && result.status == StopReason::kIterationLimit; ++t) {
    const auto t_iter = Clock::now();
    const double tau = o.steps == 1
                           ? o.tau_initial
                           : o.tau_initial * std::pow(o.tau_final / o.tau_initial,
                                                      static_cast<double>(t) / (o.steps - 1));
    grad_alpha.setZero();
    double mean_loss = 0.0;
    bool finite = true;
    auto consider_hard = [&](const Assignment& h, double loss) {
      if (loss < result.best_seen_loss) {
        result.best_seen_loss = loss;
        result.best_seen = h;
      }
    };

    if (o.estimator == RcoOptions::Estimator::kGumbelStraightThrough) {
      for (int s = 0; s < o.samples && finite; ++s) {
        if (o.antithetic && s % 2 == 1) {
          for (Index j = 0; j < gumbel.size(); ++j)
            gumbel.data()[j] = Rng::gumbel_of(1.0 - uniform_draws.data()[j]);
        } else {
          for (Index j = 0; j < gumbel.size(); ++j) {
            uniform_draws.data()[j] = rng.uniform();
            gumbel.data()[j] = Rng::gumbel_of(uniform_draws.data()[j]);
          }
        }
        z = alpha + gumbel;  // the argmax (and the DP) do not depend on tau
        const KnapsackResult hard = knapsack.solve_without_bound(z);
        z /= tau;
        const Matrix y = one_hot(hard.assignment, k);
        const std::optional<double> loss = assignment::evaluate(objective, y, grad_y);
        ++result.loss_evaluations;
        if (!loss) {
          finite = false;
          break;
        }
        consider_hard(hard.assignment, *loss);
        mean_loss += *loss / o.samples;
        grad_alpha +=
            assignment::softmax_vjp(assignment::softmax_rows(z), grad_y) / (tau * o.samples);
      }
    } else {
      const Matrix p = assignment::softmax_rows(alpha);
      const std::optional<double> loss = assignment::evaluate(objective, p, grad_y);
      ++result.loss_evaluations;
      if (loss) {
        mean_loss = *loss;
        grad_alpha = assignment::softmax_vjp(p, grad_y);
        const KnapsackResult hard = knapsack.solve_without_bound(alpha);
        const std::optional<double> hl = assignment::hard_loss(objective, hard.assignment);
        ++result.loss_evaluations;
        if (hl) consider_hard(hard.assignment, *hl);
      } else {
        finite = false;
      }
    }
    if (!finite) {
      result.status = StopReason::kNumericalError;
      result.message = detail::concat("the loss or its gradient was NaN/Inf at iteration ", t,
                                      "; the last finite iterate is kept");
      break;
    }

    const RiemannianStepReport sr = riemannian_adam.step(
        alpha, grad_alpha,
        t == 0 ? RiemannianAdam::Start::kNewPoint : RiemannianAdam::Start::kLastResult);
    if (sr.degenerate) {
      result.status = StopReason::kDegenerateManifold;
      result.message = detail::concat("the budget normal vanished at iteration ", t,
                                      " (every row one-hot): no tangent space");
      break;
    }
    const RetractionReport& rr = sr.retraction;
    if (!rr.converged) {
      result.status = StopReason::kNumericalError;
      result.message =
          detail::concat("retraction failed at iteration ", t, ": |C - B| = ", rr.max_abs_residual,
                         " after ", rr.passes, " passes; the last finite iterate is kept");
      break;
    }

    IterationRecord rec;
    rec.iteration = t;
    rec.loss = mean_loss;
    rec.best_loss = result.best_seen_loss;
    rec.constraint_residual = rr.residuals[0];  // from the retraction's last pass
    rec.step_seconds = seconds_since(t_iter);
    rec.temperature = tau;
    rec.retraction_passes = rr.passes;
    max_drift = std::max(max_drift, std::abs(rec.constraint_residual));
    result.history.push_back(rec);
    result.iterations = t + 1;
    if (!callbacks.iteration(rec)) {
      result.status = StopReason::kStoppedByCallback;
      result.message = detail::concat("a callback stopped the run after iteration ", t);
    }
  }
  if (result.status == StopReason::kIterationLimit)
    result.message = detail::concat("ran the configured ", o.steps, " steps");

  // ---- final answer: DP on log p at fine resolution vs. the best hard assignment seen -------
  MultipleChoiceKnapsack fine(costs, objective.budget, {.units_per_cost = o.final_units_per_cost});
  const KnapsackResult dp = fine.solve(assignment::log_softmax_rows(alpha));
  result.final_dp = dp.assignment;
  result.final_dp_gap = dp.gap;
  const std::optional<double> dp_loss = assignment::hard_loss(objective, dp.assignment);
  ++result.loss_evaluations;
  result.final_dp_loss = dp_loss.value_or(std::numeric_limits<double>::infinity());
  if (dp_loss && *dp_loss < result.best_seen_loss) {
    result.assignment = dp.assignment;
    result.loss = *dp_loss;
  } else if (!result.best_seen.empty()) {
    result.assignment = result.best_seen;
    result.loss = result.best_seen_loss;
  } else {
    result.assignment = dp.assignment;
    result.loss = result.final_dp_loss;
  }
  if (o.polish_sweeps > 0 && std::isfinite(result.loss))
    assignment::polish(objective, result.assignment, result.loss, o.polish_sweeps,
                       &result.loss_evaluations);
  assignment::set_cost_fields(objective, result);
  result.logits = alpha;
  result.expected_cost = manifold.expected_cost(alpha)[0];
  result.max_expected_cost_drift = max_drift;
  result.seconds = seconds_since(t_start);
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace tether
