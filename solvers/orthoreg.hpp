// OrthoReg: orthogonal weight updates for task arithmetic.
// "Understanding and Enforcing Weight Disentanglement in Task Arithmetic" (CVPR 2026,
// arXiv 2604.17078). Public code: RL-MIND/OrthoReg (PyTorch; full fine-tuning, and a LoRA
// variant). Spec: specs/projection.md, section 2.
//
// For each regularised 2-D weight the update Delta W (m x n) is
//   W - W0          full fine-tuning, W0 the pre-trained weight
//                   (OrthoRegLayer::full; OrthoRegLayer::update where theta holds Delta W itself)
//   (alpha / r) B A LoRA, B m x r, A r x n                                 (OrthoRegLayer::lora)
// Take the smaller Gram matrix, of size k = min(m, n), and compare it with the identity:
//   G = Delta W^T Delta W   (n x n)  if m >= n (tall or square)
//   G = Delta W Delta W^T   (m x m)  if m <  n (wide)
//   M = G - I_k
//   L_ortho = sum over layers |M|_F      unsquared: the public code's, the default
//   L_ortho = sum over layers |M|_F^2    squared: the LoRA repository's README, an option
//   L_ortho = sum over layers sqrt(|M|_F^2 + eps^2) - eps
//                                        smoothed (not in the paper; an option): the unsquared
//                                        norm with its kink at |M|_F = 0 rounded off, eps > 0
//                                        (OrthoRegOptions::smoothing, default 1e-2). Within eps of
//                                        the unsquared value everywhere, 0 exactly where it is 0,
//                                        differentiable everywhere; for gradient-based solvers
//                                        (L-BFGS) whose line searches stall at the sharp minimum.
// Total loss: task loss + lambda L_ortho (lambda = 0 switches it off; the LoRA example uses 1.0).
//
// Gradient with respect to Delta W, tall case (the wide case is its transpose, M Delta W):
//   unsquared   2 Delta W M / |M|_F           squared   4 Delta W M
//   smoothed    2 Delta W M / sqrt(|M|_F^2 + eps^2)
// In both shapes Delta W M (tall) = M Delta W (wide) = Delta W Delta W^T Delta W - Delta W; the
// shapes differ only in |M|_F. LoRA, by the chain rule through Delta W = c B A, c = alpha / r:
//   dL/dB = c (dL/dDelta W) A^T,     dL/dA = c B^T (dL/dDelta W).
//
// What the regulariser does (each fact is a test in tests/orthoreg_test.cpp). With s_i the
// singular values of Delta W, i = 1..k:  |M|_F^2 = sum_i (s_i^2 - 1)^2.
//  - It pulls every singular value towards 1, not towards 0: it is not a weight decay. Gradient
//    descent on L_ortho alone from a random full-rank Delta W ends with all s_i = 1 (squared
//    norm: a fixed step; unsquared: Polyak's step L / |grad|^2, its minimum being 0).
//  - Delta W = 0: L = |-I_k|_F = sqrt(k) and the gradient is exactly 0. Every line through 0 has
//    a maximum there (L(t D) = sqrt(k) - t^2 |D|_F^2 / sqrt(k) + O(t^4)), so the regulariser
//    never moves an update that is exactly 0: with LoRA's B = 0 initialisation it is inert
//    until the task loss has moved B.
//  - rank(Delta W) = r < k: k - r singular values are 0, so L >= sqrt(k - r), with equality
//    exactly when the r nonzero singular values are 1.
//  - L = 0 exactly when Delta W has orthonormal columns (tall) or rows (wide).
//  - The unsquared gradient has norm at most 2 s_max whatever |M|_F is: a bounded pull, and a
//    sharp minimum. At |M|_F = 0 the norm is not differentiable; that point is a minimum, so 0
//    is a (Clarke) subgradient, and OrthoReg defines the gradient there as 0. Near it the
//    gradient keeps its size, so a fixed step oscillates around the orthonormal set; the
//    squared norm (gradient 4 Delta W M, vanishing there) converges to it linearly.
//
// Cost per layer, k = min(m, n): O(m n k), the Gram of the smaller side (a symmetric rank-k
// update, m n k flops, on up to 2 Eigen threads; a general product, 2 m n k flops, on more) and
// one product (2 m n k flops). value() and add_gradient() each form the Gram;
// value_and_add_gradient() forms it once. LoRA with r <= k never forms Delta W:
// O((m + n) r^2) from thin QR factors B = Q_B R_B, A^T = Q_A R_A and K = c R_B R_A^T,
// |M|_F^2 = |K^T K - I_r|_F^2 + (k - r), dL/dB = s c^2 B Q X, dL/dA = s c^2 X P A with
// P = B^T B, Q = A A^T, X = c^2 P Q - I_r and s = 2 / |M|_F (unsquared) or 4 (squared). r > k
// forms Delta W.
//
// OrthoReg is a Regularizer (core/regularizer.hpp) over a flat theta with a ParameterLayout, so
// any differentiable problem adds it with tether::Regularized; it also works on NamedTensors.
//
//   tether::ParameterLayout layout;
//   layout.add("attn.q.lora_B", 768, 8);
//   layout.add("attn.q.lora_A", 8, 768);
//   tether::OrthoReg ortho(layout, {tether::OrthoRegLayer::lora("attn.q.lora_B", "attn.q.lora_A",
//                                                               /*alpha=*/16.0)},
//                          {.lambda = 1.0});
//   double l = ortho.value(theta);          // L_ortho, unweighted
//   ortho.add_gradient(theta, 1.0, g);      // g += grad L_ortho
//   tether::Regularized problem(task, ortho);   // task loss + 1.0 L_ortho, for any solver
#pragma once

#include <cstddef>
#include <string>
#include <tether/core/regularizer.hpp>
#include <tether/core/task_vector.hpp>
#include <tether/core/types.hpp>
#include <vector>

namespace tether {

enum class OrthoRegNorm {
  kFrobenius,         ///< |G - I|_F, unsquared (the public code's; the default)
  kSquaredFrobenius,  ///< |G - I|_F^2 (the LoRA repository's README)
  /// sqrt(|G - I|_F^2 + eps^2) - eps, eps = the smoothing argument (OrthoRegOptions::smoothing):
  /// the unsquared norm made differentiable at its minimum (not in the paper).
  kSmoothedFrobenius,
};

/// The default eps of OrthoRegNorm::kSmoothedFrobenius.
inline constexpr double kOrthoRegDefaultSmoothing = 1e-2;

struct OrthoRegOptions {
  /// lambda, the weight of L_ortho in the total loss; finite and >= 0, 0 switches the term off.
  /// The paper tunes it per setting; 1.0 is its LoRA example's value.
  double lambda = 1.0;
  OrthoRegNorm norm = OrthoRegNorm::kFrobenius;
  /// eps of OrthoRegNorm::kSmoothedFrobenius (the other norms ignore it); finite and > 0.
  double smoothing = kOrthoRegDefaultSmoothing;

  /// True when every field is in its domain; otherwise `why` names the field and the bound.
  bool is_valid(std::string* why) const;
};

// ---- one matrix -------------------------------------------------------------------------------

// `smoothing` is eps of OrthoRegNorm::kSmoothedFrobenius (ignored by the other norms); it must
// be finite and > 0 whatever the norm (InvalidArgumentError naming it).

/// |M|_F (or |M|_F^2, or the smoothed norm) of one update Delta W (non-empty; ShapeError
/// otherwise).
double orthoreg_value(ConstMatrixRef delta_w, OrthoRegNorm norm = OrthoRegNorm::kFrobenius,
                      double smoothing = kOrthoRegDefaultSmoothing);
/// grad += scale * d L / d Delta W; returns L. grad has the shape of delta_w (ShapeError) and
/// must not overlap it; scale finite (InvalidArgumentError).
double orthoreg_add_gradient(ConstMatrixRef delta_w, OrthoRegNorm norm, double scale,
                             MatrixRef grad, double smoothing = kOrthoRegDefaultSmoothing);
/// d L / d Delta W.
Matrix orthoreg_gradient(ConstMatrixRef delta_w, OrthoRegNorm norm = OrthoRegNorm::kFrobenius,
                         double smoothing = kOrthoRegDefaultSmoothing);

/// L of Delta W = scaling B A (scaling = alpha / r; B m x r, A r x n, ShapeError otherwise;
/// scaling finite).
double lora_orthoreg_value(ConstMatrixRef b, ConstMatrixRef a, double scaling,
                           OrthoRegNorm norm = OrthoRegNorm::kFrobenius,
                           double smoothing = kOrthoRegDefaultSmoothing);
/// grad_b += scale * dL/dB, grad_a += scale * dL/dA; returns L. The gradients have the shapes of
/// b and a and overlap neither.
double lora_orthoreg_add_gradient(ConstMatrixRef b, ConstMatrixRef a, double scaling,
                                  OrthoRegNorm norm, double scale, MatrixRef grad_b,
                                  MatrixRef grad_a, double smoothing = kOrthoRegDefaultSmoothing);

// ---- the regulariser over named weights -------------------------------------------------------

/// One regularised weight and how its update Delta W is formed.
struct OrthoRegLayer {
  enum class Kind {
    kFull,    ///< Delta W = W - W0, W the block `weight`
    kUpdate,  ///< Delta W = the block `weight` itself
    kLoRA,    ///< Delta W = (alpha / r) B A, B = block `lora_b`, A = block `lora_a`
  };
  Kind kind = Kind::kUpdate;
  std::string weight;  ///< kFull, kUpdate
  Matrix reference;    ///< kFull: W0
  std::string lora_b;  ///< kLoRA: m x r
  std::string lora_a;  ///< kLoRA: r x n
  double lora_alpha = 0.0;

  /// Full fine-tuning: Delta W = W - w0.
  static OrthoRegLayer full(std::string weight, Matrix w0);
  /// The block holds Delta W itself (a problem parameterised by the update).
  static OrthoRegLayer update(std::string weight);
  /// LoRA: Delta W = (alpha / r) B A, r = the columns of B; alpha finite and > 0.
  static OrthoRegLayer lora(std::string b, std::string a, double alpha);
};

/// L_ortho over the layers of a parameter layout (see the header comment). A Regularizer.
class OrthoReg {
 public:
  /// Refuses invalid options, no layers, names missing from the layout, a W0 of another shape
  /// than its weight, LoRA blocks whose inner sizes differ or that are one block, and a LoRA
  /// alpha that is not finite and > 0 (InvalidArgumentError / ShapeError).
  OrthoReg(ParameterLayout layout, std::vector<OrthoRegLayer> layers,
           const OrthoRegOptions& options = {});

  Index dimension() const { return layout_.size(); }
  double weight() const { return options_.lambda; }
  const OrthoRegOptions& options() const { return options_; }
  const ParameterLayout& layout() const { return layout_; }
  const std::vector<OrthoRegLayer>& layers() const { return layers_; }

  /// L_ortho(theta), unweighted. theta of size dimension() (ShapeError). Non-finite entries
  /// give a non-finite value (a solver's non-finite-oracle check sees it); nothing is thrown.
  double value(const Vector& theta) const;
  /// g += scale * grad L_ortho(theta); g of size dimension().
  void add_gradient(const Vector& theta, double scale, Vector& g) const;
  /// Both in one pass (one Gram per layer); returns L_ortho(theta).
  double value_and_add_gradient(const Vector& theta, double scale, Vector& g) const;
  /// The term of each layer, in the order of layers().
  std::vector<double> layer_values(const Vector& theta) const;
  /// Delta W of layer i at theta.
  Matrix delta_w(const Vector& theta, std::size_t layer) const;

  /// The same on named parameters: params (and grad) hold every block of the layout with its
  /// shape (ShapeError otherwise).
  double value(const NamedTensors& params) const;
  void add_gradient(const NamedTensors& params, double scale, NamedTensors& grad) const;

 private:
  template <class Get, class GetGradient>
  double evaluate(Get&& get, GetGradient&& get_gradient, double scale, bool with_gradient,
                  std::vector<double>* per_layer) const;

  ParameterLayout layout_;
  std::vector<OrthoRegLayer> layers_;
  OrthoRegOptions options_;
};

static_assert(Regularizer<OrthoReg>);

}  // namespace tether
