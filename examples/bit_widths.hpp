// The README's first example: choose a bit width for each layer of a small model so that the
// average bit width is exactly the budget, minimising a loss that couples the layers.
#pragma once

#include <tether/solvers/rco.hpp>

struct BitWidthProblem {
  tether::Matrix costs_;  // costs_(i, k) = share of parameters of layer i x bits of option k
  tether::Matrix error_;  // error_(i, k) = quantisation error of layer i at option k
  double budget_ = 0.0;   // average bits

  BitWidthProblem(const tether::Vector& shares, const tether::Vector& bits,
                  const tether::Vector& sensitivity, double average_bits)
      : costs_(shares * bits.transpose()),
        error_(shares.size(), bits.size()),
        budget_(average_bits) {
    for (Eigen::Index i = 0; i < error_.rows(); ++i)
      for (Eigen::Index k = 0; k < error_.cols(); ++k)
        error_(i, k) = sensitivity[i] * std::pow(4.0, -bits[k]);  // error falls 4x per bit
  }
  const tether::Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }

  // L(Y) = (sum_i e_i)^2 + sum_i e_i^2 with e_i = sum_k Y_ik error_ik: errors add up across
  // layers and compound, so the loss is not a sum over layers.
  double loss(const tether::Matrix& y, tether::Matrix& grad_y) const {
    const tether::Vector e = y.cwiseProduct(error_).rowwise().sum();
    const double total = e.sum();
    for (Eigen::Index i = 0; i < y.rows(); ++i)
      grad_y.row(i) = (2.0 * total + 2.0 * e[i]) * error_.row(i);
    return total * total + e.squaredNorm();
  }
};
