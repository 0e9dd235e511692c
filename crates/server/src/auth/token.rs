//! Session tokens: verifying JWTs against keys pinned to one algorithm each, and minting HS256.
//!
//! Verification order, so that nothing about a token's claims is examined before its
//! signature holds:
//! 1. shape: three base64url (unpadded) parts, a JSON header with a string `alg`, no `crit`;
//! 2. algorithm: `alg` must be exactly `HS256`, `RS256` or `ES256` *and* the algorithm of a
//!    configured key; anything else (`none` included) is [`TokenError::AlgorithmNotAllowed`]
//!    before any cryptography runs. A header `kid` naming a configured key selects that key
//!    alone (and its algorithm must match); otherwise every key of the header's algorithm is
//!    tried. This defeats the RS256-public-key-as-HMAC-secret confusion attack: an RS256 key
//!    never verifies an `HS256` token.
//! 3. signature, then claims with strict JSON types (a string `exp` is malformed, never
//!    "absent"), then time (`exp`, `nbf`, `iat` with at most 30 s leeway), `aud`/`iss` when
//!    configured, and finally the `tier` against the ladder.
//!
//! Secrets (HS256 keys) never appear in `Debug` output; error messages never include tokens.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Deserialize;
use serde_json::Value;
use signalhub_hub::{AuthKind, TierId, TierLadder};

use super::principal::Principal;

/// The most clock leeway a verifier allows, whatever it is configured with (spec 9.9).
pub const MAX_LEEWAY_S: u64 = 30;

/// Longest token accepted, in bytes; anything longer is malformed without further parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest `sub`, in characters.
const MAX_SUB_CHARS: usize = 128;

/// The algorithms a key can be pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenAlg {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, verified with an RSA public key.
    Rs256,
    /// ECDSA P-256 with SHA-256, verified with an EC public key.
    Es256,
}

impl TokenAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlg::Hs256 => "HS256",
            TokenAlg::Rs256 => "RS256",
            TokenAlg::Es256 => "ES256",
        }
    }

    /// Parses a JOSE `alg` value, case-sensitively (RFC 7515). `none` and every algorithm
    /// this server does not implement give `None`.
    pub fn from_jose(alg: &str) -> Option<Self> {
        match alg {
            "HS256" => Some(TokenAlg::Hs256),
            "RS256" => Some(TokenAlg::Rs256),
            "ES256" => Some(TokenAlg::Es256),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            TokenAlg::Hs256 => Algorithm::HS256,
            TokenAlg::Rs256 => Algorithm::RS256,
            TokenAlg::Es256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for TokenAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

enum KeyMaterial {
    Hs256(Vec<u8>),
    Rs256Pem(String),
    Es256Pem(String),
}

/// One configured verification key, pinned to exactly one algorithm, optionally named by `kid`.
pub struct VerifyKey {
    material: KeyMaterial,
    kid: Option<String>,
}

impl VerifyKey {
    /// An HS256 shared secret.
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        VerifyKey {
            material: KeyMaterial::Hs256(secret.into()),
            kid: None,
        }
    }

    /// An RS256 public key in PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    pub fn rs256_pem(pem: impl Into<String>) -> Self {
        VerifyKey {
            material: KeyMaterial::Rs256Pem(pem.into()),
            kid: None,
        }
    }

    /// An ES256 (P-256) public key in PEM (`BEGIN PUBLIC KEY`).
    pub fn es256_pem(pem: impl Into<String>) -> Self {
        VerifyKey {
            material: KeyMaterial::Es256Pem(pem.into()),
            kid: None,
        }
    }

    /// Names the key: a token whose header `kid` equals it is verified with this key only.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The algorithm this key is pinned to.
    pub fn algorithm(&self) -> TokenAlg {
        match self.material {
            KeyMaterial::Hs256(_) => TokenAlg::Hs256,
            KeyMaterial::Rs256Pem(_) => TokenAlg::Rs256,
            KeyMaterial::Es256Pem(_) => TokenAlg::Es256,
        }
    }

    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .field("material", &"[redacted]")
            .finish()
    }
}

/// Claim checks beyond the signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// When set, the token's `aud` (a string, or an array of strings) must contain it.
    pub audience: Option<String>,
    /// When set, the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// Clock leeway for `exp`, `nbf` and `iat`, in seconds; clamped to [`MAX_LEEWAY_S`].
    pub leeway_s: u64,
}

/// Why a verification key could not be used. `key` names it: its position in the list given
/// to [`Verifier::new`] (from 1) and its `kid` when it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("JWT key {key}: not a valid {alg} public key in PEM form")]
    BadPem { key: String, alg: TokenAlg },
    #[error("JWT key {key}: the RSA key has {bits} bits, fewer than {MIN_RSA_BITS}")]
    WeakRsaKey { key: String, bits: usize },
    #[error("JWT key {key}: the HS256 secret is empty")]
    EmptySecret { key: String },
    #[error("JWT key {key}: kid {kid:?} is used by more than one key")]
    DuplicateKid { key: String, kid: String },
}

/// Why a token was refused. [`TokenError::message`] is safe to show to clients; `Display` is
/// for logs and may name the claim or tier, never the token or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("bad token signature")]
    BadSignature,
    /// An HS256 token that fails the signature check on a server with no HS256 secret
    /// configured (only the per-process wallet key): it was signed elsewhere, typically by
    /// `signalhub token` or a backend with a secret this server was not started with.
    #[error("bad token signature (no HS256 secret configured)")]
    NoSharedSecret,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token audience mismatch")]
    WrongAudience,
    #[error("token issuer mismatch")]
    WrongIssuer,
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("token tier {0:?} is unknown")]
    UnknownTier(String),
}

impl TokenError {
    /// A short, fixed explanation for the client (`error.message`, close reasons).
    pub fn message(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed token",
            TokenError::AlgorithmNotAllowed => "token algorithm not allowed",
            TokenError::BadSignature => {
                "invalid token signature: none of the keys this server verifies with \
                 (SIGNALHUB_JWT_SECRET, [[auth.keys]]) signed it; a token from `signalhub token` \
                 needs the server's SIGNALHUB_JWT_SECRET"
            }
            TokenError::NoSharedSecret => {
                "invalid token signature: this server has no SIGNALHUB_JWT_SECRET, so it accepts \
                 only wallet tokens signed by this process; start it with the \
                 SIGNALHUB_JWT_SECRET that signed the token (the one `signalhub token` used)"
            }
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::WrongAudience => "token audience not accepted",
            TokenError::WrongIssuer => "token issuer not accepted",
            TokenError::MissingClaim("sub") => "token has no sub claim",
            TokenError::MissingClaim("exp") => "token has no exp claim",
            TokenError::MissingClaim(_) => "token is missing a required claim",
            TokenError::UnknownTier(_) => "token tier unknown",
        }
    }
}

struct KeyEntry {
    alg: TokenAlg,
    kid: Option<String>,
    key: DecodingKey,
    /// The per-process minter's key (not configured).
    ephemeral: bool,
}

/// Verifies session tokens. Build it once at start; `verify` is cheap and `&self`.
pub struct Verifier {
    keys: Vec<KeyEntry>,
    rules: TokenRules,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(TokenAlg, Option<&str>)> = self
            .keys
            .iter()
            .map(|k| (k.alg, k.kid.as_deref()))
            .collect();
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("rules", &self.rules)
            .finish()
    }
}

fn key_label(index: usize, kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("#{} (kid {kid:?})", index + 1),
        None => format!("#{}", index + 1),
    }
}

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

enum KeyProblem {
    Unusable,
    WeakRsa(usize),
}

/// Builds the decoding key and proves the crypto backend can use it for its algorithm: a PEM
/// can parse yet hold the wrong kind of key, which otherwise only shows at the first token.
fn decoding_key(material: &KeyMaterial) -> Result<DecodingKey, KeyProblem> {
    let (key, alg) = match material {
        KeyMaterial::Hs256(secret) => (DecodingKey::from_secret(secret), TokenAlg::Hs256),
        KeyMaterial::Rs256Pem(pem) => (
            DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| KeyProblem::Unusable)?,
            TokenAlg::Rs256,
        ),
        KeyMaterial::Es256Pem(pem) => (
            DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| KeyProblem::Unusable)?,
            TokenAlg::Es256,
        ),
    };
    if alg == TokenAlg::Rs256 {
        // The backend parses RSA keys only when verifying; parse (and size) it now.
        let jwk = Jwk::from_decoding_key(&key, Some(Algorithm::RS256))
            .map_err(|_| KeyProblem::Unusable)?;
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return Err(KeyProblem::Unusable);
        };
        let n = URL_SAFE_NO_PAD
            .decode(&rsa.n)
            .map_err(|_| KeyProblem::Unusable)?;
        let bits = match n.iter().position(|&b| b != 0) {
            Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
            None => 0,
        };
        if bits < MIN_RSA_BITS {
            return Err(KeyProblem::WeakRsa(bits));
        }
    }
    // "AA" is a one-byte signature: never valid, but it makes the backend load the key.
    jsonwebtoken::crypto::verify("AA", b"probe", &key, alg.jwt())
        .map_err(|_| KeyProblem::Unusable)?;
    Ok(key)
}

impl Verifier {
    /// Checks and loads `keys`. An empty list is allowed: every token is then refused
    /// (`AlgorithmNotAllowed`) until a minter's key is added with [`Verifier::with_minter`].
    pub fn new(keys: Vec<VerifyKey>, rules: TokenRules) -> Result<Verifier, KeyError> {
        let mut entries: Vec<KeyEntry> = Vec::with_capacity(keys.len());
        for (index, key) in keys.into_iter().enumerate() {
            let label = key_label(index, key.kid.as_deref());
            if let KeyMaterial::Hs256(secret) = &key.material {
                if secret.is_empty() {
                    return Err(KeyError::EmptySecret { key: label });
                }
            }
            if let Some(kid) = &key.kid {
                if entries.iter().any(|e| e.kid.as_deref() == Some(kid)) {
                    return Err(KeyError::DuplicateKid {
                        key: label,
                        kid: kid.clone(),
                    });
                }
            }
            let alg = key.algorithm();
            let decoding = decoding_key(&key.material).map_err(|problem| match problem {
                KeyProblem::Unusable => KeyError::BadPem { key: label, alg },
                KeyProblem::WeakRsa(bits) => KeyError::WeakRsaKey { key: label, bits },
            })?;
            entries.push(KeyEntry {
                alg,
                kid: key.kid,
                key: decoding,
                ephemeral: false,
            });
        }
        let rules = TokenRules {
            leeway_s: rules.leeway_s.min(MAX_LEEWAY_S),
            ..rules
        };
        Ok(Verifier {
            keys: entries,
            rules,
        })
    }

    /// Also accepts tokens signed by `minter` (spec 9.16: without a configured secret, wallet
    /// sign-in tokens are signed with a per-process key). The secret is not exposed.
    pub fn with_minter(mut self, minter: &Minter) -> Verifier {
        self.keys.push(KeyEntry {
            alg: TokenAlg::Hs256,
            kid: None,
            key: minter.decoding.clone(),
            ephemeral: true,
        });
        self
    }

    /// Each key's algorithm and `kid`, in the order given, and whether it is the
    /// per-process minter's key (added by [`Verifier::with_minter`]). No key material.
    pub fn keys(&self) -> Vec<(TokenAlg, Option<&str>, bool)> {
        self.keys
            .iter()
            .map(|k| (k.alg, k.kid.as_deref(), k.ephemeral))
            .collect()
    }

    /// True when at least one key is configured.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The rules in force (leeway already clamped).
    pub fn rules(&self) -> &TokenRules {
        &self.rules
    }

    /// Verifies `token` at `now` (Unix seconds) and resolves its tier on `ladder`.
    pub fn verify(
        &self,
        token: &str,
        ladder: &TierLadder,
        now: i64,
    ) -> Result<Principal, TokenError> {
        let parts = split_token(token)?;
        let header: RawHeader = decode_json(parts.header)?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let alg = TokenAlg::from_jose(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        let candidates = self.candidates(alg, header.kid.as_deref())?;

        // The signature must be canonical base64url before the backend sees it.
        if parts.signature.is_empty() || URL_SAFE_NO_PAD.decode(parts.signature).is_err() {
            return Err(TokenError::Malformed);
        }
        let verified = candidates.iter().any(|entry| {
            matches!(
                jsonwebtoken::crypto::verify(
                    parts.signature,
                    parts.signed.as_bytes(),
                    &entry.key,
                    alg.jwt()
                ),
                Ok(true)
            )
        });
        if !verified {
            // Only the per-process key to check with: no secret is shared with whoever
            // signed this token.
            return Err(if candidates.iter().all(|entry| entry.ephemeral) {
                TokenError::NoSharedSecret
            } else {
                TokenError::BadSignature
            });
        }

        let claims: RawClaims = decode_json(parts.payload)?;
        self.check_claims(claims, ladder, now)
    }

    fn candidates(&self, alg: TokenAlg, kid: Option<&str>) -> Result<Vec<&KeyEntry>, TokenError> {
        if let Some(kid) = kid {
            if let Some(entry) = self.keys.iter().find(|e| e.kid.as_deref() == Some(kid)) {
                return if entry.alg == alg {
                    Ok(vec![entry])
                } else {
                    Err(TokenError::AlgorithmNotAllowed)
                };
            }
        }
        let matching: Vec<&KeyEntry> = self.keys.iter().filter(|e| e.alg == alg).collect();
        if matching.is_empty() {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        Ok(matching)
    }

    fn check_claims(
        &self,
        claims: RawClaims,
        ladder: &TierLadder,
        now: i64,
    ) -> Result<Principal, TokenError> {
        let leeway = self.rules.leeway_s as i64;

        let sub = match claims.sub {
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("sub")),
            Some(Value::String(s)) => s,
            Some(_) => return Err(TokenError::Malformed),
        };
        if sub.is_empty() {
            return Err(TokenError::MissingClaim("sub"));
        }
        if sub.chars().count() > MAX_SUB_CHARS || sub.chars().any(char::is_control) {
            return Err(TokenError::Malformed);
        }
        let exp = match claims.exp {
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("exp")),
            Some(v) => numeric_date(&v, Rounding::Down)?,
        };
        let nbf = optional(claims.nbf, |v| numeric_date(v, Rounding::Up))?;
        let iat = optional(claims.iat, |v| numeric_date(v, Rounding::Up))?;
        let aud = optional(claims.aud, audience_list)?;
        let iss = optional(claims.iss, string_claim)?;
        let tier = optional(claims.tier, string_claim)?;
        let auth = optional(claims.auth, string_claim)?;

        // RFC 7519: valid while now < exp and now >= nbf; each bound widened by the leeway.
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = nbf {
            if now.saturating_add(leeway) < nbf {
                return Err(TokenError::NotYetValid);
            }
        }
        if let Some(iat) = iat {
            if iat > now.saturating_add(leeway) {
                return Err(TokenError::NotYetValid);
            }
        }
        if let Some(expected) = &self.rules.audience {
            if !aud.is_some_and(|list| list.iter().any(|a| a == expected)) {
                return Err(TokenError::WrongAudience);
            }
        }
        if let Some(expected) = &self.rules.issuer {
            if iss.as_deref() != Some(expected.as_str()) {
                return Err(TokenError::WrongIssuer);
            }
        }
        let tier = match tier {
            None => TierId::LOWEST,
            Some(name) => ladder
                .parse(&name)
                .ok_or_else(|| TokenError::UnknownTier(name.chars().take(64).collect()))?,
        };
        let auth = match auth.as_deref() {
            Some("wallet") => AuthKind::Wallet,
            _ => AuthKind::Session,
        };
        Ok(Principal {
            auth,
            user: Some(sub),
            tier,
            expires_at: Some(exp),
        })
    }
}

struct TokenParts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the signed bytes.
    signed: &'a str,
}

fn split_token(token: &str) -> Result<TokenParts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut it = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(TokenParts {
        header,
        payload,
        signature,
        signed: &token[..header.len() + 1 + payload.len()],
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Registered claims kept as raw JSON so a wrong type is refused instead of read as absent.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    tier: Option<Value>,
    #[serde(default)]
    auth: Option<Value>,
}

#[derive(Clone, Copy)]
enum Rounding {
    Down,
    Up,
}

/// A NumericDate: integer seconds, or a finite fractional number rounded toward refusal.
fn numeric_date(value: &Value, rounding: Rounding) -> Result<i64, TokenError> {
    let Value::Number(n) = value else {
        return Err(TokenError::Malformed);
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    let f = n.as_f64().ok_or(TokenError::Malformed)?;
    // Beyond ±2^53 seconds no real date lives; refuse rather than saturate.
    if !f.is_finite() || f.abs() > 9.0e15 {
        return Err(TokenError::Malformed);
    }
    Ok(match rounding {
        Rounding::Down => f.floor() as i64,
        Rounding::Up => f.ceil() as i64,
    })
}

/// `null` counts as absent; any other value goes through `parse`.
fn optional<T>(
    value: Option<Value>,
    parse: impl FnOnce(&Value) -> Result<T, TokenError>,
) -> Result<Option<T>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse(&v).map(Some),
    }
}

fn string_claim(value: &Value) -> Result<String, TokenError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(TokenError::Malformed),
    }
}

fn audience_list(value: &Value) -> Result<Vec<String>, TokenError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items.iter().map(string_claim).collect(),
        _ => Err(TokenError::Malformed),
    }
}

/// Mints HS256 session tokens (the admin token endpoint and wallet sign-in).
pub struct Minter {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ephemeral: bool,
    /// Written into every token, so the server accepts its own tokens when it checks them.
    audience: Option<String>,
    issuer: Option<String>,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("alg", &TokenAlg::Hs256)
            .field("ephemeral", &self.ephemeral)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(serde::Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    tier: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

impl Minter {
    /// A minter signing with the configured HS256 secret. Add the same secret to the
    /// [`Verifier`] as a [`VerifyKey::hs256`] so minted tokens verify.
    pub fn hs256(secret: &[u8]) -> Result<Minter, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret {
                key: "minter".to_string(),
            });
        }
        Ok(Minter {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ephemeral: false,
            audience: None,
            issuer: None,
        })
    }

    /// Writes the verifier's required `aud` and `iss` into minted tokens.
    pub fn with_claims_of(mut self, rules: &TokenRules) -> Minter {
        self.audience = rules.audience.clone();
        self.issuer = rules.issuer.clone();
        self
    }

    /// A minter with a fresh random 256-bit key that lives only in this process; pass it to
    /// [`Verifier::with_minter`]. Its tokens stop verifying when the process restarts.
    pub fn random() -> Minter {
        use rand::RngCore as _;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let minter = Minter {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            ephemeral: true,
            audience: None,
            issuer: None,
        };
        secret.fill(0);
        minter
    }

    /// True for a [`Minter::random`] key.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Signs a token for `user` with tier `tier_name` (a canonical ladder name), valid from
    /// `now` for `ttl_s` seconds; `auth` is recorded as `"auth":"wallet"` for wallet sign-ins.
    /// Returns the token and its expiry (Unix seconds).
    pub fn mint(
        &self,
        user: &str,
        tier_name: &str,
        ttl_s: u64,
        auth: AuthKind,
        now: i64,
    ) -> (String, i64) {
        let exp = now.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX));
        let claims = MintedClaims {
            sub: user,
            tier: tier_name,
            exp,
            iat: now,
            auth: (auth == AuthKind::Wallet).then_some("wallet"),
            aud: self.audience.as_deref(),
            iss: self.issuer.as_deref(),
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&claims).expect("a struct of strings and integers serializes"),
        );
        let signed = format!("{header}.{payload}");
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &self.encoding, Algorithm::HS256)
                .expect("HMAC-SHA256 accepts any key length");
        (format!("{signed}.{signature}"), exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-test-secret";
    const NOW: i64 = 1_750_000_000;
    const RS_PRIVATE: &str = include_str!("testdata/rs256_private.pem");
    const RS_PUBLIC: &str = include_str!("testdata/rs256_public.pem");
    const ES_PRIVATE: &str = include_str!("testdata/es256_private.pem");
    const ES_PUBLIC: &str = include_str!("testdata/es256_public.pem");

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs `header.claims` (raw JSON) with `key` under `alg`.
    fn sign_raw(header: &str, claims: &str, key: &EncodingKey, alg: Algorithm) -> String {
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), key, alg).unwrap();
        format!("{signed}.{sig}")
    }

    fn hs_token_with(secret: &[u8], header: &str, claims: &str) -> String {
        sign_raw(
            header,
            claims,
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
    }

    fn hs_token(claims: &str) -> String {
        hs_token_with(SECRET, r#"{"alg":"HS256","typ":"JWT"}"#, claims)
    }

    fn claims(extra: &str) -> String {
        let exp = NOW + 3600;
        if extra.is_empty() {
            format!(r#"{{"sub":"u_123","exp":{exp}}}"#)
        } else {
            format!(r#"{{"sub":"u_123","exp":{exp},{extra}}}"#)
        }
    }

    fn hs_verifier() -> Verifier {
        Verifier::new(vec![VerifyKey::hs256(SECRET)], TokenRules::default()).unwrap()
    }

    fn ladder() -> TierLadder {
        TierLadder::default()
    }

    fn verify(v: &Verifier, token: &str) -> Result<Principal, TokenError> {
        v.verify(token, &ladder(), NOW)
    }

    #[test]
    fn hs256_token_with_valid_claims_is_accepted() {
        let p = verify(&hs_verifier(), &hs_token(&claims(r#""tier":"premium""#))).unwrap();
        assert_eq!(p.auth, AuthKind::Session);
        assert_eq!(p.user.as_deref(), Some("u_123"));
        assert_eq!(p.tier, ladder().parse("premium").unwrap());
        assert_eq!(p.expires_at, Some(NOW + 3600));
    }

    #[test]
    fn token_without_tier_gets_lowest_tier() {
        let p = verify(&hs_verifier(), &hs_token(&claims(""))).unwrap();
        assert_eq!(p.tier, TierId::LOWEST);
    }

    #[test]
    fn alg_none_token_is_refused_whatever_its_spelling() {
        let v = hs_verifier();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            let token = format!("{header}.{}.", b64(claims("").as_bytes()));
            assert_eq!(
                verify(&v, &token),
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
            // Even with some signature bytes appended.
            let token = format!("{header}.{}.AAAA", b64(claims("").as_bytes()));
            assert_eq!(
                verify(&v, &token),
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
    }

    #[test]
    fn unsupported_or_miscased_algorithms_are_refused() {
        let v = hs_verifier();
        for alg in ["HS512", "hs256", "PS256", "EdDSA", ""] {
            let token = hs_token_with(SECRET, &format!(r#"{{"alg":"{alg}"}}"#), &claims(""));
            assert_eq!(
                verify(&v, &token),
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
    }

    #[test]
    fn hs256_token_signed_with_rsa_public_key_is_refused_by_rs256_verifier() {
        // The classic key-confusion attack: HMAC keyed with the verifier's public PEM bytes.
        let v =
            Verifier::new(vec![VerifyKey::rs256_pem(RS_PUBLIC)], TokenRules::default()).unwrap();
        let forged = hs_token_with(
            RS_PUBLIC.as_bytes(),
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims(r#""tier":"whale""#),
        );
        assert_eq!(verify(&v, &forged), Err(TokenError::AlgorithmNotAllowed));
        // Same with a kid naming the RSA key.
        let v = Verifier::new(
            vec![VerifyKey::rs256_pem(RS_PUBLIC).with_kid("rsa-1")],
            TokenRules::default(),
        )
        .unwrap();
        let forged = hs_token_with(
            RS_PUBLIC.as_bytes(),
            r#"{"alg":"HS256","kid":"rsa-1"}"#,
            &claims(""),
        );
        assert_eq!(verify(&v, &forged), Err(TokenError::AlgorithmNotAllowed));
    }

    #[test]
    fn rs256_token_is_accepted() {
        let v =
            Verifier::new(vec![VerifyKey::rs256_pem(RS_PUBLIC)], TokenRules::default()).unwrap();
        let key = EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap();
        let token = sign_raw(
            r#"{"alg":"RS256","typ":"JWT"}"#,
            &claims(r#""tier":"holder""#),
            &key,
            Algorithm::RS256,
        );
        let p = verify(&v, &token).unwrap();
        assert_eq!(p.tier, ladder().parse("holder").unwrap());
    }

    #[test]
    fn es256_token_is_accepted() {
        let v =
            Verifier::new(vec![VerifyKey::es256_pem(ES_PUBLIC)], TokenRules::default()).unwrap();
        let key = EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap();
        let token = sign_raw(
            r#"{"alg":"ES256","typ":"JWT"}"#,
            &claims(""),
            &key,
            Algorithm::ES256,
        );
        assert_eq!(verify(&v, &token).unwrap().user.as_deref(), Some("u_123"));
    }

    #[test]
    fn es256_token_is_refused_by_rs256_only_verifier() {
        let v =
            Verifier::new(vec![VerifyKey::rs256_pem(RS_PUBLIC)], TokenRules::default()).unwrap();
        let key = EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap();
        let token = sign_raw(r#"{"alg":"ES256"}"#, &claims(""), &key, Algorithm::ES256);
        assert_eq!(verify(&v, &token), Err(TokenError::AlgorithmNotAllowed));
    }

    #[test]
    fn expired_token_is_refused() {
        let token = hs_token(&format!(r#"{{"sub":"u","exp":{}}}"#, NOW - 60));
        assert_eq!(verify(&hs_verifier(), &token), Err(TokenError::Expired));
    }

    #[test]
    fn token_expiring_exactly_now_is_refused_without_leeway() {
        let token = hs_token(&format!(r#"{{"sub":"u","exp":{NOW}}}"#));
        assert_eq!(verify(&hs_verifier(), &token), Err(TokenError::Expired));
    }

    #[test]
    fn token_expired_within_leeway_is_accepted() {
        let rules = TokenRules {
            leeway_s: 30,
            ..TokenRules::default()
        };
        let v = Verifier::new(vec![VerifyKey::hs256(SECRET)], rules).unwrap();
        let token = hs_token(&format!(r#"{{"sub":"u","exp":{}}}"#, NOW - 20));
        assert!(verify(&v, &token).is_ok());
        let token = hs_token(&format!(r#"{{"sub":"u","exp":{}}}"#, NOW - 30));
        assert_eq!(verify(&v, &token), Err(TokenError::Expired));
    }

    #[test]
    fn leeway_is_clamped_to_30_seconds() {
        let rules = TokenRules {
            leeway_s: 3600,
            ..TokenRules::default()
        };
        let v = Verifier::new(vec![VerifyKey::hs256(SECRET)], rules).unwrap();
        assert_eq!(v.rules().leeway_s, MAX_LEEWAY_S);
        let token = hs_token(&format!(r#"{{"sub":"u","exp":{}}}"#, NOW - 31));
        assert_eq!(verify(&v, &token), Err(TokenError::Expired));
    }

    #[test]
    fn token_before_nbf_is_refused() {
        let token = hs_token(&claims(&format!(r#""nbf":{}"#, NOW + 60)));
        assert_eq!(verify(&hs_verifier(), &token), Err(TokenError::NotYetValid));
        let token = hs_token(&claims(&format!(r#""nbf":{NOW}"#)));
        assert!(verify(&hs_verifier(), &token).is_ok());
    }

    #[test]
    fn nbf_within_leeway_is_accepted() {
        let rules = TokenRules {
            leeway_s: 30,
            ..TokenRules::default()
        };
        let v = Verifier::new(vec![VerifyKey::hs256(SECRET)], rules).unwrap();
        let token = hs_token(&claims(&format!(r#""nbf":{}"#, NOW + 25)));
        assert!(verify(&v, &token).is_ok());
    }

    #[test]
    fn iat_in_the_future_beyond_leeway_is_refused() {
        let rules = TokenRules {
            leeway_s: 30,
            ..TokenRules::default()
        };
        let v = Verifier::new(vec![VerifyKey::hs256(SECRET)], rules).unwrap();
        let token = hs_token(&claims(&format!(r#""iat":{}"#, NOW + 31)));
        assert_eq!(verify(&v, &token), Err(TokenError::NotYetValid));
        let token = hs_token(&claims(&format!(r#""iat":{}"#, NOW + 30)));
        assert!(verify(&v, &token).is_ok());
    }

    #[test]
    fn wrongly_typed_time_claims_are_malformed_not_ignored() {
        // GHSA-h395-gr6q-cpjc: a string nbf/exp must not be treated as absent.
        let v = hs_verifier();
        let token = hs_token(&claims(r#""nbf":"99999999999""#));
        assert_eq!(verify(&v, &token), Err(TokenError::Malformed));
        let token = hs_token(r#"{"sub":"u","exp":"never"}"#);
        assert_eq!(verify(&v, &token), Err(TokenError::Malformed));
        let token = hs_token(&claims(r#""iat":true"#));
        assert_eq!(verify(&v, &token), Err(TokenError::Malformed));
        let token = hs_token(&claims(r#""tier":7"#));
        assert_eq!(verify(&v, &token), Err(TokenError::Malformed));
    }

    #[test]
    fn fractional_exp_is_rounded_down() {
        let token = hs_token(&format!(r#"{{"sub":"u","exp":{}.9}}"#, NOW));
        assert_eq!(verify(&hs_verifier(), &token), Err(TokenError::Expired));
        let token = hs_token(&format!(r#"{{"sub":"u","exp":{}.5}}"#, NOW + 1));
        assert!(verify(&hs_verifier(), &token).is_ok());
    }

    fn aud_verifier() -> Verifier {
        let rules = TokenRules {
            audience: Some("signalhub".into()),
            issuer: Some("https://auth.example".into()),
            leeway_s: 0,
        };
        Verifier::new(vec![VerifyKey::hs256(SECRET)], rules).unwrap()
    }

    #[test]
    fn matching_audience_string_or_array_and_issuer_are_accepted() {
        let v = aud_verifier();
        let token = hs_token(&claims(r#""aud":"signalhub","iss":"https://auth.example""#));
        assert!(verify(&v, &token).is_ok());
        let token = hs_token(&claims(
            r#""aud":["other","signalhub"],"iss":"https://auth.example""#,
        ));
        assert!(verify(&v, &token).is_ok());
    }

    #[test]
    fn wrong_audience_is_refused() {
        let v = aud_verifier();
        let token = hs_token(&claims(
            r#""aud":"someone-else","iss":"https://auth.example""#,
        ));
        assert_eq!(verify(&v, &token), Err(TokenError::WrongAudience));
        let token = hs_token(&claims(r#""aud":["a","b"],"iss":"https://auth.example""#));
        assert_eq!(verify(&v, &token), Err(TokenError::WrongAudience));
        let token = hs_token(&claims(r#""iss":"https://auth.example""#));
        assert_eq!(verify(&v, &token), Err(TokenError::WrongAudience));
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let v = aud_verifier();
        let token = hs_token(&claims(r#""aud":"signalhub","iss":"https://evil.example""#));
        assert_eq!(verify(&v, &token), Err(TokenError::WrongIssuer));
        let token = hs_token(&claims(r#""aud":"signalhub""#));
        assert_eq!(verify(&v, &token), Err(TokenError::WrongIssuer));
    }

    #[test]
    fn aud_and_iss_are_not_checked_when_not_configured() {
        let token = hs_token(&claims(r#""aud":"anything","iss":"anyone""#));
        assert!(verify(&hs_verifier(), &token).is_ok());
    }

    #[test]
    fn tampered_payload_is_refused() {
        let token = hs_token(&claims(r#""tier":"free""#));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let forged = claims(r#""tier":"whale""#);
        parts[1] = b64(forged.as_bytes());
        assert_eq!(
            verify(&hs_verifier(), &parts.join(".")),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let token = hs_token_with(
            b"another-secret-entirely",
            r#"{"alg":"HS256"}"#,
            &claims(""),
        );
        assert_eq!(
            verify(&hs_verifier(), &token),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn missing_sub_or_exp_is_refused() {
        let v = hs_verifier();
        let token = hs_token(&format!(r#"{{"exp":{}}}"#, NOW + 60));
        assert_eq!(verify(&v, &token), Err(TokenError::MissingClaim("sub")));
        let token = hs_token(&format!(r#"{{"sub":"","exp":{}}}"#, NOW + 60));
        assert_eq!(verify(&v, &token), Err(TokenError::MissingClaim("sub")));
        let token = hs_token(r#"{"sub":"u"}"#);
        assert_eq!(verify(&v, &token), Err(TokenError::MissingClaim("exp")));
        assert_eq!(
            TokenError::MissingClaim("exp").message(),
            "token has no exp claim"
        );
    }

    #[test]
    fn sub_longer_than_128_chars_is_refused() {
        let v = hs_verifier();
        let long = "é".repeat(128);
        let token = hs_token(&format!(r#"{{"sub":"{long}","exp":{}}}"#, NOW + 60));
        assert!(verify(&v, &token).is_ok());
        let long = "x".repeat(129);
        let token = hs_token(&format!(r#"{{"sub":"{long}","exp":{}}}"#, NOW + 60));
        assert_eq!(verify(&v, &token), Err(TokenError::Malformed));
    }

    #[test]
    fn unknown_tier_is_refused() {
        let token = hs_token(&claims(r#""tier":"platinum""#));
        assert_eq!(
            verify(&hs_verifier(), &token),
            Err(TokenError::UnknownTier("platinum".into()))
        );
    }

    #[test]
    fn tier_alias_and_case_are_accepted() {
        let v = hs_verifier();
        let token = hs_token(&claims(r#""tier":"INSTITUTIONAL""#));
        assert_eq!(
            verify(&v, &token).unwrap().tier,
            ladder().parse("whale").unwrap()
        );
        let token = hs_token(&claims(r#""tier":"Premium""#));
        assert_eq!(
            verify(&v, &token).unwrap().tier,
            ladder().parse("premium").unwrap()
        );
    }

    #[test]
    fn auth_wallet_claim_gives_wallet_principal() {
        let v = hs_verifier();
        let token = hs_token(&claims(r#""auth":"wallet""#));
        assert_eq!(verify(&v, &token).unwrap().auth, AuthKind::Wallet);
        let token = hs_token(&claims(r#""auth":"whatever""#));
        assert_eq!(verify(&v, &token).unwrap().auth, AuthKind::Session);
    }

    #[test]
    fn kid_selects_the_key_and_unnamed_tokens_try_each_key_of_their_algorithm() {
        let v = Verifier::new(
            vec![
                VerifyKey::hs256(b"secret-number-one".to_vec()).with_kid("a"),
                VerifyKey::hs256(b"secret-number-two".to_vec()).with_kid("b"),
                VerifyKey::rs256_pem(RS_PUBLIC).with_kid("r"),
            ],
            TokenRules::default(),
        )
        .unwrap();
        let with_b = hs_token_with(
            b"secret-number-two",
            r#"{"alg":"HS256","kid":"b"}"#,
            &claims(""),
        );
        assert!(verify(&v, &with_b).is_ok());
        let wrong_kid = hs_token_with(
            b"secret-number-two",
            r#"{"alg":"HS256","kid":"a"}"#,
            &claims(""),
        );
        assert_eq!(verify(&v, &wrong_kid), Err(TokenError::BadSignature));
        let no_kid = hs_token_with(b"secret-number-two", r#"{"alg":"HS256"}"#, &claims(""));
        assert!(verify(&v, &no_kid).is_ok());
        let unknown_kid = hs_token_with(
            b"secret-number-one",
            r#"{"alg":"HS256","kid":"zz"}"#,
            &claims(""),
        );
        assert!(verify(&v, &unknown_kid).is_ok());
        let kid_of_rsa_key = hs_token_with(
            b"secret-number-one",
            r#"{"alg":"HS256","kid":"r"}"#,
            &claims(""),
        );
        assert_eq!(
            verify(&v, &kid_of_rsa_key),
            Err(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let v = hs_verifier();
        let good = hs_token(&claims(""));
        let (head, rest) = good.split_once('.').unwrap();
        let cases = [
            String::new(),
            "abc".to_string(),
            "a.b".to_string(),
            format!("{good}.extra"),
            format!("{head}=.{rest}"),
            format!("!!!.{rest}"),
            format!("{}.{rest}", b64(b"not json")),
            format!("{}.{rest}", b64(br#"{"typ":"JWT"}"#)),
            format!("{}.{rest}", b64(br#"{"alg":5}"#)),
            format!("{good}="),
            format!("{head}.{}", rest.split_once('.').unwrap().0) + ".",
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ];
        for token in cases {
            let got = verify(&v, &token);
            assert!(
                matches!(got, Err(TokenError::Malformed)),
                "{token:.40}: {got:?}"
            );
        }
        let payload_not_json = hs_token_with(SECRET, r#"{"alg":"HS256"}"#, "[1,2]");
        assert_eq!(verify(&v, &payload_not_json), Err(TokenError::Malformed));
    }

    #[test]
    fn header_with_crit_is_refused() {
        let token = hs_token_with(
            SECRET,
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &claims(""),
        );
        assert_eq!(verify(&hs_verifier(), &token), Err(TokenError::Malformed));
    }

    #[test]
    fn bad_pem_is_reported_naming_the_key() {
        let err = Verifier::new(
            vec![
                VerifyKey::hs256(SECRET),
                VerifyKey::rs256_pem(
                    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                )
                .with_kid("k2"),
            ],
            TokenRules::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            KeyError::BadPem {
                key: "#2 (kid \"k2\")".into(),
                alg: TokenAlg::Rs256
            }
        );
        assert!(err.to_string().contains("#2"), "{err}");
    }

    #[test]
    fn key_of_the_wrong_kind_is_refused_at_load() {
        let err = Verifier::new(vec![VerifyKey::rs256_pem(ES_PUBLIC)], TokenRules::default())
            .unwrap_err();
        assert!(matches!(
            err,
            KeyError::BadPem {
                alg: TokenAlg::Rs256,
                ..
            }
        ));
        let err = Verifier::new(vec![VerifyKey::es256_pem(RS_PUBLIC)], TokenRules::default())
            .unwrap_err();
        assert!(matches!(
            err,
            KeyError::BadPem {
                alg: TokenAlg::Es256,
                ..
            }
        ));
        let err = Verifier::new(
            vec![VerifyKey::rs256_pem(RS_PRIVATE)],
            TokenRules::default(),
        )
        .unwrap_err();
        assert!(matches!(err, KeyError::BadPem { .. }));
    }

    #[test]
    fn rsa_key_under_2048_bits_is_refused() {
        const RSA_1024: &str = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDJAXWfMWp4TE3wtIdlW4B/jAhQ\naM3Xwe9yzy1+AYXrgNpNTsm53kiOHbuSsKPV2rQjAOfPFEnkUR6hBOVCMVkYjVMO\nHfkQx0Wt1WXKX8WTGBEyHaATYseJVeY7sDDJ0KMKR0jjMB34pJwRLMWORi2wEtM1\ncBkh5BN/p1aBn8NcSwIDAQAB\n-----END PUBLIC KEY-----";
        let err =
            Verifier::new(vec![VerifyKey::rs256_pem(RSA_1024)], TokenRules::default()).unwrap_err();
        assert_eq!(
            err,
            KeyError::WeakRsaKey {
                key: "#1".into(),
                bits: 1024
            }
        );
    }

    #[test]
    fn empty_secret_and_duplicate_kid_are_refused() {
        let err =
            Verifier::new(vec![VerifyKey::hs256(Vec::new())], TokenRules::default()).unwrap_err();
        assert_eq!(err, KeyError::EmptySecret { key: "#1".into() });
        let err = Verifier::new(
            vec![
                VerifyKey::hs256(SECRET).with_kid("x"),
                VerifyKey::es256_pem(ES_PUBLIC).with_kid("x"),
            ],
            TokenRules::default(),
        )
        .unwrap_err();
        assert!(matches!(err, KeyError::DuplicateKid { .. }));
    }

    #[test]
    fn verifier_without_keys_refuses_every_token() {
        let v = Verifier::new(Vec::new(), TokenRules::default()).unwrap();
        assert!(!v.has_keys());
        assert_eq!(
            verify(&v, &hs_token(&claims(""))),
            Err(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn minted_token_verifies_with_the_same_secret() {
        let minter = Minter::hs256(SECRET).unwrap();
        let (token, exp) = minter.mint("u_9", "premium", 3600, AuthKind::Session, NOW);
        assert_eq!(exp, NOW + 3600);
        let p = verify(&hs_verifier(), &token).unwrap();
        assert_eq!(p.auth, AuthKind::Session);
        assert_eq!(p.user.as_deref(), Some("u_9"));
        assert_eq!(p.tier, ladder().parse("premium").unwrap());
        assert_eq!(p.expires_at, Some(exp));
    }

    #[test]
    fn minted_wallet_token_carries_auth_wallet() {
        let minter = Minter::hs256(SECRET).unwrap();
        let user = "0x00000000000000000000000000000000000000aa";
        let (token, _) = minter.mint(user, "holder", 86_400, AuthKind::Wallet, NOW);
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["auth"], "wallet");
        assert_eq!(claims["iat"], NOW);
        let p = verify(&hs_verifier(), &token).unwrap();
        assert_eq!(p.auth, AuthKind::Wallet);
        assert_eq!(p.user.as_deref(), Some(user));
    }

    #[test]
    fn a_foreign_signature_says_which_secret_the_server_lacks() {
        let foreign = hs_token_with(
            b"the-secret-signalhub-token-used",
            r#"{"alg":"HS256"}"#,
            &claims(""),
        );
        let no_secret = Verifier::new(Vec::new(), TokenRules::default())
            .unwrap()
            .with_minter(&Minter::random());
        let err = verify(&no_secret, &foreign).unwrap_err();
        assert_eq!(err, TokenError::NoSharedSecret);
        assert!(err.message().starts_with("invalid token signature"));
        assert!(
            err.message().contains("has no SIGNALHUB_JWT_SECRET"),
            "{}",
            err.message()
        );
        let err = verify(&hs_verifier(), &foreign).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
        assert!(
            err.message().contains("SIGNALHUB_JWT_SECRET"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("has no"), "{}", err.message());
    }

    #[test]
    fn random_minter_tokens_verify_only_where_its_key_was_added() {
        let minter = Minter::random();
        assert!(minter.is_ephemeral());
        let (token, _) = minter.mint("0xabc", "free", 60, AuthKind::Wallet, NOW);
        let bare = Verifier::new(Vec::new(), TokenRules::default()).unwrap();
        assert_eq!(verify(&bare, &token), Err(TokenError::AlgorithmNotAllowed));
        let with = bare.with_minter(&minter);
        assert_eq!(verify(&with, &token).unwrap().auth, AuthKind::Wallet);
        let other = Minter::random();
        let (foreign, _) = other.mint("0xabc", "free", 60, AuthKind::Wallet, NOW);
        assert_eq!(verify(&with, &foreign), Err(TokenError::NoSharedSecret));
        // The configured key still works next to the minter's.
        let both = hs_verifier().with_minter(&minter);
        assert!(verify(&both, &token).is_ok());
        assert!(verify(&both, &hs_token(&claims(""))).is_ok());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let secret = "super-secret-value-123";
        let key = VerifyKey::hs256(secret.as_bytes().to_vec()).with_kid("k");
        assert!(!format!("{key:?}").contains(secret));
        let minter = Minter::hs256(secret.as_bytes()).unwrap();
        let shown = format!("{minter:?}");
        assert!(
            !shown.contains(secret) && shown.contains("redacted"),
            "{shown}"
        );
        let v = Verifier::new(vec![key], TokenRules::default())
            .unwrap()
            .with_minter(&minter);
        let shown = format!("{v:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(
            !shown.contains(&format!("{:?}", secret.as_bytes())),
            "{shown}"
        );
    }

    #[test]
    fn client_messages_do_not_echo_token_content() {
        let err = TokenError::UnknownTier("<script>".into());
        assert_eq!(err.message(), "token tier unknown");
        assert!(err.to_string().contains("<script>"));
    }
}
