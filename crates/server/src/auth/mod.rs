//! Authentication: session tokens (JWT), Sign-In with Ethereum, nonces and wallet tiers.
//!
//! Everything here is pure logic over explicit inputs (`now` is passed in as Unix seconds),
//! so the HTTP and WebSocket layers decide where credentials come from and how refusals are
//! answered (spec sections 2, 6 and 9, items 9-17).
//!
//! - [`token`]: verifying session JWTs against pinned-algorithm keys; minting HS256 tokens.
//! - [`principal`]: who a verified credential says the caller is.
//! - [`wallet`]: EIP-4361 message parsing, EIP-55 addresses, EIP-191 signer recovery.
//! - [`nonce`]: single-use, address-bound sign-in nonces.
//! - [`balance`]: the tier a wallet's token balance grants (static list or JSON-RPC).

pub mod balance;
pub mod nonce;
pub mod principal;
pub mod token;
pub mod wallet;

pub use balance::{BalanceConfigError, BalanceError, BalanceProvider, JsonRpcTiers, StaticTiers};
pub use nonce::{NonceError, NonceStore};
pub use principal::Principal;
pub use token::{
    KeyError, Minter, TokenAlg, TokenError, TokenRules, Verifier, VerifyKey, MAX_LEEWAY_S,
};
pub use wallet::{
    eip55, format_address, parse_address, recover_personal_sign, verify_sign_in, AddressError,
    SignatureError, SiweMessage, SiweParseError, WalletError,
};
