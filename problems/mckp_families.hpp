// Seeded synthetic multiple-choice knapsack families (specs/rco.md, section 6).
//
// Every family assigns one of K options (bit widths b_k) to each of N groups, with costs
// c_ik = w_i b_k and a budget B on sum_i c_{i,h(i)}; each is a plain class satisfying
// tether::AssignmentProblem. Y is the N x K row-major matrix of an assignment (rows one-hot) or
// of a relaxation (rows on the simplex); loss(Y, grad_Y) writes dL/dY into grad_Y (N x K).
//
//   SeparableMckp  L(Y) = -sum_ik v_ik Y_ik                      (the DP gives the exact optimum)
//   CoupledMckp    L(Y) = sum_i e_i + 1/2 e^T Q e,  e_i = sum_k Y_ik eps_ik,  Q PSD
//   QuantProxy     L(Y) = sum_l log(1 + E_l) + lambda/2 (sum_i E_i)^2,  E_i = sum_k Y_ik e_ik,
//                  E_l = sum_{i in layer l} E_i (LLM mixed-precision quantization, Llama shapes)
//
// The same (sizes, seed) gives the same instance bit for bit: all randomness comes from
// tether::Rng, drawn in the order each generate() documents.
//
//   auto p = tether::problems::SeparableMckp::generate(50, 7, /*seed=*/1);
//   tether::MultipleChoiceKnapsack dp(p.costs(), p.budget());
//   double optimum = -dp.solve(p.values()).value;              // exact: integer costs
//   double ratio = tether::problems::optimality_ratio(my_loss, optimum);
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <tether/core/concepts.hpp>
#include <tether/core/types.hpp>

namespace tether::problems {

/// "Achieved / optimal" in the better-is-higher sense, for a minimisation whose optimum is
/// `optimum` and whose achieved loss is `objective` (both finite, optimum != 0):
///   optimum < 0 (e.g. separable, L = -value): objective / optimum  (= value / optimal value);
///   optimum > 0 (an error to minimise):        optimum / objective  (objective must be > 0).
/// 1 means optimal; below 1 means worse. Throws InvalidArgumentError otherwise.
double optimality_ratio(double objective, double optimum);

/// Bit widths 2, 3, ..., 2 + K - 1 (the options of every family).
Vector default_bit_widths(int n_options);

// ---------------------------------------------------------------------------------------------
/// Separable MCKP: maximise the total value sum_i v_{i,h(i)} within an integer budget.
///
///   b_k  = 2 + k                                        (k = 0..K-1)
///   v_ik = a_i (1 - exp(-0.6 (b_k - 2))) + 0.05 z_ik,   a_i ~ U[0.5, 2],  z_ik ~ N(0, 1)
///   c_ik = w_i b_k,                                     w_i ~ U{1, ..., 16}
///   B    = floor(2.5 sum_i w_i)                         (average 2.5 bits)
///   L(Y) = -sum_ik v_ik Y_ik,   dL/dY_ik = -v_ik.
///
/// Costs and budget are integers, so MultipleChoiceKnapsack on (costs, values) gives the exact
/// optimum -L*. Budget sense kEqual: relaxations hold the expected cost at B; hard answers are
/// at most B (which is also what the DP's optimum means).
class SeparableMckp {
 public:
  /// Draw order per group i: a_i, w_i, then z_i0..z_i,K-1. n_groups >= 1, n_options >= 1.
  static SeparableMckp generate(int n_groups, int n_options, std::uint64_t seed);

  /// From explicit data: values N x K, group_weights (N) >= 0, option_bits (K) >= 0, finite.
  SeparableMckp(Matrix values, Vector group_weights, Vector option_bits, double budget);

  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  BudgetSense budget_sense() const { return BudgetSense::kEqual; }
  double loss(const Matrix& y, Matrix& grad_y) const;

  const Matrix& values() const { return values_; }
  const Vector& group_weights() const { return group_weights_; }
  const Vector& option_bits() const { return option_bits_; }
  Index groups() const { return values_.rows(); }
  Index options() const { return values_.cols(); }

 private:
  Matrix values_;
  Vector group_weights_;
  Vector option_bits_;
  Matrix costs_;
  double budget_;
};

// ---------------------------------------------------------------------------------------------
/// Coupled (non-separable) MCKP: per-group errors interact through a PSD matrix Q.
///
///   b_k    = 2 + k,  c_ik = w_i b_k,  w_i ~ U{1..16},  B = floor(2.5 sum_i w_i)
///   eps_ik = s_i 2^{-(b_k - 2)} exp(0.1 z_ik),  s_i ~ U[0.5, 2],  z_ik ~ N(0, 1);
///            each row then sorted decreasing, so eps_ik > 0 falls with the bit width
///   Q      = A A^T / N,  A_ij ~ N(0, 1)  (N x N, positive semi-definite)
///   e_i    = sum_k Y_ik eps_ik
///   L(Y)   = sum_i e_i + 1/2 e^T Q e,    dL/dY_ik = (1 + (Q e)_i) eps_ik.
///
/// Small instances (K^N <= 5e7) are solved exactly by enumerate_optimum (enumerate.hpp).
class CoupledMckp {
 public:
  /// Draw order: per group i: s_i, w_i, z_i0..z_i,K-1; then A row by row.
  static CoupledMckp generate(int n_groups, int n_options, std::uint64_t seed);

  /// From explicit data: eps N x K, q N x N symmetric, weights N >= 0, bits K >= 0, finite.
  CoupledMckp(Matrix eps, Matrix q, Vector group_weights, Vector option_bits, double budget);

  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  BudgetSense budget_sense() const { return BudgetSense::kEqual; }
  double loss(const Matrix& y, Matrix& grad_y) const;

  const Matrix& eps() const { return eps_; }
  const Matrix& coupling() const { return q_; }
  const Vector& group_weights() const { return group_weights_; }
  const Vector& option_bits() const { return option_bits_; }
  Index groups() const { return eps_.rows(); }
  Index options() const { return eps_.cols(); }

 private:
  Matrix eps_;
  Matrix q_;  // N x N, symmetric
  Vector group_weights_;
  Vector option_bits_;
  Matrix costs_;
  double budget_;
};

// ---------------------------------------------------------------------------------------------
/// A proxy of LLM mixed-precision quantization: choose a bit width (2..8) for each of the seven
/// weight matrices of every transformer layer (Llama-3-8B shapes), at 2.5 average bits.
///
///   groups   i = 7 l + t, layer l = 0..L-1, matrix t in {q, k, v, o, gate, up, down}
///   w_i      = params_i / sum_j params_j         (shares: sum_i w_i = 1)
///   b_k      = 2..8 (K = 7),  c_ik = w_i b_k,  B = 2.5 average bits, sense kEqual
///   sens_i   = L w_i exp(z_i),  z_i ~ N(0, 1)     (log-normal per-parameter sensitivity,
///                                                  times the parameter count; O(1) per layer)
///   e_ik     = sens_i 4^{-(b_k - 2)}              (error falls 4x per extra bit)
///   E_i      = sum_k Y_ik e_ik,  E_l = sum_{t} E_{7l+t},  S = sum_i E_i
///   L(Y)     = sum_l log(1 + E_l) + lambda/2 S^2,   lambda = 1 / L by default
///   dL/dY_ik = (1 / (1 + E_{l(i)}) + lambda S) e_ik
///
/// Why this loss: within a layer errors add and their effect saturates (log), across layers
/// they compound (the quadratic in the total), so the optimum is not a sum over groups and a
/// knapsack on any fixed per-group table is not exact. lambda = 1/L keeps both terms O(L).
class QuantProxy {
 public:
  static constexpr int kMatricesPerLayer = 7;
  static constexpr int kOptions = 7;  ///< bits 2..8
  struct MatrixShape {
    std::string_view name;
    std::int64_t rows, cols;
  };
  /// q 4096x4096, k 4096x1024, v 4096x1024, o 4096x4096, gate/up 4096x14336, down 14336x4096.
  static constexpr std::array<MatrixShape, kMatricesPerLayer> kLlamaLayer = {{
      {"q", 4096, 4096},
      {"k", 4096, 1024},
      {"v", 4096, 1024},
      {"o", 4096, 4096},
      {"gate", 4096, 14336},
      {"up", 4096, 14336},
      {"down", 14336, 4096},
  }};

  /// Shares w_i of all parameters of n_layers Llama layers, layer-major (7 n_layers entries,
  /// sum 1). The knapsack benchmark uses the same instance (n_layers = 32: N = 224, K = 7).
  static Vector llama_group_shares(int n_layers);

  /// Draw order: z_0..z_{N-1}. n_layers >= 1.
  static QuantProxy generate(int n_layers, std::uint64_t seed);

  /// From explicit data: errors N x K (N = 7 n_layers) finite, shares N >= 0, bits K >= 0,
  /// lambda >= 0, budget finite.
  QuantProxy(Matrix errors, Vector group_shares, Vector option_bits, double budget, double lambda);

  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  BudgetSense budget_sense() const { return BudgetSense::kEqual; }
  double loss(const Matrix& y, Matrix& grad_y) const;

  const Matrix& errors() const { return errors_; }
  const Vector& group_shares() const { return group_shares_; }
  const Vector& option_bits() const { return option_bits_; }
  double lambda() const { return lambda_; }
  int layers() const { return static_cast<int>(errors_.rows()) / kMatricesPerLayer; }
  Index groups() const { return errors_.rows(); }
  Index options() const { return errors_.cols(); }

 private:
  Matrix errors_;
  Vector group_shares_;
  Vector option_bits_;
  Matrix costs_;
  double budget_;
  double lambda_;
};

static_assert(AssignmentProblem<SeparableMckp>);
static_assert(AssignmentProblem<CoupledMckp>);
static_assert(AssignmentProblem<QuantProxy>);

}  // namespace tether::problems
