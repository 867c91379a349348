// Per-row arithmetic of the box section {l <= p <= u, w^T p = c}, w > 0 (the continuous
// quadratic knapsack), shared by the CPU batch (core/simplex_projections.cpp) and the CUDA
// kernel (core/simplex_kernels.cu), on the helpers of core/simplex_row.hpp (mul, Sum, Split,
// RowResult).
//
// P(y)_i = clamp(y_i - lambda w_i, l_i, u_i), where lambda solves
//   g(lambda) = sum_i w_i clamp(y_i - lambda w_i, l_i, u_i) = c;
// g is nonincreasing and piecewise linear with breakpoints a_i = (y_i - u_i) / w_i <=
// b_i = (y_i - l_i) / w_i. Each algorithm returns a lambda on the linear piece that holds the
// root; box_multiplier() classifies every entry there (at u, free, at l) and recomputes
//   lambda = (sum_{at u} w_i u_i + sum_{at l} w_i l_i + sum_{free} w_i y_i - c) / sum_{free} w_i^2
// with exact products (fma), compensated sums and the quotient as hi + lo.
//
// The passes run over a view of the row: the whole row (WholeRow), or the entries left once a
// bracket of lambda has fixed the others at a bound (RowSubset, whose constant carries the
// fixed entries' exact sum). box_section_newton() brackets the root with a few vectorised
// passes over the row, fixes every entry whose two breakpoints lie outside the bracket, and
// solves what is left (usually a few entries) exactly.
#pragma once

#include <math.h>

#include <tether/core/hd.hpp>
#include <tether/core/simplex_row.hpp>

namespace tether::simplex_row {

using bits::Key;

/// The set, with per-entry or shared bounds and weights: entry i reads lower[i * lower_stride]
/// (stride 0: one value for all entries). Validated by the caller: l <= u finite, w > 0 finite,
/// sum w l <= c <= sum w u.
template <class T>
struct BasicBoxSectionRow {
  using Scalar = T;
  const T* lower;
  const T* upper;
  const T* weight;
  long long lower_stride;
  long long upper_stride;
  long long weight_stride;
  T total;  ///< c
  TETHER_HD T l(long long i) const { return lower[i * lower_stride]; }
  TETHER_HD T u(long long i) const { return upper[i * upper_stride]; }
  TETHER_HD T w(long long i) const { return weight[i * weight_stride]; }
};
using BoxSectionRow = BasicBoxSectionRow<double>;

// ---- views ---------------------------------------------------------------------------------

/// Every entry of the row; g - c has the constant part -c.
template <class T>
struct WholeRow {
  using Scalar = T;
  const T* y;
  long long n;
  BasicBoxSectionRow<T> set;
  BasicSum<T> constant;  ///< -c
  TETHER_HD WholeRow(const T* row, long long size, const BasicBoxSectionRow<T>& s)
      : y(row), n(size), set(s) {
    constant.add(-s.total);
  }
  TETHER_HD long long size() const { return n; }
  TETHER_HD T value(long long k) const { return y[k]; }
  TETHER_HD T lower(long long k) const { return set.l(k); }
  TETHER_HD T upper(long long k) const { return set.u(k); }
  TETHER_HD T weight(long long k) const { return set.w(k); }
};

/// The entries y[position[k]], k < m, of a row whose other entries are fixed at a bound for
/// every lambda in some bracket; constant = (their exact sum of w_i times the bound) - c, so
/// that on the bracket g - c is the same function as on the whole row. Positions are stored
/// as T in the row's workspace (exact below Precision<T>::exact_integers).
template <class T>
struct RowSubset {
  using Scalar = T;
  const T* y;
  const T* position;
  long long m;
  BasicBoxSectionRow<T> set;
  BasicSum<T> constant;
  TETHER_HD long long at(long long k) const { return static_cast<long long>(position[k]); }
  TETHER_HD long long size() const { return m; }
  TETHER_HD T value(long long k) const { return y[at(k)]; }
  TETHER_HD T lower(long long k) const { return set.l(at(k)); }
  TETHER_HD T upper(long long k) const { return set.u(at(k)); }
  TETHER_HD T weight(long long k) const { return set.w(at(k)); }
};

/// sum += constant (both parts of a compensated sum).
template <class T>
TETHER_HD void add_sum(BasicSum<T>& sum, const BasicSum<T>& constant) {
  sum.add(constant.s);
  sum.add(constant.c);
}

// ---- the exact closing passes ----------------------------------------------------------------

/// g(lambda) - c, compensated (a plain sum picks a neighbouring piece near the root more
/// often: measured, a re-projected point then moved by up to 49 eps instead of 3).
template <class View, class T = typename View::Scalar>
TETHER_HD T box_excess(const View& v, T lambda) {
  BasicSum<T> sum;
  for (long long k = 0; k < v.size(); ++k) {
    const T w = v.weight(k), lo = v.lower(k), hi = v.upper(k);
    const T x = v.value(k) - mul(lambda, w);
    sum.add(mul(w, x < lo ? lo : (x > hi ? hi : x)));
  }
  add_sum(sum, v.constant);
  return sum.value();
}

/// Adds a * b to sum; exact_products: with the rounding error of the product (fma), so that
/// the closed-form multiplier does not inherit the rounding of w_i y_i. Otherwise a plain add.
template <class T>
TETHER_HD void add_product(BasicSum<T>& sum, T a, T b, bool exact_products) {
  const T p = mul(a, b);
  if (exact_products) {
    sum.add(p);
    sum.add(fma(a, b, -p));
  } else {
    sum.s += p;  // the Newton passes only locate the piece: a plain sum is enough
  }
}

/// lambda in closed form for the classification at t (hi + lo): x_i = y_i - t w_i (fma) above
/// u_i: at u; below l_i: at l; otherwise, ties included, free (at a breakpoint both pieces
/// have the same root, and the free side is the one that is not flat). Exact products,
/// compensated sums. Returns t itself when no entry is free (g is flat there).
template <class View, class T = typename View::Scalar>
TETHER_HD BasicSplit<T> box_closed_form(const View& v, const BasicSplit<T>& t) {
  BasicSum<T> offset, slope;
  for (long long k = 0; k < v.size(); ++k) {
    const T w = v.weight(k), lo = v.lower(k), hi = v.upper(k), yk = v.value(k);
    const T x = subtract_scaled(yk, t, w);
    if (x > hi) {
      add_product(offset, w, hi, true);
    } else if (x < lo) {
      add_product(offset, w, lo, true);
    } else {
      add_product(offset, w, yk, true);
      add_product(slope, w, w, true);
    }
  }
  add_sum(offset, v.constant);
  return slope.value() > T(0) ? divide(offset, slope) : t;
}

/// The multiplier from an estimate on the root's piece: the closed form on the piece through
/// the estimate, then once more on the classification at that lambda (in T-T: an
/// entry within rounding of a bound at a single-T lambda is placed by the precise one).
template <class T>
struct BoxMultiplier {
  int status = kOk;      ///< kOk or kOverflow
  BasicSplit<T> first;   ///< the first closed form (the classification of the second)
  BasicSplit<T> lambda;  ///< the second: the multiplier
};

template <class View, class T = typename View::Scalar>
TETHER_HD BoxMultiplier<T> box_multiplier(const View& v, T estimate) {
  BoxMultiplier<T> m;
  m.first.hi = estimate;
  m.first = box_closed_form(v, m.first);
  m.lambda = m.first;
  if (finite(m.first.hi) && finite(m.first.lo)) m.lambda = box_closed_form(v, m.first);
  if (!finite(m.lambda.hi) || !finite(m.lambda.lo)) m.status = kOverflow;
  return m;
}

/// Whether lambda (hi + lo) solves g(lambda) = c on the view up to rounding: g - c in a
/// compensated sum, with x_i = y_i - lambda w_i as the write computes it, within 8 eps of the
/// magnitudes involved (|y_i| + |lambda| w_i + |bounds| per entry times w_i, the constant's
/// terms as given by `magnitude`). Catches a multiplier on a flat piece of g (no free entry)
/// that is not at c: the closed form keeps such a multiplier unchanged.
template <class View, class T = typename View::Scalar>
TETHER_HD bool box_is_root(const View& v, const BasicSplit<T>& lambda, T magnitude) {
  BasicSum<T> excess;
  T size = magnitude;
  for (long long k = 0; k < v.size(); ++k) {
    const T w = v.weight(k), lo = v.lower(k), hi = v.upper(k), yk = v.value(k);
    const T x = subtract_scaled(yk, lambda, w);
    excess.add(mul(w, x < lo ? lo : (x > hi ? hi : x)));
    size += mul(w, fabs(yk) + mul(fabs(lambda.hi), w) + fabs(lo) + fabs(hi));
  }
  add_sum(excess, v.constant);
  return fabs(excess.value()) <= mul(T(8) * Precision<T>::epsilon, size);
}

/// p_i = clamp(y_i - lambda w_i, l_i, u_i) over the whole row; Set: BasicBoxSectionRow<T> or a
/// BoxLayout (whose compile-time strides let the loop vectorise).
template <class T>
TETHER_HD_INLINE T box_clamped(T y, const BasicSplit<T>& lambda, T w, T lo, T hi) {
  const T x = subtract_scaled(y, lambda, w);
  return x < lo ? lo : (x > hi ? hi : x);
}

template <class Set, class T = typename Set::Scalar>
TETHER_HD void box_write(T* y, long long n, const Set& s, const BasicSplit<T>& lambda) {
  TETHER_LANES
  for (long long i = 0; i < n; ++i) y[i] = box_clamped(y[i], lambda, s.w(i), s.l(i), s.u(i));
}

/// box_multiplier on the whole row from lambda_estimate, then the write.
template <class T>
TETHER_HD RowResult box_section_finish(T* y, long long n, const BasicBoxSectionRow<T>& s,
                                       T lambda_estimate) {
  const BoxMultiplier<T> m = box_multiplier(WholeRow<T>(y, n, s), lambda_estimate);
  RowResult result;
  result.multiplier = m.lambda.hi;
  result.status = m.status;
  if (m.status == kOk) box_write(y, n, s, m.lambda);
  return result;
}

// ---- the safeguarded Newton method on a view -------------------------------------------------

/// The linear piece of g through lambda: entries with y_i - lambda w_i >= u_i are at u, those
/// <= l_i at l, the rest free. offset / slope is the root of that line; [left, right] is the
/// interval of lambda on which this classification holds (it contains lambda).
template <class T>
struct BoxPiece {
  BasicSum<T> offset;  ///< sum_{at u} w u + sum_{at l} w l + sum_{free} w y - c
  BasicSum<T> slope;   ///< sum_{free} w^2 (g has slope -slope on the piece)
  T excess = T(0);     ///< g(lambda) - c = offset - lambda slope
  T left = T(0), right = T(0);
};

/// A running minimum or maximum of fractions num / w with w > 0, compared by cross-multiplying
/// (no division per entry; one at the end).
template <class T>
struct Fraction {
  T num;
  T den;
  TETHER_HD bool below(T n, T d) const { return mul(n, den) < mul(num, d); }
  TETHER_HD bool above(T n, T d) const { return mul(n, den) > mul(num, d); }
};

/// One Newton pass: plain sums (the pass only locates the piece; the closing pass is exact).
template <class View, class T = typename View::Scalar>
TETHER_HD BoxPiece<T> box_piece(const View& v, T lambda) {
  BasicSum<T> offset, slope, g;
  // right = min over the breakpoints above lambda: a_i of entries at u, b_i of free entries;
  // left = max over those below: b_i at l, a_i free. (In exact arithmetic each lies on its side
  // of lambda; the clamps at the end absorb rounding.)
  Fraction<T> right{T(HUGE_VAL), T(1)}, left{T(-HUGE_VAL), T(1)};
  // Branch-free (selects): the classification is data-dependent and would mispredict.
  for (long long k = 0; k < v.size(); ++k) {
    const T w = v.weight(k), lo = v.lower(k), hi = v.upper(k), yk = v.value(k);
    const T x = yk - mul(lambda, w);
    const bool at_upper = x >= hi;               // at u while lambda <= a_i
    const bool at_lower = !at_upper && x <= lo;  // at l while lambda >= b_i
    const bool free = !at_upper && !at_lower;    // free on (a_i, b_i)
    const T clamped = at_upper ? hi : (at_lower ? lo : x);
    offset.s += mul(w, at_upper ? hi : (at_lower ? lo : yk));
    g.s += mul(w, clamped);
    slope.s += free ? mul(w, w) : T(0);
    // The breakpoint above lambda (a_i at u, b_i free) and the one below (b_i at l, a_i free).
    const T above = at_upper ? yk - hi : yk - lo, below = at_lower ? yk - lo : yk - hi;
    const bool moves_right = !at_lower && right.below(above, w);
    const bool moves_left = !at_upper && left.above(below, w);
    right = moves_right ? Fraction<T>{above, w} : right;
    left = moves_left ? Fraction<T>{below, w} : left;
  }
  add_sum(offset, v.constant);
  add_sum(g, v.constant);
  BoxPiece<T> piece;
  piece.offset = offset;
  piece.slope = slope;
  piece.excess = g.value();
  const T r = right.num / right.den, l = left.num / left.den;
  piece.right = r > lambda ? r : lambda;
  piece.left = l < lambda ? l : lambda;
  return piece;
}

/// The row's bracket [min a_i, max b_i], a_i = (y_i - u_i) / w_i, b_i = (y_i - l_i) / w_i,
/// kept as order keys (bits::order_key: an integer minimum and maximum vectorise, the
/// floating-point select with its NaN semantics does not).
template <class T>
struct BoxEnds {
  Key<T> a_min = bits::order_key(T(HUGE_VAL));
  Key<T> b_max = bits::order_key(T(-HUGE_VAL));
  TETHER_HD void add(Key<T> a, Key<T> b) {
    a_min = a < a_min ? a : a_min;
    b_max = b > b_max ? b : b_max;
  }
  TETHER_HD T lo() const { return bits::of_order_key(a_min); }
  TETHER_HD T hi() const { return bits::of_order_key(b_max); }
};

template <class T>
TETHER_HD_INLINE Key<T> lower_breakpoint_key(T y, T w, T hi) {
  return bits::order_key((y - hi) / w);
}
template <class T>
TETHER_HD_INLINE Key<T> upper_breakpoint_key(T y, T w, T lo) {
  return bits::order_key((y - lo) / w);
}

/// Bracket [min a_i, max b_i] of the view's root; false (with status kOverflow in *result) when
/// an end is not finite.
template <class View, class T = typename View::Scalar>
TETHER_HD bool box_bracket(const View& v, RowResult* result, T* lo, T* hi) {
  BoxEnds<T> ends;
  for (long long k = 0; k < v.size(); ++k)
    ends.add(lower_breakpoint_key(v.value(k), v.weight(k), v.upper(k)),
             upper_breakpoint_key(v.value(k), v.weight(k), v.lower(k)));
  *lo = ends.lo();  // g(lo) = sum w u >= c
  *hi = ends.hi();  // g(hi) = sum w l <= c
  if (!finite(*lo) || !finite(*hi)) {
    result->status = kOverflow;
    return false;
  }
  return true;
}

/// The non-finite check and the bracket of the whole row. Returns false on bad input.
template <class T>
TETHER_HD bool box_row_bracket(const T* y, long long n, const BasicBoxSectionRow<T>& s,
                               RowResult* result, T* lo, T* hi) {
  const long long bad = first_non_finite(y, n);
  if (bad >= 0) {
    result->status = kNonFinite;
    result->index = bad;
    return false;
  }
  return box_bracket(WholeRow<T>(y, n, s), result, lo, hi);
}

/// Sort-based (Helgason, Kennington and Lall 1980; Kiwiel 2008, section 2): sort the 2n
/// breakpoints, bisect on their ranks with one O(n) evaluation of g each, and finish on the
/// piece between the two breakpoints that bracket the root. work holds 2n doubles.
/// O(n log n).
template <class T, class Sort>
TETHER_HD RowResult box_section_sorted(T* y, long long n, const BasicBoxSectionRow<T>& s, T* work,
                                       Sort sort) {
  RowResult result;
  T lo, hi;
  if (!box_row_bracket(y, n, s, &result, &lo, &hi)) return result;
  for (long long i = 0; i < n; ++i) {
    const T w = s.w(i);
    work[2 * i] = (y[i] - s.u(i)) / w;
    work[2 * i + 1] = (y[i] - s.l(i)) / w;
  }
  const long long m = 2 * n;
  sort(work, m);
  const WholeRow<T> row(y, n, s);
  // Invariant: g(work[first]) - c > 0 >= g(work[last]) - c.
  long long first = 0, last = m - 1;
  if (!(box_excess(row, work[0]) > T(0))) return box_section_finish(y, n, s, work[0]);
  while (last - first > 1) {
    const long long mid = first + (last - first) / 2;
    if (box_excess(row, work[mid]) > T(0))
      first = mid;
    else
      last = mid;
  }
  return box_section_finish(y, n, s, mul(T(0.5), work[first]) + mul(T(0.5), work[last]));
}

/// Iteration cap of the safeguarded Newton method: bisection needs at most ~2100 halvings to
/// shrink any bracket of doubles to adjacent numbers, and the halving rule bisects at least once
/// every kHalvingPasses passes; Newton typically needs < 10.
constexpr int kBoxSectionMaxIterations = 4 * 2200;
/// The safeguard's window: a bracket that did not halve over this many passes is bisected.
constexpr int kHalvingPasses = 4;

/// What the Newton method on a view found: status, the multiplier (box_multiplier's) and the
/// passes it took.
template <class T>
struct BoxSolve {
  RowResult result;
  BoxMultiplier<T> multiplier;
};

/// Safeguarded semismooth Newton on g(lambda) = c (Cominetti, Mascarenhas and Silva 2014, "A
/// Newton's method for the continuous quadratic knapsack problem", Math. Prog. Comp. 6), from
/// the hyperplane multiplier (sum w y - c) / sum w^2, over the view's entries. Each pass
/// classifies the entries at lambda and jumps to the root of that linear piece; if the root
/// lies on the piece, it is the answer (exact termination). Otherwise the bracket [lo, hi]
/// shrinks to lambda's side. A Newton step outside the bracket, or a flat piece (no free entry,
/// where g is a step), takes the secant through the bracket's ends instead, with the Illinois
/// halving so it cannot stall against one end; any step once the bracket failed to halve over
/// kHalvingPasses passes is a bisection. O(size) per pass, no workspace. Starts at lambda
/// (the whole row: from the hyperplane multiplier) inside the bracket. Passes measured on
/// whole rows (tests/simplex_projections_test.cpp and the benchmark's rows, n = 1000, narrow
/// caps 2/n): mean 5.5 to 6.4, max 27 to 32; the halving rule bounds them by
/// ~kHalvingPasses x 2100 in the worst case of doubles. (Stepping to the end of a flat piece
/// took mean 15 passes on the benchmark's rows.)
/// A bracket [lo, hi] of the root with g - c at its ends (>= 0 at lo, <= 0 at hi).
template <class T>
struct BoxBracket {
  T lo, hi;
  T excess_lo, excess_hi;
  int last_side = 0;  ///< the end the last shrink moved: +1 lo, -1 hi
  /// Moves the end on lambda's side (excess = g(lambda) - c != 0) to lambda. Illinois: when the
  /// same end moves twice running, halves the other end's excess, so that the secant through
  /// the ends does not stall against a fixed end (regula falsi).
  TETHER_HD void shrink(T lambda, T excess) {
    const int side = excess > T(0) ? 1 : -1;
    if (side > 0) {
      lo = lambda;
      excess_lo = excess;
      if (last_side > 0) excess_hi = mul(T(0.5), excess_hi);
    } else {
      hi = lambda;
      excess_hi = excess;
      if (last_side < 0) excess_lo = mul(T(0.5), excess_lo);
    }
    last_side = side;
  }
  /// The secant's root through the two ends.
  TETHER_HD T secant() const { return lo + mul(excess_lo, hi - lo) / (excess_lo - excess_hi); }
};

/// The view's bracket [min a_i, max b_i] with its ends' excess (every entry at u, at l).
template <class View, class T = typename View::Scalar>
TETHER_HD BoxBracket<T> box_extreme_bracket(const View& v, T lo, T hi) {
  BasicSum<T> wu, wl;
  for (long long k = 0; k < v.size(); ++k) {
    const T w = v.weight(k);
    wu.add(mul(w, v.upper(k)));
    wl.add(mul(w, v.lower(k)));
  }
  add_sum(wu, v.constant);
  add_sum(wl, v.constant);
  return BoxBracket<T>{lo, hi, wu.value(), wl.value()};
}

/// The hyperplane multiplier (sum w y - c) / sum w^2 of the view.
template <class View, class T = typename View::Scalar>
TETHER_HD T box_hyperplane(const View& v) {
  BasicSum<T> wy, ww;
  for (long long k = 0; k < v.size(); ++k) {
    const T w = v.weight(k);
    wy.add(mul(w, v.value(k)));
    ww.add(mul(w, w));
  }
  add_sum(wy, v.constant);
  return wy.value() / ww.value();
}

template <class View, class T = typename View::Scalar>
TETHER_HD BoxSolve<T> box_newton(const View& v, BoxBracket<T> b, T lambda) {
  BoxSolve<T> solve;
  RowResult& result = solve.result;
  b.last_side = 0;
  if (!(lambda >= b.lo)) lambda = b.lo;
  if (!(lambda <= b.hi)) lambda = b.hi;
  T widths[kHalvingPasses];
  for (int k = 0; k < kHalvingPasses; ++k) widths[k] = T(HUGE_VAL);
  for (int iteration = 1; iteration <= kBoxSectionMaxIterations; ++iteration) {
    result.iterations = iteration;
    const BoxPiece<T> piece = box_piece(v, lambda);
    if (piece.excess == T(0)) break;
    T next = lambda;
    if (piece.slope.value() > T(0)) {
      next = piece.offset.value() / piece.slope.value();
      if (next >= piece.left && next <= piece.right) {  // the root of this piece lies on it
        lambda = next;
        break;
      }
    }
    b.shrink(lambda, piece.excess);
    if (!(piece.slope.value() > T(0))) {
      // A flat piece (every entry at a bound): the secant through the bracket's ends, the
      // average slope of g there (stepping to the piece's end crossed one breakpoint a pass).
      next = b.secant();
      if (!(next > b.lo && next < b.hi)) next = piece.excess > T(0) ? piece.right : piece.left;
    }
    // Progress check: the bracket must halve every kHalvingPasses passes.
    const T width = b.hi - b.lo;
    const bool slow = width > mul(T(0.5), widths[iteration % kHalvingPasses]);
    widths[iteration % kHalvingPasses] = width;
    if (!(next > b.lo && next < b.hi) && !slow) next = b.secant();
    if (!(next > b.lo && next < b.hi) || slow) {
      next = mul(T(0.5), b.lo) + mul(T(0.5), b.hi);
      if (!(next > b.lo && next < b.hi)) break;  // lo and hi are adjacent doubles
    }
    lambda = next;
    if (iteration == kBoxSectionMaxIterations) {
      result.status = kNoConvergence;
      result.multiplier = lambda;
      return solve;
    }
  }
  solve.multiplier = box_multiplier(v, lambda);
  result.status = solve.multiplier.status;
  result.multiplier = solve.multiplier.lambda.hi;
  return solve;
}

/// The safeguarded Newton method on the whole row (no workspace): the reference path, and the
/// fallback of box_section_newton.
template <class T>
TETHER_HD RowResult box_section_newton_whole(T* y, long long n, const BasicBoxSectionRow<T>& s) {
  RowResult result;
  T lo, hi;
  if (!box_row_bracket(y, n, s, &result, &lo, &hi)) return result;
  const WholeRow<T> row(y, n, s);
  const BoxSolve<T> solve = box_newton(row, box_extreme_bracket(row, lo, hi), box_hyperplane(row));
  if (solve.result.status == kOk) box_write(y, n, s, solve.multiplier.lambda);
  return solve.result;
}

// ---- bracket and reduce: vectorised passes over the row --------------------------------------

/// The row's bounds and weights with each either per entry (contiguous) or shared (one value),
/// fixed at compile time so that the lane loops below vectorise (a shared value is a
/// broadcast).
template <class T, bool kLowerShared, bool kUpperShared, bool kWeightShared>
struct BoxLayout {
  using Scalar = T;
  const T* lower;
  const T* upper;
  const T* weight;
  TETHER_HD T l(long long i) const { return kLowerShared ? lower[0] : lower[i]; }
  TETHER_HD T u(long long i) const { return kUpperShared ? upper[0] : upper[i]; }
  TETHER_HD T w(long long i) const { return kWeightShared ? weight[0] : weight[i]; }
};

/// Runs body(lane, k) over k < n in blocks of kScanLanes consecutive entries, entry k on lane
/// k % kScanLanes: each block's lane loop vectorises (TETHER_LANES), and the lane arrays the
/// body sums into fix the order of every sum. The tail block runs lane by lane.
template <class Body>
TETHER_HD void for_each_lane(long long n, Body& body) {
  const long long full = n - n % kScanLanes;
  for (long long i = 0; i < full; i += kScanLanes) {
    TETHER_LANES
    for (int l = 0; l < kScanLanes; ++l) body(l, i + l);
  }
  for (long long k = full; k < n; ++k) body(static_cast<int>(k - full), k);
}

/// One entry's terms of the first pass over a row.
template <class T>
struct BoxScanTerms {
  T probe, wy, ww, wu, wl, w_abs_y, w_bound;
};

template <class T>
TETHER_HD_INLINE BoxScanTerms<T> box_scan_terms(T y, T w, T lo, T hi) {
  return BoxScanTerms<T>{y - y,  // 0 for a finite entry, NaN otherwise (and it stays)
                         mul(w, y),       mul(w, w),
                         mul(w, hi),      mul(w, lo),
                         mul(w, fabs(y)), mul(w, fabs(lo) > fabs(hi) ? fabs(lo) : fabs(hi))};
}

/// What the first pass over a row finds, plain sums (bounds only; the closing sums are exact).
template <class T>
struct BoxScan {
  T probe = T(0);    ///< sum (y - y): 0 for a finite row, NaN otherwise
  T wy = T(0);       ///< sum w y
  T ww = T(0);       ///< sum w^2
  T wu = T(0);       ///< sum w u
  T wl = T(0);       ///< sum w l
  T w_abs_y = T(0);  ///< sum w |y|
  T w_bound = T(0);  ///< sum w max(|l|, |u|)
  TETHER_HD void add(const BoxScanTerms<T>& t) {
    probe += t.probe;
    wy += t.wy;
    ww += t.ww;
    wu += t.wu;
    wl += t.wl;
    w_abs_y += t.w_abs_y;
    w_bound += t.w_bound;
  }
  TETHER_HD bool finite() const { return probe == T(0); }
};

/// One entry's terms of g(lambda) - c and of its slope sum_{free} w^2. x_i = y_i - lambda w_i
/// (product and difference each rounded: monotone in lambda, and no fma call where the
/// instruction set has none).
template <class T>
struct BoxLine {
  T excess = T(0);
  T slope = T(0);
};

template <class T>
TETHER_HD_INLINE BoxLine<T> box_line_terms(T y, T w, T lo, T hi, T lambda) {
  const T x = y - mul(lambda, w);
  return BoxLine<T>{mul(w, x < lo ? lo : (x > hi ? hi : x)), (x > lo && x < hi) ? mul(w, w) : T(0)};
}

/// One entry's share of the rounding of box_line_terms' x_i = y_i - lambda w_i in g: x_i is
/// within delta_i = eps (|y_i| + |lambda| w_i) (two roundings, eps = 2u, doubled for safety)
/// of the exact value, and the clamp is exact unless x_i lies within delta_i of [l_i, u_i];
/// then the term is off by at most w_i delta_i.
template <class T>
TETHER_HD_INLINE T box_line_error_term(T y, T w, T lo, T hi, T lambda) {
  const T x = y - mul(lambda, w);
  const T delta = mul(T(2) * Precision<T>::epsilon, fabs(y) + mul(fabs(lambda), w));
  return (x > lo - delta && x < hi + delta) ? mul(w, delta) : T(0);
}

/// Whether a bracket [lo, hi] of the root fixes an entry, and the exact product w_i times its
/// bound: the entry is at u for every lambda <= hi when y_i - hi w_i >= u_i, and at l for every
/// lambda >= lo when y_i - lo w_i <= l_i (x as in box_line_terms: monotone in lambda).
template <class T>
struct BoxFixing {
  T product;  ///< w bound (0 when undecided)
  T error;    ///< its rounding error (fma)
  bool undecided;
};

template <class T>
TETHER_HD_INLINE BoxFixing<T> box_fixing(T y, T w, T lower, T upper, T lo, T hi) {
  // Decided with a margin of x's rounding (as in box_line_error_term), so that the exact
  // y - lambda w_i is at the bound for every lambda in the bracket, whatever the rounding; an
  // entry within the margin stays undecided.
  constexpr T eps2 = T(2) * Precision<T>::epsilon;
  const T margin_hi = mul(eps2, fabs(y) + mul(fabs(hi), w));
  const T margin_lo = mul(eps2, fabs(y) + mul(fabs(lo), w));
  const bool at_upper = y - mul(hi, w) >= upper + margin_hi;
  const bool at_lower = y - mul(lo, w) <= lower - margin_lo;
  const T bound = at_upper ? upper : (at_lower ? lower : T(0));
  const T p = mul(w, bound);
  return BoxFixing<T>{p, fma(w, bound, -p), !(at_upper || at_lower)};
}

/// sum + p by Knuth's two-sum, its exact rounding error (plus `more`) added to error.
template <class T>
TETHER_HD_INLINE void two_sum_into(T* sum, T* error, T p, T more) {
  const T total = *sum + p;
  const T part = total - *sum;
  *error += ((*sum - (total - part)) + (p - part)) + more;
  *sum = total;
}

/// The passes of box_section_bracketed over one row on one thread: lane loops (kScanLanes
/// accumulators, each entry k on lane k % kScanLanes, a field an array) that vectorise on the
/// host.
template <class Layout>
struct LanePasses {
  using T = typename Layout::Scalar;
  using Scalar = T;
  T* y;
  long long n;
  Layout s;

  TETHER_HD BoxScan<T> scan() const {
    T probe[kScanLanes] = {}, wy[kScanLanes] = {}, ww[kScanLanes] = {}, wu[kScanLanes] = {},
      wl[kScanLanes] = {}, wa[kScanLanes] = {}, wb[kScanLanes] = {};
    auto body = [&](int l, long long k) {
      const BoxScanTerms<T> t = box_scan_terms(y[k], s.w(k), s.l(k), s.u(k));
      probe[l] += t.probe;
      wy[l] += t.wy;
      ww[l] += t.ww;
      wu[l] += t.wu;
      wl[l] += t.wl;
      wa[l] += t.w_abs_y;
      wb[l] += t.w_bound;
    };
    for_each_lane(n, body);
    BoxScan<T> scan;
    for (int l = 0; l < kScanLanes; ++l)
      scan.add(BoxScanTerms<T>{probe[l], wy[l], ww[l], wu[l], wl[l], wa[l], wb[l]});
    return scan;
  }
  TETHER_HD BoxLine<T> line(T lambda) const {
    T g[kScanLanes] = {}, slope[kScanLanes] = {};
    auto body = [&](int l, long long k) {
      const BoxLine<T> t = box_line_terms(y[k], s.w(k), s.l(k), s.u(k), lambda);
      g[l] += t.excess;
      slope[l] += t.slope;
    };
    for_each_lane(n, body);
    BoxLine<T> line;
    for (int l = 0; l < kScanLanes; ++l) {
      line.excess += g[l];
      line.slope += slope[l];
    }
    return line;
  }
  /// The sum of box_line_error_term over the row (plain, in lanes).
  TETHER_HD T line_error(T lambda) const {
    T error[kScanLanes] = {};
    auto body = [&](int l, long long k) {
      error[l] += box_line_error_term(y[k], s.w(k), s.l(k), s.u(k), lambda);
    };
    for_each_lane(n, body);
    T total = T(0);
    for (int l = 0; l < kScanLanes; ++l) total += error[l];
    return total;
  }
  TETHER_HD BoxEnds<T> ends() const {
    Key<T> a_min[kScanLanes], b_max[kScanLanes];
    BoxEnds<T> ends;
    for (int l = 0; l < kScanLanes; ++l) {
      a_min[l] = ends.a_min;
      b_max[l] = ends.b_max;
    }
    auto body = [&](int l, long long k) {
      const Key<T> a = lower_breakpoint_key(y[k], s.w(k), s.u(k));
      const Key<T> b = upper_breakpoint_key(y[k], s.w(k), s.l(k));
      a_min[l] = a < a_min[l] ? a : a_min[l];
      b_max[l] = b > b_max[l] ? b : b_max[l];
    };
    for_each_lane(n, body);
    for (int l = 0; l < kScanLanes; ++l) ends.add(a_min[l], b_max[l]);
    return ends;
  }
  /// The fixed entries' exact sum into *fixed; the undecided entries' positions, in index
  /// order, into position[]; returns their number.
  TETHER_HD long long reduce(T lo, T hi, BasicSum<T>* fixed, T* position) const {
    // First the sums, with each entry's flag (1: undecided) in position[k]; then the flags
    // become positions, in place, skipping blocks of kScanLanes without a flag.
    T sum[kScanLanes] = {}, error[kScanLanes] = {};
    auto body = [&](int l, long long k) {
      const BoxFixing<T> f = box_fixing(y[k], s.w(k), s.l(k), s.u(k), lo, hi);
      two_sum_into(&sum[l], &error[l], f.product, f.error);
      position[k] = f.undecided ? T(1) : T(0);
    };
    for_each_lane(n, body);
    long long m = 0;
    for (long long i = 0; i < n; i += kScanLanes) {
      const int block = n - i < kScanLanes ? static_cast<int>(n - i) : kScanLanes;
      // The flags' bit patterns: 0 for a flag of 0.
      typename bits::Pattern<T>::Unsigned flag[kScanLanes] = {}, any = 0;
      for (int l = 0; l < block; ++l) {
        flag[l] = bits::bits_of(position[i + l]);
        any |= flag[l];
      }
      if (any != 0)
        for (int l = 0; l < block; ++l) {  // position m <= i + l: flags already read
          position[m] = static_cast<T>(i + l);
          m += flag[l] != 0 ? 1 : 0;
        }
    }
    for (int l = 0; l < kScanLanes; ++l) fixed->add(sum[l]);
    for (int l = 0; l < kScanLanes; ++l) fixed->add(error[l]);
    return m;
  }
  TETHER_HD void write(const BasicSplit<T>& lambda) const { box_write(y, n, s, lambda); }
};

/// Passes over the row that narrow a two-sided bracket before the reduce.
constexpr int kBoxNarrowingPasses = 2;

/// Passes of box_locate before the row falls back to the whole-row Newton method.
constexpr int kBoxLocatePasses = 16;

/// Brackets the root with Newton steps on plain vectorised passes (secant and bisection when a
/// step leaves the bracket, as in box_newton), fixes the entries the bracket decides
/// (box_reduce), solves the rest exactly (box_newton on the RowSubset<T>) and writes the row.
/// A pass's sign of g - c counts only when it exceeds the pass's rounding bound; a pass within
/// the bound is at a root up to rounding, and then the bracket is a narrow window around it.
/// Returns false, with y untouched, when it cannot vouch for the answer (a closed form outside
/// the bracket, overflow, non-finite input, no bracket within kBoxLocatePasses passes): the
/// caller then runs the whole-row method. position: n doubles. Passes: the passes over the row
/// (LanePasses on one thread; the CUDA kernel's warp passes, whose every lane runs this
/// function on the same sums, so all take the same steps).
template <class Passes, class T = typename Passes::Scalar>
TETHER_HD bool box_section_bracketed_by(const Passes& passes_over, T* y, long long n,
                                        const BasicBoxSectionRow<T>& set, T* position,
                                        RowResult* out) {
  if (n >= Precision<T>::exact_integers) return false;  // positions are stored as T
  const BoxScan<T> scan = passes_over.scan();
  if (!scan.finite()) return false;
  const T c = set.total;
  T lambda = (scan.wy - c) / scan.ww;
  if (!finite(lambda)) return false;
  // Rounding bound of a pass's g - c: each x_i within 2 u (|y_i| + |lambda| w_i) (g is
  // 1-Lipschitz in each x_i, times w_i: the pass-dependent part, below), and the products and
  // the sum within (d + 1) u sum w_i |clamp| <= (d + 1) u sum w max(|l|, |u|), where d is the
  // depth of the summation: n / kScanLanes sequential additions in a lane and 8 more across
  // the lanes (LanePasses), n / 32 and 5 in a warp (WarpPasses); doubled for safety.
  constexpr T eps = Precision<T>::epsilon;  // twice the unit roundoff
  const T fixed_bound = mul(mul(eps, static_cast<T>(n / kScanLanes + 10)), scan.w_bound + fabs(c));
  BoxBracket<T> b{T(-HUGE_VAL), T(HUGE_VAL), scan.wu - c, scan.wl - c};  // the extreme ends' excess
  bool lo_seen = false, hi_seen = false, at_root = false;
  int passes = 0, narrowing = 0;
  T step = T(0);
  while (true) {
    if (++passes > kBoxLocatePasses) return false;
    BoxLine<T> line = passes_over.line(lambda);
    line.excess -= c;
    // The rounding bound of g - c: a cheap one that charges every entry for the rounding of
    // x_i (loose far from the root, where most entries are clamped), and when that does not
    // settle the sign, the tight one (a pass that charges only entries near their bounds).
    const T loose = mul(T(2) * eps, scan.w_abs_y + mul(fabs(lambda), scan.ww)) + fixed_bound;
    if (!finite(line.excess)) return false;
    if (fabs(line.excess) <= loose &&
        fabs(line.excess) <= T(1.01) * passes_over.line_error(lambda) + fixed_bound) {
      at_root = true;
      break;
    }
    b.shrink(lambda, line.excess);
    (line.excess > T(0) ? lo_seen : hi_seen) = true;
    T next = line.slope > T(0) ? lambda + line.excess / line.slope : lambda;
    if (lo_seen && hi_seen && ++narrowing > kBoxNarrowingPasses) {
      if (next > b.lo && next < b.hi) lambda = next;  // the rest starts from the Newton step
      break;
    }
    if (!(next > b.lo && next < b.hi)) {
      if (!(finite(b.lo) && finite(b.hi))) {  // the secant needs both ends: the row's bracket
        const BoxEnds<T> ends = passes_over.ends();
        if (!finite(ends.lo()) || !finite(ends.hi())) return false;
        if (!lo_seen) b.lo = ends.lo();
        if (!hi_seen) b.hi = ends.hi();
      }
      next = b.secant();
      if (!(next > b.lo && next < b.hi)) next = mul(T(0.5), b.lo) + mul(T(0.5), b.hi);
      if (!(next > b.lo && next < b.hi)) return false;
    }
    step = next - lambda;
    lambda = next;
  }
  if (at_root) {  // a window around lambda, inside what is known
    const T window = mul(Precision<T>::window, fabs(lambda) + fabs(step)) +
                     mul(T(16) * Precision<T>::window, fixed_bound / scan.ww);
    if (!(lambda - window < lambda + window)) return false;
    b.lo = b.lo > lambda - window ? b.lo : lambda - window;
    b.hi = b.hi < lambda + window ? b.hi : lambda + window;
  }
  const T lo = b.lo, hi = b.hi;
  RowSubset<T> rest{y, position, 0, set, BasicSum<T>{}};
  rest.m = passes_over.reduce(lo, hi, &rest.constant, position);
  rest.constant.add(-c);
  BasicSplit<T> multiplier;
  int iterations = passes;
  // The multiplier must solve g = c on the rest (the fixed entries' part is the constant): a
  // pass's rounding bound is loose far from the root (it charges every entry for the rounding
  // of y_i - lambda w_i, clamped or not), so a pass there can pass for a root, and then the
  // window may hold none (seen in float).
  const T constant_size = scan.w_bound + fabs(c);
  if (rest.m == 0) {  // every entry fixed: g is flat on the window, any lambda in it will do
    multiplier.hi = lambda;
    if (!at_root || !box_is_root(rest, multiplier, constant_size)) return false;
  } else {
    // Inside the bracket the rest's g - c is the row's: the secant keeps the bracket's ends.
    // A window's ends were not evaluated (NaN excess: the safeguard bisects until a pass has
    // moved them); lambda is a root to rounding there, and the first pass usually ends it.
    BoxBracket<T> bracket = b;
    if (at_root) bracket = BoxBracket<T>{lo, hi, T(NAN), T(NAN)};
    const BoxSolve<T> solve = box_newton(rest, bracket, lambda);
    if (solve.result.status != kOk) return false;
    // Both closed forms must classify inside the bracket, where the fixed entries are fixed.
    const BoxMultiplier<T>& m = solve.multiplier;
    if (!(m.first.hi >= lo && m.first.hi <= hi && m.lambda.hi >= lo && m.lambda.hi <= hi))
      return false;
    if (!box_is_root(rest, m.lambda, constant_size)) return false;
    multiplier = m.lambda;
    iterations += solve.result.iterations;
  }
  passes_over.write(multiplier);
  out->multiplier = multiplier.hi;
  out->iterations = iterations;
  return true;
}

/// box_section_bracketed_by with Passes<Layout> for the row's layout: each of l, u, w per entry
/// (stride 1) or shared (stride 0), decided one at a time into BoxLayout's flags; false for
/// other strides. Passes: LanePasses (one thread), or the CUDA kernel's warp passes.
template <template <class> class Passes, bool... kShared, class T>
TETHER_HD bool box_section_bracketed(T* y, long long n, const BasicBoxSectionRow<T>& s, T* position,
                                     RowResult* out) {
  constexpr int decided = sizeof...(kShared);
  if constexpr (decided == 3) {
    const Passes<BoxLayout<T, kShared...>> passes{y, n, {s.lower, s.upper, s.weight}};
    return box_section_bracketed_by(passes, y, n, s, position, out);
  } else {
    const long long stride =
        decided == 0 ? s.lower_stride : (decided == 1 ? s.upper_stride : s.weight_stride);
    if (stride == 0) return box_section_bracketed<Passes, kShared..., true>(y, n, s, position, out);
    if (stride == 1)
      return box_section_bracketed<Passes, kShared..., false>(y, n, s, position, out);
    return false;
  }
}

/// The box section's Newton projection of one row: box_section_bracketed, and where it
/// declines (or position is null), the safeguarded Newton method on the whole row. position:
/// n doubles of workspace, or nullptr.
template <class T>
TETHER_HD RowResult box_section_newton(T* y, long long n, const BasicBoxSectionRow<T>& s,
                                       T* position) {
  RowResult result;
  if (position != nullptr && box_section_bracketed<LanePasses>(y, n, s, position, &result))
    return result;
  return box_section_newton_whole(y, n, s);
}

}  // namespace tether::simplex_row
