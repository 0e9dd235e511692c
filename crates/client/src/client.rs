//! The public handle: [`Client`] (cheap to clone), its builder, and the [`Events`] stream each
//! subscriber reads.
//!
//! A client owns one background task (`connection`), started by `build` and connecting on
//! the first `subscribe`. Handles talk to it over a command channel; it answers on each
//! subscriber's bounded event channel, so a subscriber that stops reading slows the task
//! down instead of growing memory (the server then closes the connection with 4009 and the
//! client recovers when the subscriber reads again).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backoff::Backoff;
use crate::connection::{Command, Worker};
use crate::error::{BoxError, Error};
use crate::event::Event;
use crate::http::HttpApi;
use crate::token::TokenProvider;

/// Events buffered per subscriber before the connection task waits for it.
const EVENTS_BUFFER: usize = 1024;

/// A signalhub client: one WebSocket connection, kept open and recovered until
/// [`Client::close`], or until every handle and every [`Events`] stream is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    /// Set by `close`, so the task stops waiting for subscribers that do not read.
    closing: Arc<watch::Sender<bool>>,
}

/// Configures a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    provider: Option<TokenProvider>,
    backoff: Backoff,
}

impl Client {
    /// A builder for the server at `url` (`http://127.0.0.1:8080`; the WebSocket is `/ws`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token: None,
            provider: None,
            backoff: Backoff::default(),
        }
    }

    /// Subscribes to `channels` (`signals:all` is `signals`) and returns their events, plus
    /// every connection state change. Channels already held by this client continue from
    /// where they are. The first call opens the connection.
    pub fn subscribe<I, S>(&self, channels: I) -> Result<Events, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let channels = channels
            .into_iter()
            .map(|c| canonical_channel(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel(EVENTS_BUFFER);
        self.commands
            .send(Command::Subscribe {
                channels,
                events: tx,
            })
            .map_err(|_| Error::Closed)?;
        Ok(Events { rx })
    }

    /// Closes the connection (code 1000) and ends every [`Events`] stream after a final
    /// [`crate::ConnectionState::Closed`] (not delivered to a stream whose buffer is full:
    /// closing never waits for a subscriber). Returns once the connection task has finished.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        self.closing.send_replace(true);
        if self.commands.send(Command::Close { done }).is_ok() {
            let _ = finished.await;
        }
    }
}

impl ClientBuilder {
    /// A session token, sent as `token=` at connect.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// An async function returning a fresh token. It is called at connect when there is no
    /// token or it expires within 30 s, before the current token expires (the new one is
    /// sent in an `auth` frame), and when the server closes with 4001 (token expired).
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.provider = Some(TokenProvider::new(provider));
        self
    }

    /// Reconnect delays; default 1 s initial, 30 s at most, full jitter.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts the client's task; it connects on the first [`Client::subscribe`]. Must be
    /// called within a Tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        let http = HttpApi::new(&self.url)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (closing, closing_rx) = watch::channel(false);
        let worker = Worker::new(
            http,
            self.token,
            self.provider,
            self.backoff,
            rx,
            closing_rx,
        );
        runtime.spawn(worker.run());
        Ok(Client {
            commands,
            closing: Arc::new(closing),
        })
    }
}

/// The events of one [`Client::subscribe`] call, a [`Stream`]. It ends after the client is
/// closed (for good: by [`Client::close`], or by the server's refusal to have it back).
/// Dropping it unsubscribes the channels no other stream of the client wants.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Checks a channel name against the grammar and resolves the `signals:all` alias.
pub(crate) fn canonical_channel(name: &str) -> Result<String, Error> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(b));
    match name {
        _ if !valid => Err(Error::BadChannel(name.to_string())),
        "signals:all" => Ok("signals".to_string()),
        _ => Ok(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_grammar_and_the_alias_resolves() {
        assert_eq!(canonical_channel("signals:all").unwrap(), "signals");
        for ok in ["a", "price:BTC-USD", "trades:0xab@x.y_z", &"a".repeat(128)] {
            assert_eq!(canonical_channel(ok).unwrap(), ok);
        }
        for bad in ["", ":a", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(
                matches!(canonical_channel(bad), Err(Error::BadChannel(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn building_outside_a_runtime_is_an_error() {
        assert!(matches!(
            Client::builder("http://127.0.0.1:1").build(),
            Err(Error::NoRuntime)
        ));
        assert!(matches!(
            Client::builder("nope").build(),
            Err(Error::InvalidUrl { .. })
        ));
    }
}
