//! Unit tests of the hub: sequencing, tier buckets, recovery and latest-value channels.

use super::*;
use crate::client::Identity;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::task::Waker;

fn client(id: u64) -> Arc<Client> {
    Arc::new(Client::new(id, Identity::default(), 0, 25))
}

fn drain(client: &Client) -> Vec<serde_json::Value> {
    let mut frames = VecDeque::new();
    client.take(&mut frames, Waker::noop());
    frames
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

fn data(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).unwrap()
}

fn publish(hub: &Hub, channel: &str, tier: Option<TierId>) -> Published {
    let d = data(r#"{"x":1}"#);
    hub.publish(
        channel,
        &Publication {
            kind: "signal",
            id: "p1",
            timestamp: "2025-01-01T00:00:00.000Z",
            tier,
            data: &d,
        },
    )
    .into_ready()
    .expect("the memory broker answers at once")
    .expect("published")
}

fn subscribed(positions: &[Position]) -> Bytes {
    let channels: Vec<_> = positions
        .iter()
        .map(|p| serde_json::json!({"channel": &*p.channel, "epoch": &*p.epoch, "seq": p.seq, "recovered": p.recovered}))
        .collect();
    Bytes::from(serde_json::json!({"type":"subscribed","channels":channels}).to_string())
}

fn sub(hub: &Hub, c: &Arc<Client>, tier: TierId, channel: &str, since: Option<&Since>) -> Position {
    let item = SubscribeItem {
        channel,
        since,
        held: false,
    };
    hub.subscribe(c, tier, &[item], subscribed).remove(0)
}

#[test]
fn seq_increases_by_exactly_one_per_channel() {
    let hub = Hub::new(HubConfig::default());
    assert_eq!(publish(&hub, "a", None).seq, 1);
    assert_eq!(publish(&hub, "a", None).seq, 2);
    assert_eq!(publish(&hub, "b", None).seq, 1);
    assert_eq!(publish(&hub, "a", None).seq, 3);
}

#[test]
fn subscribers_receive_publications_in_seq_order_after_subscribed() {
    let hub = Hub::new(HubConfig::default());
    let c = client(1);
    let pos = sub(&hub, &c, TierId::LOWEST, "signals", None);
    assert_eq!(pos.seq, 0);
    for _ in 0..3 {
        publish(&hub, "signals", None);
    }
    let frames = drain(&c);
    assert_eq!(frames[0]["type"], "subscribed");
    let seqs: Vec<_> = frames[1..]
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[test]
fn only_the_named_channel_receives_a_publication() {
    let hub = Hub::new(HubConfig::default());
    let a = client(1);
    let b = client(2);
    sub(&hub, &a, TierId::LOWEST, "a", None);
    sub(&hub, &b, TierId::LOWEST, "b", None);
    publish(&hub, "a", None);
    assert_eq!(drain(&a).len(), 2);
    assert_eq!(drain(&b).len(), 1);
}

#[test]
fn subscribers_below_the_publication_tier_get_a_locked_stub_with_the_same_seq() {
    let hub = Hub::new(HubConfig::default());
    let ladder = TierLadder::default();
    let premium = ladder.parse("premium").unwrap();
    let whale = ladder.parse("whale").unwrap();
    let free_c = client(1);
    let premium_c = client(2);
    let whale_c = client(3);
    sub(&hub, &free_c, TierId::LOWEST, "signals", None);
    sub(&hub, &premium_c, premium, "signals", None);
    sub(&hub, &whale_c, whale, "signals", None);
    publish(&hub, "signals", Some(premium));
    let f = &drain(&free_c)[1];
    assert_eq!(f["type"], "locked");
    assert_eq!(f["seq"], 1);
    assert_eq!(f["tier"], "premium");
    assert!(f.get("data").is_none());
    let p = &drain(&premium_c)[1];
    assert_eq!(p["type"], "signal");
    assert_eq!(p["data"]["x"], 1);
    assert_eq!(drain(&whale_c)[1]["type"], "signal");
}

#[test]
fn resubscribe_with_since_replays_exactly_the_missed_publications() {
    let hub = Hub::new(HubConfig::default());
    let c = client(1);
    let pos = sub(&hub, &c, TierId::LOWEST, "signals", None);
    publish(&hub, "signals", None);
    hub.unsubscribe(1, "signals", TierId::LOWEST);
    for _ in 0..4 {
        publish(&hub, "signals", None);
    }
    drain(&c);
    let since = Since {
        epoch: pos.epoch.to_string(),
        seq: 1,
    };
    let pos = sub(&hub, &c, TierId::LOWEST, "signals", Some(&since));
    assert!(pos.recovered);
    assert_eq!(pos.seq, 5);
    publish(&hub, "signals", None);
    let frames = drain(&c);
    assert_eq!(frames[0]["type"], "subscribed");
    let seqs: Vec<_> = frames[1..]
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6]);
}

#[test]
fn recovery_fails_when_the_history_overflowed_or_the_epoch_differs() {
    let config = HubConfig {
        history: HistoryLimits {
            size: 2,
            ttl_ms: 60_000,
        },
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    let c = client(1);
    let pos = sub(&hub, &c, TierId::LOWEST, "ch", None);
    hub.unsubscribe(1, "ch", TierId::LOWEST);
    for _ in 0..3 {
        publish(&hub, "ch", None);
    }
    drain(&c);
    let since = Since {
        epoch: pos.epoch.to_string(),
        seq: 0,
    };
    let again = sub(&hub, &c, TierId::LOWEST, "ch", Some(&since));
    assert!(!again.recovered);
    assert_eq!(drain(&c).len(), 1, "nothing replayed");
    hub.unsubscribe(1, "ch", TierId::LOWEST);
    let other = Since {
        epoch: "another".into(),
        seq: 3,
    };
    assert!(!sub(&hub, &c, TierId::LOWEST, "ch", Some(&other)).recovered);
}

#[test]
fn history_ttl_expiry_makes_recovery_fail() {
    let hub = Hub::new(HubConfig::default());
    let c = client(1);
    let pos = sub(&hub, &c, TierId::LOWEST, "ch", None);
    hub.unsubscribe(1, "ch", TierId::LOWEST);
    publish(&hub, "ch", None);
    hub.advance_clock(301_000);
    let since = Since {
        epoch: pos.epoch.to_string(),
        seq: 0,
    };
    assert!(!sub(&hub, &c, TierId::LOWEST, "ch", Some(&since)).recovered);
}

#[test]
fn latest_value_channels_send_the_newest_publication_on_subscribe() {
    let hub = Hub::new(HubConfig::default());
    publish(&hub, "price:BTC-USD", None);
    publish(&hub, "price:BTC-USD", None);
    publish(&hub, "other", None);
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "price:BTC-USD", None);
    sub(&hub, &c, TierId::LOWEST, "other", None);
    let frames = drain(&c);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1]["seq"], 2);
    assert_eq!(frames[2]["type"], "subscribed");
}

#[test]
fn a_held_channel_is_reported_at_its_position_and_replays_nothing() {
    let hub = Hub::new(HubConfig::default());
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "price:X", None);
    publish(&hub, "price:X", None);
    drain(&c);
    let item = SubscribeItem {
        channel: "price:X",
        since: None,
        held: true,
    };
    let pos = hub.subscribe(&c, TierId::LOWEST, &[item], subscribed);
    assert_eq!(pos[0].seq, 1);
    assert_eq!(drain(&c).len(), 1);
    assert_eq!(hub.stats().subscriptions, 1);
}

#[test]
fn stats_count_subscriptions_and_channels_with_subscribers() {
    let hub = Hub::new(HubConfig::default());
    let a = client(1);
    let b = client(2);
    sub(&hub, &a, TierId::LOWEST, "x", None);
    sub(&hub, &b, TierId::LOWEST, "x", None);
    sub(&hub, &b, TierId::LOWEST, "y", None);
    publish(&hub, "x", None);
    let s = hub.stats();
    assert_eq!(
        (s.channels, s.subscriptions, s.publications, s.deliveries),
        (2, 3, 1, 2)
    );
    hub.unsubscribe(2, "y", TierId::LOWEST);
    hub.unsubscribe(2, "x", TierId::LOWEST);
    assert_eq!(hub.stats().channels, 1);
    assert_eq!(hub.subscriber_count("x"), 1);
}

#[test]
fn garbage_collection_drops_empty_channels_and_a_returning_channel_gets_a_new_epoch() {
    let hub = Hub::new(HubConfig::default());
    let c = client(1);
    let first = sub(&hub, &c, TierId::LOWEST, "ch", None);
    hub.unsubscribe(1, "ch", TierId::LOWEST);
    hub.collect_garbage();
    assert_eq!(hub.channel_count(), 0);
    let second = sub(&hub, &c, TierId::LOWEST, "ch", None);
    assert_ne!(first.epoch, second.epoch);
}

#[test]
fn a_slow_subscriber_overflows_alone() {
    let config = HubConfig {
        max_queue_bytes: 1000,
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    let slow = client(1);
    let fast = client(2);
    sub(&hub, &slow, TierId::LOWEST, "ch", None);
    sub(&hub, &fast, TierId::LOWEST, "ch", None);
    for _ in 0..50 {
        publish(&hub, "ch", None);
        drain(&fast);
    }
    assert!(slow.is_closing());
    assert!(!fast.is_closing());
}

fn deep_history() -> HubConfig {
    HubConfig {
        history: HistoryLimits {
            size: 10_000,
            ttl_ms: 600_000,
        },
        max_queue_bytes: 64 << 20,
        ..HubConfig::default()
    }
}

/// Four publishing threads and one client that keeps resubscribing with `since`: the
/// client must see every seq exactly once, in order.
fn resubscribe_under_concurrent_publishers(hub: Arc<Hub>) {
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    publish(&hub, "ch", None);
                }
            })
        })
        .collect();
    let c = client(7);
    let mut position: Option<Since> = None;
    let mut seen: Vec<u64> = Vec::new();
    for _ in 0..200 {
        let pos = sub(&hub, &c, TierId::LOWEST, "ch", position.as_ref());
        if let Some(p) = &position {
            assert!(pos.recovered, "resubscribe from {} failed", p.seq);
        } else {
            seen.extend(1..=pos.seq);
        }
        hub.unsubscribe(7, "ch", TierId::LOWEST);
        for frame in drain(&c).iter().skip(1) {
            seen.push(frame["seq"].as_u64().unwrap());
        }
        position = Some(Since {
            epoch: pos.epoch.to_string(),
            seq: *seen.last().unwrap_or(&0),
        });
    }
    for p in publishers {
        p.join().unwrap();
    }
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, expected);
}

#[test]
fn concurrent_publishers_and_resubscribers_never_see_a_gap_or_duplicate() {
    resubscribe_under_concurrent_publishers(Arc::new(Hub::new(deep_history())));
}

#[test]
fn with_fan_out_jobs_on_other_threads_resubscribers_never_see_a_gap_or_duplicate() {
    let hub = with_thread_jobs(Hub::new(HubConfig {
        defer_fanout_from: 0,
        ..deep_history()
    }));
    resubscribe_under_concurrent_publishers(Arc::new(hub));
}

/// `hub` with each fan-out job run on a thread of its own.
fn with_thread_jobs(hub: Hub) -> Hub {
    hub.with_fanout_executor(Arc::new(|job: FanOut| {
        std::thread::spawn(move || job.run());
    }))
}

/// A hub whose fan-out jobs wait in a list until the test runs them.
fn hub_with_held_jobs(config: HubConfig) -> (Hub, Arc<Mutex<Vec<FanOut>>>) {
    let jobs: Arc<Mutex<Vec<FanOut>>> = Arc::default();
    let held = jobs.clone();
    let hub = Hub::new(HubConfig {
        defer_fanout_from: 0,
        ..config
    })
    .with_fanout_executor(Arc::new(move |job: FanOut| held.lock().unwrap().push(job)));
    (hub, jobs)
}

fn run_jobs(jobs: &Mutex<Vec<FanOut>>) -> usize {
    let taken: Vec<FanOut> = std::mem::take(&mut *jobs.lock().unwrap());
    let n = taken.len();
    taken.into_iter().for_each(FanOut::run);
    n
}

fn seqs(frames: &[serde_json::Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}

#[test]
fn a_deferred_publication_is_sequenced_and_remembered_before_its_fan_out_runs() {
    let (hub, jobs) = hub_with_held_jobs(HubConfig::default());
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "signals", None);
    drain(&c);
    assert_eq!(publish(&hub, "signals", None).seq, 1);
    let page = hub.history("signals", None, 10, TierId::LOWEST).unwrap();
    assert_eq!((page.seq, page.publications.len()), (1, 1));
    assert!(drain(&c).is_empty(), "pushed before the job ran");
    assert_eq!(run_jobs(&jobs), 1);
    assert_eq!(seqs(&drain(&c)), [1]);
    assert_eq!(hub.stats().deliveries, 1);
}

#[test]
fn publications_that_arrive_during_a_fan_out_are_pushed_together_by_the_one_job() {
    let (hub, jobs) = hub_with_held_jobs(HubConfig::default());
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "signals", None);
    drain(&c);
    for _ in 0..3 {
        publish(&hub, "signals", None);
    }
    assert_eq!(run_jobs(&jobs), 1, "one job per channel at a time");
    assert_eq!(seqs(&drain(&c)), [1, 2, 3]);
    assert_eq!(hub.stats().deliveries, 3);
    // The job found nothing left and ended: the next publication starts another.
    publish(&hub, "signals", None);
    assert_eq!(run_jobs(&jobs), 1);
    assert_eq!(seqs(&drain(&c)), [4]);
}

#[test]
fn a_subscription_pushes_pending_publications_first_and_sees_each_exactly_once() {
    let (hub, jobs) = hub_with_held_jobs(HubConfig::default());
    let early = client(1);
    sub(&hub, &early, TierId::LOWEST, "signals", None);
    drain(&early);
    publish(&hub, "signals", None);
    publish(&hub, "signals", None);
    let late = client(2);
    let pos = sub(&hub, &late, TierId::LOWEST, "signals", None);
    assert_eq!(pos.seq, 2, "the position counts the pending publications");
    assert_eq!(seqs(&drain(&early)), [1, 2], "pushed by the subscription");
    assert_eq!(drain(&late).len(), 1, "only the subscribed reply");
    run_jobs(&jobs);
    assert!(drain(&early).is_empty() && drain(&late).is_empty());
    publish(&hub, "signals", None);
    run_jobs(&jobs);
    assert_eq!(seqs(&drain(&early)), [3]);
    assert_eq!(seqs(&drain(&late)), [3]);
}

#[test]
fn a_fan_out_job_dropped_unrun_still_delivers() {
    let hub = Hub::new(HubConfig {
        defer_fanout_from: 0,
        ..HubConfig::default()
    })
    .with_fanout_executor(Arc::new(drop));
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "signals", None);
    drain(&c);
    publish(&hub, "signals", None);
    assert_eq!(seqs(&drain(&c)), [1]);
}

#[test]
fn past_max_pending_the_publisher_pushes_the_backlog_itself() {
    let (hub, jobs) = hub_with_held_jobs(HubConfig::default());
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "signals", None);
    drain(&c);
    for _ in 0..MAX_PENDING {
        publish(&hub, "signals", None);
    }
    assert!(drain(&c).is_empty());
    publish(&hub, "signals", None);
    let expected: Vec<u64> = (1..=MAX_PENDING as u64 + 1).collect();
    assert_eq!(seqs(&drain(&c)), expected);
    run_jobs(&jobs);
    assert!(drain(&c).is_empty());
}

#[test]
fn small_channels_fan_out_in_the_publisher_even_with_an_executor() {
    let jobs: Arc<Mutex<Vec<FanOut>>> = Arc::default();
    let held = jobs.clone();
    let hub = Hub::new(HubConfig {
        defer_fanout_from: 2,
        ..HubConfig::default()
    })
    .with_fanout_executor(Arc::new(move |job: FanOut| held.lock().unwrap().push(job)));
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "signals", None);
    drain(&c);
    publish(&hub, "signals", None);
    assert_eq!(seqs(&drain(&c)), [1]);
    assert_eq!(run_jobs(&jobs), 0);
}

#[test]
fn garbage_collection_keeps_a_channel_until_its_fan_out_ran() {
    let (hub, jobs) = hub_with_held_jobs(HubConfig {
        history: HistoryLimits {
            size: 0,
            ttl_ms: 1000,
        },
        ..HubConfig::default()
    });
    publish(&hub, "quiet", None);
    hub.collect_garbage();
    assert_eq!(hub.channel_count(), 1);
    run_jobs(&jobs);
    hub.collect_garbage();
    assert_eq!(hub.channel_count(), 0);
}

#[test]
fn rebucketing_pushes_pending_publications_at_the_old_tier_first() {
    let (hub, jobs) = hub_with_held_jobs(HubConfig::default());
    let premium = TierLadder::default().parse("premium").unwrap();
    let c = client(1);
    sub(&hub, &c, premium, "signals", None);
    drain(&c);
    publish(&hub, "signals", Some(premium));
    hub.rebucket(&c, "signals", premium, TierId::LOWEST);
    publish(&hub, "signals", Some(premium));
    run_jobs(&jobs);
    let frames = drain(&c);
    assert_eq!(frames[0]["type"], "signal");
    assert_eq!(frames[1]["type"], "locked");
}

#[test]
fn flush_pushes_every_pending_publication() {
    let (hub, jobs) = hub_with_held_jobs(HubConfig::default());
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "a", None);
    sub(&hub, &c, TierId::LOWEST, "b", None);
    drain(&c);
    publish(&hub, "a", None);
    publish(&hub, "b", None);
    hub.flush();
    assert_eq!(drain(&c).len(), 2);
    run_jobs(&jobs);
    assert!(drain(&c).is_empty());
}

#[test]
fn rebucketing_a_subscriber_changes_what_it_receives() {
    let hub = Hub::new(HubConfig::default());
    let ladder = TierLadder::default();
    let premium = ladder.parse("premium").unwrap();
    let c = client(1);
    sub(&hub, &c, premium, "signals", None);
    publish(&hub, "signals", Some(premium));
    assert_eq!(drain(&c)[1]["type"], "signal");
    hub.rebucket(&c, "signals", premium, TierId::LOWEST);
    publish(&hub, "signals", Some(premium));
    assert_eq!(drain(&c)[0]["type"], "locked");
    assert_eq!(hub.stats().subscriptions, 1);
}

/// A direct sink that records what it was given and reports each write as complete.
#[derive(Debug, Default)]
struct RecordingSink {
    sent: Mutex<Vec<(Bytes, Vec<u64>)>>,
}

impl DirectSink for RecordingSink {
    fn send(&self, payload: &Bytes, targets: Vec<Target>) {
        let ids = targets.iter().map(|t| t.client.id()).collect();
        lock_sent(&self.sent).push((payload.clone(), ids));
        for target in targets {
            let framed = Bytes::from([&[0x81, payload.len() as u8][..], payload].concat());
            let len = framed.len();
            target.client.direct_done(framed, len);
        }
    }
}

fn lock_sent(m: &Mutex<Vec<(Bytes, Vec<u64>)>>) -> MutexGuard<'_, Vec<(Bytes, Vec<u64>)>> {
    m.lock().unwrap()
}

/// Subscribes a client, takes the `subscribed` reply and parks it idle on a socket.
fn parked_subscriber(hub: &Hub, id: u64, channel: &str) -> Arc<Client> {
    let c = client(id);
    sub(hub, &c, TierId::LOWEST, channel, None);
    drain(&c);
    c.park_idle(100 + id as i32);
    c
}

#[test]
fn publications_to_parked_subscribers_go_to_the_direct_sink_in_one_batch() {
    let sink = Arc::new(RecordingSink::default());
    let hub = Hub::new(HubConfig::default()).with_direct_sink(sink.clone());
    let a = parked_subscriber(&hub, 1, "prices");
    let b = parked_subscriber(&hub, 2, "prices");
    let busy = client(3);
    sub(&hub, &busy, TierId::LOWEST, "prices", None);
    publish(&hub, "prices", None);
    let sent = lock_sent(&sink.sent);
    assert_eq!(sent.len(), 1);
    let mut ids = sent[0].1.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert!(drain(&a).is_empty() && drain(&b).is_empty());
    // The client that never parked got it through its outbox, after its reply.
    assert_eq!(drain(&busy).len(), 2);
    assert_eq!(hub.stats().deliveries, 3);
    assert_eq!(hub.stats().direct_deliveries, 2);
}

#[test]
fn a_burst_is_queued_for_the_connections_to_coalesce() {
    let sink = Arc::new(RecordingSink::default());
    let hub = Hub::new(HubConfig::default()).with_direct_sink(sink.clone());
    let a = parked_subscriber(&hub, 1, "prices");
    publish(&hub, "prices", None);
    // The sink completed the write, so the client is idle again; the next publication
    // comes right after, within the burst gap.
    publish(&hub, "prices", None);
    assert_eq!(lock_sent(&sink.sent).len(), 1);
    let queued = drain(&a);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["seq"], 2);
    a.park_idle(101);
    hub.advance_clock(DIRECT_MIN_GAP_MS);
    publish(&hub, "prices", None);
    assert_eq!(lock_sent(&sink.sent).len(), 2);
}

/// A direct sink that holds the first `send` until released, to catch a fan-out mid-pass.
#[derive(Debug, Default)]
struct GateSink {
    entered: Mutex<bool>,
    released: Mutex<bool>,
    done: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl GateSink {
    fn wait(&self, flag: &Mutex<bool>) {
        let mut set = flag.lock().unwrap();
        while !*set {
            set = self.changed.wait(set).unwrap();
        }
    }

    fn set(&self, flag: &Mutex<bool>) {
        *flag.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

impl DirectSink for GateSink {
    fn send(&self, payload: &Bytes, targets: Vec<Target>) {
        self.set(&self.entered);
        self.wait(&self.released);
        RecordingSink::default().send(payload, targets);
        self.set(&self.done);
    }
}

#[test]
fn flush_waits_for_a_fan_out_pass_in_progress() {
    let sink = Arc::new(GateSink::default());
    let hub = Hub::new(HubConfig {
        defer_fanout_from: 0,
        ..HubConfig::default()
    })
    .with_direct_sink(sink.clone());
    let hub = with_thread_jobs(hub);
    let _parked = parked_subscriber(&hub, 1, "system");
    publish(&hub, "system", None);
    // The job took the publication and is inside the sink: nothing is pending any more.
    sink.wait(&sink.entered);
    let releaser = {
        let sink = sink.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            sink.set(&sink.released);
        })
    };
    hub.flush();
    assert!(*sink.done.lock().unwrap(), "flush returned mid-pass");
    releaser.join().unwrap();
}

/// A direct sink whose first `send` panics (after reporting its targets).
#[derive(Debug, Default)]
struct PanicOnceSink(std::sync::atomic::AtomicBool);

impl DirectSink for PanicOnceSink {
    fn send(&self, payload: &Bytes, targets: Vec<Target>) {
        if !self.0.swap(true, Ordering::SeqCst) {
            for t in &targets {
                t.client.direct_done(payload.clone(), payload.len());
            }
            panic!("sink failed once");
        }
        RecordingSink::default().send(payload, targets);
    }
}

#[test]
fn a_fan_out_that_panics_does_not_keep_later_publications_from_going_out() {
    let hub = Hub::new(HubConfig::default()).with_direct_sink(Arc::new(PanicOnceSink::default()));
    let _parked = parked_subscriber(&hub, 1, "system");
    let other = client(2);
    sub(&hub, &other, TierId::LOWEST, "system", None);
    drain(&other);
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        publish(&hub, "system", None)
    }));
    assert!(first.is_err());
    drain(&other);
    publish(&hub, "system", None);
    assert_eq!(seqs(&drain(&other)), [2]);
}

/// Four publishers over three channels, garbage collection and flushes in a loop, and three
/// clients that subscribe to all three with `since`, rebucket and unsubscribe over and over:
/// each client sees every channel gap-free, and a client subscribed throughout gets all.
fn stress_subscribe_rebucket_gc(hub: Arc<Hub>) {
    use std::sync::atomic::AtomicBool;
    const CHANNELS: [&str; 3] = ["a", "b", "c"];
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = client(999);
    let items: Vec<SubscribeItem<'_>> = CHANNELS
        .iter()
        .map(|channel| SubscribeItem {
            channel,
            since: None,
            held: false,
        })
        .collect();
    let kept = hub.subscribe(&keeper, TierId::LOWEST, &items, subscribed);
    let publishers: Vec<_> = (0..4)
        .map(|t| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for i in 0..3000usize {
                    publish(&hub, CHANNELS[(i + t) % 3], None);
                    if i % 4 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    let collector = {
        let (hub, stop) = (hub.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                hub.collect_garbage();
                hub.flush();
                std::thread::yield_now();
            }
        })
    };
    let checkers: Vec<_> = (0..3u64)
        .map(|n| {
            let (hub, stop) = (hub.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = client(100 + n);
                let mut last: HashMap<String, (String, u64)> = HashMap::new();
                let mut tier = TierId::LOWEST;
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) || rounds == 0 {
                    let sinces: Vec<(&str, Option<Since>)> = CHANNELS
                        .iter()
                        .map(|ch| {
                            let since = last.get(*ch).map(|(epoch, seq)| Since {
                                epoch: epoch.clone(),
                                seq: *seq,
                            });
                            (*ch, since)
                        })
                        .collect();
                    let items: Vec<SubscribeItem<'_>> = sinces
                        .iter()
                        .map(|(channel, since)| SubscribeItem {
                            channel,
                            since: since.as_ref(),
                            held: false,
                        })
                        .collect();
                    for p in hub.subscribe(&c, tier, &items, subscribed) {
                        if let Some((epoch, _)) = last.get(&*p.channel) {
                            assert!(p.recovered && **epoch == *p.epoch, "{p:?}");
                        }
                        last.entry(p.channel.to_string())
                            .or_insert((p.epoch.to_string(), p.seq));
                    }
                    let to = if tier == TierId::LOWEST {
                        TierId(1)
                    } else {
                        TierId::LOWEST
                    };
                    for ch in CHANNELS {
                        hub.rebucket(&c, ch, tier, to);
                    }
                    tier = to;
                    for ch in CHANNELS {
                        hub.unsubscribe(c.id(), ch, tier);
                    }
                    for f in drain(&c).iter().filter(|f| f["type"] != "subscribed") {
                        let position = last.get_mut(f["channel"].as_str().unwrap()).unwrap();
                        let seq = f["seq"].as_u64().unwrap();
                        assert_eq!(seq, position.1 + 1, "gap or duplicate on {f}");
                        position.1 = seq;
                    }
                    rounds += 1;
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    collector.join().unwrap();
    for c in checkers {
        c.join().unwrap();
    }
    hub.flush();
    let mut got: HashMap<String, Vec<u64>> = HashMap::new();
    for f in drain(&keeper).iter().filter(|f| f["type"] != "subscribed") {
        got.entry(f["channel"].as_str().unwrap().to_string())
            .or_default()
            .push(f["seq"].as_u64().unwrap());
    }
    for p in &kept {
        let last = hub
            .history(&p.channel, None, 0, TierId::LOWEST)
            .unwrap()
            .seq;
        let want: Vec<u64> = (p.seq + 1..=last).collect();
        assert_eq!(
            got.remove(&*p.channel).unwrap_or_default(),
            want,
            "{}",
            p.channel
        );
    }
}

fn roomy_history() -> HubConfig {
    HubConfig {
        history: HistoryLimits {
            size: 200_000,
            ttl_ms: 600_000,
        },
        ..deep_history()
    }
}

#[test]
fn under_load_with_gc_and_rebucketing_every_client_sees_every_channel_gap_free() {
    stress_subscribe_rebucket_gc(Arc::new(Hub::new(roomy_history())));
}

#[test]
fn with_fan_out_jobs_under_load_with_gc_and_rebucketing_every_client_sees_every_channel_gap_free() {
    let hub = with_thread_jobs(Hub::new(HubConfig {
        defer_fanout_from: 0,
        ..roomy_history()
    }));
    stress_subscribe_rebucket_gc(Arc::new(hub));
}

/// A connection's waker that, on each wake-up, takes what was pushed, waits again and
/// publishes once more on the channel (as another publisher would meanwhile).
struct Republish {
    hub: std::sync::Weak<Hub>,
    client: Arc<Client>,
    wakes: AtomicUsize,
}

impl std::task::Wake for Republish {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waker = Waker::from(self.clone());
        self.client.take(&mut VecDeque::new(), &waker);
        if self.wakes.fetch_add(1, Ordering::SeqCst) < 100 {
            publish(&self.hub.upgrade().unwrap(), "busy", None);
        }
    }
}

#[test]
fn a_publisher_fanning_out_a_small_channel_hands_what_others_keep_publishing_to_the_executor() {
    let jobs: Arc<Mutex<Vec<FanOut>>> = Arc::default();
    let held = jobs.clone();
    let hub = Arc::new(
        Hub::new(HubConfig {
            defer_fanout_from: usize::MAX,
            ..HubConfig::default()
        })
        .with_fanout_executor(Arc::new(move |job: FanOut| held.lock().unwrap().push(job))),
    );
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "busy", None);
    let republish = Arc::new(Republish {
        hub: Arc::downgrade(&hub),
        client: c.clone(),
        wakes: AtomicUsize::new(0),
    });
    c.take(&mut VecDeque::new(), &Waker::from(republish.clone()));
    publish(&hub, "busy", None);
    // The publisher pushed its own publication and three published meanwhile, then handed
    // the channel's job over with one still pending.
    assert_eq!(republish.wakes.load(Ordering::SeqCst), INLINE_PASSES);
    assert_eq!(run_jobs(&jobs), 1);
    assert_eq!(republish.wakes.load(Ordering::SeqCst), 101);
    assert_eq!(hub.stats().publications, 101);
    assert_eq!(hub.stats().deliveries, 101);
}

fn publish_sized(hub: &Hub, channel: &str, bytes: usize) -> Result<Published, PublishError> {
    let d = data(&format!("{{\"pad\":\"{}\"}}", "x".repeat(bytes)));
    hub.publish(
        channel,
        &Publication {
            kind: "signal",
            id: "p1",
            timestamp: "2025-01-01T00:00:00.000Z",
            tier: None,
            data: &d,
        },
    )
    .into_ready()
    .expect("the memory broker answers at once")
}

fn small_queue() -> HubConfig {
    HubConfig {
        max_queue_bytes: 4096,
        ..deep_history()
    }
}

#[test]
fn a_publication_whose_envelope_cannot_fit_the_outbound_queue_is_refused() {
    let hub = Hub::new(small_queue());
    let c = client(1);
    sub(&hub, &c, TierId::LOWEST, "ch", None);
    drain(&c);
    let refused = publish_sized(&hub, "ch", 4096);
    assert!(matches!(
        refused,
        Err(PublishError::TooLarge { limit: 4096, .. })
    ));
    // Nothing was sequenced or delivered, and the subscriber is still open.
    assert!(drain(&c).is_empty());
    assert!(!c.is_closing());
    assert_eq!(publish_sized(&hub, "ch", 100).unwrap().seq, 1);
}

#[test]
fn a_replay_that_would_overflow_the_outbound_queue_is_not_sent_and_not_recovered() {
    let hub = Hub::new(small_queue());
    let first = publish_sized(&hub, "ch", 500).unwrap();
    for _ in 0..19 {
        publish_sized(&hub, "ch", 500).unwrap();
    }
    let c = client(1);
    let since = Since {
        epoch: first.epoch.to_string(),
        seq: 0,
    };
    let position = sub(&hub, &c, TierId::LOWEST, "ch", Some(&since));
    assert!(!position.recovered);
    assert_eq!(position.seq, 20);
    let frames = drain(&c);
    assert_eq!(frames.len(), 1, "only the reply frame");
    assert!(
        !c.is_closing(),
        "the subscriber is not closed for its history"
    );
    // Live publications still come.
    publish_sized(&hub, "ch", 10).unwrap();
    assert_eq!(seqs(&drain(&c)), [21]);
}

#[test]
fn a_replay_that_fits_the_outbound_queue_is_still_recovered() {
    let hub = Hub::new(small_queue());
    let first = publish_sized(&hub, "ch", 100).unwrap();
    publish_sized(&hub, "ch", 100).unwrap();
    let c = client(1);
    let since = Since {
        epoch: first.epoch.to_string(),
        seq: 1,
    };
    assert!(sub(&hub, &c, TierId::LOWEST, "ch", Some(&since)).recovered);
    assert_eq!(seqs(&drain(&c)), [2]);
}

#[test]
fn latest_value_snapshots_that_would_overflow_the_outbound_queue_are_left_out() {
    let hub = Hub::new(HubConfig {
        latest_value: vec![Glob::Prefix("price:".into())],
        ..small_queue()
    });
    for i in 0..4 {
        publish_sized(&hub, &format!("price:{i}"), 1500).unwrap();
    }
    let c = client(1);
    let names: Vec<String> = (0..4).map(|i| format!("price:{i}")).collect();
    let items: Vec<SubscribeItem<'_>> = names
        .iter()
        .map(|channel| SubscribeItem {
            channel,
            since: None,
            held: false,
        })
        .collect();
    hub.subscribe(&c, TierId::LOWEST, &items, subscribed);
    assert!(!c.is_closing());
    let frames = drain(&c);
    // The reply, then as many snapshots as fit in 4 KiB.
    assert!(frames.len() >= 2 && frames.len() < 5, "{}", frames.len());
}
