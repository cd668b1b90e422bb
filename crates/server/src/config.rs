//! Server configuration: TOML with a safe default for every field, CLI overrides applied by the
//! binary, and [`Config::validate`] that says what is wrong in words.
//!
//! ```toml
//! [server]
//! listen = ["0.0.0.0:8000"]
//! hostname = "stream.example.org"
//!
//! [auth]
//! source-password = "…"      # none set: a random one is generated and printed at start
//! admin-password-file = "/run/credentials/agora.service/admin-password"
//!
//! [mount-defaults]
//! burst-size = 65536
//!
//! [[mount]]
//! path = "/live.ogg"
//! password = "…"
//! max-listeners = 2000
//! stream-name = "Conference live"
//!
//! [[relay]]                   # a mount pulled from another server (Agora or Icecast)
//! upstream = "http://origin.example.org:8000/live.webm"
//! mount = "/live.webm"        # the local mount; the upstream's path when left out
//! ```
//!
//! Every password can be given inline (`source-password`) or as a file (`source-password-file`,
//! read when the configuration is loaded: one line, one trailing newline stripped; relative to
//! the configuration file's directory), never both. The credentials of `[[relay]]`, `[[push]]`
//! and `[master]` go in their URL or, the password, in their `password-file`. Passwords are
//! [`Secret`]s: the `Debug` of every section shows `***` for them and for the password in a URL.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_format::Format;
use agora_format::playout::{MAX_FILE, Playout, PlayoutError};
use bytes::Bytes;

use agora_client::server_url::{password_text, redact};
use serde::Deserialize;

use crate::mount_path::MountPath;
use crate::secret::{Secret, SecretFileError, read_password_file};

/// Icecast's default burst: what a joining listener gets at once so playback starts instantly.
pub(crate) const DEFAULT_BURST_SIZE: usize = 64 * 1024;
/// Icecast's documented default queue: how far behind a listener may fall.
pub(crate) const DEFAULT_QUEUE_SIZE: usize = 512 * 1024;
/// Default of `max-element-size`: room for a 4K keyframe (a few MiB) with a margin.
pub(crate) const DEFAULT_MAX_ELEMENT_SIZE: usize = 8 * 1024 * 1024;
/// The range `max-element-size` may take.
const MAX_ELEMENT_SIZE_RANGE: std::ops::RangeInclusive<usize> = 64 * 1024..=64 * 1024 * 1024;
/// Icecast's default ICY metadata interval.
pub(crate) const DEFAULT_ICY_METAINT: usize = 16000;
/// How long small source writes are gathered before listeners are woken (see
/// `stream/fanout.rs`, `Wake`; BENCHMARKS.md has the measurements behind the value).
pub(crate) const DEFAULT_COALESCE_MS: u64 = 150;
/// How many waiting bytes wake listeners at once (a video page or cluster, a burst of audio).
pub(crate) const DEFAULT_COALESCE_BYTES: usize = 4096;
/// Measured with the floor: from about 12 KB on, a `sendfile` costs less than a copy (a 34 KB
/// WebM cluster ~30% less); below, more (BENCHMARKS.md).
pub(crate) const DEFAULT_SENDFILE_MIN_BYTES: usize = 16 * 1024;
/// A listener whose writes take nothing for this long is gone (a player paused for good, a
/// client that stopped reading): about what Icecast's 512 KiB queue lasts at 128 kbit/s, the
/// time after which Icecast would have cut it for lag.
pub(crate) const DEFAULT_SEND_TIMEOUT_SECS: u64 = 30;
/// How long listeners may take the rest of a closed mount's stream.
pub(crate) const DEFAULT_DRAIN_SECS: u64 = 5;
/// Most fallbacks followed from one mount (Icecast's cascade limit).
pub(crate) const MAX_FALLBACK_DEPTH: usize = 10;
/// Unsent bytes a socket may hold (`TCP_NOTSENT_LOWAT`; see `server.rs`, where it is set, for
/// why this and not a send buffer size).
pub(crate) const DEFAULT_TCP_NOTSENT_LOWAT: u32 = 16 * 1024;
/// Default of `max-slide-bytes`: a 4K slide as a lossless PNG or WebP, with a margin.
pub(crate) const DEFAULT_MAX_SLIDE_BYTES: u64 = 8 * 1024 * 1024;

/// The whole configuration file (`agora serve --config`); every field has a safe default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// `[server]`: sockets, limits, timeouts, logs.
    pub server: ServerSection,
    /// `[auth]`: passwords (random when missing).
    pub auth: AuthSection,
    /// `[mount-defaults]`: settings of every mount not configured otherwise.
    pub mount_defaults: MountSettings,
    /// `[[mount]]`: per-mount overrides.
    #[serde(rename = "mount")]
    pub mounts: Vec<MountConfig>,
    /// `[[relay]]`: mounts pulled from other servers.
    #[serde(rename = "relay")]
    pub relays: Vec<RelayConfig>,
    /// `[master]`: every mount of another server, relayed (Icecast's master/slave relaying).
    pub master: Option<MasterConfig>,
    /// `[[push]]`: local mounts forwarded to other servers as their source.
    #[serde(rename = "push")]
    pub pushes: Vec<PushConfig>,
}

/// One `[[push]]` table: a local mount forwarded to another server as its source client.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PushConfig {
    /// The local mount.
    pub mount: String,
    /// Where it goes: `http(s)://source:PASSWORD@host:port/mount`.
    pub target: String,
    /// The target's password, when its URL has none (read at load into `password`).
    pub(crate) password_file: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) password: Option<Secret>,
}

impl PushConfig {
    /// The target, parsed, with the password of `password-file` (checked by
    /// [`Config::validate`]).
    pub(crate) fn target_url(&self) -> Result<agora_client::ServerUrl, ConfigError> {
        let url = self
            .target
            .parse()
            .map_err(|e: agora_client::UrlError| ConfigError::Invalid(format!("push: {e}")))?;
        Ok(with_password(url, &self.password))
    }
}

/// Without the password of the URL.
impl fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushConfig")
            .field("mount", &self.mount)
            .field("target", &redact(&self.target))
            .field("password_file", &self.password_file)
            .field("password", &self.password)
            .finish()
    }
}

/// `url` with `password` (from a `password-file`) when it has one.
fn with_password(
    mut url: agora_client::ServerUrl,
    password: &Option<Secret>,
) -> agora_client::ServerUrl {
    if let Some(p) = password {
        url.password = Some(p.expose().to_string());
    }
    url
}

/// `[master]`: follow another server, relaying each mount it lists in `/admin/streamlist.txt`
/// under the same name, picking up new mounts and dropping ended ones at every poll.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MasterConfig {
    /// The master: `http(s)://relay:PASSWORD@host:port/`, with its relay user (or an admin).
    pub url: String,
    /// The password of the URL's user, when the URL has none (read at load into `password`).
    pub(crate) password_file: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) password: Option<Secret>,
    /// Seconds between two polls of the master's mount list.
    pub interval_secs: u64,
    /// This server's own address as listeners reach it, `http://host:port`: announced to the
    /// master with each poll (Icecast-KH's `rserver`/`rport`), which then sends listeners
    /// here by redirect. Not announced when absent.
    pub announce: Option<String>,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            url: String::new(),
            password_file: None,
            password: None,
            interval_secs: 10,
            announce: None,
        }
    }
}

/// Without the password of the URL.
impl fmt::Debug for MasterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterConfig")
            .field("url", &redact(&self.url))
            .field("password_file", &self.password_file)
            .field("password", &self.password)
            .field("interval_secs", &self.interval_secs)
            .field("announce", &self.announce.as_deref().map(redact))
            .finish()
    }
}

impl MasterConfig {
    /// The master's URL, parsed (checked by [`Config::validate`]).
    /// The path of the URL is not used: it is the mount list's, whatever is written.
    pub(crate) fn master_url(&self) -> Result<agora_client::ServerUrl, ConfigError> {
        let list = match self.url.find("://") {
            Some(i) => match self.url[i + 3..].find('/') {
                Some(j) => format!("{}/admin/streamlist.txt", &self.url[..i + 3 + j]),
                None => format!("{}/admin/streamlist.txt", self.url),
            },
            None => self.url.clone(),
        };
        let url = list
            .parse()
            .map_err(|e: agora_client::UrlError| ConfigError::Invalid(format!("master: {e}")))?;
        Ok(with_password(url, &self.password))
    }
}

impl MasterConfig {
    /// The announced host and port (checked by [`Config::validate`]).
    pub(crate) fn announce_addr(&self) -> Result<Option<(String, u16)>, ConfigError> {
        let Some(a) = &self.announce else {
            return Ok(None);
        };
        let bad = |why: &str| {
            ConfigError::Invalid(format!(
                "master.announce = {:?}: {why} (expected http://host:port, how listeners reach this server)",
                redact(a)
            ))
        };
        let url = url::Url::parse(a).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad("only http:// can be announced"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
            return Err(bad("no path, query or user may follow the port"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(bad("no host")),
        };
        Ok(Some((host, url.port_or_known_default().unwrap_or(80))))
    }
}

/// One `[[relay]]` table: a mount pulled from another server, as a listener of it, and served
/// here as a mount like any other.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RelayConfig {
    /// The upstream mount: `http(s)://[user:pass@]host:port/mount`.
    pub upstream: String,
    /// The password of the URL's user, when the URL has none (read at load into `password`).
    pub(crate) password_file: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) password: Option<Secret>,
    /// The local mount; the upstream's path when absent.
    pub mount: Option<String>,
    /// Connect upstream only while the mount has a listener (and `linger-secs` after the
    /// last one left), as Icecast's `<on-demand>`.
    pub on_demand: bool,
    /// Seconds an on-demand relay stays connected without a listener.
    pub linger_secs: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            upstream: String::new(),
            password_file: None,
            password: None,
            mount: None,
            on_demand: false,
            linger_secs: 10,
        }
    }
}

/// Without the password of the URL.
impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("upstream", &redact(&self.upstream))
            .field("password_file", &self.password_file)
            .field("password", &self.password)
            .field("mount", &self.mount)
            .field("on_demand", &self.on_demand)
            .field("linger_secs", &self.linger_secs)
            .finish()
    }
}

impl RelayConfig {
    /// The upstream, parsed, with the password of `password-file` (checked by
    /// [`Config::validate`]).
    pub(crate) fn upstream_url(&self) -> Result<agora_client::ServerUrl, ConfigError> {
        let url = self
            .upstream
            .parse()
            .map_err(|e: agora_client::UrlError| ConfigError::Invalid(format!("relay: {e}")))?;
        Ok(with_password(url, &self.password))
    }

    /// The local mount path.
    pub(crate) fn local_mount(&self) -> Result<String, ConfigError> {
        match &self.mount {
            Some(m) => Ok(m.clone()),
            // The upstream's path, percent-decoded once as a request's (a malformed escape
            // stays as written, and validation says why).
            None => {
                let path = self.upstream_url()?.mount;
                Ok(crate::mount_path::decode_path(&path)
                    .unwrap_or_else(|_| path.split('?').next().unwrap_or_default().to_string()))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSection {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Host name used in `listenurl` of the status JSON.
    pub hostname: String,
    pub location: String,
    pub admin_email: String,
    /// Server-wide listener limit (503 beyond it).
    pub max_listeners: usize,
    /// Concurrent source connections.
    pub max_sources: usize,
    /// Mounts at most, live or held in their grace period after their source left (each
    /// holds its queue); a source that would make one more gets `503`. 0: no limit.
    pub max_mounts: usize,
    /// What all listeners may take together, in Mbit/s (each mount's source bitrate times
    /// its listeners): a listener that would go beyond it gets `503`. 0: no limit.
    pub max_bandwidth_mbps: u64,
    /// Seconds a client has to send its whole request head.
    pub header_timeout_secs: u64,
    /// Seconds a source may send nothing before it is dropped.
    pub source_timeout_secs: u64,
    /// Largest request head accepted, in bytes (431 beyond it).
    pub max_request_head: usize,
    /// Listen backlog: a keynote start is a connect storm.
    pub backlog: u32,
    /// Access log in Combined Log Format: a file path, or "-" for standard output.
    pub access_log: Option<String>,
    /// Seconds SIGTERM waits for connections to finish before exiting.
    pub shutdown_grace_secs: u64,
    /// Seconds a write to a listener or an event stream may make no progress (the client
    /// reads nothing) before the connection is cut; 0: never.
    pub send_timeout_secs: u64,
    /// `TCP_NOTSENT_LOWAT` of every accepted connection: at most about this many bytes a
    /// socket holds that are not sent yet (0: the kernel's default, unbounded).
    pub tcp_notsent_lowat: u32,
    /// Reverse proxies (nginx, a load balancer) whose `X-Forwarded-For` / `Forwarded` header
    /// names the client: only requests from these addresses are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Connections one address may have open before their request head is complete (a
    /// slowloris holds many); beyond it new ones are closed at once. 0: no limit. A trusted
    /// proxy's are not counted.
    pub max_pending_per_ip: usize,
    /// Listeners one client address may have (an IPv6 client counts by its /64); beyond it
    /// `429`. 0: no limit. Mobile carriers put many subscribers behind one IPv4 address:
    /// keep it generous.
    pub max_listeners_per_ip: usize,
    /// Wrong passwords (source, admin, relay user) one address may send within
    /// `login-window-secs` before it gets `429` for `login-ban-secs`. 0: no limit.
    pub max_login_failures: u32,
    pub login_window_secs: u64,
    pub login_ban_secs: u64,
    /// `[[server.tls]]`: HTTPS sockets, each group with its certificate and key.
    pub tls: Vec<TlsSection>,
    /// Where the server keeps what should outlive a restart (slides, under `slides/`);
    /// relative to the configuration file. None: kept in memory only.
    pub data_dir: Option<PathBuf>,
    /// The largest slide image accepted, in bytes (`413` beyond it).
    pub max_slide_bytes: u64,
    /// Slides one mount keeps; beyond it the oldest goes.
    pub max_slides_per_mount: usize,
    /// Bytes of slides one mount keeps; beyond it the oldest go.
    pub max_slide_bytes_per_mount: u64,
    /// Mounts that may have slides (`507` for one more).
    pub max_slide_mounts: usize,
    /// Bytes of slides all mounts keep together, in memory as on disk (`507` beyond it).
    pub max_slide_bytes_total: u64,
    /// The largest slide deck (a PDF) accepted, in bytes (`413` beyond it).
    pub max_deck_bytes: u64,
    /// The most pages a deck may have (`422` beyond it: nothing rendered).
    pub max_deck_pages: u32,
    /// Bytes of decks (PDFs and their pages) all mounts keep together, in memory as on disk
    /// (`507` beyond it).
    pub max_deck_bytes_total: u64,
}

/// `[[server.tls]]`: addresses that speak HTTPS, with a certificate chain and its key (PEM
/// files, read again on SIGHUP). The same mounts, pages and admin API as plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSection {
    /// Addresses to listen on with TLS.
    pub listen: Vec<SocketAddr>,
    /// The certificate chain, leaf first (`fullchain.pem` of an ACME client).
    pub certificate: std::path::PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8000))],
            hostname: "localhost".into(),
            location: "Earth".into(),
            admin_email: "admin@localhost".into(),
            max_listeners: 16_000,
            max_sources: 64,
            max_mounts: 128,
            max_bandwidth_mbps: 0,
            header_timeout_secs: 15,
            source_timeout_secs: 10,
            max_request_head: 16 * 1024,
            backlog: 16_384,
            access_log: None,
            shutdown_grace_secs: 5,
            send_timeout_secs: DEFAULT_SEND_TIMEOUT_SECS,
            tcp_notsent_lowat: DEFAULT_TCP_NOTSENT_LOWAT,
            max_pending_per_ip: 256,
            max_listeners_per_ip: 500,
            max_login_failures: 20,
            login_window_secs: 60,
            login_ban_secs: 300,
            trusted_proxies: Vec::new(),
            tls: Vec::new(),
            data_dir: None,
            max_slide_bytes: DEFAULT_MAX_SLIDE_BYTES,
            max_slides_per_mount: 1000,
            max_slide_bytes_per_mount: 512 << 20,
            max_slide_mounts: 128,
            max_slide_bytes_total: 1 << 30,
            max_deck_bytes: 64 << 20,
            max_deck_pages: 300,
            max_deck_bytes_total: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSection {
    /// Password of user `source` on every mount without its own.
    pub source_password: Option<Secret>,
    /// A file holding it (read at load into `source_password`).
    pub(crate) source_password_file: Option<PathBuf>,
    /// The admin user (`admin` when absent).
    pub admin_user: Option<String>,
    /// The admin password (random when absent).
    pub admin_password: Option<Secret>,
    /// A file holding it (read at load into `admin_password`).
    pub(crate) admin_password_file: Option<PathBuf>,
    /// The user relays log in as to list the mounts (`/admin/streamlist.txt`), as Icecast's
    /// `<relay-user>`; `relay` when absent.
    pub relay_user: Option<String>,
    /// Its password; without one, only the admin may list the mounts.
    pub relay_password: Option<Secret>,
    /// A file holding it (read at load into `relay_password`).
    pub(crate) relay_password_file: Option<PathBuf>,
}

/// What a listener that falls more than `queue-size` bytes behind gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LagPolicy {
    /// Closed, as Icecast does.
    #[default]
    Disconnect,
    /// Moved forward to the latest sync point (a gap in what it hears, but it stays).
    Skip,
}

/// When a listener asking for a mount is sent to an edge (a server that follows this one and
/// announces itself, see `[master] announce`) with `302 Found`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedirectMode {
    /// When this server or the mount is at its listener limit, as Icecast-KH does: the
    /// listener goes to an edge instead of being refused.
    #[default]
    WhenFull,
    /// Every listener goes to an edge while a healthy one carries the mount; this server
    /// keeps its own listeners for when none does.
    Always,
    /// Never: listeners are served here or refused.
    Never,
}

/// Settings a mount may override; `[mount-defaults]` supplies the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MountSettings {
    pub max_listeners: Option<usize>,
    /// What the mount's listeners may take together, in kbit/s (the source's bitrate times
    /// the listeners): a listener that would go beyond it gets `503`, rather than everyone
    /// getting less. None: no limit.
    pub max_bandwidth_kbps: Option<u64>,
    pub burst_size: usize,
    pub queue_size: usize,
    /// Largest WebM element (a video frame's block, mostly) a source may send; a larger one
    /// ends the source before its body is read. What one source can make the server hold is
    /// a few times this (the element being read, the newest chunk in the queue, its copy in
    /// the `sendfile` spool) plus `queue-size` (docs/operating.md).
    pub max_element_size: usize,
    /// Seconds listeners are held after their source drops.
    pub grace_period_secs: u64,
    /// Seconds a listener still writing when the mount closed has to take the rest; it is
    /// cut after that, whatever it reads, so that the mount can end.
    pub drain_secs: u64,
    pub lag_policy: LagPolicy,
    pub icy_metaint: usize,
    /// Titles set through `/admin/metadata` also go into the stream of a single-stream Ogg
    /// Vorbis or Opus mount, as a new link of the chain (players such as VLC and mpv show
    /// them). Off by default: browsers stop playing at a chain.
    pub ogg_title_in_stream: bool,
    /// When listeners are sent to edges.
    pub redirect: RedirectMode,
    /// Small source writes are gathered before listeners are woken for them, 30 µs per
    /// listener and at most this many milliseconds (0: every write wakes them).
    pub coalesce_ms: u64,
    /// Listeners are woken as soon as this many bytes are gathered.
    pub coalesce_bytes: usize,
    /// Chromium-based browsers that join an Ogg, MP3 or AAC mount while it holds less than
    /// what their player needs to start (32 KiB blocks) get padding that completes each block
    /// in time: first sound at once, at the cost of extra bytes to those listeners.
    pub browser_fill: bool,
    /// Parked listeners send ranges of at least this many bytes with `sendfile` from an
    /// in-memory copy of the queue (0: never, and no copy is kept).
    pub sendfile_min_bytes: usize,
    /// Listeners moved to this mount's fallback (its source gone past the grace period)
    /// come back when a source returns to it. On by default, unlike Icecast: at a
    /// conference the fallback is a "we'll be right back" slate, and the audience wants the
    /// talk back, not the slate until it reconnects.
    pub fallback_override: bool,
    /// A listener beyond `max-listeners` goes to the mount's fallback (when it is live and
    /// has room) instead of being refused; an edge the redirect mode picks comes first.
    pub fallback_when_full: bool,
    /// Listeners log in (HTTP Basic) as a user of this htpasswd file of bcrypt hashes
    /// (`htpasswd -B`), read again when it changes; relative to the configuration file.
    pub listener_htpasswd: Option<PathBuf>,
    /// Listeners are let in by this URL, asked as Icecast's url authentication asks its
    /// `listener_add` URL (a form POSTed; `icecast-auth-user: 1` in the answer lets in).
    pub listener_auth_url: Option<AuthUrl>,
    /// A file holding the password sent to `listener-auth-url` (the user goes in the URL),
    /// for a password kept out of the configuration; read at load.
    pub(crate) listener_auth_password_file: Option<PathBuf>,
    /// What `listener-auth-password-file` held.
    #[serde(skip)]
    pub(crate) listener_auth_password: Option<Secret>,
    /// With `listener-auth-url`: told when each listener that URL let in leaves, as Icecast
    /// tells its `listener_remove` URL (a form POSTed, the answer ignored). Its credentials
    /// are its own `user[:pass]@` (a password from `listener-auth-password-file` when it
    /// gives none), else those of `listener-auth-url`. Grants are then never cached.
    pub listener_remove_url: Option<AuthUrl>,
    /// How long the URL has to answer; a listener it does not answer in time gets `503`.
    /// A remove has as long.
    pub listener_auth_timeout_secs: u64,
    /// How long a listener let in (by the file or the URL) is let in again without asking,
    /// for the same user, password and, for the URL, address (0: ask every time). Not with
    /// `listener-remove-url`: every listener is asked for, so that each has its remove.
    pub listener_auth_cache_secs: u64,
}

/// Default of `listener-auth-timeout-secs`.
pub(crate) const DEFAULT_LISTENER_AUTH_TIMEOUT_SECS: u64 = 5;
/// Default of `listener-auth-cache-secs`.
pub(crate) const DEFAULT_LISTENER_AUTH_CACHE_SECS: u64 = 30;

/// A URL that may carry credentials (`http://user:pass@host/path`): `Debug` shows it without
/// the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AuthUrl(pub(crate) String);

impl fmt::Debug for AuthUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

impl AuthUrl {
    /// The URL parsed (an error shows it without its password).
    pub(crate) fn parse(&self) -> Result<agora_client::ServerUrl, agora_client::UrlError> {
        self.0.parse()
    }
}

impl Default for MountSettings {
    fn default() -> Self {
        MountSettings {
            max_listeners: None,
            max_bandwidth_kbps: None,
            burst_size: DEFAULT_BURST_SIZE,
            queue_size: DEFAULT_QUEUE_SIZE,
            max_element_size: DEFAULT_MAX_ELEMENT_SIZE,
            grace_period_secs: 10,
            drain_secs: DEFAULT_DRAIN_SECS,
            lag_policy: LagPolicy::Disconnect,
            icy_metaint: DEFAULT_ICY_METAINT,
            ogg_title_in_stream: false,
            redirect: RedirectMode::WhenFull,
            coalesce_ms: DEFAULT_COALESCE_MS,
            coalesce_bytes: DEFAULT_COALESCE_BYTES,
            browser_fill: true,
            sendfile_min_bytes: DEFAULT_SENDFILE_MIN_BYTES,
            fallback_override: true,
            fallback_when_full: false,
            listener_htpasswd: None,
            listener_auth_url: None,
            listener_auth_password_file: None,
            listener_auth_password: None,
            listener_remove_url: None,
            listener_auth_timeout_secs: DEFAULT_LISTENER_AUTH_TIMEOUT_SECS,
            listener_auth_cache_secs: DEFAULT_LISTENER_AUTH_CACHE_SECS,
        }
    }
}

impl MountSettings {
    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_period_secs)
    }

    /// How long a listener may still write once the mount closed.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }
}

/// A mount's policy: its settings, who may push to it, and the stream information the
/// operator imposes (see [`Config::policy_for`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct MountPolicy {
    pub(crate) settings: MountSettings,
    pub(crate) source_user: String,
    /// `None`: the server's source password.
    pub(crate) source_password: Option<Secret>,
    pub(crate) overrides: StreamOverrides,
    /// Where the mount's listeners go when it closes (`[[mount]] fallback`).
    pub(crate) fallback: Option<String>,
    /// What every new listener gets first (`[[mount]] intro`).
    pub(crate) intro: Option<Intro>,
}

/// A `loop-file`: its path and the file cut into timed units (see
/// [`agora_format::playout`]). `Debug` shows the path, not the bytes.
#[derive(Clone)]
pub(crate) struct LoopMedia {
    pub(crate) path: PathBuf,
    pub(crate) playout: Arc<Playout>,
    /// A hash of the file's bytes: a reload restarts the loop only when the file changed.
    pub(crate) digest: u64,
}

impl fmt::Debug for LoopMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopMedia")
            .field("path", &self.path)
            .field("format", &self.playout.format())
            .field("period", &self.playout.period())
            .finish()
    }
}

/// An `intro`: the bytes every new listener gets before the stream, one `Bytes` all of them
/// share. `Debug` shows the path and the length, not the bytes.
#[derive(Clone)]
pub(crate) struct Intro {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    pub(crate) bytes: Bytes,
}

impl fmt::Debug for Intro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intro")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why a `loop-file` or an `intro` cannot be played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Playout(#[from] PlayoutError),
}

/// Read and cut a media file, bounded by [`MAX_FILE`] before a byte is read.
fn read_media(path: &Path) -> Result<(Playout, u64), MediaError> {
    let len = std::fs::metadata(path).map_err(MediaError::Read)?.len();
    if len > MAX_FILE as u64 {
        return Err(PlayoutError::TooLarge {
            len,
            limit: MAX_FILE,
        }
        .into());
    }
    let bytes = std::fs::read(path).map_err(MediaError::Read)?;
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        h.finish()
    };
    Ok((Playout::new(Bytes::from(bytes))?, digest))
}

/// Stream information from the configuration, which wins over what the source sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StreamOverrides {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) genre: Option<String>,
}

/// One `[[mount]]` table: a path plus optional overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MountConfig {
    pub path: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A file holding the password (read at load into `password`).
    pub(crate) password_file: Option<PathBuf>,
    pub max_listeners: Option<usize>,
    pub max_bandwidth_kbps: Option<u64>,
    pub burst_size: Option<usize>,
    pub queue_size: Option<usize>,
    pub max_element_size: Option<usize>,
    pub grace_period_secs: Option<u64>,
    pub drain_secs: Option<u64>,
    pub lag_policy: Option<LagPolicy>,
    pub icy_metaint: Option<usize>,
    pub ogg_title_in_stream: Option<bool>,
    pub redirect: Option<RedirectMode>,
    pub coalesce_ms: Option<u64>,
    pub coalesce_bytes: Option<usize>,
    pub browser_fill: Option<bool>,
    pub sendfile_min_bytes: Option<usize>,
    /// The mount its listeners go to when its source is gone past the grace period, instead
    /// of being closed (Icecast's `fallback-mount`); of the same format.
    pub fallback: Option<String>,
    pub fallback_override: Option<bool>,
    pub fallback_when_full: Option<bool>,
    /// A media file the server itself plays into this mount, in a loop and in real time, as
    /// its source (a slate: `fallback` of a live mount names this one). Relative to the
    /// configuration file; read and checked at load. Sources are refused on such a mount.
    pub loop_file: Option<PathBuf>,
    /// A media file every new listener of this mount gets before the stream (Icecast's
    /// `<intro>`): MP3, AAC or Ogg, never WebM. Relative to the configuration file.
    pub intro: Option<PathBuf>,
    /// What `loop-file` holds, cut for playing.
    #[serde(skip)]
    pub(crate) loop_media: Option<LoopMedia>,
    /// What `intro` holds, as listeners get it.
    #[serde(skip)]
    pub(crate) intro_media: Option<Intro>,
    /// Listener authentication of this mount (see [`MountSettings`]): any of
    /// `listener-htpasswd`, `listener-auth-url` and `listener-remove-url` set here replaces
    /// all three of `[mount-defaults]`.
    pub listener_htpasswd: Option<PathBuf>,
    pub listener_auth_url: Option<AuthUrl>,
    pub(crate) listener_auth_password_file: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) listener_auth_password: Option<Secret>,
    pub listener_remove_url: Option<AuthUrl>,
    pub listener_auth_timeout_secs: Option<u64>,
    pub listener_auth_cache_secs: Option<u64>,
    /// Overrides the source's `ice-name`.
    pub stream_name: Option<String>,
    pub stream_description: Option<String>,
    pub stream_url: Option<String>,
    pub genre: Option<String>,
}

impl MountConfig {
    /// Whether this `[[mount]]` gives its own listener gate (any of its keys set here), which
    /// then replaces `[mount-defaults]`' whole.
    pub(crate) fn has_own_gate(&self) -> bool {
        self.listener_htpasswd.is_some()
            || self.listener_auth_url.is_some()
            || self.listener_remove_url.is_some()
    }
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {why}")]
    Read {
        path: String,
        /// In the message, not a `source`: said once.
        why: std::io::Error,
    },
    /// Not TOML, or not this configuration's shape. Said with the line and column, never
    /// with the line itself (it may hold a password).
    #[error("{path}: {what}")]
    Parse { path: String, what: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A `*-password-file` that cannot be used (named with its key; its content never shown).
    #[error("invalid configuration: {key}: {why}")]
    PasswordFile {
        key: String,
        /// In the message, not a `source`: said once.
        why: SecretFileError,
    },
    /// A `loop-file` or `intro` that cannot be played (named with its mount, key and path).
    #[error("invalid configuration: mount {mount}: {key} {}: {why}", path.display())]
    Media {
        mount: String,
        key: &'static str,
        path: PathBuf,
        /// In the message, not a `source`: said once.
        why: MediaError,
    },
}

impl Config {
    /// Read and parse a TOML file, and the password files it names (relative to the file's
    /// directory). Not validated: see [`Config::validate`].
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|why| ConfigError::Read {
            path: path.display().to_string(),
            why,
        })?;
        let mut c = parse(&text, &path.display().to_string())?;
        c.read_password_files(path.parent())?;
        c.read_media_files(path.parent())?;
        if let (Some(dir), Some(base)) = (c.server.data_dir.as_mut(), path.parent())
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        Ok(c)
    }

    /// Parse TOML text, and read the password files it names (relative to the working
    /// directory).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut c = parse(text, "<config>")?;
        c.read_password_files(None)?;
        c.read_media_files(None)?;
        Ok(c)
    }

    /// Every `*-password-file` read into its password; a password given both ways is an
    /// error. Afterwards the `*_file` fields are empty: the configuration holds passwords only.
    fn read_password_files(&mut self, base: Option<&Path>) -> Result<(), ConfigError> {
        let a = &mut self.auth;
        for (key, value, file) in [
            (
                "source-password",
                &mut a.source_password,
                &mut a.source_password_file,
            ),
            (
                "admin-password",
                &mut a.admin_password,
                &mut a.admin_password_file,
            ),
            (
                "relay-password",
                &mut a.relay_password,
                &mut a.relay_password_file,
            ),
        ] {
            take_password_file("[auth]", key, value, file, base)?;
        }
        // htpasswd files, like password files, are relative to the configuration's directory.
        if let Some(dir) = base {
            for file in std::iter::once(&mut self.mount_defaults.listener_htpasswd)
                .chain(self.mounts.iter_mut().map(|m| &mut m.listener_htpasswd))
                .flatten()
                .filter(|f| f.is_relative())
            {
                *file = dir.join(&*file);
            }
        }
        let d = &mut self.mount_defaults;
        take_password_file(
            "[mount-defaults]",
            "listener-auth-password",
            &mut d.listener_auth_password,
            &mut d.listener_auth_password_file,
            base,
        )?;
        for m in &mut self.mounts {
            let table = format!("[[mount]] {}", m.path);
            take_password_file(
                &table,
                "password",
                &mut m.password,
                &mut m.password_file,
                base,
            )?;
            take_password_file(
                &table,
                "listener-auth-password",
                &mut m.listener_auth_password,
                &mut m.listener_auth_password_file,
                base,
            )?;
        }
        // A URL's credentials: the password in the URL or in `password-file`, not both.
        let urls = self
            .relays
            .iter_mut()
            .map(|r| {
                (
                    "[[relay]]",
                    &r.upstream,
                    &mut r.password,
                    &mut r.password_file,
                )
            })
            .chain(
                self.pushes
                    .iter_mut()
                    .map(|p| ("[[push]]", &p.target, &mut p.password, &mut p.password_file)),
            )
            .chain(
                self.master
                    .iter_mut()
                    .map(|m| ("[master]", &m.url, &mut m.password, &mut m.password_file)),
            );
        for (table, url, value, file) in urls {
            let table = format!("{table} {}", redact(url));
            if file.is_some() && password_text(url).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "{table}: the URL has a password and password-file is set; keep one"
                )));
            }
            take_password_file(&table, "password", value, file, base)?;
        }
        Ok(())
    }

    /// Every `loop-file` and `intro` read (relative to `base`), checked and cut, so that
    /// `--check-config` says what playing them would find.
    fn read_media_files(&mut self, base: Option<&Path>) -> Result<(), ConfigError> {
        for m in &mut self.mounts {
            for (key, file) in [("loop-file", &mut m.loop_file), ("intro", &mut m.intro)] {
                if let (Some(dir), Some(f)) = (base, file.as_mut())
                    && f.is_relative()
                {
                    *f = dir.join(&*f);
                }
                let Some(path) = file.clone() else { continue };
                let (playout, digest) = read_media(&path).map_err(|why| ConfigError::Media {
                    mount: m.path.clone(),
                    key,
                    path: path.clone(),
                    why,
                })?;
                if key == "intro" {
                    m.intro_media = Some(Intro {
                        format: playout.format(),
                        bytes: playout.first_pass_bytes(),
                        path,
                    });
                } else {
                    m.loop_media = Some(LoopMedia {
                        path,
                        playout: Arc::new(playout),
                        digest,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every `[[mount]]` with a `loop-file`: the mounts the server plays itself.
    pub(crate) fn loop_files(&self) -> impl Iterator<Item = (&str, &LoopMedia)> {
        self.mounts
            .iter()
            .filter_map(|m| Some((m.path.as_str(), m.loop_media.as_ref()?)))
    }

    /// Check everything a running server relies on; the message names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.server.listen.is_empty() && self.server.tls.is_empty() {
            return bad("server.listen is empty: give at least one address".into());
        }
        // Port 0 (any free port) may be given more than once.
        let mut addresses = std::collections::HashSet::new();
        for a in self.server.listen.iter().filter(|a| a.port() != 0) {
            if !addresses.insert(*a) {
                return bad(format!("listen address {a} is given twice"));
            }
        }
        for t in &self.server.tls {
            if t.listen.is_empty() {
                return bad(format!(
                    "server.tls with certificate {}: listen is empty",
                    t.certificate.display()
                ));
            }
            for a in t.listen.iter().filter(|a| a.port() != 0) {
                if !addresses.insert(*a) {
                    return bad(format!("listen address {a} is given twice"));
                }
            }
            // What start-up would fail on, `--check-config` says.
            crate::tls::server_config(&t.certificate, &t.key)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(p) = self.server.access_log.as_deref().filter(|p| *p != "-") {
            check_log_file("server.access-log", Path::new(p))?;
        }
        let s = &self.server;
        if !(1024..=64 << 20).contains(&s.max_slide_bytes) {
            return bad(format!(
                "server.max-slide-bytes {} is outside 1024..=67108864 (1 KiB to 64 MiB)",
                s.max_slide_bytes
            ));
        }
        if !(1024..=1 << 30).contains(&s.max_deck_bytes) {
            return bad(format!(
                "server.max-deck-bytes {} is outside 1024..=1073741824 (1 KiB to 1 GiB)",
                s.max_deck_bytes
            ));
        }
        if !(1..=2000).contains(&s.max_deck_pages) {
            return bad(format!(
                "server.max-deck-pages {} is outside 1..=2000",
                s.max_deck_pages
            ));
        }
        if s.max_deck_bytes_total < s.max_deck_bytes {
            return bad(format!(
                "server.max-deck-bytes-total ({}) is less than max-deck-bytes ({})",
                s.max_deck_bytes_total, s.max_deck_bytes
            ));
        }
        if s.max_slides_per_mount == 0 || s.max_slide_mounts == 0 {
            return bad("server.max-slides-per-mount and max-slide-mounts must be > 0".into());
        }
        if s.max_slide_bytes_per_mount < s.max_slide_bytes
            || s.max_slide_bytes_total < s.max_slide_bytes_per_mount
        {
            return bad(format!(
                "server: max-slide-bytes ({}) <= max-slide-bytes-per-mount ({}) <= max-slide-bytes-total ({}) does not hold",
                s.max_slide_bytes, s.max_slide_bytes_per_mount, s.max_slide_bytes_total
            ));
        }
        if let Some(dir) = &s.data_dir
            && dir.as_os_str().is_empty()
        {
            return bad("server.data-dir is empty: leave it out to keep slides in memory".into());
        }
        if self.server.max_request_head < 1024 {
            return bad("server.max-request-head must be at least 1024 bytes".into());
        }
        if self.server.header_timeout_secs == 0 || self.server.source_timeout_secs == 0 {
            return bad("server.header-timeout-secs and source-timeout-secs must be > 0".into());
        }
        if (1..4096).contains(&self.server.tcp_notsent_lowat) {
            return bad(format!(
                "server.tcp-notsent-lowat {} is below 4096 (every write would be a few bytes); 0 leaves it to the kernel",
                self.server.tcp_notsent_lowat
            ));
        }
        for (what, p) in [
            ("auth.source-password", &self.auth.source_password),
            ("auth.admin-password", &self.auth.admin_password),
            ("auth.relay-password", &self.auth.relay_password),
        ] {
            if let Some(p) = p
                && p.is_empty()
            {
                return bad(format!("{what} is empty; leave it out to get a random one"));
            }
        }
        check_settings("mount-defaults", &self.mount_defaults)?;
        let mut seen = std::collections::HashSet::new();
        for m in &self.mounts {
            if let Err(e) = MountPath::parse(&m.path) {
                return bad(format!("mount path {:?}: {e}", m.path));
            }
            if !seen.insert(m.path.as_str()) {
                return bad(format!("mount {} is configured twice", m.path));
            }
            if m.password.as_deref() == Some("") {
                return bad(format!("mount {}: empty password", m.path));
            }
            check_settings(&m.path, &self.settings_for(&m.path))?;
        }
        self.check_fallbacks()?;
        self.check_media()?;
        if let Some(m) = &self.master {
            m.master_url()?;
            m.announce_addr()?;
            if m.interval_secs == 0 {
                return bad("master.interval-secs must be at least 1".into());
            }
        }
        for p in &self.pushes {
            let url = p.target_url()?;
            if let Err(e) = MountPath::parse(&p.mount) {
                return bad(format!("push to {url}: mount {:?}: {e}", p.mount));
            }
        }
        let mut relayed = std::collections::HashSet::new();
        for r in &self.relays {
            // Shown without its password.
            let url = r.upstream_url()?;
            let local = r.local_mount()?;
            if let Err(e) = MountPath::parse(&local) {
                return bad(format!("relay {url}: local mount {local:?}: {e}"));
            }
            if !relayed.insert(local.clone()) {
                return bad(format!("mount {local} is relayed twice"));
            }
        }
        Ok(())
    }

    /// Everything the configuration says about a mount path, resolved once: the mount keeps
    /// the policy it was claimed with, and every reader asks the mount.
    pub(crate) fn policy_for(&self, path: &str) -> MountPolicy {
        let m = self.mount(path);
        MountPolicy {
            settings: self.settings_for(path),
            source_user: m
                .and_then(|m| m.username.clone())
                .unwrap_or_else(|| "source".into()),
            source_password: m.and_then(|m| m.password.clone()),
            overrides: StreamOverrides {
                name: m.and_then(|m| m.stream_name.clone()),
                description: m.and_then(|m| m.stream_description.clone()),
                url: m.and_then(|m| m.stream_url.clone()),
                genre: m.and_then(|m| m.genre.clone()),
            },
            fallback: self.fallback_of(path).map(str::to_string),
            intro: m.and_then(|m| m.intro_media.clone()),
        }
    }

    /// The fallback `[[mount]]` gives `path`, if any.
    pub(crate) fn fallback_of(&self, path: &str) -> Option<&str> {
        self.mount(path).and_then(|m| m.fallback.as_deref())
    }

    /// Every configured fallback, by mount path (what the registry follows for a fallback
    /// that is itself absent, see `Registry::live_fallback`).
    pub(crate) fn fallbacks(&self) -> std::collections::BTreeMap<String, String> {
        self.mounts
            .iter()
            .filter_map(|m| Some((m.path.clone(), m.fallback.clone()?)))
            .collect()
    }

    /// The effective settings of a mount path.
    pub fn settings_for(&self, path: &str) -> MountSettings {
        let d = &self.mount_defaults;
        match self.mount(path) {
            None => d.clone(),
            Some(m) => {
                let own_gate = m.has_own_gate();
                MountSettings {
                    max_listeners: m.max_listeners.or(d.max_listeners),
                    max_bandwidth_kbps: m.max_bandwidth_kbps.or(d.max_bandwidth_kbps),
                    burst_size: m.burst_size.unwrap_or(d.burst_size),
                    queue_size: m.queue_size.unwrap_or(d.queue_size),
                    max_element_size: m.max_element_size.unwrap_or(d.max_element_size),
                    grace_period_secs: m.grace_period_secs.unwrap_or(d.grace_period_secs),
                    drain_secs: m.drain_secs.unwrap_or(d.drain_secs),
                    lag_policy: m.lag_policy.unwrap_or(d.lag_policy),
                    icy_metaint: m.icy_metaint.unwrap_or(d.icy_metaint),
                    ogg_title_in_stream: m.ogg_title_in_stream.unwrap_or(d.ogg_title_in_stream),
                    redirect: m.redirect.unwrap_or(d.redirect),
                    coalesce_ms: m.coalesce_ms.unwrap_or(d.coalesce_ms),
                    coalesce_bytes: m.coalesce_bytes.unwrap_or(d.coalesce_bytes),
                    browser_fill: m.browser_fill.unwrap_or(d.browser_fill),
                    sendfile_min_bytes: m.sendfile_min_bytes.unwrap_or(d.sendfile_min_bytes),
                    // A mount's own gate replaces the defaults' whole (never a file and a URL).
                    fallback_override: m.fallback_override.unwrap_or(d.fallback_override),
                    fallback_when_full: m.fallback_when_full.unwrap_or(d.fallback_when_full),
                    listener_htpasswd: match own_gate {
                        true => m.listener_htpasswd.clone(),
                        false => d.listener_htpasswd.clone(),
                    },
                    listener_auth_url: match own_gate {
                        true => m.listener_auth_url.clone(),
                        false => d.listener_auth_url.clone(),
                    },
                    listener_auth_password_file: None,
                    listener_auth_password: match own_gate {
                        true => m.listener_auth_password.clone(),
                        false => d.listener_auth_password.clone(),
                    },
                    listener_remove_url: match own_gate {
                        true => m.listener_remove_url.clone(),
                        false => d.listener_remove_url.clone(),
                    },
                    listener_auth_timeout_secs: m
                        .listener_auth_timeout_secs
                        .unwrap_or(d.listener_auth_timeout_secs),
                    listener_auth_cache_secs: m
                        .listener_auth_cache_secs
                        .unwrap_or(d.listener_auth_cache_secs),
                }
            }
        }
    }

    /// Each `fallback` is a valid mount path other than its mount's, of the same format when
    /// both names say one (by extension: a mount's real format is only known from its bytes,
    /// and a move to a live fallback of another format is refused then), and the chain of
    /// fallbacks from any mount ends within [`MAX_FALLBACK_DEPTH`] mounts without a loop.
    fn check_fallbacks(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for m in &self.mounts {
            let Some(f) = &m.fallback else { continue };
            if let Err(e) = MountPath::parse(f) {
                return bad(format!("mount {}: fallback {f:?}: {e}", m.path));
            }
            if *f == m.path {
                return bad(format!(
                    "mount {}: the fallback is the mount itself; name another mount",
                    m.path
                ));
            }
            let by_ext = crate::mount_path::format_by_extension;
            if let (Some(a), Some(b)) = (by_ext(&m.path), by_ext(f))
                && a != b
            {
                return bad(format!(
                    "mount {}: fallback {f} is another format ({b:?}, the mount is {a:?} by their names); its listeners could not play it",
                    m.path
                ));
            }
            let mut chain = vec![m.path.as_str()];
            let mut next = Some(f.as_str());
            while let Some(p) = next {
                if chain.contains(&p) {
                    chain.push(p);
                    return bad(format!(
                        "mount {}: the fallbacks loop: {}",
                        m.path,
                        chain.join(" -> ")
                    ));
                }
                chain.push(p);
                if chain.len() > MAX_FALLBACK_DEPTH + 1 {
                    return bad(format!(
                        "mount {}: more than {MAX_FALLBACK_DEPTH} fallbacks in a row: {} ...",
                        m.path,
                        chain.join(" -> ")
                    ));
                }
                next = self.fallback_of(p);
            }
        }
        Ok(())
    }

    /// A `loop-file` or `intro` is of the format its mount's name says (when it says one);
    /// an intro is not WebM; a mount played from a file is not also relayed.
    fn check_media(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for m in &self.mounts {
            let named = crate::mount_path::format_by_extension(&m.path);
            let media = [
                (
                    "loop-file",
                    m.loop_media.as_ref().map(|l| (&l.path, l.playout.format())),
                ),
                ("intro", m.intro_media.as_ref().map(|i| (&i.path, i.format))),
            ];
            for (key, media) in media {
                let Some((file, format)) = media else {
                    continue;
                };
                if let Some(named) = named
                    && named != format
                {
                    return bad(format!(
                        "mount {}: {key} {} is {format:?}, the mount's name says {named:?}; its listeners could not play it",
                        m.path,
                        file.display()
                    ));
                }
                if key == "intro" && format == Format::WebM {
                    return bad(format!(
                        "mount {}: intro {} is WebM: a WebM stream cannot follow another (players stop at a second EBML header), so WebM mounts have no intro",
                        m.path,
                        file.display()
                    ));
                }
            }
            if m.loop_media.is_some()
                && let Some(r) = self
                    .relays
                    .iter()
                    .find(|r| r.local_mount().is_ok_and(|l| l == m.path))
            {
                let url = r.upstream_url().map(|u| u.to_string()).unwrap_or_default();
                return bad(format!(
                    "mount {}: it has a loop-file and is relayed from {url}; keep one source",
                    m.path
                ));
            }
        }
        Ok(())
    }

    fn mount(&self, path: &str) -> Option<&MountConfig> {
        self.mounts.iter().find(|m| m.path == path)
    }
}

/// That the server can append to the log file at `path` (what start-up would fail on, said
/// before it does): an existing file is opened for appending (nothing written), a new one's
/// folder must exist and take a file (a probe file is made and removed).
fn check_log_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    let bad = |why: String| {
        Err(ConfigError::Invalid(format!(
            "{key} {}: {why}",
            path.display()
        )))
    };
    if path.is_dir() {
        return bad("is a folder; name a file in it".into());
    }
    if path.exists() {
        return match std::fs::OpenOptions::new().append(true).open(path) {
            Ok(_) => Ok(()),
            Err(e) => bad(format!("cannot be written to: {e}")),
        };
    }
    let folder = match path.parent() {
        Some(f) if !f.as_os_str().is_empty() => f,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return bad(format!(
            "its folder {} does not exist (create it: mkdir -p {})",
            folder.display(),
            folder.display()
        ));
    }
    let probe = folder.join(format!(".agora-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bad(format!("no file can be made in {}: {e}", folder.display())),
    }
}

/// TOML text to a configuration; an error says where, and what, without quoting the line.
fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let what = match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let start = before.rfind('\n').map_or(0, |i| i + 1);
                let column = before.len() - start + 1;
                // The key the value belongs to, when the line is `key = value` (the key only:
                // the value may be a password).
                let this_line = text[start..].lines().next().unwrap_or("");
                let key = this_line
                    .split_once('=')
                    .map(|(k, _)| k.trim())
                    .filter(|k| {
                        !k.is_empty()
                            && span.start >= start + this_line.find('=').unwrap_or(0)
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    })
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default();
                format!(
                    "line {line}, column {column}{key}: {}",
                    e.message().trim_end()
                )
            }
            None => e.message().trim_end().to_string(),
        };
        ConfigError::Parse {
            path: path.to_string(),
            what,
        }
    })
}

/// `<key>-file` of `table` read into `<key>` (`base` for a relative path); both set is an
/// error.
fn take_password_file(
    table: &str,
    key: &str,
    value: &mut Option<Secret>,
    file: &mut Option<PathBuf>,
    base: Option<&Path>,
) -> Result<(), ConfigError> {
    let Some(path) = file.take() else {
        return Ok(());
    };
    if value.is_some() {
        return Err(ConfigError::Invalid(format!(
            "{table}: {key} and {key}-file are both set; keep one"
        )));
    }
    let path = match base {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    *value = Some(
        read_password_file(&path).map_err(|why| ConfigError::PasswordFile {
            key: format!("{table}: {key}-file"),
            why,
        })?,
    );
    Ok(())
}

fn check_settings(what: &str, s: &MountSettings) -> Result<(), ConfigError> {
    if s.queue_size < 16 * 1024 {
        return Err(ConfigError::Invalid(format!(
            "{what}: queue-size {} is below 16 KiB",
            s.queue_size
        )));
    }
    if s.burst_size >= s.queue_size {
        return Err(ConfigError::Invalid(format!(
            "{what}: burst-size ({}) must be smaller than queue-size ({})",
            s.burst_size, s.queue_size
        )));
    }
    if !MAX_ELEMENT_SIZE_RANGE.contains(&s.max_element_size) {
        return Err(ConfigError::Invalid(format!(
            "{what}: max-element-size {} is outside 65536..=67108864 (64 KiB to 64 MiB)",
            s.max_element_size
        )));
    }
    if s.icy_metaint == 0 || s.icy_metaint > 1 << 20 {
        return Err(ConfigError::Invalid(format!(
            "{what}: icy-metaint must be between 1 and 1048576"
        )));
    }
    if s.listener_htpasswd.is_some() && s.listener_auth_url.is_some() {
        return Err(ConfigError::Invalid(format!(
            "{what}: listener-htpasswd and listener-auth-url are both set; keep one"
        )));
    }
    if let Some(url) = &s.listener_remove_url {
        // Only a URL's grant has a remove: a file's listeners are nobody's to tell.
        if s.listener_htpasswd.is_some() {
            return Err(ConfigError::Invalid(format!(
                "{what}: listener-remove-url goes with listener-auth-url, not listener-htpasswd"
            )));
        }
        if s.listener_auth_url.is_none() {
            return Err(ConfigError::Invalid(format!(
                "{what}: listener-remove-url is set without listener-auth-url"
            )));
        }
        url.parse()
            .map_err(|e| ConfigError::Invalid(format!("{what}: listener-remove-url: {e}")))?;
    }
    if let Some(file) = &s.listener_htpasswd {
        // What the gate would refuse at its first listener, the check says now.
        crate::htpasswd::load(file)
            .map_err(|e| ConfigError::Invalid(format!("{what}: listener-htpasswd: {e}")))?;
    }
    if let Some(url) = &s.listener_auth_url {
        url.parse()
            .map_err(|e| ConfigError::Invalid(format!("{what}: listener-auth-url: {e}")))?;
        if s.listener_auth_password.is_some() && password_text(&url.0).is_some() {
            return Err(ConfigError::Invalid(format!(
                "{what}: listener-auth-url has a password and listener-auth-password-file is set; keep one"
            )));
        }
    } else if s.listener_auth_password.is_some() {
        return Err(ConfigError::Invalid(format!(
            "{what}: listener-auth-password-file is set without listener-auth-url"
        )));
    }
    if !(1..=60).contains(&s.listener_auth_timeout_secs) {
        return Err(ConfigError::Invalid(format!(
            "{what}: listener-auth-timeout-secs must be between 1 and 60"
        )));
    }
    if s.listener_auth_cache_secs > 86_400 {
        return Err(ConfigError::Invalid(format!(
            "{what}: listener-auth-cache-secs must be at most 86400 (a day)"
        )));
    }
    if s.coalesce_ms > 1000 {
        return Err(ConfigError::Invalid(format!(
            "{what}: coalesce-ms {} is above 1000 (listeners would hear the stream late)",
            s.coalesce_ms
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slide_limits_are_checked_and_data_dir_is_relative_to_the_file() {
        let c = Config::default();
        assert_eq!(c.server.max_slide_bytes, 8 << 20);
        assert_eq!(
            (c.server.max_deck_bytes, c.server.max_deck_pages),
            (64 << 20, 300)
        );
        assert!(c.validate().is_ok() && c.server.data_dir.is_none());
        for (toml, says) in [
            ("max-slide-bytes = 100", "max-slide-bytes"),
            ("max-slides-per-mount = 0", "max-slides-per-mount"),
            (
                "max-slide-bytes-per-mount = 1024",
                "max-slide-bytes-per-mount",
            ),
            ("max-slide-bytes-total = 1024", "max-slide-bytes-total"),
            ("data-dir = \"\"", "data-dir"),
            ("max-deck-bytes = 100", "max-deck-bytes"),
            ("max-deck-bytes-total = 1048576", "max-deck-bytes-total"),
            ("max-deck-pages = 0", "max-deck-pages"),
            ("max-deck-pages = 5000", "max-deck-pages"),
        ] {
            let c = Config::from_toml(&format!("[server]\n{toml}\n")).expect("parses");
            let err = c.validate().expect_err(toml).to_string();
            assert!(err.contains(says), "{toml}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("agora-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("agora.toml");
        std::fs::write(&file, "[server]\ndata-dir = \"state\"\n").expect("write");
        let c = Config::from_file(&file).expect("loads");
        assert_eq!(c.server.data_dir, Some(dir.join("state")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_config_is_valid_and_listens_on_localhost_8000() {
        let c = Config::from_toml("").expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:8000");
        assert_eq!(c.mount_defaults.burst_size, 65536);
        assert_eq!(c.mount_defaults.queue_size, 524288);
    }

    #[test]
    fn mount_paths_are_validated_and_a_relays_is_decoded() {
        let c = Config::from_toml(
            "[[relay]]\nupstream = \"http://up.example:8000/caf%C3%A9.mp3?x=1\"\n",
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.relays[0].local_mount().expect("mount"), "/café.mp3");
        for toml in [
            "[[mount]]\npath = \"/admin/x\"\n",
            "[[mount]]\npath = \"//evil.example/x\"\n",
            "[[relay]]\nupstream = \"http://up.example:8000/x\"\nmount = \"/watch/x\"\n",
            "[[relay]]\nupstream = \"http://up.example:8000/a%2525b\"\n",
        ] {
            let c = Config::from_toml(toml).expect("parses");
            let e = c.validate().expect_err(toml).to_string();
            assert!(e.contains("mount path"), "{toml}: {e}");
        }
    }

    #[test]
    fn mount_overrides_defaults() {
        let c = Config::from_toml(
            r#"
            [mount-defaults]
            burst-size = 1000
            [[mount]]
            path = "/a.ogg"
            queue-size = 100000
            lag-policy = "skip"
            drain-secs = 1
            "#,
        )
        .expect("parses");
        c.validate().expect("valid");
        let s = c.settings_for("/a.ogg");
        assert_eq!((s.burst_size, s.queue_size), (1000, 100000));
        assert_eq!(s.lag_policy, LagPolicy::Skip);
        assert_eq!(s.drain(), Duration::from_secs(1));
        let other = c.settings_for("/other");
        assert_eq!(other.queue_size, DEFAULT_QUEUE_SIZE);
        assert_eq!(other.drain_secs, DEFAULT_DRAIN_SECS);
    }

    #[test]
    fn validation_explains() {
        let c = Config::from_toml("[mount-defaults]\nburst-size = 600000").expect("parses");
        let e = c.validate().expect_err("burst >= queue").to_string();
        assert!(e.contains("burst-size"), "{e}");
        for bad in ["1000", "100000000"] {
            let c = Config::from_toml(&format!(
                "[[mount]]\npath = \"/v.webm\"\nmax-element-size = {bad}"
            ))
            .expect("parses");
            let e = c.validate().expect_err(bad).to_string();
            assert!(
                e.contains("max-element-size") && e.contains("/v.webm"),
                "{e}"
            );
        }
        let c = Config::from_toml("[mount-defaults]\nmax-element-size = 33554432").expect("parses");
        c.validate().expect("32 MiB is allowed");
        assert_eq!(c.settings_for("/x").max_element_size, 32 << 20);
        assert_eq!(
            Config::default().settings_for("/x").max_element_size,
            DEFAULT_MAX_ELEMENT_SIZE
        );
        let e = Config::from_toml("[server]\nlisten = []\nbogus = 1").expect_err("unknown key");
        assert!(e.to_string().contains("bogus"), "{e}");
        let c = Config::from_toml("[server]\ntcp-notsent-lowat = 100").expect("parses");
        let e = c.validate().expect_err("a tiny low-water mark").to_string();
        assert!(e.contains("tcp-notsent-lowat"), "{e}");
        for ok in ["0", "4096"] {
            let c =
                Config::from_toml(&format!("[server]\ntcp-notsent-lowat = {ok}")).expect("parses");
            c.validate().expect(ok);
        }
    }

    /// A fresh directory for password files.
    fn secrets_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("agora-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn every_password_can_come_from_a_file_and_no_debug_shows_one() {
        let dir = secrets_dir("files");
        for name in [
            "source", "admin", "relay", "mount", "upstream", "push", "master", "hook",
        ] {
            std::fs::write(dir.join(format!("{name}.pw")), format!("{name}-s3cret\n"))
                .expect("write");
        }
        let admin = dir.join("admin.pw");
        let toml = format!(
            r#"
            [auth]
            source-password-file = "source.pw"
            admin-password-file = "{}"
            relay-password-file = "relay.pw"
            [[mount]]
            path = "/a.ogg"
            password-file = "mount.pw"
            [[mount]]
            path = "/b.ogg"
            password = "inline-s3cret"
            [[mount]]
            path = "/c.ogg"
            listener-auth-url = "http://agora@hook.example:9000/auth"
            listener-auth-password-file = "hook.pw"
            [[mount]]
            path = "/d.ogg"
            listener-auth-url = "http://agora:url-s3cret@hook.example:9000/auth"
            [[relay]]
            upstream = "http://relay@up.example:8000/x.ogg"
            password-file = "upstream.pw"
            [[relay]]
            upstream = "http://relay:url-s3cret@up.example:8000/y.ogg"
            [[push]]
            mount = "/a.ogg"
            target = "http://down.example:8000/a.ogg"
            password-file = "push.pw"
            [master]
            url = "http://relay@master.example:8000/"
            password-file = "master.pw"
            announce = "http://edge:8000"
            "#,
            admin.display()
        );
        let path = dir.join("agora.toml");
        std::fs::write(&path, toml).expect("write");
        // Relative to the configuration file, whatever the working directory.
        let c = Config::from_file(&path).expect("loads");
        c.validate().expect("valid");
        let pw = |s: &Option<Secret>| s.as_deref().map(str::to_string);
        assert_eq!(
            pw(&c.auth.source_password).as_deref(),
            Some("source-s3cret")
        );
        assert_eq!(pw(&c.auth.admin_password).as_deref(), Some("admin-s3cret"));
        assert_eq!(pw(&c.auth.relay_password).as_deref(), Some("relay-s3cret"));
        assert_eq!(
            pw(&c.policy_for("/a.ogg").source_password).as_deref(),
            Some("mount-s3cret")
        );
        let url = |u: Result<agora_client::ServerUrl, ConfigError>| u.expect("url").password;
        assert_eq!(
            url(c.relays[0].upstream_url()).as_deref(),
            Some("upstream-s3cret")
        );
        assert_eq!(
            url(c.relays[1].upstream_url()).as_deref(),
            Some("url-s3cret")
        );
        assert_eq!(
            url(c.pushes[0].target_url()).as_deref(),
            Some("push-s3cret")
        );
        let master = c.master.as_ref().expect("master");
        assert_eq!(url(master.master_url()).as_deref(), Some("master-s3cret"));
        assert_eq!(
            pw(&c.settings_for("/c.ogg").listener_auth_password).as_deref(),
            Some("hook-s3cret")
        );
        assert!(debug_has_no_secret(&c.settings_for("/d.ogg")));
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("relay:***@up.example"), "{debug}");
        // A password is printed by no `Debug` on the way to a connection either.
        let debug = format!("{:?}", c.policy_for("/b.ogg"));
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn a_remove_url_goes_with_its_gates_auth_url() {
        let c = Config::from_toml(
            r#"
            [mount-defaults]
            listener-auth-url = "http://hook.example/add"
            listener-remove-url = "http://hook.example/remove"
            [[mount]]
            path = "/own.ogg"
            listener-auth-url = "http://other.example/add"
            [[mount]]
            path = "/plain.ogg"
            "#,
        )
        .expect("parses");
        c.validate().expect("valid");
        let remove = |p: &str| c.settings_for(p).listener_remove_url.map(|u| u.0);
        // A mount's own gate replaces the defaults' whole, remove URL included.
        assert_eq!(remove("/own.ogg"), None);
        assert_eq!(
            remove("/plain.ogg").as_deref(),
            Some("http://hook.example/remove")
        );
        for (toml, says) in [
            (
                "[mount-defaults]\nlistener-remove-url = \"http://h/remove\"",
                "mount-defaults: listener-remove-url is set without listener-auth-url",
            ),
            (
                "[mount-defaults]\nlistener-auth-url = \"http://h/add\"\n\
                 [[mount]]\npath = \"/a.ogg\"\nlistener-remove-url = \"http://h/remove\"",
                "/a.ogg: listener-remove-url is set without listener-auth-url",
            ),
            (
                "[[mount]]\npath = \"/a.ogg\"\nlistener-htpasswd = \"/nonexistent\"\n\
                 listener-remove-url = \"http://h/remove\"",
                "/a.ogg: listener-remove-url goes with listener-auth-url, not listener-htpasswd",
            ),
            (
                "[[mount]]\npath = \"/a.ogg\"\nlistener-auth-url = \"http://h/add\"\n\
                 listener-remove-url = \"ftp://h/remove\"",
                "/a.ogg: listener-remove-url: ",
            ),
        ] {
            let err = Config::from_toml(toml)
                .expect("parses")
                .validate()
                .expect_err(toml)
                .to_string();
            assert!(err.contains(says), "{toml}: {err}");
        }
    }

    fn debug_has_no_secret(s: &MountSettings) -> bool {
        let debug = format!("{s:?}");
        !debug.contains("s3cret") && debug.contains("agora:***@hook.example")
    }

    #[test]
    fn a_password_given_twice_or_a_bad_file_is_refused_by_name() {
        let dir = secrets_dir("bad");
        std::fs::write(dir.join("ok.pw"), "s3cret\n").expect("write");
        std::fs::write(dir.join("empty.pw"), "").expect("write");
        std::fs::write(dir.join("lines.pw"), "s3cret\nand more\n").expect("write");
        for (toml, says) in [
            (
                "[auth]\nsource-password = \"s3cret\"\nsource-password-file = \"ok.pw\"",
                "[auth]: source-password and source-password-file are both set",
            ),
            (
                "[auth]\nadmin-password-file = \"empty.pw\"",
                "[auth]: admin-password-file: ",
            ),
            (
                "[auth]\nrelay-password-file = \"lines.pw\"",
                "[auth]: relay-password-file: ",
            ),
            (
                "[auth]\nsource-password-file = \"missing.pw\"",
                "[auth]: source-password-file: cannot read",
            ),
            (
                "[[mount]]\npath = \"/a.ogg\"\npassword = \"x\"\npassword-file = \"ok.pw\"",
                "[[mount]] /a.ogg: password and password-file are both set",
            ),
            (
                "[[mount]]\npath = \"/a.ogg\"\npassword-file = \"empty.pw\"",
                "[[mount]] /a.ogg: password-file: ",
            ),
            (
                "[[push]]\nmount = \"/a\"\ntarget = \"http://source:s3cret@h/a\"\npassword-file = \"ok.pw\"",
                "[[push]] http://source:***@h/a: the URL has a password and password-file is set",
            ),
            (
                "[[relay]]\nupstream = \"http://u:s3cret@h/a\"\npassword-file = \"ok.pw\"",
                "[[relay]] http://u:***@h/a: the URL has a password",
            ),
            (
                "[master]\nurl = \"http://relay@h/\"\npassword-file = \"lines.pw\"",
                "[master] http://relay@h/: password-file: ",
            ),
        ] {
            let path = dir.join("agora.toml");
            std::fs::write(&path, toml).expect("write");
            let e = Config::from_file(&path).expect_err(toml).to_string();
            assert!(e.contains(says), "{toml}\n{e}");
            assert!(!e.contains("s3cret") && !e.contains("more"), "{toml}\n{e}");
            if says.ends_with("-file: ") {
                assert!(
                    e.contains(&dir.display().to_string()),
                    "names the file: {e}"
                );
            }
        }
    }

    #[test]
    fn toml_errors_say_where_without_quoting_the_line() {
        for (toml, line, says) in [
            ("[auth]\nsource-pasword = \"s3cret\"", 2, "unknown field"),
            ("[auth]\nsource-password = \"s3cret", 2, ""),
            (
                "[auth]\nsource-password = 12345678",
                2,
                "a password in quotes",
            ),
            ("[auth]\nadmin-password = \"s3c\\qret\"", 2, ""),
            ("[[mount]]\npath = \"/a\"\npassword = s3cret", 3, ""),
            (
                "[[push]]\nmount = \"/a\"\ntarget = \"http://s:s3cret@h/a\"\nx = 1",
                4,
                "unknown field",
            ),
        ] {
            let e = Config::from_toml(toml).expect_err(toml).to_string();
            assert!(e.contains(&format!("line {line}, column")), "{toml}\n{e}");
            assert!(e.contains(says), "{toml}\n{e}");
            assert!(!e.contains("s3c") && !e.contains("1234"), "{toml}\n{e}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        for (toml, key) in [
            (
                "[[mount]]
path = \"/a\"
max-listeners = \"many\"",
                "(max-listeners)",
            ),
            (
                "[server]
  max-mounts =  -1",
                "(max-mounts)",
            ),
            (
                "[auth]
source-password = 12345678",
                "(source-password)",
            ),
        ] {
            let e = Config::from_toml(toml).expect_err(toml).to_string();
            assert!(e.contains(key), "{toml}\n{e}");
            assert!(!e.contains("1234"), "{toml}\n{e}");
        }
    }

    #[test]
    fn an_edge_announces_an_http_host_and_port_only() {
        let master = |announce: &str| {
            Config::from_toml(&format!(
                "[master]\nurl = \"http://relay:pw@origin:8000/\"\nannounce = \"{announce}\""
            ))
            .expect("parses")
        };
        let ok = master("http://edge-1.example.org:8001");
        ok.validate().expect("valid");
        let addr = ok.master.as_ref().map(MasterConfig::announce_addr);
        assert_eq!(
            addr.expect("master").expect("valid"),
            Some(("edge-1.example.org".to_string(), 8001))
        );
        let v6 = master("http://[::1]:8002").master.expect("master");
        assert_eq!(
            v6.announce_addr().expect("valid"),
            Some(("::1".into(), 8002))
        );
        for (bad, why) in [
            ("https://edge:8001", "only http://"),
            ("http://edge:8001/live.ogg", "no path"),
            ("http://edge:8001/?x=1", "no path"),
            ("http://user@edge:8001", "no path"),
            ("edge:8001", "expected http://host:port"),
        ] {
            let e = master(bad).validate().expect_err(bad).to_string();
            assert!(
                e.contains(why) && e.contains("master.announce"),
                "{bad}: {e}"
            );
        }
    }

    /// Two MPEG-1 layer III frames (128 kbit/s, 44.1 kHz, 417 bytes each) of silence.
    fn mp3_frames() -> Vec<u8> {
        let mut frame = vec![0u8; 417];
        frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        [frame.clone(), frame.clone(), frame].concat()
    }

    #[test]
    fn media_files_are_read_beside_the_config_and_checked_by_format() {
        let dir = secrets_dir("media");
        std::fs::write(dir.join("slate.mp3"), mp3_frames()).expect("file");
        let cfg = dir.join("agora.toml");
        std::fs::write(
            &cfg,
            "[[mount]]\npath = \"/slate.mp3\"\nloop-file = \"slate.mp3\"\nintro = \"slate.mp3\"\n",
        )
        .expect("config");
        let c = Config::from_file(&cfg).expect("loads");
        c.validate().expect("valid");
        let (path, media) = c.loop_files().next().expect("a loop-file");
        assert_eq!(path, "/slate.mp3");
        assert_eq!(media.path, dir.join("slate.mp3"));
        let p = c.policy_for("/slate.mp3");
        let intro = p.intro.expect("an intro");
        assert_eq!(intro.bytes.len(), 3 * 417);
        // Debug shows the file, never its bytes.
        let shown = format!("{c:?}");
        assert!(shown.contains("slate.mp3") && shown.len() < 4096, "{shown}");

        std::fs::write(
            &cfg,
            "[[mount]]\npath = \"/slate.ogg\"\nloop-file = \"slate.mp3\"\n",
        )
        .expect("config");
        let err = Config::from_file(&cfg)
            .expect("loads")
            .validate()
            .expect_err("another format")
            .to_string();
        assert!(err.contains("is Mp3, the mount's name says Ogg"), "{err}");
        std::fs::write(&cfg, "[[mount]]\npath = \"/a.mp3\"\nintro = \"none.mp3\"\n")
            .expect("config");
        let err = Config::from_file(&cfg).expect_err("missing").to_string();
        assert!(
            err.contains("mount /a.mp3: intro ") && err.contains("cannot read it"),
            "{err}"
        );
    }

    #[test]
    fn fallbacks_are_checked_by_path_format_and_chain() {
        let c = Config::from_toml(
            "[mount-defaults]\nfallback-when-full = true\n[[mount]]\npath = \"/live.opus\"\nfallback = \"/standby.ogg\"\nfallback-override = false\n[[mount]]\npath = \"/standby.ogg\"\nfallback = \"/slate\"\n",
        )
        .expect("parses");
        c.validate()
            .expect("a chain of two, formats by name alike or unknown");
        let p = c.policy_for("/live.opus");
        assert_eq!(p.fallback.as_deref(), Some("/standby.ogg"));
        assert!(!p.settings.fallback_override && p.settings.fallback_when_full);
        let other = c.policy_for("/other");
        assert!(other.fallback.is_none() && other.settings.fallback_override);
        assert_eq!(c.fallbacks().len(), 2);
        let chain: String = (0..=MAX_FALLBACK_DEPTH)
            .map(|i| format!("[[mount]]\npath = \"/m{i}\"\nfallback = \"/m{}\"\n", i + 1))
            .collect();
        for (toml, says) in [
            (
                "[[mount]]\npath = \"/a\"\nfallback = \"/a\"",
                "the fallback is the mount itself",
            ),
            (
                "[[mount]]\npath = \"/a\"\nfallback = \"a\"",
                "fallback \"a\": a mount path",
            ),
            (
                "[[mount]]\npath = \"/a.mp3\"\nfallback = \"/b.AAC\"",
                "another format (Aac",
            ),
            (
                "[[mount]]\npath = \"/a\"\nfallback = \"/b\"\n[[mount]]\npath = \"/b\"\nfallback = \"/c\"\n[[mount]]\npath = \"/c\"\nfallback = \"/b\"",
                "the fallbacks loop: /a -> /b -> /c -> /b",
            ),
            (chain.as_str(), "more than 10 fallbacks in a row"),
        ] {
            let e = Config::from_toml(toml)
                .expect("parses")
                .validate()
                .expect_err(toml);
            assert!(e.to_string().contains(says), "{toml}\n{e}");
        }
    }

    #[test]
    fn coalescing_is_bounded_and_overridable_per_mount() {
        let c = Config::from_toml("[mount-defaults]\ncoalesce-ms = 1001").expect("parses");
        let e = c.validate().expect_err("too long").to_string();
        assert!(e.contains("coalesce-ms"), "{e}");
        let c = Config::from_toml(
            "[[mount]]\npath = \"/low.mp3\"\ncoalesce-ms = 0\nredirect = \"always\"",
        )
        .expect("parses");
        c.validate().expect("valid");
        let s = c.settings_for("/low.mp3");
        assert_eq!((s.coalesce_ms, s.redirect), (0, RedirectMode::Always));
        let d = c.settings_for("/other");
        assert_eq!(
            (d.coalesce_ms, d.coalesce_bytes, d.redirect),
            (
                DEFAULT_COALESCE_MS,
                DEFAULT_COALESCE_BYTES,
                RedirectMode::WhenFull
            )
        );
    }
}
