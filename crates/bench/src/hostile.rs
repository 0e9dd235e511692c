//! `signalhub-bench hostile`: a quiet subscriber's delivery latency while hostile connections
//! send the most expensive frames the server's limits allow (issue #10 item 1).
//!
//! One server is started; one quiet subscriber holds channel `quiet`, which is published to
//! at `--rate` over HTTP for the whole run. The run is a series of phases, `off, on, off, on,
//! ...` (`--rounds` of each, `--phase-s` long, with `--gap-s` between them whose samples are
//! not counted): in an `on` phase `--hostile` connections are opened and each sends, paced by
//! its own copy of the server's two buckets (data frames and channel operations), frames of
//! `--frame-bytes` bytes: a `subscribe` of `--channels-per-frame` new 128-character names, then
//! an `unsubscribe` of the same, whenever the channel-operations bucket has room, and pings
//! padded to the same size with every other frame the frame bucket allows. They connect at the
//! start of the phase, so every `on` phase includes both buckets' full bursts, and close at
//! its end. Latency = receive time - the send time stamped in the publication; the report
//! gives p50/p99/max per phase, the medians over the `off` and `on` phases and their ratio,
//! the server's CPU per phase, and what the hostile connections were answered.
//!
//! The subscriber and the publisher run on one thread, the hostile connections on another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::cli::HostileArgs;
use crate::frame::parse_publication;
use crate::report::{percentiles_ms, round3, Percentiles};
use crate::server_proc::{read_cpu_us, start_server};
use crate::subscriber::unix_ns;
use crate::target::parse_target;
use crate::ws::{self, Frame, FrameReader, OP_CLOSE, OP_TEXT};

/// Phase number of publications sent between phases (not counted).
const GAP: u64 = 0xFFFF;
/// A publication's `i` is `phase << 32 | n`.
const PHASE_SHIFT: u32 = 32;

#[derive(Debug, Default, Serialize)]
struct Answers {
    connections: u64,
    frames_sent: u64,
    channel_frames_sent: u64,
    applied: u64,
    pongs: u64,
    rate_limited: u64,
    other_errors: u64,
    /// Close codes from the server (by code), "none" when a connection ended without one.
    closes: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct PhaseReport {
    phase: &'static str,
    round: usize,
    samples: u64,
    latency_ms: Percentiles,
    server_cpu_ms: Option<f64>,
    hostile: Option<Answers>,
}

#[derive(Debug, Serialize)]
struct HostileReport {
    hostile: usize,
    rounds: usize,
    phase_s: u64,
    rate: f64,
    frame_bytes: usize,
    channels_per_frame: usize,
    phases: Vec<PhaseReport>,
    off_p50_ms_median: Option<f64>,
    off_p99_ms_median: Option<f64>,
    on_p50_ms_median: Option<f64>,
    on_p99_ms_median: Option<f64>,
    /// on p99 median / off p99 median.
    p99_ratio: Option<f64>,
    p50_ratio: Option<f64>,
    published: u64,
    delivered: u64,
    in_order: bool,
}

/// Runs the whole series and prints its one-line JSON report; the exit status.
pub fn run(args: HostileArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signalhub-bench hostile: runtime: {e}");
            return 2;
        }
    };
    match runtime.block_on(series(args)) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).expect("report"));
            0
        }
        Err(e) => {
            eprintln!("signalhub-bench hostile: {e}");
            2
        }
    }
}

async fn series(args: HostileArgs) -> Result<HostileReport, String> {
    let api_key = format!("bench-{:x}{:x}", unix_ns(), std::process::id());
    let server = start_server(&args.server_bin, &[], &args.server_env, &api_key)
        .await
        .map_err(|e| format!("server: {e}"))?;
    let target = parse_target(&server.listen)?;
    let pid = server.pid;

    // The quiet subscriber.
    let mut quiet = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = quiet.set_nodelay(true);
    let mut reader = FrameReader::new();
    ws::handshake(&mut quiet, &mut reader, &target.host, "/ws").await?;
    ws::send_frame(
        &mut quiet,
        OP_TEXT,
        br#"{"type":"subscribe","id":1,"channels":["quiet"]}"#,
    )
    .await
    .map_err(|e| format!("subscribe: {e}"))?;

    let phases = args.rounds * 2;
    let histograms: Vec<Histogram<u64>> = (0..phases)
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"))
        .collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let (done_tx, mut done_rx) = watch::channel(false);
    let subscriber = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            let mut histograms = histograms;
            let mut last_seq: Option<u64> = None;
            let mut in_order = true;
            loop {
                loop {
                    match reader.next() {
                        Ok(Some(Frame::Text(text))) => {
                            let Some(p) = parse_publication(text) else {
                                continue;
                            };
                            let now = unix_ns();
                            if let Some(last) = last_seq {
                                in_order &= p.seq == last + 1;
                            }
                            last_seq = Some(p.seq);
                            delivered.fetch_add(1, Ordering::Relaxed);
                            let (Some(t), Some(i)) = (p.t, p.i) else {
                                continue;
                            };
                            let phase = i >> PHASE_SHIFT;
                            if let Some(h) = histograms.get_mut(phase as usize) {
                                let _ = h.record((now.saturating_sub(t) / 1000).max(1));
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => return Err(format!("quiet subscriber: {e}")),
                    }
                }
                tokio::select! {
                    n = quiet.read(reader.spare()) => match n {
                        Ok(0) | Err(_) => return Err("quiet subscriber disconnected".to_string()),
                        Ok(n) => reader.filled(n),
                    },
                    _ = done_rx.wait_for(|d| *d) => return Ok((histograms, in_order)),
                }
            }
        })
    };

    // The hostile connections, on their own thread.
    let (on_tx, on_rx) = watch::channel(false);
    let (answers_tx, mut answers_rx) = tokio::sync::mpsc::unbounded_channel::<Answers>();
    let hostile_thread = {
        let args = args.clone();
        let addr = target.addr;
        let host = target.host.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("hostile runtime");
            rt.block_on(hostile_phases(args, addr, host, on_rx, answers_tx));
        })
    };

    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/publish", target.http_base);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut published = 0u64;
    let mut phase_reports = Vec::new();
    let publish_for = |phase: u64, for_s: f64| {
        let client = client.clone();
        let url = url.clone();
        let api_key = api_key.clone();
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(for_s);
        async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0u64;
            let mut ok = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                let i = (phase << PHASE_SHIFT) | n;
                n += 1;
                let data = crate::publisher::payload(unix_ns(), i, 100);
                let body = format!(r#"{{"channel":"quiet","type":"bench","data":{data}}}"#);
                let sent = client
                    .post(&url)
                    .bearer_auth(&api_key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                if matches!(&sent, Ok(r) if r.status().is_success()) {
                    ok += 1;
                } else {
                    eprintln!("publish failed: {sent:?}");
                }
            }
            ok
        }
    };

    published += publish_for(GAP, args.gap_s).await;
    for phase in 0..phases {
        let on = phase % 2 == 1;
        let round = phase / 2 + 1;
        eprintln!("round {round}: hostile {}", if on { "on" } else { "off" });
        on_tx.send_replace(on);
        let cpu_before = read_cpu_us(pid).ok();
        published += publish_for(phase as u64, args.phase_s as f64).await;
        let cpu_after = read_cpu_us(pid).ok();
        on_tx.send_replace(false);
        let hostile = if on { answers_rx.recv().await } else { None };
        phase_reports.push(PhaseReport {
            phase: if on { "on" } else { "off" },
            round,
            samples: 0,
            latency_ms: percentiles_ms(&Histogram::<u64>::new(3).expect("histogram")),
            server_cpu_ms: match (cpu_before, cpu_after) {
                (Some(a), Some(b)) => Some(round3(b.saturating_sub(a) as f64 / 1000.0)),
                _ => None,
            },
            hostile,
        });
        published += publish_for(GAP, args.gap_s).await;
    }
    drop(on_tx);
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    done_tx.send_replace(true);
    let (histograms, in_order) = subscriber
        .await
        .map_err(|e| format!("subscriber task: {e}"))??;
    let _ = hostile_thread.join();
    server.stop().await;

    for (report, h) in phase_reports.iter_mut().zip(&histograms) {
        report.samples = h.len();
        report.latency_ms = percentiles_ms(h);
    }
    let median = |on: bool, f: fn(&Percentiles) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = phase_reports
            .iter()
            .filter(|p| (p.phase == "on") == on)
            .filter_map(|p| f(&p.latency_ms))
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let off_p50 = median(false, |p| p.p50);
    let off_p99 = median(false, |p| p.p99);
    let on_p50 = median(true, |p| p.p50);
    let on_p99 = median(true, |p| p.p99);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(round3(a / b)),
        _ => None,
    };
    Ok(HostileReport {
        hostile: args.hostile,
        rounds: args.rounds,
        phase_s: args.phase_s,
        rate: args.rate,
        frame_bytes: args.frame_bytes,
        channels_per_frame: args.channels_per_frame,
        p99_ratio: ratio(on_p99, off_p99),
        p50_ratio: ratio(on_p50, off_p50),
        off_p50_ms_median: off_p50,
        off_p99_ms_median: off_p99,
        on_p50_ms_median: on_p50,
        on_p99_ms_median: on_p99,
        phases: phase_reports,
        published,
        delivered: delivered.load(Ordering::Relaxed),
        in_order,
    })
}

/// Waits for each `on` phase, runs the hostile connections through it, and reports what they
/// were answered once it ends.
async fn hostile_phases(
    args: HostileArgs,
    addr: std::net::SocketAddr,
    host: String,
    mut on: watch::Receiver<bool>,
    answers: tokio::sync::mpsc::UnboundedSender<Answers>,
) {
    loop {
        if on.wait_for(|on| *on).await.is_err() {
            return;
        }
        let tasks: Vec<_> = (0..args.hostile)
            .map(|k| {
                let args = args.clone();
                let host = host.clone();
                let on = on.clone();
                tokio::spawn(async move { offend(&args, addr, &host, k, on).await })
            })
            .collect();
        let mut total = Answers::default();
        for task in tasks {
            let Ok(a) = task.await else { continue };
            total.connections += a.connections;
            total.frames_sent += a.frames_sent;
            total.channel_frames_sent += a.channel_frames_sent;
            total.applied += a.applied;
            total.pongs += a.pongs;
            total.rate_limited += a.rate_limited;
            total.other_errors += a.other_errors;
            for (code, n) in a.closes {
                *total.closes.entry(code).or_default() += n;
            }
        }
        if answers.send(total).is_err() {
            return;
        }
    }
}

/// The client's copy of a server bucket (GCRA, as in the server's `ws/rate.rs`).
struct Mirror {
    interval_ns: u64,
    tolerance_ns: u64,
    tat_ns: u64,
}

impl Mirror {
    fn new(per_second: f64, burst: u64) -> Mirror {
        let interval_ns = (1e9 / per_second) as u64;
        Mirror {
            interval_ns,
            tolerance_ns: interval_ns * burst,
            tat_ns: 0,
        }
    }

    /// When `n` tokens will be there (now or later), in ns on `clock`.
    fn ready_at(&self, now: u64, n: u64) -> u64 {
        let tat = self.tat_ns.max(now);
        (tat + n * self.interval_ns)
            .saturating_sub(self.tolerance_ns)
            .max(now)
    }

    fn take(&mut self, now: u64, n: u64) {
        self.tat_ns = self.tat_ns.max(now) + n * self.interval_ns;
    }
}

fn channel_frame(kind: &str, who: usize, set: u64, args: &HostileArgs) -> Vec<u8> {
    let names: Vec<String> = (0..args.channels_per_frame)
        .map(|j| {
            let mut name = format!("h{who}x{set}x{j}x");
            while name.len() < 128 {
                name.push('y');
            }
            name
        })
        .collect();
    let head = serde_json::json!({"type": kind, "id": set, "channels": names}).to_string();
    pad(head, args.frame_bytes)
}

/// `json` (an object) with a `pad` string field making it `size` bytes when it can.
fn pad(json: String, size: usize) -> Vec<u8> {
    let body = json.trim_end_matches('}');
    let fill = size.saturating_sub(body.len() + ",\"pad\":\"\"}".len());
    format!("{body},\"pad\":\"{}\"}}", "z".repeat(fill)).into_bytes()
}

/// One hostile connection for one `on` phase.
async fn offend(
    args: &HostileArgs,
    addr: std::net::SocketAddr,
    host: &str,
    who: usize,
    mut on: watch::Receiver<bool>,
) -> Answers {
    let mut answers = Answers::default();
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        *answers.closes.entry("connect_failed".into()).or_default() += 1;
        return answers;
    };
    let mut reader = FrameReader::new();
    if ws::handshake(&mut stream, &mut reader, host, "/ws")
        .await
        .is_err()
    {
        *answers.closes.entry("handshake_failed".into()).or_default() += 1;
        return answers;
    }
    answers.connections = 1;
    let (mut rd, mut wr) = stream.into_split();
    let tally = tokio::spawn(async move {
        let mut a = Answers::default();
        loop {
            loop {
                match reader.next() {
                    Ok(Some(Frame::Text(text))) => {
                        let v: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
                        match (v["type"].as_str(), v["code"].as_str()) {
                            (Some("subscribed" | "unsubscribed"), _) => a.applied += 1,
                            (Some("pong"), _) => a.pongs += 1,
                            (Some("error"), Some("rate_limited")) => a.rate_limited += 1,
                            (Some("error"), _) => a.other_errors += 1,
                            _ => {}
                        }
                    }
                    Ok(Some(Frame::Close(code, _))) => {
                        let code = code.map_or("none".to_string(), |c| c.to_string());
                        *a.closes.entry(code).or_default() += 1;
                        return a;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        *a.closes.entry("protocol_error".into()).or_default() += 1;
                        return a;
                    }
                }
            }
            match rd.read(reader.spare()).await {
                Ok(0) | Err(_) => {
                    *a.closes.entry("none".into()).or_default() += 1;
                    return a;
                }
                Ok(n) => reader.filled(n),
            }
        }
    });

    // Paced a little under the server's rates so that clock differences cause no refusals.
    let mut frames = Mirror::new(args.frames_per_second * 0.97, args.frames_burst - 2);
    let mut ops = Mirror::new(args.ops_per_second * 0.97, args.ops_burst - 2);
    let filler = pad(r#"{"type":"ping"}"#.to_string(), args.frame_bytes);
    let clock = Instant::now();
    let now_ns = || clock.elapsed().as_nanos() as u64;
    let n_ops = args.channels_per_frame as u64;
    let mut set = 0u64;
    let mut subscribing = true;
    let mut out = Vec::with_capacity(args.frame_bytes + 16);
    loop {
        let now = now_ns();
        let frame_at = frames.ready_at(now, 1);
        let ops_at = ops.ready_at(now, n_ops).max(frame_at);
        // A channel frame whenever the budget allows one, else a padded ping.
        let (at, channel) = if ops_at <= frame_at {
            (ops_at, true)
        } else {
            (frame_at, false)
        };
        if at > now {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_nanos(at - now)) => {}
                _ = on.wait_for(|on| !*on) => break,
            }
        }
        if !*on.borrow() {
            break;
        }
        let now = now_ns();
        frames.take(now, 1);
        out.clear();
        if channel {
            ops.take(now, n_ops);
            let kind = if subscribing {
                "subscribe"
            } else {
                "unsubscribe"
            };
            let payload = channel_frame(kind, who, set, args);
            if !subscribing {
                set += 1;
            }
            subscribing = !subscribing;
            ws::client_frame(OP_TEXT, &payload, rand::random(), &mut out);
            answers.channel_frames_sent += 1;
        } else {
            ws::client_frame(OP_TEXT, &filler, rand::random(), &mut out);
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
        answers.frames_sent += 1;
    }
    out.clear();
    ws::client_frame(OP_CLOSE, &1000u16.to_be_bytes(), rand::random(), &mut out);
    let _ = wr.write_all(&out).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), tally).await;
    if let Ok(Ok(a)) = seen {
        answers.applied = a.applied;
        answers.pongs = a.pongs;
        answers.rate_limited = a.rate_limited;
        answers.other_errors = a.other_errors;
        answers.closes = a.closes;
    } else {
        *answers
            .closes
            .entry("no_close_within_5s".into())
            .or_default() += 1;
    }
    answers
}
