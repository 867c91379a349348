#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <tether/core/errors.hpp>
#include <tether/problems/policy_envs.hpp>
#include <utility>

namespace tether::problems {

namespace {

// Context c of C is in domain floor(c D / C): contiguous blocks whose sizes differ by at most 1.
std::vector<int> block_domains(int contexts, int domains) {
  std::vector<int> d(static_cast<std::size_t>(contexts));
  for (int c = 0; c < contexts; ++c)
    d[static_cast<std::size_t>(c)] =
        static_cast<int>((static_cast<long long>(c) * domains) / contexts);
  return d;
}

void require_common(int contexts, int domains, int actions, RewardNoise noise, double noise_std,
                    const char* who, const char* actions_name) {
  require(contexts >= 1, who, ": contexts must be >= 1, got ", contexts);
  require(domains >= 1 && domains <= contexts, who,
          ": domains must be in [1, contexts = ", contexts, "], got ", domains);
  require(actions >= 2, who, ": ", actions_name, " must be >= 2, got ", actions);
  require(noise != RewardNoise::kGaussian || (std::isfinite(noise_std) && noise_std >= 0.0), who,
          ": noise_std must be finite and >= 0, got ", noise_std);
}

// log pi(.|s) of one row of logits: (z - max z) - log sum exp(z - max z). Subtracting the
// maximum first keeps huge logits finite, and keeps the result accurate to the rounding of the
// small numbers z - max z rather than of the large z.
template <class Row, class Out>
void log_softmax(const Row& z, Out& out) {
  const double m = z.maxCoeff();
  out = z.array() - m;
  out.array() -= std::log(out.array().exp().sum());
}

void require_theta(const Vector& theta, Index n, const char* who) {
  require<ShapeError>(theta.size() == n, who, ": theta has size ", theta.size(),
                      ", the policy has ", n, " parameters");
}

void require_batch_fits(const TokenBatch& batch, Index states, Index actions, const char* who) {
  const Index n = batch.size();
  require<ShapeError>(
      static_cast<Index>(batch.state.size()) == n && static_cast<Index>(batch.action.size()) == n,
      who, ": the batch's state / action arrays have ", batch.state.size(), " / ",
      batch.action.size(), " entries, old_log_prob has ", n);
  for (Index i = 0; i < n; ++i) {
    const int s = batch.state[static_cast<std::size_t>(i)];
    const int a = batch.action[static_cast<std::size_t>(i)];
    require<ShapeError>(s >= 0 && s < states, who, ": token ", i, " has state ", s,
                        "; the policy has states 0..", states - 1);
    require<ShapeError>(a >= 0 && a < actions, who, ": token ", i, " has action ", a,
                        "; the policy has actions 0..", actions - 1);
  }
}

// Everything log_prob_vjp needs of its arguments (both policies share the checks).
void require_vjp_arguments(const Vector& theta, const TokenBatch& batch, const Vector& c,
                           const Vector& grad, Index parameters, Index states, Index actions,
                           const char* who) {
  require_theta(theta, parameters, who);
  require_batch_fits(batch, states, actions, who);
  require<ShapeError>(c.size() == batch.size(), who, ": c has ", c.size(),
                      " entries, the batch has ", batch.size(), " tokens");
  require<ShapeError>(grad.size() == parameters, who, ": grad has size ", grad.size(),
                      ", expected num_parameters() = ", parameters);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// EpisodicTask

EpisodicTask::EpisodicTask(Matrix mean_reward, std::vector<int> next_state,
                           std::vector<int> context_domain, std::vector<int> initial_state,
                           int horizon, RewardNoise noise, double noise_std)
    : mean_reward_(std::move(mean_reward)),
      next_state_(std::move(next_state)),
      context_domain_(std::move(context_domain)),
      initial_state_(std::move(initial_state)),
      horizon_(horizon),
      noise_(noise),
      noise_std_(noise_std) {
  const Index S = mean_reward_.rows(), V = mean_reward_.cols();
  require(S >= 1 && V >= 1, "EpisodicTask: mean_reward must be non-empty, got ", S, " x ", V);
  require(mean_reward_.allFinite(), "EpisodicTask: mean_reward must be finite");
  require<ShapeError>(static_cast<Index>(next_state_.size()) == S * V,
                      "EpisodicTask: next_state has ", next_state_.size(),
                      " entries, expected S V = ", S * V);
  require(!context_domain_.empty(), "EpisodicTask: at least one context is required");
  require<ShapeError>(initial_state_.size() == context_domain_.size(),
                      "EpisodicTask: initial_state has ", initial_state_.size(),
                      " entries, context_domain has ", context_domain_.size());
  require(horizon_ >= 1, "EpisodicTask: horizon must be >= 1, got ", horizon_);
  require(noise_ != RewardNoise::kGaussian || (std::isfinite(noise_std_) && noise_std_ >= 0.0),
          "EpisodicTask: noise_std must be finite and >= 0, got ", noise_std_);
  if (noise_ == RewardNoise::kBernoulli)
    require(mean_reward_.minCoeff() >= 0.0 && mean_reward_.maxCoeff() <= 1.0,
            "EpisodicTask: Bernoulli rewards need means in [0, 1], got [", mean_reward_.minCoeff(),
            ", ", mean_reward_.maxCoeff(), "]");
  require(context_domain_[0] == 0, "EpisodicTask: domain ids start at 0, got ", context_domain_[0]);
  for (std::size_t c = 1; c < context_domain_.size(); ++c)
    require(context_domain_[c] == context_domain_[c - 1] ||
                context_domain_[c] == context_domain_[c - 1] + 1,
            "EpisodicTask: context_domain must be non-decreasing without gaps; context ", c,
            " has ", context_domain_[c], " after ", context_domain_[c - 1]);
  for (std::size_t c = 0; c < initial_state_.size(); ++c)
    require(initial_state_[c] >= 0 && initial_state_[c] < S, "EpisodicTask: initial_state of ",
            "context ", c, " is ", initial_state_[c], ", outside 0..", S - 1);
  for (Index s = 0; s < S; ++s)
    for (Index a = 0; a < V; ++a) {
      const int n = this->next_state(s, a);
      require(n == -1 || (n > s && n < S), "EpisodicTask: next_state(", s, ", ", a, ") is ", n,
              "; it must be -1 (end) or a later state id in (", s, ", ", S, ")");
    }

  // Depth: the longest episode from each state (1 + the longest from its successors).
  std::vector<int> depth(static_cast<std::size_t>(S), 0);
  for (Index s = S - 1; s >= 0; --s) {
    int d = 0;
    for (Index a = 0; a < V; ++a) {
      const int n = this->next_state(s, a);
      d = std::max(d, 1 + (n < 0 ? 0 : depth[static_cast<std::size_t>(n)]));
    }
    depth[static_cast<std::size_t>(s)] = d;
  }
  for (std::size_t c = 0; c < initial_state_.size(); ++c)
    require(depth[static_cast<std::size_t>(initial_state_[c])] <= horizon_,
            "EpisodicTask: an episode of context ", c, " can last ",
            depth[static_cast<std::size_t>(initial_state_[c])], " tokens, beyond the horizon ",
            horizon_);

  // Q*, V*, a* by one backward sweep (successors have larger ids).
  optimal_q_.resize(S, V);
  optimal_action_.assign(static_cast<std::size_t>(S), 0);
  Vector v_star(S);
  min_gap_ = std::numeric_limits<double>::infinity();
  for (Index s = S - 1; s >= 0; --s) {
    for (Index a = 0; a < V; ++a) {
      const int n = this->next_state(s, a);
      optimal_q_(s, a) = mean_reward_(s, a) + (n < 0 ? 0.0 : v_star[n]);
    }
    Index best = 0;
    for (Index a = 1; a < V; ++a)
      if (optimal_q_(s, a) > optimal_q_(s, best)) best = a;
    double second = -std::numeric_limits<double>::infinity();
    for (Index a = 0; a < V; ++a)
      if (a != best) second = std::max(second, optimal_q_(s, a));
    min_gap_ = std::min(
        min_gap_, V >= 2 ? optimal_q_(s, best) - second : std::numeric_limits<double>::infinity());
    optimal_action_[static_cast<std::size_t>(s)] = static_cast<int>(best);
    v_star[s] = optimal_q_(s, best);
  }
  optimal_return_ = 0.0;
  for (int s0 : initial_state_) optimal_return_ += v_star[s0];
  optimal_return_ /= static_cast<double>(initial_state_.size());
}

double EpisodicTask::sample_reward(Index s, Index a, Rng& rng) const {
  const double m = mean_reward_(s, a);
  switch (noise_) {
    case RewardNoise::kNone:
      return m;
    case RewardNoise::kGaussian:
      return m + noise_std_ * rng.normal();
    case RewardNoise::kBernoulli:
      return rng.uniform() < m ? 1.0 : 0.0;
  }
  return m;
}

void EpisodicTask::require_policy_shape(const Matrix& p, const char* who) const {
  require<ShapeError>(p.rows() == num_states() && p.cols() == num_actions(), "EpisodicTask::", who,
                      ": the policy's probabilities are ", p.rows(), " x ", p.cols(),
                      ", the task has ", num_states(), " states x ", num_actions(), " actions");
  require<NumericalError>(p.allFinite(), "EpisodicTask::", who,
                          ": the policy's probabilities contain NaN/Inf");
}

Vector EpisodicTask::state_values(const Matrix& p) const {
  require_policy_shape(p, "state_values");
  const Index S = num_states(), V = num_actions();
  Vector v(S);
  for (Index s = S - 1; s >= 0; --s) {
    double total = 0.0;
    for (Index a = 0; a < V; ++a) {
      const int n = next_state(s, a);
      total += p(s, a) * (mean_reward_(s, a) + (n < 0 ? 0.0 : v[n]));
    }
    v[s] = total;
  }
  return v;
}

double EpisodicTask::expected_return(const Matrix& p) const {
  const Vector v = state_values(p);
  double total = 0.0;
  for (int s0 : initial_state_) total += v[s0];
  return total / static_cast<double>(initial_state_.size());
}

Matrix EpisodicTask::optimal_policy() const {
  Matrix p = Matrix::Zero(num_states(), num_actions());
  for (Index s = 0; s < num_states(); ++s) p(s, optimal_action_[static_cast<std::size_t>(s)]) = 1;
  return p;
}

double EpisodicTask::distance_to_optimal(const Matrix& p) const {
  require_policy_shape(p, "distance_to_optimal");
  double total = 0.0;
  for (Index s = 0; s < num_states(); ++s)
    total += 1.0 - p(s, optimal_action_[static_cast<std::size_t>(s)]);
  return total / static_cast<double>(num_states());
}

double EpisodicTask::optimal_path_distance(const Matrix& p) const {
  require_policy_shape(p, "optimal_path_distance");
  double total = 0.0;
  for (int s0 : initial_state_) {
    double sum = 0.0;
    int length = 0;
    for (int s = s0; s >= 0; ++length) {
      const int a = optimal_action_[static_cast<std::size_t>(s)];
      sum += 1.0 - p(s, a);
      s = next_state(s, a);
    }
    total += sum / length;
  }
  return total / static_cast<double>(initial_state_.size());
}

// ---------------------------------------------------------------------------------------------
// Generators

namespace {

EpisodicTask make_bandit(const ContextualBanditOptions& o) {
  require_common(o.contexts, o.domains, o.arms, o.noise, o.noise_std, "ContextualBandit", "arms");
  require(o.gap > 0.0 && o.gap < 1.0, "ContextualBandit: gap must be in (0, 1), got ", o.gap);
  const Index C = o.contexts, K = o.arms;
  Rng rng(o.seed);
  Matrix means(C, K);
  for (Index c = 0; c < C; ++c) {
    for (Index k = 0; k < K; ++k) means(c, k) = rng.uniform(0.0, 1.0 - o.gap);
    const Index best = static_cast<Index>(rng.index(static_cast<std::uint64_t>(K)));
    double second = 0.0;
    for (Index k = 0; k < K; ++k)
      if (k != best) second = std::max(second, means(c, k));
    means(c, best) = second + o.gap;  // <= 1
  }
  std::vector<int> initial(static_cast<std::size_t>(C));
  std::iota(initial.begin(), initial.end(), 0);
  return EpisodicTask(std::move(means), std::vector<int>(static_cast<std::size_t>(C * K), -1),
                      block_domains(o.contexts, o.domains), std::move(initial), 1, o.noise,
                      o.noise_std);
}

constexpr int kMaxSequenceHorizon = 8;
constexpr Index kMaxSequenceTable = 10'000'000;  // S V entries

EpisodicTask make_sequence(const SequenceTaskOptions& o) {
  require_common(o.contexts, o.domains, o.vocabulary, o.noise, o.noise_std, "SequenceTask",
                 "vocabulary");
  require(o.horizon >= 1 && o.horizon <= kMaxSequenceHorizon,
          "SequenceTask: horizon must be in [1, ", kMaxSequenceHorizon, "], got ", o.horizon);
  const Index C = o.contexts, H = o.horizon, V = o.vocabulary;
  const Index per_context = 1 + (H - 1) * V;
  require(C * per_context * V <= kMaxSequenceTable,
          "SequenceTask: contexts x states x vocabulary = ", C * per_context * V,
          " exceeds the table limit ", kMaxSequenceTable);
  const Index S = C * per_context;
  Rng rng(o.seed);
  Matrix means(S, V);
  for (Index i = 0; i < means.size(); ++i) means.data()[i] = rng.uniform();
  std::vector<int> next(static_cast<std::size_t>(S * V), -1);
  std::vector<int> initial(static_cast<std::size_t>(C));
  for (Index c = 0; c < C; ++c) {
    const Index base = c * per_context;
    initial[static_cast<std::size_t>(c)] = static_cast<int>(base);
    for (Index t = 0; t + 1 < H; ++t) {
      // States of step t: base (t = 0) or base + 1 + (t - 1) V + p.
      const Index first = t == 0 ? base : base + 1 + (t - 1) * V;
      const Index count = t == 0 ? 1 : V;
      for (Index s = first; s < first + count; ++s)
        for (Index a = 0; a < V; ++a)
          next[static_cast<std::size_t>(s * V + a)] =
              (o.end_token && a == 0) ? -1 : static_cast<int>(base + 1 + t * V + a);
    }
  }
  return EpisodicTask(std::move(means), std::move(next), block_domains(o.contexts, o.domains),
                      std::move(initial), o.horizon, o.noise, o.noise_std);
}

}  // namespace

ContextualBandit::ContextualBandit(const ContextualBanditOptions& options)
    : EpisodicTask(make_bandit(options)), options_(options) {}

SequenceTask::SequenceTask(const SequenceTaskOptions& options)
    : EpisodicTask(make_sequence(options)), options_(options) {}

int SequenceTask::state_id(int context, int step, int previous) const {
  const int H = options_.horizon, V = options_.vocabulary;
  require(context >= 0 && context < options_.contexts, "SequenceTask::state_id: context ", context,
          " outside 0..", options_.contexts - 1);
  require(step >= 0 && step < H, "SequenceTask::state_id: step ", step, " outside 0..", H - 1);
  const int base = context * (1 + (H - 1) * V);
  if (step == 0) return base;
  require(previous >= 0 && previous < V && !(options_.end_token && previous == 0),
          "SequenceTask::state_id: previous token ", previous, " cannot precede step ", step);
  return base + 1 + (step - 1) * V + previous;
}

// ---------------------------------------------------------------------------------------------
// Policies

TabularSoftmaxPolicy::TabularSoftmaxPolicy(Index num_states, Index num_actions)
    : num_states_(num_states), num_actions_(num_actions) {
  require(num_states >= 1, "TabularSoftmaxPolicy: num_states must be >= 1, got ", num_states);
  require(num_actions >= 1, "TabularSoftmaxPolicy: num_actions must be >= 1, got ", num_actions);
}

Vector TabularSoftmaxPolicy::log_prob(const Vector& theta, const TokenBatch& batch) const {
  require_theta(theta, num_parameters(), "TabularSoftmaxPolicy::log_prob");
  require_batch_fits(batch, num_states_, num_actions_, "TabularSoftmaxPolicy::log_prob");
  const Index V = num_actions_;
  Vector out(batch.size());
  Vector row(V);
  for (Index i = 0; i < batch.size(); ++i) {
    const Index s = batch.state[static_cast<std::size_t>(i)];
    log_softmax(theta.segment(s * V, V), row);
    out[i] = row[batch.action[static_cast<std::size_t>(i)]];
  }
  return out;
}

void TabularSoftmaxPolicy::log_prob_vjp(const Vector& theta, const TokenBatch& batch,
                                        const Vector& c, Vector& grad) const {
  require_vjp_arguments(theta, batch, c, grad, num_parameters(), num_states_, num_actions_,
                        "TabularSoftmaxPolicy::log_prob_vjp");
  const Index V = num_actions_;
  grad.setZero();
  Vector row(V);
  for (Index i = 0; i < batch.size(); ++i) {
    const Index s = batch.state[static_cast<std::size_t>(i)];
    log_softmax(theta.segment(s * V, V), row);
    // d log pi(a|s) / d z_b = 1[b = a] - pi(b|s).
    grad.segment(s * V, V).array() -= c[i] * row.array().exp();
    grad[s * V + batch.action[static_cast<std::size_t>(i)]] += c[i];
  }
}

Matrix TabularSoftmaxPolicy::probabilities(const Vector& theta) const {
  require_theta(theta, num_parameters(), "TabularSoftmaxPolicy::probabilities");
  Matrix p(num_states_, num_actions_);
  Vector row(num_actions_);
  for (Index s = 0; s < num_states_; ++s) {
    log_softmax(theta.segment(s * num_actions_, num_actions_), row);
    p.row(s) = row.array().exp().transpose();
  }
  return p;
}

LinearSoftmaxPolicy::LinearSoftmaxPolicy(Index num_states, Index num_actions, Matrix features)
    : num_states_(num_states), num_actions_(num_actions), features_(std::move(features)) {
  require(num_states >= 1, "LinearSoftmaxPolicy: num_states must be >= 1, got ", num_states);
  require(num_actions >= 1, "LinearSoftmaxPolicy: num_actions must be >= 1, got ", num_actions);
  require<ShapeError>(features_.rows() == num_states * num_actions,
                      "LinearSoftmaxPolicy: features have ", features_.rows(),
                      " rows, expected S V = ", num_states * num_actions);
  require(features_.cols() >= 1, "LinearSoftmaxPolicy: the feature dimension must be >= 1");
  require(features_.allFinite(), "LinearSoftmaxPolicy: features must be finite");
}

LinearSoftmaxPolicy LinearSoftmaxPolicy::random(Index num_states, Index num_actions,
                                                Index dimension, std::uint64_t seed) {
  require(dimension >= 1, "LinearSoftmaxPolicy::random: dimension must be >= 1, got ", dimension);
  require(num_states >= 1 && num_actions >= 1,
          "LinearSoftmaxPolicy::random: num_states and num_actions must be >= 1");
  Rng rng(seed);
  Matrix f(num_states * num_actions, dimension);
  const double scale = 1.0 / std::sqrt(static_cast<double>(dimension));
  for (Index i = 0; i < f.size(); ++i) f.data()[i] = scale * rng.normal();
  return LinearSoftmaxPolicy(num_states, num_actions, std::move(f));
}

Vector LinearSoftmaxPolicy::log_prob(const Vector& theta, const TokenBatch& batch) const {
  require_theta(theta, num_parameters(), "LinearSoftmaxPolicy::log_prob");
  require_batch_fits(batch, num_states_, num_actions_, "LinearSoftmaxPolicy::log_prob");
  const Index V = num_actions_;
  Vector out(batch.size()), z(V), row(V);
  for (Index i = 0; i < batch.size(); ++i) {
    const Index s = batch.state[static_cast<std::size_t>(i)];
    z.noalias() = features_.middleRows(s * V, V) * theta;
    log_softmax(z, row);
    out[i] = row[batch.action[static_cast<std::size_t>(i)]];
  }
  return out;
}

void LinearSoftmaxPolicy::log_prob_vjp(const Vector& theta, const TokenBatch& batch,
                                       const Vector& c, Vector& grad) const {
  require_vjp_arguments(theta, batch, c, grad, num_parameters(), num_states_, num_actions_,
                        "LinearSoftmaxPolicy::log_prob_vjp");
  const Index V = num_actions_;
  grad.setZero();
  Vector z(V), row(V), w(V);
  for (Index i = 0; i < batch.size(); ++i) {
    const Index s = batch.state[static_cast<std::size_t>(i)];
    const auto phi = features_.middleRows(s * V, V);
    z.noalias() = phi * theta;
    log_softmax(z, row);
    // c_i (phi(s, a) - sum_b pi(b|s) phi(s, b)) = phi^T w, w = c_i (e_a - pi).
    w = -c[i] * row.array().exp();
    w[batch.action[static_cast<std::size_t>(i)]] += c[i];
    grad.noalias() += phi.transpose() * w;
  }
}

Matrix LinearSoftmaxPolicy::probabilities(const Vector& theta) const {
  require_theta(theta, num_parameters(), "LinearSoftmaxPolicy::probabilities");
  const Index V = num_actions_;
  Matrix p(num_states_, V);
  Vector z(V), row(V);
  for (Index s = 0; s < num_states_; ++s) {
    z.noalias() = features_.middleRows(s * V, V) * theta;
    log_softmax(z, row);
    p.row(s) = row.array().exp().transpose();
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// Sampling

std::vector<int> draw_prompts(const EpisodicTask& task, int count, Rng& rng) {
  const int C = task.num_contexts();
  require(count >= 1 && count <= C, "draw_prompts: count must be in [1, num_contexts = ", C,
          "], got ", count);
  // Partial Fisher-Yates: the first `count` entries are a uniform sample without replacement.
  std::vector<int> all(static_cast<std::size_t>(C));
  std::iota(all.begin(), all.end(), 0);
  for (int i = 0; i < count; ++i) {
    const auto j = static_cast<std::size_t>(i) + rng.index(static_cast<std::uint64_t>(C - i));
    std::swap(all[static_cast<std::size_t>(i)], all[j]);
  }
  all.resize(static_cast<std::size_t>(count));
  std::sort(all.begin(), all.end(), [&](int a, int b) {
    return task.domain_of(a) != task.domain_of(b) ? task.domain_of(a) < task.domain_of(b) : a < b;
  });
  return all;
}

Rollouts sample_rollouts(const EpisodicTask& task, const Matrix& p, std::vector<int> prompts,
                         int group_size, Rng& rng, const AdvantageOptions& advantage) {
  const Index S = task.num_states(), V = task.num_actions();
  require<ShapeError>(p.rows() == S && p.cols() == V, "sample_rollouts: probabilities are ",
                      p.rows(), " x ", p.cols(), ", the task has ", S, " x ", V);
  require<NumericalError>(p.allFinite(),
                          "sample_rollouts: the policy's probabilities contain NaN/Inf");
  require(!prompts.empty(), "sample_rollouts: at least one prompt is required");
  require(group_size >= 1, "sample_rollouts: group_size must be >= 1, got ", group_size);
  for (int c : prompts)
    require(c >= 0 && c < task.num_contexts(), "sample_rollouts: prompt ", c,
            " outside the contexts 0..", task.num_contexts() - 1);
  std::stable_sort(prompts.begin(), prompts.end(),
                   [&](int a, int b) { return task.domain_of(a) < task.domain_of(b); });

  Rollouts r;
  r.prompts = prompts;
  r.group_size = group_size;
  TokenBatch& b = r.batch;
  std::vector<double> rewards, log_probs;
  int trajectory = 0;
  for (std::size_t g = 0; g < prompts.size(); ++g) {
    const int c = prompts[g];
    for (int k = 0; k < group_size; ++k, ++trajectory) {
      r.trajectory_start.push_back(static_cast<int>(rewards.size()));
      int s = task.initial_state(c);
      for (int t = 0; s >= 0; ++t) {
        // Inverse CDF; rounding can leave the cumulative sum just below u, so fall back to the
        // last action with positive probability (never to one with probability 0).
        const double u = rng.uniform();
        Index a = -1, last_positive = -1;
        double cumulative = 0.0;
        for (Index j = 0; j < V; ++j) {
          const double pj = p(s, j);
          require<NumericalError>(pj >= 0.0, "sample_rollouts: probability (", s, ", ", j,
                                  ") is negative: ", pj);
          if (pj > 0.0) last_positive = j;
          cumulative += pj;
          if (a < 0 && pj > 0.0 && u < cumulative) a = j;
        }
        require<NumericalError>(last_positive >= 0, "sample_rollouts: state ", s,
                                " has no action with positive probability");
        if (a < 0) a = last_positive;
        b.domain.push_back(task.domain_of(c));
        b.group.push_back(static_cast<int>(g));
        b.trajectory.push_back(trajectory);
        b.position.push_back(t);
        b.state.push_back(s);
        b.action.push_back(static_cast<int>(a));
        log_probs.push_back(std::log(p(s, a)));
        rewards.push_back(task.sample_reward(s, a, rng));
        s = task.next_state(s, a);
      }
    }
  }
  r.trajectory_start.push_back(static_cast<int>(rewards.size()));
  const Index T = static_cast<Index>(rewards.size());
  b.old_log_prob = Eigen::Map<const Vector>(log_probs.data(), T);
  r.token_reward = Eigen::Map<const Vector>(rewards.data(), T);
  r.reward_to_go.resize(T);
  r.trajectory_return.resize(trajectory);
  for (int j = 0; j < trajectory; ++j) {
    double tail = 0.0;
    for (int i = r.trajectory_start[static_cast<std::size_t>(j) + 1] - 1;
         i >= r.trajectory_start[static_cast<std::size_t>(j)]; --i) {
      tail += r.token_reward[i];
      r.reward_to_go[i] = tail;
    }
    r.trajectory_return[j] = tail;
  }
  b.advantage = Vector::Zero(T);
  set_advantages(r, advantage);
  return r;
}

void set_advantages(Rollouts& r, const AdvantageOptions& options) {
  const int G = r.group_size;
  const int trajectories = static_cast<int>(r.trajectory_start.size()) - 1;
  require(G >= 1 && trajectories == G * static_cast<int>(r.prompts.size()),
          "set_advantages: the rollouts are inconsistent (", trajectories, " trajectories for ",
          r.prompts.size(), " prompts x group_size ", G, ")");
  require(options.baseline != Baseline::kLeaveOneOut || G >= 2,
          "set_advantages: the leave-one-out baseline needs group_size >= 2, got ", G);
  const Index T = r.token_reward.size();
  TokenBatch& b = r.batch;
  b.advantage.resize(T);
  auto start = [&](int j) { return r.trajectory_start[static_cast<std::size_t>(j)]; };
  // G_i: reward-to-go, or the trajectory's return repeated.
  for (int j = 0; j < trajectories; ++j)
    for (int i = start(j); i < start(j + 1); ++i)
      b.advantage[i] = options.reward_to_go ? r.reward_to_go[i] : r.trajectory_return[j];
  if (options.baseline == Baseline::kNone) return;

  // Per group and position: the sum of G over the group's trajectories (0 where a trajectory
  // has already ended), then subtract the mean (with or without the token's own trajectory).
  // With trajectory returns, every position of a trajectory carries its return R_j, so the
  // baseline is the group's mean return (leave-one-out: of the other trajectories).
  auto baseline_of = [&](double total, double own) {
    return options.baseline == Baseline::kGroupMean ? total / G : (total - own) / (G - 1);
  };
  if (!options.reward_to_go) {
    for (std::size_t g = 0; g < r.prompts.size(); ++g) {
      const int first = static_cast<int>(g) * G;
      const double total = r.trajectory_return.segment(first, G).sum();
      for (int j = first; j < first + G; ++j) {
        const double baseline = baseline_of(total, r.trajectory_return[j]);
        for (int i = start(j); i < start(j + 1); ++i) b.advantage[i] -= baseline;
      }
    }
    return;
  }
  std::vector<double> sum;
  for (std::size_t g = 0; g < r.prompts.size(); ++g) {
    const int first = static_cast<int>(g) * G;
    int longest = 0;
    for (int j = first; j < first + G; ++j) longest = std::max(longest, start(j + 1) - start(j));
    sum.assign(static_cast<std::size_t>(longest), 0.0);
    for (int j = first; j < first + G; ++j)
      for (int i = start(j); i < start(j + 1); ++i)
        sum[static_cast<std::size_t>(i - start(j))] += b.advantage[i];
    for (int j = first; j < first + G; ++j)
      for (int i = start(j); i < start(j + 1); ++i) {
        b.advantage[i] -= baseline_of(sum[static_cast<std::size_t>(i - start(j))], b.advantage[i]);
      }
  }
}

}  // namespace tether::problems
