// Derivative checks that can fail.
//
// Taylor slope (the Manopt check): for a correct gradient g of f at x and a direction d,
// r(h) = |f(x + h d) - f(x) - h <g, d>| = O(h^2), so log r against log h has slope 2 where
// r is above round-off. A wrong gradient gives slope 1. The same fit checks any quantity that
// should vanish to second order, e.g. the change of the budget along a tangent step.
#pragma once

#include <functional>
#include <string>
#include <tether/core/types.hpp>
#include <vector>

namespace tether {

struct TaylorSlopeReport {
  double slope = 0.0;         ///< least-squares slope of log r against log h
  std::vector<double> steps;  ///< the h values used in the fit
  std::vector<double> remainders;
  int points_used = 0;  ///< points above the round-off floor
};

/// Fits the log-log slope of remainder(h) for h log-spaced in [h_min, h_max], ignoring points
/// whose remainder is below `floor` (round-off). Throws if fewer than 3 points remain.
TaylorSlopeReport taylor_slope(const std::function<double(double)>& remainder, double h_min = 1e-5,
                               double h_max = 1e-1, int points = 9, double floor = 1e-13);

/// Taylor slope of f at x along d with claimed gradient g.
TaylorSlopeReport check_gradient_slope(const std::function<double(const Vector&)>& f,
                                       const Vector& x, const Vector& gradient,
                                       const Vector& direction, double h_min = 1e-5,
                                       double h_max = 1e-1);

/// Central finite-difference gradient of f at x with step h.
Vector finite_difference_gradient(const std::function<double(const Vector&)>& f, const Vector& x,
                                  double h = 1e-6);

}  // namespace tether
