//! The connection task: one per [`crate::Client`], owning the WebSocket and every channel's
//! position. One `select!` over the socket, the handles' commands, the heartbeat and the
//! token refresh; the reconnect decision is made in one place ([`Worker::closed_by_server`]
//! and the loop in [`Worker::run`]).
//!
//! Close codes, as in the TypeScript client: 1008 stops for good; 4001 asks the token
//! provider and reconnects at once with a new token (stops without one); 1001 reconnects at
//! once; anything else, an abnormal end included, reconnects after a backoff delay.
//!
//! Resyncs (history fetches) run inline, before the next frame is read, so publications that
//! arrive meanwhile wait in the socket and are merged after the fetched ones, in order.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::backoff::Backoff;
use crate::envelope::{self, Envelope, ServerFrame};
use crate::error::report;
use crate::event::{ConnectionState, Event};
use crate::http::HttpApi;
use crate::recovery::{Recovery, Verdict};
use crate::token::{self, TokenProvider};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opening the socket (TCP, TLS, HTTP upgrade) may take this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The server's `welcome` must come this soon after the upgrade.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// The server's heartbeat when its welcome does not say.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);
/// How long a close handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        channels: Vec<String>,
        events: mpsc::Sender<Event>,
    },
    /// `done` is dropped when the task has finished.
    Close { done: oneshot::Sender<()> },
}

/// One [`crate::Events`] stream and the channels it asked for.
#[derive(Debug)]
struct Listener {
    channels: HashSet<String>,
    tx: mpsc::Sender<Event>,
}

/// How a connection attempt or a session ended.
#[derive(Debug)]
enum End {
    /// Reconnect, at once or after a backoff delay.
    Reconnect {
        code: Option<u16>,
        reason: String,
        now: bool,
    },
    /// Close 4001: the token expired.
    TokenExpired,
    /// Stop for good, reporting `error` (code, message) first.
    Stop {
        code: Option<u16>,
        reason: String,
        error: Option<(String, String)>,
    },
}

impl End {
    fn reconnect(reason: impl Into<String>) -> End {
        End::Reconnect {
            code: None,
            reason: reason.into(),
            now: false,
        }
    }

    fn closed_by_client() -> End {
        End::Stop {
            code: Some(1000),
            reason: "closed by the client".to_string(),
            error: None,
        }
    }
}

/// Per-connection timers and flags.
struct Session {
    welcomed: bool,
    started: Instant,
    last_frame: Instant,
    /// An application `ping` went out after a quiet heartbeat interval.
    pinged: bool,
    heartbeat: Duration,
    refresh_at: Option<Instant>,
}

/// The task's state; see the module documentation.
pub(crate) struct Worker {
    http: HttpApi,
    token: Option<String>,
    provider: Option<TokenProvider>,
    backoff: Backoff,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Becomes true when [`crate::Client::close`] is called.
    closing: watch::Receiver<bool>,
    /// False once every [`crate::Client`] handle is dropped.
    commands_open: bool,
    listeners: Vec<Listener>,
    /// A listener went away since the last check.
    pruned: bool,
    recovery: Recovery,
    /// Failed attempts since the last welcome: the backoff exponent.
    attempt: u32,
    next_id: u64,
    /// `close()` callers, released when the task ends.
    close_waiters: Vec<oneshot::Sender<()>>,
}

impl Worker {
    pub(crate) fn new(
        http: HttpApi,
        token: Option<String>,
        provider: Option<TokenProvider>,
        backoff: Backoff,
        commands: mpsc::UnboundedReceiver<Command>,
        closing: watch::Receiver<bool>,
    ) -> Worker {
        Worker {
            http,
            token,
            provider,
            backoff,
            commands,
            closing,
            commands_open: true,
            listeners: Vec::new(),
            pruned: false,
            recovery: Recovery::default(),
            attempt: 0,
            next_id: 1,
            close_waiters: Vec::new(),
        }
    }

    /// Waits for the first subscription, then connects, serves and reconnects until stopped.
    pub(crate) async fn run(mut self) {
        let end = match self.next_command().await {
            Some(Command::Subscribe { channels, events }) => {
                self.add_listener(channels, events);
                self.serve().await
            }
            Some(Command::Close { done }) => {
                self.close_waiters.push(done);
                End::closed_by_client()
            }
            None => return,
        };
        if let End::Stop {
            code,
            reason,
            error,
        } = end
        {
            if let Some((code, message)) = error {
                self.emit(
                    Event::Error {
                        code,
                        message,
                        channel: None,
                    },
                    None,
                )
                .await;
            }
            self.emit(Event::State(ConnectionState::Closed { code, reason }), None)
                .await;
        }
        tracing::debug!("signalhub client stopped");
    }

    /// Connects and reconnects; returns the [`End::Stop`] that ended it.
    async fn serve(&mut self) -> End {
        loop {
            let end = match self.connect().await {
                Ok(ws) => self.session(ws).await,
                Err(end) => end,
            };
            let (code, reason, delay) = match end {
                End::Stop { .. } => return end,
                End::TokenExpired => match self.renew_expired_token().await {
                    Ok(()) => (
                        Some(4001),
                        "token expired; reconnecting with a new token".to_string(),
                        Duration::ZERO,
                    ),
                    Err(stop) => return stop,
                },
                End::Reconnect {
                    code,
                    reason,
                    now: true,
                } => (code, reason, Duration::ZERO),
                End::Reconnect { code, reason, .. } => {
                    let delay = self.backoff.delay(self.attempt);
                    self.attempt = self.attempt.saturating_add(1);
                    (code, reason, delay)
                }
            };
            tracing::debug!(?code, %reason, ?delay, "signalhub connection ended; reconnecting");
            self.emit(
                Event::State(ConnectionState::Reconnecting {
                    code,
                    reason,
                    delay,
                }),
                None,
            )
            .await;
            if let Some(stop) = self.pause(delay).await {
                return stop;
            }
        }
    }

    /// Sleeps `delay` while serving commands; `Some` when told to stop meanwhile.
    async fn pause(&mut self, delay: Duration) -> Option<End> {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = sleep_until(until) => return None,
                command = self.next_command() => {
                    if let Some(stop) = self.offline_command(command) {
                        return Some(stop);
                    }
                }
            }
        }
    }

    /// A command while no session is open; `Some` to stop.
    fn offline_command(&mut self, command: Option<Command>) -> Option<End> {
        match command {
            Some(Command::Subscribe { channels, events }) => {
                self.add_listener(channels, events);
                None
            }
            Some(Command::Close { done }) => {
                self.close_waiters.push(done);
                Some(End::closed_by_client())
            }
            None => Some(End::closed_by_client()),
        }
    }

    /// The next command; `None` once no handle and no stream is left.
    async fn next_command(&mut self) -> Option<Command> {
        if self.commands_open {
            match self.commands.recv().await {
                Some(command) => return Some(command),
                None => self.commands_open = false,
            }
        }
        // No handle is left: keep going while someone reads events.
        let streams: Vec<_> = self.listeners.iter().map(|l| l.tx.clone()).collect();
        futures_util::future::join_all(streams.iter().map(|tx| tx.closed())).await;
        None
    }

    /// Records a subscriber; returns the channels new to the client.
    fn add_listener(&mut self, channels: Vec<String>, tx: mpsc::Sender<Event>) -> Vec<String> {
        let new: Vec<String> = channels
            .iter()
            .filter(|c| self.recovery.add(c))
            .cloned()
            .collect();
        self.listeners.push(Listener {
            channels: channels.into_iter().collect(),
            tx,
        });
        new
    }

    /// Opens the WebSocket (asking the provider for a token first when needed).
    async fn connect(&mut self) -> Result<Ws, End> {
        self.fresh_token().await;
        self.emit(Event::State(ConnectionState::Connecting), None)
            .await;
        let url = self.http.ws_url(self.token.as_deref());
        let handshake = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_tungstenite::connect_async(url.to_string()),
        );
        tokio::pin!(handshake);
        loop {
            tokio::select! {
                result = &mut handshake => return match result {
                    Ok(Ok((ws, _))) => Ok(ws),
                    Ok(Err(e)) => Err(self.refused(e)),
                    Err(_) => Err(End::reconnect("the WebSocket handshake timed out")),
                },
                command = self.next_command() => {
                    if let Some(stop) = self.offline_command(command) {
                        return Err(stop);
                    }
                }
            }
        }
    }

    /// A failed handshake: 401 needs a new token, 403 is final, the rest is retried.
    fn refused(&mut self, error: WsError) -> End {
        let WsError::Http(response) = error else {
            return End::reconnect(format!("cannot connect: {error}"));
        };
        let status = response.status().as_u16();
        let message = response
            .body()
            .as_deref()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            401 if self.provider.is_some() => {
                // Never the same token again: the next attempt asks the provider.
                self.token = None;
                End::reconnect(format!("the server refused the token: {message}"))
            }
            401 | 403 => End::Stop {
                code: None,
                reason: format!("the server refused the connection (HTTP {status})"),
                error: Some((
                    if status == 401 {
                        "unauthorized"
                    } else {
                        "forbidden"
                    }
                    .to_string(),
                    message,
                )),
            },
            _ => End::reconnect(format!("the server answered HTTP {status}: {message}")),
        }
    }

    /// One open WebSocket, until it ends.
    async fn session(&mut self, mut ws: Ws) -> End {
        let now = Instant::now();
        let mut session = Session {
            welcomed: false,
            started: now,
            last_frame: now,
            pinged: false,
            heartbeat: DEFAULT_HEARTBEAT,
            refresh_at: None,
        };
        loop {
            let quiet_until = if !session.welcomed {
                session.started + WELCOME_TIMEOUT
            } else if session.pinged {
                session.last_frame + 2 * session.heartbeat
            } else {
                session.last_frame + session.heartbeat
            };
            let refresh_at = session.refresh_at;
            let step = tokio::select! {
                message = ws.next() => {
                    let step = self.on_message(&mut ws, &mut session, message).await;
                    // Counted from the end of the work a frame caused (waiting for a slow
                    // subscriber, a resync), so that time is not taken for silence.
                    session.last_frame = Instant::now();
                    session.pinged = false;
                    step
                }
                command = self.next_command() => match command {
                    Some(Command::Subscribe { channels, events }) => {
                        let new = self.add_listener(channels, events);
                        if session.welcomed {
                            self.send_subscribe(&mut ws, &new).await
                        } else {
                            Ok(()) // the welcome subscribes to everything
                        }
                    }
                    Some(Command::Close { done }) => {
                        self.close_waiters.push(done);
                        close(&mut ws).await;
                        return End::closed_by_client();
                    }
                    None => {
                        close(&mut ws).await;
                        return End::closed_by_client();
                    }
                },
                () = sleep_until(quiet_until) => {
                    if !session.welcomed {
                        Err(End::reconnect("no welcome from the server"))
                    } else if session.pinged {
                        Err(End::reconnect("no traffic from the server"))
                    } else {
                        session.pinged = true;
                        let id = self.frame_id();
                        send(&mut ws, envelope::ping_frame(id)).await
                    }
                }
                () = sleep_until(refresh_at.unwrap_or(quiet_until)), if refresh_at.is_some() => {
                    let step = self.refresh_token(&mut ws, &mut session).await;
                    session.last_frame = session.last_frame.max(Instant::now());
                    step
                }
            };
            if let Err(end) = step {
                return end;
            }
            if self.pruned {
                if let Err(end) = self.prune(&mut ws, session.welcomed).await {
                    return end;
                }
            }
        }
    }

    /// One message from the socket.
    async fn on_message(
        &mut self,
        ws: &mut Ws,
        session: &mut Session,
        message: Option<Result<Message, WsError>>,
    ) -> Result<(), End> {
        match message {
            Some(Ok(Message::Text(text))) => match envelope::parse(&text) {
                Ok(frame) => self.on_frame(ws, session, frame).await,
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring a frame that does not parse");
                    Ok(())
                }
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                    None => (None, String::new()),
                };
                // Reading on sends tungstenite's answer to the close.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    while ws.next().await.is_some() {}
                })
                .await;
                Err(self.closed_by_server(code, reason))
            }
            // Pings are answered by tungstenite; nothing else is expected.
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(End::reconnect(format!("connection lost: {e}"))),
            None => Err(End::reconnect("connection lost")),
        }
    }

    /// The reconnect decision for a close frame from the server.
    fn closed_by_server(&self, code: Option<u16>, reason: String) -> End {
        match code {
            Some(1008) => End::Stop {
                code,
                error: Some((
                    "disconnected".to_string(),
                    if reason.is_empty() {
                        "disconnected by policy".to_string()
                    } else {
                        reason.clone()
                    },
                )),
                reason,
            },
            Some(4001) => End::TokenExpired,
            Some(1001) => End::Reconnect {
                code,
                reason,
                now: true,
            },
            _ => End::Reconnect {
                code,
                reason,
                now: false,
            },
        }
    }

    async fn on_frame(
        &mut self,
        ws: &mut Ws,
        session: &mut Session,
        frame: ServerFrame,
    ) -> Result<(), End> {
        match frame {
            ServerFrame::Welcome(welcome) => {
                session.welcomed = true;
                if let Some(ms) = welcome.heartbeat_interval_ms {
                    session.heartbeat = Duration::from_millis(ms.max(1000));
                }
                session.refresh_at = self.refresh_deadline();
                self.attempt = 0;
                self.emit(
                    Event::State(ConnectionState::Connected {
                        connection_id: welcome.connection_id,
                    }),
                    None,
                )
                .await;
                let names = self.recovery.names();
                self.send_subscribe(ws, &names).await?;
            }
            ServerFrame::Subscribed(channels) => {
                for s in channels {
                    if !self.recovery.contains(&s.channel) {
                        continue; // dropped while the subscribe was on its way
                    }
                    let resync = self.recovery.subscribed(&s);
                    let channel = s.channel.clone();
                    self.emit(
                        Event::Subscribed {
                            channel: s.channel,
                            epoch: s.epoch,
                            seq: s.seq,
                            recovered: s.recovered,
                        },
                        Some(&channel),
                    )
                    .await;
                    if let Some(epoch) = resync {
                        self.resync(&channel, &epoch, None).await;
                    }
                }
            }
            ServerFrame::Unsubscribed {
                id: None,
                channels,
                reason,
            } => {
                for channel in channels {
                    self.recovery.set_lost(&channel);
                    let event = Event::Unsubscribed {
                        channel: channel.clone(),
                        reason: reason.clone().unwrap_or_default(),
                    };
                    self.emit(event, Some(&channel)).await;
                }
            }
            ServerFrame::Unsubscribed { id: Some(_), .. } | ServerFrame::Other => {}
            ServerFrame::Authenticated => {
                // A new identity may hold what the old one was refused or lost.
                let lost = self.recovery.lost();
                self.send_subscribe(ws, &lost).await?;
            }
            ServerFrame::Error(e) => {
                if let Some(channel) = &e.channel {
                    self.recovery.set_lost(channel);
                }
                let channel = e.channel.clone();
                let event = Event::Error {
                    code: e.code.unwrap_or_else(|| "error".to_string()),
                    message: e.message.unwrap_or_default(),
                    channel: e.channel,
                };
                self.emit(event, channel.as_deref()).await;
            }
            ServerFrame::Publication(env) => match self.recovery.publication(&env) {
                Verdict::Deliver => self.deliver(env).await,
                Verdict::Drop => {}
                Verdict::Resync { epoch } => {
                    let channel = env.channel.clone();
                    self.resync(&channel, &epoch, Some(env)).await;
                }
            },
        }
        Ok(())
    }

    /// Fetches what `channel` missed toward `epoch` from the history API, delivers it after
    /// a [`Event::Resync`], then merges `held` (the live publication that showed the gap).
    async fn resync(&mut self, channel: &str, epoch: &str, held: Option<Envelope>) {
        let mut target = None;
        if let Some((from_epoch, since)) = self.recovery.resync_since(channel, epoch) {
            let token = self.token.clone();
            let fetched = async {
                let page = self.http.history(channel, since, token.as_deref()).await?;
                if since != 0 && page.epoch.as_deref().is_some_and(|e| e != from_epoch) {
                    // A new epoch after all: all of it is unseen.
                    return self.http.history(channel, 0, token.as_deref()).await;
                }
                Ok(page)
            }
            .await;
            match fetched {
                Ok(page) => {
                    if let Some(epoch) = page.epoch {
                        tracing::debug!(channel, %epoch, since, found = page.publications.len(), "resync");
                        self.emit(
                            Event::Resync {
                                channel: channel.to_string(),
                                epoch: epoch.clone(),
                            },
                            Some(channel),
                        )
                        .await;
                        for env in page.publications {
                            if self.recovery.merge(&env, &epoch) == Verdict::Deliver {
                                self.deliver(env).await;
                            }
                        }
                        target = Some(epoch);
                    }
                }
                Err(e) => {
                    let event = Event::Error {
                        code: "resync_failed".to_string(),
                        message: report(&e),
                        channel: Some(channel.to_string()),
                    };
                    self.emit(event, Some(channel)).await;
                }
            }
        }
        if let Some(env) = held {
            let target = target.unwrap_or_else(|| env.epoch.clone());
            if self.recovery.merge(&env, &target) == Verdict::Deliver {
                self.deliver(env).await;
            }
        }
    }

    async fn deliver(&mut self, env: Envelope) {
        let channel = env.channel.clone();
        let event = if env.is_locked() {
            Event::Locked(env)
        } else {
            Event::Publication(env)
        };
        self.emit(event, Some(&channel)).await;
    }

    /// Sends `event` to every stream holding `channel` (every stream for `None`), waiting
    /// for room in each.
    async fn emit(&mut self, event: Event, channel: Option<&str>) {
        let mut closing = self.closing.clone();
        for listener in &self.listeners {
            if !channel.is_none_or(|c| listener.channels.contains(c)) {
                continue;
            }
            let open = if *closing.borrow() {
                // Closing waits for nobody: a full stream misses the event.
                !matches!(
                    listener.tx.try_send(event.clone()),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            } else {
                tokio::select! {
                    sent = listener.tx.send(event.clone()) => sent.is_ok(),
                    _ = closing.wait_for(|closing| *closing) => true,
                }
            };
            if !open {
                self.pruned = true;
            }
        }
    }

    /// Forgets closed streams and unsubscribes the channels no stream wants any more.
    async fn prune(&mut self, ws: &mut Ws, welcomed: bool) -> Result<(), End> {
        self.pruned = false;
        self.listeners.retain(|l| !l.tx.is_closed());
        let orphans: Vec<String> = self
            .recovery
            .names()
            .into_iter()
            .filter(|c| !self.listeners.iter().any(|l| l.channels.contains(c)))
            .collect();
        for channel in &orphans {
            self.recovery.remove(channel);
        }
        if self.listeners.is_empty() && !self.commands_open {
            close(ws).await;
            return Err(End::closed_by_client());
        }
        if welcomed {
            for chunk in orphans.chunks(envelope::MAX_CHANNELS_PER_FRAME) {
                let id = self.frame_id();
                send(ws, envelope::unsubscribe_frame(id, chunk)).await?;
            }
        }
        Ok(())
    }

    /// Subscribes to `channels`, at most `MAX_CHANNELS_PER_FRAME` per frame (the server
    /// refuses a frame naming more).
    async fn send_subscribe(&mut self, ws: &mut Ws, channels: &[String]) -> Result<(), End> {
        for chunk in channels.chunks(envelope::MAX_CHANNELS_PER_FRAME) {
            let since = self.recovery.since(chunk);
            let id = self.frame_id();
            send(ws, envelope::subscribe_frame(id, chunk, &since)).await?;
        }
        Ok(())
    }

    fn frame_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// When to ask the provider for the next token: before the current one expires.
    fn refresh_deadline(&self) -> Option<Instant> {
        self.provider.as_ref()?;
        let exp = token::expiry(self.token.as_deref()?)?;
        token::refresh_delay(exp, token::unix_now()).map(|d| Instant::now() + d)
    }

    /// Before connecting: a token from the provider when there is none or it expires soon.
    async fn fresh_token(&mut self) {
        let Some(provider) = self.provider.clone() else {
            return;
        };
        if self
            .token
            .as_deref()
            .is_some_and(|t| !token::expires_soon(t, token::unix_now()))
        {
            return;
        }
        match provider.fetch().await {
            Ok(t) => self.token = Some(t),
            Err(e) => self.token_error(report(&*e)).await,
        }
    }

    /// The refresh timer fired: a new token goes to the server in an `auth` frame.
    async fn refresh_token(&mut self, ws: &mut Ws, session: &mut Session) -> Result<(), End> {
        session.refresh_at = None;
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        match provider.fetch().await {
            Ok(t) if self.token.as_deref() != Some(&*t) => {
                let id = self.frame_id();
                send(ws, envelope::auth_frame(id, &t)).await?;
                self.token = Some(t);
                session.refresh_at = self.refresh_deadline();
            }
            // The same token again: the server will close with 4001 at its expiry.
            Ok(_) => {}
            Err(e) => self.token_error(report(&*e)).await,
        }
        Ok(())
    }

    /// After 4001: a new, unexpired token from the provider, or stop.
    async fn renew_expired_token(&mut self) -> Result<(), End> {
        let stop = |message: String| End::Stop {
            code: Some(4001),
            reason: "token expired".to_string(),
            error: Some(("token_expired".to_string(), message)),
        };
        let Some(provider) = self.provider.clone() else {
            return Err(stop(
                "the token expired and there is no token provider".to_string(),
            ));
        };
        match provider.fetch().await {
            Ok(t)
                if self.token.as_deref() != Some(&*t)
                    && !token::is_expired(&t, token::unix_now()) =>
            {
                self.token = Some(t);
                Ok(())
            }
            Ok(_) => Err(stop(
                "the token expired and the token provider gave no new one".to_string(),
            )),
            Err(e) => Err(stop(format!(
                "the token expired and the token provider failed: {}",
                report(&*e)
            ))),
        }
    }

    async fn token_error(&mut self, message: String) {
        let event = Event::Error {
            code: "token_error".to_string(),
            message,
            channel: None,
        };
        self.emit(event, None).await;
    }
}

async fn send(ws: &mut Ws, text: String) -> Result<(), End> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| End::reconnect(format!("connection lost: {e}")))
}

/// Closes with 1000 and waits (bounded) for the server's answer.
async fn close(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
