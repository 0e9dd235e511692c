//! Hostile-input runs of the frame decoder (issue 14 item 8), on stable Rust with proptest:
//! arbitrary bytes, and arbitrary frames (any flag bits, opcodes, lengths, masks, garbage or
//! real DEFLATE payloads), fed in arbitrary chunks the way a connection feeds them, with
//! and without permessage-deflate. Each run checks that the decoder never panics, never
//! consumes more than it was given, never makes a caller buffer more than its documented
//! bound, never returns a message over the limit, and that every error is one of its
//! documented ones with its close code.
//!
//! `cargo test` runs a bounded number of cases (a few seconds). The long run:
//!
//! ```text
//! SIGNALHUB_FUZZ_CASES=200000 cargo test --release -p signalhub-wire --test fuzz
//! ```

use flate2::{Compress, Compression, FlushCompress};
use proptest::collection::vec;
use proptest::prelude::*;
use signalhub_wire::deflate::{negotiate, Agreement};
use signalhub_wire::frame::{Decoded, Decoder, Message, ProtocolError, MAX_CLIENT_HEADER};
use std::sync::OnceLock;

/// Cases per property: `SIGNALHUB_FUZZ_CASES`, else a count that runs in seconds.
fn cases() -> u32 {
    std::env::var("SIGNALHUB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn agreement(no_context_takeover: bool) -> Agreement {
    let offer = if no_context_takeover {
        "permessage-deflate; client_no_context_takeover"
    } else {
        "permessage-deflate"
    };
    negotiate([offer]).expect("offer accepted")
}

/// What feeding produced: the messages, then the error that ended it, if any.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<ProtocolError>,
}

/// Feeds `input` in chunks of the given sizes as a connection does (unconsumed bytes are
/// kept and the next chunk appended), checking the decoder's contract at every step.
fn feed(dec: &mut Decoder, input: &[u8], chunks: &[usize]) -> Outcome {
    let limit = dec.max_message();
    // The decoder reports a frame's errors once its header shows them, so a caller never
    // holds more than one frame: at most max(limit, 125) + 14 bytes.
    let bound = limit.max(125) + MAX_CLIENT_HEADER;
    let mut messages = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut offset = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while offset < input.len() {
        let n = sizes.next().unwrap_or(1).clamp(1, input.len() - offset);
        pending.extend_from_slice(&input[offset..offset + n]);
        offset += n;
        loop {
            match dec.decode(&pending) {
                Ok(Decoded {
                    consumed: 0,
                    message,
                }) => {
                    assert_eq!(message, None, "a message without consuming bytes");
                    assert!(
                        pending.len() < bound,
                        "needs more after {} buffered bytes (bound {bound})",
                        pending.len()
                    );
                    break;
                }
                Ok(Decoded { consumed, message }) => {
                    assert!(consumed <= pending.len(), "consumed past the input");
                    pending.drain(..consumed);
                    if let Some(message) = message {
                        check_message(&message, limit);
                        messages.push(message);
                    }
                }
                Err(error) => {
                    check_error(&error, limit);
                    return Outcome {
                        messages,
                        error: Some(error),
                    };
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
    }
}

fn check_message(message: &Message, limit: usize) {
    match message {
        Message::Text(text) => assert!(text.len() <= limit),
        Message::Binary(data) => assert!(data.len() <= limit),
        Message::Ping(data) | Message::Pong(data) => assert!(data.len() <= 125),
        Message::Close(None) => {}
        Message::Close(Some((code, reason))) => {
            assert!(signalhub_wire::frame::is_valid_close_code(*code));
            assert!(reason.len() <= 123);
        }
    }
}

/// Every error the decoder documents, with the close code it documents for it.
fn check_error(error: &ProtocolError, limit: usize) {
    let expected_code = match error {
        ProtocolError::UnmaskedFrame
        | ProtocolError::ReservedBits
        | ProtocolError::ControlFrameTooLong
        | ProtocolError::FragmentedControlFrame
        | ProtocolError::UnexpectedContinuation
        | ProtocolError::ExpectedContinuation
        | ProtocolError::InvalidLength
        | ProtocolError::InvalidClosePayload => 1002,
        ProtocolError::ReservedOpcode(op) => {
            assert!(matches!(op, 0x3..=0x7 | 0xB..=0xF), "opcode {op:#x}");
            1002
        }
        ProtocolError::InvalidCloseCode(code) => {
            assert!(!signalhub_wire::frame::is_valid_close_code(*code));
            1002
        }
        ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => 1007,
        ProtocolError::MessageTooBig { limit: reported } => {
            assert_eq!(*reported, limit);
            1009
        }
    };
    assert_eq!(error.close_code(), expected_code, "{error:?}");
    assert!(!error.to_string().is_empty());
}

/// How a generated frame's payload is made.
#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// Text compressed with a fresh raw DEFLATE context, sync tail removed.
    Deflated(String),
    /// Zeros compressed (an index into [`BOMB_SIZES`]): inflates to far more than it takes on the
    /// wire.
    Bomb(usize),
}

#[derive(Debug, Clone)]
struct RawFrame {
    /// FIN, RSV and opcode bits, any values.
    b0: u8,
    masked: bool,
    /// Announce a length other than the payload's (truncation, overlong claims).
    length_override: Option<u64>,
    key: [u8; 4],
    body: Body,
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    loop {
        let used = c.total_in() as usize;
        c.compress_vec(&data[used..], &mut out, FlushCompress::Sync)
            .expect("compress");
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len().saturating_sub(4));
    out
}

/// Inflated sizes of the bombs: under, just over and far over a 64 KiB limit.
const BOMB_SIZES: [usize; 3] = [1000, 70_000, 200_000];

/// The bombs, compressed once per run (compressing a MiB per case would dominate it).
fn bomb(index: usize) -> &'static [u8] {
    static BOMBS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &BOMBS.get_or_init(|| BOMB_SIZES.iter().map(|&n| deflate(&vec![0; n])).collect())[index]
}

impl RawFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        let payload = match &self.body {
            Body::Bytes(bytes) => bytes.clone(),
            Body::Deflated(text) => deflate(text.as_bytes()),
            Body::Bomb(index) => bomb(*index).to_vec(),
        };
        let len = self.length_override.unwrap_or(payload.len() as u64);
        let mask_bit = if self.masked { 0x80 } else { 0 };
        out.push(self.b0);
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= 0xFFFF {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        if self.masked {
            out.extend_from_slice(&self.key);
        }
        out.extend(payload.iter().enumerate().map(|(i, b)| {
            if self.masked {
                b ^ self.key[i % 4]
            } else {
                *b
            }
        }));
    }
}

fn first_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        // Mostly well-formed: FIN or not, RSV1 or not, a defined opcode.
        6 => (any::<bool>(), any::<bool>(), prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]))
            .prop_map(|(fin, rsv1, op)| (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | op),
        1 => any::<u8>(),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
        2 => ".{0,200}".prop_map(|s: String| Body::Bytes(s.into_bytes())),
        // Close payloads: a code (valid or not) and a reason.
        1 => (any::<u16>(), ".{0,20}").prop_map(|(code, reason): (u16, String)| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason.as_bytes());
            Body::Bytes(p)
        }),
        2 => ".{0,400}".prop_map(Body::Deflated),
        1 => (0..BOMB_SIZES.len()).prop_map(Body::Bomb),
    ]
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
    (
        first_byte(),
        prop::bool::weighted(0.95),
        prop::option::weighted(
            0.05,
            prop_oneof![0u64..300, Just(u64::MAX >> 1), Just(1 << 63), any::<u64>()],
        ),
        any::<[u8; 4]>(),
        body(),
    )
        .prop_map(|(b0, masked, length_override, key, body)| RawFrame {
            b0,
            masked,
            length_override,
            key,
            body,
        })
}

fn decoder(limit: usize, deflate: Option<bool>) -> Decoder {
    match deflate {
        None => Decoder::new(limit),
        Some(no_context_takeover) => Decoder::with_deflate(limit, &agreement(no_context_takeover)),
    }
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..400, Just(64 << 10), Just(usize::MAX)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_keep_the_decoder_contract(
        input in vec(any::<u8>(), 0..2048),
        chunks in vec(1usize..300, 1..8),
        limit in limit(),
        deflate in proptest::option::of(any::<bool>()),
    ) {
        feed(&mut decoder(limit, deflate), &input, &chunks);
    }

    #[test]
    fn arbitrary_frames_keep_the_decoder_contract(
        frames in vec(raw_frame(), 1..12),
        chunks in vec(1usize..500, 1..8),
        limit in limit(),
        deflate in proptest::option::of(any::<bool>()),
        corrupt in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let mut input = Vec::new();
        for frame in &frames {
            frame.encode(&mut input);
        }
        if let (Some((at, byte)), false) = (corrupt, input.is_empty()) {
            let i = at.index(input.len());
            input[i] = byte;
        }
        feed(&mut decoder(limit, deflate), &input, &chunks);
    }

    /// Without RSV bits the deflate decoder is the plain decoder: same messages, same error.
    #[test]
    fn deflate_mode_changes_nothing_for_uncompressed_streams(
        frames in vec(raw_frame(), 1..12),
        chunks in vec(1usize..500, 1..8),
        limit in limit(),
        no_context_takeover in any::<bool>(),
    ) {
        let mut input = Vec::new();
        for mut frame in frames {
            frame.b0 &= 0x8F;
            if matches!(frame.body, Body::Deflated(_) | Body::Bomb(_)) {
                continue;
            }
            frame.encode(&mut input);
        }
        let plain = feed(&mut Decoder::new(limit), &input, &chunks);
        let with_deflate = feed(&mut decoder(limit, Some(no_context_takeover)), &input, &chunks);
        prop_assert_eq!(plain, with_deflate);
    }
}
