// The budget manifold on a CUDA device, with the same per-row code as the CPU path
// (manifolds/budget_row.hpp) and the same root finder (manifolds/budget_root.hpp):
//   expected_cost_and_slope   phi(t) = sum_i E_i(alpha_i + t c_i) and phi'(t) = sum_i Var_i
//   retract                   the whole retraction, its Newton passes on the device
//   project                   the tangent projection, normal and dot products fused
//   adam_step                 a whole Riemannian Adam step (DeviceBudgetManifold)
// Deterministic: every sum is added in a fixed order. In builds without CUDA, or on machines
// without a device, cuda_available() is false and the functions throw.
#pragma once

#include <tether/core/adam.hpp>
#include <tether/core/types.hpp>
#include <tether/manifolds/budget_manifold.hpp>

namespace tether::device {

/// True when tether was built with CUDA and a device is present.
bool cuda_available();

struct PhiAndSlope {
  double phi = 0.0;    ///< sum_i E_i at shift t
  double slope = 0.0;  ///< sum_i Var_i at shift t
};

/// phi(t) and phi'(t) for row-major N x K logits and costs. Throws tether::Error when no device
/// is available, ShapeError on mismatched shapes.
PhiAndSlope expected_cost_and_slope(const Matrix& alpha, const Matrix& costs, double t);

/// BudgetManifold::retract on the device: the same safeguarded Newton (budget_root.hpp) on the
/// same row math, each block of the manifold an independent instance (one CUDA block each), or
/// one large instance over the whole grid (a cooperative kernel); no pass returns to the host.
/// alpha is copied to the device and back (a device-resident API is a follow-up). The report's
/// fields mean what they mean for the CPU retraction; shifts agree with it to rounding (the
/// sums are added in another order). Throws tether::Error without a device, ShapeError on a
/// wrong shape.
RetractionReport retract(const BudgetManifold& manifold, Matrix& alpha,
                         const RetractionOptions& options = {});

namespace kernels {
struct ResidentInstances;
}

/// A budget manifold held on the device: costs, blocks and budgets uploaded once, logits kept
/// there between retractions (for loops that stay on the device, and for the benchmarks).
class DeviceBudgetManifold {
 public:
  /// Uploads the manifold. Throws tether::Error without a device.
  explicit DeviceBudgetManifold(const BudgetManifold& manifold);
  ~DeviceBudgetManifold();
  DeviceBudgetManifold(const DeviceBudgetManifold&) = delete;
  DeviceBudgetManifold& operator=(const DeviceBudgetManifold&) = delete;

  /// Copies alpha (N x K) to the device / the device's logits back into alpha (resized).
  void upload(const Matrix& alpha);
  void download(Matrix& alpha) const;
  /// Retracts the device's logits in place.
  RetractionReport retract(const RetractionOptions& options = {});
  /// Copies a vector v (N x K, e.g. a gradient) to the device / the device's vector back.
  void upload_vector(const Matrix& v);
  void download_vector(Matrix& v) const;
  /// BudgetManifold::project on the device: the device's vector is projected onto the tangent
  /// space at the device's logits, in place (the normal, C, <n, n> and <n, v> in one fused
  /// pass per instance, then the update). At most, a block is active when C >= B - tol with
  /// tol = options.tolerance max(1, |B|), as on the CPU with the same options. Returns false,
  /// leaving the vector unchanged, when an active block is degenerate (every row one-hot).
  /// Throws tether::Error when no vector was uploaded.
  bool project(const RetractionOptions& options = {});

  struct AdamStepReport {
    bool degenerate = false;  ///< the gradient's normal vanished: nothing changed
    bool accepted = false;    ///< the logits moved
    RetractionReport retraction;
  };
  /// One RiemannianAdam step (solvers/riemannian_adam.hpp) on the device, with the uploaded
  /// vector as the Euclidean gradient: projected at the logits, Adam's moments (kept on the
  /// device from the first call on) and the trial point, its retraction, the NaN / +inf check,
  /// and when accepted the logits moved and the first moment transported. Not accepted: the
  /// logits stay (the moments have advanced), as on the CPU. Throws tether::Error when no
  /// gradient was uploaded, InvalidArgumentError for invalid Adam options.
  AdamStepReport adam_step(const AdamOptions& adam, const RetractionOptions& options = {});

 private:
  void require_shape(const Matrix& m, const char* who, const char* name) const;
  Index groups_, options_;
  BudgetSense sense_;
  bool has_vector_ = false;
  long adam_steps_ = 0;
  kernels::ResidentInstances* resident_ = nullptr;
};

/// BudgetManifold::project on the device for one call: alpha and v copied there, v projected
/// and copied back. The same contract as the CPU function (its tolerance for at-most blocks
/// is options.tolerance); agrees with it to rounding (sums in another order).
bool project(const BudgetManifold& manifold, const Matrix& alpha, Matrix& v,
             const RetractionOptions& options = {});

/// Device-to-device copy bandwidth (read + write bytes per second) of `bytes`-byte buffers,
/// the best of `repetitions` timed copies: the reference the GPU benchmarks report against.
double device_copy_bandwidth(std::size_t bytes, int repetitions = 10);

}  // namespace tether::device
