#include <algorithm>
#include <cmath>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <vector>
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

namespace {

void check_retraction_options(const RetractionOptions& options) {
  require(options.tolerance > 0.0, "RetractionOptions::tolerance must be > 0, got ",
          options.tolerance);
  require(options.max_passes >= 1, "RetractionOptions::max_passes must be >= 1, got ",
          options.max_passes);
}

#if defined(TETHER_HAVE_CUDA)
RetractionReport report_of(const std::vector<kernels::RetractionOutcome>& outcomes,
                           BudgetSense sense) {
  RetractionReport report;
  report.converged = true;
  for (const kernels::RetractionOutcome& o : outcomes) {
    report.passes = std::max(report.passes, o.passes);
    const double r =
        sense == BudgetSense::kAtMost ? std::max(0.0, o.residual) : std::abs(o.residual);
    report.max_abs_residual = std::max(report.max_abs_residual, r);
    report.converged = report.converged && o.converged != 0;
    report.saturated = report.saturated || o.saturated != 0;
    report.shifts.push_back(o.shift);
    report.residuals.push_back(o.residual);
  }
  return report;
}
#endif

}  // namespace

RetractionReport retract(const BudgetManifold& manifold, Matrix& alpha,
                         const RetractionOptions& options) {
  require<ShapeError>(alpha.rows() == manifold.groups() && alpha.cols() == manifold.options(),
                      "device::retract: alpha is ", alpha.rows(), " x ", alpha.cols(),
                      ", the manifold's costs are ", manifold.groups(), " x ", manifold.options());
  check_retraction_options(options);
  DeviceBudgetManifold on_device(manifold);
  on_device.upload(alpha);
  const RetractionReport report = on_device.retract(options);
  on_device.download(alpha);
  return report;
}

DeviceBudgetManifold::DeviceBudgetManifold(const BudgetManifold& manifold)
    : groups_(manifold.groups()), options_(manifold.options()), sense_(manifold.sense()) {
#if defined(TETHER_HAVE_CUDA)
  if (!cuda_available()) throw Error("DeviceBudgetManifold: no CUDA device is present");
  const Index blocks = manifold.blocks();
  std::vector<long long> starts(static_cast<std::size_t>(blocks) + 1);
  for (Index b = 0; b <= blocks; ++b)
    starts[static_cast<std::size_t>(b)] = b < blocks ? manifold.block_begin(b) : manifold.groups();
  resident_ = kernels::create_resident(manifold.costs().data(), manifold.groups(),
                                       static_cast<int>(manifold.options()), starts.data(),
                                       static_cast<int>(blocks), manifold.budgets().data());
#else
  throw Error("DeviceBudgetManifold: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

DeviceBudgetManifold::~DeviceBudgetManifold() {
#if defined(TETHER_HAVE_CUDA)
  kernels::destroy_resident(resident_);
#endif
}

void DeviceBudgetManifold::require_shape(const Matrix& m, const char* who,
                                         const char* name) const {
  require<ShapeError>(m.rows() == groups_ && m.cols() == options_, "DeviceBudgetManifold::", who,
                      ": ", name, " is ", m.rows(), " x ", m.cols(), ", the manifold's costs are ",
                      groups_, " x ", options_);
}

void DeviceBudgetManifold::upload(const Matrix& alpha) {
  require_shape(alpha, "upload", "alpha");
#if defined(TETHER_HAVE_CUDA)
  kernels::upload_alpha(resident_, alpha.data());
#endif
}

void DeviceBudgetManifold::download(Matrix& alpha) const {
  alpha.resize(groups_, options_);
#if defined(TETHER_HAVE_CUDA)
  kernels::download_alpha(resident_, alpha.data());
#endif
}

RetractionReport DeviceBudgetManifold::retract(const RetractionOptions& options) {
  check_retraction_options(options);
#if defined(TETHER_HAVE_CUDA)
  std::vector<kernels::RetractionOutcome> outcomes(
      static_cast<std::size_t>(kernels::resident_instances(resident_)));
  kernels::retract_resident(resident_, options.tolerance, options.max_passes,
                            sense_ == BudgetSense::kAtMost, options.recentre, outcomes.data());
  return report_of(outcomes, sense_);
#else
  return {};
#endif
}

void DeviceBudgetManifold::upload_vector(const Matrix& v) {
  require_shape(v, "upload_vector", "v");
#if defined(TETHER_HAVE_CUDA)
  kernels::upload_vector(resident_, v.data());
  has_vector_ = true;
#endif
}

void DeviceBudgetManifold::download_vector(Matrix& v) const {
  require(has_vector_, "DeviceBudgetManifold::download_vector: no vector was uploaded");
  v.resize(groups_, options_);
#if defined(TETHER_HAVE_CUDA)
  kernels::download_vector(resident_, v.data());
#endif
}

bool DeviceBudgetManifold::project(const RetractionOptions& options) {
  check_retraction_options(options);
  require(has_vector_, "DeviceBudgetManifold::project: no vector was uploaded (upload_vector)");
#if defined(TETHER_HAVE_CUDA)
  return kernels::project_resident(resident_, options.tolerance, sense_ == BudgetSense::kAtMost);
#else
  return false;
#endif
}

DeviceBudgetManifold::AdamStepReport DeviceBudgetManifold::adam_step(
    const AdamOptions& adam, const RetractionOptions& options) {
  check_retraction_options(options);
  std::string why;
  require(adam.is_valid(&why), "DeviceBudgetManifold::adam_step: AdamOptions: ", why);
  require(has_vector_,
          "DeviceBudgetManifold::adam_step: no gradient was uploaded (upload_vector)");
  AdamStepReport report;
#if defined(TETHER_HAVE_CUDA)
  const long t = adam_steps_ + 1;  // Adam counts a step once the gradient was not degenerate
  kernels::AdamConstants c;
  c.learning_rate = adam.learning_rate;
  c.beta1 = adam.beta1;
  c.beta2 = adam.beta2;
  c.epsilon = adam.epsilon;
  c.weight_decay = adam.weight_decay;
  c.bias1 = 1.0 - std::pow(adam.beta1, static_cast<double>(t));
  c.bias2 = 1.0 - std::pow(adam.beta2, static_cast<double>(t));
  std::vector<kernels::RetractionOutcome> outcomes(
      static_cast<std::size_t>(kernels::resident_instances(resident_)));
  const kernels::AdamStepOutcome o =
      kernels::adam_step_resident(resident_, c, options.tolerance, options.max_passes,
                                  sense_ == BudgetSense::kAtMost, options.recentre,
                                  outcomes.data());
  report.degenerate = o.degenerate;
  report.accepted = o.accepted;
  if (!o.degenerate) adam_steps_ = t;
  if (!o.degenerate) report.retraction = report_of(outcomes, sense_);
#endif
  return report;
}

bool project(const BudgetManifold& manifold, const Matrix& alpha, Matrix& v,
             const RetractionOptions& options) {
  require<ShapeError>(alpha.rows() == manifold.groups() && alpha.cols() == manifold.options(),
                      "device::project: alpha is ", alpha.rows(), " x ", alpha.cols(),
                      ", the manifold's costs are ", manifold.groups(), " x ", manifold.options());
  require<ShapeError>(v.rows() == manifold.groups() && v.cols() == manifold.options(),
                      "device::project: v is ", v.rows(), " x ", v.cols(),
                      ", the manifold's costs are ", manifold.groups(), " x ", manifold.options());
  check_retraction_options(options);
  DeviceBudgetManifold on_device(manifold);
  on_device.upload(alpha);
  on_device.upload_vector(v);
  const bool projected = on_device.project(options);
  if (projected) on_device.download_vector(v);
  return projected;
}

double device_copy_bandwidth(std::size_t bytes, int repetitions) {
  require(bytes > 0 && repetitions >= 1,
          "device_copy_bandwidth: bytes and repetitions must be >= 1");
#if defined(TETHER_HAVE_CUDA)
  if (!cuda_available()) throw Error("device_copy_bandwidth: no CUDA device is present");
  return kernels::copy_bandwidth(bytes, repetitions);
#else
  throw Error("device_copy_bandwidth: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

}  // namespace tether::device
