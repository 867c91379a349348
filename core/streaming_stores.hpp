// Non-temporal ("streaming") stores for the CPU passes that write large outputs which are not read
// again while they could still be in cache. An ordinary store first reads the line it writes
// (write-allocate), so a pass that reads a bytes and writes b moves a + 2 b; streamed, it moves
// a + b. On this project's 2-core machine a loop copying 128 MB ran at 46.6 GB/s (read + write)
// with ordinary stores and at 58 GB/s streamed, against 40-45 GB/s for memcpy.
//
// Worth it only where a pass's outputs exceed the last-level cache (min_bytes()): below that the
// next pass finds them in cache, and streaming would send them to memory. In the real passes
// the measured effect is within this machine's run-to-run spread (benchmarks/README.md, ninth
// session): the gating hierarchy's token passes (BM_FiberPoGatePlanned 1e7, median of 8
// interleaved: 32.8 -> 28.2 ms; 1e8 218 -> 236 ms, the other way) and the retain projection's
// results (1e6 x 16: 19.0 -> 17.1 ms) use it; the PPO-clip / GRPO kernel (read 24 bytes a token,
// write 8) measured no gain and does not.
// The values written are the same either way; only the traffic differs (tests compare the two, bit
// for bit, by moving the threshold). Host code only: x86-64's SSE2 baseline (MOVNTPD, MOVNTI);
// plain stores elsewhere.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#error "core/streaming_stores.hpp is host code: not for .cu files"
#endif
#if defined(__x86_64__)
#include <emmintrin.h>
#define TETHER_STREAMING_STORES 1
#endif

namespace tether::streaming {

/// A pass streams its outputs when they take at least this many bytes in all: 32 MiB (a
/// last-level cache) unless set_min_bytes changed it.
long long min_bytes();
/// Sets the threshold (tests force streaming with 0, or turn it off with a huge value); returns
/// the previous one. Not to be changed while a pass runs.
long long set_min_bytes(long long bytes);

/// Whether a pass writing `bytes` in all streams them.
inline bool worth_it(long long bytes) { return bytes >= min_bytes(); }

/// Writes v[0..8) to dst[0..8) without allocating their lines in cache where dst is 16-byte aligned
/// (ordinary stores otherwise).
inline void store8(double* dst, const double* v) {
#if defined(TETHER_STREAMING_STORES)
  if (reinterpret_cast<std::uintptr_t>(dst) % 16 == 0) {
    for (int k = 0; k < 8; k += 2) _mm_stream_pd(dst + k, _mm_loadu_pd(v + k));
    return;
  }
#endif
  std::memcpy(dst, v, 8 * sizeof(double));
}

/// Writes the bytes v[0..8) to dst[0..8) without allocating their line in cache where dst is 8-byte
/// aligned (an ordinary store otherwise).
inline void store8(std::uint8_t* dst, const std::uint8_t* v) {
#if defined(TETHER_STREAMING_STORES)
  if (reinterpret_cast<std::uintptr_t>(dst) % 8 == 0) {
    long long bits;
    std::memcpy(&bits, v, sizeof bits);
    _mm_stream_si64(reinterpret_cast<long long*>(dst), bits);
    return;
  }
#endif
  std::memcpy(dst, v, 8);
}

/// Writes v[0..count) to dst[0..count): streamed by 8 where `stream`, the rest plainly.
template <class T>
inline void put(T* dst, const T* v, int count, bool stream) {
  int k = 0;
  if (stream)
    for (; k + 8 <= count; k += 8) store8(dst + k, v + k);
  if (k < count) std::memcpy(dst + k, v + k, static_cast<std::size_t>(count - k) * sizeof(T));
}

/// Orders this thread's streamed stores before its later ones: call it once a thread has
/// streamed its share, before another thread may read it.
inline void fence() {
#if defined(TETHER_STREAMING_STORES)
  _mm_sfence();
#endif
}

/// Tokens (entries) per block in the elementwise passes below: a block's outputs are computed
/// into locals (the loop vectorises, also where it writes bytes beside doubles) and then written.
constexpr int kBlock = 64;

/// A streamed elementwise pass over [begin, end): one(i) computes and stores entry i, for the
/// entries before the first multiple of kBlock; from there block(i, count) computes entries
/// [i, i + count) into locals and writes them with put() (i is a multiple of kBlock, so arrays
/// aligned to 16 bytes take streamed stores); the thread's stores are then fenced. The caller
/// computes each entry with the same code in both, and in its unstreamed loop, so the values
/// are the same bits whichever runs.
template <class One, class Block>
inline void by_blocks(long long begin, long long end, One&& one, Block&& block) {
  long long i = begin;
  const long long head = (begin + kBlock - 1) / kBlock * kBlock;
  for (; i < head && i < end; ++i) one(i);
  for (; i < end; i += kBlock) block(i, static_cast<int>(end - i < kBlock ? end - i : kBlock));
  fence();
}

/// out[i] = value(i) over [begin, end), streamed by blocks (by_blocks).
template <class T, class Value>
inline void map(long long begin, long long end, T* __restrict__ out, Value&& value) {
  by_blocks(
      begin, end, [&](long long i) { out[i] = value(i); },
      [&](long long i, int count) {
        T block[kBlock];
        for (int l = 0; l < count; ++l) block[l] = value(i + l);
        put(out + i, block, count, true);
      });
}

}  // namespace tether::streaming
