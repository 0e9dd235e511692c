//! Prints what one `Hub::publish` costs, in nanoseconds, on the memory broker.
//!
//! Not a criterion benchmark: a plain loop, best of five rounds, enough to tell whether a
//! change to the publish path moved its cost. Run with
//! `cargo run --release -p signalhub-hub --example publish_cost`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;
use signalhub_hub::{Client, Hub, HubConfig, Identity, Publication, SubscribeItem, TierId};

const ROUNDS: usize = 5;
const PER_ROUND: usize = 200_000;

fn publish(hub: &Hub, channel: &str, publication: &Publication<'_>) -> u64 {
    match hub.publish(channel, publication).into_ready() {
        Ok(Ok(published)) => published.seq,
        _ => unreachable!("the memory broker answers at once"),
    }
}

/// Best ns per publish over the rounds, draining `client` (when given) between batches.
fn measure(hub: &Hub, channel: &str, tier: Option<TierId>, client: Option<&Arc<Client>>) -> f64 {
    let data = RawValue::from_string(
        r#"{"pair":"BTC-USD","side":"long","entry_price":"64250.50","confidence":0.82}"#.into(),
    )
    .expect("valid JSON");
    let publication = Publication {
        kind: "signal",
        id: "sig_01J8ZK3T9QH4V6W2X0Y5N7M8PA",
        timestamp: "2026-12-02T07:00:00.000Z",
        tier,
        data: &data,
    };
    let mut best = f64::MAX;
    let mut checksum = 0u64;
    let mut drain = std::collections::VecDeque::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for i in 0..PER_ROUND {
            checksum = checksum.wrapping_add(publish(hub, channel, &publication));
            if i % 512 == 0 {
                if let Some(client) = client {
                    drain.clear();
                    client.take(&mut drain, std::task::Waker::noop());
                }
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / PER_ROUND as f64;
        best = best.min(ns);
    }
    std::hint::black_box(checksum);
    best
}

fn main() {
    let hub = Hub::new(HubConfig::default());
    let client = Arc::new(Client::new(1, Identity::default(), 0, 25));
    hub.subscribe(
        &client,
        TierId::LOWEST,
        &[SubscribeItem {
            channel: "one",
            since: None,
            held: false,
        }],
        |_| bytes::Bytes::from_static(b"{}"),
    );
    let premium = hub.ladder().parse("premium");
    println!(
        "no subscriber:            {:7.1} ns/publish",
        measure(&hub, "none", None, None)
    );
    println!(
        "no subscriber, tiered:    {:7.1} ns/publish",
        measure(&hub, "none-tiered", premium, None)
    );
    println!(
        "one subscriber:           {:7.1} ns/publish",
        measure(&hub, "one", None, Some(&client))
    );
}
