//! The server's locks, and the rule that keeps them from deadlocking.
//!
//! **The lock rule:** a guard is a leaf. While a thread holds one of these locks it takes no
//! other lock (not another one, not the same one again for reading), and a guard never outlives
//! the function that took it. Whatever is read under a lock is copied or reference-counted out
//! and the guard dropped before anything else is called. With every guard a leaf there is no
//! lock order to get wrong and no cycle to wait in: a thread that holds a lock always releases
//! it without waiting for anyone.
//!
//! Why it is a rule and not a convention: `parking_lot`'s `RwLock` is writer-fair, so a read
//! lock taken twice on one thread deadlocks as soon as a writer queues between the two reads
//! (#9: admin stats read a mount's state, then read it again through a helper, while its source
//! stored new headers; both runtime threads parked for good).
//!
//! **Checked in debug builds** (every test of the suite runs a debug build): [`Mutex`] and
//! [`RwLock`] wrap `parking_lot`'s and record, per thread, which lock is held and where it was
//! taken. Taking a lock while one is held prints both places and aborts the process, so a
//! nested lock fails the first test that reaches it, whether or not a writer happened to queue.
//! In release builds the wrappers are `parking_lot`'s locks and nothing more.
//!
//! Data that many threads read and few write (a mount's stream information, its title and its
//! stream headers) is not behind a lock at all: it is an immutable snapshot swapped whole
//! ([`arc_swap::ArcSwap`]), which readers load without waiting and cannot nest.

use std::ops::{Deref, DerefMut};

/// A mutual-exclusion lock whose guard is checked to be a leaf (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T> {
    inner: parking_lot::Mutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Mutex {
            inner: parking_lot::Mutex::new(value),
        }
    }

    #[track_caller]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        let held = held::enter("Mutex::lock");
        MutexGuard {
            guard: self.inner.lock(),
            _held: held,
        }
    }
}

#[derive(Debug)]
pub(crate) struct MutexGuard<'a, T> {
    guard: parking_lot::MutexGuard<'a, T>,
    _held: held::Held,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A reader-writer lock whose guards are checked to be leaves (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct RwLock<T> {
    inner: parking_lot::RwLock<T>,
}

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        RwLock {
            inner: parking_lot::RwLock::new(value),
        }
    }

    #[track_caller]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let held = held::enter("RwLock::read");
        ReadGuard {
            guard: self.inner.read(),
            _held: held,
        }
    }

    #[track_caller]
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        let held = held::enter("RwLock::write");
        WriteGuard {
            guard: self.inner.write(),
            _held: held,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ReadGuard<'a, T> {
    guard: parking_lot::RwLockReadGuard<'a, T>,
    _held: held::Held,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

#[derive(Debug)]
pub(crate) struct WriteGuard<'a, T> {
    guard: parking_lot::RwLockWriteGuard<'a, T>,
    _held: held::Held,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// The per-thread record of the lock held (debug builds).
#[cfg(debug_assertions)]
mod held {
    use std::cell::Cell;
    use std::panic::Location;

    type Taken = (&'static str, &'static Location<'static>);

    thread_local! {
        static HELD: Cell<Option<Taken>> = const { Cell::new(None) };
    }

    /// Proof that this thread holds a lock; dropping it records the release.
    #[derive(Debug)]
    pub(super) struct Held {
        // Guards stay on the thread that took them (parking_lot's guards are not `Send`).
        _not_send: std::marker::PhantomData<*const ()>,
    }

    /// Record that this thread takes a lock; abort if it already holds one.
    #[track_caller]
    pub(super) fn enter(what: &'static str) -> Held {
        let here = Location::caller();
        HELD.with(|h| {
            if let Some((held, at)) = h.get() {
                violation(what, here, held, at);
            }
            h.set(Some((what, here)));
        });
        Held {
            _not_send: std::marker::PhantomData,
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            HELD.with(|h| h.set(None));
        }
    }

    #[cold]
    fn violation(what: &str, here: &Location<'_>, held: &str, at: &Location<'_>) -> ! {
        let thread = std::thread::current();
        let msg = format!(
            "lock rule broken (see crates/server/src/sync.rs): thread {:?} called {what} at {here} \
             while holding the lock it took with {held} at {at}\n{}",
            thread.name().unwrap_or("?"),
            std::backtrace::Backtrace::force_capture()
        );
        tracing::error!("{msg}");
        eprintln!("{msg}");
        // Not a panic: the runtime would catch it in the task and carry on with a server whose
        // invariant is broken. Debug builds only.
        std::process::abort();
    }
}

/// Release builds: no record, no cost.
#[cfg(not(debug_assertions))]
mod held {
    #[derive(Debug)]
    pub(super) struct Held;

    #[inline(always)]
    pub(super) fn enter(_what: &'static str) -> Held {
        Held
    }
}

/// A counter that many threads add to on a hot path and few read: one cache line per shard,
/// a thread adding to its own, so that adds from different cores never contend for a line
/// (one shared atomic, added to by every listener's every write, moved its cache line between
/// the cores thousands of times a second). A read sums the shards.
#[derive(Debug, Default)]
pub(crate) struct ShardedCounter {
    shards: [Shard; SHARDS],
}

/// More shards than the runtime has worker threads on the machines Agora runs on; threads
/// beyond that share shards (still correct, only less spread).
const SHARDS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(std::sync::atomic::AtomicU64);

impl ShardedCounter {
    pub(crate) fn add(&self, n: u64) {
        self.shards[shard_index()]
            .0
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(std::sync::atomic::Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// This thread's shard: threads take shards in turn as they first add.
fn shard_index() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_that_are_leaves_pass() {
        let a = Mutex::new(1);
        let b = RwLock::new(2);
        {
            let mut g = a.lock();
            *g += 1;
        }
        let x = *b.read();
        *b.write() += x;
        // One at a time: `(*a.lock(), *b.read())` would hold both guards to the end of the
        // statement, and the check would abort.
        let a_now = *a.lock();
        assert_eq!((a_now, *b.read()), (2, 4));
    }

    /// A nested lock aborts the process in debug builds: run the nesting in a child process
    /// (this test binary, filtered to the child test) and look at how it ended.
    #[cfg(debug_assertions)]
    #[test]
    fn a_nested_lock_aborts_with_both_places() {
        if std::env::var_os("AGORA_SYNC_CHILD").is_some() {
            let state = RwLock::new(0u32);
            let g = state.read();
            let again = state.read();
            unreachable!("nested read allowed: {} {}", *g, *again);
        }
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "sync::tests::a_nested_lock_aborts_with_both_places",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env("AGORA_SYNC_CHILD", "1")
            .output()
            .expect("run child");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the child survived:\n{err}");
        assert!(
            err.contains("lock rule broken")
                && err.contains("called RwLock::read at crates/server/src/sync.rs")
                && err.contains("holding the lock it took with RwLock::read at"),
            "{err}"
        );
    }

    #[test]
    fn a_sharded_counter_sums_what_every_thread_added() {
        let c = std::sync::Arc::new(ShardedCounter::default());
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(i);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(c.get(), (0..12).sum::<u64>() * 1000);
    }
}
