//! The state every connection shares: configuration, credentials, the mount registry, what
//! the server records about itself, and the shutdown signal.
//!
//! **Invariant:** this module is data (and the helpers every handler shares: credential checks
//! and turning a request away); it calls no handler. Handlers get an `Arc<Shared>` (or a `&Shared`) from the accept loop; nothing
//! below the routing layer imports a handler.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::limits::{Failed, Logins, PerIp};
use crate::listener_auth::Gates;
use crate::logging::Limiter;
use crate::stream::mount::Registry;
use crate::stream::slides::SlideStore;
use crate::sync::Mutex;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::edges::EdgeBoard;
use crate::telemetry::events::EventFeed;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::relays::RelayBoard;
use crate::wire::auth;
use crate::wire::conn::Connection;
use crate::wire::http::{Request, Response};

/// How long a host that listed the mounts as the relay user is taken for a relay.
const RELAY_HOST_TTL: Duration = Duration::from_secs(600);
/// Most relay hosts remembered.
pub(crate) const RELAY_HOSTS_MAX: usize = 1024;

/// Credentials in force (configured or generated at start).
#[derive(Clone)]
pub struct Credentials {
    /// The password of user `source` on every mount without its own.
    pub source_password: String,
    /// The admin user name.
    pub admin_user: String,
    /// The admin password.
    pub admin_password: String,
}

/// Without the passwords.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("source_password", &"***")
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"***")
            .finish()
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration in force: swapped whole by a reload (see `reload.rs`); read with
    /// [`Shared::config`].
    pub(crate) config: ArcSwap<Config>,
    /// The credentials in force, swapped whole by a reload: read with [`Shared::credentials`].
    pub(crate) credentials: ArcSwap<Credentials>,
    /// The admin page's token (see [`auth::Token`]), made at start.
    pub(crate) admin_token: auth::Token,
    pub(crate) registry: Arc<Registry>,
    pub(crate) access_log: AccessLog,
    pub(crate) shutdown: CancellationToken,
    pub(crate) started: SystemTime,
    /// The first bound address, for `listenurl`.
    pub(crate) public_port: u16,
    /// Connections accepted.
    pub(crate) connections: AtomicU64,
    /// Listener requests answered with a stream.
    pub(crate) listener_connections: AtomicU64,
    /// Sources accepted.
    pub(crate) source_connections: AtomicU64,
    /// Relay connections made to upstreams (each successful pull).
    pub(crate) relay_connections: AtomicU64,
    pub(crate) sources: std::sync::atomic::AtomicUsize,
    pub(crate) metrics: Metrics,
    /// What every relay and push is doing.
    pub(crate) relays: Arc<RelayBoard>,
    /// The edges that announced themselves, for redirects.
    pub(crate) edges: Arc<EdgeBoard>,
    /// Hosts that listed the mounts as the relay user lately, and when (see
    /// [`Shared::relay_host`]).
    pub(crate) relay_hosts: Mutex<HashMap<IpAddr, Instant>>,
    /// On-demand relays by local mount: a listener's request wakes the relay (swapped whole
    /// when a reload changes the relays).
    pub(crate) on_demand: ArcSwap<HashMap<String, Arc<tokio::sync::Notify>>>,
    pub(crate) events: EventFeed,
    /// The log lines peers can make the server write over and over, a few at a time.
    pub(crate) logs: Limiter,
    /// Every connection and listener task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// Connections per address whose request head is not complete yet.
    pub(crate) pending_per_ip: Arc<PerIp>,
    /// Listeners per client address.
    pub(crate) listeners_per_ip: Arc<PerIp>,
    /// Failed logins per client address, and the addresses refused for a while.
    pub(crate) logins: Logins,
    /// The mounts whose listeners log in, and how (swapped whole by a reload).
    pub(crate) listener_auth: ArcSwap<Gates>,
    /// Every mount's slides (#15).
    pub(crate) slides: SlideStore,
    /// Slide uploads whose body is being read or stored: each holds up to `max-slide-bytes`
    /// in memory, so they are few ([`SLIDE_UPLOADS`]).
    pub(crate) slide_uploads: tokio::sync::Semaphore,
    /// Every mount's slide deck (#15).
    pub(crate) decks: crate::stream::decks::DeckStore,
    /// Deck uploads whose PDF is in memory ([`DECK_UPLOADS`], each up to `max-deck-bytes`).
    pub(crate) deck_uploads: tokio::sync::Semaphore,
    /// Turns to render a deck ([`crate::stream::decks::RENDERS`]).
    pub(crate) deck_renders: tokio::sync::Semaphore,
}

/// Deck uploads in progress at once, whatever the mounts.
pub(crate) const DECK_UPLOADS: usize = 2;

/// Slide uploads in progress at once, whatever the mounts.
pub(crate) const SLIDE_UPLOADS: usize = 8;

/// What a request's credentials are worth, checked through [`Shared::login`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Login {
    /// The credentials match.
    Granted,
    /// No credentials at all (a browser's or libshout's first request): not a failure.
    Missing,
    /// Wrong credentials: counted towards a ban.
    Wrong,
    /// The address is refused for this much longer (too many wrong ones): nothing checked.
    Banned(std::time::Duration),
}

impl Shared {
    /// The configuration in force now: a snapshot that a reload does not change (it replaces
    /// it). Hold it for as long as one decision needs the same configuration.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The credentials in force now (a snapshot, as [`Shared::config`]).
    pub(crate) fn credentials(&self) -> Arc<Credentials> {
        self.credentials.load_full()
    }

    /// The one way a login is checked: a banned address is refused before its credentials
    /// are looked at (so a ban is no oracle), `check` decides otherwise, and wrong
    /// credentials count towards a ban (logged, once, when it starts: the line fail2ban can
    /// match).
    pub(crate) fn login(
        &self,
        client: IpAddr,
        req: &Request,
        check: impl FnOnce() -> bool,
    ) -> Login {
        if let Some(left) = self.logins.banned(client) {
            return Login::Banned(left);
        }
        self.judge(client, req, check())
    }

    /// [`Shared::login`] for a check that must be awaited (a listener's, which may take a
    /// bcrypt or a request to a URL): the same order and counting; `Err` when the check could
    /// not decide (nothing counted).
    pub(crate) async fn login_awaited<E>(
        &self,
        client: IpAddr,
        req: &Request,
        check: impl std::future::Future<Output = Result<bool, E>>,
    ) -> Result<Login, E> {
        if let Some(left) = self.logins.banned(client) {
            return Ok(Login::Banned(left));
        }
        let granted = check.await?;
        Ok(self.judge(client, req, granted))
    }

    /// What a checked login is worth; wrong credentials are counted.
    fn judge(&self, client: IpAddr, req: &Request, granted: bool) -> Login {
        if granted {
            return Login::Granted;
        }
        if req.header("authorization").is_none() {
            return Login::Missing;
        }
        if let Failed::Banned { failures } = self.logins.failed(client) {
            tracing::warn!(
                client = %client,
                failures,
                window_secs = self.logins.window().as_secs(),
                ban_secs = self.logins.ban().as_secs(),
                "too many failed logins: address refused for a while"
            );
        }
        Login::Wrong
    }

    /// The answer to a banned address: `429` with `Retry-After`.
    pub(crate) fn banned_response(left: std::time::Duration) -> Response {
        let secs = left.as_secs().max(1);
        Response::text(
            429,
            &format!("Too many failed logins from this address: try again in {secs} s"),
        )
        .with_header("Retry-After", secs.to_string())
    }

    /// Whether the request carries the admin credentials.
    pub(crate) fn is_admin(&self, req: &Request) -> bool {
        let credentials = self.credentials.load();
        req.header("authorization")
            .and_then(auth::parse_basic)
            .is_some_and(|g| {
                auth::credentials_match(&g, &credentials.admin_user, &credentials.admin_password)
            })
    }

    /// A host listed the mounts as the relay user: for a while, its server-like requests for a
    /// mount count as relays (icecast2's slaves send no credentials with those). Bounded:
    /// [`RELAY_HOSTS_MAX`] hosts, the oldest forgotten first.
    pub(crate) fn relay_host(&self, ip: IpAddr) {
        let mut hosts = self.relay_hosts.lock();
        hosts.retain(|_, seen| seen.elapsed() < RELAY_HOST_TTL);
        if hosts.len() >= RELAY_HOSTS_MAX
            && let Some(oldest) = hosts.iter().min_by_key(|(_, t)| **t).map(|(ip, _)| *ip)
        {
            hosts.remove(&oldest);
        }
        hosts.insert(ip, Instant::now());
    }

    /// Whether a listener request comes from another server relaying the mount: the relay
    /// user's (or an admin's) credentials, or a server's user agent (icecast2, Agora) from a
    /// host that listed the mounts as the relay user lately.
    pub(crate) fn is_relay_listener(&self, req: &Request, peer: IpAddr) -> bool {
        if self.is_relay(req) || self.is_admin(req) {
            return true;
        }
        let agent = req.header("user-agent").unwrap_or("");
        (agent.starts_with("Icecast") || agent.starts_with("agora/"))
            && self
                .relay_hosts
                .lock()
                .get(&peer)
                .is_some_and(|seen| seen.elapsed() < RELAY_HOST_TTL)
    }

    /// Whether the request carries the relay user's credentials (`[auth] relay-password`),
    /// which list the mounts and mark a listener as a relay, as Icecast's `<relay-user>`.
    pub(crate) fn is_relay(&self, req: &Request) -> bool {
        let config = self.config.load();
        let Some(pass) = config.auth.relay_password.as_deref() else {
            return false;
        };
        let user = config.auth.relay_user.as_deref().unwrap_or("relay");
        req.header("authorization")
            .and_then(auth::parse_basic)
            .is_some_and(|g| auth::credentials_match(&g, user, pass))
    }

    /// Refuse a request with `resp` (HTTP/1.0, as Icecast answers sources and listeners), close
    /// the connection and log it: the one way a source or listener is turned away.
    pub(crate) async fn refuse(
        &self,
        stream: &mut Connection,
        peer: SocketAddr,
        req: &Request,
        resp: Response,
    ) {
        let _ = stream.write_all(&resp.encode("HTTP/1.0", false)).await;
        let _ = stream.shutdown().await;
        self.access_log.log(peer, req, resp.status, 0);
    }
}
