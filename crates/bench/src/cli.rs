//! Command-line interface: the coordinator's flags and the hidden `worker` subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

/// Load generator for signalhub (see the crate docs in main.rs for examples).
#[derive(Debug, Parser)]
#[command(
    name = "signalhub-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Internal: one worker process holding a share of the connections (started by the
    /// coordinator; speaks line-based JSON on stdin/stdout).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// A quiet subscriber's delivery latency while hostile connections send the most
    /// expensive frames the server's limits allow, in alternating off/on phases.
    Hostile(HostileArgs),
}

/// `signalhub-bench hostile` (see hostile.rs).
#[derive(Debug, Clone, Args)]
pub struct HostileArgs {
    /// The signalhub binary to start (`serve --listen 127.0.0.1:0`).
    #[arg(long)]
    pub server_bin: PathBuf,
    /// Environment variable for the started server (repeatable).
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub server_env: Vec<(String, String)>,
    /// Hostile connections in each `on` phase.
    #[arg(long, default_value_t = 10)]
    pub hostile: usize,
    /// Rounds of (off, on).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Length of each phase in seconds.
    #[arg(long, default_value_t = 10)]
    pub phase_s: u64,
    /// Pause between phases (publications go on, not counted), in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub gap_s: f64,
    /// Publications per second to the quiet subscriber's channel.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Size of every hostile frame (the server's max_message_bytes is 65536).
    #[arg(long, default_value_t = 65_000)]
    pub frame_bytes: usize,
    /// Channels named by each hostile subscribe/unsubscribe (the server's
    /// limits.max_channels_per_frame).
    #[arg(long, default_value_t = 100)]
    pub channels_per_frame: usize,
    /// The server's limits.client_frames_per_second and _burst, mirrored by the hostiles.
    #[arg(long, default_value_t = 50.0)]
    pub frames_per_second: f64,
    #[arg(long, default_value_t = 100)]
    pub frames_burst: u64,
    /// The server's limits.channel_ops_per_second and _burst, mirrored by the hostiles.
    #[arg(long, default_value_t = 200.0)]
    pub ops_per_second: f64,
    #[arg(long, default_value_t = 2048)]
    pub ops_burst: u64,
}

/// What the publishing phase sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `POST /api/v1/publish` of bench payloads to every bench channel.
    Publish,
    /// `POST /api/v1/signals` of signal records (stored before the 2xx, then routed to
    /// `signals`, `signals:type:BUY`, `signals:pair:{PAIR}`, `public`, `unified`).
    Signals,
}

/// The WebSocket client the subscriber connections use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderKind {
    /// The bench's own minimal client (ws.rs): frames parsed in place in a 4 KiB buffer.
    #[default]
    Lean,
    /// An ordinary client: tokio-tungstenite.
    Tungstenite,
}

impl ReaderKind {
    /// The `--reader` value naming this reader.
    pub fn as_arg(self) -> &'static str {
        match self {
            ReaderKind::Lean => "lean",
            ReaderKind::Tungstenite => "tungstenite",
        }
    }
}

/// Parses `KEY=VALUE` for `--server-env`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() || k.contains('\0') || v.contains('\0') {
        return Err(format!("{s:?}: bad variable name or value"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// What one bench run does.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// What to publish: plain publications, or durable signals (stored, then routed).
    #[arg(long, value_enum, default_value_t = Mode::Publish)]
    pub mode: Mode,

    /// Start this signalhub binary (`serve --listen 127.0.0.1:0`) and bench it.
    #[arg(long, conflicts_with = "url")]
    pub server_bin: Option<PathBuf>,

    /// Extra argument for the started server (repeatable), e.g. `--server-arg=--config=x.toml`.
    #[arg(
        long = "server-arg",
        allow_hyphen_values = true,
        requires = "server_bin"
    )]
    pub server_args: Vec<String>,

    /// Environment variable for the started server (repeatable), applied after the bench's
    /// own defaults (`SIGNALHUB_STORE=sqlite::memory:`, `SIGNALHUB_LOG=warn`), e.g.
    /// `--server-env SIGNALHUB_STORE=sqlite:/tmp/x.db` or `SIGNALHUB_STORE=postgres://...`.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_key_value, requires = "server_bin")]
    pub server_env: Vec<(String, String)>,

    /// Bench an already running server at this base URL (loopback only).
    #[arg(long, env = "SIGNALHUB_BENCH_URL")]
    pub url: Option<String>,

    /// Publisher API key for `--url` (a random one is configured for `--server-bin`).
    #[arg(long, env = "SIGNALHUB_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// PID of the server behind `--url`, for RSS and CPU readings from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Subscriber WebSocket connections to open (0: publish only, e.g. a store-only run).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,

    /// Connections being opened at once (over all workers).
    #[arg(long, default_value_t = 500)]
    pub concurrency: usize,

    /// Worker processes holding the connections [default: one per core, but at most one per
    /// 1,000 connections and at least ceil(connections / 15000)].
    #[arg(long)]
    pub workers: Option<usize>,

    /// Tokio threads per worker process (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub worker_threads: usize,

    /// Source addresses 127.0.0.2.. used round robin [default: ceil(connections / per-ip)].
    #[arg(long)]
    pub source_ips: Option<usize>,

    /// Connections per source address when choosing the default `--source-ips` (the
    /// server's default per-IP limit is 1000).
    #[arg(long, default_value_t = 1000)]
    pub per_ip: usize,

    /// Channels `bench-0..bench-K-1`; connection i subscribes to channel i % K.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,

    /// Channel name prefix.
    #[arg(long, default_value = "bench")]
    pub channel_prefix: String,

    /// Every connection subscribes to this one channel (and `--mode publish` publishes to
    /// it) instead of `{prefix}-{k}`. `--mode signals` default: `signals:pair:{PAIR}`.
    #[arg(long, value_name = "NAME", conflicts_with = "channel_prefix")]
    pub channel: Option<String>,

    /// `--mode signals`: the signals' pair (canonical form, `^[A-Z0-9._-]{1,32}$`).
    #[arg(long, default_value = "BENCH-USD")]
    pub pair: String,

    /// WebSocket path.
    #[arg(long, default_value = "/ws")]
    pub ws_path: String,

    /// The subscribers' WebSocket client: the bench's lean one, or tokio-tungstenite.
    #[arg(long, value_enum, default_value_t = ReaderKind::Lean)]
    pub reader: ReaderKind,

    /// Time allowed for one connection's connect + subscribe, in seconds.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout_s: u64,

    /// Wait after all connections are open before reading the server's RSS.
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,

    /// Messages to publish to every channel, or signals to post with `--mode signals`
    /// (0: only connect and measure memory).
    #[arg(long, default_value_t = 0)]
    pub messages: u64,

    /// Publications per second (message indexes per second); 0 = as fast as possible.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// Publish requests in flight at once (over one or more keep-alive connections).
    #[arg(long, default_value_t = 1)]
    pub publish_concurrency: usize,

    /// Size of the publication's `data` JSON in bytes (`--mode publish` only; a signal's
    /// bench payload is its `metadata` `{"t":..,"i":..}`).
    #[arg(long, default_value_t = 300)]
    pub payload_bytes: usize,

    /// Give up waiting for deliveries this long after the first publish.
    #[arg(long, default_value_t = 60)]
    pub timeout_s: u64,

    /// Exit 1 unless every publish was answered 2xx and every expected message was delivered
    /// in order without duplicates.
    #[arg(long)]
    pub require_all: bool,
}

/// One worker process's share of the connections.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Server address to connect to.
    #[arg(long)]
    pub addr: std::net::SocketAddr,
    /// Host header value (host:port as in the URL).
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value = "/ws")]
    pub ws_path: String,
    #[arg(long, value_enum, default_value_t = ReaderKind::Lean)]
    pub reader: ReaderKind,
    /// Global index of this worker's first connection.
    #[arg(long)]
    pub first: usize,
    /// Connections held by this worker.
    #[arg(long)]
    pub connections: usize,
    #[arg(long)]
    pub concurrency: usize,
    #[arg(long)]
    pub threads: usize,
    #[arg(long)]
    pub channels: usize,
    #[arg(long)]
    pub channel_prefix: String,
    /// The one channel every connection subscribes to (overrides the prefix).
    #[arg(long)]
    pub channel: Option<String>,
    /// First source address; connection i binds to source_base + (i % source_ips).
    #[arg(long)]
    pub source_base: std::net::IpAddr,
    #[arg(long)]
    pub source_ips: usize,
    /// Messages each connection expects (0: never report done by itself).
    #[arg(long)]
    pub messages: u64,
    #[arg(long)]
    pub connect_timeout_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn server_args_accept_hyphens() {
        let cli = Cli::try_parse_from([
            "signalhub-bench",
            "--server-bin",
            "/bin/true",
            "--server-arg",
            "--config",
            "--server-arg=x.toml",
            "--connections",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.run.server_args, ["--config", "x.toml"]);
        assert_eq!(cli.run.connections, 5);
        assert_eq!(cli.run.mode, Mode::Publish);
        assert_eq!(cli.run.reader, ReaderKind::Lean);
        assert!(cli.command.is_none());
    }

    #[test]
    fn signals_mode_and_server_env() {
        let cli = Cli::try_parse_from([
            "signalhub-bench",
            "--server-bin",
            "/bin/true",
            "--mode",
            "signals",
            "--server-env",
            "SIGNALHUB_STORE=postgres://u@127.0.0.1:5/db?x=y",
            "--server-env=SIGNALHUB_LOG=",
            "--server-arg",
            "--config",
            "--server-arg",
            "/tmp/nohist.toml",
            "--connections",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.run.mode, Mode::Signals);
        assert_eq!(
            cli.run.server_env,
            [
                (
                    "SIGNALHUB_STORE".to_string(),
                    "postgres://u@127.0.0.1:5/db?x=y".to_string()
                ),
                ("SIGNALHUB_LOG".to_string(), String::new()),
            ]
        );
        assert_eq!(cli.run.server_args, ["--config", "/tmp/nohist.toml"]);
        assert_eq!(cli.run.connections, 0);
        assert_eq!(cli.run.pair, "BENCH-USD");
        for bad in ["NOEQUALS", "=x"] {
            assert!(Cli::try_parse_from([
                "signalhub-bench",
                "--server-bin",
                "/bin/true",
                "--server-env",
                bad
            ])
            .is_err());
        }
    }

    #[test]
    fn reader_selection_parses_lean_and_tungstenite_and_nothing_else() {
        let parse = |reader: &str| {
            Cli::try_parse_from([
                "signalhub-bench",
                "--url",
                "http://127.0.0.1:1",
                "--reader",
                reader,
            ])
            .map(|cli| cli.run.reader)
        };
        assert_eq!(parse("lean").unwrap(), ReaderKind::Lean);
        assert_eq!(parse("tungstenite").unwrap(), ReaderKind::Tungstenite);
        assert!(parse("tokio").is_err());
        for kind in [ReaderKind::Lean, ReaderKind::Tungstenite] {
            assert_eq!(parse(kind.as_arg()).unwrap(), kind);
            let worker = Cli::try_parse_from([
                "signalhub-bench",
                "worker",
                "--addr",
                "127.0.0.1:1",
                "--host",
                "h",
                "--first",
                "0",
                "--connections",
                "1",
                "--concurrency",
                "1",
                "--threads",
                "1",
                "--channels",
                "1",
                "--channel-prefix",
                "b",
                "--source-base",
                "127.0.0.2",
                "--source-ips",
                "1",
                "--messages",
                "0",
                "--connect-timeout-s",
                "1",
                "--reader",
                kind.as_arg(),
            ])
            .unwrap();
            let Some(Command::Worker(w)) = worker.command else {
                panic!("worker subcommand")
            };
            assert_eq!(w.reader, kind);
        }
    }
}
