#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/fiberpo_device.hpp>
#include <tether/solvers/ratio_gates.hpp>
#include <vector>
#if defined(TETHER_HAVE_CUDA)
#include <tether/solvers/fiberpo_kernels.hpp>
#endif

namespace tether::device {

DeviceGatedRatios::DeviceGatedRatios(const GatingHierarchyGate& gate, const TokenBatch& batch,
                                     ConstVectorRef new_log_prob)
    : tokens_(batch.size()) {
  const HierarchySegments plan = gate.segments(batch, new_log_prob);  // the CPU gate's checks
#if defined(TETHER_HAVE_CUDA)
  if (!cuda_available()) throw Error("device::DeviceGatedRatios: no CUDA device is present");
  const GatingHierarchyOptions& options = gate.options();
  const int coarse = static_cast<int>(plan.levels.size());
  std::vector<long long> trajectories(plan.trajectories.begin(), plan.trajectories.end());
  std::vector<long long> node_offsets, level_starts{0};
  for (const std::vector<Index>& level : plan.levels) {
    node_offsets.insert(node_offsets.end(), level.begin(), level.end());
    level_starts.push_back(static_cast<long long>(node_offsets.size()));
  }
  std::vector<double> budget_positive, budget_negative;
  for (int l = 0; l <= coarse; ++l) {
    const bool own = !options.level_budgets.empty();
    budget_positive.push_back(own ? options.level_budgets[static_cast<std::size_t>(l)].positive
                                  : options.budget_positive);
    budget_negative.push_back(own ? options.level_budgets[static_cast<std::size_t>(l)].negative
                                  : options.budget_negative);
  }
  resident_ = fiberpo_kernels::create_gate(
      batch.old_log_prob.data(), batch.advantage.data(), batch.size(), trajectories.data(),
      static_cast<long long>(trajectories.size()) - 1, coarse, node_offsets.data(),
      level_starts.data(), budget_positive.data(), budget_negative.data(), options.eps);
  try {
    const DeviceVector initial(new_log_prob);  // checked above, with the batch
    fiberpo_kernels::gate(resident_, initial.data(), /*check=*/false);
  } catch (...) {
    fiberpo_kernels::destroy_gate(resident_);
    throw;
  }
#else
  (void)plan;
  throw Error(
      "device::DeviceGatedRatios: tether was built without CUDA (TETHER_CUDA=OFF or no nvcc)");
#endif
}

DeviceGatedRatios::~DeviceGatedRatios() {
#if defined(TETHER_HAVE_CUDA)
  fiberpo_kernels::destroy_gate(resident_);
#endif
}

Vector DeviceGatedRatios::values() const {
  Vector g(tokens_);
#if defined(TETHER_HAVE_CUDA)
  fiberpo_kernels::download_values(resident_, g.data());
#endif
  return g;
}

void DeviceGatedRatios::update(ConstVectorRef new_log_prob) {
  require_valid_log_probs(new_log_prob, tokens_, "new_log_prob", "DeviceGatedRatios::update: ");
#if defined(TETHER_HAVE_CUDA)
  if (staged_.size() != tokens_) staged_ = DeviceVector(tokens_);  // on the first host update
  staged_.upload(new_log_prob);
  fiberpo_kernels::gate(resident_, staged_.data(), /*check=*/false);
#endif
}

void DeviceGatedRatios::update(const DeviceVector& new_log_prob) {
  update_from_device(new_log_prob);
}

void DeviceGatedRatios::update(const DeviceVectorF& new_log_prob) {
  update_from_device(new_log_prob);
}

template <class T>
void DeviceGatedRatios::update_from_device(const BasicDeviceVector<T>& new_log_prob) {
  require<ShapeError>(new_log_prob.size() == tokens_,
                      "DeviceGatedRatios::update: new_log_prob has ", new_log_prob.size(),
                      " entries; the batch has ", tokens_, " tokens");
#if defined(TETHER_HAVE_CUDA)
  const long long bad = fiberpo_kernels::gate(resident_, new_log_prob.data(), /*check=*/true);
  if (bad >= 0)
    refuse_log_prob("DeviceGatedRatios::update: ", "new_log_prob", bad, new_log_prob.value_at(bad));
#endif
}

Vector DeviceGatedRatios::product(ConstVectorRef v, bool transpose, bool log_space) const {
  require<ShapeError>(v.size() == tokens_, "DeviceGatedRatios: v has ", v.size(),
                      " entries; G has ", tokens_);
  Vector out(tokens_);
#if defined(TETHER_HAVE_CUDA)
  const DeviceVector d_v(v);
  DeviceVector d_out(tokens_);
  product(d_v, d_out, transpose, log_space);
  d_out.download(out);
#else
  (void)transpose;
  (void)log_space;
#endif
  return out;
}

void DeviceGatedRatios::product(const DeviceVector& v, DeviceVector& out, bool transpose,
                                bool log_space) const {
  require<ShapeError>(v.size() == tokens_, "DeviceGatedRatios: v has ", v.size(),
                      " entries; G has ", tokens_);
  if (out.size() != tokens_) out = DeviceVector(tokens_);
#if defined(TETHER_HAVE_CUDA)
  if (transpose)
    fiberpo_kernels::vjp(resident_, v.data(), out.data(), log_space);
  else
    fiberpo_kernels::jvp(resident_, v.data(), out.data(), log_space);
#else
  (void)transpose;
  (void)log_space;
#endif
}

double DeviceGatedRatios::evaluate(DeviceVector& gradient) const {
  if (gradient.size() != tokens_) gradient = DeviceVector(tokens_);
#if defined(TETHER_HAVE_CUDA)
  return fiberpo_kernels::evaluate(resident_, gradient.data());
#else
  return 0.0;  // unreachable: the constructor throws without CUDA
#endif
}

Vector gated_values(const GatingHierarchyGate& gate, const TokenBatch& batch,
                    ConstVectorRef new_log_prob) {
  return DeviceGatedRatios(gate, batch, new_log_prob).values();
}

}  // namespace tether::device
