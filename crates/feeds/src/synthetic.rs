//! The `synthetic` feed: a seeded random walk per product, no network (spec items 41 and 61).
//!
//! Prices live in integer minor units at a fixed precision per product (cents for BTC-USD,
//! 1e-5 for EUR_USD) and are written with [`Decimal::from_scaled`], so they are exact decimals
//! like an exchange's. The walk alternates phases: a trend (steady drift up or down plus noise)
//! and a reversion towards the starting price. Trends push RSI past 70 or under 30 and make
//! new 30-tick highs or lows, and every turn crosses the 5- and 20-tick averages, so the demo
//! bots (sma 5/20, rsi 14, breakout 30) all signal well within each minute at 5 ticks/s.
//! The same seed gives the same prices, which makes the demo and its tests reproducible.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};

use crate::config::{Exchange, FeedConfig, DEFAULT_TICKS_PER_S};
use crate::decimal::Decimal;
use crate::feed::{FeedCtx, Shutdown};
use crate::tick::{now_utc_millis, FeedEvent, Status, Tick};

/// Seed used when the config gives none.
pub const DEFAULT_SEED: u64 = 1;

/// SplitMix64: tiny, fast, and fixed forever, unlike `rand`'s `StdRng` whose algorithm may
/// change between releases (a seed must keep giving the same walk).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in lo..=hi.
    fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }
}

/// FNV-1a, to give each product its own stream from one seed.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Starting price in minor units and decimal places for the demo's products.
fn start_of(product: &str) -> (i64, u32) {
    match product {
        "BTC-USD" => (6_400_000, 2),
        "ETH-USD" => (320_000, 2),
        "SOL-USD" => (150_000, 3),
        "EUR_USD" | "EUR-USD" => (108_000, 5),
        _ => (10_000, 2),
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Trend(f64),
    Revert,
}

/// The random walk of one product.
#[derive(Debug, Clone)]
pub struct RandomWalk {
    rng: SplitMix64,
    anchor: i64,
    price: f64,
    scale: u32,
    phase: Phase,
    phase_left: u32,
    seq: u64,
}

/// Drift per tick in a trend, as a fraction of the noise amplitude.
const TREND_DRIFT: f64 = 0.6;
/// Noise amplitude per tick, as a fraction of the starting price (4 basis points).
const VOLATILITY: f64 = 0.0004;
/// Share of the distance to the anchor closed per tick while reverting.
const REVERSION: f64 = 0.08;

impl RandomWalk {
    /// The walk of `product` for `seed`.
    pub fn new(product: &str, seed: u64) -> Self {
        let (anchor, scale) = start_of(product);
        let mut walk = RandomWalk {
            rng: SplitMix64(seed ^ fnv1a(product)),
            anchor,
            price: anchor as f64,
            scale,
            phase: Phase::Revert,
            phase_left: 0,
            seq: 0,
        };
        walk.next_phase();
        walk
    }

    fn next_phase(&mut self) {
        match self.phase {
            Phase::Revert => {
                // Lean back towards the anchor so the walk stays near its starting price.
                let up_odds = if self.price > self.anchor as f64 {
                    0.3
                } else {
                    0.7
                };
                let direction = if self.rng.unit() < up_odds { 1.0 } else { -1.0 };
                self.phase = Phase::Trend(direction);
                self.phase_left = self.rng.between(25, 60);
            }
            Phase::Trend(_) => {
                self.phase = Phase::Revert;
                self.phase_left = self.rng.between(15, 40);
            }
        }
    }

    /// The next price, in minor units.
    pub fn next_units(&mut self) -> i64 {
        if self.phase_left == 0 {
            self.next_phase();
        }
        self.phase_left -= 1;
        let amplitude = (self.anchor as f64 * VOLATILITY).max(1.0);
        let noise = (self.rng.unit() * 2.0 - 1.0) * amplitude;
        let step = match self.phase {
            Phase::Trend(direction) => direction * TREND_DRIFT * amplitude + noise,
            Phase::Revert => (self.anchor as f64 - self.price) * REVERSION + noise,
        };
        // Never below a tenth of the start: a price stays positive.
        self.price = (self.price + step).max(self.anchor as f64 / 10.0);
        self.seq += 1;
        self.price.round() as i64
    }

    /// The next price as an exact decimal.
    pub fn next_price(&mut self) -> Decimal {
        Decimal::from_scaled(self.next_units(), self.scale)
    }

    fn next_tick(&mut self, feed: &Arc<str>, product: &str) -> Tick {
        let units = self.next_units();
        // A spread of a few minor units, wider for the larger prices.
        let half_spread = (self.anchor / 100_000).max(1);
        Tick {
            feed: feed.clone(),
            product: product.to_string(),
            price: Decimal::from_scaled(units, self.scale),
            bid: Some(Decimal::from_scaled(units - half_spread, self.scale)),
            ask: Some(Decimal::from_scaled(units + half_spread, self.scale)),
            volume_24h: None,
            exchange: Exchange::Synthetic,
            exchange_time: now_utc_millis(),
            exchange_seq: Some(self.seq),
        }
    }
}

/// Runs the synthetic feed: up at once, then `ticks_per_s` ticks per product per second.
pub(crate) async fn run(config: FeedConfig, ctx: FeedCtx, mut shutdown: Shutdown) {
    let seed = config.seed.unwrap_or(DEFAULT_SEED);
    let rate = config.ticks_per_s.unwrap_or(DEFAULT_TICKS_PER_S);
    let mut walks: Vec<(String, RandomWalk)> = config
        .products
        .iter()
        .map(|p| (p.clone(), RandomWalk::new(p, seed)))
        .collect();
    if ctx.set_status(Status::Up).await.is_err() {
        return;
    }
    let mut ticker = interval(Duration::from_secs(1) / rate);
    // After a stall (a full sink), carry on at the rate instead of bursting to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {
                for (product, walk) in &mut walks {
                    let tick = walk.next_tick(&ctx.name, product);
                    ctx.stats.message_arrived(1);
                    if ctx.emit(FeedEvent::Tick(tick)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn the_same_seed_gives_the_same_prices() {
        for product in ["BTC-USD", "EUR_USD"] {
            let a: Vec<Decimal> = {
                let mut w = RandomWalk::new(product, 42);
                (0..2000).map(|_| w.next_price()).collect()
            };
            let b: Vec<Decimal> = {
                let mut w = RandomWalk::new(product, 42);
                (0..2000).map(|_| w.next_price()).collect()
            };
            assert_eq!(a, b);
            let mut other = RandomWalk::new(product, 43);
            let c: Vec<Decimal> = (0..2000).map(|_| other.next_price()).collect();
            assert_ne!(a, c);
        }
    }

    #[test]
    fn prices_have_the_products_precision_and_stay_positive() {
        let mut btc = RandomWalk::new("BTC-USD", 7);
        let mut eur = RandomWalk::new("EUR_USD", 7);
        for _ in 0..20_000 {
            let p = btc.next_price();
            let (_, frac) = p.as_str().split_once('.').unwrap();
            assert_eq!(frac.len(), 2, "{p}");
            assert!(!p.as_str().starts_with('-'));
            let e = eur.next_price();
            assert_eq!(e.as_str().split_once('.').unwrap().1.len(), 5, "{e}");
        }
    }

    #[test]
    fn the_walk_stays_near_its_start() {
        let mut w = RandomWalk::new("BTC-USD", 9);
        for _ in 0..100_000 {
            let units = w.next_units();
            assert!((4_000_000..=9_000_000).contains(&units), "{units}");
        }
    }

    // Reference versions of the demo strategies (spec item 42), written plainly (rescanning
    // windows is fine here) to check the walk, not to be used by bots.

    fn sma_cross_signals(prices: &[f64], fast: usize, slow: usize) -> Vec<usize> {
        let mut signals = Vec::new();
        let mut previous: Option<(f64, f64)> = None;
        for i in slow - 1..prices.len() {
            let f = prices[i + 1 - fast..=i].iter().sum::<f64>() / fast as f64;
            let s = prices[i + 1 - slow..=i].iter().sum::<f64>() / slow as f64;
            if let Some((pf, ps)) = previous {
                if (f > s && pf <= ps) || (f < s && pf >= ps) {
                    signals.push(i);
                }
            }
            previous = Some((f, s));
        }
        signals
    }

    fn rsi_signals(prices: &[f64], period: usize, overbought: f64, oversold: f64) -> Vec<usize> {
        let mut signals = Vec::new();
        let (mut gain, mut loss) = (0.0, 0.0);
        let mut previous: Option<f64> = None;
        for i in 1..prices.len() {
            let change = prices[i] - prices[i - 1];
            let (g, l) = (change.max(0.0), (-change).max(0.0));
            if i <= period {
                gain += g / period as f64;
                loss += l / period as f64;
                if i < period {
                    continue;
                }
            } else {
                gain = (gain * (period as f64 - 1.0) + g) / period as f64;
                loss = (loss * (period as f64 - 1.0) + l) / period as f64;
            }
            let rsi = if loss == 0.0 {
                100.0
            } else {
                100.0 - 100.0 / (1.0 + gain / loss)
            };
            if let Some(prev) = previous {
                if (rsi < oversold && prev >= oversold) || (rsi > overbought && prev <= overbought)
                {
                    signals.push(i);
                }
            }
            previous = Some(rsi);
        }
        signals
    }

    fn breakout_signals(prices: &[f64], window: usize) -> Vec<usize> {
        let mut signals = Vec::new();
        let mut previous: Option<(bool, bool)> = None;
        let mut recent: VecDeque<f64> = VecDeque::new();
        for (i, &p) in prices.iter().enumerate() {
            if recent.len() == window {
                let high = recent.iter().cloned().fold(f64::MIN, f64::max);
                let low = recent.iter().cloned().fold(f64::MAX, f64::min);
                let (above, below) = (p > high, p < low);
                if let Some((was_above, was_below)) = previous {
                    if (above && !was_above) || (below && !was_below) {
                        signals.push(i);
                    }
                }
                previous = Some((above, below));
                recent.pop_front();
            }
            recent.push_back(p);
        }
        signals
    }

    /// Every whole minute of `ticks` at 5 ticks/s holds at least one of `signals`.
    fn every_minute_has_one(signals: &[usize], ticks: usize) -> bool {
        let per_minute = 5 * 60;
        (0..ticks / per_minute).all(|m| {
            signals
                .iter()
                .any(|&i| i >= m * per_minute && i < (m + 1) * per_minute)
        })
    }

    #[test]
    fn demo_strategies_each_signal_at_least_once_a_minute() {
        let minutes = 30;
        let ticks = minutes * 5 * 60;
        for seed in [DEFAULT_SEED, 2, 3, 17, 12345] {
            for product in ["BTC-USD", "ETH-USD", "SOL-USD", "EUR_USD"] {
                let mut walk = RandomWalk::new(product, seed);
                let prices: Vec<f64> = (0..ticks).map(|_| walk.next_units() as f64).collect();
                let sma = sma_cross_signals(&prices, 5, 20);
                let rsi = rsi_signals(&prices, 14, 70.0, 30.0);
                let breakout = breakout_signals(&prices, 30);
                assert!(
                    every_minute_has_one(&sma, ticks),
                    "sma {product} seed {seed}"
                );
                assert!(
                    every_minute_has_one(&rsi, ticks),
                    "rsi {product} seed {seed}"
                );
                assert!(
                    every_minute_has_one(&breakout, ticks),
                    "breakout {product} seed {seed}"
                );
            }
        }
    }
}
