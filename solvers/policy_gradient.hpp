// PolicyGradientSolver: gated policy-gradient ascent, J(theta) = sum_i mu_i G(r(theta))_i A_i, for
// ANY ratio gate (PPO-clip, GRPO, GSPO, APC-Obj, FiberPO, the gating hierarchy, or the ungated
// surrogate) and any step rule (SGD, Adam, AdamW). Spec: specs/fiberpo.md, sections 1 and 7; the
// outer loop is PPO's ("Proximal Policy Optimization Algorithms", Schulman et al. 2017,
// arXiv 1707.06347, Algorithm 1): sample with the current policy, then several passes on the
// fixed batch.
//
// One update k at theta_k (= theta_old of the batch):
//   batch_k   = source(theta_k, k, rng)       (an environment sampler, or any batch callback;
//                                               old_log_prob is the sampling policy's)
//   repeat `epochs` times (full-batch passes; with minibatches = m > 1, each pass instead steps
//   once per minibatch of whole prompt groups, reshuffled every pass):
//     l       = policy.log_prob(theta, batch_k)              log pi_theta(a_i|s_i)
//     (J, c)  = gate.evaluate(batch_k, l)                    c_i = dJ / d l_i
//     g       = policy.log_prob_vjp(theta, batch_k, c)       grad_theta J (chain rule, exact)
//     rule.step(theta, -g)                                   ASCENT: the rule descends along -g
//   theta_{k+1} = theta
// The step rule keeps its state (Adam's moments) across updates, as PPO's optimiser does.
//
// History (one PolicyUpdateRecord per update k, measured at theta_{k+1} on batch_k):
//   objective_start   J at theta_k on the whole batch (all ratios 1 when the batch is on-policy)
//   objective         J at theta_{k+1}
//   tokens, trajectories  the gate's regime fractions at theta_{k+1}
//   tv                (1/T) sum_i |r_i - 1|, r_i = pi_{k+1}(a_i|s_i) / pi_old(a_i|s_i): the spec's
//                     empirical TV (its expectation under pi_old is sum_a |pi_new - pi_old|
//                     = 2 TV(pi_old, pi_new), token-weighted over the batch's states)
//   kl                (1/T) sum_i (r_i - 1 - log r_i): Schulman's k3 estimator of
//                     KL(pi_old || pi_new) from samples of pi_old (unbiased, >= 0 per token)
//   expected_return, distance_to_optimal, optimal_path_distance   the monitors' exact values
//                     at theta_{k+1} (NaN where none is supplied; for an EpisodicTask:
//                     problems/policy_envs.hpp)
// The generic History row (for callbacks, CSV, EarlyStop) has loss = -objective, best_loss =
// -(best expected return so far) where a return monitor exists (else the smallest loss so far),
// constraint_residual = tv, error = distance_to_optimal.
//
// Stopping: all `updates` updates (kIterationLimit); distance_tolerance > 0 with a distance
// monitor stops (kConverged) once distance_to_optimal <= distance_tolerance; a callback may stop.
// NaN/Inf from the policy (log-probabilities or VJP), the gate (objective or gradient), the
// step, the batch's old log-probabilities, or a NumericalError thrown by the batch source (e.g.
// the sampler seeing NaN probabilities) stops the run with kNumericalError; result.theta is then
// theta_k, the iterate after the last completed update (every pass of the failing update is
// discarded). Where the first batch, or the log-probabilities or gate value on it at theta0 (the
// first evaluation), is already non-finite, nothing has run: that is refused with NumericalError
// instead. Wrong sizes (theta0, log-probs, gate gradient, VJP) are ShapeErrors; an invalid batch
// is refused by TokenBatch::validate (InvalidArgumentError / ShapeError).
//
// Defaults: PPO's MuJoCo settings (Adam, learning rate 3e-4, 10 epochs; full-batch passes, where
// PPO used minibatches of 64 samples: set minibatches for that); the toys in
// problems/policy_envs.hpp want larger steps (tests use Adam 0.05-0.1). Same seed, same result,
// bit for bit.
//
//   tether::problems::ContextualBandit task({.contexts = 16, .arms = 8});
//   tether::problems::TabularSoftmaxPolicy policy(task);
//   tether::PolicyGradientSolver solver({.step = tether::AdamOptions{.learning_rate = 0.1},
//                                        .updates = 200, .epochs = 4});
//   tether::PolicyResult r = solver.maximize(task, policy, my_gate,
//                                            {.prompts = 8, .group_size = 8},
//                                            Vector::Zero(policy.num_parameters()));
//   r.theta; r.updates.back().distance_to_optimal; r.history;
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/policy_batch.hpp>
#include <tether/core/result.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/step_rule.hpp>
#include <tether/core/types.hpp>
#include <tether/problems/policy_envs.hpp>
#include <utility>
#include <vector>

namespace tether {

struct PolicyGradientOptions {
  /// The step rule; its learning rate scales the ASCENT step. Default Adam, lr 3e-4 (PPO).
  StepRuleOptions step = AdamOptions{.learning_rate = 3e-4};
  int updates = 100;  ///< batches sampled (outer iterations), >= 1
  int epochs = 10;    ///< passes over each batch, >= 1 (PPO: 10)
  /// Steps per pass: 1 = full-batch passes; m > 1 cuts each pass into m minibatches of whole
  /// prompt groups, reshuffled every pass with the solver's Rng (PPO's minibatch SGD). The
  /// batch must hold >= m groups. >= 1.
  int minibatches = 1;
  std::uint64_t seed = 42;  ///< seeds the Rng handed to the batch source
  /// Stop (kConverged) once distance_to_optimal <= this; 0 runs every update. Finite, >= 0.
  double distance_tolerance = 0.0;

  /// True when every field is in its domain; otherwise `why` names the field and the bound.
  bool is_valid(std::string* why) const;
};

/// One update's measurements (see the file comment).
struct PolicyUpdateRecord {
  int update = 0;
  int tokens_in_batch = 0;
  double objective_start = 0.0;
  double objective = 0.0;
  RegimeFractions tokens;
  RegimeFractions trajectories;
  double tv = 0.0;
  double kl = 0.0;
  double expected_return = std::numeric_limits<double>::quiet_NaN();
  double distance_to_optimal = std::numeric_limits<double>::quiet_NaN();
  double optimal_path_distance = std::numeric_limits<double>::quiet_NaN();
  double step_seconds = 0.0;
};

struct PolicyResult {
  Vector theta;  ///< the last iterate (on kNumericalError: after the last completed update)
  StopReason status = StopReason::kIterationLimit;
  std::string message;
  int iterations = 0;  ///< completed updates
  double seconds = 0.0;
  double expected_return = std::numeric_limits<double>::quiet_NaN();        ///< at theta
  double distance_to_optimal = std::numeric_limits<double>::quiet_NaN();    ///< at theta
  double optimal_path_distance = std::numeric_limits<double>::quiet_NaN();  ///< at theta
  std::vector<PolicyUpdateRecord> updates;  ///< one per completed update
  History history;                          ///< the generic rows, one per completed update
};

/// The batch of update k, drawn at theta_old = the current iterate with the solver's Rng.
using BatchSource = std::function<TokenBatch(const Vector& theta_old, int update, Rng& rng)>;

/// A policy, type-erased (any tether::Policy converts with make_policy_functions).
struct PolicyFunctions {
  Index num_parameters = 0;
  std::function<Vector(const Vector&, const TokenBatch&)> log_prob;
  std::function<void(const Vector&, const TokenBatch&, const Vector&, Vector&)> log_prob_vjp;
};
template <Policy P>
PolicyFunctions make_policy_functions(const P& policy) {
  return {static_cast<Index>(policy.num_parameters()),
          [&policy](const Vector& theta, const TokenBatch& b) -> Vector {
            return policy.log_prob(theta, b);
          },
          [&policy](const Vector& theta, const TokenBatch& b, const Vector& c, Vector& g) {
            policy.log_prob_vjp(theta, b, c, g);
          }};
}

/// A ratio gate, type-erased, on a batch the solver has validated: gates with a ValidatedBatch
/// overload (every tether gate) then check only the new log-probs in each epoch's call.
using GateFunction = std::function<GateValue(const ValidatedBatch&, const Vector&)>;
template <RatioGate G>
GateFunction make_gate_function(const G& gate) {
  return [&gate](const ValidatedBatch& b, const Vector& l) -> GateValue {
    if constexpr (requires(GateValue & out) { gate.evaluate(b, l, out); }) {
      GateValue value;
      gate.evaluate(b, l, value);
      return value;
    } else {
      return gate.evaluate(b.batch(), l);
    }
  };
}

/// Exact quantities of the problem, where it has them (any may be empty).
struct PolicyMonitors {
  std::function<double(const Vector&)> expected_return;
  std::function<double(const Vector&)> distance_to_optimal;
  std::function<double(const Vector&)> optimal_path_distance;
};

/// How the environment overload samples each update's batch.
struct RolloutOptions {
  int prompts = 16;    ///< distinct prompts per batch (draw_prompts), 1..num_contexts
  int group_size = 8;  ///< trajectories per prompt, >= 1 (>= 2 for leave-one-out)
  problems::AdvantageOptions advantage;  ///< default: reward-to-go minus the group mean
  /// Optional: called on each batch's rollouts after the advantages are set, to replace them,
  /// e.g. GRPO's group normalisation (solvers/ratio_gates.hpp):
  ///   [](problems::Rollouts& r) {
  ///     r.batch.advantage = grpo_advantages(r.batch, r.trajectory_return); }
  std::function<void(problems::Rollouts&)> postprocess;
};

/// grad_theta J at theta on one batch by the chain rule; `value` (optional) receives the gate's
/// output. Throws ShapeError on wrong sizes; does not check finiteness.
Vector policy_gradient(const PolicyFunctions& policy, const GateFunction& gate,
                       const TokenBatch& batch, const Vector& theta, GateValue* value = nullptr);
template <Policy P, RatioGate G>
Vector policy_gradient(const P& policy, const G& gate, const TokenBatch& batch, const Vector& theta,
                       GateValue* value = nullptr) {
  return policy_gradient(make_policy_functions(policy), make_gate_function(gate), batch, theta,
                         value);
}

class PolicyGradientSolver {
 public:
  /// Throws InvalidArgumentError naming the field when the options are invalid.
  explicit PolicyGradientSolver(const PolicyGradientOptions& options = {});
  const PolicyGradientOptions& options() const { return options_; }

  /// On an EpisodicTask: each update draws rollout.prompts prompts and rollout.group_size
  /// trajectories per prompt from the current policy; the exact return and the distance to the
  /// optimal policy are recorded. task, policy and gate must outlive the call.
  template <problems::TabularPolicy P, RatioGate G, class... Callbacks>
  PolicyResult maximize(const problems::EpisodicTask& task, const P& policy, const G& gate,
                        const RolloutOptions& rollout, const Vector& theta0,
                        Callbacks&&... callbacks) const {
    require_rollout(task, rollout);
    BatchSource source = [&task, &policy, rollout](const Vector& theta, int, Rng& rng) {
      problems::Rollouts r = problems::sample_rollouts(
          task, policy, theta, problems::draw_prompts(task, rollout.prompts, rng),
          rollout.group_size, rng, rollout.advantage);
      if (rollout.postprocess) rollout.postprocess(r);
      return std::move(r.batch);
    };
    PolicyMonitors monitors{[&task, &policy](const Vector& theta) {
                              return task.expected_return(policy.probabilities(theta));
                            },
                            [&task, &policy](const Vector& theta) {
                              return task.distance_to_optimal(policy.probabilities(theta));
                            },
                            [&task, &policy](const Vector& theta) {
                              return task.optimal_path_distance(policy.probabilities(theta));
                            }};
    return maximize(make_policy_functions(policy), make_gate_function(gate), source, theta0,
                    monitors, CallbackSet(callbacks...));
  }

  /// Any policy and gate, batches from `source`; `monitors` may be empty.
  template <Policy P, RatioGate G, class... Callbacks>
  PolicyResult maximize(const P& policy, const G& gate, const BatchSource& source,
                        const Vector& theta0, const PolicyMonitors& monitors,
                        Callbacks&&... callbacks) const {
    return maximize(make_policy_functions(policy), make_gate_function(gate), source, theta0,
                    monitors, CallbackSet(callbacks...));
  }

  PolicyResult maximize(const PolicyFunctions& policy, const GateFunction& gate,
                        const BatchSource& source, const Vector& theta0,
                        const PolicyMonitors& monitors,
                        const CallbackSet& callbacks = CallbackSet()) const;

 private:
  static void require_rollout(const problems::EpisodicTask& task, const RolloutOptions& rollout);
  PolicyGradientOptions options_;
};

}  // namespace tether
