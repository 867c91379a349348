// The per-segment arithmetic of the gating hierarchy (solvers/fiberpo.hpp), written once for the
// CPU gate and the CUDA kernels (TETHER_HD is __host__ __device__ under nvcc, empty otherwise).
// Plain C++ on raw pointers: no Eigen, no exceptions, no allocation. The formulas are those of
// fiberpo.hpp's header; each function here is one segmented step of G's computation:
//   trajectory_means   a^+_tau, a^-_tau over a trajectory's tokens (one segment of tokens)
//   node_means         a coarse node's aggregate: the mean over its trajectories (one segment
//                      of trajectories)
//   trajectory_chain   the walk down one trajectory's chain of nodes: log w_tau, the slopes
//                      gamma^c_l, the trajectory's regime
//   fiber_constants / fiber_gate   G_i of one token from its trajectory's constants
// A trajectory's sums run in lanes (core/lanes.hpp: token k of the segment on lane k % 8, the
// lanes then added in order), so a segment gives the same bits wherever it is reduced, and the
// host loops vectorise.
#pragma once

#include <math.h>

#include <cstdint>
#include <tether/core/fast_exp.hpp>
#include <tether/core/hd.hpp>
#include <tether/core/lanes.hpp>

namespace tether {

/// g_agg(x, C, T) of spec section 3 (C >= 0, T >= 1).
TETHER_HD inline double aggregate_gate(double x, double c, double t) {
  const double ax = x < 0.0 ? -x : x;
  const double s = x < 0.0 ? -1.0 : 1.0;
  if (ax <= c) return x;
  if (ax < (1.0 + 1.0 / t) * c) return s * ((t + 1.0) * c - t * ax);
  return 0.0;
}

/// gamma = d g_agg / dx: 1 (|x| <= C), -T (rollback), 0 (zeroed); one-sided at the kinks.
TETHER_HD inline double aggregate_gate_slope(double x, double c, double t) {
  const double ax = x < 0.0 ? -x : x;
  if (ax <= c) return 1.0;
  if (ax < (1.0 + 1.0 / t) * c) return -t;
  return 0.0;
}

}  // namespace tether

namespace tether::fiberpo_segments {

struct SignedMeans {
  double positive = 0.0;  ///< a^+ = mean of max(x, 0)
  double negative = 0.0;  ///< a^- = mean of max(-x, 0)
};

/// max(x, 0): a token's share of a^+ (and, of -x, of a^-).
TETHER_HD_INLINE double positive_part(double x) { return x < 0.0 ? 0.0 : x; }

/// a^+ and a^- of tokens [begin, end) of one trajectory, x = new_log_prob - old_log_prob.
TETHER_HD inline SignedMeans trajectory_means(const double* new_log_prob,
                                              const double* old_log_prob, long long begin,
                                              long long end) {
  double sp[lanes::kLanes] = {}, sn[lanes::kLanes] = {};
  auto body = [&](int l, long long k) {
    const double x = new_log_prob[begin + k] - old_log_prob[begin + k];
    sp[l] += positive_part(x);
    sn[l] += positive_part(-x);
  };
  lanes::for_each(end - begin, body);
  const double len = static_cast<double>(end - begin);
  return {lanes::total(sp) / len, lanes::total(sn) / len};
}

/// A coarse node's aggregate: the mean of its trajectories' a^+ and a^-, trajectories
/// [begin, end) (the node's segment of the trajectory order).
TETHER_HD inline SignedMeans node_means(const double* traj_positive, const double* traj_negative,
                                        long long begin, long long end) {
  double sp = 0.0, sn = 0.0;
  for (long long k = begin; k < end; ++k) {
    sp += traj_positive[k];
    sn += traj_negative[k];
  }
  const double count = static_cast<double>(end - begin);
  return {sp / count, sn / count};
}

/// One gated level as a trajectory sees it: the aggregate of the node that holds it (the
/// trajectory itself at the last level), that node's token count, and the level's budgets.
struct ChainLevel {
  double positive = 0.0, negative = 0.0;  ///< a^+, a^- of the node
  double tokens = 1.0;                    ///< T of the node
  double budget_positive = 0.0, budget_negative = 0.0;
};

struct Chain {
  double log_weight = 0.0;  ///< log w_tau = sum_l g_agg(d^+_l) - g_agg(d^-_l)
  std::uint8_t regime = 0;  ///< 0 pass-through, 1 rollback, 2 zeroed
};

/// The walk down one trajectory's chain, coarsest level first: deviations d^c_l, their gates
/// and slopes (written to gamma_positive[l], gamma_negative[l]).
TETHER_HD inline Chain trajectory_chain(const ChainLevel* levels, int gated_levels,
                                        double* gamma_positive, double* gamma_negative) {
  Chain out;
  double prev_pos = 0.0, prev_neg = 0.0;
  bool zeroed = false, rollback = false;
  for (int l = 0; l < gated_levels; ++l) {
    const ChainLevel& c = levels[l];
    const double dp = c.positive - prev_pos, dn = c.negative - prev_neg;
    out.log_weight += aggregate_gate(dp, c.budget_positive, c.tokens) -
                      aggregate_gate(dn, c.budget_negative, c.tokens);
    const double gp = aggregate_gate_slope(dp, c.budget_positive, c.tokens);
    const double gn = aggregate_gate_slope(dn, c.budget_negative, c.tokens);
    gamma_positive[l] = gp;
    gamma_negative[l] = gn;
    zeroed = zeroed || gp == 0.0 || gn == 0.0;
    rollback = rollback || gp < 0.0 || gn < 0.0;
    prev_pos = c.positive;
    prev_neg = c.negative;
  }
  out.regime = zeroed ? 2 : (rollback ? 1 : 0);
  return out;
}

/// Token flags (GatedRatios' encoding).
constexpr std::uint8_t kPositive = 1, kUIn = 2, kVIn = 4;

/// clip(x, -eps, eps).
TETHER_HD inline double clip(double x, double eps) { return x < -eps ? -eps : (eps < x ? eps : x); }

/// The per-trajectory constants of the fiber gate. With l u = x - l a^l and the clipped
/// opposite term c^l = clip(l v, eps):
///   G_i = r_i exp(E - l a^l - c^l)   where |l u| <= eps,   exp(E +- eps - c^l) where clipped.
struct FiberConstants {
  double a_positive = 0.0, a_negative = 0.0;
  double scale_positive = 0.0, scale_negative = 0.0;  ///< exp(E - a^+ - c^+), exp(E + a^- - c^-)
  double high_positive = 0.0, low_positive = 0.0;     ///< exp(E +- eps - c^+)
  double high_negative = 0.0, low_negative = 0.0;     ///< exp(E +- eps - c^-)
  std::uint8_t v_in_positive = 0, v_in_negative = 0;  ///< kVIn where |v| <= eps, for l = +, -
};

TETHER_HD inline FiberConstants fiber_constants(double a_positive, double a_negative,
                                                double log_weight, double eps) {
  FiberConstants f;
  f.a_positive = a_positive;
  f.a_negative = a_negative;
  const double cp = clip(-a_negative, eps), cn = clip(a_positive, eps);  // l v = -a^-, a^+
  f.v_in_positive = fabs(a_negative) <= eps ? kVIn : 0;
  f.v_in_negative = fabs(a_positive) <= eps ? kVIn : 0;
  const double e = log_weight;
  f.scale_positive = exp(e - a_positive - cp);
  f.scale_negative = exp(e + a_negative - cn);
  f.high_positive = exp(e + eps - cp);
  f.low_positive = exp(e - eps - cp);
  f.high_negative = exp(e + eps - cn);
  f.low_negative = exp(e - eps - cn);
  return f;
}

/// G_i of one token with log-ratio x; writes r_i = exp(x) (fast_exp: within 1 ulp, and straight
/// -line, so that a trajectory's loop vectorises) and the token's flags.
TETHER_HD_INLINE double fiber_gate(double x, const FiberConstants& f, double eps, double* ratio,
                                   std::uint8_t* flags) {
  // Selects only (no branch), so that a trajectory's loop vectorises.
  const bool positive = x >= 0.0;
  const double lu = positive ? x - f.a_positive : x + f.a_negative;
  const bool u_in = fabs(lu) <= eps;
  const std::uint8_t v_in = positive ? f.v_in_positive : f.v_in_negative;
  *flags = static_cast<std::uint8_t>((positive ? kPositive : 0) | (u_in ? kUIn : 0) | v_in);
  const double r = fast_exp(x);
  *ratio = r;
  const double scale = positive ? f.scale_positive : f.scale_negative;
  const double high = positive ? f.high_positive : f.high_negative;
  const double low = positive ? f.low_positive : f.low_negative;
  const double clipped = lu > 0.0 ? high : low;
  return u_in ? r * scale : clipped;
}

/// fiber_gate over tokens [begin, end) of one trajectory: G, r and the flags. The
/// constants are copied into a local first (a byte store may alias anything reached through a
/// pointer, which would reload them per token), and the outputs are restrict (they overlap
/// nothing): either would keep the loop from vectorising.
TETHER_HD inline void fiber_gate_tokens(const double* new_log_prob, const double* old_log_prob,
                                        long long begin, long long end,
                                        const FiberConstants& constants, double eps,
                                        double* __restrict__ g, double* __restrict__ ratio,
                                        std::uint8_t* __restrict__ flags) {
  const FiberConstants f = constants;
  for (long long i = begin; i < end; ++i) {
    double r = 0.0;
    g[i] = fiber_gate(new_log_prob[i] - old_log_prob[i], f, eps, &r, &flags[i]);
    ratio[i] = r;
  }
}

/// Tokens of [begin, end) whose fiber gate clips (|u_i| > eps or |v_i| > eps).
TETHER_HD inline long long clipped_tokens(const std::uint8_t* flags, long long begin,
                                          long long end) {
  long long count[lanes::kLanes] = {};
  auto body = [&](int l, long long, unsigned f) {
    count[l] += (f & (kUIn | kVIn)) != (kUIn | kVIn) ? 1 : 0;
  };
  lanes::for_each_flagged(end - begin, flags + begin, body);
  return lanes::total(count);
}

// ---- the Jacobian products (GatedRatios::jvp / vjp), per segment ----

/// One token's shares of m^+ T and m^- T (x_j on the side of its l, 0 on the other).
struct JvpMeanTerms {
  double positive, negative;
};

TETHER_HD_INLINE JvpMeanTerms jvp_mean_terms(double v, double ratio, unsigned f, bool ratio_space) {
  // Branch-free (the signs are random): m x is exactly x or 0. r is read either way (a
  // conditional load would keep the loop from vectorising); v_j / 1 is v_j.
  const double x = v / (ratio_space ? ratio : 1.0);
  const double m = (f & kPositive) ? 1.0 : 0.0;
  return {m * x, x - m * x};
}

/// J v, step 1, one trajectory: m^c = (1/T) sum over its tokens with l = c of x_j, with
/// x_j = v_j / r_j (ratio space) or v_j (log space). (The products divide by r rather than
/// keep 1 / r: one array less to write and read, for a division that the vector units hide
/// behind the memory traffic.)
TETHER_HD inline SignedMeans jvp_trajectory_means(const double* v, const double* ratio,
                                                  const std::uint8_t* flags, long long begin,
                                                  long long end, bool ratio_space) {
  double sp[lanes::kLanes] = {}, sn[lanes::kLanes] = {};
  auto body = [&](int l, long long k, unsigned f) {
    const long long j = begin + k;
    const JvpMeanTerms t = jvp_mean_terms(v[j], ratio[j], f, ratio_space);
    sp[l] += t.positive;
    sn[l] += t.negative;
  };
  lanes::for_each_flagged(end - begin, flags + begin, body);
  const double len = static_cast<double>(end - begin);
  return {lanes::total(sp) / len, lanes::total(sn) / len};
}

/// J v, last step, one token of a trajectory with T tokens, m^+ T = m_pos_t, m^- T = m_neg_t,
/// and its aggregate coupling agg.
TETHER_HD_INLINE double jvp_token(double v, double ratio, std::uint8_t f, double g, double m_pos_t,
                                  double m_neg_t, double inv_len, double agg, bool ratio_space) {
  const double same = (f & kPositive) ? m_pos_t : m_neg_t;
  const double other = (f & kPositive) ? m_neg_t : m_pos_t;
  const double own = (f & kUIn) ? v / (ratio_space ? ratio : 1.0) : 0.0;
  const double coupling = ((f & kUIn) ? same : 0.0) + ((f & kVIn) ? other : 0.0);
  return g * (own - coupling * inv_len + agg);
}

/// J v, last step, over tokens [begin, end) of one trajectory (jvp_token each).
TETHER_HD inline void jvp_tokens(const double* v, const double* ratio, const std::uint8_t* flags,
                                 const double* g, long long begin, long long end, double m_pos_t,
                                 double m_neg_t, double inv_len, double agg, bool ratio_space,
                                 double* out) {
  for (long long i = begin; i < end; ++i)
    out[i] = jvp_token(v[i], ratio[i], flags[i], g[i], m_pos_t, m_neg_t, inv_len, agg, ratio_space);
}

/// J^T v, step 2, one coarse node (trajectories [begin, end)): the node means of beta^+ C and
/// beta^- C.
TETHER_HD inline SignedMeans node_weighted_means(const double* beta_positive,
                                                 const double* beta_negative, const double* total,
                                                 long long begin, long long end) {
  double qp = 0.0, qn = 0.0;
  for (long long k = begin; k < end; ++k) {
    qp += beta_positive[k] * total[k];
    qn += beta_negative[k] * total[k];
  }
  const double inv = 1.0 / static_cast<double>(end - begin);
  return {qp * inv, qn * inv};
}

/// J^T v, step 1, one trajectory, with c_i = v_i G_i: P^c_u, P^c_v (tokens with l = c that are
/// unclipped in u, in v) and C = sum c_i.
struct VjpSums {
  double pu_positive = 0.0, pv_positive = 0.0, pu_negative = 0.0, pv_negative = 0.0;
  double total = 0.0;
};

/// One token's shares of VjpSums (c = v G).
TETHER_HD_INLINE VjpSums vjp_terms(double v, double g, unsigned f) {
  const double c = v * g;
  const double cu = (f & kUIn) ? c : 0.0, cv = (f & kVIn) ? c : 0.0;
  const double m = (f & kPositive) ? 1.0 : 0.0;  // branch-free, exact (m in {0, 1})
  VjpSums t;
  t.total = c;
  t.pu_positive = m * cu;
  t.pv_positive = m * cv;
  t.pu_negative = cu - m * cu;
  t.pv_negative = cv - m * cv;
  return t;
}

/// VjpSums over tokens [begin, end) of one trajectory with v_i = value(i); each token is also
/// handed to also(lane, i), on the lane whose sums it joins.
template <class Value, class Also>
TETHER_HD_INLINE VjpSums vjp_sums_of(const Value& value, const double* g, const std::uint8_t* flags,
                                     long long begin, long long end, Also& also) {
  double total[lanes::kLanes] = {}, pu_pos[lanes::kLanes] = {}, pv_pos[lanes::kLanes] = {},
         pu_neg[lanes::kLanes] = {}, pv_neg[lanes::kLanes] = {};
  auto body = [&](int l, long long k, unsigned f) {
    const long long i = begin + k;
    const VjpSums t = vjp_terms(value(i), g[i], f);
    total[l] += t.total;
    pu_pos[l] += t.pu_positive;
    pv_pos[l] += t.pv_positive;
    pu_neg[l] += t.pu_negative;
    pv_neg[l] += t.pv_negative;
    also(l, i);
  };
  lanes::for_each_flagged(end - begin, flags + begin, body);
  VjpSums out;
  out.total = lanes::total(total);
  out.pu_positive = lanes::total(pu_pos);
  out.pv_positive = lanes::total(pv_pos);
  out.pu_negative = lanes::total(pu_neg);
  out.pv_negative = lanes::total(pv_neg);
  return out;
}

TETHER_HD inline VjpSums vjp_trajectory_sums(const double* v, const double* g,
                                             const std::uint8_t* flags, long long begin,
                                             long long end) {
  const auto value = [v](long long i) { return v[i]; };
  auto nothing = [](int, long long) {};
  return vjp_sums_of(value, g, flags, begin, end, nothing);
}

/// J's weight mu = 1 / (|Tj| T_tau) of every token of a trajectory of `tokens` tokens in a batch
/// of `trajectories` (FiberPO-Domain's objective: each trajectory counts once).
TETHER_HD inline double objective_weight(long long trajectories, long long tokens) {
  return 1.0 / (static_cast<double>(trajectories) * static_cast<double>(tokens));
}

/// The evaluate pass over one trajectory (J = sum_i mu A_i G_i, mu = objective_weight): the
/// objective's share mu sum_i G_i A_i, and J^T zeta's sums for zeta_i = mu A_i = dJ / dG_i, each
/// zeta_i formed as it is used (never stored).
struct ObjectiveVjpSums {
  double objective = 0.0;
  VjpSums vjp;
};

TETHER_HD inline ObjectiveVjpSums objective_vjp_sums(const double* advantage, double mu,
                                                     const double* g, const std::uint8_t* flags,
                                                     long long begin, long long end) {
  double sum[lanes::kLanes] = {};
  const auto zeta = [advantage, mu](long long i) { return mu * advantage[i]; };
  auto objective = [&](int l, long long i) { sum[l] += g[i] * advantage[i]; };
  ObjectiveVjpSums out;
  out.vjp = vjp_sums_of(zeta, g, flags, begin, end, objective);
  out.objective = mu * lanes::total(sum);
  return out;
}

/// J^T v, last step, one token: rp, rn are the trajectory's R^+ / T and R^- / T.
TETHER_HD_INLINE double vjp_token(double v, double g, double ratio, std::uint8_t f, double rp,
                                  double rn, bool ratio_space) {
  const double own = (f & kUIn) ? v * g : 0.0;
  const double value = own + ((f & kPositive) ? rp : rn);
  return value / (ratio_space ? ratio : 1.0);
}

/// J^T v, last step, over tokens [begin, end) of one trajectory (vjp_token each), with v_j =
/// scale * v[j] (scale 1: v itself, exactly; evaluate's zeta: mu A). In log space r is not read
/// (vjp_token divides by 1 there): one array less to stream.
TETHER_HD inline void vjp_tokens(const double* v, double scale, const double* g,
                                 const double* ratio, const std::uint8_t* flags, long long begin,
                                 long long end, double rp, double rn, bool ratio_space,
                                 double* out) {
  if (ratio_space)
    for (long long j = begin; j < end; ++j)
      out[j] = vjp_token(scale * v[j], g[j], ratio[j], flags[j], rp, rn, true);
  else
    for (long long j = begin; j < end; ++j)
      out[j] = vjp_token(scale * v[j], g[j], 1.0, flags[j], rp, rn, false);
}

}  // namespace tether::fiberpo_segments
