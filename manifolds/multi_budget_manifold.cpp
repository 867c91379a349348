#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <limits>
#include <tether/core/concepts.hpp>
#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_row.hpp>
#include <tether/manifolds/multi_budget_manifold.hpp>

namespace tether {

namespace {
// Gram matrix of the normals: an LDLT pivot below this fraction of the largest counts as zero
// (normals at an angle below ~1e-5 are treated as dependent), and the regularised system adds
// this fraction of the trace. Refinement sweeps against G then remove the regularisation's
// bias on the range of G (it contracts by ~delta tr(G) / lambda_min+ per sweep), while the
// round-off in G's near-null directions is amplified by at most 1 / (delta tr(G)).
constexpr double kGramRankTolerance = 1e-10;
constexpr double kGramRegularisation = 1e-10;
constexpr int kGramRefinements = 3;
// Newton Jacobian: regularised only where the covariance is singular to round-off (dependent
// costs, or rows saturated along some direction); J + delta tr(J) I keeps d a descent
// direction of the potential Psi.
constexpr double kJacobianRankTolerance = 1e-14;
constexpr double kJacobianRegularisation = 1e-14;
// Step cap, in logits: no row's logit spread changes by more than this in one Newton step at
// first; the cap doubles after every full capped step that is accepted and halves (down to
// one logit) after a step that needed backtracking.
constexpr double kInitialRadius = 8.0;
constexpr double kArmijo = 1e-4;
constexpr int kMaxHalvings = 40;

// Solves A x = b for symmetric positive semi-definite A by LDLT; where A is (numerically)
// singular, solves (A + delta tr(A) I) x = b and refines `refinements` times against A.
// Returns the numerical rank (pivots above rank_tol times the largest) and whether it
// regularised.
struct PsdSolve {
  Vector x;
  Index rank = 0;
  bool regularised = false;
  bool ok = false;
};

PsdSolve solve_psd(const Eigen::MatrixXd& a, const Vector& b, double rank_tol, double reg,
                   int refinements) {
  PsdSolve out;
  const Index m = a.rows();
  const double tr = a.trace();
  if (!(tr > 1e-300) || !std::isfinite(tr)) return out;
  Eigen::LDLT<Eigen::MatrixXd> ldlt(a);
  const Vector d = ldlt.vectorD();
  const double dmax = d.maxCoeff();
  out.rank = 0;
  for (Index j = 0; j < m; ++j)
    if (d[j] > rank_tol * dmax) ++out.rank;
  if (ldlt.info() == Eigen::Success && out.rank == m) {
    out.x = ldlt.solve(b);
  } else {
    out.regularised = true;
    const Eigen::MatrixXd shifted = a + (reg * tr) * Eigen::MatrixXd::Identity(m, m);
    Eigen::LDLT<Eigen::MatrixXd> reg_ldlt(shifted);
    out.x = reg_ldlt.solve(b);
    for (int r = 0; r < refinements; ++r) out.x += reg_ldlt.solve(b - a * out.x);
  }
  out.ok = out.x.allFinite();
  return out;
}
}  // namespace

MultiBudgetManifold::MultiBudgetManifold(const std::vector<Matrix>& costs, const Vector& budgets,
                                         const RetractionOptions& options)
    : budgets_(budgets), options_(options) {
  require<ShapeError>(!costs.empty(), "MultiBudgetManifold: need at least one cost matrix");
  const Index m = static_cast<Index>(costs.size());
  n_ = costs[0].rows();
  k_ = costs[0].cols();
  require<ShapeError>(n_ > 0 && k_ > 0, "MultiBudgetManifold: costs[0] must be N x K with N, K ",
                      ">= 1, got ", n_, " x ", k_);
  require<ShapeError>(budgets.size() == m, "MultiBudgetManifold: ", m, " cost matrices but ",
                      budgets.size(), " budgets");
  require(options.tolerance > 0.0, "RetractionOptions::tolerance must be > 0, got ",
          options.tolerance);
  require(options.max_passes >= 1, "RetractionOptions::max_passes must be >= 1, got ",
          options.max_passes);
  stacked_.resize(m * n_, k_);
  for (Index j = 0; j < m; ++j) {
    const Matrix& c = costs[static_cast<std::size_t>(j)];
    require<ShapeError>(c.rows() == n_ && c.cols() == k_, "MultiBudgetManifold: costs[", j, "] is ",
                        c.rows(), " x ", c.cols(), ", costs[0] is ", n_, " x ", k_);
    validate_manifold_budget(c, budgets[j], BudgetSense::kEqual,
                             detail::concat("MultiBudgetManifold: budget of costs[", j, "]"));
    stacked_.middleRows(j * n_, n_) = c;
  }
}

Matrix MultiBudgetManifold::costs(Index j) const {
  require<InvalidArgumentError>(j >= 0 && j < budget_count(), "MultiBudgetManifold: budget index ",
                                j, " outside [0, ", budget_count(), ")");
  return stacked_.middleRows(j * n_, n_);
}

void MultiBudgetManifold::check_shape(Index rows, Index cols, const char* name) const {
  require<ShapeError>(rows == n_ && cols == k_, "MultiBudgetManifold: ", name, " is ", rows, " x ",
                      cols, ", costs are ", n_, " x ", k_);
}

double MultiBudgetManifold::scale(Index j) const { return std::max(1.0, std::abs(budgets_[j])); }

double MultiBudgetManifold::evaluate(const Matrix& alpha, const Vector* t, Vector& c,
                                     Matrix* jacobian, double* magnitude) const {
  const Index m = budget_count();
  const int k = static_cast<int>(k_), mi = static_cast<int>(m);
  const long long stride = static_cast<long long>(n_) * k_;
  c = Vector::Zero(m);
  if (jacobian != nullptr) jacobian->setZero(m, m);
  Vector p(k_), e(m);
  Matrix cov(m, m);
  double log_partition = 0.0, abs_sum = 0.0;
  for (Index i = 0; i < n_; ++i) {
    const double row =
        budget_row::moments_multi(alpha.row(i).data(), stacked_.row(i).data(), stride, mi, k,
                                  t != nullptr ? t->data() : nullptr, p.data(), e.data(),
                                  jacobian != nullptr ? cov.data() : nullptr);
    log_partition += row;
    abs_sum += std::abs(row);
    c += e;
    if (jacobian != nullptr) *jacobian += cov;
  }
  if (magnitude != nullptr) *magnitude = abs_sum;
  return log_partition;
}

Vector MultiBudgetManifold::expected_cost(const Matrix& alpha) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  Vector c;
  evaluate(alpha, nullptr, c, nullptr);
  return c;
}

Vector MultiBudgetManifold::residual(const Matrix& alpha) const {
  return expected_cost(alpha) - budgets_;
}

void MultiBudgetManifold::normal(const Matrix& alpha, Index j, Matrix& n) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  require<InvalidArgumentError>(j >= 0 && j < budget_count(), "MultiBudgetManifold: budget index ",
                                j, " outside [0, ", budget_count(), ")");
  n.resize(n_, k_);
  const int k = static_cast<int>(k_);
  for (Index i = 0; i < n_; ++i)
    budget_row::normal(alpha.row(i).data(), stacked_.row(j * n_ + i).data(), k, n.row(i).data());
}

void MultiBudgetManifold::normals(const Matrix& alpha, std::vector<Matrix>& n) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  const Index m = budget_count();
  const int k = static_cast<int>(k_);
  n.resize(static_cast<std::size_t>(m));
  for (Matrix& nj : n) nj.resize(n_, k_);
  Vector p(k_);
  for (Index i = 0; i < n_; ++i) {
    budget_row::softmax_shifted(alpha.row(i).data(), stacked_.row(i).data(), k, 0.0, p.data());
    for (Index j = 0; j < m; ++j)
      budget_row::normal_given_p(p.data(), stacked_.row(j * n_ + i).data(), k,
                                 n[static_cast<std::size_t>(j)].row(i).data());
  }
}

ProjectionReport MultiBudgetManifold::project(const Matrix& alpha, MatrixRef v) const {
  check_shape(v.rows(), v.cols(), "v");
  std::vector<Matrix> n;
  normals(alpha, n);
  return project_with_normals(n, v);
}

ProjectionReport MultiBudgetManifold::project_with_normals(const std::vector<Matrix>& n,
                                                           MatrixRef v) const {
  check_shape(v.rows(), v.cols(), "v");
  const Index m = budget_count();
  require<ShapeError>(static_cast<Index>(n.size()) == m, "MultiBudgetManifold: ", n.size(),
                      " normals for ", m, " budgets");
  for (const Matrix& nj : n) check_shape(nj.rows(), nj.cols(), "normal");
  Eigen::MatrixXd gram(m, m);
  Vector b(m);
  for (Index j = 0; j < m; ++j) {
    const Matrix& nj = n[static_cast<std::size_t>(j)];
    b[j] = nj.cwiseProduct(v).sum();
    for (Index l = 0; l <= j; ++l)
      gram(j, l) = gram(l, j) = nj.cwiseProduct(n[static_cast<std::size_t>(l)]).sum();
  }
  const PsdSolve s = solve_psd(gram, b, kGramRankTolerance, kGramRegularisation, kGramRefinements);
  ProjectionReport report;
  report.rank = s.rank;
  report.regularised = s.regularised;
  if (!s.ok) return report;  // every normal vanishes: the manifold is degenerate here
  for (Index j = 0; j < m; ++j) v -= s.x[j] * n[static_cast<std::size_t>(j)];
  report.ok = true;
  return report;
}

MultiRetractionReport MultiBudgetManifold::retract(Matrix& alpha) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  const Index m = budget_count();
  const int k = static_cast<int>(k_);
  Vector scales(m);
  for (Index j = 0; j < m; ++j) scales[j] = scale(j);
  auto met = [&](const Vector& f) {
    for (Index j = 0; j < m; ++j)
      if (!(std::abs(f[j]) <= options_.tolerance * scales[j])) return false;
    return true;
  };

  // The state at t: F = C - B, J, the scaled residual norm and the potential Psi.
  struct State {
    Vector t, f;
    Matrix jac;
    double norm = 0.0, psi = 0.0, psi_noise = 0.0;
  };
  MultiRetractionReport report;
  auto evaluate_at = [&](const Vector& t) {
    State s;
    s.t = t;
    Vector c;
    double magnitude = 0.0;
    const double log_partition = evaluate(alpha, &t, c, &s.jac, &magnitude);
    s.psi = log_partition - budgets_.dot(t);
    // Round-off of Psi: a few ulps of each term it sums (the row log-partitions, <B, t>).
    s.psi_noise = 64.0 * std::numeric_limits<double>::epsilon() *
                  (magnitude + budgets_.cwiseAbs().dot(t.cwiseAbs()) + static_cast<double>(n_));
    ++report.passes;
    s.f = c - budgets_;
    s.norm = s.f.cwiseQuotient(scales).norm();
    return s;
  };
  // Newton direction J d = -F (J = sum_i Cov_{p_i(t)} is PSD; regularised where singular).
  auto newton = [&](const State& s, Vector& d) {
    const PsdSolve sol = solve_psd(s.jac, -s.f, kJacobianRankTolerance, kJacobianRegularisation, 0);
    report.rank_deficient = report.rank_deficient || (sol.ok && sol.regularised);
    d = sol.x;
    return sol.ok;
  };

  State cur = evaluate_at(Vector::Zero(m));
  double radius = kInitialRadius;
  Vector shift(k_), d;
  while (true) {
    if (met(cur.f)) {
      report.converged = true;
      // Newton converges quadratically: one more step from just inside the tolerance usually
      // lands at round-off. Keep it only if it helps.
      bool polish = false;
      for (Index j = 0; j < m; ++j)
        polish = polish || std::abs(cur.f[j]) > 0.01 * options_.tolerance * scales[j];
      if (polish && report.passes < options_.max_passes && newton(cur, d)) {
        const State next = evaluate_at(cur.t + d);
        if (next.norm < cur.norm) cur = next;
      }
      break;
    }
    if (report.passes >= options_.max_passes) break;
    if (!newton(cur, d)) {  // J = 0: every row one-hot along every cost, nothing moves
      report.stalled = true;
      break;
    }
    const double slope = cur.f.dot(d);  // dPsi / ds along d: -F^T J^{-1} F < 0
    // Size of the step in logits: the largest change of a row's logit spread.
    double spread = 0.0;
    for (Index i = 0; i < n_; ++i) {
      shift.setZero();
      for (Index j = 0; j < m; ++j) shift += d[j] * stacked_.row(j * n_ + i).transpose();
      spread = std::max(spread, shift.maxCoeff() - shift.minCoeff());
    }
    double step = 1.0;
    const bool capped = spread > radius;
    if (capped) step = radius / spread;
    bool accepted = false;
    for (int h = 0; h <= kMaxHalvings && report.passes < options_.max_passes; ++h) {
      State next = evaluate_at(cur.t + step * d);
      const bool psi_decrease = slope < 0.0 && next.psi <= cur.psi + kArmijo * step * slope;
      // Near the root Psi's decrease drops below its round-off; there the residual norm
      // decides, as long as Psi does not rise beyond round-off (so the two cannot cycle).
      const bool norm_decrease = next.norm <= (1.0 - kArmijo * step) * cur.norm &&
                                 next.psi <= cur.psi + cur.psi_noise + next.psi_noise;
      if (next.f.allFinite() && (psi_decrease || norm_decrease)) {
        accepted = true;
        if (capped && h == 0)
          radius *= 2.0;  // the cap was the limit: widen it
        else if (h > 0)
          radius = std::max(1.0, 0.5 * radius);  // overshoot: narrow it
        cur = std::move(next);
        break;
      }
      step *= 0.5;
    }
    if (!accepted) {
      report.stalled = report.passes < options_.max_passes;
      break;
    }
  }
  const Vector& t = cur.t;
  for (Index i = 0; i < n_; ++i) {
    double* a = alpha.row(i).data();
    for (Index j = 0; j < m; ++j) {
      const double* cj = stacked_.row(j * n_ + i).data();
      for (int q = 0; q < k; ++q) a[q] += t[j] * cj[q];
    }
    if (options_.recentre) budget_row::recentre(a, k);
  }
  report.residual = cur.f;
  report.max_abs_residual = cur.f.cwiseAbs().maxCoeff();
  report.shifts = t;
  return report;
}

}  // namespace tether
