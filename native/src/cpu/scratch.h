// Per-thread scratch buffers that outlive a call: OpenMP keeps its worker threads, so a buffer grown once is
// reused warm by every later call instead of being allocated, zeroed and page-faulted again.
#pragma once

#include <cstddef>

namespace mamba::cpu {

enum class ScratchSlot { LinearInput, LinearWeights, LinearOutput, Count };

// At least `count` floats owned by the calling thread, valid until its next request for the same slot;
// nullptr when memory runs out (it never throws, so it is safe inside parallel regions).
float * thread_scratch(ScratchSlot slot, size_t count) noexcept;

}  // namespace mamba::cpu
