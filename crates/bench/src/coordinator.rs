//! The coordinator: starts (or finds) the server, runs the worker processes through connect,
//! publish and close, reads the server's /proc figures and builds the report.

use std::process::Stdio;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::mpsc;

use crate::cli::{Mode, RunArgs};
use crate::protocol::{decode_hist, new_hist, to_line, Command, WorkerEvent};
use crate::publisher::{publish, Payload, PublishPlan, PublishStats};
use crate::report::{percentiles_ms, round3, Report};
use crate::server_proc::{read_cpu_us, read_rss_bytes, start_server};
use crate::subscriber::unix_ns;
use crate::target::{parse_target, source_base, Target, MAX_SOURCE_IPS};

/// Connections one worker process holds by default.
const CONNECTIONS_PER_WORKER: usize = 15_000;
/// Below this many connections per core, fewer worker processes than cores are started.
const MIN_CONNECTIONS_PER_CORE_WORKER: usize = 1_000;
/// File descriptors a worker keeps for itself besides its connections.
const SPARE_FDS: u64 = 64;

/// The sizes a run works with, after defaults and checks.
struct Plan {
    workers: usize,
    per_worker: usize,
    source_ips: usize,
    /// The one channel every connection subscribes to, if not `{prefix}-{k}`.
    channel: Option<String>,
}

/// A channel name as the protocol allows it (section 1).
fn valid_channel(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=128).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"_.:@-".contains(&c))
}

/// `cores`: the machine's cores; by default each gets a reader process (a reader is one
/// thread, and one thread reading 10,000 sockets takes 60-90 ms per publication here, which
/// a single reader would add to every latency it measures).
fn plan(args: &RunArgs, nofile: u64, cores: usize) -> Result<Plan, String> {
    let n = args.connections;
    if args.server_bin.is_none() && !(args.server_args.is_empty() && args.server_env.is_empty()) {
        return Err("--server-arg and --server-env need --server-bin".into());
    }
    if n > 1_000_000 {
        return Err("--connections must be within 0..=1000000".into());
    }
    if args.channels == 0 || args.channels > n.max(1) {
        return Err("--channels must be within 1..=connections".into());
    }
    let channel = match (&args.channel, args.mode) {
        (Some(c), _) => Some(c.clone()),
        (None, Mode::Signals) => Some(format!("signals:pair:{}", args.pair)),
        (None, Mode::Publish) => None,
    };
    if channel.is_some() && args.channels != 1 {
        return Err("--channels > 1 does not go with --channel or --mode signals".into());
    }
    if let Some(c) = &channel {
        if !valid_channel(c) {
            return Err(format!("--channel {c:?} is not a valid channel name"));
        }
    }
    if !valid_channel(&format!("{}-0", args.channel_prefix)) {
        return Err("--channel-prefix must make valid channel names".into());
    }
    let pair_ok = (1..=32).contains(&args.pair.len())
        && args
            .pair
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || b"._-".contains(&c));
    if !pair_ok {
        return Err("--pair must match ^[A-Z0-9._-]{1,32}$".into());
    }
    if args.concurrency == 0 || args.publish_concurrency == 0 || args.per_ip == 0 {
        return Err("--concurrency, --publish-concurrency and --per-ip must be >= 1".into());
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err("--rate must be a number >= 0".into());
    }
    if n == 0 {
        return Ok(Plan {
            workers: 0,
            per_worker: 0,
            source_ips: 0,
            channel,
        });
    }
    if args.messages.saturating_mul(args.channels as u64) > 10_000_000 {
        return Err("--messages x --channels is limited to 10,000,000 publishes".into());
    }
    if args.payload_bytes > 512 * 1024 {
        return Err("--payload-bytes is limited to 524288".into());
    }
    if args.timeout_s == 0 || args.timeout_s > 3600 || args.connect_timeout_s == 0 {
        return Err("--timeout-s must be within 1..=3600, --connect-timeout-s >= 1".into());
    }
    if !args.ws_path.starts_with('/') {
        return Err("--ws-path must start with /".into());
    }
    let workers = args
        .workers
        .unwrap_or_else(|| {
            n.div_ceil(CONNECTIONS_PER_WORKER)
                .max(cores.min(n.div_ceil(MIN_CONNECTIONS_PER_CORE_WORKER)))
        })
        .clamp(1, n);
    let per_worker = n.div_ceil(workers);
    if per_worker as u64 + SPARE_FDS > nofile {
        return Err(format!(
            "{per_worker} connections per worker exceed the open-files limit {nofile}: use more --workers"
        ));
    }
    let source_ips = args
        .source_ips
        .unwrap_or_else(|| n.div_ceil(args.per_ip))
        .clamp(1, n.min(MAX_SOURCE_IPS));
    Ok(Plan {
        workers: n.div_ceil(per_worker),
        per_worker,
        source_ips,
        channel,
    })
}

/// Runs the whole bench. Errors are setup failures; an incomplete delivery is a report.
pub async fn run(args: RunArgs) -> Result<Report, String> {
    let nofile =
        crate::sys::raise_nofile_limit().map_err(|e| format!("cannot raise RLIMIT_NOFILE: {e}"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = plan(&args, nofile, cores)?;
    if let Some(bin) = &args.server_bin {
        let api_key = format!("bench-{:x}{:x}", unix_ns(), std::process::id());
        let server = start_server(bin, &args.server_args, &args.server_env, &api_key)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("server pid {} listening on {}", server.pid, server.listen);
        let result = match parse_target(&server.listen) {
            Ok(target) => bench(&args, &plan, &target, &api_key, Some(server.pid)).await,
            Err(e) => Err(e),
        };
        server.stop().await;
        result
    } else if let Some(url) = &args.url {
        let target = parse_target(url)?;
        let api_key = match (&args.api_key, args.messages) {
            (Some(k), _) => k.clone(),
            (None, 0) => String::new(),
            (None, _) => return Err("--api-key (a publisher key) is needed to publish".into()),
        };
        bench(&args, &plan, &target, &api_key, args.server_pid).await
    } else {
        Err("give --server-bin PATH or --url http://127.0.0.1:PORT".into())
    }
}

/// One worker's `done` report.
struct Done {
    latency: Histogram<u64>,
    delivered: u64,
    in_order: bool,
    duplicates: u64,
    out_of_order: u64,
    disconnected: u64,
    last_delivery_unix_ns: u64,
    cpu_us: u64,
}

/// The worker processes and the merged stream of their events.
struct Workers {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    /// (worker index, event); None when the worker's stdout ended.
    events: mpsc::UnboundedReceiver<(usize, Option<WorkerEvent>)>,
}

impl Workers {
    fn spawn(args: &RunArgs, plan: &Plan, target: &Target) -> Result<Workers, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let (tx, events) = mpsc::unbounded_channel();
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        let concurrency = args.concurrency.div_ceil(plan.workers.max(1));
        for w in 0..plan.workers {
            let first = w * plan.per_worker;
            let count = plan.per_worker.min(args.connections - first);
            let mut child = Process::new(&exe)
                .arg("worker")
                .args(["--addr", &target.addr.to_string()])
                .args(["--host", &target.host])
                .args(["--ws-path", &args.ws_path])
                .args(["--reader", args.reader.as_arg()])
                .args(["--first", &first.to_string()])
                .args(["--connections", &count.to_string()])
                .args(["--concurrency", &concurrency.to_string()])
                .args(["--threads", &args.worker_threads.to_string()])
                .args(["--channels", &args.channels.to_string()])
                .args(["--channel-prefix", &args.channel_prefix])
                .args(plan.channel.iter().flat_map(|c| ["--channel", c]))
                .args(["--source-base", &source_base(&target.addr).to_string()])
                .args(["--source-ips", &plan.source_ips.to_string()])
                .args(["--messages", &args.messages.to_string()])
                .args(["--connect-timeout-s", &args.connect_timeout_s.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("starting worker: {e}"))?;
            stdins.push(child.stdin.take());
            let stdout = child.stdout.take().expect("piped stdout");
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<WorkerEvent>(&line) {
                        Ok(event) => {
                            let _ = tx.send((w, Some(event)));
                        }
                        Err(e) => eprintln!("worker {w}: bad line ({e}): {line}"),
                    }
                }
                let _ = tx.send((w, None));
            });
            children.push(child);
        }
        Ok(Workers {
            children,
            stdins,
            events,
        })
    }

    async fn tell(&mut self, w: usize, cmd: &Command) {
        if let Some(stdin) = &mut self.stdins[w] {
            let line = to_line(cmd);
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                self.stdins[w] = None;
            }
        }
    }

    /// The next event before `deadline`; None on timeout.
    async fn next(&mut self, deadline: Instant) -> Option<(usize, Option<WorkerEvent>)> {
        tokio::time::timeout_at(deadline.into(), self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Collects `done` from every worker not in `done` yet, until `deadline`. Workers that
    /// exited count as done with nothing. Returns whether all reported.
    async fn collect_done(&mut self, done: &mut [Option<Option<Done>>], deadline: Instant) -> bool {
        while done.iter().any(Option::is_none) {
            match self.next(deadline).await {
                None => return false,
                Some((
                    w,
                    Some(WorkerEvent::Done {
                        latency_hist,
                        delivered,
                        in_order,
                        duplicates,
                        out_of_order,
                        disconnected,
                        last_delivery_unix_ns,
                        cpu_us,
                    }),
                )) => {
                    let latency = decode_hist(&latency_hist).unwrap_or_else(|e| {
                        eprintln!("worker {w}: {e}");
                        new_hist()
                    });
                    done[w].get_or_insert(Some(Done {
                        latency,
                        delivered,
                        in_order,
                        duplicates,
                        out_of_order,
                        disconnected,
                        last_delivery_unix_ns,
                        cpu_us,
                    }));
                }
                Some((w, None)) => {
                    eprintln!("worker {w} exited before reporting its deliveries");
                    done[w].get_or_insert(None);
                }
                Some(_) => {}
            }
        }
        true
    }

    /// Tells every worker to close its connections, waits for them to exit (20 s at most,
    /// then kills them).
    async fn close(mut self) {
        for w in 0..self.children.len() {
            self.tell(w, &Command::Close).await;
        }
        self.stdins.clear();
        let deadline = Instant::now() + Duration::from_secs(20);
        for child in &mut self.children {
            if tokio::time::timeout_at(deadline.into(), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

fn read_opt<T>(pid: Option<u32>, read: fn(u32) -> std::io::Result<T>, what: &str) -> Option<T> {
    let pid = pid?;
    read(pid)
        .map_err(|e| eprintln!("reading {what} of pid {pid}: {e}"))
        .ok()
}

async fn bench(
    args: &RunArgs,
    plan: &Plan,
    target: &Target,
    api_key: &str,
    pid: Option<u32>,
) -> Result<Report, String> {
    let n = args.connections;
    let rss_before = read_opt(pid, read_rss_bytes, "VmRSS");
    if n > 0 {
        eprintln!(
            "opening {n} connections: {} workers, {} source addresses, concurrency {}",
            plan.workers, plan.source_ips, args.concurrency
        );
    }
    let started = Instant::now();
    let mut workers = Workers::spawn(args, plan, target)?;

    // Connect phase: every worker reports `ready` once each of its connections is up or failed.
    let waves = plan
        .per_worker
        .div_ceil(args.concurrency.div_ceil(plan.workers.max(1))) as u64;
    let ready_deadline =
        Instant::now() + Duration::from_secs(args.connect_timeout_s * (waves + 1) + 60);
    let mut connect = new_hist();
    let (mut connected, mut connect_failed) = (0, 0);
    let mut ready = vec![false; plan.workers];
    while ready.iter().any(|r| !r) {
        match workers.next(ready_deadline).await {
            None => return Err("workers did not finish connecting in time".into()),
            Some((w, None)) => return Err(format!("worker {w} exited while connecting")),
            Some((
                w,
                Some(WorkerEvent::Ready {
                    connect_hist,
                    connected: c,
                    failed,
                    errors,
                }),
            )) => {
                connect
                    .add(decode_hist(&connect_hist)?)
                    .map_err(|e| e.to_string())?;
                connected += c;
                connect_failed += failed;
                for e in errors {
                    eprintln!("worker {w}: {e}");
                }
                ready[w] = true;
            }
            Some(_) => {}
        }
    }
    if n > 0 {
        eprintln!(
            "{connected} connected, {connect_failed} failed in {:.1} s; settling {} ms",
            started.elapsed().as_secs_f64(),
            args.settle_ms
        );
        tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    }
    let rss_after = read_opt(pid, read_rss_bytes, "VmRSS");

    let mut done: Vec<Option<Option<Done>>> = (0..plan.workers).map(|_| None).collect();
    let mut publish_stats = PublishStats::default();
    let (mut cpu_before, mut cpu_after) = (None, None);
    let mut timed_out = false;
    let channels: Vec<String> = match &plan.channel {
        Some(c) => vec![c.clone()],
        None => (0..args.channels)
            .map(|k| format!("{}-{k}", args.channel_prefix))
            .collect(),
    };
    let run_id = format!("{:x}{:x}", unix_ns(), std::process::id());
    let mut publish_plan = PublishPlan {
        http_base: &target.http_base,
        api_key,
        payload: match args.mode {
            Mode::Publish => Payload::Publish {
                channels: &channels,
                payload_bytes: args.payload_bytes,
            },
            Mode::Signals => Payload::Signals {
                run_id: &run_id,
                pair: &args.pair,
            },
        },
        messages: args.messages,
        rate: args.rate,
        concurrency: args.publish_concurrency,
        deadline: Instant::now(),
    };
    let requests = publish_plan.requests();
    if args.messages > 0 {
        cpu_before = read_opt(pid, read_cpu_us, "CPU time");
        publish_plan.deadline = Instant::now() + Duration::from_secs(args.timeout_s);
        let deadline = publish_plan.deadline;
        match args.mode {
            Mode::Publish => eprintln!(
                "publishing {} messages to {} channel(s) at rate {}",
                args.messages,
                channels.len(),
                args.rate
            ),
            Mode::Signals => eprintln!(
                "posting {} signals (bench_{run_id}_*, pair {}) at rate {}, {} in flight",
                args.messages, args.pair, args.rate, args.publish_concurrency
            ),
        }
        publish_stats = publish(&publish_plan).await?;
        eprintln!(
            "published {} ({} errors) in {:.3} s",
            publish_stats.published,
            publish_stats.errors,
            publish_stats.elapsed.as_secs_f64()
        );
        timed_out = !workers.collect_done(&mut done, deadline).await;
        cpu_after = read_opt(pid, read_cpu_us, "CPU time");
    }
    if done.iter().any(Option::is_none) {
        let pending: Vec<usize> = (0..plan.workers).filter(|&w| done[w].is_none()).collect();
        for w in pending {
            workers.tell(w, &Command::Finish).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        workers.collect_done(&mut done, deadline).await;
    }
    workers.close().await;

    let mut latency = new_hist();
    let (mut delivered, mut duplicates, mut out_of_order, mut disconnected) = (0, 0, 0, 0);
    let mut in_order = true;
    let mut last_delivery = 0;
    let mut bench_cpu_us = 0;
    for d in done.into_iter() {
        let Some(Some(d)) = d else {
            in_order = false;
            continue;
        };
        latency.add(&d.latency).map_err(|e| e.to_string())?;
        delivered += d.delivered;
        in_order &= d.in_order;
        duplicates += d.duplicates;
        out_of_order += d.out_of_order;
        disconnected += d.disconnected;
        last_delivery = last_delivery.max(d.last_delivery_unix_ns);
        bench_cpu_us += d.cpu_us;
    }
    let first_send = publish_stats.first_send_unix_ns;
    let interval_ns = (delivered > 0 && first_send > 0 && last_delivery > first_send)
        .then(|| last_delivery - first_send);
    let server_cpu_us = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64),
        _ => None,
    };
    let per = |count: u64| {
        server_cpu_us
            .filter(|_| count > 0)
            .map(|us| round3(us / count as f64))
    };
    let publish_s = publish_stats.elapsed.as_secs_f64();
    let published_per_sec = (publish_stats.published > 0 && publish_s > 0.0)
        .then(|| round3(publish_stats.published as f64 / publish_s));
    Ok(Report {
        mode: args.mode,
        reader: args.reader,
        connections: n,
        workers: plan.workers,
        channels: channels.len(),
        channel: plan.channel.clone(),
        source_ips: plan.source_ips,
        concurrency: args.concurrency,
        connected,
        connect_failed,
        connect_ms: percentiles_ms(&connect),
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_connection_bytes: match (rss_before, rss_after) {
            (Some(b), Some(a)) if connected > 0 => Some((a as i64 - b as i64) / connected as i64),
            _ => None,
        },
        messages: args.messages,
        rate: args.rate,
        payload_bytes: (args.mode == Mode::Publish).then_some(args.payload_bytes),
        run_id: (args.mode == Mode::Signals).then_some(run_id),
        requests,
        published: publish_stats.published,
        publish_errors: publish_stats.errors,
        publish_status: publish_stats.status,
        publish_s: round3(publish_s),
        published_per_sec,
        stored_per_sec: published_per_sec.filter(|_| args.mode == Mode::Signals),
        request_ms: percentiles_ms(&publish_stats.request_hist),
        expected: args.messages * n as u64,
        delivered,
        in_order,
        duplicates,
        out_of_order,
        disconnected,
        timed_out,
        latency_ms: percentiles_ms(&latency),
        full_delivery_ms: interval_ns.map(|ns| round3(ns as f64 / 1e6)),
        deliveries_per_sec: interval_ns.map(|ns| (delivered as f64 / (ns as f64 / 1e9)).round()),
        server_cpu_us_per_delivery: per(delivered),
        server_cpu_us_per_publish: per(publish_stats.published),
        bench_cpu_us_per_delivery: (delivered > 0)
            .then(|| round3(bench_cpu_us as f64 / delivered as f64)),
        server_pid: pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["signalhub-bench", "--url", "http://127.0.0.1:1"];
        argv.extend_from_slice(extra);
        crate::cli::Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn default_plan() {
        let p = plan(&args(&["--connections", "19000"]), 20_000, 2).unwrap();
        assert_eq!((p.workers, p.per_worker, p.source_ips), (2, 9500, 19));
        let p = plan(&args(&["--connections", "200"]), 20_000, 2).unwrap();
        assert_eq!((p.workers, p.per_worker, p.source_ips), (1, 200, 1));
        // One reader per core once each has 1,000 connections to read.
        let p = plan(&args(&["--connections", "10000"]), 20_000, 2).unwrap();
        assert_eq!((p.workers, p.per_worker), (2, 5000));
        let p = plan(&args(&["--connections", "10000"]), 20_000, 1).unwrap();
        assert_eq!((p.workers, p.per_worker), (1, 10000));
        let p = plan(&args(&["--connections", "3000"]), 20_000, 8).unwrap();
        assert_eq!((p.workers, p.per_worker), (3, 1000));
        let p = plan(&args(&["--connections", "30001"]), 20_000, 2).unwrap();
        assert_eq!((p.workers, p.per_worker), (3, 10001));
    }

    #[test]
    fn plan_refusals() {
        assert!(plan(
            &args(&["--connections", "19000", "--workers", "1"]),
            19_000,
            2
        )
        .is_err());
        assert!(plan(&args(&["--connections", "1000001"]), 20_000, 2).is_err());
        assert!(plan(&args(&["--server-env", "A=b"]), 20_000, 2).is_err());
        assert!(plan(&args(&["--server-arg", "--demo"]), 20_000, 2).is_err());
        assert!(plan(&args(&["--channels", "2", "--channel", "x"]), 20_000, 2).is_err());
        assert!(plan(&args(&["--mode", "signals", "--channels", "2"]), 20_000, 2).is_err());
        assert!(plan(&args(&["--channel", "a b"]), 20_000, 2).is_err());
        assert!(plan(
            &args(&["--mode", "signals", "--pair", "eur/usd"]),
            20_000,
            2
        )
        .is_err());
        assert!(plan(&args(&["--connections", "5", "--channels", "6"]), 20_000, 2).is_err());
        assert!(plan(&args(&["--rate=-1"]), 20_000, 2).is_err());
        assert!(plan(&args(&["--ws-path", "ws"]), 20_000, 2).is_err());
    }

    #[test]
    fn store_only_and_one_channel_plans() {
        let p = plan(
            &args(&["--connections", "0", "--mode", "signals"]),
            20_000,
            2,
        )
        .unwrap();
        assert_eq!((p.workers, p.per_worker, p.source_ips), (0, 0, 0));
        assert_eq!(p.channel.as_deref(), Some("signals:pair:BENCH-USD"));
        let p = plan(
            &args(&["--mode", "signals", "--channel", "unified"]),
            20_000,
            2,
        )
        .unwrap();
        assert_eq!(p.channel.as_deref(), Some("unified"));
        let p = plan(&args(&["--connections", "0"]), 20_000, 2).unwrap();
        assert_eq!((p.workers, p.channel), (0, None));
        let p = plan(&args(&["--channel", "signals:type:BUY"]), 20_000, 2).unwrap();
        assert_eq!(p.channel.as_deref(), Some("signals:type:BUY"));
    }

    #[test]
    fn uneven_workers() {
        let p = plan(&args(&["--connections", "10", "--workers", "4"]), 20_000, 2).unwrap();
        // 3 + 3 + 3 + 1
        assert_eq!((p.workers, p.per_worker), (4, 3));
        let p = plan(&args(&["--connections", "10", "--workers", "6"]), 20_000, 2).unwrap();
        // 2 x 5: a sixth worker would have nothing to hold.
        assert_eq!((p.workers, p.per_worker), (5, 2));
    }
}
