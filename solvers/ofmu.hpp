// OFMU: penalty-based bilevel unlearning, two loops.
// "OFMU: Optimization-Driven Framework for Machine Unlearning" (2025; no public code).
// Spec: specs/bilevel.md, section 4.
//
// Inner problem (priority, forgetting): maximise Phi(theta) = l_f(theta) - beta cos(u, v),
// u = grad l_f, v = grad l_r: raise the forget loss while decorrelating the two gradients.
// (OFMU maximises l_f: forgetting raises the loss on the forget data. BLUR, in blur.hpp,
// minimises its lower level; O1 here and B1 there differ by the sign of l_f.)
// Outer problem: min l_r subject to grad Phi = 0, by the penalty F_rho = l_r + rho |grad Phi|^2,
//   grad F_rho = grad l_r + 2 rho H_Phi grad Phi.
// One iteration k:
//   theta' = theta;  repeat T times: theta' <- theta' + eta_in grad Phi(theta')     (ascent)
//   theta  <- theta' - eta_out (grad l_r(theta') + 2 rho_k H_Phi(theta') grad Phi(theta'))
//   rho_{k+1} = min(rho_growth rho_k, rho_max)                                      (capped)
// Derivatives:
//   grad cos(u, v) = H_f (v/(|u||v|) - cos u/|u|^2) + H_r (u/(|u||v|) - cos v/|v|^2),
//     with the objective's Hessian-vector products (exact where the problem gives them,
//     central finite differences of the gradient otherwise). Where |u| = 0 or |v| = 0 the
//     cosine is undefined (and its gradient unbounded nearby); we define cos = 0 and
//     grad cos = 0 there, so Phi = l_f and grad Phi = u at such points.
//   H_Phi w: exactly H_f w when beta = 0; otherwise a central finite difference of grad Phi
//     along w (finite_difference_hvp): the cosine's Hessian would need third derivatives.
//     Where the problem has no exact HVPs that is a difference of differences (noise ~1e-6
//     relative); give exact HVPs when beta > 0 matters.
//   beta > 0 near stationary points: grad cos grows like 1/|u| and 1/|v|, so F_rho is very
//     steep near stationary points of either loss, which is where the outer problem heads
//     (v -> 0) and where the lower level lives (u -> 0). A fixed eta_out can then cycle
//     (measured on a random quartic pair: a 2-cycle at eta_out = 0.002). On O1 the term
//     vanishes at theta_rho (u and v are parallel there), so beta changes nothing at the answer.
//
// The continuation trap (spec): the Hessian of F_rho grows like rho (on O1 its top eigenvalue
// is 1 + 2 rho |a|^4), so a fixed outer step is stable only while eta_out (1 + 2 rho |a|^4) < 2.
// Growing rho geometrically without a cap at a fixed eta_out therefore diverges (tested: O1,
// eta_out 0.01, rho *= 1.1 uncapped reaches NaN/Inf in under 200 iterations), and shrinking the
// step like 1/rho instead stalls in the well-conditioned directions (the sum of the steps
// converges). We cap rho at rho_max (choose eta_out (top eigenvalue at rho_max) < 2), which
// leaves the O(1/rho_max) penalty bias of theta_rho (O1: |theta_rho - theta*| =
// sqrt(2) / (2 (1 + 8 rho))). Optionally (rho_schedule = kPerStage) rho grows only once the
// current stage has converged (fixed-point residual <= stage_tolerance): one continuation stage
// per rho value, still capped.
//
// Stopping: after an iteration that leaves rho unchanged (at the cap, or rho_growth = 1), the
// fixed-point residual |theta_{k+1} - theta_k| / eta_out <= tolerance gives kConverged. With
// T = 0 it is |grad F_rho(theta_k)|. tolerance = 0 runs every iteration. With T > 0 the fixed
// point is not theta_rho: the inner ascent pulls it toward grad Phi = 0.
//
// History: row k describes theta_k: loss = l_r(theta_k), constraint_residual =
// |grad Phi(theta_k)|, error = problem.solution_error(theta_k) where the problem has one.
// NaN/Inf from an oracle or the iteration stops with kNumericalError and returns the last
// iterate at which every oracle was finite; a non-finite oracle at theta0 is refused with
// NumericalError.
//
//   tether::problems::O1 p;
//   tether::OfmuSolver solver({.beta = 0, .inner_steps = 0, .eta_out = 0.01, .rho0 = 1,
//                              .rho_growth = 1, .max_iterations = 5000, .tolerance = 1e-12});
//   tether::OfmuResult r = solver.minimize(p, p.start());   // r.theta ~ p.theta_rho(1)
#pragma once

#include <limits>
#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/result.hpp>
#include <tether/core/types.hpp>

namespace tether {

/// cos(u, v) = <u, v> / (|u| |v|), defined as 0 where |u| = 0 or |v| = 0. Sizes must agree.
double gradient_cosine(ConstVectorRef u, ConstVectorRef v);

/// grad_theta cos(grad l_f(theta), grad l_r(theta)) by the spec's formula, given u = grad l_f
/// and v = grad l_r at theta (two Hessian-vector products; 0 where |u| = 0 or |v| = 0).
void ofmu_cosine_gradient(const ForgetRetainObjective& objective, const Vector& theta,
                          const Vector& u, const Vector& v, Vector& out);

/// Phi(theta) = l_f(theta) - beta cos(grad l_f, grad l_r).
double ofmu_phi(const ForgetRetainObjective& objective, const Vector& theta, double beta);

/// grad Phi(theta) = u - beta grad cos. Returns cos(u, v).
double ofmu_phi_gradient(const ForgetRetainObjective& objective, const Vector& theta, double beta,
                         Vector& out);

/// H_Phi(theta) w: exactly forget_hvp(theta, w) when beta = 0, else the central finite
/// difference of ofmu_phi_gradient along w.
void ofmu_phi_hessian_vector(const ForgetRetainObjective& objective, const Vector& theta,
                             double beta, const Vector& w, Vector& out);

/// grad F_rho(theta) = grad l_r + 2 rho H_Phi grad Phi, F_rho = l_r + rho |grad Phi|^2.
void ofmu_penalty_gradient(const ForgetRetainObjective& objective, const Vector& theta, double beta,
                           double rho, Vector& out);

struct OfmuOptions {
  enum class RhoSchedule {
    kEveryIteration,  ///< rho_{k+1} = min(rho_growth rho_k, rho_max) (the spec's loop)
    kPerStage,        ///< grow rho only once |theta_{k+1} - theta_k| / eta_out <= stage_tolerance
  };

  /// Weight of the gradient-cosine term in Phi; finite, >= 0 (0: Phi = l_f). Ours: the paper
  /// gives no value we can use at unit scale.
  double beta = 0.1;
  /// T, inner ascent steps per outer step; >= 0 (0: the outer step alone).
  int inner_steps = 1;
  double eta_in = 0.01;     ///< inner ascent step; finite, > 0
  double eta_out = 0.01;    ///< outer descent step; finite, > 0
  double rho0 = 1.0;        ///< initial penalty; finite, > 0
  double rho_growth = 1.1;  ///< gamma_rho; finite, >= 1 (1: fixed rho)
  /// Cap of rho; >= rho0. +infinity removes the cap, which diverges at a fixed eta_out (see the
  /// trap above); it is allowed so the trap can be shown.
  double rho_max = 10.0;
  RhoSchedule rho_schedule = RhoSchedule::kEveryIteration;
  double stage_tolerance = 1e-6;  ///< kPerStage only; finite, > 0
  int max_iterations = 1000;      ///< >= 1
  /// Fixed-point residual |theta_{k+1} - theta_k| / eta_out at which to stop once rho has
  /// stopped changing; 0 runs all iterations. Finite, >= 0.
  double tolerance = 1e-8;

  /// True when every field is in its domain; otherwise `why` names the field and the bound.
  bool is_valid(std::string* why) const;
};

struct OfmuResult {
  Vector theta;                    ///< the last iterate (the last finite one on kNumericalError)
  double forget_loss = 0.0;        ///< l_f(theta)
  double retain_loss = 0.0;        ///< l_r(theta)
  double phi_gradient_norm = 0.0;  ///< |grad Phi(theta)|
  double rho = 0.0;                ///< the penalty the last step used
  int stages = 0;                  ///< distinct rho values used
  StopReason status = StopReason::kIterationLimit;
  std::string message;
  int iterations = 0;  ///< outer steps taken
  double seconds = 0.0;
  History history;
};

class OfmuSolver {
 public:
  /// Throws InvalidArgumentError naming the field when the options are invalid.
  explicit OfmuSolver(const OfmuOptions& options = {});
  const OfmuOptions& options() const { return options_; }

  template <ForgetRetainProblem P, class... Callbacks>
  OfmuResult minimize(const P& problem, const Vector& theta0, Callbacks&&... callbacks) const {
    return minimize(make_forget_retain_objective(problem), theta0, CallbackSet(callbacks...));
  }
  OfmuResult minimize(const ForgetRetainObjective& objective, const Vector& theta0,
                      const CallbackSet& callbacks = CallbackSet()) const;

 private:
  OfmuOptions options_;
};

}  // namespace tether
