// Validation of a composite op's parts (mamba_mamba1_step, mamba_mamba2_step).
#pragma once

#include "core/error.h"

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

}  // namespace mamba
