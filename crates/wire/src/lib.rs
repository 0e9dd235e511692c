//! signalhub-wire: the server side of the WebSocket wire format (RFC 6455).
//!
//! # Layout
//! - [`frame`]: the incremental, validating decoder of client->server frames (masking,
//!   RSV and opcode checks, control-frame rules, fragmentation, UTF-8 of text messages and
//!   close reasons, close-code validation, the message-size limit) and the encoders of
//!   unmasked server->client frames. Its unit and property tests are in `frame_tests.rs`.

pub mod frame;
