// Per-group arithmetic of the budget manifold, written once for the CPU path and the CUDA
// kernels (TETHER_HD is __host__ __device__ under nvcc, empty otherwise).
//
// For one group with logits a (K entries) and costs c, shifted by t along its costs:
//   p_k(t) = softmax(a + t c)_k,   E(t) = sum_k p_k c_k,   V(t) = sum_k p_k (c_k - E)^2 = dE/dt.
// The softmax subtracts the row maximum first, so logits of any magnitude stay finite.
#pragma once

#include <cmath>
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
  double s = 0.0;
  for (int j = 0; j < k; ++j) {
    p[j] = exp(a[j] + t * c[j] - m);
    s += p[j];
  }
  const double inv = 1.0 / s;
  for (int j = 0; j < k; ++j) p[j] *= inv;
}

/// Expected cost and cost variance of one row under softmax(a + t c), without storing p.
/// Rows of up to kBufferedOptions options keep their exponentials on the stack (one exp per
/// entry); wider rows recompute them in the variance pass.
constexpr int kBufferedOptions = 16;

TETHER_HD inline Moments moments_shifted(const double* a, const double* c, int k, double t) {
  double m = a[0] + t * c[0];
  for (int j = 1; j < k; ++j) m = larger(m, a[j] + t * c[j]);
  double buffer[kBufferedOptions];
  const bool buffered = k <= kBufferedOptions;
  double s = 0.0, sc = 0.0;
  for (int j = 0; j < k; ++j) {
    const double e = exp(a[j] + t * c[j] - m);
    if (buffered) buffer[j] = e;
    s += e;
    sc += e * c[j];
  }
  Moments out;
  out.expected = sc / s;
  double sv = 0.0;  // two-pass variance: no cancellation when costs are large and close
  for (int j = 0; j < k; ++j) {
    const double d = c[j] - out.expected;
    sv += (buffered ? buffer[j] : exp(a[j] + t * c[j] - m)) * d * d;
  }
  out.variance = sv / s;
  return out;
}

/// Normal of one row: n_k = p_k (c_k - E). Returns E. p is workspace (K entries).
TETHER_HD inline double normal(const double* a, const double* c, int k, double* n) {
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
  double s = 0.0;
  for (int q = 0; q < k; ++q) {
    p[q] = exp(p[q] - mx);
    s += p[q];
  }
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

/// Subtracts the row maximum from a (softmax is invariant to a per-row shift).
TETHER_HD inline void recentre(double* a, int k) {
  double m = a[0];
  for (int j = 1; j < k; ++j) m = larger(m, a[j]);
  for (int j = 0; j < k; ++j) a[j] -= m;
}

}  // namespace tether::budget_row
