//! The memfds `crac restore` hands the restorer: its program, its arguments
//! and the metadata preflight checked (sealed).

use std::fs::File;
use std::io::{self, Write};

/// A close-on-exec memfd, executable (the restorer) or not.
pub(super) fn memfd(name: &std::ffi::CStr, exec: bool) -> io::Result<File> {
    use rustix::fs::{memfd_create, MemfdFlags};
    let base = MemfdFlags::CLOEXEC;
    let fd = if exec {
        // MFD_EXEC (6.3+) avoids the kernel's warning; older kernels refuse
        // the flag and allow exec anyway.
        memfd_create(name, base | MemfdFlags::EXEC).or_else(|_| memfd_create(name, base))?
    } else {
        memfd_create(name, base | MemfdFlags::NOEXEC_SEAL).or_else(|_| memfd_create(name, base))?
    };
    Ok(File::from(fd))
}

/// A memfd holding `bytes` that nobody can change any more
/// (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`).
pub(super) fn sealed_memfd(name: &std::ffi::CStr, bytes: &[u8]) -> io::Result<File> {
    use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd =
        memfd_create(name, base | MemfdFlags::NOEXEC_SEAL).or_else(|_| memfd_create(name, base))?;
    let mut f = File::from(fd);
    f.write_all(bytes)?;
    fcntl_add_seals(
        &f,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    Ok(f)
}
