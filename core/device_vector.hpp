// A vector of doubles in CUDA device memory: what the device-resident calls take (e.g.
// DeviceGatedRatios::update and its Jacobian products), so that a training loop keeps its
// per-token arrays on the device between calls, and so that the device's own bandwidth can be
// measured without the host copies. Owned (freed on destruction), moved, never copied
// implicitly. Every call that touches the device throws tether::Error in a build without CUDA
// or where no device is present; size mismatches throw ShapeError.
#pragma once

#include <tether/core/types.hpp>

namespace tether::device {

class DeviceVector {
 public:
  DeviceVector() = default;
  /// n doubles, not initialised (n >= 0).
  explicit DeviceVector(Index n);
  /// A device copy of `host`.
  explicit DeviceVector(ConstVectorRef host);
  ~DeviceVector();
  DeviceVector(DeviceVector&& other) noexcept;
  DeviceVector& operator=(DeviceVector&& other) noexcept;
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;

  Index size() const { return size_; }
  /// host -> device; ShapeError unless host.size() == size().
  void upload(ConstVectorRef host);
  /// device -> host (`host` resized to size()).
  void download(Vector& host) const;
  /// device -> host into storage of its own (a matrix's, through a Map); ShapeError unless
  /// host.size() == size().
  void download(VectorRef host) const;
  Vector to_host() const;
  /// Entry i (one value copied back; 0 <= i < size(), else InvalidArgumentError).
  double value_at(Index i) const;
  /// The device pointer (nullptr when empty), for kernels and for other libraries' tensors.
  double* data() { return data_; }
  const double* data() const { return data_; }

 private:
  double* data_ = nullptr;
  Index size_ = 0;
};

}  // namespace tether::device
