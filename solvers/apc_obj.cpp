#include <algorithm>
#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/solvers/apc_obj.hpp>
#include <tether/solvers/ratio_gates.hpp>
#include <vector>

namespace tether {

namespace {

enum class ApcRegime : unsigned char { kPass, kRollback, kZeroed };

double sign_of(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0); }

// Everything evaluate and gated_ratios share: r, the state slot of each token, B_i, regimes.
struct ApcTerms {
  Vector r, budget;
  std::vector<Index> slot;
  std::vector<ApcRegime> regime;
  Index n_states = 0;
};

// On a validated batch: only the new log-probs are checked here.
ApcTerms apc_terms(const ValidatedBatch& valid, ConstVectorRef new_log_prob, double delta) {
  const TokenBatch& batch = valid.batch();
  require_valid_log_probs(batch, new_log_prob);
  const Index n = batch.size();
  ApcTerms t;
  t.r = (new_log_prob - batch.old_log_prob).array().exp();
  std::vector<int> ids(batch.state);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  t.n_states = static_cast<Index>(ids.size());
  t.slot.resize(static_cast<std::size_t>(n));
  std::vector<double> count(ids.size(), 0.0), deviation(ids.size(), 0.0);
  for (Index i = 0; i < n; ++i) {
    const auto s = static_cast<std::size_t>(
        std::lower_bound(ids.begin(), ids.end(), batch.state[static_cast<std::size_t>(i)]) -
        ids.begin());
    t.slot[static_cast<std::size_t>(i)] = static_cast<Index>(s);
    count[s] += 1.0;
    deviation[s] += std::abs(t.r[i] - 1.0);
  }
  t.budget.resize(n);
  t.regime.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const auto s = static_cast<std::size_t>(t.slot[static_cast<std::size_t>(i)]);
    const double d = std::abs(t.r[i] - 1.0);
    const double b = count[s] * delta - (deviation[s] - d);  // the others' |r_j - 1| only
    t.budget[i] = b;
    t.regime[static_cast<std::size_t>(i)] =
        b <= 0.0 ? ApcRegime::kZeroed : (d <= b ? ApcRegime::kPass : ApcRegime::kRollback);
  }
  return t;
}

double clip_deviation(double x, double b) {
  const double bp = std::max(b, 0.0);
  return std::clamp(x, -bp, bp);
}

}  // namespace

bool ApcObjGate::Options::is_valid(std::string* why) const {
  if (!std::isfinite(delta) || delta < 0.0) {
    if (why) *why = detail::concat("delta must be finite and >= 0, got ", delta);
    return false;
  }
  return true;
}

ApcObjGate::ApcObjGate(const Options& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "ApcObjGate::Options: ", why);
}

GateValue ApcObjGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  GateValue value;
  evaluate(batch, new_log_prob, value);
  return value;
}

void ApcObjGate::evaluate(const TokenBatch& batch, ConstVectorRef new_log_prob,
                          GateValue& value) const {
  evaluate(ValidatedBatch(batch), new_log_prob, value);
}

void ApcObjGate::evaluate(const ValidatedBatch& valid, ConstVectorRef new_log_prob,
                          GateValue& value) const {
  const TokenBatch& batch = valid.batch();
  const ApcTerms t = apc_terms(valid, new_log_prob, options_.delta);
  const Index n = batch.size();
  const double inv_n = 1.0 / static_cast<double>(n);
  const Vector& a = batch.advantage;
  // D_s: sum over rollback tokens at s of sign(r_i - 1) A_i.
  std::vector<double> rollback_pull(static_cast<std::size_t>(t.n_states), 0.0);
  double sum = 0.0;
  Index counts[3] = {0, 0, 0};
  for (Index i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    sum += clip_deviation(t.r[i] - 1.0, t.budget[i]) * a[i] + a[i];
    counts[static_cast<int>(t.regime[k])] += 1;
    if (t.regime[k] == ApcRegime::kRollback)
      rollback_pull[static_cast<std::size_t>(t.slot[k])] += sign_of(t.r[i] - 1.0) * a[i];
  }
  value.objective = sum * inv_n;
  value.gradient.resize(n);
  for (Index i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    const double sigma = sign_of(t.r[i] - 1.0);
    double others = rollback_pull[static_cast<std::size_t>(t.slot[k])];
    if (t.regime[k] == ApcRegime::kRollback) others -= sigma * a[i];
    const double own = t.regime[k] == ApcRegime::kPass ? a[i] : 0.0;
    value.gradient[i] = t.r[i] * (own - sigma * others) * inv_n;
  }
  value.tokens.pass_through = static_cast<double>(counts[0]) * inv_n;
  value.tokens.rollback = static_cast<double>(counts[1]) * inv_n;
  value.tokens.zeroed = static_cast<double>(counts[2]) * inv_n;
  value.trajectories = RegimeFractions{};
}

Vector ApcObjGate::gated_ratios(const TokenBatch& batch, ConstVectorRef new_log_prob) const {
  const ApcTerms t = apc_terms(ValidatedBatch(batch), new_log_prob, options_.delta);
  Vector g(batch.size());
  for (Index i = 0; i < batch.size(); ++i) g[i] = 1.0 + clip_deviation(t.r[i] - 1.0, t.budget[i]);
  return g;
}

Vector ApcObjGate::jvp(const TokenBatch& batch, ConstVectorRef new_log_prob,
                       ConstVectorRef v) const {
  const ApcTerms t = apc_terms(ValidatedBatch(batch), new_log_prob, options_.delta);
  require_token_vector(batch, v, "ApcObjGate::jvp", "v");
  const Index n = batch.size();
  // S_s = sum over all tokens j at s of sign(r_j - 1) v_j; a rollback row i takes
  // -sign(r_i - 1) (S_s - sign(r_i - 1) v_i).
  std::vector<double> signed_sum(static_cast<std::size_t>(t.n_states), 0.0);
  for (Index j = 0; j < n; ++j)
    signed_sum[static_cast<std::size_t>(t.slot[static_cast<std::size_t>(j)])] +=
        sign_of(t.r[j] - 1.0) * v[j];
  Vector out(n);
  for (Index i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    switch (t.regime[k]) {
      case ApcRegime::kPass:
        out[i] = v[i];
        break;
      case ApcRegime::kRollback: {
        const double sigma = sign_of(t.r[i] - 1.0);
        out[i] = -sigma * (signed_sum[static_cast<std::size_t>(t.slot[k])] - sigma * v[i]);
        break;
      }
      case ApcRegime::kZeroed:
        out[i] = 0.0;
        break;
    }
  }
  return out;
}

Vector ApcObjGate::vjp(const TokenBatch& batch, ConstVectorRef new_log_prob,
                       ConstVectorRef w) const {
  const ApcTerms t = apc_terms(ValidatedBatch(batch), new_log_prob, options_.delta);
  require_token_vector(batch, w, "ApcObjGate::vjp", "w");
  const Index n = batch.size();
  // D_s = sum over rollback tokens i at s of sign(r_i - 1) w_i (evaluate's D_s with w = A/T).
  std::vector<double> rollback_pull(static_cast<std::size_t>(t.n_states), 0.0);
  for (Index i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (t.regime[k] == ApcRegime::kRollback)
      rollback_pull[static_cast<std::size_t>(t.slot[k])] += sign_of(t.r[i] - 1.0) * w[i];
  }
  Vector out(n);
  for (Index j = 0; j < n; ++j) {
    const auto k = static_cast<std::size_t>(j);
    const double sigma = sign_of(t.r[j] - 1.0);
    double others = rollback_pull[static_cast<std::size_t>(t.slot[k])];
    if (t.regime[k] == ApcRegime::kRollback) others -= sigma * w[j];
    const double own = t.regime[k] == ApcRegime::kPass ? w[j] : 0.0;
    out[j] = own - sigma * others;
  }
  return out;
}

}  // namespace tether
