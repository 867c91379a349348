// Cooperative groups as the CPU emulator provides them: the grid group of a cooperative launch
// (tests/cuda_emulation/cuda_emulation.hpp); on the include path only in a -DTETHER_CUDA=EMULATE
// build.
#pragma once
#include "../cuda_emulation.hpp"

namespace cooperative_groups {

/// The whole grid of a cooperative launch; sync() waits for every thread of every block.
struct grid_group {
  void sync() const { cuda_emulation::grid_barrier(); }
};

inline grid_group this_grid() { return grid_group{}; }

}  // namespace cooperative_groups
