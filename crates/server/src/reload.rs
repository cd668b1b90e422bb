//! Live reload: a new configuration applied while the server runs (SIGHUP in `agora serve`),
//! and the server's links to other servers (relays, pushes, `[master]`) started and stopped to
//! match the configuration in force.
//!
//! A reload is all or nothing up to the point where nothing can fail any more: the new file is
//! validated and every TLS certificate it names is read first; if anything is wrong the error
//! says what, and the configuration in force stays whole. Then, in this order:
//!
//! - the configuration snapshot is swapped ([`Shared::config`]): every later decision (server
//!   limits and timeouts, `trusted-proxies`, the relay user, hostname, a new source's mount
//!   policy and password) reads the new one;
//! - the credentials: a password the new file gives replaces the one in force; a password it
//!   leaves out keeps the one in force (a generated one was printed at start and stays valid);
//! - per-address and login limits, the mount cap, the configured fallbacks, the listener
//!   gates (htpasswd files and auth URLs) are replaced;
//! - every live mount takes its new settings ([`Mount::reconfigure`]), except the sizes its
//!   fan-out was built with, which apply from its next source (the reload says which);
//! - TLS groups keep their sockets and take the certificate and key files the file names now;
//! - relays, pushes and `[master]` whose table changed are restarted, removed ones stopped,
//!   new ones started ([`Links::update`]); unchanged ones keep running untouched.
//!
//! **Invariant:** a reload never closes a connection. A source already connected keeps its
//! mount even if its password changed (the new one is asked of the next source); listeners
//! above a lowered limit stay (new ones wait for room); a stopped relay's mount goes through
//! its grace period and fallback like any source loss. What a reload cannot change without
//! closing sockets (`listen`, `[[server.tls]]` listen addresses, `backlog`, `access-log`), and
//! `data-dir` (the slides are read from it at start), is
//! left as it is and named, for a restart.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::egress::push;
use crate::ingest::{loop_file, master, relay};
use crate::state::{Credentials, Shared};
use crate::sync::Mutex;
use crate::tls::{TlsError, TlsSettings};

/// Why a reload was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A certificate or key it names cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What a reload did, for the log line that reports it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// Live mounts that took new settings.
    pub mounts: usize,
    /// Relays, pushes and `[master]` started (new or changed).
    pub links_started: usize,
    /// Relays, pushes and `[master]` stopped (removed or changed).
    pub links_stopped: usize,
    /// TLS groups that read their certificate and key again.
    pub tls_groups: usize,
    /// Changes that wait: `"[server] listen"` and the like need a restart, `"/live.ogg
    /// queue-size"` its mount's next source.
    pub pending: Vec<String>,
}

/// Reloads the server's configuration while it runs (see the module doc).
#[derive(Debug, Clone)]
pub struct Reloader {
    pub(crate) shared: Arc<Shared>,
    /// Each TLS group's sockets as bound at start, with its settings.
    pub(crate) tls: Vec<(Vec<SocketAddr>, Arc<TlsSettings>)>,
    pub(crate) links: Arc<Links>,
    /// One reload at a time (two SIGHUPs in a row apply in order). A `std` mutex, not one of
    /// `crate::sync`'s leaf locks: it is held across the whole reload, which takes leaf locks
    /// under it, and nothing else ever takes it.
    pub(crate) busy: Arc<std::sync::Mutex<()>>,
}

impl Reloader {
    /// Read every TLS group's certificate and key again and use them for new connections
    /// (connections already up keep theirs). All or nothing: if one group's files cannot be
    /// used, every group keeps what it had and the error says why. Returns how many groups
    /// were reloaded.
    pub fn reload_certificates(&self) -> Result<usize, TlsError> {
        let fresh = self
            .tls
            .iter()
            .map(|(_, t)| t.reread())
            .collect::<Result<Vec<_>, _>>()?;
        for ((_, t), config) in self.tls.iter().zip(fresh) {
            t.swap(config);
            tracing::info!(certificate = %t.certificate().display(), "TLS certificate reloaded");
        }
        Ok(self.tls.len())
    }

    /// Apply `config` (already read, with the command line's overrides): see the module doc.
    /// `Err`: nothing changed.
    pub fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        config.validate()?;
        let _one = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.shared.config();
        let mut done = Reloaded::default();
        // Certificates first: the last thing that can fail.
        let mut certificates = Vec::new();
        for t in &config.server.tls {
            match self.tls.iter().find(|(listen, _)| *listen == t.listen) {
                Some((_, settings)) => certificates.push((
                    settings.clone(),
                    (t.certificate.clone(), t.key.clone()),
                    crate::tls::server_config(&t.certificate, &t.key)?,
                )),
                None => done.pending.push(format!(
                    "[[server.tls]] listen {:?} (a restart binds it)",
                    t.listen
                )),
            }
        }
        for (listen, _) in &self.tls {
            if !config.server.tls.iter().any(|t| t.listen == *listen) {
                done.pending.push(format!(
                    "[[server.tls]] listen {listen:?} removed (a restart closes it)"
                ));
            }
        }
        if config.server.listen != old.server.listen {
            done.pending
                .push("[server] listen (a restart binds the new addresses)".into());
        }
        if config.server.backlog != old.server.backlog {
            done.pending.push("[server] backlog (at restart)".into());
        }
        if config.server.access_log != old.server.access_log {
            done.pending.push("[server] access-log (at restart)".into());
        }
        if config.server.data_dir != old.server.data_dir {
            done.pending.push(
                "[server] data-dir (at restart: the slides are read from it at start)".into(),
            );
        }
        // From here on nothing fails.
        let config = Arc::new(config);
        let shared = &self.shared;
        shared.config.store(config.clone());
        shared
            .credentials
            .store(Arc::new(credentials(&config, &shared.credentials())));
        let s = &config.server;
        shared.pending_per_ip.set_cap(s.max_pending_per_ip);
        shared.listeners_per_ip.set_cap(s.max_listeners_per_ip);
        shared.logins.set_rule(
            s.max_login_failures,
            Duration::from_secs(s.login_window_secs),
            Duration::from_secs(s.login_ban_secs),
        );
        shared.registry.set_max_mounts(s.max_mounts);
        shared.registry.set_fallbacks(config.fallbacks());
        shared
            .listener_auth
            .store(Arc::new(crate::listener_auth::Gates::new(&config)));
        for m in shared.registry.all() {
            if m.is_closed() {
                continue;
            }
            let fallback_changed = old.fallback_of(&m.path) != config.fallback_of(&m.path);
            for key in m.reconfigure(&config.policy_for(&m.path), fallback_changed) {
                done.pending
                    .push(format!("{} {key} (from its next source)", m.path));
            }
            done.mounts += 1;
        }
        for (settings, (certificate, key), server_config) in certificates {
            settings.swap_files(&certificate, &key, server_config);
            tracing::info!(certificate = %certificate.display(), "TLS certificate reloaded");
            done.tls_groups += 1;
        }
        let (started, stopped) = self.links.update(&config, shared);
        done.links_started = started;
        done.links_stopped = stopped;
        for p in &done.pending {
            tracing::warn!("reload: not applied yet: {p}");
        }
        Ok(done)
    }
}

/// The credentials `config` gives, a password it leaves out kept from `now`.
fn credentials(config: &Config, now: &Credentials) -> Credentials {
    let a = &config.auth;
    Credentials {
        source_password: a
            .source_password
            .as_deref()
            .map_or_else(|| now.source_password.clone(), str::to_string),
        admin_user: a.admin_user.clone().unwrap_or_else(|| "admin".into()),
        admin_password: a
            .admin_password
            .as_deref()
            .map_or_else(|| now.admin_password.clone(), str::to_string),
    }
}

/// The relays, pushes and `[master]` running, each under the token that stops it, with the
/// fingerprint of the table it was started from (a changed table restarts it).
#[derive(Debug, Default)]
pub(crate) struct Links {
    running: Mutex<BTreeMap<String, Running>>,
}

#[derive(Debug)]
struct Running {
    /// Everything the task was started from, passwords included: compared, never shown.
    fingerprint: String,
    stop: CancellationToken,
    /// An on-demand relay's wake-up, which listeners' requests poke.
    wake: Option<Arc<Notify>>,
}

/// A link the configuration asks for, not started yet.
struct Wanted {
    fingerprint: String,
    start: Start,
}

enum Start {
    Relay(relay::Relay),
    Push(push::PushRelay),
    Master {
        url: agora_client::ServerUrl,
        interval: Duration,
        announce: Option<agora_client::meta::Announce>,
    },
    LoopFile {
        mount: String,
        media: crate::config::LoopMedia,
    },
}

impl Links {
    /// Make the running links those `config` asks for: stop those it no longer has or
    /// changed, start the new and changed ones, keep the rest. Returns (started, stopped).
    pub(crate) fn update(&self, config: &Config, shared: &Arc<Shared>) -> (usize, usize) {
        let wanted = wanted(config);
        let mut to_start = Vec::new();
        let mut stopped = 0;
        {
            let mut running = self.running.lock();
            running.retain(|key, r| {
                let keep = wanted
                    .get(key)
                    .is_some_and(|w| w.fingerprint == r.fingerprint);
                if !keep {
                    r.stop.cancel();
                    stopped += 1;
                    tracing::info!(link = %key, "stopped (the configuration changed)");
                }
                keep
            });
            for (key, w) in wanted {
                if running.contains_key(&key) {
                    continue;
                }
                let stop = shared.shutdown.child_token();
                let wake = match &w.start {
                    Start::Relay(r) => r.on_demand.as_ref().map(|(wake, _)| wake.clone()),
                    _ => None,
                };
                running.insert(
                    key.clone(),
                    Running {
                        fingerprint: w.fingerprint,
                        stop: stop.clone(),
                        wake,
                    },
                );
                to_start.push((key, w.start, stop));
            }
            shared.on_demand.store(Arc::new(
                running
                    .iter()
                    .filter_map(|(key, r)| Some((mount_of(key)?.to_string(), r.wake.clone()?)))
                    .collect::<HashMap<_, _>>(),
            ));
        }
        let started = to_start.len();
        for (key, start, stop) in to_start {
            tracing::info!(link = %key, "started");
            let s = shared.clone();
            match start {
                Start::Relay(r) => {
                    shared.tracker.spawn(relay::run(r, s, stop));
                }
                Start::Push(p) => {
                    shared.tracker.spawn(push::run(p, s, stop));
                }
                Start::Master {
                    url,
                    interval,
                    announce,
                } => {
                    shared
                        .tracker
                        .spawn(master::run(url, interval, announce, s, stop));
                }
                Start::LoopFile { mount, media } => {
                    shared.tracker.spawn(loop_file::run(mount, media, s, stop));
                }
            }
        }
        (started, stopped)
    }
}

/// The local mount of a relay's key (`relay /live.ogg`).
fn mount_of(key: &str) -> Option<&str> {
    key.strip_prefix("relay ")
}

/// The links `config` asks for, by key: `relay MOUNT`, `push MOUNT -> TARGET`, `master`,
/// `loop-file MOUNT`. A table that does not parse (refused by [`Config::validate`] before
/// this) is skipped, loudly.
fn wanted(config: &Config) -> BTreeMap<String, Wanted> {
    let mut out = BTreeMap::new();
    for (mount, media) in config.loop_files() {
        out.insert(
            format!("loop-file {mount}"),
            Wanted {
                fingerprint: format!("{}|{:x}", media.path.display(), media.digest),
                start: Start::LoopFile {
                    mount: mount.to_string(),
                    media: media.clone(),
                },
            },
        );
    }
    for r in &config.relays {
        match (r.upstream_url(), r.local_mount()) {
            (Ok(upstream), Ok(mount)) => {
                let fingerprint = format!(
                    "{upstream}|{}|{}|{}",
                    upstream.password.as_deref().unwrap_or(""),
                    r.on_demand,
                    r.linger_secs
                );
                let on_demand = r
                    .on_demand
                    .then(|| (Arc::new(Notify::new()), Duration::from_secs(r.linger_secs)));
                out.insert(
                    format!("relay {mount}"),
                    Wanted {
                        fingerprint,
                        start: Start::Relay(relay::Relay {
                            upstream,
                            mount,
                            on_demand,
                        }),
                    },
                );
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!("relay not started: {e}"),
        }
    }
    for p in &config.pushes {
        match p.target_url() {
            Ok(target) => {
                let fingerprint = format!("{target}|{}", target.password.as_deref().unwrap_or(""));
                out.insert(
                    format!("push {} -> {target}", p.mount),
                    Wanted {
                        fingerprint,
                        start: Start::Push(push::PushRelay {
                            mount: p.mount.clone(),
                            target,
                        }),
                    },
                );
            }
            Err(e) => tracing::error!("push not started: {e}"),
        }
    }
    if let Some(m) = &config.master {
        match m.master_url() {
            Ok(url) => {
                let announce = m.announce_addr().ok().flatten().map(|(host, port)| {
                    agora_client::meta::Announce {
                        host,
                        port,
                        interval_secs: m.interval_secs,
                        max_listeners: Some(config.server.max_listeners),
                    }
                });
                let fingerprint = format!(
                    "{url}|{}|{}|{announce:?}",
                    url.password.as_deref().unwrap_or(""),
                    m.interval_secs
                );
                out.insert(
                    "master".to_string(),
                    Wanted {
                        fingerprint,
                        start: Start::Master {
                            url,
                            interval: Duration::from_secs(m.interval_secs),
                            announce,
                        },
                    },
                );
            }
            Err(e) => tracing::error!("master not followed: {e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml(toml).expect("parses")
    }

    #[test]
    fn a_password_left_out_keeps_the_one_in_force() {
        let now = Credentials {
            source_password: "generated-source".into(),
            admin_user: "admin".into(),
            admin_password: "generated-admin".into(),
        };
        let c = credentials(&config(""), &now);
        assert_eq!(c.source_password, "generated-source");
        assert_eq!(c.admin_password, "generated-admin");
        let c = credentials(
            &config("[auth]\nsource-password = \"new\"\nadmin-user = \"boss\"\n"),
            &now,
        );
        assert_eq!(c.source_password, "new");
        assert_eq!(
            (c.admin_user.as_str(), c.admin_password.as_str()),
            ("boss", "generated-admin")
        );
    }

    #[test]
    fn a_link_restarts_when_any_of_its_keys_changes_and_only_then() {
        let relay = |pw: &str, linger: u32| {
            format!(
                "[[relay]]\nupstream = \"http://relay:{pw}@origin:8000/live.ogg\"\non-demand = true\nlinger-secs = {linger}\n\n\
                 [[push]]\nmount = \"/live.ogg\"\ntarget = \"http://source:pw@cdn:8000/live.ogg\"\n"
            )
        };
        let prints = |toml: &str| -> BTreeMap<String, String> {
            wanted(&config(toml))
                .into_iter()
                .map(|(k, w)| (k, w.fingerprint))
                .collect()
        };
        let a = prints(&relay("one", 10));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            [
                "push /live.ogg -> http://cdn:8000/live.ogg",
                "relay /live.ogg"
            ]
        );
        assert_eq!(
            a,
            prints(&relay("one", 10)),
            "the same file, the same links"
        );
        for changed in [relay("two", 10), relay("one", 20)] {
            let b = prints(&changed);
            assert_ne!(a["relay /live.ogg"], b["relay /live.ogg"]);
            assert_eq!(
                a[a.keys().next().expect("push")],
                b[b.keys().next().expect("push")]
            );
        }
    }
}
