//! The direct writer: one thread that sends each publication to every idle connection's
//! socket through io_uring, a batch of sends per system call.
//!
//! At a modest publication rate every delivery is one small write to a socket that has
//! nothing else queued. Done by the connection's task, each costs a wake-up, a poll and a
//! `writev` system call; here the hub hands over the claimed sockets of a whole publication
//! at once (see `signalhub_hub::direct`) and this thread queues up to [`BATCH`] `send`s in
//! the submission ring and enters the kernel once for all of them. The sends are
//! non-blocking (`MSG_DONTWAIT`), so each completes while it is submitted: fully, in part or
//! with `EAGAIN`; whatever did not go out is handed back to the connection, which finishes
//! it on writability. On this machine that halves the tokio work and takes ~1.5 us of
//! kernel time off every delivery (docs/benchmarks.md).
//!
//! Sockets stay valid while their sends are in flight: a claimed connection neither writes
//! nor ends until [`Client::direct_done`] reports its send.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};
use signalhub_hub::{DirectSink, Target};

use super::frame::{self, OpCode};

/// Sends submitted per `io_uring_enter`.
const BATCH: usize = 512;

struct Job {
    payload: Bytes,
    targets: Vec<Target>,
}

/// Handle to the writer thread; the hub holds it as its [`DirectSink`].
#[derive(Debug)]
pub struct UringWriter {
    jobs: mpsc::Sender<Job>,
    /// Set when the ring failed: every frame goes back to its connection from then on.
    failed: Arc<AtomicBool>,
}

impl UringWriter {
    /// Starts the writer thread, or fails when io_uring is not available (an old kernel,
    /// `kernel.io_uring_disabled`, a container's seccomp profile).
    pub fn start() -> io::Result<Arc<Self>> {
        let ring = IoUring::new((BATCH * 2) as u32)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        std::thread::Builder::new()
            .name("signalhub-direct".into())
            .spawn(move || run(ring, inbox, &flag))?;
        Ok(Arc::new(UringWriter { jobs, failed }))
    }
}

impl DirectSink for UringWriter {
    fn send(&self, payload: &Bytes, targets: Vec<Target>) {
        let job = Job {
            payload: payload.clone(),
            targets,
        };
        if self.failed.load(Ordering::Relaxed) {
            return hand_back(job);
        }
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            hand_back(job);
        }
    }
}

/// Hands every frame of `job` back to its connection, unwritten.
fn hand_back(job: Job) {
    let frame = frame::encode_frame(OpCode::Text, &job.payload);
    for target in job.targets {
        target.client.direct_done(frame.clone(), 0);
    }
}

/// Reports every target not yet reported, also if sending panics.
struct Pending<'a> {
    targets: &'a [Target],
    frame: &'a Bytes,
    reported: Vec<bool>,
}

impl Pending<'_> {
    fn done(&mut self, index: usize, written: usize) {
        if let Some(seen) = self.reported.get_mut(index) {
            if !*seen {
                *seen = true;
                self.targets[index]
                    .client
                    .direct_done(self.frame.clone(), written);
            }
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        for index in 0..self.targets.len() {
            self.done(index, 0);
        }
    }
}

fn run(mut ring: IoUring, inbox: mpsc::Receiver<Job>, failed: &AtomicBool) {
    while let Ok(job) = inbox.recv() {
        if failed.load(Ordering::Relaxed) {
            hand_back(job);
            continue;
        }
        // Framed once, shared by every send of the job.
        let frame = frame::encode_frame(OpCode::Text, &job.payload);
        let mut pending = Pending {
            targets: &job.targets,
            frame: &frame,
            reported: vec![false; job.targets.len()],
        };
        for start in (0..job.targets.len()).step_by(BATCH) {
            let chunk = &job.targets[start..(start + BATCH).min(job.targets.len())];
            if let Err(e) = send_batch(&mut ring, &frame, start, chunk, &mut pending) {
                tracing::error!(error = %e, "io_uring failed; connections write for themselves from now on");
                // Report what completed; sends never submitted stay unsubmitted (the ring
                // is not entered again) and go back to their connections with the rest.
                for cqe in ring.completion() {
                    pending.done(cqe.user_data() as usize, written(cqe.result()));
                }
                failed.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// Bytes written, from a completion's result (a negative errno writes nothing).
fn written(result: i32) -> usize {
    usize::try_from(result).unwrap_or(0)
}

/// Sends `frame` to every target of `chunk` (whose first index in the job is `start`) and
/// reports each completion; returns once all of them completed.
fn send_batch(
    ring: &mut IoUring,
    frame: &Bytes,
    start: usize,
    chunk: &[Target],
    pending: &mut Pending<'_>,
) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    {
        let mut queue = ring.submission();
        for (i, target) in chunk.iter().enumerate() {
            let send = opcode::Send::new(types::Fd(target.socket), frame.as_ptr(), len)
                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                .build()
                .user_data((start + i) as u64);
            // SAFETY: `frame` is borrowed for this whole call and outlives every send, which
            // all complete before we return (we wait for each completion below); the socket
            // stays open because its connection is claimed until `direct_done`.
            #[allow(unsafe_code)]
            let pushed = unsafe { queue.push(&send) };
            pushed.map_err(|_| io::Error::other("submission queue full"))?;
        }
    }
    let mut completed = 0;
    while completed < chunk.len() {
        match ring.submit_and_wait(chunk.len() - completed) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for cqe in ring.completion() {
            completed += 1;
            pending.done(cqe.user_data() as usize, written(cqe.result()));
        }
    }
    Ok(())
}
