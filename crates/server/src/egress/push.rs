//! Push relays (`[[push]]`): a local mount forwarded to another server (a hosted Icecast the
//! event does not control, another Agora) as that server's source client.
//!
//! ```text
//!   mount ─► fan-out cursor (like a listener) ─► headers, then chunks from a sync point
//!                                                   │ agora_client::push::Push (PUT, SOURCE on 400/405/501)
//!                                                   ▼
//!                                                 target server
//! ```
//!
//! A push reads the mount as a listener does (its own cursor on the fan-out: headers first,
//! then live data from a sync point, new headers whenever the stream changes) and writes it
//! with `agora-client`'s source handshake, which `agora cast` uses too. It waits for the mount
//! to have a stream, reconnects on its own with a capped backoff (1 s doubling to 8 s; 30 s
//! after a refusal), starts every connection with the current headers and a sync point (never
//! a backlog), and passes the mount's title on through the target's `/admin/metadata`. A
//! state change is logged once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agora_client::backoff::Backoff;
use agora_client::push::{Dialect, Push, StreamMeta as PushMeta};
use agora_client::{ClientError, Endpoint, Origin, ServerUrl};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::state::Shared;
use crate::stream::fanout::{Read, Start, StreamHeaders};
use crate::stream::mount::Mount;
use crate::telemetry::relays::{Kind, RelayStatus};

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// How often a push waiting for its mount looks for it.
const MOUNT_POLL: Duration = Duration::from_millis(500);
/// Most bytes taken from the fan-out per read.
const MAX_BATCH: usize = 256 * 1024;

/// One configured push.
#[derive(Debug)]
pub(crate) struct PushRelay {
    pub(crate) mount: String,
    pub(crate) target: ServerUrl,
}

/// How one connection ended.
enum Ended {
    /// The mount closed: wait for it again.
    MountClosed,
    /// The target went away or refused: reconnect.
    Target(ClientError),
    /// The server is shutting down.
    Shutdown,
}

/// Run the push until `stop` is cancelled (the server shuts down, or a reload removed or
/// changed the push).
pub(crate) async fn run(p: PushRelay, shared: Arc<Shared>, stop: CancellationToken) {
    let endpoint = match Endpoint::with_system_roots(p.target.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(peer = %p.target, "push cannot start: {e}");
            return;
        }
    };
    let entry = shared
        .relays
        .add(Kind::Push, &p.mount, p.target.to_string());
    let board = &entry.status;
    let mut dialect = Dialect::Put;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut last = String::new();
    let mut say = |state: String| {
        if state == "pushing" {
            board.connected();
        } else if let Some(e) = state.strip_prefix("cannot connect: ") {
            board.set("retrying", Some(e.to_string()));
        } else if let Some(e) = state.strip_prefix("target lost: ") {
            board.set("retrying", Some(e.to_string()));
        } else {
            board.set(&state, None);
        }
        if state != last {
            if state.starts_with("pushing") {
                tracing::info!(mount = %p.mount, target = %p.target, "push: {state}");
            } else {
                tracing::warn!(mount = %p.mount, target = %p.target, "push: {state}");
            }
            last = state;
        }
    };
    loop {
        // A mount with a stream to push.
        let mount = loop {
            if let Some(m) = shared.registry.get(&p.mount)
                && m.has_source()
                && m.format().is_some()
            {
                break m;
            }
            tokio::select! {
                _ = tokio::time::sleep(MOUNT_POLL) => {}
                _ = stop.cancelled() => return,
            }
        };
        let st = mount.state();
        let content_type = st
            .format
            .map(|f| f.content_type(st.info.has_video()))
            .unwrap_or("application/octet-stream");
        let meta = PushMeta {
            name: st.meta.name.clone(),
            description: st.meta.description.clone(),
            genre: st.meta.genre.clone(),
            url: st.meta.url.clone(),
            public: st.meta.public.as_deref() == Some("1"),
            audio_info: st.meta.audio_info.clone(),
            bitrate: st.meta.bitrate().and_then(|b| b.parse().ok()),
        };
        let wait = match Push::connect(&endpoint, content_type, &meta, dialect).await {
            Err(ClientError::NoPut(code)) if dialect == Dialect::Put => {
                tracing::info!(target = %p.target, code, "push: the server does not take PUT; using SOURCE");
                dialect = Dialect::Source;
                continue;
            }
            Err(e) => {
                say(format!("cannot connect: {e}"));
                if e.origin() == Origin::Server {
                    REFUSED_RETRY
                } else {
                    backoff.next_wait()
                }
            }
            Ok(push) => {
                say("pushing".into());
                backoff.reset();
                match forward(push, &mount, &endpoint, board, &stop).await {
                    Ended::Shutdown => return,
                    Ended::MountClosed => {
                        say("waiting for the mount's stream".into());
                        Duration::ZERO
                    }
                    Ended::Target(e) => {
                        say(format!("target lost: {e}"));
                        backoff.next_wait()
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Write the mount to the target until one of them ends: the current headers, then chunks
/// from the latest sync point, new headers before the chunks that belong to them.
async fn forward(
    mut push: Push,
    mount: &Arc<Mount>,
    endpoint: &Endpoint,
    board: &RelayStatus,
    stop: &CancellationToken,
) -> Ended {
    let mut rx = mount.fanout.subscribe();
    let mut sent_headers: Option<Arc<StreamHeaders>> = None;
    let mut title_version = u64::MAX;
    let (mut cursor, mut need_sync) = match mount.fanout.latest_sync() {
        Start::At(s) => (s, false),
        Start::NextSync(s) => (s, true),
    };
    let mut batch: Vec<(Bytes, Arc<StreamHeaders>)> = Vec::new();
    loop {
        let title = mount.title();
        if title.version != title_version {
            title_version = title.version;
            if !title.text.is_empty() {
                let (endpoint, text) = (endpoint.clone(), title.text.clone());
                tokio::spawn(async move {
                    if let Err(e) = agora_client::meta::set_title(&endpoint, &text).await {
                        tracing::warn!(target = %endpoint.url, "push: could not set the title: {e}");
                    }
                });
            }
        }
        if need_sync {
            match mount.fanout.first_sync_at_or_after(cursor) {
                Some(s) => {
                    cursor = s;
                    need_sync = false;
                }
                None => {
                    cursor = rx.borrow_and_update().next_seq.max(cursor);
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return Ended::MountClosed },
                        e = push.closed() => return Ended::Target(e),
                        _ = stop.cancelled() => return Ended::Shutdown,
                    }
                    continue;
                }
            }
        }
        rx.borrow_and_update();
        batch.clear();
        let read = mount
            .fanout
            .read_each(cursor, MAX_BATCH, 64, |bytes, headers| {
                batch.push((bytes.clone(), headers.clone()));
            });
        match read {
            Read::Data(next) => {
                cursor = next;
                for (bytes, headers) in batch.drain(..) {
                    if !sent_headers
                        .as_ref()
                        .is_some_and(|h| Arc::ptr_eq(h, &headers))
                    {
                        if !headers.bytes.is_empty()
                            && let Err(e) = push.send(headers.bytes.clone()).await
                        {
                            return Ended::Target(e);
                        }
                        sent_headers = Some(headers);
                    }
                    match push.send(bytes).await {
                        Ok(n) => {
                            board.bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => return Ended::Target(e),
                    }
                }
            }
            Read::Empty => {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return Ended::MountClosed },
                    e = push.closed() => return Ended::Target(e),
                    _ = stop.cancelled() => return Ended::Shutdown,
                }
            }
            Read::Lagged => {
                tracing::warn!(mount = %mount.path, target = %endpoint.url, "push fell behind; skipping to the latest sync point");
                (cursor, need_sync) = match mount.fanout.latest_sync() {
                    Start::At(s) => (s, false),
                    Start::NextSync(s) => (s, true),
                };
            }
            Read::Closed => {
                push.finish().await;
                return Ended::MountClosed;
            }
        }
    }
}
