// Bit casts between double and its 64-bit pattern, the same on the host (memcpy) and the
// device (intrinsics), for the shared row code.
#pragma once

#include <cstdint>
#include <cstring>
#include <tether/core/hd.hpp>

namespace tether::bits {

TETHER_HD inline std::uint64_t bits_of(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint64_t>(__double_as_longlong(x));
#else
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

TETHER_HD inline double double_of(std::uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(b));
#else
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
#endif
}

/// An integer key with the order of the doubles (for non-NaN x: x < y iff key(x) < key(y),
/// except that -0 sorts below +0): the sign-magnitude pattern turned two's-complement. Integer
/// max vectorises where the floating-point select with NaN semantics does not.
TETHER_HD inline std::int64_t order_key(double x) {
  const auto b = static_cast<std::int64_t>(bits_of(x));
  return b ^ ((b >> 63) & INT64_MAX);
}

/// The float versions: 32-bit patterns and keys.
TETHER_HD inline std::uint32_t bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint32_t>(__float_as_int(x));
#else
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

TETHER_HD inline float float_of(std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(static_cast<int>(b));
#else
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
#endif
}

TETHER_HD inline std::int32_t order_key(float x) {
  const auto b = static_cast<std::int32_t>(bits_of(x));
  return b ^ ((b >> 31) & INT32_MAX);
}

TETHER_HD inline float of_order_key(std::int32_t k) {
  return float_of(static_cast<std::uint32_t>(k ^ ((k >> 31) & INT32_MAX)));
}

/// The double whose order_key is k.
TETHER_HD inline double of_order_key(std::int64_t k) {
  return double_of(static_cast<std::uint64_t>(k ^ ((k >> 63) & INT64_MAX)));
}

}  // namespace tether::bits
