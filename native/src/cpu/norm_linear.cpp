// mamba_norm_linear on the CPU: the norm, then the linear layer reading its output. The CPU gains nothing
// from fusing (no launches to save), and running the two ops keeps the results identical to theirs.
#include "ops/norm_linear.h"

namespace mamba::cpu {

void norm_linear(mamba_context & ctx, const NormLinearParams & p) {
    // Empty norms and linears are skipped, as their own calls skip them.
    if (p.linear.in_features > 0) {
        if (p.rms) rms_norm(ctx, *p.rms);
        else gated_rms_norm(ctx, *p.gated);
    }
    if (p.linear.out_features > 0) linear(ctx, p.linear);
}

}  // namespace mamba::cpu
