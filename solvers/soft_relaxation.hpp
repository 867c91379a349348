// The soft relaxation the penalty and augmented-Lagrangian baselines share (spec rco.md,
// section 5): one loop, two multiplier schedules.
//
// Logits alpha (N x K), p_i = softmax(alpha_i), expected cost C(alpha) = sum_ik c_ik p_ik,
// residual h = C(alpha) - B. Both baselines minimise, with bias-corrected Adam on alpha,
//
//   F(alpha; lambda, rho) = L(p) + psi(h; lambda, rho),
//     BudgetSense::kEqual:   psi = lambda h + (rho / 2) h^2
//     BudgetSense::kAtMost:  psi = (max(0, lambda + rho h)^2 - lambda^2) / (2 rho)
//                            (the Powell-Hestenes-Rockafellar form; lambda h when rho = 0),
//
// whose gradient is, with n_ik = p_ik (c_ik - E_i) = dC/dalpha_ik the budget normal,
//
//   dF/dalpha = J_softmax(p)^T dL/dY + psi'(h) n = J_softmax(p)^T (dL/dY + psi'(h) c),
//     psi'(h) = lambda + rho h   (kEqual),   max(0, lambda + rho h)   (kAtMost),
//
// since n = J_softmax(p)^T c: one vector-Jacobian product serves both terms.
// The penalty method is lambda = 0, rho = 2 mu held fixed; the augmented Lagrangian updates
// lambda (and possibly rho) between inner solves. The schedule is the only difference.
//
// The loop: alpha_0 = 0 (uniform p) or given; at each step t the loss and gradient at alpha_t,
// the schedule's update, one Adam step, rows recentred (softmax is shift invariant per row, so
// the logits never drift towards overflow). The final logits are rounded to a hard answer:
//   SoftRounding::kArgmax    argmax of each row (what penalty methods do; may break the budget);
//   SoftRounding::kKnapsack  the multiple-choice knapsack DP on log p within the budget (the
//                            answer is always within budget).
//
// Measured caveat (Adam's, not the relaxation's): on a deterministic smooth loss the iterate
// converges to round-off (the two-group quadratic of tests/baselines_test.cpp: |C - C*| ~ 1e-16
// by step 1000 at lr 0.1), but once the gradient stays at round-off, v decays with beta2 until
// the step lr g / (sqrt(v) + eps) overshoots the curvature and the iterate is kicked out again
// (errors of 1e-5 to 1e-2 by step 10000). Long runs show such late spikes; keep runs to the
// steps they need, or use round_every to keep the best rounded answer.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <tether/core/adam.hpp>
#include <tether/core/callbacks.hpp>
#include <tether/core/concepts.hpp>
#include <tether/solvers/rco.hpp>

namespace tether {

/// How the logits of a relaxation become a hard assignment.
enum class SoftRounding {
  kArgmax,    ///< argmax of each row of p; may exceed the budget
  kKnapsack,  ///< the knapsack DP maximising sum_i log p_{i,h(i)} within the budget
};

/// F and its parts at one alpha.
struct RelaxedValue {
  double value = 0.0;          ///< F = L(p) + psi(h)
  double loss = 0.0;           ///< L(p), the soft loss
  double expected_cost = 0.0;  ///< C(alpha)
};

/// F(alpha; lambda, rho) of the header comment and, when grad_alpha is given, dF/dalpha (resized
/// to N x K). nullopt when the loss or its gradient is NaN/Inf. Throws ShapeError when alpha is
/// not N x K.
std::optional<RelaxedValue> relaxed_objective(const AssignmentObjective& objective,
                                              const Matrix& alpha, double lambda, double rho,
                                              Matrix* grad_alpha);

namespace assignment {

/// What a soft-relaxation solver configures of the shared loop.
struct SoftRelaxationSettings {
  AdamOptions adam;
  int steps = 300;
  const Matrix* initial_logits = nullptr;  ///< nullptr: alpha = 0 (uniform p)
  const char* options_name = "options";    ///< for messages: "PenaltyOptions"
  SoftRounding rounding = SoftRounding::kArgmax;
  double units_per_cost = 10000.0;  ///< knapsack grid for kKnapsack (non-integer costs)
  /// Every this many steps (and at the end) the iterate is rounded and, if within budget, its
  /// true loss evaluated; the best such answer competes with the final rounding. 0: only the
  /// final iterate is rounded (the faithful baseline).
  int round_every = 0;
};

/// The settings from the fields the penalty and augmented-Lagrangian options share (Adam's, init,
/// initial_logits, rounding, units_per_cost, round_every), with the step count given.
template <class Options>
SoftRelaxationSettings soft_settings_of(const Options& o, int steps, const char* options_name) {
  SoftRelaxationSettings s;
  s.adam = {
      .learning_rate = o.learning_rate, .beta1 = o.beta1, .beta2 = o.beta2, .epsilon = o.epsilon};
  s.steps = steps;
  s.initial_logits = o.init == Options::Init::kGiven ? &o.initial_logits : nullptr;
  s.options_name = options_name;
  s.rounding = o.rounding;
  s.units_per_cost = o.units_per_cost;
  s.round_every = o.round_every;
  return s;
}

/// Checks the shared fields (Adam's, steps, units_per_cost, round_every); `why` names the field.
bool soft_settings_valid(const SoftRelaxationSettings& settings, std::string* why);

/// The multiplier lambda and weight rho used at each step, and how they change.
struct MultiplierSchedule {
  double lambda = 0.0;
  double rho = 0.0;
  /// Called at every iterate t >= 1 (before its gradient is taken) and once more at the final
  /// iterate (t = steps), with the residual h_t = C(alpha_t) - B; may change lambda and rho.
  /// Empty: fixed (the penalty method).
  std::function<void(int t, double residual, double& lambda, double& rho)> update;
};

/// Runs the loop of the header comment and rounds its final logits. History: one row per step
/// t describing alpha_t (loss = L(p_t), constraint_residual = C(alpha_t) - B, best_loss = the
/// best true loss of a rounded within-budget answer so far when round_every > 0, else the best
/// soft loss L(p) so far). max_expected_cost_drift = max |C - B| over every iterate, the final
/// one included. Stops with kNumericalError (keeping the last iterate whose loss and gradient
/// were finite) on NaN/Inf; callbacks can stop it.
AssignmentResult run_soft_relaxation(const AssignmentObjective& objective,
                                     const SoftRelaxationSettings& settings,
                                     MultiplierSchedule& schedule, const CallbackSet& callbacks);

}  // namespace assignment
}  // namespace tether
