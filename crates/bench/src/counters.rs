//! What the server's kernel did during the window, per listener: its threads' context switches
//! (from `/proc/PID/task/*/status`: each is a thread going to sleep or being preempted, so they
//! count the wake-ups a design costs) and its write system calls (`perf stat` on the
//! `syscalls:sys_enter_*` tracepoints, when perf is installed and allowed: root, or
//! `kernel.perf_event_paranoid` <= 1). Both are the same for any server, so Agora, icecast2 and
//! the floor are compared on equal terms.

use std::process::Stdio;

use serde::Serialize;
use tokio::process::{Child, Command};

/// The tracepoints counted: every way a server writes to a socket, and all system calls.
const EVENTS: [&str; 5] = [
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_sendmsg",
    "raw_syscalls:sys_enter",
];

/// Counting in progress (see [`start`]).
pub(crate) struct Counting {
    pid: u32,
    switches: Option<u64>,
    perf: Option<Child>,
}

/// The counts over the window.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct Counts {
    /// Context switches of all the server's threads.
    pub(crate) context_switches: Option<u64>,
    /// write + writev + sendto + sendmsg calls.
    pub(crate) writes: Option<u64>,
    /// All system calls.
    pub(crate) syscalls: Option<u64>,
}

/// Start counting for `secs` seconds (the window).
pub(crate) fn start(pid: u32, secs: u64) -> Counting {
    let perf = Command::new("perf")
        .args(["stat", "-x", ",", "-e", &EVENTS.join(",")])
        .args(["-p", &pid.to_string(), "--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok();
    Counting {
        pid,
        switches: context_switches(pid),
        perf,
    }
}

impl Counting {
    /// The counts, once the window is over.
    pub(crate) async fn finish(self) -> Counts {
        let switches = context_switches(self.pid)
            .zip(self.switches)
            .map(|(after, before)| after.saturating_sub(before));
        let mut counts = Counts {
            context_switches: switches,
            ..Counts::default()
        };
        if let Some(perf) = self.perf
            && let Ok(out) = perf.wait_with_output().await
            && out.status.success()
        {
            let text = String::from_utf8_lossy(&out.stderr);
            let (writes, all) = parse_perf(&text);
            counts.writes = writes;
            counts.syscalls = all;
        }
        counts
    }
}

/// `perf stat -x,` output: `count,unit,event,...` lines. Returns (writes, all syscalls); `None`
/// where an event was not counted.
fn parse_perf(text: &str) -> (Option<u64>, Option<u64>) {
    let mut writes: Option<u64> = None;
    let mut all = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(count), Some(event)) = (f.first(), f.get(2)) else {
            continue;
        };
        let Ok(n) = count.trim().parse::<u64>() else {
            continue;
        };
        match *event {
            "raw_syscalls:sys_enter" => all = Some(n),
            e if EVENTS[..4].contains(&e) => writes = Some(writes.unwrap_or(0) + n),
            _ => {}
        }
    }
    (writes, all)
}

/// Voluntary and involuntary context switches of every thread of `pid` so far.
fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_output_is_summed() {
        let text = "1200,,syscalls:sys_enter_write,100.00,,\n\
                    30000,,syscalls:sys_enter_writev,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_sendto,0.00,,\n\
                    5,,syscalls:sys_enter_sendmsg,100.00,,\n\
                    40000,,raw_syscalls:sys_enter,100.00,,\n";
        assert_eq!(parse_perf(text), (Some(31205), Some(40000)));
        assert_eq!(parse_perf("garbage\n"), (None, None));
    }

    #[test]
    fn this_process_has_context_switches() {
        assert!(context_switches(std::process::id()).is_some());
    }
}
