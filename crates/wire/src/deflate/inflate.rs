//! The inflater for compressed client messages (RFC 7692 section 7.2.2): raw DEFLATE with
//! the sync-flush tail put back, output bounded by the message limit so a deflate bomb
//! stops at the limit instead of filling memory.

use super::compress::SYNC_TAIL;
use crate::frame::ProtocolError;
use flate2::{Decompress, FlushDecompress, Status};

/// The first output allocation; grown by doubling up to the limit.
const FIRST_OUTPUT: usize = 4 << 10;

/// Inflate state for one connection (a 32 KiB window, which also reads any smaller window
/// the client chose). Created on the first compressed message, not before.
pub struct Inflater {
    inflate: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(false),
        }
    }

    /// Inflates one message (its frames' payloads concatenated). The window carries over
    /// to the next message (client context takeover) unless the message ended the DEFLATE
    /// stream. Errors: [`ProtocolError::MessageTooBig`] once the output would pass `limit`,
    /// [`ProtocolError::InvalidCompressedData`] for anything that is not DEFLATE.
    pub fn inflate(&mut self, compressed: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        for input in [compressed, &SYNC_TAIL[..]] {
            if self.inflate_part(input, limit, &mut out)? == Status::StreamEnd {
                // A final block ends the stream: the next message starts a new one.
                self.inflate.reset(false);
                break;
            }
        }
        Ok(out)
    }

    fn inflate_part(
        &mut self,
        input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<Status, ProtocolError> {
        let too_big = ProtocolError::MessageTooBig { limit };
        let start = self.inflate.total_in();
        loop {
            let used =
                usize::try_from(self.inflate.total_in() - start).map_err(|_| too_big.clone())?;
            if out.len() == out.capacity() {
                // One byte past the limit is room enough to see that it was passed.
                let room = limit.saturating_add(1).saturating_sub(out.len());
                if room == 0 {
                    return Err(too_big);
                }
                out.reserve_exact(out.capacity().max(FIRST_OUTPUT).min(room));
            }
            let before = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(&input[used..], out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::InvalidCompressedData)?;
            if out.len() > limit {
                return Err(too_big);
            }
            let all_in = self.inflate.total_in() - start == input.len() as u64;
            match status {
                Status::StreamEnd => return Ok(status),
                // Everything read and output not full: everything written too.
                _ if all_in && out.len() < out.capacity() => return Ok(status),
                // No progress with room to write: the data is stuck (truncated or bad).
                _ if before == (self.inflate.total_in(), out.len())
                    && out.len() < out.capacity() =>
                {
                    return Err(ProtocolError::InvalidCompressedData)
                }
                _ => {}
            }
        }
    }
}
