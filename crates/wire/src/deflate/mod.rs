//! permessage-deflate (RFC 7692), the codec half: negotiation, the server's compressor and
//! the inflater the decoder uses for compressed client messages.

mod compress;
mod inflate;
mod negotiate;

pub use compress::{Compressor, MIN_COMPRESSED_PAYLOAD};
pub use flate2::Compression;
pub use inflate::Inflater;
pub use negotiate::{negotiate, Agreement, EXTENSION_NAME};

#[cfg(test)]
mod tests;
