#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/solvers/assignment_common.hpp>

namespace tether::assignment {

std::optional<AssignmentResult> check_and_solve_trivial(const AssignmentObjective& objective,
                                                        BudgetData* data_out) {
  require(static_cast<bool>(objective.loss), "assignment objective: loss is empty");
  const BudgetData data = validate_budget(objective.costs, objective.budget, objective.sense);
  if (data_out) *data_out = data;
  const Index n = data.costs.rows(), k = data.costs.cols();
  const double slack =
      8.0 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(data.max_total));
  const bool at_min = objective.budget <= data.min_total + slack;
  const bool at_max =
      objective.sense == BudgetSense::kEqual && objective.budget >= data.max_total - slack;
  if (k > 1 && !at_min && !at_max) return std::nullopt;

  // One feasible answer (up to ties, broken by the loss): the cheapest or the dearest rows.
  AssignmentResult r;
  r.assignment.assign(static_cast<std::size_t>(n), 0);
  for (Index i = 0; i < n; ++i) {
    int best = -1;  // the cheapest (dearest) allowed option; the first among ties
    for (Index o = 0; o < k; ++o) {
      if (!objective.is_allowed(i, o)) continue;
      const double c = data.costs(i, o);
      if (best < 0 || (at_max && !at_min ? c > data.costs(i, best) : c < data.costs(i, best)))
        best = static_cast<int>(o);
    }
    r.assignment[static_cast<std::size_t>(i)] = best;
  }
  const std::optional<double> loss = hard_loss(objective, r.assignment);
  r.loss = loss.value_or(std::numeric_limits<double>::quiet_NaN());
  r.loss_evaluations = 1;
  r.best_seen = r.final_dp = r.assignment;
  r.best_seen_loss = r.final_dp_loss = r.loss;
  set_cost_fields(objective, r);
  r.expected_cost = r.cost;
  r.max_expected_cost_drift = 0.0;
  r.logits = Matrix::Zero(n, k);
  r.status = loss ? StopReason::kConverged : StopReason::kNumericalError;
  r.message = k == 1 ? "K = 1: the only assignment"
                     : "budget at an end of the feasible range: the only feasible assignment";
  if (!loss) r.message += " (its loss is not finite)";
  return r;
}

void mask_logits(const AssignmentObjective& objective, Matrix& alpha) {
  if (!objective.masked()) return;
  for (Index i = 0; i < alpha.rows(); ++i)
    for (Index k = 0; k < alpha.cols(); ++k)
      if (!objective.allowed(i, k)) alpha(i, k) = -std::numeric_limits<double>::infinity();
}

bool has_nan_or_positive_infinity(const Matrix& m) {
  // One pass: x < +inf fails exactly for NaN and +inf (-inf, a masked option, passes).
  const double* x = m.data();
  const Index n = m.size();
  int bad = 0;
#pragma omp parallel for simd reduction(| : bad) schedule(static) if (n >= (Index{1} << 16))
  for (Index j = 0; j < n; ++j) bad |= !(x[j] < std::numeric_limits<double>::infinity());
  return bad != 0;
}

std::optional<double> evaluate(const AssignmentObjective& objective, const Matrix& y,
                               Matrix& grad) {
  grad.setZero(y.rows(), y.cols());
  const double value = objective.loss(y, grad);
  require<ShapeError>(grad.rows() == y.rows() && grad.cols() == y.cols(),
                      "loss: the gradient must stay ", y.rows(), " x ", y.cols(), ", got ",
                      grad.rows(), " x ", grad.cols());
  if (!std::isfinite(value) || !grad.allFinite()) return std::nullopt;
  return value;
}

std::optional<double> hard_loss(const AssignmentObjective& objective, const Assignment& h) {
  Matrix grad;
  return evaluate(objective, one_hot(h, objective.costs.cols()), grad);
}

Matrix softmax_rows(const Matrix& z) {
  Matrix p(z.rows(), z.cols());
  for (Index i = 0; i < z.rows(); ++i) {
    const double m = z.row(i).maxCoeff();
    p.row(i) = (z.row(i).array() - m).exp();
    p.row(i) /= p.row(i).sum();
  }
  return p;
}

Matrix log_softmax_rows(const Matrix& z) {
  Matrix l(z.rows(), z.cols());
  for (Index i = 0; i < z.rows(); ++i) {
    const double m = z.row(i).maxCoeff();
    const double lse = m + std::log((z.row(i).array() - m).exp().sum());
    l.row(i) = z.row(i).array() - lse;
  }
  return l;
}

Matrix softmax_vjp(const Matrix& p, const Matrix& v) {
  Matrix out(p.rows(), p.cols());
  for (Index i = 0; i < p.rows(); ++i) {
    const double mean = p.row(i).dot(v.row(i));
    out.row(i) = p.row(i).array() * (v.row(i).array() - mean);
  }
  return out;
}

int polish(const AssignmentObjective& objective, Assignment& h, double& loss, int sweeps,
           long* evaluations) {
  const Index n = objective.costs.rows(), k = objective.costs.cols();
  const Matrix& c = objective.costs;
  double cost = assignment_cost(c, h);
  Matrix y = one_hot(h, k), grad;
  int improvements = 0;
  auto try_loss = [&]() -> std::optional<double> {
    if (evaluations) ++*evaluations;
    return evaluate(objective, y, grad);
  };
  for (int sweep = 0; sweep < sweeps; ++sweep) {
    bool improved = false;
    // Single-group moves.
    for (Index i = 0; i < n; ++i) {
      const int old = h[static_cast<std::size_t>(i)];
      for (Index o = 0; o < k; ++o) {
        if (o == old || !objective.is_allowed(i, o)) continue;
        const double new_cost = cost - c(i, old) + c(i, o);
        if (new_cost > objective.budget) continue;
        y(i, old) = 0;
        y(i, o) = 1;
        const std::optional<double> l = try_loss();
        if (l && *l < loss) {
          h[static_cast<std::size_t>(i)] = static_cast<int>(o);
          cost = assignment_cost(c, h);  // exact, not the incremental estimate
          if (cost <= objective.budget) {
            loss = *l;
            ++improvements;
            improved = true;
            break;
          }
          h[static_cast<std::size_t>(i)] = old;
          cost = assignment_cost(c, h);
        }
        y(i, o) = 0;
        y(i, old) = 1;
      }
    }
    // Pair moves: group i to option a, group j to option b, keeping the budget.
    for (Index i = 0; i < n; ++i) {
      for (Index j = i + 1; j < n; ++j) {
        const int oi = h[static_cast<std::size_t>(i)], oj = h[static_cast<std::size_t>(j)];
        bool moved = false;
        for (Index a = 0; a < k && !moved; ++a) {
          if (a == oi || !objective.is_allowed(i, a)) continue;
          for (Index b = 0; b < k && !moved; ++b) {
            if (b == oj || !objective.is_allowed(j, b)) continue;
            const double new_cost = cost - c(i, oi) + c(i, a) - c(j, oj) + c(j, b);
            if (new_cost > objective.budget) continue;
            y(i, oi) = 0;
            y(i, a) = 1;
            y(j, oj) = 0;
            y(j, b) = 1;
            const std::optional<double> l = try_loss();
            if (l && *l < loss) {
              h[static_cast<std::size_t>(i)] = static_cast<int>(a);
              h[static_cast<std::size_t>(j)] = static_cast<int>(b);
              if (assignment_cost(c, h) <= objective.budget) {
                loss = *l;
                cost = assignment_cost(c, h);
                ++improvements;
                improved = moved = true;
                continue;
              }
              h[static_cast<std::size_t>(i)] = oi;
              h[static_cast<std::size_t>(j)] = oj;
            }
            y(i, a) = 0;
            y(i, oi) = 1;
            y(j, b) = 0;
            y(j, oj) = 1;
          }
        }
      }
    }
    if (!improved) break;
  }
  return improvements;
}

void set_cost_fields(const AssignmentObjective& objective, AssignmentResult& r) {
  r.cost = assignment_cost(objective.costs, r.assignment);
  r.budget = objective.budget;
  r.budget_violation = r.cost - objective.budget;
}

}  // namespace tether::assignment
