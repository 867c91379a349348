#include <algorithm>
#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <utility>

namespace tether {

void finite_difference_hvp(const GradientFunction& gradient, const Vector& theta, const Vector& v,
                           Vector& out, double relative_step) {
  require<ShapeError>(v.size() == theta.size(), "finite_difference_hvp: v has size ", v.size(),
                      ", theta has size ", theta.size());
  require(relative_step > 0.0 && std::isfinite(relative_step),
          "finite_difference_hvp: relative_step must be finite and > 0, got ", relative_step);
  out.resize(theta.size());
  const double v_norm = v.norm();
  if (v_norm == 0.0) {
    out.setZero();
    return;
  }
  const double h = relative_step * std::max(1.0, theta.norm());
  const Vector u = v / v_norm;
  Vector g_plus(theta.size()), g_minus(theta.size());
  gradient(theta + h * u, g_plus);
  gradient(theta - h * u, g_minus);
  out = (g_plus - g_minus) * (v_norm / (2.0 * h));
}

ForgetRetainObjective ForgetRetainObjective::swapped() const {
  ForgetRetainObjective s = *this;
  std::swap(s.forget_loss, s.retain_loss);
  std::swap(s.forget_gradient, s.retain_gradient);
  std::swap(s.forget_hvp, s.retain_hvp);
  std::swap(s.forget_hvp_exact, s.retain_hvp_exact);
  return s;
}

}  // namespace tether
