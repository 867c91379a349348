// policy_gating: the trust-region gates of specs/fiberpo.md (PPO-clip, GRPO, GSPO, APC-Obj,
// FiberPO, FiberPO-Domain, and the ungated surrogate as a reference) trained by one
// PolicyGradientSolver on seeded tabular tasks whose optimal policies are known (a contextual
// bandit with many arms, a short sequence task with per-token rewards). The paper
// ("Fibration Policy Optimization", arXiv 2603.08239) has no experiments; this comparison is
// new. Fairness: every method gets the same task instances, the same sampling budget (prompts
// x group size per update), the same step rule and epochs, the same seeds (common random
// numbers), and a grid of four settings tuned on a validation seed that no reported run uses.
// See README.md beside this file.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <tether/core/policy_batch.hpp>
#include <tether/experiments/support/report.hpp>
#include <tether/problems/policy_envs.hpp>
#include <tether/solvers/apc_obj.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <tether/solvers/policy_gradient.hpp>
#include <tether/solvers/ratio_gates.hpp>
#include <vector>

namespace {

using namespace tether;
namespace ex = tether::experiments;
using Clock = std::chrono::steady_clock;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// ---- tasks -------------------------------------------------------------------------------------

struct TaskSetting {
  std::string name;
  std::function<std::unique_ptr<problems::EpisodicTask>(std::uint64_t seed)> make;
  int prompts = 16;
  int group_size = 8;
};

std::vector<TaskSetting> task_settings() {
  return {
      {"bandit",
       [](std::uint64_t seed) -> std::unique_ptr<problems::EpisodicTask> {
         return std::make_unique<problems::ContextualBandit>(
             problems::ContextualBanditOptions{.contexts = 64,
                                               .domains = 4,
                                               .arms = 32,
                                               .gap = 0.2,
                                               .noise = problems::RewardNoise::kBernoulli,
                                               .seed = seed});
       },
       16, 8},
      {"sequence",
       [](std::uint64_t seed) -> std::unique_ptr<problems::EpisodicTask> {
         return std::make_unique<problems::SequenceTask>(
             problems::SequenceTaskOptions{.contexts = 16,
                                           .domains = 2,
                                           .horizon = 4,
                                           .vocabulary = 4,
                                           .noise = problems::RewardNoise::kGaussian,
                                           .noise_std = 0.1,
                                           .seed = seed});
       },
       8, 8},
  };
}

// ---- methods and their tuning grids
// --------------------------------------------------------------

struct MethodSetting {
  std::string label;  ///< the setting, as printed
  std::function<PolicyResult(const PolicyGradientSolver&, const problems::EpisodicTask&,
                             const problems::TabularSoftmaxPolicy&, RolloutOptions)>
      run;
};

struct Method {
  std::string name;
  std::vector<MethodSetting> grid;
};

template <class Gate>
MethodSetting setting(std::string label, Gate gate, bool grpo_advantages_on = false) {
  return {
      std::move(label), [gate, grpo_advantages_on](
                            const PolicyGradientSolver& solver, const problems::EpisodicTask& task,
                            const problems::TabularSoftmaxPolicy& policy, RolloutOptions rollout) {
        if (grpo_advantages_on)
          rollout.postprocess = [](problems::Rollouts& r) {
            r.batch.advantage = grpo_advantages(r.batch, r.trajectory_return);
          };
        return solver.maximize(task, policy, gate, rollout, Vector::Zero(policy.num_parameters()));
      }};
}

std::string fixed(double x, int digits) { return ex::format_fixed(x, digits); }

std::vector<Method> methods() {
  std::vector<Method> out;
  out.push_back({"ungated", {setting("-", UngatedGate{})}});
  Method ppo{"ppo_clip", {}}, grpo{"grpo", {}}, gspo{"gspo", {}}, apc{"apc_obj", {}};
  for (const double eps : {0.05, 0.1, 0.2, 0.3}) {
    ppo.grid.push_back(setting("eps " + fixed(eps, 2), PpoClipGate({.eps = eps})));
    grpo.grid.push_back(setting("eps " + fixed(eps, 2), GrpoGate({.eps = eps}), true));
  }
  for (const double eps : {4e-4, 4e-3, 4e-2, 0.2})
    gspo.grid.push_back(setting("eps " + fixed(eps, 4), GspoGate({.eps = eps})));
  for (const double delta : {0.01, 0.03, 0.1, 0.3})
    apc.grid.push_back(setting("delta " + fixed(delta, 2), ApcObjGate({.delta = delta})));
  Method fiber{"fiberpo", {}}, domain{"fiberpo_domain", {}};
  // The paper's illustrative (C+, C-, eps) and one wider setting for the toys' larger steps.
  struct Budget {
    double positive, negative, eps;
  };
  for (const Budget b : {Budget{0.12, 0.05, 0.04}, Budget{0.15, 0.09, 0.025},
                         Budget{0.20, 0.10, 0.04}, Budget{0.40, 0.20, 0.10}}) {
    const std::string label =
        "C+ " + fixed(b.positive, 2) + " C- " + fixed(b.negative, 2) + " eps " + fixed(b.eps, 3);
    fiber.grid.push_back(setting(
        label,
        FiberPoGate({.budget_positive = b.positive, .budget_negative = b.negative, .eps = b.eps})));
    GatingHierarchyOptions options;  // domain > group > trajectory > token
    options.budget_positive = b.positive;
    options.budget_negative = b.negative;
    options.eps = b.eps;
    domain.grid.push_back(setting(label, GatingHierarchyGate(options)));
  }
  for (Method* m : {&ppo, &grpo, &gspo, &apc, &fiber, &domain}) out.push_back(std::move(*m));
  return out;
}

// ---- one run and its summary
// ---------------------------------------------------------------------

struct Summary {
  double final_return = kNan, normalised_return = kNan, tail_return = kNan, distance = kNan;
  double path_distance = kNan;
  double mean_tv = kNan, max_tv = kNan, mean_kl = kNan;
  RegimeFractions tokens, trajectories;  // means over updates
  double seconds = kNan;
  bool finished = false;
};

Summary summarise(const PolicyResult& r, const problems::EpisodicTask& task,
                  double uniform_return) {
  Summary s;
  s.finished = r.status == StopReason::kIterationLimit || r.status == StopReason::kConverged;
  s.final_return = r.expected_return;
  s.normalised_return =
      (r.expected_return - uniform_return) / (task.optimal_return() - uniform_return);
  s.distance = r.distance_to_optimal;
  s.path_distance = r.optimal_path_distance;
  s.seconds = r.seconds;
  const auto& u = r.updates;
  if (u.empty()) return s;
  const std::size_t tail = std::max<std::size_t>(1, u.size() / 5);
  double tail_sum = 0.0, tv = 0.0, kl = 0.0, max_tv = 0.0;
  RegimeFractions tok{0, 0, 0}, trj{0, 0, 0};
  for (std::size_t k = 0; k < u.size(); ++k) {
    if (k + tail >= u.size()) tail_sum += u[k].expected_return;
    tv += u[k].tv;
    kl += u[k].kl;
    max_tv = std::max(max_tv, u[k].tv);
    tok.pass_through += u[k].tokens.pass_through;
    tok.rollback += u[k].tokens.rollback;
    tok.zeroed += u[k].tokens.zeroed;
    trj.pass_through += u[k].trajectories.pass_through;
    trj.rollback += u[k].trajectories.rollback;
    trj.zeroed += u[k].trajectories.zeroed;
  }
  const double n = static_cast<double>(u.size());
  s.tail_return = tail_sum / static_cast<double>(tail);
  s.mean_tv = tv / n;
  s.max_tv = max_tv;
  s.mean_kl = kl / n;
  s.tokens = {tok.pass_through / n, tok.rollback / n, tok.zeroed / n};
  s.trajectories = {trj.pass_through / n, trj.rollback / n, trj.zeroed / n};
  return s;
}

double uniform_policy_return(const problems::EpisodicTask& task) {
  const Matrix uniform = Matrix::Constant(task.num_states(), task.num_actions(),
                                          1.0 / static_cast<double>(task.num_actions()));
  return task.expected_return(uniform);
}

}  // namespace

int main(int argc, char** argv) {
  ex::CommonArgs args;
  int updates = 0, epochs = 8;
  double learning_rate = 0.3;
  CLI::App app{
      "Trust-region gates (PPO-clip, GRPO, GSPO, APC-Obj, FiberPO, FiberPO-Domain) on "
      "tabular tasks with known optimal policies"};
  ex::add_common_options(app, args);
  app.add_option("--updates", updates, "policy updates per run (default 200; --quick 100)")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", learning_rate, "Adam learning rate of every method (default 0.3)")
      ->check(CLI::PositiveNumber);
  app.add_option("--epochs", epochs, "full-batch passes per update (default 8)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  const int seeds = ex::resolve_seeds(args, 10, 3);
  if (updates == 0) updates = args.quick ? 100 : 200;
  const auto wall_start = Clock::now();

  const PolicyGradientSolver solver({.step = AdamOptions{.learning_rate = learning_rate},
                                     .updates = updates,
                                     .epochs = epochs,
                                     .seed = 0});
  ex::ResultsWriter results;
  const std::vector<Method> all = methods();
  std::cout << "policy_gating: " << updates << " updates of Adam (lr " << learning_rate << ", "
            << epochs << " epochs) per run, " << seeds
            << " held-out seeds, settings tuned on seed 0\n";

  for (const TaskSetting& ts : task_settings()) {
    const RolloutOptions rollout{.prompts = ts.prompts, .group_size = ts.group_size};
    // ---- tuning on the validation seed (task seed 1000, sampling seed 0) ----
    const auto validation_task = ts.make(1000);
    const problems::TabularSoftmaxPolicy validation_policy(*validation_task);
    const double validation_uniform = uniform_policy_return(*validation_task);
    std::vector<std::size_t> chosen(all.size(), 0);
    ex::Table tuning({"method", "setting", "tail return (validation)", "mean TV", "chosen"});
    for (std::size_t m = 0; m < all.size(); ++m) {
      double best = -std::numeric_limits<double>::infinity();
      std::vector<Summary> tried;
      for (std::size_t g = 0; g < all[m].grid.size(); ++g) {
        const PolicyResult r =
            all[m].grid[g].run(solver, *validation_task, validation_policy, rollout);
        tried.push_back(summarise(r, *validation_task, validation_uniform));
        // Rule: the largest mean exact return over the last 20% of updates of a finished run.
        if (tried.back().finished && tried.back().tail_return > best) {
          best = tried.back().tail_return;
          chosen[m] = g;
        }
      }
      for (std::size_t g = 0; g < all[m].grid.size(); ++g) {
        tuning.add_row({all[m].name, all[m].grid[g].label, fixed(tried[g].tail_return, 4),
                        fixed(tried[g].mean_tv, 4), g == chosen[m] ? "*" : ""});
        results.add({{"kind", "tuning"},
                     {"task", ts.name},
                     {"method", all[m].name},
                     {"setting", all[m].grid[g].label},
                     {"seed", 0},
                     {"tail_return", tried[g].tail_return},
                     {"mean_tv", tried[g].mean_tv},
                     {"chosen", g == chosen[m]}});
      }
    }
    std::cout << "\n" << ts.name << ": tuning on the validation seed\n";
    tuning.print(std::cout);

    // ---- held-out seeds ----
    ex::Table table({"method", "setting", "normalised return", "distance to optimal",
                     "distance on optimal paths", "mean TV", "mean KL (k3)",
                     "tokens pass/rollback/zeroed", "traj. pass/rollback/zeroed", "seconds"});
    for (std::size_t m = 0; m < all.size(); ++m) {
      const MethodSetting& chosen_setting = all[m].grid[chosen[m]];
      std::vector<double> ret, dist, path, tv, kl, tp, tr, tz, jp, jr, jz, secs;
      for (int seed = 1; seed <= seeds; ++seed) {
        const auto task = ts.make(1000 + static_cast<std::uint64_t>(seed));
        const problems::TabularSoftmaxPolicy policy(*task);
        const PolicyGradientSolver seeded({.step = AdamOptions{.learning_rate = learning_rate},
                                           .updates = updates,
                                           .epochs = epochs,
                                           .seed = static_cast<std::uint64_t>(seed)});
        const PolicyResult r = chosen_setting.run(seeded, *task, policy, rollout);
        const double uniform = uniform_policy_return(*task);
        const Summary s = summarise(r, *task, uniform);
        ret.push_back(s.normalised_return);
        dist.push_back(s.distance);
        path.push_back(s.path_distance);
        tv.push_back(s.mean_tv);
        kl.push_back(s.mean_kl);
        tp.push_back(s.tokens.pass_through);
        tr.push_back(s.tokens.rollback);
        tz.push_back(s.tokens.zeroed);
        jp.push_back(s.trajectories.pass_through);
        jr.push_back(s.trajectories.rollback);
        jz.push_back(s.trajectories.zeroed);
        secs.push_back(s.seconds);
        results.add({{"kind", "final"},
                     {"task", ts.name},
                     {"method", all[m].name},
                     {"setting", chosen_setting.label},
                     {"seed", seed},
                     {"status", to_string(r.status)},
                     {"expected_return", s.final_return},
                     {"optimal_return", task->optimal_return()},
                     {"normalised_return", s.normalised_return},
                     {"distance_to_optimal", s.distance},
                     {"mean_tv", s.mean_tv},
                     {"max_tv", s.max_tv},
                     {"mean_kl", s.mean_kl},
                     {"tokens_pass_through", s.tokens.pass_through},
                     {"tokens_rollback", s.tokens.rollback},
                     {"tokens_zeroed", s.tokens.zeroed},
                     {"trajectories_pass_through", s.trajectories.pass_through},
                     {"trajectories_rollback", s.trajectories.rollback},
                     {"trajectories_zeroed", s.trajectories.zeroed},
                     {"seconds", s.seconds}});
        for (std::size_t k = 0; k < r.updates.size(); k += 5) {
          const PolicyUpdateRecord& u = r.updates[k];
          results.add({{"kind", "curve"},
                       {"task", ts.name},
                       {"method", all[m].name},
                       {"seed", seed},
                       {"update", u.update},
                       {"normalised_return",
                        (u.expected_return - uniform) / (task->optimal_return() - uniform)},
                       {"distance_to_optimal", u.distance_to_optimal},
                       {"tv", u.tv},
                       {"kl", u.kl},
                       {"tokens_pass_through", u.tokens.pass_through},
                       {"tokens_zeroed", u.tokens.zeroed}});
        }
      }
      const auto ci = [](const std::vector<double>& xs, int digits) {
        return ex::format_interval(ex::student_t_interval(xs), digits);
      };
      const auto mean = [](const std::vector<double>& xs) {
        double s = 0.0;
        for (const double x : xs) s += x;
        return s / static_cast<double>(xs.size());
      };
      table.add_row({all[m].name, chosen_setting.label, ci(ret, 3), ci(dist, 3), ci(path, 3),
                     ci(tv, 4), ci(kl, 5),
                     fixed(mean(tp), 2) + "/" + fixed(mean(tr), 2) + "/" + fixed(mean(tz), 2),
                     fixed(mean(jp), 2) + "/" + fixed(mean(jr), 2) + "/" + fixed(mean(jz), 2),
                     fixed(mean(secs), 3)});
    }
    std::cout << "\n"
              << ts.name << ": held-out seeds 1.." << seeds << ", mean [95% Student-t interval]\n";
    table.print(std::cout);
  }

  const auto path = results.write(args.out);
  std::cout << "\nwrote " << path.string() << " (" << results.size() << " rows) in "
            << fixed(std::chrono::duration<double>(Clock::now() - wall_start).count(), 1) << " s\n";
  ex::draw_plot(TETHER_POLICY_GATING_PLOT_SCRIPT, args.out, "policy_gating.png", std::cout);
  return 0;
}
