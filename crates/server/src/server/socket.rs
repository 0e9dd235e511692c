//! The socket under one HTTP connection: it holds the client address's
//! `http_connections_per_ip` slot, and when hyper is done with it, it closes gently.
//!
//! Closing a TCP socket that still has unread input makes the kernel answer with a reset,
//! and a reset can destroy the answer the client has not read yet (a 413 to a client still
//! sending its body, say). So a dropped [`HttpStream`] is not closed at once: a small task
//! half-closes it (our answer, then FIN) and reads and discards what the client still
//! sends, until it closes too, a bound of bytes or time is reached, or it goes quiet. The
//! address's slot is held until then, so lingering sockets count against the limit.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::state::AppState;

/// The longest a closed connection lingers, reading what its client still sends.
pub const LINGER_MAX: Duration = Duration::from_secs(10);
/// A lingering connection that receives nothing for this long is dropped.
pub const LINGER_QUIET: Duration = Duration::from_secs(2);
/// The most a lingering connection reads and discards.
pub const LINGER_MAX_BYTES: usize = 16 << 20;

/// What a connection holds while it is open (and lingering).
#[derive(Debug)]
pub enum Guard {
    /// One of its address's `http_connections_per_ip`.
    Slot(AppState, IpAddr),
    /// One of the connections being refused with 429 right now (bounded in number).
    Refusal(AppState),
    /// A connection from a trusted proxy: it carries many clients, each limited by the
    /// address its forwarding headers name, so the proxy itself takes no slot.
    Proxy,
}

impl Guard {
    /// Takes a slot for `ip`, if it has one left (a trusted proxy needs none).
    pub fn slot(state: &AppState, ip: IpAddr) -> Option<Guard> {
        if state.config.trusted_proxies.trusts(ip) {
            return Some(Guard::Proxy);
        }
        state
            .registry
            .http_per_ip
            .try_add(ip, state.config.limits.http_connections_per_ip)
            .then(|| Guard::Slot(state.clone(), ip))
    }

    /// Counts a connection being refused, unless `max` are already.
    pub fn refusal(state: &AppState, max: usize) -> Option<Guard> {
        let refusals = &state.registry.http_refusals;
        let mut now = refusals.load(Ordering::Relaxed);
        loop {
            if now >= max {
                return None;
            }
            match refusals.compare_exchange_weak(now, now + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(Guard::Refusal(state.clone())),
                Err(actual) => now = actual,
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self {
            Guard::Slot(state, ip) => state.registry.http_per_ip.remove(*ip),
            Guard::Refusal(state) => {
                state.registry.http_refusals.fetch_sub(1, Ordering::Relaxed);
            }
            Guard::Proxy => {}
        }
    }
}

/// A TCP stream served by hyper that lingers when dropped (see the module docs).
#[derive(Debug)]
pub struct HttpStream {
    /// None only once taken out (by [`HttpStream::into_tcp`] or the drop).
    tcp: Option<TcpStream>,
    guard: Option<Guard>,
}

impl HttpStream {
    pub fn new(tcp: TcpStream, guard: Guard) -> Self {
        HttpStream {
            tcp: Some(tcp),
            guard: Some(guard),
        }
    }

    /// The plain TCP stream, for a connection upgraded to a WebSocket: it no longer counts
    /// as an HTTP connection (the WebSocket limit takes over) and does not linger here.
    pub fn into_tcp(mut self) -> TcpStream {
        self.guard = None;
        self.tcp
            .take()
            .expect("the stream is present until dropped")
    }

    fn tcp(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.tcp
                .as_mut()
                .expect("the stream is present until dropped"),
        )
    }
}

impl AsyncRead for HttpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().tcp().poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().tcp().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().tcp().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tcp().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tcp().poll_shutdown(cx)
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        let Some(tcp) = self.tcp.take() else {
            return;
        };
        let guard = self.guard.take();
        // Outside a runtime (it is shutting down) the socket just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(tcp, guard));
        }
    }
}

/// Half-closes `tcp`, then reads and discards until the client closes, goes quiet, or a
/// bound is reached; then closes it. `guard` is released at the end.
async fn linger(mut tcp: TcpStream, guard: Option<Guard>) {
    let _guard = guard;
    if tcp.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER_MAX;
    let mut buf = vec![0u8; 16 * 1024];
    let mut discarded = 0usize;
    while discarded < LINGER_MAX_BYTES {
        let quiet = tokio::time::Instant::now() + LINGER_QUIET;
        match tokio::time::timeout_at(deadline.min(quiet), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => discarded += n,
        }
    }
}
