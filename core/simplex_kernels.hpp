// The raw-pointer boundary of the simplex-type projections' CUDA kernels (no Eigen here, so
// nvcc compiles only plain C++). Implemented in simplex_kernels.cu; used by
// simplex_projections.cpp, which validates every argument first. All pointers are host
// pointers; x is row-major with `stride` values between rows. On return status[r] and
// index[r] hold row r's simplex_row::RowResult status and offending entry.
#pragma once

namespace tether::device::simplex_kernels {

/// Number of CUDA devices (0 when the runtime finds none).
int device_count();

/// Every row onto the simplex {p >= 0, sum p = z} (l1 == false) or the l1 ball (l1 == true);
/// sorted == true: the sort-based algorithm, else Condat's. z >= 0 finite.
void threshold_rows(double* x, long long rows, long long n, long long stride, double z, bool l1,
                    bool sorted, int* status, long long* index);
/// The same in float (the row code's float instantiation).
void threshold_rows(float* x, long long rows, long long n, long long stride, float z, bool l1,
                    bool sorted, int* status, long long* index);

/// A rows x n batch held on the device (contiguous rows), for repeated projections without
/// host copies (training loops, the benchmarks). status and index: host arrays of rows entries.
struct ResidentRows;
ResidentRows* create_rows(long long rows, long long n);
void destroy_rows(ResidentRows* resident);
void upload_rows(ResidentRows* resident, const double* x, long long stride);
void download_rows(const ResidentRows* resident, double* x, long long stride);
void threshold_resident(ResidentRows* resident, double z, bool l1, bool sorted, int* status,
                        long long* index);
/// The box section on resident rows (lower, upper, weight as for box_section_rows).
void box_section_resident(ResidentRows* resident, const double* lower, long long lower_size,
                          const double* upper, long long upper_size, const double* weight,
                          long long weight_size, double total, bool sorted, int* status,
                          long long* index);

/// Every row onto {l <= p <= u, w^T p = c}. lower, upper, weight hold n values or 1 (shared);
/// the *_size arguments say which. sorted == true: breakpoint search, else Newton.
void box_section_rows(double* x, long long rows, long long n, long long stride, const double* lower,
                      long long lower_size, const double* upper, long long upper_size,
                      const double* weight, long long weight_size, double total, bool sorted,
                      int* status, long long* index);
/// The same in float.
void box_section_rows(float* x, long long rows, long long n, long long stride, const float* lower,
                      long long lower_size, const float* upper, long long upper_size,
                      const float* weight, long long weight_size, float total, bool sorted,
                      int* status, long long* index);

}  // namespace tether::device::simplex_kernels
