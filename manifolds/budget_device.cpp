#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_device.hpp>
#if defined(TETHER_HAVE_CUDA)
#include <tether/manifolds/budget_kernels.hpp>
#endif

namespace tether::device {

bool cuda_available() {
#if defined(TETHER_HAVE_CUDA)
  return kernels::device_count() > 0;
#else
  return false;
#endif
}

PhiAndSlope expected_cost_and_slope(const Matrix& alpha, const Matrix& costs, double t) {
  require<ShapeError>(alpha.rows() == costs.rows() && alpha.cols() == costs.cols(),
                      "expected_cost_and_slope: alpha is ", alpha.rows(), " x ", alpha.cols(),
                      ", costs are ", costs.rows(), " x ", costs.cols());
  require<ShapeError>(alpha.rows() > 0 && alpha.cols() > 0,
                      "expected_cost_and_slope: N and K must be >= 1");
#if defined(TETHER_HAVE_CUDA)
  if (!cuda_available()) throw Error("expected_cost_and_slope: no CUDA device is present");
  PhiAndSlope out;
  kernels::phi_and_slope(alpha.data(), costs.data(), static_cast<int>(alpha.rows()),
                         static_cast<int>(alpha.cols()), t, &out.phi, &out.slope);
  return out;
#else
  (void)t;
  throw Error(
      "expected_cost_and_slope: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

}  // namespace tether::device
