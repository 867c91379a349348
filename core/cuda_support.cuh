// Small helpers shared by tether's .cu files (never included by host-only code): a CUDA status
// check that throws tether::Error, and a device allocation freed on scope exit (so a throwing
// check does not leak).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <tether/core/errors.hpp>

namespace tether::device::cuda {

/// Throws tether::Error naming `what` when status is not cudaSuccess.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

/// A device allocation of `bytes` bytes (none for 0), freed on scope exit.
struct DeviceBuffer {
  void* data = nullptr;
  explicit DeviceBuffer(std::size_t bytes) {
    if (bytes > 0) check(cudaMalloc(&data, bytes), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (data != nullptr) cudaFree(data);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : data(other.data) { other.data = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      if (data != nullptr) cudaFree(data);
      data = other.data;
      other.data = nullptr;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

/// A device copy of n host values.
template <class T>
inline DeviceBuffer upload(const T* host, std::size_t n, const char* what) {
  DeviceBuffer buffer(sizeof(T) * n);
  if (n > 0) check(cudaMemcpy(buffer.data, host, sizeof(T) * n, cudaMemcpyHostToDevice), what);
  return buffer;
}

}  // namespace tether::device::cuda
