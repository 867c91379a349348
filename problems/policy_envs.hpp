// Toy policy-optimisation problems with KNOWN optimal policies, the softmax policies that act in
// them, and the sampler that turns (task, policy, theta) into a TokenBatch for the ratio gates
// (core/policy_batch.hpp; specs/fiberpo.md, sections 1 and 7).
//
// An EpisodicTask is a finite-horizon tabular MDP with deterministic transitions:
//   - contexts (prompts) c = 0..C-1, each in one domain (contiguous blocks of contexts);
//   - states s = 0..S-1; context c starts in initial_state(c); action a in 0..V-1 moves s to
//     next_state(s, a) > s, or ends the episode (-1); the horizon H bounds every episode;
//   - reward per token: mean_reward(s, a), sampled as that mean (RewardNoise::kNone), mean plus
//     N(0, noise_std^2) (kGaussian) or a Bernoulli draw with that mean (kBernoulli, means in
//     [0, 1]). The noise has mean 0, so every exact quantity below uses the means only.
// Because next_state(s, a) > s, one backward sweep over the state ids is an exact dynamic
// program:
//   V^pi(s) = sum_a pi(a|s) (r(s, a) + V^pi(s'))          Q*(s, a) = r(s, a) + V*(s'),
//   V*(s)   = max_a Q*(s, a)                               V(terminal) = 0,
// and the optimal policy is deterministic, pi*(s) = argmax_a Q*(s, a) (the generators draw
// continuous means, so the argmax is unique; min_optimality_gap() reports the smallest margin).
// The objective is the undiscounted return averaged over contexts drawn uniformly:
//   expected_return(pi) = (1/C) sum_c V^pi(initial_state(c))     (exact, no sampling),
// and the distance to the optimal policy is the mean over ALL states (uniform weight, reachable
// or not under pi*) of the total variation between pi(.|s) and the one-hot pi*(.|s):
//   distance_to_optimal(pi) = (1/S) sum_s TV(pi(.|s), pi*(.|s)) = (1/S) sum_s (1 - pi(a*(s)|s)),
// in [0, 1]: 1 - 1/V for the uniform policy, 0 only at pi*. States off the optimal path count
// as much as those on it, so a policy that plays the optimal sequences but has not learned the
// states it no longer visits keeps a large distance; optimal_path_distance measures only the path:
//   optimal_path_distance(pi) = (1/C) sum_c (1/L_c) sum_{s on c's optimal path} (1 - pi(a*(s)|s)),
// L_c the length of context c's optimal episode (the bandit: equal to distance_to_optimal).
//
// The two generators:
//   ContextualBandit  H = 1, state = context, V = arms. Arm means are uniform on [0, 1 - gap];
//                     one arm per context, drawn uniformly, gets (the largest other mean) + gap,
//                     so every context's optimality gap is exactly `gap`. pi* = the argmax arm.
//   SequenceTask      H <= 8 tokens over a vocabulary of V; state = (context, step, previous
//                     token); per-token reward means uniform on [0, 1] per (state, action), so
//                     the best sequence is found by the dynamic program, not greedily. With
//                     end_token, action 0 ends the episode after its reward (trajectories of
//                     length 1..H). State ids: with P = 1 + (H-1) V, context c owns the ids
//                     [c P, (c+1) P): c P is its step 0, c P + 1 + (t-1) V + p its step t >= 1
//                     after token p (state_id(c, t, p)).
//
// Policies (both satisfy tether::Policy and expose probabilities(theta), S x V):
//   TabularSoftmaxPolicy   theta = logits, row-major S x V: pi(a|s) = softmax(theta[s V + .])_a
//                          d log pi(a|s) / d theta[s V + b] = 1[b = a] - pi(b|s).
//   LinearSoftmaxPolicy    logits z(s, a) = phi(s, a)^T theta with features phi (S V x d):
//                          d log pi(a|s) / d theta = phi(s, a) - sum_b pi(b|s) phi(s, b).
// log-probabilities are (z - max z) - log sum exp(z - max z): huge logits stay finite, and the
// rounding is that of the small differences z - max z, not of z.
//
// Sampling: draw_prompts picks distinct contexts; sample_rollouts runs group_size episodes per
// prompt and lays the tokens out as the TokenBatch rules require (domain > group (one per
// prompt) > trajectory > position, sorted), with old_log_prob = policy.log_prob(theta, batch) so
// the first ratios are exactly 1, and the advantage set by set_advantages (default: reward-to-go
// minus the group's mean reward-to-go at the same position). GRPO's group normalisation
// (R - mean R) / std R belongs to the gates (solvers/ratio_gates.hpp), not here.
//
//   tether::problems::ContextualBandit task({.contexts = 32, .domains = 4, .arms = 16});
//   tether::problems::TabularSoftmaxPolicy policy(task);
//   tether::Rng rng(7);
//   Vector theta = Vector::Zero(policy.num_parameters());
//   auto rollouts = tether::problems::sample_rollouts(task, policy, theta,
//                                                     draw_prompts(task, 8, rng), 4, rng);
//   task.expected_return(policy.probabilities(theta));       // exact
//   task.distance_to_optimal(policy.probabilities(theta));   // 1 - 1/16 at theta = 0
#pragma once

#include <concepts>
#include <cstdint>
#include <tether/core/policy_batch.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/types.hpp>
#include <vector>

namespace tether::problems {

/// How a token's reward is drawn around its mean (the mean is what the exact quantities use).
enum class RewardNoise {
  kNone,       ///< the mean itself
  kGaussian,   ///< mean + noise_std * N(0, 1)
  kBernoulli,  ///< 1 with probability mean, else 0 (means must lie in [0, 1])
};

/// A finite-horizon tabular task with deterministic transitions; see the file comment.
class EpisodicTask {
 public:
  /// mean_reward: S x V; next_state: S V entries (row-major, -1 = episode ends), each either -1
  /// or > its state; context_domain: domain per context (non-decreasing, contiguous, 0-based);
  /// initial_state: one per context. Every episode must end within `horizon` tokens. Throws
  /// ShapeError / InvalidArgumentError naming the broken rule.
  EpisodicTask(Matrix mean_reward, std::vector<int> next_state, std::vector<int> context_domain,
               std::vector<int> initial_state, int horizon, RewardNoise noise = RewardNoise::kNone,
               double noise_std = 0.0);
  // A base of ContextualBandit and SequenceTask, which may be owned through a base pointer.
  virtual ~EpisodicTask() = default;
  EpisodicTask(const EpisodicTask&) = default;
  EpisodicTask(EpisodicTask&&) = default;
  EpisodicTask& operator=(const EpisodicTask&) = default;
  EpisodicTask& operator=(EpisodicTask&&) = default;

  Index num_states() const { return mean_reward_.rows(); }
  Index num_actions() const { return mean_reward_.cols(); }
  int num_contexts() const { return static_cast<int>(context_domain_.size()); }
  int num_domains() const { return context_domain_.back() + 1; }
  int horizon() const { return horizon_; }
  int domain_of(int context) const { return context_domain_[static_cast<std::size_t>(context)]; }
  int initial_state(int context) const { return initial_state_[static_cast<std::size_t>(context)]; }
  /// The state after action a in s, or -1 where the episode ends.
  int next_state(Index s, Index a) const {
    return next_state_[static_cast<std::size_t>(s * num_actions() + a)];
  }
  double mean_reward(Index s, Index a) const { return mean_reward_(s, a); }
  const Matrix& mean_rewards() const { return mean_reward_; }
  RewardNoise noise() const { return noise_; }
  double noise_std() const { return noise_std_; }
  /// One reward draw for (s, a).
  double sample_reward(Index s, Index a, Rng& rng) const;

  /// V^pi(s) for every state, for a policy given as probabilities (S x V, rows on the simplex).
  Vector state_values(const Matrix& probabilities) const;
  /// (1/C) sum_c V^pi(initial_state(c)): exact.
  double expected_return(const Matrix& probabilities) const;
  /// Q*(s, a) = r(s, a) + V*(next).
  const Matrix& optimal_q() const { return optimal_q_; }
  /// a*(s) = argmax_a Q*(s, a), one per state.
  const std::vector<int>& optimal_actions() const { return optimal_action_; }
  /// The one-hot optimal policy, S x V.
  Matrix optimal_policy() const;
  /// expected_return of the optimal policy.
  double optimal_return() const { return optimal_return_; }
  /// min over states of Q*(s, a*) - max_{a != a*} Q*(s, a) (> 0: the optimum is unique).
  double min_optimality_gap() const { return min_gap_; }
  /// (1/S) sum_s (1 - pi(a*(s)|s)): the mean total variation to the optimal policy.
  double distance_to_optimal(const Matrix& probabilities) const;
  /// The same averaged over each context's optimal path only, then over contexts.
  double optimal_path_distance(const Matrix& probabilities) const;

 private:
  void require_policy_shape(const Matrix& probabilities, const char* who) const;
  Matrix mean_reward_;
  std::vector<int> next_state_, context_domain_, initial_state_;
  int horizon_;
  RewardNoise noise_;
  double noise_std_;
  Matrix optimal_q_;
  std::vector<int> optimal_action_;
  double optimal_return_ = 0.0;
  double min_gap_ = 0.0;
};

struct ContextualBanditOptions {
  int contexts = 64;  ///< prompts, >= 1
  int domains = 4;    ///< 1 <= domains <= contexts; context c is in domain floor(c D / C)
  int arms = 32;      ///< actions, >= 2
  double gap = 0.2;   ///< best arm's mean minus the second best, in (0, 1)
  RewardNoise noise = RewardNoise::kBernoulli;
  double noise_std = 0.1;  ///< kGaussian only; finite, >= 0
  std::uint64_t seed = 42;
};

/// A contextual bandit: H = 1, one state per context, known best arm per context.
class ContextualBandit : public EpisodicTask {
 public:
  explicit ContextualBandit(const ContextualBanditOptions& options = {});
  const ContextualBanditOptions& options() const { return options_; }
  /// The best arm of context c (= optimal_actions()[c]).
  int best_arm(int context) const { return optimal_actions()[static_cast<std::size_t>(context)]; }

 private:
  ContextualBanditOptions options_;
};

struct SequenceTaskOptions {
  int contexts = 16;       ///< prompts, >= 1
  int domains = 2;         ///< 1 <= domains <= contexts; context c is in domain floor(c D / C)
  int horizon = 4;         ///< tokens per episode, 1..8
  int vocabulary = 4;      ///< actions, >= 2
  bool end_token = false;  ///< action 0 ends the episode (after its reward)
  RewardNoise noise = RewardNoise::kGaussian;
  double noise_std = 0.1;  ///< kGaussian only; finite, >= 0
  std::uint64_t seed = 42;
};

/// A short sequence task with per-token rewards; state = (context, step, previous token).
class SequenceTask : public EpisodicTask {
 public:
  explicit SequenceTask(const SequenceTaskOptions& options = {});
  const SequenceTaskOptions& options() const { return options_; }
  /// The state id of (context, step, previous token); previous is ignored at step 0.
  int state_id(int context, int step, int previous) const;

 private:
  SequenceTaskOptions options_;
};

/// A tabular softmax policy: theta holds one logit per (state, action), row-major S x V.
class TabularSoftmaxPolicy {
 public:
  TabularSoftmaxPolicy(Index num_states, Index num_actions);
  explicit TabularSoftmaxPolicy(const EpisodicTask& task)
      : TabularSoftmaxPolicy(task.num_states(), task.num_actions()) {}

  Index num_parameters() const { return num_states_ * num_actions_; }
  Index num_states() const { return num_states_; }
  Index num_actions() const { return num_actions_; }
  /// log pi_theta(a_i|s_i) per token.
  Vector log_prob(const Vector& theta, const TokenBatch& batch) const;
  /// grad = sum_i c_i (e_{s_i a_i} - pi(.|s_i) on row s_i); grad must have num_parameters().
  void log_prob_vjp(const Vector& theta, const TokenBatch& batch, const Vector& c,
                    Vector& grad) const;
  /// pi_theta(.|s) for every state, S x V.
  Matrix probabilities(const Vector& theta) const;

 private:
  Index num_states_, num_actions_;
};

/// A linear-softmax policy: logits z(s, a) = phi(s, a)^T theta.
class LinearSoftmaxPolicy {
 public:
  /// features: (S V) x d, row s V + a holds phi(s, a); finite, d >= 1.
  LinearSoftmaxPolicy(Index num_states, Index num_actions, Matrix features);
  /// Features iid N(0, 1/d), seeded.
  static LinearSoftmaxPolicy random(Index num_states, Index num_actions, Index dimension,
                                    std::uint64_t seed);

  Index num_parameters() const { return features_.cols(); }
  Index num_states() const { return num_states_; }
  Index num_actions() const { return num_actions_; }
  const Matrix& features() const { return features_; }
  Vector log_prob(const Vector& theta, const TokenBatch& batch) const;
  /// grad = sum_i c_i (phi(s_i, a_i) - sum_b pi(b|s_i) phi(s_i, b)).
  void log_prob_vjp(const Vector& theta, const TokenBatch& batch, const Vector& c,
                    Vector& grad) const;
  Matrix probabilities(const Vector& theta) const;

 private:
  Index num_states_, num_actions_;
  Matrix features_;
};

/// A Policy over a finite state and action set that can also list its probabilities (S x V).
template <class P>
concept TabularPolicy = Policy<P> && requires(const P& p, const Vector& theta) {
  { p.probabilities(theta) } -> std::convertible_to<Matrix>;
  { p.num_states() } -> std::convertible_to<Index>;
  { p.num_actions() } -> std::convertible_to<Index>;
};

/// How set_advantages turns the sampled rewards into per-token advantages.
enum class Baseline {
  kNone,         ///< A = G (no baseline)
  kGroupMean,    ///< A = G - mean of G over the group's trajectories at the same position
  kLeaveOneOut,  ///< A = G - mean over the OTHER trajectories of the group (unbiased; G >= 2)
};
struct AdvantageOptions {
  /// G per token: true = reward-to-go sum_{t' >= t} r_t'; false = the trajectory's return.
  bool reward_to_go = true;
  /// Baselines are per group and position; with reward_to_go, positions a trajectory never
  /// reached count as G = 0 (nothing is left to earn there); with returns, per group.
  Baseline baseline = Baseline::kGroupMean;
};

/// A sampled batch and what the environment said about it.
struct Rollouts {
  TokenBatch batch;                   ///< advantage as set by set_advantages
  Vector token_reward;                ///< sampled reward per token
  Vector reward_to_go;                ///< sum of the token's and its successors' rewards
  Vector trajectory_return;           ///< per trajectory (batch trajectory id), its total reward
  std::vector<int> prompts;           ///< the context of each group (group id = index)
  std::vector<int> trajectory_start;  ///< first token of each trajectory (+ one past the end)
  int group_size = 0;
};

/// `count` distinct contexts drawn uniformly (1 <= count <= num_contexts), sorted by
/// (domain, context).
std::vector<int> draw_prompts(const EpisodicTask& task, int count, Rng& rng);

/// Samples group_size episodes per prompt under `probabilities` (S x V). The batch's groups follow
/// the prompts sorted stably by domain; old_log_prob = log probabilities (the templated overload
/// replaces it by the policy's own log_prob). Advantages per `advantage`.
Rollouts sample_rollouts(const EpisodicTask& task, const Matrix& probabilities,
                         std::vector<int> prompts, int group_size, Rng& rng,
                         const AdvantageOptions& advantage = {});

/// The same with a policy at theta; old_log_prob = policy.log_prob(theta, batch) bit for bit.
template <TabularPolicy P>
Rollouts sample_rollouts(const EpisodicTask& task, const P& policy, const Vector& theta,
                         std::vector<int> prompts, int group_size, Rng& rng,
                         const AdvantageOptions& advantage = {}) {
  Rollouts r = sample_rollouts(task, policy.probabilities(theta), std::move(prompts), group_size,
                               rng, advantage);
  r.batch.old_log_prob = policy.log_prob(theta, r.batch);
  return r;
}

/// Recomputes rollouts.batch.advantage from the sampled rewards.
void set_advantages(Rollouts& rollouts, const AdvantageOptions& options);

}  // namespace tether::problems
