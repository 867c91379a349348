#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/core/step_rule.hpp>

namespace tether {

bool SgdOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (!(learning_rate > 0.0) || !std::isfinite(learning_rate))
    return fail(detail::concat("learning_rate must be finite and > 0, got ", learning_rate));
  if (!(momentum >= 0.0 && momentum < 1.0))
    return fail(detail::concat("momentum must be in [0, 1), got ", momentum));
  if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay))
    return fail(detail::concat("weight_decay must be finite and >= 0, got ", weight_decay));
  return true;
}

void validate_step_rule(const StepRuleOptions& options, const std::string& who) {
  std::string why;
  const bool ok = std::visit([&](const auto& o) { return o.is_valid(&why); }, options);
  require(ok, who, ": ", step_rule_name(options), " step rule: ", why);
}

std::string step_rule_name(const StepRuleOptions& options) {
  if (const auto* adam = std::get_if<AdamOptions>(&options))
    return adam->weight_decay > 0.0 ? "adamw" : "adam";
  return "sgd";
}

namespace {
AdamOptions adam_options_of(const StepRuleOptions& options) {
  if (const auto* adam = std::get_if<AdamOptions>(&options)) return *adam;
  return AdamOptions{};
}
}  // namespace

StepRule::StepRule(const StepRuleOptions& options)
    : options_(options),
      adam_((validate_step_rule(options, "StepRule"), adam_options_of(options))) {}

void StepRule::direction(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> d,
                         Eigen::Ref<Vector> out) {
  require<ShapeError>(x.size() == d.size() && out.size() == x.size(), "StepRule: direction size ",
                      d.size(), " != parameter size ", x.size());
  if (std::holds_alternative<AdamOptions>(options_)) {
    adam_.direction(x, d, out);
    return;
  }
  const SgdOptions& sgd = std::get<SgdOptions>(options_);
  if (sgd.momentum > 0.0) {
    if (velocity_.size() != x.size()) velocity_ = Vector::Zero(x.size());
    velocity_ = sgd.momentum * velocity_ + d;
    out = -sgd.learning_rate * velocity_;
  } else {
    out = -sgd.learning_rate * d;
  }
  if (sgd.weight_decay != 0.0) out -= sgd.learning_rate * sgd.weight_decay * x;
}

void StepRule::step(Eigen::Ref<Vector> x, Eigen::Ref<const Vector> d) {
  const SgdOptions* sgd = std::get_if<SgdOptions>(&options_);
  if (sgd && sgd->momentum == 0.0 && sgd->weight_decay == 0.0) {
    require<ShapeError>(x.size() == d.size(), "StepRule: direction size ", d.size(),
                        " != parameter size ", x.size());
    x -= sgd->learning_rate * d;  // the common case, without a temporary
    return;
  }
  if (std::holds_alternative<AdamOptions>(options_)) {
    adam_.step(x, d);  // in place
    return;
  }
  Vector delta(x.size());
  direction(x, d, delta);
  x += delta;
}

void StepRule::reset() {
  adam_.reset();
  velocity_.resize(0);
}

bool StepRule::preconditioner(Eigen::Ref<Vector> h) const {
  if (!std::holds_alternative<AdamOptions>(options_) || adam_.steps_taken() == 0) return false;
  adam_.preconditioner(h);
  return true;
}

double StepRule::learning_rate() const {
  return std::visit([](const auto& o) { return o.learning_rate; }, options_);
}

}  // namespace tether
