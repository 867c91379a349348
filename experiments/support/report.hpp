// What every experiment in experiments/ shares: the command line (--quick, --seeds, --out),
// Student-t confidence intervals, flat JSON result rows, and an aligned text table.
//
//   tether::experiments::CommonArgs args;
//   CLI::App app{"RCO on the synthetic MCKP families"};
//   tether::experiments::add_common_options(app, args);
//   CLI11_PARSE(app, argc, argv);
//   const int seeds = tether::experiments::resolve_seeds(args, /*full=*/5, /*quick=*/2);
//   tether::experiments::ResultsWriter results;
//   results.add({{"method", "rco"}, {"seed", 1}, {"ratio", 0.9991}});
//   results.write(args.out);                                      // args.out/results.json
//   Interval ci = tether::experiments::student_t_interval(ratios);  // mean +- t s / sqrt(n)
//   table.add_row({"rco", format_interval(ci, 4)});                 // "0.9991 [0.9985, 0.9997]"
#pragma once

#include <filesystem>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tether::experiments {

/// The options every experiment takes (DESIGN.md, "Experiments: one convention for all").
struct CommonArgs {
  bool quick = false;           ///< same accuracy settings, smaller sizes, fewer seeds
  int seeds = 0;                ///< number of seeds; 0: the mode's default
  std::string out = "results";  ///< output directory for results.json and plots
};

/// Adds --quick, --seeds N (N >= 0) and --out DIR to `app`, bound to `args`.
void add_common_options(CLI::App& app, CommonArgs& args);

/// args.seeds if given (> 0), else quick_default under --quick and full_default otherwise.
int resolve_seeds(const CommonArgs& args, int full_default, int quick_default);

/// A two-sided Student-t confidence interval for the mean of n samples:
///   mean +- t_{(1+confidence)/2, n-1} s / sqrt(n),   s the sample standard deviation.
struct Interval {
  double mean = 0.0;
  double lower = 0.0;
  double upper = 0.0;
  int n = 0;
};

/// xs non-empty and finite, confidence in (0, 1); n = 1 gives lower = upper = mean.
/// Throws tether::InvalidArgumentError otherwise.
Interval student_t_interval(const std::vector<double>& xs, double confidence = 0.95);

/// "mean [lower, upper]" with `precision` digits after the point, e.g. "0.9991 [0.9985, 0.9997]".
std::string format_interval(const Interval& interval, int precision);

/// x with `precision` digits after the point; "nan" / "inf" / "-inf" where not finite.
std::string format_fixed(double x, int precision);

/// Flat result rows (one per method x problem x seed, or x iteration), written as a JSON array.
/// Each row is a JSON object whose values are null, booleans, numbers or strings; non-finite
/// numbers are stored as null.
class ResultsWriter {
 public:
  /// Appends one row. Throws InvalidArgumentError if `row` is not an object or has a nested
  /// object or array value.
  void add(nlohmann::json row);

  const std::vector<nlohmann::json>& rows() const { return rows_; }
  std::size_t size() const { return rows_.size(); }
  /// The rows as a pretty-printed JSON array (indent 2).
  std::string dump() const;
  /// Creates `dir` (and its parents) and writes dir/results.json; returns its path.
  /// Throws tether::Error when the directory or file cannot be written.
  std::filesystem::path write(const std::string& dir) const;

 private:
  std::vector<nlohmann::json> rows_;
};

/// Runs `python3 script out_dir` with the first python3 that imports matplotlib (the one on
/// PATH, then /usr/bin/python3: a pyenv build may lack it, Debian's has it once
/// scripts/install-deps.sh ran) and prints "plot: out_dir/png_name" to `log`, or why no plot was
/// drawn. Returns true when the script succeeded.
bool draw_plot(const std::string& script, const std::string& out_dir, const std::string& png_name,
               std::ostream& log);

/// A text table with aligned columns: a header row, a rule, then the rows; columns left-aligned
/// and separated by two spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  /// Throws ShapeError unless the row has as many cells as there are headers.
  void add_row(std::vector<std::string> cells);
  void print(std::ostream& out) const;
  std::string str() const;
  std::size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace tether::experiments
