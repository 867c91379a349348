// Bit casts between floating-point numbers and their bit patterns, the same on the host
// (memcpy) and the device (intrinsics), for the shared row code; double and float.
#pragma once

#include <cstdint>
#include <cstring>
#include <tether/core/hd.hpp>

namespace tether::bits {

/// The integer types of a floating-point type's bit pattern.
template <class F>
struct Pattern;
template <>
struct Pattern<double> {
  using Unsigned = std::uint64_t;
  using Signed = std::int64_t;
  static constexpr Signed kMagnitude = INT64_MAX;  ///< every bit but the sign
};
template <>
struct Pattern<float> {
  using Unsigned = std::uint32_t;
  using Signed = std::int32_t;
  static constexpr Signed kMagnitude = INT32_MAX;
};

/// The type of order_key(F) (below).
template <class F>
using Key = typename Pattern<F>::Signed;

/// The floating-point type whose order key (below) is the signed integer type S.
template <class S>
struct KeyOf;
template <>
struct KeyOf<std::int64_t> {
  using Float = double;
};
template <>
struct KeyOf<std::int32_t> {
  using Float = float;
};

template <class F>
TETHER_HD typename Pattern<F>::Unsigned bits_of(F x) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(F) == 8)
    return static_cast<std::uint64_t>(__double_as_longlong(x));
  else
    return static_cast<std::uint32_t>(__float_as_int(x));
#else
  typename Pattern<F>::Unsigned b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

template <class F>
TETHER_HD F from_bits(typename Pattern<F>::Unsigned b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(F) == 8)
    return __longlong_as_double(static_cast<long long>(b));
  else
    return __int_as_float(static_cast<int>(b));
#else
  F x;
  std::memcpy(&x, &b, sizeof x);
  return x;
#endif
}

TETHER_HD inline double double_of(std::uint64_t b) { return from_bits<double>(b); }

/// An integer key with the order of the floating-point numbers (for non-NaN x: x < y iff
/// key(x) < key(y), except that -0 sorts below +0): the sign-magnitude pattern turned
/// two's-complement. Integer max vectorises where the floating-point select with NaN semantics
/// does not.
template <class F>
TETHER_HD typename Pattern<F>::Signed order_key(F x) {
  using Signed = typename Pattern<F>::Signed;
  constexpr int kSignBit = 8 * sizeof(Signed) - 1;
  const auto b = static_cast<Signed>(bits_of(x));
  return b ^ ((b >> kSignBit) & Pattern<F>::kMagnitude);
}

/// The number whose order_key is k (double for 64-bit keys, float for 32-bit ones).
template <class S>
TETHER_HD typename KeyOf<S>::Float of_order_key(S k) {
  using Float = typename KeyOf<S>::Float;
  constexpr int kSignBit = 8 * sizeof(S) - 1;
  return from_bits<Float>(static_cast<typename Pattern<Float>::Unsigned>(
      k ^ ((k >> kSignBit) & Pattern<Float>::kMagnitude)));
}

}  // namespace tether::bits
