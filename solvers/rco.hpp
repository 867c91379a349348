// RCO: Riemannian Constrained Optimization of an assignment under an exact budget.
// Helcig and Alistarh, "Model Compression with Exact Budget Constraints via Riemannian
// Manifolds", arXiv 2605.00649. Reference code: IST-DASLab/RCO (PyTorch).
//
// Problem: choose one of K options h(i) for each of N groups to minimise L(h) (any function of
// the whole assignment, given as loss(Y, dL/dY) on one-hot or soft N x K matrices Y) subject to
// sum_i c_{i,h(i)} <= B. Relaxation: logits alpha, p_i = softmax(alpha_i), expected cost
// C(alpha) = B held exactly on the budget manifold (manifolds/budget_manifold.hpp).
//
// One iteration t of T (spec rco.md section 3):
//   tau_t = tau0 (tau_min / tau0)^(t / (T - 1))
//   g = (1/S) sum_s J_softmax(z_s)^T dL/dY(onehot(h_s)) / tau_t,  z_s = (alpha + G_s) / tau_t,
//       G_s ~ Gumbel iid, h_s = the budget-feasible assignment maximising sum_i z_{i,h(i)} (the
//       multiple-choice knapsack DP): the forward pass is hard, the backward soft
//       (straight-through).
//   g <- g - (<g, n> / <n, n>) n                 tangent projection
//   alpha <- alpha + Adam(g)                      bias-corrected Adam
//   alpha <- alpha + t c,  C(alpha + t c) = B     retraction (safeguarded Newton, 1e-12)
//   m <- projection of Adam's first moment        transport
// Options masked per group (the problem's option_mask()) keep logit -inf: probability 0, never
// sampled, never moved; the knapsack DP treats their value -inf as forbidden.
// Final answer: the lower-loss of (a) the DP on log p at fine resolution and (b) the best hard
// assignment sampled during the run; both are reported.
//
// Defaults (the paper's): lr 0.1, betas 0.9 / 0.999, eps 1e-8, 200 steps, 4 samples,
// tau 1.0 -> 0.01 (quantization; 0.05 for pruning), seed 42.
// Beyond the reference (off by default, so the faithful method stays the default): antithetic
// Gumbel pairs, a deterministic soft-forward variant for smooth objectives, and a budget-keeping
// local-search polish of the final answer on the true loss.
//
//   tether::RcoSolver solver({.steps = 300});
//   tether::AssignmentResult r = solver.minimize(problem, tether::callbacks::ProgressBar{});
#pragma once

#include <cstdint>
#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/concepts.hpp>
#include <tether/core/knapsack.hpp>
#include <tether/core/result.hpp>
#include <tether/manifolds/budget_manifold.hpp>

namespace tether {

/// What every assignment solver (RCO and the baselines) returns.
struct AssignmentResult {
  Assignment assignment;  ///< the answer: hard, within budget unless `budget_violation` > 0
  double loss = 0.0;      ///< true loss of `assignment`
  double cost = 0.0;      ///< true cost of `assignment`
  double budget = 0.0;
  double budget_violation = 0;  ///< cost - budget (<= 0: feasible)

  Assignment best_seen;  ///< best hard assignment evaluated during the run
  double best_seen_loss = 0.0;
  Assignment final_dp;  ///< DP on log p (RCO) or rounding of the relaxation (baselines)
  double final_dp_loss = 0.0;
  double final_dp_gap = 0.0;  ///< LP bound gap of that DP answer in log-probability units

  Matrix logits;                         ///< final logits (last finite iterate)
  double expected_cost = 0.0;            ///< C(logits)
  double max_expected_cost_drift = 0.0;  ///< max over iterates of |C - B| (NaN if not tracked)

  StopReason status = StopReason::kIterationLimit;
  std::string message;
  int iterations = 0;
  double seconds = 0.0;
  long loss_evaluations = 0;
  History history;
};

struct RcoOptions {
  enum class Estimator { kGumbelStraightThrough, kDeterministicSoft };
  enum class Init { kUniform, kGiven, kSensitivities };

  double learning_rate = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  int steps = 200;
  int samples = 4;          ///< Gumbel samples per step
  bool antithetic = false;  ///< pair sample U with 1 - U (samples must be even)
  double tau_initial = 1.0;
  double tau_final = 0.01;
  std::uint64_t seed = 42;
  Estimator estimator = Estimator::kGumbelStraightThrough;
  Init init = Init::kUniform;
  Matrix initial_logits{};                ///< Init::kGiven
  Matrix sensitivities{};                 ///< Init::kSensitivities: alpha_ik = -log(distortion_ik)
  double units_per_cost = 1000.0;         ///< DP grid in the sampling loop (non-integer costs)
  double final_units_per_cost = 10000.0;  ///< DP grid of the final answer
  RetractionOptions retraction{};
  /// Budget-keeping local search on the true loss after the run (sweeps; 0 = faithful).
  int polish_sweeps = 0;

  bool is_valid(std::string* why) const;
};

class RcoSolver {
 public:
  explicit RcoSolver(const RcoOptions& options = {});
  const RcoOptions& options() const { return options_; }

  template <AssignmentProblem P, class... Callbacks>
  AssignmentResult minimize(const P& problem, Callbacks&&... callbacks) const {
    return minimize(make_objective(problem), CallbackSet(callbacks...));
  }
  AssignmentResult minimize(const AssignmentObjective& objective,
                            const CallbackSet& callbacks = CallbackSet()) const;

 private:
  RcoOptions options_;
};

}  // namespace tether
