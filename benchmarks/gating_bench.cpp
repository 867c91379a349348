// Ratio gates (issue 5), on one batch of T tokens in 4096 trajectories, 256 prompt groups of 16
// trajectories, 8 domains of 32 groups (trajectory lengths 244 or 245 at T = 1e6); log-ratios
// N(0, 0.1^2) per token, so every regime of every gate is populated.
//
//   BM_FiberPoGate/N                FiberPO-Domain (the depth-4 hierarchy, default budgets):
//                                   gated_ratios (validate the batch, G and everything its
//                                   Jacobian needs) then one J v. items = tokens; bytes/s counts
//                                   the least traffic: read new and old log-probs, the
//                                   trajectory / group / domain ids, write G, read v, write J v
//                                   (16 + 12 + 8 + 16 = 52 bytes a token).
//   BM_FiberPoGatePlanned/N         the same on a plan (segments() once, outside the timing:
//                                   the batch is not validated again, only the new log-probs),
//                                   as in a training loop's epochs over one batch.
//   (BM_FiberPoGate and ...Planned run at 1e4 to 1e8 tokens; the others at 1e6.)
//   BM_FiberPoGateDepth2/1000000    the same for FiberPO (depth 2; reads no group / domain ids:
//                                   40 bytes a token).
//   BM_FiberPoEvaluate/1000000      FiberPO-Domain evaluate: J and dJ / d log pi (G with J's and
//                                   J^T zeta's sums, then J^T zeta's token pass); least traffic:
//                                   read log-probs, advantages, the three id arrays, write the
//                                   gradient (44 bytes a token).
//   BM_FiberPoEvaluateWorkspace/N   the same with a GateWorkspace and the GateValue reused across
//                                   calls (their per-token arrays allocated once, untimed), at
//                                   1e4 to 1e8 tokens.
//   BM_FiberPoEvaluatePlanned/N     the same on a plan from segments() (untimed): the batch not
//                                   validated again, only the new log-probs (1e4 to 1e8).
//   BM_PpoClipGate/N                PPO-clip evaluate, 1e4 to 1e8 tokens; least traffic: read
//                                   new and old log-probs and advantages, write the gradient
//                                   (32 bytes).
//   BM_PpoClipGateReused/N          the same into a GateValue reused across calls (its gradient
//                                   allocated once, untimed).
//   BM_PpoClipGateValidatedBatch/N  BM_PpoClipGateReused on a batch validated once (ValidatedBatch,
//                                   untimed): only the new log-probs checked per call (1e4..1e8).
//   BM_GrpoGateValidatedBatch/N     BM_GrpoGateWeightsGiven the same way (1e6, 1e7).
//   BM_FiberPoGatePlannedUnstreamed/N (1e7, 1e8): BM_FiberPoGatePlanned with streaming stores
//                                   off (core/streaming_stores.hpp).
//   BM_GspoGate/N                   GSPO evaluate (1e6, 1e7 tokens); the same least traffic.
//   BM_GspoGateValidatedBatch/N     the same on a batch validated once (its trajectory offsets
//                                   found then): only the new log-probs checked per call.
//   BM_GrpoGateReused/N             GRPO into a reused GateValue, its weights computed per call;
//   BM_GrpoGateWeightsGiven/N       the same with GrpoGate::weights(batch) given (1e6, 1e7).
//   BM_FiberPoGateGpu/1000000       FiberPO-Domain's G on the device (device::gated_values: the
//                                   batch checked and segmented on the host, the log-probs
//                                   copied over and G back, all timed); registered only where a
//                                   device is present. bytes/s: read both log-probs and the three
//                                   id arrays, write G (36 bytes a token).
//   BM_FiberPoGateGpuResident/N     BM_FiberPoGatePlanned on the device, 1e4 to 1e8 tokens: the
//                                   batch laid out on the device once (untimed), then per call
//                                   DeviceGatedRatios::update from device-resident log-probs
//                                   (checked on the device, then G) and one J v between device
//                                   vectors; no host copies. The same 52 bytes a token, for the
//                                   fraction of BM_DeviceMemoryCopy's bandwidth.
//   BM_FiberPoEvaluateGpuResident/N  BM_FiberPoEvaluatePlanned on the device: update() from
//                                   device log-probs, then evaluate() (J and dJ / d log pi into a
//                                   device vector); 44 bytes a token.
//   BM_FiberPoGateGpuResidentFloatLogProbs/N   BM_FiberPoGateGpuResident with float new log-probs
//                                   (DeviceGatedRatios::update(DeviceVectorF)): 48 bytes a token.
// Every evaluate / gated_ratios call also validates the batch (TokenBatch::validate), which the
// byte counts above do not include.
// The FiberPO loops run on OpenMP threads above 2^16 tokens (one trajectory per thread at a
// time, bitwise independent of the thread count), so the rates use wall time (UseRealTime);
// the CPU column is the process's CPU time over all threads.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tether/core/device_vector.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/streaming_stores.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <tether/solvers/fiberpo_device.hpp>
#include <tether/solvers/ratio_gates.hpp>

namespace {

using tether::Index;
using tether::Vector;

struct GateData {
  tether::TokenBatch batch;
  Vector new_log_prob, v, out;
  explicit GateData(Index tokens) {
    constexpr int kTrajectories = 4096, kPerGroup = 16, kGroupsPerDomain = 32;
    tether::Rng rng(11);
    const Index base = tokens / kTrajectories, extra = tokens % kTrajectories;
    for (int k = 0; k < kTrajectories; ++k) {
      const Index len = base + (k < extra ? 1 : 0);
      const int group = k / kPerGroup, domain = group / kGroupsPerDomain;
      for (Index p = 0; p < len; ++p) {
        batch.domain.push_back(domain);
        batch.group.push_back(group);
        batch.trajectory.push_back(k);
        batch.position.push_back(static_cast<int>(p));
        batch.state.push_back(static_cast<int>(batch.state.size()));
        batch.action.push_back(0);
      }
    }
    const Index n = static_cast<Index>(batch.domain.size());
    batch.old_log_prob.resize(n);
    batch.advantage.resize(n);
    new_log_prob.resize(n);
    v.resize(n);
    for (Index i = 0; i < n; ++i) {
      batch.old_log_prob[i] = std::log(rng.uniform(0.05, 0.5));
      batch.advantage[i] = rng.normal();
      new_log_prob[i] = batch.old_log_prob[i] + std::clamp(0.1 * rng.normal(), -0.6, 0.6);
      v[i] = rng.normal();
    }
  }
};

// Items (tokens) and bytes (the least traffic, per token) per second.
void set_rates(benchmark::State& state, const GateData& data, int bytes_per_token) {
  const auto n = static_cast<std::int64_t>(data.batch.size());
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * bytes_per_token);
}

template <class Gate>
void gated_ratios_and_jvp(benchmark::State& state, const Gate& gate, int bytes_per_token) {
  GateData data(state.range(0));
  tether::GatedRatios g;  // reused across iterations, as in a training loop
  gate.gated_ratios(data.batch, data.new_log_prob, g);  // its storage, first touched untimed
  g.jvp(data.v, data.out);
  for (auto _ : state) {
    gate.gated_ratios(data.batch, data.new_log_prob, g);
    g.jvp(data.v, data.out);
    benchmark::DoNotOptimize(data.out.data());
  }
  set_rates(state, data, bytes_per_token);
}

// Token counts 1e4 to 1e8 (the batch, its copies and G's arrays take about 10 GB at 1e8).
void token_sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t tokens = 10000; tokens <= 100000000; tokens *= 10) b->Arg(tokens);
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

template <class Gate>
void evaluate(benchmark::State& state, const Gate& gate, int bytes_per_token) {
  GateData data(state.range(0));
  for (auto _ : state) {
    tether::GateValue v = gate.evaluate(data.batch, data.new_log_prob);
    benchmark::DoNotOptimize(v.gradient.data());
  }
  set_rates(state, data, bytes_per_token);
}

void BM_FiberPoGate(benchmark::State& state) {
  gated_ratios_and_jvp(state, tether::GatingHierarchyGate{}, 52);
}

void BM_FiberPoGatePlanned(benchmark::State& state) {
  GateData data(state.range(0));
  const tether::GatingHierarchyGate gate;
  const tether::HierarchySegments plan = gate.segments(data.batch, data.new_log_prob);
  tether::GatedRatios g;
  gate.gated_ratios(plan, data.batch, data.new_log_prob, g);  // storage first touched untimed
  g.jvp(data.v, data.out);
  for (auto _ : state) {
    gate.gated_ratios(plan, data.batch, data.new_log_prob, g);
    g.jvp(data.v, data.out);
    benchmark::DoNotOptimize(data.out.data());
  }
  set_rates(state, data, 52);
}

void BM_FiberPoGateDepth2(benchmark::State& state) {
  gated_ratios_and_jvp(state, tether::FiberPoGate{}, 40);
}

void BM_FiberPoEvaluate(benchmark::State& state) {
  evaluate(state, tether::GatingHierarchyGate{}, 44);
}

// evaluate on a plan from segments() (untimed), as a training loop's epochs over one batch: only
// the new log-probs checked per call. The same 44 bytes a token (the ids are not read).
void BM_FiberPoEvaluatePlanned(benchmark::State& state) {
  GateData data(state.range(0));
  const tether::GatingHierarchyGate gate;
  const tether::HierarchySegments plan = gate.segments(data.batch, data.new_log_prob);
  tether::GateWorkspace workspace;
  tether::GateValue value;
  gate.evaluate(plan, data.batch, data.new_log_prob, workspace, value);  // storage, untimed
  for (auto _ : state) {
    gate.evaluate(plan, data.batch, data.new_log_prob, workspace, value);
    benchmark::DoNotOptimize(value.gradient.data());
  }
  set_rates(state, data, 44);
}

void BM_FiberPoEvaluateWorkspace(benchmark::State& state) {
  GateData data(state.range(0));
  const tether::GatingHierarchyGate gate;
  tether::GateWorkspace workspace;
  tether::GateValue value;
  gate.evaluate(data.batch, data.new_log_prob, workspace, value);  // storage first touched untimed
  for (auto _ : state) {
    gate.evaluate(data.batch, data.new_log_prob, workspace, value);
    benchmark::DoNotOptimize(value.gradient.data());
  }
  set_rates(state, data, 44);
}

void BM_PpoClipGate(benchmark::State& state) { evaluate(state, tether::PpoClipGate{}, 32); }
void BM_GspoGate(benchmark::State& state) { evaluate(state, tether::GspoGate{}, 32); }
/// evaluate into a GateValue reused across calls (its gradient first touched untimed); `extra`
/// are the arguments between the log-probs and the value (GRPO's weights).
template <class Gate, class... Extra>
void evaluate_reused(benchmark::State& state, const Gate& gate, const GateData& data,
                     const Extra&... extra) {
  tether::GateValue value;
  gate.evaluate(data.batch, data.new_log_prob, extra..., value);
  for (auto _ : state) {
    gate.evaluate(data.batch, data.new_log_prob, extra..., value);
    benchmark::DoNotOptimize(value.gradient.data());
  }
  set_rates(state, data, 32);
}

void BM_PpoClipGateReused(benchmark::State& state) {
  evaluate_reused(state, tether::PpoClipGate{}, GateData(state.range(0)));
}

// Streaming stores off for the benchmark's lifetime (core/streaming_stores.hpp): the
// *Unstreamed variants show what streaming the large outputs gains (the same values).
struct Unstreamed {
  long long saved = tether::streaming::set_min_bytes(std::numeric_limits<long long>::max());
  ~Unstreamed() { tether::streaming::set_min_bytes(saved); }
};
void BM_FiberPoGatePlannedUnstreamed(benchmark::State& state) {
  const Unstreamed off;
  BM_FiberPoGatePlanned(state);
}
// GRPO (no KL term) into a reused GateValue: its weights computed in each call, or given (taken
// once per batch, untimed). The same 32 bytes a token; the given weights are one more array read.
void BM_GrpoGateReused(benchmark::State& state) {
  evaluate_reused(state, tether::GrpoGate{}, GateData(state.range(0)));
}
void BM_GrpoGateWeightsGiven(benchmark::State& state) {
  const GateData data(state.range(0));
  evaluate_reused(state, tether::GrpoGate{}, data, tether::GrpoGate::weights(data.batch));
}
// evaluate_reused on a batch validated once (tether::ValidatedBatch, untimed), for PPO-clip,
// GRPO and GSPO: only the new log-probs (and GRPO's weights) are checked per call, as in a
// training loop's epochs.
template <class Gate, class... Extra>
void evaluate_validated(benchmark::State& state, const GateData& data, const Gate& gate,
                        const Extra&... extra) {
  const tether::ValidatedBatch valid(data.batch);
  tether::GateValue value;
  gate.evaluate(valid, data.new_log_prob, extra..., value);
  for (auto _ : state) {
    gate.evaluate(valid, data.new_log_prob, extra..., value);
    benchmark::DoNotOptimize(value.gradient.data());
  }
  set_rates(state, data, 32);
}
void BM_PpoClipGateValidatedBatch(benchmark::State& state) {
  evaluate_validated(state, GateData(state.range(0)), tether::PpoClipGate{});
}
void BM_GrpoGateValidatedBatch(benchmark::State& state) {
  const GateData data(state.range(0));
  evaluate_validated(state, data, tether::GrpoGate{}, tether::GrpoGate::weights(data.batch));
}
void BM_GspoGateValidatedBatch(benchmark::State& state) {
  evaluate_validated(state, GateData(state.range(0)), tether::GspoGate{});
}

BENCHMARK(BM_FiberPoGate)->Apply(token_sizes);
BENCHMARK(BM_FiberPoGatePlanned)->Apply(token_sizes);
BENCHMARK(BM_FiberPoGateDepth2)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FiberPoEvaluate)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FiberPoEvaluateWorkspace)->Apply(token_sizes);
BENCHMARK(BM_FiberPoEvaluatePlanned)->Apply(token_sizes);
BENCHMARK(BM_PpoClipGate)->Apply(token_sizes);
BENCHMARK(BM_GrpoGateReused)
    ->Arg(1000000)
    ->Arg(10000000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_GrpoGateWeightsGiven)
    ->Arg(1000000)
    ->Arg(10000000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_PpoClipGateValidatedBatch)->Apply(token_sizes);
BENCHMARK(BM_GrpoGateValidatedBatch)
    ->Arg(1000000)
    ->Arg(10000000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_PpoClipGateReused)->Apply(token_sizes);
BENCHMARK(BM_FiberPoGatePlannedUnstreamed)
    ->Arg(10000000)
    ->Arg(100000000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_GspoGate)->Arg(1000000)->Arg(10000000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GspoGateValidatedBatch)
    ->Arg(1000000)
    ->Arg(10000000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// BM_FiberPoGateGpuResident with the new log-probs held on the device as T: 52 bytes a token
/// with doubles, 48 with floats.
template <class T>
void gate_resident(benchmark::State& state) {
  GateData data(state.range(0));
  const tether::GatingHierarchyGate gate;
  tether::device::DeviceGatedRatios g(gate, data.batch, data.new_log_prob);
  const tether::device::BasicDeviceVector<T> new_log_prob(data.new_log_prob.cast<T>().eval());
  const tether::device::DeviceVector v(data.v);
  tether::device::DeviceVector out(data.batch.size());
  for (auto _ : state) {
    g.update(new_log_prob);  // checked on the device, then G
    g.jvp(v, out);
  }
  set_rates(state, data, 44 + static_cast<int>(sizeof(T)));
}

const bool kGpuRegistered = [] {
  if (!tether::device::cuda_available()) return false;
  benchmark::RegisterBenchmark("BM_FiberPoGateGpu",
                               [](benchmark::State& state) {
                                 GateData data(state.range(0));
                                 const tether::GatingHierarchyGate gate;
                                 for (auto _ : state)
                                   benchmark::DoNotOptimize(tether::device::gated_values(
                                       gate, data.batch, data.new_log_prob));
                                 set_rates(state, data, 36);
                               })
      ->Arg(1000000)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  // An epoch step on the device: G from device log-probs, then J and dJ / d log pi.
  benchmark::RegisterBenchmark("BM_FiberPoEvaluateGpuResident", [](benchmark::State& state) {
    GateData data(state.range(0));
    const tether::GatingHierarchyGate gate;
    tether::device::DeviceGatedRatios g(gate, data.batch, data.new_log_prob);
    const tether::device::DeviceVector new_log_prob(data.new_log_prob);
    tether::device::DeviceVector gradient(data.batch.size());
    for (auto _ : state) {
      g.update(new_log_prob);
      benchmark::DoNotOptimize(g.evaluate(gradient));
    }
    set_rates(state, data, 44);
  })->Apply(token_sizes);
  for (const bool float_log_probs : {false, true})
    benchmark::RegisterBenchmark(
        float_log_probs ? "BM_FiberPoGateGpuResidentFloatLogProbs" : "BM_FiberPoGateGpuResident",
        float_log_probs ? gate_resident<float> : gate_resident<double>)
        ->Apply(token_sizes);
  return true;
}();

}  // namespace
