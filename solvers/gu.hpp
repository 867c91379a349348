// GU: Geometric-disentanglement Unlearning, a forget step that leaves the retain loss unchanged
// to first order. "Geometric-Disentanglement Unlearning" (arXiv 2511.17100; the authors' PyTorch
// code lives in a fork of an unlearning toolkit). Spec: specs/projection.md, section 1.
//
// Problem: a ForgetRetainProblem (l_f, l_r over theta in R^d). The solver descends l_f (a forget
// loss that is already "ascent-shaped": gradient ascent, NPO, SimNPO, ...) while every step
// leaves l_r unchanged to first order: g_r^T step = 0 for the retain gradients it holds.
//
// One iteration at theta_k, with g_f = grad l_f(theta_k), g_r = grad l_r(theta_k):
//   every `refresh` iterations: push g_r into the window (the k most recent, default 8)
//   base  = g_f                                         (Base::kForgetGradient, default)
//         | blur_direction(g_f, g_r, blur_gamma)        (Base::kBlur: GU projects BLUR's d)
//   D0    = the step rule's realised step for `base`    (SGD, Adam or AdamW: momentum, bias
//                                                        correction and weight decay included)
//   H     = the rule's metric: I for SGD, Diag(sqrt(v_hat) + eps) for Adam (StepRule::
//           preconditioner: the denominator of this very step, bit for bit)
//   D     = RetainProjector(D0) in the metric H        (retain_projector.hpp):
//             null space (default)  D = (I - U (U^T H U)^-1 U^T H) D0, U = H^-1 G_r
//             sign-selective        also the tangential part that lowers l_r (kappa cap, beta)
//             cone                  argmin |D - D0|_H s.t. G_r^T D <= 0 (dense active-set QP)
//   theta_{k+1} = theta_k + D
// For SGD (and Adam with beta1 = 0 and no decay), D0 = -lr H^-1 g_f and the null-space D is the
// spec's step = -lr S z_n: g_r^T D = 0 and g_f^T D = -lr |z_n|^2. Projecting the realised step
// (rather than the gradient fed to the rule) keeps the invariance exact with momentum and weight
// decay too: the rule's moments see the raw base direction, the parameters only the projection.
// For a quadratic retain loss the per-step change is then exactly its second-order term,
// l_r(theta + D) - l_r(theta) = 0.5 D^T H_r D (tests/gu_test.cpp checks it on B1).
//
// Defaults: the paper-era code's window 8, null space, global scope (blockwise = one basis per
// block, e.g. per layer; the paper projected the last 5 transformer blocks and the head), sliding
// window (RetainBasisPolicy::kFirstK reproduces the public code's stale basis), refresh 1 (the
// spec: a new retain gradient every step; the paper-era code refreshed every 2 steps, which
// makes the invariance hold for the retain gradient of up to refresh - 1 steps ago), kappa 0.5,
// tau 0, beta 0. Step rule: AdamW with torch.optim.AdamW's defaults (lr 1e-3, weight decay 1e-2),
// as BLUR; set the learning rate for the problem's scale.
//
// Stopping: tolerance > 0 stops (kConverged) after a step with |D| / lr <= tolerance: for SGD
// |P_H g_f|, zero exactly where the forget gradient lies in the span of the retain gradients
// (no retain-invariant forget move is left). Adam normalises its step, so |D| / lr only vanishes
// there too (not where g_f is merely small). tolerance = 0 runs every iteration.
//
// History: row k describes theta_k, where iteration k evaluated its direction: loss = l_f(theta_k),
// best_loss = the smallest l_f so far, constraint_residual = the first-order retain change of the
// step against the latest pushed retain gradient, relative: |g_r^T D| / (|g_r| |D|) in null-space
// mode (rounding, ~1e-16, when the window holds g_r), max(0, g_r^T D) / (|g_r| |D|) in the
// sign-selective and cone modes (their constraint is g_r^T D <= 0); 0 when D or g_r is 0.
// error = problem.solution_error(theta_k) where the problem has one. result.retain_losses[k] =
// l_r(theta_k). result.theta is the iterate after the last step.
//
// Oracles that return NaN/Inf, a step that leaves the finite numbers, or a cone projection whose
// KKT check fails stop the run with kNumericalError; the result is the last iterate at which
// every oracle was finite. A non-finite oracle at theta0 is refused with NumericalError.
//
// The window spans up to k directions: with d <= k (or a block of <= k coordinates) it can fill
// the space and leave no move (D = 0, which the tolerance reports as converged).
//
//   tether::problems::B1 problem;  // any ForgetRetainProblem (GA / NPO / SimNPO forget losses);
//                                  // B1 is 2-D, so a window of 1
//   tether::GuSolver solver({.projection = {.window = 1},
//                            .step = tether::SgdOptions{.learning_rate = 0.05},
//                            .max_iterations = 500, .tolerance = 1e-10});
//   tether::GuResult r = solver.minimize(problem, problem.start(),
//   tether::callbacks::ProgressBar{}); r.theta; r.forget_loss; r.retain_loss; r.history;
//   r.retain_losses;
#pragma once

#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/result.hpp>
#include <tether/core/step_rule.hpp>
#include <tether/core/types.hpp>
#include <tether/solvers/retain_projector.hpp>
#include <vector>

namespace tether {

struct GuOptions {
  enum class Base {
    kForgetGradient,  ///< descend l_f: base = g_f (default)
    kBlur,            ///< BLUR's direction g_r + (blur_gamma - <g_r, g_f>/|g_f|^2) g_f
  };

  /// Mode, window (k = 8), scope and block sizes, basis policy, kappa, tau, beta.
  RetainProjectorOptions projection;
  /// Push a new retain gradient every `refresh` iterations (the retain gradient is evaluated
  /// only then, except with Base::kBlur, which needs it every iteration); >= 1.
  int refresh = 1;
  Base base = Base::kForgetGradient;
  /// gamma of BLUR's direction (Base::kBlur); finite, > 0.
  double blur_gamma = 1.0;
  /// The first-order step rule whose step is projected. Default AdamW (lr 1e-3, decay 1e-2).
  StepRuleOptions step = AdamOptions{.learning_rate = 1e-3, .weight_decay = 0.01};
  int max_iterations = 1000;  ///< >= 1
  /// Stop after a step with |D| / lr <= tolerance; 0 runs all iterations. Finite, >= 0.
  double tolerance = 1e-8;

  /// True when every field is in its domain; otherwise `why` names the field and the bound.
  bool is_valid(std::string* why) const;
};

struct GuResult {
  Vector theta;              ///< the last iterate (the last finite one on kNumericalError)
  double forget_loss = 0.0;  ///< l_f(theta)
  double retain_loss = 0.0;  ///< l_r(theta)
  StopReason status = StopReason::kIterationLimit;
  std::string message;
  int iterations = 0;  ///< steps taken
  double seconds = 0.0;
  long retain_gradients = 0;          ///< retain gradients pushed into the window
  int rank = 0;                       ///< basis rank of the last step
  std::vector<double> retain_losses;  ///< l_r(theta_k), one per history row
  History history;
};

class GuSolver {
 public:
  /// Throws InvalidArgumentError naming the field when the options are invalid.
  explicit GuSolver(const GuOptions& options = {});
  const GuOptions& options() const { return options_; }

  template <ForgetRetainProblem P, class... Callbacks>
  GuResult minimize(const P& problem, const Vector& theta0, Callbacks&&... callbacks) const {
    return minimize(make_forget_retain_objective(problem), theta0, CallbackSet(callbacks...));
  }
  GuResult minimize(const ForgetRetainObjective& objective, const Vector& theta0,
                    const CallbackSet& callbacks = CallbackSet()) const;

 private:
  GuOptions options_;
};

}  // namespace tether
