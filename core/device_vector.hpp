// A vector of doubles (DeviceVector) or floats (DeviceVectorF) in CUDA device memory: what the
// device-resident calls take (e.g. DeviceGatedRatios::update and its Jacobian products, the
// retain projection of a model's float gradients), so that a training loop keeps its arrays on
// the device between calls, and so that the device's own bandwidth can be measured without the
// host copies. Owned (freed on destruction), moved, never copied implicitly. Every call that
// touches the device throws tether::Error in a build without CUDA or where no device is
// present; size mismatches throw ShapeError.
#pragma once

#include <tether/core/types.hpp>

namespace tether::device {

/// T: double or float (explicitly instantiated in device_vector.cpp).
template <class T>
class BasicDeviceVector {
 public:
  using Scalar = T;
  using HostVector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  using HostRef = Eigen::Ref<HostVector>;
  using ConstHostRef = const Eigen::Ref<const HostVector>&;

  BasicDeviceVector() = default;
  /// n values, not initialised (n >= 0).
  explicit BasicDeviceVector(Index n);
  /// A device copy of `host`.
  explicit BasicDeviceVector(ConstHostRef host);
  ~BasicDeviceVector();
  BasicDeviceVector(BasicDeviceVector&& other) noexcept;
  BasicDeviceVector& operator=(BasicDeviceVector&& other) noexcept;
  BasicDeviceVector(const BasicDeviceVector&) = delete;
  BasicDeviceVector& operator=(const BasicDeviceVector&) = delete;

  Index size() const { return size_; }
  /// host -> device; ShapeError unless host.size() == size().
  void upload(ConstHostRef host);
  /// device -> host (`host` resized to size()).
  void download(HostVector& host) const;
  /// device -> host into storage of its own (a matrix's, through a Map); ShapeError unless
  /// host.size() == size().
  void download(HostRef host) const;
  HostVector to_host() const;
  /// Entry i (one value copied back; 0 <= i < size(), else InvalidArgumentError).
  T value_at(Index i) const;
  /// The device pointer (nullptr when empty), for kernels and for other libraries' tensors.
  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  Index size_ = 0;
};

using DeviceVector = BasicDeviceVector<double>;
using DeviceVectorF = BasicDeviceVector<float>;

extern template class BasicDeviceVector<double>;
extern template class BasicDeviceVector<float>;

}  // namespace tether::device
