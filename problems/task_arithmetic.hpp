// Several seeded synthetic classification tasks on one shared backbone: a small, runnable proxy
// of the task-arithmetic setting of OrthoReg (specs/projection.md section 2; the paper's setting,
// CLIP ViTs on 8 vision tasks, does not run here, and this proxy claims no more than it shows).
//
// The model, for task t (all tasks read the same input space R^d):
//   phi(x)      = tanh(R x + r)          frozen random features, R in R^(p x d), r in R^p
//   u(x; W)     = tanh(W phi(x))         the SHARED trainable layer, W in R^(h x p)
//   z_t(x; W)   = A_t u(x; W)            a frozen per-task head A_t in R^(C x h)
// theta = vec(W), row-major (h p entries): the one parameter vector every task fine-tunes, so
// task vectors tau_t = theta_t - theta_0 live in one space and can be added and negated,
//   theta = theta_0 + alpha sum_t tau_t      (addition)
//   theta = theta_0 - alpha tau_t            (negation),
// and OrthoReg's regulariser acts on Delta W = reshape(theta - theta_0, h, p). The frozen heads
// play the role of CLIP's zero-shot text heads: they fix which internal features (hidden units)
// each task reads. theta_0 (pretrained()) is a seeded random W with entries N(0, 1/p); its
// per-task accuracy is near chance, so "zero-shot" accuracies are those of a random backbone.
//
// Tasks. x ~ N(0, I_d). Task t reads
//   the input coordinates  S_t = [first_input, first_input + input_count):
//     y = argmax_c (M_t x_{S_t})_c with a seeded teacher M_t in R^(C x |S_t|);
//   the hidden units       H_t = [first_hidden, first_hidden + hidden_count) (all h units when
//     hidden_count = 0): A_t is zero outside the columns H_t, N(0, head_scale^2 / |H_t|) inside.
// Tasks whose H_t overlap share internal features; the loss of task t does not depend on the rows
// of W outside H_t, so tasks with disjoint H_t have task vectors on disjoint rows: exactly
// orthogonal, and adding one leaves the other's logits unchanged (no interference), which is the
// geometry OrthoReg's paper credits for successful task arithmetic. The default (d = 16, h = 28):
//   task 0: inputs {0..3},   hidden {0..7}      shares inputs and hidden units with task 1
//   task 1: inputs {2..5},   hidden {4..11}
//   task 2: inputs {8..11},  hidden {12..19}    its own inputs and hidden units
//   task 3: inputs {12..15}, hidden {20..27}    its own inputs and hidden units
//
// Fine-tuning minimises the task's mean cross-entropy + (mu/2) |theta - theta_0|^2 by L-BFGS
// (the L2-SP penalty of Li, Grandvalet and Davoine, ICML 2018; mu = 1e-2 by default). Without it
// L-BFGS drives the training loss to 0 by saturating tanh, and |tau| grows to ~100-1000 |theta_0|
// (measured on the default suite), far from the small-update regime task arithmetic assumes.
//
// Draw order (tether::Rng, one stream): R row-major, r, W_0 row-major; then for each task the
// H_t columns of A_t row by row, M_t row-major, and its train, validation and test samples, each
// sample its d coordinates. Same options, same suite, bit for bit.
//
//   tether::problems::SharedBackboneTasks suite;                     // the defaults above
//   tether::problems::FitResult ft = suite.fine_tune(0);
//   tether::Vector tau0 = suite.task_vector(ft.theta);
//   suite.accuracies(suite.pretrained() + 0.5 * tau0, tether::problems::TaskSplit::kTest);
#pragma once

#include <cstdint>
#include <tether/core/types.hpp>
#include <tether/problems/classifiers.hpp>
#include <vector>

namespace tether::problems {

/// Task t's label depends on the input coordinates [first_input, first_input + input_count);
/// its head reads the hidden units [first_hidden, first_hidden + hidden_count) (all when 0).
struct TaskSpec {
  Index first_input = 0;
  Index input_count = 4;
  Index first_hidden = 0;
  Index hidden_count = 0;
};

struct SharedBackboneOptions {
  Index inputs = 16;          ///< d >= 1
  Index backbone_width = 64;  ///< p >= 1, frozen random features
  Index hidden = 28;          ///< h >= 1, rows of the shared trainable W
  Index classes = 4;          ///< C >= 2
  std::vector<TaskSpec> tasks = {{0, 4, 0, 8}, {2, 4, 4, 8}, {8, 4, 12, 8}, {12, 4, 20, 8}};
  Index train_samples = 400;       ///< per task, >= 1
  Index validation_samples = 200;  ///< per task, >= 1
  Index test_samples = 1000;       ///< per task, >= 1
  double head_scale = 3.0;         ///< A_t entries N(0, head_scale^2 / |H_t|), > 0
  std::uint64_t seed = 2026;
};

enum class TaskSplit { kTrain, kValidation, kTest };

class SharedBackboneTasks {
 public:
  /// Draws the backbone, theta_0, the heads, the teachers and the data. Refuses options outside
  /// the documented ranges (InvalidArgumentError), including a task reading coordinates >= d.
  explicit SharedBackboneTasks(const SharedBackboneOptions& options = {});

  Index tasks() const { return static_cast<Index>(specs_.size()); }
  Index dimension() const { return hidden_ * width_; }
  Index weight_rows() const { return hidden_; }  ///< W is weight_rows x weight_cols
  Index weight_cols() const { return width_; }
  Index inputs() const { return inputs_; }
  Index classes() const { return classes_; }
  const TaskSpec& spec(Index task) const;

  /// theta_0 = vec(W_0).
  const Vector& pretrained() const { return pretrained_; }
  /// tau = theta - theta_0.
  Vector task_vector(const Vector& theta) const;

  const Dataset& data(Index task, TaskSplit split) const;
  const Matrix& head(Index task) const;

  /// phi(x), n x p. For the x of the suite's own data sets (data(t, split).x, the same object)
  /// the features drawn at construction are returned, bit for bit what the formula gives.
  Matrix features(const Matrix& x) const;
  /// z_t = A_t tanh(W phi(x)), n x C.
  Matrix logits(Index task, const Vector& theta, const Matrix& x) const;
  /// Mean cross-entropy of task `task` on data (no regulariser).
  double loss(Index task, const Vector& theta, const Dataset& data) const;
  double loss_and_gradient(Index task, const Vector& theta, const Dataset& data, Vector& g) const;
  double accuracy(Index task, const Vector& theta, const Dataset& data) const;
  /// Accuracy of every task on its own split, one entry a task.
  Vector accuracies(const Vector& theta, TaskSplit split) const;

  /// Minimises loss(task, theta, train) + (mu/2) |theta - theta_0|^2 from theta_0 by L-BFGS
  /// (minimize_lbfgs; mu >= 0). FitResult::loss includes the penalty. A run stopped by
  /// max_iterations is "fine-tuned for k steps".
  FitResult fine_tune(Index task, const FitOptions& options = {.gradient_tolerance = 1e-6},
                      double mu = 1e-2) const;

 private:
  void check(const char* who, Index task, const Vector& theta, const Dataset* data) const;
  Matrix compute_features(const Matrix& x) const;
  /// phi of one of the suite's own input matrices (compared by address), else nullptr.
  const Matrix* cached_features(const Matrix& x) const;
  Index inputs_, width_, hidden_, classes_;
  Matrix backbone_;  // R, p x d
  Vector backbone_bias_;
  Vector pretrained_;
  std::vector<TaskSpec> specs_;
  std::vector<Matrix> heads_;     // A_t, C x h
  std::vector<Matrix> teachers_;  // M_t, C x |S_t|
  std::vector<Dataset> train_, validation_, test_;
  std::vector<Matrix> train_phi_, validation_phi_, test_phi_;  // phi of each data set's x
};

}  // namespace tether::problems
