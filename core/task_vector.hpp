// Task arithmetic: task vectors, the scaling searches, and the disentanglement error.
// Spec: specs/projection.md, section 2 ("Task arithmetic utilities"); the method whose effect
// they measure is OrthoReg (solvers/orthoreg.hpp), "Understanding and Enforcing Weight
// Disentanglement in Task Arithmetic" (CVPR 2026, arXiv 2604.17078).
//
// A model's parameters, and a task vector tau_t = theta_t - theta_0 (fine-tuned minus
// pre-trained), are named collections of matrices: NamedTensors (TaskVector is the same type).
// Arithmetic between two collections needs the same names with the same shapes, otherwise
// ShapeError names the first tensor that differs. The inner product is the sum over tensors of
// the Frobenius products, so dot, norm and cosine are those of the flattened vectors.
//
//   addition   theta = theta_0 + alpha sum_t tau_t
//   negation   theta = theta_0 - alpha tau_target                      (forgetting a task)
//
// alpha is searched on a grid (default 21 points, 0, 0.05, ..., 1) with a user-supplied
// evaluation on validation data:
//   addition: maximise the mean normalised accuracy (1/T) sum_t acc_t(theta) / acc_t(theta_t),
//             theta_t = theta_0 + tau_t the single-task fine-tuned model;
//   negation: minimise acc_target(theta) subject to
//             acc_control(theta) >= 0.95 acc_control(theta_0)          (95% of zero-shot).
// Ties go to the smaller alpha (the smaller edit). An accuracy is any finite number >= 0
// (fraction or percent); a non-finite one is refused with NumericalError.
//
// Disentanglement error (tangent task arithmetic, Ortiz-Jimenez et al. 2023):
//   xi(a_1, ..., a_T) = sum_t E_{x in S_t} dist(f(x; theta_0 + a_t tau_t),
//                                               f(x; theta_0 + sum_s a_s tau_s))
// with S_t the samples of task t and dist the Euclidean norm of the difference of the two
// outputs by default (|.| for a scalar output, as the spec writes it); the paper's
// classification variant (prediction disagreement) is a custom `distance`. xi = 0 when adding
// the other tasks' vectors leaves each task's outputs unchanged on its own inputs.
#pragma once

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <tether/core/regularizer.hpp>
#include <tether/core/types.hpp>
#include <utility>
#include <vector>

namespace tether {

/// Named matrices (row-major), iterated in name order.
class NamedTensors {
 public:
  using Map = std::map<std::string, Matrix, std::less<>>;

  NamedTensors() = default;
  /// Refuses a repeated or empty name (InvalidArgumentError).
  NamedTensors(std::initializer_list<std::pair<std::string, Matrix>> tensors);

  /// Adds a tensor; refuses an empty name or one already present (InvalidArgumentError).
  void insert(std::string name, Matrix value);
  /// The tensor named `name`; InvalidArgumentError naming it where absent.
  const Matrix& at(std::string_view name) const;
  Matrix& at(std::string_view name);
  bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

  std::size_t size() const { return tensors_.size(); }
  bool empty() const { return tensors_.empty(); }
  /// Total number of entries over all tensors.
  Index parameter_count() const;
  std::vector<std::string> names() const;
  Map::const_iterator begin() const { return tensors_.begin(); }
  Map::const_iterator end() const { return tensors_.end(); }

  /// ShapeError unless `other` has the same names with the same shapes; `what` names the
  /// operation in the message.
  void check_compatible(const NamedTensors& other, std::string_view what) const;

  NamedTensors& operator+=(const NamedTensors& other);
  NamedTensors& operator-=(const NamedTensors& other);
  NamedTensors& operator*=(double factor);
  /// this += factor * other (one pass, no temporary).
  NamedTensors& add_scaled(double factor, const NamedTensors& other);

 private:
  Map tensors_;
};

using TaskVector = NamedTensors;

NamedTensors operator+(NamedTensors a, const NamedTensors& b);
NamedTensors operator-(NamedTensors a, const NamedTensors& b);
NamedTensors operator-(NamedTensors a);
NamedTensors operator*(double factor, NamedTensors a);
NamedTensors operator*(NamedTensors a, double factor);

/// tau = finetuned - pretrained.
TaskVector task_vector(const NamedTensors& finetuned, const NamedTensors& pretrained);
/// Zeros with the names and shapes of `like`.
NamedTensors zeros_like(const NamedTensors& like);
/// sum_i tensors[i]; refuses an empty list.
NamedTensors sum(const std::vector<NamedTensors>& tensors);

/// sum over tensors of <a_i, b_i>_F.
double dot(const NamedTensors& a, const NamedTensors& b);
/// sqrt(dot(a, a)).
double norm(const NamedTensors& a);
/// dot(a, b) / (|a| |b|); InvalidArgumentError where either has norm 0 (no direction).
double cosine(const NamedTensors& a, const NamedTensors& b);

/// The layout of a NamedTensors (blocks in name order) and the flat vector <-> named forms.
ParameterLayout layout_of(const NamedTensors& tensors);
/// ShapeError unless the names and shapes are exactly those of the layout.
Vector flatten(const NamedTensors& tensors, const ParameterLayout& layout);
NamedTensors unflatten(const Vector& theta, const ParameterLayout& layout);

// ---- the alpha searches -----------------------------------------------------------------------

/// An evenly spaced grid of `points` values from lo to hi inclusive (default: 21 points in
/// [0, 1], the spec's grid).
struct AlphaGrid {
  double lo = 0.0;
  double hi = 1.0;
  int points = 21;  ///< >= 2 (>= 1 where lo == hi)

  /// True when lo, hi are finite with lo <= hi and points fits; otherwise `why` says which.
  bool is_valid(std::string* why) const;
  /// The grid values; lo and hi exactly at the ends.
  std::vector<double> values() const;
};

/// Accuracy of the model with parameters theta on (the validation data of) task `task`.
using TaskEvaluator = std::function<double(const NamedTensors& theta, std::size_t task)>;
/// Accuracy of the model with parameters theta on one fixed task.
using AccuracyFunction = std::function<double(const NamedTensors& theta)>;

struct AdditionSearchResult {
  double alpha = 0.0;                        ///< the chosen scaling
  std::size_t best_index = 0;                ///< its place in `alphas`
  double mean_normalized_accuracy = 0.0;     ///< at alpha
  std::vector<double> alphas;                ///< the grid
  std::vector<double> mean_normalized;       ///< one per alpha
  Matrix accuracies;                         ///< alphas x tasks: acc_t(theta_0 + alpha sum tau)
  std::vector<double> finetuned_accuracies;  ///< acc_t(theta_0 + tau_t), the normalisers
};

/// Task addition: alpha on the grid maximising the mean normalised accuracy (see the header
/// comment). Calls evaluate T (fine-tuned) + T * points times. Refuses no task vectors,
/// vectors that do not match theta_0 (ShapeError), an invalid grid, a fine-tuned accuracy of 0
/// (normalised accuracy undefined; InvalidArgumentError) and non-finite or negative accuracies
/// (NumericalError).
AdditionSearchResult search_addition_alpha(const NamedTensors& theta0,
                                           const std::vector<TaskVector>& task_vectors,
                                           const TaskEvaluator& evaluate,
                                           const AlphaGrid& grid = {});

struct NegationOptions {
  AlphaGrid grid;
  /// The control task must keep at least this share of its zero-shot accuracy; in (0, 1].
  double control_fraction = 0.95;
  bool is_valid(std::string* why) const;
};

struct NegationSearchResult {
  /// Whether some grid point keeps the control accuracy. Where none does, the fields below
  /// describe the grid point with the highest control accuracy (the nearest miss) and the
  /// result must not be used as a negation.
  bool feasible = false;
  double alpha = 0.0;
  std::size_t best_index = 0;
  double target_accuracy = 0.0;   ///< at alpha
  double control_accuracy = 0.0;  ///< at alpha
  double zero_shot_target = 0.0;  ///< acc_target(theta_0)
  double zero_shot_control = 0.0;
  double control_threshold = 0.0;  ///< control_fraction * zero_shot_control
  std::vector<double> alphas;
  std::vector<double> target_accuracies;   ///< one per alpha
  std::vector<double> control_accuracies;  ///< one per alpha
};

/// Task negation theta = theta_0 - alpha tau: the feasible alpha on the grid with the lowest
/// target accuracy (see the header comment). Calls each accuracy 1 + points times.
NegationSearchResult search_negation_alpha(const NamedTensors& theta0, const TaskVector& tau,
                                           const AccuracyFunction& target_accuracy,
                                           const AccuracyFunction& control_accuracy,
                                           const NegationOptions& options = {});

// ---- disentanglement error --------------------------------------------------------------------

/// The model's output f(x; theta) for one input x.
using ModelFunction = std::function<Vector(const Vector& x, const NamedTensors& theta)>;
/// dist(y1, y2) >= 0 between two outputs; empty: the Euclidean norm |y1 - y2|.
using OutputDistance = std::function<double(const Vector& y1, const Vector& y2)>;

/// xi(a_1, ..., a_T) over T >= 1 tasks; samples[t] holds task t's inputs, one a row.
/// Refuses sizes of task_vectors, alphas and samples that differ, an empty sample set, task
/// vectors that do not match theta_0 (ShapeError), outputs of different sizes (ShapeError),
/// and non-finite outputs or distances (NumericalError).
double disentanglement_error(const ModelFunction& f, const NamedTensors& theta0,
                             const std::vector<TaskVector>& task_vectors,
                             const std::vector<double>& alphas, const std::vector<Matrix>& samples,
                             const OutputDistance& distance = {});
/// xi(a1, a2) for two tasks with their own sample sets.
double disentanglement_error(const ModelFunction& f, const NamedTensors& theta0,
                             const TaskVector& tau1, const TaskVector& tau2, double a1, double a2,
                             const Matrix& samples1, const Matrix& samples2,
                             const OutputDistance& distance = {});

}  // namespace tether
