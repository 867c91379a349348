// The ratio gates of specs/fiberpo.md in one frame: PPO-clip, GRPO (+ its advantage helper and
// the k3 KL), GSPO, APC-Obj, FiberPO and FiberPO-Domain. One property battery
// (expect_gate_properties) runs on every gate: first-order agreement with the ungated objective
// at r = 1 (value and gradient), evaluate's gradient against central differences of the
// objective in the log-probs at a mixed-regime point (kink crossings detected and skipped),
// regime shares summing to 1, the pass-through identity G(r) = r where it holds, and every
// refusal of bad input. Then each gate's own numbers: PPO by hand, GRPO's weights, advantages and
// KL, GSPO's clip, and APC's single-state example (value 0.05, and that it is the maximum).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/apc_obj.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <tether/solvers/ratio_gates.hpp>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "error_message.hpp"
#include "policy_test_batch.hpp"
#include "with_threads.hpp"

namespace tether {
namespace {

using testing::contains;
using testing::message_of;
using testing::sci;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// One advantage per trajectory, states from a pool of `states` (tests/policy_test_batch.hpp).
TokenBatch make_batch(Rng& rng, int domains, int groups_per_domain, int trajectories_per_group,
                      int min_len, int max_len, int states = 7) {
  return testing::make_test_batch(rng, domains, groups_per_domain, trajectories_per_group, min_len,
                                  max_len, states, /*advantage_per_token=*/false);
}

// mu_i = 1 / (|Tj| T_tau): the weights of GSPO, FiberPO and the hierarchy.
Vector trajectory_mean_weights(const TokenBatch& b) {
  const auto o = segment_offsets(b.trajectory);
  const Index n_traj = static_cast<Index>(o.size()) - 1;
  Vector mu(b.size());
  for (Index k = 0; k < n_traj; ++k)
    mu.segment(o[k], o[k + 1] - o[k])
        .setConstant(1.0 / (static_cast<double>(n_traj) * static_cast<double>(o[k + 1] - o[k])));
  return mu;
}

Vector ratios_of(const PpoClipGate& g, const TokenBatch& b, const Vector& lp) {
  return g.gated_ratios(b, lp);
}
Vector ratios_of(const GrpoGate& g, const TokenBatch& b, const Vector& lp) {
  return g.gated_ratios(b, lp);
}
Vector ratios_of(const GspoGate& g, const TokenBatch& b, const Vector& lp) {
  return g.gated_ratios(b, lp);
}
Vector ratios_of(const ApcObjGate& g, const TokenBatch& b, const Vector& lp) {
  return g.gated_ratios(b, lp);
}
Vector ratios_of(const FiberPoGate& g, const TokenBatch& b, const Vector& lp) {
  return g.gated_ratios(b, lp).values();
}
Vector ratios_of(const GatingHierarchyGate& g, const TokenBatch& b, const Vector& lp) {
  return g.gated_ratios(b, lp).values();
}

struct BatteryCase {
  std::string name;
  TokenBatch batch;
  Vector weights;  // mu_i of the ungated objective sum mu r A
  // Draws x = log r; the battery takes the first draw (seeds 0, 1, ...) whose tokens are in
  // every regime the gate has: pass-through, zeroed, and rollback where expect_rollback.
  std::function<Vector(Rng&)> draw;
  bool identity_holds;   // G(r) = r in the pass-through regime
  bool expect_rollback;  // the gate has a rollback regime, expected at the mixed point
};

/// Evaluates into `reused` (its gradient already sized for the batch, whatever else it holds)
/// through into(reused), and checks the fresh evaluate's bits and regimes, and that the
/// gradient's storage was kept.
template <class Into>
void expect_reused_value(const GateValue& fresh, GateValue& reused, Into into) {
  const double* storage = reused.gradient.data();
  into(reused);
  EXPECT_EQ(reused.gradient.data(), storage);
  EXPECT_EQ(reused.gradient, fresh.gradient);
  EXPECT_EQ(reused.objective, fresh.objective);
  for (const auto& [got, want] : {std::pair{reused.tokens, fresh.tokens},
                                  std::pair{reused.trajectories, fresh.trajectories}}) {
    EXPECT_EQ(got.pass_through, want.pass_through);
    EXPECT_EQ(got.rollback, want.rollback);
    EXPECT_EQ(got.zeroed, want.zeroed);
  }
}

template <class Gate>
void expect_gate_properties(const Gate& gate, const BatteryCase& c) {
  SCOPED_TRACE(c.name);
  const TokenBatch& b = c.batch;
  const Index n = b.size();

  // First-order agreement at r = 1: J = sum mu A, dJ/d log pi = mu A.
  {
    const GateValue v = gate.evaluate(b, b.old_log_prob);
    const Vector mu_a = c.weights.cwiseProduct(b.advantage);
    EXPECT_NEAR(v.objective, mu_a.sum(), 1e-15);
    EXPECT_LE((v.gradient - mu_a).cwiseAbs().maxCoeff(), 1e-16);
    EXPECT_EQ(v.tokens.pass_through, 1.0);
    EXPECT_EQ(v.trajectories.pass_through, 1.0);
  }

  // Gradient against central differences in the log-probs at a mixed point. A coordinate whose
  // +-h perturbation crosses a kink (some gradient entry jumps) is skipped and counted.
  {
    Vector lp;
    GateValue v;
    bool mixed = false;
    for (std::uint64_t seed = 0; seed < 200 && !mixed; ++seed) {
      Rng rng(seed);
      lp = b.old_log_prob + c.draw(rng);
      v = gate.evaluate(b, lp);
      mixed = v.tokens.pass_through > 0 && v.tokens.zeroed > 0 &&
              (!c.expect_rollback || v.tokens.rollback > 0);
    }
    ASSERT_TRUE(mixed) << "no mixed-regime point found";
    // Every gate's reuse overload (the gating hierarchy's with a GateWorkspace), into a
    // GateValue left at r = 1: the same bits and regimes, its gradient's storage kept.
    GateValue reused = gate.evaluate(b, b.old_log_prob);
    expect_reused_value(v, reused, [&](GateValue& out) {
      if constexpr (requires { gate.evaluate(b, lp, out); }) {
        gate.evaluate(b, lp, out);
      } else {
        GateWorkspace workspace;
        gate.evaluate(b, lp, workspace, out);
      }
    });
    EXPECT_NEAR(v.tokens.pass_through + v.tokens.rollback + v.tokens.zeroed, 1.0, 1e-15);
    EXPECT_NEAR(v.trajectories.pass_through + v.trajectories.rollback + v.trajectories.zeroed, 1.0,
                1e-15);
    const double h = 1e-6;
    double err = 0.0;
    int skipped = 0;
    for (Index j = 0; j < n; ++j) {
      Vector up = lp, down = lp;
      up[j] += h;
      down[j] -= h;
      const GateValue vu = gate.evaluate(b, up), vd = gate.evaluate(b, down);
      if ((vu.gradient - vd.gradient).cwiseAbs().maxCoeff() > 1e-4) {
        ++skipped;
        continue;
      }
      err = std::max(err, std::abs((vu.objective - vd.objective) / (2 * h) - v.gradient[j]));
    }
    ::testing::Test::RecordProperty(c.name + "_gradient_vs_fd", sci(err));
    EXPECT_LE(err, 1e-9);
    EXPECT_LE(skipped, n / 10);
  }

  // Pass-through identity: |log r| <= 0.01 everywhere gives G(r) = r at rounding level.
  if (c.identity_holds) {
    Rng rng(99);
    double worst = 0.0;
    for (int rep = 0; rep < 10; ++rep) {
      Vector x(n);
      for (Index i = 0; i < n; ++i) x[i] = rng.uniform(-0.01, 0.01);
      const Vector r = x.array().exp();
      const Vector g = ratios_of(gate, b, b.old_log_prob + x);
      worst = std::max(worst, ((g - r).array() / r.array()).abs().maxCoeff());
      EXPECT_EQ(gate.evaluate(b, b.old_log_prob + x).tokens.pass_through, 1.0);
    }
    ::testing::Test::RecordProperty(c.name + "_identity_error", sci(worst));
    EXPECT_LE(worst, 1e-15);
  }

  // Bad input: non-positive probabilities, ragged and unsorted batches, NaN advantages.
  const Vector lp = b.old_log_prob;
  for (double bad : {kNan, kInf, 0.25}) {
    Vector x = lp;
    x[1] = bad;
    const std::string m = message_of<InvalidArgumentError>([&] { (void)gate.evaluate(b, x); });
    EXPECT_TRUE(contains(m, "new_log_prob at entry 1")) << m;
    EXPECT_TRUE(contains(m, "must be finite and <= 0")) << m;
  }
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { (void)gate.evaluate(b, lp.head(n - 1)); }),
                       "new_log_prob has"));
  {
    TokenBatch ragged = b;
    ragged.state.pop_back();
    EXPECT_TRUE(
        contains(message_of<ShapeError>([&] { (void)gate.evaluate(ragged, lp); }), "state has"));
  }
  {
    TokenBatch unsorted = b;
    std::swap(unsorted.group.front(), unsorted.group.back());
    EXPECT_TRUE(contains(
        message_of<InvalidArgumentError>([&] { (void)gate.evaluate(unsorted, lp); }), "sorted"));
  }
  {
    TokenBatch nan_adv = b;
    nan_adv.advantage[0] = kNan;
    EXPECT_TRUE(
        contains(message_of<InvalidArgumentError>([&] { (void)gate.evaluate(nan_adv, lp); }),
                 "advantage at entry 0"));
  }
}

// Log-ratios with per-trajectory scales from 0.01 to 0.5 (so some trajectories stay inside
// every trust region and others leave it).
Vector mixed_log_ratios(Rng& rng, const TokenBatch& b, const std::vector<double>& scales) {
  Vector x(b.size());
  double s = 0.0;
  for (Index i = 0; i < b.size(); ++i) {
    if (i == 0 ||
        b.trajectory[static_cast<std::size_t>(i)] != b.trajectory[static_cast<std::size_t>(i) - 1])
      s = scales[rng.index(scales.size())];
    x[i] = std::clamp(s * rng.normal(), -0.65, 0.65);
  }
  return x;
}

static_assert(RatioGate<PpoClipGate> && RatioGate<GrpoGate> && RatioGate<GspoGate> &&
              RatioGate<ApcObjGate> && RatioGate<FiberPoGate> && RatioGate<GatingHierarchyGate>);

// The token-level gates take a ValidatedBatch, which PolicyGradientSolver's type-erased gate
// (make_gate_function) uses when a gate has it.
template <class Gate>
constexpr bool kTakesValidatedBatch = requires(const Gate& gate, const ValidatedBatch& batch,
                                               const Vector& l, GateValue& out) {
  gate.evaluate(batch, l, out);
};
static_assert(kTakesValidatedBatch<PpoClipGate> && kTakesValidatedBatch<GrpoGate> &&
              kTakesValidatedBatch<GspoGate> && kTakesValidatedBatch<GatingHierarchyGate> &&
              kTakesValidatedBatch<FiberPoGate> && kTakesValidatedBatch<UngatedGate> &&
              kTakesValidatedBatch<ApcObjGate>);
static_assert(!std::is_constructible_v<ValidatedBatch, TokenBatch&&>);  // no temporaries

TEST(GateProperties, UngatedAndApcObjOnAValidatedBatchGiveTheSameBits) {
  // The solver's calls (PolicyGradientSolver) reach these through their ValidatedBatch overloads:
  // the same bits as the validating ones, and the new log-probs still checked.
  Rng rng(71);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 3, 12);
  Vector lp = b.old_log_prob;
  for (Index i = 0; i < b.size(); ++i) lp[i] = std::min(0.0, lp[i] + 0.3 * rng.normal());
  const ValidatedBatch valid(b);
  Vector bad = lp;
  bad[5] = 0.5;
  auto check = [&](const auto& gate, const char* name) {
    const GateValue expected = gate.evaluate(b, lp);
    GateValue got;
    gate.evaluate(valid, lp, got);
    EXPECT_EQ(got.objective, expected.objective) << name;
    EXPECT_EQ(got.gradient, expected.gradient) << name;
    EXPECT_EQ(got.tokens.zeroed, expected.tokens.zeroed) << name;
    EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { gate.evaluate(valid, bad, got); }),
                         "new_log_prob at entry 5 is 0.5"))
        << name;
  };
  check(UngatedGate{}, "ungated");
  check(ApcObjGate({.delta = 0.05}), "apc_obj");
}

TEST(GateProperties, EveryGate) {
  Rng rng(1);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 3, 12);
  auto scaled = [&b](std::vector<double> scales) {
    return [&b, scales](Rng& r) { return mixed_log_ratios(r, b, scales); };
  };
  const auto x_wide = scaled({0.01, 0.1, 0.3, 0.5});
  const Vector token_mean = Vector::Constant(b.size(), 1.0 / static_cast<double>(b.size()));
  expect_gate_properties(PpoClipGate{}, {"ppo", b, token_mean, x_wide, true, false});
  expect_gate_properties(GrpoGate{}, {"grpo", b, GrpoGate::weights(b), x_wide, true, false});
  // GSPO: sequence ratios of a few 1e-4 (its eps is 4e-4).
  const auto x_gspo = scaled({1e-5, 1e-4, 1e-3, 3e-3});
  expect_gate_properties(GspoGate{}, {"gspo", b, trajectory_mean_weights(b), x_gspo, false, false});
  // APC with one state per pair of trajectories (states of ~15 tokens), delta 0.1.
  TokenBatch paired = b;
  for (std::size_t i = 0; i < paired.state.size(); ++i) paired.state[i] = 6 - b.trajectory[i] / 2;
  expect_gate_properties(ApcObjGate({.delta = 0.1}),
                         {"apc", paired, token_mean,
                          [&paired](Rng& r) {
                            return mixed_log_ratios(r, paired, {0.01, 0.05, 0.2});
                          },
                          true, true});
  const auto x_fiber = scaled({0.01, 0.05, 0.1, 0.2, 0.35});
  expect_gate_properties(FiberPoGate{},
                         {"fiberpo", b, trajectory_mean_weights(b), x_fiber, true, true});
  expect_gate_properties(GatingHierarchyGate{},
                         {"fiberpo_domain", b, trajectory_mean_weights(b), x_fiber, true, true});
}

// ---------------------------------------------------------------- PPO-clip

TokenBatch four_tokens(Vector advantage) {
  TokenBatch b;
  b.domain = b.group = {0, 0, 0, 0};
  b.trajectory = {0, 0, 1, 1};
  b.position = {0, 1, 0, 1};
  b.state = {0, 1, 2, 3};
  b.action = {0, 0, 0, 0};
  b.old_log_prob = Vector::Constant(4, std::log(0.25));
  b.advantage = std::move(advantage);
  return b;
}

// PPO-clip's rule for one token written out with std::exp: the reference of the large-batch
// tests below.
struct ReferenceTerm {
  double r, gated;
  bool clipped;
};
ReferenceTerm reference_term(double new_log_prob, double old_log_prob, double a, double eps) {
  const double r = std::exp(new_log_prob - old_log_prob);
  const bool up = a > 0.0 && r > 1.0 + eps, down = a < 0.0 && r < 1.0 - eps;
  return {r, up ? 1.0 + eps : (down ? 1.0 - eps : r), up || down};
}

/// The clipped surrogate sum_i mu_i (G_i A_i - beta k3_i) (k3_i = e^x - x - 1, x = ref_i - lp_i;
/// no penalty for beta = 0), applied token by token with std::exp and one running sum: the
/// objective, a bound of its terms' magnitudes, the gradient and the clipped tokens.
struct ReferenceSurrogate {
  double objective = 0.0, scale = 0.0;
  Vector gradient;
  Index clipped = 0;
};
ReferenceSurrogate reference_surrogate(const TokenBatch& b, const Vector& lp, const Vector& mu,
                                       double eps, double beta = 0.0,
                                       const Vector& ref = Vector()) {
  ReferenceSurrogate out;
  out.gradient.resize(b.size());
  for (Index i = 0; i < b.size(); ++i) {
    const double a = b.advantage[i];
    const ReferenceTerm t = reference_term(lp[i], b.old_log_prob[i], a, eps);
    const double x = beta > 0.0 ? ref[i] - lp[i] : 0.0, ex = std::exp(x);
    out.objective += mu[i] * (t.gated * a - beta * (ex - x - 1.0));
    out.scale += mu[i] * (std::abs(t.r * a) + beta * (ex + std::abs(x) + 1.0));
    out.gradient[i] = mu[i] * ((t.clipped ? 0.0 : t.r * a) + beta * (ex - 1.0));
    out.clipped += t.clipped ? 1 : 0;
  }
  return out;
}

TEST(PpoClip, ExtremeRatiosAndAdvantagesStayFinite) {
  // r = exp(800) overflows to +inf (old log-prob -800 is valid input) and r A to more than the
  // largest double: where the token is clipped, neither may reach G A or the gradient.
  TokenBatch b = four_tokens(Vector{{1.0, 1e308, -1.0, 1.0}});
  b.old_log_prob[0] = -800.0;  // r = inf, A > 0: clipped, G = 1.2
  Vector lp = b.old_log_prob;
  lp[0] = 0.0;
  lp[1] += std::log(2.0);  // r = 2, A = 1e308: clipped, G A = 1.2e308 (r A would overflow)
  lp[2] += std::log(0.5);  // r = 0.5, A < 0: clipped, G = 0.8
  const GateValue v = PpoClipGate{}.evaluate(b, lp);
  EXPECT_TRUE(std::isfinite(v.objective)) << v.objective;
  EXPECT_NEAR(v.objective, (1.2 + 1.2e308 - 0.8 + 1.0) / 4.0, 1e-15 * 1.2e308);
  for (const Index i : {0, 1, 2}) {
    EXPECT_EQ(v.gradient[i], 0.0) << "token " << i;
    EXPECT_FALSE(std::signbit(v.gradient[i])) << "token " << i;
  }
  EXPECT_NEAR(v.gradient[3], 0.25, 1e-16);
  EXPECT_EQ(v.tokens.zeroed, 0.75);
  const Vector g = PpoClipGate{}.gated_ratios(b, lp);
  EXPECT_EQ(g[0], 1.2);
  EXPECT_EQ(g[2], 0.8);
}

TEST(PpoClip, ALargeBatchOnThreadsMatchesTheTokenByTokenRule) {
  // Above 2^16 tokens evaluate runs on threads, in lanes and with fast_exp: compared with the
  // rule applied token by token with std::exp and one running sum.
  Rng rng(31);
  const TokenBatch b = testing::make_test_batch(rng, 2, 4, 16, 400, 800, 0, true);
  ASSERT_GT(b.size(), Index{1} << 16);
  Vector lp = b.old_log_prob;
  for (Index i = 0; i < b.size(); ++i)
    lp[i] = std::min(0.0, lp[i] + std::clamp(0.2 * rng.normal(), -0.6, 0.6));
  const double n = static_cast<double>(b.size());
  const ReferenceSurrogate ref =
      reference_surrogate(b, lp, Vector::Constant(b.size(), 1.0 / n), 0.2);
  const GateValue v = PpoClipGate{}.evaluate(b, lp);
  ASSERT_GT(ref.clipped, b.size() / 20);  // both regimes well represented
  EXPECT_NEAR(v.objective, ref.objective, 1e-14 * ref.scale);
  EXPECT_LE((v.gradient - ref.gradient).cwiseAbs().maxCoeff(),
            4e-16 * ref.gradient.cwiseAbs().maxCoeff());
  EXPECT_EQ(v.tokens.zeroed, static_cast<double>(ref.clipped) / n);
  for (Index i = 0; i < b.size(); ++i)
    if (ref.gradient[i] == 0.0) ASSERT_EQ(v.gradient[i], 0.0) << "token " << i;
  // Into a GateValue whose gradient's storage is reused: the same bits.
  GateValue reused;
  PpoClipGate{}.evaluate(b, b.old_log_prob, reused);  // sized, other values
  expect_reused_value(v, reused, [&](GateValue& out) { PpoClipGate{}.evaluate(b, lp, out); });
  // Fixed chunks added in order: one thread gives the same bits as two.
  const auto run = [&] { return PpoClipGate{}.evaluate(b, lp); };
  const GateValue one = testing::with_threads(1, run), two = testing::with_threads(2, run);
  EXPECT_EQ(one.objective, two.objective);
  EXPECT_EQ(one.gradient, two.gradient);
  // On a batch validated once (ValidatedBatch): the same bits; the new log-probs still checked,
  // chunk by chunk inside the pass (an entry past the first chunk of 2^14 named), the value then
  // emptied; a malformed batch refused when it is validated.
  const ValidatedBatch valid(b);
  expect_reused_value(v, reused, [&](GateValue& out) { PpoClipGate{}.evaluate(valid, lp, out); });
  for (const Index entry : {Index{0}, Index{70001}, b.size() - 1}) {
    Vector bad = lp;
    bad[entry] = entry == 0 ? kNan : 0.25;
    const std::string message =
        message_of<InvalidArgumentError>([&] { PpoClipGate{}.evaluate(valid, bad, reused); });
    EXPECT_TRUE(contains(message, "new_log_prob at entry " + std::to_string(entry) + " is "))
        << message;
    EXPECT_EQ(reused.gradient.size(), 0) << entry;
    EXPECT_THROW(PpoClipGate{}.evaluate(valid, Vector(bad.head(b.size() - 1)), reused), ShapeError);
  }
  TokenBatch broken = b;
  broken.position[5] = 7;
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { ValidatedBatch{broken}; }),
                       "TokenBatch::position at entry 5 is 7"));
  // A batch that changed size after it was validated is refused, not read out of bounds.
  TokenBatch grown = b;
  const ValidatedBatch stale(grown);
  grown.advantage.conservativeResize(b.size() + 1);
  grown.advantage[b.size()] = 0.0;
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { PpoClipGate{}.evaluate(stale, lp, reused); }),
                       "ValidatedBatch: the batch changed size since it was validated"));
}

TEST(Grpo, ALargeBatchWithThePenaltyMatchesTheTokenByTokenRule) {
  // GRPO's weighted surrogate with the k3 penalty above 2^16 tokens (threads, lanes, fast_exp)
  // against the formulas applied token by token with std::exp and one running sum.
  Rng rng(32);
  const TokenBatch b = testing::make_test_batch(rng, 2, 4, 16, 400, 800, 0, true);
  ASSERT_GT(b.size(), Index{1} << 16);
  Vector lp = b.old_log_prob, ref = b.old_log_prob;
  for (Index i = 0; i < b.size(); ++i) {
    lp[i] = std::min(0.0, lp[i] + std::clamp(0.2 * rng.normal(), -0.6, 0.6));
    ref[i] = std::min(0.0, ref[i] + 0.1 * rng.normal());
  }
  const double eps = 0.2, beta = 0.04;
  const Vector mu = GrpoGate::weights(b);
  const ReferenceSurrogate expected = reference_surrogate(b, lp, mu, eps, beta, ref);
  const GrpoGate gate({.eps = eps, .beta = beta}, ref);
  const GateValue v = gate.evaluate(b, lp);
  GateValue reused;
  gate.evaluate(b, b.old_log_prob, reused);  // sized, other values
  expect_reused_value(v, reused, [&](GateValue& out) { gate.evaluate(b, lp, out); });
  // With the weights taken once per batch: the same bits, the same storage; also on a batch
  // validated once.
  gate.evaluate(b, b.old_log_prob, mu, reused);
  expect_reused_value(v, reused, [&](GateValue& out) { gate.evaluate(b, lp, mu, out); });
  const ValidatedBatch valid(b);
  gate.evaluate(b, b.old_log_prob, mu, reused);
  expect_reused_value(v, reused, [&](GateValue& out) { gate.evaluate(valid, lp, mu, out); });
  gate.evaluate(b, b.old_log_prob, mu, reused);
  expect_reused_value(v, reused, [&](GateValue& out) { gate.evaluate(valid, lp, out); });
  for (const double bad_weight : {kNan, 0.0, -1.0}) {
    Vector bad_mu = mu;
    bad_mu[7] = bad_weight;
    EXPECT_TRUE(
        contains(message_of<InvalidArgumentError>([&] { gate.evaluate(b, lp, bad_mu, reused); }),
                 "GrpoGate::evaluate: weights must be finite and > 0"));
  }
  EXPECT_THROW(gate.evaluate(b, lp, Vector(mu.head(b.size() - 1)), reused), ShapeError);
  ASSERT_GT(expected.clipped, b.size() / 20);
  EXPECT_NEAR(v.objective, expected.objective, 1e-14 * expected.scale);
  EXPECT_LE((v.gradient - expected.gradient).cwiseAbs().maxCoeff(),
            1e-15 * expected.gradient.cwiseAbs().maxCoeff());
  EXPECT_EQ(v.tokens.zeroed, static_cast<double>(expected.clipped) / static_cast<double>(b.size()));
}

TEST(PpoClip, ValueGradientAndRegimesByHand) {
  const TokenBatch b = four_tokens(Vector{{1.0, 1.0, -1.0, -1.0}});
  const Vector r{{1.5, 0.5, 1.1, 0.7}};
  const Vector lp = b.old_log_prob + r.array().log().matrix();
  const GateValue v = PpoClipGate{}.evaluate(b, lp);
  // min(1.5, 1.2) + min(0.5, 0.8) + min(-1.1, -1.1) + min(-0.7, -0.8) = 1.2 + 0.5 - 1.1 - 0.8.
  EXPECT_NEAR(v.objective, -0.2 / 4, 1e-15);
  EXPECT_EQ(v.gradient[0], 0.0);
  EXPECT_NEAR(v.gradient[1], 0.5 / 4, 1e-16);
  EXPECT_NEAR(v.gradient[2], -1.1 / 4, 1e-16);
  EXPECT_EQ(v.gradient[3], 0.0);
  EXPECT_EQ(v.tokens.zeroed, 0.5);
  const Vector g = PpoClipGate{}.gated_ratios(b, lp);
  EXPECT_NEAR(g[0], 1.2, 1e-15);
  EXPECT_NEAR(g[3], 0.8, 1e-15);
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { PpoClipGate gate({.eps = -0.2}); }),
                       "PpoClipGate::Options: eps must be finite and >= 0, got -0.2"));
}

// ---------------------------------------------------------------- GRPO

TokenBatch grpo_batch() {
  // group 0: trajectories of 2 and 3 tokens; group 1: one trajectory of 4 tokens.
  TokenBatch b;
  b.domain = std::vector<int>(9, 0);
  b.group = {0, 0, 0, 0, 0, 1, 1, 1, 1};
  b.trajectory = {0, 0, 1, 1, 1, 2, 2, 2, 2};
  b.position = {0, 1, 0, 1, 2, 0, 1, 2, 3};
  b.state = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  b.action = std::vector<int>(9, 0);
  b.old_log_prob = Vector::Constant(9, std::log(0.5));
  b.advantage = Vector::Ones(9);
  return b;
}

TEST(Grpo, WeightsAreOneOverGroupSizeTimesLength) {
  const Vector mu = GrpoGate::weights(grpo_batch());
  const Vector expected{
      {1 / 4.0, 1 / 4.0, 1 / 6.0, 1 / 6.0, 1 / 6.0, 1 / 4.0, 1 / 4.0, 1 / 4.0, 1 / 4.0}};
  EXPECT_EQ((mu - expected).cwiseAbs().maxCoeff(), 0.0);
}

TEST(Grpo, GroupNormalisedAdvantages) {
  const TokenBatch b = grpo_batch();
  // Group 0: rewards (1, 0): mean 0.5, population std 0.5 -> (+1, -1). Group 1 has one
  // trajectory: std 0 -> advantage 0 (the std = 0 rule).
  const Vector a = grpo_advantages(b, Vector{{1.0, 0.0, 7.0}});
  EXPECT_EQ((a - Vector{{1.0, 1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0}}).cwiseAbs().maxCoeff(),
            0.0);
  // Sample std (torch.std): sqrt(0.5).
  const Vector u = grpo_advantages(b, Vector{{1.0, 0.0, 7.0}}, {.unbiased_std = true});
  EXPECT_NEAR(u[0], std::sqrt(0.5), 1e-15);
  EXPECT_NEAR(u[2], -std::sqrt(0.5), 1e-15);
  EXPECT_EQ(u[5], 0.0);
  const Vector e = grpo_advantages(b, Vector{{1.0, 0.0, 7.0}}, {.std_epsilon = 1e-4});
  EXPECT_NEAR(e[0], 0.5 / 0.5001, 1e-15);
  // All rewards equal: exactly 0, even where rounding makes the mean differ from them.
  const Vector z = grpo_advantages(b, Vector{{0.1, 0.1, 0.3}});
  EXPECT_EQ(z.cwiseAbs().maxCoeff(), 0.0);
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { (void)grpo_advantages(b, Vector::Ones(2)); }),
                       "trajectory_reward has 2 entries; the batch has 3 trajectories"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] {
                         (void)grpo_advantages(b, Vector{{1.0, kNan, 0.0}});
                       }),
                       "trajectory_reward at entry 1"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>(
                           [&] { (void)grpo_advantages(b, Vector::Ones(3), {.std_epsilon = -1}); }),
                       "std_epsilon must be finite and >= 0"));
}

TEST(Grpo, KlToReference) {
  TokenBatch b = grpo_batch();
  Rng rng(3);
  Vector ref(9), x(9);
  for (Index i = 0; i < 9; ++i) {
    ref[i] = std::log(rng.uniform(0.1, 0.9));
    x[i] = std::clamp(0.3 * rng.normal(), -0.6, 0.6);  // new log-probs stay <= 0
  }
  b.advantage.setZero();  // J = -beta sum mu k3
  const double beta = 0.04;
  const GrpoGate gate({.beta = beta}, ref);
  const Vector lp = b.old_log_prob + x;
  const Vector mu = GrpoGate::weights(b);
  double expected = 0.0;
  for (Index i = 0; i < 9; ++i) {
    const double q = ref[i] - lp[i];
    expected -= beta * mu[i] * (std::exp(q) - q - 1.0);
  }
  const GateValue v = gate.evaluate(b, lp);
  EXPECT_NEAR(v.objective, expected, 1e-16);
  double err = 0.0;
  for (Index j = 0; j < 9; ++j) {
    Vector up = lp, down = lp;
    up[j] += 1e-6;
    down[j] -= 1e-6;
    err = std::max(
        err, std::abs((gate.evaluate(b, up).objective - gate.evaluate(b, down).objective) / 2e-6 -
                      v.gradient[j]));
  }
  EXPECT_LE(err, 1e-10);
  // At pi = pi_ref the KL and its gradient vanish.
  EXPECT_EQ(GrpoGate({.beta = beta}, lp).evaluate(b, lp).objective, 0.0);
  EXPECT_EQ(GrpoGate({.beta = beta}, lp).evaluate(b, lp).gradient.cwiseAbs().maxCoeff(), 0.0);
  // Refusals.
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { GrpoGate g({.eps = -0.2}); }),
                       "GrpoGate::Options: eps must be finite and >= 0"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { GrpoGate g({.beta = 0.1}); }),
                       "no reference_log_prob"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { GrpoGate g({.beta = -0.1}); }),
                       "beta must be finite and >= 0, got -0.10000000000000001"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] {
                         GrpoGate g({.beta = 0.1}, Vector{{-0.1, 0.2}});
                       }),
                       "reference_log_prob at entry 1 is 0.2"));
  EXPECT_TRUE(contains(message_of<ShapeError>([&] {
                         (void)GrpoGate({.beta = 0.1}, Vector::Constant(3, -1.0)).evaluate(b, lp);
                       }),
                       "reference_log_prob has 3 entries"));
}

// ---------------------------------------------------------------- GSPO

TEST(Gspo, ALargeBatchGivesTheSameBitsOnOneThreadAndTwo) {
  // Above 2^16 tokens the trajectories run on threads; sums are added in trajectory order.
  Rng rng(33);
  const TokenBatch b = testing::make_test_batch(rng, 2, 4, 16, 400, 800, 0, true);
  ASSERT_GT(b.size(), Index{1} << 16);
  // A shift per trajectory of about the clip range (4e-4), so that some trajectories clip.
  std::vector<double> shift(static_cast<std::size_t>(b.trajectory.back()) + 1);
  for (double& x : shift) x = 5e-4 * rng.normal();
  Vector lp = b.old_log_prob, v(b.size());
  for (Index i = 0; i < b.size(); ++i) {
    const double x = shift[static_cast<std::size_t>(b.trajectory[static_cast<std::size_t>(i)])];
    lp[i] = std::min(0.0, lp[i] + x + 0.002 * rng.normal());
    v[i] = rng.normal();
  }
  const GspoGate gate;
  const auto run = [&] {
    return std::make_tuple(gate.evaluate(b, lp), gate.jvp(b, lp, v), gate.vjp(b, lp, v));
  };
  const auto one = testing::with_threads(1, run), two = testing::with_threads(2, run);
  EXPECT_EQ(std::get<0>(one).objective, std::get<0>(two).objective);
  EXPECT_EQ(std::get<0>(one).gradient, std::get<0>(two).gradient);
  EXPECT_EQ(std::get<0>(one).trajectories.zeroed, std::get<0>(two).trajectories.zeroed);
  EXPECT_GT(std::get<0>(one).trajectories.zeroed, 0.0);  // both regimes present
  EXPECT_LT(std::get<0>(one).trajectories.zeroed, 1.0);
  EXPECT_EQ(std::get<1>(one), std::get<1>(two));
  EXPECT_EQ(std::get<2>(one), std::get<2>(two));
  // Into a reused GateValue: the same bits, the storage kept.
  GateValue reused;
  gate.evaluate(b, b.old_log_prob, reused);  // sized, other values
  expect_reused_value(std::get<0>(one), reused, [&](GateValue& out) { gate.evaluate(b, lp, out); });
  // On a batch validated once: the same bits; the new log-probs still checked.
  const ValidatedBatch valid(b);
  gate.evaluate(b, b.old_log_prob, reused);
  expect_reused_value(std::get<0>(one), reused,
                      [&](GateValue& out) { gate.evaluate(valid, lp, out); });
  EXPECT_EQ(valid.trajectories(), segment_offsets(b.trajectory));
  // Each trajectory's log-probs are checked inside the pass: the first bad entry is named
  // whichever trajectory (and thread) meets it first, and the value emptied; a wrong size is
  // refused with the value left as it was.
  ASSERT_GT(b.size(), 70001);
  for (const std::vector<Index>& entries :
       {std::vector<Index>{b.size() - 1}, std::vector<Index>{70001, 3}, std::vector<Index>{0}}) {
    Vector bad = lp;
    for (const Index entry : entries) bad[entry] = entry == 0 ? 0.25 : kNan;
    const Index first = *std::min_element(entries.begin(), entries.end());
    gate.evaluate(valid, lp, reused);
    const std::string message = testing::with_threads(2, [&] {
      return message_of<InvalidArgumentError>([&] { gate.evaluate(valid, bad, reused); });
    });
    EXPECT_TRUE(contains(message, "new_log_prob at entry " + std::to_string(first) + " is "))
        << message;
    EXPECT_EQ(reused.gradient.size(), 0) << first;
  }
  gate.evaluate(valid, lp, reused);
  EXPECT_THROW(gate.evaluate(valid, Vector(lp.head(b.size() - 1)), reused), ShapeError);
  EXPECT_EQ(reused.gradient, std::get<0>(one).gradient);
}

TEST(Gspo, SequenceRatioAndClip) {
  const TokenBatch b = four_tokens(Vector{{1.0, 1.0, -1.0, -1.0}});
  // Trajectory 0: log r = (3e-4, 1e-4): s = e^2e-4, inside 1 +- 4e-4. Trajectory 1 (A < 0):
  // log r = (-1e-3, -5e-4): s = e^-7.5e-4 < 1 - 4e-4: clipped, zeroed.
  const Vector x{{3e-4, 1e-4, -1e-3, -5e-4}};
  const GspoGate gate;
  const GateValue v = gate.evaluate(b, b.old_log_prob + x);
  const Vector g = gate.gated_ratios(b, b.old_log_prob + x);
  EXPECT_NEAR(g[0], std::exp(2e-4), 1e-16);
  EXPECT_EQ(g[1], g[0]);
  EXPECT_EQ(g[2], 1.0 - 4e-4);
  EXPECT_NEAR(v.objective, 0.5 * (std::exp(2e-4) - (1.0 - 4e-4)), 1e-16);
  EXPECT_NEAR(v.gradient[0], std::exp(2e-4) / 4, 1e-16);  // s A / (|Tj| T_tau)
  EXPECT_EQ(v.gradient[2], 0.0);
  EXPECT_EQ(v.trajectories.zeroed, 0.5);
  EXPECT_EQ(v.tokens.zeroed, 0.5);
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { GspoGate g({.eps = kNan}); }),
                       "GspoGate::Options: eps must be finite and >= 0"));
}

// ---------------------------------------------------------------- APC-Obj

// The paper's single-state example: actions with counts n = (1, 2, 1), so pi_old = (1/4, 1/2,
// 1/4) and four tokens at one state; A = (1, 0, -2); delta = 0.2.
struct ApcExample {
  TokenBatch batch;
  ApcExample() {
    batch.domain = batch.group = batch.trajectory = {0, 0, 0, 0};
    batch.position = {0, 1, 2, 3};
    batch.state = {5, 5, 5, 5};
    batch.action = {0, 1, 1, 2};
    batch.old_log_prob = Vector{{std::log(0.25), std::log(0.5), std::log(0.5), std::log(0.25)}};
    batch.advantage = Vector{{1.0, 0.0, 0.0, -2.0}};
  }
  // J at Delta = r - 1 per action.
  double value(const ApcObjGate& gate, double d0, double d1, double d2) const {
    const Vector r{{1 + d0, 1 + d1, 1 + d1, 1 + d2}};
    return gate.evaluate(batch, batch.old_log_prob + r.array().log().matrix()).objective;
  }
};

TEST(ApcObj, SingleStateExampleValueAndMaximiser) {
  const ApcExample ex;
  const ApcObjGate gate({.delta = 0.2});
  const double at_lp = ex.value(gate, 0.4, 0.0, -0.4);
  RecordProperty("apc_value_error", sci(std::abs(at_lp - 0.05)));
  EXPECT_NEAR(at_lp, 0.05, 1e-15);
  // Over normalised ratios (sum_a pi_old(a) r_a = 1, r > 0): Delta_1 = -(Delta_0 + Delta_2)/2.
  // A grid (step 0.01) and 20000 random points never beat 0.05.
  double best = -1e9;
  for (int i = -99; i <= 300; ++i) {
    for (int k = -99; k <= 300; ++k) {
      const double d0 = i / 100.0, d2 = k / 100.0, d1 = -(d0 + d2) / 2;
      if (d1 <= -1.0 || (1 + d0) * 0.25 > 1.0 || (1 + d2) * 0.25 > 1.0 || (1 + d1) * 0.5 > 1.0)
        continue;
      best = std::max(best, ex.value(gate, d0, d1, d2));
    }
  }
  Rng rng(4);
  for (int s = 0; s < 20000; ++s) {
    const double d0 = rng.uniform(-0.999, 3.0), d2 = rng.uniform(-0.999, 3.0), d1 = -(d0 + d2) / 2;
    if (d1 <= -1.0 || (1 + d1) * 0.5 > 1.0) continue;
    best = std::max(best, ex.value(gate, d0, d1, d2));
  }
  RecordProperty("apc_search_best", sci(best));
  EXPECT_LE(best, 0.05 + 1e-15);
  EXPECT_GE(best, 0.05 - 1e-15);  // the grid contains the maximiser
  // At the maximiser the state's TV is exactly delta: G = r (the unmoved tokens sit at the
  // kink B = 0, where G = 1 = r as well).
  const Vector x_opt{{std::log(1.4), 0.0, 0.0, std::log(0.6)}};
  const Vector g = gate.gated_ratios(ex.batch, ex.batch.old_log_prob + x_opt);
  EXPECT_LE((g - x_opt.array().exp().matrix()).cwiseAbs().maxCoeff(), 1e-15);
}

TEST(ApcObj, RegimesAndBudgets) {
  const ApcExample ex;
  const ApcObjGate gate({.delta = 0.2});
  // Delta = (0.6, 0, -0.6): TV = 0.3 > 0.2; B_0 = 0.8 - 0.6 = 0.2 < 0.6: rollback on both moved
  // tokens; J = (0.2 * 1 + (-0.2) * (-2) + (1 - 2)) / 4 = -0.1.
  const Vector x{{std::log(1.6), 0.0, 0.0, std::log(0.4)}};
  const GateValue v = gate.evaluate(ex.batch, ex.batch.old_log_prob + x);
  EXPECT_NEAR(v.objective, -0.1, 1e-15);
  EXPECT_EQ(v.tokens.rollback, 0.5);
  // dJ/dr_0 = -sign(r_0 - 1) * (sign(r_3 - 1) A_3) / 4 = -(1)(2)/4; d log: times r_0 = 1.6.
  EXPECT_NEAR(v.gradient[0], -0.5 * 1.6, 1e-15);
  EXPECT_NEAR(v.gradient[3], -(-1.0) * (1.0) * 0.4 / 4, 1e-15);
  // Delta = (2, 0, -0.9): B <= 0 for both: zeroed, G = 1.
  const Vector far{{std::log(3.0), 0.0, 0.0, std::log(0.1)}};
  const Vector g = gate.gated_ratios(ex.batch, ex.batch.old_log_prob + far);
  EXPECT_EQ(g[0], 1.0);
  EXPECT_EQ(g[3], 1.0);
  EXPECT_EQ(gate.evaluate(ex.batch, ex.batch.old_log_prob + far).tokens.zeroed, 1.0);
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { ApcObjGate a({.delta = -0.1}); }),
                       "ApcObjGate::Options: delta must be finite and >= 0"));
}

// ---------------------------------------------------------------- Jacobians (spec section 6)

// J = dG/dr through each gate's jvp / vjp, in ratio space. At a seeded mixed-regime point that
// is kink-free (every column of J and the regime shares unchanged at r_j +- h, checked): J
// against central differences of gated_ratios() in r column by column; block structure (FD and
// jvp exactly 0 outside a block: off the diagonal for PPO / GRPO, across trajectories for
// GSPO, across states for APC); vjp = jvp transposed; the identity Jacobian near r = 1 (GSPO:
// its rank-one blocks); evaluate's gradient = r .* vjp(mu .* A); and the ShapeErrors.
struct JacobianCase {
  std::string name;
  TokenBatch batch;
  Vector weights;  // mu_i: evaluate's objective is sum mu G A (+ a constant for APC)
  std::function<Vector(Rng&)> draw;
  std::function<bool(Index, Index)> coupled;  // (i, j) may be nonzero in J
  bool expect_rollback;
  bool trajectory_gate;  // the mixed point needs zeroed trajectories (GSPO)
};

template <class Gate>
Matrix dense_jacobian(const Gate& gate, const TokenBatch& b, const Vector& lp) {
  const Index n = b.size();
  Matrix jac(n, n);
  for (Index j = 0; j < n; ++j) jac.col(j) = gate.jvp(b, lp, Vector::Unit(n, j));
  return jac;
}

// lp with r_j replaced by r_j + dr.
Vector shift_ratio(const TokenBatch& b, const Vector& lp, Index j, double dr) {
  Vector out = lp;
  out[j] = b.old_log_prob[j] + std::log(std::exp(lp[j] - b.old_log_prob[j]) + dr);
  return out;
}

bool same_shares(const GateValue& a, const GateValue& b) {
  return a.tokens.pass_through == b.tokens.pass_through && a.tokens.rollback == b.tokens.rollback &&
         a.tokens.zeroed == b.tokens.zeroed &&
         a.trajectories.pass_through == b.trajectories.pass_through &&
         a.trajectories.zeroed == b.trajectories.zeroed;
}

template <class Gate>
void expect_jacobian_properties(const Gate& gate, const JacobianCase& c) {
  SCOPED_TRACE(c.name);
  const TokenBatch& b = c.batch;
  const Index n = b.size();
  const double h = 1e-6;

  // A mixed-regime point with no kink within +-h of any r_j.
  Vector lp;
  Matrix jac;
  bool found = false;
  for (std::uint64_t seed = 0; seed < 200 && !found; ++seed) {
    Rng rng(seed);
    lp = b.old_log_prob + c.draw(rng);
    const GateValue v = gate.evaluate(b, lp);
    const bool mixed = c.trajectory_gate
                           ? v.trajectories.pass_through > 0 && v.trajectories.zeroed > 0
                           : v.tokens.pass_through > 0 && v.tokens.zeroed > 0 &&
                                 (!c.expect_rollback || v.tokens.rollback > 0);
    if (!mixed) continue;
    jac = dense_jacobian(gate, b, lp);
    found = true;
    for (Index j = 0; j < n && found; ++j) {
      for (double dr : {-h, h}) {
        const Vector moved = shift_ratio(b, lp, j, dr);
        if (!same_shares(gate.evaluate(b, moved), v) ||
            (gate.jvp(b, moved, Vector::Unit(n, j)) - jac.col(j)).cwiseAbs().maxCoeff() > 1e-4)
          found = false;
      }
    }
  }
  ASSERT_TRUE(found) << "no mixed-regime kink-free point found";

  // (1) J against central differences of G in r, (2) exact zeros outside the blocks.
  double fd_err = 0.0;
  Index outside = 0, outside_nonzero = 0;
  for (Index j = 0; j < n; ++j) {
    const Vector fd = (gate.gated_ratios(b, shift_ratio(b, lp, j, h)) -
                       gate.gated_ratios(b, shift_ratio(b, lp, j, -h))) /
                      (2 * h);
    fd_err = std::max(fd_err, (fd - jac.col(j)).cwiseAbs().maxCoeff());
    for (Index i = 0; i < n; ++i) {
      if (c.coupled(i, j)) continue;
      ++outside;
      outside_nonzero += (fd[i] != 0.0 || jac(i, j) != 0.0) ? 1 : 0;
    }
  }
  ::testing::Test::RecordProperty(c.name + "_jacobian_vs_fd", sci(fd_err));
  EXPECT_LE(fd_err, 1e-8);
  EXPECT_GT(outside, 0);
  EXPECT_EQ(outside_nonzero, 0);

  // (3) vjp = jvp transposed: densely, and w'(J v) = (J'w)'v for random v, w.
  {
    double dense_err = 0.0;
    for (Index i = 0; i < n; ++i)
      dense_err = std::max(
          dense_err,
          (gate.vjp(b, lp, Vector::Unit(n, i)) - jac.row(i).transpose()).cwiseAbs().maxCoeff());
    Rng rng(7);
    double pair_err = 0.0;
    for (int rep = 0; rep < 10; ++rep) {
      Vector v(n), w(n);
      for (Index i = 0; i < n; ++i) {
        v[i] = rng.normal();
        w[i] = rng.normal();
      }
      pair_err =
          std::max(pair_err, std::abs(w.dot(gate.jvp(b, lp, v)) - gate.vjp(b, lp, w).dot(v)));
    }
    ::testing::Test::RecordProperty(c.name + "_vjp_dense_error", sci(dense_err));
    ::testing::Test::RecordProperty(c.name + "_vjp_adjoint_error", sci(pair_err));
    EXPECT_LE(dense_err, 1e-14);
    EXPECT_LE(pair_err, 1e-14);
  }

  // (5) evaluate's gradient in the log-probs = r .* vjp(mu .* A).
  {
    const Vector r = (lp - b.old_log_prob).array().exp();
    const Vector chain = r.cwiseProduct(gate.vjp(b, lp, c.weights.cwiseProduct(b.advantage)));
    const double err = (gate.evaluate(b, lp).gradient - chain).cwiseAbs().maxCoeff();
    ::testing::Test::RecordProperty(c.name + "_gradient_chain_error", sci(err));
    EXPECT_LE(err, 1e-12);
  }

  // (6) Wrong-length v / w.
  const Vector short_v = Vector::Ones(n - 1);
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { (void)gate.jvp(b, lp, short_v); }), "v has"));
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { (void)gate.vjp(b, lp, short_v); }), "w has"));
  EXPECT_TRUE(
      contains(message_of<ShapeError>([&] { (void)gate.jvp(b, lp.head(n - 1), Vector::Ones(n)); }),
               "new_log_prob has"));
}

// (4) Near r = 1 (|log r| <= 0.01, all pass-through): J v == v to rounding.
template <class Gate>
void expect_identity_jacobian(const Gate& gate, const TokenBatch& b, const std::string& name) {
  const Index n = b.size();
  Rng rng(99);
  double worst = 0.0;
  for (int rep = 0; rep < 10; ++rep) {
    Vector x(n), v(n);
    for (Index i = 0; i < n; ++i) {
      x[i] = rng.uniform(-0.01, 0.01);
      v[i] = rng.normal();
    }
    const Vector lp = b.old_log_prob + x;
    worst = std::max(worst, (gate.jvp(b, lp, v) - v).cwiseAbs().maxCoeff());
    worst = std::max(worst, (gate.vjp(b, lp, v) - v).cwiseAbs().maxCoeff());
  }
  ::testing::Test::RecordProperty(name + "_identity_jacobian_error", sci(worst));
  EXPECT_EQ(worst, 0.0) << name;
}

struct JacobianSetup {
  TokenBatch b, paired;
  JacobianSetup() {
    Rng rng(1);
    b = make_batch(rng, 2, 2, 3, 3, 12);
    paired = b;  // APC: one state per pair of trajectories, ~15 tokens each
    for (std::size_t i = 0; i < paired.state.size(); ++i) paired.state[i] = 6 - b.trajectory[i] / 2;
  }
  std::function<Vector(Rng&)> scaled(const TokenBatch& batch, std::vector<double> scales) const {
    return [&batch, scales](Rng& r) { return mixed_log_ratios(r, batch, scales); };
  }
  std::function<bool(Index, Index)> diagonal() const {
    return [](Index i, Index j) { return i == j; };
  }
  std::function<bool(Index, Index)> same_trajectory(const TokenBatch& batch) const {
    return [&batch](Index i, Index j) {
      return batch.trajectory[static_cast<std::size_t>(i)] ==
             batch.trajectory[static_cast<std::size_t>(j)];
    };
  }
  std::function<bool(Index, Index)> same_state(const TokenBatch& batch) const {
    return [&batch](Index i, Index j) {
      return batch.state[static_cast<std::size_t>(i)] == batch.state[static_cast<std::size_t>(j)];
    };
  }
};

// The ungated reference: G = r, J = I, J = (1/T) sum r A, its gradient by central differences.
TEST(Ungated, IsTheIdentityGateWithTheTokenMeanSurrogate) {
  Rng rng(17);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 1, 6);
  Vector x(b.size());
  for (Index i = 0; i < b.size(); ++i) x[i] = rng.uniform(-0.5, 0.5);
  const Vector lp = b.old_log_prob + x;
  const UngatedGate gate;
  const Vector r = x.array().exp();
  // lp - old recovers x to rounding only: G = r to a few ulps.
  EXPECT_LE((gate.gated_ratios(b, lp) - r).cwiseQuotient(r).cwiseAbs().maxCoeff(), 1e-15);
  const GateValue v = gate.evaluate(b, lp);
  const double T = static_cast<double>(b.size());
  // The gradient is G A / T with G = gated_ratios, bit for bit.
  EXPECT_EQ(v.gradient, gate.gated_ratios(b, lp).cwiseProduct(b.advantage) / T);
  EXPECT_NEAR(v.objective, r.dot(b.advantage) / T, 1e-15);
  EXPECT_EQ(v.tokens.pass_through, 1.0);
  EXPECT_EQ(v.trajectories.pass_through, 1.0);
  // Into a reused GateValue (left by another gate's regimes): the same bits, the storage kept.
  GateValue reused = PpoClipGate({.eps = 0.01}).evaluate(b, lp);
  ASSERT_LT(reused.tokens.pass_through, 1.0);
  expect_reused_value(v, reused, [&](GateValue& out) { gate.evaluate(b, lp, out); });
  double worst = 0.0;
  for (Index j = 0; j < b.size(); ++j) {
    Vector up = lp, down = lp;
    up[j] += 1e-6;
    down[j] -= 1e-6;
    const double fd = (gate.evaluate(b, up).objective - gate.evaluate(b, down).objective) / 2e-6;
    worst = std::max(worst, std::abs(fd - v.gradient[j]));
  }
  EXPECT_LE(worst, 1e-9);
  const Vector w = Vector::Random(b.size());
  EXPECT_EQ(gate.jvp(b, lp, w), w);
  EXPECT_EQ(gate.vjp(b, lp, w), w);
  EXPECT_THROW(gate.jvp(b, lp, Vector::Zero(b.size() + 1)), ShapeError);
  Vector bad = lp;
  bad[0] = kNan;
  EXPECT_THROW(gate.evaluate(b, bad), InvalidArgumentError);
}

TEST(Jacobian, PpoClip) {
  const JacobianSetup s;
  const PpoClipGate gate;
  const Vector token_mean = Vector::Constant(s.b.size(), 1.0 / static_cast<double>(s.b.size()));
  expect_jacobian_properties(gate, {"ppo", s.b, token_mean, s.scaled(s.b, {0.01, 0.1, 0.3, 0.5}),
                                    s.diagonal(), false, false});
  expect_identity_jacobian(gate, s.b, "ppo");
}

TEST(Jacobian, Grpo) {
  const JacobianSetup s;
  const GrpoGate gate;
  expect_jacobian_properties(
      gate, {"grpo", s.b, GrpoGate::weights(s.b), s.scaled(s.b, {0.01, 0.1, 0.3, 0.5}),
             s.diagonal(), false, false});
  expect_identity_jacobian(gate, s.b, "grpo");
}

TEST(Jacobian, Gspo) {
  const JacobianSetup s;
  const GspoGate gate;
  expect_jacobian_properties(
      gate, {"gspo", s.b, trajectory_mean_weights(s.b), s.scaled(s.b, {1e-5, 1e-4, 1e-3, 3e-3}),
             s.same_trajectory(s.b), false, true});
  // (4) GSPO is not the identity in r: unclipped (|log r| <= 1e-5, sequence ratios well inside
  // 1 +- 4e-4), each trajectory's block is (s_tau / T_tau) 1 (1 / r)^T.
  const TokenBatch& b = s.b;
  const Index n = b.size();
  const auto o = segment_offsets(b.trajectory);
  Rng rng(99);
  double worst = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    Vector x(n);
    for (Index i = 0; i < n; ++i) x[i] = rng.uniform(-1e-5, 1e-5);
    const Vector lp = b.old_log_prob + x;
    const Vector r = x.array().exp();
    Matrix expected = Matrix::Zero(n, n);
    for (std::size_t k = 0; k + 1 < o.size(); ++k) {
      const Index begin = o[k], len = o[k + 1] - o[k];
      const double st = std::exp(x.segment(begin, len).mean());
      expected.block(begin, begin, len, len) = (st / static_cast<double>(len)) * Vector::Ones(len) *
                                               r.segment(begin, len).cwiseInverse().transpose();
    }
    worst = std::max(worst, (dense_jacobian(gate, b, lp) - expected).cwiseAbs().maxCoeff());
  }
  RecordProperty("gspo_rank_one_block_error", sci(worst));
  EXPECT_LE(worst, 1e-15);
}

TEST(Jacobian, ApcObj) {
  const JacobianSetup s;
  const ApcObjGate gate({.delta = 0.1});
  const Vector token_mean =
      Vector::Constant(s.paired.size(), 1.0 / static_cast<double>(s.paired.size()));
  expect_jacobian_properties(gate,
                             {"apc", s.paired, token_mean, s.scaled(s.paired, {0.01, 0.05, 0.2}),
                              s.same_state(s.paired), true, false});
  expect_identity_jacobian(gate, s.paired, "apc");
  // The single-state example in rollback (Delta = (0.6, 0, -0.6)): rows 0 and 3 are
  // -sign(r_i - 1) sign(r_j - 1) off the diagonal (0 against the r = 1 tokens, sign(0) = 0) and
  // 0 on it; the r = 1 tokens have B = 0.8 - 1.2 < 0: zeroed, rows 0.
  const ApcExample ex;
  const ApcObjGate example_gate({.delta = 0.2});
  const Vector x{{std::log(1.6), 0.0, 0.0, std::log(0.4)}};
  const Matrix jac = dense_jacobian(example_gate, ex.batch, ex.batch.old_log_prob + x);
  const Matrix expected{
      {0.0, 0.0, 0.0, 1.0}, {0.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 0.0, 0.0}, {1.0, 0.0, 0.0, 0.0}};
  EXPECT_EQ(jac, expected);
}

}  // namespace
}  // namespace tether
