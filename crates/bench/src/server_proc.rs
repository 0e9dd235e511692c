//! Starting the signalhub server under test, and reading its RSS and CPU time from /proc.

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// A server process started by the bench; killed when dropped.
pub struct ServerProc {
    child: Child,
    pub pid: u32,
    /// The address from its `listening on <addr>` line.
    pub listen: String,
}

/// Starts `bin serve --listen 127.0.0.1:0 <extra>` with `api_key` as the publisher key, an
/// in-memory store, warn-level logs and the per-key publish and per-address WebSocket connect
/// rates lifted out of the way (a load generator is one key and a few addresses by design),
/// then the `env` variables (which may override those),
/// and waits (at most 60 s) for its `listening on` line on stderr.
pub async fn start_server(
    bin: &Path,
    extra: &[String],
    env: &[(String, String)],
    api_key: &str,
) -> io::Result<ServerProc> {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("SIGNALHUB_API_KEYS", format!("{api_key}:publisher"))
        .env("SIGNALHUB_STORE", "sqlite::memory:")
        .env("SIGNALHUB_LOG", "warn")
        .env("SIGNALHUB_PUBLISHES_PER_KEY_PER_SECOND", "100000000")
        .env("SIGNALHUB_PUBLISHES_PER_KEY_BURST", "100000000")
        .env("SIGNALHUB_WS_CONNECTS_PER_IP_PER_SECOND", "100000000")
        .env("SIGNALHUB_WS_CONNECTS_PER_IP_BURST", "100000000")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", bin.display())))?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("server exited at once"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(forward_lines(stdout, None));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(forward_lines(stderr, Some(tx)));
    let listen = match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(addr)) => addr,
        Ok(Err(_)) => {
            let status = child.wait().await?;
            return Err(io::Error::other(format!(
                "server exited ({status}) before printing `listening on`"
            )));
        }
        Err(_) => return Err(io::Error::other("no `listening on` line within 60 s")),
    };
    Ok(ServerProc { child, pid, listen })
}

impl ServerProc {
    /// Stops the server and reaps it. SIGKILL: with the in-memory store it holds nothing on
    /// disk, and a durable store has every answered signal already (that is what is measured).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Copies the server's output lines to our stderr; the first `listening on` address found
/// is sent on `listening`.
async fn forward_lines(
    out: impl AsyncRead + Unpin,
    mut listening: Option<tokio::sync::oneshot::Sender<String>>,
) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[server] {line}");
        if let Some(addr) = parse_listening(&line) {
            if let Some(tx) = listening.take() {
                let _ = tx.send(addr);
            }
        }
    }
}

/// Extracts `<host:port>` from a log line containing `listening on <host:port>`.
pub fn parse_listening(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on")? + "listening on".len()..];
    let addr: String = rest
        .trim_start_matches([' ', ':', '='])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.contains(':').then_some(addr)
}

/// Resident set size in bytes (VmRSS of /proc/PID/status).
pub fn read_rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vmrss(&status).ok_or_else(|| io::Error::other("no VmRSS in /proc status"))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(n * 1024),
        _ => None,
    }
}

/// utime + stime of the whole process in microseconds (/proc/PID/stat fields 14 and 15).
pub fn read_cpu_us(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| io::Error::other("bad /proc stat"))?;
    Ok(ticks * 1_000_000 / crate::sys::clock_ticks_per_sec())
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_variants() {
        assert_eq!(
            parse_listening("2025-01-01T00:00:00Z  INFO signalhub: listening on 127.0.0.1:4321")
                .as_deref(),
            Some("127.0.0.1:4321")
        );
        assert_eq!(
            parse_listening("listening on [::1]:80, pid 3").as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(
            parse_listening("listening on: 127.0.0.1:9\x1b[0m").as_deref(),
            Some("127.0.0.1:9")
        );
        assert_eq!(parse_listening("publisher API key: x"), None);
    }

    #[test]
    fn vmrss_parse() {
        let s = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads: 1\n";
        assert_eq!(parse_vmrss(s), Some(2048 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn stat_parse_with_odd_comm() {
        let s = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(s), Some(280));
    }

    #[test]
    fn proc_self_readings() {
        let pid = std::process::id();
        assert!(read_rss_bytes(pid).unwrap() > 0);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        read_cpu_us(pid).unwrap();
    }
}
