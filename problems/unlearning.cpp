#include <cmath>
#include <numeric>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/unlearning.hpp>
#include <utility>

namespace tether::problems {

namespace {

ForgetRetainSplit make_split(const char* who, const Dataset& data,
                             const std::vector<bool>& in_forget) {
  ForgetRetainSplit split;
  for (Index i = 0; i < data.size(); ++i)
    (in_forget[static_cast<std::size_t>(i)] ? split.forget_indices : split.retain_indices)
        .push_back(i);
  require(!split.forget_indices.empty(), who, ": the forget set is empty");
  require(!split.retain_indices.empty(), who,
          ": the retain set is empty (every sample would be forgotten)");
  split.forget = data.subset(split.forget_indices);
  split.retain = data.subset(split.retain_indices);
  return split;
}

void check_beta(const char* who, double beta) {
  require(std::isfinite(beta) && beta > 0.0, who, ": beta must be finite and > 0, got ", beta);
}

}  // namespace

ForgetRetainSplit split_forget_class(const Dataset& data, int forget_class) {
  const char* who = "split_forget_class";
  data.validate(who);
  require(forget_class >= 0 && forget_class < data.classes, who, ": forget_class = ", forget_class,
          " outside [0, ", data.classes, ")");
  std::vector<bool> in_forget(data.y.size());
  for (std::size_t i = 0; i < data.y.size(); ++i) in_forget[i] = data.y[i] == forget_class;
  return make_split(who, data, in_forget);
}

ForgetRetainSplit split_forget_random(const Dataset& data, double fraction, std::uint64_t seed) {
  const char* who = "split_forget_random";
  data.validate(who);
  require(std::isfinite(fraction) && fraction > 0.0 && fraction < 1.0, who,
          ": fraction must lie in (0, 1), got ", fraction);
  const Index n = data.size();
  const Index count = static_cast<Index>(std::llround(fraction * static_cast<double>(n)));
  require(count >= 1, who, ": the forget set is empty: round(fraction n) = round(", fraction, " * ",
          n, ") = 0");
  require(count < n, who, ": the retain set is empty: round(fraction n) = round(", fraction, " * ",
          n, ") = ", n);
  std::vector<Index> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), Index{0});
  Rng rng(seed);
  std::vector<bool> in_forget(static_cast<std::size_t>(n), false);
  for (Index k = 0; k < count; ++k) {
    const auto j = k + static_cast<Index>(rng.index(static_cast<std::uint64_t>(n - k)));
    std::swap(perm[static_cast<std::size_t>(k)], perm[static_cast<std::size_t>(j)]);
    in_forget[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])] = true;
  }
  return make_split(who, data, in_forget);
}

// ---- losses -----------------------------------------------------------------------------------

NpoLoss::NpoLoss(double beta, Vector reference_log_likelihoods)
    : beta_(beta), reference_(std::move(reference_log_likelihoods)) {
  check_beta("NpoLoss", beta);
  require(reference_.allFinite(), "NpoLoss: reference_log_likelihoods has a non-finite entry");
}

double NpoLoss::value(double s, Index i) const {
  return (2.0 / beta_) * detail::softplus(beta_ * (s - reference_[i]));
}

double NpoLoss::first_derivative(double s, Index i) const {
  return 2.0 * detail::sigmoid(beta_ * (s - reference_[i]));
}

double NpoLoss::second_derivative(double s, Index i) const {
  const double p = detail::sigmoid(beta_ * (s - reference_[i]));
  return 2.0 * beta_ * p * (1.0 - p);
}

SimNpoLoss::SimNpoLoss(double beta, double gamma) : beta_(beta), gamma_(gamma) {
  check_beta("SimNpoLoss", beta);
  require(std::isfinite(gamma), "SimNpoLoss: gamma must be finite, got ", gamma);
}

double SimNpoLoss::value(double s, Index) const {
  return (2.0 / beta_) * detail::softplus(beta_ * s + gamma_);
}

double SimNpoLoss::first_derivative(double s, Index) const {
  return 2.0 * detail::sigmoid(beta_ * s + gamma_);
}

double SimNpoLoss::second_derivative(double s, Index) const {
  const double p = detail::sigmoid(beta_ * s + gamma_);
  return 2.0 * beta_ * p * (1.0 - p);
}

void detail::check_split(const std::string& who, const ForgetRetainSplit& split, Index features,
                         Index classes) {
  require(split.forget.size() >= 1, who, ": the forget set is empty");
  require(split.retain.size() >= 1, who, ": the retain set is empty");
  split.forget.validate(who + " (forget set)");
  split.retain.validate(who + " (retain set)");
  require<ShapeError>(split.forget.features() == features && split.retain.features() == features,
                      who, ": the forget / retain sets have ", split.forget.features(), " / ",
                      split.retain.features(), " features, the model takes ", features);
  require<ShapeError>(split.forget.classes == classes && split.retain.classes == classes, who,
                      ": the forget / retain sets have ", split.forget.classes, " / ",
                      split.retain.classes, " classes, the model has ", classes);
}

}  // namespace tether::problems
