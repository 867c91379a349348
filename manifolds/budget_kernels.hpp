// The raw-pointer boundary of the budget manifold's CUDA kernels (no Eigen here, so nvcc
// compiles only plain C++). Implemented in budget_kernels.cu; used by budget_device.cpp.
#pragma once

namespace tether::device::kernels {

/// Number of CUDA devices (0 when the runtime finds none).
int device_count();

/// phi(t) = sum_i E_i and phi'(t) = sum_i Var_i over row-major n x k logits and costs (host
/// pointers), computed on the device. Throws tether::Error on a CUDA failure.
void phi_and_slope(const double* alpha, const double* costs, int n, int k, double t, double* phi,
                   double* slope);

/// What the device retraction reports for one instance (one block of rows with one budget).
struct RetractionOutcome {
  double shift = 0.0;      ///< t
  double residual = 0.0;   ///< phi(t) - B from the last evaluation
  int passes = 0;          ///< evaluations of phi
  int converged = 0;       ///< |phi - B| <= tol (or a feasible start, at most)
  int saturated = 0;       ///< the bracket collapsed first
  int feasible_start = 0;  ///< at most: nothing was shifted
};

/// The retraction of budget_manifold.cpp, root finding included, on the device: alpha (host,
/// row-major n x k) is shifted in place along the costs, instance b being rows
/// [starts[b], starts[b + 1]) with budget budgets[b]. Many instances run one CUDA block each;
/// a single large instance runs as one cooperative kernel over the whole grid (a grid-wide sync
/// per Newton pass, every block replaying the same root finder on the same sums), so no pass
/// returns to the host. As on the CPU, every pass after the first also moves the rows to the
/// shift it measures, so the last pass of the search is the final move (no separate pass; only
/// after a rejected polishing trial a second search and one move follow). Throws tether::Error
/// on a CUDA failure.
void retract(double* alpha, const double* costs, long long n, int k, const long long* starts,
             int instances, const double* budgets, double relative_tolerance, int max_passes,
             bool at_most, bool recentre, RetractionOutcome* outcomes);

/// Device-resident buffers for repeated retractions (benchmarks, training loops): costs,
/// instance starts and budgets uploaded once; alpha stays on the device between calls.
struct ResidentInstances;
ResidentInstances* create_resident(const double* costs, long long n, int k, const long long* starts,
                                   int instances, const double* budgets);
void destroy_resident(ResidentInstances* resident);
int resident_instances(const ResidentInstances* resident);
void upload_alpha(ResidentInstances* resident, const double* alpha);
void download_alpha(const ResidentInstances* resident, double* alpha);
/// The retraction on the resident alpha; outcomes (host, one per instance) are copied back.
void retract_resident(ResidentInstances* resident, double relative_tolerance, int max_passes,
                      bool at_most, bool recentre, RetractionOutcome* outcomes);

/// The tangent projection on the resident logits: a vector v (host, n x k) is uploaded once
/// (buffers allocated at the first upload), projected in place on the device, downloaded.
/// Per instance: the normal n (budget_row::normal), C, <n, n>, <n, v> in one pass (sums in a
/// fixed order), then v -= (<n, v> / <n, n>) n where the instance is active (always for
/// equality; C >= B - tol at most). Returns false, leaving v unchanged, when an active
/// instance's <n, n> is below 1e-300 (every row one-hot), as BudgetManifold::project does.
void upload_vector(ResidentInstances* resident, const double* v);
void download_vector(const ResidentInstances* resident, double* v);
bool project_resident(ResidentInstances* resident, double relative_tolerance, bool at_most);

/// Adam's constants for one step (core/adam.hpp): bias1 = 1 - beta1^t, bias2 = 1 - beta2^t.
struct AdamConstants {
  double learning_rate = 0.0, beta1 = 0.0, beta2 = 0.0, epsilon = 0.0, weight_decay = 0.0;
  double bias1 = 1.0, bias2 = 1.0;
};
struct AdamStepOutcome {
  bool degenerate = false;  ///< the gradient's projection found a degenerate block: no step
  bool accepted = false;    ///< alpha moved (the retraction converged, the point is finite)
};
/// RiemannianAdam::step on the device: the uploaded gradient (the resident vector) projected
/// at alpha, Adam's moments (kept on the device, zero at the first call) and the trial point
/// alpha + step, its retraction (outcomes: one per instance), the NaN / +inf check, and when
/// accepted alpha <- the retracted trial and the first moment transported (projected at the
/// new alpha). When not accepted alpha is unchanged (the moments have advanced, as on the CPU).
AdamStepOutcome adam_step_resident(ResidentInstances* resident, const AdamConstants& adam,
                                   double relative_tolerance, int max_passes, bool at_most,
                                   bool recentre, RetractionOutcome* outcomes);

/// Device-to-device copy bandwidth, read + write bytes per second, best of `repetitions`.
double copy_bandwidth(unsigned long long bytes, int repetitions);

}  // namespace tether::device::kernels
