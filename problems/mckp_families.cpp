#include <algorithm>
#include <cmath>
#include <functional>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/mckp_families.hpp>
#include <utility>

namespace tether::problems {
namespace {

bool all_finite(const auto& m) { return m.allFinite(); }

void check_sizes(const char* who, int n_groups, int n_options) {
  require(n_groups >= 1, who, ": n_groups must be >= 1, got ", n_groups);
  require(n_options >= 1, who, ": n_options must be >= 1, got ", n_options);
}

/// Weights w_i >= 0 and bits b_k >= 0, finite, of sizes N and K; returns c = w b^T.
Matrix checked_costs(const char* who, const Vector& weights, const Vector& bits, Index n, Index k) {
  require<ShapeError>(n >= 1 && k >= 1, who, ": the table must be at least 1 x 1, got ", n, " x ",
                      k);
  require<ShapeError>(weights.size() == n, who, ": group_weights has ", weights.size(),
                      " entries, expected N = ", n);
  require<ShapeError>(bits.size() == k, who, ": option_bits has ", bits.size(),
                      " entries, expected K = ", k);
  require(all_finite(weights) && weights.minCoeff() >= 0.0, who,
          ": group_weights must be finite and >= 0");
  require(all_finite(bits) && bits.minCoeff() >= 0.0, who, ": option_bits must be finite and >= 0");
  return factored_costs(weights, bits);
}

void check_loss_shapes(const char* who, const Matrix& y, const Matrix& grad_y, Index n, Index k) {
  require<ShapeError>(y.rows() == n && y.cols() == k, who, ": Y is ", y.rows(), " x ", y.cols(),
                      ", expected N x K = ", n, " x ", k);
  require<ShapeError>(grad_y.rows() == n && grad_y.cols() == k, who, ": grad_Y is ", grad_y.rows(),
                      " x ", grad_y.cols(), ", expected N x K = ", n, " x ", k);
}

}  // namespace

double optimality_ratio(double objective, double optimum) {
  require(std::isfinite(objective), "optimality_ratio: objective must be finite, got ", objective);
  require(std::isfinite(optimum), "optimality_ratio: optimum must be finite, got ", optimum);
  require(optimum != 0.0, "optimality_ratio: optimum must be != 0 (the ratio is undefined)");
  if (optimum < 0.0) return objective / optimum;
  require(objective > 0.0, "optimality_ratio: with a positive optimum (", optimum,
          ") the objective must be > 0, got ", objective);
  return optimum / objective;
}

Vector default_bit_widths(int n_options) {
  require(n_options >= 1, "default_bit_widths: n_options must be >= 1, got ", n_options);
  return Vector::LinSpaced(n_options, 2.0, 2.0 + (n_options - 1));
}

// ---- SeparableMckp ------------------------------------------------------------------------

SeparableMckp SeparableMckp::generate(int n_groups, int n_options, std::uint64_t seed) {
  check_sizes("SeparableMckp::generate", n_groups, n_options);
  Rng rng(seed);
  const Vector bits = default_bit_widths(n_options);
  Matrix values(n_groups, n_options);
  Vector weights(n_groups);
  for (Index i = 0; i < n_groups; ++i) {
    const double a = rng.uniform(0.5, 2.0);
    weights[i] = 1.0 + static_cast<double>(rng.index(16));  // U{1..16}
    for (Index k = 0; k < n_options; ++k)
      values(i, k) = a * (1.0 - std::exp(-0.6 * (bits[k] - 2.0))) + 0.05 * rng.normal();
  }
  const double budget = std::floor(2.5 * weights.sum());
  return SeparableMckp(std::move(values), std::move(weights), bits, budget);
}

SeparableMckp::SeparableMckp(Matrix values, Vector group_weights, Vector option_bits, double budget)
    : values_(std::move(values)),
      group_weights_(std::move(group_weights)),
      option_bits_(std::move(option_bits)),
      budget_(budget) {
  costs_ =
      checked_costs("SeparableMckp", group_weights_, option_bits_, values_.rows(), values_.cols());
  require(all_finite(values_), "SeparableMckp: values must be finite");
  require(std::isfinite(budget_), "SeparableMckp: budget must be finite, got ", budget_);
}

double SeparableMckp::loss(const Matrix& y, Matrix& grad_y) const {
  check_loss_shapes("SeparableMckp::loss", y, grad_y, values_.rows(), values_.cols());
  grad_y = -values_;
  return -values_.cwiseProduct(y).sum();
}

// ---- CoupledMckp --------------------------------------------------------------------------

CoupledMckp CoupledMckp::generate(int n_groups, int n_options, std::uint64_t seed) {
  check_sizes("CoupledMckp::generate", n_groups, n_options);
  Rng rng(seed);
  const Vector bits = default_bit_widths(n_options);
  Matrix eps(n_groups, n_options);
  Vector weights(n_groups);
  for (Index i = 0; i < n_groups; ++i) {
    const double s = rng.uniform(0.5, 2.0);
    weights[i] = 1.0 + static_cast<double>(rng.index(16));
    for (Index k = 0; k < n_options; ++k)
      eps(i, k) = s * std::exp2(-(bits[k] - 2.0)) * std::exp(0.1 * rng.normal());
    // Noise must not reorder the options: more bits, less error.
    double* row = eps.data() + i * n_options;  // row-major: row i is contiguous
    std::sort(row, row + n_options, std::greater<double>());
  }
  Matrix a(n_groups, n_groups);
  for (Index j = 0; j < a.size(); ++j) a.data()[j] = rng.normal();
  // Coefficient-wise product: each entry one dot product in a fixed order, so Q does not depend
  // on the number of threads a blocked GEMM would use.
  Matrix q = a.lazyProduct(a.transpose()) / static_cast<double>(n_groups);
  q = 0.5 * (q + q.transpose()).eval();  // exactly symmetric
  const double budget = std::floor(2.5 * weights.sum());
  return CoupledMckp(std::move(eps), std::move(q), std::move(weights), bits, budget);
}

CoupledMckp::CoupledMckp(Matrix eps, Matrix q, Vector group_weights, Vector option_bits,
                         double budget)
    : eps_(std::move(eps)),
      q_(std::move(q)),
      group_weights_(std::move(group_weights)),
      option_bits_(std::move(option_bits)),
      budget_(budget) {
  costs_ = checked_costs("CoupledMckp", group_weights_, option_bits_, eps_.rows(), eps_.cols());
  require(all_finite(eps_), "CoupledMckp: eps must be finite");
  require<ShapeError>(q_.rows() == eps_.rows() && q_.cols() == eps_.rows(), "CoupledMckp: Q is ",
                      q_.rows(), " x ", q_.cols(), ", expected N x N = ", eps_.rows(), " x ",
                      eps_.rows());
  require(all_finite(q_), "CoupledMckp: Q must be finite");
  require((q_ - q_.transpose()).cwiseAbs().maxCoeff() <= 1e-12 * (1.0 + q_.cwiseAbs().maxCoeff()),
          "CoupledMckp: Q must be symmetric");
  require(std::isfinite(budget_), "CoupledMckp: budget must be finite, got ", budget_);
}

double CoupledMckp::loss(const Matrix& y, Matrix& grad_y) const {
  check_loss_shapes("CoupledMckp::loss", y, grad_y, eps_.rows(), eps_.cols());
  const Index n = eps_.rows();
  Vector e(n);  // e_i = sum_k Y_ik eps_ik
  for (Index i = 0; i < n; ++i) e[i] = y.row(i).dot(eps_.row(i));
  double value = 0.0;
  for (Index i = 0; i < n; ++i) {
    const double qe = q_.row(i).dot(e.transpose());  // (Q e)_i
    value += e[i] * (1.0 + 0.5 * qe);                // e_i + 1/2 e_i (Q e)_i
    grad_y.row(i) = (1.0 + qe) * eps_.row(i);
  }
  return value;
}

// ---- QuantProxy ---------------------------------------------------------------------------

Vector QuantProxy::llama_group_shares(int n_layers) {
  require(n_layers >= 1, "QuantProxy::llama_group_shares: n_layers must be >= 1, got ", n_layers);
  Vector shares(static_cast<Index>(n_layers) * kMatricesPerLayer);
  double layer_params = 0.0;
  for (const MatrixShape& m : kLlamaLayer) layer_params += static_cast<double>(m.rows * m.cols);
  const double total = layer_params * n_layers;
  for (Index i = 0; i < shares.size(); ++i) {
    const MatrixShape& m = kLlamaLayer[static_cast<std::size_t>(i % kMatricesPerLayer)];
    shares[i] = static_cast<double>(m.rows * m.cols) / total;
  }
  return shares;
}

QuantProxy QuantProxy::generate(int n_layers, std::uint64_t seed) {
  require(n_layers >= 1, "QuantProxy::generate: n_layers must be >= 1, got ", n_layers);
  Rng rng(seed);
  const Vector shares = llama_group_shares(n_layers);
  const Vector bits = default_bit_widths(kOptions);
  Matrix errors(shares.size(), kOptions);
  for (Index i = 0; i < shares.size(); ++i) {
    const double sensitivity = n_layers * shares[i] * std::exp(rng.normal());
    for (Index k = 0; k < kOptions; ++k)
      errors(i, k) = sensitivity * std::pow(4.0, -(bits[k] - 2.0));
  }
  return QuantProxy(std::move(errors), shares, bits, /*budget=*/2.5, /*lambda=*/1.0 / n_layers);
}

QuantProxy::QuantProxy(Matrix errors, Vector group_shares, Vector option_bits, double budget,
                       double lambda)
    : errors_(std::move(errors)),
      group_shares_(std::move(group_shares)),
      option_bits_(std::move(option_bits)),
      budget_(budget),
      lambda_(lambda) {
  require<ShapeError>(
      errors_.rows() >= kMatricesPerLayer && errors_.rows() % kMatricesPerLayer == 0,
      "QuantProxy: errors has ", errors_.rows(), " rows, expected a positive multiple of ",
      kMatricesPerLayer, " (7 matrices per layer)");
  costs_ = checked_costs("QuantProxy", group_shares_, option_bits_, errors_.rows(), errors_.cols());
  require(all_finite(errors_) && errors_.minCoeff() >= 0.0,
          "QuantProxy: errors must be finite and >= 0");
  require(std::isfinite(budget_), "QuantProxy: budget must be finite, got ", budget_);
  require(std::isfinite(lambda_) && lambda_ >= 0.0, "QuantProxy: lambda must be >= 0, got ",
          lambda_);
}

double QuantProxy::loss(const Matrix& y, Matrix& grad_y) const {
  check_loss_shapes("QuantProxy::loss", y, grad_y, errors_.rows(), errors_.cols());
  const Vector e = y.cwiseProduct(errors_).rowwise().sum();  // E_i
  const double total = e.sum();                              // S
  double value = 0.5 * lambda_ * total * total;
  for (Index l = 0; l * kMatricesPerLayer < e.size(); ++l) {
    const Index first = l * kMatricesPerLayer;
    const double layer = e.segment(first, kMatricesPerLayer).sum();  // E_l
    value += std::log1p(layer);
    const double scale = 1.0 / (1.0 + layer) + lambda_ * total;
    grad_y.middleRows(first, kMatricesPerLayer) =
        scale * errors_.middleRows(first, kMatricesPerLayer);
  }
  return value;
}

}  // namespace tether::problems
