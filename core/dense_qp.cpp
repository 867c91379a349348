#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <tether/core/dense_qp.hpp>
#include <tether/core/errors.hpp>

namespace tether {

namespace {

using Eigen::Index;
using Eigen::MatrixXd;
using Eigen::VectorXd;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr const char* kSolve = "solve_dense_qp";
constexpr const char* kResidual = "dense_qp_kkt_residual";

// ---- validation -------------------------------------------------------------------------------

void require_finite(const char* who, const char* name, const MatrixXd& m) {
  for (Index j = 0; j < m.cols(); ++j)
    for (Index i = 0; i < m.rows(); ++i)
      require(std::isfinite(m(i, j)), who, ": ", name, "(", i, ", ", j, ") = ", m(i, j),
              " must be finite");
}

void require_finite(const char* who, const char* name, const VectorXd& v) {
  for (Index i = 0; i < v.size(); ++i)
    require(std::isfinite(v[i]), who, ": ", name, "(", i, ") = ", v[i], " must be finite");
}

/// A constraint block M x (<= or =) v: M has n columns (or is 0 x 0), v one entry per row.
void require_constraint_shape(const char* who, const char* m_name, const char* v_name,
                              const MatrixXd& m, const VectorXd& v, Index n) {
  const bool empty = m.rows() == 0 && m.cols() == 0;
  require<ShapeError>(m.cols() == n || empty, who, ": ", m_name, " is ", m.rows(), " x ", m.cols(),
                      ", expected ", n, " columns (the order of P)");
  require<ShapeError>(v.size() == m.rows(), who, ": ", v_name, " has size ", v.size(),
                      ", expected ", m.rows(), " (the rows of ", m_name, ")");
}

/// Checks shapes, finiteness and symmetry; returns the symmetric part (P + P^T) / 2.
MatrixXd validated_symmetric_part(const char* who, const MatrixXd& p, const VectorXd& q,
                                  const MatrixXd& a, const VectorXd& b, const MatrixXd& e_mat,
                                  const VectorXd& e) {
  require<ShapeError>(p.rows() == p.cols(), who, ": P must be square, got ", p.rows(), " x ",
                      p.cols());
  const Index n = p.rows();
  require<ShapeError>(q.size() == n, who, ": q has size ", q.size(), ", expected ", n,
                      " (the order of P)");
  require_constraint_shape(who, "A", "b", a, b, n);
  require_constraint_shape(who, "E", "e", e_mat, e, n);
  require_finite(who, "P", p);
  require_finite(who, "q", q);
  require_finite(who, "A", a);
  require_finite(who, "b", b);
  require_finite(who, "E", e_mat);
  require_finite(who, "e", e);
  const double p_max = n == 0 ? 0.0 : p.cwiseAbs().maxCoeff();
  for (Index j = 0; j < n; ++j)
    for (Index i = j + 1; i < n; ++i) {
      const double gap = std::abs(p(i, j) - p(j, i));
      require(gap <= kDenseQpSymmetryTolerance * p_max, who, ": P must be symmetric, but |P(", i,
              ", ", j, ") - P(", j, ", ", i, ")| = ", gap, " > ", kDenseQpSymmetryTolerance,
              " * max|P| = ", kDenseQpSymmetryTolerance * p_max);
    }
  return 0.5 * (p + p.transpose());
}

/// A 0 x 0 constraint matrix as 0 x n, so products with x and lambda have the right sizes.
MatrixXd with_columns(const MatrixXd& m, Index n) { return m.rows() == 0 ? MatrixXd(0, n) : m; }

bool all_finite(const VectorXd& v) { return v.allFinite(); }

/// num / den with 0 / 0 = 0 (num <= den in exact arithmetic, so den = 0 forces num = 0).
double ratio(double num, double den) {
  if (num == 0.0) return 0.0;
  return den > 0.0 ? num / den : kInf;
}

// ---- the KKT residual (see the header for the definition) -------------------------------------

/// |q|_inf / |P|_inf (0 when P = 0): no x with |x|_inf below it has |P x|_inf reach |q|_inf,
/// so it is the least size of the unconstrained minimiser, and a floor for the size of x.
double x_floor(const MatrixXd& ps, const VectorXd& q) {
  if (ps.size() == 0) return 0.0;
  const double p_norm = ps.cwiseAbs().rowwise().sum().maxCoeff();
  return p_norm > 0.0 ? q.cwiseAbs().maxCoeff() / p_norm : 0.0;
}

/// The size of x against which constraint rows are measured: max(|x|_inf, x_floor).
double x_size(const VectorXd& x, double floor) {
  return x.size() == 0 ? floor : std::max(x.cwiseAbs().maxCoeff(), floor);
}

double kkt_residual_core(const MatrixXd& ps, const VectorXd& q, const MatrixXd& a,
                         const VectorXd& b, const MatrixXd& e_mat, const VectorXd& e,
                         const VectorXd& x, const VectorXd& lambda, const VectorXd& nu) {
  if (!all_finite(x) || !all_finite(lambda) || !all_finite(nu)) return kInf;
  const Index n = ps.rows();
  const VectorXd g = ps * x + q + a.transpose() * lambda + e_mat.transpose() * nu;
  const VectorXd x_abs = x.cwiseAbs();
  const VectorXd g_scale = ps.cwiseAbs() * x_abs + q.cwiseAbs() +
                           a.cwiseAbs().transpose() * lambda.cwiseAbs() +
                           e_mat.cwiseAbs().transpose() * nu.cwiseAbs();
  const double big_g = n == 0 ? 0.0 : g_scale.maxCoeff();
  double worst = ratio(n == 0 ? 0.0 : g.cwiseAbs().maxCoeff(), big_g);

  const double size = x_size(x, x_floor(ps, q));
  const VectorXd v = a * x - b;
  const VectorXd s = size * a.cwiseAbs().rowwise().sum() + b.cwiseAbs();
  for (Index i = 0; i < a.rows(); ++i) {
    const double row_max = n == 0 ? 0.0 : a.row(i).cwiseAbs().maxCoeff();
    const double primal = ratio(std::max(0.0, v[i]), s[i]);
    const double dual = ratio(std::max(0.0, -lambda[i]) * row_max, big_g);
    const double comp =
        std::min(ratio(std::abs(lambda[i]) * row_max, big_g), ratio(std::abs(v[i]), s[i]));
    worst = std::max({worst, primal, dual, comp});
  }
  const VectorXd ve = e_mat * x - e;
  const VectorXd se = size * e_mat.cwiseAbs().rowwise().sum() + e.cwiseAbs();
  for (Index i = 0; i < e_mat.rows(); ++i) worst = std::max(worst, ratio(std::abs(ve[i]), se[i]));
  return worst;
}

// ---- the dual active-set method ---------------------------------------------------------------

/// The constraints as one list: index c < l is row c of E (equality), c >= l is row c - l of A.
struct Rows {
  Index l = 0, m = 0;
  MatrixXd normals;   ///< n x (l + m): E^T then A^T
  VectorXd rhs;       ///< e then b
  MatrixXd whitened;  ///< L^-1 normals
  VectorXd norms;     ///< |normal_c|_2
  VectorXd l1_norms;  ///< |normal_c|_1

  bool is_equality(Index c) const { return c < l; }
  std::string name(Index c) const {
    return is_equality(c) ? detail::concat("E row ", c) : detail::concat("A row ", c - l);
  }
  double violation(Index c, const VectorXd& x) const { return normals.col(c).dot(x) - rhs[c]; }
  /// The scale of normal_c^T x - rhs_c for an x of size `size` (see x_size).
  double scale(Index c, double size) const { return l1_norms[c] * size + std::abs(rhs[c]); }
};

/// The step of adding row p to the working set W (see the header): x moves by t z, the
/// multipliers of W by -t r, and row p's violation falls by t w2.
struct Direction {
  VectorXd z;
  VectorXd r;
  double w2 = 0.0;
  bool dependent = false;
  /// When dependent: |a_p - A_W^T r|_1, how far y = (1, -r) is from combining the rows to 0.
  double rho = 0.0;
};

Direction direction(const Rows& rows, const Eigen::LLT<MatrixXd>& llt, const std::vector<Index>& w,
                    Index p) {
  const Index n = rows.whitened.rows();
  const Index k = static_cast<Index>(w.size());
  const VectorXd c = rows.whitened.col(p);
  Direction dir;
  VectorXd resid;  // w = (I - Q1 Q1^T) c, the part of c outside span(L^-1 A_W^T)
  if (k == 0) {
    resid = c;
    dir.r.resize(0);
  } else {
    MatrixXd basis(n, k);
    for (Index j = 0; j < k; ++j) basis.col(j) = rows.whitened.col(w[j]);
    const Eigen::HouseholderQR<MatrixXd> qr(basis);
    VectorXd d = qr.householderQ().adjoint() * c;
    dir.r = qr.matrixQR().topLeftCorner(k, k).triangularView<Eigen::Upper>().solve(d.head(k));
    d.head(k).setZero();
    resid = qr.householderQ() * d;
  }
  dir.w2 = resid.squaredNorm();
  dir.dependent = !(std::sqrt(dir.w2) > kDenseQpDependenceTolerance * c.norm());
  if (dir.dependent) {
    // a_p = A_W^T r: the same r in exact arithmetic, but solved without L^-1, so that the sign
    // of r and the certificate y^T b do not carry the conditioning of P.
    const VectorXd a_p = rows.normals.col(p);
    if (k > 0) {
      MatrixXd basis(n, k);
      for (Index j = 0; j < k; ++j) basis.col(j) = rows.normals.col(w[j]);
      dir.r = basis.householderQr().solve(a_p);
      dir.rho = (a_p - basis * dir.r).lpNorm<1>();
    } else {
      dir.rho = a_p.lpNorm<1>();
    }
  }
  dir.z = dir.dependent ? VectorXd::Zero(n) : VectorXd(-llt.matrixU().solve(resid));
  return dir;
}

/// "A row 3 (weight 1), A row 0 (weight 0.5), ...": the rows of a Farkas combination.
std::string combination(const Rows& rows, Index p, const std::vector<Index>& w, const VectorXd& r) {
  std::ostringstream out;
  out.precision(17);
  out << rows.name(p) << " (weight 1)";
  for (std::size_t j = 0; j < w.size(); ++j)
    out << ", " << rows.name(w[j]) << " (weight " << -r[static_cast<Index>(j)] << ")";
  return out.str();
}

/// The scale of y^T rhs for the combination y = (1 on p, -r on W): sum_c |y_c| (|rhs_c| +
/// |normal_c|_1 size), what rounding in the rows and in x can make of it.
double combined_scale(const Rows& rows, Index p, const std::vector<Index>& w, const VectorXd& r,
                      double size) {
  double total = rows.scale(p, size);
  for (std::size_t j = 0; j < w.size(); ++j)
    total += std::abs(r[static_cast<Index>(j)]) * rows.scale(w[j], size);
  return total;
}

/// The largest |y^T rhs| that rounding explains, for y = (1 on p, -r on W) of a dependent row
/// p: y^T normals = rho (not exactly 0), so a feasible x of size `size` can have y^T rhs as low
/// as -rho size, and the data's rounding moves y^T rhs by about eps * combined_scale.
double contradiction_tolerance(const Rows& rows, Index p, const std::vector<Index>& w,
                               const Direction& dir, double size) {
  return dir.rho * size + kDenseQpInfeasibilityTolerance * combined_scale(rows, p, w, dir.r, size);
}

/// y^T rhs for the combination y = (1 on p, -r on W).
double combined_rhs(const Rows& rows, Index p, const std::vector<Index>& w, const VectorXd& r) {
  double total = rows.rhs[p];
  for (std::size_t j = 0; j < w.size(); ++j) total -= r[static_cast<Index>(j)] * rows.rhs[w[j]];
  return total;
}

DenseQpResult solve_core(const MatrixXd& p_in, const VectorXd& q, const MatrixXd& a_in,
                         const VectorXd& b, const MatrixXd& e_in, const VectorXd& e,
                         const DenseQpOptions& options, bool with_equalities) {
  std::string why;
  require(options.is_valid(&why), kSolve, ": options: ", why);
  const MatrixXd ps = validated_symmetric_part(kSolve, p_in, q, a_in, b, e_in, e);
  const Index n = ps.rows();
  const MatrixXd a = with_columns(a_in, n);
  const MatrixXd e_mat = with_columns(e_in, n);
  const Index m = a.rows(), l = e_mat.rows();

  // A zero row reads 0 <= b_i (or 0 = e_i): decided here, with a plainer message than the
  // certificate the iteration would give.
  for (Index i = 0; i < m; ++i)
    if (n == 0 || a.row(i).cwiseAbs().maxCoeff() == 0.0)
      require<InfeasibleError>(b[i] >= 0.0, kSolve, ": the constraints are infeasible: row ", i,
                               " of A is zero, so A x <= b needs 0 <= b(", i, ") = ", b[i]);
  for (Index i = 0; i < l; ++i)
    if (n == 0 || e_mat.row(i).cwiseAbs().maxCoeff() == 0.0)
      require<InfeasibleError>(e[i] == 0.0, kSolve, ": the constraints are infeasible: row ", i,
                               " of E is zero, so E x = e needs e(", i, ") = ", e[i], " = 0");

  DenseQpResult result;
  result.multipliers = VectorXd::Zero(m);
  if (with_equalities) result.equality_multipliers = VectorXd::Zero(l);
  if (n == 0) {
    result.x = VectorXd(0);
    result.converged = true;
    result.kkt_residual =
        kkt_residual_core(ps, q, a, b, e_mat, e, result.x, result.multipliers, VectorXd::Zero(l));
    return result;
  }

  const Eigen::LLT<MatrixXd> llt(ps);
  require(llt.info() == Eigen::Success, kSolve,
          ": P is not positive definite (its Cholesky factorisation failed); P must be "
          "symmetric positive definite");
  const double rcond = llt.rcond();
  require(rcond > static_cast<double>(n) * kEps, kSolve,
          ": P is numerically singular: its reciprocal condition estimate ", rcond,
          " is <= n * machine epsilon = ", static_cast<double>(n) * kEps);

  Rows rows;
  rows.l = l;
  rows.m = m;
  rows.normals.resize(n, l + m);
  rows.normals << e_mat.transpose(), a.transpose();
  rows.rhs.resize(l + m);
  rows.rhs << e, b;
  rows.whitened.resize(n, l + m);
  if (l + m > 0) rows.whitened = llt.matrixL().solve(rows.normals);  // Eigen trips on n x 0
  rows.norms = rows.normals.colwise().norm().transpose();
  rows.l1_norms = rows.normals.cwiseAbs().colwise().sum().transpose();
  const double floor = x_floor(ps, q);

  VectorXd x = -llt.solve(q);  // the unconstrained minimiser: dual feasible with lambda = 0
  std::vector<Index> w;        // the working set
  std::vector<double> u;       // its multipliers
  std::vector<char> in_w(static_cast<std::size_t>(l + m), 0);
  // Rows found implied by W (dependent on it, and contradicting it by no more than rounding);
  // cleared when a row leaves W, after which they may be independent again.
  std::vector<char> implied(static_cast<std::size_t>(l + m), 0);
  Index pending = -1;  // the row being added
  double u_pending = 0.0;
  Index next_equality = 0;
  int iterations = 0;
  bool converged = false;
  const double tol = options.tolerance;

  while (true) {
    if (pending < 0) {
      if (next_equality < l) {
        pending = next_equality++;
      } else {
        double worst = 0.0;
        const double size = x_size(x, floor);
        for (Index c = l; c < l + m; ++c) {
          if (in_w[static_cast<std::size_t>(c)] || implied[static_cast<std::size_t>(c)]) continue;
          const double v = rows.violation(c, x);
          if (!(v > tol * rows.scale(c, size))) continue;
          const double distance = v / rows.norms[c];
          if (distance > worst) {
            worst = distance;
            pending = c;
          }
        }
        if (pending < 0) {
          converged = true;
          break;
        }
      }
      u_pending = 0.0;
    }
    if (iterations >= options.max_iterations) break;

    const Direction dir = direction(rows, llt, w, pending);
    const double v = rows.violation(pending, x);

    if (rows.is_equality(pending)) {
      // Only equality rows are in W here, so no multiplier restricts the step.
      if (dir.dependent) {
        const double size = x_size(x, floor);
        require<InfeasibleError>(
            std::abs(combined_rhs(rows, pending, w, dir.r)) <=
                contradiction_tolerance(rows, pending, w, dir, size),
            kSolve, ": the constraints are infeasible: the equality rows ",
            combination(rows, pending, w, dir.r), " combine to a zero row with right-hand side ",
            combined_rhs(rows, pending, w, dir.r), " != 0 (E x = e is inconsistent)");
        pending = -1;  // redundant: implied by the rows already in W
        continue;
      }
      const double t = v / dir.w2;
      x += t * dir.z;
      for (std::size_t j = 0; j < w.size(); ++j) u[j] -= t * dir.r[static_cast<Index>(j)];
      w.push_back(pending);
      u.push_back(t);
      in_w[static_cast<std::size_t>(pending)] = 1;
      pending = -1;
      ++iterations;
      continue;
    }

    // Partial step: the first multiplier of an inequality row in W to reach 0.
    double t1 = kInf;
    Index drop = -1;
    for (std::size_t j = 0; j < w.size(); ++j) {
      const double rj = dir.r[static_cast<Index>(j)];
      if (rows.is_equality(w[j]) || !(rj > 0.0)) continue;
      if (u[j] / rj < t1) {
        t1 = u[j] / rj;
        drop = static_cast<Index>(j);
      }
    }
    if (dir.dependent && drop < 0) {
      // a_p = A_W^T r with r <= 0 on rows of A: y = (1, -r) has y^T A = 0, and y^T b < 0 is a
      // Farkas certificate (Goldfarb-Idnani step 2c). y^T b = 0 up to rounding instead means
      // row p is implied by W (a degenerate vertex, e.g. a tight row that is a nonnegative
      // combination of others) and is violated only by rounding: leave it out.
      const double ytb = combined_rhs(rows, pending, w, dir.r);
      if (!(ytb < -contradiction_tolerance(rows, pending, w, dir, x_size(x, floor)))) {
        implied[static_cast<std::size_t>(pending)] = 1;
        pending = -1;
        continue;
      }
      throw InfeasibleError(detail::concat(
          kSolve, ": the constraints are infeasible: ", combination(rows, pending, w, dir.r),
          " combine (weights >= 0 on rows of A) to a zero row with right-hand side ",
          combined_rhs(rows, pending, w, dir.r), " < 0, so no x satisfies them"));
    }
    const double t2 = dir.dependent ? kInf : v / dir.w2;
    const double t = std::min(t1, t2);
    if (!dir.dependent) x += t * dir.z;
    for (std::size_t j = 0; j < w.size(); ++j) u[j] -= t * dir.r[static_cast<Index>(j)];
    u_pending += t;
    ++iterations;
    if (t2 <= t1) {  // full step: row p is now tight
      w.push_back(pending);
      u.push_back(u_pending);
      in_w[static_cast<std::size_t>(pending)] = 1;
      pending = -1;
    } else {  // partial step: the row whose multiplier reached 0 leaves W
      in_w[static_cast<std::size_t>(w[static_cast<std::size_t>(drop)])] = 0;
      std::fill(implied.begin(), implied.end(), 0);
      w.erase(w.begin() + drop);
      u.erase(u.begin() + drop);
    }
    // t <= t1 keeps these >= 0 in exact arithmetic; what is left below 0 is rounding.
    for (std::size_t j = 0; j < w.size(); ++j)
      if (!rows.is_equality(w[j])) u[j] = std::max(0.0, u[j]);
  }

  // Gather (x, lambda, nu); the row being added when the iteration limit struck keeps its
  // multiplier so that stationarity still holds.
  auto gather = [&](const VectorXd& multipliers_w, VectorXd& lambda, VectorXd& nu) {
    lambda = VectorXd::Zero(m);
    nu = VectorXd::Zero(l);
    for (std::size_t j = 0; j < w.size(); ++j) {
      const double value = multipliers_w[static_cast<Index>(j)];
      if (rows.is_equality(w[j]))
        nu[w[j]] = value;
      else
        lambda[w[j] - l] = std::max(0.0, value);
    }
    if (pending >= l) lambda[pending - l] = u_pending;
  };
  const Index k = static_cast<Index>(w.size());
  VectorXd u_vec = Eigen::Map<const VectorXd>(u.data(), k);
  VectorXd lambda, nu;
  gather(u_vec, lambda, nu);
  double residual = kkt_residual_core(ps, q, a, b, e_mat, e, x, lambda, nu);

  if (converged) {
    // Re-solve the KKT conditions of W by the null-space method, refined from the iterate:
    // with N_W = Q1 R, each round corrects x within range(Q1) so that N_W^T x = rhs_W, then
    // within range(Q2) so that Q2^T (P x + q) = 0 (reduced Hessian Q2^T P Q2), and sets
    // lambda_W = -R^-1 Q1^T (P x + q). Unlike an LU of the whole KKT matrix this keeps the
    // rounding of A_W^T lambda (large where rows of W are nearly dependent) out of x. Keep
    // whichever answer has the smaller residual.
    MatrixXd n_w(n, k);
    VectorXd rhs_w(k);
    for (Index j = 0; j < k; ++j) {
      n_w.col(j) = rows.normals.col(w[static_cast<std::size_t>(j)]);
      rhs_w[j] = rows.rhs[w[static_cast<std::size_t>(j)]];
    }
    const Eigen::HouseholderQR<MatrixXd> qr(n_w);
    const MatrixXd q_full = qr.householderQ();
    const MatrixXd q1 = q_full.leftCols(k), q2 = q_full.rightCols(n - k);
    const MatrixXd r_w = qr.matrixQR().topLeftCorner(k, k).triangularView<Eigen::Upper>();
    const Eigen::LLT<MatrixXd> reduced(q2.transpose() * ps * q2);
    if (reduced.info() == Eigen::Success) {
      VectorXd x_s = x;
      for (int step = 0; step < 3; ++step) {
        if (k > 0)
          x_s += q1 * r_w.transpose().triangularView<Eigen::Lower>().solve(rhs_w -
                                                                           n_w.transpose() * x_s);
        if (k < n) x_s -= q2 * reduced.solve(q2.transpose() * (ps * x_s + q));
        const VectorXd u_s =
            -r_w.triangularView<Eigen::Upper>().solve(q1.transpose() * (ps * x_s + q));
        VectorXd lambda_s, nu_s;
        gather(u_s, lambda_s, nu_s);
        const double r = kkt_residual_core(ps, q, a, b, e_mat, e, x_s, lambda_s, nu_s);
        if (r < residual) {
          residual = r;
          x = x_s;
          lambda = lambda_s;
          nu = nu_s;
        }
      }
    }
    // A bound in the working set (a row with one nonzero, x_j <= beta / alpha) is made to hold
    // exactly: the move is at the rounding level, and callers such as the GU dual (mu >= 0)
    // then see the sign they expect. (+ 0.0 turns -0.0 into 0.0.)
    bool snapped = false;
    for (const Index c : w) {
      Index nonzero = -1, count = 0;
      for (Index j = 0; j < n; ++j)
        if (rows.normals(j, c) != 0.0) {
          nonzero = j;
          ++count;
        }
      if (count != 1) continue;
      x[nonzero] = rows.rhs[c] / rows.normals(nonzero, c) + 0.0;
      snapped = true;
    }
    if (snapped) residual = kkt_residual_core(ps, q, a, b, e_mat, e, x, lambda, nu);
  }

  result.x = x;
  result.multipliers = lambda;
  if (with_equalities) result.equality_multipliers = nu;
  for (const Index c : w)
    if (!rows.is_equality(c)) result.active_set.push_back(static_cast<int>(c - l));
  std::sort(result.active_set.begin(), result.active_set.end());
  result.iterations = iterations;
  result.kkt_residual = residual;
  result.converged = converged;
  return result;
}

}  // namespace

bool DenseQpOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& message) {
    if (why) *why = message;
    return false;
  };
  if (max_iterations < 0)
    return fail(detail::concat("max_iterations must be >= 0, got ", max_iterations));
  if (!(tolerance > 0.0 && tolerance < 1.0))
    return fail(detail::concat("tolerance must be in (0, 1), got ", tolerance));
  return true;
}

DenseQpResult solve_dense_qp(const MatrixXd& P, const VectorXd& q, const MatrixXd& A,
                             const VectorXd& b, const DenseQpOptions& options) {
  return solve_core(P, q, A, b, MatrixXd(0, 0), VectorXd(0), options, false);
}

DenseQpResult solve_dense_qp(const MatrixXd& P, const VectorXd& q, const MatrixXd& A,
                             const VectorXd& b, const MatrixXd& E, const VectorXd& e,
                             const DenseQpOptions& options) {
  return solve_core(P, q, A, b, E, e, options, true);
}

double dense_qp_kkt_residual(const MatrixXd& P, const VectorXd& q, const MatrixXd& A,
                             const VectorXd& b, const VectorXd& x, const VectorXd& lambda) {
  return dense_qp_kkt_residual(P, q, A, b, MatrixXd(0, 0), VectorXd(0), x, lambda, VectorXd(0));
}

double dense_qp_kkt_residual(const MatrixXd& P, const VectorXd& q, const MatrixXd& A,
                             const VectorXd& b, const MatrixXd& E, const VectorXd& e,
                             const VectorXd& x, const VectorXd& lambda, const VectorXd& nu) {
  const MatrixXd ps = validated_symmetric_part(kResidual, P, q, A, b, E, e);
  const Index n = ps.rows();
  require<ShapeError>(x.size() == n, kResidual, ": x has size ", x.size(), ", expected ", n,
                      " (the order of P)");
  require<ShapeError>(lambda.size() == A.rows(), kResidual, ": lambda has size ", lambda.size(),
                      ", expected ", A.rows(), " (the rows of A)");
  require<ShapeError>(nu.size() == E.rows(), kResidual, ": nu has size ", nu.size(), ", expected ",
                      E.rows(), " (the rows of E)");
  return kkt_residual_core(ps, q, with_columns(A, n), b, with_columns(E, n), e, x, lambda, nu);
}

}  // namespace tether
