#include <algorithm>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_manifold.hpp>
#include <tether/manifolds/budget_root.hpp>
#include <tether/manifolds/budget_row.hpp>

namespace tether {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

struct PhiValue {
  double phi = 0.0, dphi = 0.0;
};

// Rows are split into chunks of a fixed size, whatever the thread count; partial sums are
// added in chunk order. So the result is bit-identical with 1 or 16 OpenMP threads, and large
// instances use every core.
constexpr Index kRowsPerChunk = 4096;

// phi(t) and phi'(t) over rows [begin, end). With shift_into (alpha itself), the pass also
// moves those rows to alpha + t c (recentred if asked): the moments returned are then those of
// the new rows at t = 0, bit for bit (budget_row::moments_padded_block).
PhiValue phi_at(const Matrix& alpha, const Matrix& costs, Index begin, Index end, double t,
                Matrix* shift_into = nullptr, bool recentre = true) {
  const int k = static_cast<int>(costs.cols());
  auto rows = [&](Index r0, Index r1) {
    // Blocks of rows (bit-identical to row by row; see budget_row.hpp), summed in row order.
    PhiValue v;
    budget_row::Moments m[budget_row::kBlockRows];
    auto out = [&](Index i) { return shift_into ? shift_into->row(i).data() : nullptr; };
    Index i = r0;
    for (; i + budget_row::kBlockRows <= r1; i += budget_row::kBlockRows) {
      budget_row::moments_shifted_block(alpha.row(i).data(), costs.row(i).data(), k, t, m, out(i),
                                        recentre);
      for (const budget_row::Moments& row : m) {
        v.phi += row.expected;
        v.dphi += row.variance;
      }
    }
    for (; i < r1; ++i) {
      m[0] = budget_row::moments_shifted(alpha.row(i).data(), costs.row(i).data(), k, t);
      if (shift_into)
        budget_row::shift_row(alpha.row(i).data(), costs.row(i).data(), k, t, out(i), recentre);
      v.phi += m[0].expected;
      v.dphi += m[0].variance;
    }
    return v;
  };
  const Index chunks = (end - begin + kRowsPerChunk - 1) / kRowsPerChunk;
  if (chunks <= 1) return rows(begin, end);
  std::vector<PhiValue> partial(static_cast<std::size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (Index c = 0; c < chunks; ++c) {
    const Index r0 = begin + c * kRowsPerChunk;
    partial[static_cast<std::size_t>(c)] = rows(r0, std::min(end, r0 + kRowsPerChunk));
  }
  PhiValue v;
  for (const PhiValue& p : partial) {
    v.phi += p.phi;
    v.dphi += p.dphi;
  }
  return v;
}
}  // namespace

BudgetManifold::BudgetManifold(const Matrix& costs, double budget, BudgetSense sense,
                               const RetractionOptions& options)
    : BudgetManifold(costs, std::vector<Index>{0}, Vector::Constant(1, budget), sense, options) {}

BudgetManifold::BudgetManifold(const Matrix& costs, const std::vector<Index>& block_starts,
                               const Vector& budgets, BudgetSense sense,
                               const RetractionOptions& options)
    : costs_(costs), starts_(block_starts), budgets_(budgets), sense_(sense), options_(options) {
  require<ShapeError>(costs.rows() > 0 && costs.cols() > 0, "BudgetManifold: costs must be N x K ",
                      "with N, K >= 1, got ", costs.rows(), " x ", costs.cols());
  require<ShapeError>(!block_starts.empty() && block_starts.front() == 0,
                      "BudgetManifold: block_starts must start with 0");
  require<ShapeError>(static_cast<Index>(block_starts.size()) == budgets.size(),
                      "BudgetManifold: ", block_starts.size(), " block starts but ", budgets.size(),
                      " budgets");
  for (std::size_t b = 1; b < block_starts.size(); ++b)
    require<ShapeError>(block_starts[b] > block_starts[b - 1] && block_starts[b] < costs.rows(),
                        "BudgetManifold: block_starts must increase strictly within [0, N = ",
                        costs.rows(), "), got ", block_starts[b], " after ", block_starts[b - 1]);
  require(options.tolerance > 0.0, "RetractionOptions::tolerance must be > 0, got ",
          options.tolerance);
  require(options.max_passes >= 1, "RetractionOptions::max_passes must be >= 1, got ",
          options.max_passes);
  starts_.push_back(costs.rows());
  for (Index b = 0; b < blocks(); ++b) {
    const Matrix rows = costs_.middleRows(block_begin(b), block_end(b) - block_begin(b));
    validate_manifold_budget(rows, budgets_[b], sense_,
                             detail::concat("BudgetManifold: budget of block ", b));
  }
}

void BudgetManifold::check_shape(Index rows, Index cols, const char* name) const {
  require<ShapeError>(rows == costs_.rows() && cols == costs_.cols(), "BudgetManifold: ", name,
                      " is ", rows, " x ", cols, ", costs are ", costs_.rows(), " x ",
                      costs_.cols());
}

double BudgetManifold::tolerance(Index b) const {
  return options_.tolerance * std::max(1.0, std::abs(budgets_[b]));
}

Vector BudgetManifold::expected_cost(const Matrix& alpha) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  Vector c(blocks());
  for (Index b = 0; b < blocks(); ++b)
    c[b] = phi_at(alpha, costs_, block_begin(b), block_end(b), 0.0).phi;
  return c;
}

Vector BudgetManifold::residual(const Matrix& alpha) const {
  return expected_cost(alpha) - budgets_;
}

bool BudgetManifold::active(const Matrix& alpha, Index b) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  require(b >= 0 && b < blocks(), "BudgetManifold: block ", b, " outside [0, ", blocks(), ")");
  if (sense_ == BudgetSense::kEqual) return true;
  return phi_at(alpha, costs_, block_begin(b), block_end(b), 0.0).phi >= budgets_[b] - tolerance(b);
}

void BudgetManifold::normal(const Matrix& alpha, Matrix& n) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  n.resize(costs_.rows(), costs_.cols());
  const int k = static_cast<int>(costs_.cols());
#pragma omp parallel for schedule(static) if (costs_.rows() >= kRowsPerChunk)
  for (Index i = 0; i < costs_.rows(); ++i)
    budget_row::normal(alpha.row(i).data(), costs_.row(i).data(), k, n.row(i).data());
}

bool BudgetManifold::project(const Matrix& alpha, MatrixRef v) const {
  Matrix n;
  normal(alpha, n);
  return project_with_normal(alpha, n, v);
}

bool BudgetManifold::project_with_normal(const Matrix& alpha, const Matrix& n, MatrixRef v) const {
  check_shape(v.rows(), v.cols(), "v");
  check_shape(n.rows(), n.cols(), "normal");
  const Index k = costs_.cols();
  std::vector<double> coef(static_cast<std::size_t>(blocks()), 0.0);
  for (Index b = 0; b < blocks(); ++b) {
    if (!active(alpha, b)) continue;
    // <n, n> and <n, v> in one pass, over fixed chunks of rows summed in chunk order (the
    // same bits for any thread count).
    const Index r0 = block_begin(b), r1 = block_end(b);
    const Index chunks = (r1 - r0 + kRowsPerChunk - 1) / kRowsPerChunk;
    std::vector<double> nn_part(static_cast<std::size_t>(chunks)),
        nv_part(static_cast<std::size_t>(chunks));
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (Index c = 0; c < chunks; ++c) {
      double nn = 0.0, nv = 0.0;
      for (Index i = r0 + c * kRowsPerChunk; i < std::min(r1, r0 + (c + 1) * kRowsPerChunk); ++i) {
        const double* ni = n.row(i).data();
        const double* vi = v.row(i).data();
#pragma omp simd reduction(+ : nn, nv)
        for (Index j = 0; j < k; ++j) {
          nn += ni[j] * ni[j];
          nv += ni[j] * vi[j];
        }
      }
      nn_part[static_cast<std::size_t>(c)] = nn;
      nv_part[static_cast<std::size_t>(c)] = nv;
    }
    double nn = 0.0, nv = 0.0;
    for (Index c = 0; c < chunks; ++c) {
      nn += nn_part[static_cast<std::size_t>(c)];
      nv += nv_part[static_cast<std::size_t>(c)];
    }
    // <n, n> below this is all round-off: every row of the block is (numerically) one-hot.
    if (!(nn > 1e-300)) return false;
    coef[static_cast<std::size_t>(b)] = nv / nn;
  }
  for (Index b = 0; b < blocks(); ++b) {
    const double cb = coef[static_cast<std::size_t>(b)];
    if (cb == 0.0) continue;
#pragma omp parallel for schedule(static) if (block_end(b) - block_begin(b) >= kRowsPerChunk)
    for (Index i = block_begin(b); i < block_end(b); ++i) {
      const double* ni = n.row(i).data();
      double* vi = v.row(i).data();
#pragma omp simd
      for (Index j = 0; j < k; ++j) vi[j] -= cb * ni[j];
    }
  }
  return true;
}

RetractionReport BudgetManifold::retract(Matrix& alpha) const {
  check_shape(alpha.rows(), alpha.cols(), "alpha");
  RetractionReport report;
  report.converged = true;
  const int k = static_cast<int>(costs_.cols());
  for (Index b = 0; b < blocks(); ++b) {
    const Index r0 = block_begin(b), r1 = block_end(b);
    const double target = budgets_[b], tol = tolerance(b);
    // The safeguarded Newton iteration of budget_root.hpp; this loop owns the passes.
    // Rows [r0, r1) of alpha move to alpha + t c, recentred if asked (no moments needed).
    auto shift_rows = [&](Matrix& a, Index begin, Index end, double t) {
#pragma omp parallel for schedule(static) if (end - begin >= kRowsPerChunk)
      for (Index i = begin; i < end; ++i)
        budget_row::shift_row(a.row(i).data(), costs_.row(i).data(), k, t, a.row(i).data(),
                              options_.recentre);
    };
    double spread = 0.0;  // the widest row's cost range sets the first open-bracket step
    for (Index i = r0; i < r1; ++i)
      spread = std::max(spread, costs_.row(i).maxCoeff() - costs_.row(i).minCoeff());
    // One search from the current alpha. With move, every pass after the first (which measures
    // the start point) also moves the rows to the shift it measures, so the pass that ends the
    // search has already made the final move: no separate pass over the data for it. alpha then
    // holds the shift `applied`, and the moments of every pass are exactly those of the rows it
    // wrote (budget_row::moments_padded_block).
    struct Search {
      budget_root::SafeguardedNewton root;
      bool moved = false;
      double applied = 0.0;
    };
    auto search = [&](bool move) {
      Search s;
      budget_root::start(s.root, target, tol, options_.max_passes,
                         sense_ == BudgetSense::kAtMost, spread);
      PhiValue cur;
      do {
        const double q = budget_root::query(s.root);
        const bool move_now = move && s.root.passes >= 1;
        cur = phi_at(alpha, costs_, r0, r1, q - s.applied, move_now ? &alpha : nullptr,
                     options_.recentre);
        if (move_now) {
          s.moved = true;
          s.applied = q;
        }
      } while (budget_root::feed(s.root, cur.phi, cur.dphi));
      return s;
    };
    const Search first = search(true);
    budget_root::SafeguardedNewton root = first.root;
    double t = root.t;
    int passes = root.passes;
    if (first.moved && first.applied != root.t) {
      // Only after a rejected polishing trial (budget_root.hpp): alpha sits at the trial. A move
      // back by t - trial would not land on the same bits, so search again from where alpha is,
      // this time with one final move (rare).
      root = search(false).root;
      t = first.applied + root.t;
      passes += root.passes;
      if (!root.feasible_start) shift_rows(alpha, r0, r1, root.t);
    } else if (!first.moved && !root.feasible_start) {
      shift_rows(alpha, r0, r1, t);  // one pass, at t = 0: recentre
    }
    const bool converged = root.converged, saturated = root.saturated;
    const PhiValue cur{root.phi, root.slope};
    report.passes = std::max(report.passes, passes);
    report.max_abs_residual = std::max(
        report.max_abs_residual, sense_ == BudgetSense::kAtMost ? std::max(0.0, cur.phi - target)
                                                                : std::abs(cur.phi - target));
    report.converged = report.converged && converged;
    report.saturated = report.saturated || saturated;
    report.shifts.push_back(t);
    report.residuals.push_back(cur.phi - target);
  }
  return report;
}

}  // namespace tether
