#include <algorithm>
#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/core/task_vector.hpp>

namespace tether {

namespace {

std::string shape_of(const Matrix& m) { return detail::concat(m.rows(), " x ", m.cols()); }

template <class... Where>
void check_accuracy(double a, const char* who, const Where&... where) {
  require<NumericalError>(std::isfinite(a) && a >= 0.0, who, ": ", where..., " is ", a,
                          "; an accuracy must be finite and >= 0");
}

}  // namespace

// ---- NamedTensors -----------------------------------------------------------------------------

NamedTensors::NamedTensors(std::initializer_list<std::pair<std::string, Matrix>> tensors) {
  for (const auto& [name, value] : tensors) insert(name, value);
}

void NamedTensors::insert(std::string name, Matrix value) {
  require(!name.empty(), "NamedTensors::insert: the name must not be empty");
  require(!contains(name), "NamedTensors::insert: a tensor named '", name, "' is already present");
  tensors_.emplace(std::move(name), std::move(value));
}

const Matrix& NamedTensors::at(std::string_view name) const {
  const auto it = tensors_.find(name);
  require(it != tensors_.end(), "NamedTensors: no tensor named '", name, "'");
  return it->second;
}

Matrix& NamedTensors::at(std::string_view name) {
  const auto it = tensors_.find(name);
  require(it != tensors_.end(), "NamedTensors: no tensor named '", name, "'");
  return it->second;
}

Index NamedTensors::parameter_count() const {
  Index n = 0;
  for (const auto& [name, m] : tensors_) n += m.size();
  return n;
}

std::vector<std::string> NamedTensors::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, m] : tensors_) out.push_back(name);
  return out;
}

void NamedTensors::check_compatible(const NamedTensors& other, std::string_view what) const {
  for (const auto& [name, m] : tensors_) {
    const auto it = other.tensors_.find(name);
    require<ShapeError>(it != other.tensors_.end(), what, ": tensor '", name,
                        "' is missing from the second operand");
    require<ShapeError>(it->second.rows() == m.rows() && it->second.cols() == m.cols(), what,
                        ": tensor '", name, "' is ", shape_of(m), " in the first operand and ",
                        shape_of(it->second), " in the second");
  }
  for (const auto& [name, m] : other.tensors_)
    require<ShapeError>(contains(name), what, ": tensor '", name,
                        "' is missing from the first operand");
}

NamedTensors& NamedTensors::operator+=(const NamedTensors& other) { return add_scaled(1.0, other); }

NamedTensors& NamedTensors::operator-=(const NamedTensors& other) {
  return add_scaled(-1.0, other);
}

NamedTensors& NamedTensors::operator*=(double factor) {
  for (auto& [name, m] : tensors_) m *= factor;
  return *this;
}

NamedTensors& NamedTensors::add_scaled(double factor, const NamedTensors& other) {
  check_compatible(other, "NamedTensors arithmetic");
  for (auto& [name, m] : tensors_) {
    if (factor == 1.0)
      m += other.tensors_.find(name)->second;
    else if (factor == -1.0)
      m -= other.tensors_.find(name)->second;
    else
      m += factor * other.tensors_.find(name)->second;
  }
  return *this;
}

NamedTensors operator+(NamedTensors a, const NamedTensors& b) { return a += b; }
NamedTensors operator-(NamedTensors a, const NamedTensors& b) { return a -= b; }
NamedTensors operator-(NamedTensors a) { return a *= -1.0; }
NamedTensors operator*(double factor, NamedTensors a) { return a *= factor; }
NamedTensors operator*(NamedTensors a, double factor) { return a *= factor; }

TaskVector task_vector(const NamedTensors& finetuned, const NamedTensors& pretrained) {
  return finetuned - pretrained;
}

NamedTensors zeros_like(const NamedTensors& like) {
  NamedTensors out;
  for (const auto& [name, m] : like) out.insert(name, Matrix::Zero(m.rows(), m.cols()));
  return out;
}

NamedTensors sum(const std::vector<NamedTensors>& tensors) {
  require(!tensors.empty(), "sum: the list of tensors is empty");
  NamedTensors total = tensors.front();
  for (std::size_t i = 1; i < tensors.size(); ++i) total += tensors[i];
  return total;
}

double dot(const NamedTensors& a, const NamedTensors& b) {
  a.check_compatible(b, "dot");
  double total = 0.0;
  for (const auto& [name, m] : a) total += m.cwiseProduct(b.at(name)).sum();
  return total;
}

double norm(const NamedTensors& a) {
  double total = 0.0;
  for (const auto& [name, m] : a) total += m.squaredNorm();
  return std::sqrt(total);
}

double cosine(const NamedTensors& a, const NamedTensors& b) {
  const double ab = dot(a, b);  // checks compatibility first
  const double na = norm(a), nb = norm(b);
  require(na > 0.0, "cosine: the first task vector has norm 0 (no direction, cosine undefined)");
  require(nb > 0.0, "cosine: the second task vector has norm 0 (no direction, cosine undefined)");
  // |cos| <= 1 in exact arithmetic; rounding can exceed it by an ulp or two.
  return std::clamp(ab / (na * nb), -1.0, 1.0);
}

ParameterLayout layout_of(const NamedTensors& tensors) {
  ParameterLayout layout;
  for (const auto& [name, m] : tensors) layout.add(name, m.rows(), m.cols());
  return layout;
}

Vector flatten(const NamedTensors& tensors, const ParameterLayout& layout) {
  require<ShapeError>(tensors.size() == layout.blocks().size(), "flatten: ", tensors.size(),
                      " tensors for a layout of ", layout.blocks().size(), " blocks");
  Vector theta(layout.size());
  for (const ParameterBlock& b : layout.blocks()) {
    require<ShapeError>(tensors.contains(b.name), "flatten: tensor '", b.name,
                        "' of the layout is missing");
    const Matrix& m = tensors.at(b.name);
    require<ShapeError>(m.rows() == b.rows && m.cols() == b.cols, "flatten: tensor '", b.name,
                        "' is ", shape_of(m), ", the layout says ", b.rows, " x ", b.cols);
    layout.matrix(theta, b) = m;
  }
  return theta;
}

NamedTensors unflatten(const Vector& theta, const ParameterLayout& layout) {
  layout.check_size(theta);
  NamedTensors out;
  for (const ParameterBlock& b : layout.blocks()) out.insert(b.name, layout.matrix(theta, b));
  return out;
}

// ---- the alpha searches -----------------------------------------------------------------------

bool AlphaGrid::is_valid(std::string* why) const {
  auto fail = [why](std::string m) {
    if (why) *why = std::move(m);
    return false;
  };
  if (!std::isfinite(lo) || !std::isfinite(hi))
    return fail(
        detail::concat("AlphaGrid: lo and hi must be finite, got lo = ", lo, ", hi = ", hi));
  if (lo > hi)
    return fail(detail::concat("AlphaGrid: need lo <= hi, got lo = ", lo, ", hi = ", hi));
  if (points < 1 || (lo < hi && points < 2))
    return fail(
        detail::concat("AlphaGrid: points must be >= 2 (>= 1 where lo == hi), got ", points));
  return true;
}

std::vector<double> AlphaGrid::values() const {
  std::string why;
  require(is_valid(&why), why);
  std::vector<double> v(static_cast<std::size_t>(points));
  for (int i = 0; i < points; ++i)
    v[static_cast<std::size_t>(i)] =
        points == 1 ? lo : lo + (hi - lo) * static_cast<double>(i) / (points - 1);
  v.back() = hi;
  return v;
}

bool NegationOptions::is_valid(std::string* why) const {
  if (!grid.is_valid(why)) return false;
  if (!(control_fraction > 0.0 && control_fraction <= 1.0)) {
    if (why)
      *why = detail::concat("NegationOptions: control_fraction must be in (0, 1], got ",
                            control_fraction);
    return false;
  }
  return true;
}

AdditionSearchResult search_addition_alpha(const NamedTensors& theta0,
                                           const std::vector<TaskVector>& task_vectors,
                                           const TaskEvaluator& evaluate, const AlphaGrid& grid) {
  constexpr const char* kWho = "search_addition_alpha";
  require(!task_vectors.empty(), kWho, ": no task vectors");
  require(static_cast<bool>(evaluate), kWho, ": the evaluation function is empty");
  std::string why;
  require(grid.is_valid(&why), kWho, ": ", why);
  for (const TaskVector& tau : task_vectors) theta0.check_compatible(tau, kWho);

  const std::size_t n_tasks = task_vectors.size();
  AdditionSearchResult r;
  r.alphas = grid.values();
  r.finetuned_accuracies.resize(n_tasks);
  for (std::size_t t = 0; t < n_tasks; ++t) {
    const double a = evaluate(theta0 + task_vectors[t], t);
    check_accuracy(a, kWho, "the fine-tuned accuracy of task ", t);
    require(a > 0.0, kWho, ": the fine-tuned accuracy of task ", t,
            " is 0, so its normalised accuracy is undefined");
    r.finetuned_accuracies[t] = a;
  }

  const NamedTensors tau_sum = sum(task_vectors);
  r.accuracies.resize(static_cast<Index>(r.alphas.size()), static_cast<Index>(n_tasks));
  r.mean_normalized.resize(r.alphas.size());
  for (std::size_t i = 0; i < r.alphas.size(); ++i) {
    NamedTensors theta = theta0;
    theta.add_scaled(r.alphas[i], tau_sum);
    double total = 0.0;
    for (std::size_t t = 0; t < n_tasks; ++t) {
      const double a = evaluate(theta, t);
      check_accuracy(a, kWho, "the accuracy of task ", t, " at alpha = ", r.alphas[i]);
      r.accuracies(static_cast<Index>(i), static_cast<Index>(t)) = a;
      total += a / r.finetuned_accuracies[t];
    }
    r.mean_normalized[i] = total / static_cast<double>(n_tasks);
    if (i == 0 || r.mean_normalized[i] > r.mean_normalized[r.best_index]) r.best_index = i;
  }
  r.alpha = r.alphas[r.best_index];
  r.mean_normalized_accuracy = r.mean_normalized[r.best_index];
  return r;
}

NegationSearchResult search_negation_alpha(const NamedTensors& theta0, const TaskVector& tau,
                                           const AccuracyFunction& target_accuracy,
                                           const AccuracyFunction& control_accuracy,
                                           const NegationOptions& options) {
  constexpr const char* kWho = "search_negation_alpha";
  require(static_cast<bool>(target_accuracy) && static_cast<bool>(control_accuracy), kWho,
          ": an accuracy function is empty");
  std::string why;
  require(options.is_valid(&why), kWho, ": ", why);
  theta0.check_compatible(tau, kWho);

  NegationSearchResult r;
  r.alphas = options.grid.values();
  r.zero_shot_target = target_accuracy(theta0);
  check_accuracy(r.zero_shot_target, kWho, "the zero-shot target accuracy");
  r.zero_shot_control = control_accuracy(theta0);
  check_accuracy(r.zero_shot_control, kWho, "the zero-shot control accuracy");
  r.control_threshold = options.control_fraction * r.zero_shot_control;

  r.target_accuracies.resize(r.alphas.size());
  r.control_accuracies.resize(r.alphas.size());
  std::size_t nearest = 0;  // highest control accuracy: the report where nothing is feasible
  for (std::size_t i = 0; i < r.alphas.size(); ++i) {
    NamedTensors theta = theta0;
    theta.add_scaled(-r.alphas[i], tau);
    const double target = target_accuracy(theta);
    check_accuracy(target, kWho, "the target accuracy at alpha = ", r.alphas[i]);
    const double control = control_accuracy(theta);
    check_accuracy(control, kWho, "the control accuracy at alpha = ", r.alphas[i]);
    r.target_accuracies[i] = target;
    r.control_accuracies[i] = control;
    if (control > r.control_accuracies[nearest]) nearest = i;
    if (control >= r.control_threshold &&
        (!r.feasible || target < r.target_accuracies[r.best_index])) {
      r.feasible = true;
      r.best_index = i;
    }
  }
  if (!r.feasible) r.best_index = nearest;
  r.alpha = r.alphas[r.best_index];
  r.target_accuracy = r.target_accuracies[r.best_index];
  r.control_accuracy = r.control_accuracies[r.best_index];
  return r;
}

// ---- disentanglement error --------------------------------------------------------------------

double disentanglement_error(const ModelFunction& f, const NamedTensors& theta0,
                             const std::vector<TaskVector>& task_vectors,
                             const std::vector<double>& alphas, const std::vector<Matrix>& samples,
                             const OutputDistance& distance) {
  constexpr const char* kWho = "disentanglement_error";
  require(static_cast<bool>(f), kWho, ": the model function is empty");
  const std::size_t n_tasks = task_vectors.size();
  require(n_tasks >= 1, kWho, ": no task vectors");
  require<ShapeError>(alphas.size() == n_tasks && samples.size() == n_tasks, kWho, ": ", n_tasks,
                      " task vectors, ", alphas.size(), " alphas and ", samples.size(),
                      " sample sets; one of each per task");
  for (std::size_t t = 0; t < n_tasks; ++t) {
    require(std::isfinite(alphas[t]), kWho, ": alpha ", t, " is ", alphas[t]);
    require(samples[t].rows() >= 1, kWho, ": the sample set of task ", t, " is empty");
    theta0.check_compatible(task_vectors[t], kWho);
  }

  NamedTensors combined = theta0;
  for (std::size_t t = 0; t < n_tasks; ++t) combined.add_scaled(alphas[t], task_vectors[t]);

  double xi = 0.0;
  Vector x;
  for (std::size_t t = 0; t < n_tasks; ++t) {
    NamedTensors single = theta0;
    single.add_scaled(alphas[t], task_vectors[t]);
    const Matrix& s = samples[t];
    double total = 0.0;
    for (Index i = 0; i < s.rows(); ++i) {
      x = s.row(i).transpose();
      const Vector y_single = f(x, single);
      const Vector y_combined = f(x, combined);
      require<ShapeError>(y_single.size() == y_combined.size(), kWho, ": the model returned ",
                          y_single.size(), " and ", y_combined.size(),
                          " outputs for one input (task ", t, ", sample ", i, ")");
      const double d = distance ? distance(y_single, y_combined) : (y_single - y_combined).norm();
      require<NumericalError>(std::isfinite(d) && d >= 0.0, kWho, ": the distance for task ", t,
                              ", sample ", i, " is ", d, "; it must be finite and >= 0");
      total += d;
    }
    xi += total / static_cast<double>(s.rows());
  }
  return xi;
}

double disentanglement_error(const ModelFunction& f, const NamedTensors& theta0,
                             const TaskVector& tau1, const TaskVector& tau2, double a1, double a2,
                             const Matrix& samples1, const Matrix& samples2,
                             const OutputDistance& distance) {
  return disentanglement_error(f, theta0, {tau1, tau2}, {a1, a2}, {samples1, samples2}, distance);
}

}  // namespace tether
