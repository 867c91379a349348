#include <Eigen/Householder>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/solvers/orthoreg.hpp>
#include <utility>

namespace tether {

namespace {

using ColMatrix = Eigen::MatrixXd;

// L from |M|_F^2 (eps: the smoothing of kSmoothedFrobenius).
double term_value(double squared_norm, OrthoRegNorm norm, double eps) {
  switch (norm) {
    case OrthoRegNorm::kSquaredFrobenius:
      return squared_norm;
    case OrthoRegNorm::kSmoothedFrobenius:
      // sqrt(x + eps^2) - eps, written without the cancellation: 0 exactly at x = 0.
      return squared_norm / (std::sqrt(squared_norm + eps * eps) + eps);
    case OrthoRegNorm::kFrobenius:
    default:
      return std::sqrt(squared_norm);
  }
}

// s in dL/dDelta W = s (Delta W Delta W^T Delta W - Delta W): 2 / |M|_F (0 at |M|_F = 0, the
// subgradient the header documents), 4, or 2 / sqrt(|M|_F^2 + eps^2).
double gradient_factor(double squared_norm, OrthoRegNorm norm, double eps) {
  if (norm == OrthoRegNorm::kSquaredFrobenius) return 4.0;
  if (norm == OrthoRegNorm::kSmoothedFrobenius) return 2.0 / std::sqrt(squared_norm + eps * eps);
  return squared_norm > 0.0 ? 2.0 / std::sqrt(squared_norm) : 0.0;
}

void check_smoothing(double eps, const char* who) {
  require(std::isfinite(eps) && eps > 0.0, who, ": smoothing must be finite and > 0, got ", eps);
}

void check_scale(double scale, const char* who) {
  require(std::isfinite(scale), who, ": scale must be finite, got ", scale);
}

// L of one dense Delta W; where grad is given, grad += scale * dL/dDelta W.
double dense_term(ConstMatrixRef d, OrthoRegNorm norm, double eps, double scale, MatrixRef* grad) {
  const bool tall = d.rows() >= d.cols();
  const Index k = tall ? d.cols() : d.rows();
  // G = the smaller Gram. Eigen runs a symmetric rank-k update (m n k flops: the lower triangle,
  // then mirrored) on one thread and a general product (2 m n k flops) on all of them, so the
  // update is the faster up to 2 threads and the product beyond (768 x 768, measured on a 2-core
  // machine: update 20 ms on 1 or 2 threads; product 35 ms on 1, 18 ms on 2).
  ColMatrix m(k, k);
  if (Eigen::nbThreads() > 2) {
    if (tall)
      m.noalias() = d.transpose() * d;
    else
      m.noalias() = d * d.transpose();
  } else {
    m.setZero();
    if (tall)
      m.selfadjointView<Eigen::Lower>().rankUpdate(d.transpose());
    else
      m.selfadjointView<Eigen::Lower>().rankUpdate(d);
    for (Index j = 1; j < k; ++j)
      for (Index i = 0; i < j; ++i) m(i, j) = m(j, i);
  }
  m.diagonal().array() -= 1.0;
  const double squared_norm = m.squaredNorm();
  const double factor = gradient_factor(squared_norm, norm, eps);
  if (grad != nullptr && factor != 0.0 && scale != 0.0) {
    if (tall)
      grad->noalias() += (scale * factor) * d * m;  // 2 Delta W M / |M|_F, or 4 Delta W M
    else
      grad->noalias() += (scale * factor) * m * d;  // the wide case: M Delta W
  }
  return term_value(squared_norm, norm, eps);
}

void check_lora_shapes(ConstMatrixRef b, ConstMatrixRef a, double scaling, const char* who) {
  require<ShapeError>(b.cols() == a.rows() && b.cols() >= 1 && b.rows() >= 1 && a.cols() >= 1, who,
                      ": need B m x r and A r x n with m, n, r >= 1, got B ", b.rows(), " x ",
                      b.cols(), " and A ", a.rows(), " x ", a.cols());
  require(std::isfinite(scaling), who, ": scaling must be finite, got ", scaling);
}

// L of Delta W = c B A; where grad_b and grad_a are given, they take scale * dL/dB, dL/dA.
double lora_term(ConstMatrixRef b, ConstMatrixRef a, double c, OrthoRegNorm norm, double eps,
                 double scale, MatrixRef* grad_b, MatrixRef* grad_a) {
  const Index m = b.rows(), n = a.cols(), r = b.cols();
  const Index k = std::min(m, n);
  const bool with_gradient = grad_b != nullptr && scale != 0.0;
  if (r > k) {
    // The factored form needs r <= k; form Delta W and apply the chain rule.
    const Matrix d = c * b * a;
    if (!with_gradient) return dense_term(d, norm, eps, 0.0, nullptr);
    Matrix gd = Matrix::Zero(m, n);
    MatrixRef gd_ref(gd);
    const double value = dense_term(d, norm, eps, 1.0, &gd_ref);
    grad_b->noalias() += (scale * c) * gd * a.transpose();
    grad_a->noalias() += (scale * c) * b.transpose() * gd;
    return value;
  }
  // Thin QR: B = Q_B R_B, A^T = Q_A R_A, so Delta W = Q_B K Q_A^T with K = c R_B R_A^T and, the
  // columns of Q_A (tall) or Q_B (wide) being orthonormal,
  //   |M|_F^2 = |K^T K - I_r|_F^2 + (k - r)      (k - r eigenvalues of G are 0).
  const Eigen::HouseholderQR<ColMatrix> qr_b(b);
  const Eigen::HouseholderQR<ColMatrix> qr_a(a.transpose());
  const ColMatrix r_b = qr_b.matrixQR().topRows(r).triangularView<Eigen::Upper>();
  const ColMatrix r_a = qr_a.matrixQR().topRows(r).triangularView<Eigen::Upper>();
  const ColMatrix kk = c * r_b * r_a.transpose();
  ColMatrix e = kk.transpose() * kk;
  e.diagonal().array() -= 1.0;
  const double squared_norm = e.squaredNorm() + static_cast<double>(k - r);
  const double factor = gradient_factor(squared_norm, norm, eps);
  if (with_gradient && factor != 0.0) {
    // dL/dB = s c^2 B Q X and dL/dA = s c^2 X P A, X = c^2 P Q - I_r (the header's derivation).
    const ColMatrix p = b.transpose() * b;
    const ColMatrix q = a * a.transpose();
    ColMatrix x = (c * c) * p * q;
    x.diagonal().array() -= 1.0;
    const double coeff = scale * factor * c * c;
    const ColMatrix qx = q * x;
    const ColMatrix xp = x * p;
    grad_b->noalias() += coeff * b * qx;
    grad_a->noalias() += coeff * xp * a;
  }
  return term_value(squared_norm, norm, eps);
}

}  // namespace

bool OrthoRegOptions::is_valid(std::string* why) const {
  if (!(std::isfinite(lambda) && lambda >= 0.0)) {
    if (why) *why = detail::concat("OrthoRegOptions: lambda must be finite and >= 0, got ", lambda);
    return false;
  }
  if (norm != OrthoRegNorm::kFrobenius && norm != OrthoRegNorm::kSquaredFrobenius &&
      norm != OrthoRegNorm::kSmoothedFrobenius) {
    if (why) *why = "OrthoRegOptions: norm is not an OrthoRegNorm";
    return false;
  }
  if (!(std::isfinite(smoothing) && smoothing > 0.0)) {
    if (why)
      *why = detail::concat("OrthoRegOptions: smoothing must be finite and > 0, got ", smoothing);
    return false;
  }
  return true;
}

// ---- one matrix -------------------------------------------------------------------------------

double orthoreg_value(ConstMatrixRef delta_w, OrthoRegNorm norm, double smoothing) {
  require<ShapeError>(delta_w.rows() >= 1 && delta_w.cols() >= 1,
                      "orthoreg_value: Delta W must be non-empty, got ", delta_w.rows(), " x ",
                      delta_w.cols());
  check_smoothing(smoothing, "orthoreg_value");
  return dense_term(delta_w, norm, smoothing, 0.0, nullptr);
}

double orthoreg_add_gradient(ConstMatrixRef delta_w, OrthoRegNorm norm, double scale,
                             MatrixRef grad, double smoothing) {
  constexpr const char* kWho = "orthoreg_add_gradient";
  require<ShapeError>(delta_w.rows() >= 1 && delta_w.cols() >= 1, kWho,
                      ": Delta W must be non-empty, got ", delta_w.rows(), " x ", delta_w.cols());
  require<ShapeError>(grad.rows() == delta_w.rows() && grad.cols() == delta_w.cols(), kWho,
                      ": grad is ", grad.rows(), " x ", grad.cols(), ", Delta W is ",
                      delta_w.rows(), " x ", delta_w.cols());
  check_scale(scale, kWho);
  check_smoothing(smoothing, kWho);
  return dense_term(delta_w, norm, smoothing, scale, &grad);
}

Matrix orthoreg_gradient(ConstMatrixRef delta_w, OrthoRegNorm norm, double smoothing) {
  Matrix g = Matrix::Zero(delta_w.rows(), delta_w.cols());
  orthoreg_add_gradient(delta_w, norm, 1.0, g, smoothing);
  return g;
}

double lora_orthoreg_value(ConstMatrixRef b, ConstMatrixRef a, double scaling, OrthoRegNorm norm,
                           double smoothing) {
  check_lora_shapes(b, a, scaling, "lora_orthoreg_value");
  check_smoothing(smoothing, "lora_orthoreg_value");
  return lora_term(b, a, scaling, norm, smoothing, 0.0, nullptr, nullptr);
}

double lora_orthoreg_add_gradient(ConstMatrixRef b, ConstMatrixRef a, double scaling,
                                  OrthoRegNorm norm, double scale, MatrixRef grad_b,
                                  MatrixRef grad_a, double smoothing) {
  constexpr const char* kWho = "lora_orthoreg_add_gradient";
  check_lora_shapes(b, a, scaling, kWho);
  require<ShapeError>(grad_b.rows() == b.rows() && grad_b.cols() == b.cols() &&
                          grad_a.rows() == a.rows() && grad_a.cols() == a.cols(),
                      kWho, ": grad_b is ", grad_b.rows(), " x ", grad_b.cols(), " for B ",
                      b.rows(), " x ", b.cols(), ", grad_a is ", grad_a.rows(), " x ",
                      grad_a.cols(), " for A ", a.rows(), " x ", a.cols());
  check_scale(scale, kWho);
  check_smoothing(smoothing, kWho);
  return lora_term(b, a, scaling, norm, smoothing, scale, &grad_b, &grad_a);
}

// ---- layers -----------------------------------------------------------------------------------

OrthoRegLayer OrthoRegLayer::full(std::string weight, Matrix w0) {
  OrthoRegLayer l;
  l.kind = Kind::kFull;
  l.weight = std::move(weight);
  l.reference = std::move(w0);
  return l;
}

OrthoRegLayer OrthoRegLayer::update(std::string weight) {
  OrthoRegLayer l;
  l.kind = Kind::kUpdate;
  l.weight = std::move(weight);
  return l;
}

OrthoRegLayer OrthoRegLayer::lora(std::string b, std::string a, double alpha) {
  OrthoRegLayer l;
  l.kind = Kind::kLoRA;
  l.lora_b = std::move(b);
  l.lora_a = std::move(a);
  l.lora_alpha = alpha;
  return l;
}

OrthoReg::OrthoReg(ParameterLayout layout, std::vector<OrthoRegLayer> layers,
                   const OrthoRegOptions& options)
    : layout_(std::move(layout)), layers_(std::move(layers)), options_(options) {
  std::string why;
  require(options_.is_valid(&why), "OrthoReg: ", why);
  require(!layers_.empty(), "OrthoReg: no layers to regularise");
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const OrthoRegLayer& l = layers_[i];
    switch (l.kind) {
      case OrthoRegLayer::Kind::kFull: {
        const ParameterBlock& w = layout_.block(l.weight);
        require<ShapeError>(l.reference.rows() == w.rows && l.reference.cols() == w.cols,
                            "OrthoReg: layer ", i, " ('", l.weight, "'): W0 is ",
                            l.reference.rows(), " x ", l.reference.cols(), ", the weight is ",
                            w.rows, " x ", w.cols);
        break;
      }
      case OrthoRegLayer::Kind::kUpdate:
        layout_.block(l.weight);
        break;
      case OrthoRegLayer::Kind::kLoRA: {
        const ParameterBlock& b = layout_.block(l.lora_b);
        const ParameterBlock& a = layout_.block(l.lora_a);
        require(l.lora_b != l.lora_a, "OrthoReg: layer ", i, ": B and A are the same block '",
                l.lora_b, "'");
        require<ShapeError>(b.cols == a.rows, "OrthoReg: layer ", i, ": B ('", l.lora_b, "') is ",
                            b.rows, " x ", b.cols, " and A ('", l.lora_a, "') is ", a.rows, " x ",
                            a.cols, "; B's columns must equal A's rows (the rank r)");
        require(std::isfinite(l.lora_alpha) && l.lora_alpha > 0.0, "OrthoReg: layer ", i,
                ": the LoRA alpha must be finite and > 0, got ", l.lora_alpha);
        break;
      }
      default:
        require(false, "OrthoReg: layer ", i, " has no valid kind");
    }
  }
}

template <class Get, class GetGradient>
double OrthoReg::evaluate(Get&& get, GetGradient&& get_gradient, double scale, bool with_gradient,
                          std::vector<double>* per_layer) const {
  double total = 0.0;
  for (const OrthoRegLayer& l : layers_) {
    double v = 0.0;
    switch (l.kind) {
      case OrthoRegLayer::Kind::kFull: {
        const Matrix d = get(l.weight) - l.reference;
        if (with_gradient) {
          auto g = get_gradient(l.weight);
          MatrixRef gr(g);
          v = dense_term(d, options_.norm, options_.smoothing, scale, &gr);
        } else {
          v = dense_term(d, options_.norm, options_.smoothing, 0.0, nullptr);
        }
        break;
      }
      case OrthoRegLayer::Kind::kUpdate: {
        if (with_gradient) {
          auto g = get_gradient(l.weight);
          MatrixRef gr(g);
          v = dense_term(get(l.weight), options_.norm, options_.smoothing, scale, &gr);
        } else {
          v = dense_term(get(l.weight), options_.norm, options_.smoothing, 0.0, nullptr);
        }
        break;
      }
      case OrthoRegLayer::Kind::kLoRA: {
        const auto& b = get(l.lora_b);
        const auto& a = get(l.lora_a);
        const double c = l.lora_alpha / static_cast<double>(b.cols());
        if (with_gradient) {
          auto gb = get_gradient(l.lora_b);
          auto ga = get_gradient(l.lora_a);
          MatrixRef gbr(gb), gar(ga);
          v = lora_term(b, a, c, options_.norm, options_.smoothing, scale, &gbr, &gar);
        } else {
          v = lora_term(b, a, c, options_.norm, options_.smoothing, 0.0, nullptr, nullptr);
        }
        break;
      }
    }
    if (per_layer != nullptr) per_layer->push_back(v);
    total += v;
  }
  return total;
}

double OrthoReg::value(const Vector& theta) const {
  layout_.check_size(theta);
  auto get = [&](const std::string& name) { return layout_.matrix(theta, name); };
  auto no_gradient = [&](const std::string&) -> Eigen::Map<Matrix> {
    return {nullptr, 0, 0};  // never called without a gradient
  };
  return evaluate(get, no_gradient, 0.0, false, nullptr);
}

double OrthoReg::value_and_add_gradient(const Vector& theta, double scale, Vector& g) const {
  layout_.check_size(theta);
  layout_.check_size(g, "the gradient");
  check_scale(scale, "OrthoReg::add_gradient");
  auto get = [&](const std::string& name) { return layout_.matrix(theta, name); };
  auto get_gradient = [&](const std::string& name) { return layout_.matrix(g, name); };
  return evaluate(get, get_gradient, scale, scale != 0.0, nullptr);
}

void OrthoReg::add_gradient(const Vector& theta, double scale, Vector& g) const {
  value_and_add_gradient(theta, scale, g);
}

std::vector<double> OrthoReg::layer_values(const Vector& theta) const {
  layout_.check_size(theta);
  std::vector<double> out;
  out.reserve(layers_.size());
  auto get = [&](const std::string& name) { return layout_.matrix(theta, name); };
  auto no_gradient = [&](const std::string&) -> Eigen::Map<Matrix> { return {nullptr, 0, 0}; };
  evaluate(get, no_gradient, 0.0, false, &out);
  return out;
}

Matrix OrthoReg::delta_w(const Vector& theta, std::size_t layer) const {
  require(layer < layers_.size(), "OrthoReg::delta_w: layer ", layer, " of ", layers_.size());
  layout_.check_size(theta);
  const OrthoRegLayer& l = layers_[layer];
  switch (l.kind) {
    case OrthoRegLayer::Kind::kFull:
      return layout_.matrix(theta, l.weight) - l.reference;
    case OrthoRegLayer::Kind::kUpdate:
      return layout_.matrix(theta, l.weight);
    case OrthoRegLayer::Kind::kLoRA: {
      const auto b = layout_.matrix(theta, l.lora_b);
      const auto a = layout_.matrix(theta, l.lora_a);
      return (l.lora_alpha / static_cast<double>(b.cols())) * b * a;
    }
  }
  return {};
}

namespace {
void check_named(const ParameterLayout& layout, const NamedTensors& t, const char* what) {
  for (const ParameterBlock& b : layout.blocks()) {
    require<ShapeError>(t.contains(b.name), "OrthoReg: ", what, " has no tensor '", b.name, "'");
    const Matrix& m = t.at(b.name);
    require<ShapeError>(m.rows() == b.rows && m.cols() == b.cols, "OrthoReg: ", what, " tensor '",
                        b.name, "' is ", m.rows(), " x ", m.cols(), ", the layout says ", b.rows,
                        " x ", b.cols);
  }
}
}  // namespace

double OrthoReg::value(const NamedTensors& params) const {
  check_named(layout_, params, "params");
  auto get = [&](const std::string& name) -> const Matrix& { return params.at(name); };
  auto no_gradient = [&](const std::string&) -> Eigen::Map<Matrix> { return {nullptr, 0, 0}; };
  return evaluate(get, no_gradient, 0.0, false, nullptr);
}

void OrthoReg::add_gradient(const NamedTensors& params, double scale, NamedTensors& grad) const {
  check_named(layout_, params, "params");
  check_named(layout_, grad, "grad");
  check_scale(scale, "OrthoReg::add_gradient");
  auto get = [&](const std::string& name) -> const Matrix& { return params.at(name); };
  auto get_gradient = [&](const std::string& name) -> Eigen::Map<Matrix> {
    Matrix& m = grad.at(name);
    return {m.data(), m.rows(), m.cols()};
  };
  evaluate(get, get_gradient, scale, scale != 0.0, nullptr);
}

}  // namespace tether
