#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <ostream>
#include <sstream>
#include <system_error>
#include <tether/core/errors.hpp>
#include <tether/experiments/support/report.hpp>
#include <utility>

namespace tether::experiments {

void add_common_options(CLI::App& app, CommonArgs& args) {
  app.add_flag("--quick", args.quick,
               "smaller sizes and fewer seeds, same accuracy settings (under 2 minutes)");
  app.add_option("--seeds", args.seeds, "number of seeds (0: the mode's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--out", args.out, "output directory for results.json and plots")
      ->capture_default_str();
}

int resolve_seeds(const CommonArgs& args, int full_default, int quick_default) {
  require(args.seeds >= 0, "resolve_seeds: seeds must be >= 0, got ", args.seeds);
  require(full_default >= 1 && quick_default >= 1,
          "resolve_seeds: the defaults must be >= 1, got full ", full_default, ", quick ",
          quick_default);
  if (args.seeds > 0) return args.seeds;
  return args.quick ? quick_default : full_default;
}

Interval student_t_interval(const std::vector<double>& xs, double confidence) {
  require(!xs.empty(), "student_t_interval: xs must be non-empty");
  require(confidence > 0.0 && confidence < 1.0,
          "student_t_interval: confidence must lie in (0, 1), got ", confidence);
  for (std::size_t j = 0; j < xs.size(); ++j)
    require(std::isfinite(xs[j]), "student_t_interval: xs[", j, "] must be finite, got ", xs[j]);
  const auto n = static_cast<double>(xs.size());
  const double mean = std::accumulate(xs.begin(), xs.end(), 0.0) / n;
  Interval ci{.mean = mean, .lower = mean, .upper = mean, .n = static_cast<int>(xs.size())};
  if (xs.size() < 2) return ci;
  double squares = 0.0;
  for (double x : xs) squares += (x - mean) * (x - mean);
  const double s = std::sqrt(squares / (n - 1.0));
  const boost::math::students_t dist(n - 1.0);
  const double t = boost::math::quantile(boost::math::complement(dist, (1.0 - confidence) / 2));
  const double half = t * s / std::sqrt(n);
  ci.lower = mean - half;
  ci.upper = mean + half;
  return ci;
}

std::string format_fixed(double x, int precision) {
  require(precision >= 0, "format_fixed: precision must be >= 0, got ", precision);
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << x;
  return out.str();
}

std::string format_interval(const Interval& interval, int precision) {
  return format_fixed(interval.mean, precision) + " [" + format_fixed(interval.lower, precision) +
         ", " + format_fixed(interval.upper, precision) + "]";
}

// ---- ResultsWriter ------------------------------------------------------------------------

void ResultsWriter::add(nlohmann::json row) {
  require(row.is_object(), "ResultsWriter::add: a row must be a JSON object, got a ",
          row.type_name());
  for (auto& [key, value] : row.items()) {
    require(!value.is_object() && !value.is_array(), "ResultsWriter::add: rows are flat, but \"",
            key, "\" holds a ", value.type_name());
    if (value.is_number_float() && !std::isfinite(value.get<double>())) value = nullptr;
  }
  rows_.push_back(std::move(row));
}

std::string ResultsWriter::dump() const {
  nlohmann::json array = nlohmann::json::array();
  for (const nlohmann::json& row : rows_) array.push_back(row);
  return array.dump(2);
}

std::filesystem::path ResultsWriter::write(const std::string& dir) const {
  require(!dir.empty(), "ResultsWriter::write: dir must be non-empty");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw Error(
        detail::concat("ResultsWriter::write: cannot create \"", dir, "\": ", ec.message()));
  const std::filesystem::path path = std::filesystem::path(dir) / "results.json";
  std::ofstream file(path);
  if (!file) throw Error(detail::concat("ResultsWriter::write: cannot open ", path.string()));
  file << dump() << '\n';
  file.close();
  if (!file) throw Error(detail::concat("ResultsWriter::write: cannot write ", path.string()));
  return path;
}

// ---- Table --------------------------------------------------------------------------------

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {
  require(!headers_.empty(), "Table: headers must be non-empty");
}

void Table::add_row(std::vector<std::string> cells) {
  require<ShapeError>(cells.size() == headers_.size(), "Table::add_row: the row has ", cells.size(),
                      " cells, expected ", headers_.size(), " (one per header)");
  rows_.push_back(std::move(cells));
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> width(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
  }
  const auto print_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) line += "  ";
      line += cells[c];
      if (c + 1 < cells.size()) line.append(width[c] - cells[c].size(), ' ');
    }
    out << line << '\n';
  };
  print_line(headers_);
  std::size_t total = 2 * (width.size() - 1);
  for (std::size_t w : width) total += w;
  out << std::string(total, '-') << '\n';
  for (const auto& row : rows_) print_line(row);
}

std::string Table::str() const {
  std::ostringstream out;
  print(out);
  return out.str();
}

bool draw_plot(const std::string& script, const std::string& out_dir, const std::string& png_name,
               std::ostream& log) {
  log.flush();
  std::cout.flush();
  for (const char* python : {"python3", "/usr/bin/python3"}) {
    const std::string probe = std::string(python) + " -c \"import matplotlib\" > /dev/null 2>&1";
    if (std::system(probe.c_str()) != 0) continue;
    const std::string command = std::string(python) + " \"" + script + "\" \"" + out_dir + "\"";
    if (std::system(command.c_str()) == 0) {
      log << "plot: " << (std::filesystem::path(out_dir) / png_name).string() << "\n";
      return true;
    }
    log << "plot: " << python << " " << script << " failed (see above)\n";
    return false;
  }
  log << "plot: not drawn (no python3 with matplotlib: tried python3, /usr/bin/python3); run "
      << script << " " << out_dir << " with one\n";
  return false;
}

}  // namespace tether::experiments
