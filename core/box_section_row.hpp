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
// The passes run over a view of the row: the whole row (WholeRow), or the entries a bracket of
// lambda leaves undecided, gathered (RowRest), with the exact sums of what it decided (entries
// at a bound, or free, throughout the bracket). box_section_newton() brackets the root with a
// few vectorised passes over the row, decides what the bracket decides, brackets again on the
// gathered rest, and solves what is left (usually a few entries) exactly.
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

/// Every entry of the row; g - c has the constant part -c (and no free part).
template <class T>
struct WholeRow {
  using Scalar = T;
  const T* y;
  long long n;
  BasicBoxSectionRow<T> set;
  BasicSum<T> constant;    ///< -c
  BasicSum<T> free_slope;  ///< 0
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

/// The columns of a row's undecided entries, gathered (y, w, l, u each contiguous).
template <class T>
struct BoxColumns {
  T* y;
  T* w;
  T* l;
  T* u;
};

/// What the entries a bracket [lo, hi] of lambda decides add to g - c on the bracket: those at a
/// bound for every lambda in it add w_i times the bound, those free for every lambda in it add
/// w_i y_i - lambda w_i^2. Exact sums (products with their fma error, compensated).
template <class T>
struct BoxDecided {
  BasicSum<T> offset;  ///< sum_{at a bound} w bound + sum_{free} w y - c
  BasicSum<T> slope;   ///< sum_{free} w^2
};

/// A row's undecided entries, gathered into columns, with what the decided ones add: on the
/// bracket that decided them, g - c = constant - lambda free_slope + sum_k w_k clamp(y_k -
/// lambda w_k, l_k, u_k), the same function as on the whole row.
template <class T>
struct RowRest {
  using Scalar = T;
  const T* y;
  const T* w;
  const T* l;
  const T* u;
  long long m;
  BasicSum<T> constant;    ///< BoxDecided::offset
  BasicSum<T> free_slope;  ///< BoxDecided::slope
  TETHER_HD long long size() const { return m; }
  TETHER_HD T value(long long k) const { return y[k]; }
  TETHER_HD T lower(long long k) const { return l[k]; }
  TETHER_HD T upper(long long k) const { return u[k]; }
  TETHER_HD T weight(long long k) const { return w[k]; }
};

/// sum += constant (both parts of a compensated sum).
template <class T>
TETHER_HD void add_sum(BasicSum<T>& sum, const BasicSum<T>& constant) {
  sum.add(constant.s);
  sum.add(constant.c);
}

/// sum += the view's decided part at lambda (hi + lo): constant - lambda free_slope, the product
/// with its rounding error (fma).
template <class View, class T = typename View::Scalar>
TETHER_HD void add_decided(BasicSum<T>& sum, const View& v, const BasicSplit<T>& lambda) {
  add_sum(sum, v.constant);
  const BasicSum<T>& slope = v.free_slope;
  if (slope.s == T(0) && slope.c == T(0)) return;
  const T p = mul(lambda.hi, slope.s);
  sum.add(-p);
  sum.add(-fma(lambda.hi, slope.s, -p));
  sum.add(-(mul(lambda.hi, slope.c) + mul(lambda.lo, slope.s)));
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
  add_decided(sum, v, BasicSplit<T>{lambda, T(0)});
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
  add_sum(slope, v.free_slope);
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
  add_decided(excess, v, lambda);
  size += mul(fabs(lambda.hi), v.free_slope.s);
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
  add_sum(slope, v.free_slope);
  add_decided(g, v, BasicSplit<T>{lambda, T(0)});
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

/// The row's bracket [min a_i, max b_i] with its ends' excess (every entry at u, at l). On the
/// whole row only: a RowRest's free part would also have to enter the excess.
template <class T>
TETHER_HD BoxBracket<T> box_extreme_bracket(const WholeRow<T>& v, T lo, T hi) {
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

/// The hyperplane multiplier (sum w y - c) / sum w^2 of the whole row.
template <class T>
TETHER_HD T box_hyperplane(const WholeRow<T>& v) {
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

/// How a bracket [lo, hi] of lambda decides an entry, and what a decided entry adds to g - c
/// there (BoxDecided): it is at u for every lambda <= hi when y_i - hi w_i >= u_i, at l for every
/// lambda >= lo when y_i - lo w_i <= l_i, and free for every lambda in the bracket when
/// y_i - hi w_i > l_i and y_i - lo w_i < u_i (x as in box_line_terms: monotone in lambda). Each
/// test keeps a margin of x's rounding (as in box_line_error_term), so that the exact
/// y_i - lambda w_i passes it for every lambda in the bracket whatever the rounding; an entry
/// within a margin stays undecided.
template <class T>
struct BoxDecision {
  T offset, offset_error;  ///< w_i times the bound (at a bound) or y_i (free); its rounding error
  T slope, slope_error;    ///< w_i^2 (free, else 0); its rounding error
  bool undecided;
};

template <class T>
TETHER_HD_INLINE BoxDecision<T> box_decision(T y, T w, T lower, T upper, T lo, T hi) {
  constexpr T eps2 = T(2) * Precision<T>::epsilon;
  const T margin_hi = mul(eps2, fabs(y) + mul(fabs(hi), w));
  const T margin_lo = mul(eps2, fabs(y) + mul(fabs(lo), w));
  const T least = y - mul(hi, w);     // x at the bracket's right end
  const T greatest = y - mul(lo, w);  // and at its left end
  const bool at_upper = least >= upper + margin_hi;
  const bool at_lower = greatest <= lower - margin_lo;
  const bool free = (least > lower + margin_hi) & (greatest < upper - margin_lo);
  const T value = at_upper ? upper : (at_lower ? lower : (free ? y : T(0)));
  const T free_w = free ? w : T(0);
  const T p = mul(w, value), q = mul(w, free_w);
  return BoxDecision<T>{p, fma(w, value, -p), q, fma(w, free_w, -q), !(at_upper | at_lower | free)};
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
    lanes::for_each(n, body);
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
    lanes::for_each(n, body);
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
    lanes::for_each(n, body);
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
    lanes::for_each(n, body);
    for (int l = 0; l < kScanLanes; ++l) ends.add(a_min[l], b_max[l]);
    return ends;
  }
  /// What the bracket [lo, hi] decides, into *decided (exact sums: a two-sum per lane); the
  /// undecided entries' columns, in index order, into `rest`, which may be these passes' own
  /// columns (entry k goes to m <= k, after its block was read). Returns their number. Each
  /// block of kScanLanes entries: the lanes' sums and flags (1: undecided), then the gather
  /// where a flag is set.
  TETHER_HD long long reduce(T lo, T hi, BoxDecided<T>* decided, const BoxColumns<T>& rest) const {
    T offset[kScanLanes] = {}, offset_error[kScanLanes] = {}, slope[kScanLanes] = {},
      slope_error[kScanLanes] = {};
    // Flags as unsigned integers of T's size: the lane loop then stores them as vectors.
    using Flag = typename bits::Pattern<T>::Unsigned;
    Flag flag[kScanLanes];
    auto body = [&](int l, long long k) {
      const BoxDecision<T> d = box_decision(y[k], s.w(k), s.l(k), s.u(k), lo, hi);
      two_sum_into(&offset[l], &offset_error[l], d.offset, d.offset_error);
      two_sum_into(&slope[l], &slope_error[l], d.slope, d.slope_error);
      flag[l] = d.undecided ? 1 : 0;
    };
    long long m = 0;
    auto gather = [&](long long k, Flag undecided) {  // m <= k: nothing unread
      rest.y[m] = y[k];
      rest.w[m] = s.w(k);
      rest.l[m] = s.l(k);
      rest.u[m] = s.u(k);
      m += static_cast<long long>(undecided);
    };
    const long long full = n - n % kScanLanes;
    for (long long i = 0; i < full; i += kScanLanes) {
      TETHER_LANES
      for (int l = 0; l < kScanLanes; ++l) body(l, i + l);
      Flag any = 0;
      for (int l = 0; l < kScanLanes; ++l) any |= flag[l];
      if (any != 0)
        for (int l = 0; l < kScanLanes; ++l) gather(i + l, flag[l]);
    }
    for (long long k = full; k < n; ++k) {
      const int l = static_cast<int>(k - full);
      body(l, k);
      gather(k, flag[l]);
    }
    for (int l = 0; l < kScanLanes; ++l) decided->offset.add(offset[l]);
    for (int l = 0; l < kScanLanes; ++l) decided->offset.add(offset_error[l]);
    for (int l = 0; l < kScanLanes; ++l) decided->slope.add(slope[l]);
    for (int l = 0; l < kScanLanes; ++l) decided->slope.add(slope_error[l]);
    return m;
  }
  TETHER_HD void write(const BasicSplit<T>& lambda) const { box_write(y, n, s, lambda); }
};

/// The levels of box_section_bracketed_by: the row, then up to four gathered rests; and the
/// passes each level spends narrowing after the pass that gave its bracket both ends, before
/// its reduce: none on the row, 3 on a rest (whose bracket has both ends already: 4 passes in
/// all). A pass over the row costs about a third of a reduce; a pass over a gathered rest of m
/// entries, m / n of that. Measured on the benchmark's rows (narrow caps, n = 1000): the row's
/// bracket leaves about 22 entries, the exact method sees about 6. Fewer levels left c near an end
/// of its range to the scalar exact method with about 270 entries (3x slower).
constexpr int kBoxLevels = 5;
TETHER_HD constexpr int box_narrowing_passes(int level) { return level == 0 ? 0 : 3; }
/// A rest this small goes to the exact method at once.
constexpr long long kBoxExactEntries = 12;
/// Passes of box_locate on one level before the row falls back to the whole-row Newton method.
constexpr int kBoxLocatePasses = 16;

/// What bounds a plain pass's rounding in g - c, from the row's first pass: each x_i within
/// 2 u (|y_i| + |lambda| w_i) (g is 1-Lipschitz in each x_i, times w_i: the lambda-dependent
/// part, charged per pass), and the products and the sum within (d + 1) u sum w_i |clamp| <=
/// (d + 1) u sum w max(|l|, |u|) (fixed), where d is the depth of the summation: n / kScanLanes
/// sequential additions in a lane and 8 more across the lanes (LanePasses), n / 32 and 5 in a
/// warp (WarpPasses); doubled for safety. A gathered rest is a subset of the row: the row's
/// bounds hold for it.
template <class T>
struct BoxBounds {
  T w_abs_y;  ///< sum w |y|
  T ww;       ///< sum w^2
  T fixed;    ///< the products' and the sum's share
};

/// The state box_locate carries from level to level: the bracket of the root, which of its
/// ends a pass has evaluated, the next lambda and the last step.
template <class T>
struct BoxSearch {
  BoxBracket<T> bracket;
  T lambda;
  T step = T(0);
  bool lo_seen = false, hi_seen = false;
  int passes = 0;  ///< over all levels
};

enum BoxLocated { kBracketed, kAtRoot, kLost };

/// Newton steps on plain passes of g - c over a level (the passes' sums plus the decided part),
/// with the secant and bisection where a step leaves the bracket (as in box_newton), until the
/// bracket has both ends and `narrowing` more passes have narrowed it (kBracketed), or a pass
/// finds g - c within its rounding bound: lambda is a root to rounding (kAtRoot). A pass's sign
/// counts only beyond that bound: a cheap bound that charges every entry for the rounding of x_i
/// (loose far from the root, where most entries are clamped), and where it does not settle the
/// sign, the tight one (a pass that charges only entries near their bounds). kLost: a
/// non-finite value, or no two-sided bracket within kBoxLocatePasses passes.
template <class Passes, class T = typename Passes::Scalar>
TETHER_HD BoxLocated box_locate(const Passes& passes, const BoxDecided<T>& decided,
                                const BoxBounds<T>& bounds, int narrowing, BoxSearch<T>* search) {
  constexpr T eps = Precision<T>::epsilon;  // twice the unit roundoff
  BoxBracket<T>& b = search->bracket;
  int narrowed = 0;
  for (int pass = 1;; ++pass) {
    if (pass > kBoxLocatePasses) return kLost;
    ++search->passes;
    const T lambda = search->lambda;
    const BoxLine<T> line = passes.line(lambda);
    const T decided_slope = decided.slope.value();
    const T excess = line.excess + (decided.offset.value() - mul(lambda, decided_slope));
    const T slope = line.slope + decided_slope;
    const T decided_error = mul(eps, fabs(decided.offset.s) + mul(fabs(lambda), decided.slope.s));
    const T loose = mul(T(2) * eps, bounds.w_abs_y + mul(fabs(lambda), bounds.ww)) + bounds.fixed +
                    decided_error;
    if (!finite(excess)) return kLost;
    if (fabs(excess) <= loose &&
        fabs(excess) <= T(1.01) * passes.line_error(lambda) + bounds.fixed + decided_error)
      return kAtRoot;
    b.shrink(lambda, excess);
    (excess > T(0) ? search->lo_seen : search->hi_seen) = true;
    T next = slope > T(0) ? lambda + excess / slope : lambda;
    if (search->lo_seen && search->hi_seen && ++narrowed > narrowing) {
      if (next > b.lo && next < b.hi) search->lambda = next;  // the next level starts there
      return kBracketed;
    }
    if (!(next > b.lo && next < b.hi)) {
      if (!(finite(b.lo) && finite(b.hi))) {  // the secant needs both ends: the level's bracket
        const BoxEnds<T> ends = passes.ends();
        if (!finite(ends.lo()) || !finite(ends.hi())) return kLost;
        if (!search->lo_seen) b.lo = ends.lo();
        if (!search->hi_seen) b.hi = ends.hi();
      }
      next = b.secant();
      if (!(next > b.lo && next < b.hi)) next = mul(T(0.5), b.lo) + mul(T(0.5), b.hi);
      if (!(next > b.lo && next < b.hi)) return kLost;
    }
    search->step = next - lambda;
    search->lambda = next;
  }
}

/// The bracket a level's reduce decides entries by: the located bracket, or at a root to
/// rounding, a window around lambda inside it (its ends not evaluated: NaN excess). False when
/// the window is empty.
template <class T>
TETHER_HD bool box_reduce_bracket(BoxLocated located, const BoxBounds<T>& bounds,
                                  BoxSearch<T>* search) {
  if (located != kAtRoot) return true;
  const T lambda = search->lambda;
  const T window = mul(Precision<T>::window, fabs(lambda) + fabs(search->step)) +
                   mul(T(16) * Precision<T>::window, bounds.fixed / bounds.ww);
  if (!(lambda - window < lambda + window)) return false;
  BoxBracket<T>& b = search->bracket;
  b.lo = b.lo > lambda - window ? b.lo : lambda - window;
  b.hi = b.hi < lambda + window ? b.hi : lambda + window;
  b.excess_lo = b.excess_hi = T(NAN);
  return true;
}

/// Brackets the root with Newton steps on plain vectorised passes over the row (box_locate),
/// decides every entry the bracket decides (at a bound, or free, throughout it: their exact sums
/// become the decided part of g - c) and gathers the rest; brackets again on the gathered rest,
/// which costs its share of a pass, and so on for kBoxLevels levels or until the rest is small;
/// solves what is left exactly (box_newton on the RowRest) and writes the row. Returns false,
/// with y untouched, when it cannot vouch for the answer (a closed form outside the bracket, a
/// multiplier that is not a root to rounding, overflow, non-finite input, no bracket within
/// kBoxLocatePasses passes): the caller then runs the whole-row method. work: kBoxWorkPerEntry n
/// values (the rest's columns). Passes: the passes over a level (LanePasses on one thread; the CUDA
/// kernel's warp passes, whose every lane runs this function on the same sums, so all take the
/// same steps).
template <template <class> class Passes, class Layout, class T = typename Layout::Scalar>
TETHER_HD bool box_section_bracketed_by(const Passes<Layout>& row_passes, long long n,
                                        const BasicBoxSectionRow<T>& set, T* work, RowResult* out) {
  const BoxScan<T> scan = row_passes.scan();
  if (!scan.finite()) return false;
  const T c = set.total;
  constexpr T eps = Precision<T>::epsilon;
  const BoxBounds<T> bounds{
      scan.w_abs_y, scan.ww,
      mul(mul(eps, static_cast<T>(n / kScanLanes + 10)), scan.w_bound + fabs(c))};
  BoxSearch<T> search{BoxBracket<T>{T(-HUGE_VAL), T(HUGE_VAL), scan.wu - c, scan.wl - c},
                      (scan.wy - c) / scan.ww};  // from the hyperplane multiplier
  if (!finite(search.lambda)) return false;
  BoxDecided<T> decided;
  decided.offset.add(-c);
  const BoxColumns<T> rest{work, work + n, work + 2 * n, work + 3 * n};
  BoxLocated located = box_locate(row_passes, decided, bounds, box_narrowing_passes(0), &search);
  if (located == kLost || !box_reduce_bracket(located, bounds, &search)) return false;
  long long m = row_passes.reduce(search.bracket.lo, search.bracket.hi, &decided, rest);
  for (int level = 1; level < kBoxLevels && located == kBracketed && m > kBoxExactEntries;
       ++level) {
    const Passes<BoxLayout<T, false, false, false>> rest_passes{
        rest.y, m, {rest.l, rest.u, rest.w}};
    located = box_locate(rest_passes, decided, bounds, box_narrowing_passes(level), &search);
    if (located == kLost || !box_reduce_bracket(located, bounds, &search)) return false;
    m = rest_passes.reduce(search.bracket.lo, search.bracket.hi, &decided, rest);
  }
  // Inside the bracket the rest's g - c is the row's. The multiplier must solve g = c on the
  // rest: a pass's rounding bound is loose far from the root, so a pass there can pass for a
  // root, and then the window may hold none (seen in float).
  const RowRest<T> view{rest.y, rest.w, rest.l, rest.u, m, decided.offset, decided.slope};
  const T lo = search.bracket.lo, hi = search.bracket.hi;
  // The decided entries' magnitudes, as box_is_root charges its own entries': w |bound|, or for
  // a free entry w |y| (its lambda w^2 term box_is_root adds).
  const T decided_size = scan.w_bound + scan.w_abs_y + fabs(c);
  BasicSplit<T> multiplier;
  int iterations = search.passes;
  if (m == 0 && !(decided.slope.value() > T(0))) {
    // Every entry at a bound: g is flat on the window, any lambda in it will do.
    multiplier.hi = search.lambda;
    if (located != kAtRoot || !box_is_root(view, multiplier, decided_size)) return false;
  } else {
    // A window's ends were not evaluated (NaN excess: the safeguard bisects until a pass has
    // moved them); lambda is a root to rounding there, and the first pass usually ends it.
    const BoxSolve<T> solve = box_newton(view, search.bracket, search.lambda);
    if (solve.result.status != kOk) return false;
    // Both closed forms must classify inside the bracket, where the decided entries are decided.
    const BoxMultiplier<T>& mult = solve.multiplier;
    if (!(mult.first.hi >= lo && mult.first.hi <= hi && mult.lambda.hi >= lo &&
          mult.lambda.hi <= hi))
      return false;
    if (!box_is_root(view, mult.lambda, decided_size)) return false;
    multiplier = mult.lambda;
    iterations += solve.result.iterations;
  }
  row_passes.write(multiplier);
  out->multiplier = multiplier.hi;
  out->iterations = iterations;
  return true;
}

/// box_section_bracketed_by with Passes<Layout> for the row's layout: each of l, u, w per entry
/// (stride 1) or shared (stride 0), decided one at a time into BoxLayout's flags; false for
/// other strides. Passes: LanePasses (one thread), or the CUDA kernel's warp passes. work:
/// kBoxWorkPerEntry n values.
template <template <class> class Passes, bool... kShared, class T>
TETHER_HD bool box_section_bracketed(T* y, long long n, const BasicBoxSectionRow<T>& s, T* work,
                                     RowResult* out) {
  constexpr int decided = sizeof...(kShared);
  if constexpr (decided == 3) {
    const Passes<BoxLayout<T, kShared...>> passes{y, n, {s.lower, s.upper, s.weight}};
    return box_section_bracketed_by(passes, n, s, work, out);
  } else {
    const long long stride =
        decided == 0 ? s.lower_stride : (decided == 1 ? s.upper_stride : s.weight_stride);
    if (stride == 0) return box_section_bracketed<Passes, kShared..., true>(y, n, s, work, out);
    if (stride == 1) return box_section_bracketed<Passes, kShared..., false>(y, n, s, work, out);
    return false;
  }
}

/// Workspace of box_section_newton for a row of n entries, in values: the rest's four columns.
constexpr long long kBoxWorkPerEntry = 4;

/// The box section's Newton projection of one row: box_section_bracketed, and where it
/// declines (or work is null), the safeguarded Newton method on the whole row. work:
/// kBoxWorkPerEntry n values, or nullptr.
template <class T>
TETHER_HD RowResult box_section_newton(T* y, long long n, const BasicBoxSectionRow<T>& s, T* work) {
  RowResult result;
  if (work != nullptr && box_section_bracketed<LanePasses>(y, n, s, work, &result)) return result;
  return box_section_newton_whole(y, n, s);
}

}  // namespace tether::simplex_row
