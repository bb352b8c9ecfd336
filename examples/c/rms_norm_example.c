/* Runs libmamba's RMSNorm on the program's own buffers (zero-copy DLPack views) and checks the result
 * against a plain C computation; then shows how a failed call reports its error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <mamba/mamba.h>

#define ROWS 3
#define HIDDEN 8

static DLTensor view_f32(float * data, int32_t ndim, int64_t * shape) {
    DLTensor t = {0};
    t.data = data;
    t.device.device_type = kDLCPU;
    t.device.device_id = 0;
    t.ndim = ndim;
    t.dtype.code = kDLFloat;
    t.dtype.bits = 32;
    t.dtype.lanes = 1;
    t.shape = shape;
    t.strides = NULL; /* compact row-major */
    return t;
}

int main(void) {
    printf("libmamba %s (ABI %d)\n", mamba_version(), mamba_abi_version());

    mamba_context_params params = mamba_context_default_params();
    params.device_type = MAMBA_DEVICE_CPU;
    mamba_context * ctx = NULL;
    if (mamba_context_create(&params, &ctx) != MAMBA_STATUS_OK) {
        fprintf(stderr, "context: %s\n", mamba_last_error());
        return 1;
    }

    float x[ROWS * HIDDEN], w[HIDDEN], y[ROWS * HIDDEN];
    srand(7);
    for (int i = 0; i < ROWS * HIDDEN; ++i) x[i] = (float)rand() / (float)RAND_MAX * 4.0f - 2.0f;
    for (int i = 0; i < HIDDEN; ++i) w[i] = 0.5f + (float)rand() / (float)RAND_MAX;
    for (int i = 0; i < ROWS * HIDDEN; ++i) y[i] = NAN;

    int64_t x_shape[2] = {ROWS, HIDDEN}, w_shape[1] = {HIDDEN};
    DLTensor tx = view_f32(x, 2, x_shape), tw = view_f32(w, 1, w_shape), ty = view_f32(y, 2, x_shape);
    mamba_rms_norm_args args = {0};
    args.x = &tx;
    args.weight = &tw;
    args.y = &ty;
    args.eps = 1e-5f;
    if (mamba_rms_norm(ctx, &args) != MAMBA_STATUS_OK) {
        fprintf(stderr, "rms_norm: %s\n", mamba_last_error());
        mamba_context_free(ctx);
        return 1;
    }

    double worst = 0.0;
    for (int r = 0; r < ROWS; ++r) {
        double ss = 0.0;
        for (int i = 0; i < HIDDEN; ++i) ss += (double)x[r * HIDDEN + i] * x[r * HIDDEN + i];
        const double inv = 1.0 / sqrt(ss / HIDDEN + 1e-5);
        for (int i = 0; i < HIDDEN; ++i) {
            const double expect = x[r * HIDDEN + i] * inv * w[i];
            const double err = fabs(expect - y[r * HIDDEN + i]) / (fabs(expect) + 1e-6);
            if (!(err <= worst)) worst = err; /* NaN (unwritten output) propagates */
        }
    }
    printf("rms_norm %dx%d: max relative error %.2e\n", ROWS, HIDDEN, worst);

    /* A weight of the wrong length: the call fails and says why. */
    int64_t bad_shape[1] = {HIDDEN - 1};
    DLTensor bad = view_f32(w, 1, bad_shape);
    args.weight = &bad;
    const mamba_status status = mamba_rms_norm(ctx, &args);
    printf("wrong weight shape -> %s: %s\n", mamba_status_name(status), mamba_last_error());

    mamba_context_free(ctx);
    if (!(worst < 1e-5)) return 2;
    return status == MAMBA_STATUS_INVALID_ARGUMENT ? 0 : 3;
}
