//! The synthetic feed as the demo runs it, on tokio's paused test clock.

mod common;

use std::time::Duration;

use signalhub_feeds::{Exchange, Feed, FeedConfig, FeedEvent, Status, Tick};
use tokio::sync::mpsc;
use tokio::time::Instant;

const DEMO: &[&str] = &["BTC-USD", "ETH-USD", "SOL-USD", "EUR_USD"];

fn demo(seed: u64) -> FeedConfig {
    let mut config = FeedConfig::new("test", Exchange::Synthetic, DEMO);
    config.seed = Some(seed);
    config
}

async fn ticks(config: FeedConfig, n: usize) -> (Vec<Tick>, Vec<Status>, Duration) {
    let (tx, mut rx) = mpsc::channel(64);
    let feed = Feed::spawn(config, tx, std::future::pending()).unwrap();
    let start = Instant::now();
    let mut ticks = Vec::new();
    let mut statuses = Vec::new();
    while ticks.len() < n {
        match rx.recv().await.expect("feed runs") {
            FeedEvent::Tick(tick) => ticks.push(tick),
            FeedEvent::Status { status, .. } => statuses.push(status),
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(feed.stats().messages as usize, n);
    (ticks, statuses, elapsed)
}

#[tokio::test(start_paused = true)]
async fn is_up_at_once_and_ticks_every_product_five_times_a_second() {
    // Ten rounds: the first at once, then one every 200 ms.
    let (ticks, statuses, elapsed) = ticks(demo(1), 40).await;
    assert_eq!(statuses, vec![Status::Up]);
    assert_eq!(elapsed, Duration::from_millis(1800));
    for product in DEMO {
        let of: Vec<&Tick> = ticks.iter().filter(|t| t.product == *product).collect();
        assert_eq!(of.len(), 10, "{product}");
        let seqs: Vec<u64> = of.iter().map(|t| t.exchange_seq.unwrap()).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    }
    let eur = ticks.iter().find(|t| t.product == "EUR_USD").unwrap();
    assert_eq!(eur.price.as_str().split_once('.').unwrap().1.len(), 5);
    assert!(eur
        .to_json()
        .starts_with(r#"{"product":"EUR_USD","price":1.0"#));
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_prices_and_another_seed_others() {
    let prices = |ticks: Vec<Tick>| -> Vec<String> {
        ticks
            .into_iter()
            .map(|t| format!("{} {}", t.product, t.price))
            .collect()
    };
    let a = prices(ticks(demo(7), 400).await.0);
    let b = prices(ticks(demo(7), 400).await.0);
    let c = prices(ticks(demo(8), 400).await.0);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test]
async fn spawning_an_invalid_config_is_an_error_naming_the_field() {
    let (tx, _rx) = mpsc::channel(1);
    let mut config = demo(1);
    config.products.push("btc-usd".to_string());
    let err = Feed::spawn(config, tx, std::future::pending()).unwrap_err();
    assert_eq!(err.field, "feed.products[4]");
}
