// The experiment support helpers: Student-t intervals against hand-computed values, JSON rows
// with non-finite numbers as null, the common command line, and the aligned table.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/experiments/support/report.hpp>
#include <vector>

namespace tether::experiments {
namespace {

TEST(Report, StudentTIntervalMatchesHandComputation) {
  // mean 3, s = sqrt(2.5) = 1.581139, t_{0.975, 4} = 2.776445: half width 1.963243.
  const Interval ci = student_t_interval({1, 2, 3, 4, 5});
  EXPECT_EQ(ci.n, 5);
  EXPECT_DOUBLE_EQ(ci.mean, 3.0);
  EXPECT_NEAR(ci.lower, 3.0 - 1.963243, 1e-6);
  EXPECT_NEAR(ci.upper, 3.0 + 1.963243, 1e-6);
  // 99%: t_{0.995, 4} = 4.604095, half width 4.604095 * 1.581139 / 2.236068 = 3.255587.
  const Interval wide = student_t_interval({1, 2, 3, 4, 5}, 0.99);
  EXPECT_NEAR(wide.upper - wide.mean, 3.255587, 1e-6);
  // Two samples {0, 2}: s = sqrt(2), t_{0.975, 1} = 12.706205, half width 12.706205.
  const Interval two = student_t_interval({0, 2});
  EXPECT_NEAR(two.lower, 1.0 - 12.706205, 1e-6);
}

TEST(Report, StudentTIntervalEdgeCases) {
  const Interval one = student_t_interval({0.75});
  EXPECT_EQ(one.n, 1);
  EXPECT_EQ(one.mean, 0.75);
  EXPECT_EQ(one.lower, 0.75);
  EXPECT_EQ(one.upper, 0.75);
  const Interval same = student_t_interval({2, 2, 2});
  EXPECT_EQ(same.lower, 2.0);
  EXPECT_EQ(same.upper, 2.0);
  EXPECT_THROW(student_t_interval({}), InvalidArgumentError);
  EXPECT_THROW(student_t_interval({1, 2}, 1.0), InvalidArgumentError);
  EXPECT_THROW(student_t_interval({1, 2}, 0.0), InvalidArgumentError);
  EXPECT_THROW(student_t_interval({1, std::nan("")}), InvalidArgumentError);
}

TEST(Report, FormatInterval) {
  EXPECT_EQ(format_interval({.mean = 0.99912, .lower = 0.99849, .upper = 0.99971, .n = 5}, 4),
            "0.9991 [0.9985, 0.9997]");
  EXPECT_EQ(format_interval({.mean = 3, .lower = 1.036757, .upper = 4.963243, .n = 5}, 2),
            "3.00 [1.04, 4.96]");
  EXPECT_EQ(format_fixed(std::numeric_limits<double>::quiet_NaN(), 3), "nan");
  EXPECT_EQ(format_fixed(-std::numeric_limits<double>::infinity(), 3), "-inf");
}

TEST(Report, ResultsWriterStoresNonFiniteAsNullAndWritesAnArray) {
  ResultsWriter results;
  results.add({{"method", "rco"}, {"seed", 1}, {"ratio", 0.9991}, {"ok", true}});
  results.add({{"method", "penalty"},
               {"seed", 1},
               {"ratio", std::numeric_limits<double>::quiet_NaN()},
               {"violation", std::numeric_limits<double>::infinity()}});
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results.rows()[1]["ratio"].is_null());
  EXPECT_TRUE(results.rows()[1]["violation"].is_null());
  EXPECT_EQ(results.rows()[0]["ratio"].get<double>(), 0.9991);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / "tether_report_test" / "nested";
  std::filesystem::remove_all(dir.parent_path());
  const std::filesystem::path path = results.write(dir.string());
  EXPECT_EQ(path, dir / "results.json");
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_NE(text.str().find("\"ratio\": null"), std::string::npos) << text.str();
  const nlohmann::json back = nlohmann::json::parse(text.str());
  ASSERT_TRUE(back.is_array());
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0]["method"], "rco");
  EXPECT_EQ(back[0]["seed"], 1);
  EXPECT_EQ(back[0]["ratio"].get<double>(), 0.9991);
  EXPECT_TRUE(back[1]["ratio"].is_null());
  std::filesystem::remove_all(dir.parent_path());
}

TEST(Report, ResultsWriterRefusesNestedOrNonObjectRows) {
  ResultsWriter results;
  EXPECT_THROW(results.add(nlohmann::json::array({1, 2})), InvalidArgumentError);
  EXPECT_THROW(results.add({{"curve", {1, 2, 3}}}), InvalidArgumentError);
  EXPECT_THROW(results.add({{"inner", {{"a", 1}}}}), InvalidArgumentError);
  EXPECT_EQ(results.size(), 0u);
  EXPECT_EQ(results.dump(), "[]");
}

TEST(Report, TableAlignsColumns) {
  Table table({"method", "ratio", "time"});
  table.add_row({"rco", "0.9991 [0.9985, 0.9997]", "1.2"});
  table.add_row({"augmented-lagrangian", "0.8", "10.25"});
  EXPECT_THROW(table.add_row({"too", "few"}), ShapeError);
  const std::string expected =
      "method                ratio                    time\n"
      "----------------------------------------------------\n"
      "rco                   0.9991 [0.9985, 0.9997]  1.2\n"
      "augmented-lagrangian  0.8                      10.25\n";
  EXPECT_EQ(table.str(), expected);
  std::ostringstream out;
  table.print(out);
  EXPECT_EQ(out.str(), expected);
}

TEST(Report, CommonOptions) {
  {
    CommonArgs args;
    CLI::App app{"test"};
    add_common_options(app, args);
    const char* argv[] = {"prog", "--quick", "--seeds", "3", "--out", "some/dir"};
    app.parse(6, argv);
    EXPECT_TRUE(args.quick);
    EXPECT_EQ(args.seeds, 3);
    EXPECT_EQ(args.out, "some/dir");
    EXPECT_EQ(resolve_seeds(args, 5, 2), 3);
  }
  {
    CommonArgs args;
    CLI::App app{"test"};
    add_common_options(app, args);
    const char* argv[] = {"prog"};
    app.parse(1, argv);
    EXPECT_FALSE(args.quick);
    EXPECT_EQ(args.out, "results");
    EXPECT_EQ(resolve_seeds(args, 5, 2), 5);
    args.quick = true;
    EXPECT_EQ(resolve_seeds(args, 5, 2), 2);
  }
  {
    CommonArgs args;
    CLI::App app{"test"};
    add_common_options(app, args);
    const char* argv[] = {"prog", "--seeds", "-1"};
    EXPECT_THROW(app.parse(3, argv), CLI::ValidationError);
  }
}

}  // namespace
}  // namespace tether::experiments
