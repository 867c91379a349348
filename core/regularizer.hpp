// Regularisers: weighted terms that any differentiable problem can add to its loss without a
// solver knowing.
//
//   L(theta) = loss(theta) + sum_j lambda_j R_j(theta),      lambda_j >= 0 (0 = off)
//
// Parameters are the one flat Vector theta that every problem concept here works on. A
// ParameterLayout names slices of it as matrices, each stored row-major (the order in which
// PyTorch flattens a weight), so a regulariser over named weight matrices reads
//   Eigen::Map<const Matrix> w = layout.matrix(theta, "encoder.0.weight");
// and writes its gradient into the same slice of a gradient of the same layout.
//
// A regulariser class supplies
//   dimension()                       d, the size of theta it expects
//   weight()                          lambda, finite and >= 0
//   value(theta)                      R(theta), unweighted
//   add_gradient(theta, scale, g)     g += scale * grad R(theta)      (g of size d, accumulated:
//                                     a regulariser never overwrites what is already in g)
// weighted_value / add_weighted_gradient below apply lambda and skip the term where lambda = 0.
//
// Adding regularisers to a problem: Regularized<P, R...> holds a problem and regularisers and
// is a problem of the same concept, so any solver takes it unchanged:
//   DifferentiableProblem  (dimension, loss, gradient):      loss + sum_j lambda_j R_j
//   ForgetRetainProblem    (forget_loss, retain_loss, ...):  the terms go to the retain loss
//                          (default), the forget loss, or both (RegularizedLoss)
// The wrapper forwards neither the problem's exact Hessian-vector products (the regularised
// loss has a different Hessian; the library then takes finite differences of the regularised
// gradient) nor its solution_error (the regularised problem has another solution).
// RegularizerList is a regulariser made of a list chosen at run time (type-erased, copied in).
//
//   tether::ParameterLayout layout;
//   layout.add("fc1.weight", 64, 32);
//   layout.add("fc2.weight", 10, 64);
//   MyProblem task(layout);                                   // a DifferentiableProblem
//   tether::OrthoReg ortho(layout, {tether::OrthoRegLayer::full("fc1.weight", w0)},
//                          {.lambda = 0.5});
//   tether::Regularized problem(task, ortho);                 // loss + 0.5 L_ortho
//   problem.loss(theta); problem.gradient(theta, g);
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tether/core/errors.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/types.hpp>
#include <tuple>
#include <utility>
#include <vector>

namespace tether {

// ---- named slices of a flat parameter vector ----------------------------------------------

/// One named matrix inside a flat parameter vector: entries [offset, offset + rows * cols),
/// row-major.
struct ParameterBlock {
  std::string name;
  Index offset = 0;
  Index rows = 0;
  Index cols = 0;
  Index size() const { return rows * cols; }
};

/// Named row-major matrices laid end to end in one flat Vector, in the order they were added.
class ParameterLayout {
 public:
  /// Appends a rows x cols block; returns its offset. Refuses an empty name, a name already
  /// present, and rows or cols < 1 (InvalidArgumentError).
  Index add(std::string name, Index rows, Index cols) {
    require(!name.empty(), "ParameterLayout::add: the name must not be empty");
    require(rows >= 1 && cols >= 1, "ParameterLayout::add: block '", name,
            "' needs rows >= 1 and cols >= 1, got ", rows, " x ", cols);
    require(!index_.contains(name), "ParameterLayout::add: block '", name, "' is already present");
    const Index offset = size_;
    index_.emplace(name, blocks_.size());
    blocks_.push_back({std::move(name), offset, rows, cols});
    size_ += rows * cols;
    return offset;
  }

  /// Total number of parameters: the size of a theta of this layout.
  Index size() const { return size_; }
  const std::vector<ParameterBlock>& blocks() const { return blocks_; }
  bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

  /// The block named `name`; InvalidArgumentError naming it where absent.
  const ParameterBlock& block(std::string_view name) const {
    const auto it = index_.find(name);
    require(it != index_.end(), "ParameterLayout: no block named '", name, "'");
    return blocks_[it->second];
  }

  /// Views of one block of theta (ShapeError unless theta.size() == size()).
  Eigen::Map<const Matrix> matrix(const Vector& theta, const ParameterBlock& b) const {
    check_size(theta);
    return Eigen::Map<const Matrix>(theta.data() + b.offset, b.rows, b.cols);
  }
  Eigen::Map<Matrix> matrix(Vector& theta, const ParameterBlock& b) const {
    check_size(theta);
    return Eigen::Map<Matrix>(theta.data() + b.offset, b.rows, b.cols);
  }
  Eigen::Map<const Matrix> matrix(const Vector& theta, std::string_view name) const {
    return matrix(theta, block(name));
  }
  Eigen::Map<Matrix> matrix(Vector& theta, std::string_view name) const {
    return matrix(theta, block(name));
  }

  /// ShapeError unless v.size() == size().
  void check_size(const Vector& v, const char* what = "theta") const {
    require<ShapeError>(v.size() == size_, "ParameterLayout: ", what, " has size ", v.size(),
                        ", the layout has ", size_, " parameters");
  }

 private:
  std::vector<ParameterBlock> blocks_;
  std::map<std::string, std::size_t, std::less<>> index_;
  Index size_ = 0;
};

// ---- the concepts -----------------------------------------------------------------------------

template <class R>
concept Regularizer = requires(const R& r, const Vector& theta, double scale, Vector& g) {
  { r.dimension() } -> std::convertible_to<Index>;
  { r.weight() } -> std::convertible_to<double>;
  { r.value(theta) } -> std::convertible_to<double>;
  r.add_gradient(theta, scale, g);
};

/// A single differentiable loss over theta in R^d: dimension(), loss(theta), and
/// gradient(theta, g) that writes grad loss into g (pre-sized to d).
template <class P>
concept DifferentiableProblem = requires(const P& p, const Vector& theta, Vector& g) {
  { p.dimension() } -> std::convertible_to<Index>;
  { p.loss(theta) } -> std::convertible_to<double>;
  p.gradient(theta, g);
};

/// lambda R(theta); 0 without evaluating R where lambda = 0 (the term is off).
template <Regularizer R>
double weighted_value(const R& r, const Vector& theta) {
  const double w = static_cast<double>(r.weight());
  return w == 0.0 ? 0.0 : w * static_cast<double>(r.value(theta));
}

/// g += lambda grad R(theta); nothing where lambda = 0.
template <Regularizer R>
void add_weighted_gradient(const R& r, const Vector& theta, Vector& g) {
  const double w = static_cast<double>(r.weight());
  if (w != 0.0) r.add_gradient(theta, w, g);
}

namespace detail {
template <Regularizer R>
void check_regularizer(const R& r, Index dimension, const char* who) {
  const double w = static_cast<double>(r.weight());
  require(std::isfinite(w) && w >= 0.0, who,
          ": a regulariser's weight must be finite and >= 0, got ", w);
  require<ShapeError>(static_cast<Index>(r.dimension()) == dimension, who,
                      ": a regulariser expects dimension ", static_cast<Index>(r.dimension()),
                      ", the problem has ", dimension);
}
}  // namespace detail

// ---- a list chosen at run time ------------------------------------------------------------

/// Regularisers of one dimension, type-erased and copied in. Itself a Regularizer with weight
/// 1 whose value is sum_j lambda_j R_j (each member's own weight applied inside).
class RegularizerList {
 public:
  explicit RegularizerList(Index dimension) : dimension_(dimension) {
    require(dimension >= 0, "RegularizerList: dimension must be >= 0, got ", dimension);
  }

  /// Appends a copy of r. Refuses a weight that is negative or not finite
  /// (InvalidArgumentError) and a dimension other than the list's (ShapeError).
  template <Regularizer R>
  void add(R r) {
    detail::check_regularizer(r, dimension_, "RegularizerList::add");
    auto held = std::make_shared<const R>(std::move(r));
    terms_.push_back({[held](const Vector& t) { return weighted_value(*held, t); },
                      [held](const Vector& t, double scale, Vector& g) {
                        const double w = static_cast<double>(held->weight());
                        if (w != 0.0) held->add_gradient(t, scale * w, g);
                      }});
  }

  Index dimension() const { return dimension_; }
  double weight() const { return 1.0; }
  std::size_t size() const { return terms_.size(); }

  /// sum_j lambda_j R_j(theta) (0 for an empty list).
  double value(const Vector& theta) const {
    double total = 0.0;
    for (const Term& t : terms_) total += t.value(theta);
    return total;
  }
  /// g += scale * sum_j lambda_j grad R_j(theta).
  void add_gradient(const Vector& theta, double scale, Vector& g) const {
    for (const Term& t : terms_) t.add_gradient(theta, scale, g);
  }

 private:
  struct Term {
    std::function<double(const Vector&)> value;
    std::function<void(const Vector&, double, Vector&)> add_gradient;
  };
  Index dimension_ = 0;
  std::vector<Term> terms_;
};

// ---- a problem with regularisers added ------------------------------------------------------

/// Which loss of a ForgetRetainProblem takes the regularisers.
enum class RegularizedLoss { kRetain, kForget, kBoth };

/// Problem P with regularisers R... added to its loss (see the header comment). Holds P by
/// reference (the problem must outlive the wrapper: a temporary is refused) and the regularisers
/// by value. Models DifferentiableProblem where P does and ForgetRetainProblem where P does.
template <class P, Regularizer... R>
class Regularized {
  static_assert(DifferentiableProblem<P> || ForgetRetainProblem<P>,
                "Regularized<P, R...>: P must be a DifferentiableProblem (dimension, loss, "
                "gradient) or a ForgetRetainProblem");

 public:
  Regularized(const P& problem, R... regularizers)
      : Regularized(RegularizedLoss::kRetain, problem, std::move(regularizers)...) {}
  /// `target` says which loss of a ForgetRetainProblem takes the terms (ignored otherwise).
  Regularized(RegularizedLoss target, const P& problem, R... regularizers)
      : problem_(problem), regularizers_(std::move(regularizers)...), target_(target) {
    const Index d = problem_dimension();
    std::apply([d](const auto&... r) { (detail::check_regularizer(r, d, "Regularized"), ...); },
               regularizers_);
  }
  Regularized(const P&&, R...) = delete;
  Regularized(RegularizedLoss, const P&&, R...) = delete;

  const P& problem() const { return problem_; }
  const std::tuple<R...>& regularizers() const { return regularizers_; }
  RegularizedLoss target() const { return target_; }

  Index dimension() const { return problem_dimension(); }

  /// sum_j lambda_j R_j(theta): what the wrapper adds to a loss.
  double penalty(const Vector& theta) const {
    return std::apply([&](const auto&... r) { return (0.0 + ... + weighted_value(r, theta)); },
                      regularizers_);
  }
  /// g += sum_j lambda_j grad R_j(theta).
  void add_penalty_gradient(const Vector& theta, Vector& g) const {
    std::apply([&](const auto&... r) { (add_weighted_gradient(r, theta, g), ...); }, regularizers_);
  }

  // DifferentiableProblem
  double loss(const Vector& theta) const requires DifferentiableProblem<P> {
    return static_cast<double>(problem_.loss(theta)) + penalty(theta);
  }
  void gradient(const Vector& theta, Vector& g) const requires DifferentiableProblem<P> {
    problem_.gradient(theta, g);
    add_penalty_gradient(theta, g);
  }

  // ForgetRetainProblem
  double forget_loss(const Vector& theta) const requires ForgetRetainProblem<P> {
    const double l = static_cast<double>(problem_.forget_loss(theta));
    return target_ == RegularizedLoss::kRetain ? l : l + penalty(theta);
  }
  double retain_loss(const Vector& theta) const requires ForgetRetainProblem<P> {
    const double l = static_cast<double>(problem_.retain_loss(theta));
    return target_ == RegularizedLoss::kForget ? l : l + penalty(theta);
  }
  void forget_gradient(const Vector& theta, Vector& g) const requires ForgetRetainProblem<P> {
    problem_.forget_gradient(theta, g);
    if (target_ != RegularizedLoss::kRetain) add_penalty_gradient(theta, g);
  }
  void retain_gradient(const Vector& theta, Vector& g) const requires ForgetRetainProblem<P> {
    problem_.retain_gradient(theta, g);
    if (target_ != RegularizedLoss::kForget) add_penalty_gradient(theta, g);
  }

 private:
  Index problem_dimension() const { return static_cast<Index>(problem_.dimension()); }

  const P& problem_;
  std::tuple<R...> regularizers_;
  RegularizedLoss target_ = RegularizedLoss::kRetain;
};

template <class P, class... R>
Regularized(const P&, R...) -> Regularized<P, R...>;
template <class P, class... R>
Regularized(RegularizedLoss, const P&, R...) -> Regularized<P, R...>;

}  // namespace tether
