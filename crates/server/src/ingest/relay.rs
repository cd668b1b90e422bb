//! Pull relays (`[[relay]]`): a mount of another server (Agora, icecast2, any Icecast) pulled
//! as a listener and served here as a mount like any other.
//!
//! ```text
//!   upstream ──GET + Icy-MetaData: 1──► agora_client::pull::Pull ──IcyEvent::Audio──► Ingest ─► mount
//!                                                              └─IcyEvent::Metadata─► Mount::set_title
//! ```
//!
//! A relay is the client half of one server feeding the ingest path a source uses
//! ([`crate::ingest::feed::Ingest`]): it claims its mount like a source (stream information
//! from the upstream's `icy-*` headers), so its listeners get the same burst from a sync point,
//! headers, grace hold, stats, admin and pages. The upstream's ICY titles (asked for with
//! `Icy-MetaData: 1`, so MP3 and AAC upstreams interleave them) become the mount's title, which
//! reaches this server's own ICY listeners, pages and stats.
//!
//! **Upstream loss:** the claim is dropped, so the mount's listeners are held through the
//! grace period as after any source loss; the relay reconnects with a capped backoff (1 s
//! doubling to 8 s) and, when it is back within the grace period, the listeners carry on (new
//! stream headers first when the stream changed). An upstream that refuses (401, 404, ...) is
//! retried every 30 s. A state change is logged once, not every attempt.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agora_client::backoff::Backoff;
use agora_client::icy::IcyEvent;
use agora_client::pull::Pull;
use agora_client::{ClientError, Endpoint, Origin, ServerUrl};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ingest::feed::Ingest;
use crate::logging::{self, About, shown};
use crate::state::Shared;
use crate::stream::ending::SourceEnd;
use crate::stream::mount::{ClaimError, SourceClaim, StreamMeta};
use crate::telemetry::relays::{Kind, RelayStatus};

/// First wait after a lost connection; doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Wait after the upstream refused (wrong credentials, no such mount): it will not change
/// soon, and asking every second would flood its log.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// One configured relay.
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) upstream: ServerUrl,
    pub(crate) mount: String,
    /// On demand: woken by a listener's request, idle after this long without listeners.
    pub(crate) on_demand: Option<(Arc<Notify>, Duration)>,
}

/// What the relay is doing, for the once-per-change log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Starting,
    Live,
    /// The local mount has a source of its own.
    MountBusy,
    /// Failing, with the kind of failure (not the details, which vary per attempt).
    Failing(String),
}

/// Run the relay until `stop` is cancelled (the server shuts down, a master no longer lists
/// the mount, or a reload removed or changed the relay).
pub(crate) async fn run(relay: Relay, shared: Arc<Shared>, stop: CancellationToken) {
    let endpoint = match Endpoint::with_system_roots(relay.upstream.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(peer = %relay.upstream, "relay cannot start: {e}");
            return;
        }
    };
    let entry = shared
        .relays
        .add(Kind::Pull, &relay.mount, relay.upstream.to_string());
    let mut state = State::Starting;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        // On demand: wait for a listener (one held through a grace period counts).
        if let Some((wake, _)) = &relay.on_demand {
            let held = shared
                .registry
                .get(&relay.mount)
                .is_some_and(|m| m.listeners.load(Ordering::Acquire) > 0);
            if !held {
                entry.status.set("idle (on demand)", None);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = stop.cancelled() => return,
                }
                tracing::info!(upstream = %relay.upstream, mount = %relay.mount, "on-demand relay: a listener asked");
            }
        }
        // A relay a reload stopped while it connects must not claim the mount afterwards.
        let connected = tokio::select! {
            r = Pull::connect(&endpoint) => r,
            _ = stop.cancelled() => return,
        };
        let wait = match connected {
            Err(e) => {
                let refused = e.origin() == Origin::Server;
                change(
                    &mut state,
                    State::Failing(kind(&e)),
                    &relay,
                    &entry.status,
                    &e.to_string(),
                );
                if refused {
                    REFUSED_RETRY
                } else {
                    backoff.next_wait()
                }
            }
            Ok(pull) => match claim(&relay, &pull, &shared) {
                Err(e @ (ClaimError::InUse | ClaimError::TooMany)) => {
                    let why = match e {
                        ClaimError::InUse => "a source is live on the local mount",
                        ClaimError::TooMany => "the server's mount limit (max-mounts) is reached",
                    };
                    change(&mut state, State::MountBusy, &relay, &entry.status, why);
                    REFUSED_RETRY
                }
                Ok(claim) => {
                    change(&mut state, State::Live, &relay, &entry.status, "");
                    backoff.reset();
                    shared.relay_connections.fetch_add(1, Ordering::Relaxed);
                    let linger = relay.on_demand.as_ref().map(|(_, l)| *l);
                    let end = pull_into(pull, &claim, &shared, &stop, &entry.status, linger).await;
                    shared.metrics.source_ended(&end);
                    drop(claim);
                    if stop.is_cancelled() {
                        tracing::info!(upstream = %relay.upstream, mount = %relay.mount, "relay stopped");
                        return;
                    }
                    if matches!(end, SourceEnd::Idle(_)) {
                        tracing::info!(upstream = %relay.upstream, mount = %relay.mount, "on-demand relay: {end}; disconnected");
                        state = State::Starting;
                        continue;
                    }
                    let why = end.to_string();
                    change(
                        &mut state,
                        State::Failing(format!("upstream lost ({})", end.reason())),
                        &relay,
                        &entry.status,
                        &why,
                    );
                    backoff.next_wait()
                }
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The kind of a failure: attempts that fail the same way log once.
fn kind(e: &ClientError) -> String {
    match e {
        ClientError::Refused(code, _) => format!("refused ({code})"),
        ClientError::Unauthorized => "refused (401)".into(),
        e if e.origin() == Origin::Network => "unreachable".into(),
        e => e.to_string(),
    }
}

/// Record a state on the board (every time: the last error counts) and log it when it
/// changed.
fn change(state: &mut State, new: State, relay: &Relay, board: &RelayStatus, detail: &str) {
    match &new {
        State::Live => board.connected(),
        State::MountBusy => board.set("waiting: a source is live on the local mount", None),
        State::Failing(_) => board.set("retrying", Some(detail.to_string())),
        State::Starting => {}
    }
    if *state == new {
        return;
    }
    let (up, mount) = (&relay.upstream, &relay.mount);
    match &new {
        State::Live => tracing::info!(upstream = %up, %mount, "relay connected"),
        State::MountBusy => tracing::warn!(upstream = %up, %mount, "relay waiting: {detail}"),
        State::Failing(k) => tracing::warn!(upstream = %up, %mount, state = %k, "relay: {detail}"),
        State::Starting => {}
    }
    *state = new;
}

/// Claim the local mount like a source, with the upstream's stream information.
fn claim(relay: &Relay, pull: &Pull, shared: &Shared) -> Result<SourceClaim, ClaimError> {
    let info = &pull.info;
    let meta = StreamMeta {
        name: info.name.clone(),
        description: info.description.clone(),
        url: info.url.clone(),
        genre: info.genre.clone(),
        public: info.public.map(|p| if p { "1" } else { "0" }.to_string()),
        bitrate: info.bitrate.map(|b| b.to_string()),
        audio_info: info.audio_info.clone(),
        user_agent: Some(format!("relay of {}", relay.upstream)),
    };
    shared.registry.claim(
        &relay.mount,
        || shared.config().policy_for(&relay.mount),
        meta,
        relay.upstream.to_string(),
    )
}

/// Feed the pulled stream into the mount until it ends.
async fn pull_into(
    mut pull: Pull,
    claim: &SourceClaim,
    shared: &Shared,
    stop: &CancellationToken,
    board: &RelayStatus,
    linger: Option<Duration>,
) -> SourceEnd {
    let mount = &claim.mount;
    let kill = mount.source_kill_token();
    let mut ingest = Ingest::new(mount, &shared.logs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        let event = tokio::select! {
            ev = pull.next() => ev,
            // On demand: nobody listening (relays of this mount count as listeners) for
            // `linger` ends the pull.
            _ = tick.tick(), if linger.is_some() => {
                let listening = mount.listeners.load(Ordering::Acquire)
                    + mount.relays.load(Ordering::Acquire);
                match (listening, idle_since, linger) {
                    (0, None, _) => idle_since = Some(tokio::time::Instant::now()),
                    (0, Some(since), Some(l)) if since.elapsed() >= l => {
                        return SourceEnd::Idle(l);
                    }
                    (0, _, _) => {}
                    _ => idle_since = None,
                }
                continue;
            }
            // A master that stopped listing the mount ends it like its source would.
            _ = stop.cancelled() => return if shared.shutdown.is_cancelled() {
                SourceEnd::Shutdown
            } else {
                SourceEnd::Finished
            },
            _ = kill.cancelled() => return SourceEnd::Killed,
        };
        match event {
            Ok(Some(IcyEvent::Audio(bytes))) => {
                board.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if let Err(end) = ingest.feed(&bytes) {
                    return end;
                }
            }
            Ok(Some(IcyEvent::Metadata(m))) => {
                if let Some(title) = m.title
                    && title != mount.title().text
                {
                    if shared
                        .logs
                        .admit(logging::Kind::StreamTitle, About::Mount(&mount.path))
                    {
                        tracing::info!(mount = %mount.path, title = %shown(&title), "title from upstream");
                    }
                    mount.set_title_from_stream(title);
                }
            }
            Ok(None) => {
                ingest.finish();
                return SourceEnd::Finished;
            }
            Err(ClientError::Silent) => {
                return SourceEnd::Timeout(agora_client::pull::READ_TIMEOUT);
            }
            Err(ClientError::Lost(e)) => return SourceEnd::Io(e),
            Err(e) => return SourceEnd::Io(std::io::Error::other(e.to_string())),
        }
    }
}
