//! Listener authentication: a mount's gate, an htpasswd file of bcrypt hashes
//! (`listener-htpasswd`) or a URL asked as Icecast's url authentication asks its
//! `listener_add` URL (`listener-auth-url`). `egress::listener` asks the gate of a mount
//! before anything else (an unauthenticated listener takes no slot), through
//! `Shared::login_awaited`, so wrong credentials count towards the per-address ban and a
//! banned address is refused before its credentials are looked at.
//!
//! **The file.** A listener's `Authorization: Basic` is checked against the file's bcrypt
//! hash of its user; an unknown user costs a bcrypt too (against a fixed hash), so the answer
//! time does not say which users exist. The file is read again when its size, inode or
//! modification time changes (looked at on each check that needs a bcrypt); a file that no
//! longer parses is logged and the users read last stay in force.
//!
//! **The URL.** A form is POSTed: `action=listener_add&server=&port=&client=&mount=&user=
//! &pass=&ip=&agent=` (Icecast 2.4's fields and order; `mount` is the request's path and
//! query as sent, `agent` `-` when there is none). As in Icecast, the answer lets the listener
//! in when it has the header `icecast-auth-user: 1`, whatever its status, and its
//! `icecast-auth-message` is logged. Unlike Icecast (which answers 401), a URL that does not
//! answer within `listener-auth-timeout-secs`, or cannot be reached, makes the listener's
//! answer `503`: the listener did nothing wrong, so it is not counted towards a ban and a
//! player does not ask its user for a password. A granting answer's
//! `icecast-auth-timelimit: N` (seconds) ends the listener N seconds after the grant
//! ([`Grant::ends`]; `egress::listener` keeps the time); any other value is logged and ignored.
//!
//! **The remove.** With `listener-remove-url`, each listener the URL let in has a
//! [`Departure`]: when the listener's connection ends, however it ends, `egress::listener`
//! sends its `action=listener_remove&server=&port=&client=&mount=&user=&pass=&duration=&ip=
//! &agent=` (the fields of its `listener_add`, and `duration`, whole seconds since the
//! grant); the answer is not read beyond its head. Such a gate caches no grant: every
//! connection is asked for, as Icecast asks, so that every remove has its add.
//!
//! **Architecture invariants:**
//! - *bcrypt never runs on the runtime's workers:* it runs in `spawn_blocking`, at most one
//!   per core at a time (a semaphore in front); a listener that waits longer than the
//!   timeout for a slot gets `503`. Likewise at most [`HOOK_REQUESTS`] requests to a URL are
//!   in flight per gate. So a flood of logins queues no unbounded work: waiting listeners are
//!   connections, which the server's own limits bound.
//! - *Grants are cached:* a listener let in is let in again without a bcrypt or a request
//!   for `listener-auth-cache-secs`, keyed by an HMAC-SHA256 (key random at start) of the
//!   user and password (and, for the URL, the mount and the address): no password is kept.
//!   At most [`CACHE_MAX`] entries per gate; a full cache takes no more until some expire.
//!   So a user removed from the file may still come in for that long. A grant with a time
//!   limit keeps its deadline in the cache (reconnecting does not restart the clock) and is
//!   forgotten at it. Not with a remove URL (above).
//! - *A remove is bounded and sent once:* one per [`Departure`], which only an answered
//!   `listener_add` makes (never a cached grant, nor a relay or an admin, who pass no gate);
//!   it waits for one of the gate's [`HOOK_REQUESTS`] slots and the answer within
//!   `listener-auth-timeout-secs` in all, and a failure is only logged: no listener, join or
//!   shutdown waits for a remove beyond that (a graceful shutdown waits for the removes
//!   under way, each bounded so).
//! - Locks are leaves: the cache's and the file's are held for a lookup or an insert only,
//!   never across a bcrypt, a request or an await.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_client::{Endpoint, ServerUrl};
use tokio::sync::Semaphore;

use crate::config::{Config, MountSettings};
use crate::htpasswd::{self, Users};
use crate::logging::{self, About, Limiter, shown};
use crate::sync::Mutex;

/// Most grants a gate remembers.
pub(crate) const CACHE_MAX: usize = 16_384;
/// Most requests to a gate's URLs in flight at once, adds and removes together.
pub(crate) const HOOK_REQUESTS: usize = 64;
/// The hash an unknown user's password is checked against (cost 10, of a random password):
/// as slow as a real user's, so timing does not tell users apart.
const UNKNOWN_USER_HASH: &str = "$2b$10$y7IcBaStjxETR9U.J8Ak3uz1JNpdvNx.0yS0YfAQ9bPbTHXDumhH6";

/// Every mount's gate, made at start and again by each reload: the `[[mount]]`s with one of their own, and
/// `[mount-defaults]`' for every other mount.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    by_mount: HashMap<String, Arc<Gate>>,
    defaults: Option<Arc<Gate>>,
}

impl Gates {
    pub(crate) fn new(config: &Config) -> Gates {
        let bcrypt_slots = Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ));
        let gate = |what: &str, s: &MountSettings| Gate::new(what, s, &bcrypt_slots).map(Arc::new);
        Gates {
            defaults: gate("[mount-defaults]", &config.mount_defaults),
            by_mount: config
                .mounts
                .iter()
                .filter(|m| m.has_own_gate())
                .filter_map(|m| {
                    Some((
                        m.path.clone(),
                        gate(&m.path, &config.settings_for(&m.path))?,
                    ))
                })
                .collect(),
        }
    }

    /// The gate of the mount at `path`, if its listeners must log in.
    pub(crate) fn for_mount(&self, path: &str) -> Option<Arc<Gate>> {
        self.by_mount.get(path).or(self.defaults.as_ref()).cloned()
    }
}

/// What a listener brings to a gate.
#[derive(Debug)]
pub(crate) struct Ask<'a> {
    /// From `Authorization: Basic`.
    pub(crate) credentials: Option<(String, String)>,
    /// The request's path and query, as sent.
    pub(crate) target: &'a str,
    pub(crate) ip: IpAddr,
    pub(crate) agent: &'a str,
    /// The listener's id (as `listclients` shows it).
    pub(crate) client: u64,
    /// This server's host name and port, for the URL's `server` and `port`.
    pub(crate) server: &'a str,
    pub(crate) port: u16,
}

/// Why a gate could not decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Every slot stayed taken for the whole timeout.
    Busy,
    /// The URL did not answer in time.
    Timeout,
    /// The URL could not be asked (connection refused, not HTTP, ...).
    Failed(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Busy => f.write_str("too many logins at once"),
            Unavailable::Timeout => f.write_str("the authentication URL did not answer in time"),
            Unavailable::Failed(why) => write!(f, "the authentication URL failed: {why}"),
        }
    }
}

/// A listener let in by a gate.
#[derive(Default)]
pub(crate) struct Grant {
    /// When the listener must be gone: the URL's `icecast-auth-timelimit` after its answer
    /// (a grant from the cache keeps the deadline of the answer it remembers).
    pub(crate) ends: Option<Instant>,
    /// Let in by an answer of a gate with a `listener-remove-url`: its remove, to send when it
    /// leaves.
    pub(crate) departure: Option<Departure>,
}

/// One mount's (or the defaults') listener authentication.
pub(crate) struct Gate {
    /// Whose gate: a mount's path or `[mount-defaults]` (logs name it; bounded logs key by it).
    what: Box<str>,
    kind: Kind,
    timeout: Duration,
    cache_for: Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    cache_key: ring::hmac::Key,
    /// What bounds the work in flight: bcrypt slots (shared by every gate) or requests (adds
    /// and removes alike).
    slots: Arc<Semaphore>,
}

enum Kind {
    File(Htpasswd),
    Url {
        add: Endpoint,
        /// Boxed: most gates have none.
        remove: Option<Box<Endpoint>>,
    },
}

/// A remembered grant.
#[derive(Debug, Clone, Copy)]
struct Cached {
    /// Forgotten then (`listener-auth-cache-secs` after it was made) ...
    until: Instant,
    /// ... or at its time limit, which a listener let in from the cache keeps.
    ends: Option<Instant>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::File(h) => format!("htpasswd {}", h.path.display()),
            Kind::Url { add, remove: None } => format!("url {}", add.url),
            Kind::Url {
                add,
                remove: Some(r),
            } => format!("url {}, remove {}", add.url, r.url),
        };
        f.debug_struct("Gate")
            .field("what", &self.what)
            .field("kind", &kind)
            .field("timeout", &self.timeout)
            .field("cache_for", &self.cache_for)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// The gate `s` asks for, if any (`what` names it in logs).
    fn new(what: &str, s: &MountSettings, bcrypt_slots: &Arc<Semaphore>) -> Option<Gate> {
        let (kind, slots) = if let Some(path) = &s.listener_htpasswd {
            (
                Kind::File(Htpasswd::new(path.clone())),
                bcrypt_slots.clone(),
            )
        } else {
            let url = match s.listener_auth_url.as_ref()?.parse() {
                Ok(url) => url,
                Err(e) => {
                    tracing::error!(mount = what, "listener-auth-url: {e}");
                    return None;
                }
            };
            let password = s.listener_auth_password.as_deref();
            let remove = match s.listener_remove_url.as_ref().map(|u| u.parse()) {
                None => None,
                Some(Ok(r)) => Some(Box::new(endpoint(
                    what,
                    "listener-remove-url",
                    ServerUrl::or_credentials_of(r, &url),
                    password,
                ))),
                Some(Err(e)) => {
                    // Listeners are still let in; this line says why no remove is sent.
                    tracing::error!(mount = what, "listener-remove-url: {e}");
                    None
                }
            };
            let add = endpoint(what, "listener-auth-url", url, password);
            (
                Kind::Url { add, remove },
                Arc::new(Semaphore::new(HOOK_REQUESTS)),
            )
        };
        // Every grant of a gate with a remove URL is asked for: each add has its remove.
        let cache_for = match &kind {
            Kind::Url {
                remove: Some(_), ..
            } => Duration::ZERO,
            _ => Duration::from_secs(s.listener_auth_cache_secs),
        };
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        Some(Gate {
            what: what.into(),
            kind,
            timeout: Duration::from_secs(s.listener_auth_timeout_secs),
            cache_for,
            cache: Mutex::new(HashMap::new()),
            cache_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            slots,
        })
    }

    /// Whether the listener may in: `Ok(Some)` granted, `Ok(None)` refused (wrong or missing
    /// credentials, or the URL said no), `Err` when the gate could not decide in time. `logs`
    /// bounds what an answer makes the server log.
    pub(crate) async fn check(
        self: &Arc<Self>,
        ask: Ask<'_>,
        logs: &Limiter,
    ) -> Result<Option<Grant>, Unavailable> {
        let key = self.cache_key(&ask);
        if let Some(ends) = self.cached(&key) {
            return Ok(Some(Grant {
                ends,
                departure: None,
            }));
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let grant = match &self.kind {
            Kind::File(file) => {
                // No credentials: nothing to check (and no bcrypt spent).
                let Some((user, pass)) = ask.credentials else {
                    return Ok(None);
                };
                let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
                    .await
                    .map_err(|_| Unavailable::Busy)?
                    .map_err(|_| Unavailable::Busy)?;
                let file = file.clone();
                tokio::task::spawn_blocking(move || file.verify(&user, &pass))
                    .await
                    .map_err(|e| Unavailable::Failed(format!("the check failed: {e}")))?
                    .then(Grant::default)
            }
            Kind::Url {
                add: endpoint,
                remove,
            } => {
                let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
                    .await
                    .map_err(|_| Unavailable::Busy)?
                    .map_err(|_| Unavailable::Busy)?;
                let form = listener_add(&ask);
                let answer =
                    tokio::time::timeout_at(deadline, agora_client::form::post(endpoint, &form))
                        .await
                        .map_err(|_| Unavailable::Timeout)?
                        .map_err(|e| Unavailable::Failed(e.to_string()))?;
                let granted = answer.header("icecast-auth-user").is_some_and(|v| v == "1");
                // Bounded: an address asking again and again without credentials is never
                // banned (only wrong credentials count), so it could fill the log.
                if !granted && logs.admit(logging::Kind::ListenerRefused, About::Peer(ask.ip)) {
                    tracing::info!(
                        client = ask.client,
                        ip = %ask.ip,
                        target = ask.target,
                        status = answer.code,
                        message = answer.header("icecast-auth-message").unwrap_or(""),
                        "listener refused by the authentication URL"
                    );
                }
                if !granted {
                    return Ok(None);
                }
                // The listener's clock starts here, for its time limit and its remove.
                let now = Instant::now();
                let ends = answer
                    .header("icecast-auth-timelimit")
                    .and_then(|v| self.time_limit(v, logs))
                    .and_then(|limit| now.checked_add(limit));
                Some(Grant {
                    ends,
                    departure: remove
                        .is_some()
                        .then(|| Departure::new(self.clone(), &ask, now)),
                })
            }
        };
        if let Some(grant) = &grant {
            self.remember(key, grant.ends);
        }
        Ok(grant)
    }

    /// An answer's `icecast-auth-timelimit`: whole seconds, more than zero. Anything else is
    /// logged (bounded: the URL may say it to every listener) and ignored, as if absent.
    fn time_limit(&self, value: &str, logs: &Limiter) -> Option<Duration> {
        match value.parse::<u64>() {
            Ok(secs) if secs > 0 => Some(Duration::from_secs(secs)),
            _ => {
                if logs.admit(logging::Kind::AuthAnswer, About::Mount(&self.what)) {
                    tracing::warn!(
                        mount = %self.what,
                        value = %shown(value),
                        "icecast-auth-timelimit is not a positive number of seconds: ignored"
                    );
                }
                None
            }
        }
    }

    /// POST a listener's `listener_remove` form: within the gate's timeout, its wait for one
    /// of the gate's request slots included. The answer's head is read and not looked at (as
    /// Icecast, which asks nothing of it); only a failure to deliver is an error.
    async fn remove(&self, form: &str) -> Result<(), Unavailable> {
        let Kind::Url {
            remove: Some(endpoint),
            ..
        } = &self.kind
        else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let busy = || Unavailable::Failed("no request slot came free in time".into());
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        tokio::time::timeout_at(deadline, agora_client::form::post(endpoint, form))
            .await
            .map_err(|_| Unavailable::Timeout)?
            .map_err(|e| Unavailable::Failed(e.to_string()))?;
        Ok(())
    }

    /// The cache's key for this listener: an HMAC of what a grant depends on.
    fn cache_key(&self, ask: &Ask<'_>) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.cache_key);
        let (user, pass) = ask
            .credentials
            .as_ref()
            .map_or(("", ""), |(u, p)| (u.as_str(), p.as_str()));
        // Lengths first: no two different tuples give the same bytes.
        let mut field = |b: &[u8]| {
            ctx.update(&(b.len() as u64).to_le_bytes());
            ctx.update(b);
        };
        field(&[u8::from(ask.credentials.is_some())]);
        field(user.as_bytes());
        field(pass.as_bytes());
        if let Kind::Url { .. } = self.kind {
            field(ask.target.as_bytes());
            field(ask.ip.to_string().as_bytes());
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// A remembered grant for `key`, as the time limit it keeps (`Some(None)`: none).
    fn cached(&self, key: &[u8; 32]) -> Option<Option<Instant>> {
        if self.cache_for.is_zero() {
            return None;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock();
        match cache.get(key) {
            Some(c) if c.live(now) => Some(c.ends),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: [u8; 32], ends: Option<Instant>) {
        if self.cache_for.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.live(now));
            if cache.len() >= CACHE_MAX {
                return;
            }
        }
        cache.insert(
            key,
            Cached {
                until: now + self.cache_for,
                ends,
            },
        );
    }

    /// Grants remembered (expired ones included until they are looked at).
    #[cfg(test)]
    fn cache_len(&self) -> usize {
        self.cache.lock().len()
    }
}

impl Cached {
    fn live(&self, now: Instant) -> bool {
        self.until > now && self.ends.is_none_or(|ends| ends > now)
    }
}

/// The endpoint of a gate's URL; `key` names it in the log line of a TLS setup that failed
/// (every request to it then fails, and that line says why).
fn endpoint(what: &str, key: &str, url: ServerUrl, password: Option<&str>) -> Endpoint {
    let mut e = match Endpoint::with_system_roots(url.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(mount = what, "{key}: {e}");
            Endpoint::new(url)
        }
    };
    e.password = password.map(str::to_string);
    e
}

/// A listener the URL let in, until it leaves: what its `listener_remove` says. Made by
/// [`Gate::check`] with the answer; `egress::listener` holds it with the listener's session
/// and sends it ([`Departure::leave`]) when the connection ends.
pub(crate) struct Departure {
    gate: Arc<Gate>,
    /// The form before and after its `duration`, which only the end knows.
    head: String,
    tail: String,
    granted: Instant,
    client: u64,
}

impl fmt::Debug for Departure {
    /// Without the form: it holds the listener's password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Departure")
            .field("gate", &self.gate.what)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Departure {
    fn new(gate: Arc<Gate>, ask: &Ask<'_>, granted: Instant) -> Departure {
        let (head, tail) = form("listener_remove", ask);
        Departure {
            gate,
            head,
            tail,
            granted,
            client: ask.client,
        }
    }

    /// The remove's form after `duration` seconds.
    fn form(&self, duration: u64) -> String {
        format!("{}&duration={duration}&{}", self.head, self.tail)
    }

    /// The listener leaves now: its remove (`duration` counted to now), to be sent. Bounded in
    /// time, see [`Gate::remove`].
    pub(crate) fn leave(
        self,
    ) -> impl std::future::Future<Output = Result<(), Unavailable>> + Send + 'static {
        let form = self.form(self.granted.elapsed().as_secs());
        async move { self.gate.remove(&form).await }
    }

    /// Whose gate (a mount's path, or `[mount-defaults]`).
    pub(crate) fn gate(&self) -> &str {
        &self.gate.what
    }

    /// The listener's id.
    pub(crate) fn client(&self) -> u64 {
        self.client
    }
}

/// The form Icecast 2.4's url authentication POSTs for a new listener, in its order.
fn listener_add(ask: &Ask<'_>) -> String {
    let (head, tail) = form("listener_add", ask);
    format!("{head}&{tail}")
}

/// Icecast 2.4's form for `action` about a listener, in its order, cut where a remove has its
/// `duration`: (`action` to `pass`, `ip` and `agent`).
fn form(action: &str, ask: &Ask<'_>) -> (String, String) {
    let (user, pass) = ask
        .credentials
        .as_ref()
        .map_or(("", ""), |(u, p)| (u.as_str(), p.as_str()));
    let head = form_urlencoded::Serializer::new(String::new())
        .append_pair("action", action)
        .append_pair("server", ask.server)
        .append_pair("port", &ask.port.to_string())
        .append_pair("client", &ask.client.to_string())
        .append_pair("mount", ask.target)
        .append_pair("user", user)
        .append_pair("pass", pass)
        .finish();
    let tail = form_urlencoded::Serializer::new(String::new())
        .append_pair("ip", &ask.ip.to_string())
        .append_pair("agent", if ask.agent.is_empty() { "-" } else { ask.agent })
        .finish();
    (head, tail)
}

/// An htpasswd file and the users read from it last.
#[derive(Clone)]
struct Htpasswd {
    path: PathBuf,
    state: Arc<Mutex<FileState>>,
}

#[derive(Default)]
struct FileState {
    /// Size, inode and modification time of the file the users come from.
    seen: Option<(u64, u64, std::time::SystemTime)>,
    users: Arc<Users>,
}

impl Htpasswd {
    fn new(path: PathBuf) -> Htpasswd {
        Htpasswd {
            path,
            state: Arc::new(Mutex::new(FileState::default())),
        }
    }

    /// Whether `pass` is `user`'s password: blocking (a file read when it changed, a bcrypt).
    fn verify(&self, user: &str, pass: &str) -> bool {
        let users = self.users();
        let hash = users.hash(user);
        let ok = bcrypt::verify(pass, hash.unwrap_or(UNKNOWN_USER_HASH)).unwrap_or(false);
        ok && hash.is_some()
    }

    /// The users, read again if the file changed. Blocking.
    fn users(&self) -> Arc<Users> {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(&self.path).ok().map(|m| {
            (
                m.len(),
                m.ino(),
                m.modified().unwrap_or(std::time::UNIX_EPOCH),
            )
        });
        {
            let state = self.state.lock();
            if now.is_none() || state.seen == now {
                return state.users.clone();
            }
        }
        // Read outside the lock: two checks may both read a changed file, and both results
        // are the same.
        match htpasswd::load(&self.path) {
            Ok(users) => {
                let users = Arc::new(users);
                tracing::info!(file = %self.path.display(), users = users.len(), "listener-htpasswd read");
                let mut state = self.state.lock();
                state.seen = now;
                state.users = users.clone();
                users
            }
            Err(e) => {
                let mut state = self.state.lock();
                if state.seen != now {
                    tracing::error!("listener-htpasswd: {e}; the users read before stay in force");
                    // Said once per change of the file.
                    state.seen = now;
                }
                state.users.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(credentials: Option<(&str, &str)>) -> Ask<'static> {
        Ask {
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            target: "/hall-a.ogg?x=1",
            ip: "192.0.2.7".parse().expect("ip"),
            agent: "",
            client: 7,
            server: "stream.example.org",
            port: 8000,
        }
    }

    #[test]
    fn the_form_is_icecasts() {
        assert_eq!(
            listener_add(&ask(Some(("al ice", "p&ss")))),
            "action=listener_add&server=stream.example.org&port=8000&client=7\
             &mount=%2Fhall-a.ogg%3Fx%3D1&user=al+ice&pass=p%26ss&ip=192.0.2.7&agent=-"
        );
    }

    #[test]
    fn the_remove_form_is_icecasts() {
        let settings = MountSettings {
            listener_auth_url: Some(crate::config::AuthUrl("http://h/add".into())),
            listener_remove_url: Some(crate::config::AuthUrl("http://h/remove".into())),
            ..MountSettings::default()
        };
        let gate = Gate::new("/t", &settings, &Arc::new(Semaphore::new(1))).expect("a gate");
        assert!(
            gate.cache_for.is_zero(),
            "a gate with a remove caches nothing"
        );
        let departure = Departure::new(
            Arc::new(gate),
            &ask(Some(("al ice", "p&ss"))),
            Instant::now(),
        );
        assert_eq!(
            departure.form(61),
            "action=listener_remove&server=stream.example.org&port=8000&client=7\
             &mount=%2Fhall-a.ogg%3Fx%3D1&user=al+ice&pass=p%26ss&duration=61&ip=192.0.2.7&agent=-"
        );
        assert!(!format!("{departure:?}").contains("p%26ss"));
    }

    #[test]
    fn a_cached_grant_keeps_its_time_limit_and_is_forgotten_at_it() {
        let settings = MountSettings {
            listener_auth_url: Some(crate::config::AuthUrl("http://h/add".into())),
            ..MountSettings::default()
        };
        let gate = Gate::new("/t", &settings, &Arc::new(Semaphore::new(1))).expect("a gate");
        let now = Instant::now();
        let (a, b) = ([1; 32], [2; 32]);
        gate.remember(a, Some(now + Duration::from_secs(60)));
        gate.remember(b, Some(now));
        assert_eq!(gate.cached(&a), Some(Some(now + Duration::from_secs(60))));
        assert_eq!(gate.cached(&b), None, "past its time limit");
        assert_eq!(gate.cache_len(), 1);
    }

    #[test]
    fn a_time_limit_is_a_positive_number_of_seconds() {
        let settings = MountSettings {
            listener_auth_url: Some(crate::config::AuthUrl("http://h/add".into())),
            ..MountSettings::default()
        };
        let gate = Gate::new("/t", &settings, &Arc::new(Semaphore::new(1))).expect("a gate");
        let logs = Limiter::default();
        assert_eq!(gate.time_limit("3", &logs), Some(Duration::from_secs(3)));
        for bad in ["0", "-3", "3.5", "", "soon", "99999999999999999999"] {
            assert_eq!(gate.time_limit(bad, &logs), None, "{bad:?}");
        }
    }

    #[test]
    fn the_unknown_users_hash_is_a_valid_bcrypt_hash() {
        assert!(bcrypt::verify("anything", UNKNOWN_USER_HASH).is_ok());
    }

    #[tokio::test]
    async fn a_file_gate_checks_bcrypt_off_the_runtime_caches_grants_and_rereads_the_file() {
        let dir = std::env::temp_dir().join(format!("agora-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("users");
        let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 4).expect("hash"));
        std::fs::write(&path, line("alice", "secret")).expect("write");
        let settings = MountSettings {
            listener_htpasswd: Some(path.clone()),
            ..MountSettings::default()
        };
        let gate =
            Arc::new(Gate::new("/t", &settings, &Arc::new(Semaphore::new(1))).expect("a gate"));
        let logs = Limiter::default();
        let check = async |login: Option<(&str, &str)>| {
            gate.check(ask(login), &logs)
                .await
                .map(|g| g.is_some_and(|g| g.ends.is_none() && g.departure.is_none()))
        };
        assert_eq!(check(None).await, Ok(false));
        assert_eq!(check(Some(("alice", "nope"))).await, Ok(false));
        assert_eq!(check(Some(("mallory", "secret"))).await, Ok(false));
        assert_eq!(gate.cache_len(), 0, "refusals are not cached");
        assert_eq!(check(Some(("alice", "secret"))).await, Ok(true));
        assert_eq!(gate.cache_len(), 1);
        assert_eq!(check(Some(("alice", "secret"))).await, Ok(true));
        // A user added later is let in without a restart; a damaged file keeps the users.
        std::fs::write(
            &path,
            format!("{}{}", line("alice", "secret"), line("bob", "pw")),
        )
        .expect("write");
        assert_eq!(check(Some(("bob", "pw"))).await, Ok(true));
        std::fs::write(&path, "bob:$apr1$xyz\n").expect("write");
        assert_eq!(check(Some(("bob", "pw2"))).await, Ok(false));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
