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

template <class T>
T* allocate(Index n) {
  require<ShapeError>(n >= 0, "DeviceVector: size must be >= 0, got ", n);
#if defined(TETHER_HAVE_CUDA)
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    throw Error("DeviceVector: no CUDA device is present");
  void* p = nullptr;
  if (n > 0) check(cudaMalloc(&p, sizeof(T) * static_cast<std::size_t>(n)), "cudaMalloc");
  return static_cast<T*>(p);
#else
  throw Error("DeviceVector: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

}  // namespace

template <class T>
BasicDeviceVector<T>::BasicDeviceVector(Index n) : data_(allocate<T>(n)), size_(n) {}

template <class T>
BasicDeviceVector<T>::BasicDeviceVector(ConstHostRef host) : BasicDeviceVector(host.size()) {
  upload(host);
}

template <class T>
BasicDeviceVector<T>::~BasicDeviceVector() {
#if defined(TETHER_HAVE_CUDA)
  if (data_ != nullptr) cudaFree(data_);
#endif
}

template <class T>
BasicDeviceVector<T>::BasicDeviceVector(BasicDeviceVector&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

template <class T>
BasicDeviceVector<T>& BasicDeviceVector<T>::operator=(BasicDeviceVector&& other) noexcept {
  if (this != &other) {
    BasicDeviceVector gone(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

template <class T>
void BasicDeviceVector<T>::upload(ConstHostRef host) {
  require<ShapeError>(host.size() == size_, "DeviceVector::upload: host has ", host.size(),
                      " entries; the device vector ", size_);
#if defined(TETHER_HAVE_CUDA)
  if (size_ > 0)
    check(cudaMemcpy(data_, host.data(), sizeof(T) * static_cast<std::size_t>(size_),
                     cudaMemcpyHostToDevice),
          "upload");
#endif
}

template <class T>
void BasicDeviceVector<T>::download(HostVector& host) const {
  host.resize(size_);
  download(HostRef(host));
}

template <class T>
void BasicDeviceVector<T>::download(HostRef host) const {
  require<ShapeError>(host.size() == size_, "DeviceVector::download: host has ", host.size(),
                      " entries; the device vector ", size_);
#if defined(TETHER_HAVE_CUDA)
  if (size_ > 0)
    check(cudaMemcpy(host.data(), data_, sizeof(T) * static_cast<std::size_t>(size_),
                     cudaMemcpyDeviceToHost),
          "download");
#endif
}

template <class T>
T BasicDeviceVector<T>::value_at(Index i) const {
  require(i >= 0 && i < size_, "DeviceVector::value_at: index ", i, " outside [0, ", size_, ")");
  T v = T(0);
#if defined(TETHER_HAVE_CUDA)
  check(cudaMemcpy(&v, data_ + i, sizeof v, cudaMemcpyDeviceToHost), "value_at");
#endif
  return v;
}

template <class T>
typename BasicDeviceVector<T>::HostVector BasicDeviceVector<T>::to_host() const {
  HostVector host;
  download(host);
  return host;
}

template class BasicDeviceVector<double>;
template class BasicDeviceVector<float>;

}  // namespace tether::device
