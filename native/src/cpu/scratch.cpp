#include "cpu/scratch.h"

#include <vector>

namespace mamba::cpu {

float * thread_scratch(ScratchSlot slot, size_t count) noexcept {
    thread_local std::vector<float> buffers[size_t(ScratchSlot::Count)];
    std::vector<float> & buffer = buffers[size_t(slot)];
    try {
        if (buffer.size() < count) buffer.resize(count);
    } catch (...) {
        return nullptr;
    }
    return buffer.data();
}

}  // namespace mamba::cpu
