// Why a solver stopped, and what it saw on the way: one IterationRecord per iteration.
#pragma once

#include <limits>
#include <string>
#include <vector>

namespace tether {

enum class StopReason {
  kConverged,           ///< A tolerance was met (or the answer is unique, e.g. K = 1).
  kIterationLimit,      ///< The configured number of iterations ran out.
  kNumericalError,      ///< NaN/Inf from the problem or the iteration; last finite iterate kept.
  kInfeasibleInput,     ///< The constraint set turned out empty during the run. (Input that is
                        ///< infeasible up front, e.g. a budget outside its range, is refused
                        ///< with InfeasibleError before any iteration.)
  kDegenerateManifold,  ///< The constraint normal vanished (all rows one-hot): no tangent space.
  kStoppedByCallback,   ///< A callback asked to stop.
};

inline const char* to_string(StopReason r) {
  switch (r) {
    case StopReason::kConverged:
      return "converged";
    case StopReason::kIterationLimit:
      return "iteration limit";
    case StopReason::kNumericalError:
      return "numerical error";
    case StopReason::kInfeasibleInput:
      return "infeasible input";
    case StopReason::kDegenerateManifold:
      return "degenerate manifold";
    case StopReason::kStoppedByCallback:
      return "stopped by callback";
  }
  return "unknown";
}

/// One row of a solver's history.
struct IterationRecord {
  int iteration = 0;
  double loss = 0.0;                 ///< loss of this iteration (mean over samples where sampled)
  double best_loss = 0.0;            ///< best true loss of a feasible hard answer so far
  double constraint_residual = 0.0;  ///< e.g. expected cost minus budget after the step
  double step_seconds = 0.0;         ///< wall time of this iteration
  double temperature = 0.0;          ///< Gumbel temperature where one is used, else 0
  int retraction_passes = 0;         ///< passes over the data the retraction needed
  /// Distance of the iterate to the problem's known solution, where the problem supplies one
  /// (`solution_error`); NaN otherwise.
  double error = std::numeric_limits<double>::quiet_NaN();
};

struct History {
  std::vector<IterationRecord> rows;
  void push_back(const IterationRecord& r) { rows.push_back(r); }
  std::size_t size() const { return rows.size(); }
  bool empty() const { return rows.empty(); }
  const IterationRecord& back() const { return rows.back(); }
};

}  // namespace tether
