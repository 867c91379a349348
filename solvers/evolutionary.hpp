// Evolutionary search over hard assignments that all keep the budget, in the style of EvoPress
// (Sieberling, Kuznedelev, Kurtic and Alistarh, "EvoPress: Towards Optimal Dynamic Model
// Compression via Evolutionary Search", arXiv 2410.14649): a baseline of Helcig and Alistarh
// (arXiv 2605.00649) and the reference answer on non-separable problems (spec rco.md, 5 and 6).
//
// Problem: choose one of K options h(i) for each of N groups to minimise L(h) subject to
// sum_i c_{i,h(i)} <= B (L given as loss(Y, dL/dY) on one-hot N x K matrices Y; only values
// are used, never gradients).
//
// Levels: each group's options sorted by cost (ties by index); "up" is the next dearer level,
// "down" the next cheaper. Mutation: offspring = a parent drawn uniformly from the survivors,
// then m moves (m uniform in [min_mutation_pairs, max_mutation_pairs]), each
//   with probability 1 - single_move_probability, EvoPress's level switch: group i one level up
//     and a group j != i one level down;
//   with probability single_move_probability, one group one level up or down alone.
// A candidate over the budget, or equal to a survivor or an earlier offspring of the
// generation, is rejected and redrawn (at most max_mutation_attempts times per offspring), so
// every candidate evaluated is feasible.
// Why single moves (beyond EvoPress): there every level of every unit costs the same, so a
// switch keeps the cost exactly at B. Where groups' levels cost differently (c_ik = w_i b_k),
// switches cannot spend or free budget slack and the search stalls: on 60 random N = 8, K = 4
// separable instances x 3 seeds, switches alone reached the brute-force optimum in 3 of 90 runs,
// with single_move_probability = 0.25 in 179 of 180 (and 180 of 180 on a coupled family). With
// single moves every feasible assignment is reachable from every other (down to the cheapest,
// then up). single_move_probability = 0 is the faithful operator.
// Selection: (mu + lambda), elitist: the `survivors` lowest true losses of parents and offspring
// (stable: on ties the elder wins). The best answer never gets worse.
// Start: the feasible assignment that uses the budget best, i.e. the knapsack DP with values =
// costs (the dearest affordable assignment), or a user-given feasible assignment.
// Stops after `generations`, when the loss-evaluation cap is reached, when a whole generation
// finds no feasible new candidate (kConverged: the neighbourhood is exhausted), on
// a NaN/Inf loss (kNumericalError, keeping the best so far), or when a callback asks.
//
// Defaults: 200 generations, 16 offspring, 4 survivors, 1..3 moves per offspring, a quarter of
// them single moves, 100 attempts per offspring, seed 42, no evaluation cap.
//
// Result: assignment = best_seen (within budget), loss (true), cost, budget_violation <= 0,
// final_dp = the starting assignment and final_dp_loss its loss (final_dp_gap NaN),
// expected_cost = cost (there is no relaxation), logits empty, max_expected_cost_drift = NaN,
// loss_evaluations counted.
// History: one row per generation: loss = best_loss = the best loss so far,
// constraint_residual = its cost - B.
//
//   tether::EvolutionarySolver solver({.generations = 500, .seed = 7});
//   tether::AssignmentResult r = solver.minimize(problem);
#pragma once

#include <cstdint>
#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/concepts.hpp>
#include <tether/solvers/rco.hpp>

namespace tether {

struct EvolutionaryOptions {
  int generations = 200;
  int offspring = 16;          ///< lambda: new candidates per generation
  int survivors = 4;           ///< mu: parents kept per generation, <= offspring
  int min_mutation_pairs = 1;  ///< moves per offspring, drawn uniformly in [min, max]
  int max_mutation_pairs = 3;
  /// Chance that a move is one group up or down alone instead of an up/down pair (0: EvoPress).
  double single_move_probability = 0.25;
  int max_mutation_attempts = 100;  ///< redraws of an over-budget or duplicate candidate
  std::uint64_t seed = 42;
  long max_loss_evaluations = 0;    ///< cap on loss evaluations (the start's included); 0: none
  Assignment initial_assignment{};  ///< empty: the DP's dearest affordable assignment
  double units_per_cost = 10000.0;  ///< DP grid of the start (ignored for integer costs)

  /// True when every field is in its domain; otherwise `why` names the field and its bound.
  bool is_valid(std::string* why) const;
};

class EvolutionarySolver {
 public:
  /// Throws InvalidArgumentError naming the field when `options` is not valid.
  explicit EvolutionarySolver(const EvolutionaryOptions& options = {});
  const EvolutionaryOptions& options() const { return options_; }

  template <AssignmentProblem P, class... Callbacks>
  AssignmentResult minimize(const P& problem, Callbacks&&... callbacks) const {
    return minimize(make_objective(problem), CallbackSet(callbacks...));
  }
  AssignmentResult minimize(const AssignmentObjective& objective,
                            const CallbackSet& callbacks = CallbackSet()) const;

 private:
  EvolutionaryOptions options_;
};

}  // namespace tether
