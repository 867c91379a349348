// TETHER_HD marks per-row / per-group math that the CPU path and the CUDA kernels share:
// __host__ __device__ under nvcc, nothing otherwise. Kept free of other includes so .cu files
// can use it without pulling in Eigen.
#pragma once

#if defined(__CUDACC__)
#define TETHER_HD __host__ __device__
#else
#define TETHER_HD
#endif

// TETHER_LANES before a fixed-length loop over the lanes of a row pass (simplex_row's lane
// arrays) asks the host compiler to vectorise it (OpenMP simd; tether compiles with
// -fopenmp-simd). The lane structure fixes the order of every sum, so the result is the same
// whatever the vector width. Nothing under nvcc, whose threads run the loop as written.
#if defined(__CUDACC__)
#define TETHER_LANES
#else
#define TETHER_LANES _Pragma("omp simd")
#endif

// TETHER_HD_INLINE: TETHER_HD, always inlined. For the per-entry terms of the row passes, which
// must inline into their lane loops to vectorise there (GCC's heuristics otherwise leave a
// call per entry once such a function grows past a few operations).
#if defined(__CUDACC__)
#define TETHER_HD_INLINE __host__ __device__ __forceinline__
#else
#define TETHER_HD_INLINE __attribute__((always_inline)) inline
#endif
