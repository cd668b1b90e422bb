//! `/events`: one Server-Sent Events stream of mount changes, for the web pages and tools.
//!
//! ```text
//!   Mount::poke (source up/down, title) ─┐
//!   1 s tick (listener counts) ──────────┴─► hub: recompute every mount view, send what changed
//!                                                 │ broadcast of ready-made SSE frames
//!                                                 ▼
//!                                 each /events connection: snapshot, then frames
//! ```
//!
//! Events: `mount` (data: the mount view of [`crate::control::api::mount_view`], sent on connect for
//! every mount and whenever any field changes: connected, title, listeners...) and `gone`
//! (data: `{"mount": path}`, the mount closed). A `: ping` comment every 15 s keeps proxies
//! from timing the stream out.
//!
//! **Invariants:** the hub is the only producer, and it does the JSON work once per change,
//! not once per connection; a connection that falls more than [`crate::telemetry::events::CAPACITY`] frames behind gets
//! a fresh snapshot instead of the frames it missed (the feed is [`EventFeed`]); the number of event connections is
//! bounded by the server's listener limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;

use crate::control::api;
use crate::state::Shared;
use crate::wire::conn::Connection;
use crate::wire::http::{self, Request, Response};

/// How often listener counts are looked at.
const TICK: Duration = Duration::from_secs(1);
const PING: Duration = Duration::from_secs(15);

fn mount_frame(view: &impl std::fmt::Display) -> String {
    format!("event: mount\ndata: {view}\n\n")
}

/// Every mount's current view, as frames.
fn snapshot(shared: &Shared) -> String {
    shared
        .registry
        .all()
        .iter()
        .map(|m| mount_frame(&api::mount_view(m, shared)))
        .collect()
}

/// The hub: runs until shutdown.
pub(crate) async fn hub(shared: Arc<Shared>) {
    let mut last: HashMap<String, String> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = shared.registry.changed.notified() => {}
            _ = tick.tick() => {}
        }
        let mut seen = HashMap::with_capacity(last.len());
        for m in shared.registry.all() {
            let view = api::mount_view(&m, &shared).to_string();
            if last.get(&m.path) != Some(&view) {
                let _ = shared.events.tx.send(mount_frame(&view).into());
            }
            seen.insert(m.path.clone(), view);
        }
        for gone in last.keys().filter(|k| !seen.contains_key(*k)) {
            let data = json!({ "mount": gone });
            let _ = shared
                .events
                .tx
                .send(format!("event: gone\ndata: {data}\n\n").into());
        }
        last = seen;
    }
}

/// Serve one `/events` connection until the client leaves or the server shuts down.
pub(crate) async fn serve(
    mut stream: Connection,
    peer: SocketAddr,
    req: Request,
    shared: Arc<Shared>,
) {
    let ev = &shared.events;
    if ev.connections.fetch_add(1, Ordering::AcqRel) >= shared.config().server.max_listeners {
        ev.connections.fetch_sub(1, Ordering::AcqRel);
        let resp = Response::text(503, "Too many event streams").encode("HTTP/1.0", false);
        let _ = stream.write_all(&resp).await;
        shared.access_log.log(peer, &req, 503, 0);
        return;
    }
    struct Count<'a>(&'a AtomicUsize);
    impl Drop for Count<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _count = Count(&ev.connections);
    // Subscribe before the snapshot, so no change falls between the two.
    let mut rx = ev.tx.subscribe();
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: {}\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache, no-store\r\nAccess-Control-Allow-Origin: *\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 2000\n\n",
        http::SERVER
    );
    let mut sent = 0u64;
    let mut out = head.into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(snapshot(&shared).as_bytes());
    }
    let ok = write_or_cut(&mut stream, &out, &shared, peer).await;
    sent += out.len() as u64;
    if ok && req.method != "HEAD" {
        let mut ping = tokio::time::interval(PING);
        ping.tick().await;
        loop {
            let frame: Arc<str> = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                _ = ping.tick() => ": ping\n\n".into(),
                r = rx.recv() => match r {
                    Ok(f) => f,
                    Err(broadcast::error::RecvError::Lagged(_)) => snapshot(&shared).into(),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if !write_or_cut(&mut stream, frame.as_bytes(), &shared, peer).await {
                break;
            }
            sent += frame.len() as u64;
        }
    }
    shared.access_log.log(peer, &req, 200, sent);
}

/// A write that a shutdown interrupts (a client that stopped reading must not hold it up),
/// and that ends the connection when the client takes nothing for the server's
/// `send-timeout-secs` (an event stream nobody reads would otherwise keep its connection, and
/// the kernel the frames it could not send, for good). False: the connection is over.
async fn write_or_cut(
    stream: &mut Connection,
    bytes: &[u8],
    shared: &Shared,
    peer: SocketAddr,
) -> bool {
    let timeout = match shared.config().server.send_timeout_secs {
        0 => Duration::MAX,
        s => Duration::from_secs(s),
    };
    let mut at = 0;
    while at < bytes.len() {
        let write = tokio::time::timeout(timeout, stream.write(&bytes[at..]));
        let written = tokio::select! {
            r = write => r,
            _ = shared.shutdown.cancelled() => return false,
        };
        match written {
            Ok(Ok(0) | Err(_)) => return false,
            Ok(Ok(n)) => at += n,
            Err(_) => {
                tracing::info!(%peer, "event stream cut off: it took nothing for send-timeout-secs");
                return false;
            }
        }
    }
    true
}
