//! Tick-to-sink latency of the Coinbase connector: the replay server plays N tickers, the
//! example measures from just before each frame is written to when its tick reaches the sink,
//! and prints p50/p99 (for docs/benchmarks.md, issue 12 item 8).
//!
//! `cargo run -p signalhub-feeds --example replay_latency --features testing --release -- 5000 2000`
//! (ticks, ticks per second).

use std::time::Duration;

use hdrhistogram::Histogram;
use signalhub_feeds::synthetic::RandomWalk;
use signalhub_feeds::testing::{start_coinbase, ReplayOptions, Script};
use signalhub_feeds::{Exchange, Feed, FeedConfig, FeedEvent, Timing};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let ticks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let rate: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000)
        .max(1);

    let mut walk = RandomWalk::new("BTC-USD", 1);
    let frames = (0..ticks).map(|i| {
        let price = walk.next_price();
        format!(
            r#"{{"type":"ticker","sequence":{},"product_id":"BTC-USD","price":"{price}","best_bid":"{price}","best_ask":"{price}","volume_24h":"1000.5","side":"buy","time":"2026-11-30T12:00:00.123456Z","trade_id":{i},"last_size":"0.01"}}"#,
            i + 1
        )
    });
    let options = ReplayOptions {
        frame_interval: Duration::from_micros(1_000_000 / rate),
        ..ReplayOptions::default()
    };
    let replay = start_coinbase(Script::from_frames(frames), options).await;

    let mut config = FeedConfig::new("latency", Exchange::Coinbase, &["BTC-USD"]);
    config.url = Some(replay.url().to_string());
    let (tx, mut rx) = mpsc::channel(4096);
    let _feed = Feed::spawn_with(config, Timing::default(), tx, std::future::pending())
        .expect("valid config");

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut seen = 0;
    while seen < ticks {
        let Some(event) = rx.recv().await else { break };
        let FeedEvent::Tick(tick) = event else {
            continue;
        };
        let received = Instant::now();
        let index = tick.exchange_seq.expect("coinbase sequence") as usize - 1;
        if let Some(sent) = replay.sent_at(index) {
            histogram
                .record(received.duration_since(sent).as_micros().max(1) as u64)
                .expect("in bounds");
        }
        seen += 1;
    }
    println!(
        "ticks {} at {rate}/s: p50 {} us, p99 {} us, max {} us",
        histogram.len(),
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.max()
    );
}
