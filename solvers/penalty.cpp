#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/solvers/penalty.hpp>

namespace tether {

namespace {

assignment::SoftRelaxationSettings settings_of(const PenaltyOptions& o) {
  return assignment::soft_settings_of(o, o.steps, "PenaltyOptions");
}

}  // namespace

bool PenaltyOptions::is_valid(std::string* why) const {
  if (!assignment::soft_settings_valid(settings_of(*this), why)) return false;
  if (!(penalty_weight >= 0.0) || !std::isfinite(penalty_weight)) {
    if (why) *why = detail::concat("penalty_weight must be finite and >= 0, got ", penalty_weight);
    return false;
  }
  return true;
}

PenaltySolver::PenaltySolver(const PenaltyOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "PenaltyOptions: ", why);
}

AssignmentResult PenaltySolver::minimize(const AssignmentObjective& objective,
                                         const CallbackSet& callbacks) const {
  // mu h^2 = (rho / 2) h^2 with rho = 2 mu, and no multiplier: a fixed schedule.
  assignment::MultiplierSchedule schedule;
  schedule.rho = 2.0 * options_.penalty_weight;
  return assignment::run_soft_relaxation(objective, settings_of(options_), schedule, callbacks);
}

std::optional<double> PenaltySolver::relaxed_objective(const AssignmentObjective& objective,
                                                       const Matrix& alpha,
                                                       Matrix* grad_alpha) const {
  const std::optional<RelaxedValue> v =
      tether::relaxed_objective(objective, alpha, 0.0, 2.0 * options_.penalty_weight, grad_alpha);
  if (!v) return std::nullopt;
  return v->value;
}

AssignmentResult penalty_sweep(const AssignmentObjective& objective, PenaltyOptions base,
                               const std::vector<double>& weights) {
  require(!weights.empty(), "penalty_sweep: weights must not be empty");
  for (std::size_t j = 0; j < weights.size(); ++j)
    require(std::isfinite(weights[j]) && weights[j] >= 0.0, "penalty_sweep: weights[", j,
            "] must be finite and >= 0, got ", weights[j]);

  AssignmentResult best;
  double best_mu = 0.0;
  bool have = false;
  long evaluations = 0;
  double seconds = 0.0;
  std::string runs;
  // Feasible beats infeasible; among feasible the lower loss, among infeasible the smaller
  // violation; ties keep the earlier weight.
  auto better = [](const AssignmentResult& a, const AssignmentResult& b) {
    const bool fa = a.budget_violation <= 0.0, fb = b.budget_violation <= 0.0;
    if (fa != fb) return fa;
    if (fa) return a.loss < b.loss || (std::isnan(b.loss) && !std::isnan(a.loss));
    return a.budget_violation < b.budget_violation;
  };
  for (double mu : weights) {
    base.penalty_weight = mu;
    AssignmentResult r = PenaltySolver(base).minimize(objective);
    evaluations += r.loss_evaluations;
    seconds += r.seconds;
    runs += detail::concat(runs.empty() ? "" : "; ", "mu = ", mu, ": loss ", r.loss, ", violation ",
                           r.budget_violation, " (", to_string(r.status), ")");
    if (!have || better(r, best)) {
      best = std::move(r);
      best_mu = mu;
      have = true;
    }
  }
  best.message = detail::concat(
      "penalty sweep over ", weights.size(), " weights: mu = ", best_mu, " won (",
      best.budget_violation <= 0.0 ? "within budget" : "no run was within budget; least violating",
      "); ", runs);
  best.loss_evaluations = evaluations;
  best.seconds = seconds;
  return best;
}

}  // namespace tether
