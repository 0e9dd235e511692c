//! The server's permessage-deflate compressor: one payload in, one complete FIN frame with
//! RSV1 set out, every message with a fresh context (`server_no_context_takeover`), so the
//! frame can be shared by every subscriber that negotiated the extension.

use crate::frame::{self, OpCode, RSV1_BIT};
use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress, Status};

/// Payloads shorter than this are sent uncompressed (spec item 71): under it the saving is
/// a few bytes at best and costs a deflate pass per publication.
pub const MIN_COMPRESSED_PAYLOAD: usize = 256;

/// The empty stored block a sync flush ends with; RFC 7692 section 7.2.1 has the sender
/// remove it and the receiver append it again.
pub(crate) const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A reusable raw-DEFLATE compressor (32 KiB window) and its output buffer.
pub struct Compressor {
    deflate: Compress,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new(Compression::default())
    }
}

impl Compressor {
    /// A compressor at `level` (flate2's default, 6, suits JSON envelopes).
    pub fn new(level: Compression) -> Self {
        Self {
            deflate: Compress::new(level, false),
            scratch: Vec::new(),
        }
    }

    /// The complete unmasked FIN frame (header with RSV1 set, then the compressed payload)
    /// of a text or binary message. Each call starts from a fresh context, so any receiver
    /// that negotiated permessage-deflate inflates it, whatever it received before.
    pub fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        let Some(compressed) = self.compress(payload) else {
            // Only a flate2 misuse fails; an uncompressed frame (RSV1 clear) is still valid.
            return frame::encode_frame(opcode, payload);
        };
        let mut header = [0u8; 10];
        let header_len = frame::write_header(opcode, compressed.len(), &mut header);
        header[0] |= RSV1_BIT;
        let mut buf = BytesMut::with_capacity(header_len + compressed.len());
        buf.put_slice(&header[..header_len]);
        buf.put_slice(compressed);
        buf.freeze()
    }

    /// The raw DEFLATE data of `payload` with the sync-flush tail removed.
    fn compress(&mut self, payload: &[u8]) -> Option<&[u8]> {
        self.deflate.reset();
        self.scratch.clear();
        // Room for incompressible input (5 bytes per stored block) and the flush.
        self.scratch
            .reserve(payload.len() + payload.len() / 1024 * 5 + 64);
        loop {
            let consumed = usize::try_from(self.deflate.total_in()).ok()?;
            let status = self
                .deflate
                .compress_vec(&payload[consumed..], &mut self.scratch, FlushCompress::Sync)
                .ok()?;
            let done = usize::try_from(self.deflate.total_in()).ok()? == payload.len()
                && self.scratch.len() < self.scratch.capacity();
            match status {
                Status::Ok | Status::BufError if !done => {
                    self.scratch.reserve(self.scratch.capacity().max(64));
                }
                _ => break,
            }
        }
        let body = self.scratch.strip_suffix(&SYNC_TAIL)?;
        // An empty message compresses to nothing: send the single empty block the RFC
        // names for it (section 7.2.3.6).
        Some(if body.is_empty() { &[0x00] } else { body })
    }
}
