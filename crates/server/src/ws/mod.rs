//! WebSocket transport: handshake, framing, the connection future and its protocol.

pub mod connection;
pub mod frame;
pub mod handshake;
pub mod protocol;
pub mod rate;
mod session;
