//! Listeners: the Icecast-style response, the join (headers, burst from a sync point, live),
//! ICY metadata interleaving, and the write loop.
//!
//! **Architecture invariants:**
//! - A listener never copies stream bytes: it queues [`Bytes`] handles (header bytes, chunks,
//!   zero-copy slices of chunks around ICY blocks) and writes them with one vectored write.
//! - A slow listener never delays the source or another listener: it only reads the fan-out
//!   under a shared lock for the time of a few reference-count increments.
//! - A listener more than `queue-size` behind (its cursor fell off the fan-out queue, even
//!   while it is stuck in a write) is cut off, or moved to the latest sync point when the
//!   mount's `lag-policy = "skip"`. What waits for it in the kernel is bounded by the
//!   socket's `TCP_NOTSENT_LOWAT` (see `server.rs`), so it is cut about `queue-size` behind,
//!   not megabytes later.
//! - A listener that takes nothing leaves: a write blocked for the server's
//!   `send-timeout-secs`, or still blocked `drain-secs` after its mount closed, ends it
//!   ([`Stall`]); a client that reads nothing never keeps a closed mount.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::config::{LagPolicy, RedirectMode};
use crate::limits::Key;
use crate::listener_auth::{Ask, Departure, Gate, Grant, Unavailable};
use crate::logging::{About, Kind};
use crate::state::{Login, Shared};
use crate::stream::ending::ListenerEnd;
use crate::stream::fanout::{Read, Start, StreamHeaders, Tail};
use crate::stream::mount::{Client, ListenerGuard, Mount, Order, Title};
use crate::stream::parking::Parked;
use crate::telemetry::access_log;
use crate::wire::auth;
use crate::wire::conn::Connection;
use crate::wire::http::{self, Request, Response};

/// Most bytes taken from the fan-out per read; bounds what one listener holds references to.
const MAX_BATCH: usize = 64 * 1024;
/// Most buffers in one vectored write.
const MAX_IOV: usize = 64;
/// Most fan-out chunks taken per read: a burst of a radio stream is a hundred small frames,
/// and `pending` keeps the capacity it grew to for the listener's whole life.
const MAX_CHUNKS: usize = 32;
/// `pending`'s capacity beyond which it is given back once empty (after a burst).
const PENDING_KEEP: usize = 16;
/// How long a new listener waits for a just-connected source to send its first bytes.
const FIRST_DATA_WAIT: Duration = Duration::from_secs(10);

static NO_META: Bytes = Bytes::from_static(&[0]);

/// Longest user agent kept for `listclients` (the rest is cut: memory per listener is bounded).
const MAX_USER_AGENT: usize = 200;

/// Why a listener's stream on one mount ended (a move continues on another mount; the
/// others become a [`ListenerEnd`]).
#[derive(Debug)]
enum End {
    /// The mount closed (its source gone for good, or the server shutting down).
    Closed,
    Gone,
    Lagged,
    /// `/admin/killclient`.
    Killed,
    /// `/admin/moveclients`: continue on this mount.
    Moved(Arc<Mount>),
    /// A web page's player reached the end of its source's stream (see `Session::page_epoch`).
    NewStream,
    /// Caught up: wait parked with the mount (see [`crate::stream::parking`]).
    Park,
    /// A write took nothing for the server's `send-timeout-secs`.
    Stalled,
    /// A write was still blocked `drain-secs` after the mount closed.
    Undrained,
}

/// The edge (`host:port`) a new listener of `mount` is sent to, if any: per the mount's
/// `redirect` mode, when this server or the mount is full, or always; the edge is the board's
/// pick (healthy, carries the mount, least loaded).
fn edge_for(mount: &Mount, shared: &Shared, server_full: bool) -> Option<String> {
    let wanted = match mount.settings().redirect {
        RedirectMode::Never => false,
        RedirectMode::Always => true,
        RedirectMode::WhenFull => {
            server_full
                || mount
                    .settings()
                    .max_listeners
                    .is_some_and(|max| mount.listeners.load(Ordering::Relaxed) >= max)
        }
    };
    wanted.then(|| shared.edges.pick(&mount.path)).flatten()
}

/// With `fallback-when-full`, the live fallback of a full mount, when it carries the same
/// format (it may be full too: the caller asks it).
fn when_full(mount: &Mount, shared: &Shared) -> Option<Arc<Mount>> {
    if !mount.settings().fallback_when_full {
        return None;
    }
    let dest = shared.registry.live_fallback(mount)?;
    (mount.format().is_none() || dest.format() == mount.format()).then_some(dest)
}

/// Answer one listener request on `mount`: limits, the response head, then the streaming
/// session, spawned as its own task so that nothing of the request (its head, buffers, the
/// connection task's state) stays in memory while the listener streams: a mount with 15,000
/// listeners holds 15,000 of these sessions and nothing else per listener.
pub(crate) async fn handle(
    mut stream: Connection,
    peer: SocketAddr,
    req: Request,
    mut mount: Arc<Mount>,
    shared: Arc<Shared>,
) {
    // Another server relaying the mount logs in as the relay user (or an admin): it is
    // counted as a relay, not a viewer, never sent elsewhere, and passes the mount's gate.
    let relay = shared.is_relay_listener(&req, peer.ip());
    let mut agent = req.header("user-agent").unwrap_or("");
    if agent.len() > MAX_USER_AGENT {
        let mut cut = MAX_USER_AGENT;
        while !agent.is_char_boundary(cut) {
            cut -= 1;
        }
        agent = &agent[..cut];
    }
    let client = Client::new(peer, agent, relay);
    // The mount's gate before any limit: a listener that is not let in takes no slot.
    let gate = match relay {
        true => None,
        false => shared.listener_auth.load().for_mount(&mount.path),
    };
    // From here on, however the connection ends, dropping this sends the remove of a
    // listener the URL let in, and stops its time limit's timer.
    let mut admission = None;
    if let Some(gate) = gate {
        match authenticate(&gate, &req, peer, &client, &mount, &shared).await {
            Ok(grant) => admission = Admission::new(grant, &client, &shared),
            Err(refusal) => {
                shared.refuse(&mut stream, peer, &req, refusal).await;
                return;
            }
        }
    }
    // Server-wide limit first, then the mount's own.
    let total = shared
        .registry
        .total_listeners
        .fetch_add(1, Ordering::AcqRel);
    let mut total_guard = TotalGuard(shared.clone(), Key::NONE);
    let server_full = total >= shared.config().server.max_listeners;
    if !relay && let Some(edge) = edge_for(&mount, &shared, server_full) {
        // `target` is the path and query as sent (`parse_head` admits no control character or
        // space in it).
        let location = match req.target.starts_with('/') {
            true => format!("http://{edge}{}", req.target),
            false => format!("http://{edge}{}", mount.path),
        };
        tracing::debug!(%peer, mount = %mount.path, %location, "listener sent to an edge");
        shared
            .refuse(
                &mut stream,
                peer,
                &req,
                Response::text(302, "Served by another server of this stream")
                    .with_header("Location", location),
            )
            .await;
        return;
    }
    if server_full {
        let why = "Server listener limit reached";
        return refuse_over(stream, peer, &req, &mount, &shared, 503, why).await;
    }
    // Bandwidth: the source's bitrate per listener, against the mount's and the server's
    // caps (relays are the edges' business).
    if !relay && let Some(why) = over_bandwidth(&mount, &shared) {
        return refuse_over(stream, peer, &req, &mount, &shared, 503, why).await;
    }
    // Listeners per client address (not for relays: an edge is one address with many).
    if !relay {
        match shared.listeners_per_ip.take(peer.ip()) {
            Some(key) => total_guard.1 = key,
            None => {
                let why = "Too many listeners from this address";
                return refuse_over(stream, peer, &req, &mount, &shared, 429, why).await;
            }
        }
    }
    let full = mount.clone();
    let added = mount.add_listener(&client).or_else(|| {
        // Full: the fallback's listener, with `fallback-when-full` (an edge came first).
        let dest = when_full(&full, &shared)?;
        let guard = dest.add_listener(&client)?;
        client.leave_home(&full.path);
        tracing::info!(%peer, mount = %full.path, fallback = %dest.path, "mount full: listener sent to its fallback");
        mount = dest;
        Some(guard)
    });
    let Some(listener_guard) = added else {
        let why = "Maximum listeners reached for this mount";
        return refuse_over(stream, peer, &req, &mount, &shared, 503, why).await;
    };
    let mut rx = mount.fanout.subscribe();
    // A source that just connected may not have sent a byte yet: the Content-Type comes from
    // the bytes, so wait (briefly) for them.
    if mount.format().is_none() {
        let ready =
            tokio::time::timeout(FIRST_DATA_WAIT, rx.wait_for(|t| t.next_seq > 0 || t.closed))
                .await
                .is_ok_and(|r| r.is_ok_and(|t| !t.closed));
        if !ready {
            return shared.refuse(&mut stream, peer, &req, not_started()).await;
        }
    }
    let (format, video) = {
        let st = mount.state();
        (
            st.format.unwrap_or(agora_format::Format::Opaque),
            st.info.has_video(),
        )
    };
    let icy = format.supports_icy()
        && req
            .header("icy-metadata")
            .is_some_and(|v| v.trim() != "0" && !v.trim().is_empty());
    if let Some(last) = range_probe(&req) {
        // Safari's probe (`Range: bytes=0-1`): it plays only from servers that answer 206.
        // A source that just connected may have no chunk out yet (its format known from its
        // first bytes, its first frame still being gathered): wait briefly for one rather than
        // answer with nothing.
        let want = last.saturating_add(1).min(64 * 1024);
        let deadline = tokio::time::Instant::now() + FIRST_DATA_WAIT;
        let mut body = first_bytes(&mount, want);
        while body.is_empty()
            && matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            )
        {
            body = first_bytes(&mount, want);
        }
        if body.is_empty() {
            return shared.refuse(&mut stream, peer, &req, not_started()).await;
        }
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nServer: {}\r\nContent-Type: {}\r\nX-Content-Type-Options: nosniff\r\nContent-Range: bytes 0-{}/*\r\nContent-Length: {}\r\nCache-Control: no-cache, no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: Close\r\n\r\n",
            http::SERVER,
            format.content_type(video),
            body.len().saturating_sub(1),
            body.len()
        );
        let mut out = head.into_bytes();
        if req.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        let _ = stream.write_all(&out).await;
        shared.access_log.log(peer, &req, 206, body.len() as u64);
        return;
    }
    let head = response_head(
        &mount,
        format.content_type(video),
        icy.then_some(mount.settings().icy_metaint),
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if req.method == "HEAD" {
        shared.access_log.log(peer, &req, 200, 0);
        return;
    }
    shared.listener_connections.fetch_add(1, Ordering::Relaxed);
    let page = req.query_param("page").is_some();
    let intro = intro_for(&mount, format, relay, page);
    let fill = (mount.settings().browser_fill && !relay && !icy && intro.is_none())
        .then(|| Padding::for_browser(format, &req))
        .flatten()
        .map(|p| Box::new(Fill::new(p)));
    let mut session = Session {
        fill,
        stream,
        client,
        page_epoch: page.then(|| mount.source_epoch()),
        icy: icy.then(|| Icy {
            interval: mount.settings().icy_metaint,
            until_meta: mount.settings().icy_metaint,
            sent_version: u64::MAX,
        }),
        sent_headers: None,
        orders_seen: Client::LOOK_NOW,
        woken_in_flush: false,
        joined: false,
        need_sync: false,
        cursor: 0,
        started: Instant::now(),
        pending: VecDeque::new(),
        sent: head.len() as u64,
        log_entry: shared.access_log.listener_entry(peer, &req),
        mount,
        guard: listener_guard,
        _total: total_guard,
        _admission: admission,
    };
    if let Some(intro) = intro {
        // Before the headers and the burst, counted by the ICY interval like stream bytes.
        match session.icy.as_mut() {
            Some(icy) => icy.splice(&intro, || session.mount.title(), &mut session.pending),
            None => session.pending.push_back(intro),
        }
    }
    drop((req, head));
    // A task of its own (not the connection's, whose state is larger) until the listener is
    // caught up: then it is parked, without a task. Running the session in the connection's
    // task left more memory behind the joins (RSS per listener at 5,000 Ogg Theora listeners:
    // 1.63-2.45 KiB against 1.64).
    shared.tracker.spawn(session.run(rx, shared.clone()));
}

/// The answer to a listener of a mount whose source has sent nothing it could start with
/// within the first-data wait.
fn not_started() -> Response {
    Response::text(503, "The stream has not started yet")
}

/// Refuse a listener over a limit with `status` and `why`, logged as `listener refused: why`
/// a few times per address (an address knocking again and again fills no log).
async fn refuse_over(
    mut stream: Connection,
    peer: SocketAddr,
    req: &Request,
    mount: &Mount,
    shared: &Shared,
    status: u16,
    why: &str,
) {
    if shared
        .logs
        .admit(Kind::ListenerRefused, About::Peer(peer.ip()))
    {
        tracing::warn!(%peer, mount = %mount.path, "listener refused: {why}");
    }
    shared
        .refuse(&mut stream, peer, req, Response::text(status, why))
        .await;
}

/// The mount's `intro` for a new listener (a shared handle, never a copy): for players, when
/// the stream is of the intro's format. Not for relays (an edge has its own intro for its
/// listeners), nor for Agora's web player on Ogg (browsers stop at the chain that follows).
/// Such a listener gets no browser fill: the intro is its first block.
fn intro_for(
    mount: &Mount,
    format: agora_format::Format,
    relay: bool,
    page: bool,
) -> Option<Bytes> {
    let intro = mount.intro.as_ref()?;
    if relay || (page && format == agora_format::Format::Ogg) {
        return None;
    }
    (intro.format == format).then(|| intro.bytes.clone())
}

/// The realm of a mount's `401`: Icecast's.
const REALM: &str = "Basic realm=\"Icecast2 Server\"";

/// Ask the mount's gate about a listener, through [`Shared::login_awaited`] (a banned address
/// is refused unasked; wrong credentials count towards a ban). `Ok`: let in, with what the
/// grant brings; otherwise the refusal: `401` with `WWW-Authenticate` for missing or wrong
/// credentials (Icecast's answer to both), `429` for a banned address, `503` when the gate
/// could not decide in time.
async fn authenticate(
    gate: &Arc<Gate>,
    req: &Request,
    peer: SocketAddr,
    client: &Client,
    mount: &Mount,
    shared: &Shared,
) -> Result<Grant, Response> {
    let ask = Ask {
        credentials: req.header("authorization").and_then(auth::parse_basic),
        target: &req.target,
        ip: peer.ip(),
        agent: &client.user_agent,
        client: client.id,
        server: &shared.config().server.hostname,
        port: shared.public_port,
    };
    let mut grant = None;
    let check = async {
        grant = gate.check(ask, &shared.logs).await?;
        Ok::<_, Unavailable>(grant.is_some())
    };
    let login = shared.login_awaited(peer.ip(), req, check).await;
    match login {
        Ok(Login::Granted) => Ok(grant.unwrap_or_default()),
        Ok(Login::Missing) => {
            Err(Response::text(401, "You need to authenticate")
                .with_header("WWW-Authenticate", REALM))
        }
        Ok(Login::Wrong) => {
            tracing::info!(%peer, mount = %mount.path, "listener refused: wrong credentials");
            Err(Response::text(401, "You need to authenticate")
                .with_header("WWW-Authenticate", REALM))
        }
        Ok(Login::Banned(left)) => Err(Shared::banned_response(left)),
        Err(why) => {
            tracing::warn!(%peer, mount = %mount.path, "listener refused: {why}");
            Err(Response::text(
                503,
                "Listener authentication is unavailable; try again later",
            )
            .with_header("Retry-After", "5"))
        }
    }
}

/// What a listener let in by its mount's URL carries to its end: the timer of its time limit
/// (`icecast-auth-timelimit`) and its remove (`listener-remove-url`). Made right after the
/// grant and held by the connection, then by its [`Session`], so that it is dropped however
/// the connection ends: streamed and left, killed, cut at its time limit, refused by a limit
/// after the grant, a `HEAD` or a range probe answered, a shutdown. Dropping it stops the
/// timer and sends the remove, in a task of the server's (a parked session is dropped
/// without a task of its own; a graceful shutdown waits for the server's tasks, each remove
/// bounded by the gate's timeout). Boxed in the session: most listeners have none.
struct Admission {
    departure: Option<Departure>,
    timer: Option<tokio::task::AbortHandle>,
    shared: Arc<Shared>,
}

impl Admission {
    fn new(grant: Grant, client: &Arc<Client>, shared: &Arc<Shared>) -> Option<Box<Admission>> {
        if grant.departure.is_none() && grant.ends.is_none() {
            return None;
        }
        Some(Box::new(Admission {
            departure: grant.departure,
            timer: grant.ends.map(|at| end_at(at, client, shared)),
            shared: shared.clone(),
        }))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        let Some(departure) = self.departure.take() else {
            return;
        };
        // None only once the runtime is gone (a session dropped after the shutdown's wait).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                id = departure.client(),
                "listener_remove not sent: shutting down"
            );
            return;
        };
        let (gate, id) = (departure.gate().to_string(), departure.client());
        let shared = self.shared.clone();
        let remove = departure.leave();
        self.shared.tracker.spawn_on(
            async move {
                if let Err(why) = remove.await
                    && shared.logs.admit(Kind::ListenerRemove, About::Mount(&gate))
                {
                    tracing::warn!(mount = %gate, id, "listener_remove not delivered: {why}");
                }
            },
            &runtime,
        );
    }
}

/// The timer of a listener's time limit: at `at` the listener is ended as `/admin/killclient`
/// ends it, wherever it is then ([`Registry::kill_client`](crate::stream::mount::Registry::kill_client)).
/// A task of the server's, aborted when the listener leaves first; a shutdown ends it.
fn end_at(at: Instant, client: &Arc<Client>, shared: &Arc<Shared>) -> tokio::task::AbortHandle {
    let client = Arc::downgrade(client);
    let s = shared.clone();
    shared
        .tracker
        .spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                () = s.shutdown.cancelled() => return,
            }
            if let Some(client) = client.upgrade() {
                tracing::info!(peer = %client.peer, id = client.id, "listener's time limit reached (icecast-auth-timelimit)");
                s.registry.kill_client(&client);
            }
        })
        .abort_handle()
}

/// `Range: bytes=0-N` with an end: a probe for the first N+1 bytes (`bytes=0-` and other
/// ranges get the stream, as from Icecast).
fn range_probe(req: &Request) -> Option<usize> {
    let v = req.header("range")?.trim();
    let (start, end) = v.strip_prefix("bytes=")?.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse().ok()
}

/// The first `n` bytes a joining listener would get: the stream headers, then the burst.
fn first_bytes(mount: &Mount, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let headers = mount.current_headers();
    out.extend_from_slice(&headers.bytes[..headers.bytes.len().min(n)]);
    if out.len() < n {
        let cursor = match mount.fanout.start(mount.settings().burst_size) {
            Start::At(c) | Start::NextSync(c) => c,
        };
        let _ = mount.fanout.read_each(cursor, n, usize::MAX, |b, _| {
            let take = (n - out.len()).min(b.len());
            out.extend_from_slice(&b[..take]);
        });
    }
    out
}

/// Why one more listener of `mount` would take more than a bandwidth cap allows: its
/// `max-bandwidth-kbps`, or the server's `max-bandwidth-mbps` (every mount's source bitrate
/// times its listeners). A mount whose source sent nothing yet costs nothing.
fn over_bandwidth(mount: &Mount, shared: &Shared) -> Option<&'static str> {
    let bps = mount.ingest_bps.load(Ordering::Relaxed);
    let takes = |m: &Mount| {
        m.ingest_bps.load(Ordering::Relaxed) * m.listeners.load(Ordering::Relaxed) as u64
    };
    if let Some(cap) = mount.settings().max_bandwidth_kbps
        && takes(mount) + bps > cap * 1000
    {
        return Some("Bandwidth limit reached for this mount");
    }
    let cap = shared.config().server.max_bandwidth_mbps;
    if cap > 0 {
        let all: u64 = shared.registry.all().iter().map(|m| takes(m)).sum();
        if all + bps > cap * 1_000_000 {
            return Some("Server bandwidth limit reached");
        }
    }
    None
}

/// Counts the listener in the server, and holds its slot of its address's listeners (one
/// word: a `Session` is paid per listener).
struct TotalGuard(Arc<Shared>, Key);

impl Drop for TotalGuard {
    fn drop(&mut self) {
        self.0.listeners_per_ip.give_back(self.1);
        self.0
            .registry
            .total_listeners
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Icecast's listener response: HTTP/1.0, close-delimited, `icy-*` headers without a space
/// after the colon (as Icecast writes them; some old players match on that).
fn response_head(mount: &Mount, content_type: &str, metaint: Option<usize>) -> String {
    let st = mount.state();
    let mut h = format!(
        "HTTP/1.0 200 OK\r\nServer: {}\r\nDate: {}\r\nContent-Type: {content_type}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache, no-store\r\nExpires: Mon, 26 Jul 1997 05:00:00 GMT\r\nPragma: no-cache\r\nAccess-Control-Allow-Origin: *\r\nConnection: Close\r\n",
        http::SERVER,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            // Header values come from the source: never let them break the head.
            let v: String = v.chars().filter(|c| !c.is_control()).collect();
            h.push_str(k);
            h.push(':');
            h.push_str(&v);
            h.push_str("\r\n");
        }
    };
    add("icy-name", &st.meta.name);
    add("icy-description", &st.meta.description);
    add("icy-genre", &st.meta.genre);
    add("icy-url", &st.meta.url);
    add("icy-pub", &st.meta.public);
    add("icy-br", &st.meta.bitrate());
    add("ice-audio-info", &st.meta.audio_info);
    if let Some(m) = metaint {
        add("icy-metaint", &Some(m.to_string()));
    }
    h.push_str("\r\n");
    h
}

/// Chromium hands a progressive response to its media pipeline in whole blocks of this size
/// (its media cache's block; a partial block only at the end of the response). A live stream
/// is therefore not demuxed, nor played on, until 32 KiB more of it have arrived: a listener
/// that joins with less than that held (a source that just started, a low bitrate) waits
/// 32 KiB / bitrate before first sound (19 s for a mono Vorbis stream at 14 kbit/s), and one
/// whose burst holds less than a block of audio stalls when it has played it.
const BROWSER_BLOCK: u64 = 32 * 1024;
/// A burst of at least this much stream plays without a stall in Chromium (a block, and
/// audio beyond it to play while the next block arrives): no fill.
const FILL_UNLESS_BURST: u64 = BROWSER_BLOCK * 3 / 2;
/// A filled listener's stream bytes wait at most its own latency less this before padding
/// completes their block ...
const FILL_MARGIN: Duration = Duration::from_millis(400);
/// ... and never less than this (the padding a listener costs is at most a block per wait).
const FILL_MIN_WAIT: Duration = Duration::from_millis(300);
/// For this long after its first stream byte, a listener's blocks are completed as soon as
/// stream bytes wait in them: Chromium starts playing once it has decoded some audio, and a
/// listener that joined as the source started has only a few frames.
const FILL_START: Duration = Duration::from_secs(1);
/// How long stream bytes may wait in a block during [`FILL_START`].
const FILL_START_WAIT: Duration = Duration::from_millis(100);

/// Padding a browser's demuxer skips, per format (see [`Fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Padding {
    /// Zero bytes between Ogg pages or ADTS frames: FFmpeg's (Chromium's) demuxers look for
    /// the next capture pattern or sync word and skip them without a word.
    Zeros,
    /// MP3: zero bytes between frames, except before the first frame, where they would fail
    /// Chromium's format probe: there, an ID3v2 tag of padding in front of the burst.
    Mp3,
}

impl Padding {
    /// Padding for a listener that is a Chromium-based browser (its user agent says
    /// `Chrome/`), for the formats whose demuxer skips it; `None` for anyone else (players,
    /// relays, other browsers keep the stream byte for byte). WebM needs none: its bitrate
    /// fills a block in a fraction of a second.
    fn for_browser(format: agora_format::Format, req: &Request) -> Option<Padding> {
        use agora_format::Format;
        if !req
            .header("user-agent")
            .is_some_and(|ua| ua.contains("Chrome/"))
        {
            return None;
        }
        match format {
            Format::Ogg | Format::Aac => Some(Padding::Zeros),
            Format::Mp3 => Some(Padding::Mp3),
            Format::WebM | Format::Opaque => None,
        }
    }
}

/// Stream bytes an MP3 listener gets before zeros between frames: Chromium's format probe
/// wants consecutive frames (zeros after the first two or three fail it: "open context failed").
const MP3_PROBE: u64 = 4096;

/// Zero bytes that padding is sliced from (never copied per listener).
static ZEROS: [u8; BROWSER_BLOCK as usize] = [0; BROWSER_BLOCK as usize];

/// An ID3v2.4 tag of `len` (at least 10) bytes: a header and padding.
fn id3_padding(len: usize) -> Vec<u8> {
    let size = len - 10;
    let mut tag = vec![0u8; len];
    tag[..6].copy_from_slice(b"ID3\x04\x00\x00");
    for (i, b) in tag[6..10].iter_mut().enumerate() {
        *b = ((size >> (7 * (3 - i))) & 0x7f) as u8;
    }
    tag
}

/// A Chromium listener's fill: when it joined with less than [`FILL_UNLESS_BURST`] of stream,
/// padding completes each [`BROWSER_BLOCK`] of its response in time for the player to decode
/// it. The first block is completed at once (first sound without waiting for 32 KiB of
/// stream); after it, a block is completed when its first stream byte has waited the
/// listener's own latency (what its burst spanned) less [`FILL_MARGIN`]. A listener whose
/// burst was large enough is never padded (it plays as any listener: `active` false).
struct Fill {
    padding: Padding,
    /// Decided at the first join (a moved listener keeps it).
    decided: bool,
    active: bool,
    /// Body bytes queued so far (headers, stream, padding): where the blocks end.
    body: u64,
    /// When the first stream byte of the current, incomplete block was queued.
    since: Option<Instant>,
    /// How long stream bytes may wait in an incomplete block; zero until the first block
    /// holding stream bytes is complete.
    wait: Duration,
    later_wait: Duration,
    /// When its first stream byte was queued.
    first: Option<Instant>,
    /// Stream bytes queued.
    streamed: u64,
    /// Bytes of padding sent (logged at the end).
    padded: u64,
}

impl Fill {
    fn new(padding: Padding) -> Fill {
        Fill {
            padding,
            decided: false,
            active: false,
            body: 0,
            since: None,
            wait: Duration::ZERO,
            later_wait: FILL_MIN_WAIT,
            first: None,
            streamed: 0,
            padded: 0,
        }
    }

    /// Count `n` body bytes queued; `stream` when they are stream bytes (not headers).
    fn queued(&mut self, n: usize, stream: bool) {
        let before = self.body;
        self.body += n as u64;
        if stream {
            self.streamed += n as u64;
            self.first.get_or_insert_with(Instant::now);
        }
        if self.body / BROWSER_BLOCK > before / BROWSER_BLOCK {
            // A block completed by itself; the new one holds stream bytes if any spill over.
            if self.since.is_some() || stream {
                self.wait = self.later_wait;
            }
            self.since = (stream && !self.body.is_multiple_of(BROWSER_BLOCK)).then(Instant::now);
        } else if stream && self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// When the current block must be completed (`None`: it holds no stream byte).
    fn deadline(&self) -> Option<Instant> {
        if self.padding == Padding::Mp3 && self.streamed < MP3_PROBE {
            return None;
        }
        let starting = self.first.is_some_and(|t| t.elapsed() < FILL_START);
        match (self.active, starting) {
            (true, true) => self.since.map(|t| t + FILL_START_WAIT),
            (true, false) => self.since.map(|t| t + self.wait),
            (false, _) => None,
        }
    }

    /// The padding that completes the current block.
    fn padding(&mut self) -> Bytes {
        let mut n = (BROWSER_BLOCK - self.body % BROWSER_BLOCK) as usize;
        if n == BROWSER_BLOCK as usize {
            n = 0;
        }
        self.padded += n as u64;
        self.queued(n, false);
        self.since = None;
        self.wait = self.later_wait;
        Bytes::from_static(&ZEROS[..n])
    }
}

struct Icy {
    interval: usize,
    /// Stream bytes left before the next metadata block.
    until_meta: usize,
    /// Title version last sent in full (`u64::MAX`: none yet, so the first block is full).
    sent_version: u64,
}

/// One streaming listener: everything it holds while it streams (the task's whole state).
struct Session {
    /// Padding for a Chromium listener that joined with a short burst (see [`Fill`]). Boxed:
    /// most listeners have none, and every byte of this struct is paid per listener (the
    /// task's allocation is rounded up to 128 bytes, then to the allocator's size class).
    fill: Option<Box<Fill>>,
    stream: Connection,
    /// Its address is `client.peer`.
    client: Arc<Client>,
    /// Requested by Agora's web player (`?page`): the mount's source epoch at the join. Such
    /// a listener ends when that source goes away or new stream headers come, instead of being
    /// fed a chained Ogg stream or a restarted WebM stream (browsers stop on both); the page
    /// reconnects to the next stream.
    page_epoch: Option<u64>,
    mount: Arc<Mount>,
    icy: Option<Icy>,
    sent_headers: Option<Arc<StreamHeaders>>,
    /// Orders given (to any listener) when this one last looked at its own.
    orders_seen: u64,
    /// The fan-out woke the listener while a write was blocked.
    woken_in_flush: bool,
    /// Its start on the current mount is decided (burst, fill).
    joined: bool,
    /// Waiting for a sync point from `cursor` on.
    need_sync: bool,
    /// The next fan-out chunk to read.
    cursor: u64,
    started: Instant,
    /// What is queued for the socket, in order: only `Bytes` handles, never copies.
    pending: VecDeque<Bytes>,
    /// Bytes written, response head included.
    sent: u64,
    log_entry: Option<access_log::Entry>,
    /// Counts the listener out of its mount (replaced when moved) and the server.
    guard: ListenerGuard,
    _total: TotalGuard,
    /// A listener let in by its mount's URL: its time limit and remove, until it ends.
    _admission: Option<Box<Admission>>,
}

/// A parked listener: its session and what its task needs to continue.
struct ParkedListener {
    session: Session,
    rx: watch::Receiver<Tail>,
    shared: Arc<Shared>,
}

impl Parked for ParkedListener {
    fn write_now(&mut self) -> bool {
        self.session.write_now()
    }

    fn unpark(self: Box<Self>) {
        let ParkedListener {
            session,
            rx,
            shared,
        } = *self;
        shared.tracker.spawn(session.resume(rx, shared.clone()));
    }
}

impl Session {
    async fn run(self, rx: watch::Receiver<Tail>, shared: Arc<Shared>) {
        tracing::debug!(peer = %self.client.peer, mount = %self.mount.path, id = self.client.id, relay = self.client.relay, agent = %self.client.user_agent, "listener joined");
        self.resume(rx, shared).await;
    }

    /// Stream until the end, or until parked (the writer that unparks it calls this again).
    async fn resume(mut self, mut rx: watch::Receiver<Tail>, shared: Arc<Shared>) {
        let id = self.client.id;
        let end = loop {
            let mut end = self.stream_until_end(&mut rx, &shared).await;
            if matches!(end, End::Closed) && !shared.shutdown.is_cancelled() {
                // A mount closing moves its listeners to its fallback before it closes; one
                // that saw the close before its order still goes.
                match self.client.take_order() {
                    Some(Order::Move(dest)) if !Arc::ptr_eq(&dest, &self.mount) => {
                        end = End::Moved(dest);
                    }
                    Some(Order::Kill) => end = End::Killed,
                    _ => {}
                }
            }
            match end {
                End::Park => {
                    // Empty: a parked listener holds no buffer (its writer lends one).
                    self.pending = VecDeque::new();
                    let (mount, cursor) = (self.mount.clone(), self.cursor);
                    let parked = ParkedListener {
                        session: self,
                        rx,
                        shared,
                    };
                    mount.park(id, cursor, Box::new(parked));
                    return;
                }
                End::Moved(dest) => {
                    tracing::info!(peer = %self.client.peer, from = %self.mount.path, to = %dest.path, id, "listener moved");
                    self.guard = dest.adopt_listener(&self.client);
                    rx = dest.fanout.subscribe();
                    if self.page_epoch.is_some() {
                        self.page_epoch = Some(dest.source_epoch());
                    }
                    self.mount = dest;
                    self.orders_seen = Client::LOOK_NOW;
                    self.joined = false;
                    // The new mount's title is news to this listener.
                    if let Some(icy) = self.icy.as_mut() {
                        icy.sent_version = u64::MAX;
                    }
                }
                End::Closed | End::Undrained if shared.shutdown.is_cancelled() => {
                    break ListenerEnd::Shutdown;
                }
                End::Closed => break ListenerEnd::MountClosed,
                End::Undrained => break ListenerEnd::Undrained,
                End::Stalled => break ListenerEnd::Stalled,
                End::Gone => break ListenerEnd::Gone,
                End::Lagged => break ListenerEnd::Lagged,
                End::Killed => break ListenerEnd::Killed,
                End::NewStream => break ListenerEnd::NewStream,
            }
        };
        let (peer, mount) = (self.client.peer, &self.mount);
        match end {
            ListenerEnd::Lagged => {
                mount.slow_listeners.fetch_add(1, Ordering::Relaxed);
                if shared
                    .logs
                    .admit(Kind::ListenerLagged, About::Peer(peer.ip()))
                {
                    tracing::info!(%peer, mount = %mount.path, id, "{end}");
                }
            }
            ListenerEnd::Killed | ListenerEnd::Stalled | ListenerEnd::Undrained => {
                tracing::info!(%peer, mount = %mount.path, id, "{end}")
            }
            _ => tracing::debug!(%peer, mount = %mount.path, id, "{end}"),
        }
        if let Some(f) = self.fill.as_ref().filter(|f| f.padded > 0) {
            tracing::debug!(%peer, mount = %mount.path, id, padded = f.padded, "browser padding sent");
        }
        shared.metrics.listener_ended(end);
        shared.access_log.log_listener(
            self.log_entry.as_ref(),
            200,
            self.sent,
            self.started.elapsed(),
        );
    }

    /// Queue what the fan-out holds from the cursor (a batch). True with it when a web page's
    /// listener reached new stream headers: the batch stops before them.
    fn read_chunks(&mut self) -> (Read, bool) {
        let mut new_stream = false;
        // The session's parts borrowed apart: the mount needs no reference count of its own.
        let Session {
            ref mount,
            ref mut pending,
            ref mut icy,
            ref mut fill,
            ref mut sent_headers,
            page_epoch,
            cursor,
            ..
        } = *self;
        let read = mount
            .fanout
            .read_each(cursor, MAX_BATCH, MAX_CHUNKS, |bytes, headers| {
                if page_epoch.is_some()
                    && sent_headers
                        .as_ref()
                        .is_some_and(|h| !Arc::ptr_eq(h, headers))
                {
                    new_stream = true;
                }
                if !new_stream {
                    queue_chunk(pending, icy, fill, sent_headers, mount, bytes, headers)
                }
            });
        (read, new_stream)
    }

    /// Parked: send what the fan-out holds without waiting (see [`Parked::write_now`]), with
    /// the writer thread's `pending` buffer: a parked listener holds none (at 15,000 listeners
    /// a few hundred bytes each), and keeps the buffer only if it leaves with bytes in it.
    fn write_now(&mut self) -> bool {
        thread_local! {
            static PENDING: std::cell::Cell<VecDeque<Bytes>> = const {
                std::cell::Cell::new(VecDeque::new())
            };
        }
        debug_assert!(
            self.pending.is_empty(),
            "a parked listener has nothing pending"
        );
        self.pending = PENDING.take();
        let parked = self.write_parked();
        if self.pending.is_empty() {
            PENDING.set(std::mem::take(&mut self.pending));
        }
        parked
    }

    fn write_parked(&mut self) -> bool {
        if Client::orders_given_since(self.orders_seen) {
            return false;
        }
        loop {
            // Large ranges go from the mount's in-memory file, without a copy.
            if let Some((offset, len, next)) = self.plain_range() {
                let sent = self.stream.try_send_file(&self.mount.fanout, offset, len);
                if let Ok(n) = sent {
                    self.mount.bytes_sent_from_file.add(n as u64);
                }
                match sent {
                    Ok(n) if n == len => {
                        self.count_sent(n);
                        self.cursor = next;
                    }
                    Ok(n) if n > 0 => {
                        self.count_sent(n);
                        self.sent_part(n);
                        return false;
                    }
                    _ => return false,
                }
                if self.cursor >= self.mount.fanout.published() {
                    return true;
                }
                continue;
            }
            // Parked listeners have no page epoch: never a new stream to stop at.
            match self.read_chunks().0 {
                Read::Data(next) => self.cursor = next,
                Read::Empty => return true,
                Read::Closed | Read::Lagged => return false,
            }
            while !self.pending.is_empty() {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let count = io_slices(&self.pending, &mut iov);
                match self.stream.try_send_vectored(&iov[..count]) {
                    Ok(n) if n > 0 => {
                        self.count_sent(n);
                        consume(&mut self.pending, n);
                    }
                    // Full (its task waits for room), closed or failed (its task ends).
                    _ => return false,
                }
            }
            if self.cursor >= self.mount.fanout.published() {
                return true;
            }
        }
    }

    fn count_sent(&mut self, n: usize) {
        self.sent += n as u64;
        self.mount.bytes_sent.add(n as u64);
    }

    /// The range of stream bytes to send from the mount's in-memory file, as (stream offset,
    /// length, cursor after it): when the listener takes the stream as it is (no ICY
    /// metadata, no browser fill, nothing pending, no new headers) and it is at least the
    /// mount's `sendfile-min-bytes`. Never over TLS (the bytes must be encrypted on the way).
    fn plain_range(&self) -> Option<(u64, usize, u64)> {
        let min = self.mount.settings().sendfile_min_bytes;
        if min == 0
            || self.icy.is_some()
            || self.fill.is_some()
            || !self.pending.is_empty()
            || !self.stream.can_send_file()
        {
            return None;
        }
        let headers = self.sent_headers.as_ref()?;
        self.mount
            .fanout
            .plain_range(self.cursor, headers, min, MAX_BATCH, MAX_CHUNKS)
    }

    /// A `sendfile` from the cursor took `n` bytes, not the whole range: the rest becomes
    /// pending, as if those bytes had been queued and written.
    fn sent_part(&mut self, n: usize) {
        let mut have = 0;
        while have < n {
            match self.read_chunks().0 {
                Read::Data(next) => {
                    self.cursor = next;
                    have = self.pending.iter().map(Bytes::len).sum();
                }
                // The queue moved past the range between two calls (a reader is never that
                // slow): the lag policy applies.
                _ => break,
            }
        }
        consume(&mut self.pending, n);
    }

    /// Stream until the listener leaves, lags (with the disconnect policy) or the mount closes
    /// (which is also how a server shutdown reaches every listener), or until it is caught up
    /// and can wait parked.
    async fn stream_until_end(&mut self, rx: &mut watch::Receiver<Tail>, shared: &Shared) -> End {
        if !self.joined {
            (self.cursor, self.need_sync) =
                match self.mount.fanout.start(self.mount.settings().burst_size) {
                    Start::At(s) => (s, false),
                    Start::NextSync(s) => (s, true),
                };
            self.decide_fill(self.cursor);
            self.joined = true;
        }
        // Unparked with part of a write left.
        if !self.pending.is_empty()
            && let Err(end) = self.flush(rx, self.cursor, shared).await
        {
            return end;
        }
        // Read everything: wait for the fan-out to wake the listener (new chunks, an order,
        // the mount closing) first.
        let mut caught_up = false;
        loop {
            if std::mem::take(&mut caught_up) {
                // Meanwhile a browser's incomplete block is padded when its time comes.
                match self.fill.as_deref().and_then(Fill::deadline) {
                    Some(at) => {
                        tokio::select! {
                            r = rx.changed() => if r.is_err() {
                                return End::Closed;
                            },
                            () = tokio::time::sleep_until(at.into()) => {
                                if let Some(f) = self.fill.as_mut() {
                                    self.pending.push_back(f.padding());
                                }
                                if let Err(end) = self.flush(rx, self.cursor, shared).await {
                                    return end;
                                }
                            }
                        }
                    }
                    None => {
                        if rx.changed().await.is_err() {
                            return End::Closed;
                        }
                    }
                }
            }
            match self.client.take_order_since(&mut self.orders_seen) {
                Some(Order::Kill) => return End::Killed,
                Some(Order::Move(dest)) if !Arc::ptr_eq(&dest, &self.mount) => {
                    return End::Moved(dest);
                }
                _ => {}
            }
            if self
                .page_epoch
                .is_some_and(|e| e != self.mount.source_epoch())
            {
                return End::NewStream;
            }
            if self.need_sync {
                match self.mount.fanout.first_sync_at_or_after(self.cursor) {
                    Some(s) => {
                        self.cursor = s;
                        self.need_sync = false;
                    }
                    None => {
                        // Skip what arrived without a sync point and wait for more.
                        self.cursor = rx.borrow_and_update().next_seq.max(self.cursor);
                        if rx.borrow().closed {
                            return End::Closed;
                        }
                        if rx.changed().await.is_err() {
                            return End::Closed;
                        }
                        continue;
                    }
                }
            }
            // Mark the current tail seen before reading, so a publish after the read wakes us
            // (the version only: reading the value takes the channel's lock).
            rx.mark_unchanged();
            let (read, new_stream) = self.read_chunks();
            if new_stream {
                // What was queued before the new stream still goes out.
                return match self.flush(rx, self.cursor, shared).await {
                    Ok(()) => End::NewStream,
                    Err(end) => end,
                };
            }
            match read {
                Read::Data(next) => {
                    let batch_start = self.cursor;
                    self.cursor = next;
                    if let Err(end) = self.flush(rx, batch_start, shared).await {
                        return end;
                    }
                    // More was published meanwhile: read it. Else the listener is caught up
                    // and waits, without a read that would find nothing (a lock every core
                    // takes, per listener per wake-up).
                    if self.cursor < self.mount.fanout.published()
                        || std::mem::take(&mut self.woken_in_flush)
                    {
                        continue;
                    }
                }
                Read::Empty => {}
                Read::Closed => return End::Closed,
                Read::Lagged => {
                    match self.mount.settings().lag_policy {
                        LagPolicy::Disconnect => return End::Lagged,
                        LagPolicy::Skip => {
                            self.mount.slow_listeners.fetch_add(1, Ordering::Relaxed);
                            (self.cursor, self.need_sync) = match self.mount.fanout.latest_sync() {
                                Start::At(s) => (s, false),
                                Start::NextSync(s) => (s, true),
                            };
                        }
                    }
                    continue;
                }
            }
            if self.parkable() {
                return End::Park;
            }
            caught_up = true;
        }
    }

    /// A caught-up listener waits parked unless its own task has something to watch: a
    /// browser's fill (its deadlines), a web page's stream (its end), a sync point to come.
    fn parkable(&self) -> bool {
        self.pending.is_empty()
            && !self.need_sync
            && self.page_epoch.is_none()
            && self.fill.as_ref().is_none_or(|f| !f.active)
    }

    /// At the first join: whether this browser listener is padded (its burst from `cursor` is
    /// short), how long its stream bytes may wait later (the time its burst spans, less a
    /// margin), and for MP3 the ID3v2 tag that completes the first block with the burst.
    fn decide_fill(&mut self, cursor: u64) {
        let Some(fill) = self.fill.as_mut().filter(|f| !f.decided) else {
            return;
        };
        fill.decided = true;
        let (burst, since) = self.mount.fanout.held_from(cursor);
        if burst >= FILL_UNLESS_BURST {
            return;
        }
        fill.active = true;
        let spans = since.map_or(Duration::ZERO, |t| t.elapsed());
        fill.later_wait = spans.saturating_sub(FILL_MARGIN).max(FILL_MIN_WAIT);
        if fill.padding == Padding::Mp3 {
            let mut n = (BROWSER_BLOCK - burst % BROWSER_BLOCK) as usize;
            if n < 10 {
                n += BROWSER_BLOCK as usize;
            }
            fill.queued(n, false);
            fill.padded += n as u64;
            self.pending.push_back(Bytes::from(id3_padding(n)));
        }
        tracing::debug!(peer = %self.client.peer, mount = %self.mount.path, burst, wait_ms = fill.later_wait.as_millis() as u64, "browser listener padded");
    }

    /// Write everything pending. While a write is blocked, watch the fan-out: if the batch
    /// being written has fallen off the queue, the listener is too far behind. A write that
    /// takes nothing for the server's `send-timeout-secs`, or is still blocked `drain-secs`
    /// after the mount closed, ends the listener (see [`Stall`]).
    async fn flush(
        &mut self,
        rx: &mut watch::Receiver<Tail>,
        batch_start: u64,
        shared: &Shared,
    ) -> Result<(), End> {
        while !self.pending.is_empty() {
            // Made when the write finds the socket full: one that goes through at once reads
            // no clock and arms no timer.
            let mut stall: Option<Box<Stall>> = None;
            let n = loop {
                // The I/O vector is built inside the poll, on the stack: an array held across
                // an await would live in every listener's task state.
                let write = std::future::poll_fn(|cx| {
                    let mut iov = [IoSlice::new(&[]); MAX_IOV];
                    let count = io_slices(&self.pending, &mut iov);
                    match self.stream.poll_send_vectored(cx, &iov[..count]) {
                        Poll::Ready(r) => Poll::Ready(Ok(r)),
                        Poll::Pending => stall
                            .get_or_insert_with(|| Box::new(Stall::new()))
                            .poll(cx, &self.mount, shared)
                            .map(Err),
                    }
                });
                tokio::select! {
                    biased;
                    r = write => match r {
                        Ok(Ok(0) | Err(_)) => return Err(End::Gone),
                        Ok(Ok(n)) => break n,
                        Err(end) => return Err(end),
                    },
                    r = rx.changed() => {
                        // The wake-up may carry an order other than a kill (a move): looked
                        // at once the write is done.
                        self.woken_in_flush = true;
                        if self.client.kill_pending() {
                            return Err(End::Killed);
                        }
                        let lagged = self.mount.fanout.is_lagged(batch_start);
                        if r.is_err() || (lagged && self.mount.settings().lag_policy == LagPolicy::Disconnect) {
                            return Err(if lagged { End::Lagged } else { End::Closed });
                        }
                        if self.mount.is_closed()
                            && let Some(s) = stall.as_mut()
                        {
                            // The drain's end may come before the send timeout's.
                            s.rearm();
                        }
                    }
                }
            };
            self.sent += n as u64;
            self.mount.bytes_sent.add(n as u64);
            consume(&mut self.pending, n);
        }
        if self.pending.capacity() > PENDING_KEEP {
            self.pending.shrink_to(PENDING_KEEP / 2);
        }
        Ok(())
    }
}

/// A write that found the socket full, and when it is given up: the server's
/// `send-timeout-secs` after that (the client reads nothing: a player paused for good, a
/// client gone without a word that still answers the kernel's window probes), or the end of
/// the mount's drain once it closed (a listener must not keep a closed mount, its queue and
/// its slot, for as long as it takes to read). Boxed, and made only when a write blocks: it
/// costs a listener that keeps up nothing, not even a clock read.
struct Stall {
    /// When the write found the socket full.
    since: Instant,
    /// Whether `timer` is decided (again after the mount closed: see [`Stall::rearm`]).
    armed: bool,
    /// The next deadline, and whether it is the drain's; `None`: no limit applies.
    timer: Option<(Pin<Box<tokio::time::Sleep>>, bool)>,
}

impl Stall {
    fn new() -> Stall {
        Stall {
            since: Instant::now(),
            armed: false,
            timer: None,
        }
    }

    /// The mount closed: its drain may end first.
    fn rearm(&mut self) {
        self.armed = false;
    }

    /// Ready with the listener's end once the write is given up.
    fn poll(&mut self, cx: &mut Context<'_>, mount: &Mount, shared: &Shared) -> Poll<End> {
        if !self.armed {
            self.armed = true;
            let timeout = shared.config().server.send_timeout_secs;
            let stalled = (timeout > 0).then(|| (self.since + Duration::from_secs(timeout), false));
            let drained = mount.drain_deadline().map(|at| (at, true));
            self.timer = [stalled, drained]
                .into_iter()
                .flatten()
                .min_by_key(|(at, _)| *at)
                .map(|(at, drain)| (Box::pin(tokio::time::sleep_until(at.into())), drain));
        }
        match &mut self.timer {
            Some((sleep, drain)) => {
                std::task::ready!(sleep.as_mut().poll(cx));
                Poll::Ready(if *drain { End::Undrained } else { End::Stalled })
            }
            None => Poll::Pending,
        }
    }
}

impl Icy {
    /// Queue `bytes` with ICY metadata blocks spliced in after every `interval` stream bytes
    /// (counted across chunks): the title's block when it changed since the last one sent (the
    /// first block always carries it), else a one-byte empty block. Only slices of `bytes` and
    /// shared blocks are queued, never copies.
    fn splice(&mut self, bytes: &Bytes, title: impl Fn() -> Arc<Title>, out: &mut VecDeque<Bytes>) {
        let mut b = bytes.clone();
        while b.len() >= self.until_meta {
            let head = b.split_to(self.until_meta);
            if !head.is_empty() {
                out.push_back(head);
            }
            let title = title();
            if title.version != self.sent_version {
                self.sent_version = title.version;
                out.push_back(title.icy_block.clone());
            } else {
                out.push_back(NO_META.clone());
            }
            self.until_meta = self.interval;
        }
        self.until_meta -= b.len();
        if !b.is_empty() {
            out.push_back(b);
        }
    }
}

/// Queue one fan-out chunk for a listener (its session's parts, borrowed apart so that the
/// mount needs no reference count of its own): its headers first if they changed, ICY blocks
/// where due.
fn queue_chunk(
    pending: &mut VecDeque<Bytes>,
    icy: &mut Option<Icy>,
    fill: &mut Option<Box<Fill>>,
    sent_headers: &mut Option<Arc<StreamHeaders>>,
    mount: &Mount,
    bytes: &Bytes,
    headers: &Arc<StreamHeaders>,
) {
    let changed = !sent_headers
        .as_ref()
        .is_some_and(|h| Arc::ptr_eq(h, headers));
    if changed {
        if !headers.bytes.is_empty() {
            pending.push_back(headers.bytes.clone());
            if let Some(f) = fill.as_mut() {
                f.queued(headers.bytes.len(), false);
            }
        }
        *sent_headers = Some(headers.clone());
    }
    if let Some(f) = fill.as_mut() {
        f.queued(bytes.len(), true);
    }
    match icy.as_mut() {
        None => pending.push_back(bytes.clone()),
        Some(icy) => icy.splice(bytes, || mount.title(), pending),
    }
}

/// Point `iov` at the first buffers of `pending`; how many.
fn io_slices<'a>(pending: &'a VecDeque<Bytes>, iov: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
    let mut count = 0;
    for (slot, b) in iov.iter_mut().zip(pending.iter()) {
        *slot = IoSlice::new(b);
        count += 1;
    }
    count
}

/// A write took `n` bytes: drop them from the front of `pending` (whole items, then the start
/// of the next one, sliced without a copy).
fn consume(pending: &mut VecDeque<Bytes>, n: usize) {
    let mut left = n;
    while left > 0 {
        let Some(front) = pending.front_mut() else {
            break;
        };
        if front.len() <= left {
            left -= front.len();
            pending.pop_front();
        } else {
            front.advance(left);
            left = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::mount::icy_block;

    /// Split what a listener was sent back into stream bytes and metadata blocks, checking
    /// that a block comes after exactly every `interval` stream bytes.
    fn unsplice(wire: &[u8], interval: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let (mut audio, mut blocks) = (Vec::new(), Vec::new());
        let mut rest = wire;
        loop {
            let take = interval.min(rest.len());
            audio.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if rest.is_empty() {
                return (audio, blocks);
            }
            let len = rest[0] as usize * 16;
            blocks.push(rest[1..1 + len].to_vec());
            rest = &rest[1 + len..];
        }
    }

    /// A listener's whole state is this struct, boxed while it is parked, and its task's
    /// futures while it has a task: every byte is paid per listener, 15,000 times, after
    /// rounding to the allocator's size class (and to 128 bytes for a task: 16 bytes more once
    /// cost 290 per listener). Grow it knowingly: 288 until a URL's grant took a word for its
    /// time limit and remove (boxed, [`Admission`]), 264 once the peer's address was read
    /// from the client it duplicated.
    #[test]
    fn a_session_stays_small() {
        assert!(
            std::mem::size_of::<Session>() <= 264,
            "{}",
            std::mem::size_of::<Session>()
        );
    }

    #[test]
    fn icy_blocks_land_every_interval_whatever_the_chunks() {
        let stream: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let title = Arc::new(Title::new("First".into(), 1));
        let second = Arc::new(Title::new("Second".into(), 2));
        // Chunk sizes that straddle, hit and skip interval boundaries.
        for sizes in [
            vec![1],
            vec![7, 300, 1],
            vec![16],
            vec![999, 17],
            vec![2500],
        ] {
            let mut icy = Icy {
                interval: 16 * 50,
                until_meta: 16 * 50,
                sent_version: u64::MAX,
            };
            let mut out = VecDeque::new();
            let (mut at, mut k) = (0, 0);
            while at < stream.len() {
                let n = sizes[k % sizes.len()].min(stream.len() - at);
                let now = if at < 5000 { &title } else { &second };
                icy.splice(
                    &Bytes::copy_from_slice(&stream[at..at + n]),
                    || now.clone(),
                    &mut out,
                );
                at += n;
                k += 1;
            }
            let wire: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
            let (audio, blocks) = unsplice(&wire, 800);
            assert_eq!(audio, stream, "{sizes:?}: stream bytes intact and in order");
            assert_eq!(blocks.len(), stream.len() / 800, "{sizes:?}");
            assert_eq!(
                blocks[0],
                icy_block("First")[1..].to_vec(),
                "{sizes:?}: first block"
            );
            let changed: Vec<usize> = (0..blocks.len())
                .filter(|&i| !blocks[i].is_empty())
                .collect();
            // The title once at the start and once when it changed, empty blocks between.
            assert_eq!(changed.len(), 2, "{sizes:?}: {changed:?}");
            assert_eq!(blocks[changed[1]], icy_block("Second")[1..].to_vec());
        }
    }

    #[test]
    fn partial_writes_consume_exactly_what_was_written() {
        let items = || -> VecDeque<Bytes> {
            ["abc", "", "defgh", "i"]
                .into_iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let all = b"abcdefghi";
        // Every way of writing the nine bytes in two writes leaves the right rest.
        for n in 0..=all.len() {
            let mut p = items();
            consume(&mut p, n);
            let rest: Vec<u8> = p.iter().flat_map(|b| b.iter().copied()).collect();
            assert_eq!(rest, all[n..], "after {n} bytes");
            consume(&mut p, all.len() - n);
            assert!(
                p.iter().all(|b| b.is_empty()),
                "all written after {n} + rest"
            );
        }
        // Items are sliced, not copied.
        let mut p = items();
        let ptr = p[2].as_ptr();
        consume(&mut p, 4);
        assert_eq!(p.front().map(|b| b.as_ptr()), Some(ptr.wrapping_add(1)));
    }

    #[test]
    fn padding_completes_the_browser_block_and_id3_tags_say_their_size() {
        let mut f = Fill::new(Padding::Zeros);
        f.active = true;
        f.queued(3352, false);
        assert_eq!(f.deadline(), None, "headers alone are not padded");
        f.queued(1764, true);
        assert!(
            f.deadline().is_some(),
            "stream bytes wait in an incomplete block"
        );
        let pad = f.padding();
        assert_eq!(pad.len() as u64, BROWSER_BLOCK - 3352 - 1764);
        assert_eq!(f.body % BROWSER_BLOCK, 0);
        assert_eq!(f.deadline(), None);
        // A block completed by the stream itself needs nothing.
        f.queued(BROWSER_BLOCK as usize, true);
        assert_eq!(f.deadline(), None);
        assert_eq!(f.wait, f.later_wait);

        let tag = id3_padding(1000);
        assert_eq!(tag.len(), 1000);
        assert_eq!(&tag[..5], b"ID3\x04\x00");
        let size = tag[6..10]
            .iter()
            .fold(0usize, |a, &b| (a << 7) | b as usize);
        assert_eq!(size + 10, 1000, "synchsafe size of the tag's body");
    }
}
