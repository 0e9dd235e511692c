//! The ordinary client: a subscriber connection built on tokio-tungstenite (`--reader
//! tungstenite`), beside the lean reader of subscriber.rs / ws.rs, so that no figure rests
//! on one WebSocket client. Same connect, subscribe and bookkeeping (subscriber::Reader).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::subscriber::{
    connect_failed, connected, stopped, subscribed_seq, tcp_connect, ConnSpec, Reader, Shared,
};

/// Runs one connection to the end, as [`crate::subscriber::run`] does with the lean client.
pub async fn run(
    spec: ConnSpec,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permit = slots.acquire_owned().await;
    let started = Instant::now();
    let result = tokio::time::timeout(spec.connect_timeout, connect_and_subscribe(&spec)).await;
    drop(permit);
    let (mut ws, sub_seq) = match result {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return connect_failed(&shared, e),
        Err(_) => return connect_failed(&shared, "connect + subscribe timed out".into()),
    };
    connected(&shared, started);
    let mut reader = Reader::new(&spec.channel, sub_seq, &shared);
    let stop = stopped(&mut shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            msg = ws.next() => match msg {
                // tungstenite answers pings itself.
                Some(Ok(Message::Text(text))) => reader.on_text(text.as_bytes()),
                Some(Ok(Message::Close(frame))) => {
                    reader.gone(match frame {
                        Some(f) => format!("server closed: {} {}", u16::from(f.code), f.reason),
                        None => "close without code".into(),
                    });
                    // tungstenite has queued the close echo: flush it.
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return reader.gone(format!("read: {e}")),
                None => return reader.gone("connection ended".into()),
            },
            () = &mut stop => break,
        }
    }
    // Close handshake, then read to the end: the server closes the TCP connection first.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        ws.close(None).await.ok()?;
        while let Some(Ok(_)) = ws.next().await {}
        Some(())
    })
    .await;
}

async fn connect_and_subscribe(
    spec: &ConnSpec,
) -> Result<(WebSocketStream<TcpStream>, u64), String> {
    let stream = tcp_connect(spec).await?;
    let url = format!("ws://{}{}", spec.host, spec.path);
    let config = WebSocketConfig::default().max_message_size(Some(crate::ws::MAX_MESSAGE));
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let subscribe = serde_json::json!({"type": "subscribe", "id": 1, "channels": [spec.channel]});
    ws.send(Message::text(subscribe.to_string()))
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Some(seq) = subscribed_seq(text.as_str(), &spec.channel)? {
                    return Ok((ws, seq));
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed before subscribed: {frame:?}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("connection ended before subscribed".into()),
        }
    }
}
