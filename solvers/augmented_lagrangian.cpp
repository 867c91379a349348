#include <algorithm>
#include <climits>
#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/solvers/augmented_lagrangian.hpp>

namespace tether {

namespace {

assignment::SoftRelaxationSettings settings_of(const AugmentedLagrangianOptions& o) {
  // Checked in is_valid: the product fits an int.
  const int steps =
      o.outer_iterations >= 1 && o.inner_steps >= 1 && o.outer_iterations <= INT_MAX / o.inner_steps
          ? o.outer_iterations * o.inner_steps
          : 1;
  return assignment::soft_settings_of(o, steps, "AugmentedLagrangianOptions");
}

}  // namespace

bool AugmentedLagrangianOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (outer_iterations < 1)
    return fail(detail::concat("outer_iterations must be >= 1, got ", outer_iterations));
  if (inner_steps < 1) return fail(detail::concat("inner_steps must be >= 1, got ", inner_steps));
  if (outer_iterations > INT_MAX / inner_steps)
    return fail(detail::concat("outer_iterations x inner_steps must fit an int, got ",
                               outer_iterations, " x ", inner_steps));
  if (!assignment::soft_settings_valid(settings_of(*this), why)) return false;
  if (!std::isfinite(initial_multiplier))
    return fail(detail::concat("initial_multiplier must be finite, got ", initial_multiplier));
  if (!(rho > 0.0) || !std::isfinite(rho))
    return fail(detail::concat("rho must be finite and > 0, got ", rho));
  if (!(rho_growth >= 1.0) || !std::isfinite(rho_growth))
    return fail(detail::concat("rho_growth must be finite and >= 1, got ", rho_growth));
  if (!(rho_max >= rho) || !std::isfinite(rho_max))
    return fail(detail::concat("rho_max must be finite and >= rho = ", rho, ", got ", rho_max));
  return true;
}

AugmentedLagrangianSolver::AugmentedLagrangianSolver(const AugmentedLagrangianOptions& options)
    : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "AugmentedLagrangianOptions: ", why);
}

AugmentedLagrangianResult AugmentedLagrangianSolver::minimize(const AssignmentObjective& objective,
                                                              const CallbackSet& callbacks) const {
  const AugmentedLagrangianOptions& o = options_;
  const BudgetSense sense = objective.sense;
  require(sense == BudgetSense::kEqual || o.initial_multiplier >= 0.0,
          "AugmentedLagrangianOptions: initial_multiplier must be >= 0 for an at-most budget, got ",
          o.initial_multiplier);
  std::vector<double> multipliers;
  assignment::MultiplierSchedule schedule;
  schedule.lambda = o.initial_multiplier;
  schedule.rho = o.rho;
  schedule.update = [&](int t, double residual, double& lambda, double& rho) {
    if (t % o.inner_steps != 0) return;
    lambda += rho * residual;  // first-order multiplier update (Nocedal and Wright, 17.39)
    if (sense == BudgetSense::kAtMost) lambda = std::max(0.0, lambda);
    rho = std::min(rho * o.rho_growth, o.rho_max);
    multipliers.push_back(lambda);
  };
  AugmentedLagrangianResult r;
  static_cast<AssignmentResult&>(r) =
      assignment::run_soft_relaxation(objective, settings_of(o), schedule, callbacks);
  r.multiplier = schedule.lambda;
  r.rho = schedule.rho;
  r.multipliers = std::move(multipliers);
  r.message += detail::concat("; multiplier lambda = ", r.multiplier, ", rho = ", r.rho, " after ",
                              r.multipliers.size(), " updates");
  return r;
}

}  // namespace tether
