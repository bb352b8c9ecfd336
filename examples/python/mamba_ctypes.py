"""libmamba from Python with nothing but ctypes: any array that speaks DLPack (NumPy on the CPU, PyTorch or
CuPy on CPU or CUDA) is handed to the kernels zero-copy.

    import numpy as np, mamba_ctypes as mamba
    ctx = mamba.Context()                       # CPU; mamba.Context.for_array(x) picks x's device
    y = mamba.rms_norm(ctx, x, weight, eps=1e-5)

The library is found at $MAMBA_NATIVE_LIBRARY, else next to this file, else in the repository's
build/native/lib, else through the system loader.
"""
import ctypes
import os
import pathlib

# ---- DLPack structures (dlpack.h, version 0.8 / 1.x legacy capsule layout) ----------------------------
K_DL_CPU, K_DL_CUDA = 1, 2


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


# ---- mamba.h structures used here --------------------------------------------------------------------
class ContextParams(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32), ("num_threads", ctypes.c_int32)]


_P = ctypes.POINTER(DLTensor)


class RmsNormArgs(ctypes.Structure):
    _fields_ = [("x", _P), ("residual", _P), ("weight", _P), ("y", _P), ("residual_out", _P), ("eps", ctypes.c_float)]


class LinearArgs(ctypes.Structure):
    _fields_ = [("x", _P), ("weight", _P), ("bias", _P), ("y", _P)]


class MambaError(RuntimeError):
    """A failed libmamba call: `status` is the status name, the message is the library's own."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _find_library():
    env = os.environ.get("MAMBA_NATIVE_LIBRARY")
    here = pathlib.Path(__file__).resolve().parent
    candidates = [env] if env else []
    candidates += [str(here / "libmamba.so"), str(here.parent.parent / "build" / "native" / "lib" / "libmamba.so")]
    for path in candidates:
        if path and os.path.exists(path):
            return ctypes.CDLL(path)
    return ctypes.CDLL("libmamba.so.0")


_lib = _find_library()
_lib.mamba_last_error.restype = ctypes.c_char_p
_lib.mamba_status_name.restype = ctypes.c_char_p
_lib.mamba_version.restype = ctypes.c_char_p
_lib.mamba_context_create.argtypes = [ctypes.POINTER(ContextParams), ctypes.POINTER(ctypes.c_void_p)]
_lib.mamba_context_free.argtypes = [ctypes.c_void_p]
_lib.mamba_context_synchronize.argtypes = [ctypes.c_void_p]
_lib.mamba_context_set_stream.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_OPS = {  # op name -> argument types, bound on first use
    "mamba_rms_norm": [ctypes.c_void_p, ctypes.POINTER(RmsNormArgs)],
    "mamba_linear": [ctypes.c_void_p, ctypes.POINTER(LinearArgs)],
    "mamba_linear_softplus": [ctypes.c_void_p, ctypes.POINTER(LinearArgs)],
    "mamba_softmax": [ctypes.c_void_p, _P, _P, ctypes.c_int32],
}


def _op(name):
    fn = getattr(_lib, name)
    fn.argtypes = _OPS[name]
    return fn

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def version():
    return _lib.mamba_version().decode()


def _check(status):
    if status != 0:
        raise MambaError(_lib.mamba_status_name(status).decode(), _lib.mamba_last_error().decode())


class _View:
    """A borrowed DLTensor of an array, kept valid (with its capsule) for as long as this object lives."""

    def __init__(self, array):
        self.capsule = array.__dlpack__()  # not consumed: the producer still owns the memory
        managed = ctypes.cast(_capsule_pointer(self.capsule, b"dltensor"), ctypes.POINTER(DLManagedTensor))
        self.pointer = ctypes.pointer(managed.contents.dl_tensor)


def _view(array):
    return None if array is None else _View(array)


def _ptr(view):
    return view.pointer if view is not None else None


class Context:
    """A libmamba context on one device; free it with close() or a with-block."""

    def __init__(self, device_type=K_DL_CPU, device_id=0, num_threads=0):
        params = ContextParams(device_type, device_id, num_threads)
        handle = ctypes.c_void_p()
        _check(_lib.mamba_context_create(ctypes.byref(params), ctypes.byref(handle)))
        self.handle = handle
        self.device = (device_type, device_id)

    @classmethod
    def for_array(cls, array, stream=None):
        """A context on the array's device; on CUDA, `stream` (e.g. torch's current stream handle) orders the
        kernels after the producer's work."""
        device_type, device_id = array.__dlpack_device__()
        ctx = cls(int(device_type), int(device_id))
        if stream is not None:
            _check(_lib.mamba_context_set_stream(ctx.handle, ctypes.c_void_p(stream)))
        return ctx

    def synchronize(self):
        _check(_lib.mamba_context_synchronize(self.handle))

    def close(self):
        if self.handle:
            _lib.mamba_context_free(self.handle)
            self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def rms_norm(ctx, x, weight, eps=1e-5, residual=None, out=None, residual_out=None):
    """y = (x + residual) / rms * weight over the last axis of a (rows, hidden) array; returns y."""
    y = out if out is not None else _empty_like(x)
    views = [_view(a) for a in (x, residual, weight, y, residual_out)]
    args = RmsNormArgs(*[_ptr(v) for v in views], eps)
    _check(_op("mamba_rms_norm")(ctx.handle, ctypes.byref(args)))
    return y


def linear(ctx, x, weight, bias=None, out=None, softplus=False):
    """y = x @ weight.T + bias, float32 accumulation; with softplus, y = softplus(x @ weight.T + bias) applied to the
    float32 sums before y is rounded (Mamba's dt projection); returns y (rows, out_features)."""
    if out is None:
        out = _empty(x, (x.shape[0], weight.shape[0]))
    views = [_view(a) for a in (x, weight, bias, out)]
    args = LinearArgs(*[_ptr(v) for v in views])
    _check(_op("mamba_linear_softplus" if softplus else "mamba_linear")(ctx.handle, ctypes.byref(args)))
    return out


def softmax(ctx, x, log=False, out=None):
    """(log-)softmax over the last axis of a (rows, n) array."""
    y = out if out is not None else _empty_like(x)
    vx, vy = _view(x), _view(y)
    _check(_op("mamba_softmax")(ctx.handle, vx.pointer, vy.pointer, 1 if log else 0))
    return y


def _empty_like(a):
    if hasattr(a, "new_empty"):  # torch
        return a.new_empty(a.shape)
    import numpy as np
    return np.empty_like(a)


def _empty(a, shape):
    if hasattr(a, "new_empty"):
        return a.new_empty(shape)
    import numpy as np
    return np.empty(shape, dtype=a.dtype)
