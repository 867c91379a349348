// The part of cuBLAS tether uses, as the CPU emulator provides it (cublasDgemm: a plain triple
// loop in column-major order over device allocations, checked); on the include path only in a
// -DTETHER_CUDA=EMULATE build.
#pragma once
#include "../cuda_emulation.hpp"

enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_INVALID_VALUE = 7,
};

enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };

struct cublasContext;
using cublasHandle_t = cublasContext*;

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
/// C = alpha op(A) op(B) + beta C (column-major; alpha and beta host pointers; C not read when
/// beta is 0).
cublasStatus_t cublasDgemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b,
                           int m, int n, int k, const double* alpha, const double* a, int lda,
                           const double* b, int ldb, const double* beta, double* c, int ldc);
