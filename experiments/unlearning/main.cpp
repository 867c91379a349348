// unlearning: the experiment of specs/projection.md section 1 on small classifiers. Seeded
// Gaussian clusters (10 classes); a softmax regression and a one-hidden-layer MLP trained on all
// data; then either one class or a seeded random 10% subset of the training data is forgotten.
// Methods: GA, gradient difference (weighted sum), NPO, SimNPO, BLUR, OFMU, and GA / GradDiff /
// NPO / SimNPO / BLUR with GU (GuSolver projecting the step onto the null space of the recent
// retain gradients). The gold standard is retrain_without_forget. All first-order methods share
// one step rule (Adam, no decay) and one step budget; OFMU uses its own two-loop steps with the
// same outer-iteration budget. Each method's hyperparameters were chosen per (model, forget set)
// on the validation seed 0 (`--validation`, the grids in validation_grid()); chosen() holds
// the result. See README.md beside this file.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/step_rule.hpp>
#include <tether/experiments/support/report.hpp>
#include <tether/problems/classifiers.hpp>
#include <tether/problems/unlearning.hpp>
#include <tether/solvers/blur.hpp>
#include <tether/solvers/gu.hpp>
#include <tether/solvers/ofmu.hpp>
#include <thread>
#include <tuple>
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
  Index hidden = 32;  // MLP hidden units (tanh)
  int forget_class = 0;
  double forget_fraction = 0.1;  // random subset
  int steps = 200;
  int gu_window = 8;
  int curve_points = 40;
  int ofmu_inner_steps = 1;
  double ofmu_rho_max = 1.0;
  FitOptions fit;  // L-BFGS for the original and the retrained model
};

/// The hyperparameters of one method; each method reads only its own fields.
struct Hyper {
  double lr = 0.01;       // Adam learning rate (every method but OFMU)
  double weight = 1.0;    // GradDiff's w in l_f + w l_r
  double beta = 1.0;      // NPO / SimNPO beta
  double gamma = 0.0;     // SimNPO gamma, or BLUR's gamma
  double eta_in = 0.05;   // OFMU inner step
  double eta_out = 0.01;  // OFMU outer step
};

enum class Loss { kGa, kNpo, kSimNpo };
enum class Kind { kDescent, kGraddiff, kBlur, kGu, kGuGraddiff, kGuBlur, kOfmu };

struct MethodSpec {
  std::string name;
  Loss loss;
  Kind kind;
};

const std::vector<MethodSpec>& method_specs() {
  static const std::vector<MethodSpec> specs = {
      {"GA", Loss::kGa, Kind::kDescent},         {"GA+GU", Loss::kGa, Kind::kGu},
      {"GradDiff", Loss::kGa, Kind::kGraddiff},  {"GradDiff+GU", Loss::kGa, Kind::kGuGraddiff},
      {"NPO", Loss::kNpo, Kind::kDescent},       {"NPO+GU", Loss::kNpo, Kind::kGu},
      {"SimNPO", Loss::kSimNpo, Kind::kDescent}, {"SimNPO+GU", Loss::kSimNpo, Kind::kGu},
      {"BLUR", Loss::kGa, Kind::kBlur},          {"BLUR+GU", Loss::kGa, Kind::kGuBlur},
      {"OFMU", Loss::kGa, Kind::kOfmu}};
  return specs;
}

bool is_graddiff(Kind k) { return k == Kind::kGraddiff || k == Kind::kGuGraddiff; }
bool is_blur(Kind k) { return k == Kind::kBlur || k == Kind::kGuBlur; }

/// The setting as text, naming only the fields the method reads.
std::string describe(const MethodSpec& m, const Hyper& h) {
  std::ostringstream s;
  if (m.kind == Kind::kOfmu) {
    s << "eta_in " << h.eta_in << " eta_out " << h.eta_out;
    return s.str();
  }
  s << "lr " << h.lr;
  if (is_graddiff(m.kind)) s << " w " << h.weight;
  if (is_blur(m.kind)) s << " gamma " << h.gamma;
  if (m.loss == Loss::kNpo) s << " beta " << h.beta;
  if (m.loss == Loss::kSimNpo) s << " beta " << h.beta << " gamma " << h.gamma;
  return s.str();
}

bool is_gu(Kind k) { return k == Kind::kGu || k == Kind::kGuGraddiff || k == Kind::kGuBlur; }

/// The grid tried on the validation seed for one method (the same for every model and forget
/// set). A method with GU keeps the objective's hyperparameters chosen for its base method
/// (`base`: GA for GA+GU, ...) and re-tunes only the learning rate.
std::vector<Hyper> validation_grid(const MethodSpec& m, const Hyper& base) {
  std::vector<Hyper> grid;
  if (m.kind == Kind::kOfmu) {
    for (double eta_in : {0.02, 0.05, 0.1})
      for (double eta_out : {0.003, 0.01, 0.03})
        grid.push_back({.eta_in = eta_in, .eta_out = eta_out});
    return grid;
  }
  for (double lr : {1e-4, 3e-4, 0.001, 0.003, 0.01, 0.03}) {
    if (is_gu(m.kind)) {
      Hyper h = base;
      h.lr = lr;
      grid.push_back(h);
    } else if (is_graddiff(m.kind)) {
      for (double w : {0.5, 1.0, 2.0}) grid.push_back({.lr = lr, .weight = w});
    } else if (is_blur(m.kind)) {
      for (double g : {0.3, 1.0, 3.0}) grid.push_back({.lr = lr, .gamma = g});
    } else if (m.loss == Loss::kNpo) {
      for (double b : {0.3, 1.0, 3.0}) grid.push_back({.lr = lr, .beta = b});
    } else if (m.loss == Loss::kSimNpo) {
      for (double b : {0.3, 1.0, 3.0})
        for (double g : {0.0, 1.0}) grid.push_back({.lr = lr, .beta = b, .gamma = g});
    } else {
      grid.push_back({.lr = lr});
    }
  }
  return grid;
}

/// The settings chosen on the validation seed (`--validation`, rule in select()), per model,
/// forget set and method; pasted from the validation runs' "chosen" lines (validation.txt).
Hyper chosen(const std::string& model, const std::string& forget, const std::string& method) {
  static const std::map<std::tuple<std::string, std::string, std::string>, Hyper> table = {
      // CHOSEN-BEGIN
      {{"softmax", "class", "GA"},
       {.lr = 0.003, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "GA+GU"},
       {.lr = 0.003, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "GradDiff"},
       {.lr = 0.003, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "GradDiff+GU"},
       {.lr = 0.003, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "NPO"},
       {.lr = 0.003, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "NPO+GU"},
       {.lr = 0.01, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "SimNPO"},
       {.lr = 0.003, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "SimNPO+GU"},
       {.lr = 0.003, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "BLUR"},
       {.lr = 0.003, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "BLUR+GU"},
       {.lr = 0.01, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "class", "OFMU"},
       {.lr = 0.01, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.02, .eta_out = 0.003}},
      {{"softmax", "random", "GA"},
       {.lr = 0.0001, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "GA+GU"},
       {.lr = 0.0001, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "GradDiff"},
       {.lr = 0.0001, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "GradDiff+GU"},
       {.lr = 0.0001, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "NPO"},
       {.lr = 0.0001, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "NPO+GU"},
       {.lr = 0.0001, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "SimNPO"},
       {.lr = 0.0001, .weight = 1, .beta = 0.3, .gamma = 1, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "SimNPO+GU"},
       {.lr = 0.0001, .weight = 1, .beta = 0.3, .gamma = 1, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "BLUR"},
       {.lr = 0.0001, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "BLUR+GU"},
       {.lr = 0.0001, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"softmax", "random", "OFMU"},
       {.lr = 0.01, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.02, .eta_out = 0.03}},
      {{"mlp", "class", "GA"},
       {.lr = 0.0003, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "GA+GU"},
       {.lr = 0.001, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "GradDiff"},
       {.lr = 0.0003, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "GradDiff+GU"},
       {.lr = 0.001, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "NPO"},
       {.lr = 0.001, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "NPO+GU"},
       {.lr = 0.001, .weight = 1, .beta = 3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "SimNPO"},
       {.lr = 0.0003, .weight = 1, .beta = 0.3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "SimNPO+GU"},
       {.lr = 0.001, .weight = 1, .beta = 0.3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "BLUR"},
       {.lr = 0.0003, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "BLUR+GU"},
       {.lr = 0.001, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "class", "OFMU"},
       {.lr = 0.01, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.003}},
      {{"mlp", "random", "GA"},
       {.lr = 0.0003, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "GA+GU"},
       {.lr = 0.001, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "GradDiff"},
       {.lr = 0.0003, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "GradDiff+GU"},
       {.lr = 0.001, .weight = 2, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "NPO"},
       {.lr = 0.0003, .weight = 1, .beta = 0.3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "NPO+GU"},
       {.lr = 0.001, .weight = 1, .beta = 0.3, .gamma = 0, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "SimNPO"},
       {.lr = 0.0003, .weight = 1, .beta = 0.3, .gamma = 1, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "SimNPO+GU"},
       {.lr = 0.001, .weight = 1, .beta = 0.3, .gamma = 1, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "BLUR"},
       {.lr = 0.0003, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "BLUR+GU"},
       {.lr = 0.001, .weight = 1, .beta = 1, .gamma = 0.3, .eta_in = 0.05, .eta_out = 0.01}},
      {{"mlp", "random", "OFMU"},
       {.lr = 0.01, .weight = 1, .beta = 1, .gamma = 0, .eta_in = 0.05, .eta_out = 0.03}},
      // CHOSEN-END
  };
  const auto it = table.find({model, forget, method});
  if (it != table.end()) return it->second;
  Hyper h;  // untuned defaults
  if (method.rfind("BLUR", 0) == 0) h.gamma = 1.0;
  return h;
}

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
/// and retain cross-entropy are recorded; stride 0: nothing); `negate_forget` flips l_f (OFMU
/// maximises l_f).
template <class P>
ForgetRetainObjective instrument(const P& problem, Curve& curve, int stride, bool negate_forget) {
  ForgetRetainObjective o = make_forget_retain_objective(problem);
  auto inner_gradient = o.forget_gradient;
  auto counter = std::make_shared<int>(0);
  o.forget_gradient = [inner_gradient, counter, &problem, &curve, stride, negate_forget](
                          const Vector& t, Vector& g) {
    if (stride > 0 && *counter % stride == 0) {
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

template <class P>
Run run_on(const P& problem, const Vector& start, Kind kind, const Hyper& h, const Settings& s,
           bool record_curve) {
  Run run;
  const int stride = record_curve ? std::max(1, s.steps / s.curve_points) : 0;
  const auto t0 = Clock::now();
  const StepRuleOptions rule = AdamOptions{.learning_rate = h.lr};
  if (kind == Kind::kOfmu) {
    ForgetRetainObjective o = instrument(problem, run.curve, 2 * stride, true);
    OfmuOptions opt;
    opt.beta = 0.0;  // Phi = l_f: exact Hessian-vector products
    opt.inner_steps = s.ofmu_inner_steps;
    opt.eta_in = h.eta_in;
    opt.eta_out = h.eta_out;
    opt.rho_max = s.ofmu_rho_max;
    opt.max_iterations = s.steps;
    opt.tolerance = 0.0;
    run.theta = OfmuSolver(opt).minimize(o, start).theta;
  } else if (kind == Kind::kGu || kind == Kind::kGuGraddiff || kind == Kind::kGuBlur) {
    ForgetRetainObjective o = instrument(problem, run.curve, stride, false);
    if (kind == Kind::kGuGraddiff) {
      // GU's base direction is the gradient of the GradDiff objective l_f + w l_r.
      const double w = h.weight;
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
    opt.blur_gamma = kind == Kind::kGuBlur ? h.gamma : 1.0;
    opt.step = rule;
    opt.max_iterations = s.steps;
    opt.tolerance = 0.0;
    run.theta = GuSolver(opt).minimize(o, start).theta;
  } else {
    ForgetRetainObjective o = instrument(problem, run.curve, stride, false);
    BlurOptions opt;
    opt.direction =
        kind == Kind::kBlur ? BlurOptions::Direction::kBlur : BlurOptions::Direction::kWeightedSum;
    opt.weight = kind == Kind::kGraddiff ? h.weight : 0.0;  // 0: descend l_f alone
    opt.gamma = kind == Kind::kBlur ? h.gamma : 1.0;
    opt.step = rule;
    opt.max_iterations = s.steps;
    opt.tolerance = 0.0;
    run.theta = BlurSolver(opt).minimize(o, start).theta;
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return run;
}

/// Builds the method's forget problem (its loss with h's beta / gamma) and runs it.
template <class Model>
Run run_method(const Model& model, const ForgetRetainSplit& split, const Vector& original,
               const MethodSpec& m, const Hyper& h, const Settings& s, bool record_curve) {
  switch (m.loss) {
    case Loss::kNpo:
      return run_on(make_npo(model, split, original, h.beta), original, m.kind, h, s, record_curve);
    case Loss::kSimNpo:
      return run_on(make_simnpo(model, split, h.beta, h.gamma), original, m.kind, h, s,
                    record_curve);
    case Loss::kGa:
    default:
      return run_on(make_gradient_ascent(model, split), original, m.kind, h, s, record_curve);
  }
}

/// One (model, forget set, seed): the data, the original and retrained models, the split.
template <class Model>
struct Instance {
  Model model;
  ForgetRetainSplit split;
  Vector original, gold;
  double fit_seconds = 0.0, gold_seconds = 0.0;
  double retain0 = 0.0;  // retain CE of the original model
};

/// The data and the original model of one seed, shared by both forget sets.
struct Original {
  Dataset data;
  Vector init, theta;
  double seconds = 0.0;
  int iterations = 0;
};

template <class Model>
Original fit_original(const Model& model, int seed, const Settings& s) {
  Original o;
  o.data = make_gaussian_clusters({.samples = s.samples,
                                   .features = s.features,
                                   .classes = s.classes,
                                   .separation = s.separation,
                                   .noise = s.noise,
                                   .seed = static_cast<std::uint64_t>(1000 + seed)});
  o.init = model.initial_parameters(static_cast<std::uint64_t>(seed));
  const auto t_fit = Clock::now();
  const FitResult fit = fit_classifier(model, o.data, o.init, s.fit);
  o.seconds = std::chrono::duration<double>(Clock::now() - t_fit).count();
  o.theta = fit.theta;
  o.iterations = fit.iterations;
  return o;
}

template <class Model>
Instance<Model> make_instance(const Model& model, const Original& o, const std::string& forget,
                              int seed, const Settings& s) {
  ForgetRetainSplit split =
      forget == "class"
          ? split_forget_class(o.data, s.forget_class)
          : split_forget_random(o.data, s.forget_fraction, static_cast<std::uint64_t>(2000 + seed));
  const auto t_gold = Clock::now();
  const FitResult fit = retrain_without_forget(model, split, o.init, s.fit);
  const double gold_seconds = std::chrono::duration<double>(Clock::now() - t_gold).count();
  const double retain0 = model.cross_entropy(o.theta, split.retain);
  return {model, std::move(split), o.theta, fit.theta, o.seconds, gold_seconds, retain0};
}

struct Scores {
  UnlearningMetrics m;
  double kl = 0.0;        // mean over all samples of KL(p_retrained || p_theta)
  double per_step = 0.0;  // (retain CE - retain CE of the original) / steps
};

template <class Model>
Scores score(const Instance<Model>& in, const Vector& theta, int steps) {
  Scores sc;
  sc.m = evaluate_unlearning(in.model, in.split, theta, in.gold);
  const double n_f = static_cast<double>(in.split.forget.size());
  const double n_r = static_cast<double>(in.split.retain.size());
  sc.kl = (n_f * sc.m.forget_output_kl + n_r * sc.m.retain_output_kl) / (n_f + n_r);
  sc.per_step = steps > 0 ? (sc.m.retain_loss - in.retain0) / steps : 0.0;
  return sc;
}

/// The selection rule of the validation seed. Forget a class: the smallest retain CE among the
/// settings whose forget accuracy is <= 0.05 (else the smallest forget accuracy). Forget a random
/// subset: the target is the retrained model, whose forget accuracy is its accuracy on unseen
/// samples, not 0; so the smallest retain CE among the settings whose forget accuracy is within
/// 0.02 of the retrained model's (else the closest forget accuracy).
std::size_t select(const std::vector<Scores>& tried, const std::string& forget,
                   double gold_forget_accuracy) {
  auto gap = [&](const Scores& sc) {
    return forget == "class" ? sc.m.forget_accuracy
                             : std::abs(sc.m.forget_accuracy - gold_forget_accuracy);
  };
  const double tolerance = forget == "class" ? 0.05 : 0.02;
  std::size_t best = tried.size();
  for (std::size_t i = 0; i < tried.size(); ++i) {
    if (!(gap(tried[i]) <= tolerance + 1e-12) || !std::isfinite(tried[i].m.retain_loss)) continue;
    if (best == tried.size() || tried[i].m.retain_loss < tried[best].m.retain_loss) best = i;
  }
  if (best < tried.size()) return best;
  best = 0;
  for (std::size_t i = 1; i < tried.size(); ++i)
    if (gap(tried[i]) < gap(tried[best])) best = i;
  return best;
}

using Stats = std::map<std::string, std::vector<double>>;

/// What one (model, forget set) case collects over the seeds.
struct CaseStats {
  std::map<std::string, Stats> stats;             // method -> metric -> one value per seed
  std::map<std::string, std::string> setting_of;  // method -> its setting, as text
  double seconds = 0.0;                           // wall time, summed over the seeds
};

/// One seed of one model: the original fit, then each forget set (rows into `results`, per-seed
/// values into `cases`). Under `validation` every method runs over its grid first and the
/// grid, the choice and the chosen() lines are printed.
template <class Model>
void run_seed(const Model& model, const std::string& model_name,
              const std::vector<std::string>& forgets, int seed, bool validation, const Settings& s,
              std::vector<nlohmann::json>& results, std::map<std::string, CaseStats>& cases) {
  {
    const auto t_original = Clock::now();
    const Original o = fit_original(model, seed, s);
    const double original_seconds =
        std::chrono::duration<double>(Clock::now() - t_original).count();
    for (const std::string& forget : forgets) {
      const auto t_case = Clock::now();
      auto& stats = cases[forget].stats;
      auto& setting_of = cases[forget].setting_of;
      const Instance<Model> in = make_instance(model, o, forget, seed, s);
      auto base_row = [&](const std::string& kind, const std::string& method) {
        return nlohmann::json{{"kind", kind},
                              {"model", model_name},
                              {"forget_set", forget},
                              {"method", method},
                              {"seed", seed}};
      };
      auto record = [&](const std::string& method, const Vector& theta, double seconds, int steps,
                        const Curve* curve, const std::string& setting) {
        const Scores sc = score(in, theta, steps);
        auto& st = stats[method];
        st["forget_accuracy"].push_back(sc.m.forget_accuracy);
        st["retain_accuracy"].push_back(sc.m.retain_accuracy);
        st["forget_loss"].push_back(sc.m.forget_loss);
        st["retain_loss"].push_back(sc.m.retain_loss);
        st["retain_increase_per_step"].push_back(sc.per_step);
        st["kl_to_retrained"].push_back(sc.kl);
        st["distance_to_retrained"].push_back(sc.m.parameter_distance);
        st["seconds"].push_back(seconds);
        setting_of[method] = setting;
        nlohmann::json row = base_row("final", method);
        row.update({{"setting", setting},
                    {"forget_accuracy", sc.m.forget_accuracy},
                    {"retain_accuracy", sc.m.retain_accuracy},
                    {"forget_loss", sc.m.forget_loss},
                    {"retain_loss", sc.m.retain_loss},
                    {"retain_loss_increase_per_step", sc.per_step},
                    {"kl_to_retrained", sc.kl},
                    {"kl_to_retrained_forget", sc.m.forget_output_kl},
                    {"kl_to_retrained_retain", sc.m.retain_output_kl},
                    {"distance_to_retrained", sc.m.parameter_distance},
                    {"seconds", seconds}});
        results.push_back(row);
        if (curve != nullptr) {
          for (std::size_t i = 0; i < curve->call.size(); ++i) {
            nlohmann::json c = base_row("curve", method);
            c.update({{"call", curve->call[i]},
                      {"forget_loss", curve->forget_ce[i]},
                      {"retain_loss", curve->retain_ce[i]}});
            results.push_back(c);
          }
        }
      };
      record("retrained", in.gold, in.gold_seconds, 0, nullptr, "L-BFGS on D_r");
      record("original", in.original, in.fit_seconds, 0, nullptr, "L-BFGS on D");

      if (validation) {
        const double gold_acc = in.model.accuracy(in.gold, in.split.forget);
        std::cout << "validation: " << model_name << ", forget " << forget << ", seed " << seed
                  << " (retrained forget acc " << ex::format_fixed(gold_acc, 3) << ", original "
                  << ex::format_fixed(in.model.accuracy(in.original, in.split.forget), 3)
                  << "; retain CE original " << ex::format_fixed(in.retain0, 3) << ")\n";
        ex::Table grid_table({"method", "setting", "forget acc", "retain acc", "retain CE",
                              "KL to retrained", "chosen"});
        std::map<std::string, Hyper> picked;
        for (const MethodSpec& m : method_specs()) {
          const std::string base_name = m.name.substr(0, m.name.find("+GU"));
          const std::vector<Hyper> grid = validation_grid(m, picked[base_name]);
          std::vector<Scores> tried;
          for (const Hyper& h : grid) {
            const Run r = run_method(in.model, in.split, in.original, m, h, s, false);
            tried.push_back(score(in, r.theta, s.steps));
            nlohmann::json row = base_row("validation", m.name);
            row.update({{"setting", describe(m, h)},
                        {"lr", h.lr},
                        {"weight", h.weight},
                        {"beta", h.beta},
                        {"gamma", h.gamma},
                        {"eta_in", h.eta_in},
                        {"eta_out", h.eta_out},
                        {"forget_accuracy", tried.back().m.forget_accuracy},
                        {"retain_accuracy", tried.back().m.retain_accuracy},
                        {"retain_loss", tried.back().m.retain_loss},
                        {"kl_to_retrained", tried.back().kl}});
            results.push_back(row);
          }
          const std::size_t pick = select(tried, forget, gold_acc);
          for (std::size_t i = 0; i < grid.size(); ++i)
            grid_table.add_row({m.name, describe(m, grid[i]),
                                ex::format_fixed(tried[i].m.forget_accuracy, 3),
                                ex::format_fixed(tried[i].m.retain_accuracy, 3),
                                ex::format_fixed(tried[i].m.retain_loss, 3),
                                ex::format_fixed(tried[i].kl, 4), i == pick ? "*" : ""});
          const Hyper& h = grid[pick];
          picked[m.name] = h;
          std::ostringstream line;
          line << "      {{\"" << model_name << "\", \"" << forget << "\", \"" << m.name
               << "\"}, {.lr = " << h.lr << ", .weight = " << h.weight << ", .beta = " << h.beta
               << ", .gamma = " << h.gamma << ", .eta_in = " << h.eta_in
               << ", .eta_out = " << h.eta_out << "}},";
          setting_of["chosen " + m.name] = line.str();
          // The chosen setting's run also fills the table below (one seed).
          const Run r = run_method(in.model, in.split, in.original, m, h, s, true);
          record(m.name, r.theta, r.seconds, s.steps, &r.curve, describe(m, h));
        }
        grid_table.print(std::cout);
        std::cout << "chosen (paste into chosen()):\n";
        for (const MethodSpec& m : method_specs())
          std::cout << setting_of["chosen " + m.name] << "\n";
        std::cout.flush();
      } else {
        for (const MethodSpec& m : method_specs()) {
          const Hyper h = chosen(model_name, forget, m.name);
          const Run r = run_method(in.model, in.split, in.original, m, h, s, true);
          record(m.name, r.theta, r.seconds, s.steps, &r.curve, describe(m, h));
        }
      }
      // The original fit is shared by the forget sets; each case is charged for it.
      cases[forget].seconds +=
          original_seconds + std::chrono::duration<double>(Clock::now() - t_case).count();
    }
  }
}

/// Every seed of one model, `threads` seeds at a time (each seed is independent and seeded, so
/// the rows and the statistics are the same for any thread count; only wall times differ),
/// merged in seed order.
template <class Model>
void run_model(const Model& model, const std::string& model_name,
               const std::vector<std::string>& forgets, int first_seed, int seeds, bool validation,
               int threads, const Settings& s, ex::ResultsWriter& results,
               std::map<std::string, CaseStats>& cases) {
  std::vector<std::vector<nlohmann::json>> rows(static_cast<std::size_t>(seeds));
  std::vector<std::map<std::string, CaseStats>> per_seed(static_cast<std::size_t>(seeds));
  std::atomic<int> next{0};
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(seeds));
  auto worker = [&] {
    for (int k = next++; k < seeds; k = next++) {
      try {
        run_seed(model, model_name, forgets, first_seed + k, validation, s,
                 rows[static_cast<std::size_t>(k)], per_seed[static_cast<std::size_t>(k)]);
      } catch (...) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      }
    }
  };
  const int workers = validation ? 1 : std::max(1, std::min(threads, seeds));
  std::vector<std::thread> pool;
  for (int t = 1; t < workers; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (std::size_t k = 0; k < per_seed.size(); ++k) {
    for (auto& row : rows[k]) results.add(std::move(row));
    for (auto& [forget, c] : per_seed[k]) {
      CaseStats& into = cases[forget];
      for (auto& [method, st] : c.stats)
        for (auto& [key, values] : st)
          for (double v : values) into.stats[method][key].push_back(v);
      for (auto& [method, text] : c.setting_of) into.setting_of[method] = text;
      into.seconds += c.seconds;
    }
  }
}

void draw_plot(const std::string& out) {
#ifdef TETHER_UNLEARNING_PLOT_SCRIPT
  ex::draw_plot(TETHER_UNLEARNING_PLOT_SCRIPT, out, "unlearning.png", std::cout);
#else
  std::cout << "plot: not drawn (plot script location unknown)\n";
  (void)out;
#endif
}

std::vector<std::string> expand(const std::string& choice, std::vector<std::string> all) {
  if (choice == "both") return all;
  return {choice};
}

}  // namespace

int main(int argc, char** argv) {
  ex::CommonArgs args;
  CLI::App app{
      "Unlearning a class or a random subset of a softmax regression / MLP: "
      "GA/GD/NPO/SimNPO/BLUR/OFMU +- GU"};
  ex::add_common_options(app, args);
  Settings s;
  bool validation = false;
  std::string model_choice = "both";
  std::string forget_choice = "both";
  app.add_flag("--validation", validation,
               "run the validation seed 0 only: every method over its grid, pick by the rule");
  app.add_option("--model", model_choice, "softmax, mlp or both")
      ->check(CLI::IsMember({"softmax", "mlp", "both"}));
  app.add_option("--forget", forget_choice, "forget set: class, random or both")
      ->check(CLI::IsMember({"class", "random", "both"}));
  app.add_option("--hidden", s.hidden, "MLP hidden units")->check(CLI::PositiveNumber);
  int threads = 2;
  app.add_option("--threads", threads, "seeds run at once (results do not depend on it)")
      ->check(CLI::PositiveNumber);
  double mlp_fit_tolerance = 1e-6;
  app.add_option("--mlp-fit-tolerance", mlp_fit_tolerance,
                 "L-BFGS gradient tolerance of the MLP's original and retrained fits");
  CLI11_PARSE(app, argc, argv);
  const int seeds = validation ? 1 : ex::resolve_seeds(args, /*full=*/10, /*quick=*/3);
  const int first_seed = validation ? 0 : 1;
  if (args.quick) s.samples = 1000;

  std::vector<std::string> methods = {"retrained", "original"};
  for (const MethodSpec& m : method_specs()) methods.push_back(m.name);
  ex::ResultsWriter results;
  const auto t_all = Clock::now();

  for (const std::string& model_name : expand(model_choice, {"softmax", "mlp"})) {
    const std::vector<std::string> forgets = expand(forget_choice, {"class", "random"});
    std::map<std::string, CaseStats> cases;
    std::string model_text;
    if (model_name == "softmax") {
      const SoftmaxRegression model(s.features, s.classes, s.l2);
      model_text = "softmax regression (" + std::to_string(model.dimension()) + " parameters)";
      run_model(model, model_name, forgets, first_seed, seeds, validation, threads, s, results,
                cases);
    } else {
      const Mlp model(s.features, s.hidden, s.classes, Activation::kTanh, s.l2);
      Settings mlp_settings = s;
      mlp_settings.fit.gradient_tolerance = mlp_fit_tolerance;
      model_text = "MLP, " + std::to_string(s.hidden) + " tanh units (" +
                   std::to_string(model.dimension()) + " parameters)";
      run_model(model, model_name, forgets, first_seed, seeds, validation, threads, mlp_settings,
                results, cases);
    }
    for (const std::string& forget : forgets) {
      CaseStats& c = cases[forget];
      std::ostringstream forget_text;
      if (forget == "class")
        forget_text << "forget class " << s.forget_class;
      else
        forget_text << "forget a random " << s.forget_fraction * 100 << "% of the data";
      std::cout << "\nunlearning: " << model_text << ", " << s.classes
                << " Gaussian classes, n = " << s.samples << ", d = " << s.features << ", "
                << forget_text.str() << ", " << s.steps << " steps, " << seeds
                << (validation ? " seed (validation seed 0, chosen settings)" : " seeds")
                << "; mean [95% Student-t interval]; " << ex::format_fixed(c.seconds, 1)
                << " s summed over seeds\n";
      ex::Table table({"method", "forget acc", "retain acc", "forget CE", "retain CE", "dCE_r/step",
                       "KL to retrained", "|theta-gold|", "seconds", "setting"});
      for (const auto& method : methods) {
        auto& st = c.stats[method];
        auto cell = [&](const std::string& key, int precision) {
          return ex::format_interval(ex::student_t_interval(st[key]), precision);
        };
        table.add_row({method, cell("forget_accuracy", 3), cell("retain_accuracy", 3),
                       cell("forget_loss", 3), cell("retain_loss", 3),
                       cell("retain_increase_per_step", 6), cell("kl_to_retrained", 4),
                       cell("distance_to_retrained", 3), cell("seconds", 3), c.setting_of[method]});
      }
      table.print(std::cout);
    }
  }
  const double total = std::chrono::duration<double>(Clock::now() - t_all).count();
  std::cout << "total: " << ex::format_fixed(total, 1) << " s wall (" << threads << " thread(s))\n";
  const auto path = results.write(args.out);
  std::cout << "results: " << path.string() << "\n";
  draw_plot(args.out);
  return 0;
}
