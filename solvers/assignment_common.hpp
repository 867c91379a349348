// Pieces every assignment solver (RCO, penalty, augmented Lagrangian, evolutionary) shares:
// input checks and the trivial cases, checked loss evaluation, row softmax and its transposed
// Jacobian, and the budget-keeping local search.
#pragma once

#include <optional>
#include <string>
#include <tether/core/concepts.hpp>
#include <tether/solvers/rco.hpp>

namespace tether::assignment {

/// Validates the objective (shapes, costs, budget range) and solves the cases with one feasible
/// answer: K = 1, or a budget at an end of the feasible range. Returns the result for those,
/// nullopt otherwise. Throws InfeasibleError naming the range for a budget outside it.
std::optional<AssignmentResult> check_and_solve_trivial(const AssignmentObjective& objective,
                                                        BudgetData* data);

/// Sets the logits of masked options to -inf (probability 0; Adam and the retraction keep them
/// there, the knapsack DP treats them as forbidden).
void mask_logits(const AssignmentObjective& objective, Matrix& alpha);

/// True when m holds NaN or +inf (-inf is a masked option's logit, not an error).
bool has_nan_or_positive_infinity(const Matrix& m);

/// loss(Y, grad) with the gradient sized N x K; returns nullopt when the loss or any gradient
/// entry is NaN/Inf (solvers then stop with StopReason::kNumericalError). Throws ShapeError when
/// the problem resized the gradient.
std::optional<double> evaluate(const AssignmentObjective& objective, const Matrix& y, Matrix& grad);

/// Loss of a hard assignment (one-hot), or nullopt if not finite.
std::optional<double> hard_loss(const AssignmentObjective& objective, const Assignment& h);

/// Row-wise softmax of z.
Matrix softmax_rows(const Matrix& z);
/// Row-wise log-softmax (finite for finite z).
Matrix log_softmax_rows(const Matrix& z);
/// J_softmax(p)^T v row by row: p_ik (v_ik - sum_j p_ij v_ij).
Matrix softmax_vjp(const Matrix& p, const Matrix& v);

/// First-improvement local search on the true loss with moves that keep the cost <= budget:
/// single-group changes, then pairs (one group up, one down). Returns the number of improving
/// moves; updates h and loss in place. Stops after `sweeps` full sweeps without or with gain.
int polish(const AssignmentObjective& objective, Assignment& h, double& loss, int sweeps,
           long* evaluations);

/// Fills cost, budget and violation of r from r.assignment.
void set_cost_fields(const AssignmentObjective& objective, AssignmentResult& r);

}  // namespace tether::assignment
