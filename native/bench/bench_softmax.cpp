// Softmax over vocabulary-sized rows of float32 logits (50288, mamba-2.8b): decode batches and a prompt.
#include "bench.h"

namespace {

mb::Case probabilities(int64_t rows, bool log) {
    return {std::string(log ? "log_softmax" : "softmax") + " f32 rows=" + std::to_string(rows) + " n=50288",
            [rows, log](mb::Bench & b, double & bytes, double & flops) {
                const int64_t n = 50288;
                DLTensor * x = b.tensor({rows, n}, mb::kF32, -20.0, 20.0);
                DLTensor * y = b.tensor({rows, n}, mb::kF32);
                // two reads of x (statistics, then outputs) and one write of y
                bytes = double(rows * n) * 4 * 3;
                flops = double(rows * n) * (log ? 6 : 8);
                return [&b, x, y, log] { mb::check(mamba_softmax(b.ctx(), x, y, log), "mamba_softmax"); };
            }};
}


const bool registered = [] {
    for (const mb::Case & c : {probabilities(1, false), probabilities(16, false), probabilities(512, false), probabilities(16, true)}) mb::registry().push_back(c);
    return true;
}();

}  // namespace
