//! The Gloo process group through the C++ shim (`c10d_shim.cpp`): owning handle, error messages.

use std::ffi::{c_char, c_int, c_long, CString};

use tch::Tensor;
use torch_sys::C_tensor;

use crate::Launch;

#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}

extern "C" {
    fn rlhf_group_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_long,
        err: *mut c_char,
        len: usize,
    ) -> *mut RawGroup;
    fn rlhf_group_free(group: *mut RawGroup);
    fn rlhf_group_all_reduce_sum(group: *mut RawGroup, tensor: *mut C_tensor, err: *mut c_char, len: usize) -> c_int;
    fn rlhf_group_broadcast(
        group: *mut RawGroup,
        tensor: *mut C_tensor,
        root: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn rlhf_group_barrier(group: *mut RawGroup, err: *mut c_char, len: usize) -> c_int;
    fn rlhf_ensure_grad(param: *mut C_tensor, err: *mut c_char, len: usize) -> c_int;
}

/// Runs a shim call that reports failure as non-zero plus a message.
fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut err = vec![0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    Err(message(&err))
}

fn message(err: &[c_char]) -> String {
    let bytes: Vec<u8> = err.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A tensor handle as the shim takes it (c10d writes through it in place).
fn raw(tensor: &Tensor) -> *mut C_tensor {
    tensor.as_ptr() as *mut C_tensor
}

/// A `ProcessGroupGloo` over a `TCPStore` (rank 0 hosts it at the master address).
pub struct Group(*mut RawGroup);

// SAFETY: the group is only used from the training thread, one collective at a time; c10d's
// process groups are themselves safe to call from any thread.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    pub fn new(launch: &Launch, timeout_ms: u64) -> Result<Group, String> {
        let host = CString::new(launch.master_addr.as_str()).map_err(|e| e.to_string())?;
        let mut err = vec![0 as c_char; 1024];
        // SAFETY: valid C string and error buffer for the duration of the call.
        let group = unsafe {
            rlhf_group_new(
                host.as_ptr(),
                c_int::from(launch.master_port),
                launch.rank as c_int,
                launch.size as c_int,
                timeout_ms as c_long,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if group.is_null() {
            return Err(format!("{} (master {}:{})", message(&err), launch.master_addr, launch.master_port));
        }
        Ok(Group(group))
    }

    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), String> {
        // SAFETY: a live group and tensor handle.
        call(|err, len| unsafe { rlhf_group_all_reduce_sum(self.0, raw(tensor), err, len) })
    }

    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), String> {
        // SAFETY: a live group and tensor handle.
        call(|err, len| unsafe { rlhf_group_broadcast(self.0, raw(tensor), root as c_int, err, len) })
    }

    pub fn barrier(&self) -> Result<(), String> {
        // SAFETY: a live group.
        call(|err, len| unsafe { rlhf_group_barrier(self.0, err, len) })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `rlhf_group_new` and is freed once.
        unsafe { rlhf_group_free(self.0) }
    }
}

/// Gives `param` a zero gradient when it has none.
pub fn ensure_grad(param: &Tensor) -> Result<(), String> {
    // SAFETY: a live tensor handle.
    call(|err, len| unsafe { rlhf_ensure_grad(raw(param), err, len) })
}
