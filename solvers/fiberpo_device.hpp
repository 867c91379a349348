// The gating hierarchy's G (solvers/fiberpo.hpp) on a CUDA device: the batch is checked and its
// segments laid out on the host (GatingHierarchyGate::segments, the same checks as the CPU
// gate), then the segmented passes run on the device with the CPU gate's per-segment code
// (solvers/fiberpo_segments.hpp): trajectory means, node means per coarse level, and per
// trajectory the chain walk and the fiber gate over its tokens. Agrees with
// GatingHierarchyGate::gated_ratios(...).values() to rounding (the device's exp). In builds
// without CUDA, or without a device, it throws tether::Error.
#pragma once

#include <tether/core/policy_batch.hpp>
#include <tether/core/types.hpp>
#include <tether/solvers/fiberpo.hpp>

namespace tether::device {

/// G_i for every token of the batch under `gate`'s hierarchy, computed on the device.
/// InvalidArgumentError / ShapeError for a bad batch (as the CPU gate); tether::Error without a
/// device, or for a hierarchy deeper than 16 gated levels.
Vector gated_values(const GatingHierarchyGate& gate, const TokenBatch& batch,
                    ConstVectorRef new_log_prob);

}  // namespace tether::device
