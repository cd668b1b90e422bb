//! Where caught-up listeners wait: parked with their mount, without a task of their own, and
//! written to by the mount's writers when the fan-out wakes readers.
//!
//! A listener task that has sent everything the fan-out holds would otherwise wait on the
//! fan-out's channel; every wake-up then costs, per listener, a task wake-up, a trip through
//! the scheduler's queues, a poll and the registration of the next wait, before the one
//! `send` that matters. Parked, a listener is a boxed state in a shard's list; the shard's
//! writer task, woken once, walks the list and for each listener reads the new chunks and
//! sends them with a non-blocking `send`, as a hand-written fan-out loop would (the floor in
//! `agora-bench` is that loop). A listener goes back to a task of its own (it is *unparked*)
//! whenever anything but a complete write is needed: a write that would block or failed, an
//! admin order, a lag, the mount closing.
//!
//! **Invariants:**
//! - *A parked listener is caught up or about to be written to.* It parks only with nothing
//!   pending; whoever parks it after chunks were published kicks its shard's writer, so no
//!   chunk waits for a later wake-up.
//! - *The writer never waits on a listener.* It only makes non-blocking calls; one that would
//!   block unparks the listener, whose own task then waits for its socket.
//! - *Fair to the rest of the server.* The writer yields to the runtime every
//!   [`YIELD_EVERY`] listeners, so sources, joins and pages keep running during a pass over
//!   thousands of listeners.
//! - *Locks are leaves.* A shard's list is locked only to take it, give it back or push one
//!   listener; listeners are written to with the list out of the lock.
//! - *Closing unparks everyone.* When the mount closes, the writers unpark every listener and
//!   refuse new ones (a refused listener is unparked at once), so each ends in its own task as
//!   before. The writers are the server's tasks: a shutdown waits for them, hence for every
//!   listener they unpark.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;

use crate::stream::fanout::{Fanout, Tail};
use crate::sync::Mutex;

/// A listener parked with its mount.
pub(crate) trait Parked: Send + 'static {
    /// Send what the fan-out holds for this listener, without waiting. True: everything was
    /// sent and it stays parked; false: it must be unparked.
    fn write_now(&mut self) -> bool;
    /// Continue in a task of its own.
    fn unpark(self: Box<Self>);
}

/// Listeners written to between two yields of a writer to the runtime.
const YIELD_EVERY: usize = 64;

/// A mount's parked listeners, in shards that each have a writer task (started with the
/// first listener parked in it).
pub(crate) struct Parking {
    shards: Box<[Arc<Shard>]>,
    /// Where the writers run: the server's tasks, which a shutdown waits for, so that it also
    /// waits for the listeners the writers unpark when the mount closes.
    tasks: TaskTracker,
}

struct Shard {
    list: Mutex<List>,
    /// Wakes the writer for listeners parked behind the fan-out.
    kick: Notify,
    started: AtomicBool,
}

#[derive(Default)]
struct List {
    items: Vec<Box<dyn Parked>>,
    /// The mount closed: listeners are no longer parked.
    closed: bool,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Parking {
    /// One shard per core (at most 8): a pass over the listeners runs on every core at once.
    pub(crate) fn new(tasks: TaskTracker) -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        Parking {
            tasks,
            shards: (0..n)
                .map(|_| {
                    Arc::new(Shard {
                        list: Mutex::new(List::default()),
                        kick: Notify::new(),
                        started: AtomicBool::new(false),
                    })
                })
                .collect(),
        }
    }

    /// Park listener `key` (its shard is `key` modulo the shards), whose next chunk is
    /// `cursor`. Unparks it at once when the mount closed (or there is no runtime to write).
    pub(crate) fn park(&self, fanout: &Fanout, key: u64, cursor: u64, listener: Box<dyn Parked>) {
        let shard = &self.shards[(key % self.shards.len() as u64) as usize];
        if !shard.started.load(Ordering::Acquire) {
            if tokio::runtime::Handle::try_current().is_err() {
                return listener.unpark();
            }
            if !shard.started.swap(true, Ordering::AcqRel) {
                self.tasks
                    .spawn(write_loop(shard.clone(), fanout.subscribe()));
            }
        }
        let refused = {
            let mut list = shard.list.lock();
            if list.closed {
                Some(listener)
            } else {
                list.items.push(listener);
                None
            }
        };
        match refused {
            Some(listener) => listener.unpark(),
            // Published since the listener's last read: it must not wait for the next wake-up.
            None if cursor < fanout.published() => shard.kick.notify_one(),
            None => {}
        }
    }

    /// Listeners parked now (a snapshot; a writer's pass in progress holds its shard's).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.shards.iter().map(|s| s.list.lock().items.len()).sum()
    }
}

/// A shard's writer: at each wake-up of the fan-out (or kick), one pass over its listeners.
async fn write_loop(shard: Arc<Shard>, mut rx: watch::Receiver<Tail>) {
    let mut gone = false;
    loop {
        let closed = gone || rx.borrow_and_update().closed;
        let batch = {
            let mut list = shard.list.lock();
            list.closed = closed;
            std::mem::take(&mut list.items)
        };
        let mut keep = Vec::with_capacity(if closed { 0 } else { batch.len() });
        for (i, mut listener) in batch.into_iter().enumerate() {
            if !closed && listener.write_now() {
                keep.push(listener);
            } else {
                listener.unpark();
            }
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        if closed {
            return;
        }
        {
            let mut list = shard.list.lock();
            if list.items.is_empty() {
                list.items = keep;
            } else {
                list.items.append(&mut keep);
            }
        }
        tokio::select! {
            r = rx.changed() => gone = r.is_err(),
            () = shard.kick.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::fanout::{StreamHeaders, Wake};
    use bytes::Bytes;
    use tokio::sync::mpsc;

    /// Tells the test what the writer did with it, and how much was published then.
    struct Fake {
        id: u64,
        fanout: Arc<Fanout>,
        stay: Arc<AtomicBool>,
        events: mpsc::UnboundedSender<(u64, &'static str, u64)>,
    }

    impl Parked for Fake {
        fn write_now(&mut self) -> bool {
            let _ = self
                .events
                .send((self.id, "write", self.fanout.published()));
            self.stay.load(Ordering::Acquire)
        }
        fn unpark(self: Box<Self>) {
            let _ = self
                .events
                .send((self.id, "unpark", self.fanout.published()));
        }
    }

    /// Wait for every event of `want` (extra writes are fine: a new writer's first pass, a
    /// pass that a kick and a wake-up both asked for); any other unpark fails.
    async fn expect(
        rx: &mut mpsc::UnboundedReceiver<(u64, &'static str, u64)>,
        want: &[(u64, &'static str, u64)],
    ) {
        let mut left = want.to_vec();
        while !left.is_empty() {
            let event = rx.recv().await.expect("events");
            assert!(event.1 == "write" || want.contains(&event), "{event:?}");
            left.retain(|w| *w != event);
        }
    }

    #[tokio::test]
    async fn parked_listeners_are_written_at_each_wake_up_and_unparked_when_needed() {
        let f = Arc::new(Fanout::with_wake(1 << 20, Wake::IMMEDIATE));
        let p = Parking::new(TaskTracker::new());
        let h = StreamHeaders::new(Bytes::new());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stay = Arc::new(AtomicBool::new(true));
        let fake = |id| {
            Box::new(Fake {
                id,
                fanout: f.clone(),
                stay: stay.clone(),
                events: tx.clone(),
            })
        };
        f.publish(Bytes::from_static(b"one"), true, h.clone());
        p.park(&f, 0, 1, fake(0));
        // Behind (a chunk it has not read): written without waiting for a wake-up.
        p.park(&f, 1, 0, fake(1));
        expect(&mut rx, &[(1, "write", 1)]).await;
        assert_eq!(p.parked(), 2);
        // A wake-up writes to every parked listener.
        f.publish(Bytes::from_static(b"two"), true, h.clone());
        expect(&mut rx, &[(0, "write", 2), (1, "write", 2)]).await;
        // One that cannot be written to completely is unparked.
        stay.store(false, Ordering::Release);
        f.publish(Bytes::from_static(b"three"), true, h.clone());
        expect(&mut rx, &[(0, "unpark", 3), (1, "unpark", 3)]).await;
        assert_eq!(p.parked(), 0);
        // The mount closing unparks everyone, and later parks are refused at once.
        stay.store(true, Ordering::Release);
        p.park(&f, 0, 3, fake(2));
        p.park(&f, 1, 3, fake(3));
        f.close();
        expect(&mut rx, &[(2, "unpark", 3), (3, "unpark", 3)]).await;
        p.park(&f, 0, 3, fake(4));
        assert_eq!(
            rx.try_recv().ok(),
            Some((4, "unpark", 3)),
            "refused at once"
        );
    }
}
