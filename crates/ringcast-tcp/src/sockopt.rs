//! The socket options of repair mode, which no safe crate wraps: the only
//! `unsafe` of the project's takeover, kept to four calls.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Sets an `int` socket option.
pub(crate) fn set_i32(sock: &impl AsFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    set_bytes(sock, level, name, &value.to_ne_bytes())
}

/// Sets a socket option from its raw bytes (a C struct laid out by hand).
pub(crate) fn set_bytes(sock: &impl AsFd, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: `fd` is a descriptor borrowed for the call; the kernel reads
    // `value.len()` bytes from a live slice and keeps no pointer to it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an `int` socket option.
pub(crate) fn get_i32(sock: &impl AsFd, level: i32, name: i32) -> io::Result<i32> {
    let mut buf = [0u8; 4];
    let len = get_bytes(sock, level, name, &mut buf)?;
    if len != 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a socket option shorter than an int",
        ));
    }
    Ok(i32::from_ne_bytes(buf))
}

fn get_bytes(sock: &impl AsFd, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let fd = sock.as_fd().as_raw_fd();
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into the live, mutable
    // slice `buf` and stores the length written in `len`.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The fields of `struct tcp_info` a takeover reads.
pub(crate) struct TcpInfo {
    pub(crate) options: u8,
    pub(crate) snd_wscale: u8,
    pub(crate) rcv_wscale: u8,
    pub(crate) snd_mss: u32,
    pub(crate) bytes_received: u64,
}

/// Reads `TCP_INFO` (Linux 4.1 or later, for `tcpi_bytes_received`).
pub(crate) fn get_tcp_info(sock: &impl AsFd) -> io::Result<TcpInfo> {
    let mut buf = [0u8; 136];
    let len = get_bytes(sock, libc::IPPROTO_TCP, libc::TCP_INFO, &mut buf)?;
    if len < 136 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's TCP_INFO has no tcpi_bytes_received",
        ));
    }
    let u32_at = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mut u64_bytes = [0u8; 8];
    u64_bytes.copy_from_slice(&buf[128..136]);
    Ok(TcpInfo {
        options: buf[5],
        // tcpi_snd_wscale:4, tcpi_rcv_wscale:4, lowest bits first.
        snd_wscale: buf[6] & 0x0f,
        rcv_wscale: buf[6] >> 4,
        snd_mss: u32_at(16),
        bytes_received: u64::from_ne_bytes(u64_bytes),
    })
}
