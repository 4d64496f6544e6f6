//! The smallest end-to-end check of a machine: bpf(2) creates an array map,
//! stores a value and reads the same value back.

use kiln_testkit::{Need, TestResult};

/// `union bpf_attr` is larger than any command's part; 128 bytes covers the
/// map commands used here.
#[repr(C, align(8))]
struct Attr([u8; 128]);

fn bpf(cmd: i32, attr: &mut Attr) -> std::io::Result<i64> {
    // SAFETY: attr is a live, initialised buffer of the size passed; the
    // commands used here only read it (and pointers in it point to live locals).
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len() as u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn put_u32(a: &mut Attr, off: usize, v: u32) {
    a.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut Attr, off: usize, v: u64) {
    a.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn array_map_roundtrip() -> TestResult {
    let mut a = Attr([0; 128]);
    put_u32(&mut a, 0, 2); // BPF_MAP_TYPE_ARRAY
    put_u32(&mut a, 4, 4); // key_size
    put_u32(&mut a, 8, 8); // value_size
    put_u32(&mut a, 12, 4); // max_entries
    let fd = bpf(0, &mut a)? as u32; // BPF_MAP_CREATE
    let key: u32 = 2;
    let value: u64 = 0x6b69_6c6e_0000_0001;
    // BPF_MAP_UPDATE_ELEM: map_fd, key, value, flags.
    let mut u = Attr([0; 128]);
    put_u32(&mut u, 0, fd);
    put_u64(&mut u, 8, &key as *const u32 as u64);
    put_u64(&mut u, 16, &value as *const u64 as u64);
    bpf(2, &mut u)?;
    // BPF_MAP_LOOKUP_ELEM into a fresh buffer.
    let mut out: u64 = 0;
    let mut l = Attr([0; 128]);
    put_u32(&mut l, 0, fd);
    put_u64(&mut l, 8, &key as *const u32 as u64);
    put_u64(&mut l, 16, &mut out as *mut u64 as u64);
    bpf(1, &mut l)?;
    // SAFETY: fd came from BPF_MAP_CREATE above and is closed once.
    unsafe { libc::close(fd as i32) };
    if out != value {
        return Err(format!("looked up {out:#x}, stored {value:#x}").into());
    }
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![kiln_testkit::test(
        "array_map_roundtrip",
        &[Need::Bpf],
        array_map_roundtrip,
    )]);
}
