#include <cmath>
#include <tether/core/adam.hpp>
#include <tether/core/errors.hpp>

namespace tether {

bool AdamOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (!(learning_rate > 0.0) || !std::isfinite(learning_rate))
    return fail(detail::concat("learning_rate must be finite and > 0, got ", learning_rate));
  if (!(beta1 >= 0.0 && beta1 < 1.0))
    return fail(detail::concat("beta1 must be in [0, 1), got ", beta1));
  if (!(beta2 >= 0.0 && beta2 < 1.0))
    return fail(detail::concat("beta2 must be in [0, 1), got ", beta2));
  if (!(epsilon > 0.0) || !std::isfinite(epsilon))
    return fail(detail::concat("epsilon must be finite and > 0, got ", epsilon));
  if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay))
    return fail(detail::concat("weight_decay must be finite and >= 0, got ", weight_decay));
  return true;
}

Adam::Adam(const AdamOptions& options) : options_(options) {
  std::string why;
  require(options_.is_valid(&why), "AdamOptions: ", why);
}

// The update of every entry j, in one pass: advances the moments and hands the step
// delta_j = x_j,new - x_j to `apply(j, delta_j)`. Element-wise, so splitting it over threads
// changes nothing in the result. step() and direction() share it, so both give the same bits.
template <class Apply>
void Adam::update(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> g, Apply apply) {
  require<ShapeError>(x.size() == g.size(), "Adam: gradient size ", g.size(), " != parameter size ",
                      x.size());
  if (m_.size() != x.size()) {
    m_ = Vector::Zero(x.size());
    v_ = Vector::Zero(x.size());
    t_ = 0;
  }
  ++t_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double c1 = 1.0 - std::pow(b1, static_cast<double>(t_));
  const double c2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  const double lr = options_.learning_rate, eps = options_.epsilon, wd = options_.weight_decay;
  // Raw pointers and `simd`: the entries are independent, which the compiler cannot prove
  // through the members and Eigen::Refs, so without them the loop stays scalar.
  double* m = m_.data();
  double* v = v_.data();
  const double* gj = g.data();
  const double* xj = x.data();
  const Index n = x.size();
#pragma omp parallel for simd schedule(static) if (n >= (Index{1} << 16))
  for (Index j = 0; j < n; ++j) {
    m[j] = b1 * m[j] + (1.0 - b1) * gj[j];
    v[j] = b2 * v[j] + (1.0 - b2) * gj[j] * gj[j];
    double delta = -lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + eps);
    if (wd != 0.0) delta -= lr * wd * xj[j];  // (never 0 x inf: -inf logits mask an option)
    apply(j, delta);
  }
}

void Adam::direction(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> g,
                     Eigen::Ref<Vector> out) {
  require<ShapeError>(out.size() == x.size(), "Adam: output size ", out.size(),
                      " != parameter size ", x.size());
  update(x, g, [&out](Index j, double delta) { out[j] = delta; });
}

void Adam::trial(Eigen::Ref<const Vector> x, Eigen::Ref<const Vector> g,
                 Eigen::Ref<Vector> out) {
  require<ShapeError>(out.size() == x.size(), "Adam: output size ", out.size(),
                      " != parameter size ", x.size());
  double* o = out.data();
  const double* xj = x.data();
  update(x, g, [o, xj](Index j, double delta) { o[j] = xj[j] + delta; });
}

void Adam::preconditioner(Eigen::Ref<Vector> h) const {
  require(t_ >= 1, "Adam::preconditioner: no step taken yet, so there is no second moment");
  require<ShapeError>(h.size() == v_.size(), "Adam::preconditioner: output size ", h.size(),
                      " != parameter size ", v_.size());
  // The same expression as update(), so h_j is the denominator the last step divided by.
  const double c2 = 1.0 - std::pow(options_.beta2, static_cast<double>(t_));
  const double eps = options_.epsilon;
  for (Index j = 0; j < h.size(); ++j) h[j] = std::sqrt(v_[j] / c2) + eps;
}

void Adam::step(Eigen::Ref<Vector> x, Eigen::Ref<const Vector> g) {
  // In place, without a temporary: x_j is read (for the decay) before it is written.
  update(x, g, [&x](Index j, double delta) { x[j] += delta; });
}

}  // namespace tether
