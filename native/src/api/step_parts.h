// Validation shared by the composite step ops (mamba_mamba1_step, mamba_mamba2_step): errors named by part, and the written tensors kept apart.
#pragma once

#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "ops/rms_norm.h"

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

// The step's optional pre-norm (pre_norm_weight and the fields after it in both steps' arguments), validated as
// mamba_rms_norm's arguments: x (+ residual) -> pre_normed, the sum into residual_out, which the step requires.
template <class Args>
std::optional<RmsNormParams> validate_pre_norm(const mamba_context & ctx, const Args & a) {
    if (!a.pre_norm_weight) {
        if (a.residual || a.residual_out || a.pre_normed)
            fail_argument("residual, residual_out and pre_normed belong to the pre-norm, and pre_norm_weight is null");
        return std::nullopt;
    }
    if (!a.residual_out) fail_argument("argument 'residual_out' is null; the pre-norm (pre_norm_weight) needs it");
    if (!a.pre_normed) fail_argument("argument 'pre_normed' is null; the pre-norm (pre_norm_weight) needs it");
    mamba_rms_norm_args n{};
    n.x = a.x;
    n.residual = a.residual;
    n.weight = a.pre_norm_weight;
    n.y = a.pre_normed;
    n.residual_out = a.residual_out;
    n.eps = a.pre_norm_eps;
    return in_part("the pre-norm (mamba_rms_norm)", [&] { return validate_rms_norm(ctx, n); });
}

// The pre-norm's tensors in the step's written and read lists (the mixer's input x is then pre_normed).
inline void add_pre_norm_tensors(const std::optional<RmsNormParams> & n, NamedTensors & written, NamedTensors & read) {
    if (!n) return;
    written.emplace_back("residual_out", &*n->residual_out);
    written.emplace_back("pre_normed", &n->y);
    read.emplace_back("x", &n->x);
    read.emplace_back("pre_norm_weight", &n->weight);
    if (n->residual) read.emplace_back("residual", &*n->residual);
}

}  // namespace mamba
