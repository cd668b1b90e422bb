//! `[master]`: follow another server (Agora or Icecast) the way an Icecast slave follows its
//! master: poll its `/admin/streamlist.txt` with its relay user, relay every mount it lists under
//! the same name, start a relay for each new mount and stop the relay of each mount no longer
//! listed (its listeners are then held through the grace period, as after any source loss).
//!
//! With `announce`, each poll also tells the master where listeners reach this server
//! (Icecast-KH's `rserver`/`rport`/`interval`, and this server's listener limit), so that an
//! origin can send listeners here by redirect (see `control/edges.rs`).
//!
//! **Bounds:** a master may list at most `server.max-sources` mounts here; more are ignored
//! (and logged once). A poll that fails leaves the running relays alone (each reconnects on
//! its own); a state change of the poll is logged once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use agora_client::meta::Announce;
use agora_client::{Endpoint, ServerUrl};
use tokio_util::sync::CancellationToken;

use crate::ingest::relay::{self, Relay};
use crate::logging::shown;
use crate::mount_path::MountPath;
use crate::state::Shared;

/// Follow the master until `stop` is cancelled (the server shuts down, or a reload removed
/// or changed `[master]`); its relays stop with it.
pub(crate) async fn run(
    url: ServerUrl,
    interval: Duration,
    announce: Option<Announce>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let endpoint = match Endpoint::with_system_roots(url.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(master = %url, "master not followed: {e}");
            return;
        }
    };
    let mut relays: BTreeMap<String, CancellationToken> = BTreeMap::new();
    let mut last: Option<String> = None;
    loop {
        // Mounts relayed by `[[relay]]` tables are theirs, not the master's (asked at every
        // poll: a reload may add or remove them).
        let config = shared.config();
        let configured: BTreeSet<String> = config
            .relays
            .iter()
            .filter_map(|r| r.local_mount().ok())
            .collect();
        let max = config.server.max_sources;
        drop(config);
        let state = match agora_client::meta::stream_list(&endpoint, max + 1, announce.as_ref())
            .await
        {
            Ok(mut list) => {
                let over = list.len() > max;
                list.truncate(max);
                // A master's names are validated as any mount's: one that is not a valid
                // mount path here (a built-in route's, say) is not relayed.
                let listed: BTreeSet<String> = list
                    .into_iter()
                    .filter(|m| match MountPath::parse(m) {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::debug!(master = %url, mount = %shown(m), "not relayed: {e}");
                            false
                        }
                    })
                    .collect();
                for mount in listed.iter().filter(|m| !configured.contains(*m)) {
                    if relays.contains_key(mount) {
                        continue;
                    }
                    let mut upstream = url.clone();
                    upstream.mount = mount.clone();
                    tracing::info!(master = %url, %mount, "master lists a new mount: relaying it");
                    let stop = stop.child_token();
                    relays.insert(mount.clone(), stop.clone());
                    let relay = Relay {
                        upstream,
                        mount: mount.clone(),
                        on_demand: None,
                    };
                    shared
                        .tracker
                        .spawn(relay::run(relay, shared.clone(), stop));
                }
                relays.retain(|mount, stop| {
                    if configured.contains(mount) {
                        tracing::info!(master = %url, %mount, "a [[relay]] now relays the mount: the master's relay stopped");
                        stop.cancel();
                        return false;
                    }
                    let keep = listed.contains(mount);
                    if !keep {
                        tracing::info!(master = %url, %mount, "master no longer lists the mount: relay stopped");
                        stop.cancel();
                    }
                    keep
                });
                if over {
                    format!(
                        "lists more than {max} mounts (server.max-sources): the rest are ignored"
                    )
                } else {
                    format!("{} mounts relayed", relays.len())
                }
            }
            Err(e) => format!("cannot list the mounts: {e}"),
        };
        if last.as_ref() != Some(&state) {
            if state.starts_with("cannot") || state.starts_with("lists more") {
                tracing::warn!(master = %url, "master: {state}");
            } else {
                tracing::info!(master = %url, "master: {state}");
            }
            last = Some(state);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}
