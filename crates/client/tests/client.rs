//! The client against the real server, in-process: subscriptions, reconnects that recover
//! what was missed, resync after a restart, and the close codes that end a client.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::json;
use signalhub_client::{Client, ConnectionState, Event};

#[tokio::test]
async fn subscribe_receives_publications_in_order_until_closed() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url())
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    let (recovered, before) = subscribed(&mut events, "news").await;
    assert!(!recovered, "a first subscribe has nothing to recover");
    assert!(before.iter().any(
        |e| matches!(e, Event::State(ConnectionState::Connected { connection_id }) if connection_id.starts_with("c_"))
    ));

    for n in 1..=3 {
        server.publish("news", json!({"n": n})).await;
    }
    let (pubs, _) = publications(&mut events, 3).await;
    assert_eq!(numbers(&pubs), [1, 2, 3]);
    let seqs: Vec<u64> = pubs
        .iter()
        .map(|e| match e {
            Event::Publication(env) => env.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3]);

    client.close().await;
    assert!(is_closed_with(&next(&mut events).await, 1000));
    assert!(events.recv().await.is_none(), "the stream ends after close");
}

#[tokio::test]
async fn a_dropped_connection_recovers_missed_publications_via_since_once_in_order() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let client = Client::builder(proxy.url())
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    subscribed(&mut events, "news").await;
    for n in 1..=2 {
        server.publish("news", json!({"n": n})).await;
    }
    let (first, _) = publications(&mut events, 2).await;

    // The connection drops; the client is kept away while 3..=5 are published.
    proxy.hold();
    proxy.cut();
    until(&mut events, |e| {
        matches!(e, Event::State(ConnectionState::Reconnecting { .. }))
    })
    .await;
    for n in 3..=5 {
        server.publish("news", json!({"n": n})).await;
    }
    proxy.release();

    let (recovered, _) = subscribed(&mut events, "news").await;
    assert!(recovered, "the server replays from since");
    server.publish("news", json!({"n": 6})).await;
    let (rest, other) = publications(&mut events, 4).await;
    assert_eq!(numbers(&[first, rest].concat()), [1, 2, 3, 4, 5, 6]);
    assert!(
        !other.iter().any(|e| matches!(e, Event::Resync { .. })),
        "recovered without the history API: {other:?}"
    );
    client.close().await;
}

#[tokio::test]
async fn after_a_server_restart_the_new_epoch_is_resynced_from_history() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let proxy = Proxy::start(addr).await;
    let client = Client::builder(proxy.url())
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    subscribed(&mut events, "news").await;
    server.publish("news", json!({"n": 1})).await;
    let (first, _) = publications(&mut events, 1).await;
    let Event::Publication(old) = &first[0] else {
        panic!("{first:?}")
    };
    let old_epoch = old.epoch.clone();

    // Shutdown closes with 1001; the client comes back at once and is held at the proxy
    // while a new server (new in-memory history, new epoch) gets publications.
    proxy.hold();
    server.stop().await;
    let (closing, _) = until(&mut events, |e| {
        matches!(e, Event::State(ConnectionState::Reconnecting { .. }))
    })
    .await;
    assert!(
        matches!(
            closing,
            Event::State(ConnectionState::Reconnecting {
                code: Some(1001),
                ..
            })
        ),
        "{closing:?}"
    );
    let server = TestServer::start_on(addr).await;
    for n in 2..=3 {
        server.publish("news", json!({"n": n})).await;
    }
    proxy.release();

    let (recovered, _) = subscribed(&mut events, "news").await;
    assert!(!recovered, "a new epoch cannot be recovered from since");
    let (resync, _) = until(&mut events, |e| matches!(e, Event::Resync { .. })).await;
    let Event::Resync { channel, epoch } = resync else {
        unreachable!()
    };
    assert_eq!(channel, "news");
    assert_ne!(epoch, old_epoch);
    let (fetched, _) = publications(&mut events, 2).await;
    assert_eq!(numbers(&fetched), [2, 3]);
    server.publish("news", json!({"n": 4})).await;
    let (live, _) = publications(&mut events, 1).await;
    assert_eq!(numbers(&live), [4]);
    client.close().await;
}

#[tokio::test]
async fn an_admin_disconnect_1008_ends_the_client_without_reconnecting() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url())
        .token(token_at("u_kick", 3600, unix_now()))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    subscribed(&mut events, "news").await;

    let (status, answer) = server
        .post("/api/v1/users/u_kick/disconnect", ADMIN_KEY, &json!({}))
        .await;
    assert_eq!((status, answer["disconnected"].as_u64()), (200, Some(1)));

    let (closed, before) = until(&mut events, |e| {
        matches!(e, Event::State(ConnectionState::Closed { .. }))
    })
    .await;
    assert!(is_closed_with(&closed, 1008), "{closed:?}");
    assert!(before
        .iter()
        .any(|e| matches!(e, Event::Error { code, .. } if code == "disconnected")));
    assert!(
        !before.iter().any(|e| matches!(
            e,
            Event::State(ConnectionState::Reconnecting { .. } | ConnectionState::Connecting)
        )),
        "{before:?}"
    );
    assert!(
        events.recv().await.is_none(),
        "no reconnect: the stream ends"
    );
    assert!(client.subscribe(["other"]).is_err(), "the client is closed");
}

#[tokio::test]
async fn the_token_provider_is_asked_again_after_4001_and_the_client_carries_on() {
    let server = TestServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = Client::builder(server.url())
        .token_provider(move || {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                // The first token expired a moment ago: within the server's leeway, so it is
                // accepted at connect and then closed with 4001 at once.
                let now = unix_now();
                let token = if call == 0 {
                    token_at("u_renew", 3600, now - 3602)
                } else {
                    token_at("u_renew", 3600, now)
                };
                Ok::<_, std::io::Error>(token)
            }
        })
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let mut events = client.subscribe(["news"]).unwrap();

    // The close may come before or after the first `subscribed`.
    let (expired, _) = until(&mut events, |e| {
        matches!(e, Event::State(ConnectionState::Reconnecting { .. }))
    })
    .await;
    assert!(
        matches!(
            expired,
            Event::State(ConnectionState::Reconnecting {
                code: Some(4001),
                ..
            })
        ),
        "{expired:?}"
    );
    subscribed(&mut events, "news").await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.publish("news", json!({"n": 1})).await;
    let (pubs, _) = publications(&mut events, 1).await;
    assert_eq!(numbers(&pubs), [1]);
    client.close().await;
}

#[tokio::test]
async fn without_a_token_provider_4001_ends_the_client() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url())
        .token(token_at("u_old", 3600, unix_now() - 3602))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    let (closed, before) = until(&mut events, |e| {
        matches!(e, Event::State(ConnectionState::Closed { .. }))
    })
    .await;
    assert!(is_closed_with(&closed, 4001), "{closed:?}");
    assert!(before
        .iter()
        .any(|e| matches!(e, Event::Error { code, .. } if code == "token_expired")));
    assert!(events.recv().await.is_none());
}

#[tokio::test]
async fn publications_above_the_tier_arrive_as_locked_stubs_in_seq_order() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url()).build().unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    subscribed(&mut events, "news").await;
    server
        .publish_with("news", json!({"n": 1}), Some("premium"))
        .await;
    server.publish("news", json!({"n": 2})).await;
    let (pubs, _) = publications(&mut events, 2).await;
    match &pubs[..] {
        [Event::Locked(stub), Event::Publication(open)] => {
            assert_eq!((stub.seq, stub.tier.as_deref()), (1, Some("premium")));
            assert!(stub.data.is_none());
            assert_eq!(stub.locked_kind.as_deref(), Some("test"));
            assert_eq!(open.seq, 2);
        }
        other => panic!("{other:?}"),
    }
    client.close().await;
}

#[tokio::test]
async fn a_repeated_signal_id_is_delivered_once() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url()).build().unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    subscribed(&mut events, "news").await;
    server
        .publish("news", json!({"signal_id": "s1", "n": 1}))
        .await;
    server
        .publish("news", json!({"signal_id": "s1", "n": 2}))
        .await;
    server
        .publish("news", json!({"signal_id": "s2", "n": 3}))
        .await;
    let (pubs, _) = publications(&mut events, 2).await;
    assert_eq!(numbers(&pubs), [1, 3]);
    client.close().await;
}

#[tokio::test]
async fn a_refused_channel_is_reported_and_the_others_still_flow() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url()).build().unwrap();
    let mut events = client.subscribe(["premium", "news"]).unwrap();
    let (_, before) = subscribed(&mut events, "news").await;
    assert!(
        before.iter().any(|e| matches!(
            e,
            Event::Error { code, channel: Some(c), .. } if code == "forbidden" && c == "premium"
        )),
        "{before:?}"
    );
    server.publish("news", json!({"n": 1})).await;
    let (pubs, _) = publications(&mut events, 1).await;
    assert_eq!(numbers(&pubs), [1]);
    client.close().await;
}

#[tokio::test]
async fn each_stream_gets_its_own_channels() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url()).build().unwrap();
    let mut a = client.subscribe(["a"]).unwrap();
    subscribed(&mut a, "a").await;
    let mut b = client.subscribe(["b"]).unwrap();
    subscribed(&mut b, "b").await;
    server.publish("a", json!({"n": 1})).await;
    server.publish("b", json!({"n": 2})).await;
    let (on_a, _) = publications(&mut a, 1).await;
    let (on_b, _) = publications(&mut b, 1).await;
    assert_eq!((numbers(&on_a), numbers(&on_b)), (vec![1], vec![2]));
    client.close().await;
}

#[tokio::test]
async fn close_returns_even_while_a_stream_is_not_being_read() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url()).build().unwrap();
    let mut events = client.subscribe(["news"]).unwrap();
    subscribed(&mut events, "news").await;
    // More than a stream buffers: the client ends up waiting for this reader.
    for n in 0..1100 {
        server.publish("news", json!({ "n": n })).await;
    }
    tokio::time::timeout(GUARD, client.close())
        .await
        .expect("close does not wait for the reader");
    let mut count = 0;
    while let Some(event) = tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
        count += usize::from(matches!(event, Event::Publication(_)));
    }
    assert!(count <= 1101, "{count}");
}
