// Embedding lookups in a 50288 x 2560 bf16 table (mamba-2.8b): one decode token and a 4096-token prompt.
#include <random>
#include <vector>

#include "bench.h"

namespace {

mb::Case lookup(int64_t count) {
    return {"embedding bf16 vocab=50288 hidden=2560 count=" + std::to_string(count), [count](mb::Bench & b, double & bytes, double & flops) {
                const int64_t vocab = 50288, hidden = 2560;
                mamba_embedding_args a{};
                DLTensor * ids = b.tensor({count}, DLDataType{kDLInt, 64, 1});
                // Random rows, so that the copies do not all come from one cached row.
                std::vector<int64_t> host(static_cast<size_t>(count));
                std::mt19937_64 rng(42);
                for (int64_t & id : host) id = int64_t(rng() % uint64_t(vocab));
                mb::check(mamba_memcpy(b.ctx(), ids->data, host.data(), host.size() * 8, MAMBA_MEMCPY_HOST_TO_DEVICE), "mamba_memcpy");
                mb::check(mamba_context_synchronize(b.ctx()), "synchronize");
                a.ids = ids;
                a.table = b.tensor({vocab, hidden}, mb::kBF16);
                a.y = b.tensor({count, hidden}, mb::kBF16);
                bytes = double(count * hidden) * (2 + 2) + double(count) * 8;
                flops = 0;
                return [&b, a] { mb::check(mamba_embedding(b.ctx(), &a), "mamba_embedding"); };
            }};
}


const bool registered = [] {
    for (const mb::Case & c : {lookup(1), lookup(4096)}) mb::registry().push_back(c);
    return true;
}();

}  // namespace
