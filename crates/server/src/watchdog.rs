//! The runtime watchdog: a stalled server says so instead of hanging in silence.
//!
//! ```text
//!   heartbeat task (on the runtime) ── every BEAT ──► last beat (an atomic)
//!                                                          │ read every BEAT
//!   watchdog thread (an OS thread of its own) ◄────────────┘
//!     beat older than LIMIT ─► error log: how long, the runtime's task counts, and what each
//!                              of the process's threads is doing (state, kernel wait channel)
//!     beats again           ─► info log: how long the stall lasted
//! ```
//!
//! A runtime whose worker threads are all parked on a lock (#9), blocked in a system call or
//! spinning cannot run the heartbeat; the watchdog thread is outside the runtime, so it still
//! runs and reports. It cannot unstick anything: it makes the stall visible to the operator
//! (the log, and `agora_runtime_stalls_total` in `/metrics` once the server answers again).
//!
//! **Invariant:** the watchdog takes no lock the runtime uses; it reads one atomic and
//! `/proc/self`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// How often the heartbeat beats (and the watchdog looks).
pub(crate) const BEAT: Duration = Duration::from_secs(1);
/// A heartbeat this late is a stall.
pub(crate) const LIMIT: Duration = Duration::from_secs(5);

/// A stall, as the watchdog saw it.
#[derive(Debug, Clone)]
pub(crate) struct Stall {
    /// How long the runtime had not run the heartbeat.
    pub(crate) late: Duration,
    /// What the runtime and the process's threads were doing.
    pub(crate) report: String,
}

/// What the watchdog does when the runtime stalls and when it recovers.
pub(crate) trait OnStall: Send + 'static {
    fn stalled(&mut self, stall: &Stall);
    fn recovered(&mut self, after: Duration);
}

/// The server's reaction: log it, count it.
#[derive(Debug)]
pub(crate) struct LogStall {
    pub(crate) counter: prometheus_client::metrics::counter::Counter,
}

impl OnStall for LogStall {
    fn stalled(&mut self, stall: &Stall) {
        self.counter.inc();
        tracing::error!(
            late_secs = stall.late.as_secs(),
            "runtime stalled: no heartbeat for {:.1} s; no request, source or listener is being served. {}",
            stall.late.as_secs_f64(),
            stall.report
        );
    }

    fn recovered(&mut self, after: Duration) {
        tracing::warn!(
            stalled_secs = after.as_secs(),
            "runtime running again after a stall of {:.1} s",
            after.as_secs_f64()
        );
    }
}

/// Stops the watchdog thread when dropped (the heartbeat stops with the shutdown token).
#[derive(Debug)]
pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Start the heartbeat on `rt` and the watchdog thread beside it.
pub(crate) fn start(
    rt: &Handle,
    beat: Duration,
    limit: Duration,
    shutdown: CancellationToken,
    mut on_stall: impl OnStall,
) -> std::io::Result<Watchdog> {
    let epoch = Instant::now();
    // Milliseconds since `epoch` of the last beat.
    let last = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let last = last.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(beat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => last.store(millis(epoch.elapsed()), Ordering::Release),
                }
            }
        });
    }
    let rt = rt.clone();
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut stalled_since: Option<Duration> = None;
            while !stopped.load(Ordering::Acquire) {
                std::thread::sleep(beat);
                let now = epoch.elapsed();
                let last_beat = Duration::from_millis(last.load(Ordering::Acquire));
                let late = now.saturating_sub(last_beat);
                match stalled_since {
                    None if late > limit => {
                        stalled_since = Some(last_beat);
                        on_stall.stalled(&Stall {
                            late,
                            report: report(&rt),
                        });
                    }
                    Some(since) if last_beat > since => {
                        stalled_since = None;
                        on_stall.recovered(last_beat.saturating_sub(since));
                    }
                    _ => {}
                }
            }
        })?;
    Ok(Watchdog { stop })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What is known from outside the runtime: its task counts, and each thread's state and
/// kernel wait channel (`futex_wait…` on a lock or a condition, `do_epoll_wait` idle, `R`
/// running).
fn report(rt: &Handle) -> String {
    let m = rt.metrics();
    let mut out = format!(
        "Runtime: {} worker threads, {} tasks alive, {} queued globally. Threads:",
        m.num_workers(),
        m.num_alive_tasks(),
        m.global_queue_depth(),
    );
    let mut tasks: Vec<_> = std::fs::read_dir("/proc/self/task")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    tasks.sort();
    for t in tasks {
        let read = |f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_default();
        let stat = read("stat");
        // The state letter follows the parenthesised command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let _ = write!(
            out,
            " [{} {} {state} {}]",
            t.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            read("comm").trim(),
            read("wchan").trim(),
        );
    }
    out.push_str(
        " (state S with wchan futex_*: waiting on a lock or a condition; R: running. Every \
         runtime worker waiting on a futex while nothing is served is a deadlock: please report it \
         with this line.)",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    enum Seen {
        Stalled(Stall),
        Recovered(Duration),
    }

    struct Tell(mpsc::Sender<Seen>);

    impl OnStall for Tell {
        fn stalled(&mut self, stall: &Stall) {
            let _ = self.0.send(Seen::Stalled(stall.clone()));
        }
        fn recovered(&mut self, after: Duration) {
            let _ = self.0.send(Seen::Recovered(after));
        }
    }

    /// A runtime whose only worker is blocked (the stimulus is the blocking call itself) is
    /// reported with its threads, then reported running again when the worker is free.
    #[test]
    fn a_blocked_runtime_is_reported_then_its_recovery() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stall-worker")
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, rx) = mpsc::channel();
        let shutdown = CancellationToken::new();
        let _dog = start(
            rt.handle(),
            Duration::from_millis(50),
            Duration::from_millis(300),
            shutdown.clone(),
            Tell(tx),
        )
        .expect("watchdog");
        let (free_tx, free_rx) = mpsc::channel::<()>();
        // Block the only worker until the stall has been seen.
        rt.spawn(async move {
            let _ = free_rx.recv_timeout(Duration::from_secs(30));
        });
        let stall = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Seen::Stalled(s)) => s,
            Ok(Seen::Recovered(_)) => panic!("recovered before stalling"),
            Err(e) => panic!("no stall reported: {e}"),
        };
        assert!(stall.late > Duration::from_millis(300), "{:?}", stall.late);
        assert!(
            stall.report.contains("1 worker threads") && stall.report.contains("stall-worker"),
            "{}",
            stall.report
        );
        free_tx.send(()).expect("free the worker");
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Seen::Recovered(after)) => assert!(after > Duration::from_millis(300)),
            Ok(Seen::Stalled(_)) => panic!("a second stall instead of the recovery"),
            Err(e) => panic!("no recovery reported: {e}"),
        }
        shutdown.cancel();
    }
}
