#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/core/gradient_check.hpp>

namespace tether {

TaylorSlopeReport taylor_slope(const std::function<double(double)>& remainder, double h_min,
                               double h_max, int points, double floor) {
  require(h_min > 0.0 && h_max > h_min, "taylor_slope: need 0 < h_min < h_max, got h_min = ", h_min,
          ", h_max = ", h_max);
  require(points >= 3, "taylor_slope: points must be >= 3, got ", points);
  TaylorSlopeReport rep;
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (int j = 0; j < points; ++j) {
    const double h = h_min * std::pow(h_max / h_min, static_cast<double>(j) / (points - 1));
    const double r = std::abs(remainder(h));
    rep.steps.push_back(h);
    rep.remainders.push_back(r);
    if (!(r > floor) || !std::isfinite(r)) continue;
    const double lx = std::log(h), ly = std::log(r);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
    ++rep.points_used;
  }
  require<NumericalError>(rep.points_used >= 3, "taylor_slope: only ", rep.points_used,
                          " remainders above the round-off floor ", floor);
  const double n = rep.points_used;
  rep.slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  return rep;
}

TaylorSlopeReport check_gradient_slope(const std::function<double(const Vector&)>& f,
                                       const Vector& x, const Vector& gradient,
                                       const Vector& direction, double h_min, double h_max) {
  require<ShapeError>(gradient.size() == x.size() && direction.size() == x.size(),
                      "check_gradient_slope: x, gradient and direction must have one size");
  const double f0 = f(x);
  const double slope0 = gradient.dot(direction);
  return taylor_slope([&](double h) { return f(x + h * direction) - f0 - h * slope0; }, h_min,
                      h_max, 9, 1e-13 * std::max(1.0, std::abs(f0)));
}

Vector finite_difference_gradient(const std::function<double(const Vector&)>& f, const Vector& x,
                                  double h) {
  Vector g(x.size());
  Vector xp = x;
  for (Index j = 0; j < x.size(); ++j) {
    const double saved = xp[j];
    xp[j] = saved + h;
    const double fp = f(xp);
    xp[j] = saved - h;
    const double fm = f(xp);
    xp[j] = saved;
    g[j] = (fp - fm) / (2.0 * h);
  }
  return g;
}

}  // namespace tether
