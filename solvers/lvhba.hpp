// LV-HBA: proximal Lagrangian Value function-based Hessian-free Bi-level Algorithm.
// Yao, Yu, Zeng, Zhang, Zhang, "Constrained Bi-Level Optimization: Proximal Lagrangian Value
// Function Approach and Hessian-free Algorithm", ICLR 2024. Public code:
// SUSTech-Optimization/LV-HBA (Python). Spec: specs/bilevel.md sections 1 and 2.
//
// Problem (core/bilevel_problem.hpp):
//   min_{(x,y) in C} F(x,y)  s.t.  y in argmin_theta {f(x,theta) : g(x,theta) <= 0, theta in Y}
// with C = {(x, y) in X x Y : g(x, y) <= 0} (g = 0 for an equality-coupled lower level). The
// lower level needs only convexity (its solution set need not be a point).
//
// Proximal Lagrangian value function, gamma = (gamma1, gamma2) > 0:
//   v(x, y, z) = min_theta max_{lam in Z} f(x, theta) + lam^T g(x, theta)
//                                         + |theta - y|^2 / (2 gamma1) - |lam - z|^2 / (2 gamma2),
// Z = [0, r]^l for inequalities, [-r, r]^l for equalities. LV-HBA descends
//   phi_k(x, y, z) = F(x, y) / c_k + f(x, y) - v(x, y, z),   c_k = c0 (k + 1)^p,  p in (0, 1/2),
// tracking the inner saddle point (theta, lam) of v by one projected step per iteration.
//
// One iteration k = 0, 1, ... (the order matters; spec section 2):
//   c_k   = c0 (k + 1)^p
//   (a) one projected descent/ascent step on the inner saddle problem, both directions first:
//   d_th  = grad_y f(x, theta) + J_y g(x, theta)^T lam + (theta - y) / gamma1
//   d_lam = -g(x, theta) + (lam - z) / gamma2
//   theta = Proj_Y(theta - eta d_th);    lam = Proj_Z(lam - eta d_lam)
//   (b) the outer step, with the NEW theta and lam:
//   d_x   = grad_x F(x, y) / c_k + grad_x f(x, y) - grad_x f(x, theta) - J_x g(x, theta)^T lam
//   d_y   = grad_y F(x, y) / c_k + grad_y f(x, y) - (y - theta) / gamma1
//   (x, y) = Proj_C((x, y) - alpha (d_x, d_y))
//   z     = Proj_Z(z + beta (lam - z) / gamma2)
// Start: (x0, y0) is projected onto C (an infeasible start is projected, never trusted);
// theta0 = Proj_Y(y0) after that; lam0 = z0 = `initial_multiplier` (or `initial_multipliers`),
// which must lie in Z (refused otherwise, never clamped silently).
//
// Defaults: the spec's checked settings for its toy T2 (problems/bilevel_toys.hpp), which
// converge there with no penalty bias (relative x error 0.25 at 1k iterations, 7e-3 at 5k,
// 2.4e-4 at 10k, 1e-6 at 20k, 3e-12 at 50k; reproduced to within 3 %): alpha 5e-3, beta 2e-3,
// eta 3e-2, gamma1 10, gamma2 1, c_k = (k + 1)^0.3, r = 1, 10000 iterations. One difference:
// T2's checked run starts at lam0 = z0 = -1 (its optimal multiplier, outside the inequality
// box); the default start is 0, inside Z for either kind (T2 from 0 gives the same errors to
// 3 digits; problems::T2::checked_options() sets -1).
//
// Pitfall (spec section 2): the public toy script's defaults (alpha 0.008, beta 0.02,
// eta 0.01, gamma1 = gamma2 = 10, c_k = 0.025 (k + 1)^0.3, r = 1000) do NOT converge on its own
// toy (T1, n = 100; relative x error 120 after 1500 iterations from the script's start, 49
// from 0): the multiplier step is unstable for large n unless the multiplier box is tight
// (tests/lvhba_test.cpp records the divergence). Do not copy them; r bounds lam and z.
//
// Stopping: after max_iterations, or (tolerance > 0) when the step of the whole state is small,
//   |(x, y, theta, lam, z)_{k+1} - (x, y, theta, lam, z)_k| <= tolerance max(1, |state_{k+1}|),
// or when a callback asks. The default tolerance 0 runs every iteration: LV-HBA moves slowly by
// design (alpha ~ 1e-3, and the penalty weight 1/c_k keeps changing), so a small step does not
// mean a small error (on T2 tolerance 1e-6 stops at relative x error 1.9e-3, 1e-10 at 2.8e-7),
// and the spec's accuracies are stated per iteration count. NaN/Inf from any oracle or in an
// iterate stops the run with kNumericalError and the last finite iterate.
// The loop allocates nothing (pre-sized buffers; the problem's oracles write in place): about
// 1 us an iteration on T2 at n = 100, 10 us at n = 1000 (one core, Release).
//
//   tether::problems::T2 problem(100);
//   tether::LvHbaSolver solver(tether::problems::T2::checked_options());
//   tether::LvHbaResult r = solver.minimize(problem, problem.start_x(), problem.start_y());
//   r.x; r.y; r.lam; r.upper_value; r.history.back().error;
#pragma once

#include <limits>
#include <string>
#include <tether/core/bilevel_problem.hpp>
#include <tether/core/callbacks.hpp>
#include <tether/core/result.hpp>
#include <tether/core/types.hpp>

namespace tether {

struct LvHbaOptions {
  double alpha = 5e-3;   ///< outer step on (x, y)
  double beta = 2e-3;    ///< step on the proximal centre z of the multipliers
  double eta = 3e-2;     ///< inner step on (theta, lam)
  double gamma1 = 10.0;  ///< proximal weight of theta around y
  double gamma2 = 1.0;   ///< proximal weight of lam around z
  double c0 = 1.0;       ///< c_k = c0 (k + 1)^p: the weight of F is 1 / c_k
  double p = 0.3;        ///< in (0, 1/2)
  /// r: multipliers and z live in [0, r] (inequality) or [-r, r] (equality).
  double multiplier_bound = 1.0;
  int max_iterations = 10000;
  /// Relative step tolerance (see the header); 0 runs all max_iterations.
  double tolerance = 0.0;
  /// lam0 = z0 = this value in every entry, unless `initial_multipliers` is non-empty.
  double initial_multiplier = 0.0;
  Vector initial_multipliers{};  ///< lam0 = z0 (size constraint_count), overrides the fill
  /// Record (and show the callbacks) every k-th iteration; the last iteration always.
  int history_every = 1;

  bool is_valid(std::string* why) const;
};

/// What LvHbaSolver returns: the last finite iterate and why it stopped.
struct LvHbaResult {
  Vector x;                          ///< upper-level variable
  Vector y;                          ///< lower-level variable, (x, y) in C
  Vector theta;                      ///< inner (proximal) lower-level iterate
  Vector lam;                        ///< multiplier of the coupled constraint g (in Z)
  Vector z;                          ///< proximal centre of lam (in Z)
  double upper_value = 0.0;          ///< F(x, y)
  double constraint_residual = 0.0;  ///< max(0, max g(x, y)) or max |g(x, y)| (equality)
  /// The problem's solution_error(x, y) where it has one, NaN otherwise.
  double error = std::numeric_limits<double>::quiet_NaN();

  StopReason status = StopReason::kIterationLimit;
  std::string message;
  int iterations = 0;  ///< iterations completed (the returned iterate is after this many)
  double seconds = 0.0;
  /// Row `iteration` = k (0-based) describes the iterate after iteration k, i.e. after k + 1
  /// updates: loss = F(x, y), constraint_residual as above, error = solution_error(x, y) (NaN
  /// where the problem knows none), step_seconds = mean wall time of the iterations since the
  /// previous row.
  History history;
};

class LvHbaSolver {
 public:
  using Options = LvHbaOptions;

  /// Throws InvalidArgumentError naming the field and its bound if !options.is_valid().
  explicit LvHbaSolver(const LvHbaOptions& options = {});
  const LvHbaOptions& options() const { return options_; }

  /// Runs LV-HBA from (x0, y0) (projected onto C first). Throws ShapeError if x0 or y0 has the
  /// wrong size, InvalidArgumentError if they are not finite or the initial multipliers do not
  /// fit the problem (size, box).
  template <ConstrainedBilevelProblem P, class... Callbacks>
  LvHbaResult minimize(const P& problem, const Vector& x0, const Vector& y0,
                       Callbacks&&... callbacks) const {
    return minimize(make_bilevel_objective(problem), x0, y0, CallbackSet(callbacks...));
  }
  LvHbaResult minimize(const BilevelObjective& objective, const Vector& x0, const Vector& y0,
                       const CallbackSet& callbacks = CallbackSet()) const;

 private:
  LvHbaOptions options_;
};

}  // namespace tether
