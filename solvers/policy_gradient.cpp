#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/solvers/policy_gradient.hpp>
#include <utility>
#include <variant>

namespace tether {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Raised inside an update when a value is NaN/Inf; the solver turns it into kNumericalError (or
// a NumericalError exception on the first pass at theta0).
struct NonFinite {
  std::string what;
};

Vector checked_log_prob(const PolicyFunctions& policy, const Vector& theta,
                        const TokenBatch& batch) {
  Vector l = policy.log_prob(theta, batch);
  require<ShapeError>(l.size() == batch.size(), "PolicyGradientSolver: the policy's log_prob has ",
                      l.size(), " entries, the batch has ", batch.size(), " tokens");
  if (!l.allFinite()) throw NonFinite{"the policy's log-probabilities are NaN/Inf"};
  return l;
}

GateValue checked_gate(const GateFunction& gate, const ValidatedBatch& batch, const Vector& l) {
  GateValue v = gate(batch, l);
  require<ShapeError>(v.gradient.size() == batch.size(),
                      "PolicyGradientSolver: the gate's gradient has ", v.gradient.size(),
                      " entries, the batch has ", batch.size(), " tokens");
  if (!std::isfinite(v.objective)) throw NonFinite{"the gate's objective is NaN/Inf"};
  if (!v.gradient.allFinite()) throw NonFinite{"the gate's gradient is NaN/Inf"};
  return v;
}

// PPO's minibatches, made of whole prompt groups: a seeded permutation of the groups is cut
// into m near-equal chunks, and inside a chunk the groups keep the batch's order, so every
// minibatch is itself a valid TokenBatch (sorted, nested runs; ids need not start at 0).
std::vector<TokenBatch> split_into_minibatches(const TokenBatch& batch, int m, Rng& rng) {
  std::vector<Index> start{0};  // group runs [start[g], start[g + 1])
  for (Index i = 1; i < batch.size(); ++i)
    if (batch.group[static_cast<std::size_t>(i)] != batch.group[static_cast<std::size_t>(i - 1)])
      start.push_back(i);
  start.push_back(batch.size());
  const int groups = static_cast<int>(start.size()) - 1;
  require(m <= groups, "PolicyGradientSolver: minibatches = ", m, " exceeds the ", groups,
          " prompt groups of the batch (a minibatch holds whole groups)");
  std::vector<int> order(static_cast<std::size_t>(groups));
  for (int g = 0; g < groups; ++g) order[static_cast<std::size_t>(g)] = g;
  for (int g = groups - 1; g > 0; --g)  // Fisher-Yates
    std::swap(order[static_cast<std::size_t>(g)],
              order[rng.index(static_cast<std::uint64_t>(g) + 1)]);
  std::vector<TokenBatch> out(static_cast<std::size_t>(m));
  for (int j = 0; j < m; ++j) {
    const auto first = order.begin() + static_cast<long>(j) * groups / m;
    const auto last = order.begin() + static_cast<long>(j + 1) * groups / m;
    std::vector<int> chosen(first, last);
    std::sort(chosen.begin(), chosen.end());
    TokenBatch& mb = out[static_cast<std::size_t>(j)];
    Index n = 0;
    for (int g : chosen)
      n += start[static_cast<std::size_t>(g) + 1] - start[static_cast<std::size_t>(g)];
    mb.old_log_prob.resize(n);
    mb.advantage.resize(n);
    Index at = 0;
    for (int g : chosen) {
      for (Index i = start[static_cast<std::size_t>(g)]; i < start[static_cast<std::size_t>(g) + 1];
           ++i, ++at) {
        const auto u = static_cast<std::size_t>(i);
        mb.domain.push_back(batch.domain[u]);
        mb.group.push_back(batch.group[u]);
        mb.trajectory.push_back(batch.trajectory[u]);
        mb.position.push_back(batch.position[u]);
        mb.state.push_back(batch.state[u]);
        mb.action.push_back(batch.action[u]);
        mb.old_log_prob[at] = batch.old_log_prob[i];
        mb.advantage[at] = batch.advantage[i];
      }
    }
  }
  return out;
}

}  // namespace

bool PolicyGradientOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  std::string step_why;
  if (!std::visit([&](const auto& s) { return s.is_valid(&step_why); }, step))
    return fail(detail::concat("step (", step_rule_name(step), "): ", step_why));
  if (updates < 1) return fail(detail::concat("updates must be >= 1, got ", updates));
  if (epochs < 1) return fail(detail::concat("epochs must be >= 1, got ", epochs));
  if (minibatches < 1) return fail(detail::concat("minibatches must be >= 1, got ", minibatches));
  if (!(distance_tolerance >= 0.0) || !std::isfinite(distance_tolerance))
    return fail(
        detail::concat("distance_tolerance must be finite and >= 0, got ", distance_tolerance));
  return true;
}

PolicyGradientSolver::PolicyGradientSolver(const PolicyGradientOptions& options)
    : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "PolicyGradientOptions: ", why);
}

void PolicyGradientSolver::require_rollout(const problems::EpisodicTask& task,
                                           const RolloutOptions& rollout) {
  require(rollout.prompts >= 1 && rollout.prompts <= task.num_contexts(),
          "PolicyGradientSolver: rollout.prompts must be in [1, num_contexts = ",
          task.num_contexts(), "], got ", rollout.prompts);
  require(rollout.group_size >= 1, "PolicyGradientSolver: rollout.group_size must be >= 1, got ",
          rollout.group_size);
  require(rollout.advantage.baseline != problems::Baseline::kLeaveOneOut || rollout.group_size >= 2,
          "PolicyGradientSolver: the leave-one-out baseline needs rollout.group_size >= 2, got ",
          rollout.group_size);
}

Vector policy_gradient(const PolicyFunctions& policy, const GateFunction& gate,
                       const TokenBatch& batch, const Vector& theta, GateValue* value) {
  require<ShapeError>(theta.size() == policy.num_parameters, "policy_gradient: theta has size ",
                      theta.size(), ", the policy has ", policy.num_parameters, " parameters");
  const Vector l = policy.log_prob(theta, batch);
  require<ShapeError>(l.size() == batch.size(), "policy_gradient: the policy's log_prob has ",
                      l.size(), " entries, the batch has ", batch.size(), " tokens");
  GateValue v = gate(ValidatedBatch(batch), l);
  require<ShapeError>(v.gradient.size() == batch.size(),
                      "policy_gradient: the gate's gradient has ", v.gradient.size(),
                      " entries, the batch has ", batch.size(), " tokens");
  Vector g(policy.num_parameters);
  policy.log_prob_vjp(theta, batch, v.gradient, g);  // grad_theta J = sum_i c_i grad log pi_i
  require<ShapeError>(g.size() == policy.num_parameters, "policy_gradient: the VJP has size ",
                      g.size(), ", expected ", policy.num_parameters);
  if (value) *value = std::move(v);
  return g;
}

PolicyResult PolicyGradientSolver::maximize(const PolicyFunctions& policy, const GateFunction& gate,
                                            const BatchSource& source, const Vector& theta0,
                                            const PolicyMonitors& monitors,
                                            const CallbackSet& callbacks) const {
  const auto t_start = Clock::now();
  const PolicyGradientOptions& o = options_;
  require(policy.log_prob && policy.log_prob_vjp,
          "PolicyGradientSolver: the policy must supply log_prob and log_prob_vjp");
  require(static_cast<bool>(gate), "PolicyGradientSolver: the gate is empty");
  require(static_cast<bool>(source), "PolicyGradientSolver: the batch source is empty");
  require(policy.num_parameters >= 1,
          "PolicyGradientSolver: the policy must have >= 1 parameters, got ",
          policy.num_parameters);
  require<ShapeError>(theta0.size() == policy.num_parameters,
                      "PolicyGradientSolver: theta0 has size ", theta0.size(), ", the policy has ",
                      policy.num_parameters, " parameters");
  require(theta0.allFinite(), "PolicyGradientSolver: theta0 must be finite");

  StepRule rule(o.step);
  Rng rng(o.seed);
  PolicyResult result;
  Vector theta = theta0, trial(theta0.size()), g(theta0.size());
  double best_loss = std::numeric_limits<double>::infinity();
  double best_return = -std::numeric_limits<double>::infinity();
  callbacks.begin(o.updates);

  for (int k = 0; k < o.updates; ++k) {
    const auto t_iter = Clock::now();
    PolicyUpdateRecord rec;
    rec.update = k;
    trial = theta;
    bool first_pass = k == 0;  // NaN/Inf here is a refusal at theta0, not a stop
    try {
      TokenBatch batch;
      try {
        batch = source(theta, k, rng);
      } catch (const NumericalError& error) {  // e.g. the sampler saw NaN probabilities
        throw NonFinite{detail::concat("the batch source failed (", error.what(), ")")};
      }
      // NaN/Inf old log-probabilities come from the sampling policy: a numerical failure, not
      // a malformed batch (which validate() refuses below).
      if (!batch.old_log_prob.allFinite())
        throw NonFinite{"the batch's old log-probabilities are NaN/Inf"};
      const ValidatedBatch valid(batch);  // the gates' calls below check only the log-probs
      const Index T = batch.size();
      rec.tokens_in_batch = static_cast<int>(T);
      auto ascend = [&](const ValidatedBatch& vb, double* objective) {
        const TokenBatch& b = vb.batch();
        const Vector l = checked_log_prob(policy, trial, b);
        const GateValue v = checked_gate(gate, vb, l);
        if (objective) *objective = v.objective;
        first_pass = false;
        policy.log_prob_vjp(trial, b, v.gradient, g);
        require<ShapeError>(g.size() == policy.num_parameters,
                            "PolicyGradientSolver: the VJP has size ", g.size(), ", expected ",
                            policy.num_parameters);
        if (!g.allFinite()) throw NonFinite{"the policy's VJP is NaN/Inf"};
        rule.step(trial, -g);  // ascent on J
        if (!trial.allFinite()) throw NonFinite{"the step left the finite numbers"};
      };
      if (o.minibatches == 1) {
        for (int e = 0; e < o.epochs; ++e) ascend(valid, e == 0 ? &rec.objective_start : nullptr);
      } else {
        rec.objective_start =
            checked_gate(gate, valid, checked_log_prob(policy, trial, batch)).objective;
        first_pass = false;
        for (int e = 0; e < o.epochs; ++e)
          for (const TokenBatch& mb : split_into_minibatches(batch, o.minibatches, rng))
            ascend(ValidatedBatch(mb), nullptr);
      }
      // Measurements at theta_{k+1} on batch_k.
      const Vector l = checked_log_prob(policy, trial, batch);
      const GateValue v = checked_gate(gate, valid, l);
      rec.objective = v.objective;
      rec.tokens = v.tokens;
      rec.trajectories = v.trajectories;
      const Vector log_r = l - batch.old_log_prob;
      const Vector r = log_r.array().exp();
      rec.tv = (r.array() - 1.0).abs().sum() / static_cast<double>(T);
      rec.kl = ((r.array() - 1.0) - log_r.array()).sum() / static_cast<double>(T);
      if (!std::isfinite(rec.tv) || !std::isfinite(rec.kl))
        throw NonFinite{"the ratios overflowed (TV / KL are NaN/Inf)"};
      if (monitors.expected_return) rec.expected_return = monitors.expected_return(trial);
      if (monitors.distance_to_optimal)
        rec.distance_to_optimal = monitors.distance_to_optimal(trial);
      if (monitors.optimal_path_distance)
        rec.optimal_path_distance = monitors.optimal_path_distance(trial);
    } catch (const NonFinite& bad) {
      if (first_pass)
        throw NumericalError(
            detail::concat("PolicyGradientSolver: ", bad.what, " at theta0 (first pass)"));
      result.status = StopReason::kNumericalError;
      result.message = detail::concat(bad.what, " during update ", k,
                                      "; the iterate after the last completed update is kept");
      break;
    }
    theta.swap(trial);
    rec.step_seconds = seconds_since(t_iter);
    result.updates.push_back(rec);
    result.iterations = k + 1;

    IterationRecord row;
    row.iteration = k;
    row.loss = -rec.objective;
    best_loss = std::min(best_loss, row.loss);
    if (monitors.expected_return) {
      best_return = std::max(best_return, rec.expected_return);
      row.best_loss = -best_return;
    } else {
      row.best_loss = best_loss;
    }
    row.constraint_residual = rec.tv;
    row.step_seconds = rec.step_seconds;
    row.error = rec.distance_to_optimal;
    result.history.push_back(row);
    if (!callbacks.iteration(row)) {
      result.status = StopReason::kStoppedByCallback;
      result.message = detail::concat("a callback stopped the run after update ", k);
      break;
    }
    if (o.distance_tolerance > 0.0 && monitors.distance_to_optimal &&
        rec.distance_to_optimal <= o.distance_tolerance) {
      result.status = StopReason::kConverged;
      result.message =
          detail::concat("distance to the optimal policy ", rec.distance_to_optimal,
                         " <= distance_tolerance ", o.distance_tolerance, " after update ", k);
      break;
    }
  }
  if (result.status == StopReason::kIterationLimit)
    result.message = detail::concat("ran the configured ", o.updates, " updates");

  result.theta = theta;
  if (!result.updates.empty()) {
    result.expected_return = result.updates.back().expected_return;
    result.distance_to_optimal = result.updates.back().distance_to_optimal;
    result.optimal_path_distance = result.updates.back().optimal_path_distance;
  } else {
    if (monitors.expected_return) result.expected_return = monitors.expected_return(theta);
    if (monitors.distance_to_optimal)
      result.distance_to_optimal = monitors.distance_to_optimal(theta);
    if (monitors.optimal_path_distance)
      result.optimal_path_distance = monitors.optimal_path_distance(theta);
  }
  result.seconds = seconds_since(t_start);
  callbacks.end(result.history, result.status);
  return result;
}

}  // namespace tether
