// A seeded TokenBatch for the gate tests: domains x groups_per_domain x trajectories_per_group,
// each trajectory of a length drawn in [min_len, max_len]; old probabilities in (0.05, 0.5), so
// new = old + x stays a log-probability for log-ratios x <= 0.69.
//   states = 0: every token its own state; states > 0: each token's state drawn from
//               0..states-1 (so APC-Obj's states hold several tokens)
//   advantage_per_token: an independent N(0, 1) per token; otherwise one per trajectory,
//               repeated on its tokens (as GRPO / GSPO assume)
#pragma once

#include <algorithm>

#include <cmath>
#include <cstdint>
#include <tether/core/policy_batch.hpp>
#include <tether/core/rng.hpp>
#include <vector>

namespace tether::testing {

inline TokenBatch make_test_batch(Rng& rng, int domains, int groups_per_domain,
                                  int trajectories_per_group, int min_len, int max_len, int states,
                                  bool advantage_per_token) {
  TokenBatch b;
  std::vector<double> trajectory_advantage;
  int group = 0, trajectory = 0, next_state = 0;
  for (int d = 0; d < domains; ++d) {
    for (int g = 0; g < groups_per_domain; ++g, ++group) {
      for (int t = 0; t < trajectories_per_group; ++t, ++trajectory) {
        const int len = min_len + static_cast<int>(
                                      rng.index(static_cast<std::uint64_t>(max_len - min_len + 1)));
        const double a = rng.normal();  // drawn in both modes: one random stream for both
        for (int p = 0; p < len; ++p) {
          b.domain.push_back(d);
          b.group.push_back(group);
          b.trajectory.push_back(trajectory);
          b.position.push_back(p);
          b.state.push_back(states > 0
                                ? static_cast<int>(rng.index(static_cast<std::uint64_t>(states)))
                                : next_state++);
          b.action.push_back(0);
          trajectory_advantage.push_back(a);
        }
      }
    }
  }
  const Index n = static_cast<Index>(b.domain.size());
  b.old_log_prob.resize(n);
  b.advantage.resize(n);
  for (Index i = 0; i < n; ++i) {
    b.old_log_prob[i] = std::log(rng.uniform(0.05, 0.5));
    b.advantage[i] =
        advantage_per_token ? rng.normal() : trajectory_advantage[static_cast<std::size_t>(i)];
  }
  return b;
}

/// Log-ratios of mixed sizes: per trajectory a scale from {0.01, 0.05, 0.1, 0.2, 0.35} times
/// N(0, 1), clamped to +-0.6 (a few trajectories near r = 1, others far: every regime occurs).
inline Vector mixed_log_ratios(Rng& rng, const TokenBatch& b) {
  Vector x(b.size());
  double scale = 0.0;
  for (Index i = 0; i < b.size(); ++i) {
    if (i == 0 ||
        b.trajectory[static_cast<std::size_t>(i)] != b.trajectory[static_cast<std::size_t>(i) - 1])
      scale = std::vector<double>{0.01, 0.05, 0.1, 0.2, 0.35}[rng.index(5)];
    x[i] = std::clamp(scale * rng.normal(), -0.6, 0.6);
  }
  return x;
}

}  // namespace tether::testing
