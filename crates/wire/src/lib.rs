//! signalhub-wire: the server side of the WebSocket wire format (RFC 6455).
//!
//! # Layout
//! - [`frame`]: the incremental, validating decoder of client->server frames (masking,
//!   RSV and opcode checks, control-frame rules, fragmentation, UTF-8 of text messages and
//!   close reasons, close-code validation, the message-size limit) and the encoders of
//!   unmasked server->client frames. Its unit and property tests are in `frame_tests.rs`.
//! - [`deflate`]: permessage-deflate (RFC 7692): `negotiate.rs` picks a client's offer and
//!   writes the response header (always `server_no_context_takeover`), `compress.rs` turns a
//!   payload into one shareable compressed frame, `inflate.rs` inflates client messages
//!   within the size limit (the decoder calls it when built with
//!   [`frame::Decoder::with_deflate`]); their tests are in `deflate/tests.rs`.
//! - `tests/fuzz.rs`: arbitrary-input runs of the decoder, bounded for `cargo test`.
//! - `examples/echo.rs`: an echo server on this codec alone, for Autobahn|Testsuite's
//!   fuzzingclient (`scripts/autobahn.sh`, cases 1-7, 9 and 10).

pub mod deflate;
pub mod frame;
