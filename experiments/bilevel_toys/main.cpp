// bilevel_toys: LV-HBA, BLUR and OFMU on the toys with known answers of specs/bilevel.md
// (problems/bilevel_toys.hpp: T1-T4; problems/unlearning_toys.hpp: B1, B2, O1), each against the
// baseline it is meant to beat (spec section 5): the public defaults for LV-HBA, the weighted
// sum for BLUR and OFMU; the iterate error per iteration and the time per iteration. The
// settings are those of the spec and of tests/lvhba_test.cpp, blur_test.cpp, ofmu_test.cpp.
// Modes: --quick runs T4 on 3 seeds for T4's 20k iterations, the full mode on 10 seeds for 50k;
// everything else is the same in both (the whole program takes seconds). --seeds sets T4's seeds.
// See README.md beside this file.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <tether/core/step_rule.hpp>
#include <tether/experiments/support/report.hpp>
#include <tether/problems/bilevel_toys.hpp>
#include <tether/problems/unlearning_toys.hpp>
#include <tether/solvers/blur.hpp>
#include <tether/solvers/lvhba.hpp>
#include <tether/solvers/ofmu.hpp>
#include <vector>

namespace {

using namespace tether;
namespace ex = tether::experiments;
using Clock = std::chrono::steady_clock;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- formatting ---------------------------------------------------------------------------------

std::string sci(double x, int digits = 3) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.*e", digits, x);
  return buffer;
}

std::string point2(const Vector& v, int digits = 6) {
  return "(" + ex::format_fixed(v[0], digits) + ", " + ex::format_fixed(v[1], digits) + ")";
}

void print_table(const std::string& title, const ex::Table& table) {
  std::cout << "\n" << title << "\n";
  table.print(std::cout);
}

// ---- traces: error, objective and elapsed time per iteration count ------------------------------

/// Entry i describes the iterate after i updates (i = 0 .. last); NaN where unknown.
struct Trace {
  std::vector<double> error, objective, seconds;
  int last = 0;  ///< iterations completed

  explicit Trace(int iterations)
      : error(static_cast<std::size_t>(iterations) + 1, kNan),
        objective(static_cast<std::size_t>(iterations) + 1, kNan),
        seconds(static_cast<std::size_t>(iterations) + 1, kNan),
        last(iterations) {}
  double error_at(int i) const {
    return i >= 0 && i <= last ? error[static_cast<std::size_t>(i)] : kNan;
  }
  double max_error() const {
    double worst = 0.0;
    for (double e : error)
      if (std::isfinite(e)) worst = std::max(worst, e);
    return worst;
  }
};

/// LV-HBA with history_every = 1: row k is the iterate after k + 1 iterations, its
/// step_seconds the time of iteration k.
Trace lvhba_trace(const LvHbaResult& r) {
  Trace t(r.iterations);
  double elapsed = 0.0;
  for (const IterationRecord& row : r.history.rows) {
    const auto i = static_cast<std::size_t>(row.iteration) + 1;
    elapsed += row.step_seconds;
    t.error[i] = row.error;
    t.objective[i] = row.loss;
    t.seconds[i] = elapsed;
  }
  return t;
}

/// BLUR / OFMU: row k describes theta_k (before step k), the result the iterate after the last
/// step; `final_error` is the problem's solution_error there.
Trace first_order_trace(const History& h, int iterations, double final_error,
                        double final_objective, double total_seconds) {
  Trace t(iterations);
  double elapsed = 0.0;
  for (const IterationRecord& row : h.rows) {
    const auto i = static_cast<std::size_t>(row.iteration);
    if (i > static_cast<std::size_t>(iterations)) break;
    t.error[i] = row.error;
    t.objective[i] = row.loss;
    t.seconds[i] = elapsed;
    elapsed += row.step_seconds;
  }
  const auto n = static_cast<std::size_t>(iterations);
  t.error[n] = final_error;
  t.objective[n] = final_objective;
  t.seconds[n] = total_seconds;
  return t;
}

Trace blur_trace(const BlurResult& r, double final_error) {
  return first_order_trace(r.history, r.iterations, final_error, r.retain_loss, r.seconds);
}
Trace ofmu_trace(const OfmuResult& r, double final_error) {
  return first_order_trace(r.history, r.iterations, final_error, r.retain_loss, r.seconds);
}

/// 1..10, then ten per decade (rounded 10^(j/10)), the `extra` marks, and the last iteration.
std::vector<int> log_checkpoints(int last, const std::vector<int>& extra) {
  std::set<int> s;
  for (int i = 1; i <= std::min(last, 10); ++i) s.insert(i);
  for (int j = 11;; ++j) {
    const auto i = static_cast<int>(std::lround(std::pow(10.0, j / 10.0)));
    if (i > last) break;
    s.insert(i);
  }
  for (int e : extra)
    if (e >= 1 && e <= last) s.insert(e);
  if (last >= 1) s.insert(last);
  return {s.begin(), s.end()};
}

/// One curve of results.json: the rows at log-spaced iteration checkpoints.
struct Curve {
  std::string experiment, method, problem;
  std::optional<std::uint64_t> seed;
  std::vector<int> extra_marks;
  Trace trace;
};

std::vector<Curve> g_curves;

void add_curve(std::string experiment, std::string method, std::string problem, Trace trace,
               std::vector<int> marks = {}, std::optional<std::uint64_t> seed = std::nullopt) {
  g_curves.push_back({std::move(experiment), std::move(method), std::move(problem), seed,
                      std::move(marks), std::move(trace)});
}

// ---- LV-HBA -------------------------------------------------------------------------------------

template <class P>
LvHbaResult lvhba_run(const P& p, LvHbaOptions o, int iterations, const Vector& x0,
                      const Vector& y0) {
  o.max_iterations = iterations;
  o.history_every = 1;
  return LvHbaSolver(o).minimize(p, x0, y0);
}

/// Seconds per iteration of the same run with one history row (no per-iteration error or F).
template <class P>
double lvhba_seconds_per_iteration(const P& p, LvHbaOptions o, int iterations, const Vector& x0,
                                   const Vector& y0) {
  o.max_iterations = iterations;
  o.history_every = iterations;
  const LvHbaResult r = LvHbaSolver(o).minimize(p, x0, y0);
  return r.seconds / std::max(1, r.iterations);
}

struct TimingRow {
  std::string method, problem;
  int iterations;
  double seconds_per_iteration;
  std::string note;
};

const std::vector<int> kT2Marks = {1000, 5000, 10000, 20000, 50000};
const std::vector<double> kT2Spec = {0.25, 7e-3, 2.4e-4, 1e-6, 3e-12};

void run_lvhba(bool quick, int seeds, std::vector<TimingRow>& timing) {
  using problems::T1;
  using problems::T2;
  using problems::T3;
  using problems::T4;

  // ---- T2: no penalty bias, the spec's trajectory ----
  ex::Table t2_table({"n", "iterations", "relative x error", "spec (n = 100)", "measured / spec",
                      "multiplier lam"});
  for (Index n : {Index{100}, Index{1000}}) {
    const T2 p(n);
    const int iterations = kT2Marks.back();
    const LvHbaResult r = lvhba_run(p, T2::checked_options(), iterations, p.start_x(), p.start_y());
    const Trace t = lvhba_trace(r);
    for (std::size_t j = 0; j < kT2Marks.size(); ++j) {
      const double e = t.error_at(kT2Marks[j]);
      t2_table.add_row({std::to_string(n), std::to_string(kT2Marks[j]), sci(e), sci(kT2Spec[j], 1),
                        ex::format_fixed(e / kT2Spec[j], 2),
                        j + 1 == kT2Marks.size() ? ex::format_fixed(r.lam[0], 9) : ""});
    }
    const std::string problem = "T2 n=" + std::to_string(n);
    add_curve("lvhba", "lvhba checked settings", problem, t, kT2Marks);
    timing.push_back({"lvhba", problem, iterations,
                      lvhba_seconds_per_iteration(p, T2::checked_options(), iterations, p.start_x(),
                                                  p.start_y()),
                      ""});
    std::cerr << "lvhba: " << problem << " done\n";
  }
  print_table(
      "LV-HBA on T2 (spec settings: alpha 5e-3, beta 2e-3, eta 3e-2, gamma 10/1, box [-1, 1], "
      "c_k = (k+1)^0.3, lam0 = z0 = -1; optimum x = 1, multiplier -1)",
      t2_table);

  // ---- T3: inequality, multiplier strictly inside its box ----
  {
    const T3 p;
    const LvHbaResult r100k = lvhba_run(p, T3::checked_options(), 100000, p.start_x(), p.start_y());
    LvHbaOptions o10k = T3::checked_options();
    o10k.max_iterations = 10000;
    o10k.history_every = 10000;
    const LvHbaResult r10k = LvHbaSolver(o10k).minimize(p, p.start_x(), p.start_y());
    const Trace t = lvhba_trace(r100k);
    ex::Table table({"iterations", "|(x, y) - (1.5, 0.5)|", "spec", "measured / spec",
                     "relative x error", "multiplier lam"});
    const struct {
      const LvHbaResult* r;
      int k;
      double spec;
    } marks[] = {{&r10k, 10000, 1.6e-2}, {&r100k, 100000, 6e-7}};
    for (const auto& m : marks) {
      const double d = std::hypot(m.r->x[0] - 1.5, m.r->y[0] - 0.5);
      table.add_row({std::to_string(m.k), sci(d), sci(m.spec, 1), ex::format_fixed(d / m.spec, 2),
                     sci(t.error_at(m.k)), ex::format_fixed(m.r->lam[0], 7)});
    }
    print_table(
        "LV-HBA on T3 (alpha = beta = 0.05, eta 0.1, gamma 1/1, r = 10, p = 0.45, start 0; "
        "optimum (1.5, 0.5), multiplier 1 inside [0, 10])",
        table);
    add_curve("lvhba", "lvhba checked settings", "T3", t, {10000, 100000});
    timing.push_back(
        {"lvhba", "T3", 100000,
         lvhba_seconds_per_iteration(p, T3::checked_options(), 100000, p.start_x(), p.start_y()),
         ""});
    std::cerr << "lvhba: T3 done\n";
  }

  // ---- T1: the public toy, checked settings against the public defaults ----
  {
    const Index n = 100;
    const T1 p(n);
    const Vector zx = Vector::Zero(n), zy = Vector::Zero(2 * n);
    const LvHbaResult pub_script =
        lvhba_run(p, T1::public_defaults(), 1500, p.start_x(), p.start_y());
    const LvHbaResult pub_zero = lvhba_run(p, T1::public_defaults(), 1500, zx, zy);
    const LvHbaResult chk_script =
        lvhba_run(p, T1::checked_options(), 100000, p.start_x(), p.start_y());
    const LvHbaResult chk_zero = lvhba_run(p, T1::checked_options(), 100000, zx, zy);
    const Trace t_pub_script = lvhba_trace(pub_script), t_pub_zero = lvhba_trace(pub_zero);
    const Trace t_chk_script = lvhba_trace(chk_script), t_chk_zero = lvhba_trace(chk_zero);
    auto start_error = [&](Vector x, Vector y) {  // the solver projects the start onto C first
      p.project_joint(x, y);
      return p.solution_error(x, y);
    };
    const double e_script = start_error(p.start_x(), p.start_y()), e_zero = start_error(zx, zy);
    ex::Table table({"settings", "start", "error at start", "iterations", "relative x error",
                     "max error over 1..k", "spec", "status"});
    auto max_upto = [](const Trace& t, int k) {
      double worst = 0.0;
      for (int i = 1; i <= k; ++i) worst = std::max(worst, t.error_at(i));
      return worst;
    };
    auto row = [&](const char* settings, const char* start, double e0, const Trace& t, int k,
                   const std::string& spec, const LvHbaResult& r) {
      table.add_row({settings, start, sci(e0), std::to_string(k), sci(t.error_at(k)),
                     sci(max_upto(t, k)), spec, k == r.iterations ? to_string(r.status) : ""});
    };
    const char* script = "script (x=-20, y=10)";
    const char* checked = "checked (T2's, p = 0.45)";
    row("public defaults", script, e_script, t_pub_script, 1500, "> 100 (diverges)", pub_script);
    row("public defaults", "0", e_zero, t_pub_zero, 1500, "-", pub_zero);
    for (int k : {1500, 10000, 50000})
      row(checked, script, e_script, t_chk_script, k, "-", chk_script);
    row(checked, script, e_script, t_chk_script, 100000, "about 2.5e-3", chk_script);
    row(checked, "0", e_zero, t_chk_zero, 100000, "-", chk_zero);
    print_table(
        "LV-HBA on T1, n = 100 (the public toy; optimum x = -0.3; penalty bias O(1/c_k)): checked "
        "settings against the public script's defaults (alpha 0.008, beta 0.02, eta 0.01, gamma "
        "10/10, c_k = 0.025 (k+1)^0.3, box [-1000, 1000])",
        table);
    add_curve("lvhba", "lvhba public defaults", "T1 n=100 script start", t_pub_script, {1500});
    add_curve("lvhba", "lvhba public defaults", "T1 n=100 start 0", t_pub_zero, {1500});
    add_curve("lvhba", "lvhba checked settings", "T1 n=100 script start", t_chk_script,
              {1500, 10000, 50000, 100000});
    add_curve("lvhba", "lvhba checked settings", "T1 n=100 start 0", t_chk_zero, {100000});
    timing.push_back(
        {"lvhba", "T1 n=100", 100000,
         lvhba_seconds_per_iteration(p, T1::checked_options(), 100000, p.start_x(), p.start_y()),
         ""});
    std::cerr << "lvhba: T1 done\n";
  }

  // ---- T4: tracking of the lower-level solution y*(x) over seeded instances ----
  {
    const Index n = 100, l = 90;
    const LvHbaOptions o = T4::checked_options();
    // The same settings in both modes; the full mode runs longer (50k, as the slow test does).
    const int iterations = quick ? o.max_iterations : 50000;  // quick: T4's 20000
    std::vector<int> marks = {1, 100, 1000, 5000, 10000, 20000};
    if (iterations > 20000) marks.push_back(iterations);
    std::vector<std::vector<double>> errors(marks.size()), scaled(marks.size());
    double seconds_per_iteration = 0.0;
    for (int s = 1; s <= seeds; ++s) {
      const auto seed = static_cast<std::uint64_t>(s);
      const T4 p(n, l, seed);
      const LvHbaResult r = lvhba_run(p, o, iterations, p.start_x(), p.start_y());
      const Trace t = lvhba_trace(r);
      for (std::size_t j = 0; j < marks.size(); ++j) {
        const double e = t.error_at(marks[j]);
        errors[j].push_back(e);
        scaled[j].push_back(e * o.c0 * std::pow(static_cast<double>(marks[j]), o.p));
      }
      add_curve("lvhba", "lvhba T4 settings", "T4 n=100 l=90", t, marks, seed);
      if (s == 1)
        seconds_per_iteration =
            lvhba_seconds_per_iteration(p, o, iterations, p.start_x(), p.start_y());
    }
    ex::Table table({"iterations k", "|y - y*(x)| mean [95% CI]", "|y - y*(x)| c_k mean [95% CI]",
                     "min", "max"});
    for (std::size_t j = 0; j < marks.size(); ++j) {
      const auto [lo, hi] = std::minmax_element(errors[j].begin(), errors[j].end());
      table.add_row(
          {std::to_string(marks[j]), ex::format_interval(ex::student_t_interval(errors[j]), 5),
           ex::format_interval(ex::student_t_interval(scaled[j]), 4), sci(*lo), sci(*hi)});
    }
    print_table("LV-HBA on T4 (n = 100, l = 90, seeds 1.." + std::to_string(seeds) +
                    "; the public LLSC script's settings: alpha 0.02, beta 0.001, eta 0.1, gamma "
                    "1/1, c_k = (k+1)^0.3, r = 1000): lower-level tracking |y_k - y*(x_k)|, c_k = "
                    "k^0.3",
                table);
    timing.push_back({"lvhba", "T4 n=100 l=90", iterations, seconds_per_iteration, "seed 1"});
    std::cerr << "lvhba: T4 done\n";
  }
}

// ---- BLUR ---------------------------------------------------------------------------------------

BlurOptions sgd(double lr, int iterations) {
  return {.step = SgdOptions{.learning_rate = lr}, .max_iterations = iterations, .tolerance = 0.0};
}

BlurOptions weighted(double lr, int iterations, double w) {
  BlurOptions o = sgd(lr, iterations);
  o.direction = BlurOptions::Direction::kWeightedSum;
  o.weight = w;
  return o;
}

struct WeightedSumOutcome {
  double w;
  Vector theta;
  double error;
  int iterations;
  std::string status;
};

std::vector<WeightedSumOutcome> run_blur(std::vector<TimingRow>& timing) {
  using problems::B1;
  using problems::B2;
  std::vector<WeightedSumOutcome> b1_weighted;
  ex::Table table({"problem", "method", "lr", "steps", "error @100", "error @1000", "final error",
                   "final theta", "predicted limit", "|theta - limit|", "spec", "guard steps"});
  // B1: optimum (2.5, -0.5); the weighted sum's limit is c - a (a^T c - b) / (|a|^2 + w).
  {
    const B1 p;
    const int steps = 5000;  // the weighted sum with w = 0.1 contracts by 0.99 per step
    struct Method {
      std::string name;
      BlurOptions options;
      Vector limit;
      std::string spec;
      double w;
    };
    const std::vector<Method> methods = {
        {"blur (gamma 1)", sgd(0.1, steps), p.solution(), "5.6e-5 @100, 1e-15 @1000", 0.0},
        {"weighted sum w=1", weighted(0.1, steps, 1.0), p.weighted_sum_solution(1.0),
         "(2.6667, -0.3333)", 1.0},
        {"weighted sum w=0.1", weighted(0.1, steps, 0.1), p.weighted_sum_solution(0.1),
         "(2.5238, -0.4762)", 0.1}};
    for (const Method& m : methods) {
      const BlurResult r = BlurSolver(m.options).minimize(p, p.start());
      const double final_error = p.solution_error(r.theta);
      const Trace t = blur_trace(r, final_error);
      table.add_row({"B1", m.name, "0.1", std::to_string(r.iterations), sci(t.error_at(100)),
                     sci(t.error_at(1000)), sci(final_error), point2(r.theta), point2(m.limit),
                     sci((r.theta - m.limit).norm()), m.spec, std::to_string(r.guard_steps)});
      add_curve("blur", m.name, "B1", t, {100, 1000});
      timing.push_back({m.name, "B1", r.iterations, r.seconds / r.iterations, "history on"});
      if (m.w > 0)
        b1_weighted.push_back({m.w, r.theta, final_error, r.iterations, to_string(r.status)});
    }
  }
  // B2: optimum (1, 0); the weighted sum with w = 1 stops at (2^(1/3), 0): on the axis
  // (t^2 - 1) t + (t - 2) = 0, i.e. t^3 = 2.
  {
    const B2 p;
    const int steps = 2000;
    Vector limit_w1(2);
    limit_w1 << std::cbrt(2.0), 0.0;
    struct Method {
      std::string name;
      BlurOptions options;
      Vector limit;
      std::string spec;
    };
    const std::vector<Method> methods = {
        {"blur (gamma 1)", sgd(0.05, steps), p.solution(), "3.3e-5 @100"},
        {"weighted sum w=1", weighted(0.05, steps, 1.0), limit_w1, "-"}};
    for (const Method& m : methods) {
      const BlurResult r = BlurSolver(m.options).minimize(p, p.start());
      const double final_error = p.solution_error(r.theta);
      const Trace t = blur_trace(r, final_error);
      table.add_row({"B2", m.name, "0.05", std::to_string(r.iterations), sci(t.error_at(100)),
                     sci(t.error_at(1000)), sci(final_error), point2(r.theta), point2(m.limit),
                     sci((r.theta - m.limit).norm()), m.spec, std::to_string(r.guard_steps)});
      add_curve("blur", m.name, "B2", t, {100, 1000});
    }
  }
  print_table(
      "BLUR against the weighted sum g_f + w g_r (plain gradient steps, start B1: 0, B2: (0.3, "
      "0.8)); error = |theta - theta*|, theta* = (2.5, -0.5) on B1, (1, 0) on B2",
      table);
  std::cerr << "blur done\n";
  return b1_weighted;
}

// ---- OFMU ---------------------------------------------------------------------------------------

OfmuOptions plain(double rho, double eta_out, int iterations, double tolerance) {
  return {.beta = 0.0,
          .inner_steps = 0,
          .eta_out = eta_out,
          .rho0 = rho,
          .rho_growth = 1.0,
          .rho_max = rho,
          .max_iterations = iterations,
          .tolerance = tolerance};
}

void run_ofmu(const std::vector<WeightedSumOutcome>& b1_weighted, std::vector<TimingRow>& timing) {
  using problems::B1;
  using problems::O1;
  const O1 p;
  // ---- the rho sweep: T = 0, beta = 0, fixed rho, step 1.5 / (1 + 8 rho) ----
  ex::Table table({"method", "rho / w", "step", "iterations", "status", "theta",
                   "|theta - theta_rho|", "|theta - theta*|", "closed-form bias", "error x rho"});
  for (double rho : {1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0}) {
    const double eta = 1.5 / (1.0 + 8.0 * rho);
    const OfmuResult r = OfmuSolver(plain(rho, eta, 100000, 1e-13)).minimize(p, p.start());
    const double e = p.solution_error(r.theta);
    const Vector theta_rho = p.theta_rho(rho);
    table.add_row({"ofmu (T=0, beta=0)", ex::format_fixed(rho, 0), sci(eta, 3),
                   std::to_string(r.iterations), to_string(r.status), point2(r.theta),
                   sci((r.theta - theta_rho).norm()), sci(e), sci(p.solution_error(theta_rho)),
                   ex::format_fixed(e * rho, 5)});
    add_curve("ofmu", "ofmu rho=" + ex::format_fixed(rho, 0), "O1", ofmu_trace(r, e));
    if (rho == 1.0)
      timing.push_back({"ofmu rho=1", "O1", r.iterations, r.seconds / r.iterations, "history on"});
  }
  const B1 b1;  // the same lower-level set and optimum, minimised: the weighted-sum baseline
  for (const WeightedSumOutcome& w : b1_weighted)
    table.add_row({"weighted sum (B1 = O1)", ex::format_fixed(w.w, 1), "1.000e-01",
                   std::to_string(w.iterations), w.status, point2(w.theta), "-", sci(w.error),
                   sci(b1.solution_error(b1.weighted_sum_solution(w.w))), "-"});
  print_table(
      "OFMU on O1 (l_f = -0.5 (a^T theta - 2)^2, l_r = 0.5 |theta - (3, 0)|^2; theta* = (2.5, "
      "-0.5)), converged for each fixed rho (tolerance 1e-13), against the weighted sum; "
      "closed-form bias |theta_rho - theta*| = sqrt(2) / (2 (1 + 8 rho)), so error x rho -> "
      "sqrt(2) / 16 = " +
          ex::format_fixed(std::sqrt(2.0) / 16.0, 5),
      table);

  // ---- the continuation trap ----
  ex::Table trap({"rho schedule", "step", "iterations", "status", "stages", "last rho", "max error",
                  "final error", "bias at last rho"});
  auto add_trap = [&](const std::string& name, const OfmuOptions& o, const std::string& step) {
    const OfmuResult r = OfmuSolver(o).minimize(p, p.start());
    const double e = p.solution_error(r.theta);
    const Trace t = ofmu_trace(r, e);
    trap.add_row({name, step, std::to_string(r.iterations), to_string(r.status),
                  std::to_string(r.stages), sci(r.rho, 3), sci(t.max_error()), sci(e),
                  sci(p.solution_error(p.theta_rho(r.rho)))});
    add_curve("ofmu", "ofmu " + name, "O1", t);
  };
  {
    OfmuOptions uncapped = plain(1.0, 0.01, 1000, 0.0);
    uncapped.rho_growth = 1.1;
    uncapped.rho_max = kInf;
    add_trap("x1.1 per iteration, no cap", uncapped, "0.01");
    OfmuOptions capped = uncapped;
    capped.rho_max = 10.0;
    capped.tolerance = 1e-12;
    capped.max_iterations = 20000;
    add_trap("x1.1 per iteration, cap 10", capped, "0.01");
    OfmuOptions staged = plain(1.0, 0.01, 50000, 1e-12);
    staged.rho_growth = 2.0;
    staged.rho_max = 16.0;
    staged.rho_schedule = OfmuOptions::RhoSchedule::kPerStage;
    staged.stage_tolerance = 1e-8;
    add_trap("x2 per converged stage, cap 16", staged, "0.01");
  }
  {
    // The other half of the trap, which the solver does not offer: step 0.01 / rho_k with
    // rho_k = 1.1^k uncapped, written out with the solver's penalty gradient.
    const ForgetRetainObjective o = make_forget_retain_objective(p);
    const int iterations = 1000;
    Trace t(iterations);
    Vector theta = p.start(), g;
    double rho = 1.0, last_rho = rho;
    const auto t0 = Clock::now();
    for (int k = 0; k < iterations; ++k) {
      t.error[static_cast<std::size_t>(k)] = p.solution_error(theta);
      t.objective[static_cast<std::size_t>(k)] = p.retain_loss(theta);
      t.seconds[static_cast<std::size_t>(k)] =
          std::chrono::duration<double>(Clock::now() - t0).count();
      ofmu_penalty_gradient(o, theta, 0.0, rho, g);
      theta -= (0.01 / rho) * g;
      last_rho = rho;
      rho *= 1.1;
    }
    const double e = p.solution_error(theta);
    t.error.back() = e;
    t.objective.back() = p.retain_loss(theta);
    t.seconds.back() = std::chrono::duration<double>(Clock::now() - t0).count();
    trap.add_row({"x1.1 per iteration, no cap (hand loop)", "0.01 / rho",
                  std::to_string(iterations), theta.allFinite() ? "iteration limit" : "non-finite",
                  std::to_string(iterations), sci(last_rho, 3), sci(t.max_error()), sci(e),
                  sci(p.solution_error(p.theta_rho(last_rho)))});
    add_curve("ofmu", "ofmu x1.1 per iteration, step 0.01/rho", "O1", t);
  }
  print_table(
      "OFMU continuation on O1 (T = 0, beta = 0, start 0): the trap (geometric rho at a fixed "
      "step diverges once 0.01 (1 + 8 rho) > 2; a 1/rho step stalls) and the capped schedules",
      trap);
  std::cerr << "ofmu done\n";
}

// ---- results.json and the plot ------------------------------------------------------------------

void write_results(const std::string& out) {
  ex::ResultsWriter results;
  for (const Curve& c : g_curves)
    for (int i : log_checkpoints(c.trace.last, c.extra_marks)) {
      const auto k = static_cast<std::size_t>(i);
      results.add({{"experiment", c.experiment},
                   {"method", c.method},
                   {"problem", c.problem},
                   {"seed", c.seed ? nlohmann::json(*c.seed) : nlohmann::json(nullptr)},
                   {"iteration", i},
                   {"error", c.trace.error[k]},
                   {"objective", c.trace.objective[k]},
                   {"seconds", c.trace.seconds[k]}});
    }
  const auto path = results.write(out);
  std::cout << "\nrows: " << path.string() << " (" << results.size() << " rows, " << g_curves.size()
            << " curves)\n";
}

void draw_plot(const std::string& out) {
#ifdef TETHER_BILEVEL_TOYS_PLOT_SCRIPT
  ex::draw_plot(TETHER_BILEVEL_TOYS_PLOT_SCRIPT, out, "bilevel_toys.png", std::cout);
#else
  std::cout << "plot: not drawn (plot script location unknown)\n";
  (void)out;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "LV-HBA, BLUR and OFMU on the bilevel toys with known answers (specs/bilevel.md): error "
      "per iteration against the spec's figures and the baselines"};
  ex::CommonArgs args;
  ex::add_common_options(app, args);
  CLI11_PARSE(app, argc, argv);
  const int seeds = ex::resolve_seeds(args, /*full=*/10, /*quick=*/3);
  const auto t0 = Clock::now();

  std::cout << "bilevel_toys" << (args.quick ? " (quick)" : " (full)") << ": T4 seeds " << seeds
            << ", T4 iterations " << (args.quick ? 20000 : 50000) << "\n";
  std::vector<TimingRow> timing;
  run_lvhba(args.quick, seeds, timing);
  const std::vector<WeightedSumOutcome> b1_weighted = run_blur(timing);
  run_ofmu(b1_weighted, timing);

  ex::Table t({"method", "problem", "iterations", "us / iteration", "note"});
  for (const TimingRow& r : timing)
    t.add_row({r.method, r.problem, std::to_string(r.iterations),
               ex::format_fixed(r.seconds_per_iteration * 1e6, 3), r.note});
  print_table(
      "Wall time per iteration (single-threaded; LV-HBA from a second run that records one "
      "history row, BLUR and OFMU from the runs above, which record every iteration)",
      t);

  write_results(args.out);
  draw_plot(args.out);
  std::cout << "total: "
            << ex::format_fixed(std::chrono::duration<double>(Clock::now() - t0).count(), 1)
            << " s\n";
  return 0;
}
