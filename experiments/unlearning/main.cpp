// unlearning: the experiment of specs/projection.md section 1 on a small classifier. Seeded
// Gaussian clusters (10 classes), softmax regression trained on all data, then one class is
// forgotten. Methods: GA, gradient difference (weighted sum, w = 1), NPO, SimNPO, BLUR, OFMU, and
// GA / GradDiff / NPO / SimNPO / BLUR with GU (GuSolver projecting the step onto the null space
// of the recent retain gradients). The gold standard is retrain_without_forget. All first-order
// methods share one step rule (Adam, no decay) and one step budget; OFMU uses its own two-loop
// steps with the same outer-iteration budget. See README.md beside this file.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/step_rule.hpp>
#include <tether/experiments/support/report.hpp>
#include <tether/problems/classifiers.hpp>
#include <tether/problems/unlearning.hpp>
#include <tether/solvers/blur.hpp>
#include <tether/solvers/gu.hpp>
#include <tether/solvers/ofmu.hpp>
#include <vector>

namespace {

using namespace tether;
using namespace tether::problems;
namespace ex = tether::experiments;
using Clock = std::chrono::steady_clock;

struct Settings {
  Index samples = 2000;
  Index features = 20;
  Index classes = 10;
  double separation = 3.0;
  double noise = 1.0;
  double l2 = 1e-3;
  int forget_class = 0;
  int steps = 200;
  double learning_rate = 0.01;  // Adam, no decay, for every first-order method
  double graddiff_weight = 1.0;
  double npo_beta = 1.0;
  double simnpo_beta = 1.0;
  double simnpo_gamma = 0.0;
  double blur_gamma = 1.0;
  int gu_window = 8;
  int curve_points = 40;
  int ofmu_inner_steps = 1;
  double ofmu_eta_in = 0.05;
  double ofmu_eta_out = 0.01;
  double ofmu_rho_max = 1.0;
};

/// Forget and retain cross-entropy along a run, sampled each time the solver asks for the
/// forget gradient (once per iteration for GA-type solvers; OFMU asks more often).
struct Curve {
  std::vector<int> call;
  std::vector<double> forget_ce, retain_ce;
};

struct Run {
  Vector theta;
  double seconds = 0.0;
  Curve curve;
};

/// Objective of `problem` with the forget gradient instrumented (every `stride` calls the forget
/// and retain cross-entropy are recorded); `negate_forget` flips l_f (OFMU maximises l_f).
template <class P>
ForgetRetainObjective instrument(const P& problem, Curve& curve, int stride, bool negate_forget) {
  ForgetRetainObjective o = make_forget_retain_objective(problem);
  auto inner_gradient = o.forget_gradient;
  auto counter = std::make_shared<int>(0);
  o.forget_gradient = [inner_gradient, counter, &problem, &curve, stride, negate_forget](
                          const Vector& t, Vector& g) {
    if (*counter % stride == 0) {
      curve.call.push_back(*counter);
      curve.forget_ce.push_back(problem.model().cross_entropy(t, problem.split().forget));
      curve.retain_ce.push_back(problem.model().cross_entropy(t, problem.split().retain));
    }
    ++*counter;
    inner_gradient(t, g);
    if (negate_forget) g = -g;
  };
  if (negate_forget) {
    auto loss = o.forget_loss;
    o.forget_loss = [loss](const Vector& t) { return -loss(t); };
    auto hvp = o.forget_hvp;
    o.forget_hvp = [hvp](const Vector& t, const Vector& v, Vector& out) {
      hvp(t, v, out);
      out = -out;
    };
  }
  return o;
}

enum class Kind { kDescent, kGraddiff, kBlur, kGu, kGuGraddiff, kGuBlur, kOfmu };

template <class P>
Run run_method(const P& problem, const Vector& start, Kind kind, const Settings& s) {
  Run run;
  const int stride = std::max(1, s.steps / s.curve_points);
  const auto t0 = Clock::now();
  const StepRuleOptions rule = AdamOptions{.learning_rate = s.learning_rate};
  if (kind == Kind::kOfmu) {
    ForgetRetainObjective o = instrument(problem, run.curve, 2 * stride, true);
    OfmuOptions opt;
    opt.beta = 0.0;  // Phi = l_f: exact Hessian-vector products
    opt.inner_steps = s.ofmu_inner_steps;
    opt.eta_in = s.ofmu_eta_in;
    opt.eta_out = s.ofmu_eta_out;
    opt.rho_max = s.ofmu_rho_max;
    opt.max_iterations = s.steps;
    opt.tolerance = 0.0;
    run.theta = OfmuSolver(opt).minimize(o, start).theta;
  } else if (kind == Kind::kGu || kind == Kind::kGuGraddiff || kind == Kind::kGuBlur) {
    ForgetRetainObjective o = instrument(problem, run.curve, stride, false);
    if (kind == Kind::kGuGraddiff) {
      // GU's base direction is the gradient of the GradDiff objective l_f + w l_r.
      const double w = s.graddiff_weight;
      auto loss = o.forget_loss;
      auto grad = o.forget_gradient;
      auto retain_loss = o.retain_loss;
      auto retain_grad = o.retain_gradient;
      o.forget_loss = [=](const Vector& t) { return loss(t) + w * retain_loss(t); };
      o.forget_gradient = [=](const Vector& t, Vector& g) {
        grad(t, g);
        Vector gr(g.size());
        retain_grad(t, gr);
        g += w * gr;
      };
    }
    GuOptions opt;
    opt.projection.window = s.gu_window;
    opt.base = kind == Kind::kGuBlur ? GuOptions::Base::kBlur : GuOptions::Base::kForgetGradient;
    opt.blur_gamma = s.blur_gamma;
    opt.step = rule;
    opt.max_iterations = s.steps;
    opt.tolerance = 0.0;
    run.theta = GuSolver(opt).minimize(o, start).theta;
  } else {
    ForgetRetainObjective o = instrument(problem, run.curve, stride, false);
    BlurOptions opt;
    opt.direction =
        kind == Kind::kBlur ? BlurOptions::Direction::kBlur : BlurOptions::Direction::kWeightedSum;
    opt.weight = kind == Kind::kGraddiff ? s.graddiff_weight : 0.0;  // 0: descend l_f alone
    opt.gamma = s.blur_gamma;
    opt.step = rule;
    opt.max_iterations = s.steps;
    opt.tolerance = 0.0;
    run.theta = BlurSolver(opt).minimize(o, start).theta;
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return run;
}

void draw_plot(const std::string& out) {
#ifdef TETHER_UNLEARNING_PLOT_SCRIPT
  ex::draw_plot(TETHER_UNLEARNING_PLOT_SCRIPT, out, "unlearning.png", std::cout);
#else
  std::cout << "plot: not drawn (plot script location unknown)\n";
  (void)out;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  ex::CommonArgs args;
  CLI::App app{"Unlearning one class of a softmax regression: GA/GD/NPO/SimNPO/BLUR/OFMU +- GU"};
  ex::add_common_options(app, args);
  Settings s;
  bool validation = false;
  app.add_flag("--validation", validation,
               "run the validation seed 0 only (where the settings were chosen)");
  app.add_option("--ofmu-inner", s.ofmu_inner_steps, "OFMU inner ascent steps");
  app.add_option("--ofmu-eta-in", s.ofmu_eta_in, "OFMU inner step");
  app.add_option("--ofmu-eta-out", s.ofmu_eta_out, "OFMU outer step");
  app.add_option("--ofmu-rho-max", s.ofmu_rho_max, "OFMU penalty cap");
  app.add_option("--lr", s.learning_rate, "Adam learning rate of the first-order methods");
  CLI11_PARSE(app, argc, argv);
  const int seeds = validation ? 1 : ex::resolve_seeds(args, /*full=*/10, /*quick=*/3);
  const int first_seed = validation ? 0 : 1;
  if (args.quick) s.samples = 1000;

  const std::vector<std::string> methods = {
      "retrained", "original", "GA",        "GA+GU", "GradDiff", "GradDiff+GU", "NPO",
      "NPO+GU",    "SimNPO",   "SimNPO+GU", "BLUR",  "BLUR+GU",  "OFMU"};
  std::map<std::string, std::map<std::string, std::vector<double>>> stats;
  ex::ResultsWriter results;

  for (int seed = first_seed; seed < first_seed + seeds; ++seed) {
    const auto data = make_gaussian_clusters({.samples = s.samples,
                                              .features = s.features,
                                              .classes = s.classes,
                                              .separation = s.separation,
                                              .noise = s.noise,
                                              .seed = static_cast<std::uint64_t>(1000 + seed)});
    SoftmaxRegression model(s.features, s.classes, s.l2);
    const Vector init = model.initial_parameters(static_cast<std::uint64_t>(seed));
    const auto t_fit = Clock::now();
    const Vector original = fit_classifier(model, data, init).theta;
    const double fit_seconds = std::chrono::duration<double>(Clock::now() - t_fit).count();
    const ForgetRetainSplit split = split_forget_class(data, s.forget_class);
    const auto t_gold = Clock::now();
    const Vector gold = retrain_without_forget(model, split, init).theta;
    const double gold_seconds = std::chrono::duration<double>(Clock::now() - t_gold).count();

    const auto ga = make_gradient_ascent(model, split);
    const auto npo = make_npo(model, split, original, s.npo_beta);
    const auto simnpo = make_simnpo(model, split, s.simnpo_beta, s.simnpo_gamma);
    const double retain0 = model.cross_entropy(original, split.retain);

    auto record = [&](const std::string& method, const Vector& theta, double seconds, int steps,
                      const Curve* curve) {
      const UnlearningMetrics m = evaluate_unlearning(model, split, theta, gold);
      const double n_f = static_cast<double>(split.forget.size());
      const double n_r = static_cast<double>(split.retain.size());
      const double kl = (n_f * m.forget_output_kl + n_r * m.retain_output_kl) / (n_f + n_r);
      const double per_step = steps > 0 ? (m.retain_loss - retain0) / steps : 0.0;
      auto& st = stats[method];
      st["forget_accuracy"].push_back(m.forget_accuracy);
      st["retain_accuracy"].push_back(m.retain_accuracy);
      st["forget_loss"].push_back(m.forget_loss);
      st["retain_loss"].push_back(m.retain_loss);
      st["retain_increase_per_step"].push_back(per_step);
      st["kl_to_retrained"].push_back(kl);
      st["distance_to_retrained"].push_back(m.parameter_distance);
      st["seconds"].push_back(seconds);
      results.add({{"kind", "final"},
                   {"method", method},
                   {"seed", seed},
                   {"forget_accuracy", m.forget_accuracy},
                   {"retain_accuracy", m.retain_accuracy},
                   {"forget_loss", m.forget_loss},
                   {"retain_loss", m.retain_loss},
                   {"retain_loss_increase_per_step", per_step},
                   {"kl_to_retrained", kl},
                   {"kl_to_retrained_forget", m.forget_output_kl},
                   {"kl_to_retrained_retain", m.retain_output_kl},
                   {"distance_to_retrained", m.parameter_distance},
                   {"seconds", seconds}});
      if (curve != nullptr) {
        for (std::size_t i = 0; i < curve->call.size(); ++i)
          results.add({{"kind", "curve"},
                       {"method", method},
                       {"seed", seed},
                       {"call", curve->call[i]},
                       {"forget_loss", curve->forget_ce[i]},
                       {"retain_loss", curve->retain_ce[i]}});
      }
    };

    record("retrained", gold, gold_seconds, 0, nullptr);
    record("original", original, fit_seconds, 0, nullptr);
    auto go = [&](const std::string& name, const auto& problem, Kind kind) {
      const Run r = run_method(problem, original, kind, s);
      record(name, r.theta, r.seconds, s.steps, &r.curve);
    };
    go("GA", ga, Kind::kDescent);
    go("GA+GU", ga, Kind::kGu);
    go("GradDiff", ga, Kind::kGraddiff);
    go("NPO", npo, Kind::kDescent);
    go("NPO+GU", npo, Kind::kGu);
    go("SimNPO", simnpo, Kind::kDescent);
    go("SimNPO+GU", simnpo, Kind::kGu);
    go("BLUR", ga, Kind::kBlur);
    go("BLUR+GU", ga, Kind::kGuBlur);
    go("OFMU", ga, Kind::kOfmu);
    go("GradDiff+GU", ga, Kind::kGuGraddiff);
  }

  std::cout << "unlearning: softmax regression, " << s.classes
            << " Gaussian classes, n = " << s.samples << ", d = " << s.features << ", forget class "
            << s.forget_class << ", " << s.steps << " Adam steps (lr " << s.learning_rate << "), "
            << seeds << " seeds; mean [95% Student-t interval]\n";
  ex::Table table({"method", "forget acc", "retain acc", "forget CE", "retain CE", "dCE_r/step",
                   "KL to retrained", "|theta-gold|", "seconds"});
  for (const auto& method : methods) {
    auto& st = stats[method];
    auto cell = [&](const std::string& key, int precision) {
      return ex::format_interval(ex::student_t_interval(st[key]), precision);
    };
    table.add_row({method, cell("forget_accuracy", 3), cell("retain_accuracy", 3),
                   cell("forget_loss", 3), cell("retain_loss", 3),
                   cell("retain_increase_per_step", 6), cell("kl_to_retrained", 4),
                   cell("distance_to_retrained", 3), cell("seconds", 3)});
  }
  table.print(std::cout);
  const auto path = results.write(args.out);
  std::cout << "results: " << path.string() << "\n";
  draw_plot(args.out);
  return 0;
}
