// Token- and sequence-level ratio gates: PPO-clip, GRPO and GSPO, in the frame of
// specs/fiberpo.md, section 1: J = sum_i mu_i G(r)_i A_i with r_i = pi_theta(a_i|s_i) /
// pi_old(a_i|s_i) = exp(new_log_prob_i - old_log_prob_i). Each gate returns J and
// dJ / d log pi_theta(a_i|s_i) (the policy supplies d log pi / d theta; core/policy_batch.hpp).
//
//   PPO-clip  (Schulman et al. 2017, "Proximal Policy Optimization Algorithms"; spec section 5)
//     J = (1/T) sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i),  eps = 0.2.
//     Gradient in log pi_i: r_i A_i / T where the unclipped term is the min, else 0. Ties (r on
//     the clip boundary, or A = 0) count as unclipped: the gradient there is r A / T (one-sided).
//   GRPO  (Shao et al. 2024, "DeepSeekMath"; spec section 5)
//     J = sum_i mu_i [ min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i) - beta KL_i ],
//     mu_i = 1 / (|group(i)| T_tau(i)), |group| = trajectories in the prompt group, T_tau = tokens
//     in the trajectory. The spec's weights sum to the number of groups: J is the SUM over groups
//     of DeepSeekMath's per-group objective (one group: exactly DeepSeekMath's formula).
//     KL_i = k3 = pi_ref/pi - log(pi_ref/pi) - 1 with pi = pi_theta (not pi_old), reference
//     log-probs given per token (GrpoGate::Options::beta > 0 needs them; beta = 0, the default,
//     ignores them). d KL_i / d log pi_i = 1 - pi_ref / pi.
//     Advantages: grpo_advantages() turns one reward per trajectory into (R - mean_g R) / std_g R
//     per prompt group g, repeated on the trajectory's tokens. Rule for std = 0: a group whose
//     rewards are all equal (max == min, which is what std = 0 means) gets advantage exactly 0:
//     it carries no learning signal (the numerator is 0 too; this avoids 0/0 and the +-1 noise
//     that rounding in the mean would give). std is the population std (1/n, the spec's
//     "std R") unless Options::unbiased_std (1/(n-1), torch.std, what TRL uses); std_epsilon
//     (TRL: 1e-4) is added to the denominator of non-constant groups.
//   GSPO  (Zheng et al. 2025, "Group Sequence Policy Optimization"; spec section 5)
//     s_tau = (prod_t r_t)^(1/T_tau) = exp(mean_t log r_t),
//     J = (1/|Tj|) sum_tau min(s_tau Abar_tau, clip(s_tau, 1 - eps, 1 + eps) Abar_tau),
//     eps = 4e-4 (the GSPO paper's order), Abar_tau = mean of the trajectory's token advantages
//     (= the sequence advantage when, as in GSPO, it is repeated on every token). In the spec's
//     frame: G_i = the gated s_tau on every token of tau, mu_i = 1 / (|Tj| T_tau), the same
//     weights as FiberPO (|Tj| = trajectories in the batch); the spec leaves GSPO's weights open
//     and with it GSPO and FiberPO share one objective at r = 1 (value and gradient).
//     Gradient in log pi_t: s_tau Abar_tau / (|Tj| T_tau) where unclipped, else 0.
//     GSPO is not the identity in r (G_i = s_tau, not r_i): the pass-through identity G(r) = r
//     of spec section 6 does not apply to it; first-order agreement at r = 1 does.
//
// Regimes: PPO and GRPO gate tokens only; a token is zeroed where the clipped term is the min
// (its gradient is cut) and pass-through otherwise; they have no trajectory-level gate, so
// GateValue::trajectories is all pass-through. GSPO gates trajectories: a clipped trajectory
// is zeroed, with all its tokens. No gate here has a rollback regime.
//
// Input: batch.validate() must pass (ids sorted, one contiguous run each, finite advantages,
// old log-probs finite and <= 0), and new_log_prob must have one finite entry <= 0 per token
// (a probability in (0, 1]; -inf, a zero probability, makes r = 0 and log r undefined and is
// refused as well). Refusals throw ShapeError / InvalidArgumentError naming the argument.
//
//   tether::PpoClipGate ppo;                      // eps = 0.2
//   tether::GateValue v = ppo.evaluate(batch, new_log_prob);
//   v.objective; v.gradient;                      // J and dJ / d log pi_theta, per token
//   batch.advantage = tether::grpo_advantages(batch, rewards);   // one reward per trajectory
//   tether::GrpoGate grpo({.beta = 0.04}, reference_log_prob);
#pragma once

#include <limits>
#include <string>
#include <tether/core/policy_batch.hpp>
#include <tether/core/types.hpp>

namespace tether {

/// Refuses a batch that breaks TokenBatch's layout rules (TokenBatch::validate) or new log-probs
/// that are not one finite value <= 0 per token; `name` names the argument in the message.
/// Every gate calls it first.
void require_valid_gate_input(const TokenBatch& batch, ConstVectorRef new_log_prob,
                              const char* name = "new_log_prob");

/// The new log-probs' part of require_valid_gate_input alone (one finite value <= 0 per token of
/// the batch), for a batch validated before.
void require_valid_log_probs(const TokenBatch& batch, ConstVectorRef new_log_prob,
                             const char* name = "new_log_prob");
/// The same for `tokens` expected entries; `who` prefixes the messages (may be empty).
void require_valid_log_probs(ConstVectorRef new_log_prob, Index tokens, const char* name,
                             const char* who);
/// The refusal of a log-probability `value` at `entry` of `name`: not finite and <= 0.
[[noreturn]] void refuse_log_prob(const char* who, const char* name, Index entry, double value);
/// The refusal after a pass's in-pass check (log_probs_valid on its segments) failed: names the
/// first bad entry of new_log_prob (require_valid_log_probs); `who` names the caller should that
/// check disagree.
[[noreturn]] void refuse_checked_log_probs(const TokenBatch& batch, ConstVectorRef new_log_prob,
                                           const char* who);

/// The rule require_valid_log_probs checks, on log_prob[0..n) without naming anything: every
/// value finite and <= 0. Branch-free (it vectorises); a pass over many tokens may check its
/// segments while they are in cache and call require_valid_log_probs only when one fails.
inline bool log_probs_valid(const double* log_prob, Index n) {
  constexpr double kLowest = -std::numeric_limits<double>::max();
  unsigned ok = 1;
#pragma omp simd reduction(& : ok)
  for (Index i = 0; i < n; ++i) ok &= (log_prob[i] <= 0.0) & (log_prob[i] >= kLowest);
  return ok != 0;
}

/// Refuses a Jacobian-product argument `name` (v or w) that does not have one entry per token
/// (ShapeError); `where` names the method in the message.
void require_token_vector(const TokenBatch& batch, ConstVectorRef v, const char* where,
                          const char* name);

/// Trajectory run offsets of a (validated) batch: trajectory k is tokens [o[k], o[k+1]).
inline std::vector<Index> trajectory_offsets(const TokenBatch& batch) {
  return segment_offsets(batch.trajectory);
}

/// The ungated surrogate J = (1/T) sum_i r_i A_i: G(r) = r, J = identity. Every gate agrees
/// with it to first order at r = 1 (spec section 6); experiments use it as the reference
/// without a trust region. Every token and trajectory is pass-through.
class UngatedGate {
 public:
  GateValue evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// The same into `out`, its gradient's storage reused (see PpoClipGate).
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// The same on a batch validated once: only the new log-probs are checked. The same bits.
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  Vector gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  Vector jvp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef v) const;
  Vector vjp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef w) const;
};

/// PPO's clipped surrogate, token-mean weights (spec section 5).
class PpoClipGate {
 public:
  struct Options {
    double eps = 0.2;  ///< clip range [1 - eps, 1 + eps]; finite, >= 0
    bool is_valid(std::string* why) const;
  };

  PpoClipGate() : PpoClipGate(Options{}) {}
  explicit PpoClipGate(const Options& options);

  GateValue evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// The same into `out`, its gradient's storage reused when the batch size repeats: from about
  /// 1e7 tokens on, a fresh gradient's page faults cost more than the gate itself.
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// The same on a batch validated once (a training loop's epochs): only the new log-probs are
  /// checked. The same bits.
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// G_i: r_i where the unclipped term is the min, clip(r_i, 1 - eps, 1 + eps) where not.
  Vector gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// Jacobian products with J = dG/dr (in ratio space, G = gated_ratios()): J is diagonal,
  /// J_ii = 1 where the unclipped term is the min (ties, r on the boundary or A = 0, count as
  /// unclipped, as in evaluate) and 0 where the clipped term is. jvp returns J v, vjp J^T w
  /// (equal here); input is checked as in evaluate, v / w must have one entry per token.
  Vector jvp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef v) const;
  Vector vjp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef w) const;
  const Options& options() const { return options_; }

 private:
  Options options_;
};

/// GRPO: PPO-clip per token with weights 1 / (|group| T_tau), optional k3 KL to a reference.
class GrpoGate {
 public:
  struct Options {
    double eps = 0.2;   ///< clip range; finite, >= 0
    double beta = 0.0;  ///< KL coefficient; finite, >= 0 (> 0 needs reference log-probs)
    bool is_valid(std::string* why) const;
  };

  GrpoGate() : GrpoGate(Options{}) {}
  /// reference_log_prob: log pi_ref(a_i|s_i) per token (finite, <= 0); needed iff beta > 0.
  explicit GrpoGate(const Options& options, Vector reference_log_prob = Vector());

  GateValue evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// The same into `out`, its gradient's storage reused (see PpoClipGate; the per-token weights
  /// are computed into a vector of their own: the overload below takes them once per batch).
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// The same with the weights given: `weights` must be weights(batch) of this batch (a
  /// training loop computes them once per batch, as it takes segments() once for FiberPO).
  /// ShapeError unless it has one entry per token, InvalidArgumentError unless every entry is
  /// finite and > 0. The same bits as the overloads above.
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef weights,
                GateValue& out) const;
  /// The overloads above on a batch validated once (a training loop's epochs): the new log-probs
  /// (and given weights) are checked, not the batch. The same bits. (A refused shape leaves out
  /// as it was; a refused value, found inside the pass, leaves it empty.)
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef weights,
                GateValue& out) const;
  /// The PPO-clip G_i (the KL term is not a ratio gate and is not in G).
  Vector gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// J = dG/dr of the PPO-clip G above (the KL term is not in G, so not in J): diagonal, 1 where
  /// unclipped (ties included), 0 where clipped, exactly as PpoClipGate::jvp / vjp.
  Vector jvp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef v) const;
  Vector vjp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef w) const;
  /// The weights mu_i = 1 / (|group(i)| T_tau(i)).
  static Vector weights(const TokenBatch& batch);
  const Options& options() const { return options_; }
  const Vector& reference_log_prob() const { return reference_log_prob_; }

 private:
  /// evaluate on a validated batch with its weights (their size checked by the caller); the
  /// new log-probs are checked here, and the weights too with weights_refusal (its message).
  void surrogate(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef weights,
                 GateValue& out, const char* weights_refusal = nullptr) const;
  Options options_;
  Vector reference_log_prob_;
};

struct GroupAdvantageOptions {
  bool unbiased_std = false;  ///< divide the variance by n - 1 (torch.std) instead of n
  double std_epsilon = 0.0;   ///< added to std in non-constant groups; finite, >= 0
  bool is_valid(std::string* why) const;
};

/// Group-normalised advantages (R - mean_g R) / (std_g R + std_epsilon), one reward per
/// trajectory (in the batch's trajectory order), repeated on every token of the trajectory.
/// Groups with all rewards equal get 0 (see the header comment). trajectory_reward must have
/// one finite entry per trajectory of the (validated) batch; with unbiased_std, a group of one
/// trajectory has no sample std and gets 0 as well.
Vector grpo_advantages(const TokenBatch& batch, ConstVectorRef trajectory_reward,
                       const GroupAdvantageOptions& options = {});

/// GSPO: the sequence ratio (prod_t r_t)^(1/T_tau), clipped at 1 +- eps.
class GspoGate {
 public:
  struct Options {
    double eps = 4e-4;  ///< clip range of the sequence ratio; finite, >= 0
    bool is_valid(std::string* why) const;
  };

  GspoGate() : GspoGate(Options{}) {}
  explicit GspoGate(const Options& options);

  GateValue evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// The same into `out`, its gradient's storage reused (see PpoClipGate).
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// The same on a batch validated once (a training loop's epochs), with its trajectory offsets:
  /// only the new log-probs are checked, each trajectory's just before it is read. The same bits.
  /// A refused value empties `out` and names the first bad entry; a refused shape leaves `out`
  /// as it was.
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// G_i = the gated sequence ratio of i's trajectory.
  Vector gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// Jacobian products with J = dG/dr (ratio space, G = gated_ratios()). J is block diagonal
  /// over trajectories; the block of trajectory tau is 0 where tau is clipped (same rule as
  /// evaluate) and rank one where not: dG_i/dr_j = s_tau / (T_tau r_j) for i, j in tau, i.e.
  /// the block is (s_tau / T_tau) 1 (1 / r)^T. jvp returns J v, vjp J^T w; input is checked as
  /// in evaluate, v / w must have one entry per token.
  Vector jvp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef v) const;
  Vector vjp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef w) const;
  const Options& options() const { return options_; }

 private:
  Options options_;
};

}  // namespace tether
