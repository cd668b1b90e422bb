//! The one socket option neither `socket2` nor `nix` offers: `SO_ZEROCOPY`, for the floor's
//! `--send zerocopy` experiment (issue #12). The only `unsafe` code of the workspace; the
//! bench crate denies it everywhere else.
#![allow(unsafe_code)]

use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Allows `MSG_ZEROCOPY` sends on `sock` (without it the flag is ignored).
pub(crate) fn set_zerocopy(sock: &TcpStream) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `sock` is an open socket for the whole call, and the option value is a c_int
    // that lives on this stack frame with its exact size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
