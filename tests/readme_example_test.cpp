// The README's first example, compiled and checked against brute-force enumeration so it
// never rots.
#include <gtest/gtest.h>

#include <tether/examples/bit_widths.hpp>

namespace {

TEST(ReadmeExample, RcoFindsTheEnumeratedOptimum) {
  tether::Vector shares(6), bits(4), sensitivity(6);
  shares << 0.1, 0.1, 0.2, 0.2, 0.15, 0.25;
  bits << 2, 3, 4, 8;
  sensitivity << 50, 1, 20, 2, 10, 5;
  BitWidthProblem problem(shares, bits, sensitivity, /*average_bits=*/3.5);

  tether::RcoSolver solver({.steps = 200, .samples = 4});
  tether::AssignmentResult r = solver.minimize(problem, tether::callbacks::ProgressBar{});

  // Brute force over the 4^6 assignments within the budget.
  double best = std::numeric_limits<double>::infinity();
  tether::Assignment h(6, 0);
  tether::Matrix grad(6, 4);
  for (int code = 0; code < 4096; ++code) {
    for (int i = 0, c = code; i < 6; ++i, c /= 4) h[static_cast<std::size_t>(i)] = c % 4;
    if (tether::assignment_cost(problem.costs(), h) > problem.budget()) continue;
    best = std::min(best, problem.loss(tether::one_hot(h, 4), grad));
  }
  EXPECT_LE(r.cost, problem.budget());
  EXPECT_NEAR(r.loss, best, 1e-12 * best);
  EXPECT_NEAR(r.expected_cost, problem.budget(), 1e-12 * problem.budget());
}

}  // namespace
