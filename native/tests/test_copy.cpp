// mamba_copy: strided copies with dtype conversion.
#include "backend_test.h"

using mt::DType;
using mt::Tensor;

class CopyTest : public mt::BackendTest {};

TEST_P(CopyTest, ConvertsBetweenFloatDtypesAndLayouts) {
    std::mt19937_64 rng(7);
    for (DType from : {DType::F32, DType::F16, DType::BF16}) {
        for (DType to : {DType::F32, DType::F16, DType::BF16}) {
            SCOPED_TRACE(std::string(mt::dtype_name(from)) + " -> " + mt::dtype_name(to));
            Tensor src({3, 5, 7}, from, mt::padded_strides({3, 5, 7}, 2, 3));
            // dst is the transpose-like layout: axis 0 fastest
            Tensor dst({3, 5, 7}, to, {1, 3 * 7, 3});
            src.fill_uniform(rng, -100, 100);
            src.upload(ctx());
            dst.upload_poisoned(ctx());
            MAMBA_ASSERT_OK(mamba_copy(ctx(), src.dl(), dst.dl()));
            dst.download(ctx());
            Tensor expected({3, 5, 7}, to);
            expected.values() = src.values();
            expected.round_to_dtype();
            EXPECT_EQ(dst.values(), expected.values());
        }
    }
}

TEST_P(CopyTest, ConvertsIntegers) {
    Tensor src({4}, DType::I64), dst({4}, DType::I32);
    src.values() = {0, -5, 50277, 2147483647};
    src.upload(ctx());
    dst.upload_poisoned(ctx());
    MAMBA_ASSERT_OK(mamba_copy(ctx(), src.dl(), dst.dl()));
    dst.download(ctx());
    EXPECT_EQ(dst.values(), src.values());
}

TEST_P(CopyTest, ShapeMismatchAndFloatToIntAreRejected) {
    Tensor a({2, 3}, DType::F32), b({3, 2}, DType::F32), c({2, 3}, DType::I32);
    a.upload(ctx());
    b.upload(ctx());
    c.upload(ctx());
    EXPECT_EQ(mamba_copy(ctx(), a.dl(), b.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_copy: argument 'dst' has shape (3, 2), expected (2, 3) like 'src'");
    EXPECT_EQ(mamba_copy(ctx(), a.dl(), c.dl()), MAMBA_STATUS_UNSUPPORTED);
}

MAMBA_INSTANTIATE_BACKENDS(CopyTest);
