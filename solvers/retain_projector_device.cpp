#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/retain_projector_device.hpp>
#include <vector>
#if defined(TETHER_HAVE_CUDA)
#include <tether/solvers/retain_kernels.hpp>
#endif

namespace tether::device {

Eigen::MatrixXd project_gradients(RetainProjector& projector, const Eigen::MatrixXd& gradients) {
  require(projector.options().mode == RetainProjectionMode::kNullSpace,
          "device::project_gradients: the projector must be in the null-space mode; ",
          "RetainProjector::project_gradients handles the others");
  require<ShapeError>(gradients.rows() == projector.dimension(), "device::project_gradients: ",
                      "gradients have ", gradients.rows(), " rows, the dimension is ",
                      projector.dimension());
  require<NumericalError>(gradients.allFinite(),
                          "device::project_gradients: the gradients hold NaN or Inf");
#if defined(TETHER_HAVE_CUDA)
  if (!cuda_available()) throw Error("device::project_gradients: no CUDA device is present");
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
  Eigen::MatrixXd out(gradients.rows(), gradients.cols());
  retain_kernels::project_gradients(gradients.data(), gradients.rows(), gradients.cols(),
                                    s.size() > 0 ? s.data() : nullptr, blocks, offsets.data(),
                                    sizes.data(), basis_data.data(), ranks.data(), out.data());
  return out;
#else
  throw Error(
      "device::project_gradients: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

}  // namespace tether::device
