// FiberPO and the gating hierarchy of any depth (FiberPO-Domain): trust-region gates on
// trajectory (and coarser) aggregates of the log-ratios, with a token-level fiber gate.
// "Fibration Policy Optimization" (arXiv 2603.08239, v1); specs/fiberpo.md, sections 3, 4, 6.
// The paper is theory only (no official code or defaults); alphadl/FibrationPO simplifies it
// and is not followed.
//
// Frame: J = sum_i mu_i G_i A_i, mu_i = 1 / (|Tj| T_tau(i)) (|Tj| trajectories in the batch,
// T_tau tokens in i's trajectory), x_i = log r_i = new_log_prob_i - old_log_prob_i.
// Nothing is stop-gradiented: the aggregates depend on theta, and the Jacobian below has the
// aggregate coupling terms.
//
// Levels, coarsest first: L_0 > L_1 > ... > L_{n-2} = trajectory > L_{n-1} = token (depth n;
// FiberPO is n = 2, FiberPO-Domain n = 4 with levels domain > group > trajectory > token, or
// n = 3 with one of them). Per sign channel c in {+, -}:
//   trajectory aggregate  a^c_tau = (1/T_tau) sum_{t in tau} max(c x_t, 0)  (log s^c_tau)
//   coarser node n        a^c_n = mean over the trajectories of n of a^c_tau
// (the spec's group aggregate is the mean of its trajectories' aggregates and the domain
// aggregate the trajectory-count-weighted mean of its groups' aggregates: both are the plain
// mean over the trajectories inside, which is how every coarse level is computed here).
//   deviation   d^c_0 = a^c_{n_0(i)},   d^c_l = a^c_{n_l(i)} - a^c_{n_{l-1}(i)}   (l >= 1)
//   aggregate gate (odd, continuous; spec section 3)
//     g_agg(x, C, T) = x                          |x| <= C             (pass-through, slope 1)
//                    = sign(x) ((T+1) C - T |x|)  C < |x| < (1+1/T) C  (rollback, slope -T)
//                    = 0                          |x| >= (1+1/T) C     (zeroed, slope 0)
//     with T the token count of the level's node (T_D, T_g, T_tau).
//   base weight   w_tau = exp( sum_l g_agg(d^+_l, C^+_l, T_l) - sum_l g_agg(d^-_l, C^-_l, T_l) )
//   fiber gate    l_i = sign(x_i) (x_i = 0 counts as +: both choices give the same value),
//                 u_i = l_i x_i - a^{l_i}_tau,  v_i = -a^{-l_i}_tau,
//                 r~_i = exp( clip(l_i u_i, -eps, eps) - clip(l_i v_i, -eps, eps) )
//                 (with no clip active, log r~_i = x_i - mean_t x_t)
//   gated ratio   G_i = w_tau r~_i.
// Depth 2 is exactly section 3: w_tau = exp(g_agg(log s+, C+, T_tau) - g_agg(log s-, C-, T_tau)).
// In the pass-through regime (every |d| <= C, every |u|, |v| <= eps) G(r) = r: the deviations
// telescope to a^+_tau - a^-_tau = mean_t x_t.
//
// Jacobian (Prop. 5.2, extended to any depth): with K_ij = d log G_i / d x_j, pu_i = 1[|u_i| <=
// eps], pv_i = 1[|v_i| <= eps], gamma^c_l = g_agg'(d^c_l) in {1, -T_l, 0},
// beta^c_l = gamma^c_l - gamma^c_{l+1} (gamma beyond the trajectory level = 0), and
// D_l(i, j) = 1[j in n_l(i)] / (trajectories in n_l(i)) (1[tau_i = tau_j] at the trajectory level):
//   K_ij = pu_i 1[i = j] - (1/T_tau) 1[tau_i = tau_j] (pu_i 1[l_i = l_j] + pv_i 1[l_i != l_j])
//          + (1/T_tau(j)) sum_l beta^{l_j}_l(i) D_l(i, j),
//   dG_i / dr_j = G_i K_ij / r_j.
// At depth 2 the last term is (1/T_tau) gamma^{l_j}_tau 1[tau_i = tau_j]: Prop. 5.2 verbatim,
// block-diagonal over trajectories (at depth > 2, block-diagonal over the coarsest level's
// nodes). Derivatives at the kinks are one-sided: max(x, 0) is differentiated from the right
// (l = + at x = 0), |u| <= eps and |d| <= C count as unclipped / pass-through, |d| = (1+1/T) C
// as zeroed. J v and J^T v take O(T + nodes) time: segmented sums per trajectory, then per node
// of each level, using the offsets of the sorted ids (segment_offsets) computed once per batch.
// G costs one exp per token (every other factor of G_i is a per-trajectory constant). Above
// 2^16 tokens the per-trajectory loops run on OpenMP threads; each trajectory is reduced by one
// thread in a fixed order and the batch totals are summed in trajectory order, so results are
// bitwise independent of the thread count (tested).
//
// Regimes. A trajectory is zeroed when some level's gate has slope 0 in some channel, else
// rollback when some slope is -T, else pass-through. A token is zeroed when its trajectory is
// or its fiber gate clips (|u_i| > eps or |v_i| > eps), rollback when its trajectory is, else
// pass-through.
//
// Budgets: C+ + C- = delta, C- < C+ recommended. The paper states no defaults; ours are the
// last illustrative setting of its figures, (C+, C-, eps) = (0.12, 0.05, 0.04). Per-level
// budgets (the paper's "independent budgets per level", whose formulas reuse one pair) default
// to that one pair.
//
//   tether::FiberPoGate fiberpo({.budget_positive = 0.12, .budget_negative = 0.05, .eps = 0.04});
//   tether::GateValue v = fiberpo.evaluate(batch, new_log_prob);
//   tether::GatingHierarchyGate domain;            // domain > group > trajectory > token
//   tether::GatedRatios g = domain.gated_ratios(batch, new_log_prob);
//   g.values();  g.jvp(v, out);  g.vjp(w, out);     // G, J v, J^T w  (J = dG/dr)
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <tether/core/hd.hpp>
#include <tether/core/policy_batch.hpp>
#include <tether/core/types.hpp>
#include <tether/solvers/fiberpo_segments.hpp>
#include <vector>

namespace tether {

/// Where a coarse level's ids come from.
enum class LevelSource {
  kDomain,  ///< TokenBatch::domain
  kGroup,   ///< TokenBatch::group
  kCustom,  ///< HierarchyLevel::ids (one per token)
};

/// One level above the trajectory. Custom ids must be constant on each trajectory,
/// non-decreasing, and nested in the level above (one coarser node per node).
struct HierarchyLevel {
  LevelSource source = LevelSource::kGroup;
  std::vector<int> ids = {};  ///< per token; only for kCustom
};

/// (C+, C-) of one level.
struct LevelBudget {
  double positive = 0.12;  ///< C+: finite, >= 0
  double negative = 0.05;  ///< C-: finite, >= 0
};

struct GatingHierarchyOptions {
  /// Levels above the trajectory, coarsest first. Empty: FiberPO (depth 2). Default:
  /// FiberPO-Domain, domain > group > trajectory > token (depth 4).
  std::vector<HierarchyLevel> coarse_levels = {{LevelSource::kDomain}, {LevelSource::kGroup}};
  double budget_positive = 0.12;  ///< C+ of every level without its own; finite, >= 0
  double budget_negative = 0.05;  ///< C- of every level without its own; finite, >= 0
  double eps = 0.04;              ///< fiber clip; finite, >= 0
  /// Empty (every level uses (budget_positive, budget_negative)), or one per gated level:
  /// coarse_levels.size() + 1 entries, coarsest first, the trajectory level last.
  std::vector<LevelBudget> level_budgets = {};

  bool is_valid(std::string* why) const;
};

/// G(r) of a batch with everything its Jacobian needs: made once per batch (linear time), then
/// any number of J v / J^T v products (each linear time). J = dG/dr; the _log variants use
/// d G / d log r = J diag(r).
class GatedRatios {
 public:
  Index size() const { return g_.size(); }
  Index num_trajectories() const { return static_cast<Index>(traj_.size()) - 1; }
  /// G_i.
  const Vector& values() const { return g_; }
  /// r_i.
  const Vector& ratios() const { return r_; }
  /// w_tau per trajectory (trajectory order of the batch).
  const Vector& base_weights() const { return w_; }
  /// r~_i = G_i / w_tau.
  Vector fiber_ratios() const;
  /// Trajectory offsets: trajectory k is tokens [offsets[k], offsets[k+1]).
  const std::vector<Index>& trajectory_offsets() const { return traj_; }
  /// Per-token flags: l_i = +1, |u_i| <= eps, |v_i| <= eps.
  bool positive(Index i) const { return flags_[static_cast<std::size_t>(i)] & kPositive; }
  bool u_unclipped(Index i) const { return flags_[static_cast<std::size_t>(i)] & kUIn; }
  bool v_unclipped(Index i) const { return flags_[static_cast<std::size_t>(i)] & kVIn; }
  /// Slopes gamma^c of every gated level at trajectory k (level 0 coarsest, the trajectory level
  /// last), c = +1 or -1: which branch of g_agg each aggregate is on.
  double slope(int level, int channel, Index k) const;
  int num_gated_levels() const { return static_cast<int>(beta_pos_.size()); }

  /// out = J v (out pre-sized or resized).
  void jvp(ConstVectorRef v, Vector& out) const { jvp_impl(v, out, true); }
  /// out = J^T v.
  void vjp(ConstVectorRef v, Vector& out) const { vjp_impl(v, out, true); }
  /// out = (dG / d log r) v.
  void jvp_log(ConstVectorRef v, Vector& out) const { jvp_impl(v, out, false); }
  /// out = (dG / d log r)^T v.
  void vjp_log(ConstVectorRef v, Vector& out) const { vjp_impl(v, out, false); }

  RegimeFractions token_regimes() const;
  RegimeFractions trajectory_regimes() const;

 private:
  friend class GatingHierarchyGate;
  static constexpr std::uint8_t kPositive = fiberpo_segments::kPositive,
                                kUIn = fiberpo_segments::kUIn, kVIn = fiberpo_segments::kVIn;
  // A coarse level: nodes are runs of trajectories [offsets[n], offsets[n+1]).
  struct Level {
    std::vector<Index> offsets;
  };

  void jvp_impl(ConstVectorRef v, Vector& out, bool ratio_space) const;
  void vjp_impl(ConstVectorRef v, Vector& out, bool ratio_space) const;
  // J^T v in steps, shared by vjp_impl and GatingHierarchyGate::evaluate (which takes step 1
  // inside the gate's pass): step 1's result for trajectory k from its sums, into R^+, R^- and C
  // (r_pos, r_neg, total); then the node corrections and the token pass, with v_j = mu_k v[j]
  // on trajectory k where zeta (mu_k = objective_weight: v holds A, the vector is zeta = mu A),
  // else v itself.
  void vjp_trajectory(Index k, const fiberpo_segments::VjpSums& sums, Vector& r_pos, Vector& r_neg,
                      Vector& total) const;
  void vjp_finish(const double* v, bool zeta, Vector& r_pos, Vector& r_neg, const Vector& total,
                  bool ratio_space, Vector& out) const;

  Vector r_, g_, w_, traj_len_;
  std::vector<std::uint8_t> flags_;
  std::vector<Index> traj_;
  std::vector<Level> levels_;
  // beta^c_l per trajectory, one vector per gated level (coarse levels, then trajectory).
  std::vector<Vector> beta_pos_, beta_neg_, gamma_pos_, gamma_neg_;
  std::vector<std::uint8_t> traj_regime_;  // 0 pass, 1 rollback, 2 zeroed
};

/// The segment structure of a batch under a hierarchy: trajectory k is tokens
/// [trajectories[k], trajectories[k+1]); node m of coarse level l (coarsest first) is
/// trajectories [levels[l][m], levels[l][m+1]).
struct HierarchySegments {
  std::vector<Index> trajectories;
  std::vector<std::vector<Index>> levels;
};

/// The storage of GatingHierarchyGate::evaluate, kept across calls: G with its Jacobian's
/// data, and the trajectories' shares of the objective.
struct GateWorkspace {
  GatedRatios gated;
  Vector partial;
};

/// The gating hierarchy of any depth (spec section 4); FiberPO-Domain by default.
class GatingHierarchyGate {
 public:
  GatingHierarchyGate() : GatingHierarchyGate(GatingHierarchyOptions{}) {}
  explicit GatingHierarchyGate(GatingHierarchyOptions options);

  /// J = sum_i G_i A_i / (|Tj| T_tau), dJ / d log pi_theta exactly (aggregate terms included).
  GateValue evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// The same into `out`, with the workspace's and out.gradient's per-token arrays reused when
  /// the batch size repeats (only O(trajectories) scratch is allocated): a fresh evaluate spends
  /// about half its time on the page faults of its new arrays at 1e6 tokens. The same bits as
  /// evaluate().
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, GateWorkspace& workspace,
                GateValue& out) const;
  /// The same on a plan from segments() for this batch, unchanged since: only new_log_prob is
  /// checked (see gated_ratios on a plan).
  void evaluate(const HierarchySegments& plan, const TokenBatch& batch, ConstVectorRef new_log_prob,
                GateWorkspace& workspace, GateValue& out) const;
  /// The same on a batch validated once (PolicyGradientSolver's gate calls take this one): the
  /// batch's layout is not checked again; its plan under this hierarchy is found per call (a pass
  /// over the coarse levels' ids, which checks their nesting), into a workspace of the call's
  /// own. The same bits as evaluate(batch, new_log_prob); a refused log-prob leaves `out` as it
  /// was.
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const;
  /// G and its Jacobian products.
  GatedRatios gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const;
  /// The same into `out`, reusing its storage (no allocation when the batch size repeats). When
  /// the call refuses its input, `out` is left unchanged or empty (size 0), never partly made.
  void gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob, GatedRatios& out) const;
  /// The same on a plan from segments() for this batch, unchanged since (ids, old log-probs,
  /// advantages): the batch's checks are not repeated, only new_log_prob's (size, finite,
  /// <= 0). For a training loop's epochs over one batch, where validating every call would read
  /// the batch again (40 of about 130 bytes a token). A plan of another batch gives wrong
  /// results; one whose token count differs is refused.
  void gated_ratios(const HierarchySegments& plan, const TokenBatch& batch,
                    ConstVectorRef new_log_prob, GatedRatios& out) const;
  const GatingHierarchyOptions& options() const { return options_; }
  /// The batch's segments under this hierarchy, after every check gated_ratios() makes (ids
  /// sorted and nested, custom ids constant on trajectories, finite inputs); for the device
  /// path (solvers/fiberpo_device.hpp), which runs the same segmented passes.
  HierarchySegments segments(const TokenBatch& batch, ConstVectorRef new_log_prob) const;

 private:
  HierarchySegments segments_of_valid_batch(const TokenBatch& batch) const;
  // gated_ratios on a plan, calling after_trajectory(k) on the thread that gated trajectory k,
  // just after its tokens (fiberpo.cpp).
  template <class AfterTrajectory>
  void gate_then(const HierarchySegments& plan, const TokenBatch& batch,
                 ConstVectorRef new_log_prob, GatedRatios& out,
                 const AfterTrajectory& after_trajectory) const;
  GatingHierarchyOptions options_;
};

/// FiberPO (spec section 3): the hierarchy with no level above the trajectory.
class FiberPoGate {
 public:
  struct Options {
    double budget_positive = 0.12;  ///< C+; finite, >= 0
    double budget_negative = 0.05;  ///< C-; finite, >= 0
    double eps = 0.04;              ///< fiber clip; finite, >= 0
    bool is_valid(std::string* why) const;
  };

  FiberPoGate() : FiberPoGate(Options{}) {}
  explicit FiberPoGate(const Options& options);

  GateValue evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
    return hierarchy_.evaluate(batch, new_log_prob);
  }
  /// evaluate with a workspace, and on a plan (GatingHierarchyGate's).
  void evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob, GateWorkspace& workspace,
                GateValue& out) const {
    hierarchy_.evaluate(batch, new_log_prob, workspace, out);
  }
  void evaluate(const HierarchySegments& plan, const TokenBatch& batch, ConstVectorRef new_log_prob,
                GateWorkspace& workspace, GateValue& out) const {
    hierarchy_.evaluate(plan, batch, new_log_prob, workspace, out);
  }
  void evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob, GateValue& out) const {
    hierarchy_.evaluate(batch, new_log_prob, out);
  }
  HierarchySegments segments(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
    return hierarchy_.segments(batch, new_log_prob);
  }
  GatedRatios gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
    return hierarchy_.gated_ratios(batch, new_log_prob);
  }
  void gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob, GatedRatios& out) const {
    hierarchy_.gated_ratios(batch, new_log_prob, out);
  }
  const Options& options() const { return options_; }

 private:
  static GatingHierarchyOptions hierarchy_options(const Options& options);
  Options options_;
  GatingHierarchyGate hierarchy_;
};

}  // namespace tether
