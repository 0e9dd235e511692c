//! The direct writer: threads that send each publication to every idle connection's
//! socket through io_uring, a batch of sends per system call.
//!
//! At a modest publication rate every delivery is one small write to a socket that has
//! nothing else queued. Done by the connection's task, each costs a wake-up, a poll and a
//! `writev` system call; here the hub hands over the claimed sockets of a whole publication
//! at once (see `signalhub_hub::direct`), split over one writer thread per core by client
//! id, and each thread queues up to [`BATCH`] `send`s in its submission ring and enters the
//! kernel once for all of them. The sends are non-blocking (`MSG_DONTWAIT`), so each
//! completes while it is submitted: fully, in part or with `EAGAIN`; whatever did not go out
//! is handed back to the connection, which finishes it on writability. The payload is framed
//! once per publication and shared by every send.
//!
//! Sockets stay valid while their sends are in flight: a claimed connection neither writes
//! nor ends until `Client::direct_done` reports its last claimed send. A connection may
//! hold several claims when publications come faster than its thread sends them (a client
//! always goes to the same thread, which sends jobs in order); once a send stops short, the
//! rest of its claims are handed back unsent and the connection writes them after the
//! remainder. Holding claims rather than falling back to the connection's task keeps an
//! overloaded moment on the cheaper path instead of making it costlier.

use std::io;
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};
use signalhub_hub::{DirectSink, Target};

use super::frame::{self, OpCode};

/// Sends submitted per `io_uring_enter`.
const BATCH: usize = 512;

struct Job {
    /// The publication as a complete text frame, shared by every send.
    frame: Bytes,
    targets: Vec<Target>,
}

impl Drop for Job {
    /// A job dropped unsent (its writer thread is gone, or it was handed back) returns every
    /// frame to its connection, so no connection waits forever for a write.
    fn drop(&mut self) {
        for target in self.targets.drain(..) {
            target.client.direct_done(self.frame.clone(), 0);
        }
    }
}

/// Handle to the writer threads; the hub holds it as its [`DirectSink`].
#[derive(Debug)]
pub struct UringWriter {
    /// One queue per writer thread; a client always goes to the same one (by id), so its
    /// sends stay in order.
    shards: Vec<Shard>,
}

#[derive(Debug)]
struct Shard {
    jobs: mpsc::Sender<Job>,
}

impl UringWriter {
    /// Starts `threads` writer threads (at least one), each with its own ring, or fails
    /// when io_uring is not available (an old kernel, `kernel.io_uring_disabled`, a
    /// container's seccomp profile).
    pub fn start(threads: usize) -> io::Result<Arc<Self>> {
        let mut shards = Vec::new();
        for n in 0..threads.max(1) {
            let ring = IoUring::new((BATCH * 2) as u32)?;
            let (jobs, inbox) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(format!("signalhub-direct-{n}"))
                .spawn(move || run(ring, inbox))?;
            shards.push(Shard { jobs });
        }
        Ok(Arc::new(UringWriter { shards }))
    }
}

impl DirectSink for UringWriter {
    fn send(&self, payload: &Bytes, targets: Vec<Target>) {
        // Framed once per publication, shared by every send.
        let frame = frame::encode_frame(OpCode::Text, payload);
        if self.shards.len() == 1 {
            return self.shards[0].send(frame, targets);
        }
        let mut split: Vec<Vec<Target>> = self
            .shards
            .iter()
            .map(|_| Vec::with_capacity(targets.len() / self.shards.len() + 1))
            .collect();
        for target in targets {
            let shard = (target.client.id() % self.shards.len() as u64) as usize;
            split[shard].push(target);
        }
        for (shard, targets) in self.shards.iter().zip(split) {
            if !targets.is_empty() {
                shard.send(frame.clone(), targets);
            }
        }
    }
}

impl Shard {
    fn send(&self, frame: Bytes, targets: Vec<Target>) {
        // Always through the queue, also once the ring failed: the thread hands jobs back
        // in order, so a client's frames come back in order too. If the thread is gone,
        // the job comes back here and dropping it hands its frames back.
        let _ = self.jobs.send(Job { frame, targets });
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

fn run(mut ring: IoUring, inbox: mpsc::Receiver<Job>) {
    // Set when the ring failed: every frame goes back to its connection from then on.
    let mut failed = false;
    while let Ok(mut job) = inbox.recv() {
        if failed {
            // Dropping the job hands its frames back.
            continue;
        }
        // From here `pending` reports every target, also if this thread panics.
        let targets = std::mem::take(&mut job.targets);
        let frame = job.frame.clone();
        let mut pending = Pending {
            targets: &targets,
            frame: &frame,
            reported: vec![false; targets.len()],
        };
        for start in (0..targets.len()).step_by(BATCH) {
            let chunk = &targets[start..(start + BATCH).min(targets.len())];
            if let Err(e) = send_batch(&mut ring, &frame, start, chunk, &mut pending) {
                tracing::error!(error = %e, "io_uring failed; connections write for themselves from now on");
                // Report what completed; sends never submitted stay unsubmitted (the ring
                // is not entered again) and go back to their connections with the rest.
                for cqe in ring.completion() {
                    pending.done(cqe.user_data() as usize, written(cqe.result()));
                }
                failed = true;
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
    let mut submitted = 0;
    {
        let mut queue = ring.submission();
        for (i, target) in chunk.iter().enumerate() {
            if !target.client.direct_writable() {
                // An earlier send to this client stopped short: it finishes the rest itself.
                pending.done(start + i, 0);
                continue;
            }
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
            submitted += 1;
        }
    }
    let mut completed = 0;
    while completed < submitted {
        match ring.submit_and_wait(submitted - completed) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::task::Waker;

    use signalhub_hub::{Client, Identity, Offer};

    /// A client whose connection took everything and parked idle on `socket`, then was
    /// claimed for one direct write.
    fn claimed(id: u64, socket: i32) -> Arc<Client> {
        let client = Arc::new(Client::new(id, Identity::default(), 0, 25));
        client.take(&mut Default::default(), Waker::noop());
        client.park_idle(socket);
        assert_eq!(
            client.offer(&Bytes::from_static(b"x"), 1 << 20, true),
            Offer::Direct(socket)
        );
        client
    }

    fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    #[test]
    fn the_writer_sends_one_framed_payload_to_every_claimed_socket() {
        let writer = match UringWriter::start(2) {
            Ok(writer) => writer,
            // io_uring refused by this kernel: the server falls back, nothing to test here,
            // unless SIGNALHUB_REQUIRE_IO_URING=1 demands it.
            Err(e) if std::env::var("SIGNALHUB_REQUIRE_IO_URING").as_deref() == Ok("1") => {
                panic!("io_uring unavailable: {e}")
            }
            Err(_) => return,
        };
        let pairs: Vec<_> = (0..3).map(|_| socket_pair()).collect();
        let targets: Vec<Target> = pairs
            .iter()
            .enumerate()
            .map(|(i, (server, _))| Target {
                client: claimed(i as u64, server.as_raw_fd()),
                socket: server.as_raw_fd(),
            })
            .collect();
        let clients: Vec<_> = targets.iter().map(|t| t.client.clone()).collect();
        writer.send(&Bytes::from_static(b"{\"seq\":1}"), targets);
        for (_, mut peer) in pairs {
            let mut got = [0u8; 11];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"\x81\x09{\"seq\":1}");
        }
        // Each send is reported (the report may trail the bytes on the wire by a moment):
        // the connection may then end, and nothing was handed back to it.
        for client in clients {
            let reported = (0..5000).any(|_| {
                client.retire(Waker::noop())
                    || (
                        std::thread::sleep(std::time::Duration::from_millis(1)),
                        false,
                    )
                        .1
            });
            assert!(reported, "the send was reported");
            assert_eq!(client.queued_bytes(), 0, "nothing was handed back");
        }
    }

    #[test]
    fn a_job_dropped_unsent_hands_every_frame_back_to_its_connection() {
        let client = claimed(1, 42);
        drop(Job {
            frame: Bytes::from_static(b"\x81\x02{}"),
            targets: vec![Target {
                client: client.clone(),
                socket: 42,
            }],
        });
        let mut out = std::collections::VecDeque::new();
        let taken = client.take(&mut out, Waker::noop());
        assert!(!taken.busy);
        assert_eq!(out, [Bytes::from_static(b"\x81\x02{}")]);
        assert_eq!(taken.head_written, 0);
    }
}
