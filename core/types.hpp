// Shared aliases and the host/device annotation used by every component.
//
// Assignment problems are N x K matrices stored row-major (one group a row), because every
// per-group computation (softmax, expected cost, variance) walks one row contiguously.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <tether/core/hd.hpp>
#include <vector>

namespace tether {

using Index = Eigen::Index;
using Vector = Eigen::VectorXd;
/// N x K, row-major: row i holds the K options of group i.
using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixRef = Eigen::Ref<Matrix>;
/// The same layout in float (batches of single-precision rows, e.g. for the projections).
using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixFRef = Eigen::Ref<MatrixF>;
using ConstMatrixRef = Eigen::Ref<const Matrix>;
using VectorRef = Eigen::Ref<Vector>;
using ConstVectorRef = Eigen::Ref<const Vector>;

/// Allowed options, N x K: true where group i may take option k (an empty mask allows all).
using OptionMask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// One chosen option per group: assignment[i] in [0, K).
using Assignment = std::vector<int>;

/// Row-major one-hot matrix of an assignment.
inline Matrix one_hot(const Assignment& h, Index n_options) {
  Matrix y = Matrix::Zero(static_cast<Index>(h.size()), n_options);
  for (std::size_t i = 0; i < h.size(); ++i) y(static_cast<Index>(i), h[i]) = 1.0;
  return y;
}

/// True cost sum_i c_{i,h(i)} of an assignment.
inline double assignment_cost(const Matrix& costs, const Assignment& h) {
  double total = 0.0;
  for (std::size_t i = 0; i < h.size(); ++i) total += costs(static_cast<Index>(i), h[i]);
  return total;
}

}  // namespace tether
