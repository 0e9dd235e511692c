//! `signalhub-bench`: load generator for the signalhub WebSocket fan-out server.
//!
//! It opens many subscriber WebSocket connections, measures connect + subscribe time and the
//! server's memory per idle connection, then publishes messages over HTTP and measures
//! delivery latency, completeness, ordering, throughput and the server's CPU time per
//! delivery. With `--mode signals` it posts durable signals instead (`POST /api/v1/signals`,
//! answered 2xx only once stored) and reports how many were stored per second. It prints
//! exactly one JSON line on stdout; progress goes to stderr.
//!
//! # How it works
//!
//! * The coordinator (this binary without a subcommand) either starts the server itself
//!   (`--server-bin PATH`: `serve --listen 127.0.0.1:0` with a random publisher key,
//!   `SIGNALHUB_STORE=sqlite::memory:`, `SIGNALHUB_LOG=warn`, the per-key publish and
//!   per-address connect rates (`SIGNALHUB_PUBLISHES_PER_KEY_*`,
//!   `SIGNALHUB_WS_CONNECTS_PER_IP_*`) set to 100,000,000, then any `--server-env
//!   KEY=VALUE`, which may override those, plus any `--server-arg`) and reads the port from
//!   its `listening on` line, or targets a running one (`--url`,
//!   `--api-key`, optional `--server-pid` for the /proc readings). Only loopback targets are
//!   accepted (127.0.0.0/8, ::1, localhost).
//! * Connections are held by `--workers` child processes (default one per core, as a
//!   single-threaded reader of 10,000 sockets would add its own 60-90 ms per publication to
//!   the latencies; at most one per 1,000 connections and at least one per 15,000, since each
//!   process may have at most 20,000 open files). The coordinator
//!   re-executes itself as `signalhub-bench worker ...` and talks line-based JSON over the
//!   child's stdin/stdout (see protocol.rs). Each worker uses a current-thread runtime
//!   (`--worker-threads` for more) and its own lean WebSocket client (ws.rs: 4 KiB read
//!   buffer per connection, frames parsed in place, deliveries tallied per thread), since
//!   the bench shares the machine's cores with the server. `--reader tungstenite` uses an
//!   ordinary client instead (tungstenite_reader.rs, tokio-tungstenite), so that no figure
//!   rests on one reader; the report's `reader` field says which one ran.
//! * Connection i binds its socket to source address 127.0.0.(2 + i % K) (K =
//!   `--source-ips`, by default enough for `--per-ip` 1000 connections each, the server's
//!   default per-IP limit), so more than the ~28k ephemeral ports of one address fit, and
//!   subscribes to channel `bench-(i % --channels)` (or every one to `--channel NAME`).
//!   Connect + subscribe time runs from the TCP connect to the `subscribed` reply.
//!   `--connections 0` opens none: a publish-only (store-only) run.
//! * VmRSS of the server is read before connecting and `--settle-ms` after the last
//!   connection is up: `rss_per_connection_bytes = (after - before) / connected`.
//! * Then `--messages` indexes are published, each to every channel, `--rate` indexes per
//!   second (0: back to back; `--publish-concurrency` requests in flight), with data
//!   `{"t":<send unix ns>,"i":<index>,"pad":"xx.."}` of exactly `--payload-bytes` bytes.
//!   Every connection expects every message: latency = receive time - t; seq must go up by
//!   exactly one from the `subscribed` reply's seq (`out_of_order` counts gaps, `duplicates`
//!   counts seqs seen again). Server utime + stime is read before the first publish and when
//!   the last worker reports full delivery (or at `--timeout-s` after the first publish).
//! * `--mode signals`: `--messages` signals are posted instead, `--rate` and
//!   `--publish-concurrency` as above, each `{"signal_id":"bench_<run_id>_<i>",
//!   "pair":<--pair, BENCH-USD>,"signal_type":"BUY","confidence_score":0.5,...,
//!   "metadata":{"t":<send unix ns>,"i":<i>}}` (free tier, so anonymous subscribers get the
//!   data; `signal_id`s never repeat, as the store keeps them forever). The server stores each
//!   one, answers 2xx, then routes it to `signals`, `signals:type:BUY`,
//!   `signals:pair:BENCH-USD`, `public` and `unified`; connections subscribe to
//!   `signals:pair:<pair>` unless `--channel` names another, and time delivery from the
//!   `metadata` stamp (store time included). `stored_per_sec` = signals answered 2xx per
//!   second of `publish_s` (first request sent to last answer).
//! * Every run reports `publish_status` (answers by HTTP status, `"error"` for no answer),
//!   `request_ms` (send to answer) and `server_cpu_us_per_publish` (server CPU over the
//!   measured window per 2xx request; the server process only, not PostgreSQL).
//!
//! # Examples
//!
//! ```text
//! # smoke test, as the test suite runs it: exits 1 unless all 200 x 50 arrive in order
//! signalhub-bench --server-bin target/release/signalhub \
//!     --connections 200 --messages 50 --rate 0 --require-all
//!
//! # idle memory: 19,000 subscribed connections (goal: RSS growth <= 1 KiB per connection)
//! signalhub-bench --server-bin target/release/signalhub --connections 19000 --messages 0
//!
//! # fan-out latency: 10,000 subscribers on one channel, 100 publications at 10/s of 300
//! # bytes (goal: 100% in order, latency p99 <= 90 ms, server CPU <= 7 us per delivery)
//! signalhub-bench --server-bin target/release/signalhub --connections 10000 \
//!     --messages 100 --rate 10 --payload-bytes 300
//!
//! # burst: 10,000 subscribers x 100 publications as fast as possible (goal:
//! # full_delivery_ms <= 1000)
//! signalhub-bench --server-bin target/release/signalhub --connections 10000 \
//!     --messages 100 --rate 0 --publish-concurrency 4
//!
//! # connect storm: connect_ms.p99 while 10,000 connect with concurrency 500
//! signalhub-bench --server-bin target/release/signalhub --connections 10000 \
//!     --concurrency 500 --messages 0 --settle-ms 0
//!
//! # durable signals: stored per second in a SQLite file, or in PostgreSQL, no subscribers
//! signalhub-bench --server-bin target/release/signalhub --mode signals --connections 0 \
//!     --messages 15000 --rate 0 --publish-concurrency 8 \
//!     --server-env SIGNALHUB_STORE=sqlite:/tmp/bench-run/signals.db
//! signalhub-bench --server-bin target/release/signalhub --mode signals --connections 0 \
//!     --messages 30000 --rate 0 --publish-concurrency 8 \
//!     --server-env "SIGNALHUB_STORE=$SIGNALHUB_TEST_POSTGRES"
//!
//! # signals delivered to 2,000 subscribers of signals:pair:BENCH-USD (store time included)
//! signalhub-bench --server-bin target/release/signalhub --mode signals --connections 2000 \
//!     --messages 500 --rate 100 --publish-concurrency 8
//!
//! # fan-out without history: a TOML file with `[history]` and `size = 0`
//! signalhub-bench --server-bin target/release/signalhub \
//!     --server-arg --config --server-arg /tmp/nohist.toml \
//!     --connections 2000 --messages 200 --rate 0
//!
//! # a server that is already running (its pid for the memory and CPU figures)
//! signalhub-bench --url http://127.0.0.1:8080 --api-key "$KEY" --server-pid "$PID" \
//!     --connections 2000 --channels 4 --messages 20 --rate 5
//! ```
//!
//! Output (one line; `null` where a figure could not be taken):
//!
//! ```text
//! {"mode":"publish","connections":200,"workers":1,"channels":1,"channel":null,
//!  "source_ips":1,"concurrency":500,"connected":200,"connect_failed":0,
//!  "connect_ms":{"p50":..,"p90":..,"p99":..,"max":..},
//!  "rss_before_bytes":..,"rss_after_bytes":..,"rss_per_connection_bytes":..,
//!  "messages":50,"rate":0.0,"payload_bytes":300,"run_id":null,"requests":50,
//!  "published":50,"publish_errors":0,"publish_status":{"200":50},"publish_s":..,
//!  "published_per_sec":..,"stored_per_sec":null,"request_ms":{..},"expected":10000,"delivered":10000,"in_order":true,"duplicates":0,"out_of_order":0,
//!  "disconnected":0,"timed_out":false,"latency_ms":{..},"full_delivery_ms":..,
//!  "deliveries_per_sec":..,"server_cpu_us_per_delivery":..,"server_cpu_us_per_publish":..,
//!  "bench_cpu_us_per_delivery":..,"server_pid":..}
//! ```
//!
//! Exit status: 0 with a report (even an incomplete one) unless `--require-all` is given and
//! not every request was answered 2xx or not every expected message arrived in order exactly
//! once (then 1); 2 when the run could not be set up.

mod cli;
mod coordinator;
mod frame;
mod hostile;
mod protocol;
mod publisher;
mod report;
mod server_proc;
mod subscriber;
mod sys;
mod target;
mod tungstenite_reader;
mod worker;
mod ws;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Worker(args)) => worker::run(args),
        Some(Command::Hostile(args)) => hostile::run(args),
        None => run_coordinator(cli.run),
    };
    std::process::exit(code);
}

fn run_coordinator(args: cli::RunArgs) -> i32 {
    let require_all = args.require_all;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signalhub-bench: runtime: {e}");
            return 2;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = coordinator::run(args) => r,
            // Dropping the run kills the server and workers we started.
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report).expect("serializing the report")
            );
            if require_all && !report.all_delivered() {
                eprintln!(
                    "signalhub-bench: --require-all: {} of {} requests answered 2xx; delivered {} of {} (in order: {}, duplicates: {})",
                    report.published,
                    report.requests,
                    report.delivered,
                    report.expected,
                    report.in_order,
                    report.duplicates
                );
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("signalhub-bench: {e}");
            2
        }
    }
}
