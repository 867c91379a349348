// The constrained bilevel problem that LV-HBA solves, as a concept and its type-erased form.
//
//   min_{(x, y) in C} F(x, y)   s.t.   y in argmin_theta { f(x, theta) : g(x, theta) <= 0, theta in Y }
//
// (or g(x, theta) = 0 for equality-coupled lower levels). A problem class supplies
//   upper_dimension(), lower_dimension(), constraint_count()   n = dim x, m = dim y, l = dim g
//   upper_value(x, y)                 F(x, y)
//   upper_gradient(x, y, gx, gy)      gx = grad_x F, gy = grad_y F          (outputs pre-sized)
//   lower_value(x, y)                 f(x, y)
//   lower_gradient(x, y, gx, gy)      gx = grad_x f, gy = grad_y f
//   constraints(x, y, g)              g(x, y) in R^l
//   constraint_adjoint(x, y, lam, gx, gy)   gx = J_x g(x,y)^T lam, gy = J_y g(x,y)^T lam
//   project_lower(y)                  y <- Proj_Y(y)               (in place; Euclidean)
//   project_joint(x, y)               (x, y) <- Proj_C(x, y)       (in place; Euclidean)
// and optionally
//   constraint_kind()                 ConstraintKind::kInequality (default) or kEquality
//   solution_error(x, y)              distance to the known solution (tests, experiments)
// Projections onto simple sets are ready in core/projections.hpp; a general C may be projected
// by an inner solver inside project_joint, which the problem should then say.
#pragma once

#include <concepts>
#include <functional>
#include <string>
#include <tether/core/types.hpp>

namespace tether {

enum class ConstraintKind {
  kInequality,  ///< g(x, y) <= 0, multipliers in [0, r]
  kEquality,    ///< g(x, y) = 0, multipliers in [-r, r]
};

template <class P>
concept ConstrainedBilevelProblem =
    requires(const P& p, const Vector& x, const Vector& y, const Vector& lam, Vector& gx,
             Vector& gy, Vector& g, Vector& x_in_out, Vector& y_in_out) {
      { p.upper_dimension() } -> std::convertible_to<Index>;
      { p.lower_dimension() } -> std::convertible_to<Index>;
      { p.constraint_count() } -> std::convertible_to<Index>;
      { p.upper_value(x, y) } -> std::convertible_to<double>;
      p.upper_gradient(x, y, gx, gy);
      { p.lower_value(x, y) } -> std::convertible_to<double>;
      p.lower_gradient(x, y, gx, gy);
      p.constraints(x, y, g);
      p.constraint_adjoint(x, y, lam, gx, gy);
      p.project_lower(y_in_out);
      p.project_joint(x_in_out, y_in_out);
    };

/// Any ConstrainedBilevelProblem, type-erased, so solver bodies are compiled once in a .cpp.
struct BilevelObjective {
  Index upper_dimension = 0;
  Index lower_dimension = 0;
  Index constraint_count = 0;
  ConstraintKind constraint_kind = ConstraintKind::kInequality;
  std::function<double(const Vector&, const Vector&)> upper_value;
  std::function<void(const Vector&, const Vector&, Vector&, Vector&)> upper_gradient;
  std::function<double(const Vector&, const Vector&)> lower_value;
  std::function<void(const Vector&, const Vector&, Vector&, Vector&)> lower_gradient;
  std::function<void(const Vector&, const Vector&, Vector&)> constraints;
  std::function<void(const Vector&, const Vector&, const Vector&, Vector&, Vector&)>
      constraint_adjoint;
  std::function<void(Vector&)> project_lower;
  std::function<void(Vector&, Vector&)> project_joint;
  /// Empty where the problem knows no solution.
  std::function<double(const Vector&, const Vector&)> solution_error;
};

/// The objective refers to the problem, so the problem must outlive it: a temporary is refused.
template <ConstrainedBilevelProblem P>
BilevelObjective make_bilevel_objective(const P&&) = delete;

template <ConstrainedBilevelProblem P>
BilevelObjective make_bilevel_objective(const P& p) {
  BilevelObjective o;
  o.upper_dimension = static_cast<Index>(p.upper_dimension());
  o.lower_dimension = static_cast<Index>(p.lower_dimension());
  o.constraint_count = static_cast<Index>(p.constraint_count());
  if constexpr (requires {
                  { p.constraint_kind() } -> std::convertible_to<ConstraintKind>;
                })
    o.constraint_kind = p.constraint_kind();
  o.upper_value = [&p](const Vector& x, const Vector& y) {
    return static_cast<double>(p.upper_value(x, y));
  };
  o.upper_gradient = [&p](const Vector& x, const Vector& y, Vector& gx, Vector& gy) {
    p.upper_gradient(x, y, gx, gy);
  };
  o.lower_value = [&p](const Vector& x, const Vector& y) {
    return static_cast<double>(p.lower_value(x, y));
  };
  o.lower_gradient = [&p](const Vector& x, const Vector& y, Vector& gx, Vector& gy) {
    p.lower_gradient(x, y, gx, gy);
  };
  o.constraints = [&p](const Vector& x, const Vector& y, Vector& g) { p.constraints(x, y, g); };
  o.constraint_adjoint = [&p](const Vector& x, const Vector& y, const Vector& lam, Vector& gx,
                              Vector& gy) { p.constraint_adjoint(x, y, lam, gx, gy); };
  o.project_lower = [&p](Vector& y) { p.project_lower(y); };
  o.project_joint = [&p](Vector& x, Vector& y) { p.project_joint(x, y); };
  if constexpr (requires(const Vector& x, const Vector& y) {
                  { p.solution_error(x, y) } -> std::convertible_to<double>;
                })
    o.solution_error = [&p](const Vector& x, const Vector& y) {
      return static_cast<double>(p.solution_error(x, y));
    };
  return o;
}

}  // namespace tether
