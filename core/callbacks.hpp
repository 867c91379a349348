// Callbacks observe a solver's iterations and may stop it.
//
// A callback is any object with `bool on_iteration(const IterationRecord&)` (return false to
// stop); `void on_begin(int max_iterations)` and `void on_end(const History&, StopReason)` are
// optional. Solvers take any number of them: `solver.minimize(problem, ProgressBar{}, csv)`.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <tether/core/result.hpp>
#include <vector>

namespace tether {

template <class C>
concept IterationCallback = requires(C& c, const IterationRecord& r) {
  { c.on_iteration(r) } -> std::convertible_to<bool>;
};

namespace callbacks {

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class ProgressBar {
 public:
  ProgressBar();
  void on_begin(int max_iterations);
  bool on_iteration(const IterationRecord& r);
  void on_end(const History& history, StopReason reason);

 private:
  bool enabled_;
  int total_ = 0;
};

/// Streams the history as CSV (header + one row per iteration) to a file or a stream.
class CsvHistory {
 public:
  explicit CsvHistory(const std::string& path);
  explicit CsvHistory(std::ostream& out);
  void on_begin(int max_iterations);
  bool on_iteration(const IterationRecord& r);

 private:
  std::ofstream file_;
  std::ostream* out_;
};

/// Stops when best_loss has not improved by more than min_delta for `patience` iterations.
struct EarlyStop {
  int patience = 50;
  double min_delta = 0.0;
  bool on_iteration(const IterationRecord& r);

  // State (public only so the options can be set with designated initialisers).
  double best_ = std::numeric_limits<double>::infinity();
  int since_best_ = 0;
};

}  // namespace callbacks

/// The callbacks of one solve, type-erased so solver bodies need not be templates.
class CallbackSet {
 public:
  CallbackSet() = default;
  template <class... Cbs>
  explicit CallbackSet(Cbs&... cbs) {
    (add(cbs), ...);
  }
  void begin(int max_iterations) const {
    for (const auto& f : begin_) f(max_iterations);
  }
  /// Returns false if any callback asked to stop (every callback still sees the record).
  bool iteration(const IterationRecord& r) const {
    bool keep_going = true;
    for (const auto& f : iteration_) keep_going = f(r) && keep_going;
    return keep_going;
  }
  void end(const History& h, StopReason reason) const {
    for (const auto& f : end_) f(h, reason);
  }

 private:
  template <class C>
  void add(C& c) {
    static_assert(IterationCallback<C>,
                  "a callback must have bool on_iteration(const tether::IterationRecord&)");
    if constexpr (requires { c.on_begin(0); }) begin_.push_back([&c](int n) { c.on_begin(n); });
    iteration_.push_back(
        [&c](const IterationRecord& r) { return static_cast<bool>(c.on_iteration(r)); });
    if constexpr (requires(const History& h) { c.on_end(h, StopReason::kConverged); })
      end_.push_back([&c](const History& h, StopReason s) { c.on_end(h, s); });
  }
  std::vector<std::function<void(int)>> begin_;
  std::vector<std::function<bool(const IterationRecord&)>> iteration_;
  std::vector<std::function<void(const History&, StopReason)>> end_;
};

}  // namespace tether
