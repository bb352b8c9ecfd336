// Validation shared by the composite step ops (mamba_mamba1_step, mamba_mamba2_step): errors named by part, and the written tensors kept apart.
#pragma once

#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace mamba {

// Runs one of the parts' validations, naming the part in its errors ("argument 'weight'" alone would not
// say whether in_proj's or out_proj's).
template <class F>
auto in_part(const char * part, F && validate) {
    try {
        return validate();
    } catch (const Error & e) {
        throw Error(e.status(), cat(part, ": ", e.what()));
    }
}

using NamedTensors = std::vector<std::pair<const char *, const Tensor *>>;

// Every written tensor against everything the op reads and against the other written ones: one kernel of the
// op may write some while other blocks still read the rest.
inline void check_written_apart(const NamedTensors & written, const NamedTensors & read) {
    for (size_t i = 0; i < written.size(); ++i) {
        for (const auto & [name, t] : read) check_no_overlap(written[i].first, *written[i].second, name, *t);
        for (size_t j = i + 1; j < written.size(); ++j) check_no_overlap(written[i].first, *written[i].second, written[j].first, *written[j].second);
    }
}

}  // namespace mamba
