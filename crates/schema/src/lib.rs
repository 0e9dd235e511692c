//! The trading schema signalhub's sources publish, kept apart from the pub/sub engine.
//!
//! The hub routes opaque JSON; this crate knows what a trading signal is. It validates and
//! normalizes the bodies publishers send (HTTP today, feeds and bots later) and says which
//! channels a signal is routed to.
//!
//! # Layout
//! - [`signal`]: the signal record, validated, normalized and routed to its channels.
//! - [`decimal`]: exact decimal prices (digits kept as given).
//! - [`typed`]: bodies of the typed publishes (alerts, market data, agent insights,
//!   narratives).

pub mod decimal;
pub mod signal;
pub mod typed;
