//! The declarations of `mamba/mamba.h` (ABI version 3) and `dlpack/dlpack.h` that this crate calls, written to match
//! the header: C enums are `i32`, structs are `#[repr(C)]` with the header's fields in its order. Checked against the
//! loaded library's ABI version when a [`crate::Context`] is created.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_void};

/// `MAMBA_ABI_VERSION` of the header these declarations follow.
pub const MAMBA_ABI_VERSION: i32 = 3;

/// `mamba_status`: `MAMBA_STATUS_OK` and the failures.
pub type mamba_status = i32;
pub const MAMBA_STATUS_OK: mamba_status = 0;
pub const MAMBA_STATUS_INVALID_ARGUMENT: mamba_status = 1;
pub const MAMBA_STATUS_UNSUPPORTED: mamba_status = 2;

/// `mamba_device_type`.
pub const MAMBA_DEVICE_CPU: i32 = 1;

/// DLPack's `kDLCPU` and `kDLFloat`.
pub const KDL_CPU: i32 = 1;
pub const KDL_FLOAT: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DLDevice {
    pub device_type: i32,
    pub device_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    /// Null: compact row-major.
    pub strides: *mut i64,
    pub byte_offset: u64,
}

/// The opaque `mamba_context`.
#[repr(C)]
pub struct mamba_context {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mamba_context_params {
    pub device_type: i32,
    pub device_id: i32,
    pub num_threads: i32,
}

#[repr(C)]
pub struct mamba_rms_norm_args {
    pub x: *const DLTensor,
    pub residual: *const DLTensor,
    pub weight: *const DLTensor,
    pub y: *mut DLTensor,
    pub residual_out: *mut DLTensor,
    pub eps: f32,
}

#[repr(C)]
#[allow(non_snake_case)]
pub struct mamba_selective_state_update_args {
    pub state: *mut DLTensor,
    pub x: *const DLTensor,
    pub dt: *const DLTensor,
    pub A: *const DLTensor,
    pub B: *const DLTensor,
    pub C: *const DLTensor,
    pub D: *const DLTensor,
    pub z: *const DLTensor,
    pub dt_bias: *const DLTensor,
    pub y: *mut DLTensor,
    pub dt_softplus: i32,
    pub dt_proj_weight: *const DLTensor,
}

extern "C" {
    pub fn mamba_abi_version() -> i32;
    pub fn mamba_version() -> *const c_char;
    pub fn mamba_last_error() -> *const c_char;
    pub fn mamba_status_name(status: mamba_status) -> *const c_char;
    pub fn mamba_context_default_params() -> mamba_context_params;
    pub fn mamba_context_create(
        params: *const mamba_context_params,
        out_context: *mut *mut mamba_context,
    ) -> mamba_status;
    pub fn mamba_context_free(context: *mut mamba_context);
    pub fn mamba_rms_norm(
        context: *mut mamba_context,
        args: *const mamba_rms_norm_args,
    ) -> mamba_status;
    pub fn mamba_selective_state_update(
        context: *mut mamba_context,
        args: *const mamba_selective_state_update_args,
    ) -> mamba_status;
}
