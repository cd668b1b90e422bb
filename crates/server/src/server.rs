//! The accept loop and request dispatch.
//!
//! One task per connection: read a bounded head within the header timeout, parse it, route it
//! (source, listener, status, admin), and for short requests loop on keep-alive. Accept errors
//! (EMFILE during a storm) back off briefly instead of spinning. Shutdown: a cancellation token
//! stops accepting and tells every task; a task tracker lets [`Server::run`] wait for them.
//!
//! **What the kernel holds per connection is bounded.** Left alone, Linux grows a socket's
//! send buffer with its congestion window, up to `net.ipv4.tcp_wmem`'s maximum (4 MB): a
//! listener that stops reading then holds megabytes of kernel memory (2,000 of them pushed a
//! machine past the kernel's TCP memory pressure while Agora's RSS stayed at 30 MB), and it
//! was cut for lag only once those megabytes *and* its `queue-size` were behind it. Every
//! accepted socket gets `TCP_NOTSENT_LOWAT` (`tcp-notsent-lowat`, 16 KiB): the kernel takes a
//! write only while fewer bytes than that wait unsent, and reports the socket writable once
//! fewer than half do. Bytes in flight are not limited, so the congestion window is not
//! capped: a fast listener far away gets a high bitrate as before, where a small fixed
//! `SO_SNDBUF` would cap every connection at `sndbuf / RTT` (64 KiB at 200 ms: 2.6 Mbit/s, too
//! little for HD video). A stalled listener (zero window: what was in flight has been
//! acknowledged into the client's own buffer) holds about the low-water mark plus a segment:
//! 17-22 KiB measured with `ss -tm`, against all that was sent to it before (~640 KiB in the
//! test, all it was sent; megabytes in a longer stall). What does not fit stays in the
//! listener's queue, where the lag policy sees it: a listener is cut about `queue-size` behind
//! (plus its batch of at most 64 KiB and the kernel's few KiB), not megabytes later (a slow
//! reader with a 256 KiB queue: cut 335 KiB behind, 3 MB before; `crates/cli/tests/stalls.rs`).
//! The kernel's exact count (`SIOCOUTQ`, `TCP_INFO`) would need `unsafe` (neither `nix` nor
//! `socket2` wraps it); with this bound it is not needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::wire::conn::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::control::{edges, events};
use crate::limits::{IpSlot, Logins, PerIp};
use crate::logging::{About, Kind, Limiter, shown};
use crate::reload::{Links, Reloader};
use crate::routing::route;
use crate::state::{Credentials, Shared};
use crate::stream::decks::DeckStore;
use crate::stream::mount::Registry;
use crate::stream::slides::SlideStore;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::edges::EdgeBoard;
use crate::telemetry::events::EventFeed;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::relays::RelayBoard;
use crate::tls::{TlsError, TlsSettings};
use crate::watchdog;
use crate::wire::http::{self, HeadError, Request, Response};

/// Why the server could not start: the address, file or certificate, and the system's
/// reason, said once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {why}{}", listen_hint(why, *addr))]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said (in the message, not a `source`: said once).
        why: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open the access log {path}: {why}")]
    AccessLog {
        /// The file.
        path: String,
        /// What the system said.
        why: std::io::Error,
    },
    /// A TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The data folder (`data-dir`) cannot be made or read.
    #[error("cannot use the data folder {path}: {why}")]
    DataDir {
        /// The folder.
        path: String,
        /// What the system said.
        why: std::io::Error,
    },
}

/// What an operator can do about a bind error.
fn listen_hint(e: &std::io::Error, addr: SocketAddr) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program listens there, perhaps another agora or icecast2: stop it or choose another port)".into()
        }
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE, e.g. AmbientCapabilities=CAP_NET_BIND_SERVICE in a systemd unit)".into()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no network interface of this machine has that address)".into()
        }
        _ => String::new(),
    }
}

/// A bound, not yet running, server.
#[derive(Debug)]
pub struct Server {
    /// Each socket, with the TLS settings of its group if it speaks HTTPS.
    listeners: Vec<(TcpListener, Option<Arc<TlsSettings>>)>,
    /// Each TLS group's configured addresses, with its settings (for reloads).
    tls_groups: Vec<(Vec<SocketAddr>, Arc<TlsSettings>)>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    /// The relays, pushes and `[master]` running (started by [`Server::run`], changed by
    /// reloads).
    links: Arc<Links>,
}

impl Server {
    /// Bind every listen address (with a large backlog) and prepare shared state.
    pub async fn bind(config: Config, credentials: Credentials) -> Result<Server, StartError> {
        let mut listeners = Vec::new();
        let mut tls_groups = Vec::new();
        let bind = |addr: SocketAddr| {
            bind_with_backlog(addr, config.server.backlog)
                .map_err(|why| StartError::Listen { addr, why })
        };
        for addr in &config.server.listen {
            listeners.push((bind(*addr)?, None));
        }
        for t in &config.server.tls {
            let tls = Arc::new(TlsSettings::load(&t.certificate, &t.key)?);
            for addr in &t.listen {
                listeners.push((bind(*addr)?, Some(tls.clone())));
            }
            tls_groups.push((t.listen.clone(), tls));
        }
        let public_port = listeners
            .first()
            .and_then(|(l, _)| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(8000);
        let tracker = TaskTracker::new();
        let registry = Arc::new(
            Registry::with_tasks(tracker.clone())
                .with_max_mounts(config.server.max_mounts)
                .with_fallbacks(config.fallbacks()),
        );
        let started = SystemTime::now();
        let relays = Arc::new(RelayBoard::default());
        let edges = Arc::new(EdgeBoard::default());
        let metrics = Metrics::new(registry.clone(), relays.clone(), edges.clone(), started);
        let access_log = AccessLog::open(
            config.server.access_log.as_deref(),
            metrics.requests.clone(),
        )
        .map_err(|why| StartError::AccessLog {
            path: config.server.access_log.clone().unwrap_or_default(),
            why,
        })?;
        let config_limits = (
            config.server.max_pending_per_ip,
            config.server.max_listeners_per_ip,
            config.server.max_login_failures,
            config.server.login_window_secs,
            config.server.login_ban_secs,
        );
        let listener_auth = crate::listener_auth::Gates::new(&config);
        let (slides, decks) = match config.server.data_dir.clone() {
            Some(dir) => {
                let (slides_total, decks_total) = (
                    config.server.max_slide_bytes_total,
                    config.server.max_deck_bytes_total,
                );
                let path = dir.display().to_string();
                tokio::task::spawn_blocking(move || {
                    Ok((
                        SlideStore::open(&dir, slides_total)?,
                        DeckStore::open(&dir, decks_total)?,
                    ))
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|why| StartError::DataDir { path, why })?
            }
            None => {
                tracing::info!(
                    "no data-dir: slides and decks are kept in memory only, and a restart loses them"
                );
                (SlideStore::in_memory(), DeckStore::in_memory())
            }
        };
        Ok(Server {
            listeners,
            tls_groups,
            links: Arc::default(),
            shared: Arc::new(Shared {
                config: ArcSwap::from_pointee(config),
                credentials: ArcSwap::from_pointee(credentials),
                admin_token: crate::wire::auth::Token::generate(),
                registry,
                access_log,
                shutdown: CancellationToken::new(),
                started,
                public_port,
                connections: AtomicU64::new(0),
                listener_connections: AtomicU64::new(0),
                source_connections: AtomicU64::new(0),
                relay_connections: AtomicU64::new(0),
                sources: std::sync::atomic::AtomicUsize::new(0),
                metrics,
                relays,
                edges,
                relay_hosts: Default::default(),
                on_demand: Default::default(),
                events: EventFeed::default(),
                logs: Limiter::default(),
                tracker: tracker.clone(),
                pending_per_ip: PerIp::new(config_limits.0),
                listeners_per_ip: PerIp::new(config_limits.1),
                logins: Logins::new(
                    config_limits.2,
                    Duration::from_secs(config_limits.3),
                    Duration::from_secs(config_limits.4),
                ),
                listener_auth: ArcSwap::from_pointee(listener_auth),
                slides,
                slide_uploads: tokio::sync::Semaphore::new(crate::state::SLIDE_UPLOADS),
                decks,
                deck_uploads: tokio::sync::Semaphore::new(crate::state::DECK_UPLOADS),
                deck_renders: tokio::sync::Semaphore::new(crate::stream::decks::RENDERS),
            }),
            tracker,
        })
    }

    /// The plain HTTP addresses actually bound (a `:0` port resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(false)
    }

    /// The HTTPS addresses actually bound.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(true)
    }

    fn addrs(&self, tls: bool) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, t)| t.is_some() == tls)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// What reloads the server's configuration and certificates while it runs (on SIGHUP,
    /// say).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
            tls: self.tls_groups.clone(),
            links: self.links.clone(),
            busy: Arc::default(),
        }
    }

    /// A token that, once cancelled, makes [`Server::run`] stop accepting and wind down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Serve until the shutdown token is cancelled, then close every mount and wait up to
    /// `shutdown-grace-secs` for connections to finish.
    pub async fn run(self) {
        let Server {
            listeners,
            shared,
            tracker,
            links,
            ..
        } = self;
        let _watchdog = match watchdog::start(
            &tokio::runtime::Handle::current(),
            watchdog::BEAT,
            watchdog::LIMIT,
            shared.shutdown.clone(),
            watchdog::LogStall {
                counter: shared.metrics.runtime_stalls.clone(),
            },
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("no runtime watchdog (its thread did not start): {e}");
                None
            }
        };
        tracker.spawn(sweep_logs(shared.clone()));
        for (l, tls) in listeners {
            tracker.spawn(accept_loop(l, tls, shared.clone(), tracker.clone()));
        }
        tracker.spawn(events::hub(shared.clone()));
        tracker.spawn(edges::probe(shared.clone()));
        // Relays, pushes, `[master]` and loop files: started from the configuration, as a
        // reload would.
        links.update(&shared.config(), &shared);
        shared.shutdown.cancelled().await;
        tracing::info!("shutting down: closing mounts");
        shared.registry.close_all();
        tracker.close();
        let grace = Duration::from_secs(shared.config().server.shutdown_grace_secs);
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                remaining = tracker.len(),
                "connections still open after the shutdown grace; exiting anyway"
            );
        }
    }
}

fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    // The kernel caps this at net.core.somaxconn; ask for plenty (Icecast asks for 5).
    sock.listen(backlog.min(i32::MAX as u32) as i32)?;
    TcpListener::from_std(sock.into())
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<TlsSettings>>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                shared.connections.fetch_add(1, Ordering::Relaxed);
                shared.metrics.connections.inc();
                // One address's connections still sending their head are capped (a
                // slowloris opens many and sends slowly): beyond the cap, closed unheard.
                let pending = match pending_slot(&shared, peer) {
                    Ok(slot) => slot,
                    Err(()) => {
                        shared.metrics.refused_pending.inc();
                        tracing::debug!(%peer, "connection closed: too many unfinished requests from this address");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // Keepalive probes find a peer that vanished without a word (a laptop's lid
                // closed, a NAT that forgot the flow): its connection ends instead of holding a
                // listener slot for good.
                let sock = socket2::SockRef::from(&stream);
                let _ = sock.set_tcp_keepalive(&keepalive());
                // A peer that acknowledges nothing for this long is gone, even while data
                // waits for it (keepalive probes only an idle connection). A peer that is
                // there but reads nothing still acknowledges the kernel's window probes:
                // the send timeout of listeners and event streams ends those.
                let _ = sock.set_tcp_user_timeout(Some(USER_TIMEOUT));
                let lowat = shared.config().server.tcp_notsent_lowat;
                if lowat > 0 {
                    let _ = sock.set_tcp_notsent_lowat(lowat);
                }
                match &tls {
                    None => {
                        tracker.spawn(handle_connection(
                            stream.into(),
                            peer,
                            shared.clone(),
                            pending,
                        ));
                    }
                    Some(tls) => {
                        tracker.spawn(handshake(
                            stream,
                            tls.current(),
                            peer,
                            shared.clone(),
                            pending,
                        ));
                    }
                }
            }
            Err(e) => {
                // EMFILE/ENFILE in a connect storm: wait for descriptors to free up.
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// `TCP_USER_TIMEOUT` of every accepted connection: how long sent data may stay
/// unacknowledged (and keepalive probes unanswered) before the kernel ends the connection.
const USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Summarise, every second, the rate-limited log lines whose window has passed (a flood that
/// stopped is summarised too); at shutdown, every window at once.
async fn sweep_logs(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => shared.logs.sweep(),
            _ = shared.shutdown.cancelled() => {
                shared.logs.flush();
                return;
            }
        }
    }
}

/// TCP keepalive on every accepted connection: the first probe after 60 s without traffic,
/// then every 10 s; after 6 unanswered the kernel ends the connection (~2 minutes).
fn keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6)
}

/// Outcome of reading one request head.
enum HeadRead {
    Head(Request, BytesMut),
    Closed,
}

/// Read one request head within the header timeout. Bytes after the head (a source's first
/// stream bytes) are returned with it.
async fn read_head(
    stream: &mut Connection,
    buf: &mut BytesMut,
    shared: &Shared,
) -> Result<HeadRead, (u16, String)> {
    let limit = shared.config().server.max_request_head;
    let timeout = Duration::from_secs(shared.config().server.header_timeout_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    let too_large = || {
        let e = HeadError::TooLarge { limit };
        (e.status(), e.to_string())
    };
    loop {
        if let Some(n) = http::head_len(buf) {
            if n > limit {
                return Err(too_large());
            }
            let head = buf.split_to(n);
            let rest = buf.split();
            return match http::parse_head(&head) {
                Ok(mut req) => {
                    req.received = SystemTime::now();
                    Ok(HeadRead::Head(req, rest))
                }
                // The client gets the reason alone, without the error's prefix.
                Err(HeadError::Malformed(m)) => Err((400, m)),
                Err(e) => Err((e.status(), e.to_string())),
            };
        }
        if buf.len() > limit {
            return Err(too_large());
        }
        buf.reserve(2048);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read_buf(buf)) => r,
            _ = shared.shutdown.cancelled() => return Ok(HeadRead::Closed),
        };
        match read {
            Err(_) => {
                return if buf.is_empty() {
                    Ok(HeadRead::Closed)
                } else {
                    Err((408, "request head not completed in time".into()))
                };
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(HeadRead::Closed),
            Ok(Ok(_)) => {}
        }
    }
}

/// A TLS handshake within the header timeout (a client that stalls in it costs no more than
/// one that stalls in its head), then the connection as any other.
async fn handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    pending: Option<IpSlot>,
) {
    let timeout = Duration::from_secs(shared.config().server.header_timeout_secs);
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let tls = tokio::select! {
        r = tokio::time::timeout(timeout, accept) => r,
        _ = shared.shutdown.cancelled() => return,
    };
    match tls {
        Ok(Ok(tls)) => handle_connection(tls.into(), peer, shared, pending).await,
        // Scanners and clients that do not trust the certificate fail here all day long:
        // counted, and logged at debug level only.
        Ok(Err(e)) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "TLS handshake not completed in time");
        }
    }
}

/// A slot of `peer`'s connections still sending their head: `Ok(None)` for a trusted proxy
/// (its clients are many) or without a limit, `Err` when the address has its fill.
fn pending_slot(shared: &Shared, peer: SocketAddr) -> Result<Option<IpSlot>, ()> {
    if shared.config().server.trusted_proxies.contains(&peer.ip()) {
        return Ok(None);
    }
    shared.pending_per_ip.acquire(peer.ip()).map(Some).ok_or(())
}

async fn handle_connection(
    mut stream: Connection,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut pending: Option<IpSlot>,
) {
    let mut buf = BytesMut::with_capacity(2048);
    let mut first = true;
    loop {
        // Waiting for a head (the first, or the next on a kept connection) holds a slot.
        if !std::mem::take(&mut first) {
            match pending_slot(&shared, peer) {
                Ok(slot) => pending = slot,
                Err(()) => {
                    shared.metrics.refused_pending.inc();
                    return;
                }
            }
        }
        let head = read_head(&mut stream, &mut buf, &shared).await;
        drop(pending.take());
        let (mut req, rest) = match head {
            Ok(HeadRead::Head(req, rest)) => (req, rest),
            Ok(HeadRead::Closed) => return,
            Err((code, why)) => {
                if shared.logs.admit(Kind::BadRequest, About::Peer(peer.ip())) {
                    tracing::info!(%peer, code, reason = %why, "bad request");
                }
                let resp = Response::text(code, &why);
                let _ = stream.write_all(&resp.encode("HTTP/1.0", false)).await;
                shared
                    .access_log
                    .log_raw(peer, "-", code, resp.body.len() as u64, "-", "-");
                return;
            }
        };
        // Behind a trusted reverse proxy, the client is the one it names.
        let trusted = &shared.config().server.trusted_proxies;
        let client = http::forwarded_client(&req, peer, trusted);
        req.secure = stream.is_tls() || http::forwarded_https(&req, peer, trusted);
        let span = tracing::info_span!("conn", peer = %client, method = %req.method, path = %shown(req.path()));
        match route(stream, client, req, rest, &shared)
            .instrument(span)
            .await
        {
            Some((s, leftover)) => {
                stream = s;
                buf = leftover;
            }
            None => return,
        }
    }
}
