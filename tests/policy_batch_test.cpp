// TokenBatch::validate: every layout rule, broken alone, is refused with a message naming it and
// the entry, on a small batch and on one above 2^16 tokens (where the all-rules pass runs on
// OpenMP threads); a valid batch passes. And the gating hierarchy's plan (segments() once, then
// gated_ratios on the plan): the same G and Jacobian products bit for bit, new log-probs still
// checked, a plan of another size refused.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/policy_batch.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <vector>

#include "error_message.hpp"
#include "policy_test_batch.hpp"

namespace tether {
namespace {

using testing::message_of;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct BrokenRule {
  const char* what;  ///< a part of the message that names the rule
  std::function<void(TokenBatch&, std::size_t)> apply;
};

// Each rule broken at entry k (k > 0, inside a trajectory that is not the first of its group).
const std::vector<BrokenRule>& broken_rules() {
  static const std::vector<BrokenRule> rules = {
      {"TokenBatch::domain must be sorted", [](TokenBatch& b, std::size_t k) { b.domain[k] = -1; }},
      {"TokenBatch::group must be sorted", [](TokenBatch& b, std::size_t k) { b.group[k] = -1; }},
      {"TokenBatch::trajectory must be sorted",
       [](TokenBatch& b, std::size_t k) { b.trajectory[k] = -1; }},
      {"TokenBatch::group",
       [](TokenBatch& b, std::size_t k) {
         // the group continues into the next domain: a group spanning two domains
         for (std::size_t i = k; i < b.domain.size(); ++i) b.domain[i] += 1;
       }},
      {"TokenBatch::trajectory",
       [](TokenBatch& b, std::size_t k) {
         for (std::size_t i = k; i < b.group.size(); ++i) b.group[i] += 1;  // splits a trajectory
         for (std::size_t i = k; i < b.domain.size(); ++i) b.domain[i] += 1;
       }},
      {"TokenBatch::position at entry", [](TokenBatch& b, std::size_t k) { b.position[k] += 1; }},
      {"TokenBatch::state at entry", [](TokenBatch& b, std::size_t k) { b.state[k] = -2; }},
      {"TokenBatch::action at entry", [](TokenBatch& b, std::size_t k) { b.action[k] = -1; }},
      {"TokenBatch::old_log_prob at entry",
       [](TokenBatch& b, std::size_t k) { b.old_log_prob[static_cast<Index>(k)] = kNan; }},
      {"TokenBatch::old_log_prob at entry",
       [](TokenBatch& b, std::size_t k) { b.old_log_prob[static_cast<Index>(k)] = -kInf; }},
      {"TokenBatch::old_log_prob at entry",
       [](TokenBatch& b, std::size_t k) { b.old_log_prob[static_cast<Index>(k)] = 0.25; }},
      {"TokenBatch::advantage at entry",
       [](TokenBatch& b, std::size_t k) { b.advantage[static_cast<Index>(k)] = kInf; }},
      {"TokenBatch::advantage at entry",
       [](TokenBatch& b, std::size_t k) { b.advantage[static_cast<Index>(k)] = kNan; }},
  };
  return rules;
}

void expect_each_rule_refused(const TokenBatch& valid) {
  ASSERT_NO_THROW(valid.validate());
  // An entry in the middle of a trajectory of the second half (the last pass's blocks).
  std::size_t k = valid.trajectory.size() * 3 / 4;
  while (valid.position[k] == 0) ++k;
  for (const BrokenRule& rule : broken_rules()) {
    TokenBatch b = valid;
    rule.apply(b, k);
    const std::string m = message_of<InvalidArgumentError>([&] { b.validate(); });
    EXPECT_NE(m.find(rule.what), std::string::npos) << "expected \"" << rule.what << "\": " << m;
  }
  // The first entry: its position must be 0.
  TokenBatch first = valid;
  first.position[0] = 1;
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              first.validate();
            }).find("TokenBatch::position at entry 0"),
            std::string::npos);
}

TEST(TokenBatch, EveryRuleBrokenAloneIsRefused) {
  Rng rng(5);
  expect_each_rule_refused(testing::make_test_batch(rng, 2, 2, 3, 2, 9, 0, true));
}

TEST(TokenBatch, EveryRuleBrokenAloneIsRefusedOnALargeBatch) {
  Rng rng(6);
  const TokenBatch large = testing::make_test_batch(rng, 2, 4, 16, 400, 800, 0, true);
  ASSERT_GT(large.size(), Index{1} << 16);
  expect_each_rule_refused(large);
}

TEST(GatingHierarchy, APlanGivesTheSameResultsAndStillChecksTheLogProbs) {
  Rng rng(8);
  const TokenBatch b = testing::make_test_batch(rng, 2, 3, 4, 5, 40, 0, true);
  Vector lp = b.old_log_prob, v(b.size());
  for (Index i = 0; i < b.size(); ++i) {
    lp[i] += std::clamp(0.1 * rng.normal(), -0.6, 0.6);
    v[i] = rng.normal();
  }
  const GatingHierarchyGate gate;
  const HierarchySegments plan = gate.segments(b, lp);
  GatedRatios direct, planned;
  gate.gated_ratios(b, lp, direct);
  gate.gated_ratios(plan, b, lp, planned);
  EXPECT_EQ(direct.values(), planned.values());
  Vector jv_direct, jv_planned, vj_direct, vj_planned;
  direct.jvp(v, jv_direct);
  planned.jvp(v, jv_planned);
  direct.vjp(v, vj_direct);
  planned.vjp(v, vj_planned);
  EXPECT_EQ(jv_direct, jv_planned);
  EXPECT_EQ(vj_direct, vj_planned);
  // New log-probs are still checked (in the trajectories' pass, gating_bench's batch shape
  // below): each kind of bad value, first token, inside, last token; and their count.
  const auto expect_log_probs_checked = [&gate](const TokenBatch& batch, const Vector& good,
                                                const HierarchySegments& p) {
    GatedRatios out;
    const Index n = batch.size();
    for (const double value : {kNan, kInf, -kInf, 0.25})
      for (const Index at : {Index{0}, n / 2 + 1, n - 1}) {
        Vector bad = good;
        bad[at] = value;
        const std::string m =
            message_of<InvalidArgumentError>([&] { gate.gated_ratios(p, batch, bad, out); });
        EXPECT_NE(m.find("new_log_prob at entry " + std::to_string(at) + " is"), std::string::npos)
            << m;
      }
    const Vector short_lp = good.head(n - 1);
    EXPECT_NE(message_of<ShapeError>([&] {
                gate.gated_ratios(p, batch, short_lp, out);
              }).find("new_log_prob has " + std::to_string(n - 1) + " entries"),
              std::string::npos);
  };
  expect_log_probs_checked(b, lp, plan);
  // A refused call leaves its output empty, not the new batch's offsets over the old G.
  GatedRatios reused;
  gate.gated_ratios(b, lp, reused);
  ASSERT_EQ(reused.size(), b.size());
  Rng larger_rng(11);
  const TokenBatch larger = testing::make_test_batch(larger_rng, 2, 3, 4, 8, 60, 0, true);
  ASSERT_GT(larger.size(), b.size());
  Vector larger_bad = larger.old_log_prob;
  larger_bad[larger.size() - 1] = kNan;
  EXPECT_THROW(
      gate.gated_ratios(gate.segments(larger, larger.old_log_prob), larger, larger_bad, reused),
      InvalidArgumentError);
  EXPECT_EQ(reused.size(), 0);
  EXPECT_TRUE(reused.trajectory_offsets().empty());
  Rng large_rng(10);
  const TokenBatch large = testing::make_test_batch(large_rng, 2, 4, 16, 400, 800, 0, true);
  ASSERT_GT(large.size(), Index{1} << 16);  // the pass runs on OpenMP threads
  expect_log_probs_checked(large, large.old_log_prob, gate.segments(large, large.old_log_prob));
  // A plan of another batch size is refused.
  Rng other_rng(9);
  const TokenBatch other = testing::make_test_batch(other_rng, 1, 2, 2, 3, 5, 0, true);
  const HierarchySegments other_plan = gate.segments(other, other.old_log_prob);
  const std::string m =
      message_of<ShapeError>([&] { gate.gated_ratios(other_plan, b, lp, planned); });
  EXPECT_NE(m.find("the plan is for " + std::to_string(other.size()) + " tokens"),
            std::string::npos)
      << m;
  // A plan of the right size whose offsets do not partition the batch is refused (it would
  // index out of range), not used.
  HierarchySegments broken = plan;
  broken.trajectories[1] = broken.trajectories[2];
  HierarchySegments broken_level = plan;
  broken_level.levels[0].back() += 1;
  for (const HierarchySegments* p : {&broken, &broken_level})
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                gate.gated_ratios(*p, b, lp, planned);
              }).find("do not partition"),
              std::string::npos);
  // evaluate on such plans (it sizes its per-trajectory scratch from the plan before the gate
  // checks it): the same refusals, and an empty plan too.
  GateWorkspace workspace;
  GateValue value;
  EXPECT_THROW(gate.evaluate(other_plan, b, lp, workspace, value), ShapeError);
  EXPECT_THROW(gate.evaluate(HierarchySegments{}, b, lp, workspace, value), ShapeError);
  for (const HierarchySegments* p : {&broken, &broken_level})
    EXPECT_THROW(gate.evaluate(*p, b, lp, workspace, value), InvalidArgumentError);
  gate.evaluate(plan, b, lp, workspace, value);
  EXPECT_EQ(value.gradient, gate.evaluate(b, lp).gradient);
  TokenBatch shortened = b;  // advantages changed size after the plan: refused, not read past
  shortened.advantage.conservativeResize(b.size() - 1);
  EXPECT_NE(message_of<ShapeError>([&] {
              gate.evaluate(plan, shortened, lp, workspace, value);
            }).find("advantages for"),
            std::string::npos);
}

TEST(GatingHierarchy, EvaluateWithAWorkspaceGivesTheSameBitsAndReusesItsArrays) {
  const GatingHierarchyGate gate;
  GateWorkspace workspace;
  GateValue reused;
  int reuses_checked = 0;
  for (const int seed : {21, 21, 22, 22}) {  // a size, repeated; another, repeated
    Rng rng(static_cast<std::uint64_t>(seed));
    const TokenBatch b = testing::make_test_batch(rng, 2, 3, 4, 5, seed == 21 ? 40 : 90, 0, true);
    Vector lp = b.old_log_prob;
    for (Index i = 0; i < b.size(); ++i) lp[i] += std::clamp(0.1 * rng.normal(), -0.6, 0.6);
    const GateValue fresh = gate.evaluate(b, lp);
    const double* gradient_storage = reused.gradient.data();
    const double* g_storage = workspace.gated.values().data();
    const bool same_size = reused.gradient.size() == b.size();
    gate.evaluate(b, lp, workspace, reused);
    if (same_size) {  // the per-token arrays were reused, not reallocated
      ++reuses_checked;
      EXPECT_EQ(reused.gradient.data(), gradient_storage);
      EXPECT_EQ(workspace.gated.values().data(), g_storage);
    }
    EXPECT_EQ(fresh.objective, reused.objective);
    EXPECT_EQ(fresh.gradient, reused.gradient);
    EXPECT_EQ(fresh.tokens.pass_through, reused.tokens.pass_through);
    EXPECT_EQ(fresh.tokens.zeroed, reused.tokens.zeroed);
    EXPECT_EQ(fresh.trajectories.rollback, reused.trajectories.rollback);
    GateValue planned;
    gate.evaluate(gate.segments(b, lp), b, lp, workspace, planned);
    EXPECT_EQ(fresh.objective, planned.objective);
    EXPECT_EQ(fresh.gradient, planned.gradient);
    // On a plan only the log-probs are checked, still naming the entry (another workspace: a
    // refusal empties the one it is given).
    GateWorkspace refused;
    Vector bad = lp;
    bad[3] = kNan;
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                gate.evaluate(gate.segments(b, lp), b, bad, refused, planned);
              }).find("new_log_prob at entry 3"),
              std::string::npos);
    // On a batch validated once (the solver's call): the same bits; a refused log-prob named,
    // the value left as it was.
    const ValidatedBatch valid(b);
    GateValue via_valid;
    gate.evaluate(valid, lp, via_valid);
    EXPECT_EQ(fresh.objective, via_valid.objective);
    EXPECT_EQ(fresh.gradient, via_valid.gradient);
    EXPECT_EQ(fresh.trajectories.zeroed, via_valid.trajectories.zeroed);
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                gate.evaluate(valid, bad, via_valid);
              }).find("new_log_prob at entry 3"),
              std::string::npos);
    EXPECT_EQ(fresh.gradient, via_valid.gradient);
  }
  EXPECT_EQ(reuses_checked, 2);
  // FiberPO (depth 2) passes them through.
  Rng rng(23);
  const TokenBatch b = testing::make_test_batch(rng, 2, 3, 4, 5, 40, 0, true);
  Vector lp = b.old_log_prob;
  for (Index i = 0; i < b.size(); ++i) lp[i] += std::clamp(0.1 * rng.normal(), -0.6, 0.6);
  const FiberPoGate fiberpo;
  const GateValue fresh = fiberpo.evaluate(b, lp);
  GateWorkspace fiberpo_workspace;
  GateValue with_workspace, on_plan;
  fiberpo.evaluate(b, lp, fiberpo_workspace, with_workspace);
  fiberpo.evaluate(fiberpo.segments(b, lp), b, lp, fiberpo_workspace, on_plan);
  EXPECT_EQ(fresh.objective, with_workspace.objective);
  EXPECT_EQ(fresh.gradient, with_workspace.gradient);
  EXPECT_EQ(fresh.gradient, on_plan.gradient);
  GateValue via_valid;
  fiberpo.evaluate(ValidatedBatch(b), lp, via_valid);
  EXPECT_EQ(fresh.gradient, via_valid.gradient);
}

}  // namespace
}  // namespace tether
