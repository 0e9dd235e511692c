//! WebSocket transport: handshake, framing, the connection future and its protocol.

pub mod connection;
#[cfg(target_os = "linux")]
pub mod direct;
pub use signalhub_wire::frame;
pub mod handshake;
pub mod protocol;
pub mod rate;
mod session;
