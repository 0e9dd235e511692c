//! Local replay servers that speak each exchange's real protocol, so connectors are tested
//! against the rules the exchanges enforce rather than against assumptions (reference section
//! 5.6): Coinbase's subscribe deadline, `subscriptions` ack and heartbeats; Binance's combined
//! stream paths, pings that must be answered with the same payload, `SUBSCRIBE` answers and its
//! 5 messages a second limit. Both play scripted frames from JSONL fixtures byte for byte and
//! can be told to stall (go silent) or drop every connection.
//!
//! They listen on 127.0.0.1, port 0. Built with the `testing` feature, so the server's tests
//! can start them too.

mod binance;
mod coinbase;
mod control;
mod script;

pub use binance::start_binance;
pub use coinbase::start_coinbase;
pub use control::{ReplayOptions, ReplayServer};
pub use script::Script;
