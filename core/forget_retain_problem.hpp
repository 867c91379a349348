// The forget/retain (lexicographic, unlearning) problem that BLUR, OFMU and GU work on.
//
//   two losses over one parameter vector theta in R^d: l_f (forget) and l_r (retain).
//   BLUR: min l_r(theta) s.t. theta in argmin l_f;  OFMU: penalised stationarity of l_f;
//   GU:   a forget step that leaves l_r unchanged to first order.
//
// A problem class supplies
//   dimension()                       d
//   forget_loss(theta), retain_loss(theta)
//   forget_gradient(theta, g), retain_gradient(theta, g)         (g pre-sized to d)
// and optionally
//   forget_hessian_vector(theta, v, out), retain_hessian_vector(theta, v, out)
//       exact Hessian-vector products; where absent, the library takes central finite
//       differences of the gradient (finite_difference_hvp below)
//   solution_error(theta)             distance to the known solution (tests, experiments)
// Which loss plays which role is the solver's choice (BLUR can swap them); the concept only
// names two differentiable losses.
#pragma once

#include <concepts>
#include <functional>
#include <tether/core/types.hpp>

namespace tether {

template <class P>
concept ForgetRetainProblem = requires(const P& p, const Vector& theta, Vector& g) {
  { p.dimension() } -> std::convertible_to<Index>;
  { p.forget_loss(theta) } -> std::convertible_to<double>;
  { p.retain_loss(theta) } -> std::convertible_to<double>;
  p.forget_gradient(theta, g);
  p.retain_gradient(theta, g);
};

using GradientFunction = std::function<void(const Vector&, Vector&)>;
using HessianVectorFunction = std::function<void(const Vector&, const Vector&, Vector&)>;

/// Central finite-difference Hessian-vector product of a gradient field:
///   H v ~ |v| (grad(theta + h u) - grad(theta - h u)) / (2 h),  u = v / |v|,
/// with h = relative_step * max(1, |theta|) (the cube root of machine epsilon balances
/// truncation O(h^2) against round-off O(eps / h)). v = 0 gives 0 exactly.
void finite_difference_hvp(const GradientFunction& gradient, const Vector& theta, const Vector& v,
                           Vector& out, double relative_step = 6.0e-6);

/// Any ForgetRetainProblem, type-erased. The Hessian-vector products are always set: exact
/// where the problem gives them (the *_hvp_exact flags say so), finite differences otherwise.
struct ForgetRetainObjective {
  Index dimension = 0;
  std::function<double(const Vector&)> forget_loss;
  std::function<double(const Vector&)> retain_loss;
  GradientFunction forget_gradient;
  GradientFunction retain_gradient;
  HessianVectorFunction forget_hvp;
  HessianVectorFunction retain_hvp;
  bool forget_hvp_exact = false;
  bool retain_hvp_exact = false;
  /// Empty where the problem knows no solution.
  std::function<double(const Vector&)> solution_error;

  /// The same problem with the roles of the two losses exchanged.
  ForgetRetainObjective swapped() const;
};

/// The objective refers to the problem, so the problem must outlive it: a temporary is refused.
template <ForgetRetainProblem P>
ForgetRetainObjective make_forget_retain_objective(const P&&) = delete;

template <ForgetRetainProblem P>
ForgetRetainObjective make_forget_retain_objective(const P& p) {
  ForgetRetainObjective o;
  o.dimension = static_cast<Index>(p.dimension());
  o.forget_loss = [&p](const Vector& t) { return static_cast<double>(p.forget_loss(t)); };
  o.retain_loss = [&p](const Vector& t) { return static_cast<double>(p.retain_loss(t)); };
  o.forget_gradient = [&p](const Vector& t, Vector& g) { p.forget_gradient(t, g); };
  o.retain_gradient = [&p](const Vector& t, Vector& g) { p.retain_gradient(t, g); };
  if constexpr (requires(const Vector& t, const Vector& v, Vector& out) {
                  p.forget_hessian_vector(t, v, out);
                }) {
    o.forget_hvp = [&p](const Vector& t, const Vector& v, Vector& out) {
      p.forget_hessian_vector(t, v, out);
    };
    o.forget_hvp_exact = true;
  } else {
    o.forget_hvp = [g = o.forget_gradient](const Vector& t, const Vector& v, Vector& out) {
      finite_difference_hvp(g, t, v, out);
    };
  }
  if constexpr (requires(const Vector& t, const Vector& v, Vector& out) {
                  p.retain_hessian_vector(t, v, out);
                }) {
    o.retain_hvp = [&p](const Vector& t, const Vector& v, Vector& out) {
      p.retain_hessian_vector(t, v, out);
    };
    o.retain_hvp_exact = true;
  } else {
    o.retain_hvp = [g = o.retain_gradient](const Vector& t, const Vector& v, Vector& out) {
      finite_difference_hvp(g, t, v, out);
    };
  }
  if constexpr (requires(const Vector& t) {
                  { p.solution_error(t) } -> std::convertible_to<double>;
                })
    o.solution_error = [&p](const Vector& t) { return static_cast<double>(p.solution_error(t)); };
  return o;
}

}  // namespace tether
