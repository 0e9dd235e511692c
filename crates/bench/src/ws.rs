//! A minimal WebSocket client (RFC 6455) for the subscriber connections: just what the bench
//! needs, at as little CPU per message as we can, since the bench shares the machine's cores
//! with the server it measures.
//!
//! * [`handshake`] sends the HTTP upgrade request and checks the `101` answer and its
//!   `Sec-WebSocket-Accept`.
//! * [`FrameReader`] holds one connection's read buffer (4 KiB, grown only for a larger
//!   frame and shrunk back once it is consumed) and parses server frames in place:
//!   complete text messages are handed out as slices of the buffer, fragmented ones are
//!   put together in a second buffer that exists only while one is in flight.
//! * [`client_frame`] encodes the (masked) frames we send: subscribe, pong, close.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Initial (and usual) size of a connection's read buffer.
pub const READ_BUF: usize = 4096;
/// Largest frame and largest (reassembled) message accepted.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest HTTP answer header accepted in the handshake.
const MAX_ANSWER: usize = 8192;
/// Longest server frame header: 2 bytes and a 64-bit length (server frames are unmasked).
const MAX_HEADER: usize = 10;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One message or control frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole text message (reassembled if it came in fragments); UTF-8 is not checked.
    Text(&'a [u8]),
    /// A whole binary message (its content is not kept).
    Binary,
    Ping(&'a [u8]),
    Pong,
    /// The status code, if any, and the reason.
    Close(Option<u16>, &'a [u8]),
}

/// Header of the frame at the start of the buffered bytes.
struct Header {
    fin: bool,
    opcode: u8,
    /// Header length in bytes.
    header: usize,
    payload: usize,
}

/// A fragmented message being put together.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fragments {
    None,
    Text,
    /// Binary content is dropped, only the framing is followed.
    Binary,
}

/// Read buffer and frame parser of one connection.
pub struct FrameReader {
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Payload of a fragmented text message so far.
    frag: Vec<u8>,
    fragments: Fragments,
    /// `frag` was handed out whole and is to be cleared.
    frag_done: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        FrameReader {
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            frag: Vec::new(),
            fragments: Fragments::None,
            frag_done: false,
        }
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks the first `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
    }

    /// Free space to read into, never empty: room for at least the whole frame at the
    /// start of the buffer (the buffer grows for it and shrinks back to [`READ_BUF`] once
    /// everything in it is consumed). Call [`FrameReader::filled`] with the count read.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_BUF {
                self.buf = vec![0; READ_BUF];
            }
        }
        // A header that does not parse (yet, or at all) needs at most MAX_HEADER bytes
        // before `next` can tell.
        let need = match parse_header(self.buffered()) {
            Ok(Some(h)) => h.header + h.payload,
            _ => MAX_HEADER,
        };
        if self.start > 0 && (self.start + need > self.buf.len() || self.end == self.buf.len()) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        } else if self.end == self.buf.len() {
            // Cannot happen (a whole frame would be buffered and `next` would have taken
            // it), but never hand out an empty slice: a read into it looks like EOF.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records `n` bytes read into [`FrameReader::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Size of the read buffer.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The next message or control frame among the buffered bytes, None if more bytes are
    /// needed, or an error for a protocol violation (the connection should be dropped).
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, String> {
        if self.frag_done {
            self.frag_done = false;
            if self.frag.capacity() > READ_BUF {
                self.frag = Vec::new();
            } else {
                self.frag.clear();
            }
        }
        loop {
            let Some(h) = parse_header(self.buffered())? else {
                return Ok(None);
            };
            let total = h.header + h.payload;
            if self.end - self.start < total {
                return Ok(None);
            }
            let from = self.start + h.header;
            self.start += total;
            let payload = from..from + h.payload;
            match h.opcode {
                OP_TEXT | OP_BINARY => {
                    if self.fragments != Fragments::None {
                        return Err("new message inside a fragmented one".into());
                    }
                    if h.fin {
                        return Ok(Some(if h.opcode == OP_TEXT {
                            Frame::Text(&self.buf[payload])
                        } else {
                            Frame::Binary
                        }));
                    }
                    if h.opcode == OP_TEXT {
                        self.fragments = Fragments::Text;
                        self.frag.extend_from_slice(&self.buf[payload]);
                    } else {
                        self.fragments = Fragments::Binary;
                    }
                }
                OP_CONTINUATION => {
                    match self.fragments {
                        Fragments::None => return Err("continuation without a message".into()),
                        Fragments::Text => {
                            if self.frag.len() + h.payload > MAX_MESSAGE {
                                return Err(format!("message over {MAX_MESSAGE} bytes"));
                            }
                            self.frag.extend_from_slice(&self.buf[payload]);
                        }
                        Fragments::Binary => {}
                    }
                    if h.fin {
                        let kind = std::mem::replace(&mut self.fragments, Fragments::None);
                        if kind == Fragments::Binary {
                            return Ok(Some(Frame::Binary));
                        }
                        self.frag_done = true;
                        return Ok(Some(Frame::Text(&self.frag)));
                    }
                }
                OP_PING => return Ok(Some(Frame::Ping(&self.buf[payload]))),
                OP_PONG => return Ok(Some(Frame::Pong)),
                OP_CLOSE => {
                    let p = &self.buf[payload];
                    return Ok(Some(match p {
                        [a, b, reason @ ..] => {
                            Frame::Close(Some(u16::from_be_bytes([*a, *b])), reason)
                        }
                        [] => Frame::Close(None, &[]),
                        [_] => return Err("close frame with a 1-byte payload".into()),
                    }));
                }
                op => return Err(format!("unknown opcode {op:#x}")),
            }
        }
    }
}

/// The header at the start of `b`, None if incomplete, an error if invalid.
fn parse_header(b: &[u8]) -> Result<Option<Header>, String> {
    let [b0, b1, ..] = *b else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err("reserved bits set".into());
    }
    if b1 & 0x80 != 0 {
        return Err("masked server frame".into());
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    let (header, payload) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(l) => (4, u16::from_be_bytes([l[0], l[1]]) as u64),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => (10, u64::from_be_bytes(l.try_into().expect("8 bytes"))),
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    if opcode >= 0x8 && (!fin || payload > 125) {
        return Err("fragmented or long control frame".into());
    }
    if payload > MAX_MESSAGE as u64 {
        return Err(format!("frame of {payload} bytes, over {MAX_MESSAGE}"));
    }
    Ok(Some(Header {
        fin,
        opcode,
        header,
        payload: payload as usize,
    }))
}

/// Appends a final, masked client frame to `out`.
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// Sends one masked frame with a fresh random mask.
pub async fn send_frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    client_frame(opcode, payload, rand::random(), &mut out);
    stream.write_all(&out).await
}

/// The `Sec-WebSocket-Accept` value for `key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Sends the upgrade request for `path` on `host` and reads the answer into `reader`;
/// bytes after the answer's header (frames the server sent right away) stay buffered.
pub async fn handshake(
    stream: &mut TcpStream,
    reader: &mut FrameReader,
    host: &str,
    path: &str,
) -> Result<(), String> {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send request: {e}"))?;
    loop {
        if let Some(end) = memchr::memmem::find(reader.buffered(), b"\r\n\r\n") {
            check_answer(&reader.buffered()[..end], &key)?;
            reader.consume(end + 4);
            return Ok(());
        }
        if reader.buffered().len() >= MAX_ANSWER {
            return Err("answer header too long".into());
        }
        let n = stream
            .read(reader.spare())
            .await
            .map_err(|e| format!("read answer: {e}"))?;
        if n == 0 {
            return Err("connection ended during the handshake".into());
        }
        reader.filled(n);
    }
}

/// Checks the answer's header (without the blank line): status 101 and the accept key.
fn check_answer(head: &[u8], key: &str) -> Result<(), String> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("101") {
        return Err(format!("answer {status:?}, expected 101"));
    }
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, v)| v.trim())
        .ok_or("answer without Sec-WebSocket-Accept")?;
    if accept != accept_key(key) {
        return Err(format!("wrong Sec-WebSocket-Accept {accept:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked server frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Text(Vec<u8>),
        Binary,
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>, Vec<u8>),
    }

    fn owned(f: Frame<'_>) -> Owned {
        match f {
            Frame::Text(t) => Owned::Text(t.to_vec()),
            Frame::Binary => Owned::Binary,
            Frame::Ping(p) => Owned::Ping(p.to_vec()),
            Frame::Pong => Owned::Pong,
            Frame::Close(c, r) => Owned::Close(c, r.to_vec()),
        }
    }

    /// Feeds `bytes` in reads of at most `chunk` bytes (and of the free space), taking every
    /// frame out after each read, as the connection loop does.
    fn feed(r: &mut FrameReader, bytes: &[u8], chunk: usize) -> Result<Vec<Owned>, String> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = r.spare();
            assert!(!spare.is_empty());
            let n = chunk.min(spare.len()).min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            r.filled(n);
            rest = &rest[n..];
            while let Some(f) = r.next()? {
                out.push(owned(f));
            }
        }
        Ok(out)
    }

    fn text(s: &[u8]) -> Owned {
        Owned::Text(s.to_vec())
    }

    #[test]
    fn whole_frames_in_one_read_and_split_across_reads() {
        let mut bytes = server_frame(true, OP_TEXT, b"hello");
        bytes.extend(server_frame(true, OP_BINARY, b"\x00\x01"));
        bytes.extend(server_frame(true, OP_TEXT, b""));
        bytes.extend(server_frame(true, OP_PONG, b"p"));
        bytes.extend(server_frame(true, OP_TEXT, &[b'x'; 300]));
        let want = vec![
            text(b"hello"),
            Owned::Binary,
            text(b""),
            Owned::Pong,
            text(&[b'x'; 300]),
        ];
        for chunk in [1, 2, 3, 7, 100, 4096] {
            let mut r = FrameReader::new();
            assert_eq!(feed(&mut r, &bytes, chunk).unwrap(), want, "chunk {chunk}");
            assert!(r.buffered().is_empty());
        }
    }

    #[test]
    fn lengths_16_and_64_bit() {
        for len in [125, 126, 127, 4000, 0xFFFF, 0x1_0000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let frame = server_frame(true, OP_TEXT, &payload);
            let header = match len {
                0..=125 => 2,
                126..=0xFFFF => 4,
                _ => 10,
            };
            assert_eq!(frame.len(), header + len);
            for chunk in [1000, 65536] {
                let mut r = FrameReader::new();
                let mut bytes = frame.clone();
                bytes.extend(server_frame(true, OP_TEXT, b"after"));
                let got = feed(&mut r, &bytes, chunk).unwrap();
                assert_eq!(got, vec![text(&payload), text(b"after")], "len {len}");
                // Grown for a large frame, back to the usual size once it is consumed.
                r.spare();
                assert_eq!(r.capacity(), READ_BUF);
            }
        }
    }

    #[test]
    fn fragmented_text_with_a_ping_between_fragments() {
        let mut bytes = server_frame(false, OP_TEXT, b"{\"a\":");
        bytes.extend(server_frame(true, OP_PING, b"are you there"));
        bytes.extend(server_frame(false, OP_CONTINUATION, b"\"bc"));
        bytes.extend(server_frame(false, OP_CONTINUATION, b""));
        bytes.extend(server_frame(true, OP_CONTINUATION, b"d\"}"));
        bytes.extend(server_frame(true, OP_TEXT, b"next"));
        let want = vec![
            Owned::Ping(b"are you there".to_vec()),
            text(b"{\"a\":\"bcd\"}"),
            text(b"next"),
        ];
        for chunk in [1, 5, 4096] {
            let mut r = FrameReader::new();
            assert_eq!(feed(&mut r, &bytes, chunk).unwrap(), want, "chunk {chunk}");
        }
        // A second fragmented message starts from empty.
        let mut r = FrameReader::new();
        let mut bytes = server_frame(false, OP_TEXT, b"ab");
        bytes.extend(server_frame(true, OP_CONTINUATION, b"c"));
        bytes.extend(server_frame(false, OP_TEXT, b"d"));
        bytes.extend(server_frame(true, OP_CONTINUATION, b"e"));
        assert_eq!(
            feed(&mut r, &bytes, 4096).unwrap(),
            vec![text(b"abc"), text(b"de")]
        );
    }

    #[test]
    fn fragmented_binary_is_skipped() {
        let mut bytes = server_frame(false, OP_BINARY, b"\x01");
        bytes.extend(server_frame(true, OP_CONTINUATION, b"\x02"));
        bytes.extend(server_frame(true, OP_TEXT, b"t"));
        let mut r = FrameReader::new();
        assert_eq!(
            feed(&mut r, &bytes, 3).unwrap(),
            vec![Owned::Binary, text(b"t")]
        );
    }

    #[test]
    fn large_fragmented_message() {
        let part: Vec<u8> = vec![b'z'; 3000];
        let mut bytes = server_frame(false, OP_TEXT, &part);
        bytes.extend(server_frame(false, OP_CONTINUATION, &part));
        bytes.extend(server_frame(true, OP_CONTINUATION, &part));
        let mut r = FrameReader::new();
        assert_eq!(
            feed(&mut r, &bytes, 1500).unwrap(),
            vec![text(&[b'z'; 9000])]
        );
        assert_eq!(r.capacity(), READ_BUF);
    }

    #[test]
    fn close_frames() {
        let mut r = FrameReader::new();
        let mut bytes = server_frame(true, OP_TEXT, b"last");
        bytes.extend(server_frame(true, OP_CLOSE, b"\x03\xe9going away"));
        assert_eq!(
            feed(&mut r, &bytes, 4).unwrap(),
            vec![
                text(b"last"),
                Owned::Close(Some(1001), b"going away".to_vec())
            ]
        );
        let mut r = FrameReader::new();
        let bytes = server_frame(true, OP_CLOSE, b"");
        assert_eq!(
            feed(&mut r, &bytes, 4096).unwrap(),
            vec![Owned::Close(None, vec![])]
        );
    }

    #[test]
    fn protocol_violations() {
        let masked = [0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1];
        let mut bad = vec![
            masked.to_vec(),
            vec![0xC1, 0x00],                          // RSV1
            server_frame(true, 0x3, b""),              // reserved opcode
            server_frame(true, OP_CONTINUATION, b"x"), // nothing to continue
            server_frame(false, OP_PING, b""),         // fragmented control
            server_frame(true, OP_PING, &[0; 126]),    // long control
            server_frame(true, OP_CLOSE, b"\x03"),     // 1-byte close
            [0x81, 127]
                .into_iter()
                .chain(u64::MAX.to_be_bytes())
                .collect(), // huge
        ];
        let mut interleaved = server_frame(false, OP_TEXT, b"a");
        interleaved.extend(server_frame(true, OP_TEXT, b"b"));
        bad.push(interleaved);
        for bytes in bad {
            let mut r = FrameReader::new();
            assert!(feed(&mut r, &bytes, 4096).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn client_frames_are_masked() {
        for len in [0, 5, 125, 126, 300, 0x1_0000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut out = Vec::new();
            client_frame(OP_TEXT, &payload, mask, &mut out);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0x80, "mask bit");
            let (header, n) = match out[1] & 0x7F {
                126 => (4, u16::from_be_bytes([out[2], out[3]]) as usize),
                127 => (
                    10,
                    u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, n as usize),
            };
            assert_eq!(n, len);
            assert_eq!(&out[header..header + 4], &mask);
            let unmasked: Vec<u8> = out[header + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn handshake_answer() {
        // RFC 6455, section 1.3.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert_eq!(accept_key(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let ok = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert_eq!(check_answer(ok.as_bytes(), key), Ok(()));
        assert!(check_answer(ok.as_bytes(), "AAAAAAAAAAAAAAAAAAAAAA==").is_err());
        let refused = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0";
        assert!(check_answer(refused.as_bytes(), key).is_err());
        let no_accept = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket";
        assert!(check_answer(no_accept.as_bytes(), key).is_err());
    }
}
