//! Free TCP ports on 127.0.0.1 for QEMU's host forwards.

use std::net::TcpListener;

/// A port that was free a moment ago. QEMU binds it right after; another
/// process could take it in between, which QEMU reports as a failed start.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `preferred` if it can be bound now, else any free port.
pub fn preferred_or_free(preferred: u16) -> std::io::Result<u16> {
    match TcpListener::bind(("127.0.0.1", preferred)) {
        Ok(_) => Ok(preferred),
        Err(_) => free_port(),
    }
}
