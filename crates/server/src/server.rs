//! The accept loop, HTTP serving and graceful shutdown.
//!
//! We accept TCP ourselves and serve each connection with hyper's HTTP/1 (with upgrades),
//! so an upgraded WebSocket can be taken back out as the plain `TcpStream` it was. Shutdown
//! follows spec section 9, item 38; hyper's graceful shutdown does not know about upgraded
//! sockets, so those are closed through the registry.
//!
//! Each address may hold `limits.http_connections_per_ip` HTTP connections; one more is
//! answered 429 and closed. Every HTTP socket closes through `socket`'s lingering close,
//! so an answer sent before the request was read whole (413, 408) reaches the client.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::Service;

mod socket;

pub use socket::HttpStream;

use crate::heartbeat;
use crate::http;
use crate::state::AppState;
use crate::ws::connection::close;

/// Everything must be closed within this after a shutdown signal.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);
/// Connections still open this long after their 1001 are dropped without a handshake.
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(3);

/// Pending connections the kernel may queue: the standard library's default of 128 drops
/// SYNs when hundreds of clients connect at once (they retry a second later).
const LISTEN_BACKLOG: u32 = 4096;

/// Connections refused with 429 at once, at most; past it more are closed unanswered.
const MAX_REFUSALS: usize = 1024;
/// How long a refused connection may take to send the request head it is refused for.
const REFUSAL_HEAD_WAIT: Duration = Duration::from_secs(2);

/// Answers the one request of a connection whose address holds all its
/// `http_connections_per_ip` with 429 (then the connection closes, lingering like any other).
fn refuse(state: &AppState, tcp: tokio::net::TcpStream) {
    let Some(guard) = socket::Guard::refusal(state, MAX_REFUSALS) else {
        return;
    };
    let service = hyper::service::service_fn(|_request: hyper::Request<Incoming>| async {
        let refusal =
            http::error::ApiError::rate_limited("too many HTTP connections from this address", 5)
                .with_header(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
        Ok::<_, std::convert::Infallible>(axum::response::IntoResponse::into_response(refusal))
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_HEAD_WAIT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(HttpStream::new(tcp, guard)), service);
    tokio::spawn(async move {
        let _ = conn.await;
    });
}

/// Binds a listener with a backlog deep enough for connection storms.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves on `listener` until `shutdown` completes, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let app = http::router(state.clone());
    // Each HTTP connection task holds a `done` sender and watches `stop`; after shutdown
    // begins, `done_rx` yields None once every one of them has finished.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let sweeper = tokio::spawn(heartbeat::run(state.clone()));
    match crate::publish::Publisher::new(state.clone())
        .publish_pending()
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(signals = n, "published signals stored before the last stop"),
        Err(e) => tracing::warn!(error = %e, "could not read unpublished signals"),
    }
    crate::feeds::Feeds::start(&state);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let Some(slot) = socket::Guard::slot(&state, peer.ip()) else {
                        refuse(&state, tcp);
                        continue;
                    };
                    let app = app.clone();
                    let proxies = state.config.trusted_proxies.clone();
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                        // Handlers see the client's address: the TCP peer, or behind a trusted
                        // proxy the address its forwarding headers name (crate::peer).
                        let client = if proxies.is_empty() {
                            peer
                        } else {
                            SocketAddr::new(proxies.client_ip(peer, request.headers()), peer.port())
                        };
                        request.extensions_mut().insert(ConnectInfo::<SocketAddr>(client));
                        app.clone().call(request)
                    });
                    let idle = Duration::from_secs(u64::from(state.config.limits.http_idle_timeout_s));
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        // Starts when a request head is awaited: it bounds a new connection's
                        // first request and the idle time between kept-alive requests.
                        .header_read_timeout(idle)
                        .serve_connection(TokioIo::new(HttpStream::new(tcp, slot)), service)
                        .with_upgrades();
                    let mut stop = stop_rx.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let _done = done;
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            result = conn.as_mut() => result,
                            _ = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(error = %e, %peer, "http connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let started = Instant::now();
    tracing::info!("shutting down");
    state.begin_stopping();
    state.feeds.stop().await;
    crate::publish::Publisher::new(state.clone())
        .announce_shutdown()
        .await;
    state
        .registry
        .for_each(|c| c.request_close(close::GOING_AWAY, false));
    let _ = stop_tx.send(true);
    drop(done_tx);
    let http = tokio::time::timeout(SHUTDOWN_BUDGET, done_rx.recv());
    let sockets = async {
        while !state.registry.is_empty() {
            if started.elapsed() >= CLOSE_HANDSHAKE_WAIT {
                state.registry.for_each(|c| c.abort());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::join!(http, tokio::time::timeout(SHUTDOWN_BUDGET, sockets));
    sweeper.abort();
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    Ok(())
}
