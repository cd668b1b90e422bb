//! The edge board: servers that follow this one and announce themselves when they poll its
//! mount list (`/admin/streamlist.txt?rserver=HOST&rport=PORT&interval=N`, Icecast-KH's
//! protocol; Agora edges add `maxlisteners=M`), what each last reported when probed (its
//! listeners and mounts), and the choice of the edge a listener is sent to.
//!
//! **Invariants:**
//! - At most [`MAX_EDGES`] edges are known; an edge is forgotten when it has not polled for
//!   its interval plus [`FORGET_GRACE`] (as KH does).
//! - Only an edge whose last probe succeeded less than [`HEALTHY_FOR`] ago gets listeners, so
//!   an edge that stops answering gets none within seconds, whatever its poll interval.
//! - The pick counts the listeners it sent since the probe began as the edge's load, so a
//!   burst of joins between two probes is spread, not all sent to the edge that was least
//!   loaded at the last probe.
//!
//! **Locks:** one leaf mutex over the list, taken for one announce, report, pick or snapshot
//! (see `crate::sync`); the probes themselves run outside it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::sync::Mutex;

/// Most edges remembered; announcements of more are refused.
pub(crate) const MAX_EDGES: usize = 64;
/// How long after its interval an edge that stopped polling is forgotten.
pub(crate) const FORGET_GRACE: Duration = Duration::from_secs(10);
/// How often each edge is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long one probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a successful probe vouches for an edge.
pub(crate) const HEALTHY_FOR: Duration = Duration::from_secs(5);
/// The listener limit assumed for an edge that announced none (an Icecast-KH slave): Agora's
/// default `server.max-listeners`.
const DEFAULT_LIMIT: usize = 16_000;
/// Longest announced host name (a DNS name's limit).
const MAX_HOST: usize = 253;
/// Most mounts kept per edge.
pub(crate) const MAX_EDGE_MOUNTS: usize = 256;

/// Every edge that announced itself.
#[derive(Debug, Default)]
pub(crate) struct EdgeBoard {
    list: Mutex<Vec<Edge>>,
    /// Woken when a new edge announces itself, so that it is probed at once.
    pub(crate) new_edge: tokio::sync::Notify,
    /// Listeners sent to an edge, all edges together.
    redirects: AtomicU64,
}

/// Why an announcement was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AnnounceError {
    #[error("rserver is not a host name or address")]
    BadHost,
    #[error("rport is not a port number")]
    BadPort,
    #[error("interval is not a number of seconds from 1 to 3600")]
    BadInterval,
    #[error("maxlisteners is not a number")]
    BadLimit,
    #[error("already {MAX_EDGES} edges known")]
    Full,
}

/// What an edge said when probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EdgeLoad {
    /// Its listeners, all mounts together.
    pub(crate) listeners: usize,
    /// The mounts it serves, each with its listeners.
    pub(crate) mounts: Vec<(String, usize)>,
}

#[derive(Debug)]
struct Edge {
    host: String,
    port: u16,
    interval: Duration,
    limit: Option<usize>,
    /// Where the last announcement came from.
    from: IpAddr,
    first_seen: SystemTime,
    last_poll: Instant,
    /// The last successful probe, and what it said.
    last_ok: Option<(Instant, EdgeLoad)>,
    /// Whether the last probe succeeded.
    answering: bool,
    last_error: Option<String>,
    /// Listeners sent here since the edge was announced.
    redirects: u64,
    /// `redirects` when the probe that gave `last_ok` began.
    redirects_at_probe: u64,
}

impl Edge {
    fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    fn load(&self) -> Option<&EdgeLoad> {
        match &self.last_ok {
            Some((at, load)) if self.answering && at.elapsed() < HEALTHY_FOR => Some(load),
            _ => None,
        }
    }
}

/// `host:port`, an IPv6 address in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One edge to probe: its address, and its redirect count when the probe begins.
#[derive(Debug, Clone)]
pub(crate) struct ProbeTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) redirects: u64,
}

impl EdgeBoard {
    /// An edge's poll of the mount list announced it (the query's `rserver`, `rport`,
    /// `interval` and `maxlisteners`, as sent). Returns whether the edge is new.
    pub(crate) fn announce(
        &self,
        host: &str,
        port: &str,
        interval: Option<&str>,
        limit: Option<&str>,
        from: IpAddr,
    ) -> Result<bool, AnnounceError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = host.parse::<IpAddr>().is_ok();
        let name = !host.is_empty()
            && host.len() <= MAX_HOST
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with(['-', '.']);
        if !(ip || name) {
            return Err(AnnounceError::BadHost);
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(AnnounceError::BadPort),
        };
        let interval = match interval.map(str::parse::<u64>) {
            None => Duration::from_secs(10),
            Some(Ok(s)) if (1..=3600).contains(&s) => Duration::from_secs(s),
            Some(_) => return Err(AnnounceError::BadInterval),
        };
        let limit = match limit.map(str::parse::<usize>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => return Err(AnnounceError::BadLimit),
        };
        let mut list = self.list.lock();
        expire(&mut list);
        if let Some(e) = list.iter_mut().find(|e| e.host == host && e.port == port) {
            e.interval = interval;
            e.limit = limit;
            e.from = from;
            e.last_poll = Instant::now();
            return Ok(false);
        }
        if list.len() >= MAX_EDGES {
            return Err(AnnounceError::Full);
        }
        list.push(Edge {
            host: host.to_string(),
            port,
            interval,
            limit,
            from,
            first_seen: SystemTime::now(),
            last_poll: Instant::now(),
            last_ok: None,
            answering: false,
            last_error: None,
            redirects: 0,
            redirects_at_probe: 0,
        });
        drop(list);
        self.new_edge.notify_one();
        Ok(true)
    }

    /// The edges to probe now (those that stopped polling are forgotten first).
    pub(crate) fn targets(&self) -> Vec<ProbeTarget> {
        let mut list = self.list.lock();
        expire(&mut list);
        list.iter()
            .map(|e| ProbeTarget {
                host: e.host.clone(),
                port: e.port,
                redirects: e.redirects,
            })
            .collect()
    }

    /// A probe's result. Returns whether the edge's health changed (to log it once).
    pub(crate) fn report(&self, target: &ProbeTarget, result: Result<EdgeLoad, String>) -> bool {
        let mut list = self.list.lock();
        let Some(e) = list
            .iter_mut()
            .find(|e| e.host == target.host && e.port == target.port)
        else {
            return false;
        };
        let was = e.answering;
        match result {
            Ok(mut load) => {
                load.mounts.truncate(MAX_EDGE_MOUNTS);
                e.answering = true;
                e.last_ok = Some((Instant::now(), load));
                e.redirects_at_probe = target.redirects;
            }
            Err(why) => {
                e.answering = false;
                e.last_error = Some(why);
            }
        }
        was != e.answering
    }

    /// The edge a new listener of `mount` goes to: the healthy edge that carries it, below its
    /// limit, with the smallest share of its limit in use (the listeners it reported plus those
    /// sent to it since). `host:port`, or `None` when no edge can take the listener.
    pub(crate) fn pick(&self, mount: &str) -> Option<String> {
        let mut list = self.list.lock();
        let best = list
            .iter_mut()
            .filter_map(|e| {
                let load = e.load()?;
                if !load.mounts.iter().any(|(m, _)| m == mount) {
                    return None;
                }
                let limit = e.limit.unwrap_or(DEFAULT_LIMIT);
                let sent = e.redirects.saturating_sub(e.redirects_at_probe) as usize;
                let used = load.listeners.saturating_add(sent);
                // Compare used/limit without floating point: used * 2^20 / limit.
                (used < limit)
                    .then(|| ((used as u128) << 20) / limit.max(1) as u128)
                    .map(|share| (share, e))
            })
            .min_by_key(|(share, e)| (*share, e.redirects))
            .map(|(_, e)| e)?;
        best.redirects += 1;
        let to = best.authority();
        drop(list);
        self.redirects.fetch_add(1, Ordering::Relaxed);
        Some(to)
    }

    /// The listeners of `mount` on the healthy edges, at their last probes.
    pub(crate) fn listeners_of(&self, mount: &str) -> usize {
        let list = self.list.lock();
        list.iter()
            .filter_map(Edge::load)
            .flat_map(|l| l.mounts.iter())
            .filter(|(m, _)| m == mount)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Listeners sent to an edge since start.
    pub(crate) fn redirects(&self) -> u64 {
        self.redirects.load(Ordering::Relaxed)
    }

    /// The edges now, as `/admin/relays` lists them.
    pub(crate) fn views(&self) -> Vec<EdgeView> {
        let list = self.list.lock();
        list.iter()
            .map(|e| {
                let load = e.load();
                EdgeView {
                    url: format!("http://{}/", e.authority()),
                    healthy: load.is_some(),
                    listeners: load.map(|l| l.listeners),
                    max_listeners: e.limit,
                    mounts: load
                        .map(|l| l.mounts.iter().map(|(m, _)| m.clone()).collect())
                        .unwrap_or_default(),
                    redirects: e.redirects,
                    announced_from: e.from.to_string(),
                    interval_secs: e.interval.as_secs(),
                    seconds_since_poll: e.last_poll.elapsed().as_secs(),
                    seconds_known: e.first_seen.elapsed().unwrap_or_default().as_secs(),
                    last_error: e.last_error.clone(),
                }
            })
            .collect()
    }
}

/// Forget the edges that stopped polling.
fn expire(list: &mut Vec<Edge>) {
    list.retain(|e| e.last_poll.elapsed() < e.interval + FORGET_GRACE);
}

/// An edge as `/admin/relays` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EdgeView {
    /// Where listeners are sent: `http://host:port/`.
    pub(crate) url: String,
    /// Answering probes: it gets listeners.
    pub(crate) healthy: bool,
    /// Its listeners at the last probe (unknown while it does not answer).
    pub(crate) listeners: Option<usize>,
    /// The limit it announced.
    pub(crate) max_listeners: Option<usize>,
    /// The mounts it serves.
    pub(crate) mounts: Vec<String>,
    /// Listeners sent there.
    pub(crate) redirects: u64,
    /// The address its polls come from.
    pub(crate) announced_from: String,
    pub(crate) interval_secs: u64,
    pub(crate) seconds_since_poll: u64,
    pub(crate) seconds_known: u64,
    pub(crate) last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn load(listeners: usize, mounts: &[&str]) -> EdgeLoad {
        EdgeLoad {
            listeners,
            mounts: mounts.iter().map(|m| (m.to_string(), 1)).collect(),
        }
    }

    fn probe_all(board: &EdgeBoard, loads: &[(&str, EdgeLoad)]) {
        for t in board.targets() {
            let l = loads
                .iter()
                .find(|(h, _)| *h == t.host)
                .map(|(_, l)| l.clone());
            board.report(&t, l.ok_or_else(|| "no answer".to_string()));
        }
    }

    #[test]
    fn announcements_are_validated() {
        let b = EdgeBoard::default();
        for (host, port, interval, limit, want) in [
            ("", "8000", None, None, AnnounceError::BadHost),
            ("a b", "8000", None, None, AnnounceError::BadHost),
            ("evil/x", "8000", None, None, AnnounceError::BadHost),
            ("-x", "8000", None, None, AnnounceError::BadHost),
            ("h", "0", None, None, AnnounceError::BadPort),
            ("h", "70000", None, None, AnnounceError::BadPort),
            ("h", "80", Some("0"), None, AnnounceError::BadInterval),
            ("h", "80", Some("x"), None, AnnounceError::BadInterval),
            ("h", "80", None, Some("-1"), AnnounceError::BadLimit),
        ] {
            assert_eq!(b.announce(host, port, interval, limit, FROM), Err(want));
        }
        assert_eq!(
            b.announce("edge.example", "8000", Some("5"), None, FROM),
            Ok(true)
        );
        assert_eq!(
            b.announce("edge.example", "8000", Some("5"), None, FROM),
            Ok(false)
        );
        assert_eq!(
            b.announce("[::1]", "8001", None, Some("10"), FROM),
            Ok(true)
        );
        assert_eq!(b.views()[1].url, "http://[::1]:8001/");
        for i in 2..MAX_EDGES {
            assert_eq!(
                b.announce(&format!("e{i}"), "1", None, None, FROM),
                Ok(true)
            );
        }
        assert_eq!(
            b.announce("one-more", "1", None, None, FROM),
            Err(AnnounceError::Full)
        );
    }

    #[test]
    fn the_least_loaded_healthy_edge_that_carries_the_mount_gets_the_listener() {
        let b = EdgeBoard::default();
        assert_eq!(b.pick("/a"), None, "no edge");
        b.announce("e1", "8000", None, Some("100"), FROM)
            .expect("e1");
        b.announce("e2", "8000", None, Some("100"), FROM)
            .expect("e2");
        b.announce("e3", "8000", None, Some("100"), FROM)
            .expect("e3");
        assert_eq!(b.pick("/a"), None, "none probed yet");
        probe_all(
            &b,
            &[
                ("e1", load(10, &["/a", "/b"])),
                ("e2", load(12, &["/a"])),
                ("e3", load(0, &["/b"])),
            ],
        );
        // e3 is emptiest but lacks /a; e1 until it is as full as e2, then in turn (a tie
        // goes to the edge sent fewer listeners).
        let picks: Vec<_> = (0..6).map(|_| b.pick("/a").expect("an edge")).collect();
        assert_eq!(
            picks,
            [
                "e1:8000", "e1:8000", "e2:8000", "e1:8000", "e2:8000", "e1:8000"
            ]
        );
        assert_eq!(b.pick("/b"), Some("e3:8000".into()));
        assert_eq!(b.pick("/c"), None, "no edge carries it");
        assert_eq!(
            b.listeners_of("/a"),
            2,
            "one listener of /a on e1 and e2 each"
        );
        // A probe resets the count of listeners sent since: the edge's own count has them.
        probe_all(
            &b,
            &[
                ("e1", load(14, &["/a"])),
                ("e2", load(14, &["/a"])),
                ("e3", load(99, &["/b"])),
            ],
        );
        assert_eq!(b.pick("/b"), Some("e3:8000".into()));
        assert_eq!(b.pick("/b"), None, "e3 is at its limit");
        // An edge that stops answering gets no more listeners.
        probe_all(&b, &[("e2", load(14, &["/a"]))]);
        assert!(
            (0..5).all(|_| b.pick("/a") == Some("e2:8000".into())),
            "only e2 answers"
        );
        let views = b.views();
        assert!(!views[0].healthy && views[0].last_error.as_deref() == Some("no answer"));
        assert_eq!(b.redirects(), 13);
    }

    #[test]
    fn an_edge_is_forgotten_when_it_stops_polling() {
        let b = EdgeBoard::default();
        b.announce("e1", "8000", Some("1"), None, FROM).expect("e1");
        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(12)) else {
            return; // the machine booted less than 12 s ago
        };
        b.list.lock()[0].last_poll = long_ago;
        assert!(b.targets().is_empty());
        assert!(b.views().is_empty());
    }
}
