// Adam (Kingma and Ba, 2015) with bias correction, and AdamW's decoupled weight decay.
//
//   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,
//   x <- x - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) - lr * weight_decay * x.
//
// Works on flat views so any contiguous parameter block (a row-major logit matrix, a vector) can
// be stepped. The first moment is exposed so Riemannian solvers can transport it.
#pragma once

#include <string>
#include <tether/core/types.hpp>

namespace tether {

struct AdamOptions {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.0;  ///< AdamW decoupled decay; 0 gives plain Adam.

  /// True when every field is in its domain; otherwise `why` names the argument and bound.
  bool is_valid(std::string* why) const;
};

class Adam {
 public:
  explicit Adam(const AdamOptions& options = {});

  /// One step on x with gradient g (same size). Allocates the moments on the first call.
  void step(Eigen::Ref<Vector> x, Eigen::Ref<const Vector> g);
  /// The step Adam would take (x_new - x) without applying it; advances the moments.
  void direction(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> g, Eigen::Ref<Vector> out);
  /// out = x + direction(x, g), bit for bit, in one pass; x is left as it is (the trial point
  /// that a Riemannian step then retracts). out must not overlap x or g.
  void trial(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> g, Eigen::Ref<Vector> out);

  void reset() {
    t_ = 0;
    m_.resize(0);
    v_.resize(0);
  }
  Vector& first_moment() { return m_; }
  Vector& second_moment() { return v_; }
  /// The diagonal metric of the last step, h = sqrt(v / (1 - beta2^t)) + epsilon: the
  /// denominator of Adam's step, bit for bit (the step is -lr m_hat / h - lr wd x). Needs
  /// steps_taken() >= 1 (InvalidArgumentError otherwise); h must have the parameters' size.
  void preconditioner(Eigen::Ref<Vector> h) const;
  long steps_taken() const { return t_; }
  const AdamOptions& options() const { return options_; }
  void set_learning_rate(double lr) { options_.learning_rate = lr; }

 private:
  template <class Apply>
  void update(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> g, Apply apply);
  AdamOptions options_;
  Vector m_, v_;
  long t_ = 0;
};

}  // namespace tether
