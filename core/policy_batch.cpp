#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/policy_batch.hpp>

namespace tether {

namespace {

void require_same_length(const std::vector<int>& ids, Index n, const char* name) {
  require<ShapeError>(static_cast<Index>(ids.size()) == n, "TokenBatch::", name, " has ",
                      ids.size(), " entries; old_log_prob has ", n);
}

// Non-decreasing, and every id one contiguous run; `parent` (may be null) must stay constant
// inside each run so that the level nests inside the coarser one.
void require_nested_runs(const std::vector<int>& ids, const std::vector<int>* parent,
                         const char* name, const char* parent_name) {
  for (std::size_t i = 1; i < ids.size(); ++i) {
    require(ids[i] >= ids[i - 1], "TokenBatch::", name, " must be sorted (non-decreasing): entry ",
            i, " is ", ids[i], " after ", ids[i - 1]);
    if (parent != nullptr && ids[i] == ids[i - 1]) {
      require((*parent)[i] == (*parent)[i - 1], "TokenBatch::", name, " ", ids[i], " spans two ",
              parent_name, " ids (", (*parent)[i - 1], " and ", (*parent)[i], ") at entry ", i,
              ": each ", name, " must lie inside one ", parent_name);
    }
  }
}

// Whether every per-token layout rule holds, as one branch-free pass (it vectorises, and runs
// on OpenMP threads for large batches); validate() then names a broken rule only when one is.
// Lengths are checked before.
bool every_token_rule_holds(const TokenBatch& b) {
  const Index n = b.size();
  const int *domain = b.domain.data(), *group = b.group.data(), *traj = b.trajectory.data(),
            *position = b.position.data(), *state = b.state.data(), *action = b.action.data();
  const double *old_log_prob = b.old_log_prob.data(), *advantage = b.advantage.data();
  constexpr double kMax = std::numeric_limits<double>::max();
  auto finite_and_nonpositive = [](double x) { return (x <= 0.0) & (x >= -kMax); };  // NaN: false
  unsigned ok = (position[0] == 0) & (state[0] >= 0) & (action[0] >= 0) &
                finite_and_nonpositive(old_log_prob[0]) & (advantage[0] <= kMax) &
                (advantage[0] >= -kMax);
  [[maybe_unused]] const bool parallel = n >= kParallelTokens;
#pragma omp parallel for simd reduction(& : ok) if (parallel)
  for (Index i = 1; i < n; ++i) {
    // Bitwise & and | (no short circuit: no branch).
    const bool same_domain = domain[i] == domain[i - 1], same_group = group[i] == group[i - 1];
    const bool starts = traj[i] != traj[i - 1];
    unsigned here = domain[i] >= domain[i - 1];
    here &= (group[i] >= group[i - 1]) & (!same_group | same_domain);
    here &= (traj[i] >= traj[i - 1]) & (starts | same_group);
    here &= position[i] == (starts ? 0 : position[i - 1] + 1);
    here &= (state[i] >= 0) & (action[i] >= 0);
    here &= finite_and_nonpositive(old_log_prob[i]);
    here &= (advantage[i] <= kMax) & (advantage[i] >= -kMax);
    ok &= here;
  }
  return ok != 0;
}

}  // namespace

std::vector<Index> segment_offsets(const std::vector<int>& ids) {
  std::vector<Index> offsets;
  offsets.push_back(0);
  for (std::size_t i = 1; i < ids.size(); ++i)
    if (ids[i] != ids[i - 1]) offsets.push_back(static_cast<Index>(i));
  if (!ids.empty()) offsets.push_back(static_cast<Index>(ids.size()));
  return offsets;
}

void TokenBatch::validate() const {
  const Index n = old_log_prob.size();
  require(n >= 1, "TokenBatch is empty: at least one token is required");
  require<ShapeError>(advantage.size() == n, "TokenBatch::advantage has ", advantage.size(),
                      " entries; old_log_prob has ", n);
  require_same_length(domain, n, "domain");
  require_same_length(group, n, "group");
  require_same_length(trajectory, n, "trajectory");
  require_same_length(position, n, "position");
  require_same_length(state, n, "state");
  require_same_length(action, n, "action");

  if (every_token_rule_holds(*this)) return;
  // A rule is broken: the checks below find the first one and name it.
  require_nested_runs(domain, nullptr, "domain", "");
  require_nested_runs(group, &domain, "group", "domain");
  require_nested_runs(trajectory, &group, "trajectory", "group");
  for (Index i = 0; i < n; ++i) {
    const auto u = static_cast<std::size_t>(i);
    const bool starts = (i == 0) || trajectory[u] != trajectory[u - 1];
    const int expected = starts ? 0 : position[u - 1] + 1;
    require(position[u] == expected, "TokenBatch::position at entry ", i, " is ", position[u],
            "; positions within a trajectory must run 0, 1, 2, ... (expected ", expected, ")");
    require(state[u] >= 0, "TokenBatch::state at entry ", i, " is ", state[u],
            "; state ids must be >= 0");
    require(action[u] >= 0, "TokenBatch::action at entry ", i, " is ", action[u],
            "; action ids must be >= 0");
    require(std::isfinite(old_log_prob[i]) && old_log_prob[i] <= 0.0,
            "TokenBatch::old_log_prob at entry ", i, " is ", old_log_prob[i],
            "; it must be finite and <= 0 (a probability in (0, 1])");
    require(std::isfinite(advantage[i]), "TokenBatch::advantage at entry ", i, " is ", advantage[i],
            "; advantages must be finite");
  }
}

}  // namespace tether
