// The retraction's root finding, written once for the CPU path and the CUDA kernels.
//
// Solves phi(t) = B for one budget, phi(t) = sum_i E_i(alpha_i + t c_i), nondecreasing with
// phi'(t) = sum_i Var_i >= 0 (manifolds/budget_row.hpp computes both in one pass). Safeguarded
// Newton:
//   - the bracket [lo, hi] shrinks with every evaluation (phi < B: lo = t; else hi = t);
//   - a Newton step outside the bracket, with phi' = 0, or after an evaluation that did not
//     halve |phi - B|, becomes a bisection (closed bracket) or a doubling step away from the
//     open end (the first step moves the widest row by one logit: 1 / max_i (max c_i - min c_i));
//   - an open-bracket Newton step is capped by the same doubling step, so a flat tail cannot
//     throw t to infinity;
//   - stop when |phi - B| <= tol (then one polishing Newton step, kept only if it helps), when
//     the bracket is a few ulps wide (the root is not representable to tol: "saturated"), or
//     after max_passes evaluations (reported, never looped).
// The caller owns the passes over the data: it evaluates phi and phi' at query(), feeds them in,
// and repeats while feed() returns true. The CPU retraction (budget_manifold.cpp) and the
// device kernels (budget_kernels.cu: one block per instance, or the whole grid for one large
// instance) run this same state machine, so they take the same decisions from the same sums.
#pragma once

#include <cmath>
#include <tether/core/hd.hpp>

namespace tether::budget_root {

struct SafeguardedNewton {
  // ---- the problem ----
  double target = 0.0;     ///< B
  double tolerance = 0.0;  ///< stop at |phi - B| <= tolerance
  int max_passes = 100;
  bool at_most = false;  ///< C <= B: a start with phi <= B is already feasible
  // ---- the iterate ----
  double t = 0.0;                 ///< accepted shift
  double phi = 0.0, slope = 0.0;  ///< phi(t), phi'(t) once fed
  int passes = 0;                 ///< evaluations fed so far
  bool converged = false;         ///< |phi - B| <= tolerance (or feasible, at most)
  bool saturated = false;         ///< the bracket collapsed before reaching the tolerance
  bool feasible_start = false;    ///< at most: phi(0) <= B, so nothing is to be shifted
  // ---- the safeguards ----
  double lo = -HUGE_VAL, hi = HUGE_VAL;
  double step = 1.0;  ///< the open-bracket step, doubled at each use
  double last_abs = HUGE_VAL;
  bool force_bisection = false;
  bool polishing = false;  ///< the next evaluation is the polishing trial at trial_t
  double trial_t = 0.0;
};

TETHER_HD inline bool finite(double x) { return x == x && fabs(x) <= 1.7976931348623157e308; }

/// Starts the search at t = 0. spread = the largest row cost range (> 0 for a feasible budget
/// strictly inside its range).
TETHER_HD inline void start(SafeguardedNewton& s, double target, double tolerance, int max_passes,
                            bool at_most, double spread) {
  s = SafeguardedNewton{};
  s.target = target;
  s.tolerance = tolerance;
  s.max_passes = max_passes;
  s.at_most = at_most;
  s.step = 1.0 / spread;
}

/// Where the caller evaluates phi and phi' next.
TETHER_HD inline double query(const SafeguardedNewton& s) { return s.polishing ? s.trial_t : s.t; }

/// Takes phi(query(s)) and phi'(query(s)); true when another evaluation (at query(s)) is wanted.
TETHER_HD inline bool feed(SafeguardedNewton& s, double phi, double slope) {
  ++s.passes;
  if (s.polishing) {  // keep the polishing step only if it helps
    s.polishing = false;
    if (fabs(phi - s.target) < fabs(s.phi - s.target)) {
      s.t = s.trial_t;
      s.phi = phi;
      s.slope = slope;
    }
    return false;
  }
  s.phi = phi;
  s.slope = slope;
  if (s.passes == 1) {
    if (s.at_most && phi <= s.target) {
      s.converged = true;  // inside the feasible set: nothing to do
      s.feasible_start = true;
      return false;
    }
  } else {
    const double now_abs = fabs(phi - s.target);
    s.force_bisection = now_abs > 0.5 * s.last_abs;  // Newton not contracting: halve the bracket
    s.last_abs = now_abs;
  }
  const double r = phi - s.target;
  if (fabs(r) <= s.tolerance) {
    s.converged = true;
    // Newton converges quadratically: one more step from just inside the tolerance usually
    // lands at round-off.
    if (fabs(r) > 0.01 * s.tolerance && slope > 0.0 && s.passes < s.max_passes) {
      s.trial_t = s.t - r / slope;
      s.polishing = true;
      return true;
    }
    return false;
  }
  if (r < 0.0)
    s.lo = s.t;
  else
    s.hi = s.t;  // phi is nondecreasing: the root is above lo, below hi
  const bool closed = finite(s.lo) && finite(s.hi);
  if (closed) {
    const double scale = fabs(s.lo) > fabs(s.hi) ? fabs(s.lo) : fabs(s.hi);
    if (s.hi - s.lo <= 4.0 * 2.220446049250313e-16 * scale) {
      s.saturated = true;  // the root is not representable to this tolerance
      return false;
    }
  }
  if (s.passes >= s.max_passes) return false;
  double t_new = s.t - r / slope;  // Newton
  const bool newton_ok = slope > 0.0 && finite(t_new) && t_new > s.lo && t_new < s.hi;
  if (!newton_ok || s.force_bisection) {
    if (closed) {
      t_new = 0.5 * (s.lo + s.hi);
    } else if (finite(s.lo)) {
      t_new = s.lo + s.step;
      s.step *= 2.0;
    } else {
      t_new = s.hi - s.step;
      s.step *= 2.0;
    }
  } else if (!closed) {
    // Open bracket: cap the Newton step so a flat tail cannot throw t to infinity.
    if (fabs(t_new - s.t) > s.step) {
      t_new = s.t + copysign(s.step, t_new - s.t);
      s.step *= 2.0;
    }
  }
  s.t = t_new;
  return true;
}

}  // namespace tether::budget_root
