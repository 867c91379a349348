// First-order step rules: the part of a solver that turns a search direction d into a step.
//
//   SGD:   v <- momentum v + d,  x <- x - lr (v + weight_decay x)       (momentum 0: x - lr d)
//   Adam:  see adam.hpp; AdamW is Adam with decoupled weight decay (AdamOptions::weight_decay).
//
// Solvers whose papers leave the optimizer open (BLUR, GU, the policy-gradient solver) take a
// StepRuleOptions and build one StepRule per solve, so a user picks the rule with one field:
//   tether::BlurSolver({.step = tether::SgdOptions{.learning_rate = 0.1}});
//   tether::BlurSolver({.step = tether::AdamOptions{.learning_rate = 1e-3, .weight_decay = 0.01}});
#pragma once

#include <string>
#include <tether/core/adam.hpp>
#include <tether/core/types.hpp>
#include <variant>

namespace tether {

struct SgdOptions {
  double learning_rate = 1e-2;
  double momentum = 0.0;      ///< heavy-ball coefficient in [0, 1); 0 is plain gradient descent
  double weight_decay = 0.0;  ///< decoupled decay, >= 0

  /// True when every field is in its domain; otherwise `why` names the argument and bound.
  bool is_valid(std::string* why) const;
};

/// SGD, or Adam / AdamW (AdamOptions with weight_decay > 0 is AdamW).
using StepRuleOptions = std::variant<SgdOptions, AdamOptions>;

/// Checks the chosen rule's options; throws InvalidArgumentError prefixed by `who`.
void validate_step_rule(const StepRuleOptions& options, const std::string& who);

/// Human-readable name: "sgd", "adam" or "adamw".
std::string step_rule_name(const StepRuleOptions& options);

/// A stateful step rule (moments, momentum buffer), built from StepRuleOptions.
class StepRule {
 public:
  explicit StepRule(const StepRuleOptions& options = SgdOptions{});

  /// Moves x along the descent direction d: x <- x - (rule's scaling of d). Sizes must agree.
  void step(Eigen::Ref<Vector> x, Eigen::Ref<const Vector> d);
  /// The step the rule would take (x_new - x) without applying it; advances its state.
  void direction(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> d, Eigen::Ref<Vector> out);
  void reset();
  /// The rule's diagonal metric H = Diag(h) of its last step: Adam's h = sqrt(v_hat) + eps
  /// (Adam::preconditioner), written into h and true; false (h untouched) for SGD, whose metric
  /// is the identity, and for Adam before its first step. Projections in the optimizer's metric
  /// (GU) use it.
  bool preconditioner(Eigen::Ref<Vector> h) const;
  /// Learning rate of the chosen rule.
  double learning_rate() const;
  const StepRuleOptions& options() const { return options_; }

 private:
  StepRuleOptions options_;
  Adam adam_;
  Vector velocity_;
};

}  // namespace tether
