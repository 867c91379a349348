// The gating hierarchy (solvers/fiberpo.hpp) on a CUDA device: the batch is checked and its
// segments laid out on the host (GatingHierarchyGate::segments, the same checks as the CPU
// gate), then the segmented passes run on the device with the CPU gate's per-segment code
// (solvers/fiberpo_segments.hpp): trajectory means, node means per coarse level, and per
// trajectory the chain walk and the fiber gate over its tokens; then, on the data kept there,
// the Jacobian products J v and J^T v (J = dG/dr) with the CPU's per-segment steps, and evaluate's
// J and dJ / d log pi from the batch's advantages. Agrees with
// GatingHierarchyGate::gated_ratios(...) to rounding (the device's exp, a trajectory's sums over
// 32 lanes where the CPU's run over 8). update() re-gates new log-probs of the same batch, and the
// products take device vectors, so an epoch loop moves no per-token array over the bus. In
// builds without CUDA, or without a device, the constructor throws tether::Error.
#pragma once

#include <tether/core/device_vector.hpp>
#include <tether/core/policy_batch.hpp>
#include <tether/core/types.hpp>
#include <tether/solvers/fiberpo.hpp>

namespace tether::device {

namespace fiberpo_kernels {
struct ResidentGate;
}

/// GatedRatios on the device: G and its Jacobian products for one batch. The products use
/// scratch held by the object: one object is not to be used from two host threads at once.
class DeviceGatedRatios {
 public:
  /// Computes G on the device. InvalidArgumentError / ShapeError for a bad batch (as the CPU
  /// gate); tether::Error without a device, or for a hierarchy deeper than 16 gated levels.
  DeviceGatedRatios(const GatingHierarchyGate& gate, const TokenBatch& batch,
                    ConstVectorRef new_log_prob);
  ~DeviceGatedRatios();
  DeviceGatedRatios(const DeviceGatedRatios&) = delete;
  DeviceGatedRatios& operator=(const DeviceGatedRatios&) = delete;

  Index size() const { return tokens_; }
  /// G_i.
  Vector values() const;

  /// G again for new log-probs of the same batch (a training loop's next epoch): the batch's
  /// layout, old log-probs and budgets stay on the device from construction. Checked as the CPU
  /// gate checks them (ShapeError for a wrong size; InvalidArgumentError naming the first entry
  /// not finite and <= 0), on the host for a host vector, on the device for a device one (only
  /// the verdict and the failing value come back). A refused update leaves G as it was.
  void update(ConstVectorRef new_log_prob);
  void update(const DeviceVector& new_log_prob);
  /// From float log-probs on the device (a model's, as stored): each converted exactly to double
  /// and everything computed in double, so G is the double update's on the converted log-probs,
  /// bit for bit; the per-token read is half the bytes. Checked on the device as above.
  void update(const DeviceVectorF& new_log_prob);
  /// J v and J^T v (and the log-space variants) with v and out on the device: no host copies.
  /// ShapeError unless v has size() entries; out is reallocated unless it has size().
  void jvp(const DeviceVector& v, DeviceVector& out) const { product(v, out, false, false); }
  void vjp(const DeviceVector& v, DeviceVector& out) const { product(v, out, true, false); }
  void jvp_log(const DeviceVector& v, DeviceVector& out) const { product(v, out, false, true); }
  void vjp_log(const DeviceVector& v, DeviceVector& out) const { product(v, out, true, true); }
  /// J v and J^T v (ShapeError unless v has size() entries); the _log variants use
  /// dG/d log r = J diag(r), as GatedRatios.
  Vector jvp(ConstVectorRef v) const { return product(v, false, false); }
  Vector vjp(ConstVectorRef v) const { return product(v, true, false); }
  Vector jvp_log(ConstVectorRef v) const { return product(v, false, true); }
  Vector vjp_log(ConstVectorRef v) const { return product(v, true, true); }

  /// GatingHierarchyGate::evaluate's J = sum_i A_i G_i / (|Tj| T_tau) at the current G, and its
  /// gradient dJ / d log pi into `gradient` (reallocated unless it has size() entries), from
  /// the batch's advantages (uploaded at construction): J^T zeta with zeta formed as it is read,
  /// in two passes over the tokens. J's trajectory shares are added on the host in trajectory
  /// order. Agrees with the CPU's evaluate to rounding (a trajectory's sums over 32 lanes where
  /// the CPU's run over 8); the regime shares are the CPU's to compute (from values()).
  double evaluate(DeviceVector& gradient) const;

 private:
  Vector product(ConstVectorRef v, bool transpose, bool log_space) const;
  void product(const DeviceVector& v, DeviceVector& out, bool transpose, bool log_space) const;
  template <class T>
  void update_from_device(const BasicDeviceVector<T>& new_log_prob);
  Index tokens_ = 0;
  fiberpo_kernels::ResidentGate* resident_ = nullptr;
  DeviceVector staged_;  // a host update's log-probs, uploaded (allocated on the first one)
};

/// G_i for every token of the batch under `gate`'s hierarchy, computed on the device
/// (DeviceGatedRatios(...).values()).
Vector gated_values(const GatingHierarchyGate& gate, const TokenBatch& batch,
                    ConstVectorRef new_log_prob);

}  // namespace tether::device
