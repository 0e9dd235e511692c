//! Sign-In with Ethereum: EIP-4361 messages, EIP-55 addresses and EIP-191 signer recovery.
//!
//! Flow (spec 6 and 9.17): the client fetches a nonce, signs an EIP-4361 message with
//! `personal_sign`, and posts `{message, signature}`. The server [parses](SiweMessage::parse)
//! the message (400 when it does not parse), uses up the nonce (`nonce.rs`), then calls
//! [`verify_sign_in`], which checks the domain, recovers the signer and compares it with the
//! message's address, and checks `expirationTime`, `notBefore` and `issuedAt`.
//!
//! Choices beyond the EIP's ABNF (each one documented in docs/auth.md):
//! - Without a statement, both `address LF LF LF URI` (the ABNF) and `address LF LF URI`
//!   (what the reference `siwe` library emits) are accepted.
//! - A statement may hold any printable ASCII (%x20-7E), a superset of the ABNF's
//!   `reserved / unreserved / " "` that real wallets produce; the message must be ASCII.
//! - Lines end in LF only; no trailing newline; at most 16 KiB.
//! - Signatures are 65 bytes `r || s || v` in hex with or without `0x`, `v` 0/1 or 27/28.
//!   High-`s` signatures are refused ([`SignatureError::HighS`]), as EIP-2 does for
//!   transactions: every mainstream signer emits low-`s`, and refusing the other half of each
//!   malleable pair costs nothing. k256's verification would refuse them anyway.
//! - Contract wallets (EIP-1271) are not supported: only EOAs can sign in.

use chrono::{DateTime, FixedOffset};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sha3::{Digest, Keccak256};

/// Clock leeway for a message's `issuedAt` and `notBefore`, in seconds.
pub const SIWE_LEEWAY_S: i64 = 30;

/// Longest sign-in message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

const HEADER_SUFFIX: &str = " wants you to sign in with your Ethereum account:";

/// Keccak-256 of `data`.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// Why an address string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an address is 0x followed by 40 hex digits")]
    Syntax,
    #[error("the address's mixed-case EIP-55 checksum is wrong")]
    Checksum,
}

/// Parses a `0x` address. All-lower-case and all-upper-case hex are accepted as they are;
/// mixed case must be a valid EIP-55 checksum.
pub fn parse_address(s: &str) -> Result<[u8; 20], AddressError> {
    let hex_part = s.strip_prefix("0x").ok_or(AddressError::Syntax)?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::Syntax);
    }
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| AddressError::Syntax)?;
    let has_lower = hex_part.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex_part.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper && eip55(&bytes) != s {
        return Err(AddressError::Checksum);
    }
    Ok(bytes)
}

/// The EIP-55 mixed-case checksum form of an address, `0x`-prefixed.
pub fn eip55(address: &[u8; 20]) -> String {
    let lower = hex::encode(address);
    let hash = keccak256(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// The lower-case `0x` form of an address: the subject of wallet principals (spec 9.12).
pub fn format_address(address: &[u8; 20]) -> String {
    format!("0x{}", hex::encode(address))
}

/// Why a sign-in message did not parse (answered with HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiweParseError {
    #[error("the message is longer than {MAX_MESSAGE_BYTES} bytes")]
    TooLong,
    #[error("the message must be ASCII text with LF line ends and no other control characters")]
    BadCharacter,
    #[error(
        "the first line must be \"<domain> wants you to sign in with your Ethereum account:\""
    )]
    BadHeader,
    #[error("the scheme before the domain is invalid")]
    BadScheme,
    #[error("the domain is not a valid RFC 3986 authority")]
    BadDomain,
    #[error("address line: {0}")]
    BadAddress(#[from] AddressError),
    #[error("a blank line must follow the address")]
    MissingBlankLine,
    #[error("the statement must be printable ASCII followed by a blank line")]
    BadStatement,
    #[error("expected the {0:?} line")]
    MissingField(&'static str),
    #[error("the {0:?} value is invalid")]
    BadField(&'static str),
    #[error("unexpected content on line {0}")]
    UnexpectedLine(usize),
}

/// A parsed EIP-4361 message. It keeps the exact text it was parsed from, which is what the
/// signature covers, so the fields and the signed bytes cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiweMessage {
    raw: String,
    scheme: Option<String>,
    domain: String,
    address: [u8; 20],
    statement: Option<String>,
    uri: String,
    version: String,
    chain_id: u64,
    nonce: String,
    issued_at: DateTime<FixedOffset>,
    expiration_time: Option<DateTime<FixedOffset>>,
    not_before: Option<DateTime<FixedOffset>>,
    request_id: Option<String>,
    resources: Vec<String>,
}

impl SiweMessage {
    /// The exact message text (what was signed).
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// The optional scheme before the domain (`https` in `https://example.com wants ...`).
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }
    /// The RFC 3986 authority requesting the sign-in.
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The signing account.
    pub fn address(&self) -> &[u8; 20] {
        &self.address
    }
    pub fn statement(&self) -> Option<&str> {
        self.statement.as_deref()
    }
    pub fn uri(&self) -> &str {
        &self.uri
    }
    /// Always `"1"`.
    pub fn version(&self) -> &str {
        &self.version
    }
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }
    pub fn nonce(&self) -> &str {
        &self.nonce
    }
    pub fn issued_at(&self) -> DateTime<FixedOffset> {
        self.issued_at
    }
    pub fn expiration_time(&self) -> Option<DateTime<FixedOffset>> {
        self.expiration_time
    }
    pub fn not_before(&self) -> Option<DateTime<FixedOffset>> {
        self.not_before
    }
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// Parses a message per the EIP-4361 ABNF (with the leniencies listed in the module doc).
    pub fn parse(text: &str) -> Result<SiweMessage, SiweParseError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(SiweParseError::TooLong);
        }
        if !text
            .bytes()
            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b))
        {
            return Err(SiweParseError::BadCharacter);
        }
        let lines: Vec<&str> = text.split('\n').collect();
        let mut at = 0usize;
        let mut next = || {
            let line = lines.get(at).copied();
            at += 1;
            line
        };

        let header = next().unwrap_or_default();
        let prefix = header
            .strip_suffix(HEADER_SUFFIX)
            .ok_or(SiweParseError::BadHeader)?;
        let (scheme, domain) = match prefix.split_once("://") {
            Some((scheme, domain)) => {
                if !valid_scheme(scheme) {
                    return Err(SiweParseError::BadScheme);
                }
                (Some(scheme.to_string()), domain)
            }
            None => (None, prefix),
        };
        if !valid_authority(domain) {
            return Err(SiweParseError::BadDomain);
        }

        let address =
            parse_address(next().ok_or(SiweParseError::BadAddress(AddressError::Syntax))?)?;
        if next() != Some("") {
            return Err(SiweParseError::MissingBlankLine);
        }

        // Optional statement: `[ statement LF ] LF`, or no second blank line at all.
        let statement = match lines.get(at).copied() {
            Some(line) if line.starts_with("URI: ") => None,
            Some("") => {
                at += 1;
                None
            }
            Some(line) => {
                if !line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    return Err(SiweParseError::BadStatement);
                }
                at += 1;
                if lines.get(at).copied() != Some("") {
                    return Err(SiweParseError::BadStatement);
                }
                at += 1;
                Some(line.to_string())
            }
            None => return Err(SiweParseError::MissingField("URI")),
        };

        let mut required = |label: &'static str| -> Result<&str, SiweParseError> {
            let line = lines
                .get(at)
                .copied()
                .ok_or(SiweParseError::MissingField(label))?;
            let value = line
                .strip_prefix(label)
                .and_then(|rest| rest.strip_prefix(": "))
                .ok_or(SiweParseError::MissingField(label))?;
            at += 1;
            Ok(value)
        };

        let uri = required("URI")?;
        if !valid_uri(uri) {
            return Err(SiweParseError::BadField("URI"));
        }
        let version = required("Version")?;
        if version != "1" {
            return Err(SiweParseError::BadField("Version"));
        }
        let chain_id = required("Chain ID")?;
        if chain_id.is_empty() || !chain_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SiweParseError::BadField("Chain ID"));
        }
        let chain_id: u64 = chain_id
            .parse()
            .map_err(|_| SiweParseError::BadField("Chain ID"))?;
        let nonce = required("Nonce")?;
        if nonce.len() < 8 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SiweParseError::BadField("Nonce"));
        }
        let issued_at = date_time(required("Issued At")?, "Issued At")?;
        let (nonce, uri) = (nonce.to_string(), uri.to_string());

        let mut optional = |label: &'static str| -> Option<&str> {
            let line = lines.get(at).copied()?;
            let value = line.strip_prefix(label)?.strip_prefix(": ")?;
            at += 1;
            Some(value)
        };
        let expiration_time = optional("Expiration Time")
            .map(|v| date_time(v, "Expiration Time"))
            .transpose()?;
        let not_before = optional("Not Before")
            .map(|v| date_time(v, "Not Before"))
            .transpose()?;
        let request_id = match optional("Request ID") {
            Some(v) if !v.bytes().all(is_pchar_byte) || !valid_pct(v) => {
                return Err(SiweParseError::BadField("Request ID"))
            }
            other => other.map(str::to_string),
        };

        let mut resources = Vec::new();
        if lines.get(at).copied() == Some("Resources:") {
            at += 1;
            while let Some(line) = lines.get(at).copied() {
                let uri = line
                    .strip_prefix("- ")
                    .ok_or(SiweParseError::UnexpectedLine(at + 1))?;
                if !valid_uri(uri) {
                    return Err(SiweParseError::BadField("Resources"));
                }
                resources.push(uri.to_string());
                at += 1;
            }
        }
        if at < lines.len() {
            return Err(SiweParseError::UnexpectedLine(at + 1));
        }

        Ok(SiweMessage {
            raw: text.to_string(),
            scheme,
            domain: domain.to_string(),
            address,
            statement,
            uri,
            version: "1".to_string(),
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        })
    }
}

fn date_time(value: &str, field: &'static str) -> Result<DateTime<FixedOffset>, SiweParseError> {
    // RFC 3339 `date-time` has a `T` separator and no spaces.
    if value.contains(' ') || !value.contains(['T', 't']) {
        return Err(SiweParseError::BadField(field));
    }
    DateTime::parse_from_rfc3339(value).map_err(|_| SiweParseError::BadField(field))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn is_pchar_byte(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'%')
}

/// Every `%` starts a two-hex-digit escape.
fn valid_pct(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn valid_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// RFC 3986 `authority`: `[ userinfo "@" ] host [ ":" port ]`, host not empty.
fn valid_authority(s: &str) -> bool {
    let host_port = match s.rsplit_once('@') {
        Some((userinfo, rest)) => {
            if !userinfo
                .bytes()
                .all(|b| is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'%'))
                || !valid_pct(userinfo)
            {
                return false;
            }
            rest
        }
        None => s,
    };
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        // IP-literal
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return false,
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host_port.starts_with('[')
            || (host
                .bytes()
                .all(|b| is_unreserved(b) || is_sub_delim(b) || b == b'%')
                && valid_pct(host)));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// RFC 3986 `URI` at the character level: a scheme, `:`, then URI characters only.
fn valid_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    valid_scheme(scheme)
        && rest.bytes().all(|b| {
            is_unreserved(b)
                || is_sub_delim(b)
                || matches!(b, b':' | b'/' | b'?' | b'#' | b'[' | b']' | b'@' | b'%')
        })
        && valid_pct(rest)
}

/// Why a signature could not be turned into a signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not hex")]
    NotHex,
    #[error("the signature is {0} bytes, not 65")]
    BadLength(usize),
    #[error("the signature's v byte is {0}, not 0, 1, 27 or 28")]
    BadRecoveryId(u8),
    #[error("the signature's s value is in the upper half of the curve order")]
    HighS,
    #[error("the signature does not recover to a public key")]
    Invalid,
}

/// The EIP-191 `personal_sign` digest of `message`.
pub fn personal_sign_hash(message: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(b"\x19Ethereum Signed Message:\n");
    hasher.update(message.len().to_string().as_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

/// Recovers the address that `personal_sign`ed `message`. The signature is 65 bytes
/// `r || s || v` in hex, with or without `0x`; `v` is 0/1 or 27/28; high-`s` is refused.
pub fn recover_personal_sign(
    message: &str,
    signature_hex: &str,
) -> Result<[u8; 20], SignatureError> {
    let hex_part = signature_hex
        .strip_prefix("0x")
        .or_else(|| signature_hex.strip_prefix("0X"))
        .unwrap_or(signature_hex);
    if !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignatureError::NotHex);
    }
    if hex_part.len() != 130 {
        return Err(SignatureError::BadLength(hex_part.len() / 2));
    }
    let mut bytes = [0u8; 65];
    hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| SignatureError::NotHex)?;

    let v = bytes[64];
    let recovery = match v {
        0 | 1 => v,
        27 | 28 => v - 27,
        other => return Err(SignatureError::BadRecoveryId(other)),
    };
    let recovery = RecoveryId::from_byte(recovery).ok_or(SignatureError::BadRecoveryId(v))?;
    let signature = Signature::from_slice(&bytes[..64]).map_err(|_| SignatureError::Invalid)?;
    if signature.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let digest = personal_sign_hash(message.as_bytes());
    let key = VerifyingKey::recover_from_prehash(&digest, &signature, recovery)
        .map_err(|_| SignatureError::Invalid)?;
    Ok(address_of(&key))
}

/// The Ethereum address of a public key: the last 20 bytes of the Keccak-256 of its
/// uncompressed encoding without the `0x04` prefix.
pub fn address_of(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

/// Why a parsed sign-in message was refused (answered with HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("the message is for another domain")]
    WrongDomain,
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("the signature is not from the message's address")]
    SignerMismatch,
    #[error("the message has expired")]
    Expired,
    #[error("the message is not valid yet")]
    NotYetValid,
    #[error("the message was issued in the future")]
    IssuedInFuture,
}

impl WalletError {
    /// A short, fixed explanation for the client.
    pub fn message(&self) -> &'static str {
        match self {
            WalletError::WrongDomain => "sign-in message is for another domain",
            WalletError::Signature(_) => "invalid signature",
            WalletError::SignerMismatch => "signature does not match the message address",
            WalletError::Expired => "sign-in message expired",
            WalletError::NotYetValid => "sign-in message not valid yet",
            WalletError::IssuedInFuture => "sign-in message issued in the future",
        }
    }
}

/// Checks a parsed message and its signature at `now` (Unix seconds) and returns the signer.
/// `expected_domain` is compared ASCII-case-insensitively (host names are); the message's
/// optional scheme is not compared. The nonce is the caller's to check (`nonce.rs`).
pub fn verify_sign_in(
    msg: &SiweMessage,
    signature: &str,
    expected_domain: &str,
    now: i64,
) -> Result<[u8; 20], WalletError> {
    if !msg.domain.eq_ignore_ascii_case(expected_domain) {
        return Err(WalletError::WrongDomain);
    }
    let signer = recover_personal_sign(&msg.raw, signature)?;
    if signer != msg.address {
        return Err(WalletError::SignerMismatch);
    }
    let now_ms = now.saturating_mul(1000);
    let leeway_ms = SIWE_LEEWAY_S * 1000;
    if let Some(exp) = msg.expiration_time {
        if now_ms >= exp.timestamp_millis() {
            return Err(WalletError::Expired);
        }
    }
    if let Some(nbf) = msg.not_before {
        if now_ms.saturating_add(leeway_ms) < nbf.timestamp_millis() {
            return Err(WalletError::NotYetValid);
        }
    }
    if msg.issued_at.timestamp_millis() > now_ms.saturating_add(leeway_ms) {
        return Err(WalletError::IssuedInFuture);
    }
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    const NOW: i64 = 1_750_000_000; // 2025-06-15T15:06:40Z

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn address(key: &SigningKey) -> [u8; 20] {
        address_of(key.verifying_key())
    }

    /// `personal_sign` as a wallet does it: 65 bytes, v = 27/28.
    fn sign(key: &SigningKey, message: &str) -> [u8; 65] {
        let digest = personal_sign_hash(message.as_bytes());
        let (sig, recid) = key.sign_prehash_recoverable(&digest).unwrap();
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
        out
    }

    fn hex0x(bytes: &[u8]) -> String {
        format!("0x{}", hex::encode(bytes))
    }

    fn rfc3339(unix: i64) -> String {
        DateTime::from_timestamp(unix, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn message_for(addr: &[u8; 20], extra: &str) -> String {
        format!(
            "signalhub.example wants you to sign in with your Ethereum account:\n\
             {}\n\nSign in to signalhub.\n\nURI: https://signalhub.example/login\n\
             Version: 1\nChain ID: 1\nNonce: abcDEF1234567890\nIssued At: {}{extra}",
            eip55(addr),
            rfc3339(NOW - 5)
        )
    }

    const EIP_EXAMPLE: &str = "service.org wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ServiceOrg Terms of Service: https://service.org/tos

URI: https://service.org/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json";

    #[test]
    fn eip_example_message_parses() {
        let m = SiweMessage::parse(EIP_EXAMPLE).unwrap();
        assert_eq!(m.domain(), "service.org");
        assert_eq!(m.scheme(), None);
        assert_eq!(
            eip55(m.address()),
            "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
        );
        assert_eq!(
            m.statement(),
            Some("I accept the ServiceOrg Terms of Service: https://service.org/tos")
        );
        assert_eq!(m.uri(), "https://service.org/login");
        assert_eq!(m.version(), "1");
        assert_eq!(m.chain_id(), 1);
        assert_eq!(m.nonce(), "32891756");
        assert_eq!(m.issued_at().timestamp(), 1_633_019_124);
        assert_eq!(m.expiration_time(), None);
        assert_eq!(m.not_before(), None);
        assert_eq!(m.request_id(), None);
        assert_eq!(
            m.resources(),
            [
                "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
                "https://example.com/my-web2-claim.json"
            ]
        );
        assert_eq!(m.as_str(), EIP_EXAMPLE);
    }

    #[test]
    fn message_with_every_optional_field_parses() {
        let text = "https://example.com:3388 wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

URI: https://example.com/login
Version: 1
Chain ID: 137
Nonce: 32891756abc
Issued At: 2021-09-30T16:25:24.123+02:00
Expiration Time: 2021-10-01T16:25:24Z
Not Before: 2021-09-30T16:00:00Z
Request ID: req-1:@x
Resources:";
        let m = SiweMessage::parse(text).unwrap();
        assert_eq!(m.scheme(), Some("https"));
        assert_eq!(m.domain(), "example.com:3388");
        assert_eq!(m.statement(), None);
        assert_eq!(m.chain_id(), 137);
        assert_eq!(m.issued_at().timestamp_millis(), 1_633_011_924_123);
        assert_eq!(m.expiration_time().unwrap().timestamp(), 1_633_105_524);
        assert_eq!(m.not_before().unwrap().timestamp(), 1_633_017_600);
        assert_eq!(m.request_id(), Some("req-1:@x"));
        assert!(m.resources().is_empty());
    }

    #[test]
    fn message_without_statement_parses_in_both_layouts() {
        let abnf = "a.example wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2


URI: https://a.example
Version: 1
Chain ID: 1
Nonce: 12345678
Issued At: 2021-09-30T16:25:24Z";
        let library = abnf.replace("\n\n\nURI", "\n\nURI");
        for text in [abnf.to_string(), library] {
            let m = SiweMessage::parse(&text).unwrap();
            assert_eq!(m.statement(), None);
            assert_eq!(m.uri(), "https://a.example");
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        use SiweParseError as E;
        let good = EIP_EXAMPLE;
        let cases: Vec<(String, SiweParseError)> = vec![
            (String::new(), E::BadHeader),
            (
                good.replace("wants you to sign in", "wants you to log in"),
                E::BadHeader,
            ),
            (good.replace("service.org wants", " wants"), E::BadDomain),
            (
                good.replace("service.org wants", "serv ice.org wants"),
                E::BadDomain,
            ),
            (
                good.replace("service.org wants", "service.org:abc wants"),
                E::BadDomain,
            ),
            (
                good.replace("service.org wants", "1http://service.org wants"),
                E::BadScheme,
            ),
            (
                good.replace("0xC02aaA39", "0xC02aaA3"),
                E::BadAddress(AddressError::Syntax),
            ),
            (
                good.replace("0xC02aaA39", "0xc02aaA39"),
                E::BadAddress(AddressError::Checksum),
            ),
            (
                good.replace("Cc2\n\nI accept", "Cc2\nI accept"),
                E::MissingBlankLine,
            ),
            (good.replace("tos\n\nURI", "tos\nURI"), E::BadStatement),
            (good.replace("URI: ", "Uri: "), E::MissingField("URI")),
            (
                good.replace("https://service.org/login", "not a uri"),
                E::BadField("URI"),
            ),
            (
                good.replace("Version: 1", "Version: 2"),
                E::BadField("Version"),
            ),
            (
                good.replace("Chain ID: 1", "Chain ID: one"),
                E::BadField("Chain ID"),
            ),
            (
                good.replace("Chain ID: 1", "Chain ID: 99999999999999999999999"),
                E::BadField("Chain ID"),
            ),
            (
                good.replace("Nonce: 32891756", "Nonce: 3289175"),
                E::BadField("Nonce"),
            ),
            (
                good.replace("Nonce: 32891756", "Nonce: 3289-1756"),
                E::BadField("Nonce"),
            ),
            (
                good.replace("2021-09-30T16:25:24Z", "yesterday"),
                E::BadField("Issued At"),
            ),
            (
                good.replace("2021-09-30T16:25:24Z", "2021-09-30 16:25:24Z"),
                E::BadField("Issued At"),
            ),
            (good.replace("Version: 1\n", ""), E::MissingField("Version")),
            (good.replace("Nonce: ", "Nonce:"), E::MissingField("Nonce")),
            (format!("{good}\n"), E::UnexpectedLine(14)),
            (
                good.replace("- https://example.com", "* https://example.com"),
                E::UnexpectedLine(13),
            ),
            (good.replace('\n', "\r\n"), E::BadCharacter),
            (good.replace("ServiceOrg", "ServiceÖrg"), E::BadCharacter),
            (good.replace("ServiceOrg", "Service\tOrg"), E::BadCharacter),
            ("x".repeat(MAX_MESSAGE_BYTES + 1), E::TooLong),
        ];
        for (text, want) in cases {
            assert_eq!(
                SiweMessage::parse(&text),
                Err(want.clone()),
                "{want:?}\n{text}"
            );
        }
        // Fields out of order, or trailing lines after the last field.
        let swapped = good.replace("Version: 1\nChain ID: 1", "Chain ID: 1\nVersion: 1");
        assert_eq!(
            SiweMessage::parse(&swapped),
            Err(E::MissingField("Version"))
        );
        let trailing = good.replace("\nResources:", "\nSomething: else\nResources:");
        assert_eq!(SiweMessage::parse(&trailing), Err(E::UnexpectedLine(11)));
        let bad_expiry = good.replace(
            "Issued At: 2021-09-30T16:25:24Z",
            "Issued At: 2021-09-30T16:25:24Z\nExpiration Time: soon",
        );
        assert_eq!(
            SiweMessage::parse(&bad_expiry),
            Err(E::BadField("Expiration Time"))
        );
    }

    #[test]
    fn eip55_test_vectors_round_trip() {
        // From EIP-55.
        let vectors = [
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
            "0xde709f2102306220921060314715629080e2fb77",
            "0x27b1fdb04752bbc536007a920d24acb045561c26",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ];
        for v in vectors {
            let bytes = parse_address(v).unwrap();
            assert_eq!(eip55(&bytes), v);
            assert_eq!(format_address(&bytes), v.to_ascii_lowercase());
        }
    }

    #[test]
    fn address_case_rules_follow_eip55() {
        let lower = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        let upper = "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED";
        let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert_eq!(parse_address(lower), parse_address(good));
        assert_eq!(parse_address(upper), parse_address(good));
        assert_eq!(parse_address(bad), Err(AddressError::Checksum));
        assert_eq!(
            parse_address("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
            Err(AddressError::Syntax)
        );
        assert_eq!(
            parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae"),
            Err(AddressError::Syntax)
        );
        assert_eq!(
            parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg"),
            Err(AddressError::Syntax)
        );
    }

    #[test]
    fn known_personal_sign_vector_recovers_its_address() {
        // web3.js documentation: accounts.sign("Some data", 0x4c0883a6...).
        let sig = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd\
                   6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c";
        let addr = recover_personal_sign("Some data", sig).unwrap();
        assert_eq!(eip55(&addr), "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
        let key = SigningKey::from_slice(
            &hex::decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(address(&key), addr);
    }

    #[test]
    fn valid_signature_is_accepted_in_every_encoding() {
        let k = key(0x11);
        let addr = address(&k);
        let text = message_for(&addr, "");
        let msg = SiweMessage::parse(&text).unwrap();
        let sig = sign(&k, &text);
        let mut v01 = sig;
        v01[64] -= 27;
        for encoded in [
            hex0x(&sig),
            hex::encode(sig),
            hex0x(&v01),
            hex::encode(v01),
            hex0x(&sig).to_ascii_uppercase().replacen("0X", "0x", 1),
        ] {
            assert_eq!(
                verify_sign_in(&msg, &encoded, "signalhub.example", NOW),
                Ok(addr),
                "{encoded}"
            );
        }
    }

    #[test]
    fn domain_is_compared_case_insensitively_and_wrong_domain_is_refused() {
        let k = key(0x12);
        let text = message_for(&address(&k), "");
        let msg = SiweMessage::parse(&text).unwrap();
        let sig = hex0x(&sign(&k, &text));
        assert!(verify_sign_in(&msg, &sig, "SignalHub.Example", NOW).is_ok());
        assert_eq!(
            verify_sign_in(&msg, &sig, "evil.example", NOW),
            Err(WalletError::WrongDomain)
        );
        assert_eq!(
            verify_sign_in(&msg, &sig, "signalhub.example:8080", NOW),
            Err(WalletError::WrongDomain)
        );
    }

    #[test]
    fn signature_from_another_key_is_refused() {
        let k = key(0x13);
        let other = key(0x14);
        let text = message_for(&address(&k), "");
        let msg = SiweMessage::parse(&text).unwrap();
        let sig = hex0x(&sign(&other, &text));
        assert_eq!(
            verify_sign_in(&msg, &sig, "signalhub.example", NOW),
            Err(WalletError::SignerMismatch)
        );
    }

    #[test]
    fn tampered_message_is_refused() {
        let k = key(0x15);
        let text = message_for(&address(&k), "");
        let sig = hex0x(&sign(&k, &text));
        let tampered = text.replace("Chain ID: 1", "Chain ID: 5");
        let msg = SiweMessage::parse(&tampered).unwrap();
        assert_eq!(
            verify_sign_in(&msg, &sig, "signalhub.example", NOW),
            Err(WalletError::SignerMismatch)
        );
    }

    #[test]
    fn expired_message_is_refused() {
        let k = key(0x16);
        let text = message_for(
            &address(&k),
            &format!("\nExpiration Time: {}", rfc3339(NOW - 1)),
        );
        let msg = SiweMessage::parse(&text).unwrap();
        let sig = hex0x(&sign(&k, &text));
        assert_eq!(
            verify_sign_in(&msg, &sig, "signalhub.example", NOW),
            Err(WalletError::Expired)
        );
        assert!(verify_sign_in(&msg, &sig, "signalhub.example", NOW - 2).is_ok());
    }

    #[test]
    fn not_before_in_the_future_is_refused() {
        let k = key(0x17);
        let text = message_for(
            &address(&k),
            &format!("\nNot Before: {}", rfc3339(NOW + 3600)),
        );
        let msg = SiweMessage::parse(&text).unwrap();
        let sig = hex0x(&sign(&k, &text));
        assert_eq!(
            verify_sign_in(&msg, &sig, "signalhub.example", NOW),
            Err(WalletError::NotYetValid)
        );
        assert!(verify_sign_in(&msg, &sig, "signalhub.example", NOW + 3600).is_ok());
    }

    #[test]
    fn issued_at_in_the_future_beyond_leeway_is_refused() {
        let k = key(0x18);
        let text = message_for(&address(&k), "");
        let msg = SiweMessage::parse(&text).unwrap();
        let sig = hex0x(&sign(&k, &text));
        // Issued at NOW - 5: fine from NOW - 35 on (30 s leeway), refused before.
        assert!(verify_sign_in(&msg, &sig, "signalhub.example", NOW - 35).is_ok());
        assert_eq!(
            verify_sign_in(&msg, &sig, "signalhub.example", NOW - 36),
            Err(WalletError::IssuedInFuture)
        );
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let k = key(0x19);
        let text = message_for(&address(&k), "");
        let sig = sign(&k, &text);
        assert_eq!(
            recover_personal_sign(&text, "0xzz"),
            Err(SignatureError::NotHex)
        );
        assert_eq!(
            recover_personal_sign(&text, "0x123"),
            Err(SignatureError::BadLength(1))
        );
        assert_eq!(
            recover_personal_sign(&text, &hex0x(&sig[..64])),
            Err(SignatureError::BadLength(64))
        );
        let mut bad_v = sig;
        bad_v[64] = 29;
        assert_eq!(
            recover_personal_sign(&text, &hex0x(&bad_v)),
            Err(SignatureError::BadRecoveryId(29))
        );
        let mut zero_r = sig;
        zero_r[..32].fill(0);
        assert_eq!(
            recover_personal_sign(&text, &hex0x(&zero_r)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn high_s_signature_is_refused() {
        let k = key(0x1a);
        let text = message_for(&address(&k), "");
        let sig = sign(&k, &text);
        let low = Signature::from_slice(&sig[..64]).unwrap();
        // s' = n - s, with the recovery parity flipped: the malleable twin.
        let high_s = -*low.s();
        let high = Signature::from_scalars(low.r().to_bytes(), high_s.to_bytes()).unwrap();
        let mut twin = [0u8; 65];
        twin[..64].copy_from_slice(&high.to_bytes());
        twin[64] = if sig[64] == 27 { 28 } else { 27 };
        assert_eq!(
            recover_personal_sign(&text, &hex0x(&twin)),
            Err(SignatureError::HighS)
        );
    }
}
