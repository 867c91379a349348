// PolicyGradientSolver (solvers/policy_gradient.hpp) with two gates written here, so the test
// does not depend on solvers/ratio_gates.hpp for its core checks: the ungated surrogate J = (1/T)
// sum r_i A_i and PPO-clip J = (1/T) sum min(r_i A_i, clip(r_i, 1 - e, 1 + e) A_i). Checks: the
// chain-rule gradient against finite differences of J(theta), the ascent step written out, the
// per-update records (TV, k3 KL, objective, regime fractions, exact return, distance) recomputed by
// hand, convergence to the known optimal policy of a bandit and of a short sequence task,
// minibatches, the library's PPO-clip, GRPO and FiberPO-Domain gates (solvers/ratio_gates.hpp,
// fiberpo.hpp) through the same solver, determinism, stopping, non-finite values, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/policy_envs.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <tether/solvers/policy_gradient.hpp>
#include <tether/solvers/ratio_gates.hpp>
#include <vector>

#include "error_message.hpp"

namespace tether {
namespace {

using problems::AdvantageOptions;
using problems::Baseline;
using problems::ContextualBandit;
using problems::LinearSoftmaxPolicy;
using problems::SequenceTask;
using problems::TabularSoftmaxPolicy;
using testing::contains;
using testing::message_of;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

static_assert(Policy<TabularSoftmaxPolicy> && problems::TabularPolicy<TabularSoftmaxPolicy>);
static_assert(Policy<LinearSoftmaxPolicy> && problems::TabularPolicy<LinearSoftmaxPolicy>);

Vector gaussian(Rng& rng, Index n, double scale = 1.0) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = scale * rng.normal();
  return v;
}

// J = (1/T) sum r_i A_i; dJ/d log pi_i = r_i A_i / T. Every token passes through.
struct SurrogateGate {
  GateValue evaluate(const TokenBatch& b, const Vector& l) const {
    const double T = static_cast<double>(b.size());
    const Vector r = (l - b.old_log_prob).array().exp();
    GateValue v;
    v.objective = r.dot(b.advantage) / T;
    v.gradient = r.cwiseProduct(b.advantage) / T;
    return v;
  }
};

// PPO-clip with token-mean weights: the clipped side (r > 1 + e with A > 0, r < 1 - e with
// A < 0) is constant in r, so its gradient is zero ("zeroed").
struct InlinePpoClipGate {
  double epsilon = 0.2;
  GateValue evaluate(const TokenBatch& b, const Vector& l) const {
    const Index n = b.size();
    const double T = static_cast<double>(n);
    GateValue v;
    v.gradient = Vector::Zero(n);
    double zeroed = 0.0;
    for (Index i = 0; i < n; ++i) {
      const double r = std::exp(l[i] - b.old_log_prob[i]), A = b.advantage[i];
      const double clipped = std::clamp(r, 1.0 - epsilon, 1.0 + epsilon);
      const bool cut = (A > 0 && r > 1.0 + epsilon) || (A < 0 && r < 1.0 - epsilon);
      v.objective += std::min(r * A, clipped * A) / T;
      if (cut) {
        zeroed += 1.0;
      } else {
        v.gradient[i] = r * A / T;
      }
    }
    v.tokens = {.pass_through = 1.0 - zeroed / T, .rollback = 0.0, .zeroed = zeroed / T};
    return v;
  }
};

// A batch sampled from a random tabular policy on a small sequence task (variable lengths).
struct Fixture {
  SequenceTask task{
      {.contexts = 6, .domains = 2, .horizon = 3, .vocabulary = 3, .end_token = true, .seed = 3}};
  TabularSoftmaxPolicy policy{task};
  Vector theta_old;
  TokenBatch batch;
  explicit Fixture(std::uint64_t seed = 1) {
    Rng rng(seed);
    theta_old = gaussian(rng, policy.num_parameters(), 0.5);
    batch = problems::sample_rollouts(task, policy, theta_old, {0, 2, 3, 5}, 4, rng).batch;
  }
};

template <class P, class G>
double max_fd_error(const P& policy, const G& gate, const TokenBatch& batch, const Vector& theta) {
  const Vector g = policy_gradient(policy, gate, batch, theta);
  auto J = [&](const Vector& t) {
    return gate.evaluate(batch, policy.log_prob(t, batch)).objective;
  };
  const double h = 1e-6;
  double worst = 0.0;
  for (Index k = 0; k < theta.size(); ++k) {
    Vector tp = theta, tm = theta;
    tp[k] += h;
    tm[k] -= h;
    worst = std::max(worst, std::abs((J(tp) - J(tm)) / (2 * h) - g[k]));
  }
  std::printf("chain rule vs central differences: max error %.2e (|g|_inf %.2e)\n", worst,
              g.cwiseAbs().maxCoeff());
  return worst;
}

// --------------------------------------------------------------------------------------------
// The chain rule

TEST(PolicyGradient, ChainRuleMatchesFiniteDifferencesTabular) {
  Fixture f;
  Rng rng(2);
  const Vector theta = f.theta_old + gaussian(rng, f.theta_old.size(), 0.1);
  EXPECT_LT(max_fd_error(f.policy, SurrogateGate{}, f.batch, theta), 1e-8);
  // PPO-clip away from its kinks: the first e on a grid with no ratio within 1e-4 of 1 +- e
  // (a finite-difference step of 1e-6 in theta moves the ratios by ~1e-6).
  const Vector r = (f.policy.log_prob(theta, f.batch) - f.batch.old_log_prob).array().exp();
  double e = 0.0;
  for (double candidate = 0.03; candidate < 0.2 && e == 0.0; candidate += 1e-3)
    if (((r.array() - 1.0).abs() - candidate).abs().minCoeff() > 1e-4) e = candidate;
  ASSERT_GT(e, 0.0);
  GateValue v;
  policy_gradient(f.policy, InlinePpoClipGate{e}, f.batch, theta, &v);
  EXPECT_GT(v.tokens.zeroed, 0.0);  // some tokens are clipped: the test covers both branches
  EXPECT_LT(v.tokens.zeroed, 1.0);
  EXPECT_LT(max_fd_error(f.policy, InlinePpoClipGate{e}, f.batch, theta), 1e-8);
}

TEST(PolicyGradient, ChainRuleMatchesFiniteDifferencesLinear) {
  Fixture f;
  const LinearSoftmaxPolicy policy =
      LinearSoftmaxPolicy::random(f.task.num_states(), f.task.num_actions(), 5, 4);
  Rng rng(3);
  Vector theta = gaussian(rng, 5);
  TokenBatch batch = f.batch;
  batch.old_log_prob = policy.log_prob(theta, batch);
  theta += gaussian(rng, 5, 0.05);
  EXPECT_LT(max_fd_error(policy, SurrogateGate{}, batch, theta), 1e-8);
}

// --------------------------------------------------------------------------------------------
// The update written out, and the records

TEST(PolicyGradientSolver, OneSgdStepIsAscentAlongTheChainRuleGradient) {
  Fixture f;
  const double lr = 0.05;
  PolicyGradientSolver solver({.step = SgdOptions{.learning_rate = lr}, .updates = 1, .epochs = 1});
  const TokenBatch batch = f.batch;
  BatchSource source = [&](const Vector&, int, Rng&) { return batch; };
  const PolicyResult r =
      solver.maximize(f.policy, SurrogateGate{}, source, f.theta_old, PolicyMonitors{});
  const Vector g = policy_gradient(f.policy, SurrogateGate{}, batch, f.theta_old);
  EXPECT_EQ(r.theta, Vector(f.theta_old + lr * g));
  ASSERT_EQ(r.updates.size(), 1u);
  const PolicyUpdateRecord& u = r.updates[0];
  EXPECT_DOUBLE_EQ(u.objective_start, batch.advantage.mean());  // all ratios 1
  EXPECT_GT(u.objective, u.objective_start);                    // a small ascent step
  // First order: J(theta_1) - J(theta_0) = lr |g|^2 + O(lr^2).
  EXPECT_NEAR(u.objective - u.objective_start, lr * g.squaredNorm(), 0.1 * lr * g.squaredNorm());
  EXPECT_TRUE(std::isnan(u.expected_return));
  EXPECT_TRUE(std::isnan(u.distance_to_optimal));
}

TEST(PolicyGradientSolver, RecordsMatchTheirDefinitions) {
  Fixture f;
  PolicyGradientSolver solver(
      {.step = AdamOptions{.learning_rate = 0.1}, .updates = 1, .epochs = 3});
  TokenBatch seen;
  BatchSource source = [&](const Vector& theta, int, Rng& rng) {
    seen = problems::sample_rollouts(f.task, f.policy, theta, {1, 4}, 5, rng).batch;
    return seen;
  };
  PolicyMonitors monitors{
      [&](const Vector& t) { return f.task.expected_return(f.policy.probabilities(t)); },
      [&](const Vector& t) { return f.task.distance_to_optimal(f.policy.probabilities(t)); }};
  const InlinePpoClipGate gate{0.1};
  const PolicyResult r = solver.maximize(f.policy, gate, source, f.theta_old, monitors);
  ASSERT_EQ(r.updates.size(), 1u);
  const PolicyUpdateRecord& u = r.updates[0];
  const Vector l = f.policy.log_prob(r.theta, seen);
  const Vector ratio = (l - seen.old_log_prob).array().exp();
  const double T = static_cast<double>(seen.size());
  EXPECT_EQ(u.tokens_in_batch, seen.size());
  EXPECT_DOUBLE_EQ(u.tv, (ratio.array() - 1.0).abs().sum() / T);
  EXPECT_DOUBLE_EQ(u.kl, ((ratio.array() - 1.0) - ratio.array().log()).sum() / T);
  EXPECT_GT(u.tv, 0.0);
  EXPECT_GT(u.kl, 0.0);
  const GateValue v = gate.evaluate(seen, l);
  EXPECT_DOUBLE_EQ(u.objective, v.objective);
  EXPECT_DOUBLE_EQ(u.tokens.zeroed, v.tokens.zeroed);
  EXPECT_GT(u.tokens.zeroed, 0.0);  // three Adam steps of 0.1 push ratios past 1 +- 0.1
  EXPECT_DOUBLE_EQ(u.objective_start, seen.advantage.mean());
  EXPECT_EQ(u.expected_return, f.task.expected_return(f.policy.probabilities(r.theta)));
  EXPECT_EQ(u.distance_to_optimal, f.task.distance_to_optimal(f.policy.probabilities(r.theta)));
  EXPECT_TRUE(std::isnan(u.optimal_path_distance));  // no such monitor given here
  EXPECT_EQ(r.expected_return, u.expected_return);
  ASSERT_EQ(r.history.size(), 1u);
  EXPECT_EQ(r.history.back().loss, -u.objective);
  EXPECT_EQ(r.history.back().best_loss, -u.expected_return);
  EXPECT_EQ(r.history.back().constraint_residual, u.tv);
  EXPECT_EQ(r.history.back().error, u.distance_to_optimal);
  EXPECT_EQ(r.status, StopReason::kIterationLimit);
}

TEST(PolicyGradientSolver, MinibatchStepsSumToTheFullBatchStepToFirstOrder) {
  // Bandit batches: 8 groups of 4 one-token trajectories; 4 minibatches of 2 groups hold T/4
  // tokens each, so the token-mean minibatch gradients sum to 4 x the full-batch gradient, and
  // one pass of tiny SGD steps moves theta by lr 4 g + O(lr^2).
  ContextualBandit task({.contexts = 8, .domains = 2, .arms = 5, .seed = 4});
  TabularSoftmaxPolicy policy(task);
  Rng rng(5);
  const Vector theta0 = gaussian(rng, policy.num_parameters(), 0.5);
  const TokenBatch batch =
      problems::sample_rollouts(task, policy, theta0, {0, 1, 2, 3, 4, 5, 6, 7}, 4, rng).batch;
  BatchSource source = [&](const Vector&, int, Rng&) { return batch; };
  const double lr = 1e-6;
  const PolicyGradientOptions options{
      .step = SgdOptions{.learning_rate = lr}, .updates = 1, .epochs = 1, .minibatches = 4};
  const PolicyResult r =
      PolicyGradientSolver(options).maximize(policy, SurrogateGate{}, source, theta0, {});
  const Vector expected = 4.0 * lr * policy_gradient(policy, SurrogateGate{}, batch, theta0);
  const double rel = (r.theta - theta0 - expected).norm() / expected.norm();
  std::printf("minibatches: |step - 4 lr g| / |4 lr g| = %.2e\n", rel);
  EXPECT_LT(rel, 1e-5);
  EXPECT_DOUBLE_EQ(r.updates[0].objective_start, batch.advantage.mean());
  EXPECT_EQ(r.history.size(), 1u);

  PolicyGradientOptions too_many = options;
  too_many.minibatches = 9;
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] {
                         PolicyGradientSolver(too_many).maximize(policy, SurrogateGate{}, source,
                                                                 theta0, {});
                       }),
                       "minibatches = 9 exceeds the 8 prompt groups"));
}

TEST(PolicyGradientSolver, PpoClipWithMinibatchesConvergesOnTheBandit) {
  ContextualBandit task({.contexts = 16, .domains = 4, .arms = 8, .gap = 0.2, .seed = 7});
  TabularSoftmaxPolicy policy(task);
  PolicyGradientSolver solver({.step = AdamOptions{.learning_rate = 0.05},
                               .updates = 100,
                               .epochs = 4,
                               .minibatches = 4,
                               .seed = 1});
  const PolicyResult r =
      solver.maximize(task, policy, InlinePpoClipGate{0.2}, {.prompts = 16, .group_size = 16},
                      Vector::Zero(policy.num_parameters()));
  std::printf("bandit PPO, 4 minibatches: distance %.2e, return %.4f (optimum %.4f)\n",
              r.distance_to_optimal, r.expected_return, task.optimal_return());
  EXPECT_LT(r.distance_to_optimal, 0.02);
  const PolicyResult again =
      solver.maximize(task, policy, InlinePpoClipGate{0.2}, {.prompts = 16, .group_size = 16},
                      Vector::Zero(policy.num_parameters()));
  EXPECT_EQ(r.theta, again.theta);  // the reshuffles are seeded too
}

// --------------------------------------------------------------------------------------------
// Convergence to the known optimal policy

TEST(PolicyGradientSolver, PpoClipConvergesToTheBanditsBestArms) {
  ContextualBandit task({.contexts = 16, .domains = 4, .arms = 8, .gap = 0.2, .seed = 7});
  TabularSoftmaxPolicy policy(task);
  PolicyGradientSolver solver(
      {.step = AdamOptions{.learning_rate = 0.1}, .updates = 150, .epochs = 4, .seed = 1});
  const Vector theta0 = Vector::Zero(policy.num_parameters());
  const PolicyResult r = solver.maximize(task, policy, InlinePpoClipGate{0.2},
                                         {.prompts = 16, .group_size = 16}, theta0);
  ASSERT_EQ(r.status, StopReason::kIterationLimit);
  ASSERT_EQ(r.updates.size(), 150u);
  const PolicyUpdateRecord& first = r.updates.front();
  const PolicyUpdateRecord& last = r.updates.back();
  std::printf("bandit PPO: distance %.4f -> %.2e, return %.4f -> %.4f (optimum %.4f)\n",
              first.distance_to_optimal, last.distance_to_optimal, first.expected_return,
              last.expected_return, task.optimal_return());
  EXPECT_LT(r.distance_to_optimal, 0.01);                       // measured 2.5e-3
  EXPECT_GT(r.expected_return, task.optimal_return() - 0.005);  // measured gap 9e-4
  // Every context's best arm has the largest probability.
  const Matrix p = policy.probabilities(r.theta);
  for (int c = 0; c < 16; ++c) {
    Index arg;
    p.row(c).maxCoeff(&arg);
    EXPECT_EQ(arg, task.best_arm(c)) << "context " << c;
  }
  // PPO keeps each update's ratios near the clip range: the mean |r - 1| stays small.
  double max_tv = 0.0, max_kl = 0.0;
  for (const auto& u : r.updates) {
    max_tv = std::max(max_tv, u.tv);
    max_kl = std::max(max_kl, u.kl);
    EXPECT_GE(u.kl, 0.0);
  }
  std::printf("bandit PPO: max TV %.3f, max KL %.4f per update\n", max_tv, max_kl);
  EXPECT_LT(max_tv, 0.5);
}

TEST(PolicyGradientSolver, SurrogateWithAdamConvergesOnASequenceTask) {
  SequenceTask task({.contexts = 4, .domains = 2, .horizon = 3, .vocabulary = 3, .seed = 5});
  TabularSoftmaxPolicy policy(task);
  PolicyGradientSolver solver(
      {.step = AdamOptions{.learning_rate = 0.1}, .updates = 200, .epochs = 1, .seed = 2});
  const PolicyResult r =
      solver.maximize(task, policy, SurrogateGate{}, {.prompts = 4, .group_size = 16},
                      Vector::Zero(policy.num_parameters()));
  std::printf(
      "sequence: return %.4f -> %.4f (optimum %.4f), distance %.4f -> %.4f, on the optimal path "
      "%.4f\n",
      r.updates.front().expected_return, r.expected_return, task.optimal_return(),
      r.updates.front().distance_to_optimal, r.distance_to_optimal, r.optimal_path_distance);
  EXPECT_GT(r.expected_return, task.optimal_return() - 0.02);
  EXPECT_LT(r.distance_to_optimal, 0.2);
  EXPECT_EQ(r.optimal_path_distance, task.optimal_path_distance(policy.probabilities(r.theta)));
  EXPECT_LT(r.optimal_path_distance, 0.03);  // measured 2.4e-3 (seeds 1-5: 2.2e-3 .. 1.5e-2)
  EXPECT_LT(r.optimal_path_distance, r.distance_to_optimal);  // the path is learned first
}

// The library's gates (solvers/ratio_gates.hpp, solvers/fiberpo.hpp) through the same solver.
TEST(PolicyGradientSolver, LibraryPpoClipGateAgreesWithTheInlineOneAndConverges) {
  Fixture f;
  Rng rng(6);
  const Vector theta = f.theta_old + gaussian(rng, f.theta_old.size(), 0.2);
  const Vector l = f.policy.log_prob(theta, f.batch);
  const GateValue mine = InlinePpoClipGate{0.2}.evaluate(f.batch, l);
  const GateValue lib = tether::PpoClipGate().evaluate(f.batch, l);
  EXPECT_NEAR(lib.objective, mine.objective, 1e-15);
  EXPECT_LT((lib.gradient - mine.gradient).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_DOUBLE_EQ(lib.tokens.zeroed, mine.tokens.zeroed);

  ContextualBandit task({.contexts = 16, .domains = 4, .arms = 8, .gap = 0.2, .seed = 7});
  TabularSoftmaxPolicy policy(task);
  PolicyGradientSolver solver(
      {.step = AdamOptions{.learning_rate = 0.1}, .updates = 150, .epochs = 4, .seed = 1});
  const PolicyResult r =
      solver.maximize(task, policy, tether::PpoClipGate(), {.prompts = 16, .group_size = 16},
                      Vector::Zero(policy.num_parameters()));
  std::printf("bandit, library PPO-clip: distance %.2e, return %.4f (optimum %.4f)\n",
              r.distance_to_optimal, r.expected_return, task.optimal_return());
  EXPECT_LT(r.distance_to_optimal, 0.01);
}

TEST(PolicyGradientSolver, FiberPoDomainGateConvergesOnTheBandit) {
  ContextualBandit task({.contexts = 16, .domains = 4, .arms = 8, .gap = 0.2, .seed = 7});
  TabularSoftmaxPolicy policy(task);
  PolicyGradientSolver solver(
      {.step = AdamOptions{.learning_rate = 0.1}, .updates = 150, .epochs = 4, .seed = 1});
  const PolicyResult r =
      solver.maximize(task, policy, GatingHierarchyGate(), {.prompts = 16, .group_size = 16},
                      Vector::Zero(policy.num_parameters()));
  double max_tv = 0.0, rollback = 0.0, zeroed = 0.0;
  for (const auto& u : r.updates) {
    max_tv = std::max(max_tv, u.tv);
    rollback += u.trajectories.rollback / static_cast<double>(r.updates.size());
    zeroed += u.trajectories.zeroed / static_cast<double>(r.updates.size());
  }
  std::printf(
      "bandit, FiberPO-Domain: distance %.2e, return %.4f (optimum %.4f), max TV %.3f, "
      "mean trajectory rollback %.3f zeroed %.3f\n",
      r.distance_to_optimal, r.expected_return, task.optimal_return(), max_tv, rollback, zeroed);
  EXPECT_EQ(r.status, StopReason::kIterationLimit);
  EXPECT_LT(r.distance_to_optimal, 0.05);                      // measured 1.2e-2
  EXPECT_GT(r.expected_return, task.optimal_return() - 0.01);  // measured gap 3.8e-3
}

TEST(PolicyGradientSolver, GrpoGateWithGroupNormalisedAdvantagesConvergesOnTheBandit) {
  ContextualBandit task({.contexts = 16, .domains = 4, .arms = 8, .gap = 0.2, .seed = 7});
  TabularSoftmaxPolicy policy(task);
  PolicyGradientSolver solver(
      {.step = AdamOptions{.learning_rate = 0.1}, .updates = 150, .epochs = 4, .seed = 1});
  int calls = 0;
  RolloutOptions rollout{
      .prompts = 16, .group_size = 16, .postprocess = [&calls](problems::Rollouts& r) {
        ++calls;
        r.batch.advantage = grpo_advantages(r.batch, r.trajectory_return);
      }};
  const PolicyResult r =
      solver.maximize(task, policy, GrpoGate(), rollout, Vector::Zero(policy.num_parameters()));
  std::printf("bandit, GRPO: distance %.2e, return %.4f (optimum %.4f)\n", r.distance_to_optimal,
              r.expected_return, task.optimal_return());
  EXPECT_EQ(calls, 150);
  EXPECT_LT(r.distance_to_optimal, 0.01);                       // measured 1.5e-3
  EXPECT_GT(r.expected_return, task.optimal_return() - 0.005);  // measured gap 5e-4
}

// --------------------------------------------------------------------------------------------
// Determinism and stopping

TEST(PolicyGradientSolver, SameSeedBitwiseSameResult) {
  ContextualBandit task({.contexts = 8, .domains = 2, .arms = 6, .seed = 3});
  TabularSoftmaxPolicy policy(task);
  const Vector theta0 = Vector::Zero(policy.num_parameters());
  auto run = [&](std::uint64_t seed) {
    PolicyGradientSolver solver(
        {.step = AdamOptions{.learning_rate = 0.05}, .updates = 20, .epochs = 3, .seed = seed});
    return solver.maximize(task, policy, InlinePpoClipGate{}, {.prompts = 4, .group_size = 4},
                           theta0);
  };
  const PolicyResult a = run(9), b = run(9), c = run(10);
  EXPECT_EQ(a.theta, b.theta);
  ASSERT_EQ(a.updates.size(), b.updates.size());
  for (std::size_t k = 0; k < a.updates.size(); ++k) {
    EXPECT_EQ(a.updates[k].objective, b.updates[k].objective);
    EXPECT_EQ(a.updates[k].tv, b.updates[k].tv);
    EXPECT_EQ(a.updates[k].kl, b.updates[k].kl);
    EXPECT_EQ(a.updates[k].expected_return, b.updates[k].expected_return);
  }
  EXPECT_NE(a.theta, c.theta);
}

struct StopAfter {
  int n;
  bool on_iteration(const IterationRecord& r) { return r.iteration + 1 < n; }
};

TEST(PolicyGradientSolver, StopsOnToleranceAndOnCallback) {
  ContextualBandit task({.contexts = 4, .domains = 1, .arms = 4, .gap = 0.5, .seed = 2});
  TabularSoftmaxPolicy policy(task);
  const Vector theta0 = Vector::Zero(policy.num_parameters());
  PolicyGradientSolver solver({.step = AdamOptions{.learning_rate = 0.2},
                               .updates = 500,
                               .epochs = 2,
                               .distance_tolerance = 0.1});
  const PolicyResult r =
      solver.maximize(task, policy, SurrogateGate{}, {.prompts = 4, .group_size = 8}, theta0);
  EXPECT_EQ(r.status, StopReason::kConverged);
  EXPECT_LE(r.distance_to_optimal, 0.1);
  EXPECT_GT(r.updates[r.updates.size() - 2].distance_to_optimal, 0.1);
  EXPECT_LT(r.iterations, 500);

  StopAfter stop{3};
  const PolicyResult s =
      PolicyGradientSolver({.updates = 50})
          .maximize(task, policy, SurrogateGate{}, {.prompts = 2, .group_size = 2}, theta0, stop);
  EXPECT_EQ(s.status, StopReason::kStoppedByCallback);
  EXPECT_EQ(s.iterations, 3);
  EXPECT_EQ(s.history.size(), 3u);
}

// --------------------------------------------------------------------------------------------
// Non-finite values

// Tabular policy whose log_prob turns NaN from its n-th call on.
struct FlakyPolicy {
  TabularSoftmaxPolicy inner;
  int nan_from_call;
  mutable int calls = 0;
  Index num_parameters() const { return inner.num_parameters(); }
  Vector log_prob(const Vector& theta, const TokenBatch& b) const {
    Vector l = inner.log_prob(theta, b);
    if (++calls >= nan_from_call) l[0] = kNaN;
    return l;
  }
  void log_prob_vjp(const Vector& theta, const TokenBatch& b, const Vector& c, Vector& g) const {
    inner.log_prob_vjp(theta, b, c, g);
  }
};

TEST(PolicyGradientSolver, NaNFromThePolicyStopsWithTheLastCompletedIterate) {
  Fixture f;
  BatchSource source = [&](const Vector& theta, int, Rng& rng) {
    return problems::sample_rollouts(f.task, f.policy, theta, {0, 1}, 3, rng).batch;
  };
  const PolicyGradientOptions options{
      .step = AdamOptions{.learning_rate = 0.05}, .updates = 10, .epochs = 2};
  // Each update calls log_prob epochs + 1 = 3 times: call 8 is the second pass of update 2.
  FlakyPolicy flaky{f.policy, 8};
  const PolicyResult r =
      PolicyGradientSolver(options).maximize(flaky, SurrogateGate{}, source, f.theta_old, {});
  EXPECT_EQ(r.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(r.message, "log-probabilities are NaN/Inf during update 2"));
  EXPECT_EQ(r.iterations, 2);
  EXPECT_EQ(r.updates.size(), 2u);
  EXPECT_TRUE(r.theta.allFinite());
  PolicyGradientOptions two = options;
  two.updates = 2;
  const PolicyResult ok =
      PolicyGradientSolver(two).maximize(f.policy, SurrogateGate{}, source, f.theta_old, {});
  EXPECT_EQ(r.theta, ok.theta);  // the iterate after update 1, bit for bit

  FlakyPolicy at_start{f.policy, 1};
  EXPECT_TRUE(contains(message_of<NumericalError>([&] {
                         PolicyGradientSolver(options).maximize(at_start, SurrogateGate{}, source,
                                                                f.theta_old, {});
                       }),
                       "at theta0"));

  // A sampler whose old log-probabilities turn NaN after the first batch stops the same way.
  int batches = 0;
  BatchSource nan_source = [&](const Vector& theta, int k, Rng& rng) {
    TokenBatch b = source(theta, k, rng);
    if (++batches > 1) b.old_log_prob[0] = kNaN;
    return b;
  };
  const PolicyResult s = PolicyGradientSolver(options).maximize(f.policy, SurrogateGate{},
                                                                nan_source, f.theta_old, {});
  EXPECT_EQ(s.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(s.message, "old log-probabilities are NaN/Inf during update 1"));
  EXPECT_EQ(s.iterations, 1);
  batches = 1;  // the very first batch is already broken: refused
  EXPECT_TRUE(contains(message_of<NumericalError>([&] {
                         PolicyGradientSolver(options).maximize(f.policy, SurrogateGate{},
                                                                nan_source, f.theta_old, {});
                       }),
                       "old log-probabilities are NaN/Inf at theta0"));

  // A gate returning NaN stops the same way.
  struct NanGate {
    GateValue evaluate(const TokenBatch& b, const Vector& l) const {
      GateValue v = SurrogateGate{}.evaluate(b, l);
      if ((l - b.old_log_prob).cwiseAbs().maxCoeff() > 0.0) v.gradient[0] = kNaN;
      return v;
    }
  };
  const PolicyResult g =
      PolicyGradientSolver(options).maximize(f.policy, NanGate{}, source, f.theta_old, {});
  EXPECT_EQ(g.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(g.message, "gate's gradient is NaN/Inf during update 0"));
  EXPECT_EQ(g.theta, f.theta_old);
  EXPECT_TRUE(g.history.empty());
}

// --------------------------------------------------------------------------------------------
// Bad input

TEST(PolicyGradientSolver, RefusesBadOptionsAndInput) {
  auto options_message = [](PolicyGradientOptions o) {
    return message_of<InvalidArgumentError>([&] { PolicyGradientSolver solver(o); });
  };
  EXPECT_TRUE(contains(options_message({.epochs = 0}), "epochs must be >= 1, got 0"));
  EXPECT_TRUE(contains(options_message({.minibatches = 0}), "minibatches must be >= 1, got 0"));
  EXPECT_TRUE(contains(options_message({.updates = 0}), "updates must be >= 1, got 0"));
  EXPECT_TRUE(contains(options_message({.distance_tolerance = -1.0}), "distance_tolerance"));
  EXPECT_TRUE(contains(options_message({.distance_tolerance = kNaN}), "distance_tolerance"));
  EXPECT_TRUE(contains(options_message({.step = SgdOptions{.learning_rate = -1.0}}), "step (sgd)"));

  Fixture f;
  PolicyGradientSolver solver({.updates = 2, .epochs = 1});
  BatchSource source = [&](const Vector&, int, Rng&) { return f.batch; };
  EXPECT_TRUE(contains(message_of<ShapeError>([&] {
                         solver.maximize(f.policy, SurrogateGate{}, source, Vector::Zero(3), {});
                       }),
                       "theta0 has size 3"));
  Vector nan_theta = f.theta_old;
  nan_theta[1] = kNaN;
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] {
                         solver.maximize(f.policy, SurrogateGate{}, source, nan_theta, {});
                       }),
                       "theta0 must be finite"));
  struct ShortPolicy {
    TabularSoftmaxPolicy inner;
    Index num_parameters() const { return inner.num_parameters(); }
    Vector log_prob(const Vector& theta, const TokenBatch& b) const {
      return inner.log_prob(theta, b).head(b.size() - 1);
    }
    void log_prob_vjp(const Vector& t, const TokenBatch& b, const Vector& c, Vector& g) const {
      inner.log_prob_vjp(t, b, c, g);
    }
  };
  EXPECT_TRUE(contains(message_of<ShapeError>([&] {
                         solver.maximize(ShortPolicy{f.policy}, SurrogateGate{}, source,
                                         f.theta_old, {});
                       }),
                       "the policy's log_prob has"));
  struct ShortGate {
    GateValue evaluate(const TokenBatch& b, const Vector& l) const {
      GateValue v = SurrogateGate{}.evaluate(b, l);
      v.gradient.conservativeResize(b.size() - 1);
      return v;
    }
  };
  EXPECT_TRUE(contains(message_of<ShapeError>([&] {
                         solver.maximize(f.policy, ShortGate{}, source, f.theta_old, {});
                       }),
                       "the gate's gradient has"));
  BatchSource broken = [&](const Vector&, int, Rng&) {
    TokenBatch b = f.batch;
    b.position[1] = 5;
    return b;
  };
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] {
                         solver.maximize(f.policy, SurrogateGate{}, broken, f.theta_old, {});
                       }),
                       "TokenBatch::position"));
  BatchSource empty;
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] {
                         solver.maximize(f.policy, SurrogateGate{}, empty, f.theta_old, {});
                       }),
                       "batch source is empty"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] {
                         solver.maximize(f.task, f.policy, SurrogateGate{},
                                         {.prompts = 7, .group_size = 2}, f.theta_old);
                       }),
                       "rollout.prompts must be in [1, num_contexts = 6]"));
  EXPECT_TRUE(contains(
      message_of<InvalidArgumentError>([&] {
        solver.maximize(
            f.task, f.policy, SurrogateGate{},
            {.prompts = 2, .group_size = 1, .advantage = {.baseline = Baseline::kLeaveOneOut}},
            f.theta_old);
      }),
      "leave-one-out"));
}

}  // namespace
}  // namespace tether
