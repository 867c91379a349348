// The policy toys of problems/policy_envs.hpp: the bandit's known best arms and gap, the
// sequence task's dynamic program against brute-force enumeration (optimum and the exact return
// of a random policy), the softmax policies' log-probabilities and exact VJPs against central
// finite differences, the sampler's batch layout / frequencies / returns, the advantage
// baselines, the distance to the optimal policy, determinism, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/policy_envs.hpp>
#include <vector>

#include "error_message.hpp"

namespace tether::problems {
namespace {

using testing::contains;
using testing::message_of;

Vector gaussian(Rng& rng, Index n, double scale = 1.0) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = scale * rng.normal();
  return v;
}

// A small batch by hand: every (state, action) pair of a few states, as one-token trajectories.
TokenBatch all_pairs_batch(Index states, Index actions) {
  TokenBatch b;
  int j = 0;
  for (Index s = 0; s < states; ++s)
    for (Index a = 0; a < actions; ++a, ++j) {
      b.domain.push_back(0);
      b.group.push_back(0);
      b.trajectory.push_back(j);
      b.position.push_back(0);
      b.state.push_back(static_cast<int>(s));
      b.action.push_back(static_cast<int>(a));
    }
  b.old_log_prob = Vector::Constant(j, std::log(1.0 / static_cast<double>(actions)));
  b.advantage = Vector::Zero(j);
  return b;
}

// Brute force over every action sequence of one context: max return, and the exact expected
// return of `p` (sum over sequences of probability x return). Follows next_state, so sequences
// that end early (end token) are enumerated at their own length.
void enumerate(const EpisodicTask& task, const Matrix& p, int s, double prob, double ret,
               double& best, double& expected) {
  for (Index a = 0; a < task.num_actions(); ++a) {
    const double r = ret + task.mean_reward(s, a);
    const double q = prob * p(s, a);
    const int n = task.next_state(s, a);
    if (n < 0) {
      best = std::max(best, r);
      expected += q * r;
    } else {
      enumerate(task, p, n, q, r, best, expected);
    }
  }
}

// Central finite differences of f(theta) = sum_i c_i log pi_theta(a_i|s_i).
template <class P>
double max_vjp_error(const P& policy, const Vector& theta, const TokenBatch& batch,
                     const Vector& c) {
  Vector grad(policy.num_parameters());
  policy.log_prob_vjp(theta, batch, c, grad);
  const double h = 1e-5;
  double worst = 0.0;
  for (Index k = 0; k < theta.size(); ++k) {
    Vector tp = theta, tm = theta;
    tp[k] += h;
    tm[k] -= h;
    const double fd =
        (c.dot(policy.log_prob(tp, batch)) - c.dot(policy.log_prob(tm, batch))) / (2 * h);
    worst = std::max(worst, std::abs(fd - grad[k]));
  }
  std::printf("VJP vs central differences: max error %.2e (|grad|_inf %.2e)\n", worst,
              grad.cwiseAbs().maxCoeff());
  return worst;
}

// --------------------------------------------------------------------------------------------
// Bandit

TEST(ContextualBandit, BestArmIsTheArgmaxAndTheGapIsExact) {
  ContextualBandit task({.contexts = 40, .domains = 4, .arms = 25, .gap = 0.15, .seed = 3});
  EXPECT_EQ(task.num_states(), 40);
  EXPECT_EQ(task.num_actions(), 25);
  EXPECT_EQ(task.horizon(), 1);
  EXPECT_EQ(task.num_domains(), 4);
  double optimum = 0.0;
  for (int c = 0; c < 40; ++c) {
    EXPECT_EQ(task.domain_of(c), c / 10);
    EXPECT_EQ(task.initial_state(c), c);
    Index best;
    const double top = task.mean_rewards().row(c).maxCoeff(&best);
    EXPECT_EQ(task.best_arm(c), best);
    double second = -1.0;
    for (Index k = 0; k < 25; ++k)
      if (k != best) second = std::max(second, task.mean_reward(c, k));
    EXPECT_NEAR(top - second, 0.15, 1e-15);
    EXPECT_LE(top, 1.0);
    EXPECT_GE(task.mean_rewards().row(c).minCoeff(), 0.0);
    optimum += top;
    for (Index k = 0; k < 25; ++k) EXPECT_EQ(task.next_state(c, k), -1);
  }
  EXPECT_NEAR(task.optimal_return(), optimum / 40, 1e-15);
  EXPECT_NEAR(task.min_optimality_gap(), 0.15, 1e-15);
  // Best arms are spread over the arms (drawn uniformly), not all the same.
  std::map<int, int> counts;
  for (int c = 0; c < 40; ++c) ++counts[task.best_arm(c)];
  EXPECT_GT(counts.size(), 10u);
}

TEST(ContextualBandit, SameSeedSameTableOtherSeedOtherTable) {
  ContextualBandit a({.seed = 5}), b({.seed = 5}), c({.seed = 6});
  EXPECT_EQ(a.mean_rewards(), b.mean_rewards());
  EXPECT_NE(a.mean_rewards(), c.mean_rewards());
}

TEST(ContextualBandit, BernoulliRewardsHaveTheStatedMeans) {
  ContextualBandit task({.contexts = 2, .domains = 1, .arms = 3, .seed = 1});
  Rng rng(9);
  const int n = 200000;
  for (Index a = 0; a < 3; ++a) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) {
      const double r = task.sample_reward(0, a, rng);
      ASSERT_TRUE(r == 0.0 || r == 1.0);
      sum += r;
    }
    const double m = task.mean_reward(0, a);
    EXPECT_NEAR(sum / n, m, 5 * std::sqrt(m * (1 - m) / n) + 1e-12) << "arm " << a;
  }
}

// --------------------------------------------------------------------------------------------
// Sequence task: DP against brute force

void expect_dp_matches_enumeration(const SequenceTaskOptions& options) {
  SequenceTask task(options);
  Rng rng(11);
  TabularSoftmaxPolicy policy(task);
  const Matrix p = policy.probabilities(gaussian(rng, policy.num_parameters(), 1.5));
  double best_total = 0.0, expected_total = 0.0;
  for (int c = 0; c < task.num_contexts(); ++c) {
    double best = -std::numeric_limits<double>::infinity(), expected = 0.0;
    enumerate(task, p, task.initial_state(c), 1.0, 0.0, best, expected);
    EXPECT_NEAR(task.optimal_q().row(task.initial_state(c)).maxCoeff(), best, 1e-13);
    best_total += best;
    expected_total += expected;
  }
  const double C = task.num_contexts();
  EXPECT_NEAR(task.optimal_return(), best_total / C, 1e-13);
  EXPECT_NEAR(task.expected_return(p), expected_total / C, 1e-13);
  // The optimal policy's exact return is the optimum, and it is the best over the policies tried.
  EXPECT_NEAR(task.expected_return(task.optimal_policy()), task.optimal_return(), 1e-13);
  EXPECT_LT(task.expected_return(p), task.optimal_return());
  EXPECT_GT(task.min_optimality_gap(), 0.0);
}

TEST(SequenceTask, DynamicProgramMatchesBruteForce) {
  expect_dp_matches_enumeration(
      {.contexts = 3, .domains = 2, .horizon = 4, .vocabulary = 3, .seed = 2});
  expect_dp_matches_enumeration(
      {.contexts = 2, .domains = 1, .horizon = 5, .vocabulary = 2, .seed = 4});
  expect_dp_matches_enumeration(
      {.contexts = 2, .domains = 2, .horizon = 4, .vocabulary = 3, .end_token = true, .seed = 5});
}

TEST(SequenceTask, OptimumIsNotGreedy) {
  // With random per-token rewards the DP optimum differs from the myopic argmax somewhere: the
  // task needs planning (checked on the default instance).
  SequenceTask task;
  int differ = 0;
  for (Index s = 0; s < task.num_states(); ++s) {
    Index greedy;
    task.mean_rewards().row(s).maxCoeff(&greedy);
    if (greedy != task.optimal_actions()[static_cast<std::size_t>(s)]) ++differ;
  }
  EXPECT_GT(differ, 0);
}

TEST(SequenceTask, StateLayout) {
  SequenceTask task({.contexts = 3, .domains = 3, .horizon = 3, .vocabulary = 4});
  EXPECT_EQ(task.num_states(), 3 * (1 + 2 * 4));
  EXPECT_EQ(task.state_id(1, 0, 0), 9);
  EXPECT_EQ(task.state_id(1, 1, 2), 9 + 1 + 2);
  EXPECT_EQ(task.state_id(1, 2, 3), 9 + 1 + 4 + 3);
  EXPECT_EQ(task.next_state(task.state_id(1, 0, 0), 2), task.state_id(1, 1, 2));
  EXPECT_EQ(task.next_state(task.state_id(1, 1, 2), 3), task.state_id(1, 2, 3));
  EXPECT_EQ(task.next_state(task.state_id(1, 2, 3), 0), -1);
  SequenceTask eos({.contexts = 1, .domains = 1, .horizon = 3, .vocabulary = 4, .end_token = true});
  EXPECT_EQ(eos.next_state(0, 0), -1);
  EXPECT_EQ(eos.next_state(0, 1), eos.state_id(0, 1, 1));
}

// --------------------------------------------------------------------------------------------
// Policies

TEST(TabularSoftmaxPolicy, LogProbIsNormalisedAndVjpMatchesFiniteDifferences) {
  TabularSoftmaxPolicy policy(5, 4);
  Rng rng(1);
  const Vector theta = gaussian(rng, policy.num_parameters());
  const TokenBatch batch = all_pairs_batch(5, 4);
  const Vector l = policy.log_prob(theta, batch);
  for (Index s = 0; s < 5; ++s) EXPECT_NEAR(l.segment(s * 4, 4).array().exp().sum(), 1.0, 1e-15);
  const Matrix p = policy.probabilities(theta);
  for (Index i = 0; i < l.size(); ++i) EXPECT_NEAR(std::exp(l[i]), p.data()[i], 1e-15);
  const Vector c = gaussian(rng, batch.size());
  EXPECT_LT(max_vjp_error(policy, theta, batch, c), 1e-8);
}

TEST(LinearSoftmaxPolicy, LogProbIsNormalisedAndVjpMatchesFiniteDifferences) {
  const LinearSoftmaxPolicy policy = LinearSoftmaxPolicy::random(6, 3, 4, 7);
  Rng rng(2);
  const Vector theta = gaussian(rng, 4, 2.0);
  const TokenBatch batch = all_pairs_batch(6, 3);
  const Vector l = policy.log_prob(theta, batch);
  for (Index s = 0; s < 6; ++s) EXPECT_NEAR(l.segment(s * 3, 3).array().exp().sum(), 1.0, 1e-15);
  // Logits are phi^T theta.
  const Vector z = policy.features().middleRows(0, 3) * theta;
  EXPECT_NEAR(l[1] - l[0], z[1] - z[0], 1e-14);
  const Vector c = gaussian(rng, batch.size());
  EXPECT_LT(max_vjp_error(policy, theta, batch, c), 1e-8);
}

TEST(Policies, HugeLogitsStayFinite) {
  TabularSoftmaxPolicy tabular(2, 3);
  Vector theta(6);
  theta << 1e4, 0.0, -1e4, 800.0, 800.0, -800.0;
  const TokenBatch batch = all_pairs_batch(2, 3);
  const Vector l = tabular.log_prob(theta, batch);
  ASSERT_TRUE(l.allFinite());
  EXPECT_EQ(l[0], 0.0);
  EXPECT_EQ(l[1], -1e4);
  EXPECT_NEAR(l[3], -std::log(2.0), 1e-15);
  Vector grad(6);
  tabular.log_prob_vjp(theta, batch, Vector::Ones(6), grad);
  EXPECT_TRUE(grad.allFinite());
  EXPECT_TRUE(tabular.probabilities(theta).allFinite());
}

TEST(Policies, RefuseBadShapes) {
  TabularSoftmaxPolicy policy(3, 2);
  TokenBatch batch = all_pairs_batch(3, 2);
  Vector grad(6);
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { policy.log_prob(Vector::Zero(5), batch); }),
                       "theta has size 5"));
  EXPECT_TRUE(contains(message_of<ShapeError>([&] {
                         policy.log_prob_vjp(Vector::Zero(6), batch, Vector::Zero(5), grad);
                       }),
                       "c has 5 entries"));
  Vector small(4);
  EXPECT_TRUE(contains(message_of<ShapeError>([&] {
                         policy.log_prob_vjp(Vector::Zero(6), batch, Vector::Zero(6), small);
                       }),
                       "grad has size 4"));
  batch.state[2] = 3;
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { policy.log_prob(Vector::Zero(6), batch); }),
                       "state 3"));
  batch.state[2] = 1;
  batch.action[0] = 2;
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { policy.log_prob(Vector::Zero(6), batch); }),
                       "action 2"));
  EXPECT_TRUE(
      contains(message_of<InvalidArgumentError>([] { TabularSoftmaxPolicy(0, 2); }), "num_states"));
  EXPECT_TRUE(contains(
      message_of<ShapeError>([] { LinearSoftmaxPolicy(3, 2, Matrix::Zero(5, 2)); }), "rows"));
}

// --------------------------------------------------------------------------------------------
// Distance and exact return

TEST(EpisodicTask, DistanceToOptimal) {
  SequenceTask task({.contexts = 4, .domains = 2, .horizon = 3, .vocabulary = 5, .seed = 8});
  const Index S = task.num_states(), V = task.num_actions();
  EXPECT_EQ(task.distance_to_optimal(task.optimal_policy()), 0.0);
  const Matrix uniform = Matrix::Constant(S, V, 1.0 / static_cast<double>(V));
  EXPECT_NEAR(task.distance_to_optimal(uniform), 1.0 - 1.0 / 5.0, 1e-15);
  // A softmax policy with logit margin m on a*: distance 1 - e^m / (e^m + V - 1).
  TabularSoftmaxPolicy policy(task);
  Vector theta = Vector::Zero(policy.num_parameters());
  for (Index s = 0; s < S; ++s)
    theta[s * V + task.optimal_actions()[static_cast<std::size_t>(s)]] = 3;
  const double expected = 1.0 - std::exp(3.0) / (std::exp(3.0) + 4.0);
  EXPECT_NEAR(task.distance_to_optimal(policy.probabilities(theta)), expected, 1e-15);
  theta *= 20.0;  // logit margin 60: numerically the optimal policy
  EXPECT_LT(task.distance_to_optimal(policy.probabilities(theta)), 1e-25);
  EXPECT_NEAR(task.expected_return(policy.probabilities(theta)), task.optimal_return(), 1e-13);
  // On the optimal path only: a policy optimal on the path and uniform elsewhere has path
  // distance 0 and the optimal return, but a large distance over all states.
  Matrix on_path = uniform;
  int path_states = 0;
  for (int c = 0; c < task.num_contexts(); ++c)
    for (int s = task.initial_state(c); s >= 0; ++path_states) {
      const int a = task.optimal_actions()[static_cast<std::size_t>(s)];
      on_path.row(s).setZero();
      on_path(s, a) = 1.0;
      s = task.next_state(s, a);
    }
  EXPECT_EQ(path_states, 4 * 3);
  EXPECT_EQ(task.optimal_path_distance(on_path), 0.0);
  EXPECT_NEAR(task.expected_return(on_path), task.optimal_return(), 1e-13);
  EXPECT_NEAR(task.distance_to_optimal(on_path), (S - 12) * 0.8 / S, 1e-15);
  EXPECT_NEAR(task.optimal_path_distance(uniform), 0.8, 1e-15);
  ContextualBandit bandit({.contexts = 6, .domains = 2, .arms = 4});
  TabularSoftmaxPolicy bandit_policy(bandit);
  Rng rng(3);
  const Matrix q = bandit_policy.probabilities(gaussian(rng, bandit_policy.num_parameters()));
  EXPECT_NEAR(bandit.optimal_path_distance(q), bandit.distance_to_optimal(q), 1e-15);
  EXPECT_TRUE(
      contains(message_of<ShapeError>([&] { task.expected_return(Matrix::Zero(2, 2)); }), "2 x 2"));
}

// --------------------------------------------------------------------------------------------
// Sampler

TEST(SampleRollouts, BatchLayoutIsValidAndOldLogProbIsThePolicys) {
  SequenceTask task(
      {.contexts = 12, .domains = 3, .horizon = 5, .vocabulary = 4, .end_token = true, .seed = 3});
  TabularSoftmaxPolicy policy(task);
  Rng rng(5);
  const Vector theta = gaussian(rng, policy.num_parameters());
  const std::vector<int> prompts = draw_prompts(task, 7, rng);
  ASSERT_EQ(prompts.size(), 7u);
  for (std::size_t i = 1; i < prompts.size(); ++i) {
    EXPECT_LE(task.domain_of(prompts[i - 1]), task.domain_of(prompts[i]));
    EXPECT_NE(prompts[i - 1], prompts[i]);
  }
  const Rollouts r = sample_rollouts(task, policy, theta, prompts, 3, rng);
  const TokenBatch& b = r.batch;
  EXPECT_NO_THROW(b.validate());
  EXPECT_EQ(r.trajectory_return.size(), 21);
  EXPECT_EQ(r.trajectory_start.size(), 22u);
  EXPECT_EQ(r.trajectory_start.back(), b.size());
  EXPECT_EQ(b.old_log_prob, policy.log_prob(theta, b));  // bit for bit
  bool some_short = false;
  for (int j = 0; j < 21; ++j) {
    const int first = r.trajectory_start[static_cast<std::size_t>(j)];
    const int end = r.trajectory_start[static_cast<std::size_t>(j) + 1];
    const int g = j / 3;
    EXPECT_GE(end - first, 1);
    EXPECT_LE(end - first, 5);
    some_short = some_short || end - first < 5;
    EXPECT_EQ(b.state[static_cast<std::size_t>(first)], task.initial_state(prompts[g]));
    double total = 0.0;
    for (int i = first; i < end; ++i) {
      const auto u = static_cast<std::size_t>(i);
      EXPECT_EQ(b.trajectory[u], j);
      EXPECT_EQ(b.group[u], g);
      EXPECT_EQ(b.domain[u], task.domain_of(prompts[g]));
      if (i + 1 < end) {
        EXPECT_EQ(task.next_state(b.state[u], b.action[u]), b.state[u + 1]);
      } else {
        EXPECT_EQ(task.next_state(b.state[u], b.action[u]), -1);
      }
      total += r.token_reward[i];
    }
    EXPECT_NEAR(r.trajectory_return[j], total, 1e-14);
    EXPECT_NEAR(r.reward_to_go[first], total, 1e-14);
  }
  EXPECT_TRUE(some_short);  // the end token shortens some episodes
}

TEST(SampleRollouts, LinearPolicyBatchesUseItsOwnLogProb) {
  SequenceTask task({.contexts = 5, .domains = 2, .horizon = 4, .vocabulary = 3, .seed = 9});
  const LinearSoftmaxPolicy policy =
      LinearSoftmaxPolicy::random(task.num_states(), task.num_actions(), 6, 2);
  Rng rng(3);
  const Vector theta = gaussian(rng, 6);
  const Rollouts r = sample_rollouts(task, policy, theta, draw_prompts(task, 3, rng), 4, rng);
  EXPECT_NO_THROW(r.batch.validate());
  EXPECT_EQ(r.batch.old_log_prob, policy.log_prob(theta, r.batch));
  EXPECT_EQ(r.batch.size(), 3 * 4 * 4);  // no end token: every episode has H tokens
  // The sampler's own log(probabilities) agrees with the policy's log_prob to rounding.
  const Matrix p = policy.probabilities(theta);
  for (Index i = 0; i < r.batch.size(); ++i)
    EXPECT_NEAR(std::log(p(r.batch.state[static_cast<std::size_t>(i)],
                           r.batch.action[static_cast<std::size_t>(i)])),
                r.batch.old_log_prob[i], 1e-14);
}

TEST(SampleRollouts, FrequenciesAndMeanReturnMatchTheExactValues) {
  ContextualBandit task({.contexts = 4, .domains = 2, .arms = 5, .seed = 2});
  TabularSoftmaxPolicy policy(task);
  Rng rng(8);
  const Vector theta = gaussian(rng, policy.num_parameters());
  const Matrix p = policy.probabilities(theta);
  const int G = 20000;
  const Rollouts r = sample_rollouts(task, policy, theta, {0, 1, 2, 3}, G, rng);
  Matrix counts = Matrix::Zero(4, 5);
  for (Index i = 0; i < r.batch.size(); ++i)
    counts(r.batch.state[static_cast<std::size_t>(i)],
           r.batch.action[static_cast<std::size_t>(i)]) += 1.0;
  for (Index s = 0; s < 4; ++s)
    for (Index a = 0; a < 5; ++a)
      EXPECT_NEAR(counts(s, a) / G, p(s, a), 5 * std::sqrt(p(s, a) * (1 - p(s, a)) / G));
  // Bernoulli rewards: the mean sampled return is within 5 standard errors of the exact one.
  const double mean = r.trajectory_return.mean();
  const double se = std::sqrt(0.25 / r.trajectory_return.size());
  EXPECT_NEAR(mean, task.expected_return(p), 5 * se);
}

TEST(SampleRollouts, SequenceMeanReturnMatchesTheExactValue) {
  SequenceTask task(
      {.contexts = 3, .domains = 1, .horizon = 4, .vocabulary = 3, .end_token = true, .seed = 6});
  TabularSoftmaxPolicy policy(task);
  Rng rng(4);
  const Vector theta = gaussian(rng, policy.num_parameters());
  const Rollouts r = sample_rollouts(task, policy, theta, {0, 1, 2}, 20000, rng);
  const double mean = r.trajectory_return.mean();
  const double sd = std::sqrt((r.trajectory_return.array() - mean).square().mean());
  EXPECT_NEAR(mean, task.expected_return(policy.probabilities(theta)),
              5 * sd / std::sqrt(static_cast<double>(r.trajectory_return.size())));
}

TEST(SampleRollouts, SameSeedSameBatch) {
  SequenceTask task({.seed = 1});
  TabularSoftmaxPolicy policy(task);
  const Vector theta = Vector::Zero(policy.num_parameters());
  auto draw = [&](std::uint64_t seed) {
    Rng rng(seed);
    return sample_rollouts(task, policy, theta, draw_prompts(task, 5, rng), 4, rng);
  };
  const Rollouts a = draw(3), b = draw(3), c = draw(4);
  EXPECT_EQ(a.batch.action, b.batch.action);
  EXPECT_EQ(a.batch.state, b.batch.state);
  EXPECT_EQ(a.token_reward, b.token_reward);
  EXPECT_EQ(a.batch.advantage, b.batch.advantage);
  EXPECT_NE(a.token_reward, c.token_reward);
}

TEST(SetAdvantages, BaselinesByHand) {
  // One group of 3 trajectories with hand-set rewards: lengths 2, 1, 2 (end token).
  Rollouts r;
  r.prompts = {0};
  r.group_size = 3;
  r.trajectory_start = {0, 2, 3, 5};
  r.token_reward.resize(5);
  r.token_reward << 1.0, 2.0, 4.0, 0.5, 0.5;
  r.reward_to_go.resize(5);
  r.reward_to_go << 3.0, 2.0, 4.0, 1.0, 0.5;
  r.trajectory_return.resize(3);
  r.trajectory_return << 3.0, 4.0, 1.0;
  r.batch.advantage = Vector::Zero(5);

  set_advantages(r, {.reward_to_go = true, .baseline = Baseline::kNone});
  EXPECT_EQ(r.batch.advantage, r.reward_to_go);
  // Position 0: G = (3, 4, 1), mean 8/3; position 1: G = (2, 0, 0.5) (the short one counts 0).
  set_advantages(r, {.reward_to_go = true, .baseline = Baseline::kGroupMean});
  Vector expected(5);
  expected << 3 - 8.0 / 3, 2 - 2.5 / 3, 4 - 8.0 / 3, 1 - 8.0 / 3, 0.5 - 2.5 / 3;
  EXPECT_LT((r.batch.advantage - expected).norm(), 1e-15);
  set_advantages(r, {.reward_to_go = true, .baseline = Baseline::kLeaveOneOut});
  expected << 3 - 2.5, 2 - 0.25, 4 - 2.0, 1 - 3.5, 0.5 - 1.0;
  EXPECT_LT((r.batch.advantage - expected).norm(), 1e-15);
  set_advantages(r, {.reward_to_go = false, .baseline = Baseline::kGroupMean});
  expected << 3 - 8.0 / 3, 3 - 8.0 / 3, 4 - 8.0 / 3, 1 - 8.0 / 3, 1 - 8.0 / 3;
  EXPECT_LT((r.batch.advantage - expected).norm(), 1e-15);
  set_advantages(r, {.reward_to_go = false, .baseline = Baseline::kLeaveOneOut});
  expected << 3 - 2.5, 3 - 2.5, 4 - 2.0, 1 - 3.5, 1 - 3.5;
  EXPECT_LT((r.batch.advantage - expected).norm(), 1e-15);
  r.group_size = 1;
  r.prompts = {0, 0, 0};
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>(
                           [&] { set_advantages(r, {.baseline = Baseline::kLeaveOneOut}); }),
                       "group_size >= 2"));
}

// --------------------------------------------------------------------------------------------
// Bad input

TEST(PolicyEnvs, RefuseBadOptions) {
  auto bandit_message = [](ContextualBanditOptions o) {
    return message_of<InvalidArgumentError>([&] { ContextualBandit task(o); });
  };
  EXPECT_TRUE(contains(bandit_message({.contexts = 0}), "contexts must be >= 1"));
  EXPECT_TRUE(contains(bandit_message({.contexts = 3, .domains = 4}), "domains must be in [1,"));
  EXPECT_TRUE(contains(bandit_message({.arms = 1}), "arms must be >= 2"));
  EXPECT_TRUE(contains(bandit_message({.gap = 0.0}), "gap must be in (0, 1)"));
  EXPECT_TRUE(contains(bandit_message({.gap = std::nan("")}), "gap must be in (0, 1)"));
  EXPECT_TRUE(
      contains(bandit_message({.noise = RewardNoise::kGaussian, .noise_std = -1.0}), "noise_std"));
  auto sequence_message = [](SequenceTaskOptions o) {
    return message_of<InvalidArgumentError>([&] { SequenceTask task(o); });
  };
  EXPECT_TRUE(contains(sequence_message({.horizon = 9}), "horizon must be in [1, 8]"));
  EXPECT_TRUE(contains(sequence_message({.horizon = 0}), "horizon must be in [1, 8]"));
  EXPECT_TRUE(contains(sequence_message({.vocabulary = 1}), "vocabulary must be >= 2"));
  EXPECT_TRUE(
      contains(sequence_message({.contexts = 1000, .domains = 1, .horizon = 8, .vocabulary = 64}),
               "exceeds the table limit"));

  ContextualBandit task({.contexts = 5, .domains = 1, .arms = 3});
  Rng rng(1);
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { draw_prompts(task, 6, rng); }),
                       "count must be in [1, num_contexts = 5]"));
  const Matrix p = Matrix::Constant(5, 3, 1.0 / 3);
  EXPECT_TRUE(
      contains(message_of<InvalidArgumentError>([&] { sample_rollouts(task, p, {0}, 0, rng); }),
               "group_size must be >= 1"));
  EXPECT_TRUE(
      contains(message_of<InvalidArgumentError>([&] { sample_rollouts(task, p, {7}, 2, rng); }),
               "prompt 7"));
  EXPECT_TRUE(contains(message_of<ShapeError>([&] {
                         sample_rollouts(task, Matrix::Constant(5, 2, 0.5), {0}, 2, rng);
                       }),
                       "5 x 2"));
  Matrix bad = p;
  bad(0, 0) = std::nan("");
  EXPECT_TRUE(contains(message_of<NumericalError>([&] { sample_rollouts(task, bad, {0}, 2, rng); }),
                       "NaN"));

  // Hand-built tasks: transitions must move forward and episodes fit the horizon.
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] {
                         EpisodicTask(Matrix::Zero(2, 2), {1, 0, -1, -1}, {0}, {0}, 2);
                       }),
                       "next_state(0, 1) is 0"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] {
                         EpisodicTask(Matrix::Zero(2, 2), {1, 1, -1, -1}, {0}, {0}, 1);
                       }),
                       "beyond the horizon 1"));
  EXPECT_TRUE(contains(
      message_of<InvalidArgumentError>([] {
        EpisodicTask(Matrix::Constant(1, 2, 2.0), {-1, -1}, {0}, {0}, 1, RewardNoise::kBernoulli);
      }),
      "Bernoulli rewards need means in [0, 1]"));
}

}  // namespace
}  // namespace tether::problems
