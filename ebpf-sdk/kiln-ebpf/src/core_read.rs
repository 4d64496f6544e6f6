//! CO-RE (compile once, run everywhere) field reads of kernel structs.
//!
//! Each accessor is a C function in `shim/kiln_core.c`, compiled by clang
//! with `preserve_access_index` and linked as bitcode into the program by
//! bpf-linker, so the object carries `.BTF.ext` CO-RE relocations and the
//! loader adjusts the field offsets to the running kernel. See the SDK's
//! README for why this goes through C.
//!
//! Minimum kernel version: 5.5 (`bpf_probe_read_kernel`), with kernel BTF.

#[cfg(target_arch = "bpf")]
mod sys {
    use core::ffi::c_void;
    unsafe extern "C" {
        pub fn kiln_core_task_pid(task: *const c_void) -> u32;
        pub fn kiln_core_task_tgid(task: *const c_void) -> u32;
        pub fn kiln_core_task_real_parent(task: *const c_void) -> *const c_void;
    }
}

#[cfg(not(target_arch = "bpf"))]
mod sys {
    //! Host stand-ins with the same signatures, so `cargo check` and unit
    //! tests build; there is no kernel memory to read on the host.
    use core::ffi::c_void;
    pub unsafe fn kiln_core_task_pid(_task: *const c_void) -> u32 {
        0
    }
    pub unsafe fn kiln_core_task_tgid(_task: *const c_void) -> u32 {
        0
    }
    pub unsafe fn kiln_core_task_real_parent(_task: *const c_void) -> *const c_void {
        core::ptr::null()
    }
}

/// A `struct task_struct *` from the kernel (e.g. `bpf_get_current_task()`).
#[derive(Clone, Copy)]
pub struct Task(pub *const core::ffi::c_void);

impl Task {
    /// The current task (`bpf_get_current_task`).
    #[inline(always)]
    pub fn current() -> Self {
        // SAFETY: takes no arguments.
        Task(unsafe { crate::helpers::bpf_get_current_task() } as *const core::ffi::c_void)
    }

    /// `task->pid` (the thread id), CO-RE relocated.
    #[inline(always)]
    pub fn pid(&self) -> u32 {
        // SAFETY: the accessor only reads through bpf_probe_read_kernel, which never faults.
        unsafe { sys::kiln_core_task_pid(self.0) }
    }

    /// `task->tgid` (the process id), CO-RE relocated.
    #[inline(always)]
    pub fn tgid(&self) -> u32 {
        // SAFETY: as `pid`.
        unsafe { sys::kiln_core_task_tgid(self.0) }
    }

    /// `task->real_parent`, CO-RE relocated.
    #[inline(always)]
    pub fn real_parent(&self) -> Task {
        // SAFETY: as `pid`.
        Task(unsafe { sys::kiln_core_task_real_parent(self.0) })
    }
}
