//! The server's own log, against peers who would flood or forge it (#13): peer-controlled text
//! shown escaped and bounded ([`shown`]), and the lines a peer can make the server write over
//! and over let through a few at a time ([`Limiter`]).
//!
//! **Invariants:**
//! - *Logs are bounded per peer:* every line a remote peer can trigger repeatedly (a refused
//!   password, a bad request head, a source's bad bytes or new Ogg chains, a listener refused
//!   or cut off...) asks [`Limiter::admit`] first. Per key (the kind of line and the peer's
//!   address, or the mount it is about) the first [`BURST`] lines of a [`WINDOW`] are logged;
//!   the rest are counted, and one summary line says how many (`... (1234 more in the last
//!   10 s) peer=203.0.113.7`) when the window has passed. Whoever sends them, a kind logs at
//!   most [`KIND_BURST`] lines a window; beyond that a single line counts them. So a flood
//!   costs a few lines per window however fast it comes, a botnet a bounded number, and the
//!   first occurrences are always there.
//! - *Bounded memory, whoever asks:* at most [`MAX_KEYS`] keys are tracked; a peer is keyed by
//!   its IP address (an IPv6 peer by its /64), never by its port, so rotating source ports or
//!   addresses within one host's prefix does not make a new key. With the table full of live
//!   keys, the lines of new keys count toward their kind's summary.
//! - *Peer text is escaped and bounded in every field:* [`shown`] writes control characters
//!   (C0, DEL, C1: ESC, CR, LF, NUL...), the Unicode marks that reorder or break a line, `\`
//!   and `"` as escapes, and at most [`MAX_SHOWN`] characters. No log line can be split, a
//!   terminal cannot be driven, and the text before a line's message (time, level, the
//!   connection's span, the module) holds nothing a peer chose with a space in it, which is
//!   what lets `docs/fail2ban/agora.conf` take the address from a fixed place.
//!
//! Hand-written rather than a crate: the rate limiters on crates.io (`governor` and the like)
//! answer "may this pass?" with a token bucket, but say nothing of what they refused, and
//! what is wanted here is the count of suppressed lines per key, in a table whose size an
//! attacker cannot grow. It is a hash map under one short lock (a leaf: the lines are written
//! after it is released), looked up on error paths only; a suppressed line costs one hash and
//! one lookup, and allocates nothing.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// The window lines are counted in.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Lines of one key logged per window.
pub(crate) const BURST: u32 = 5;
/// Lines of one kind logged per window, whatever their keys.
pub(crate) const KIND_BURST: u32 = 50;
/// Most keys tracked at once.
pub(crate) const MAX_KEYS: usize = 4096;
/// Most characters of peer text a field shows.
pub(crate) const MAX_SHOWN: usize = 100;

/// The text `s`, as a log field may show it: control characters and the Unicode marks that
/// reorder or break a line escaped (`\x1b`, `\r`, `\n`, `\0`, `\u{9b}`, `\u{202e}`), `\` and
/// `"` too, and cut at [`MAX_SHOWN`] characters (then `...`). `Display` shows it bare,
/// `Debug` in quotes.
pub(crate) fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// See [`shown`].
#[derive(Clone, Copy)]
pub(crate) struct Shown<'a>(&'a str);

impl Shown<'_> {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_SHOWN) {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\0' => f.write_str("\\0")?,
                c if (c as u32) < 0x80 && c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() || reorders_or_breaks(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        if chars.next().is_some() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Unicode format and separator characters that move text around or end a line on screen:
/// bidirectional marks, embeddings, overrides and isolates, the line and paragraph separators,
/// and the byte order mark.
fn reorders_or_breaks(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        self.write(f)?;
        f.write_char('"')
    }
}

/// The kinds of line a peer can make the server write over and over. Each is limited on its
/// own (a peer's wrong passwords do not hide its bad requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request head that could not be read (`server.rs`).
    BadRequest,
    /// A source with the wrong credentials (fail2ban matches these).
    SourceCredentials,
    /// A source without credentials (libshout's probe).
    SourceProbe,
    /// A source refused for its path, a busy mount or the source limit.
    SourceRefused,
    /// A source connected.
    SourceConnected,
    /// A source ended or was dropped.
    SourceEnded,
    /// An admin request with the wrong credentials (fail2ban matches these).
    AdminCredentials,
    /// An admin request without credentials (libshout's metadata call, a browser's first try).
    AdminProbe,
    /// An admin request refused by the cross-site rule (keyed by peer and command).
    CrossSite,
    /// An edge's announcement ignored.
    EdgeAnnouncement,
    /// A title set through the admin (keyed by mount).
    TitleSet,
    /// A title put, or not put, into an Ogg stream (keyed by mount).
    InbandTitle,
    /// A listener refused by a listener limit.
    ListenerRefused,
    /// A listener cut off for lagging.
    ListenerLagged,
    /// A source's bytes the demuxer rejected: bad CRCs, garbage (keyed by mount).
    BadData,
    /// New stream headers: a new Ogg chain (keyed by mount).
    StreamHeaders,
    /// A stream whose titles cannot go in-band (keyed by mount).
    TitlesOut,
    /// A title from the stream itself: Ogg comments, an upstream's ICY (keyed by mount).
    StreamTitle,
    /// A slide stored, or dropped to make room (keyed by mount).
    SlideStored,
    /// A slide upload refused for what it held: not an image, too large, bad parameters.
    SlideRefused,
    /// Part of a listener authentication URL's answer ignored (keyed by gate).
    AuthAnswer,
    /// A listener's `listener_remove` not delivered (keyed by gate).
    ListenerRemove,
}

impl Kind {
    const ALL: [Kind; 22] = [
        Kind::BadRequest,
        Kind::SourceCredentials,
        Kind::SourceProbe,
        Kind::SourceRefused,
        Kind::SourceConnected,
        Kind::SourceEnded,
        Kind::AdminCredentials,
        Kind::AdminProbe,
        Kind::CrossSite,
        Kind::EdgeAnnouncement,
        Kind::TitleSet,
        Kind::InbandTitle,
        Kind::ListenerRefused,
        Kind::ListenerLagged,
        Kind::BadData,
        Kind::StreamHeaders,
        Kind::TitlesOut,
        Kind::StreamTitle,
        Kind::SlideStored,
        Kind::SlideRefused,
        Kind::AuthAnswer,
        Kind::ListenerRemove,
    ];

    /// What the lines say, as their summary repeats it (the credential lines' own words, so
    /// that one filter matches both).
    fn what(self) -> &'static str {
        match self {
            Kind::BadRequest => "bad request",
            Kind::SourceCredentials => "source refused: wrong credentials",
            Kind::SourceProbe => "source asked without credentials: 401",
            Kind::SourceRefused => "source refused",
            Kind::SourceConnected => "source connected",
            Kind::SourceEnded => "source ended or dropped",
            Kind::AdminCredentials => "admin request refused: wrong credentials",
            Kind::AdminProbe => "admin request without credentials: 401",
            Kind::CrossSite => "admin request refused by the cross-site rule",
            Kind::EdgeAnnouncement => "edge announcement ignored",
            Kind::TitleSet => "metadata updated",
            Kind::InbandTitle => "title put into the Ogg stream, or not",
            Kind::ListenerRefused => "listener refused",
            Kind::ListenerLagged => "listener cut off",
            Kind::BadData => "source sent bad data",
            Kind::StreamHeaders => "stream headers",
            Kind::TitlesOut => "titles stay out of this stream",
            Kind::StreamTitle => "title from the stream",
            Kind::SlideStored => "slide stored",
            Kind::SlideRefused => "slide refused",
            Kind::AuthAnswer => "listener authentication answer ignored",
            Kind::ListenerRemove => "listener_remove not delivered",
        }
    }

    /// The level of the summary, the lines' own: warnings, information, and the debug level
    /// of what every client of a kind does by design (libshout's credential-less probe).
    fn level(self) -> tracing::Level {
        match self {
            Kind::SourceCredentials
            | Kind::SourceRefused
            | Kind::AdminCredentials
            | Kind::CrossSite
            | Kind::EdgeAnnouncement
            | Kind::ListenerRefused
            | Kind::BadData
            | Kind::TitlesOut
            | Kind::SlideRefused
            | Kind::AuthAnswer
            | Kind::ListenerRemove => tracing::Level::WARN,
            Kind::SourceProbe | Kind::AdminProbe => tracing::Level::DEBUG,
            _ => tracing::Level::INFO,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Whom or what a line is about: its key, with its kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum About<'a> {
    /// A peer, by address.
    Peer(IpAddr),
    /// A peer and one of a few names (an admin command).
    PeerCommand(IpAddr, &'a str),
    /// A mount, by path.
    Mount(&'a str),
}

impl About<'_> {
    fn peer(&self) -> Option<IpAddr> {
        match *self {
            About::Peer(ip) | About::PeerCommand(ip, _) => Some(ip),
            About::Mount(_) => None,
        }
    }
}

/// The address a peer is counted by: an IPv4 address (an IPv4-mapped IPv6 one too), or an
/// IPv6 address's /64, the least a host is given.
fn counted(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// One key's window.
#[derive(Debug)]
struct Slot {
    kind: Kind,
    /// The last address seen (the key holds an IPv6 peer's whole /64).
    peer: Option<IpAddr>,
    /// The mount or command, as shown.
    name: Box<str>,
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// One kind's window, over all keys.
#[derive(Debug, Clone, Copy)]
struct KindWindow {
    start: Instant,
    logged: u32,
    /// Lines not logged that no key's summary counts.
    unkeyed: u64,
}

#[derive(Debug)]
struct Table {
    slots: HashMap<u64, Slot>,
    kinds: [KindWindow; Kind::ALL.len()],
    /// With the table full of live windows: none ends before this.
    full_until: Option<Instant>,
}

/// A summary to log, once the lock is released.
#[derive(Debug)]
struct Summary {
    kind: Kind,
    peer: Option<IpAddr>,
    name: Box<str>,
    command: bool,
    count: u64,
    secs: u64,
}

/// A `tracing` event at a level chosen at run time (the macros want it fixed).
macro_rules! event_at {
    ($level:expr, $($arg:tt)+) => {
        match $level {
            tracing::Level::WARN => tracing::warn!($($arg)+),
            tracing::Level::INFO => tracing::info!($($arg)+),
            _ => tracing::debug!($($arg)+),
        }
    };
}

impl Summary {
    fn log(&self) {
        let (kind, n, secs) = (self.kind, self.count, self.secs);
        let what = kind.what();
        if self.peer.is_none() && self.name.is_empty() {
            // Lines of keys beyond the kind's own limit, or the table's: no one peer's.
            event_at!(
                kind.level(),
                "{what}: {n} more from other peers in the last {secs} s"
            );
            return;
        }
        let peer = self.peer.map(tracing::field::display);
        let name = Some(&*self.name).filter(|n| !n.is_empty());
        let (mount, command) = match self.command {
            true => (None, name),
            false => (name.map(tracing::field::display), None),
        };
        // `peer` first, in the place the refused-credentials line has it.
        event_at!(
            kind.level(),
            peer,
            mount,
            command,
            "{what} ({n} more in the last {secs} s)"
        );
    }
}

/// Lines a peer can make the server write over and over, let through a few per key and
/// window (see the module's invariants).
#[derive(Debug)]
pub(crate) struct Limiter {
    table: Mutex<Table>,
    keys: RandomState,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(Instant::now())
    }
}

impl Limiter {
    fn new(now: Instant) -> Limiter {
        let window = KindWindow {
            start: now,
            logged: 0,
            unkeyed: 0,
        };
        Limiter {
            table: Mutex::new(Table {
                slots: HashMap::new(),
                kinds: [window; Kind::ALL.len()],
                full_until: None,
            }),
            keys: RandomState::new(),
        }
    }

    /// Whether to log a line of `kind` about `about` now. A summary of the key's (or the
    /// kind's) last window, if lines were suppressed in it, is logged first.
    pub(crate) fn admit(&self, kind: Kind, about: About<'_>) -> bool {
        let (admit, summaries) = self.admit_at(kind, about, Instant::now());
        for s in summaries.iter().flatten() {
            s.log();
        }
        admit
    }

    /// Log the summaries of every window that has passed, and forget its key: run every
    /// second or so, so that a flood that stopped is still summarised.
    pub(crate) fn sweep(&self) {
        for s in self.sweep_at(Instant::now(), false) {
            s.log();
        }
    }

    /// Log the summary of every window, passed or not: at shutdown.
    pub(crate) fn flush(&self) {
        for s in self.sweep_at(Instant::now(), true) {
            s.log();
        }
    }

    fn key(&self, kind: Kind, about: About<'_>) -> u64 {
        match about {
            About::Peer(ip) => self.keys.hash_one((kind.index(), counted(ip))),
            About::PeerCommand(ip, c) => self.keys.hash_one((kind.index(), counted(ip), c)),
            About::Mount(m) => self.keys.hash_one((kind.index(), m)),
        }
    }

    fn admit_at(&self, kind: Kind, about: About<'_>, now: Instant) -> (bool, [Option<Summary>; 2]) {
        let key = self.key(kind, about);
        let mut summaries = [None, None];
        let mut guard = self.table.lock();
        let table = &mut *guard;
        let k = &mut table.kinds[kind.index()];
        if now.duration_since(k.start) >= WINDOW {
            summaries[0] = roll_kind(kind, k, now);
        }
        let kind_open = k.logged < KIND_BURST;
        if let Some(slot) = table.slots.get_mut(&key) {
            if now.duration_since(slot.start) >= WINDOW {
                summaries[1] = roll_slot(slot, now);
            }
            if about.peer().is_some() {
                slot.peer = about.peer();
            }
            let admit = slot.logged < BURST && kind_open;
            if admit {
                slot.logged += 1;
                k.logged += 1;
            } else if slot.logged > 0 {
                slot.suppressed += 1;
            } else {
                k.unkeyed += 1;
            }
            return (admit, summaries);
        }
        if !kind_open || !make_room(table, now) {
            table.kinds[kind.index()].unkeyed += 1;
            return (false, summaries);
        }
        let name = match about {
            About::Peer(_) => String::new(),
            About::PeerCommand(_, c) | About::Mount(c) => shown(c).to_string(),
        };
        table.slots.insert(
            key,
            Slot {
                kind,
                peer: about.peer(),
                name: name.into_boxed_str(),
                start: now,
                logged: 1,
                suppressed: 0,
            },
        );
        table.kinds[kind.index()].logged += 1;
        (true, summaries)
    }

    /// The summaries of the windows that have passed (`all`: of every window), whose keys
    /// are forgotten.
    fn sweep_at(&self, now: Instant, all: bool) -> Vec<Summary> {
        let ended = |start: Instant| all || now.duration_since(start) >= WINDOW;
        let mut out = Vec::new();
        let mut guard = self.table.lock();
        let table = &mut *guard;
        for kind in Kind::ALL {
            let k = &mut table.kinds[kind.index()];
            if ended(k.start) {
                out.extend(roll_kind(kind, k, now));
            }
        }
        table.slots.retain(|_, slot| {
            if !ended(slot.start) {
                return true;
            }
            out.extend(roll_slot(slot, now));
            false
        });
        table.full_until = None;
        out
    }
}

/// A kind's window has passed: its summary, if lines were suppressed, and a new window.
fn roll_kind(kind: Kind, k: &mut KindWindow, now: Instant) -> Option<Summary> {
    let summary = (k.unkeyed > 0).then(|| Summary {
        kind,
        peer: None,
        name: "".into(),
        command: false,
        count: k.unkeyed,
        secs: now.duration_since(k.start).as_secs(),
    });
    *k = KindWindow {
        start: now,
        logged: 0,
        unkeyed: 0,
    };
    summary
}

/// A key's window has passed: its summary, if lines were suppressed, and a new window.
fn roll_slot(slot: &mut Slot, now: Instant) -> Option<Summary> {
    let summary = (slot.suppressed > 0).then(|| Summary {
        kind: slot.kind,
        peer: slot.peer,
        name: slot.name.clone(),
        command: slot.kind == Kind::CrossSite,
        count: slot.suppressed,
        secs: now.duration_since(slot.start).as_secs(),
    });
    slot.start = now;
    slot.logged = 0;
    slot.suppressed = 0;
    summary
}

/// Room for one more key: below [`MAX_KEYS`], or after forgetting the keys whose window has
/// passed with nothing to summarise (those with a summary wait for the sweep). With none to
/// forget, the table is not searched again until its first window can have passed.
fn make_room(table: &mut Table, now: Instant) -> bool {
    if table.slots.len() < MAX_KEYS {
        return true;
    }
    if table.full_until.is_some_and(|t| now < t) {
        return false;
    }
    table
        .slots
        .retain(|_, s| now.duration_since(s.start) < WINDOW || s.suppressed > 0);
    if table.slots.len() < MAX_KEYS {
        table.full_until = None;
        return true;
    }
    table.full_until = table.slots.values().map(|s| s.start + WINDOW).min();
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn shown_escapes_control_and_reordering_characters_and_bounds_the_length() {
        let cases = [
            ("/live.mp3", "/live.mp3"),
            ("a\x1b[31mb", "a\\x1b[31mb"),
            ("a\r\nb", "a\\r\\nb"),
            ("a\0b\tc", "a\\0b\\tc"),
            ("a\u{7f}b", "a\\x7fb"),
            ("a\u{9b}b", "a\\u{9b}b"),
            ("a\u{202e}b\u{2028}c", "a\\u{202e}b\\u{2028}c"),
            ("say \"hi\" \\o/", "say \\\"hi\\\" \\\\o/"),
            ("café ♫", "café ♫"),
        ];
        for (raw, want) in cases {
            assert_eq!(shown(raw).to_string(), want, "{raw:?}");
            assert_eq!(
                format!("{:?}", shown(raw)),
                format!("\"{want}\""),
                "{raw:?}"
            );
        }
        let long = "é".repeat(MAX_SHOWN + 1);
        assert_eq!(
            shown(&long).to_string(),
            format!("{}...", "é".repeat(MAX_SHOWN))
        );
        assert_eq!(
            shown(&long[..2 * MAX_SHOWN]).to_string(),
            "é".repeat(MAX_SHOWN)
        );
    }

    #[test]
    fn a_key_logs_a_burst_per_window_then_one_summary() {
        let t0 = Instant::now();
        let l = Limiter::new(t0);
        let peer = About::Peer(ip("203.0.113.7"));
        let mut logged = 0;
        for i in 0..1000 {
            let (admit, s) =
                l.admit_at(Kind::AdminCredentials, peer, t0 + Duration::from_millis(i));
            logged += u32::from(admit);
            assert!(s.iter().all(Option::is_none));
        }
        assert_eq!(logged, BURST);
        // Another kind, and another peer, have their own.
        assert!(l.admit_at(Kind::BadRequest, peer, t0).0);
        assert!(
            l.admit_at(Kind::AdminCredentials, About::Peer(ip("203.0.113.8")), t0)
                .0
        );
        // The next line after the window: the summary first, then the line.
        let (admit, s) = l.admit_at(
            Kind::AdminCredentials,
            peer,
            t0 + WINDOW + Duration::from_secs(1),
        );
        assert!(admit);
        let s = s[1].as_ref().expect("summary");
        assert_eq!((s.count, s.secs), (1000 - u64::from(BURST), 11));
        assert_eq!(s.peer, Some(ip("203.0.113.7")));
    }

    #[test]
    fn the_sweep_summarises_and_forgets_windows_that_passed() {
        let t0 = Instant::now();
        let l = Limiter::new(t0);
        let mount = About::Mount("/bad.ogg");
        for _ in 0..100 {
            l.admit_at(Kind::BadData, mount, t0);
        }
        l.admit_at(Kind::BadData, About::Mount("/quiet.ogg"), t0);
        assert!(l.sweep_at(t0 + WINDOW / 2, false).is_empty());
        let s = l.sweep_at(t0 + WINDOW, false);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].count, &*s[0].name, s[0].peer), (95, "/bad.ogg", None));
        assert!(l.table.lock().slots.is_empty());
        // Forgotten: the mount's next line is logged.
        assert!(l.admit_at(Kind::BadData, mount, t0 + WINDOW).0);
    }

    #[test]
    fn ports_and_addresses_of_one_ipv6_prefix_are_one_peer() {
        let t0 = Instant::now();
        let l = Limiter::new(t0);
        let logged = (0..100u16)
            .filter(|i| {
                let a = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, *i, 0, 0, 1));
                l.admit_at(Kind::BadRequest, About::Peer(a), t0).0
            })
            .count();
        assert_eq!(logged, BURST as usize);
        assert_eq!(l.table.lock().slots.len(), 1);
        // An IPv4-mapped address is its IPv4 address.
        assert!(
            l.admit_at(Kind::SourceProbe, About::Peer(ip("192.0.2.1")), t0)
                .0
        );
        for _ in 1..BURST {
            l.admit_at(Kind::SourceProbe, About::Peer(ip("::ffff:192.0.2.1")), t0);
        }
        assert!(
            !l.admit_at(Kind::SourceProbe, About::Peer(ip("192.0.2.1")), t0)
                .0
        );
    }

    #[test]
    fn many_peers_log_at_most_a_kind_burst_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let l = Limiter::new(t0);
        let mut logged = 0;
        for i in 0..20_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            for _ in 0..2 * BURST {
                logged += u32::from(l.admit_at(Kind::AdminCredentials, About::Peer(a), t0).0);
            }
        }
        assert_eq!(logged, KIND_BURST);
        let peers = (KIND_BURST / BURST) as usize;
        assert_eq!(l.table.lock().slots.len(), peers);
        // Summaries: each logged peer's own, and one for the rest.
        let s = l.sweep_at(t0 + WINDOW, false);
        assert_eq!(s.len(), peers + 1);
        assert!(
            s.iter()
                .filter(|s| s.peer.is_some())
                .all(|s| s.count == u64::from(BURST))
        );
        let rest = s.iter().find(|s| s.peer.is_none()).expect("kind summary");
        assert_eq!(
            rest.count,
            20_000 * u64::from(2 * BURST) - 2 * u64::from(KIND_BURST)
        );
        // Every kind at once cannot grow the table beyond its bound either.
        for (n, kind) in Kind::ALL.into_iter().enumerate() {
            for i in 0..(MAX_KEYS as u32) {
                let a = IpAddr::V4(std::net::Ipv4Addr::from((n as u32) << 24 | i));
                l.admit_at(kind, About::Peer(a), t0 + WINDOW);
            }
        }
        assert!(l.table.lock().slots.len() <= MAX_KEYS);
    }

    #[test]
    fn without_sweeps_the_table_stays_bounded_and_new_keys_still_get_in() {
        let t0 = Instant::now();
        let l = Limiter::new(t0);
        let mut next = 0x0a00_0000u32;
        for w in 0..20u32 {
            let now = t0 + WINDOW * w;
            for kind in Kind::ALL {
                let mut logged = 0;
                for _ in 0..2 * KIND_BURST {
                    let a = IpAddr::V4(std::net::Ipv4Addr::from(next));
                    next += 1;
                    for _ in 0..2 {
                        logged += u32::from(l.admit_at(kind, About::Peer(a), now).0);
                    }
                }
                assert_eq!(logged, KIND_BURST, "window {w}, {kind:?}");
            }
            let slots = l.table.lock().slots.len();
            assert!(slots <= MAX_KEYS, "window {w}: {slots} keys");
        }
    }
}
