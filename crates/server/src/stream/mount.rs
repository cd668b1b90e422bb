//! Mounts: the registry of live streams, each with its fan-out buffer, stream information,
//! counters and the source-loss grace period.
//!
//! Lifecycle of a mount:
//! ```text
//!   source connects ──► Live ──source drops──► Waiting (listeners held, grace timer runs)
//!                        ▲                         │            │
//!                        └──source reconnects──────┘            └─ grace elapses ─► Closed
//!                                                            (listeners to the fallback first)
//! ```
//! **Fallbacks.** A mount closing at the end of its grace period orders its listeners to its
//! fallback (`[[mount]] fallback`, or `/admin/fallbacks`) before its fan-out closes:
//! [`Registry::live_fallback`] follows the chain to the first live mount (at most
//! [`MAX_FALLBACK_DEPTH`], never a mount twice), and the move happens only if that mount's
//! format is the closing one's. Each listener remembers its *home* on its [`Client`] (the
//! first mount a fallback took it from). A closed mount is never reopened: a source coming
//! back makes a new [`Mount`], and with `fallback-override` a task of the registry waits for
//! its first bytes, then orders the listeners whose home is that path back to it from
//! every mount of the same format. All of it is orders carried out by each listener's own
//! task, as `/admin/moveclients` (an order seen after the close still moves the listener).
//! The [`Registry`] owns every transition: [`Registry::claim`] (a source arrives; the mount
//! is created with its [`MountPolicy`], resolved once from the configuration, or taken over
//! in its grace period), `Registry::source_left` (called when the source's [`SourceClaim`]
//! is dropped, however its task ended) and the grace timer, a task of the registry's own
//! that [`Registry::close_all`] cancels at shutdown.
//!
//! **Invariants:** at most one source per mount (a second gets 409); listeners move only
//! between mounts of the same format; a listener returns home only to a live mount; counters are atomics read
//! by the status page without touching the fan-out; a closed mount is removed from the
//! registry, and its fan-out wakes every listener so they end; the stream information readers
//! see is the source's with the operator's overrides already applied (applied once, at the
//! claim).
//!
//! **Locks** (the rule is in `crate::sync`: every guard is a leaf): the source state, the
//! title and the stream headers are snapshots swapped whole, read without a lock
//! ([`Mount::state`], [`Mount::title`]); the client list and the in-band title are small
//! mutexes taken for one map or option operation. The registry's map lock is taken alone: a
//! claim or an expiry decides under it with atomics and snapshot swaps only, and closes
//! fan-outs and wakes pages after releasing it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use agora_format::{Format, StreamInfo};
use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Intro, MAX_FALLBACK_DEPTH, MountPolicy, MountSettings, StreamOverrides};
use crate::stream::fanout::{Fanout, StreamHeaders, Wake};
use crate::stream::parking::{Parked, Parking};

/// The wake-up delay each listener adds to its mount's small writes, up to `coalesce-ms`: the
/// mount then costs at most ~33,000 listener wake-ups a second once the cap is not reached
/// (BENCHMARKS.md, issue #12, has the measurements behind the value).
const COALESCE_PER_LISTENER: Duration = Duration::from_micros(30);
use crate::sync::{Mutex, ShardedCounter};

/// Stream descriptions sent by the source (`ice-*`, `icy-*` or `x-audiocast-*` headers),
/// overridden by the mount's configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamMeta {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) genre: Option<String>,
    pub(crate) public: Option<String>,
    pub(crate) bitrate: Option<String>,
    pub(crate) audio_info: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl StreamMeta {
    /// The bitrate the source declared, from `ice-bitrate`/`icy-br` or else from the
    /// `bitrate=` of `ice-audio-info`.
    pub(crate) fn bitrate(&self) -> Option<String> {
        self.bitrate.clone().or_else(|| {
            self.audio_info.as_deref()?.split(';').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == "bitrate").then(|| v.trim().to_string())
            })
        })
    }

    /// The operator's stream information wins over the source's.
    fn apply(&mut self, o: &StreamOverrides) {
        for (mine, theirs) in [
            (&mut self.name, &o.name),
            (&mut self.description, &o.description),
            (&mut self.url, &o.url),
            (&mut self.genre, &o.genre),
        ] {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
    }
}

/// What the source side knows right now.
#[derive(Debug, Clone)]
pub(crate) struct SourceState {
    pub(crate) meta: StreamMeta,
    pub(crate) format: Option<Format>,
    pub(crate) info: StreamInfo,
    pub(crate) started: SystemTime,
    /// When the current (or last) source connected.
    pub(crate) connected_at: SystemTime,
    pub(crate) source_ip: String,
    /// Whether a source is connected now (false while in the grace period).
    pub(crate) connected: bool,
    /// Cancelled by `/admin/killsource`: the token of the source this state describes (a new
    /// one per source, so a kill aimed at one source never reaches the next).
    pub(crate) kill: CancellationToken,
}

/// The now-playing title and its ICY block, rebuilt once per change and shared by listeners.
#[derive(Debug)]
pub(crate) struct Title {
    pub(crate) text: String,
    /// Bumped on every change; listeners compare it to decide whether to resend the block.
    pub(crate) version: u64,
    /// `L` + `StreamTitle='…';` padded to `L*16` bytes.
    pub(crate) icy_block: Bytes,
}

impl Title {
    pub(crate) fn new(text: String, version: u64) -> Self {
        let icy_block = icy_block(&text);
        Title {
            text,
            version,
            icy_block,
        }
    }
}

/// Build an ICY metadata block: one length byte, then `StreamTitle='…';` NUL-padded to a
/// multiple of 16 (at most 255*16 bytes; longer titles are cut at a character boundary).
pub(crate) fn icy_block(title: &str) -> Bytes {
    // A quote would end the value early in every player's parser.
    let clean = title.replace('\'', "\u{2019}");
    let mut text = format!("StreamTitle='{clean}';");
    const MAX: usize = 255 * 16;
    if text.len() > MAX {
        let mut cut = MAX - 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("';");
    }
    let blocks = text.len().div_ceil(16);
    let mut out = BytesMut::with_capacity(1 + blocks * 16);
    out.extend_from_slice(&[blocks as u8]);
    out.extend_from_slice(text.as_bytes());
    out.resize(1 + blocks * 16, 0);
    out.freeze()
}

/// Longest title taken from a stream (an Ogg chain's comments, an upstream's ICY metadata).
pub(crate) const MAX_STREAM_TITLE: usize = 1024;

/// A title as every listener may get it: control characters (CR, LF, NUL, ESC, TAB, DEL and
/// the C1 controls: a forged ICY block, a terminal escape in a log, a broken JSON consumer)
/// become spaces, runs of spaces one, and the text is cut to [`MAX_STREAM_TITLE`] bytes at a
/// character boundary.
pub(crate) fn clean_title(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_STREAM_TITLE));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_STREAM_TITLE {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// Listener ids, unique in the process (a listener keeps its id when moved to another mount).
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// An order from the admin API to one listener, carried out by the listener's own task.
#[derive(Debug)]
pub(crate) enum Order {
    Kill,
    Move(Arc<Mount>),
}

/// Orders given so far, to any listener: a listener looks at its own order only when this
/// changed since it last looked, so that a wake-up reads one line every core shares instead
/// of the listener's own `Client` (a cache miss per listener per wake-up).
static ORDERS_GIVEN: AtomicU64 = AtomicU64::new(0);

const ORDER_NONE: u8 = 0;
const ORDER_KILL: u8 = 1;
const ORDER_MOVE: u8 = 2;

/// A listener as the admin API sees it (`listclients`, `killclient`, `moveclients`).
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    /// Another server relaying the mount (it logged in as the relay user or an admin).
    pub(crate) relay: bool,
    pub(crate) user_agent: Box<str>,
    pub(crate) connected: Instant,
    /// `ORDER_*`; set by the admin, taken by the listener task.
    order: AtomicU8,
    move_to: Mutex<Option<Arc<Mount>>>,
    /// The mount a fallback took it from (moved when that mount's source was gone, or sent
    /// here when it was full): where it returns when a source comes back to that mount and
    /// the mount has `fallback-override`. Kept through a cascade of fallbacks; forgotten when
    /// it returns or an admin moves it.
    home: Mutex<Option<Arc<str>>>,
}

impl Client {
    pub(crate) fn new(peer: SocketAddr, user_agent: &str, relay: bool) -> Arc<Client> {
        Arc::new(Client {
            id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            relay,
            user_agent: user_agent.into(),
            connected: Instant::now(),
            order: AtomicU8::new(ORDER_NONE),
            move_to: Mutex::new(None),
            home: Mutex::new(None),
        })
    }

    /// Taken from `path` by a fallback (a home it already had is kept: the first one).
    pub(crate) fn leave_home(&self, path: &str) {
        self.home.lock().get_or_insert_with(|| path.into());
    }

    fn forget_home(&self) {
        *self.home.lock() = None;
    }

    fn is_from(&self, path: &str) -> bool {
        self.home.lock().as_deref() == Some(path)
    }

    /// The pending order, if any, when any order was given to any listener since `seen` (the
    /// count at the caller's last look, updated): checked on every wake-up.
    pub(crate) fn take_order_since(&self, seen: &mut u64) -> Option<Order> {
        let given = ORDERS_GIVEN.load(Ordering::Acquire);
        if given == *seen {
            return None;
        }
        *seen = given;
        self.take_order()
    }

    /// Whether any order was given to any listener since `seen` (a look without taking).
    pub(crate) fn orders_given_since(seen: u64) -> bool {
        ORDERS_GIVEN.load(Ordering::Acquire) != seen
    }

    /// A value for `take_order_since` that makes the next call look.
    pub(crate) const LOOK_NOW: u64 = u64::MAX;

    /// The pending order, if any.
    pub(crate) fn take_order(&self) -> Option<Order> {
        // A load first: the swap (a write) on every wake-up cost more than the rest of the
        // check, and there is almost never an order.
        if self.order.load(Ordering::Relaxed) == ORDER_NONE {
            return None;
        }
        match self.order.swap(ORDER_NONE, Ordering::AcqRel) {
            ORDER_KILL => Some(Order::Kill),
            ORDER_MOVE => self.move_to.lock().take().map(Order::Move),
            _ => None,
        }
    }

    /// Whether a kill is pending (looked at while a write is blocked; a move waits for it).
    pub(crate) fn kill_pending(&self) -> bool {
        self.order.load(Ordering::Acquire) == ORDER_KILL
    }

    fn order(&self, order: Order) {
        match order {
            Order::Kill => self.order.store(ORDER_KILL, Ordering::Release),
            Order::Move(dest) => {
                *self.move_to.lock() = Some(dest);
                // A kill already pending wins.
                let _ = self.order.compare_exchange(
                    ORDER_NONE,
                    ORDER_MOVE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        // After the order is stored: a listener that sees the new count sees the order.
        ORDERS_GIVEN.fetch_add(1, Ordering::AcqRel);
    }
}

/// One mount point.
#[derive(Debug)]
pub(crate) struct Mount {
    pub(crate) path: String,
    /// The settings in force: a snapshot a reload replaces ([`Mount::reconfigure`]); read
    /// with [`Mount::settings`].
    settings: ArcSwap<MountSettings>,
    /// What every new listener gets before the stream (`intro`), shared by all of them.
    pub(crate) intro: Option<Intro>,
    /// Stream information the operator imposes, applied to every source's (and again by a
    /// reload that changes it).
    overrides: ArcSwap<StreamOverrides>,
    pub(crate) fanout: Fanout,
    /// Caught-up listeners, written to by the mount's writers (see [`Parking`]).
    parking: Parking,
    /// What the source side knows, swapped whole on every change (see [`Mount::state`]).
    state: ArcSwap<SourceState>,
    title: ArcSwap<Title>,
    /// The headers chunks are published under now.
    headers: ArcSwap<StreamHeaders>,
    /// Source presence: set by the source that owns the mount.
    source_present: AtomicBool,
    /// Bumped on every source (dis)connect; the grace timer only closes the mount if it is
    /// unchanged when the timer fires.
    source_epoch: AtomicU64,
    closed: AtomicBool,
    /// When it closed: listeners still writing then have `drain-secs` from there.
    closed_at: OnceLock<Instant>,
    /// Viewers: listeners that are not relays.
    pub(crate) listeners: AtomicUsize,
    /// Other servers relaying this mount (logged in as the relay user or an admin).
    pub(crate) relays: AtomicUsize,
    pub(crate) listener_peak: AtomicUsize,
    pub(crate) slow_listeners: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    /// Added to by every listener write: sharded (see [`ShardedCounter`]).
    pub(crate) bytes_sent: ShardedCounter,
    /// Of those, sent with `sendfile` (see [`spool`](crate::stream::spool)).
    pub(crate) bytes_sent_from_file: ShardedCounter,
    /// The source's bitrate over its last few seconds (bits/s), 0 without a source.
    pub(crate) ingest_bps: AtomicU64,
    /// The live edge on the stream's own timeline (#15), in milliseconds: the media time of
    /// the latest data the ingest framed (`agora_format::clock`; MP3 and ADTS: the duration
    /// of the frames since the source connected), [`Mount::NO_TIME`] before any and without
    /// a source. What an operator's "now" is for a slide of this mount (a deck's page
    /// stepped to).
    pub(crate) stream_ms: AtomicU64,
    /// Listeners by id. A B-tree rather than a hash table: it grows in small nodes, where a
    /// table of 15,000 listeners is reallocated whole as it doubles (a lasting step in RSS),
    /// and it lists clients in id order for `listclients`.
    clients: Mutex<BTreeMap<u64, Arc<Client>>>,
    /// Poked on every change pages should hear about (source up/down, title).
    changed: Arc<Notify>,
    /// A title for the source task to put into an Ogg stream (`ogg-title-in-stream`).
    inband_title: Mutex<Option<String>>,
    /// Where listeners go when the mount closes (`[[mount]] fallback`, or
    /// `/admin/fallbacks`): a snapshot, swapped whole.
    fallback: ArcSwapOption<String>,
}

/// Why listeners are moved: it decides which move and what they remember of their home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveKind {
    /// `/admin/moveclients`: every listener; they forget any home (the operator decided).
    Admin,
    /// The mount closed: every listener to its fallback, remembering this mount as home.
    Fallback,
    /// A source came back to the destination: only the listeners whose home it is.
    Return,
}

impl Mount {
    /// [`Mount::stream_ms`] unknown.
    pub(crate) const NO_TIME: u64 = u64::MAX;

    /// The live edge on the stream's timeline, if the stream has told it.
    pub(crate) fn stream_time(&self) -> Option<std::time::Duration> {
        match self.stream_ms.load(Ordering::Relaxed) {
            Mount::NO_TIME => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    fn new(path: String, policy: MountPolicy, changed: Arc<Notify>, tasks: TaskTracker) -> Self {
        let MountPolicy {
            settings,
            overrides,
            fallback,
            intro,
            ..
        } = policy;
        Mount {
            fanout: {
                let fanout = Fanout::with_wake(
                    settings.queue_size,
                    Wake {
                        max_delay: Duration::from_millis(settings.coalesce_ms),
                        per_reader: COALESCE_PER_LISTENER,
                        bytes: settings.coalesce_bytes,
                    },
                );
                if settings.sendfile_min_bytes > 0 {
                    fanout.spooled(settings.queue_size)
                } else {
                    fanout
                }
            },
            parking: Parking::new(tasks),
            path,
            settings: ArcSwap::from_pointee(settings),
            intro,
            overrides: ArcSwap::from_pointee(overrides),
            state: ArcSwap::from_pointee(SourceState {
                meta: StreamMeta::default(),
                format: None,
                info: StreamInfo::default(),
                started: SystemTime::now(),
                connected_at: SystemTime::now(),
                source_ip: String::new(),
                connected: false,
                kill: CancellationToken::new(),
            }),
            title: ArcSwap::from_pointee(Title::new(String::new(), 0)),
            headers: ArcSwap::new(StreamHeaders::new(Bytes::new())),
            source_present: AtomicBool::new(false),
            source_epoch: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            closed_at: OnceLock::new(),
            listeners: AtomicUsize::new(0),
            relays: AtomicUsize::new(0),
            listener_peak: AtomicUsize::new(0),
            slow_listeners: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_sent: ShardedCounter::default(),
            bytes_sent_from_file: ShardedCounter::default(),
            ingest_bps: AtomicU64::new(0),
            stream_ms: AtomicU64::new(Mount::NO_TIME),
            clients: Mutex::new(BTreeMap::new()),
            changed,
            inband_title: Mutex::new(None),
            fallback: ArcSwapOption::new(fallback.map(Arc::new)),
        }
    }

    /// The settings in force now.
    pub(crate) fn settings(&self) -> arc_swap::Guard<Arc<MountSettings>> {
        self.settings.load()
    }

    /// A reload's new policy for this live mount: the settings take effect now, except those
    /// its fan-out and its source's framer were built with (`queue-size`, `coalesce-*`,
    /// `sendfile-min-bytes`, `max-element-size`), which
    /// apply from its next source (a new mount); those are returned by name when they
    /// changed, for the reload to say so. Changed stream overrides are applied to the stream
    /// information now; `fallback`, when the configuration changed it, replaces the mount's
    /// (an `/admin/fallbacks` choice stays otherwise).
    pub(crate) fn reconfigure(
        &self,
        policy: &MountPolicy,
        fallback_changed: bool,
    ) -> Vec<&'static str> {
        let old = self.settings.load_full();
        let mut new = policy.settings.clone();
        let mut later = Vec::new();
        if new.queue_size != old.queue_size {
            later.push("queue-size");
            new.queue_size = old.queue_size;
        }
        if new.coalesce_ms != old.coalesce_ms {
            later.push("coalesce-ms");
            new.coalesce_ms = old.coalesce_ms;
        }
        if new.coalesce_bytes != old.coalesce_bytes {
            later.push("coalesce-bytes");
            new.coalesce_bytes = old.coalesce_bytes;
        }
        if new.max_element_size != old.max_element_size {
            // The source's framer was made with it.
            later.push("max-element-size");
            new.max_element_size = old.max_element_size;
        }
        if new.sendfile_min_bytes != old.sendfile_min_bytes {
            later.push("sendfile-min-bytes");
            new.sendfile_min_bytes = old.sendfile_min_bytes;
        }
        if self.intro.as_ref().map(|i| &i.bytes) != policy.intro.as_ref().map(|i| &i.bytes) {
            later.push("intro");
        }
        self.settings.store(Arc::new(new));
        if **self.overrides.load() != policy.overrides {
            self.overrides.store(Arc::new(policy.overrides.clone()));
            let overrides = policy.overrides.clone();
            self.update_state(|st| st.meta.apply(&overrides));
        }
        if fallback_changed {
            self.fallback.store(policy.fallback.clone().map(Arc::new));
        }
        self.poke();
        later
    }

    /// The mount's fallback now (see [`Registry::live_fallback`]).
    pub(crate) fn fallback(&self) -> Option<Arc<String>> {
        self.fallback.load_full()
    }

    /// `/admin/fallbacks`: a new fallback for this mount (until it closes), or none.
    pub(crate) fn set_fallback(&self, path: Option<&str>) {
        self.fallback.store(path.map(|p| Arc::new(p.to_string())));
        self.poke();
    }

    /// The source side's state now: a snapshot, taken without a lock and held as long as
    /// the caller likes (later changes replace the state, they do not alter this one).
    pub(crate) fn state(&self) -> Arc<SourceState> {
        self.state.load_full()
    }

    /// The stream format, as detected from the source's bytes (`None` before the first).
    pub(crate) fn format(&self) -> Option<Format> {
        self.state.load().format
    }

    /// Change the state: `edit` changes a copy that then replaces it. `edit` runs again if
    /// another writer replaced the state meanwhile, so it must only set fields.
    fn update_state(&self, edit: impl Fn(&mut SourceState)) {
        self.state.rcu(|old| {
            let mut st = SourceState::clone(old);
            edit(&mut st);
            st
        });
    }

    /// What the source's bytes turned out to be (on its first headers, and when they change).
    pub(crate) fn set_stream(&self, format: Option<Format>, info: StreamInfo) {
        self.update_state(|st| {
            st.format = format;
            st.info = info.clone();
        });
    }

    /// Cancelled when an admin removes the current source.
    pub(crate) fn source_kill_token(&self) -> CancellationToken {
        self.state.load().kill.clone()
    }

    /// `/admin/killsource`: end the current source's connection (the mount then waits for a
    /// source through its grace period, as after any source loss). False without a source.
    pub(crate) fn kill_source(&self) -> bool {
        let st = self.state.load();
        if !st.connected {
            return false;
        }
        st.kill.cancel();
        true
    }

    /// The listeners now, by id.
    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        self.clients.lock().values().cloned().collect()
    }

    /// Park a caught-up listener (see [`Parking`]): `key` spreads listeners over the writers,
    /// `cursor` is its next chunk.
    pub(crate) fn park(&self, key: u64, cursor: u64, listener: Box<dyn Parked>) {
        self.parking.park(&self.fanout, key, cursor, listener);
    }

    /// `/admin/killclient`: false if no such listener.
    pub(crate) fn kill_client(&self, id: u64) -> bool {
        let Some(c) = self.clients.lock().get(&id).cloned() else {
            return false;
        };
        c.order(Order::Kill);
        self.fanout.wake();
        true
    }

    /// Order this mount's listeners to `dest` (`kind` says which, and what they remember):
    /// all relays, and as many viewers as `dest`'s listener limit has room for (the rest
    /// stay). Returns (moved, stayed).
    pub(crate) fn move_clients(&self, dest: &Arc<Mount>, kind: MoveKind) -> (usize, usize) {
        let mut room = dest.settings().max_listeners.map_or(usize::MAX, |max| {
            max.saturating_sub(dest.listeners.load(Ordering::Acquire))
        });
        let (mut moved, mut stayed) = (0, 0);
        for c in self.clients() {
            if kind == MoveKind::Return && !c.is_from(&dest.path) {
                continue;
            }
            if !c.relay {
                if room == 0 {
                    stayed += 1;
                    continue;
                }
                room -= 1;
            }
            match kind {
                MoveKind::Admin | MoveKind::Return => c.forget_home(),
                MoveKind::Fallback => c.leave_home(&self.path),
            }
            c.order(Order::Move(dest.clone()));
            moved += 1;
        }
        self.fanout.wake();
        (moved, stayed)
    }

    /// Tell pages something changed (the events hub recomputes and sends the differences).
    pub(crate) fn poke(&self) {
        self.changed.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closed for good: no claim takes it any more (the caller then closes the fan-out).
    fn mark_closed(&self) {
        let _ = self.closed_at.set(Instant::now());
        self.closed.store(true, Ordering::Release);
    }

    /// When a listener still writing to this closed mount is cut (`None` while it is open):
    /// the mount's drain after its close, so that a client that reads nothing cannot keep a
    /// closed mount (its queue, its listener slot, a shutdown) for as long as it likes.
    pub(crate) fn drain_deadline(&self) -> Option<Instant> {
        self.closed_at.get().map(|t| *t + self.settings().drain())
    }

    pub(crate) fn has_source(&self) -> bool {
        self.source_present.load(Ordering::Acquire)
    }

    /// Changes whenever a source connects or goes away.
    pub(crate) fn source_epoch(&self) -> u64 {
        self.source_epoch.load(Ordering::Acquire)
    }

    /// Publish stream data under the current headers.
    pub(crate) fn publish(&self, bytes: Bytes, sync: bool) {
        self.fanout.publish(bytes, sync, self.headers.load_full());
    }

    /// New headers from the source. Byte-identical headers (a source that reconnected with the
    /// same encoder settings) keep the old identity, so listeners are not sent them again.
    /// Only the mount's source sets headers, so there is no race between the look and the
    /// store.
    pub(crate) fn set_headers(&self, bytes: Bytes) {
        if self.headers.load().bytes != bytes {
            self.headers.store(StreamHeaders::new(bytes));
        }
    }

    pub(crate) fn current_headers(&self) -> Arc<StreamHeaders> {
        self.headers.load_full()
    }

    /// The now-playing title (a snapshot, like [`Mount::state`]).
    pub(crate) fn title(&self) -> Arc<Title> {
        self.title.load_full()
    }

    /// A title from the stream itself (an Ogg chain's comments, an upstream's ICY metadata):
    /// the mount's title, unless it is already that; never put back into the stream.
    /// The stream's bytes choose the text, so it is cut to [`MAX_STREAM_TITLE`] bytes (an Ogg
    /// comment header may hold a megabyte).
    pub(crate) fn set_title_from_stream(&self, text: String) {
        let text = clean_title(&text);
        if self.title.load().text != text {
            self.title.rcu(|t| Title::new(text.clone(), t.version + 1));
            self.poke();
        }
    }

    /// A title from the admin API (`/admin/metadata`): cleaned as a stream's is.
    pub(crate) fn set_title(&self, text: String) {
        let text = clean_title(&text);
        self.title.rcu(|t| Title::new(text.clone(), t.version + 1));
        if self.settings().ogg_title_in_stream {
            *self.inband_title.lock() = Some(text);
        }
        self.poke();
    }

    /// The title waiting to go into the stream, if any (taken by the source task).
    pub(crate) fn take_inband_title(&self) -> Option<String> {
        if !self.settings().ogg_title_in_stream {
            return None;
        }
        self.inband_title.lock().take()
    }

    /// Count a listener in if the mount's limit allows; the guard counts it out and removes
    /// it from the mount's clients.
    ///
    /// A relay (another server, logged in as the relay user) is counted as a relay, not a
    /// viewer, and is not held to the mount's listener limit (as Icecast-KH does for
    /// authenticated relays): the edges behind it serve the viewers.
    pub(crate) fn add_listener(self: &Arc<Self>, client: &Arc<Client>) -> Option<ListenerGuard> {
        if client.relay {
            self.relays.fetch_add(1, Ordering::AcqRel);
            return Some(self.register(client));
        }
        let max = self.settings().max_listeners.unwrap_or(usize::MAX);
        let mut cur = self.listeners.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return None;
            }
            match self.listeners.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.listener_peak.fetch_max(cur + 1, Ordering::Relaxed);
        Some(self.register(client))
    }

    /// A listener moved here by the admin: counted in whatever the limit (the admin asked).
    pub(crate) fn adopt_listener(self: &Arc<Self>, client: &Arc<Client>) -> ListenerGuard {
        if client.relay {
            self.relays.fetch_add(1, Ordering::AcqRel);
            return self.register(client);
        }
        let now = self.listeners.fetch_add(1, Ordering::AcqRel) + 1;
        self.listener_peak.fetch_max(now, Ordering::Relaxed);
        self.register(client)
    }

    fn register(self: &Arc<Self>, client: &Arc<Client>) -> ListenerGuard {
        self.clients.lock().insert(client.id, client.clone());
        ListenerGuard {
            mount: self.clone(),
            id: client.id,
            relay: client.relay,
        }
    }
}

/// Counts a listener out of its mount (and its client list) when it ends or moves.
#[derive(Debug)]
pub(crate) struct ListenerGuard {
    mount: Arc<Mount>,
    id: u64,
    relay: bool,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.mount.clients.lock().remove(&self.id);
        if self.relay {
            self.mount.relays.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.mount.listeners.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Why a source may not take a mount.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ClaimError {
    #[error("Mountpoint in use")]
    InUse,
    #[error("Too many mounts")]
    TooMany,
}

/// Held by the connected source; dropping it starts the grace period.
#[derive(Debug)]
pub(crate) struct SourceClaim {
    pub(crate) mount: Arc<Mount>,
    registry: Arc<Registry>,
}

impl Drop for SourceClaim {
    /// However the source's task ends (its stream over, an error, a panic), the registry
    /// hears of it.
    fn drop(&mut self) {
        self.registry.source_left(&self.mount);
    }
}

/// All mounts of the server.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    mounts: crate::sync::RwLock<BTreeMap<String, Arc<Mount>>>,
    /// Listeners across all mounts (for the server-wide limit).
    pub(crate) total_listeners: AtomicUsize,
    /// Poked on every mount change (see [`Mount::poke`]); the events hub waits on it.
    pub(crate) changed: Arc<Notify>,
    /// The grace timers of mounts waiting for a source: tasks the registry owns, cancelled by
    /// [`Registry::close_all`].
    timers: TaskTracker,
    /// The server's tasks, which a shutdown waits for: the mounts' writers run there (they
    /// end each parked listener in a task of its own when the mount closes).
    tasks: TaskTracker,
    closing: CancellationToken,
    /// Mounts at most, live or held in their grace period (0: no limit): a source that
    /// would make one more is refused (each mount holds its queue).
    max_mounts: AtomicUsize,
    /// The configured fallback of each mount path (followed for a fallback that is absent);
    /// swapped whole by a reload.
    fallbacks: ArcSwap<BTreeMap<String, String>>,
}

impl Registry {
    /// A registry whose mounts run their writers in `tasks` (the server's, so that a
    /// shutdown waits until every parked listener has ended).
    pub(crate) fn with_tasks(tasks: TaskTracker) -> Self {
        Registry {
            tasks,
            ..Registry::default()
        }
    }

    /// At most `n` mounts (0: no limit).
    pub(crate) fn with_max_mounts(self, n: usize) -> Self {
        self.set_max_mounts(n);
        self
    }

    /// The configured fallbacks, by mount path (`Config::fallbacks`).
    pub(crate) fn with_fallbacks(self, fallbacks: BTreeMap<String, String>) -> Self {
        self.set_fallbacks(fallbacks);
        self
    }

    /// A new mount cap (a reload): mounts beyond it stay; new ones wait for room.
    pub(crate) fn set_max_mounts(&self, n: usize) {
        self.max_mounts.store(n, Ordering::Relaxed);
    }

    /// New configured fallbacks (a reload).
    pub(crate) fn set_fallbacks(&self, fallbacks: BTreeMap<String, String>) {
        self.fallbacks.store(Arc::new(fallbacks));
    }

    /// Where `m`'s listeners go: the first live mount (a source connected, its format known)
    /// on the chain of fallbacks from `m` (each mount's own, or the configured one of a mount
    /// that is absent), at most [`MAX_FALLBACK_DEPTH`] mounts and never a mount twice (an
    /// admin may have made a loop). A mount in its grace period is passed over, as an absent
    /// one: its own fallback is looked at.
    pub(crate) fn live_fallback(&self, m: &Mount) -> Option<Arc<Mount>> {
        let mut seen: Vec<Arc<String>> = vec![Arc::new(m.path.clone())];
        let mut next = m.fallback();
        while let Some(path) = next {
            if seen.len() > MAX_FALLBACK_DEPTH || seen.contains(&path) {
                return None;
            }
            let here = self.get(&path);
            if let Some(f) = here.as_ref()
                && !f.is_closed()
                && f.has_source()
                && f.format().is_some()
            {
                return here;
            }
            next = match here {
                Some(f) => f.fallback(),
                None => self.fallbacks.load().get(&*path).cloned().map(Arc::new),
            };
            seen.push(path);
        }
        None
    }

    pub(crate) fn get(&self, path: &str) -> Option<Arc<Mount>> {
        self.mounts.read().get(path).cloned()
    }

    /// Mounts in path order.
    pub(crate) fn all(&self) -> Vec<Arc<Mount>> {
        self.mounts.read().values().cloned().collect()
    }

    /// End listener `client` as `/admin/killclient` does, on whichever mount it is now (a
    /// fallback or the admin may have moved it since it joined): the order is the client's
    /// own, so a listener between two mounts finds it at its next look; the mount that lists
    /// it is woken, so a parked listener is unparked by its writer even when no data comes.
    pub(crate) fn kill_client(&self, client: &Client) {
        client.order(Order::Kill);
        for m in self.all() {
            if m.clients.lock().contains_key(&client.id) {
                m.fanout.wake();
            }
        }
    }

    /// Claim `path` for a new source: create the mount, or take over one in its grace period.
    /// Decided under the map's lock (atomics and a state swap only, no other lock), so that an
    /// expiry cannot close the mount in between.
    pub(crate) fn claim(
        self: &Arc<Self>,
        path: &str,
        policy: impl FnOnce() -> MountPolicy,
        meta: StreamMeta,
        source_ip: String,
    ) -> Result<SourceClaim, ClaimError> {
        let mut map = self.mounts.write();
        let mut created = false;
        let mount = match map.get(path) {
            Some(m) if !m.is_closed() => {
                if m.source_present
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    return Err(ClaimError::InUse);
                }
                m.clone()
            }
            open => {
                // A closed mount still in the map is replaced, not added to.
                let max_mounts = self.max_mounts.load(Ordering::Relaxed);
                if open.is_none() && max_mounts > 0 && map.len() >= max_mounts {
                    return Err(ClaimError::TooMany);
                }
                let m = Arc::new(Mount::new(
                    path.to_string(),
                    policy(),
                    self.changed.clone(),
                    self.tasks.clone(),
                ));
                m.source_present.store(true, Ordering::Release);
                map.insert(path.to_string(), m.clone());
                created = true;
                m
            }
        };
        mount.source_epoch.fetch_add(1, Ordering::AcqRel);
        // The new source's own timeline, from its first data on.
        mount.stream_ms.store(Mount::NO_TIME, Ordering::Relaxed);
        let now = SystemTime::now();
        let mut meta = meta;
        meta.apply(&mount.overrides.load());
        mount.update_state(|st| {
            st.meta = meta.clone();
            st.source_ip = source_ip.clone();
            st.connected = true;
            st.connected_at = now;
            st.kill = CancellationToken::new();
            if st.format.is_none() {
                st.started = now;
            }
        });
        drop(map);
        mount.poke();
        if created && mount.settings().fallback_override {
            self.call_listeners_home(&mount);
        }
        Ok(SourceClaim {
            mount,
            registry: self.clone(),
        })
    }

    /// A source came back to `home` (a new mount, `fallback-override` on): once its first
    /// bytes are in (the format known), its listeners that a fallback took come back from
    /// wherever they are now (a task of the registry's own, like the grace timers).
    fn call_listeners_home(self: &Arc<Self>, home: &Arc<Mount>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (registry, home, closing) = (self.clone(), home.clone(), self.closing.clone());
        self.timers.spawn(async move {
            let mut rx = home.fanout.subscribe();
            let started = tokio::select! {
                r = rx.wait_for(|t| t.next_seq > 0 || t.closed) => r.is_ok_and(|t| !t.closed),
                () = closing.cancelled() => false,
            };
            if started {
                registry.return_listeners(&home);
            }
        });
    }

    /// Order the listeners whose home is `home` back to it, from every other mount of the
    /// same format; a fallback of another format keeps them (logged: players could not follow).
    fn return_listeners(&self, home: &Arc<Mount>) {
        if home.is_closed() {
            return;
        }
        let format = home.format();
        for m in self.all() {
            if Arc::ptr_eq(&m, home) || !m.clients().iter().any(|c| c.is_from(&home.path)) {
                continue;
            }
            if m.format() != format {
                tracing::warn!(mount = %home.path, fallback = %m.path, "source back, but its listeners stay on the fallback: the formats differ ({:?} here, {:?} there)", format, m.format());
                continue;
            }
            let (moved, stayed) = m.move_clients(home, MoveKind::Return);
            tracing::info!(mount = %home.path, from = %m.path, listeners = moved, stayed, "source back: listeners return from the fallback");
        }
    }

    /// Close `mount` if no source claimed it since `epoch`.
    fn expire(&self, mount: &Arc<Mount>, epoch: u64) {
        {
            let mut map = self.mounts.write();
            if mount.source_epoch.load(Ordering::Acquire) != epoch || mount.has_source() {
                return;
            }
            mount.mark_closed();
            if map.get(&mount.path).is_some_and(|m| Arc::ptr_eq(m, mount)) {
                map.remove(&mount.path);
            }
        }
        // Closed and out of the map: no claim can take it any more. Its listeners go to the
        // fallback first (their order is given before the close wakes them).
        self.fall_back(mount);
        mount.fanout.close();
        mount.poke();
        tracing::info!(mount = %mount.path, "mount closed: no source within the grace period");
    }

    /// `mount` is closing: order its listeners to its live fallback, when it has one of the
    /// same format (else they end with the mount, and the log says why).
    fn fall_back(&self, mount: &Arc<Mount>) {
        let Some(wanted) = mount.fallback() else {
            return;
        };
        if mount.clients.lock().is_empty() {
            return;
        }
        let Some(dest) = self.live_fallback(mount) else {
            tracing::info!(mount = %mount.path, fallback = %wanted, "no live fallback: listeners end with the mount");
            return;
        };
        let (from, to) = (mount.format(), dest.format());
        if from != to {
            tracing::warn!(mount = %mount.path, fallback = %dest.path, "listeners not moved to the fallback: it carries another format ({to:?}, the mount {from:?}); they end with the mount");
            return;
        }
        let (moved, stayed) = mount.move_clients(&dest, MoveKind::Fallback);
        tracing::info!(mount = %mount.path, fallback = %dest.path, listeners = moved, stayed, "source gone: listeners moved to the fallback");
    }

    /// A mount's source went away: hold its listeners through the grace period, then close
    /// the mount unless a source came back (the timer is a task of the registry's own).
    fn source_left(self: &Arc<Self>, m: &Arc<Mount>) {
        m.update_state(|st| st.connected = false);
        m.ingest_bps.store(0, Ordering::Relaxed);
        // No live edge without a source (a deck step is refused, not stamped with the past).
        m.stream_ms.store(Mount::NO_TIME, Ordering::Relaxed);
        let epoch = m.source_epoch.fetch_add(1, Ordering::AcqRel) + 1;
        m.source_present.store(false, Ordering::Release);
        let grace = m.settings().grace_period();
        tracing::info!(mount = %m.path, grace_secs = grace.as_secs(), "source gone; holding listeners");
        m.poke();
        // Web players end with their source (they reconnect to the next one).
        m.fanout.wake();
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime (a unit test): no waiting.
            self.expire(m, epoch);
            return;
        }
        let (registry, mount, closing) = (self.clone(), m.clone(), self.closing.clone());
        self.timers.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => registry.expire(&mount, epoch),
                _ = closing.cancelled() => {}
            }
        });
    }

    /// Close every mount now (shutdown), and stop the grace timers.
    pub(crate) fn close_all(&self) {
        self.closing.cancel();
        self.timers.close();
        let map = std::mem::take(&mut *self.mounts.write());
        for m in map.values() {
            m.mark_closed();
            m.fanout.close();
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn titles_lose_control_characters_and_stay_short() {
        assert_eq!(
            clean_title("Talk\r\nStreamTitle='x';\0\x1b[31m red\tend\u{85} "),
            "Talk StreamTitle='x'; [31m red end"
        );
        assert_eq!(clean_title("  Keynote  -  Opening "), "Keynote - Opening");
        let long = "é".repeat(MAX_STREAM_TITLE);
        let cut = clean_title(&long);
        assert!(cut.len() <= MAX_STREAM_TITLE && cut.chars().all(|c| c == 'é'));
    }
    use super::*;

    #[test]
    fn a_title_from_the_stream_is_bounded_and_set_once() {
        let reg = Arc::new(Registry::default());
        let claim = reg
            .claim(
                "/t",
                MountPolicy::default,
                StreamMeta::default(),
                "ip".into(),
            )
            .expect("free");
        let m = &claim.mount;
        m.set_title_from_stream("é".repeat(10_000));
        let t = m.title();
        assert!(t.text.len() <= MAX_STREAM_TITLE && t.text.starts_with('é'));
        let v = t.version;
        // The same title again changes nothing (no new version for ICY listeners).
        m.set_title_from_stream("é".repeat(10_000));
        assert_eq!(m.title().version, v);
    }

    #[test]
    fn icy_block_is_padded_and_quoted_safely() {
        let b = icy_block("A - B");
        assert_eq!(b[0] as usize * 16 + 1, b.len());
        assert!(b[1..].starts_with(b"StreamTitle='A - B';"));
        let b = icy_block("it's");
        assert!(!b[1..].windows(4).any(|w| w == b"it's"));
        let long = "é".repeat(5000);
        let b = icy_block(&long);
        assert_eq!(b[0], 255);
        assert_eq!(b.len(), 1 + 255 * 16);
    }

    /// A mount closing sends its listeners to its live fallback (passing over an absent one
    /// to its configured fallback), remembering their home; a source back at home calls them
    /// back once its first bytes are in.
    #[tokio::test]
    async fn listeners_fall_back_and_return_home() {
        let reg = Arc::new(
            Registry::default()
                .with_fallbacks(BTreeMap::from([("/gone".to_string(), "/b".to_string())])),
        );
        let policy = |fallback: Option<&str>| MountPolicy {
            settings: MountSettings {
                grace_period_secs: 0,
                ..MountSettings::default()
            },
            fallback: fallback.map(str::to_string),
            ..MountPolicy::default()
        };
        let live = |claim: &SourceClaim| {
            claim
                .mount
                .set_stream(Some(Format::Ogg), StreamInfo::default());
            claim.mount.publish(Bytes::from_static(b"x"), true);
        };
        let b = reg
            .claim("/b", || policy(None), StreamMeta::default(), "ip".into())
            .expect("free");
        live(&b);
        let a = reg
            .claim(
                "/a",
                || policy(Some("/gone")),
                StreamMeta::default(),
                "ip".into(),
            )
            .expect("free");
        live(&a);
        let client = Client::new("127.0.0.1:1".parse().expect("addr"), "ua", false);
        let guard = a.mount.add_listener(&client).expect("room");
        let mut rx = a.mount.fanout.subscribe();
        drop(a);
        rx.wait_for(|t| t.closed).await.expect("closed");
        match client.take_order() {
            Some(Order::Move(to)) => assert!(Arc::ptr_eq(&to, &b.mount)),
            other => panic!("not moved to the fallback: {other:?}"),
        }
        assert!(client.is_from("/a"));
        // What the listener's own task does with the order.
        drop(guard);
        let _on_b = b.mount.adopt_listener(&client);
        let back = reg
            .claim(
                "/a",
                || policy(Some("/gone")),
                StreamMeta::default(),
                "ip".into(),
            )
            .expect("free");
        assert!(client.take_order().is_none(), "not before the first bytes");
        live(&back);
        let order = loop {
            if let Some(o) = client.take_order() {
                break o;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(matches!(order, Order::Move(to) if Arc::ptr_eq(&to, &back.mount)));
        assert!(!client.is_from("/a"), "home forgotten on the way back");
    }

    #[tokio::test]
    async fn second_source_is_refused_and_grace_expiry_closes() {
        let reg = Arc::new(Registry::default());
        let s = MountPolicy {
            settings: MountSettings {
                grace_period_secs: 0,
                ..MountSettings::default()
            },
            ..MountPolicy::default()
        };
        let claim = reg
            .claim("/a", || s.clone(), StreamMeta::default(), "ip".into())
            .expect("free");
        assert_eq!(
            reg.claim("/a", || s.clone(), StreamMeta::default(), "ip".into())
                .expect_err("in use"),
            ClaimError::InUse
        );
        let mount = claim.mount.clone();
        let mut rx = mount.fanout.subscribe();
        drop(claim);
        rx.wait_for(|t| t.closed).await.expect("closed");
        assert!(reg.get("/a").is_none());
    }
}
