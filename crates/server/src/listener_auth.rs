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
//! player does not ask its user for a password. Icecast's `icecast-auth-timelimit` is not
//! applied.
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
//!   So a user removed from the file may still come in for that long.
//! - Locks are leaves: the cache's and the file's are held for a lookup or an insert only,
//!   never across a bcrypt, a request or an await.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_client::Endpoint;
use tokio::sync::Semaphore;

use crate::config::{Config, MountSettings};
use crate::htpasswd::{self, Users};
use crate::sync::Mutex;

/// Most grants a gate remembers.
pub(crate) const CACHE_MAX: usize = 16_384;
/// Most requests to a gate's URL in flight at once.
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
                .filter(|m| m.listener_htpasswd.is_some() || m.listener_auth_url.is_some())
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

/// One mount's (or the defaults') listener authentication.
pub(crate) struct Gate {
    kind: Kind,
    timeout: Duration,
    cache_for: Duration,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    cache_key: ring::hmac::Key,
    /// What bounds the work in flight: bcrypt slots (shared by every gate) or requests.
    slots: Arc<Semaphore>,
}

enum Kind {
    File(Htpasswd),
    Url(Endpoint),
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::File(h) => format!("htpasswd {}", h.path.display()),
            Kind::Url(e) => format!("url {}", e.url),
        };
        f.debug_struct("Gate")
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
            let url = s.listener_auth_url.as_ref()?;
            let endpoint = match url.parse().map(Endpoint::with_system_roots) {
                Ok(Ok(mut e)) => {
                    e.password = s.listener_auth_password.as_deref().map(str::to_string);
                    e
                }
                Ok(Err(e)) => {
                    // Every listener will get 503 and this line says why.
                    tracing::error!(mount = what, "listener-auth-url: {e}");
                    let mut e = Endpoint::new(url.parse().ok()?);
                    e.password = s.listener_auth_password.as_deref().map(str::to_string);
                    e
                }
                Err(e) => {
                    tracing::error!(mount = what, "listener-auth-url: {e}");
                    return None;
                }
            };
            (Kind::Url(endpoint), Arc::new(Semaphore::new(HOOK_REQUESTS)))
        };
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        Some(Gate {
            kind,
            timeout: Duration::from_secs(s.listener_auth_timeout_secs),
            cache_for: Duration::from_secs(s.listener_auth_cache_secs),
            cache: Mutex::new(HashMap::new()),
            cache_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            slots,
        })
    }

    /// Whether the listener may in: `Ok(true)` granted, `Ok(false)` refused (wrong or missing
    /// credentials, or the URL said no), `Err` when the gate could not decide in time.
    pub(crate) async fn check(&self, ask: Ask<'_>) -> Result<bool, Unavailable> {
        let key = self.cache_key(&ask);
        if self.cached(&key) {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let granted = match &self.kind {
            Kind::File(file) => {
                // No credentials: nothing to check (and no bcrypt spent).
                let Some((user, pass)) = ask.credentials else {
                    return Ok(false);
                };
                let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
                    .await
                    .map_err(|_| Unavailable::Busy)?
                    .map_err(|_| Unavailable::Busy)?;
                let file = file.clone();
                tokio::task::spawn_blocking(move || file.verify(&user, &pass))
                    .await
                    .map_err(|e| Unavailable::Failed(format!("the check failed: {e}")))?
            }
            Kind::Url(endpoint) => {
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
                if !granted {
                    tracing::info!(
                        client = ask.client,
                        ip = %ask.ip,
                        target = ask.target,
                        status = answer.code,
                        message = answer.header("icecast-auth-message").unwrap_or(""),
                        "listener refused by the authentication URL"
                    );
                }
                granted
            }
        };
        if granted {
            self.remember(key);
        }
        Ok(granted)
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
        if let Kind::Url(_) = self.kind {
            field(ask.target.as_bytes());
            field(ask.ip.to_string().as_bytes());
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        if self.cache_for.is_zero() {
            return false;
        }
        let mut cache = self.cache.lock();
        match cache.get(key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                cache.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember(&self, key: [u8; 32]) {
        if self.cache_for.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, until| *until > now);
            if cache.len() >= CACHE_MAX {
                return;
            }
        }
        cache.insert(key, now + self.cache_for);
    }

    /// Grants remembered (expired ones included until they are looked at).
    #[cfg(test)]
    fn cache_len(&self) -> usize {
        self.cache.lock().len()
    }
}

/// The form Icecast 2.4's url authentication POSTs for a new listener, in its order.
fn listener_add(ask: &Ask<'_>) -> String {
    let (user, pass) = ask
        .credentials
        .as_ref()
        .map_or(("", ""), |(u, p)| (u.as_str(), p.as_str()));
    form_urlencoded::Serializer::new(String::new())
        .append_pair("action", "listener_add")
        .append_pair("server", ask.server)
        .append_pair("port", &ask.port.to_string())
        .append_pair("client", &ask.client.to_string())
        .append_pair("mount", ask.target)
        .append_pair("user", user)
        .append_pair("pass", pass)
        .append_pair("ip", &ask.ip.to_string())
        .append_pair("agent", if ask.agent.is_empty() { "-" } else { ask.agent })
        .finish()
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
        let gate = Gate::new("/t", &settings, &Arc::new(Semaphore::new(1))).expect("a gate");
        assert_eq!(gate.check(ask(None)).await, Ok(false));
        assert_eq!(gate.check(ask(Some(("alice", "nope")))).await, Ok(false));
        assert_eq!(
            gate.check(ask(Some(("mallory", "secret")))).await,
            Ok(false)
        );
        assert_eq!(gate.cache_len(), 0, "refusals are not cached");
        assert_eq!(gate.check(ask(Some(("alice", "secret")))).await, Ok(true));
        assert_eq!(gate.cache_len(), 1);
        assert_eq!(gate.check(ask(Some(("alice", "secret")))).await, Ok(true));
        // A user added later is let in without a restart; a damaged file keeps the users.
        std::fs::write(
            &path,
            format!("{}{}", line("alice", "secret"), line("bob", "pw")),
        )
        .expect("write");
        assert_eq!(gate.check(ask(Some(("bob", "pw")))).await, Ok(true));
        std::fs::write(&path, "bob:$apr1$xyz\n").expect("write");
        assert_eq!(gate.check(ask(Some(("bob", "pw2")))).await, Ok(false));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
