"""libmamba through ctypes against NumPy (always) and PyTorch on CUDA (when a GPU and torch are present)."""
import numpy as np
import pytest

import mamba_ctypes as mamba


def rms_norm_reference(x, w, eps, residual=None):
    r = x.astype(np.float64) + (0 if residual is None else residual.astype(np.float64))
    return r / np.sqrt((r * r).mean(-1, keepdims=True) + eps) * w.astype(np.float64), r


@pytest.fixture
def ctx():
    with mamba.Context() as c:
        yield c


def test_version():
    assert mamba.version().count(".") >= 2


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float16, 2e-3)])
def test_rms_norm_numpy(ctx, dtype, tol):
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (5, 96)).astype(dtype)
    w = rng.uniform(0.5, 1.5, 96).astype(dtype)
    res = rng.uniform(-1, 1, (5, 96)).astype(dtype)
    res_out = np.full((5, 96), np.nan, dtype=np.float32)
    y = mamba.rms_norm(ctx, x, w, 1e-5, residual=res, residual_out=res_out)
    ref, r = rms_norm_reference(x, w, 1e-5, res)
    assert np.abs(y.astype(np.float64) - ref).max() / np.abs(ref).max() < tol
    assert np.abs(res_out - r).max() < 1e-5


def test_rms_norm_strided_view_is_zero_copy(ctx):
    rng = np.random.default_rng(2)
    big = rng.uniform(-1, 1, (8, 64)).astype(np.float32)
    x = big[::2]  # every other row: a strided view, not a copy
    w = np.ones(64, dtype=np.float32)
    out = np.full((8, 64), np.nan, dtype=np.float32)
    mamba.rms_norm(ctx, x, w, 1e-5, out=out[1::2])
    ref, _ = rms_norm_reference(x, w, 1e-5)
    assert np.abs(out[1::2] - ref).max() < 1e-5
    assert np.isnan(out[0::2]).all()  # rows outside the view untouched


def test_linear_numpy(ctx):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 48)).astype(np.float32)
    w = rng.standard_normal((33, 48)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    y = mamba.linear(ctx, x, w, b)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def test_linear_softplus_numpy(ctx):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 40)).astype(np.float32)
    w = rng.standard_normal((21, 40)).astype(np.float32)
    b = rng.uniform(-6, 2, 21).astype(np.float32)  # sums from about -20 to 15: both sides of the softplus
    y = mamba.linear(ctx, x, w, b, softplus=True)
    ref = np.logaddexp(0.0, x.astype(np.float64) @ w.T.astype(np.float64) + b)
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5
    assert (y > 0).all()


def test_log_softmax_numpy(ctx):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((4, 300)) * 5).astype(np.float32)
    y = mamba.softmax(ctx, x, log=True)
    x64 = x.astype(np.float64)
    ref = x64 - x64.max(-1, keepdims=True)
    ref -= np.log(np.exp(ref).sum(-1, keepdims=True))
    assert np.abs(y - ref).max() < 1e-4


def test_error_names_the_argument(ctx):
    x = np.ones((2, 8), dtype=np.float32)
    with pytest.raises(mamba.MambaError) as e:
        mamba.rms_norm(ctx, x, np.ones(7, dtype=np.float32))
    assert e.value.status == "MAMBA_STATUS_INVALID_ARGUMENT"
    assert "weight" in str(e.value)


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch


def test_rms_norm_torch_cuda_zero_copy():
    torch = _torch_cuda()
    g = torch.Generator(device="cuda").manual_seed(5)
    x = torch.rand((64, 512), device="cuda", generator=g, dtype=torch.bfloat16) * 4 - 2
    w = torch.rand(512, device="cuda", generator=g) + 0.5
    y = torch.full_like(x, float("nan"))
    with mamba.Context.for_array(x, stream=torch.cuda.current_stream().cuda_stream) as ctx:
        out = mamba.rms_norm(ctx, x, w, 1e-5, out=y)
        ctx.synchronize()
    assert out.data_ptr() == y.data_ptr()
    ref = x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5) * w.double()
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-2


def test_linear_torch_cuda():
    torch = _torch_cuda()
    g = torch.Generator(device="cuda").manual_seed(6)
    x = torch.randn((16, 256), device="cuda", generator=g, dtype=torch.bfloat16)
    w = torch.randn((384, 256), device="cuda", generator=g, dtype=torch.bfloat16)
    with mamba.Context.for_array(x, stream=torch.cuda.current_stream().cuda_stream) as ctx:
        y = mamba.linear(ctx, x, w)
        ctx.synchronize()
    ref = x.double() @ w.double().T
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-2
