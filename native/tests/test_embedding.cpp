// mamba_embedding: gathered rows equal the table's rows (rounded to y's dtype), per id dtype, table and
// output dtype and layout; out-of-range ids are rejected before anything is written.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

// ids drawn over the whole vocabulary, with both ends and a repeat included.
std::vector<double> random_ids(std::mt19937_64 & rng, int64_t count, int64_t vocab) {
    std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
    std::vector<double> ids;
    for (int64_t i = 0; i < count; ++i) ids.push_back(double(pick(rng)));
    if (count >= 3) {
        ids[0] = double(vocab - 1);
        ids[1] = 0;
        ids[2] = ids[0];
    }
    return ids;
}

}  // namespace

class EmbeddingTest : public mt::BackendTest {
protected:
    std::mt19937_64 rng_{17};

    void run(int64_t count, int64_t vocab, int64_t hidden, DType id_dtype, DType table_dtype, DType y_dtype, bool strided) {
        SCOPED_TRACE(std::string(mt::dtype_name(id_dtype)) + " ids, table " + mt::dtype_name(table_dtype) + " -> y " + mt::dtype_name(y_dtype) +
                     " count " + std::to_string(count) + " hidden " + std::to_string(hidden) + (strided ? " strided" : ""));
        Tensor ids({count}, id_dtype, strided ? std::vector<int64_t>{3} : std::vector<int64_t>{});
        // strided: a table whose rows are padded and a y stored column-major
        Tensor table({vocab, hidden}, table_dtype, strided ? mt::padded_strides({vocab, hidden}, 1, 4) : std::vector<int64_t>{});
        Tensor y({count, hidden}, y_dtype, strided ? std::vector<int64_t>{1, count} : std::vector<int64_t>{});
        ids.values() = random_ids(rng_, count, vocab);
        table.fill_uniform(rng_, -3, 3);
        ids.upload(ctx());
        table.upload(ctx());
        y.upload_poisoned(ctx());
        mamba_embedding_args a{ids.dl(), table.dl(), y.dl()};
        MAMBA_ASSERT_OK(mamba_embedding(ctx(), &a));
        y.download(ctx());
        Tensor expected({count, hidden}, y_dtype);
        for (int64_t i = 0; i < count; ++i)
            for (int64_t j = 0; j < hidden; ++j) expected.at(i * hidden + j) = table.at(int64_t(ids.at(i)) * hidden + j);
        expected.round_to_dtype();
        EXPECT_EQ(y.values(), expected.values());
    }
};

TEST_P(EmbeddingTest, GathersRowsOfTheTable) {
    for (DType id_dtype : {DType::I32, DType::I64}) {
        for (DType table_dtype : {DType::F32, DType::F16, DType::BF16}) {
            for (DType y_dtype : {DType::F32, DType::F16, DType::BF16}) {
                for (bool strided : {false, true}) {
                    run(7, 50, 24, id_dtype, table_dtype, y_dtype, strided);
                    run(1, 1, 1, id_dtype, table_dtype, y_dtype, strided);
                }
            }
        }
    }
    // enough rows to be split over threads
    run(300, 1000, 256, DType::I64, DType::BF16, DType::BF16, false);
    run(300, 1000, 256, DType::I32, DType::F32, DType::BF16, true);
}

TEST_P(EmbeddingTest, IdOutOfRangeIsRejectedAndNothingIsWritten) {
    Tensor table({10, 4}, DType::F32), y({3, 4}, DType::F32);
    std::mt19937_64 rng(1);
    table.fill_uniform(rng, -1, 1);
    table.upload(ctx());
    for (DType id_dtype : {DType::I32, DType::I64}) {
        for (double bad : {10.0, -1.0}) {
            SCOPED_TRACE(std::string(mt::dtype_name(id_dtype)) + " id " + std::to_string(bad));
            Tensor ids({3}, id_dtype);
            ids.values() = {2, 9, bad};
            ids.upload(ctx());
            y.upload_poisoned(ctx());
            mamba_embedding_args a{ids.dl(), table.dl(), y.dl()};
            EXPECT_EQ(mamba_embedding(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
            const std::string expected = "mamba_embedding: argument 'ids' holds " + std::to_string(int64_t(bad)) + " at position 2, outside the table's rows [0, 10)";
            EXPECT_EQ(std::string(mamba_last_error()), expected);
            y.download(ctx());
            for (double v : y.values()) EXPECT_TRUE(std::isnan(v)) << "y was written although an id was invalid";
        }
    }
}

TEST_P(EmbeddingTest, InvalidArgumentsNameTheArgument) {
    Tensor ids({3}, DType::I32), ids_float({3}, DType::F32), table({10, 4}, DType::F32), y({3, 4}, DType::F32), y_bad({3, 5}, DType::F32);
    Tensor table_1d({10}, DType::F32), empty_table({0, 4}, DType::F32);
    ids.values() = {1, 2, 3};
    for (Tensor * t : {&ids, &ids_float, &table, &y, &y_bad, &table_1d, &empty_table}) t->upload(ctx());
    auto expect_error = [&](mamba_embedding_args a, mamba_status status, const std::string & message) {
        EXPECT_EQ(mamba_embedding(ctx(), &a), status) << message;
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    };
    expect_error({ids_float.dl(), table.dl(), y.dl()}, MAMBA_STATUS_UNSUPPORTED, "argument 'ids' has dtype float32; expected int32 or int64");
    expect_error({ids.dl(), table.dl(), y_bad.dl()}, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' has shape (3, 5), expected (3, 4)");
    expect_error({ids.dl(), table_1d.dl(), y.dl()}, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'table' has 1 axes");
    expect_error({ids.dl(), empty_table.dl(), y.dl()}, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'table' has shape (0, 4)");
    expect_error({nullptr, table.dl(), y.dl()}, MAMBA_STATUS_INVALID_ARGUMENT, "mamba_embedding: argument 'ids' is null");
    expect_error({ids.dl(), table.dl(), table.dl()}, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' has shape (10, 4), expected (3, 4)");
    EXPECT_EQ(mamba_embedding(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_embedding: argument 'args' is null");
}

MAMBA_INSTANTIATE_BACKENDS(EmbeddingTest);
