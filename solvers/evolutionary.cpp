#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <tether/core/errors.hpp>
#include <tether/core/knapsack.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/assignment_common.hpp>
#include <tether/solvers/evolutionary.hpp>
#include <vector>

namespace tether {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Individual {
  Assignment h;
  double loss = 0.0;
  double cost = 0.0;
};

/// Each group's allowed options ordered by cost (ties by index): option_at(i, l) is level l of
/// group i, for l = 0..top(i); masked options have no level.
class Levels {
 public:
  explicit Levels(const AssignmentObjective& objective) : k_(objective.costs.cols()) {
    const Matrix& costs = objective.costs;
    const Index n = costs.rows();
    option_.assign(static_cast<std::size_t>(n * k_), -1);
    level_.assign(static_cast<std::size_t>(n * k_), -1);
    top_.resize(static_cast<std::size_t>(n));
    std::vector<int> order;
    for (Index i = 0; i < n; ++i) {
      order.clear();
      for (int o = 0; o < static_cast<int>(k_); ++o)
        if (objective.is_allowed(i, o)) order.push_back(o);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return costs(i, a) < costs(i, b); });
      for (std::size_t l = 0; l < order.size(); ++l) {
        option_[static_cast<std::size_t>(i * k_) + l] = order[l];
        level_[static_cast<std::size_t>(i * k_ + order[l])] = static_cast<int>(l);
      }
      top_[static_cast<std::size_t>(i)] = static_cast<int>(order.size()) - 1;
    }
  }
  int level(Index i, int option) const { return level_[static_cast<std::size_t>(i * k_ + option)]; }
  int option_at(Index i, int level) const {
    return option_[static_cast<std::size_t>(i * k_ + level)];
  }
  int top(Index i) const { return top_[static_cast<std::size_t>(i)]; }

 private:
  Index k_;
  std::vector<int> option_, level_, top_;
};

}  // namespace

bool EvolutionaryOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (generations < 1) return fail(detail::concat("generations must be >= 1, got ", generations));
  if (offspring < 1) return fail(detail::concat("offspring must be >= 1, got ", offspring));
  if (survivors < 1) return fail(detail::concat("survivors must be >= 1, got ", survivors));
  if (survivors > offspring)
    return fail(
        detail::concat("survivors must be <= offspring = ", offspring, ", got ", survivors));
  if (min_mutation_pairs < 1)
    return fail(detail::concat("min_mutation_pairs must be >= 1, got ", min_mutation_pairs));
  if (max_mutation_pairs < min_mutation_pairs)
    return fail(detail::concat("max_mutation_pairs must be >= min_mutation_pairs = ",
                               min_mutation_pairs, ", got ", max_mutation_pairs));
  if (max_mutation_attempts < 1)
    return fail(detail::concat("max_mutation_attempts must be >= 1, got ", max_mutation_attempts));
  if (!(single_move_probability >= 0.0 && single_move_probability <= 1.0))
    return fail(
        detail::concat("single_move_probability must be in [0, 1], got ", single_move_probability));
  if (max_loss_evaluations < 0)
    return fail(detail::concat("max_loss_evaluations must be >= 0, got ", max_loss_evaluations));
  if (!(units_per_cost > 0.0) || !std::isfinite(units_per_cost))
    return fail(detail::concat("units_per_cost must be finite and > 0, got ", units_per_cost));
  return true;
}

EvolutionarySolver::EvolutionarySolver(const EvolutionaryOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "EvolutionaryOptions: ", why);
}

AssignmentResult EvolutionarySolver::minimize(const AssignmentObjective& input,
                                              const CallbackSet& callbacks) const {
  const auto t_start = Clock::now();
  const AssignmentObjective objective = with_normalized_mask(input);  // masked: never a level
  const EvolutionaryOptions& o = options_;
  BudgetData data;
  if (auto trivial = assignment::check_and_solve_trivial(objective, &data)) {
    trivial->logits = Matrix();
    trivial->max_expected_cost_drift = std::numeric_limits<double>::quiet_NaN();
    trivial->seconds = seconds_since(t_start);
    return *trivial;
  }
  const Matrix& costs = objective.costs;
  const Index n = costs.rows(), k = costs.cols();
  const double budget = objective.budget;
  const Levels levels(objective);

  // ---- the start: given, or the dearest affordable assignment -----------------------------
  Assignment start = o.initial_assignment;
  if (!start.empty()) {
    require<ShapeError>(static_cast<Index>(start.size()) == n,
                        "EvolutionaryOptions::initial_assignment has ", start.size(),
                        " entries, costs have N = ", n, " groups");
    for (std::size_t i = 0; i < start.size(); ++i)
      require(start[i] >= 0 && start[i] < k, "EvolutionaryOptions::initial_assignment[", i,
              "] must be in [0, ", k, "), got ", start[i]);
    for (std::size_t i = 0; i < start.size(); ++i)
      require(objective.is_allowed(static_cast<Index>(i), start[i]),
              "EvolutionaryOptions::initial_assignment[", i, "] = ", start[i],
              " is a masked option");
    const double cost = assignment_cost(costs, start);
    require<InfeasibleError>(cost <= budget, "EvolutionaryOptions::initial_assignment costs ", cost,
                             ", over the budget ", budget);
  } else {
    MultipleChoiceKnapsack dp(costs, budget, {.units_per_cost = o.units_per_cost});
    Matrix values = costs;  // the dearest affordable assignment; masked options forbidden
    if (objective.masked())
      for (Index i = 0; i < n; ++i)
        for (Index o = 0; o < k; ++o)
          if (!objective.allowed(i, o)) values(i, o) = -std::numeric_limits<double>::infinity();
    start = dp.solve_without_bound(values).assignment;
  }

  AssignmentResult result;
  result.budget = budget;
  result.status = StopReason::kIterationLimit;
  auto loss_of = [&](const Assignment& h) {
    ++result.loss_evaluations;
    return assignment::hard_loss(objective, h);
  };
  const std::optional<double> start_loss = loss_of(start);
  result.final_dp = start;
  result.final_dp_loss = start_loss.value_or(std::numeric_limits<double>::quiet_NaN());
  std::vector<Individual> population;
  if (start_loss) {
    population.push_back({start, *start_loss, assignment_cost(costs, start)});
  } else {
    result.status = StopReason::kNumericalError;
    result.message = "the loss of the starting assignment is NaN/Inf";
  }

  // ---- one offspring: level-switch pairs on a random survivor, redrawn until feasible ------
  Rng rng(o.seed);
  std::vector<Individual> children;
  std::vector<Index> ups, downs;
  auto is_known = [&](const Assignment& h) {
    for (const Individual& p : population)
      if (p.h == h) return true;
    for (const Individual& c : children)
      if (c.h == h) return true;
    return false;
  };
  auto mutate = [&]() -> std::optional<Assignment> {
    const std::uint64_t pair_range =
        static_cast<std::uint64_t>(o.max_mutation_pairs - o.min_mutation_pairs + 1);
    for (int attempt = 0; attempt < o.max_mutation_attempts; ++attempt) {
      Assignment h = population[rng.index(population.size())].h;
      const int pairs = o.min_mutation_pairs + static_cast<int>(rng.index(pair_range));
      bool moved = true;
      for (int m = 0; m < pairs && moved; ++m) {
        if (o.single_move_probability > 0.0 && rng.uniform() < o.single_move_probability) {
          // One group one level up or down, unpaired: uses or frees budget slack.
          const Index i = static_cast<Index>(rng.index(static_cast<std::uint64_t>(n)));
          int& hi = h[static_cast<std::size_t>(i)];
          const int level = levels.level(i, hi);
          if (levels.top(i) == 0) continue;  // a single allowed option: nowhere to move
          const bool up = level == 0 || (level < levels.top(i) && rng.index(2) == 0);
          hi = levels.option_at(i, up ? level + 1 : level - 1);
          continue;
        }
        ups.clear();
        for (Index i = 0; i < n; ++i)
          if (levels.level(i, h[static_cast<std::size_t>(i)]) < levels.top(i)) ups.push_back(i);
        if (ups.empty()) {
          moved = false;
          break;
        }
        const Index up = ups[rng.index(ups.size())];
        downs.clear();
        for (Index j = 0; j < n; ++j)
          if (j != up && levels.level(j, h[static_cast<std::size_t>(j)]) > 0) downs.push_back(j);
        if (downs.empty()) {
          moved = false;
          break;
        }
        const Index down = downs[rng.index(downs.size())];
        int& hu = h[static_cast<std::size_t>(up)];
        int& hd = h[static_cast<std::size_t>(down)];
        hu = levels.option_at(up, levels.level(up, hu) + 1);
        hd = levels.option_at(down, levels.level(down, hd) - 1);
      }
      if (!moved || assignment_cost(costs, h) > budget || is_known(h)) continue;
      return h;
    }
    return std::nullopt;
  };

  callbacks.begin(o.generations);
  const auto cap_reached = [&] {
    return o.max_loss_evaluations > 0 && result.loss_evaluations >= o.max_loss_evaluations;
  };
  for (int g = 0; g < o.generations && result.status == StopReason::kIterationLimit; ++g) {
    const auto t_iter = Clock::now();
    children.clear();
    bool capped = false;
    for (int c = 0; c < o.offspring; ++c) {
      if (cap_reached()) {
        capped = true;
        break;
      }
      std::optional<Assignment> h = mutate();
      if (!h) continue;
      const std::optional<double> loss = loss_of(*h);
      if (!loss) {
        result.status = StopReason::kNumericalError;
        result.message = detail::concat("the loss was NaN/Inf at generation ", g,
                                        "; the best answer so far is kept");
        break;
      }
      children.push_back({std::move(*h), *loss, 0.0});
      children.back().cost = assignment_cost(costs, children.back().h);
    }
    if (result.status == StopReason::kNumericalError) break;

    // (mu + lambda) selection; stable, so on equal loss the elder survives.
    for (Individual& c : children) population.push_back(std::move(c));
    std::stable_sort(population.begin(), population.end(),
                     [](const Individual& a, const Individual& b) { return a.loss < b.loss; });
    if (population.size() > static_cast<std::size_t>(o.survivors))
      population.resize(static_cast<std::size_t>(o.survivors));

    IterationRecord rec;
    rec.iteration = g;
    rec.loss = rec.best_loss = population.front().loss;
    rec.constraint_residual = population.front().cost - budget;
    rec.step_seconds = seconds_since(t_iter);
    result.history.push_back(rec);
    result.iterations = g + 1;
    if (capped || cap_reached()) {
      result.message = detail::concat("reached the cap of ", o.max_loss_evaluations,
                                      " loss evaluations in generation ", g);
      break;
    }
    if (children.empty()) {
      result.status = StopReason::kConverged;
      result.message = detail::concat("generation ", g, " found no new within-budget candidate in ",
                                      o.offspring, " x ", o.max_mutation_attempts,
                                      " mutation attempts: the neighbourhood is exhausted");
    }
    if (!callbacks.iteration(rec)) {
      result.status = StopReason::kStoppedByCallback;
      result.message = detail::concat("a callback stopped the run after generation ", g);
    }
  }
  if (result.status == StopReason::kIterationLimit && result.message.empty())
    result.message = detail::concat("ran the configured ", o.generations, " generations");

  if (!population.empty()) {
    result.assignment = result.best_seen = population.front().h;
    result.loss = result.best_seen_loss = population.front().loss;
  } else {
    result.assignment = result.best_seen = start;
    result.loss = result.best_seen_loss = result.final_dp_loss;
  }
  assignment::set_cost_fields(objective, result);
  result.expected_cost = result.cost;
  result.max_expected_cost_drift = std::numeric_limits<double>::quiet_NaN();
  result.final_dp_gap = std::numeric_limits<double>::quiet_NaN();
  result.seconds = seconds_since(t_start);
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace tether
