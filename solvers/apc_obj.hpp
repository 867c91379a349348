// APC-Obj: the exact unconstrained form of sample-based TV-TRPO (specs/fiberpo.md, section 2;
// "Fibration Policy Optimization", arXiv 2603.08239, section on APC).
//
// Problem: maximise the sampled surrogate (1/T) sum_i r_i A_i subject to a total-variation trust
// region per state, (1/T_s) sum_{i at s} |r_i - 1| <= delta. APC-Obj folds the constraint into
// the objective by clipping each token's deviation to the budget the other tokens at its state
// leave it:
//   J_APC = (1/T) sum_i [ clip(r_i - 1, B_i) A_i + A_i ],   clip(x, B) = clip(x, -B+, B+),
//   B+ = max(B, 0),  B_i = T_s delta - sum_{j != i, s_j = s_i} |r_j - 1|,
// T = tokens in the batch, T_s = tokens sampled at state s (TokenBatch::state; any ids).
// In the spec's frame: mu_i = 1/T, G_i = 1 + clip(r_i - 1, B_i).
//
// Regimes (per token; the first two are per state, since |r_i - 1| <= B_i holds exactly when
// the state's empirical TV (1/T_s) sum |r - 1| <= delta):
//   pass-through  B_i > 0 and |r_i - 1| <= B_i: G_i = r_i, dJ/dr_i = A_i / T;
//   rollback      0 < B_i < |r_i - 1|: G_i - 1 = sign(r_i - 1) B_i, so dJ/dr_i = 0 and every
//                 other token j at the state gets -sign(r_j - 1) sign(r_i - 1) A_i / T (spending
//                 the state's budget elsewhere pulls this token back);
//   zeroed        B_i <= 0: G_i = 1, no gradient through the term.
// Exact gradient (no stop-gradients), with D_s = sum over rollback tokens i at s of
// sign(r_i - 1) A_i:
//   dJ/dr_j = (1/T) [ A_j 1[j pass-through] - sign(r_j - 1) (D_s - 1[j rollback] sign(r_j-1) A_j) ]
// and dJ/d log pi_j = r_j dJ/dr_j. Choices where the spec is silent: |x| is differentiated as
// sign(x) with sign(0) = 0 (a subgradient; r_j = 1 exactly is a kink); B_i = 0 counts as zeroed
// (clip(x, 0) = 0 for all x, derivative 0); the boundary |r_i - 1| = B_i counts as
// pass-through (one-sided derivative). APC has no trajectory-level gate: GateValue::trajectories
// is all pass-through.
//
// Check (the paper's single-state example, tests/ratio_gates_test.cpp): counts n = (1, 2, 1),
// A = (1, 0, -2), delta = 0.2: the maximiser over normalised ratios is the TV linear program's
// Delta = r - 1 = (0.4, 0, -0.4), value 0.05.
//
// Cost: O(T log T) per evaluate (state ids are compressed by sorting; any ids are allowed).
//
//   tether::ApcObjGate apc({.delta = 0.2});
//   tether::GateValue v = apc.evaluate(batch, new_log_prob);
#pragma once

#include <string>
#include <tether/core/policy_batch.hpp>
#include <tether/core/types.hpp>

namespace tether {

class ApcObjGate {
 public:
  struct Options {
    /// Per-state TV budget. No official default (the paper is theory only); 0.01 is the order
    /// the paper's GSPO analysis suggests for delta. Finite, >= 0.
    double delta = 0.01;
    bool is_valid(std::string* why) const;
  };

  ApcObjGate() : ApcObjGate(Options{}) {}
  explicit ApcObjGate(const Options& options);

  GateValue evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// The same into `out`, its gradient's storage reused (see PpoClipGate).
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// The same on a batch validated once (PolicyGradientSolver's calls): only the new log-probs
  /// are checked. The same bits.
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// G_i = 1 + clip(r_i - 1, B_i).
  Vector gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// Jacobian products with J = dG/dr (ratio space, G = gated_ratios()). J is block diagonal
  /// over STATES (TokenBatch::state), not trajectories. Row i by regime: pass-through,
  /// dG_i/dr_j = delta_ij; rollback, G_i = 1 + sign(r_i - 1) B_i, so dG_i/dr_j =
  /// -sign(r_i - 1) sign(r_j - 1) for j != i at i's state and 0 for j = i; zeroed, row 0. The
  /// conventions are evaluate's (sign(0) = 0, B_i = 0 zeroed, |r_i - 1| = B_i pass-through), so
  /// evaluate's gradient is r .* vjp(A / T). jvp returns J v, vjp J^T w; input is checked as in
  /// evaluate, v / w must have one entry per token. O(T log T).
  Vector jvp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef v) const;
  Vector vjp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef w) const;
  const Options& options() const { return options_; }

 private:
  Options options_;
};

}  // namespace tether
