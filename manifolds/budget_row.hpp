// Per-group arithmetic of the budget manifold, written once for the CPU path and the CUDA
// kernels (TETHER_HD is __host__ __device__ under nvcc, empty otherwise).
//
// For one group with logits a (K entries) and costs c, shifted by t along its costs:
//   p_k(t) = softmax(a + t c)_k,   E(t) = sum_k p_k c_k,   V(t) = sum_k p_k (c_k - E)^2 = dE/dt.
// The softmax subtracts the row maximum first, so logits of any magnitude stay finite.
//
// The exponentials are tether::fast_exp (core/fast_exp.hpp, within 1 ulp of std::exp), each row's
// computed in a loop of its own with no reduction in it, so the compiler vectorises them; the
// sums follow in fixed order, so the result does not depend on the vector width's rounding.
#pragma once

#include <cassert>
#include <cmath>
#include <tether/core/fast_exp.hpp>
#include <tether/core/hd.hpp>

namespace tether::budget_row {

/// max(a, b) for finite values, inlined everywhere (std::fmax is a library call on the host).
TETHER_HD inline double larger(double a, double b) { return b > a ? b : a; }

struct Moments {
  double expected = 0.0;  ///< E_i = sum_k p_ik c_ik
  double variance = 0.0;  ///< Var_{p_i}(c_i) = d E_i / d t
};

/// Stable softmax of (a + t c) into p; returns nothing. K >= 1.
TETHER_HD inline void softmax_shifted(const double* a, const double* c, int k, double t,
                                      double* p) {
  double m = a[0] + t * c[0];
  for (int j = 1; j < k; ++j) m = larger(m, a[j] + t * c[j]);
  for (int j = 0; j < k; ++j) p[j] = fast_exp(a[j] + t * c[j] - m);
  double s = 0.0;
  for (int j = 0; j < k; ++j) s += p[j];
  const double inv = 1.0 / s;
  for (int j = 0; j < k; ++j) p[j] *= inv;
}

/// Rows of up to kBufferedOptions options take the padded path below; wider rows the plain
/// loops (which recompute the exponentials in the variance pass instead of storing them).
constexpr int kBufferedOptions = 16;

/// Sum of x[0..W) by a pairwise tree (W a power of two): one fixed order of additions, in
/// fixed-length loops that the compiler turns into vector adds.
template <int W>
TETHER_HD inline double tree_sum(double* x) {
  for (int width = W / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) x[j] += x[j + width];
  return x[0];
}

/// The unnormalised softmax weights of one row padded to W >= k entries (a power of two):
/// cost[j] = c_j and e[j] = exp(a_j + t c_j - max) for j < k; cost[j] = 0 and e[j] = 0 beyond
/// (logit -inf). Every loop but the copy has the fixed length W, so max, exp and the sums that
/// follow vectorise.
template <int W>
TETHER_HD inline void padded_weights(const double* a, const double* c, int k, double t,
                                     double* cost, double* e) {
#if defined(__GNUC__) && !defined(__CUDA_ARCH__)
  // 1 <= k <= W: the manifolds refuse K < 1 at construction and the callers dispatch on k <= W.
  // Said to the compiler, which otherwise assumes a negative k possible and warns that the
  // padding loop's memset may overflow (GCC 12, -O3 -march=native: -Wstringop-overflow).
  assert(k >= 1 && k <= W);
  if (k < 1 || k > W) __builtin_unreachable();
#endif
  double x[W], m[W];
  for (int j = 0; j < k; ++j) {
    cost[j] = c[j];
    x[j] = a[j] + t * c[j];
  }
  for (int j = k; j < W; ++j) {
    cost[j] = 0.0;
    x[j] = -HUGE_VAL;
  }
  for (int j = 0; j < W; ++j) m[j] = x[j];
  for (int width = W / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) m[j] = larger(m[j], m[j + width]);
  for (int j = 0; j < W; ++j) e[j] = fast_exp(x[j] - m[0]);
}

template <int W>
TETHER_HD inline Moments moments_padded(const double* a, const double* c, int k, double t) {
  double cost[W], e[W], work[W];
  padded_weights<W>(a, c, k, t, cost, e);
  for (int j = 0; j < W; ++j) work[j] = e[j];
  const double s = tree_sum<W>(work);
  for (int j = 0; j < W; ++j) work[j] = e[j] * cost[j];
  Moments out;
  out.expected = tree_sum<W>(work) / s;
  for (int j = 0; j < W; ++j) {  // two-pass variance: no cancellation for large, close costs
    const double d = cost[j] - out.expected;
    work[j] = e[j] * d * d;
  }
  out.variance = tree_sum<W>(work) / s;
  return out;
}

/// Expected cost and cost variance of one row under softmax(a + t c), without storing p.
TETHER_HD inline Moments moments_shifted(const double* a, const double* c, int k, double t) {
  if (k <= 2) return moments_padded<2>(a, c, k, t);
  if (k <= 4) return moments_padded<4>(a, c, k, t);
  if (k <= 8) return moments_padded<8>(a, c, k, t);
  if (k <= kBufferedOptions) return moments_padded<kBufferedOptions>(a, c, k, t);
  double m = a[0] + t * c[0];
  for (int j = 1; j < k; ++j) m = larger(m, a[j] + t * c[j]);
  double s = 0.0, sc = 0.0, sv = 0.0;
  for (int j = 0; j < k; ++j) {
    const double e = fast_exp(a[j] + t * c[j] - m);
    s += e;
    sc += e * c[j];
  }
  Moments out;
  out.expected = sc / s;
  for (int j = 0; j < k; ++j) {
    const double d = c[j] - out.expected;
    sv += fast_exp(a[j] + t * c[j] - m) * d * d;
  }
  out.variance = sv / s;
  return out;
}

/// Subtracts the row maximum from a (softmax is invariant to a per-row shift).
TETHER_HD inline void recentre(double* a, int k) {
  double m = a[0];
  for (int j = 1; j < k; ++j) m = larger(m, a[j]);
  for (int j = 0; j < k; ++j) a[j] -= m;
}

/// shifted = a + t c for one row, less its maximum if recentre (the same operations as the
/// moments' first step, so the shifted row's moments at t = 0 equal the row's at t, bit for
/// bit). shifted may be a itself.
TETHER_HD inline void shift_row(const double* a, const double* c, int k, double t, double* shifted,
                                bool recentre) {
  for (int j = 0; j < k; ++j) shifted[j] = a[j] + t * c[j];
  if (recentre) budget_row::recentre(shifted, k);
}

/// Rows per block of the row-blocked CPU pass below.
constexpr int kBlockRows = 8;

/// moments_padded<W> of kBlockRows consecutive rows (row r at a + r k, c + r k), computed option
/// by option across the rows: the per-row operations in the same order, so the results are
/// bit-identical to moments_padded<W> on each row (tests/budget_row_test.cpp), but every loop
/// runs across kBlockRows independent rows. That is what the wide vector units need: the per-row
/// form is a chain of horizontal reductions (max, then three sums, two divisions) whose latency
/// no out-of-order window hides, so it ran at 16.6 ns per row of 8 against 11.1 ns blocked
/// (one core, AVX-512, 2026-11-29). Host code: the device gives each row its own thread.
///
/// With shifted != nullptr it also writes the shifted logits a + t c of the rows (row r at
/// shifted + r k), less each row's maximum if recentre: the point whose moments at t = 0 are,
/// bit for bit, the ones returned (the retraction applies its last shift in the pass that
/// measures it). shifted may be a itself.
///
/// FullRows = true says k == W at compile time, which lets the compiler vectorise the transpose.
template <int W, bool FullRows = false>
inline void moments_padded_block(const double* a, const double* c, int k_runtime, double t,
                                 Moments* out, double* shifted = nullptr, bool recentre = true) {
  constexpr int L = kBlockRows;
  const int k = FullRows ? W : k_runtime;
  double cost[W][L], x[W][L], m[W][L], e[W][L], work[W][L], s[L];
  for (int r = 0; r < L; ++r)  // transpose: option j of row r goes to [j][r]
    for (int j = 0; j < W; ++j) {
      cost[j][r] = j < k ? c[r * k + j] : 0.0;
      x[j][r] = j < k ? a[r * k + j] + t * c[r * k + j] : -HUGE_VAL;
    }
  for (int j = 0; j < W; ++j)
    for (int r = 0; r < L; ++r) m[j][r] = x[j][r];
  for (int width = W / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j)
      for (int r = 0; r < L; ++r) m[j][r] = larger(m[j][r], m[j + width][r]);
  for (int j = 0; j < W; ++j)
    for (int r = 0; r < L; ++r) e[j][r] = fast_exp(x[j][r] - m[0][r]);
  if (shifted != nullptr)
    for (int r = 0; r < L; ++r)
      for (int j = 0; j < k; ++j) shifted[r * k + j] = recentre ? x[j][r] - m[0][r] : x[j][r];
  auto column_tree_sum = [&work]() {
    for (int width = W / 2; width >= 1; width /= 2)
      for (int j = 0; j < width; ++j)
        for (int r = 0; r < L; ++r) work[j][r] += work[j + width][r];
  };
  for (int j = 0; j < W; ++j)
    for (int r = 0; r < L; ++r) work[j][r] = e[j][r];
  column_tree_sum();
  for (int r = 0; r < L; ++r) s[r] = work[0][r];
  for (int j = 0; j < W; ++j)
    for (int r = 0; r < L; ++r) work[j][r] = e[j][r] * cost[j][r];
  column_tree_sum();
  for (int r = 0; r < L; ++r) out[r].expected = work[0][r] / s[r];
  for (int j = 0; j < W; ++j)
    for (int r = 0; r < L; ++r) {
      const double d = cost[j][r] - out[r].expected;
      work[j][r] = e[j][r] * d * d;
    }
  column_tree_sum();
  for (int r = 0; r < L; ++r) out[r].variance = work[0][r] / s[r];
}

/// moments_shifted of kBlockRows consecutive rows into out[0..kBlockRows), bit-identical to it,
/// optionally writing the shifted logits as moments_padded_block does. Rows wider than
/// kBufferedOptions go row by row. (The blocked form is faster in the portable SSE2 build too:
/// 48.7 against 59.7 ms for a 1e6 x 8 retraction.)
inline void moments_shifted_block(const double* a, const double* c, int k, double t, Moments* out,
                                  double* shifted = nullptr, bool recentre = true) {
  if (k <= 2)
    return k == 2 ? moments_padded_block<2, true>(a, c, k, t, out, shifted, recentre)
                  : moments_padded_block<2>(a, c, k, t, out, shifted, recentre);
  if (k <= 4)
    return k == 4 ? moments_padded_block<4, true>(a, c, k, t, out, shifted, recentre)
                  : moments_padded_block<4>(a, c, k, t, out, shifted, recentre);
  if (k <= 8)
    return k == 8 ? moments_padded_block<8, true>(a, c, k, t, out, shifted, recentre)
                  : moments_padded_block<8>(a, c, k, t, out, shifted, recentre);
  if (k <= kBufferedOptions)
    return k == kBufferedOptions
               ? moments_padded_block<kBufferedOptions, true>(a, c, k, t, out, shifted, recentre)
               : moments_padded_block<kBufferedOptions>(a, c, k, t, out, shifted, recentre);
  for (int r = 0; r < kBlockRows; ++r) {
    out[r] = moments_shifted(a + r * k, c + r * k, k, t);
    if (shifted != nullptr) shift_row(a + r * k, c + r * k, k, t, shifted + r * k, recentre);
  }
}

template <int W>
TETHER_HD inline double normal_padded(const double* a, const double* c, int k, double* n) {
  double cost[W], e[W], work[W];
  padded_weights<W>(a, c, k, 0.0, cost, e);
  for (int j = 0; j < W; ++j) work[j] = e[j];
  const double inv = 1.0 / tree_sum<W>(work);
  for (int j = 0; j < W; ++j) e[j] *= inv;  // p
  for (int j = 0; j < W; ++j) work[j] = e[j] * cost[j];
  const double expected = tree_sum<W>(work);
  for (int j = 0; j < k; ++j) n[j] = e[j] * (cost[j] - expected);
  return expected;
}

/// Normal of one row: n_k = p_k (c_k - E). Returns E. n has K entries (also the workspace of
/// rows wider than kBufferedOptions).
TETHER_HD inline double normal(const double* a, const double* c, int k, double* n) {
  if (k <= 2) return normal_padded<2>(a, c, k, n);
  if (k <= 4) return normal_padded<4>(a, c, k, n);
  if (k <= 8) return normal_padded<8>(a, c, k, n);
  if (k <= kBufferedOptions) return normal_padded<kBufferedOptions>(a, c, k, n);
  softmax_shifted(a, c, k, 0.0, n);
  double e = 0.0;
  for (int j = 0; j < k; ++j) e += n[j] * c[j];
  for (int j = 0; j < k; ++j) n[j] *= (c[j] - e);
  return e;
}

/// Several budgets on one row (manifolds/multi_budget_manifold.hpp). The m cost rows are
/// c^(j)_k = c[j * budget_stride + k]; the row is shifted along all of them,
///   p = softmax(a + sum_j t_j c^(j))           (t == nullptr: no shift),
/// and the function writes E_j = sum_k p_k c^(j)_k into expected[j] and, unless cov is null,
///   cov[j * m + l] = Cov_p(c^(j), c^(l)) = sum_k p_k (c^(j)_k - E_j) (c^(l)_k - E_l)
///                  = d E_j / d t_l                   (two-pass: no cancellation).
/// p is workspace (K entries) and holds the probabilities on return. K >= 1, m >= 1.
/// Returns the row's log-partition log sum_k exp(a_k + sum_j t_j c^(j)_k), whose sum over rows
/// minus <B, t> is the convex potential whose gradient in t is C(t) - B.
TETHER_HD inline double moments_multi(const double* a, const double* c, long long budget_stride,
                                      int m, int k, const double* t, double* p, double* expected,
                                      double* cov) {
  for (int q = 0; q < k; ++q) {
    double z = a[q];
    if (t != nullptr)
      for (int j = 0; j < m; ++j) z += t[j] * c[j * budget_stride + q];
    p[q] = z;
  }
  double mx = p[0];
  for (int q = 1; q < k; ++q) mx = larger(mx, p[q]);
  for (int q = 0; q < k; ++q) p[q] = fast_exp(p[q] - mx);
  double s = 0.0;
  for (int q = 0; q < k; ++q) s += p[q];
  const double inv = 1.0 / s;
  for (int q = 0; q < k; ++q) p[q] *= inv;
  for (int j = 0; j < m; ++j) {
    const double* cj = c + j * budget_stride;
    double e = 0.0;
    for (int q = 0; q < k; ++q) e += p[q] * cj[q];
    expected[j] = e;
  }
  const double log_partition = mx + log(s);
  if (cov == nullptr) return log_partition;
  for (int j = 0; j < m; ++j) {
    const double* cj = c + j * budget_stride;
    for (int l = 0; l <= j; ++l) {
      const double* cl = c + l * budget_stride;
      double v = 0.0;
      for (int q = 0; q < k; ++q) v += p[q] * (cj[q] - expected[j]) * (cl[q] - expected[l]);
      cov[j * m + l] = v;
      cov[l * m + j] = v;
    }
  }
  return log_partition;
}

/// Normal of one row for one cost row c given the probabilities p: n_k = p_k (c_k - E).
/// Returns E. (normal() above is this with p = softmax(a).)
TETHER_HD inline double normal_given_p(const double* p, const double* c, int k, double* n) {
  double e = 0.0;
  for (int j = 0; j < k; ++j) e += p[j] * c[j];
  for (int j = 0; j < k; ++j) n[j] = p[j] * (c[j] - e);
  return e;
}

}  // namespace tether::budget_row
