// exp(x) in double as straight-line arithmetic, so a loop of them vectorises (the library call
// std::exp does not) and the CPU path and the CUDA kernels run the same operations.
//
//   x = k ln 2 + r,  k = rint(x / ln 2),  |r| <= ln 2 / 2      (Cody-Waite: ln 2 = hi + lo, hi
//                                                               with 21 trailing zero bits, so
//                                                               k hi is exact for |k| < 2^21)
//   exp(r) = 1 + r + r^2 sum_{j <= 11} r^j / (j + 2)!          (Estrin; truncation < 6e-18)
//   exp(x) = exp(r) 2^h 2^(k - h),  h = rint(k / 2)            (two factors: each a normal
//                                                               power of two even where 2^k
//                                                               is subnormal or overflows)
// rint is the shifter trick (x + 1.5 2^52) - 1.5 2^52 and 2^h is built from the shifted
// value's low bits, so no float-to-integer conversion (which SSE/AVX2 lack for 64 bits) occurs.
//
// Accuracy: within 1 ulp of the correctly rounded exp on [-745, 709.78] (tests/fast_exp_test.cpp
// measures it against std::exp), with or without FMA contraction. Special values: exp(-inf) =
// 0 and x < -745.13 gives 0 (the true value rounds to 0); x > 709.78 and +inf give +inf; NaN
// gives NaN. Clamping x to [-746, 709.8] first keeps every intermediate finite.
//
// Always inlined: a loop vectorises over it only where it is inlined, and GCC once left it a
// call inside the gating hierarchy's gate pass (half of that evaluate's time, 1.75x slower).
// Vectorisation needs the compiler to if-convert the two clamps: GCC does so only under
// -fno-trapping-math (set on every tether target: tether never relies on floating-point traps).
//
// Fused multiply-adds: every a * b + c of the reduction and the polynomial is mul_add(a, b, c),
// one rounding where the hardware has FMA (CUDA devices; host builds for an FMA instruction set,
// e.g. TETHER_NATIVE=ON), two roundings otherwise (the portable x86-64 build: a library fma
// there would be slow). Both are within 1 ulp; they can differ from each other in the last bit,
// so a native build and the portable one may print different last digits. The FMA form needs
// about 40% fewer instructions, which is what the exp-bound budget-manifold passes run on.
#pragma once

#include <cstdint>
#include <tether/core/bits.hpp>
#include <tether/core/hd.hpp>

namespace tether {

namespace fast_exp_detail {

using bits::bits_of;
using bits::double_of;

constexpr double kShifter = 0x1.8p52;  // 1.5 2^52: adding it rounds to an integer

/// 2^n for shifted = n + 1.5 2^52 (n an integer, |n| <= 1022): the low bits of the shifted
/// value's significand are n in two's complement; << 52 moves them into the exponent field.
TETHER_HD_INLINE double power_of_two(double shifted) {
  return double_of((bits_of(shifted) << 52) + (std::uint64_t{1023} << 52));
}

/// a * b + c: fused (one rounding) where the hardware has FMA, else multiply then add. Spelled
/// out because the build sets -ffp-contract=off, so the compiler never fuses on its own.
TETHER_HD_INLINE double mul_add(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return fma(a, b, c);
#elif defined(__FMA__)
  return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}

}  // namespace fast_exp_detail

TETHER_HD_INLINE double fast_exp(double x) {
  using namespace fast_exp_detail;
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 0x1.62e42fee00000p-1;  // 21 trailing zero bits
  constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
  double xc = x < -746.0 ? -746.0 : x;  // NaN passes both clamps unchanged
  xc = xc > 709.8 ? 709.8 : xc;
  const double k = mul_add(xc, kLog2e, kShifter) - kShifter;
  const double r = mul_add(-k, kLn2Lo, mul_add(-k, kLn2Hi, xc));
  // exp(r) = 1 + (r + r^2 P(r)), P(r) = sum_{j=0}^{11} r^j / (j + 2)! by Estrin's scheme: a
  // dependency depth of 5 instead of Horner's 12, so the exponentials of one row overlap; the
  // leading 1 + r is added last, which keeps the result within 1 ulp.
  const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  const double q0 = mul_add(r, 1.0 / 6.0, 1.0 / 2.0), q1 = mul_add(r, 1.0 / 120.0, 1.0 / 24.0),
               q2 = mul_add(r, 1.0 / 5040.0, 1.0 / 720.0),
               q3 = mul_add(r, 1.0 / 362880.0, 1.0 / 40320.0),
               q4 = mul_add(r, 1.0 / 39916800.0, 1.0 / 3628800.0),
               q5 = mul_add(r, 1.0 / 6227020800.0, 1.0 / 479001600.0);
  const double s0 = mul_add(q1, r2, q0), s1 = mul_add(q3, r2, q2), s2 = mul_add(q5, r2, q4);
  const double tail = mul_add(s2, r8, mul_add(s1, r4, s0));
  const double p = 1.0 + mul_add(r2, tail, r);
  const double half_shifted = mul_add(k, 0.5, kShifter);  // h + 1.5 2^52, h = rint(k / 2)
  const double h = half_shifted - kShifter;
  return p * power_of_two(half_shifted) * power_of_two((k - h) + kShifter);
}

}  // namespace tether
