//! An RFC 6455 echo server on `signalhub_wire::frame` alone, for Autobahn|Testsuite's
//! fuzzingclient (`scripts/autobahn.sh`): it puts the decoder and the encoders through the
//! field's conformance cases. Not a server mode of signalhub.
//!
//! `cargo run -p signalhub-wire --example echo -- [ADDR]` (default `127.0.0.1:9001`).
//! The handshake is done by hand (no extensions are offered back, so every RSV bit is a
//! protocol error); text and binary messages are echoed, pings answered with pongs, a
//! close echoed with the client's code, and a protocol error closed with the decoder's
//! code (1002, 1007 or 1009). After its close frame the server half-closes the TCP
//! connection and waits (at most 5 s) for the client to close its side.

use std::time::Duration;

use base64::Engine;
use bytes::{Buf, BytesMut};
use sha1::{Digest, Sha1};
use signalhub_wire::frame::{self, Decoder, Message, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Autobahn's case 9 sends messages of up to 16 MiB.
const MAX_MESSAGE: usize = 64 << 20;
const MAX_HEAD: usize = 16 << 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("echo listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = serve(stream).await {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// The value of header `name` in an HTTP request head, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    // The request head; whatever follows it is already frame data.
    let head_len = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD || stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    buf.advance(head_len);
    let Some(key) = header(&head, "sec-websocket-key") else {
        stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    stream.write_all(response.as_bytes()).await?;

    let mut decoder = Decoder::new(MAX_MESSAGE);
    loop {
        loop {
            match decoder.decode(&buf) {
                Ok(decoded) if decoded.consumed == 0 => break,
                Ok(decoded) => {
                    buf.advance(decoded.consumed);
                    let reply = match decoded.message {
                        None | Some(Message::Pong(_)) => continue,
                        Some(Message::Text(text)) => frame::text_frame(text.as_bytes()),
                        Some(Message::Binary(data)) => frame::encode_frame(OpCode::Binary, &data),
                        Some(Message::Ping(data)) => frame::pong_frame(&data),
                        Some(Message::Close(None)) => {
                            return close(stream, frame::encode_frame(OpCode::Close, &[])).await;
                        }
                        Some(Message::Close(Some((code, _)))) => {
                            return close(stream, frame::close_frame(code, "")).await;
                        }
                    };
                    stream.write_all(&reply).await?;
                }
                Err(e) => {
                    let reason = e.to_string();
                    return close(stream, frame::close_frame(e.close_code(), &reason)).await;
                }
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            // The client went away without a close frame.
            return Ok(());
        }
    }
}

/// Sends the close frame, half-closes, and waits for the client's side to end.
async fn close(mut stream: TcpStream, close_frame: bytes::Bytes) -> std::io::Result<()> {
    stream.write_all(&close_frame).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    let drain = async { while stream.read(&mut sink).await.unwrap_or(0) > 0 {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    Ok(())
}
