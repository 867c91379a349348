// GU's retain-subspace projection of many gradients at once on a CUDA device: the null-space
// form of RetainProjector::project_gradient for every column of a d x m matrix,
//   p_j = S (z_j - Q_b Q_b^T z_j) on every block b,   z_j = S g_j,  S = H^(-1/2),
// with the projector's explicit basis (RetainProjector::basis) uploaded once, in fused sweeps as
// RetainProjector::project_explicit runs them on the CPU (solvers/retain_kernels.cu): Q^T z and
// |z| in one read of the gradients, a second projection for the columns that lay mostly in the
// span ("twice is enough": the result orthogonal to the basis to rounding relative to itself),
// then one read and write. Agrees with RetainProjector::project_gradients to rounding.
// DeviceRetainProjection keeps the basis and the gradients on the device across calls. In builds
// without CUDA, or without a device, these throw tether::Error.
#pragma once

#include <concepts>
#include <tether/core/device_vector.hpp>
#include <tether/solvers/retain_projector.hpp>

namespace tether::device {

namespace retain_kernels {
struct ResidentRetain;
}

/// The projection held on the device for many batches of gradients: the projector's whitening
/// and explicit bases (as they are at construction: build a new one after the window changes)
/// uploaded once, then project() works in place on device-resident gradients, with no host
/// copies. One object is not to be used from two host threads at once (it keeps scratch).
class DeviceRetainProjection {
 public:
  /// InvalidArgumentError unless the projector is in the null-space mode; tether::Error without
  /// a device.
  explicit DeviceRetainProjection(RetainProjector& projector);
  ~DeviceRetainProjection();
  DeviceRetainProjection(const DeviceRetainProjection&) = delete;
  DeviceRetainProjection& operator=(const DeviceRetainProjection&) = delete;

  Index dimension() const { return dimension_; }
  /// Projects, in place, the gradients held column-major in `gradients` (d x m, d =
  /// dimension(), m = gradients.size() / d): column j becomes project_gradient(column j).
  /// ShapeError unless gradients.size() is a multiple of d; NumericalError naming the first
  /// non-finite entry (column and row; checked on the device), the gradients then unchanged.
  void project(DeviceVector& gradients) const;
  /// The same for float gradients (a model's, as stored): each entry converted exactly to double,
  /// every operation in double, each result rounded once to float; so the result is the double
  /// overload's on the converted gradients, rounded, bit for bit (a result beyond float's range
  /// rounds to +-inf, as a cast does). Reads and writes half the bytes (the basis and the
  /// whitening stay double).
  void project(DeviceVectorF& gradients) const;

 private:
  template <class T>
  void project_as(BasicDeviceVector<T>& gradients) const;
  Index dimension_ = 0;
  retain_kernels::ResidentRetain* resident_ = nullptr;
};

/// Column j of the result projects column j of gradients (d x m). InvalidArgumentError unless
/// the projector is in the null-space mode (the sign-selective and cone rules are per-gradient
/// decisions; use RetainProjector::project_gradients); ShapeError when gradients do not have d
/// rows; NumericalError naming the first non-finite entry (DeviceRetainProjection::project);
/// tether::Error without a device.
Eigen::MatrixXd project_gradients(RetainProjector& projector, const Eigen::MatrixXd& gradients);
/// The same for float gradients (DeviceRetainProjection::project's float overload): the CPU's
/// float RetainProjector::project_gradients to rounding.
Eigen::MatrixXf project_gradients(RetainProjector& projector, const Eigen::MatrixXf& gradients);
/// An expression (e.g. MatrixXd::Zero(d, m), or a block) evaluated into its scalar's matrix first;
/// without this both overloads above would match it.
template <class Derived>
requires(std::same_as<typename Derived::Scalar, double> ||
         std::same_as<typename Derived::Scalar, float>)
    Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> project_gradients(
        RetainProjector& projector, const Eigen::MatrixBase<Derived>& gradients) {
  return project_gradients(
      projector,
      Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>(gradients));
}

}  // namespace tether::device
