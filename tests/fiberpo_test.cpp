// FiberPO and the gating hierarchy (specs/fiberpo.md, sections 3, 4, 6): g_agg's branches and
// continuity, the pass-through identity G(r) = r, base weight 1 with both channels zeroed, the
// fiber clip's bounds, G and the Jacobian against a dense transcription of section 3 and
// Prop. 5.2, J v / J^T v against central finite differences in mixed regimes (kink-free points,
// checked), block-diagonal structure, the identity Jacobian near r = 1, depth 2 = FiberPO,
// depth 4 against a literal transcription of section 4, per-level budgets, evaluate's gradient
// against finite differences, first-order agreement at r = 1, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <tuple>
#include <vector>

#include "error_message.hpp"
#include "policy_test_batch.hpp"
#include "with_streaming.hpp"
#include "with_threads.hpp"

namespace tether {
namespace {

using testing::contains;
using testing::message_of;
using testing::sci;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Per-token advantages, one state per token (tests/policy_test_batch.hpp).
TokenBatch make_batch(Rng& rng, int domains, int groups_per_domain, int trajectories_per_group,
                      int min_len, int max_len) {
  return testing::make_test_batch(rng, domains, groups_per_domain, trajectories_per_group, min_len,
                                  max_len, /*states=*/0, /*advantage_per_token=*/true);
}

// new_log_prob with log r_i = x_i.
Vector with_log_ratios(const TokenBatch& b, const Vector& x) { return b.old_log_prob + x; }

using testing::mixed_log_ratios;

// ---- a dense transcription of section 3 and Prop. 5.2 (independent of the library code)

double ref_gagg(double x, double c, double t) {
  if (std::abs(x) <= c) return x;
  if (std::abs(x) < (1.0 + 1.0 / t) * c)
    return (x > 0 ? 1.0 : -1.0) * ((t + 1) * c - t * std::abs(x));
  return 0.0;
}
double ref_gamma(double x, double c, double t) {
  if (std::abs(x) <= c) return 1.0;
  if (std::abs(x) < (1.0 + 1.0 / t) * c) return -t;
  return 0.0;
}
double clip(double x, double e) { return std::max(-e, std::min(e, x)); }

struct Reference {
  Vector g;
  Matrix jacobian;  // dG / dr
};

Reference reference_fiberpo(const TokenBatch& b, const Vector& lp, double cp, double cn,
                            double eps) {
  const Index n = b.size();
  Reference ref{Vector(n), Matrix::Zero(n, n)};
  Index begin = 0;
  while (begin < n) {
    Index end = begin;
    while (end < n && b.trajectory[static_cast<std::size_t>(end)] ==
                          b.trajectory[static_cast<std::size_t>(begin)])
      ++end;
    const double t = static_cast<double>(end - begin);
    double sp = 0, sn = 0;
    for (Index i = begin; i < end; ++i) {
      const double x = lp[i] - b.old_log_prob[i];
      sp += std::max(x, 0.0);
      sn += std::max(-x, 0.0);
    }
    sp /= t;
    sn /= t;
    const double w = std::exp(ref_gagg(sp, cp, t) - ref_gagg(sn, cn, t));
    const double gam[2] = {ref_gamma(sp, cp, t), ref_gamma(sn, cn, t)};  // [+, -]
    std::vector<int> l(static_cast<std::size_t>(end - begin));
    std::vector<double> u(l.size()), v(l.size());
    for (Index i = begin; i < end; ++i) {
      const double x = lp[i] - b.old_log_prob[i];
      const int li = x >= 0 ? 1 : -1;
      const double same = li > 0 ? sp : sn, other = li > 0 ? sn : sp;
      const auto k = static_cast<std::size_t>(i - begin);
      l[k] = li;
      u[k] = li * x - same;
      v[k] = -other;
      ref.g[i] = w * std::exp(clip(li * u[k], eps) - clip(li * v[k], eps));
    }
    for (Index i = begin; i < end; ++i) {
      for (Index j = begin; j < end; ++j) {
        const auto ki = static_cast<std::size_t>(i - begin),
                   kj = static_cast<std::size_t>(j - begin);
        const double pu = std::abs(u[ki]) <= eps, pv = std::abs(v[ki]) <= eps;
        const double rj = std::exp(lp[j] - b.old_log_prob[j]);
        ref.jacobian(i, j) =
            ref.g[i] / rj *
            (pu * (i == j) +
             (1.0 / t) * (gam[l[kj] > 0 ? 0 : 1] - pu * (l[ki] == l[kj]) - pv * (l[ki] != l[kj])));
      }
    }
    begin = end;
  }
  return ref;
}

// Section 4 literally: group aggregate = mean of its trajectories' aggregates; domain aggregate
// = trajectory-count-weighted mean of its groups' aggregates; w from the three deviations.
Vector reference_domain(const TokenBatch& b, const Vector& lp, double cp, double cn, double eps) {
  const Index n = b.size();
  const int n_traj = b.trajectory.back() + 1, n_group = b.group.back() + 1,
            n_dom = b.domain.back() + 1;
  std::vector<double> tp(n_traj, 0), tn(n_traj, 0), tlen(n_traj, 0);
  std::vector<int> group_of(n_traj), domain_of_group(n_group);
  for (Index i = 0; i < n; ++i) {
    const int k = b.trajectory[static_cast<std::size_t>(i)];
    const double x = lp[i] - b.old_log_prob[i];
    tp[k] += std::max(x, 0.0);
    tn[k] += std::max(-x, 0.0);
    tlen[k] += 1;
    group_of[k] = b.group[static_cast<std::size_t>(i)];
    domain_of_group[group_of[k]] = b.domain[static_cast<std::size_t>(i)];
  }
  for (int k = 0; k < n_traj; ++k) tp[k] /= tlen[k], tn[k] /= tlen[k];
  std::vector<double> gp(n_group, 0), gn(n_group, 0), gcount(n_group, 0), glen(n_group, 0);
  for (int k = 0; k < n_traj; ++k) {
    gp[group_of[k]] += tp[k];
    gn[group_of[k]] += tn[k];
    gcount[group_of[k]] += 1;
    glen[group_of[k]] += tlen[k];
  }
  for (int g = 0; g < n_group; ++g) gp[g] /= gcount[g], gn[g] /= gcount[g];
  std::vector<double> dp(n_dom, 0), dn(n_dom, 0), dcount(n_dom, 0), dlen(n_dom, 0);
  for (int g = 0; g < n_group; ++g) {
    const int d = domain_of_group[g];
    dp[d] += gcount[g] * gp[g];
    dn[d] += gcount[g] * gn[g];
    dcount[d] += gcount[g];
    dlen[d] += glen[g];
  }
  for (int d = 0; d < n_dom; ++d) dp[d] /= dcount[d], dn[d] /= dcount[d];
  Vector out(n);
  for (Index i = 0; i < n; ++i) {
    const int k = b.trajectory[static_cast<std::size_t>(i)], g = group_of[k],
              d = domain_of_group[g];
    const double e = ref_gagg(dp[d], cp, dlen[d]) + ref_gagg(gp[g] - dp[d], cp, glen[g]) +
                     ref_gagg(tp[k] - gp[g], cp, tlen[k]) -
                     (ref_gagg(dn[d], cn, dlen[d]) + ref_gagg(gn[g] - dn[d], cn, glen[g]) +
                      ref_gagg(tn[k] - gn[g], cn, tlen[k]));
    const double x = lp[i] - b.old_log_prob[i];
    const int l = x >= 0 ? 1 : -1;
    const double u = l * x - (l > 0 ? tp[k] : tn[k]), v = -(l > 0 ? tn[k] : tp[k]);
    out[i] = std::exp(e) * std::exp(clip(l * u, eps) - clip(l * v, eps));
  }
  return out;
}

// ---- helpers on the library's side

template <class Gate>
Matrix jacobian_by_jvp(const Gate& gate, const TokenBatch& b, const Vector& lp) {
  const GatedRatios g = gate.gated_ratios(b, lp);
  const Index n = b.size();
  Matrix jac(n, n);
  Vector e = Vector::Zero(n), col;
  for (Index j = 0; j < n; ++j) {
    e[j] = 1.0;
    g.jvp(e, col);
    jac.col(j) = col;
    e[j] = 0.0;
  }
  return jac;
}

template <class Gate>
Matrix jacobian_by_vjp(const Gate& gate, const TokenBatch& b, const Vector& lp) {
  const GatedRatios g = gate.gated_ratios(b, lp);
  const Index n = b.size();
  Matrix jac(n, n);
  Vector e = Vector::Zero(n), row;
  for (Index i = 0; i < n; ++i) {
    e[i] = 1.0;
    g.vjp(e, row);
    jac.row(i) = row.transpose();
    e[i] = 0.0;
  }
  return jac;
}

// Every branch decision of the gate: flags per token and slopes per level, channel, trajectory.
std::vector<double> branch_signature(const GatedRatios& g) {
  std::vector<double> s;
  for (Index i = 0; i < g.size(); ++i)
    s.push_back(g.positive(i) + 2 * g.u_unclipped(i) + 4 * g.v_unclipped(i));
  for (int l = 0; l < g.num_gated_levels(); ++l)
    for (int c : {1, -1})
      for (Index k = 0; k < g.num_trajectories(); ++k) s.push_back(g.slope(l, c, k));
  return s;
}

// Central differences of G in r (h relative to r_j); also checks that no perturbation crosses
// a kink (every branch decision unchanged), and returns false if one does.
template <class Gate>
bool fd_jacobian(const Gate& gate, const TokenBatch& b, const Vector& lp, double h, Matrix& jac) {
  const Index n = b.size();
  const auto base = branch_signature(gate.gated_ratios(b, lp));
  jac.resize(n, n);
  const Vector r = (lp - b.old_log_prob).array().exp();
  for (Index j = 0; j < n; ++j) {
    Vector up = lp, down = lp;
    up[j] = b.old_log_prob[j] + std::log(r[j] + h);
    down[j] = b.old_log_prob[j] + std::log(r[j] - h);
    const GatedRatios gu = gate.gated_ratios(b, up), gd = gate.gated_ratios(b, down);
    if (branch_signature(gu) != base || branch_signature(gd) != base) return false;
    jac.col(j) = (gu.values() - gd.values()) / (2 * h);
  }
  return true;
}

// A mixed-regime, kink-free point: pass-through, rollback and zeroed trajectories, clipped
// fibers; tries seeds in order (deterministic) until one qualifies.
template <class Gate>
Vector mixed_point(const Gate& gate, const TokenBatch& b, std::uint64_t seed, Matrix* fd) {
  for (std::uint64_t s = seed; s < seed + 200; ++s) {
    Rng rng(s);
    const Vector lp = with_log_ratios(b, mixed_log_ratios(rng, b));
    const GatedRatios g = gate.gated_ratios(b, lp);
    const RegimeFractions tr = g.trajectory_regimes();
    bool u_clipped = false, v_clipped = false;
    for (Index i = 0; i < g.size(); ++i) {
      u_clipped = u_clipped || !g.u_unclipped(i);
      v_clipped = v_clipped || !g.v_unclipped(i);
    }
    if (!(tr.pass_through > 0 && tr.rollback > 0 && tr.zeroed > 0 && u_clipped && v_clipped))
      continue;
    Matrix jac;
    if (!fd_jacobian(gate, b, lp, 1e-6, jac)) continue;
    if (fd) *fd = jac;
    return lp;
  }
  ADD_FAILURE() << "no mixed-regime kink-free point found";
  return b.old_log_prob;
}

// ---------------------------------------------------------------- g_agg

TEST(AggregateGate, BranchesContinuityAndSlope) {
  for (double c : {0.05, 0.12, 0.3}) {
    for (double t : {1.0, 3.0, 10.0, 250.0}) {
      const double outer = (1.0 + 1.0 / t) * c;
      EXPECT_EQ(aggregate_gate(c, c, t), c);  // the pass-through branch includes C
      // Continuous at C and at (1 + 1/T) C (from both sides), odd.
      EXPECT_NEAR(aggregate_gate(std::nextafter(c, 1.0), c, t), c, 1e-14 * t);
      EXPECT_NEAR(aggregate_gate(std::nextafter(outer, 0.0), c, t), 0.0, 1e-14 * t);
      EXPECT_EQ(aggregate_gate(outer, c, t), 0.0);
      EXPECT_EQ(aggregate_gate(2 * outer, c, t), 0.0);
      for (double x : {0.3 * c, 1.0001 * c, 0.5 * (c + outer), 2 * outer})
        EXPECT_EQ(aggregate_gate(-x, c, t), -aggregate_gate(x, c, t));
      // Slope -T strictly between, exactly (a difference quotient on the rollback line).
      const double a = c + 0.25 * (outer - c), b = c + 0.75 * (outer - c);
      EXPECT_NEAR((aggregate_gate(b, c, t) - aggregate_gate(a, c, t)) / (b - a), -t, 1e-9 * t);
      EXPECT_EQ(aggregate_gate_slope(0.5 * c, c, t), 1.0);
      EXPECT_EQ(aggregate_gate_slope(a, c, t), -t);
      EXPECT_EQ(aggregate_gate_slope(-a, c, t), -t);
      EXPECT_EQ(aggregate_gate_slope(2 * outer, c, t), 0.0);
    }
  }
}

// ---------------------------------------------------------------- G(r)

TEST(FiberPo, PassThroughIsTheIdentity) {
  Rng rng(1);
  const TokenBatch b = make_batch(rng, 2, 3, 4, 3, 30);
  const FiberPoGate fiberpo;
  const GatingHierarchyGate domain;
  double worst = 0.0;
  for (int rep = 0; rep < 20; ++rep) {
    Vector x(b.size());
    for (Index i = 0; i < b.size(); ++i) x[i] = rng.uniform(-0.01, 0.01);
    const Vector lp = with_log_ratios(b, x);
    const Vector r = x.array().exp();
    for (const GatedRatios& g : {fiberpo.gated_ratios(b, lp), domain.gated_ratios(b, lp)}) {
      worst = std::max(worst, ((g.values() - r).array() / r.array()).abs().maxCoeff());
      EXPECT_EQ(g.token_regimes().pass_through, 1.0);
      EXPECT_EQ(g.trajectory_regimes().pass_through, 1.0);
    }
  }
  RecordProperty("pass_through_max_relative_error", sci(worst));
  EXPECT_LE(worst, 1e-15);  // measured 4.4e-16 (2 ulp): rounding level
}

TEST(FiberPo, BaseWeightIsOneWhenBothChannelsAreZeroed) {
  // One trajectory of two tokens, x = (+0.5, -0.5): a+ = a- = 0.25 > (1 + 1/2) C for both
  // budgets, so both g_agg terms are 0 and w = e^0.
  TokenBatch b;
  b.domain = b.group = b.trajectory = {0, 0};
  b.position = {0, 1};
  b.state = {0, 1};
  b.action = {0, 0};
  b.old_log_prob = Vector::Constant(2, std::log(0.3));
  b.advantage = Vector::Ones(2);
  const Vector lp = with_log_ratios(b, Vector{{0.5, -0.5}});
  const GatedRatios g = FiberPoGate({.budget_positive = 0.12, .budget_negative = 0.05, .eps = 0.04})
                            .gated_ratios(b, lp);
  EXPECT_EQ(g.slope(0, 1, 0), 0.0);
  EXPECT_EQ(g.slope(0, -1, 0), 0.0);
  EXPECT_EQ(g.base_weights()[0], 1.0);
  EXPECT_EQ(g.trajectory_regimes().zeroed, 1.0);
}

TEST(FiberPo, FiberClipBounds) {
  Rng rng(2);
  const TokenBatch b = make_batch(rng, 1, 2, 5, 2, 12);
  const double eps = 0.03;
  const FiberPoGate gate({.eps = eps});
  for (int rep = 0; rep < 10; ++rep) {
    Vector x(b.size());
    for (Index i = 0; i < b.size(); ++i) x[i] = std::clamp(0.4 * rng.normal(), -0.65, 0.65);
    const Vector rt = gate.gated_ratios(b, with_log_ratios(b, x)).fiber_ratios();
    EXPECT_LE(rt.maxCoeff(), std::exp(2 * eps) * (1 + 1e-15));
    EXPECT_GE(rt.minCoeff(), std::exp(-2 * eps) * (1 - 1e-15));
  }
  // One-signed trajectory: the opposite aggregate is 0, so v = 0 and r~ = e^clip(u) lies in
  // [e^-eps, e^eps], attained by the tokens whose residual is clipped.
  Vector x = Vector::Constant(b.size(), 0.01);
  x[0] = 0.6;  // u = 0.6 - mean > eps: clipped above
  // Token 1 is in token 0's trajectory (lengths >= 2), whose mean is >= 0.6 / 12 = 0.05: its
  // residual 1e-6 - mean < -eps is clipped below.
  x[1] = 1e-6;
  const GatedRatios g = gate.gated_ratios(b, with_log_ratios(b, x));
  const Vector rt = g.fiber_ratios();
  EXPECT_FALSE(g.u_unclipped(0));
  EXPECT_FALSE(g.u_unclipped(1));
  EXPECT_NEAR(rt[0], std::exp(eps), 1e-15);
  EXPECT_NEAR(rt[1], std::exp(-eps), 1e-15);
  EXPECT_LE(rt.maxCoeff(), std::exp(eps) * (1 + 1e-15));
  EXPECT_GE(rt.minCoeff(), std::exp(-eps) * (1 - 1e-15));
}

TEST(FiberPo, MatchesSectionThreeAndProp52) {
  Rng rng(3);
  const TokenBatch b = make_batch(rng, 1, 3, 4, 2, 9);
  const FiberPoGate gate({.budget_positive = 0.15, .budget_negative = 0.09, .eps = 0.025});
  double worst_g = 0, worst_j = 0;
  for (int rep = 0; rep < 10; ++rep) {
    const Vector lp = with_log_ratios(b, mixed_log_ratios(rng, b));
    const Reference ref = reference_fiberpo(b, lp, 0.15, 0.09, 0.025);
    const Vector g = gate.gated_ratios(b, lp).values();
    worst_g = std::max(worst_g, ((g - ref.g).array() / ref.g.array()).abs().maxCoeff());
    worst_j =
        std::max(worst_j, (jacobian_by_jvp(gate, b, lp) - ref.jacobian).cwiseAbs().maxCoeff());
  }
  RecordProperty("G_vs_reference", sci(worst_g));
  RecordProperty("J_vs_prop52", sci(worst_j));
  EXPECT_LE(worst_g, 1e-15);
  EXPECT_LE(worst_j, 1e-13);
}

TEST(GatingHierarchy, DepthTwoIsFiberPo) {
  Rng rng(4);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 2, 10);
  const FiberPoGate fiberpo({.budget_positive = 0.15, .budget_negative = 0.09, .eps = 0.025});
  const GatingHierarchyGate depth2(
      {.coarse_levels = {}, .budget_positive = 0.15, .budget_negative = 0.09, .eps = 0.025});
  // The same with budgets given per level.
  const GatingHierarchyGate depth2_levels(
      {.coarse_levels = {}, .eps = 0.025, .level_budgets = {{.positive = 0.15, .negative = 0.09}}});
  for (int rep = 0; rep < 5; ++rep) {
    const Vector lp = with_log_ratios(b, mixed_log_ratios(rng, b));
    const GateValue a = fiberpo.evaluate(b, lp);
    for (const GatingHierarchyGate* h : {&depth2, &depth2_levels}) {
      const GateValue c = h->evaluate(b, lp);
      EXPECT_EQ(a.objective, c.objective);
      EXPECT_EQ((a.gradient - c.gradient).cwiseAbs().maxCoeff(), 0.0);
      EXPECT_EQ((fiberpo.gated_ratios(b, lp).values() - h->gated_ratios(b, lp).values())
                    .cwiseAbs()
                    .maxCoeff(),
                0.0);
    }
    // And both match the dense transcription of section 3.
    const Reference ref = reference_fiberpo(b, lp, 0.15, 0.09, 0.025);
    EXPECT_LE(
        ((depth2.gated_ratios(b, lp).values() - ref.g).array() / ref.g.array()).abs().maxCoeff(),
        1e-15);
  }
}

TEST(GatingHierarchy, DepthFourMatchesSectionFour) {
  Rng rng(5);
  const TokenBatch b = make_batch(rng, 3, 2, 3, 2, 8);
  const GatingHierarchyGate gate({.budget_positive = 0.15, .budget_negative = 0.09, .eps = 0.025});
  double worst = 0.0;
  bool saw_coarse_rollback = false;
  for (int rep = 0; rep < 10; ++rep) {
    const Vector lp = with_log_ratios(b, mixed_log_ratios(rng, b));
    const GatedRatios g = gate.gated_ratios(b, lp);
    const Vector ref = reference_domain(b, lp, 0.15, 0.09, 0.025);
    worst = std::max(worst, ((g.values() - ref).array() / ref.array()).abs().maxCoeff());
    for (Index k = 0; k < g.num_trajectories(); ++k)
      saw_coarse_rollback = saw_coarse_rollback || g.slope(0, 1, k) != 1.0 ||
                            g.slope(1, 1, k) != 1.0 || g.slope(1, -1, k) != 1.0;
  }
  RecordProperty("G_vs_section4", sci(worst));
  EXPECT_LE(worst, 1e-14);
  EXPECT_TRUE(saw_coarse_rollback);  // the domain / group gates were exercised
}

TEST(GatingHierarchy, CustomLevelsAndPerLevelBudgets) {
  Rng rng(6);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 2, 8);
  const Vector lp = with_log_ratios(b, mixed_log_ratios(rng, b));
  // Custom ids equal to the group ids: the same gate as LevelSource::kGroup.
  const GatingHierarchyGate by_group({.coarse_levels = {{LevelSource::kGroup}}});
  const GatingHierarchyGate by_custom(
      {.coarse_levels = {{.source = LevelSource::kCustom, .ids = b.group}}});
  EXPECT_EQ((by_group.gated_ratios(b, lp).values() - by_custom.gated_ratios(b, lp).values())
                .cwiseAbs()
                .maxCoeff(),
            0.0);
  // A zero budget on the group level zeroes that level (slope 0 wherever its deviation is not
  // exactly 0); huge budgets on the others keep them pass-through.
  const GatingHierarchyGate zero_group(
      {.coarse_levels = {{LevelSource::kGroup}}, .level_budgets = {{0.0, 0.0}, {10.0, 10.0}}});
  const GatedRatios g = zero_group.gated_ratios(b, lp);
  for (Index k = 0; k < g.num_trajectories(); ++k) {
    EXPECT_EQ(g.slope(0, 1, k), 0.0);
    EXPECT_EQ(g.slope(1, 1, k), 1.0);
    EXPECT_EQ(g.slope(1, -1, k), 1.0);
  }
}

// ---------------------------------------------------------------- the Jacobian

struct Depth {
  const char* name;
  GatingHierarchyOptions options;
};

std::vector<Depth> depths() {
  return {
      {"fiberpo",
       {.coarse_levels = {}, .budget_positive = 0.15, .budget_negative = 0.09, .eps = 0.025}},
      {"depth3",
       {.coarse_levels = {{LevelSource::kDomain}},
        .budget_positive = 0.15,
        .budget_negative = 0.09,
        .eps = 0.025}},
      {"depth4", {.budget_positive = 0.15, .budget_negative = 0.09, .eps = 0.025}},
  };
}

TEST(GatingHierarchy, JacobianMatchesCentralDifferencesInMixedRegimes) {
  Rng rng(7);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 2, 7);
  for (const Depth& d : depths()) {
    const GatingHierarchyGate gate(d.options);
    Matrix fd;
    const Vector lp = mixed_point(gate, b, 100, &fd);
    const Matrix jvp = jacobian_by_jvp(gate, b, lp), vjp = jacobian_by_vjp(gate, b, lp);
    const double err = (jvp - fd).cwiseAbs().maxCoeff();
    const double transpose = (jvp - vjp).cwiseAbs().maxCoeff();
    RecordProperty(std::string(d.name) + "_jvp_vs_fd", sci(err));
    EXPECT_LE(err, 1e-8) << d.name;
    EXPECT_LE(transpose, 1e-14) << d.name;
    // Regimes are mixed at this point (mixed_point checked), and the log-space products agree.
    const GatedRatios g = gate.gated_ratios(b, lp);
    Vector v(b.size()), out_r, out_log;
    for (Index i = 0; i < v.size(); ++i) v[i] = rng.normal();
    g.jvp(v.cwiseProduct(g.ratios()), out_r);
    g.jvp_log(v, out_log);
    EXPECT_LE((out_r - out_log).cwiseAbs().maxCoeff(), 1e-14) << d.name;
  }
}

TEST(GatingHierarchy, JacobianIsBlockDiagonal) {
  Rng rng(8);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 2, 7);
  for (const Depth& d : depths()) {
    const GatingHierarchyGate gate(d.options);
    Matrix fd;
    const Vector lp = mixed_point(gate, b, 300, &fd);
    const Matrix jac = jacobian_by_jvp(gate, b, lp);
    // Blocks: trajectories for FiberPO, the coarsest level's nodes for the hierarchy.
    const std::vector<int>& block = d.options.coarse_levels.empty() ? b.trajectory : b.domain;
    bool coupled_across_trajectories = false;
    for (Index i = 0; i < b.size(); ++i) {
      for (Index j = 0; j < b.size(); ++j) {
        if (block[static_cast<std::size_t>(i)] != block[static_cast<std::size_t>(j)]) {
          EXPECT_EQ(fd(i, j), 0.0) << d.name;  // exactly: G_i does not read r_j
          EXPECT_EQ(jac(i, j), 0.0) << d.name;
        } else if (b.trajectory[static_cast<std::size_t>(i)] !=
                   b.trajectory[static_cast<std::size_t>(j)]) {
          coupled_across_trajectories = coupled_across_trajectories || jac(i, j) != 0.0;
        }
      }
    }
    // The coarse levels couple the trajectories of a domain (no stop-gradient on aggregates).
    if (!d.options.coarse_levels.empty()) EXPECT_TRUE(coupled_across_trajectories) << d.name;
  }
}

TEST(GatingHierarchy, IdentityJacobianNearOne) {
  Rng rng(9);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 2, 9);
  for (const Depth& d : depths()) {
    const GatingHierarchyGate gate(d.options);
    Vector x(b.size());
    for (Index i = 0; i < b.size(); ++i)
      x[i] = (rng.uniform() < 0.5 ? -1 : 1) * rng.uniform(1e-4, 5e-3);  // off the kink at 0
    const Matrix jac = jacobian_by_jvp(gate, b, with_log_ratios(b, x));
    const double err = (jac - Matrix::Identity(b.size(), b.size())).cwiseAbs().maxCoeff();
    RecordProperty(std::string(d.name) + "_identity_error", sci(err));
    EXPECT_LE(err, 1e-14) << d.name;
  }
}

// ---------------------------------------------------------------- the objective

TEST(GatingHierarchy, GradientMatchesFiniteDifferencesOfTheObjective) {
  Rng rng(10);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 2, 7);
  for (const Depth& d : depths()) {
    const GatingHierarchyGate gate(d.options);
    const Vector lp = mixed_point(gate, b, 500, nullptr);
    const GateValue v = gate.evaluate(b, lp);
    const double h = 1e-6;
    double err = 0.0;
    for (Index j = 0; j < b.size(); ++j) {
      Vector up = lp, down = lp;
      up[j] += h;
      down[j] -= h;
      const double fd =
          (gate.evaluate(b, up).objective - gate.evaluate(b, down).objective) / (2 * h);
      err = std::max(err, std::abs(fd - v.gradient[j]));
    }
    RecordProperty(std::string(d.name) + "_gradient_vs_fd", sci(err));
    EXPECT_LE(err, 1e-9) << d.name;
    // Objective = sum mu_i G_i A_i.
    const GatedRatios g = gate.gated_ratios(b, lp);
    double j = 0.0;
    for (Index k = 0; k < g.num_trajectories(); ++k) {
      const auto& o = g.trajectory_offsets();
      const double mu = 1.0 / (g.num_trajectories() * static_cast<double>(o[k + 1] - o[k]));
      for (Index i = o[k]; i < o[k + 1]; ++i) j += mu * g.values()[i] * b.advantage[i];
    }
    EXPECT_NEAR(v.objective, j, 1e-15);
    const RegimeFractions t = v.tokens, tr = v.trajectories;
    EXPECT_NEAR(t.pass_through + t.rollback + t.zeroed, 1.0, 1e-15);
    EXPECT_NEAR(tr.pass_through + tr.rollback + tr.zeroed, 1.0, 1e-15);
  }
}

TEST(GatingHierarchy, FirstOrderAgreementWithTheUngatedObjectiveAtOne) {
  Rng rng(11);
  const TokenBatch b = make_batch(rng, 2, 2, 3, 2, 9);
  for (const Depth& d : depths()) {
    const GatingHierarchyGate gate(d.options);
    const GateValue v = gate.evaluate(b, b.old_log_prob);  // r = 1
    // Ungated: J = sum mu r A, dJ/d log pi = mu r A.
    Vector mu_a(b.size());
    Index begin = 0;
    const Index n_traj = b.trajectory.back() + 1;
    while (begin < b.size()) {
      Index end = begin;
      while (end < b.size() && b.trajectory[static_cast<std::size_t>(end)] ==
                                   b.trajectory[static_cast<std::size_t>(begin)])
        ++end;
      for (Index i = begin; i < end; ++i)
        mu_a[i] = b.advantage[i] / (static_cast<double>(n_traj) * static_cast<double>(end - begin));
      begin = end;
    }
    EXPECT_NEAR(v.objective, mu_a.sum(), 1e-15) << d.name;
    EXPECT_LE((v.gradient - mu_a).cwiseAbs().maxCoeff(), 1e-16) << d.name;
    EXPECT_EQ(v.tokens.pass_through, 1.0);
  }
}

// ---------------------------------------------------------------- bad input

TEST(GatingHierarchy, ResultsDoNotDependOnTheThreadCountOrOnStreaming) {
  // Above 2^16 tokens the per-trajectory loops run on OpenMP threads; each trajectory is summed
  // by one thread in a fixed order, so 1 and 2 threads agree bit for bit. Above the last-level
  // cache the token passes stream G, r, the flags and the products (core/streaming_stores.hpp),
  // by blocks of 64 tokens from a trajectory's first multiple of 64: forced here, on
  // trajectories of 3 to 1200 tokens that start anywhere, against the ordinary stores. Every
  // output of the gate, of the four products and of evaluate.
  Rng rng(13);
  const TokenBatch b = make_batch(rng, 2, 4, 16, 3, 1200);
  ASSERT_GT(b.size(), Index{1} << 16);
  Vector x(b.size()), v(b.size());
  for (Index i = 0; i < b.size(); ++i) {
    x[i] = std::clamp(0.1 * rng.normal(), -0.6, 0.6);
    v[i] = rng.normal();
  }
  const Vector lp = with_log_ratios(b, x);
  const GatingHierarchyGate gate;
  const auto run = [&] {
    const GatedRatios g = gate.gated_ratios(b, lp);
    std::vector<Vector> out(7);
    g.jvp(v, out[0]);
    g.vjp(v, out[1]);
    g.jvp_log(v, out[2]);
    g.vjp_log(v, out[3]);
    const GateValue value = gate.evaluate(b, lp);
    out[4] = value.gradient;
    out[5] = g.values();
    out[6] = g.fiber_ratios();
    // evaluate takes J^T zeta's sums inside the gate's pass: the bits of the product itself,
    // zeta_i = A_i / (|Tj| T_tau), and of the objective sum_i zeta_i G_i by trajectories.
    const std::vector<Index>& traj = g.trajectory_offsets();
    const Index n_traj = static_cast<Index>(traj.size()) - 1;
    Vector zeta(b.size()), product;
    for (Index k = 0; k < n_traj; ++k)
      for (Index i = traj[k]; i < traj[k + 1]; ++i)
        zeta[i] = 1.0 / (static_cast<double>(n_traj) * static_cast<double>(traj[k + 1] - traj[k])) *
                  b.advantage[i];
    g.vjp_log(zeta, product);
    EXPECT_EQ(value.gradient, product);
    // The objective: per trajectory, G_i A_i summed on 8 lanes (token i on lane (i - begin) % 8),
    // the lanes added in order and times mu; the trajectories added in order.
    double objective = 0.0;
    for (Index k = 0; k < n_traj; ++k) {
      double lane[8] = {};
      for (Index i = traj[k]; i < traj[k + 1]; ++i)
        lane[(i - traj[k]) % 8] += g.values()[i] * b.advantage[i];
      double sum = lane[0];
      for (int l = 1; l < 8; ++l) sum += lane[l];
      objective +=
          1.0 / (static_cast<double>(n_traj) * static_cast<double>(traj[k + 1] - traj[k])) * sum;
    }
    EXPECT_EQ(value.objective, objective);
    return std::make_tuple(value.objective, g.token_regimes().zeroed, out);
  };
  const auto reference =
      testing::with_threads(1, [&] { return testing::with_streaming(false, run); });
  for (int threads : {1, 2})
    for (bool streamed : {false, true}) {
      if (threads == 1 && !streamed) continue;  // the reference itself
      const auto got =
          testing::with_threads(threads, [&] { return testing::with_streaming(streamed, run); });
      EXPECT_EQ(std::get<0>(got), std::get<0>(reference)) << threads << " " << streamed;
      EXPECT_EQ(std::get<1>(got), std::get<1>(reference)) << threads << " " << streamed;
      for (std::size_t k = 0; k < 7; ++k)
        EXPECT_EQ(std::get<2>(got)[k], std::get<2>(reference)[k])
            << threads << " threads, streamed " << streamed << ", output " << k;
    }
}

TEST(GatingHierarchy, RefusesBadInput) {
  Rng rng(12);
  const TokenBatch b = make_batch(rng, 2, 2, 2, 2, 4);
  const GatingHierarchyGate gate;
  const FiberPoGate fiberpo;
  const Vector lp = b.old_log_prob;

  for (double bad : {kNan, kInf, 0.5}) {
    Vector x = lp;
    x[3] = bad;
    const std::string m = message_of<InvalidArgumentError>([&] { (void)gate.evaluate(b, x); });
    EXPECT_TRUE(contains(m, "new_log_prob at entry 3")) << m;
    EXPECT_TRUE(contains(m, "<= 0")) << m;
    EXPECT_TRUE(
        contains(message_of<InvalidArgumentError>([&] { (void)fiberpo.gated_ratios(b, x); }),
                 "new_log_prob"));
  }
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { (void)gate.evaluate(b, lp.head(3)); }),
                       "new_log_prob has 3 entries"));
  {
    TokenBatch ragged = b;
    ragged.advantage.conservativeResize(b.size() - 1);
    EXPECT_TRUE(
        contains(message_of<ShapeError>([&] { (void)gate.evaluate(ragged, lp); }), "advantage"));
  }
  {
    TokenBatch unsorted = b;
    std::swap(unsorted.trajectory.front(), unsorted.trajectory.back());
    EXPECT_TRUE(
        contains(message_of<InvalidArgumentError>([&] { (void)gate.evaluate(unsorted, lp); }),
                 "trajectory"));
  }
  {
    TokenBatch nan_adv = b;
    nan_adv.advantage[2] = kNan;
    EXPECT_TRUE(
        contains(message_of<InvalidArgumentError>([&] { (void)fiberpo.evaluate(nan_adv, lp); }),
                 "advantage at entry 2"));
  }
  auto options_message = [](GatingHierarchyOptions o) {
    return message_of<InvalidArgumentError>([&] { GatingHierarchyGate g(o); });
  };
  EXPECT_TRUE(contains(options_message({.budget_positive = -0.1}),
                       "budget_positive (C+) must be finite and >= 0"));
  EXPECT_TRUE(contains(options_message({.budget_negative = kNan}), "budget_negative (C-)"));
  EXPECT_TRUE(contains(options_message({.eps = -1e-3}), "eps must be finite and >= 0, got -0.001"));
  EXPECT_TRUE(
      contains(options_message({.level_budgets = {{0.1, 0.1}}}), "level_budgets has 1 entries"));
  EXPECT_TRUE(contains(options_message({.level_budgets = {{0.1, 0.1}, {0.1, -0.2}, {0.1, 0.1}}}),
                       "level_budgets[1].negative (C-) must be finite and >= 0"));
  EXPECT_TRUE(
      contains(options_message({.coarse_levels = {{.source = LevelSource::kGroup, .ids = {1}}}}),
               "use LevelSource::kCustom"));
  EXPECT_TRUE(
      contains(message_of<InvalidArgumentError>([] { FiberPoGate g({.budget_negative = -0.05}); }),
               "FiberPoGate::Options: budget_negative (C-) must be finite and >= 0"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { FiberPoGate g({.eps = -1}); }),
                       "eps must be finite and >= 0"));
  // Levels in the wrong order (group above domain) do not nest.
  const GatingHierarchyGate upside_down(
      {.coarse_levels = {{LevelSource::kGroup}, {LevelSource::kDomain}}});
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { (void)upside_down.evaluate(b, lp); }),
                       "must nest in the one above"));
  // Custom ids that split a trajectory, are unsorted, or have the wrong length.
  std::vector<int> split(b.trajectory.size(), 0);
  split[1] = 1;  // trajectory 0 has >= 2 tokens
  for (std::size_t i = 2; i < split.size(); ++i) split[i] = 1;
  const GatingHierarchyGate splitting({.coarse_levels = {{LevelSource::kCustom, split}}});
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { (void)splitting.evaluate(b, lp); }),
                       "a node must hold whole trajectories"));
  std::vector<int> descending(b.trajectory.size());
  for (std::size_t i = 0; i < descending.size(); ++i) descending[i] = -b.trajectory[i];
  const GatingHierarchyGate unsorted({.coarse_levels = {{LevelSource::kCustom, descending}}});
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { (void)unsorted.evaluate(b, lp); }),
                       "must be non-decreasing"));
  const GatingHierarchyGate short_ids({.coarse_levels = {{LevelSource::kCustom, {0, 0}}}});
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { (void)short_ids.evaluate(b, lp); }),
                       "coarse_levels[0].ids has 2 entries"));
  // Products with the wrong size.
  const GatedRatios g = gate.gated_ratios(b, lp);
  Vector out;
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { g.jvp(Vector::Ones(2), out); }), "v has 2"));
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { g.vjp(Vector::Ones(2), out); }), "v has 2"));
}

}  // namespace
}  // namespace tether
