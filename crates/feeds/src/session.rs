//! The WebSocket side of a feed, the same for every exchange: connect, subscribe through the
//! outbound limiter, read, watch for silence, reconnect with backoff (spec item 60).
//!
//! One task owns the socket and runs one `select!` over shutdown, inbound frames, the next
//! queued outbound frame and the silence deadline; nothing else touches the socket, so the
//! per-connection state (sequences, subscription) needs no lock.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::Backoff;
use crate::connector::{Inbound, WsProtocol};
use crate::feed::{FeedCtx, Shutdown, Timing};
use crate::rate_limit::{OutboundLimiter, MIN_SPACING};
use crate::sequence::{SeqVerdict, SequenceTracker};
use crate::tick::{FeedEvent, Status};

/// Silence of this many `stale_after` ends the connection.
const RECONNECT_AFTER_STALE: u32 = 3;
/// How long a close frame may take to go out before the socket is dropped anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection ended.
enum End {
    /// Shutdown completed, or the sink is gone: the feed stops.
    Stop,
    /// The connection failed or was closed; try again.
    Retry(String),
}

/// Runs the feed until shutdown: connection after connection, backoff in between.
pub(crate) async fn run<P: WsProtocol>(
    mut protocol: P,
    ctx: FeedCtx,
    timing: Timing,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(timing.backoff_unit, timing.backoff_cap);
    let mut first = true;
    loop {
        if !first {
            let delay = backoff.next_delay(&mut rand::thread_rng());
            tokio::select! {
                () = &mut shutdown => return,
                () = sleep(delay) => {}
            }
            ctx.stats.lock().reconnects += 1;
        }
        first = false;
        match connection(&mut protocol, &ctx, &timing, &mut backoff, &mut shutdown).await {
            End::Stop => return,
            End::Retry(reason) => {
                tracing::warn!(feed = %ctx.name, %reason, "feed connection ended; reconnecting");
                if ctx.set_status(Status::Reconnecting).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One connection, from connect to close.
async fn connection<P: WsProtocol>(
    protocol: &mut P,
    ctx: &FeedCtx,
    timing: &Timing,
    backoff: &mut Backoff,
    shutdown: &mut Shutdown,
) -> End {
    let url = protocol.url();
    let connect = timeout(
        timing.connect_timeout,
        tokio_tungstenite::connect_async(url),
    );
    let mut ws = tokio::select! {
        () = &mut *shutdown => return End::Stop,
        result = connect => match result {
            Ok(Ok((ws, _response))) => ws,
            Ok(Err(e)) => return End::Retry(format!("connect failed: {e}")),
            Err(_) => return End::Retry("connect timed out".to_string()),
        },
    };

    let opened = protocol.on_open();
    let mut outbox: VecDeque<String> = opened.frames.into();
    let mut subscribed = opened.subscribed;
    if subscribed {
        backoff.reset();
    }
    let mut limiter = OutboundLimiter::new(MIN_SPACING);
    let mut sequences = SequenceTracker::new(protocol.contiguous());
    let stale_after = ctx.stale_after;
    let mut last_frame = Instant::now();

    loop {
        // While up, the next thing to check is staleness; otherwise only the reconnect.
        let deadline = if ctx.status() == Status::Up {
            last_frame + stale_after
        } else {
            last_frame + stale_after * RECONNECT_AFTER_STALE
        };
        let send_at = (!outbox.is_empty()).then(|| limiter.ready_at());
        tokio::select! {
            biased;
            () = &mut *shutdown => {
                close(&mut ws, CloseCode::Normal, "shutting down").await;
                return End::Stop;
            }
            frame = ws.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => return End::Retry(format!("read failed: {e}")),
                    None => return End::Retry("connection ended".to_string()),
                };
                last_frame = Instant::now();
                let text = match frame {
                    Message::Text(text) => text,
                    // tungstenite answers pings with a pong of the same payload by itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_) => {
                        if subscribed && ctx.set_status(Status::Up).await.is_err() {
                            return End::Stop;
                        }
                        continue;
                    }
                    Message::Close(frame) => {
                        let why = frame
                            .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "no close code".to_string());
                        return End::Retry(format!("closed by the exchange: {why}"));
                    }
                };
                ctx.stats.message_arrived(1);
                // A message after the acknowledgement marks the feed up; the ack alone does not.
                if subscribed && ctx.set_status(Status::Up).await.is_err() {
                    return End::Stop;
                }
                match protocol.on_text(text.as_str()) {
                    Inbound::Subscribed => {
                        subscribed = true;
                        backoff.reset();
                    }
                    Inbound::Tick { tick, order } => {
                        if let Some(order) = order {
                            match sequences.check(&tick.product, order) {
                                SeqVerdict::InOrder => {}
                                SeqVerdict::Gap => ctx.stats.lock().gaps += 1,
                                SeqVerdict::Backwards => {
                                    ctx.stats.lock().dropped += 1;
                                    continue;
                                }
                            }
                        }
                        if ctx.emit(FeedEvent::Tick(tick)).await.is_err() {
                            return End::Stop;
                        }
                    }
                    Inbound::Nothing => {}
                    Inbound::ExchangeError(message) => {
                        tracing::warn!(feed = %ctx.name, %message, "exchange error");
                    }
                    Inbound::Reconnect(reason) => {
                        close(&mut ws, CloseCode::Normal, "reconnecting").await;
                        return End::Retry(reason);
                    }
                }
            }
            () = sleep_until(send_at.unwrap_or_else(Instant::now)), if send_at.is_some() => {
                let Some(frame) = outbox.pop_front() else { continue };
                limiter.sent(Instant::now());
                if let Err(e) = ws.send(Message::text(frame)).await {
                    return End::Retry(format!("send failed: {e}"));
                }
            }
            () = sleep_until(deadline) => {
                let silent = last_frame.elapsed();
                if silent >= stale_after * RECONNECT_AFTER_STALE {
                    close(&mut ws, CloseCode::Away, "silent").await;
                    return End::Retry(format!("silent for {silent:?}"));
                }
                if silent >= stale_after && ctx.status() == Status::Up && ctx.set_status(Status::Stale).await.is_err() {
                    return End::Stop;
                }
            }
        }
    }
}

async fn close<S>(ws: &mut S, code: CloseCode, reason: &'static str)
where
    S: SinkExt<Message> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = timeout(CLOSE_TIMEOUT, ws.send(Message::Close(Some(frame)))).await;
}
