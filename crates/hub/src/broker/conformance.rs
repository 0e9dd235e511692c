//! The broker conformance suite: the [`Broker`] contract as executable checks, written once
//! and run against every implementation (the memory broker in this crate's tests; other
//! broker crates enable the `conformance` feature and call [`run`]).
//!
//! Each check gets a fresh broker from the factory (a networked broker may hand out one
//! with its own key prefix) and registers a [`Recorder`] as its handler. Deliveries may
//! arrive later than the publish's answer, so checks wait for them, for at most
//! [`DELIVERY_WAIT`]; nothing here measures time.

use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use serde_json::value::RawValue;

use super::{
    Accepted, Broker, Dispatch, Handler, HistoryQuery, Outgoing, PublishOptions, Sequenced,
};
use crate::envelope::{self, Publication};
use crate::history::HistoryLimits;
use crate::hub::Since;
use crate::tier::TierId;

/// The longest a check waits for a delivery before it fails.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// Makes a fresh broker for one check.
pub type Factory<'a> = &'a dyn Fn() -> Arc<dyn Broker>;

/// Runs every check, panicking (with the check's name) at the first that fails.
pub async fn run(factory: Factory<'_>) {
    seq_starts_at_one_and_grows_by_one_per_channel(factory).await;
    envelopes_are_the_templates_joined_with_epoch_and_seq(factory).await;
    an_interested_node_receives_each_publication_once_in_seq_order(factory).await;
    an_idempotent_retry_answers_the_first_position_and_delivers_nothing(factory).await;
    history_pages_are_oldest_first_and_bounded(factory).await;
    recovery_returns_exactly_what_was_missed(factory).await;
    recovery_from_another_epoch_or_beyond_history_is_refused_whole(factory).await;
    history_keeps_at_most_its_size_and_none_at_size_zero(factory).await;
    the_latest_value_is_the_newest_publication(factory).await;
    a_channel_without_state_has_no_history(factory).await;
    a_healthy_broker_says_so(factory).await;
}

/// Publish options with history and no idempotency key.
pub fn options() -> PublishOptions<'static> {
    PublishOptions {
        history: HistoryLimits {
            size: 10,
            ttl_ms: 300_000,
        },
        latest_value: false,
        idempotency_key: None,
        idempotency_window_ms: 60_000,
    }
}

/// A handler that records what it is given.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Vec<Sequenced>>,
    arrived: Condvar,
}

impl Handler for Recorder {
    fn deliver(&self, publication: Sequenced) -> Dispatch {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(publication);
        self.arrived.notify_all();
        Dispatch::none()
    }
}

impl Recorder {
    /// The deliveries on `channel` once there are at least `n` (or after [`DELIVERY_WAIT`]).
    pub fn wait_for(&self, channel: &str, n: usize) -> Vec<Sequenced> {
        let on = |seen: &[Sequenced]| -> Vec<Sequenced> {
            seen.iter()
                .filter(|p| &*p.channel == channel)
                .cloned()
                .collect()
        };
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (seen, _) = self
            .arrived
            .wait_timeout_while(seen, DELIVERY_WAIT, |seen| on(seen).len() < n)
            .unwrap_or_else(|e| e.into_inner());
        on(&seen)
    }
}

/// A broker from `factory` with a [`Recorder`] registered.
fn fresh(factory: Factory<'_>) -> (Arc<dyn Broker>, Arc<Recorder>) {
    let broker = factory();
    let recorder = Arc::new(Recorder::default());
    broker.register(recorder.clone());
    (broker, recorder)
}

fn data(n: u64) -> Box<RawValue> {
    RawValue::from_string(format!("{{\"n\":{n}}}")).expect("valid JSON")
}

/// Publishes `{"n": n}` on `channel` (locked for tiers below 1 when `locked`).
async fn publish(
    broker: &dyn Broker,
    channel: &str,
    n: u64,
    options: PublishOptions<'_>,
    locked: bool,
) -> Accepted {
    let data = data(n);
    let id = format!("pub_{n}");
    let p = Publication {
        kind: "test",
        id: &id,
        timestamp: "2026-01-01T00:00:00.000Z",
        tier: locked.then_some(TierId(1)),
        data: &data,
    };
    let out = Outgoing {
        channel,
        full: envelope::full_template(&p, channel, locked.then_some("premium")),
        locked: locked.then(|| (TierId(1), envelope::locked_template(&p, channel, "premium"))),
        options,
    };
    broker
        .publish(out)
        .await
        .unwrap_or_else(|e| panic!("publish on {channel} failed: {e}"))
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("an envelope is JSON")
}

fn seqs(publications: &[Sequenced]) -> Vec<u64> {
    publications.iter().map(|p| p.seq).collect()
}

async fn seq_starts_at_one_and_grows_by_one_per_channel(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    let a1 = publish(&*broker, "a", 1, options(), false).await;
    let a2 = publish(&*broker, "a", 2, options(), false).await;
    let b1 = publish(&*broker, "b", 3, options(), false).await;
    let a3 = publish(&*broker, "a", 4, options(), false).await;
    assert_eq!(
        [
            a1.position.seq,
            a2.position.seq,
            b1.position.seq,
            a3.position.seq
        ],
        [1, 2, 1, 3],
        "seq_starts_at_one_and_grows_by_one_per_channel"
    );
    assert_eq!(a1.position.epoch, a3.position.epoch);
    assert!(!a1.duplicate && !a3.duplicate);
}

async fn envelopes_are_the_templates_joined_with_epoch_and_seq(factory: Factory<'_>) {
    let (broker, recorder) = fresh(factory);
    broker.subscribe("env").await.expect("subscribe");
    let accepted = publish(&*broker, "env", 7, options(), true).await;
    let got = recorder.wait_for("env", 1);
    assert_eq!(
        got.len(),
        1,
        "envelopes_are_the_templates_joined_with_epoch_and_seq"
    );
    let p = &got[0];
    assert_eq!(p.epoch, accepted.position.epoch);
    assert_eq!(p.seq, accepted.position.seq);
    let full = json(&p.full);
    assert_eq!(full["type"], "test");
    assert_eq!(full["channel"], "env");
    assert_eq!(full["epoch"], &*p.epoch);
    assert_eq!(full["seq"], p.seq);
    assert_eq!(full["id"], "pub_7");
    assert_eq!(full["tier"], "premium");
    assert_eq!(full["data"]["n"], 7);
    let (tier, stub) = p.locked.as_ref().expect("a locked stub");
    assert_eq!(*tier, TierId(1));
    let stub = json(stub);
    assert_eq!(stub["type"], "locked");
    assert_eq!(stub["seq"], p.seq);
    assert_eq!(stub["epoch"], &*p.epoch);
    assert!(stub.get("data").is_none());
    assert_eq!(p.for_tier(TierId(0)), &p.locked.as_ref().unwrap().1);
    assert_eq!(p.for_tier(TierId(1)), &p.full);
}

async fn an_interested_node_receives_each_publication_once_in_seq_order(factory: Factory<'_>) {
    let (broker, recorder) = fresh(factory);
    broker.subscribe("live").await.expect("subscribe");
    for n in 1..=20 {
        publish(&*broker, "live", n, options(), false).await;
    }
    let got = recorder.wait_for("live", 20);
    assert_eq!(
        seqs(&got),
        (1..=20).collect::<Vec<_>>(),
        "an_interested_node_receives_each_publication_once_in_seq_order"
    );
    // Nothing more comes than was published.
    assert_eq!(recorder.wait_for("live", 20).len(), 20);
}

async fn an_idempotent_retry_answers_the_first_position_and_delivers_nothing(factory: Factory<'_>) {
    let (broker, recorder) = fresh(factory);
    broker.subscribe("idem").await.expect("subscribe");
    let keyed = PublishOptions {
        idempotency_key: Some("k1"),
        ..options()
    };
    let first = publish(&*broker, "idem", 1, keyed, false).await;
    let retry = publish(&*broker, "idem", 1, keyed, false).await;
    let other = publish(
        &*broker,
        "idem",
        2,
        PublishOptions {
            idempotency_key: Some("k2"),
            ..options()
        },
        false,
    )
    .await;
    assert!(!first.duplicate);
    assert!(
        retry.duplicate,
        "an_idempotent_retry_answers_the_first_position_and_delivers_nothing"
    );
    assert_eq!(retry.position, first.position);
    assert_eq!(other.position.seq, first.position.seq + 1);
    let got = recorder.wait_for("idem", 2);
    assert_eq!(seqs(&got), [1, 2]);
    let page = broker
        .history("idem", HistoryQuery::Last(10))
        .await
        .expect("history")
        .expect("state");
    assert_eq!(seqs(&page.publications), [1, 2]);
}

async fn history_pages_are_oldest_first_and_bounded(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    for n in 1..=5 {
        publish(&*broker, "pages", n, options(), false).await;
    }
    let last = broker
        .history("pages", HistoryQuery::Last(2))
        .await
        .expect("history")
        .expect("state");
    assert_eq!(
        seqs(&last.publications),
        [4, 5],
        "history_pages_are_oldest_first_and_bounded"
    );
    assert_eq!(last.position.seq, 5);
    assert!(last.recovered);
    let after = broker
        .history("pages", HistoryQuery::After { seq: 1, limit: 3 })
        .await
        .expect("history")
        .expect("state");
    assert_eq!(seqs(&after.publications), [2, 3, 4]);
    assert_eq!(json(&after.publications[0].full)["data"]["n"], 2);
}

async fn recovery_returns_exactly_what_was_missed(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    let first = publish(&*broker, "rec", 1, options(), false).await;
    for n in 2..=4 {
        publish(&*broker, "rec", n, options(), false).await;
    }
    let since = Since {
        epoch: first.position.epoch.to_string(),
        seq: 1,
    };
    let reply = broker
        .history("rec", HistoryQuery::Recover(&since))
        .await
        .expect("history")
        .expect("state");
    assert!(reply.recovered, "recovery_returns_exactly_what_was_missed");
    assert_eq!(seqs(&reply.publications), [2, 3, 4]);
    assert_eq!(reply.position.seq, 4);
    let current = Since {
        epoch: first.position.epoch.to_string(),
        seq: 4,
    };
    let nothing = broker
        .history("rec", HistoryQuery::Recover(&current))
        .await
        .expect("history")
        .expect("state");
    assert!(nothing.recovered && nothing.publications.is_empty());
}

async fn recovery_from_another_epoch_or_beyond_history_is_refused_whole(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    let short = PublishOptions {
        history: HistoryLimits {
            size: 3,
            ttl_ms: 300_000,
        },
        ..options()
    };
    let first = publish(&*broker, "gap", 1, short, false).await;
    for n in 2..=6 {
        publish(&*broker, "gap", n, short, false).await;
    }
    let epoch = first.position.epoch.to_string();
    for since in [
        Since {
            epoch: epoch.clone(),
            seq: 1,
        },
        Since {
            epoch: "another-epoch".into(),
            seq: 5,
        },
        Since { epoch, seq: 99 },
    ] {
        let reply = broker
            .history("gap", HistoryQuery::Recover(&since))
            .await
            .expect("history")
            .expect("state");
        assert!(
            !reply.recovered && reply.publications.is_empty(),
            "recovery_from_another_epoch_or_beyond_history_is_refused_whole: {since:?}"
        );
        assert_eq!(reply.position.seq, 6);
    }
}

async fn history_keeps_at_most_its_size_and_none_at_size_zero(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    let none = PublishOptions {
        history: HistoryLimits {
            size: 0,
            ttl_ms: 300_000,
        },
        ..options()
    };
    for n in 1..=3 {
        publish(&*broker, "nohist", n, none, false).await;
    }
    let reply = broker
        .history("nohist", HistoryQuery::Last(10))
        .await
        .expect("history");
    if let Some(reply) = reply {
        assert!(
            reply.publications.is_empty(),
            "history_keeps_at_most_its_size_and_none_at_size_zero"
        );
    }
    for n in 1..=15 {
        publish(&*broker, "hist", n, options(), false).await;
    }
    let reply = broker
        .history("hist", HistoryQuery::Last(100))
        .await
        .expect("history")
        .expect("state");
    assert_eq!(seqs(&reply.publications), (6..=15).collect::<Vec<_>>());
}

async fn the_latest_value_is_the_newest_publication(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    let latest = PublishOptions {
        latest_value: true,
        ..options()
    };
    publish(&*broker, "price", 1, latest, false).await;
    publish(&*broker, "price", 2, latest, false).await;
    let got = broker
        .latest("price")
        .await
        .expect("latest")
        .expect("a latest value");
    assert_eq!(got.seq, 2, "the_latest_value_is_the_newest_publication");
    assert_eq!(json(&got.full)["data"]["n"], 2);
    publish(&*broker, "plain", 1, options(), false).await;
    assert!(broker.latest("plain").await.expect("latest").is_none());
}

async fn a_channel_without_state_has_no_history(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    let reply = broker
        .history("never-published", HistoryQuery::Last(10))
        .await
        .expect("history");
    assert!(
        reply.is_none_or(|r| r.publications.is_empty() && r.position.seq == 0),
        "a_channel_without_state_has_no_history"
    );
    assert!(broker
        .latest("never-published")
        .await
        .expect("latest")
        .is_none());
}

async fn a_healthy_broker_says_so(factory: Factory<'_>) {
    let (broker, _) = fresh(factory);
    let health = broker.health();
    assert!(health.ok, "a_healthy_broker_says_so: {health:?}");
    assert!(!health.kind.is_empty());
}

/// Wakes the thread that waits in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread (for brokers that need no runtime, such as
/// the memory broker; a networked broker's tests await [`run`] in their runtime instead).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}
