// Euclidean projections onto simplex-type sets, one vector or every row of a batch, on the CPU
// and (with CUDA) on a GPU, with the same per-row arithmetic (core/simplex_row.hpp).
//
// The sets (n = dimension, every row of a row-major batch is projected on its own):
//   Simplex     {p : p >= 0, sum_i p_i = z},            z >= 0
//   L1Ball      {p : |p|_1 <= z},                        z >= 0
//   BoxSection  {p : l <= p <= u, w^T p = c},            w > 0, l <= u, w^T l <= c <= w^T u
//               (the continuous quadratic knapsack; l = 0, u = cap, w = 1 is the capped
//               simplex; l, u, w per entry or one value for all entries)
//
// Optimality: P_Simplex(y)_i = max(y_i - tau, 0) with sum_i P_i = z; P_L1Ball(y) = y when
// |y|_1 <= z, else sign(y_i) max(|y_i| - tau, 0) with |P|_1 = z; P_BoxSection(y)_i =
// clamp(y_i - lambda w_i, l_i, u_i) with w^T P = c. tau and lambda are the multipliers of the
// sum constraint; the projection is unique, the multiplier unique unless the answer sits on
// bounds only.
//
// Algorithms (a policy of each set; both are exact, they differ in cost):
//   SimplexAlgorithm::kSort     Held, Wolfe and Crowder, "Validation of subgradient
//                               optimization", Math. Programming 6 (1974); Michelot, "A finite
//                               algorithm for finding the projection of a point onto the
//                               canonical simplex of R^n", JOTA 50 (1986): sort, then the active
//                               set is the largest k entries for the last k with
//                               s_(k) > (sum of the k largest - z) / k. O(n log n).
//   SimplexAlgorithm::kCondat   Condat, "Fast projection onto the simplex and the l1 ball",
//                               Math. Programming 158 (2016), Algorithm 1. Expected O(n), worst
//                               case O(n^2) (not met on random data). The default.
//   BoxSectionAlgorithm::kSort  Breakpoint search (Helgason, Kennington and Lall 1980; Kiwiel,
//                               "Breakpoint searching algorithms for the continuous quadratic
//                               knapsack problem", Math. Programming 112 (2008)): sort the 2n
//                               breakpoints of lambda, bisect on their ranks (one O(n) pass each).
//                               O(n log n).
//   BoxSectionAlgorithm::kNewton Safeguarded semismooth Newton on the multiplier (Cominetti,
//                               Mascarenhas and Silva, Math. Prog. Comp. 6 (2014)) with a bracket
//                               and bisection: each pass jumps to the root of the linear piece of
//                               g(lambda) = sum w_i clamp(y_i - lambda w_i, l_i, u_i) it stands
//                               on, and stops when that root lies on the piece; secant
//                               (Illinois) and bisection steps keep it in a shrinking bracket.
//                               Bracketed (core/box_section_row.hpp): the first passes run
//                               vectorised over the whole row until the root is bracketed (or
//                               found to rounding); every entry the bracket decides (at a bound,
//                               or free, throughout it) goes into exact sums, the rest is
//                               gathered, and the bracket narrows again on it (up to four such
//                               levels) before the method finishes on the few entries left
//                               (about 6 of 1000 on the benchmark's rows); a row it cannot vouch
//                               for runs on the whole row instead. O(n) per pass; 4 n values of
//                               workspace per thread; about 2.4 passes and a reduce over the
//                               row. Not linear-time in the worst case (Kiwiel's median search
//                               would be). The default.
//
// Exactness. Every algorithm only locates the active set (which entries are free, which sit on
// a bound); the multiplier is then recomputed in closed form on that set,
//   tau = (sum_{active} v_i - z) / |active|,
//   lambda = (sum_{at u} w u + sum_{at l} w l + sum_{free} w y - c) / sum_{free} w^2,
// with compensated sums (and, for lambda, the exact rounding errors of the products, by fma),
// and carried to twice the working precision as hi + lo; the set is then classified once more
// with that multiplier (so an entry within rounding of a bound is placed by the precise value)
// and the closed form recomputed. Each entry is written as (v_i - hi) - lo (box section:
// fma(-hi, w_i, y_i) - lo w_i), exact up to its own rounding even when v_i and the multiplier
// share many leading digits. Consequences, measured in tests/simplex_projections_test.cpp:
//   - the constraint holds to the rounding of the entries: |sum p - z| <= 0.64 eps z (simplex,
//     l1 ball), |w^T p - c| <= 0.51 eps (|c| + sum w |p|) (box section), also when |y| >> z
//     (e.g. y = (1e8, 1e8) onto {p >= 0, sum p = 2e-9} gives (1e-9, 1e-9) exactly);
//   - p >= 0 and l <= p <= u hold exactly; sign(p_i) = sign(y_i) on the l1 ball;
//   - the two algorithms of a set agree bit for bit whenever they find the same active set
//     (they differ only when an entry lies within rounding of the threshold, by rounding);
//     they did on every random row tested;
//   - a point of the l1 ball is returned unchanged, bit for bit; points of the other sets move
//     by rounding only (measured <= 1 eps of their largest entry).
//
// Batches: every row of a row-major N x n matrix is projected independently, rows spread over
// OpenMP threads. A row's arithmetic does not depend on which thread runs it, so the result is
// the same, bit for bit, for any thread count; one long vector is one row (serial).
//
// Refusals: a set with z < 0, l > u, w^T l > c or w^T u < c throws InfeasibleError naming the
// bound; non-finite z, c, l, u, w, a weight w_i <= 0, or a dimension < 1 throw
// InvalidArgumentError; a row of x with a NaN or infinite entry throws InvalidArgumentError
// naming the entry (x(row, col)), and a multiplier that overflows (entries near the largest
// double) NumericalError. A refused row is left as it was; other rows of the batch may already
// be projected.
//
// GPU (namespace device): the same calls on a CUDA device when tether was built with CUDA and a
// device is present; otherwise they throw tether::Error. The threshold sets run one warp per
// row (coalesced passes over the row; one lane works on the row's candidates, and the
// sort-based variant heapsorts them); the box section's Newton method one warp per row too
// (the bracketing passes coalesced, the few undecided entries in every lane), its sort-based
// variant one thread per row; all in double and in float. Every call copies the batch to the device
// and back, except on a device::DeviceRows (double), which keeps it there.
//
// Example:
//   tether::Matrix x = ...;                              // N x n, row-major
//   tether::Simplex simplex(x.cols(), 1.0);              // Condat by default
//   simplex.project_rows(x);                             // each row onto the probability simplex
//   tether::BoxSection capped = tether::BoxSection::capped_simplex(x.cols(), 0.0, 0.1, 1.0);
//   capped.project_rows(x);                              // 0 <= p <= 0.1, sum p = 1
#pragma once

#include <tether/core/types.hpp>
#include <vector>

namespace tether {

enum class SimplexAlgorithm { kSort, kCondat };
enum class BoxSectionAlgorithm { kSort, kNewton };

/// {p : p >= 0, sum p = z} in R^n.
class Simplex {
 public:
  explicit Simplex(Index n, double z = 1.0, SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
  void project(Eigen::Ref<Vector> x) const;
  /// Every row of x (cols == n) onto the set.
  void project_rows(MatrixRef x) const;
  /// |x - P(x)| <= tolerance; false for a wrong size or a non-finite entry.
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return n_; }
  double radius() const { return z_; }
  SimplexAlgorithm algorithm() const { return algorithm_; }

 private:
  Index n_;
  double z_;
  SimplexAlgorithm algorithm_;
};

/// {p : |p|_1 <= z} in R^n.
class L1Ball {
 public:
  explicit L1Ball(Index n, double z = 1.0, SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
  void project(Eigen::Ref<Vector> x) const;
  void project_rows(MatrixRef x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return n_; }
  double radius() const { return z_; }
  SimplexAlgorithm algorithm() const { return algorithm_; }

 private:
  Index n_;
  double z_;
  SimplexAlgorithm algorithm_;
};

/// {p : l <= p <= u, w^T p = c} in R^n, w > 0.
class BoxSection {
 public:
  /// Per-entry bounds and weights (all of size n).
  BoxSection(Vector lower_bounds, Vector upper_bounds, Vector weights, double total,
             BoxSectionAlgorithm algorithm = BoxSectionAlgorithm::kNewton);
  /// {l <= p <= u, sum p = c} with one l and u for every entry (w = 1).
  static BoxSection capped_simplex(Index n, double lower, double upper, double total,
                                   BoxSectionAlgorithm algorithm = BoxSectionAlgorithm::kNewton);
  void project(Eigen::Ref<Vector> x) const;
  void project_rows(MatrixRef x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return n_; }
  /// l_i, u_i, w_i (the shared value when the set was built from scalars).
  double lower(Index i) const { return lower_[lower_.size() == 1 ? 0 : i]; }
  double upper(Index i) const { return upper_[upper_.size() == 1 ? 0 : i]; }
  double weight(Index i) const { return weights_[weights_.size() == 1 ? 0 : i]; }
  double total() const { return total_; }
  BoxSectionAlgorithm algorithm() const { return algorithm_; }
  /// Size n, or 1 when one value serves every entry (the stride-0 form the kernels read).
  const Vector& lower_data() const { return lower_; }
  const Vector& upper_data() const { return upper_; }
  const Vector& weight_data() const { return weights_; }

 private:
  BoxSection(Index n, Vector&& lower_bounds, Vector&& upper_bounds, Vector&& weights, double total,
             BoxSectionAlgorithm algorithm);
  Index n_;
  Vector lower_, upper_, weights_;
  double total_;
  BoxSectionAlgorithm algorithm_;
};

/// Batch entry points (the sets' project_rows call these): every row of x onto the set.
void project_simplex_rows(MatrixRef x, double z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
void project_l1_ball_rows(MatrixRef x, double z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
void project_box_section_rows(MatrixRef x, const BoxSection& set);
/// The threshold sets in single precision: the same algorithms and exactness in float
/// (compensated float sums, the threshold as a float hi + lo), so |sum p - z| is a few float
/// ulps of z; the same refusals.
void project_simplex_rows(MatrixFRef x, float z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
void project_l1_ball_rows(MatrixFRef x, float z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
/// The box section in single precision: the set's bounds, weights and c rounded to float (the
/// rounded set is the one projected onto; InvalidArgumentError when a value does not fit in a
/// float or a weight rounds to 0, InfeasibleError when the rounding empties the set), the same
/// algorithms in float.
void project_box_section_rows(MatrixFRef x, const BoxSection& set);

namespace device {

/// True when tether was built with CUDA and a CUDA device is present.
bool simplex_kernels_available();

/// The batch projections above, run on the CUDA device (x is copied there and back). Same
/// arguments, same refusals, the same per-row arithmetic; throw tether::Error when
/// simplex_kernels_available() is false.
void project_simplex_rows(MatrixRef x, double z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
void project_l1_ball_rows(MatrixRef x, double z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
void project_box_section_rows(MatrixRef x, const BoxSection& set);
void project_simplex_rows(MatrixFRef x, float z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
void project_l1_ball_rows(MatrixFRef x, float z,
                          SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
void project_box_section_rows(MatrixFRef x, const BoxSection& set);

namespace simplex_kernels {
struct ResidentRows;
}

/// A batch of rows held on the device, projected there without host copies (for loops that
/// stay on the device, and for measuring the kernels alone). The same refusals as the batch
/// calls (a refused row is left as it was; the error names the lowest such row).
class DeviceRows {
 public:
  /// Allocates rows x n on the device. ShapeError for n < 1 or rows < 0; tether::Error when
  /// simplex_kernels_available() is false.
  DeviceRows(Index rows, Index n);
  ~DeviceRows();
  DeviceRows(const DeviceRows&) = delete;
  DeviceRows& operator=(const DeviceRows&) = delete;

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  /// Copies x (rows() x cols()) to the device / the device's rows back into x.
  void upload(ConstMatrixRef x);
  void download(MatrixRef x) const;
  void project_simplex(double z, SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
  void project_l1_ball(double z, SimplexAlgorithm algorithm = SimplexAlgorithm::kCondat);
  /// ShapeError unless set.dimension() == cols().
  void project_box_section(const BoxSection& set);

 private:
  void project(const char* who, double z, SimplexAlgorithm algorithm, bool l1);
  void throw_on_failure(const char* who, const std::vector<int>& status,
                        const std::vector<long long>& index) const;
  void require_shape(ConstMatrixRef x, const char* who) const;
  Index rows_, cols_;
  simplex_kernels::ResidentRows* resident_ = nullptr;
};

}  // namespace device

}  // namespace tether
