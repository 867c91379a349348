// The CUDA runtime API as the CPU emulator provides it (tests/cuda_emulation/cuda_emulation.hpp);
// on the include path only in a -DTETHER_CUDA=EMULATE build.
#pragma once
#include "../cuda_emulation.hpp"
