//! Calling libmamba from Rust through its C header: [`sys`] holds the declarations, this module a safe wrapper over
//! them. Tensors are DLPack views of the caller's own `f32` slices (no copy); every call returns libmamba's status
//! as a [`Result`], with the library's message on failure.

pub mod sys;

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::c_void;
use std::ptr;

/// A failed call: libmamba's status and message (`mamba_last_error`), or a check this wrapper makes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: sys::mamba_status,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, status_name(self.status))
    }
}

impl std::error::Error for Error {}

fn c_string(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libmamba returns NUL-terminated strings that stay valid at least until the next call on this thread.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The name libmamba gives a status, e.g. "MAMBA_STATUS_INVALID_ARGUMENT".
pub fn status_name(status: sys::mamba_status) -> String {
    // SAFETY: any status value is accepted and a static string returned.
    c_string(unsafe { sys::mamba_status_name(status) })
}

/// The loaded library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> String {
    // SAFETY: a static string.
    c_string(unsafe { sys::mamba_version() })
}

fn check(status: sys::mamba_status) -> Result<(), Error> {
    if status == sys::MAMBA_STATUS_OK {
        return Ok(());
    }
    // SAFETY: the thread's last error, read right after the failed call on this thread.
    Err(Error {
        status,
        message: c_string(unsafe { sys::mamba_last_error() }),
    })
}

fn invalid(message: String) -> Error {
    Error {
        status: sys::MAMBA_STATUS_INVALID_ARGUMENT,
        message,
    }
}

/// A CPU context: libmamba's threads and scratch memory. One thread at a time may use it (it is `Send`, not `Sync`).
pub struct Context {
    raw: *mut sys::mamba_context,
}

// SAFETY: a context may move between threads; libmamba only asks that one thread use it at a time, which the
// missing `Sync` enforces.
unsafe impl Send for Context {}

impl Context {
    /// A CPU context with `threads` worker threads (0: every core). Fails first where the loaded library's ABI
    /// version is not the one [`sys`] was written for.
    pub fn cpu(threads: i32) -> Result<Self, Error> {
        // SAFETY: no arguments.
        let abi = unsafe { sys::mamba_abi_version() };
        if abi != sys::MAMBA_ABI_VERSION {
            return Err(Error {
                status: sys::MAMBA_STATUS_UNSUPPORTED,
                message: format!("the loaded libmamba has ABI version {abi}; these declarations follow version {}", sys::MAMBA_ABI_VERSION),
            });
        }
        // SAFETY: returns a struct by value.
        let mut params = unsafe { sys::mamba_context_default_params() };
        params.device_type = sys::MAMBA_DEVICE_CPU;
        params.num_threads = threads;
        let mut raw = ptr::null_mut();
        // SAFETY: params and the out pointer are valid for the call.
        check(unsafe { sys::mamba_context_create(&params, &mut raw) })?;
        Ok(Context { raw })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by mamba_context_create and freed once.
        unsafe { sys::mamba_context_free(self.raw) }
    }
}

/// The shape of a row-major float32 view over `len` elements; a mismatch is an error here, before libmamba reads
/// memory the slice does not own.
fn checked_shape(len: usize, shape: &[i64]) -> Result<Vec<i64>, Error> {
    if shape.iter().any(|&d| d < 0) {
        return Err(invalid(format!("shape {shape:?} has a negative dimension")));
    }
    match shape.iter().try_fold(1i64, |n, &d| n.checked_mul(d)) {
        Some(count) if count as u64 == len as u64 => {}
        Some(count) => {
            return Err(invalid(format!(
                "shape {shape:?} holds {count} elements, the slice {len}"
            )))
        }
        None => {
            return Err(invalid(format!(
                "shape {shape:?} holds more elements than an i64 counts"
            )))
        }
    }
    Ok(shape.to_vec())
}

fn dl_tensor(data: *mut f32, shape: &[i64]) -> sys::DLTensor {
    sys::DLTensor {
        data: data as *mut c_void,
        device: sys::DLDevice {
            device_type: sys::KDL_CPU,
            device_id: 0,
        },
        ndim: shape.len() as i32,
        dtype: sys::DLDataType {
            code: sys::KDL_FLOAT,
            bits: 32,
            lanes: 1,
        },
        shape: shape.as_ptr() as *mut i64,
        strides: ptr::null_mut(),
        byte_offset: 0,
    }
}

/// A read-only float32 row-major view of a slice.
pub struct Tensor<'a> {
    data: *const f32,
    shape: Vec<i64>,
    _data: PhantomData<&'a [f32]>,
}

impl<'a> Tensor<'a> {
    pub fn new(data: &'a [f32], shape: &[i64]) -> Result<Self, Error> {
        Ok(Tensor {
            data: data.as_ptr(),
            shape: checked_shape(data.len(), shape)?,
            _data: PhantomData,
        })
    }

    // libmamba takes inputs as const DLTensor *: it never writes through this pointer.
    fn dl(&self) -> sys::DLTensor {
        dl_tensor(self.data as *mut f32, &self.shape)
    }
}

/// A writable float32 row-major view of a slice (an output, or a state updated in place).
pub struct TensorMut<'a> {
    data: *mut f32,
    shape: Vec<i64>,
    _data: PhantomData<&'a mut [f32]>,
}

impl<'a> TensorMut<'a> {
    pub fn new(data: &'a mut [f32], shape: &[i64]) -> Result<Self, Error> {
        Ok(TensorMut {
            data: data.as_mut_ptr(),
            shape: checked_shape(data.len(), shape)?,
            _data: PhantomData,
        })
    }

    fn dl(&mut self) -> sys::DLTensor {
        dl_tensor(self.data, &self.shape)
    }
}

fn optional(t: Option<&Tensor<'_>>) -> Option<sys::DLTensor> {
    t.map(|t| t.dl())
}

fn pointer(t: &Option<sys::DLTensor>) -> *const sys::DLTensor {
    t.as_ref()
        .map_or(ptr::null(), |t| t as *const sys::DLTensor)
}

/// RMSNorm: `y = x / sqrt(mean(x^2) + eps) * weight` over the last axis of `x` (rows, hidden).
pub fn rms_norm(
    ctx: &Context,
    x: &Tensor<'_>,
    weight: &Tensor<'_>,
    y: &mut TensorMut<'_>,
    eps: f32,
) -> Result<(), Error> {
    let (x, weight, mut y) = (x.dl(), weight.dl(), y.dl());
    let args = sys::mamba_rms_norm_args {
        x: &x,
        residual: ptr::null(),
        weight: &weight,
        y: &mut y,
        residual_out: ptr::null_mut(),
        eps,
    };
    // SAFETY: every DLTensor views a live slice of the size its shape says; y is borrowed mutably, so it aliases
    // no input.
    check(unsafe { sys::mamba_rms_norm(ctx.raw, &args) })
}

/// The inputs of one Mamba-1 decode step (`mamba_selective_state_update`), shapes as in docs/c-api.md: `x`, `dt`,
/// `z` (batch, dim); `a` (dim, dstate); `b`, `c` (batch, groups, dstate); `d`, `dt_bias` (dim).
pub struct StepInputs<'t, 'a> {
    pub x: &'t Tensor<'a>,
    pub dt: &'t Tensor<'a>,
    pub a: &'t Tensor<'a>,
    pub b: &'t Tensor<'a>,
    pub c: &'t Tensor<'a>,
    pub d: Option<&'t Tensor<'a>>,
    pub z: Option<&'t Tensor<'a>>,
    pub dt_bias: Option<&'t Tensor<'a>>,
    pub dt_softplus: bool,
}

/// One token of the selective scan: `dt = softplus(dt + dt_bias)`, `state = exp(dt A) state + dt B x`,
/// `y = (C.state + D x) * silu(z)`; `state` (batch, dim, dstate) is updated in place.
pub fn selective_state_update(
    ctx: &Context,
    state: &mut TensorMut<'_>,
    inputs: &StepInputs<'_, '_>,
    y: &mut TensorMut<'_>,
) -> Result<(), Error> {
    let (x, dt, a, b, c) = (
        inputs.x.dl(),
        inputs.dt.dl(),
        inputs.a.dl(),
        inputs.b.dl(),
        inputs.c.dl(),
    );
    let (d, z, dt_bias) = (
        optional(inputs.d),
        optional(inputs.z),
        optional(inputs.dt_bias),
    );
    let (mut state, mut y) = (state.dl(), y.dl());
    let args = sys::mamba_selective_state_update_args {
        state: &mut state,
        x: &x,
        dt: &dt,
        A: &a,
        B: &b,
        C: &c,
        D: pointer(&d),
        z: pointer(&z),
        dt_bias: pointer(&dt_bias),
        y: &mut y,
        dt_softplus: inputs.dt_softplus as i32,
        dt_proj_weight: ptr::null(),
    };
    // SAFETY: as for rms_norm; state and y are borrowed mutably, apart from every input.
    check(unsafe { sys::mamba_selective_state_update(ctx.raw, &args) })
}
