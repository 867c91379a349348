#include <algorithm>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/fast_exp.hpp>
#include <tether/core/lanes.hpp>
#include <tether/solvers/ratio_gates.hpp>
#include <vector>

namespace tether {

namespace {

bool fail(std::string* why, const std::string& message) {
  if (why) *why = message;
  return false;
}

bool finite_nonnegative(double x) { return std::isfinite(x) && x >= 0.0; }

// PPO-clip's G of one token: the clipped term is the min where A > 0 and r > 1 + eps (G = 1 +
// eps) or A < 0 and r < 1 - eps (G = 1 - eps); G = r elsewhere, so the token is clipped exactly
// where G != r. Selects on doubles only, so that the token loops that call it vectorise (GCC 12
// does not vectorise the rule written with bools).
inline double gated_ratio(double r, double advantage, double low, double high) {
  return advantage > 0.0 ? (r < high ? r : high) : (advantage < 0.0 ? (r > low ? r : low) : r);
}

// The PPO-clip term of one token: G, and whether the clipped term is the min.
struct ClippedTerm {
  double gated;
  bool clipped;
};

ClippedTerm ppo_term(double r, double advantage, double eps) {
  const double g = gated_ratio(r, advantage, 1.0 - eps, 1.0 + eps);
  return {g, g != r};
}

// Every weight finite and > 0 (branch-free: it vectorises; NaN fails both comparisons).
bool weights_valid(const double* w, Index n) {
  constexpr double kMax = std::numeric_limits<double>::max();
  unsigned ok = 1;
#pragma omp simd reduction(& : ok)
  for (Index i = 0; i < n; ++i) ok &= (w[i] > 0.0) & (w[i] <= kMax);
  return ok != 0;
}

RegimeFractions zeroed_share(Index zeroed, Index total) {
  RegimeFractions f;
  f.zeroed = static_cast<double>(zeroed) / static_cast<double>(total);
  f.pass_through = 1.0 - f.zeroed;
  return f;
}

// The clipped surrogate of PPO-clip and GRPO on tokens [begin, end), with token weights mu_i
// (kWeighted; else every token's is uniform_mu) and, with kPenalty, GRPO's k3 penalty towards a
// reference policy, x_i = log pi_ref - log pi:
//   J_i = mu_i (G_i A_i - beta (e^x - x - 1)),   G_i = clip(r_i) where ppo_term clips, r_i where
//   not, dJ / d log pi_i = mu_i ((0 where clipped, r_i A_i where not) + beta (e^x - 1)).
// Writes the gradient entries; returns sum_i J_i and the clipped tokens, both in lanes
// (core/lanes.hpp: one fixed order, and a loop that vectorises: fast_exp, no bool or byte in
// the lanes). kWeighted is false only for PPO-clip, which has no penalty.
struct SurrogateSums {
  double objective = 0.0;
  double clipped = 0.0;  // a count (exact below 2^53)
};

template <bool kWeighted, bool kPenalty>
SurrogateSums clipped_surrogate_tokens(const double* new_log_prob, const double* old_log_prob,
                                       const double* advantage, const double* mu, double uniform_mu,
                                       const double* reference, double beta, double eps,
                                       Index begin, Index end, double* __restrict__ gradient) {
  const double low = 1.0 - eps, high = 1.0 + eps;
  double sum[lanes::kLanes] = {}, clipped[lanes::kLanes] = {};
  auto body = [&](int l, long long k) {
    const Index i = begin + k;
    const double r = fast_exp(new_log_prob[i] - old_log_prob[i]);
    const double a = advantage[i];
    const double g = gated_ratio(r, a, low, high);  // (0/1 factors would make r = +inf NaN)
    // (The flag first, and the slope through it: computed after the slope, GCC 12 does not
    // vectorise the loop without the penalty.)
    const double clip = g != r ? 1.0 : 0.0;
    double value = g * a;
    double slope = clip != 0.0 ? 0.0 : r * a;
    if constexpr (kPenalty) {
      const double x = reference[i] - new_log_prob[i];
      const double ex = fast_exp(x);
      value -= beta * (ex - x - 1.0);
      slope += beta * (ex - 1.0);
    }
    const double weight = kWeighted ? mu[i] : uniform_mu;
    sum[l] += weight * value;
    gradient[i] = weight * slope;
    clipped[l] += clip;
  };
  lanes::for_each(end - begin, body);
  return {lanes::total(sum), lanes::total(clipped)};
}

// The clipped surrogate over the whole batch into value (objective, gradient, token regimes):
// fixed chunks of tokens, on threads above kParallelTokens, their sums added in chunk order (the
// same bits for any thread count). mu == nullptr: uniform weights 1 / n and no penalty
// (PPO-clip); reference == nullptr: no penalty. The batch must be valid; the new log-probs are
// checked here, each chunk's just before the chunk is computed (so it reads them from cache):
// where one is not finite and <= 0, value is emptied and the refusal names the first such entry
// (a refused shape leaves value as it was).
// With weights_refusal, the weights mu are checked the same way (finite and > 0), and refused
// with that message.
void clipped_surrogate(const TokenBatch& batch, ConstVectorRef new_log_prob, const double* mu,
                       const double* reference, double beta, double eps, GateValue& value,
                       const char* weights_refusal = nullptr) {
  const Index n = batch.size();
  require<ShapeError>(new_log_prob.size() == n, "new_log_prob has ", new_log_prob.size(),
                      " entries; the batch has ", n, " tokens");
  const double uniform_mu = 1.0 / static_cast<double>(n);
  value.gradient.resize(n);
  constexpr Index kChunk = Index{1} << 14;
  const Index chunks = (n + kChunk - 1) / kChunk;
  std::vector<SurrogateSums> parts(static_cast<std::size_t>(chunks));
  unsigned inputs_ok = 1;
  auto chunk = [&](Index c, auto kernel) {
    const Index begin = c * kChunk, end = std::min(n, begin + kChunk);
    if (!log_probs_valid(new_log_prob.data() + begin, end - begin) ||
        (weights_refusal != nullptr && !weights_valid(mu + begin, end - begin)))
      return false;
    parts[static_cast<std::size_t>(c)] =
        kernel(new_log_prob.data(), batch.old_log_prob.data(), batch.advantage.data(), mu,
               uniform_mu, reference, beta, eps, begin, end, value.gradient.data());
    return true;
  };
#pragma omp parallel for schedule(static) reduction(& : inputs_ok) if (n >= kParallelTokens)
  for (Index c = 0; c < chunks; ++c) {
    bool ok = false;
    if (mu == nullptr)  // PPO-clip (uniform weights, no penalty)
      ok = chunk(c, clipped_surrogate_tokens<false, false>);
    else if (reference == nullptr)  // GRPO without the penalty
      ok = chunk(c, clipped_surrogate_tokens<true, false>);
    else
      ok = chunk(c, clipped_surrogate_tokens<true, true>);
    inputs_ok &= ok ? 1u : 0u;
  }
  if (inputs_ok == 0) {  // value is left empty, not half of two batches
    value = GateValue{};
    if (weights_refusal == nullptr)  // only the log-probs were checked
      refuse_checked_log_probs(batch, new_log_prob, "PPO-clip / GRPO evaluate");
    require_valid_log_probs(batch, new_log_prob);  // throws, naming the entry
    throw InvalidArgumentError(weights_refusal);   // else the weights failed
  }
  double sum = 0.0, clipped = 0.0;
  for (const SurrogateSums& part : parts) {
    sum += part.objective;
    clipped += part.clipped;
  }
  value.objective = sum;
  value.tokens = zeroed_share(static_cast<Index>(clipped), n);
  value.trajectories = RegimeFractions{};
}

}  // namespace

void require_valid_gate_input(const TokenBatch& batch, ConstVectorRef new_log_prob,
                              const char* name) {
  batch.validate();
  require_valid_log_probs(batch, new_log_prob, name);
}

void require_valid_log_probs(const TokenBatch& batch, ConstVectorRef new_log_prob,
                             const char* name) {
  require_valid_log_probs(new_log_prob, batch.size(), name, "");
}

void require_valid_log_probs(ConstVectorRef new_log_prob, Index tokens, const char* name,
                             const char* who) {
  require<ShapeError>(new_log_prob.size() == tokens, who, name, " has ", new_log_prob.size(),
                      " entries; the batch has ", tokens, " tokens");
  // One branch-free pass first (it vectorises); the loop that names the entry only on failure.
  if (log_probs_valid(new_log_prob.data(), new_log_prob.size())) return;
  for (Index i = 0; i < new_log_prob.size(); ++i)
    if (!(std::isfinite(new_log_prob[i]) && new_log_prob[i] <= 0.0))
      refuse_log_prob(who, name, i, new_log_prob[i]);
}

void refuse_log_prob(const char* who, const char* name, Index entry, double value) {
  throw InvalidArgumentError(
      detail::concat(who, name, " at entry ", entry, " is ", value,
                     "; it must be finite and <= 0 (a probability in (0, 1])"));
}

void refuse_checked_log_probs(const TokenBatch& batch, ConstVectorRef new_log_prob,
                              const char* who) {
  require_valid_log_probs(batch, new_log_prob);  // throws, naming the first bad entry
  throw Error(
      detail::concat(who, ": a segment's log-probs failed a check that the batch's passed"));
}

void require_token_vector(const TokenBatch& batch, ConstVectorRef v, const char* where,
                          const char* name) {
  require<ShapeError>(v.size() == batch.size(), where, ": ", name, " has ", v.size(),
                      " entries; the batch has ", batch.size(), " tokens");
}

namespace {

// J x for the diagonal PPO-clip Jacobian (J = J^T): x_i where unclipped, 0 where clipped.
Vector ppo_jacobian_product(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef x,
                            double eps, const char* where, const char* name) {
  require_valid_gate_input(batch, new_log_prob);
  require_token_vector(batch, x, where, name);
  Vector out(batch.size());
  for (Index i = 0; i < batch.size(); ++i) {
    const double r = fast_exp(new_log_prob[i] - batch.old_log_prob[i]);  // r as evaluate's
    out[i] = ppo_term(r, batch.advantage[i], eps).clipped ? 0.0 : x[i];
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- PPO-clip

bool PpoClipGate::Options::is_valid(std::string* why) const {
  if (!finite_nonnegative(eps))
    return fail(why, detail::concat("eps must be finite and >= 0, got ", eps));
  return true;
}

GateValue UngatedGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  GateValue v;
  evaluate(batch, new_log_prob, v);
  return v;
}

void UngatedGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob,
                           GateValue& out) const {
  evaluate(ValidatedBatch(batch), new_log_prob, out);
}

void UngatedGate::evaluate(const ValidatedBatch& valid, ConstVectorRef new_log_prob,
                           GateValue& out) const {
  const TokenBatch& batch = valid.batch();
  require_valid_log_probs(batch, new_log_prob);
  // r A / T per token, written into out's storage (r = exp(new - old), as gated_ratios).
  out.gradient = ((new_log_prob - batch.old_log_prob).array().exp() * batch.advantage.array() /
                  static_cast<double>(batch.size()))
                     .matrix();
  out.objective = out.gradient.sum();  // d (r A) / d log r = r A: J and its gradient share terms
  out.tokens = RegimeFractions{};      // all pass-through
  out.trajectories = RegimeFractions{};
}

Vector UngatedGate::gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  require_valid_gate_input(batch, new_log_prob);
  return (new_log_prob - batch.old_log_prob).array().exp();
}

Vector UngatedGate::jvp(const TokenBatch& batch, ConstVectorRef new_log_prob,
                        ConstVectorRef v) const {
  require_valid_gate_input(batch, new_log_prob);
  require_token_vector(batch, v, "UngatedGate::jvp", "v");
  return v;
}

Vector UngatedGate::vjp(const TokenBatch& batch, ConstVectorRef new_log_prob,
                        ConstVectorRef w) const {
  require_valid_gate_input(batch, new_log_prob);
  require_token_vector(batch, w, "UngatedGate::vjp", "w");
  return w;
}

PpoClipGate::PpoClipGate(const Options& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "PpoClipGate::Options: ", why);
}

GateValue PpoClipGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  GateValue value;
  evaluate(batch, new_log_prob, value);
  return value;
}

void PpoClipGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob,
                           GateValue& out) const {
  evaluate(ValidatedBatch(batch), new_log_prob, out);
}

void PpoClipGate::evaluate(const ValidatedBatch& batch, ConstVectorRef new_log_prob,
                           GateValue& out) const {
  clipped_surrogate(batch.batch(), new_log_prob, nullptr, nullptr, 0.0, options_.eps, out);
}

Vector PpoClipGate::gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  require_valid_gate_input(batch, new_log_prob);
  Vector g(batch.size());
  for (Index i = 0; i < batch.size(); ++i)
    g[i] = ppo_term(fast_exp(new_log_prob[i] - batch.old_log_prob[i]), batch.advantage[i],
                    options_.eps)
               .gated;  // r as evaluate's (fast_exp), so the same tokens clip
  return g;
}

Vector PpoClipGate::jvp(const TokenBatch& batch, ConstVectorRef new_log_prob,
                        ConstVectorRef v) const {
  return ppo_jacobian_product(batch, new_log_prob, v, options_.eps, "PpoClipGate::jvp", "v");
}

Vector PpoClipGate::vjp(const TokenBatch& batch, ConstVectorRef new_log_prob,
                        ConstVectorRef w) const {
  return ppo_jacobian_product(batch, new_log_prob, w, options_.eps, "PpoClipGate::vjp", "w");
}

// ---------------------------------------------------------------- GRPO

bool GrpoGate::Options::is_valid(std::string* why) const {
  if (!finite_nonnegative(eps))
    return fail(why, detail::concat("eps must be finite and >= 0, got ", eps));
  if (!finite_nonnegative(beta))
    return fail(why, detail::concat("beta must be finite and >= 0, got ", beta));
  return true;
}

GrpoGate::GrpoGate(const Options& options, Vector reference_log_prob)
    : options_(options), reference_log_prob_(std::move(reference_log_prob)) {
  std::string why;
  require(options_.is_valid(&why), "GrpoGate::Options: ", why);
  require(options_.beta == 0.0 || reference_log_prob_.size() > 0, "GrpoGate: beta is ",
          options_.beta, " > 0 but no reference_log_prob was given (one entry per token)");
  for (Index i = 0; i < reference_log_prob_.size(); ++i) {
    require(std::isfinite(reference_log_prob_[i]) && reference_log_prob_[i] <= 0.0,
            "GrpoGate: reference_log_prob at entry ", i, " is ", reference_log_prob_[i],
            "; it must be finite and <= 0 (a probability in (0, 1])");
  }
}

Vector GrpoGate::weights(const TokenBatch& batch) {
  const std::vector<Index> traj = trajectory_offsets(batch);
  const Index n_traj = static_cast<Index>(traj.size()) - 1;
  Vector mu(batch.size());
  // Walk the trajectories group by group: a group is a run of trajectories with one group id.
  Index k = 0;
  while (k < n_traj) {
    const int g = batch.group[static_cast<std::size_t>(traj[k])];
    Index end = k;
    while (end < n_traj && batch.group[static_cast<std::size_t>(traj[end])] == g) ++end;
    const double group_size = static_cast<double>(end - k);
    for (Index t = k; t < end; ++t) {
      const double w = 1.0 / (group_size * static_cast<double>(traj[t + 1] - traj[t]));
      mu.segment(traj[t], traj[t + 1] - traj[t]).setConstant(w);
    }
    k = end;
  }
  return mu;
}

GateValue GrpoGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  GateValue value;
  evaluate(batch, new_log_prob, value);
  return value;
}

void GrpoGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob,
                        GateValue& out) const {
  evaluate(ValidatedBatch(batch), new_log_prob, out);
}

void GrpoGate::evaluate(const ValidatedBatch& valid, ConstVectorRef new_log_prob,
                        GateValue& out) const {
  surrogate(valid.batch(), new_log_prob, weights(valid.batch()), out);
}

void GrpoGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob,
                        ConstVectorRef weights, GateValue& out) const {
  evaluate(ValidatedBatch(batch), new_log_prob, weights, out);
}

void GrpoGate::evaluate(const ValidatedBatch& valid, ConstVectorRef new_log_prob,
                        ConstVectorRef weights, GateValue& out) const {
  surrogate(valid.batch(), new_log_prob, weights, out,
            "GrpoGate::evaluate: weights must be finite and > 0 (weights(batch) gives them)");
}

void GrpoGate::surrogate(const TokenBatch& batch, ConstVectorRef new_log_prob,
                         ConstVectorRef weights, GateValue& out,
                         const char* weights_refusal) const {
  const Index n = batch.size();
  // The shapes first (new log-probs, weights, reference), then the values inside the pass.
  require<ShapeError>(new_log_prob.size() == n, "new_log_prob has ", new_log_prob.size(),
                      " entries; the batch has ", n, " tokens");
  require<ShapeError>(weights.size() == n, "GrpoGate::evaluate: weights has ", weights.size(),
                      " entries; the batch has ", n, " tokens (weights(batch) gives them)");
  const bool kl = options_.beta > 0.0;
  require<ShapeError>(!kl || reference_log_prob_.size() == n, "GrpoGate: reference_log_prob has ",
                      reference_log_prob_.size(), " entries; the batch has ", n, " tokens");
  clipped_surrogate(batch, new_log_prob, weights.data(), kl ? reference_log_prob_.data() : nullptr,
                    options_.beta, options_.eps, out, weights_refusal);
}

Vector GrpoGate::gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  return PpoClipGate({.eps = options_.eps}).gated_ratios(batch, new_log_prob);
}

Vector GrpoGate::jvp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef v) const {
  return ppo_jacobian_product(batch, new_log_prob, v, options_.eps, "GrpoGate::jvp", "v");
}

Vector GrpoGate::vjp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef w) const {
  return ppo_jacobian_product(batch, new_log_prob, w, options_.eps, "GrpoGate::vjp", "w");
}

bool GroupAdvantageOptions::is_valid(std::string* why) const {
  if (!finite_nonnegative(std_epsilon))
    return fail(why, detail::concat("std_epsilon must be finite and >= 0, got ", std_epsilon));
  return true;
}

Vector grpo_advantages(const TokenBatch& batch, ConstVectorRef trajectory_reward,
                       const GroupAdvantageOptions& options) {
  std::string why;
  require(options.is_valid(&why), "GroupAdvantageOptions: ", why);
  batch.validate();
  const std::vector<Index> traj = trajectory_offsets(batch);
  const Index n_traj = static_cast<Index>(traj.size()) - 1;
  require<ShapeError>(trajectory_reward.size() == n_traj, "trajectory_reward has ",
                      trajectory_reward.size(), " entries; the batch has ", n_traj,
                      " trajectories (one reward per trajectory)");
  for (Index k = 0; k < n_traj; ++k) {
    require(std::isfinite(trajectory_reward[k]), "trajectory_reward at entry ", k, " is ",
            trajectory_reward[k], "; rewards must be finite");
  }
  Vector advantage(batch.size());
  Index k = 0;
  while (k < n_traj) {
    const int g = batch.group[static_cast<std::size_t>(traj[k])];
    Index end = k;
    while (end < n_traj && batch.group[static_cast<std::size_t>(traj[end])] == g) ++end;
    const Index size = end - k;
    const auto rewards = trajectory_reward.segment(k, size);
    const bool constant = rewards.maxCoeff() == rewards.minCoeff();
    const double mean = rewards.mean();
    const double divisor = static_cast<double>(options.unbiased_std ? size - 1 : size);
    const double sd = constant ? 0.0 : std::sqrt((rewards.array() - mean).square().sum() / divisor);
    for (Index t = k; t < end; ++t) {
      const double a = constant ? 0.0 : (trajectory_reward[t] - mean) / (sd + options.std_epsilon);
      advantage.segment(traj[t], traj[t + 1] - traj[t]).setConstant(a);
    }
    k = end;
  }
  return advantage;
}

// ---------------------------------------------------------------- GSPO

bool GspoGate::Options::is_valid(std::string* why) const {
  if (!finite_nonnegative(eps))
    return fail(why, detail::concat("eps must be finite and >= 0, got ", eps));
  return true;
}

GspoGate::GspoGate(const Options& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "GspoGate::Options: ", why);
}

namespace {

// Per trajectory k (offsets traj): s = exp(mean log r), Abar = mean A, and the PPO-clip
// decision on (s, Abar); body(k, begin, len, s, Abar, term). The trajectories run on OpenMP
// threads from kParallelTokens tokens on, so a body writes only what belongs to its trajectory;
// each trajectory's arithmetic is the same on any thread (results independent of the count).
// With check_log_probs, each trajectory's new log-probs are checked (log_probs_valid) just before
// they are read, from cache; a trajectory that fails is skipped and the function returns false.
template <class PerTrajectory>
bool for_each_sequence(const TokenBatch& batch, ConstVectorRef new_log_prob, double eps,
                       const std::vector<Index>& traj, PerTrajectory&& body,
                       bool check_log_probs = false) {
  const Index trajectories = static_cast<Index>(traj.size()) - 1;
  unsigned inputs_ok = 1;
#pragma omp parallel for schedule(static) reduction(& : inputs_ok) if (batch.size() >= kParallelTokens)
  for (Index k = 0; k < trajectories; ++k) {
    const Index begin = traj[k], len = traj[k + 1] - traj[k];
    if (check_log_probs && !log_probs_valid(new_log_prob.data() + begin, len)) {
      inputs_ok = 0;
      continue;
    }
    const double mean_log_ratio =
        (new_log_prob.segment(begin, len) - batch.old_log_prob.segment(begin, len)).sum() /
        static_cast<double>(len);
    const double s = std::exp(mean_log_ratio);
    const double abar = batch.advantage.segment(begin, len).sum() / static_cast<double>(len);
    body(k, begin, len, s, abar, ppo_term(s, abar, eps));
  }
  return inputs_ok != 0;
}

}  // namespace

GateValue GspoGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  GateValue value;
  evaluate(batch, new_log_prob, value);
  return value;
}

void GspoGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob,
                        GateValue& out) const {
  evaluate(ValidatedBatch(batch), new_log_prob, out);
}

void GspoGate::evaluate(const ValidatedBatch& valid, ConstVectorRef new_log_prob,
                        GateValue& out) const {
  const TokenBatch& batch = valid.batch();
  require<ShapeError>(new_log_prob.size() == batch.size(), "new_log_prob has ", new_log_prob.size(),
                      " entries; the batch has ", batch.size(), " tokens");
  out.gradient.resize(batch.size());
  const std::vector<Index>& traj = valid.trajectories();
  const Index n_traj = static_cast<Index>(traj.size()) - 1;
  const double inv = 1.0 / static_cast<double>(n_traj);
  // Per trajectory its term and clipped flag, summed in trajectory order below.
  std::vector<double> terms(static_cast<std::size_t>(n_traj));
  std::vector<char> clipped(static_cast<std::size_t>(n_traj));
  const bool inputs_ok = for_each_sequence(
      batch, new_log_prob, options_.eps, traj,
      [&](Index k, Index begin, Index len, double s, double abar, ClippedTerm term) {
        terms[static_cast<std::size_t>(k)] = term.gated * abar;
        clipped[static_cast<std::size_t>(k)] = term.clipped ? 1 : 0;
        // d s / d log r_t = s / T_tau.
        out.gradient.segment(begin, len)
            .setConstant(term.clipped ? 0.0 : s * abar * inv / static_cast<double>(len));
      },
      /*check_log_probs=*/true);
  if (!inputs_ok) {  // out is left empty, not half of two batches
    out = GateValue{};
    refuse_checked_log_probs(batch, new_log_prob, "GspoGate::evaluate");
  }
  double sum = 0.0;
  Index zeroed_traj = 0, zeroed_tokens = 0;
  for (Index k = 0; k < n_traj; ++k) {
    sum += terms[static_cast<std::size_t>(k)];
    zeroed_traj += clipped[static_cast<std::size_t>(k)];
    zeroed_tokens += clipped[static_cast<std::size_t>(k)] ? traj[k + 1] - traj[k] : 0;
  }
  out.objective = sum / static_cast<double>(n_traj);
  out.tokens = zeroed_share(zeroed_tokens, batch.size());
  out.trajectories = zeroed_share(zeroed_traj, n_traj);
}

Vector GspoGate::gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  require_valid_gate_input(batch, new_log_prob);
  Vector g(batch.size());
  for_each_sequence(batch, new_log_prob, options_.eps, trajectory_offsets(batch),
                    [&](Index, Index begin, Index len, double, double, ClippedTerm term) {
                      g.segment(begin, len).setConstant(term.gated);
                    });
  return g;
}

Vector GspoGate::jvp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef v) const {
  require_valid_gate_input(batch, new_log_prob);
  require_token_vector(batch, v, "GspoGate::jvp", "v");
  Vector out(batch.size());
  for_each_sequence(batch, new_log_prob, options_.eps, trajectory_offsets(batch),
                    [&](Index, Index begin, Index len, double s, double, ClippedTerm term) {
                      if (term.clipped) {
                        out.segment(begin, len).setZero();
                        return;
                      }
                      // (J v)_i = (s / T) sum_{j in tau} v_j / r_j, the same for every i in tau.
                      double dot = 0.0;
                      for (Index j = begin; j < begin + len; ++j)
                        dot += v[j] / std::exp(new_log_prob[j] - batch.old_log_prob[j]);
                      out.segment(begin, len).setConstant(s * dot / static_cast<double>(len));
                    });
  return out;
}

Vector GspoGate::vjp(const TokenBatch& batch, ConstVectorRef new_log_prob, ConstVectorRef w) const {
  require_valid_gate_input(batch, new_log_prob);
  require_token_vector(batch, w, "GspoGate::vjp", "w");
  Vector out(batch.size());
  for_each_sequence(batch, new_log_prob, options_.eps, trajectory_offsets(batch),
                    [&](Index, Index begin, Index len, double s, double, ClippedTerm term) {
                      if (term.clipped) {
                        out.segment(begin, len).setZero();
                        return;
                      }
                      // (J^T w)_j = (s / (T r_j)) sum_{i in tau} w_i.
                      const double c = s * w.segment(begin, len).sum() / static_cast<double>(len);
                      for (Index j = begin; j < begin + len; ++j)
                        out[j] = c / std::exp(new_log_prob[j] - batch.old_log_prob[j]);
                    });
  return out;
}

}  // namespace tether
