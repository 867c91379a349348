// TETHER_HD marks per-row / per-group math that the CPU path and the CUDA kernels share:
// __host__ __device__ under nvcc, nothing otherwise. Kept free of other includes so .cu files
// can use it without pulling in Eigen.
#pragma once

#if defined(__CUDACC__)
#define TETHER_HD __host__ __device__
#else
#define TETHER_HD
#endif
