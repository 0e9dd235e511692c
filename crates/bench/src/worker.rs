//! A worker process: holds its share of the subscriber connections and reports to the
//! coordinator over stdout (see protocol.rs), taking commands from stdin.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Stdout};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::cli::{ReaderKind, WorkerArgs};
use crate::protocol::{encode_hist, to_line, Command, WorkerEvent};
use crate::subscriber::{self, ConnSpec, Shared};
use crate::target::source_addr;
use crate::tungstenite_reader;

/// Runs the worker to the end; returns the process exit code.
pub fn run(args: WorkerArgs) -> i32 {
    if let Err(e) = crate::sys::raise_nofile_limit() {
        eprintln!("worker: cannot raise RLIMIT_NOFILE: {e}");
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("worker: runtime: {e}");
            return 1;
        }
    };
    let code = match runtime.block_on(worker_main(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker: {e}");
            1
        }
    };
    // The stdin reader may sit in a blocking read: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn send(out: &mut Stdout, event: &WorkerEvent) -> std::io::Result<()> {
    out.write_all(to_line(event).as_bytes()).await?;
    out.flush().await
}

fn ready_event(shared: &Shared) -> WorkerEvent {
    WorkerEvent::Ready {
        connect_hist: encode_hist(
            &shared
                .connect_hist
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        ),
        connected: shared.connected.load(Ordering::SeqCst),
        failed: shared.failed.load(Ordering::SeqCst),
        errors: shared
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

fn done_event(shared: &Shared, cpu_at_ready: u64) -> WorkerEvent {
    let tally = shared.tally();
    WorkerEvent::Done {
        latency_hist: encode_hist(&tally.latency),
        delivered: tally.delivered,
        in_order: tally.duplicates == 0 && tally.out_of_order == 0,
        duplicates: tally.duplicates,
        out_of_order: tally.out_of_order,
        disconnected: shared.disconnected.load(Ordering::SeqCst),
        last_delivery_unix_ns: tally.last_delivery_unix_ns,
        cpu_us: own_cpu_us().saturating_sub(cpu_at_ready),
    }
}

/// This process's CPU time in microseconds (0 if /proc cannot be read).
fn own_cpu_us() -> u64 {
    crate::server_proc::read_cpu_us(std::process::id()).unwrap_or(0)
}

async fn worker_main(args: WorkerArgs) -> std::io::Result<()> {
    let n = args.connections;
    let shared = Arc::new(Shared::new(args.messages, args.threads));
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for k in 0..n {
        let global = args.first + k;
        let spec = ConnSpec {
            addr: args.addr,
            host: args.host.clone(),
            path: args.ws_path.clone(),
            channel: match &args.channel {
                Some(name) => name.clone(),
                None => format!("{}-{}", args.channel_prefix, global % args.channels.max(1)),
            },
            source: source_addr(args.source_base, global % args.source_ips.max(1)),
            connect_timeout: Duration::from_secs(args.connect_timeout_s),
        };
        let (shared, slots, stop_rx) = (shared.clone(), slots.clone(), stop_rx.clone());
        match args.reader {
            ReaderKind::Lean => tasks.spawn(subscriber::run(spec, shared, slots, stop_rx)),
            ReaderKind::Tungstenite => {
                tasks.spawn(tungstenite_reader::run(spec, shared, slots, stop_rx))
            }
        };
    }

    let mut out = tokio::io::stdout();
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let (mut ready_sent, mut done_sent) = (false, false);
    let mut cpu_at_ready = 0;
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    loop {
        if !ready_sent && shared.attempted.load(Ordering::SeqCst) == n {
            eprintln!(
                "worker {}: {} connected, {} failed in {:.1} s",
                args.first,
                shared.connected.load(Ordering::SeqCst),
                shared.failed.load(Ordering::SeqCst),
                started.elapsed().as_secs_f64()
            );
            cpu_at_ready = own_cpu_us();
            send(&mut out, &ready_event(&shared)).await?;
            ready_sent = true;
        }
        if ready_sent
            && !done_sent
            && args.messages > 0
            && shared.finished.load(Ordering::SeqCst) == n
        {
            send(&mut out, &done_event(&shared, cpu_at_ready)).await?;
            done_sent = true;
        }
        tokio::select! {
            _ = shared.notify.notified() => {}
            _ = progress.tick(), if !ready_sent || args.messages > 0 => {
                let phase = if ready_sent { "delivered" } else { "connected" };
                let count = if ready_sent {
                    shared.delivered()
                } else {
                    shared.attempted.load(Ordering::SeqCst) as u64
                };
                eprintln!("worker {}: {phase} {count}", args.first);
            }
            line = commands.next_line() => {
                let cmd = match line {
                    Ok(Some(line)) => serde_json::from_str::<Command>(&line).map_err(|e| {
                        std::io::Error::other(format!("bad command {line:?}: {e}"))
                    })?,
                    // The coordinator is gone: close up.
                    _ => Command::Close,
                };
                match cmd {
                    Command::Finish if !done_sent => {
                        if !ready_sent {
                            cpu_at_ready = own_cpu_us();
                            send(&mut out, &ready_event(&shared)).await?;
                            ready_sent = true;
                        }
                        send(&mut out, &done_event(&shared, cpu_at_ready)).await?;
                        done_sent = true;
                    }
                    Command::Finish => {}
                    Command::Close => break,
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let all_closed = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if all_closed.is_err() {
        tasks.abort_all();
    }
    send(&mut out, &WorkerEvent::Closed).await
}
