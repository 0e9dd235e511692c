//! The `signalhub tail` and `signalhub publish` commands as library functions, so the binary
//! stays an argument parser and the commands can be tested without a process.

use std::future::Future;
use std::io::{ErrorKind, Write};

use futures_util::StreamExt;
use serde_json::value::RawValue;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::Error;
use crate::event::{ConnectionState, Event};
use crate::http::{HttpApi, PublishRequest};

/// The server the commands talk to unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What `signalhub tail` follows.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub url: String,
    pub channels: Vec<String>,
    pub token: Option<String>,
    pub backoff: Backoff,
}

/// Prints every publication and `locked` stub of the channels to `out`, one JSON line each
/// as the server sent it, and state changes, resyncs and errors to `log`, reconnecting and
/// recovering, until `shutdown` completes (`Ok`), `out` is closed (`Ok`, like `head`), or the
/// server ends the connection for good ([`Error::Ended`]).
pub async fn tail(
    options: TailOptions,
    out: &mut impl Write,
    log: &mut impl Write,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut builder = Client::builder(&options.url).backoff(options.backoff);
    if let Some(token) = options.token {
        builder = builder.token(token);
    }
    let client = builder.build()?;
    let mut events = client.subscribe(&options.channels)?;
    tokio::pin!(shutdown);
    let mut ended = None;
    loop {
        let event = tokio::select! {
            () = &mut shutdown => {
                client.close().await;
                return Ok(());
            }
            event = events.next() => event,
        };
        let Some(event) = event else {
            return match ended {
                Some(ConnectionState::Closed { code, reason }) => {
                    Err(Error::Ended { code, reason })
                }
                _ => Err(Error::Closed),
            };
        };
        let written = match &event {
            Event::Publication(env) | Event::Locked(env) => {
                writeln!(out, "{}", env.to_json()).and_then(|()| out.flush())
            }
            other => {
                if let Event::State(state @ ConnectionState::Closed { .. }) = other {
                    ended = Some(state.clone());
                }
                // The log is best effort: a closed stderr does not stop the tail.
                let _ = writeln!(log, "signalhub: {}", describe(other));
                Ok(())
            }
        };
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                client.close().await;
                return Ok(());
            }
            Err(e) => {
                client.close().await;
                return Err(Error::Output(e));
            }
        }
    }
}

/// A one-line description of a non-publication event.
fn describe(event: &Event) -> String {
    match event {
        Event::State(state) => state.to_string(),
        Event::Subscribed {
            channel,
            epoch,
            seq,
            recovered,
        } => format!(
            "subscribed to {channel} at seq {seq} of epoch {epoch}{}",
            if *recovered {
                ", missed publications recovered"
            } else {
                ""
            }
        ),
        Event::Resync { channel, epoch } => {
            format!("{channel}: fetching what was missed from the history of epoch {epoch}")
        }
        Event::Unsubscribed { channel, reason } => {
            format!("unsubscribed from {channel} by the server: {reason}")
        }
        Event::Error {
            code,
            message,
            channel,
        } => match channel {
            Some(channel) => format!("error {code} on {channel}: {message}"),
            None => format!("error {code}: {message}"),
        },
        Event::Publication(env) | Event::Locked(env) => env.to_json(),
    }
}

/// What `signalhub publish` sends.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub url: String,
    pub channel: String,
    /// The publication's type.
    pub kind: String,
    /// The `data`, JSON text (kept as written).
    pub data: String,
    pub api_key: Option<String>,
    pub tier: Option<String>,
}

/// `POST /api/v1/publish`; returns the server's answer (`{id, channel, epoch, seq}`).
pub async fn publish(options: &PublishOptions) -> Result<String, Error> {
    let data: Box<RawValue> =
        serde_json::from_str(&options.data).map_err(|source| Error::NotJson {
            what: "the data",
            source,
        })?;
    let api = HttpApi::new(&options.url)?;
    let request = PublishRequest {
        channel: &options.channel,
        kind: &options.kind,
        data: &data,
        tier: options.tier.as_deref(),
        idempotency_key: None,
    };
    api.publish(options.api_key.as_deref(), &request).await
}
