// Per-row arithmetic of the simplex-type projections (core/simplex_projections.hpp), written
// once for the CPU path and the CUDA kernels (TETHER_HD is __host__ __device__ under nvcc, empty
// otherwise). Plain C++17 on raw pointers: no Eigen, no exceptions, no allocation. Every
// function works on one row y[0..n) in place and reports bad input through a RowStatus; a row
// is written only after every check passed, so a refused row is left as it was.
//
// Rounding is the same on both sides: products go through mul(), which is __dmul_rn on the
// device (nvcc would otherwise contract a * b + c into one FMA and round differently from the
// host), sums of more than a few terms are compensated (Neumaier), and the sort the CPU uses
// (std::sort) and the device uses (heapsort below) produce the same sorted sequence.
//
// Threshold sets (simplex {p >= 0, sum p = z} and l1 ball {|p|_1 <= z}): with v_i = y_i
// (simplex) or |y_i| (l1 ball, when |y|_1 > z), P(y)_i = max(v_i - tau, 0) (times sign(y_i)),
// where tau solves sum_i max(v_i - tau, 0) = z. Each algorithm returns an estimate of tau that
// fixes the active set A = {i : v_i > tau}. Only candidates can be active: tau >= max v - z, so
// threshold_candidates() keeps the v_i above that bound (less a margin), usually a small part of
// the row, and both algorithms and the closed form run on them (project_threshold());
// simplex_finish() recomputes tau in closed form,
//   tau = (sum_{i in A} v_i - z) / |A|          (compensated sum, quotient as hi + lo),
// so two algorithms that find the same active set give the same bits, and writes
// (v_i - hi) - lo, exact up to its own rounding.
//
// The box section's rows live in core/box_section_row.hpp, on the same helpers.
//
// The host's fma() is the correctly rounded libm function, the device's the instruction: the
// same result. Every other product is mul() (never contracted), so the device computes the
// same bits as the host.
#pragma once

#include <math.h>

#include <cstdint>
#include <tether/core/bits.hpp>
#include <tether/core/hd.hpp>
#include <tether/core/lanes.hpp>

namespace tether::simplex_row {

/// a * b, never contracted into an FMA on the device. The host has no FMA contraction with
/// the default x86-64 flags (no FMA instructions); a host build with -mfma / -march=native and
/// GCC's default -ffp-contract=fast may fuse some products into sums (add_product's compensated
/// terms), which can cost the last bits of the compensation and the host/device bitwise
/// agreement. Such builds should add -ffp-contract=off.
template <class T>
TETHER_HD_INLINE T mul(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 8)
    return __dmul_rn(a, b);
  else
    return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

/// True for a finite v (inf - inf and NaN - NaN are NaN); needs no <cmath> on either side.
template <class T>
TETHER_HD_INLINE bool finite(T v) {
  return v - v == T(0);
}

/// The row code runs in double and in float (the threshold sets); what depends on the type.
template <class T>
struct Precision;
template <>
struct Precision<double> {
  static constexpr double epsilon = 0x1p-52;
  /// Relative margin of the candidates' bound (threshold_candidates): 2^12 ulps, far outside
  /// the closed form's few ulps of rounding.
  static constexpr double margin = 0x1p-40;
  /// Relative half-width of the box section's window around a root found to rounding
  /// (box_section_bracketed_by): about 2^28 ulps.
  static constexpr double window = 0x1p-24;
};
template <>
struct Precision<float> {
  static constexpr float epsilon = 0x1p-23f;
  static constexpr float margin = 0x1p-12f;  // 2^11 ulps
  static constexpr float window = 0x1p-10f;  // 2^13 ulps
};

/// Neumaier's compensated sum: the error is about one rounding of the total plus
/// n eps^2 sum |terms|, independent of the order of magnitude of the terms. Each step's
/// rounding error is taken with Knuth's two-sum, branch-free (no comparison of |s| and |x| to
/// mispredict); it is the exact error, the same number Neumaier's branch computes.
template <class T>
struct BasicSum {
  T s = 0;
  T c = 0;
  TETHER_HD void add(T x) {
    const T t = s + x;
    const T part = t - s;
    c += (s - (t - part)) + (x - part);
    s = t;
  }
  TETHER_HD T value() const { return s + c; }
};
using Sum = BasicSum<double>;

/// A multiplier as an unevaluated sum hi + lo, |lo| <~ ulp(hi): the closed-form quotient
/// carried to about twice the precision, so that p_i = (v_i - hi) - lo keeps full relative
/// accuracy when v_i and the multiplier agree in their leading digits (then v_i - hi is exact,
/// Sterbenz), and the constraint holds to the rounding of the p_i themselves.
template <class T>
struct BasicSplit {
  T hi = 0;
  T lo = 0;
};
using Split = BasicSplit<double>;

/// (s + c) / (t + d) for compensated sums num = s + c and den = t + d, as hi + lo.
template <class T>
TETHER_HD BasicSplit<T> divide(const BasicSum<T>& num, const BasicSum<T>& den) {
  BasicSplit<T> q;
  const T d = den.value();
  q.hi = num.value() / d;
  // num - hi den: the fma leaves one rounding of a quantity of size ~ eps |num|.
  const T r = fma(-q.hi, den.s, num.s) + num.c - mul(q.hi, den.c);
  q.lo = r / d;
  return q;
}

/// y - (hi + lo) w: y - hi w with one rounding (fma), then the small correction lo w.
template <class T>
TETHER_HD_INLINE T subtract_scaled(T y, const BasicSplit<T>& lambda, T w) {
  return fma(-lambda.hi, w, y) - mul(lambda.lo, w);
}

enum RowStatus : int {
  kOk = 0,
  kNonFinite = 1,     ///< an entry of the row is NaN or +-inf (index says which)
  kOverflow = 2,      ///< the multiplier overflowed (entries near the largest double)
  kNoConvergence = 3  ///< the safeguarded Newton iteration hit its cap (not observed)
};

struct RowResult {
  int status = kOk;
  long long index = -1;     ///< the offending entry for kNonFinite
  double multiplier = 0.0;  ///< tau (threshold sets) or lambda (box section)
  int iterations = 0;       ///< passes of the Newton iteration (box section, kNewton)
};

/// Lanes of the branch-free row scans below: fixed-length inner loops over this many partial
/// results, which the compiler turns into vector operations (a plain running reduction would
/// be one serial chain, since floating-point addition and max may not be reordered).
constexpr int kScanLanes = lanes::kLanes;

/// Index of the first non-finite y_i, or -1. The common all-finite row takes one branch-free
/// pass (y - y is 0 for finite y, NaN otherwise, and NaN survives the sums), which
/// vectorises; only a row that fails it is searched.
template <class T>
TETHER_HD long long first_non_finite(const T* y, long long n) {
  T probe[kScanLanes] = {};
  const long long full = n - n % kScanLanes;
  for (long long i = 0; i < full; i += kScanLanes)
    for (int l = 0; l < kScanLanes; ++l) probe[l] += y[i + l] - y[i + l];
  for (long long i = full; i < n; ++i) probe[0] += y[i] - y[i];
  T all = 0;
  for (int l = 0; l < kScanLanes; ++l) all += probe[l];
  if (all == 0) return -1;
  for (long long i = 0; i < n; ++i)
    if (!finite(y[i])) return i;
  return -1;
}

/// The value the threshold acts on: y_i (simplex) or |y_i| (l1 ball).
template <bool kAbs, class T>
TETHER_HD inline T value(const T* y, long long i) {
  return kAbs ? fabs(y[i]) : y[i];
}

// ---- sorting (the device side of the sort-based algorithms) -------------------------------

/// Restores the max-heap property of a[0..end) below root.
template <class T>
TETHER_HD void sift_down(T* a, long long root, long long end) {
  const T moving = a[root];
  while (true) {
    long long child = 2 * root + 1;
    if (child >= end) break;
    if (child + 1 < end && a[child + 1] > a[child]) ++child;
    if (!(a[child] > moving)) break;
    a[root] = a[child];
    root = child;
  }
  a[root] = moving;
}

/// In-place ascending heapsort: O(n log n), no recursion, no allocation.
template <class T>
TETHER_HD void heapsort_ascending(T* a, long long n) {
  for (long long start = n / 2 - 1; start >= 0; --start) sift_down(a, start, n);
  for (long long end = n - 1; end > 0; --end) {
    const T top = a[0];
    a[0] = a[end];
    a[end] = top;
    sift_down(a, 0, end);
  }
}

struct HeapSort {
  template <class T>
  TETHER_HD void operator()(T* a, long long n) const {
    heapsort_ascending(a, n);
  }
};

// ---- threshold sets: simplex and l1 ball --------------------------------------------------

/// Held, Wolfe and Crowder (1974) / Michelot (1986): with s sorted ascending, walk from the
/// largest entry down; the active set is the largest k entries for the last k with
/// s_(k) > (sum of the k largest - z) / k (a prefix property). Returns that running threshold.
template <class T>
TETHER_HD T threshold_sorted(const T* s, long long n, T z) {
  T cumulative = T(0);
  T tau = s[n - 1] - z;
  for (long long k = 1; k <= n; ++k) {
    const T v = s[n - k];
    cumulative += v;
    const T t = (cumulative - z) / static_cast<T>(k);
    if (!(v > t)) break;
    tau = t;
  }
  return tau;
}

/// Condat (2016), "Fast projection onto the simplex and the l1 ball", Math. Programming 158,
/// Algorithm 1 (the proposed method): one online pass keeps a candidate set v with the running
/// threshold rho = (sum v - z) / |v| and a waiting list v~; v~ is revisited once, then entries
/// <= rho are dropped until v is stable. aux holds n doubles (v~ at its front, v after it).
/// Expected O(n); returns the threshold estimate.
template <bool kAbs, class T>
TETHER_HD T threshold_condat(const T* y, long long n, T z, T* aux) {
  long long vs = 0, ve = 1;  // v = aux[vs, ve), v~ = aux[0, vs)
  aux[0] = value<kAbs>(y, 0);
  T rho = aux[0] - z;
  for (long long i = 1; i < n; ++i) {
    const T yi = value<kAbs>(y, i);
    if (yi > rho) {
      rho += (yi - rho) / static_cast<T>(ve - vs + 1);
      if (rho > yi - z) {
        aux[ve++] = yi;
      } else {  // v joins v~; v restarts at y_i
        vs = ve;
        aux[ve++] = yi;
        rho = yi - z;
      }
    }
  }
  // v~ is aux[0, vs): scan it backwards, prepending to v what exceeds rho. The write position
  // vs - 1 never falls below the read position j.
  for (long long j = vs - 1; j >= 0; --j) {
    if (aux[j] > rho) {
      aux[--vs] = aux[j];
      rho += (aux[vs] - rho) / static_cast<T>(ve - vs);
    }
  }
  long long old;
  do {
    old = ve - vs;
    long long kept = vs;
    for (long long i = vs; i < ve; ++i) {
      const T v = aux[i];
      if (v > rho) {
        aux[kept++] = v;
      } else {
        const long long remaining = (kept - vs) + (ve - i - 1);
        if (remaining > 0) rho += (rho - v) / static_cast<T>(remaining);
      }
    }
    ve = kept;
  } while (ve - vs != old && ve > vs);
  return rho;
}

/// tau in closed form on the active set {i : (v_i - t.hi) - t.lo > 0} (or, when rounding
/// leaves it empty, {v_i = max v}).
template <bool kAbs, class T>
TETHER_HD BasicSplit<T> simplex_closed_form(const T* y, long long n, T z, const BasicSplit<T>& t) {
  BasicSum<T> sum;
  long long count = 0;
  for (long long i = 0; i < n; ++i) {
    const T v = value<kAbs>(y, i);
    if ((v - t.hi) - t.lo > T(0)) {
      sum.add(v);
      ++count;
    }
  }
  if (count == 0) {  // only when z is below the rounding of the largest entries
    T largest = value<kAbs>(y, 0);
    for (long long i = 1; i < n; ++i)
      if (value<kAbs>(y, i) > largest) largest = value<kAbs>(y, i);
    for (long long i = 0; i < n; ++i) {
      const T v = value<kAbs>(y, i);
      if (v == largest) {
        sum.add(v);
        ++count;
      }
    }
  }
  sum.add(-z);
  BasicSum<T> k;
  k.add(static_cast<T>(count));
  return divide(sum, k);
}

/// Recomputes tau in closed form on the active set of tau_estimate, then once more on the
/// active set of that tau (classified in T-T: an entry within rounding of a
/// single-T threshold is placed by the precise one), and writes the projection. z > 0.
/// tau in closed form twice from an estimate (see simplex_finish); false when it overflows.
template <bool kAbs, class T>
TETHER_HD bool refine_threshold(const T* y, long long n, T z, T tau_estimate, BasicSplit<T>* tau) {
  tau->hi = tau_estimate;
  tau->lo = T(0);
  *tau = simplex_closed_form<kAbs>(y, n, z, *tau);
  if (finite(tau->hi) && finite(tau->lo)) *tau = simplex_closed_form<kAbs>(y, n, z, *tau);
  return finite(tau->hi) && finite(tau->lo);
}

/// y_i <- max(v_i - tau, 0) (with y_i's sign for the l1 ball), tau = hi + lo.
template <bool kAbs, class T>
TETHER_HD inline T thresholded(T yi, const BasicSplit<T>& tau) {
  const T d = ((kAbs ? fabs(yi) : yi) - tau.hi) - tau.lo;
  const T p = d > T(0) ? d : T(0);
  return (kAbs && yi < T(0)) ? -p : p;
}

template <bool kAbs, class T>
TETHER_HD void write_thresholded(T* y, long long n, const BasicSplit<T>& tau) {
  for (long long i = 0; i < n; ++i) y[i] = thresholded<kAbs>(y[i], tau);
}

/// Recomputes tau in closed form on the active set of tau_estimate, then once more on the
/// active set of that tau (classified in T-T: an entry within rounding of a
/// single-T threshold is placed by the precise one), and writes the projection. z > 0.
template <bool kAbs, class T>
TETHER_HD RowResult simplex_finish(T* y, long long n, T z, T tau_estimate) {
  BasicSplit<T> tau;
  RowResult result;
  const bool ok = refine_threshold<kAbs>(y, n, z, tau_estimate, &tau);
  result.multiplier = tau.hi;
  if (!ok) {
    result.status = kOverflow;
    return result;
  }
  write_thresholded<kAbs>(y, n, tau);
  return result;
}

/// What one branch-free lane pass over a row finds (threshold_trivial's scan).
template <class T>
struct RowScan {
  bool finite = true;  ///< no NaN or +-inf
  T largest = T(0);    ///< max_i v_i (v = y, or |y| for the l1 ball); meaningful if finite
};

template <bool kAbs, class T>
TETHER_HD RowScan<T> scan_row(const T* y, long long n) {
  // The maximum runs on bits::order_key: an integer max vectorises, the floating-point select
  // (with its NaN semantics) does not. NaN is caught by the probe and the maximum then unused.
  T probe[kScanLanes] = {};
  using Key = bits::Key<T>;
  Key largest[kScanLanes];
  for (int l = 0; l < kScanLanes; ++l) largest[l] = bits::order_key(value<kAbs>(y, 0));
  const long long full = n - n % kScanLanes;
  // Two loops over the (cache-resident) row rather than one: each vectorises on its own.
  for (long long i = 0; i < full; i += kScanLanes)
    for (int l = 0; l < kScanLanes; ++l)
      probe[l] += y[i + l] - y[i + l];  // 0 for finite entries, NaN otherwise (and it stays)
  for (long long i = 0; i < full; i += kScanLanes)
    for (int l = 0; l < kScanLanes; ++l) {
      const Key key = bits::order_key(value<kAbs>(y, i + l));
      largest[l] = key > largest[l] ? key : largest[l];
    }
  for (long long i = full; i < n; ++i) {  // the tail, entry i into lane i - full
    const int l = static_cast<int>(i - full);
    const T v = value<kAbs>(y, i);
    const Key key = bits::order_key(v);
    probe[l] += v - v;
    largest[l] = key > largest[l] ? key : largest[l];
  }
  RowScan<T> scan;
  T all = T(0);
  Key top = largest[0];
  for (int l = 0; l < kScanLanes; ++l) {
    all += probe[l];
    top = largest[l] > top ? largest[l] : top;
  }
  scan.finite = all == T(0);
  scan.largest = bits::of_order_key(top);
  return scan;
}

/// sum_i |y_i| in lanes (plain, not compensated).
template <class T>
TETHER_HD T abs_sum(const T* y, long long n) {
  T lanes[kScanLanes] = {};
  const long long full = n - n % kScanLanes;
  for (long long i = 0; i < full; i += kScanLanes)
    for (int l = 0; l < kScanLanes; ++l) lanes[l] += fabs(y[i + l]);
  for (long long i = full; i < n; ++i) lanes[i - full] += fabs(y[i]);
  T sum = T(0);
  for (int l = 0; l < kScanLanes; ++l) sum += lanes[l];
  return sum;
}

/// |y|_1 <= z, given a plain sum of |y| in any order: it settles the question unless it lies
/// within its own error bound of z (n eps relative, all terms >= 0), where the compensated sum
/// in index order decides.
template <class T>
TETHER_HD bool l1_inside(const T* y, long long n, T z, T plain_sum) {
  const T slack = mul(mul(4 * Precision<T>::epsilon, static_cast<T>(n + 8)), z);
  if (plain_sum < z - slack) return true;
  if (plain_sum > z + slack) return false;
  BasicSum<T> norm;
  for (long long i = 0; i < n; ++i) norm.add(fabs(y[i]));
  return norm.value() <= z;
}

/// The checks and special cases every threshold algorithm shares, from one scan of the row
/// (kept in *scan for the candidates). Returns true when the row is done (bad input, z = 0, or
/// an l1 point already inside the ball).
template <bool kAbs, class T>
TETHER_HD bool threshold_trivial(T* y, long long n, T z, RowResult* result, RowScan<T>* scan) {
  *scan = scan_row<kAbs>(y, n);
  if (!scan->finite) {
    result->status = kNonFinite;
    result->index = first_non_finite(y, n);
    return true;
  }
  // Inside the ball: left as it is, bit for bit. |y|_1 >= max |y_i| (exactly), so a row whose
  // largest entry exceeds z is outside without the sum of |y|.
  if (kAbs && !(scan->largest > z) && l1_inside(y, n, z, abs_sum(y, n))) return true;
  if (z == T(0)) {  // both sets are {0}
    for (long long i = 0; i < n; ++i) y[i] = T(0);
    return true;
  }
  return false;
}

/// The candidates of a threshold projection: the entries that can be active. tau >= max v - z
/// (the largest entry alone gives sum_i max(v_i - (max v - z), 0) >= z), so an entry at or
/// below bound = (max v - z) - 2^-40 (|max v| + z) is inactive, in exact arithmetic and in the
/// closed form (accurate to a few ulps, far inside that margin; project_threshold checks it).
/// Copies the values v_i above the bound, in index order, to out (n doubles) and returns their
/// number (>= 1: the largest is one of them; `largest` is max v, from the row's scan).
/// Branch-free: one pass, whatever the number of candidates.
template <bool kAbs, class T>
TETHER_HD long long threshold_candidates(const T* y, long long n, T z, T largest, T* out,
                                         T* bound) {
  const T b = (largest - z) - mul(fabs(largest) + z, Precision<T>::margin);
  *bound = b;
  long long m = 0;
  for (long long i = 0; i < n; ++i) {
    const T v = value<kAbs>(y, i);
    out[m] = v;
    m += v > b ? 1 : 0;
  }
  return m;
}

/// Shrinks the candidates v[0, m) (largest: their maximum, the row's) in place while that pays:
/// any set A of entries gives the lower bound (sum_A v - z) / |A| <= tau (A's sum is at most
/// that of the |A| largest), so each
/// step takes A = the candidates, raises the bound to it (less the same margin) and drops what
/// falls below: Newton's method on sum (v - tau)+ = z from the left, i.e. Michelot's steps. A
/// row whose entries all lie within z of the maximum keeps all of them as candidates; a few
/// steps cut them to near the active set, so the estimate's data-dependent branches run over
/// few entries. Stops when a step keeps more than 7/8, at 32 candidates, or after 8 steps.
/// Rounding in the sums is caught by project_threshold's checks against the bound.
template <class T>
TETHER_HD long long tighten_candidates(T* v, long long m, T z, T largest, T* bound) {
  for (int step = 0; step < 8 && m > 32; ++step) {
    T lane_sum[kScanLanes] = {};
    const long long full = m - m % kScanLanes;
    for (long long i = 0; i < full; i += kScanLanes)
      for (int l = 0; l < kScanLanes; ++l) lane_sum[l] += v[i + l];
    T sum = T(0);
    for (int l = 0; l < kScanLanes; ++l) sum += lane_sum[l];
    for (long long i = full; i < m; ++i) sum += v[i];
    const T lower = (sum - z) / static_cast<T>(m);
    const T next = lower - mul(fabs(lower) + z, Precision<T>::margin);
    if (!(next > *bound && next < largest)) break;  // no progress (or rounding): keep what we have
    long long kept = 0;
    for (long long i = 0; i < m; ++i) {  // in place: the write position never passes the read
      const T x = v[i];
      v[kept] = x;
      kept += x > next ? 1 : 0;
    }
    *bound = next;
    const bool little_progress = 8 * kept > 7 * m;
    m = kept;
    if (little_progress) break;
  }
  return m;
}

/// A threshold projection of one row through its candidates: estimate(v, m, aux) returns an
/// estimate of tau for the m candidate values v (aux: m doubles of workspace), the closed form
/// refines it on the candidates, and the row is written. Bit-identical to simplex_finish on the
/// whole row: each threshold the closed form classifies by is checked to lie clear of the
/// bound (then no excluded entry could have been classified active, and the candidates' sums
/// are the whole row's); otherwise (not observed) the whole row is refined. work holds 2 n
/// doubles.
/// The part of project_threshold that works on the candidates alone (work holds them at its
/// front, m of them, and has room for m more): tighten, estimate, and the two closed forms.
/// Writes the estimate, and tau; returns false when some threshold is not clear of the bound,
/// and then the caller refines on the whole row (simplex_finish from the estimate).
template <class T, class Estimate>
TETHER_HD bool threshold_on_candidates(T* work, long long n, long long m, T z, T largest, T bound,
                                       Estimate estimate, T* tau_estimate, BasicSplit<T>* tau) {
  m = tighten_candidates(work, m, z, largest, &bound);
  *tau_estimate = estimate(work, m, work + n);
  tau->hi = *tau_estimate;
  tau->lo = T(0);
  bool clear = *tau_estimate > bound;
  for (int pass = 0; clear && pass < 2; ++pass) {  // simplex_finish's two closed forms
    *tau = simplex_closed_form<false>(work, m, z, *tau);
    clear = finite(tau->hi) && finite(tau->lo) && tau->hi - bound > T(4) * fabs(tau->lo);
  }
  return clear;
}

template <bool kAbs, class T, class Estimate>
TETHER_HD RowResult project_threshold(T* y, long long n, T z, T* work, Estimate estimate) {
  RowResult result;
  RowScan<T> scan;
  if (threshold_trivial<kAbs>(y, n, z, &result, &scan)) return result;
  T bound = T(0);
  const long long m = threshold_candidates<kAbs>(y, n, z, scan.largest, work, &bound);
  T tau_estimate = T(0);
  BasicSplit<T> tau;
  if (threshold_on_candidates(work, n, m, z, scan.largest, bound, estimate, &tau_estimate, &tau)) {
    result.multiplier = tau.hi;
    write_thresholded<kAbs>(y, n, tau);
    return result;
  }
  return simplex_finish<kAbs>(y, n, z, tau_estimate);
}

/// The sort-based estimate: Held-Wolfe-Crowder on the sorted candidates.
template <class T, class Sort>
struct SortedEstimate {
  Sort sort;
  T z;
  TETHER_HD T operator()(const T* v, long long m, T* aux) const {
    for (long long i = 0; i < m; ++i) aux[i] = v[i];
    sort(aux, m);
    return threshold_sorted(aux, m, z);
  }
};

/// Condat's estimate on the candidates.
template <class T>
struct CondatEstimate {
  T z;
  TETHER_HD T operator()(const T* v, long long m, T* aux) const {
    return threshold_condat<false>(v, m, z, aux);
  }
};

/// Sort-based projection of one row (kAbs: onto the l1 ball, else onto the simplex): sorts the
/// candidates. work holds 2 n doubles; sort(a, n) sorts ascending.
template <bool kAbs, class T, class Sort>
TETHER_HD RowResult project_sorted(T* y, long long n, T z, T* work, Sort sort) {
  return project_threshold<kAbs>(y, n, z, work, SortedEstimate<T, Sort>{sort, z});
}

/// Condat's projection of one row, on its candidates. work holds 2 n doubles.
template <bool kAbs, class T>
TETHER_HD RowResult project_condat(T* y, long long n, T z, T* work) {
  return project_threshold<kAbs>(y, n, z, work, CondatEstimate<T>{z});
}

}  // namespace tether::simplex_row
