// BLUR: Bi-Level UnleaRning, forget first, then retain.
// "BLUR: A Bi-Level Optimization Approach for LLM Unlearning" (2025). Reference code:
// OptimAI-Lab/BLURLLMUnlearning (PyTorch). Spec: specs/bilevel.md, section 3.
//
// Problem: min l_r(theta) subject to theta in argmin l_f   (the forget loss has priority).
// One step, with g_f = grad l_f(theta), g_r = grad l_r(theta):
//   d = g_r + (gamma - <g_r, g_f> / |g_f|^2) g_f        if |g_f|^2 > 0
//   d = g_r                                             if |g_f|^2 == 0   (the spec's guard)
//   theta <- StepRule(theta, d)                         (SGD, Adam or AdamW; AdamW in the paper)
// d is the smallest change of g_r whose first-order effect lowers l_f at rate gamma |g_f|^2:
// <d, g_f> = gamma |g_f|^2 exactly, and d = P g_r + gamma g_f with P the projection orthogonal
// to g_f, so |d|^2 = |P g_r|^2 + gamma^2 |g_f|^2 vanishes exactly at a stationary point of the
// bilevel problem (lower level stationary, retain gradient normal to its level set).
//
// Baseline (what the paper beats): the weighted sum d = g_f + w g_r, which converges to a
// stationary point of l_f + w l_r: a compromise, not the bilevel answer (B1: w = 1 stops at
// (8/3, -1/3), not at (2.5, -0.5)). Same solver, Options::direction = kWeightedSum.
//
// Roles: swap_roles = true makes l_r the lower level and l_f the upper (the public code's
// variant); the solver then runs on problem.swapped(). The result's forget_loss / retain_loss
// keep the problem's names either way. BLUR removes only the one component of the upper
// gradient along the lower one, so it needs the lower level's solution set to be locally a
// hypersurface: where the lower level has an isolated minimiser (B1 with swapped roles: l_r
// strictly convex), the rest of the upper gradient never vanishes and a fixed step settles
// about lr |g_upper| / 2 away from it (measured: 0.066 at lr 0.1, 0.0070 at lr 0.01).
//
// The |g_f| == 0 guard (measured on B1, specs/bilevel.md): in floating point the lower-level
// residual a^T theta - b of B1 reaches exactly 0 after ~170 steps (lr 0.1); the guard then
// takes d = g_r, whose component along a is not small, and kicks the iterate away from the
// optimum by lr |<g_r, a>| / |a| (0.07 on B1) before the contraction brings it back. The final
// accuracy is unharmed (1e-15 at 1000 steps), the path is not monotone. With
// zero_forget_gradient = kKeepLastNormal (not the default, which is the spec's rule) the guard
// instead projects g_r off the last nonzero g_f direction: the limit of d as g_f -> 0 along a
// fixed direction; B1 then contracts monotonically to rounding.
//
// Stopping: tolerance > 0 stops (kConverged) after the first step whose direction has
// |d| <= tolerance (|d| as above: the bilevel stationarity measure; for the weighted sum the
// norm of the weighted gradient). tolerance = 0 runs every iteration.
//
// History: row k describes the iterate theta_k at which iteration k evaluated its direction:
// loss = the upper level's loss (l_r, or l_f with swapped roles), constraint_residual = the
// lower level's gradient norm |g_f| (its stationarity), error = problem.solution_error(theta_k)
// where the problem has one (NaN with swapped roles: the problem's known solution is that of
// the forget-first order). result.theta is the iterate after the last step.
//
// Oracles that return NaN/Inf, or a step that leaves the finite numbers, stop the run with
// kNumericalError; the result is then the last iterate at which every oracle was finite. A
// non-finite oracle at theta0 is refused with NumericalError.
//
//   tether::problems::B1 p;
//   tether::BlurSolver solver({.step = tether::SgdOptions{.learning_rate = 0.1},
//                              .max_iterations = 1000, .tolerance = 0});
//   tether::BlurResult r = solver.minimize(p, p.start(), tether::callbacks::ProgressBar{});
//   r.theta; r.retain_loss; r.history;
#pragma once

#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/result.hpp>
#include <tether/core/step_rule.hpp>
#include <tether/core/types.hpp>

namespace tether {

/// Which case of the BLUR direction was taken.
enum class BlurDirectionCase {
  kProjected,           ///< |g_f|^2 > 0: d = g_r + (gamma - <g_r, g_f>/|g_f|^2) g_f
  kZeroForgetGradient,  ///< |g_f|^2 == 0: the guard, d = g_r
};

/// The BLUR direction d = g_r + (gamma - <g_r, g_f>/|g_f|^2) g_f, or d = g_r where
/// |g_f|^2 == 0 (the guard). Writes d into `out` (pre-sized). Sizes must agree (ShapeError);
/// gamma must be finite and > 0 (InvalidArgumentError).
BlurDirectionCase blur_direction(ConstVectorRef g_f, ConstVectorRef g_r, double gamma,
                                 VectorRef out);
/// The same, returning d.
Vector blur_direction(ConstVectorRef g_f, ConstVectorRef g_r, double gamma);

/// The weighted-sum baseline d = g_f + weight g_r (weight finite and >= 0).
void weighted_sum_direction(ConstVectorRef g_f, ConstVectorRef g_r, double weight, VectorRef out);

struct BlurOptions {
  enum class Direction {
    kBlur,         ///< the BLUR direction (default)
    kWeightedSum,  ///< the baseline d = g_f + weight g_r
  };
  enum class ZeroForgetGradient {
    kRetainGradient,  ///< d = g_r (the spec's and the public code's guard; default)
    kKeepLastNormal,  ///< d = g_r - <g_r, u> u, u the last nonzero g_f / |g_f| (g_r before one)
  };

  /// Rate gamma |g_f|^2 at which each step lowers l_f to first order; finite, > 0.
  double gamma = 1.0;
  Direction direction = Direction::kBlur;
  /// w of the weighted-sum baseline (used only by kWeightedSum); finite, >= 0.
  double weight = 1.0;
  /// The first-order step rule. Default: AdamW, the paper's optimizer, with torch.optim.AdamW's
  /// defaults (lr 1e-3, weight decay 1e-2). Adam moves each coordinate by at most about lr per
  /// step, so the default 1000 steps travel about one unit (B1 from 0: error 1.7 after 1000
  /// default steps, 1.5e-5 after 20000): set the learning rate for the problem's scale. The
  /// decoupled decay moves the fixed point off the bilevel optimum (B1, lr 0.01, 3000 steps:
  /// Adam 4e-15, AdamW 5e-3); use SGD or weight_decay = 0 for the exact answer (the spec's
  /// accuracy figures are for plain SGD).
  StepRuleOptions step = AdamOptions{.learning_rate = 1e-3, .weight_decay = 0.01};
  int max_iterations = 1000;  ///< >= 1
  /// Stop after a step whose direction has |d| <= tolerance; 0 runs all iterations. >= 0.
  double tolerance = 1e-8;
  /// Make l_r the lower level and l_f the upper.
  bool swap_roles = false;
  ZeroForgetGradient zero_forget_gradient = ZeroForgetGradient::kRetainGradient;

  /// True when every field is in its domain; otherwise `why` names the field and the bound.
  bool is_valid(std::string* why) const;
};

struct BlurResult {
  Vector theta;              ///< the last iterate (the last finite one on kNumericalError)
  double forget_loss = 0.0;  ///< l_f(theta), in the problem's naming even with swapped roles
  double retain_loss = 0.0;  ///< l_r(theta)
  /// |gradient of the lower level| at theta (|g_f|; |g_r| with swapped roles).
  double lower_gradient_norm = 0.0;
  StopReason status = StopReason::kIterationLimit;
  std::string message;
  int iterations = 0;  ///< steps taken
  double seconds = 0.0;
  long guard_steps = 0;  ///< iterations at which |g_lower|^2 was exactly 0
  History history;
};

class BlurSolver {
 public:
  /// Throws InvalidArgumentError naming the field when the options are invalid.
  explicit BlurSolver(const BlurOptions& options = {});
  const BlurOptions& options() const { return options_; }

  template <ForgetRetainProblem P, class... Callbacks>
  BlurResult minimize(const P& problem, const Vector& theta0, Callbacks&&... callbacks) const {
    return minimize(make_forget_retain_objective(problem), theta0, CallbackSet(callbacks...));
  }
  BlurResult minimize(const ForgetRetainObjective& objective, const Vector& theta0,
                      const CallbackSet& callbacks = CallbackSet()) const;

 private:
  BlurOptions options_;
};

}  // namespace tether
