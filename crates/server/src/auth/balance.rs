//! The tier a wallet's holdings grant at sign-in: none, a static list, or an ERC-20 balance.
//!
//! [`BalanceProvider::tier_for`] answers `Ok(None)` when the address earns no tier of its
//! own (the caller then uses the lowest tier, or an admin's override). The JSON-RPC provider
//! calls `balanceOf(address)` on a token contract with `eth_call` at `latest` and compares the
//! 256-bit result with two thresholds as integers (never floating point):
//! `>= whale_min` gives `whale`, `>= holder_min` gives `holder`.
//!
//! The RPC URL may carry an API key in its path or query, so neither `Debug` nor any error
//! includes it (errors from the HTTP client are reduced to their kind).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use signalhub_hub::{TierId, TierLadder};

use super::wallet::{format_address, parse_address};

/// The tier a balance of at least `whale_min` grants.
pub const WHALE_TIER: &str = "whale";
/// The tier a balance of at least `holder_min` grants.
pub const HOLDER_TIER: &str = "holder";
/// Default time limit for one JSON-RPC call.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JSON-RPC answer read, in bytes.
const MAX_RPC_RESPONSE_BYTES: usize = 64 * 1024;
/// `balanceOf(address)` selector.
const BALANCE_OF: &str = "70a08231";

/// An unsigned 256-bit integer, big-endian; `Ord` is numeric order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct U256([u8; 32]);

impl U256 {
    pub const ZERO: U256 = U256([0; 32]);

    /// Parses an unsigned decimal integer (digits only, at most 2^256 - 1).
    pub fn from_dec_str(s: &str) -> Option<U256> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for digit in s.bytes().map(|b| b - b'0') {
            // out = out * 10 + digit, from the least significant byte up.
            let mut carry = u16::from(digit);
            for byte in out.iter_mut().rev() {
                let v = u16::from(*byte) * 10 + carry;
                *byte = (v & 0xff) as u8;
                carry = v >> 8;
            }
            if carry != 0 {
                return None;
            }
        }
        Some(U256(out))
    }

    /// Parses `0x`-prefixed hex of 1 to 64 digits (an `eth_call` result of up to 32 bytes).
    pub fn from_hex(s: &str) -> Option<U256> {
        let digits = s.strip_prefix("0x")?;
        if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let padded = format!("{digits:0>64}");
        let mut out = [0u8; 32];
        hex::decode_to_slice(padded, &mut out).ok()?;
        Some(U256(out))
    }

    /// The big-endian bytes.
    pub fn to_be_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Display for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = self.0;
        let mut digits = Vec::new();
        while n.iter().any(|&b| b != 0) {
            // n, remainder = n / 10, n % 10
            let mut rem = 0u16;
            for byte in n.iter_mut() {
                let v = (rem << 8) | u16::from(*byte);
                *byte = (v / 10) as u8;
                rem = v % 10;
            }
            digits.push(b'0' + rem as u8);
        }
        if digits.is_empty() {
            digits.push(b'0');
        }
        digits.reverse();
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U256({self})")
    }
}

/// Why a balance provider could not be configured (reported at start, naming the entry).
#[derive(Debug, thiserror::Error)]
pub enum BalanceConfigError {
    #[error("cannot read tier file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tier file {path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("tier file {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("tier file entry {entry:?}: not a 0x address (40 hex digits, valid EIP-55 case)")]
    BadAddress { entry: String },
    #[error("tier file entry {entry:?}: unknown tier {tier:?}")]
    UnknownTier { entry: String, tier: String },
    #[error("tier file entry {entry:?}: the address is listed twice")]
    DuplicateAddress { entry: String },
    #[error("balance RPC url is not an http(s) URL")]
    BadUrl,
    #[error("{field} is not an unsigned decimal integer below 2^256")]
    BadAmount { field: &'static str },
    #[error("holder_min must be at least 1 and not above whale_min")]
    BadThresholds,
    #[error("the tier ladder has no {0:?} tier, which the balance provider grants")]
    MissingTier(&'static str),
    #[error("cannot build the HTTP client for the balance RPC")]
    Client,
}

/// Why a balance lookup failed at sign-in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    #[error("balance RPC timed out")]
    Timeout,
    #[error("balance RPC unreachable")]
    Unreachable,
    #[error("balance RPC transport error")]
    Transport,
    #[error("balance RPC answered HTTP {0}")]
    Http(u16),
    #[error("balance RPC error: {0}")]
    Rpc(String),
    #[error("balance RPC answer is malformed")]
    BadResponse,
    #[error("tier {0:?} is not on the ladder")]
    UnknownTier(String),
}

/// Where wallet tiers come from.
#[derive(Debug, Default)]
pub enum BalanceProvider {
    /// Wallets earn no tier of their own.
    #[default]
    None,
    /// A fixed address -> tier list.
    Static(StaticTiers),
    /// An ERC-20 balance read over JSON-RPC.
    JsonRpc(JsonRpcTiers),
}

impl BalanceProvider {
    /// The tier `address` earns, or `None` when it earns none.
    pub async fn tier_for(
        &self,
        address: &[u8; 20],
        ladder: &TierLadder,
    ) -> Result<Option<TierId>, BalanceError> {
        match self {
            BalanceProvider::None => Ok(None),
            BalanceProvider::Static(tiers) => tiers.tier_for(address, ladder),
            BalanceProvider::JsonRpc(rpc) => rpc.tier_for(address, ladder).await,
        }
    }
}

/// A fixed address -> tier mapping, loaded from a TOML or JSON file of
/// `"0x<40 hex>" = "tier"` pairs (JSON: one object). Addresses may be lower case, upper case
/// or valid EIP-55; tiers are names or aliases on the ladder, stored canonically.
#[derive(Debug, Clone, Default)]
pub struct StaticTiers {
    tiers: HashMap<[u8; 20], String>,
}

impl StaticTiers {
    /// Loads `path`: JSON when it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path, ladder: &TierLadder) -> Result<Self, BalanceConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| BalanceConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let entries: BTreeMap<String, String> = if is_json {
            serde_json::from_str(&text).map_err(|source| BalanceConfigError::Json {
                path: path.to_path_buf(),
                source,
            })?
        } else {
            toml::from_str(&text).map_err(|source| BalanceConfigError::Toml {
                path: path.to_path_buf(),
                source,
            })?
        };
        Self::from_entries(entries, ladder)
    }

    /// Builds the mapping from `(address, tier)` pairs, validating each.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (String, String)>,
        ladder: &TierLadder,
    ) -> Result<Self, BalanceConfigError> {
        let mut tiers = HashMap::new();
        for (entry, tier_name) in entries {
            let address =
                parse_address(entry.trim()).map_err(|_| BalanceConfigError::BadAddress {
                    entry: entry.clone(),
                })?;
            let tier = ladder
                .parse(&tier_name)
                .ok_or_else(|| BalanceConfigError::UnknownTier {
                    entry: entry.clone(),
                    tier: tier_name.clone(),
                })?;
            if tiers
                .insert(address, ladder.name(tier).to_string())
                .is_some()
            {
                return Err(BalanceConfigError::DuplicateAddress { entry });
            }
        }
        Ok(StaticTiers { tiers })
    }

    /// How many addresses are listed.
    pub fn len(&self) -> usize {
        self.tiers.len()
    }

    /// True when no address is listed.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    fn tier_for(
        &self,
        address: &[u8; 20],
        ladder: &TierLadder,
    ) -> Result<Option<TierId>, BalanceError> {
        match self.tiers.get(address) {
            None => Ok(None),
            Some(name) => ladder
                .parse(name)
                .map(Some)
                .ok_or_else(|| BalanceError::UnknownTier(name.clone())),
        }
    }
}

/// Reads an ERC-20 `balanceOf` over JSON-RPC and maps it onto `holder` / `whale`.
pub struct JsonRpcTiers {
    client: reqwest::Client,
    url: reqwest::Url,
    token: [u8; 20],
    holder_min: U256,
    whale_min: U256,
}

impl fmt::Debug for JsonRpcTiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Scheme, host and port only: the path or query may hold an API key.
        let origin = self.url.origin().ascii_serialization();
        f.debug_struct("JsonRpcTiers")
            .field("url", &format_args!("{origin}/[redacted]"))
            .field("token", &format_address(&self.token))
            .field("holder_min", &self.holder_min)
            .field("whale_min", &self.whale_min)
            .finish()
    }
}

impl JsonRpcTiers {
    /// The node's scheme, host and port only: the path or query may hold an API key.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// The ERC-20 contract, EIP-55.
    pub fn token(&self) -> String {
        format_address(&self.token)
    }

    /// The `holder` and `whale` thresholds, decimal, in the token's smallest unit.
    pub fn thresholds(&self) -> (String, String) {
        (self.holder_min.to_string(), self.whale_min.to_string())
    }

    /// `url` is the node's HTTP JSON-RPC endpoint; `holder_min` and `whale_min` are decimal
    /// integers in the token's smallest unit. `ladder` must have `holder` and `whale` tiers.
    pub fn new(
        url: &str,
        token_contract: [u8; 20],
        holder_min: &str,
        whale_min: &str,
        ladder: &TierLadder,
    ) -> Result<Self, BalanceConfigError> {
        let url = reqwest::Url::parse(url).map_err(|_| BalanceConfigError::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(BalanceConfigError::BadUrl);
        }
        let holder_min =
            U256::from_dec_str(holder_min.trim()).ok_or(BalanceConfigError::BadAmount {
                field: "holder_min",
            })?;
        let whale_min = U256::from_dec_str(whale_min.trim())
            .ok_or(BalanceConfigError::BadAmount { field: "whale_min" })?;
        if holder_min == U256::ZERO || holder_min > whale_min {
            return Err(BalanceConfigError::BadThresholds);
        }
        for tier in [HOLDER_TIER, WHALE_TIER] {
            if ladder.parse(tier).is_none() {
                return Err(BalanceConfigError::MissingTier(tier));
            }
        }
        Ok(JsonRpcTiers {
            client: Self::client(DEFAULT_RPC_TIMEOUT)?,
            url,
            token: token_contract,
            holder_min,
            whale_min,
        })
    }

    /// Replaces the per-call time limit (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, BalanceConfigError> {
        self.client = Self::client(timeout)?;
        Ok(self)
    }

    fn client(timeout: Duration) -> Result<reqwest::Client, BalanceConfigError> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| BalanceConfigError::Client)
    }

    /// The tier the balance earns: `whale`, `holder`, or none.
    pub async fn tier_for(
        &self,
        address: &[u8; 20],
        ladder: &TierLadder,
    ) -> Result<Option<TierId>, BalanceError> {
        let balance = self.balance_of(address).await?;
        let name = if balance >= self.whale_min {
            WHALE_TIER
        } else if balance >= self.holder_min {
            HOLDER_TIER
        } else {
            return Ok(None);
        };
        ladder
            .parse(name)
            .map(Some)
            .ok_or_else(|| BalanceError::UnknownTier(name.to_string()))
    }

    /// `balanceOf(address)` on the token contract at the latest block.
    pub async fn balance_of(&self, address: &[u8; 20]) -> Result<U256, BalanceError> {
        let data = format!("0x{BALANCE_OF}{:0>64}", hex::encode(address));
        let request = serde_json::json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [{"to": format_address(&self.token), "data": data}, "latest"],
        });
        let mut response = self
            .client
            .post(self.url.clone())
            .json(&request)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(BalanceError::Http(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_RPC_RESPONSE_BYTES {
                return Err(BalanceError::BadResponse);
            }
            body.extend_from_slice(&chunk);
        }
        parse_rpc_balance(&body)
    }
}

fn transport_error(err: reqwest::Error) -> BalanceError {
    // The error's text includes the URL (and so any API key in it): keep only its kind.
    if err.is_timeout() {
        BalanceError::Timeout
    } else if err.is_connect() {
        BalanceError::Unreachable
    } else {
        BalanceError::Transport
    }
}

#[derive(serde::Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<RpcErrorObject>,
}

#[derive(serde::Deserialize)]
struct RpcErrorObject {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

fn parse_rpc_balance(body: &[u8]) -> Result<U256, BalanceError> {
    let response: RpcResponse =
        serde_json::from_slice(body).map_err(|_| BalanceError::BadResponse)?;
    if let Some(error) = response.error {
        let message: String = error
            .message
            .unwrap_or_else(|| format!("code {}", error.code.unwrap_or_default()))
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        return Err(BalanceError::Rpc(message));
    }
    match response.result {
        Some(serde_json::Value::String(hex)) => {
            U256::from_hex(&hex).ok_or(BalanceError::BadResponse)
        }
        _ => Err(BalanceError::BadResponse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const E18: &str = "000000000000000000";

    fn ladder() -> TierLadder {
        TierLadder::default()
    }

    fn addr(byte: u8) -> [u8; 20] {
        [byte; 20]
    }

    #[test]
    fn u256_parses_decimal_and_hex_and_orders_numerically() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(U256::from_dec_str(max).unwrap().to_be_bytes(), [0xff; 32]);
        assert_eq!(U256::from_dec_str(max).unwrap().to_string(), max);
        assert_eq!(
            U256::from_dec_str(
                "115792089237316195423570985008687907853269984665640564039457584007913129639936"
            ),
            None
        );
        for bad in ["", "-1", "1.5", "1e18", " 1", "0x10"] {
            assert_eq!(U256::from_dec_str(bad), None, "{bad:?}");
        }
        let thousand = U256::from_dec_str(&format!("1000{E18}")).unwrap();
        assert_eq!(
            U256::from_hex("0x00000000000000000000000000000000000000000000003635c9adc5dea00000"),
            Some(thousand)
        );
        assert_eq!(U256::from_hex("0x3635c9adc5dea00000"), Some(thousand));
        assert_eq!(thousand.to_string(), format!("1000{E18}"));
        assert_eq!(U256::ZERO.to_string(), "0");
        for bad in ["", "0x", "3635", "0xzz", &format!("0x{}", "1".repeat(65))] {
            assert_eq!(U256::from_hex(bad), None, "{bad:?}");
        }
        assert!(U256::from_dec_str("256").unwrap() > U256::from_dec_str("255").unwrap());
        assert!(U256::from_dec_str("65536").unwrap() > U256::from_dec_str("65535").unwrap());
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "signalhub-balance-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[tokio::test]
    async fn static_tiers_load_from_toml_and_json() {
        let l = ladder();
        let toml_path = temp_file(
            "tiers.toml",
            "\"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed\" = \"whale\"\n\
             \"0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359\" = \"PROFESSIONAL\"\n",
        );
        let json_path = temp_file(
            "tiers.json",
            r#"{"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed": "holder"}"#,
        );
        let whale = parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").unwrap();
        let premium = parse_address("0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359").unwrap();

        let p = BalanceProvider::Static(StaticTiers::load(&toml_path, &l).unwrap());
        assert_eq!(p.tier_for(&whale, &l).await, Ok(l.parse("whale")));
        assert_eq!(p.tier_for(&premium, &l).await, Ok(l.parse("premium")));
        assert_eq!(p.tier_for(&addr(1), &l).await, Ok(None));

        let p = BalanceProvider::Static(StaticTiers::load(&json_path, &l).unwrap());
        assert_eq!(p.tier_for(&whale, &l).await, Ok(l.parse("holder")));
        std::fs::remove_dir_all(toml_path.parent().unwrap()).ok();
        std::fs::remove_dir_all(json_path.parent().unwrap()).ok();
        assert_eq!(BalanceProvider::None.tier_for(&whale, &l).await, Ok(None));
    }

    #[test]
    fn static_tiers_errors_name_the_entry() {
        let l = ladder();
        let entry = |a: &str, t: &str| vec![(a.to_string(), t.to_string())];
        let err = StaticTiers::from_entries(entry("0x1234", "whale"), &l).unwrap_err();
        assert!(matches!(&err, BalanceConfigError::BadAddress { entry } if entry == "0x1234"));
        assert!(err.to_string().contains("0x1234"), "{err}");

        let a = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        let err = StaticTiers::from_entries(entry(a, "platinum"), &l).unwrap_err();
        assert!(
            err.to_string().contains(a) && err.to_string().contains("platinum"),
            "{err}"
        );

        let bad_checksum = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        let err = StaticTiers::from_entries(entry(bad_checksum, "whale"), &l).unwrap_err();
        assert!(matches!(err, BalanceConfigError::BadAddress { .. }));

        let twice = vec![
            (a.to_string(), "whale".to_string()),
            (
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".to_string(),
                "free".to_string(),
            ),
        ];
        let err = StaticTiers::from_entries(twice, &l).unwrap_err();
        assert!(matches!(err, BalanceConfigError::DuplicateAddress { .. }));

        let path = temp_file("broken.toml", "\"0xabc\" = \n");
        let err = StaticTiers::load(&path, &l).unwrap_err();
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
        assert!(matches!(err, BalanceConfigError::Toml { .. }), "{err}");
        let err = StaticTiers::load(Path::new("/nonexistent/tiers.toml"), &l).unwrap_err();
        assert!(matches!(err, BalanceConfigError::Read { .. }));
    }

    fn rpc(url: &str) -> JsonRpcTiers {
        JsonRpcTiers::new(
            url,
            addr(0x70),
            &format!("1000{E18}"),
            &format!("100000{E18}"),
            &ladder(),
        )
        .unwrap()
    }

    #[test]
    fn json_rpc_config_is_validated() {
        let l = ladder();
        let new = |url: &str, h: &str, w: &str| JsonRpcTiers::new(url, addr(1), h, w, &l);
        assert!(matches!(
            new("ftp://x", "1", "2"),
            Err(BalanceConfigError::BadUrl)
        ));
        assert!(matches!(
            new("not a url", "1", "2"),
            Err(BalanceConfigError::BadUrl)
        ));
        assert!(matches!(
            new("http://127.0.0.1:1", "1.5", "2"),
            Err(BalanceConfigError::BadAmount {
                field: "holder_min"
            })
        ));
        assert!(matches!(
            new("http://127.0.0.1:1", "10", "2"),
            Err(BalanceConfigError::BadThresholds)
        ));
        assert!(matches!(
            new("http://127.0.0.1:1", "0", "2"),
            Err(BalanceConfigError::BadThresholds)
        ));
        let small = TierLadder::new(&["free", "premium"], &[]).unwrap();
        assert!(matches!(
            JsonRpcTiers::new("http://127.0.0.1:1", addr(1), "1", "2", &small),
            Err(BalanceConfigError::MissingTier("holder"))
        ));
    }

    #[test]
    fn json_rpc_debug_hides_the_url_path() {
        let p = rpc("https://mainnet.example/v3/SECRETKEY123?apikey=SECRETKEY456");
        let shown = format!("{p:?}");
        assert!(!shown.contains("SECRETKEY"), "{shown}");
        assert!(shown.contains("https://mainnet.example"), "{shown}");
    }

    /// Serves one HTTP request with `status` and `body`; yields the request body it got.
    async fn one_shot_server(
        status: &'static str,
        body: String,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/rpc", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let body_start = loop {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed early");
                request.extend_from_slice(&buf[..n]);
                if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while request.len() < body_start + length {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed early");
                request.extend_from_slice(&buf[..n]);
            }
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.ok();
            String::from_utf8(request[body_start..].to_vec()).unwrap()
        });
        (url, task)
    }

    fn result_body(hex: &str) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":1,"result":"{hex}"}}"#)
    }

    fn word(dec: &str) -> String {
        format!(
            "0x{}",
            hex::encode(U256::from_dec_str(dec).unwrap().to_be_bytes())
        )
    }

    #[tokio::test]
    async fn json_rpc_sends_balance_of_eth_call_at_latest() {
        let (url, server) = one_shot_server("200 OK", result_body(&word("0"))).await;
        let holder = parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").unwrap();
        assert_eq!(rpc(&url).tier_for(&holder, &ladder()).await, Ok(None));
        let sent: serde_json::Value = serde_json::from_str(&server.await.unwrap()).unwrap();
        assert_eq!(sent["jsonrpc"], "2.0");
        assert_eq!(sent["method"], "eth_call");
        assert_eq!(sent["params"][1], "latest");
        assert_eq!(sent["params"][0]["to"], format_address(&addr(0x70)));
        assert_eq!(
            sent["params"][0]["data"],
            "0x70a08231\
             0000000000000000000000005aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
        );
    }

    #[tokio::test]
    async fn json_rpc_balance_maps_onto_whale_and_holder_thresholds() {
        let l = ladder();
        let cases = [
            (format!("100000{E18}"), l.parse("whale")),
            (format!("999999999{E18}"), l.parse("whale")),
            (format!("99999{E18}"), l.parse("holder")),
            (format!("1000{E18}"), l.parse("holder")),
            (format!("999{E18}"), None),
            ("0".to_string(), None),
        ];
        for (balance, want) in cases {
            let (url, _server) = one_shot_server("200 OK", result_body(&word(&balance))).await;
            assert_eq!(
                rpc(&url).tier_for(&addr(1), &l).await,
                Ok(want),
                "{balance}"
            );
        }
        // A short (unpadded) result is still read as a number.
        let (url, _server) = one_shot_server("200 OK", result_body("0x3635c9adc5dea00000")).await;
        assert_eq!(
            rpc(&url).tier_for(&addr(1), &l).await,
            Ok(l.parse("holder"))
        );
    }

    #[tokio::test]
    async fn json_rpc_error_object_becomes_rpc_error() {
        let body =
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"execution reverted"}}"#;
        let (url, _server) = one_shot_server("200 OK", body.to_string()).await;
        assert_eq!(
            rpc(&url).tier_for(&addr(1), &ladder()).await,
            Err(BalanceError::Rpc("execution reverted".into()))
        );
    }

    #[tokio::test]
    async fn json_rpc_malformed_answers_are_refused() {
        for body in [
            result_body("0x"),
            result_body("0xnothex"),
            result_body(&format!("0x{}", "1".repeat(66))),
            r#"{"jsonrpc":"2.0","id":1,"result":12}"#.to_string(),
            r#"{"jsonrpc":"2.0","id":1}"#.to_string(),
            "not json".to_string(),
        ] {
            let (url, _server) = one_shot_server("200 OK", body.clone()).await;
            assert_eq!(
                rpc(&url).tier_for(&addr(1), &ladder()).await,
                Err(BalanceError::BadResponse),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn json_rpc_http_error_status_is_reported() {
        let (url, _server) = one_shot_server("503 Service Unavailable", "{}".into()).await;
        assert_eq!(
            rpc(&url).tier_for(&addr(1), &ladder()).await,
            Err(BalanceError::Http(503))
        );
    }

    #[tokio::test]
    async fn json_rpc_times_out_and_reports_unreachable_nodes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let silent = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let p = rpc(&url).with_timeout(Duration::from_millis(300)).unwrap();
        assert_eq!(
            p.tier_for(&addr(1), &ladder()).await,
            Err(BalanceError::Timeout)
        );
        silent.abort();

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(
            rpc(&url).tier_for(&addr(1), &ladder()).await,
            Err(BalanceError::Unreachable)
        );
    }

    /// Against a real dev chain started by `scripts/eth/devnode.mjs`, whose JSON line is in
    /// `SIGNALHUB_TEST_ETH`. Skipped without it unless `SIGNALHUB_REQUIRE_EXTERNAL=1`.
    #[tokio::test]
    async fn json_rpc_tiers_against_dev_chain() {
        let Ok(line) = std::env::var("SIGNALHUB_TEST_ETH") else {
            if std::env::var("SIGNALHUB_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                panic!("SIGNALHUB_TEST_ETH not set and SIGNALHUB_REQUIRE_EXTERNAL=1");
            }
            println!("skipped: SIGNALHUB_TEST_ETH not set");
            return;
        };
        let env: serde_json::Value =
            serde_json::from_str(&line).expect("SIGNALHUB_TEST_ETH is JSON");
        let field = |k: &str| -> String {
            env[k]
                .as_str()
                .unwrap_or_else(|| panic!("SIGNALHUB_TEST_ETH has no {k}"))
                .to_string()
        };
        let account = |k: &str| parse_address(&field(k)).expect("an address");
        let l = ladder();
        // devnode.mjs gives the whale 100,000 and the holder 1,000 tokens (18 decimals).
        let p = BalanceProvider::JsonRpc(
            JsonRpcTiers::new(
                &field("rpc_url"),
                account("token"),
                &format!("500{E18}"),
                &format!("50000{E18}"),
                &l,
            )
            .unwrap(),
        );
        assert_eq!(
            p.tier_for(&account("whale"), &l).await,
            Ok(l.parse("whale"))
        );
        assert_eq!(
            p.tier_for(&account("holder"), &l).await,
            Ok(l.parse("holder"))
        );
        assert_eq!(p.tier_for(&account("nobody"), &l).await, Ok(None));

        let BalanceProvider::JsonRpc(rpc) = &p else {
            unreachable!()
        };
        assert_eq!(
            rpc.balance_of(&account("holder")).await,
            Ok(U256::from_dec_str(&format!("1000{E18}")).unwrap())
        );
        // An account with no code answers an empty result: not a balance.
        let not_a_token =
            JsonRpcTiers::new(&field("rpc_url"), account("nobody"), "1", "2", &l).unwrap();
        assert_eq!(
            not_a_token.tier_for(&account("whale"), &l).await,
            Err(BalanceError::BadResponse)
        );
    }
}
