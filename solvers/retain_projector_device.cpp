#include <limits>
#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/retain_projector_device.hpp>
#include <vector>
#if defined(TETHER_HAVE_CUDA)
#include <tether/solvers/retain_kernels.hpp>
#endif

namespace tether::device {

namespace {

void require_null_space(const RetainProjector& projector, const char* who) {
  require(projector.options().mode == RetainProjectionMode::kNullSpace, who,
          ": the projector must be in the null-space mode; ",
          "RetainProjector::project_gradients handles the others");
}

}  // namespace

DeviceRetainProjection::DeviceRetainProjection(RetainProjector& projector)
    : dimension_(projector.dimension()) {
  require_null_space(projector, "device::DeviceRetainProjection");
#if defined(TETHER_HAVE_CUDA)
  if (!cuda_available()) throw Error("device::DeviceRetainProjection: no CUDA device is present");
  const int blocks = projector.blocks();
  std::vector<Eigen::MatrixXd> bases;
  std::vector<const double*> basis_data;
  std::vector<long long> offsets, sizes;
  std::vector<int> ranks;
  for (int b = 0; b < blocks; ++b) {
    bases.push_back(projector.basis(b));
    offsets.push_back(projector.block_offset(b));
    sizes.push_back(projector.block_size(b));
    ranks.push_back(static_cast<int>(bases.back().cols()));
  }
  for (const Eigen::MatrixXd& q : bases) basis_data.push_back(q.data());
  const Vector s = projector.whitening();
  resident_ =
      retain_kernels::create_retain(dimension_, s.size() > 0 ? s.data() : nullptr, blocks,
                                    offsets.data(), sizes.data(), basis_data.data(), ranks.data());
#else
  throw Error(
      "device::DeviceRetainProjection: tether was built without CUDA (TETHER_CUDA=OFF or no "
      "nvcc)");
#endif
}

DeviceRetainProjection::~DeviceRetainProjection() {
#if defined(TETHER_HAVE_CUDA)
  retain_kernels::destroy_retain(resident_);
#endif
}

void DeviceRetainProjection::project(DeviceVector& gradients) const { project_as(gradients); }

void DeviceRetainProjection::project(DeviceVectorF& gradients) const { project_as(gradients); }

template <class T>
void DeviceRetainProjection::project_as(BasicDeviceVector<T>& gradients) const {
  const Index d = dimension_;
  require<ShapeError>(d > 0 && gradients.size() % d == 0,
                      "device::DeviceRetainProjection::project: gradients hold ", gradients.size(),
                      " values, not a multiple of the dimension ", d);
  constexpr Index kMaxColumns = std::numeric_limits<int>::max();  // a CUDA grid dimension
  require<ShapeError>(gradients.size() / d <= kMaxColumns,
                      "device::DeviceRetainProjection::project: ", gradients.size() / d,
                      " gradients; at most ", kMaxColumns, " in one call");
#if defined(TETHER_HAVE_CUDA)
  const long long bad = retain_kernels::project(resident_, gradients.data(), gradients.size() / d);
  require<NumericalError>(bad < 0, "device::DeviceRetainProjection::project: gradient ", bad / d,
                          " at entry ", bad % d, " is ", bad < 0 ? 0.0 : gradients.value_at(bad),
                          "; gradients must be finite");
#endif
}

namespace {

template <class T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> project_gradients_as(
    RetainProjector& projector, const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& gradients) {
  require_null_space(projector, "device::project_gradients");
  require<ShapeError>(gradients.rows() == projector.dimension(),
                      "device::project_gradients: ", "gradients have ", gradients.rows(),
                      " rows, the dimension is ", projector.dimension());
#if defined(TETHER_HAVE_CUDA)
  // Non-finite entries are found on the device (named by column and entry), as is a missing
  // device (by the projection's constructor).
  using HostVector = typename BasicDeviceVector<T>::HostVector;
  const DeviceRetainProjection projection(projector);
  BasicDeviceVector<T> g(Eigen::Map<const HostVector>(gradients.data(), gradients.size()));
  projection.project(g);
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> out(gradients.rows(), gradients.cols());
  g.download(Eigen::Map<HostVector>(out.data(), out.size()));
  return out;
#else
  throw Error(
      "device::project_gradients: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

}  // namespace

Eigen::MatrixXd project_gradients(RetainProjector& projector, const Eigen::MatrixXd& gradients) {
  return project_gradients_as(projector, gradients);
}

Eigen::MatrixXf project_gradients(RetainProjector& projector, const Eigen::MatrixXf& gradients) {
  return project_gradients_as(projector, gradients);
}

}  // namespace tether::device
