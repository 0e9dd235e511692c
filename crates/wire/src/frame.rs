//! Lean RFC 6455 WebSocket framing for the server side: an incremental, validating
//! decoder of client->server frames and encoders of (unmasked) server->client frames.
//!
//! Without a negotiated extension all RSV bits must be zero; with permessage-deflate
//! ([`Decoder::with_deflate`]) RSV1 marks a compressed message, which the decoder inflates
//! within the same size limit. The decoder is 16 bytes and holds only fragmentation and
//! inflate state (behind a box, allocated when first needed); the caller owns the input
//! buffer.

use crate::deflate::{Agreement, Inflater};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Largest payload a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest frame header a client can send: 2 + 8 (64-bit length) + 4 (masking key).
pub const MAX_CLIENT_HEADER: usize = 14;

const FIN_BIT: u8 = 0x80;
const RSV_BITS: u8 = 0x70;
/// RSV1: "per-message compressed" under permessage-deflate (RFC 7692 section 6).
pub const RSV1_BIT: u8 = 0x40;
const OPCODE_BITS: u8 = 0x0F;
const MASK_BIT: u8 = 0x80;
const LEN_BITS: u8 = 0x7F;

/// A WebSocket frame opcode (RFC 6455 §5.2); reserved opcodes are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The opcode for the 4-bit wire value, or `None` for a reserved value.
    pub const fn from_u8(bits: u8) -> Option<Self> {
        match bits {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control opcodes.
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A complete client message after reassembly and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// None when the close frame had an empty payload.
    Close(Option<(u16, String)>),
}

/// A fatal violation of RFC 6455 by the client; close the connection with
/// [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without the MASK bit.
    UnmaskedFrame,
    /// RSV1, RSV2 or RSV3 set although no extension was negotiated (or, with
    /// permessage-deflate, RSV2/RSV3, or RSV1 on a control frame or a continuation).
    ReservedBits,
    /// Opcode 0x3-0x7 or 0xB-0xF.
    ReservedOpcode(u8),
    /// A control frame with a payload over 125 bytes.
    ControlFrameTooLong,
    /// A control frame without FIN.
    FragmentedControlFrame,
    /// A continuation frame while no fragmented message is in progress.
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set.
    InvalidLength,
    /// A text message or close reason that is not valid UTF-8.
    InvalidUtf8,
    /// A close frame carrying a code that may not be sent on the wire.
    InvalidCloseCode(u16),
    /// A close frame with a 1-byte payload.
    InvalidClosePayload,
    /// A frame payload, or a reassembled message, larger than the decoder's limit (for a
    /// compressed message: before or after inflation).
    MessageTooBig { limit: usize },
    /// A compressed message that is not valid raw DEFLATE data.
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close status code to send: 1007 for invalid UTF-8 or compressed data, 1009 for
    /// too big, else 1002.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::InvalidCompressedData => 1007,
            Self::MessageTooBig { .. } => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnmaskedFrame => f.write_str("client frame is not masked"),
            Self::ReservedBits => f.write_str("reserved bits set without a negotiated extension"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            Self::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            Self::InvalidLength => f.write_str("64-bit payload length with the high bit set"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8 in text message or close reason"),
            Self::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            Self::InvalidClosePayload => f.write_str("close frame with a 1-byte payload"),
            Self::MessageTooBig { limit } => write!(f, "message exceeds the {limit}-byte limit"),
            Self::InvalidCompressedData => f.write_str("compressed message is not valid DEFLATE"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// What one call to [`Decoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes to drop from the front of the input (0 means: need more bytes).
    pub consumed: usize,
    pub message: Option<Message>,
}

const NEED_MORE: Decoded = Decoded {
    consumed: 0,
    message: None,
};

/// A fragmented data message being reassembled.
#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    text: bool,
    /// RSV1 was set on the first frame: `data` is DEFLATE data, checked once inflated.
    compressed: bool,
    /// Length of the prefix of `data` known to be valid UTF-8 (text only).
    utf8_checked: usize,
}

impl Partial {
    /// Fail early when the text so far can never become valid UTF-8; an incomplete
    /// character at the end is fine (it may be completed by the next fragment).
    fn check_utf8_prefix(&mut self) -> Result<(), ProtocolError> {
        let tail = self.data.get(self.utf8_checked..).unwrap_or_default();
        match std::str::from_utf8(tail) {
            Ok(_) => self.utf8_checked = self.data.len(),
            Err(e) if e.error_len().is_some() => return Err(ProtocolError::InvalidUtf8),
            Err(e) => self.utf8_checked += e.valid_up_to(),
        }
        Ok(())
    }
}

/// What the decoder keeps between frames; boxed, and dropped whenever it is empty, so an
/// idle connection holds no allocation.
#[derive(Debug, Default)]
struct State {
    partial: Option<Partial>,
    /// From the first compressed message on; kept between messages (the client's context
    /// takeover) unless the client promised `client_no_context_takeover`.
    inflater: Option<Inflater>,
}

/// Flag bits stored in the top of [`Decoder::settings`], above the size limit.
const DEFLATE_FLAG: usize = 1 << (usize::BITS - 1);
const NO_CONTEXT_TAKEOVER_FLAG: usize = 1 << (usize::BITS - 2);
/// The largest representable limit, 2^62 - 1 on 64-bit targets: more than any `Vec` can
/// hold, so clamping a larger limit to it changes nothing.
const LIMIT_MASK: usize = !(DEFLATE_FLAG | NO_CONTEXT_TAKEOVER_FLAG);

/// Incremental decoder of client->server frames. Holds only fragmentation and inflate
/// state (boxed, so the decoder itself is 16 bytes on 64-bit targets); the caller owns the
/// input bytes.
///
/// After an `Err` the connection must be closed; the decoder's state is then unspecified
/// (but further calls still never panic).
#[derive(Debug)]
pub struct Decoder {
    /// The size limit and the extension flags in one word, so that the decoder, of which
    /// every connection has one, stays 16 bytes.
    settings: usize,
    state: Option<Box<State>>,
}

impl Decoder {
    /// `max_message`: limit on a single data frame's payload AND on a reassembled
    /// fragmented message (bytes). Control frames are bounded by 125 bytes instead.
    /// No extension: any RSV bit is a protocol error.
    pub fn new(max_message: usize) -> Self {
        Self {
            settings: max_message.min(LIMIT_MASK),
            state: None,
        }
    }

    /// A decoder for a connection that negotiated permessage-deflate: RSV1 on the first
    /// frame of a data message marks it compressed; it is inflated once complete, and
    /// `max_message` bounds both the compressed bytes and the inflated message (a deflate
    /// bomb fails with [`ProtocolError::MessageTooBig`], close code 1009). No inflate state
    /// is allocated until the first compressed message arrives.
    pub fn with_deflate(max_message: usize, agreement: &Agreement) -> Self {
        let mut settings = max_message.min(LIMIT_MASK) | DEFLATE_FLAG;
        if agreement.client_no_context_takeover() {
            settings |= NO_CONTEXT_TAKEOVER_FLAG;
        }
        Self {
            settings,
            state: None,
        }
    }

    /// The limit given to [`Decoder::new`] (clamped to 2^62 - 1 on 64-bit targets).
    pub fn max_message(&self) -> usize {
        self.settings & LIMIT_MASK
    }

    /// Whether the decoder accepts compressed messages.
    pub fn deflate(&self) -> bool {
        self.settings & DEFLATE_FLAG != 0
    }

    /// Whether a fragmented data message is being reassembled.
    pub fn in_fragmented_message(&self) -> bool {
        self.partial().is_some()
    }

    /// Whether inflate state is allocated (after a compressed message, while the client
    /// may refer back to earlier messages).
    pub fn holds_inflate_state(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.inflater.is_some())
    }

    fn partial(&self) -> Option<&Partial> {
        self.state.as_ref().and_then(|s| s.partial.as_ref())
    }

    /// Takes the message in progress, dropping the box when nothing else is in it.
    fn take_partial(&mut self) -> Option<Partial> {
        let state = self.state.as_mut()?;
        let partial = state.partial.take();
        if state.inflater.is_none() {
            self.state = None;
        }
        partial
    }

    fn put_partial(&mut self, partial: Partial) {
        self.state.get_or_insert_with(Box::default).partial = Some(partial);
    }

    /// Turns a complete data message into a [`Message`]: inflated first when compressed.
    fn finish(
        &mut self,
        text: bool,
        compressed: bool,
        data: Vec<u8>,
    ) -> Result<Message, ProtocolError> {
        if !compressed {
            return finish(text, data);
        }
        let limit = self.max_message();
        let state = self.state.get_or_insert_with(Box::default);
        let inflater = state.inflater.get_or_insert_with(Inflater::new);
        let inflated = inflater.inflate(&data, limit);
        if self.settings & NO_CONTEXT_TAKEOVER_FLAG != 0 {
            // The client starts every message with a fresh context: nothing to keep.
            state.inflater = None;
            if state.partial.is_none() {
                self.state = None;
            }
        }
        finish(text, inflated?)
    }

    /// Parse at most one frame from the front of `input`.
    /// - `Ok(Decoded{consumed:0, message:None})`: need more bytes (incomplete frame);
    /// - `Ok(Decoded{consumed:n, message:None})`: consumed a non-final fragment (buffered inside);
    /// - `Ok(Decoded{consumed:n, message:Some(m)})`: a complete message (a control frame
    ///   arriving between fragments is returned at once);
    /// - `Err(e)`: fatal; close with `e.close_code()`.
    ///
    /// Header errors (including `MessageTooBig`) are reported as soon as the header bytes
    /// that show them have arrived, before any payload, so a caller never needs to buffer
    /// more than `max(limit, 125) + 14` bytes.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ProtocolError> {
        let (b0, b1) = match input {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(NEED_MORE),
        };
        let op_bits = b0 & OPCODE_BITS;
        let opcode = OpCode::from_u8(op_bits);
        // RSV1 may only mark the first frame of a data message as compressed (RFC 7692
        // section 6.1), and only when permessage-deflate was negotiated.
        let compressed = b0 & RSV1_BIT != 0
            && self.deflate()
            && matches!(opcode, Some(OpCode::Text | OpCode::Binary));
        if b0 & RSV_BITS != if compressed { RSV1_BIT } else { 0 } {
            return Err(ProtocolError::ReservedBits);
        }
        let opcode = opcode.ok_or(ProtocolError::ReservedOpcode(op_bits))?;
        if b1 & MASK_BIT == 0 {
            return Err(ProtocolError::UnmaskedFrame);
        }
        let fin = b0 & FIN_BIT != 0;
        let buffered = match opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if !fin {
                    return Err(ProtocolError::FragmentedControlFrame);
                }
                if usize::from(b1 & LEN_BITS) > MAX_CONTROL_PAYLOAD {
                    return Err(ProtocolError::ControlFrameTooLong);
                }
                0
            }
            OpCode::Continuation => match self.partial() {
                Some(p) => p.data.len(),
                None => return Err(ProtocolError::UnexpectedContinuation),
            },
            OpCode::Text | OpCode::Binary => {
                if self.partial().is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                0
            }
        };

        let Some((payload_len, len_end)) = read_payload_len(input)? else {
            return Ok(NEED_MORE);
        };
        let too_big = ProtocolError::MessageTooBig {
            limit: self.max_message(),
        };
        if !opcode.is_control() {
            let total = (buffered as u64).saturating_add(payload_len);
            if total > self.max_message() as u64 {
                return Err(too_big);
            }
        }
        let payload_len = usize::try_from(payload_len).map_err(|_| too_big.clone())?;
        let header_len = len_end + 4;
        let frame_len = header_len.checked_add(payload_len).ok_or(too_big)?;
        let (Some(&[k0, k1, k2, k3]), Some(payload)) = (
            input.get(len_end..header_len),
            input.get(header_len..frame_len),
        ) else {
            return Ok(NEED_MORE);
        };
        let key = [k0, k1, k2, k3];

        let message = match opcode {
            OpCode::Ping => Some(Message::Ping(unmasked(payload, key))),
            OpCode::Pong => Some(Message::Pong(unmasked(payload, key))),
            OpCode::Close => Some(parse_close(unmasked(payload, key))?),
            OpCode::Text | OpCode::Binary => {
                let text = opcode == OpCode::Text;
                let data = unmasked(payload, key);
                if fin {
                    Some(self.finish(text, compressed, data)?)
                } else {
                    let mut partial = Partial {
                        data,
                        text,
                        compressed,
                        utf8_checked: 0,
                    };
                    if text && !compressed {
                        partial.check_utf8_prefix()?;
                    }
                    self.put_partial(partial);
                    None
                }
            }
            OpCode::Continuation => {
                let Some(partial) = self.state.as_mut().and_then(|s| s.partial.as_mut()) else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                let start = partial.data.len();
                partial.data.extend_from_slice(payload);
                apply_mask(&mut partial.data[start..], key);
                if partial.text && !partial.compressed {
                    partial.check_utf8_prefix()?;
                }
                if fin {
                    let partial = self
                        .take_partial()
                        .ok_or(ProtocolError::UnexpectedContinuation)?;
                    Some(self.finish(partial.text, partial.compressed, partial.data)?)
                } else {
                    None
                }
            }
        };
        Ok(Decoded {
            consumed: frame_len,
            message,
        })
    }

    /// Bytes needed before the frame at the front of `input` is complete (header,
    /// masking key if the MASK bit is set, and payload), if known; lets the caller size
    /// its buffer. `None` when even the length part of the header is incomplete.
    /// Saturates at `usize::MAX` for absurd or invalid lengths (which `decode` rejects).
    pub fn frame_len(input: &[u8]) -> Option<usize> {
        let (payload_len, len_end) = match read_payload_len(input) {
            Ok(Some(len)) => len,
            Ok(None) => return None,
            Err(_) => return Some(usize::MAX),
        };
        let masked = input.get(1).is_some_and(|b1| b1 & MASK_BIT != 0);
        let header_len = len_end + if masked { 4 } else { 0 };
        let total = payload_len.saturating_add(header_len as u64);
        Some(usize::try_from(total).unwrap_or(usize::MAX))
    }
}

/// The payload length and the offset just past the length field (2, 4 or 10), or `None`
/// when `input` is too short to hold the length.
fn read_payload_len(input: &[u8]) -> Result<Option<(u64, usize)>, ProtocolError> {
    let Some(&b1) = input.get(1) else {
        return Ok(None);
    };
    Ok(match b1 & LEN_BITS {
        126 => match input.get(2..4) {
            Some(&[a, b]) => Some((u64::from(u16::from_be_bytes([a, b])), 4)),
            _ => None,
        },
        127 => match input.get(2..10) {
            Some(&[a, b, c, d, e, f, g, h]) => {
                let len = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
                if len & (1 << 63) != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                Some((len, 10))
            }
            _ => None,
        },
        len => Some((u64::from(len), 2)),
    })
}

/// XOR `buf` with the masking key, starting at key offset 0.
fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

fn unmasked(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut data = payload.to_vec();
    apply_mask(&mut data, key);
    data
}

fn finish(text: bool, data: Vec<u8>) -> Result<Message, ProtocolError> {
    if text {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| ProtocolError::InvalidUtf8)
    } else {
        Ok(Message::Binary(data))
    }
}

fn parse_close(mut payload: Vec<u8>) -> Result<Message, ProtocolError> {
    let code = match payload.as_slice() {
        [] => return Ok(Message::Close(None)),
        [_] => return Err(ProtocolError::InvalidClosePayload),
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
    };
    if !is_valid_close_code(code) {
        return Err(ProtocolError::InvalidCloseCode(code));
    }
    let reason = String::from_utf8(payload.split_off(2)).map_err(|_| ProtocolError::InvalidUtf8)?;
    Ok(Message::Close(Some((code, reason))))
}

/// Write just the header for an unmasked FIN frame of `len` bytes into `out`,
/// returning the header length (2, 4 or 10).
pub fn write_header(opcode: OpCode, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = FIN_BIT | opcode.as_u8();
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Encode a full unmasked FIN frame (header + payload) into one buffer.
/// Server->client frames are never masked. The payload is written as given: keep
/// control payloads <= 125 bytes (or use [`close_frame`], [`ping_frame`], [`pong_frame`]).
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut header = [0u8; 10];
    let header_len = write_header(opcode, payload.len(), &mut header);
    let mut buf = BytesMut::with_capacity(header_len + payload.len());
    buf.put_slice(&header[..header_len]);
    buf.put_slice(payload);
    buf.freeze()
}

/// A FIN text frame; `payload` must be UTF-8 (not checked here).
pub fn text_frame(payload: &[u8]) -> Bytes {
    encode_frame(OpCode::Text, payload)
}

/// A close frame; `reason` is truncated on a char boundary so the payload is <= 125 bytes.
/// `code` is written as given.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = truncate_str(reason, MAX_CONTROL_PAYLOAD - 2);
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode_frame(OpCode::Close, &payload[..2 + reason.len()])
}

/// A ping frame; `payload` is truncated to 125 bytes.
pub fn ping_frame(payload: &[u8]) -> Bytes {
    encode_frame(OpCode::Ping, truncate_control(payload))
}

/// A pong frame; `payload` is truncated to 125 bytes.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    encode_frame(OpCode::Pong, truncate_control(payload))
}

fn truncate_control(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
}

fn truncate_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
