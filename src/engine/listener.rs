//! Listening sockets: one per core on the same address (SO_REUSEPORT), so
//! the kernel spreads incoming connections over the cores.
//!
//! Owns: creating and configuring listening sockets (via `socket2`).
//! Must not touch: accepted connections.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel accept queue length asked for (capped by `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;

/// A non-blocking listener on `addr` with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}
