#include <algorithm>
#include <cmath>
#include <limits>
#include <tether/core/concepts.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/knapsack.hpp>

namespace tether {

namespace {

bool all_integer(const Matrix& costs) {
  for (Index j = 0; j < costs.size(); ++j) {
    const double c = costs.data()[j];
    if (c != std::round(c) || c > 2.0e9) return false;
  }
  return true;
}

// Values may be -inf (the option is forbidden: a masked option, or one with zero probability);
// NaN and +inf are refused, and every group needs at least one allowed option.
void check_values(const Matrix& values, Index n, Index k) {
  require<ShapeError>(values.rows() == n && values.cols() == k,
                      "MultipleChoiceKnapsack: values are ", values.rows(), " x ", values.cols(),
                      ", costs are ", n, " x ", k);
  for (Index i = 0; i < n; ++i) {
    bool any_allowed = false;
    for (Index o = 0; o < k; ++o) {
      const double v = values(i, o);
      require(!std::isnan(v) && v != std::numeric_limits<double>::infinity(),
              "MultipleChoiceKnapsack: values(", i, ", ", o, ") must be finite or -inf, got ", v);
      any_allowed = any_allowed || std::isfinite(v);
    }
    require(any_allowed, "MultipleChoiceKnapsack: every option of group ", i,
            " is forbidden (value -inf)");
  }
}

}  // namespace

MultipleChoiceKnapsack::MultipleChoiceKnapsack(const Matrix& costs, double budget,
                                               const KnapsackOptions& options)
    : costs_(costs), budget_(budget) {
  validate_budget(costs, budget, BudgetSense::kAtMost);
  require(costs.cols() <= 256,
          "MultipleChoiceKnapsack: K must be <= 256 (one byte per choice), got ", costs.cols());
  const Index n = costs.rows(), k = costs.cols();
  exact_grid_ = options.use_exact_integer_costs && all_integer(costs);
  fill_slack_ = options.fill_slack;
  units_per_cost_ = exact_grid_ ? 1.0 : options.units_per_cost;
  require(std::isfinite(units_per_cost_) && units_per_cost_ > 0.0,
          "KnapsackOptions::units_per_cost must be finite and > 0, got ", units_per_cost_);

  // Costs rounded up, capacity rounded down: grid feasibility implies true feasibility.
  const long double r = units_per_cost_;
  grid_costs_.resize(static_cast<std::size_t>(n * k));
  std::int64_t min_total = 0, max_total = 0;
  for (Index i = 0; i < n; ++i) {
    std::int64_t row_min = std::numeric_limits<std::int64_t>::max(), row_max = 0;
    for (Index o = 0; o < k; ++o) {
      const long double scaled = static_cast<long double>(costs(i, o)) * r;
      require(scaled < 2.0e9L, "MultipleChoiceKnapsack: costs(", i, ", ", o,
              ") x units_per_cost = ", static_cast<double>(scaled),
              " exceeds the grid limit 2e9 units");
      auto g = static_cast<std::int64_t>(std::ceil(scaled));
      while (static_cast<long double>(g) / r < static_cast<long double>(costs(i, o))) ++g;
      grid_costs_[static_cast<std::size_t>(i * k + o)] = static_cast<std::int32_t>(g);
      row_min = std::min(row_min, g);
      row_max = std::max(row_max, g);
    }
    min_total += row_min;
    max_total += row_max;
  }
  long double cap = std::floor(static_cast<long double>(budget) * r);
  while (cap / r > static_cast<long double>(budget)) cap -= 1;
  // Only the capacity above the cheapest assignment matters, and none beyond the dearest one.
  const long double above_min = std::min(cap, static_cast<long double>(max_total)) - min_total;
  if (above_min < 0) {
    capacity_ = -1;  // grid infeasible: solve() falls back to the cheapest assignment
  } else {
    require(above_min + 1 <= static_cast<long double>(options.max_units),
            "MultipleChoiceKnapsack: the grid needs ", static_cast<double>(above_min + 1),
            " capacity units, more than KnapsackOptions::max_units = ", options.max_units,
            "; lower units_per_cost");
    capacity_ = static_cast<std::int64_t>(above_min);
  }
  // Shift each row by its cheapest grid cost so the DP runs over the capacity above the minimum.
  for (Index i = 0; i < n; ++i) {
    auto* row = &grid_costs_[static_cast<std::size_t>(i * k)];
    const std::int32_t m = *std::min_element(row, row + k);
    for (Index o = 0; o < k; ++o) row[o] -= m;
  }
  if (capacity_ >= 0) {
    best_.resize(static_cast<std::size_t>(capacity_ + 1));
    next_.resize(static_cast<std::size_t>(capacity_ + 1));
    argmax_.resize(static_cast<std::size_t>(capacity_ + 1));
    choice_.resize(static_cast<std::size_t>(n * (capacity_ + 1)));
  }
}

KnapsackResult MultipleChoiceKnapsack::solve_without_bound(const Matrix& values) {
  const Index n = costs_.rows(), k = costs_.cols();
  check_values(values, n, k);
  KnapsackResult res;
  res.exact_grid = exact_grid_;
  res.assignment.assign(static_cast<std::size_t>(n), 0);
  if (capacity_ < 0) {
    // The budget is feasible (>= sum of row minima) but not at grid resolution: the cheapest
    // assignment (best value among cheapest ties) is the only safe answer.
    res.grid_fallback = true;
    for (Index i = 0; i < n; ++i) {
      int best_k = -1;
      for (Index o = 0; o < k; ++o) {
        if (!std::isfinite(values(i, o))) continue;  // forbidden
        if (best_k < 0 || costs_(i, o) < costs_(i, best_k) ||
            (costs_(i, o) == costs_(i, best_k) && values(i, o) > values(i, best_k)))
          best_k = static_cast<int>(o);
      }
      res.assignment[static_cast<std::size_t>(i)] = best_k;
    }
  } else {
    const std::int64_t cap = capacity_;
    constexpr double kMinusInf = -std::numeric_limits<double>::infinity();
    std::fill(best_.begin(), best_.end(), 0.0);  // no groups yet: value 0 at every capacity
    for (Index i = 0; i < n; ++i) {
      std::fill(next_.begin(), next_.end(), kMinusInf);
      std::uint8_t* choice = &choice_[static_cast<std::size_t>(i * (cap + 1))];
      const std::int32_t* gc = &grid_costs_[static_cast<std::size_t>(i * k)];
      // The argmax is kept in doubles so the inner loops are all-double and vectorise; it is
      // narrowed to one byte per unit afterwards.
      double* arg = argmax_.data();
      for (Index o = 0; o < k; ++o) {
        const std::int64_t c = gc[o];
        const double v = values(i, o);
        const Index len = static_cast<Index>(cap + 1 - c);
        if (len <= 0) continue;
        // next[u] = max(next[u], best[u - c] + v) for u >= c, remembering which option won.
        Eigen::Map<Eigen::ArrayXd> nx(next_.data() + c, len), am(arg + c, len);
        const auto cand = Eigen::Map<const Eigen::ArrayXd>(best_.data(), len) + v;
        am = (cand > nx).select(static_cast<double>(o), am);
        nx = nx.max(cand);
      }
      for (std::int64_t u = 0; u <= cap; ++u) choice[u] = static_cast<std::uint8_t>(arg[u]);
      best_.swap(next_);
    }
    require<InfeasibleError>(best_[static_cast<std::size_t>(cap)] > kMinusInf,
                             "MultipleChoiceKnapsack: no assignment of allowed options (values "
                             "> -inf) fits the budget ",
                             budget_, " on the grid");
    std::int64_t u = cap;
    for (Index i = n - 1; i >= 0; --i) {
      const int o = choice_[static_cast<std::size_t>(i * (cap + 1) + u)];
      res.assignment[static_cast<std::size_t>(i)] = o;
      u -= grid_costs_[static_cast<std::size_t>(i * k + o)];
    }
  }
  res.cost = assignment_cost(costs_, res.assignment);
  require<InfeasibleError>(!res.grid_fallback || res.cost <= budget_,
                           "MultipleChoiceKnapsack: the cheapest allowed assignment costs ",
                           res.cost, ", over the budget ", budget_);
  if (fill_slack_ && !exact_grid_) {
    // Greedy on the true costs: the best-gain single-group change that still fits, repeatedly.
    for (Index pass = 0; pass < n; ++pass) {
      const double slack = budget_ - res.cost;
      double best_gain = 0.0;
      Index best_i = -1, best_o = -1;
      for (Index i = 0; i < n; ++i) {
        const int h = res.assignment[static_cast<std::size_t>(i)];
        for (Index o = 0; o < k; ++o) {
          const double gain = values(i, o) - values(i, h);
          if (gain > best_gain && costs_(i, o) - costs_(i, h) <= slack) {
            best_gain = gain;
            best_i = i;
            best_o = o;
          }
        }
      }
      if (best_i < 0) break;
      const int previous = res.assignment[static_cast<std::size_t>(best_i)];
      res.assignment[static_cast<std::size_t>(best_i)] = static_cast<int>(best_o);
      const double cost = assignment_cost(costs_, res.assignment);  // exact, not incremental
      if (cost > budget_) {
        res.assignment[static_cast<std::size_t>(best_i)] = previous;
        break;
      }
      res.cost = cost;
      ++res.slack_moves;
    }
  }
  res.value = 0.0;
  for (Index i = 0; i < n; ++i) res.value += values(i, res.assignment[static_cast<std::size_t>(i)]);
  return res;
}

KnapsackResult MultipleChoiceKnapsack::solve(const Matrix& values) {
  KnapsackResult res = solve_without_bound(values);
  res.lp_upper_bound = lp_upper_bound(values);
  res.gap = res.lp_upper_bound - res.value;
  return res;
}

double MultipleChoiceKnapsack::lp_upper_bound(const Matrix& values) const {
  const Index n = costs_.rows(), k = costs_.cols();
  check_values(values, n, k);
  // Each group starts at its cheapest option (best value among ties); the LP then buys the
  // increments along the upper concave hull of (cost, value), steepest slope first.
  struct Increment {
    double slope, dcost, dvalue;
  };
  std::vector<Increment> increments;
  std::vector<int> order(static_cast<std::size_t>(k));
  std::vector<int> hull;
  double value = 0.0, remaining = budget_;
  for (Index i = 0; i < n; ++i) {
    for (int o = 0; o < k; ++o) order[static_cast<std::size_t>(o)] = o;
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      if (costs_(i, a) != costs_(i, b)) return costs_(i, a) < costs_(i, b);
      return values(i, a) > values(i, b);
    });
    hull.clear();
    for (int o : order) {
      if (!std::isfinite(values(i, o))) continue;                             // forbidden option
      if (!hull.empty() && costs_(i, o) == costs_(i, hull.back())) continue;  // tie: worse value
      if (!hull.empty() && values(i, o) <= values(i, hull.back())) continue;  // dominated
      // Pop points that fall below the chord to the new point (keep the hull concave).
      while (hull.size() >= 2) {
        const int a = hull[hull.size() - 2], b = hull.back();
        const double s_ab = (values(i, b) - values(i, a)) / (costs_(i, b) - costs_(i, a));
        const double s_bo = (values(i, o) - values(i, b)) / (costs_(i, o) - costs_(i, b));
        if (s_bo >= s_ab)
          hull.pop_back();
        else
          break;
      }
      hull.push_back(o);
    }
    value += values(i, hull.front());
    remaining -= costs_(i, hull.front());
    for (std::size_t j = 1; j < hull.size(); ++j) {
      const double dc = costs_(i, hull[j]) - costs_(i, hull[j - 1]);
      const double dv = values(i, hull[j]) - values(i, hull[j - 1]);
      increments.push_back({dv / dc, dc, dv});
    }
  }
  std::sort(increments.begin(), increments.end(),
            [](const Increment& a, const Increment& b) { return a.slope > b.slope; });
  for (const Increment& inc : increments) {
    if (remaining <= 0.0) break;
    if (inc.dcost <= remaining) {
      value += inc.dvalue;
      remaining -= inc.dcost;
    } else {
      value += inc.slope * remaining;
      remaining = 0.0;
    }
  }
  return value;
}

}  // namespace tether
