#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <tether/core/box_section_row.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/simplex_projections.hpp>
#include <tether/core/simplex_row.hpp>
#include <utility>
#include <vector>
#if defined(TETHER_HAVE_CUDA)
#include <tether/core/simplex_kernels.hpp>
#endif

namespace tether {

namespace {

namespace row = simplex_row;

/// std::sort ascending: the same sorted sequence as simplex_row::heapsort_ascending.
struct StdSort {
  template <class T>
  void operator()(T* a, long long n) const {
    std::sort(a, a + n);
  }
};

void require_dimension(const char* who, Index n) {
  require(n >= 1, who, ": dimension n must be >= 1, got ", n);
}

template <class T>
void require_radius(const char* who, T z) {
  require(std::isfinite(z), who, ": z must be finite, got ", z);
  require<InfeasibleError>(z >= 0.0, who, ": z = ", z,
                           " < 0 leaves the set empty (z must be >= 0)");
}

void require_tolerance(const char* who, double tolerance) {
  require(tolerance >= 0.0, who, ": tolerance must be >= 0, got ", tolerance);
}

/// Turns the first failed row of a batch into its exception.
template <class Rows>
void throw_row_failure(const char* who, const Rows& x, Index r, int status, long long index) {
  switch (status) {
    case row::kNonFinite:
      throw InvalidArgumentError(
          detail::concat(who, ": x(", r, ", ", index, ") = ", x(r, index), " must be finite"));
    case row::kOverflow:
      throw NumericalError(
          detail::concat(who, ": the multiplier of row ", r,
                         " overflowed (max |x(r, :)| = ", x.row(r).cwiseAbs().maxCoeff(), ")"));
    default:
      throw NumericalError(detail::concat(who, ": row ", r, ": the safeguarded Newton iteration",
                                          " did not converge in ", row::kBoxSectionMaxIterations,
                                          " passes"));
  }
}

/// Runs fn(row pointer, workspace) on every row of x, in parallel over rows; throws for the
/// lowest-numbered failed row. workspace_per_row values of scratch per thread; Rows: MatrixRef
/// or MatrixFRef.
template <class Rows, class RowFn>
void for_each_row(const char* who, Rows x, Index workspace_per_row, RowFn fn) {
  using T = typename Rows::Scalar;
  const Index rows = x.rows(), n = x.cols();
  const Index stride = x.outerStride();
  T* data = x.data();
  // Key of the first failure: row * 4 + status (statuses are < 4); the minimum over threads is
  // the lowest row, whatever the schedule.
  long long first_failure = std::numeric_limits<long long>::max();
  std::vector<long long> failure_index(static_cast<std::size_t>(rows), -1);
  [[maybe_unused]] const bool parallel = rows > 1 && rows * n >= (Index{1} << 14);
#pragma omp parallel if (parallel) reduction(min : first_failure)
  {
    // Uninitialised: the threshold projections touch only their candidates' share of it, so
    // a long row does not pay for zeroing (and faulting in) 2 n doubles it never reads.
    const std::unique_ptr<T[]> work =
        std::make_unique_for_overwrite<T[]>(static_cast<std::size_t>(workspace_per_row));
#pragma omp for schedule(static)
    for (Index r = 0; r < rows; ++r) {
      const row::RowResult result = fn(data + r * stride, static_cast<long long>(n), work.get());
      if (result.status != row::kOk) {
        failure_index[static_cast<std::size_t>(r)] = result.index;
        first_failure = std::min(first_failure, static_cast<long long>(r) * 4 + result.status);
      }
    }
  }
  if (first_failure != std::numeric_limits<long long>::max()) {
    const Index r = static_cast<Index>(first_failure / 4);
    throw_row_failure(who, x, r, static_cast<int>(first_failure % 4),
                      failure_index[static_cast<std::size_t>(r)]);
  }
}

template <class Rows>
void threshold_rows_cpu(const char* who, Rows x, typename Rows::Scalar z,
                        SimplexAlgorithm algorithm, bool l1) {
  using T = typename Rows::Scalar;
  require_dimension(who, x.cols());
  require_radius(who, z);
  if (x.rows() == 0) return;
  const bool sorted = algorithm == SimplexAlgorithm::kSort;
  for_each_row(who, x, 2 * x.cols(), [&](T* y, long long n, T* work) {
    if (l1)
      return sorted ? row::project_sorted<true>(y, n, z, work, StdSort{})
                    : row::project_condat<true>(y, n, z, work);
    return sorted ? row::project_sorted<false>(y, n, z, work, StdSort{})
                  : row::project_condat<false>(y, n, z, work);
  });
}

/// The set's bounds, weights and total in T: the set's own arrays (double), or copies rounded
/// to float, refused when the rounding leaves a value that is not finite, a weight of 0, or an
/// empty set (sum w l > c or sum w u < c in the rounded values; each product of two floats is
/// exact in double, and the sums are compensated).
template <class T>
struct BoxArrays {
  std::vector<T> lower, upper, weight;  // float: the rounded copies
  const T* l = nullptr;
  const T* u = nullptr;
  const T* w = nullptr;
  Index l_size = 0, u_size = 0, w_size = 0;
  T total = 0;
  row::BasicBoxSectionRow<T> row() const {
    return row::BasicBoxSectionRow<T>{
        l, u, w, l_size == 1 ? 0LL : 1LL, u_size == 1 ? 0LL : 1LL, w_size == 1 ? 0LL : 1LL, total};
  }
};

template <class T>
BoxArrays<T> box_arrays(const char* who, const BoxSection& set) {
  BoxArrays<T> a;
  a.l_size = set.lower_data().size();
  a.u_size = set.upper_data().size();
  a.w_size = set.weight_data().size();
  if constexpr (std::is_same_v<T, double>) {
    a.l = set.lower_data().data();
    a.u = set.upper_data().data();
    a.w = set.weight_data().data();
    a.total = set.total();
  } else {
    const auto rounded = [&](const Vector& v, const char* name, std::vector<float>* out) {
      out->resize(static_cast<std::size_t>(v.size()));
      for (Index i = 0; i < v.size(); ++i) {
        const float f = static_cast<float>(v[i]);
        require(std::isfinite(f), who, ": ", name, "[", i, "] = ", v[i],
                " does not fit in a float");
        (*out)[static_cast<std::size_t>(i)] = f;
      }
      return out->data();
    };
    a.l = rounded(set.lower_data(), "lower", &a.lower);
    a.u = rounded(set.upper_data(), "upper", &a.upper);
    a.w = rounded(set.weight_data(), "weights", &a.weight);
    for (Index i = 0; i < a.w_size; ++i)
      require(a.w[i] > 0.0f, who, ": weights[", i, "] = ", set.weight_data()[i],
              " rounds to 0 in float");
    a.total = static_cast<float>(set.total());
    require(std::isfinite(a.total), who, ": total c = ", set.total(), " does not fit in a float");
    row::Sum wl, wu;
    const row::BasicBoxSectionRow<float> s = a.row();
    for (Index i = 0; i < set.dimension(); ++i) {
      wl.add(static_cast<double>(s.w(i)) * s.l(i));
      wu.add(static_cast<double>(s.w(i)) * s.u(i));
    }
    require<InfeasibleError>(wl.value() <= a.total && wu.value() >= a.total, who,
                             ": rounded to float, the set is empty: sum_i w_i lower_i = ",
                             wl.value(), ", sum_i w_i upper_i = ", wu.value(), ", c = ", a.total);
  }
  return a;
}

void require_box_shape(const char* who, Index cols, const BoxSection& set) {
  require<ShapeError>(cols == set.dimension(), who, ": x has ", cols,
                      " columns, the set has dimension ", set.dimension());
}

/// Every row of x (MatrixRef or MatrixFRef) onto the box section, on the CPU.
template <class Rows>
void box_rows_cpu(const char* who, Rows x, const BoxSection& set) {
  using T = typename Rows::Scalar;
  require_box_shape(who, x.cols(), set);
  const BoxArrays<T> arrays = box_arrays<T>(who, set);
  if (x.rows() == 0) return;
  const row::BasicBoxSectionRow<T> s = arrays.row();
  if (set.algorithm() == BoxSectionAlgorithm::kSort) {
    for_each_row(who, x, 2 * x.cols(), [&](T* y, long long n, T* work) {
      return row::box_section_sorted(y, n, s, work, StdSort{});
    });
  } else {
    for_each_row(who, x, row::kBoxWorkPerEntry * x.cols(), [&](T* y, long long n, T* work) {
      return row::box_section_newton(y, n, s, work);
    });
  }
}

/// Projects a copy of x and returns the distance it moved (infinity when x is not finite).
template <class Set>
double distance_to(const Set& set, const Vector& x) {
  for (Index i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i])) return std::numeric_limits<double>::infinity();
  Vector p = x;
  set.project(p);
  return (x - p).norm();
}

}  // namespace

// ---- batch entry points --------------------------------------------------------------------

void project_simplex_rows(MatrixRef x, double z, SimplexAlgorithm algorithm) {
  threshold_rows_cpu("project_simplex_rows", x, z, algorithm, false);
}

void project_l1_ball_rows(MatrixRef x, double z, SimplexAlgorithm algorithm) {
  threshold_rows_cpu("project_l1_ball_rows", x, z, algorithm, true);
}

void project_simplex_rows(MatrixFRef x, float z, SimplexAlgorithm algorithm) {
  threshold_rows_cpu("project_simplex_rows", x, z, algorithm, false);
}

void project_l1_ball_rows(MatrixFRef x, float z, SimplexAlgorithm algorithm) {
  threshold_rows_cpu("project_l1_ball_rows", x, z, algorithm, true);
}

void project_box_section_rows(MatrixRef x, const BoxSection& set) {
  box_rows_cpu("project_box_section_rows", x, set);
}

void project_box_section_rows(MatrixFRef x, const BoxSection& set) {
  box_rows_cpu("project_box_section_rows", x, set);
}

// ---- Simplex -------------------------------------------------------------------------------

Simplex::Simplex(Index n, double z, SimplexAlgorithm algorithm)
    : n_(n), z_(z), algorithm_(algorithm) {
  require_dimension("Simplex", n);
  require_radius("Simplex", z);
}

void Simplex::project(Eigen::Ref<Vector> x) const {
  require<ShapeError>(x.size() == n_, "Simplex::project: x has size ", x.size(),
                      ", the set has dimension ", n_);
  Eigen::Map<Matrix> as_row(x.data(), 1, n_);
  project_simplex_rows(as_row, z_, algorithm_);
}

void Simplex::project_rows(MatrixRef x) const {
  require<ShapeError>(x.cols() == n_, "Simplex::project_rows: x has ", x.cols(),
                      " columns, the set has dimension ", n_);
  project_simplex_rows(x, z_, algorithm_);
}

bool Simplex::contains(const Vector& x, double tolerance) const {
  require_tolerance("Simplex::contains", tolerance);
  return x.size() == n_ && distance_to(*this, x) <= tolerance;
}

// ---- L1Ball --------------------------------------------------------------------------------

L1Ball::L1Ball(Index n, double z, SimplexAlgorithm algorithm)
    : n_(n), z_(z), algorithm_(algorithm) {
  require_dimension("L1Ball", n);
  require_radius("L1Ball", z);
}

void L1Ball::project(Eigen::Ref<Vector> x) const {
  require<ShapeError>(x.size() == n_, "L1Ball::project: x has size ", x.size(),
                      ", the set has dimension ", n_);
  Eigen::Map<Matrix> as_row(x.data(), 1, n_);
  project_l1_ball_rows(as_row, z_, algorithm_);
}

void L1Ball::project_rows(MatrixRef x) const {
  require<ShapeError>(x.cols() == n_, "L1Ball::project_rows: x has ", x.cols(),
                      " columns, the set has dimension ", n_);
  project_l1_ball_rows(x, z_, algorithm_);
}

bool L1Ball::contains(const Vector& x, double tolerance) const {
  require_tolerance("L1Ball::contains", tolerance);
  return x.size() == n_ && distance_to(*this, x) <= tolerance;
}

// ---- BoxSection ----------------------------------------------------------------------------

BoxSection::BoxSection(Vector lower_bounds, Vector upper_bounds, Vector weights, double total,
                       BoxSectionAlgorithm algorithm)
    // The private constructor takes rvalue references: nothing is moved before size() is read.
    : BoxSection(lower_bounds.size(), std::move(lower_bounds), std::move(upper_bounds),
                 std::move(weights), total, algorithm) {}

BoxSection BoxSection::capped_simplex(Index n, double lower, double upper, double total,
                                      BoxSectionAlgorithm algorithm) {
  return BoxSection(n, Vector::Constant(1, lower), Vector::Constant(1, upper),
                    Vector::Constant(1, 1.0), total, algorithm);
}

BoxSection::BoxSection(Index n, Vector&& lower_bounds, Vector&& upper_bounds, Vector&& weights,
                       double total, BoxSectionAlgorithm algorithm)
    : n_(n),
      lower_(std::move(lower_bounds)),
      upper_(std::move(upper_bounds)),
      weights_(std::move(weights)),
      total_(total),
      algorithm_(algorithm) {
  constexpr const char* kWho = "BoxSection";
  require_dimension(kWho, n_);
  const auto sized = [&](const Vector& v) { return v.size() == n_ || v.size() == 1; };
  require<ShapeError>(sized(lower_) && sized(upper_) && sized(weights_), kWho,
                      ": lower, upper and weights must have size n = ", n_,
                      " (or 1 for a shared value), got ", lower_.size(), ", ", upper_.size(), ", ",
                      weights_.size());
  require(std::isfinite(total_), kWho, ": total c must be finite, got ", total_);
  // Sums over the n entries of w l and w u, compensated (the feasibility test is exact up to
  // the rounding of each product).
  row::Sum wl, wu;
  for (Index i = 0; i < n_; ++i) {
    const double l = lower(i), u = upper(i), w = weight(i);
    require(std::isfinite(l), kWho, ": lower[", i, "] = ", l, " must be finite");
    require(std::isfinite(u), kWho, ": upper[", i, "] = ", u, " must be finite");
    require(std::isfinite(w), kWho, ": weights[", i, "] = ", w, " must be finite");
    require(w > 0.0, kWho, ": weights[", i, "] = ", w, " must be > 0");
    require<InfeasibleError>(l <= u, kWho, ": lower[", i, "] = ", l, " > upper[", i, "] = ", u,
                             " leaves the set empty");
    wl.add(w * l);
    wu.add(w * u);
  }
  require<InfeasibleError>(wl.value() <= total_, kWho, ": sum_i w_i lower_i = ", wl.value(),
                           " > total c = ", total_, " leaves the set empty");
  require<InfeasibleError>(wu.value() >= total_, kWho, ": sum_i w_i upper_i = ", wu.value(),
                           " < total c = ", total_, " leaves the set empty");
}

void BoxSection::project(Eigen::Ref<Vector> x) const {
  require<ShapeError>(x.size() == n_, "BoxSection::project: x has size ", x.size(),
                      ", the set has dimension ", n_);
  Eigen::Map<Matrix> as_row(x.data(), 1, n_);
  project_box_section_rows(as_row, *this);
}

void BoxSection::project_rows(MatrixRef x) const { project_box_section_rows(x, *this); }

bool BoxSection::contains(const Vector& x, double tolerance) const {
  require_tolerance("BoxSection::contains", tolerance);
  return x.size() == n_ && distance_to(*this, x) <= tolerance;
}

// ---- device --------------------------------------------------------------------------------

namespace device {

bool simplex_kernels_available() {
#if defined(TETHER_HAVE_CUDA)
  return simplex_kernels::device_count() > 0;
#else
  return false;
#endif
}

namespace {

void require_device(const char* who) {
#if defined(TETHER_HAVE_CUDA)
  if (!simplex_kernels_available()) throw Error(detail::concat(who, ": no CUDA device is present"));
#else
  throw Error(detail::concat(who, ": tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)"));
#endif
}

#if defined(TETHER_HAVE_CUDA)
template <class Rows>
void throw_first_failure(const char* who, const Rows& x, const std::vector<int>& status,
                         const std::vector<long long>& index) {
  for (std::size_t r = 0; r < status.size(); ++r)
    if (status[r] != row::kOk)
      throw_row_failure(who, x, static_cast<Index>(r), status[r], index[r]);
}

template <class Rows>
void threshold_rows_device(const char* who, Rows x, typename Rows::Scalar z,
                           SimplexAlgorithm algorithm, bool l1) {
  require_dimension(who, x.cols());
  require_radius(who, z);
  require_device(who);
  if (x.rows() == 0) return;
  std::vector<int> status(static_cast<std::size_t>(x.rows()));
  std::vector<long long> index(static_cast<std::size_t>(x.rows()));
  simplex_kernels::threshold_rows(x.data(), x.rows(), x.cols(), x.outerStride(), z, l1,
                                  algorithm == SimplexAlgorithm::kSort, status.data(),
                                  index.data());
  throw_first_failure(who, x, status, index);
}
#else
template <class Rows>
void threshold_rows_device(const char* who, Rows x, typename Rows::Scalar z, SimplexAlgorithm,
                           bool) {
  require_dimension(who, x.cols());
  require_radius(who, z);
  require_device(who);
}
#endif

/// Every row of x (MatrixRef or MatrixFRef) onto the box section, on the device.
template <class Rows>
void box_rows_device(const char* who, Rows x, const BoxSection& set) {
  require_box_shape(who, x.cols(), set);
  require_device(who);
#if defined(TETHER_HAVE_CUDA)
  using T = typename Rows::Scalar;
  const BoxArrays<T> a = box_arrays<T>(who, set);
  if (x.rows() == 0) return;
  std::vector<int> status(static_cast<std::size_t>(x.rows()));
  std::vector<long long> index(static_cast<std::size_t>(x.rows()));
  simplex_kernels::box_section_rows(
      x.data(), x.rows(), x.cols(), x.outerStride(), a.l, a.l_size, a.u, a.u_size, a.w, a.w_size,
      a.total, set.algorithm() == BoxSectionAlgorithm::kSort, status.data(), index.data());
  throw_first_failure(who, x, status, index);
#endif
}

}  // namespace

void project_simplex_rows(MatrixRef x, double z, SimplexAlgorithm algorithm) {
  threshold_rows_device("device::project_simplex_rows", x, z, algorithm, false);
}

void project_l1_ball_rows(MatrixRef x, double z, SimplexAlgorithm algorithm) {
  threshold_rows_device("device::project_l1_ball_rows", x, z, algorithm, true);
}

void project_simplex_rows(MatrixFRef x, float z, SimplexAlgorithm algorithm) {
  threshold_rows_device("device::project_simplex_rows", x, z, algorithm, false);
}

void project_l1_ball_rows(MatrixFRef x, float z, SimplexAlgorithm algorithm) {
  threshold_rows_device("device::project_l1_ball_rows", x, z, algorithm, true);
}

void project_box_section_rows(MatrixRef x, const BoxSection& set) {
  box_rows_device("device::project_box_section_rows", x, set);
}

void project_box_section_rows(MatrixFRef x, const BoxSection& set) {
  box_rows_device("device::project_box_section_rows", x, set);
}

DeviceRows::DeviceRows(Index rows, Index n) : rows_(rows), cols_(n) {
  require_dimension("device::DeviceRows", n);
  require<ShapeError>(rows >= 0, "device::DeviceRows: rows must be >= 0, got ", rows);
  require_device("device::DeviceRows");
#if defined(TETHER_HAVE_CUDA)
  resident_ = simplex_kernels::create_rows(rows, n);
#endif
}

DeviceRows::~DeviceRows() {
#if defined(TETHER_HAVE_CUDA)
  simplex_kernels::destroy_rows(resident_);
#endif
}

void DeviceRows::require_shape(ConstMatrixRef x, const char* who) const {
  require<ShapeError>(x.rows() == rows_ && x.cols() == cols_, "device::DeviceRows::", who,
                      ": x is ", x.rows(), " x ", x.cols(), ", the device holds ", rows_, " x ",
                      cols_);
}

void DeviceRows::upload(ConstMatrixRef x) {
  require_shape(x, "upload");
#if defined(TETHER_HAVE_CUDA)
  if (rows_ > 0) simplex_kernels::upload_rows(resident_, x.data(), x.outerStride());
#endif
}

void DeviceRows::download(MatrixRef x) const {
  require_shape(x, "download");
#if defined(TETHER_HAVE_CUDA)
  if (rows_ > 0) simplex_kernels::download_rows(resident_, x.data(), x.outerStride());
#endif
}

void DeviceRows::project(const char* who, double z, SimplexAlgorithm algorithm, bool l1) {
  require_radius(who, z);
#if defined(TETHER_HAVE_CUDA)
  if (rows_ == 0) return;
  std::vector<int> status(static_cast<std::size_t>(rows_));
  std::vector<long long> index(static_cast<std::size_t>(rows_));
  simplex_kernels::threshold_resident(resident_, z, l1, algorithm == SimplexAlgorithm::kSort,
                                      status.data(), index.data());
  throw_on_failure(who, status, index);
#else
  (void)algorithm;
  (void)l1;
#endif
}

void DeviceRows::throw_on_failure(const char* who, const std::vector<int>& status,
                                  const std::vector<long long>& index) const {
#if defined(TETHER_HAVE_CUDA)
  for (const int st : status)
    if (st != row::kOk) {  // the message quotes the offending row, left as it was
      Matrix x(rows_, cols_);
      download(x);
      throw_first_failure(who, x, status, index);
    }
#else
  (void)who;
  (void)status;
  (void)index;
#endif
}

void DeviceRows::project_box_section(const BoxSection& set) {
  constexpr const char* kWho = "device::DeviceRows::project_box_section";
  require<ShapeError>(set.dimension() == cols_, kWho, ": the set has dimension ", set.dimension(),
                      ", the rows have ", cols_, " entries");
#if defined(TETHER_HAVE_CUDA)
  if (rows_ == 0) return;
  std::vector<int> status(static_cast<std::size_t>(rows_));
  std::vector<long long> index(static_cast<std::size_t>(rows_));
  simplex_kernels::box_section_resident(
      resident_, set.lower_data().data(), set.lower_data().size(), set.upper_data().data(),
      set.upper_data().size(), set.weight_data().data(), set.weight_data().size(), set.total(),
      set.algorithm() == BoxSectionAlgorithm::kSort, status.data(), index.data());
  throw_on_failure(kWho, status, index);
#endif
}

void DeviceRows::project_simplex(double z, SimplexAlgorithm algorithm) {
  project("device::DeviceRows::project_simplex", z, algorithm, false);
}

void DeviceRows::project_l1_ball(double z, SimplexAlgorithm algorithm) {
  project("device::DeviceRows::project_l1_ball", z, algorithm, true);
}

}  // namespace device

}  // namespace tether
