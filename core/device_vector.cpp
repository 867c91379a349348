#include <tether/core/device_vector.hpp>
#include <tether/core/errors.hpp>
#include <utility>
#if defined(TETHER_HAVE_CUDA)
#include <cuda_runtime.h>

#include <string>
#endif

namespace tether::device {

namespace {

#if defined(TETHER_HAVE_CUDA)
void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("DeviceVector: ") + what + ": " + cudaGetErrorString(status));
}
#endif

double* allocate(Index n) {
  require<ShapeError>(n >= 0, "DeviceVector: size must be >= 0, got ", n);
#if defined(TETHER_HAVE_CUDA)
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    throw Error("DeviceVector: no CUDA device is present");
  void* p = nullptr;
  if (n > 0) check(cudaMalloc(&p, sizeof(double) * static_cast<std::size_t>(n)), "cudaMalloc");
  return static_cast<double*>(p);
#else
  throw Error("DeviceVector: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

}  // namespace

DeviceVector::DeviceVector(Index n) : data_(allocate(n)), size_(n) {}

DeviceVector::DeviceVector(ConstVectorRef host) : DeviceVector(host.size()) { upload(host); }

DeviceVector::~DeviceVector() {
#if defined(TETHER_HAVE_CUDA)
  if (data_ != nullptr) cudaFree(data_);
#endif
}

DeviceVector::DeviceVector(DeviceVector&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceVector& DeviceVector::operator=(DeviceVector&& other) noexcept {
  if (this != &other) {
    DeviceVector gone(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void DeviceVector::upload(ConstVectorRef host) {
  require<ShapeError>(host.size() == size_, "DeviceVector::upload: host has ", host.size(),
                      " entries; the device vector ", size_);
#if defined(TETHER_HAVE_CUDA)
  if (size_ > 0)
    check(cudaMemcpy(data_, host.data(), sizeof(double) * static_cast<std::size_t>(size_),
                     cudaMemcpyHostToDevice),
          "upload");
#endif
}

void DeviceVector::download(Vector& host) const {
  host.resize(size_);
  download(VectorRef(host));
}

void DeviceVector::download(VectorRef host) const {
  require<ShapeError>(host.size() == size_, "DeviceVector::download: host has ", host.size(),
                      " entries; the device vector ", size_);
#if defined(TETHER_HAVE_CUDA)
  if (size_ > 0)
    check(cudaMemcpy(host.data(), data_, sizeof(double) * static_cast<std::size_t>(size_),
                     cudaMemcpyDeviceToHost),
          "download");
#endif
}

double DeviceVector::value_at(Index i) const {
  require(i >= 0 && i < size_, "DeviceVector::value_at: index ", i, " outside [0, ", size_, ")");
  double v = 0.0;
#if defined(TETHER_HAVE_CUDA)
  check(cudaMemcpy(&v, data_ + i, sizeof v, cudaMemcpyDeviceToHost), "value_at");
#endif
  return v;
}

Vector DeviceVector::to_host() const {
  Vector host;
  download(host);
  return host;
}

}  // namespace tether::device
