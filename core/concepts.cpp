#include <algorithm>
#include <cmath>
#include <limits>
#include <tether/core/concepts.hpp>

namespace tether {

BudgetData validate_budget(const Matrix& costs, double budget, BudgetSense sense) {
  require<ShapeError>(costs.rows() > 0, "costs: N (number of groups) must be >= 1, got 0");
  require<ShapeError>(costs.cols() > 0, "costs: K (number of options) must be >= 1, got 0");
  for (Index i = 0; i < costs.rows(); ++i)
    for (Index k = 0; k < costs.cols(); ++k) {
      const double c = costs(i, k);
      require(std::isfinite(c), "costs(", i, ", ", k, ") must be finite, got ", c);
      require(c >= 0.0, "costs(", i, ", ", k, ") must be >= 0, got ", c);
    }
  require(std::isfinite(budget), "budget must be finite, got ", budget);
  BudgetData d;
  d.costs = costs;
  d.budget = budget;
  d.sense = sense;
  d.min_total = costs.rowwise().minCoeff().sum();
  d.max_total = costs.rowwise().maxCoeff().sum();
  // A relative slack of a few ulps keeps budgets computed as the exact end points feasible.
  const double slack =
      8.0 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(d.max_total));
  require<InfeasibleError>(budget >= d.min_total - slack, "budget ", budget,
                           " is below the feasible range [", d.min_total, ", ", d.max_total,
                           "] (sum of row minima, sum of row maxima of costs)");
  if (sense == BudgetSense::kEqual)
    require<InfeasibleError>(budget <= d.max_total + slack, "budget ", budget,
                             " is above the feasible range [", d.min_total, ", ", d.max_total,
                             "] (sum of row minima, sum of row maxima of costs)");
  return d;
}

BudgetData validate_manifold_budget(const Matrix& costs, double budget, BudgetSense sense,
                                    const std::string& what) {
  const BudgetData d = validate_budget(costs, budget, sense);
  if (sense == BudgetSense::kEqual) {
    require<InfeasibleError>(d.min_total < budget && budget < d.max_total, what, " ", budget,
                             " must lie strictly inside the feasible range (", d.min_total, ", ",
                             d.max_total,
                             "); at an end point the only feasible assignment is the cheapest "
                             "(or dearest) one, at infinite logits");
  } else {
    require<InfeasibleError>(d.min_total < budget, what, " ", budget,
                             " must exceed the sum of row minima ", d.min_total);
  }
  return d;
}

AssignmentObjective with_normalized_mask(const AssignmentObjective& objective) {
  if (!objective.masked()) return objective;
  const Index n = objective.costs.rows(), k = objective.costs.cols();
  require<ShapeError>(objective.allowed.rows() == n && objective.allowed.cols() == k,
                      "option mask is ", objective.allowed.rows(), " x ", objective.allowed.cols(),
                      ", costs are ", n, " x ", k);
  AssignmentObjective out = objective;
  if (objective.allowed.all()) {
    out.allowed.resize(0, 0);
    return out;
  }
  for (Index i = 0; i < n; ++i) {
    double cheapest = std::numeric_limits<double>::infinity();
    for (Index o = 0; o < k; ++o)
      if (objective.allowed(i, o)) cheapest = std::min(cheapest, objective.costs(i, o));
    require(cheapest < std::numeric_limits<double>::infinity(), "option mask: group ", i,
            " has no allowed option (every entry of row ", i, " is false)");
    for (Index o = 0; o < k; ++o)
      if (!objective.allowed(i, o)) out.costs(i, o) = cheapest;
  }
  return out;
}

}  // namespace tether
