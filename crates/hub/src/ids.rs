//! Identifiers: time-ordered publication ids and random epochs and connection ids.

use rand::Rng;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A 26-character ULID (48-bit millisecond time, 80 random bits) in Crockford base32,
/// after `prefix`: lexically sortable by creation time.
pub fn ulid(prefix: &str) -> String {
    let ms = chrono::Utc::now().timestamp_millis().max(0) as u128 & ((1 << 48) - 1);
    let random: u128 = rand::thread_rng().gen::<u128>() & ((1 << 80) - 1);
    let value = (ms << 80) | random;
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    for i in (0..26).rev() {
        out.push(CROCKFORD[((value >> (i * 5)) & 31) as usize] as char);
    }
    out
}

/// A random lower-case alphanumeric string, for epochs and connection ids.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_have_prefix_and_26_chars_and_differ() {
        let a = ulid("pub_");
        let b = ulid("pub_");
        assert!(a.starts_with("pub_"));
        assert_eq!(a.len(), 30);
        assert_ne!(a, b);
    }

    #[test]
    fn random_tokens_have_the_requested_length() {
        assert_eq!(random_token(12).len(), 12);
    }
}
