// Running a computation with a given number of OpenMP threads, for the tests that check that a
// result does not depend on the thread count.
#pragma once

#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tether::testing {

/// f() with `threads` OpenMP threads, the previous count restored afterwards; without OpenMP,
/// just f().
template <class F>
auto with_threads(int threads, F&& f) {
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  struct Restore {
    int count;
    ~Restore() { omp_set_num_threads(count); }
  } restore{saved};
#else
  (void)threads;
#endif
  return std::forward<F>(f)();
}

}  // namespace tether::testing
