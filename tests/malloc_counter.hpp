// Counting heap allocations in a test executable: malloc, calloc and realloc are interposed (glibc
// lets a program define them; operator new and Eigen's aligned_malloc both end in malloc;
// aligned_alloc and posix_memalign, which neither uses, are not counted).
// Include this header in exactly one source file of an executable. Where allocations cannot be
// counted (not glibc, or a sanitizer that owns malloc) TETHER_COUNT_MALLOC is undefined and
// allocations_during returns -1: tests skip there.
#pragma once

#include <atomic>
#include <cstddef>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || \
    __has_feature(thread_sanitizer)
#define TETHER_NO_MALLOC_HOOK 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__GLIBC__)
#define TETHER_NO_MALLOC_HOOK 1
#endif

namespace tether::testing::malloc_counter {
inline std::atomic<bool> counting{false};
inline std::atomic<long> count{0};
}  // namespace tether::testing::malloc_counter

#ifndef TETHER_NO_MALLOC_HOOK
#define TETHER_COUNT_MALLOC 1
extern "C" void* __libc_malloc(std::size_t size);
extern "C" void* __libc_calloc(std::size_t n, std::size_t size);
extern "C" void* __libc_realloc(void* p, std::size_t size);
extern "C" void* malloc(std::size_t size) noexcept {
  namespace mc = tether::testing::malloc_counter;
  if (mc::counting.load(std::memory_order_relaxed)) mc::count.fetch_add(1);
  return __libc_malloc(size);
}
extern "C" void* calloc(std::size_t n, std::size_t size) noexcept {
  namespace mc = tether::testing::malloc_counter;
  if (mc::counting.load(std::memory_order_relaxed)) mc::count.fetch_add(1);
  return __libc_calloc(n, size);
}
extern "C" void* realloc(void* p, std::size_t size) noexcept {
  namespace mc = tether::testing::malloc_counter;
  if (mc::counting.load(std::memory_order_relaxed)) mc::count.fetch_add(1);
  return __libc_realloc(p, size);
}
#endif

namespace tether::testing {

/// The heap allocations made while f() runs (on any thread), or -1 where they cannot be counted.
template <class F>
long allocations_during(F&& f) {
  namespace mc = malloc_counter;
#ifdef TETHER_COUNT_MALLOC
  mc::count = 0;
  mc::counting = true;
  f();
  mc::counting = false;
  return mc::count.load();
#else
  f();
  return -1;
#endif
}

}  // namespace tether::testing
