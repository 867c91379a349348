#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/task_arithmetic.hpp>

namespace tether::problems {

namespace {

void fill_normal(Rng& rng, Matrix& m, double scale) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j) m(i, j) = scale * rng.normal();
}

Dataset draw_task_data(Rng& rng, Index n, Index d, const TaskSpec& spec, const Matrix& teacher) {
  Dataset data;
  data.classes = teacher.rows();
  data.x.resize(n, d);
  fill_normal(rng, data.x, 1.0);
  data.y.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const Vector z =
        teacher * data.x.row(i).segment(spec.first_input, spec.input_count).transpose();
    Index best = 0;
    for (Index c = 1; c < z.size(); ++c)
      if (z[c] > z[best]) best = c;
    data.y[static_cast<std::size_t>(i)] = static_cast<int>(best);
  }
  return data;
}

}  // namespace

SharedBackboneTasks::SharedBackboneTasks(const SharedBackboneOptions& o)
    : inputs_(o.inputs), width_(o.backbone_width), hidden_(o.hidden), classes_(o.classes) {
  const char* who = "SharedBackboneTasks";
  require(o.inputs >= 1, who, ": inputs must be >= 1, got ", o.inputs);
  require(o.backbone_width >= 1, who, ": backbone_width must be >= 1, got ", o.backbone_width);
  require(o.hidden >= 1, who, ": hidden must be >= 1, got ", o.hidden);
  require(o.classes >= 2, who, ": classes must be >= 2, got ", o.classes);
  require(!o.tasks.empty(), who, ": tasks is empty");
  for (std::size_t t = 0; t < o.tasks.size(); ++t) {
    const TaskSpec& s = o.tasks[t];
    require(s.input_count >= 1 && s.first_input >= 0 && s.first_input + s.input_count <= o.inputs,
            who, ": tasks[", t, "] reads coordinates [", s.first_input, ", ",
            s.first_input + s.input_count, "), which must be a non-empty part of [0, ", o.inputs,
            ")");
    require(s.hidden_count >= 0 && s.first_hidden >= 0 &&
                s.first_hidden + s.hidden_count <= o.hidden &&
                (s.hidden_count > 0 || s.first_hidden == 0),
            who, ": tasks[", t, "] reads hidden units [", s.first_hidden, ", ",
            s.first_hidden + s.hidden_count, "), which must be a part of [0, ", o.hidden,
            ") (hidden_count = 0 with first_hidden = 0 for all)");
  }
  require(o.train_samples >= 1 && o.validation_samples >= 1 && o.test_samples >= 1, who,
          ": train_samples, validation_samples and test_samples must be >= 1, got ",
          o.train_samples, ", ", o.validation_samples, ", ", o.test_samples);
  require(std::isfinite(o.head_scale) && o.head_scale > 0.0, who,
          ": head_scale must be finite and > 0, got ", o.head_scale);

  Rng rng(o.seed);
  backbone_.resize(width_, inputs_);
  fill_normal(rng, backbone_, 1.0 / std::sqrt(static_cast<double>(inputs_)));
  backbone_bias_.resize(width_);
  for (Index j = 0; j < width_; ++j) backbone_bias_[j] = rng.uniform(-1.0, 1.0);
  Matrix w0(hidden_, width_);
  fill_normal(rng, w0, 1.0 / std::sqrt(static_cast<double>(width_)));
  pretrained_ = Eigen::Map<const Vector>(w0.data(), w0.size());
  specs_ = o.tasks;
  for (TaskSpec& s : specs_) {
    if (s.hidden_count == 0) s.hidden_count = hidden_;
    Matrix block(classes_, s.hidden_count);
    fill_normal(rng, block, o.head_scale / std::sqrt(static_cast<double>(s.hidden_count)));
    Matrix head = Matrix::Zero(classes_, hidden_);
    head.middleCols(s.first_hidden, s.hidden_count) = block;
    heads_.push_back(head);
    Matrix teacher(classes_, s.input_count);
    fill_normal(rng, teacher, 1.0);
    teachers_.push_back(teacher);
    train_.push_back(draw_task_data(rng, o.train_samples, inputs_, s, teacher));
    validation_.push_back(draw_task_data(rng, o.validation_samples, inputs_, s, teacher));
    test_.push_back(draw_task_data(rng, o.test_samples, inputs_, s, teacher));
  }
  // The features of the suite's own data, computed once (the frozen backbone's tanh is most of
  // the cost of a loss and gradient): same formula, same bits.
  for (std::size_t t = 0; t < specs_.size(); ++t) {
    train_phi_.push_back(compute_features(train_[t].x));
    validation_phi_.push_back(compute_features(validation_[t].x));
    test_phi_.push_back(compute_features(test_[t].x));
  }
}

Matrix SharedBackboneTasks::compute_features(const Matrix& x) const {
  Matrix pre = x * backbone_.transpose();
  pre.rowwise() += backbone_bias_.transpose();
  return pre.array().tanh().matrix();
}

const Matrix* SharedBackboneTasks::cached_features(const Matrix& x) const {
  // A copy of the suite (copied data sets, copied features) compares with its own members.
  for (std::size_t t = 0; t < train_phi_.size(); ++t) {
    if (&x == &train_[t].x) return &train_phi_[t];
    if (&x == &validation_[t].x) return &validation_phi_[t];
    if (&x == &test_[t].x) return &test_phi_[t];
  }
  return nullptr;
}

void SharedBackboneTasks::check(const char* who, Index task, const Vector& theta,
                                const Dataset* data) const {
  require(task >= 0 && task < tasks(), who, ": task = ", task, " outside [0, ", tasks(), ")");
  require<ShapeError>(theta.size() == dimension(), who, ": theta has size ", theta.size(),
                      ", expected ", dimension());
  if (data == nullptr) return;
  data->validate(who);
  require(data->size() >= 1, who, ": data is empty");
  require<ShapeError>(data->features() == inputs_, who, ": data has ", data->features(),
                      " features, the suite's inputs are ", inputs_);
  require<ShapeError>(data->classes == classes_, who, ": data has ", data->classes,
                      " classes, the suite has ", classes_);
}

const TaskSpec& SharedBackboneTasks::spec(Index task) const {
  require(task >= 0 && task < tasks(), "SharedBackboneTasks::spec: task = ", task, " outside [0, ",
          tasks(), ")");
  return specs_[static_cast<std::size_t>(task)];
}

Vector SharedBackboneTasks::task_vector(const Vector& theta) const {
  require<ShapeError>(theta.size() == dimension(),
                      "SharedBackboneTasks::task_vector: theta has size ", theta.size(),
                      ", expected ", dimension());
  return theta - pretrained_;
}

const Dataset& SharedBackboneTasks::data(Index task, TaskSplit split) const {
  require(task >= 0 && task < tasks(), "SharedBackboneTasks::data: task = ", task, " outside [0, ",
          tasks(), ")");
  const auto t = static_cast<std::size_t>(task);
  switch (split) {
    case TaskSplit::kTrain:
      return train_[t];
    case TaskSplit::kValidation:
      return validation_[t];
    case TaskSplit::kTest:
      return test_[t];
  }
  throw InvalidArgumentError("SharedBackboneTasks::data: unknown split");
}

const Matrix& SharedBackboneTasks::head(Index task) const {
  require(task >= 0 && task < tasks(), "SharedBackboneTasks::head: task = ", task, " outside [0, ",
          tasks(), ")");
  return heads_[static_cast<std::size_t>(task)];
}

Matrix SharedBackboneTasks::features(const Matrix& x) const {
  require<ShapeError>(x.cols() == inputs_, "SharedBackboneTasks::features: x has ", x.cols(),
                      " columns, the suite's inputs are ", inputs_);
  if (const Matrix* phi = cached_features(x)) return *phi;
  return compute_features(x);
}

Matrix SharedBackboneTasks::logits(Index task, const Vector& theta, const Matrix& x) const {
  check("SharedBackboneTasks::logits", task, theta, nullptr);
  const Eigen::Map<const Matrix> w(theta.data(), hidden_, width_);
  const Matrix* cached = cached_features(x);
  const Matrix computed = cached != nullptr ? Matrix() : features(x);
  const Matrix& phi = cached != nullptr ? *cached : computed;
  const Matrix u = (phi * w.transpose()).array().tanh().matrix();
  return u * heads_[static_cast<std::size_t>(task)].transpose();
}

double SharedBackboneTasks::loss(Index task, const Vector& theta, const Dataset& data) const {
  check("SharedBackboneTasks::loss", task, theta, &data);
  const Matrix logp = log_softmax_rows(logits(task, theta, data.x));
  double total = 0.0;
  for (Index i = 0; i < logp.rows(); ++i) total -= logp(i, data.y[static_cast<std::size_t>(i)]);
  return total / static_cast<double>(data.size());
}

double SharedBackboneTasks::loss_and_gradient(Index task, const Vector& theta, const Dataset& data,
                                              Vector& g) const {
  check("SharedBackboneTasks::loss_and_gradient", task, theta, &data);
  const Matrix& a = heads_[static_cast<std::size_t>(task)];
  const Eigen::Map<const Matrix> w(theta.data(), hidden_, width_);
  const Matrix* cached = cached_features(data.x);
  const Matrix computed = cached != nullptr ? Matrix() : features(data.x);
  const Matrix& phi = cached != nullptr ? *cached : computed;
  const Matrix u = (phi * w.transpose()).array().tanh().matrix();
  const Matrix logp = log_softmax_rows(u * a.transpose());
  const double n = static_cast<double>(data.size());
  // dL/dz = (P - Y) / n;  dL/du = dz A;  dL/d(W phi) = (1 - u^2) o du;  dL/dW = dpre^T phi.
  Matrix dz = logp.array().exp().matrix();
  double total = 0.0;
  for (Index i = 0; i < dz.rows(); ++i) {
    const int y = data.y[static_cast<std::size_t>(i)];
    dz(i, y) -= 1.0;
    total -= logp(i, y);
  }
  dz /= n;
  const Matrix dpre = ((1.0 - u.array().square()) * (dz * a).array()).matrix();
  g.resize(dimension());
  Eigen::Map<Matrix>(g.data(), hidden_, width_) = dpre.transpose() * phi;
  return total / n;
}

double SharedBackboneTasks::accuracy(Index task, const Vector& theta, const Dataset& data) const {
  check("SharedBackboneTasks::accuracy", task, theta, &data);
  const Matrix z = logits(task, theta, data.x);
  Index correct = 0;
  for (Index i = 0; i < z.rows(); ++i) {
    Index best = 0;
    for (Index c = 1; c < z.cols(); ++c)
      if (z(i, c) > z(i, best)) best = c;
    if (best == data.y[static_cast<std::size_t>(i)]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(z.rows());
}

Vector SharedBackboneTasks::accuracies(const Vector& theta, TaskSplit split) const {
  Vector acc(tasks());
  for (Index t = 0; t < tasks(); ++t) acc[t] = accuracy(t, theta, data(t, split));
  return acc;
}

FitResult SharedBackboneTasks::fine_tune(Index task, const FitOptions& options, double mu) const {
  check("SharedBackboneTasks::fine_tune", task, pretrained_, nullptr);
  require(std::isfinite(mu) && mu >= 0.0,
          "SharedBackboneTasks::fine_tune: mu must be finite and >= 0, got ", mu);
  const Dataset& train = train_[static_cast<std::size_t>(task)];
  return minimize_lbfgs(
      [&](const Vector& theta, Vector& g) {
        const double f = loss_and_gradient(task, theta, train, g);
        const Vector delta = theta - pretrained_;
        g += mu * delta;
        return f + 0.5 * mu * delta.squaredNorm();
      },
      pretrained_, options);
}

}  // namespace tether::problems
