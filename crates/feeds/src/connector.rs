//! The interface between the generic WebSocket session and one exchange's protocol.
//!
//! A [`WsProtocol`] knows an exchange's URL, subscribe frames and message shapes, and nothing
//! about sockets, timers, backoff or counters: [`crate::session`] owns those, so staleness,
//! reconnects, rate limiting and sequence checks behave the same for every exchange.

use crate::tick::Tick;

/// What the session must do after the socket opened.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    /// Text frames to send, in order, through the outbound limiter.
    pub frames: Vec<String>,
    /// Whether the open connection already is the acknowledgement (Binance streams in the URL).
    pub subscribed: bool,
}

/// One inbound text message, understood.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// The subscription is now complete and acknowledged.
    Subscribed,
    /// A price; `order` is the per-product number that must increase (Coinbase `sequence`,
    /// Binance event time), `None` when the message has none.
    Tick { tick: Tick, order: Option<u64> },
    /// Liveness only: heartbeats, intermediate acks, unknown types.
    Nothing,
    /// The exchange reported an error; logged, the connection stays.
    ExchangeError(String),
    /// The exchange asked us to reconnect (Binance `serverShutdown`).
    Reconnect(String),
}

/// One exchange's wire protocol over WebSocket.
pub(crate) trait WsProtocol: Send + 'static {
    /// The URL to connect to.
    fn url(&self) -> String;
    /// Called once per connection after the socket opened; resets per-connection state.
    fn on_open(&mut self) -> Opened;
    /// Interprets one text message. Unknown types are [`Inbound::Nothing`], never an error.
    fn on_text(&mut self, text: &str) -> Inbound;
    /// Whether `order` numbers are contiguous, so a jump is a gap.
    fn contiguous(&self) -> bool;
}
