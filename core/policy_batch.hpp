// The policy-optimisation problem: a batch of sampled tokens and a differentiable policy.
//
//   Sampled tokens i = (state s_i, action a_i, trajectory tau_i, position t_i), with the
//   hierarchy domain > prompt group > trajectory > token. For a policy pi_theta the ratio is
//   r_i = pi_theta(a_i|s_i) / pi_old(a_i|s_i) and every gated objective (PPO-clip, GRPO, GSPO,
//   APC-Obj, FiberPO, the gating hierarchy) is J(theta) = sum_i mu_i G(r)_i A_i
//   (specs/fiberpo.md, section 1). A gate maps the batch and the new log-probabilities
//   log pi_theta(a_i|s_i) to J and dJ/d(log pi_theta(a_i|s_i)); the policy supplies the
//   vector-Jacobian product sum_i c_i d log pi_theta(a_i|s_i) / d theta. The chain rule
//   between the two is the solver's only job.
//
// Layout rules of a TokenBatch (validate() checks each and names the one broken):
//   - every array has one entry per token (T entries, T >= 1);
//   - tokens are sorted by (domain, group, trajectory, position): domain, group and trajectory
//     ids are non-decreasing, and each id is one contiguous run (a trajectory lies inside one
//     group, a group inside one domain); positions within a trajectory are 0, 1, 2, ...;
//   - state ids are any non-negative integers (tokens sharing a state id share a state: APC-Obj
//     sums over them); action ids are non-negative;
//   - old_log_prob entries are finite and <= 0 (probabilities in (0, 1]); advantages finite.
#pragma once

#include <concepts>
#include <mutex>
#include <tether/core/errors.hpp>
#include <tether/core/types.hpp>
#include <vector>

namespace tether {

/// Batches from this many tokens on run their token loops on OpenMP threads (validation, the
/// gates); below it a thread team costs more than it saves.
inline constexpr Index kParallelTokens = Index{1} << 16;

struct TokenBatch {
  std::vector<int> domain;      ///< domain id per token
  std::vector<int> group;       ///< prompt-group id per token
  std::vector<int> trajectory;  ///< trajectory id per token
  std::vector<int> position;    ///< position of the token in its trajectory, from 0
  std::vector<int> state;       ///< state id per token (the prefix / context it was sampled in)
  std::vector<int> action;      ///< sampled action (token) id
  Vector old_log_prob;          ///< log pi_old(a_i | s_i)
  Vector advantage;             ///< A_i (per token; trajectory-level advantages are repeated)

  Index size() const { return old_log_prob.size(); }

  /// Throws ShapeError / InvalidArgumentError naming the first broken layout rule above.
  void validate() const;
};

/// Offsets of the runs of equal ids in a sorted id array: run k is [offsets[k], offsets[k+1]),
/// offsets.front() = 0, offsets.back() = ids.size(); one pass, O(ids.size()). The ids are taken
/// as given (validate() first): a new run starts wherever an id differs from the one before.
std::vector<Index> segment_offsets(const std::vector<int>& ids);

/// A TokenBatch that passed validate(), for the evaluations of a training loop's epochs over one
/// batch: the gates' overloads that take it (PpoClipGate, GrpoGate, GspoGate, GatingHierarchyGate,
/// FiberPoGate) skip the layout checks (40 bytes a token read on every call otherwise) and check
/// only the new log-probs. Neither copied nor moved (it holds a once_flag); pass it by reference.
/// It refers to the batch, which must outlive it and not change while it is used (as FiberPO's
/// plan, GatingHierarchyGate::segments, does for the gating hierarchy).
class ValidatedBatch {
 public:
  /// Validates the batch (TokenBatch::validate's refusals).
  explicit ValidatedBatch(const TokenBatch& batch) : batch_(&batch), size_(batch.size()) {
    batch.validate();
  }
  ValidatedBatch(TokenBatch&&) = delete;  // it would refer to a temporary
  /// The batch; ShapeError if any of its arrays changed size since it was validated (values
  /// that changed cannot be seen: validate again after changing the batch).
  const TokenBatch& batch() const {
    const TokenBatch& b = *batch_;
    const auto n = static_cast<std::size_t>(size_);
    require<ShapeError>(b.old_log_prob.size() == size_ && b.advantage.size() == size_ &&
                            b.domain.size() == n && b.group.size() == n &&
                            b.trajectory.size() == n && b.position.size() == n &&
                            b.state.size() == n && b.action.size() == n,
                        "ValidatedBatch: the batch changed size since it was validated (", size_,
                        " tokens then); validate it again");
    return b;
  }
  Index size() const { return size_; }
  /// Trajectory k is tokens [trajectories()[k], trajectories()[k + 1]): segment_offsets of the
  /// trajectory ids, found at the first call (thread-safe) and kept, for the sequence-level gates
  /// (GSPO) that read them on every call; the token-level ones never pay for them.
  const std::vector<Index>& trajectories() const {
    std::call_once(trajectories_found_,
                   [this] { trajectories_ = segment_offsets(batch().trajectory); });
    return trajectories_;
  }

 private:
  const TokenBatch* batch_;
  Index size_;
  mutable std::once_flag trajectories_found_;
  mutable std::vector<Index> trajectories_;
};

/// Share of tokens (or of trajectories) in each regime of a gate: pass-through (the gate is the
/// identity in r there), rollback (a negative slope pulls the ratio back, e.g. g_agg's slope -T)
/// and zeroed (the gate cuts the gradient, e.g. PPO's clipped side). The three sum to 1.
struct RegimeFractions {
  double pass_through = 1.0;
  double rollback = 0.0;
  double zeroed = 0.0;
};

/// What a gate returns for one batch at the new log-probabilities.
struct GateValue {
  double objective = 0.0;        ///< J = sum_i mu_i G_i A_i (to be maximised)
  Vector gradient;               ///< dJ / d log pi_theta(a_i|s_i), one entry per token
  RegimeFractions tokens;        ///< regime shares over tokens
  RegimeFractions trajectories;  ///< regime shares over trajectories (the trajectory-level gate)
};

/// A ratio gate: evaluate(batch, new_log_prob) gives J and its gradient in the log-probs.
template <class G>
concept RatioGate = requires(const G& gate, const TokenBatch& batch, const Vector& new_log_prob) {
  { gate.evaluate(batch, new_log_prob) } -> std::convertible_to<GateValue>;
};

/// A differentiable policy over the batch's (state, action) pairs.
///   num_parameters()                          dimension of theta
///   log_prob(theta, batch)                    log pi_theta(a_i|s_i) for every token
///   log_prob_vjp(theta, batch, c, grad)       grad = sum_i c_i d log pi_theta(a_i|s_i)/d theta
///                                             (grad pre-sized to num_parameters())
template <class P>
concept Policy = requires(const P& p, const Vector& theta, const TokenBatch& batch, const Vector& c,
                          Vector& grad) {
  { p.num_parameters() } -> std::convertible_to<Index>;
  { p.log_prob(theta, batch) } -> std::convertible_to<Vector>;
  p.log_prob_vjp(theta, batch, c, grad);
};

}  // namespace tether
