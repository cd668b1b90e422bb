//! Listeners: the Icecast-style response, the join (headers, burst from a sync point, live),
//! ICY metadata interleaving, and the write loop.
//!
//! **Architecture invariants:**
//! - A listener never copies stream bytes: it queues [`Bytes`] handles (header bytes, chunks,
//!   zero-copy slices of chunks around ICY blocks) and writes them with one vectored write.
//! - A slow listener never delays the source or another listener: it only reads the fan-out
//!   under a shared lock for the time of a few reference-count increments.
//! - A listener more than `queue-size` behind (its cursor fell off the fan-out queue, even
//!   while it is stuck in a write) is cut off, or moved to the latest sync point when the
//!   mount's `lag-policy = "skip"`.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::access_log;
use crate::config::LagPolicy;
use crate::fanout::{Read, Start, StreamHeaders, Tail};
use crate::http::{self, Request};
use crate::mount::{ListenerGuard, Mount};
use crate::server::Shared;

/// Most bytes taken from the fan-out per read; bounds what one listener holds references to.
const MAX_BATCH: usize = 64 * 1024;
/// Most buffers in one vectored write.
const MAX_IOV: usize = 64;
/// How long a new listener waits for a just-connected source to send its first bytes.
const FIRST_DATA_WAIT: Duration = Duration::from_secs(10);

static NO_META: Bytes = Bytes::from_static(&[0]);

/// Why a listener ended.
#[derive(Debug)]
enum End {
    Closed,
    Gone,
    Lagged,
}

async fn refuse(stream: &mut TcpStream, req: &Request, code: u16, body: &str) {
    let resp = http::simple_response(
        "HTTP/1.0",
        code,
        "text/plain; charset=utf-8",
        &[],
        format!("{body}\n").as_bytes(),
        false,
    );
    let _ = stream.write_all(&resp).await;
    let _ = req;
}

/// Answer one listener request on `mount`: limits, the response head, then the streaming
/// session, spawned as its own task so that nothing of the request (its head, buffers, the
/// connection task's state) stays in memory while the listener streams: a mount with 15,000
/// listeners holds 15,000 of these sessions and nothing else per listener.
pub async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    req: Request,
    mount: Arc<Mount>,
    shared: Arc<Shared>,
) {
    // Server-wide limit first, then the mount's own.
    let total = shared
        .registry
        .total_listeners
        .fetch_add(1, Ordering::AcqRel);
    let total_guard = TotalGuard(shared.clone());
    if total >= shared.config.server.max_listeners {
        tracing::warn!(%peer, mount = %mount.path, "listener refused: server listener limit");
        refuse(&mut stream, &req, 503, "Server listener limit reached").await;
        shared.access_log.log(peer, &req, 503, 0);
        return;
    }
    let Some(listener_guard) = mount.add_listener() else {
        tracing::warn!(%peer, mount = %mount.path, "listener refused: mount listener limit");
        refuse(
            &mut stream,
            &req,
            503,
            "Maximum listeners reached for this mount",
        )
        .await;
        shared.access_log.log(peer, &req, 503, 0);
        return;
    };
    let mut rx = mount.fanout.subscribe();
    // A source that just connected may not have sent a byte yet: the Content-Type comes from
    // the bytes, so wait (briefly) for them.
    if mount.state.read().format.is_none() {
        let ready =
            tokio::time::timeout(FIRST_DATA_WAIT, rx.wait_for(|t| t.next_seq > 0 || t.closed))
                .await
                .is_ok_and(|r| r.is_ok_and(|t| !t.closed));
        if !ready {
            refuse(&mut stream, &req, 503, "The stream has not started yet").await;
            shared.access_log.log(peer, &req, 503, 0);
            return;
        }
    }
    let (format, video) = {
        let st = mount.state.read();
        (
            st.format.unwrap_or(agora_format::Format::Opaque),
            st.info.has_video(),
        )
    };
    let icy = format.supports_icy()
        && req
            .header("icy-metadata")
            .is_some_and(|v| v.trim() != "0" && !v.trim().is_empty());
    let head = response_head(
        &mount,
        &shared,
        format.content_type(video),
        icy.then_some(mount.settings.icy_metaint),
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if req.method == "HEAD" {
        shared.access_log.log(peer, &req, 200, 0);
        return;
    }
    let session = Session {
        stream,
        peer,
        id: mount.next_listener_id(),
        icy: icy.then(|| Icy {
            interval: mount.settings.icy_metaint,
            until_meta: mount.settings.icy_metaint,
            sent_version: u64::MAX,
        }),
        sent_headers: None,
        pending: VecDeque::new(),
        sent: head.len() as u64,
        log_entry: shared.access_log.listener_entry(peer, &req),
        mount,
        _guards: (listener_guard, total_guard),
    };
    drop((req, head));
    shared.tracker.spawn(session.run(rx, shared.clone()));
}

struct TotalGuard(Arc<Shared>);

impl Drop for TotalGuard {
    fn drop(&mut self) {
        self.0
            .registry
            .total_listeners
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Icecast's listener response: HTTP/1.0, close-delimited, `icy-*` headers without a space
/// after the colon (as Icecast writes them; some old players match on that).
fn response_head(
    mount: &Mount,
    shared: &Shared,
    content_type: &str,
    metaint: Option<usize>,
) -> String {
    let st = mount.state.read();
    let cfg = shared.config.mount(&mount.path);
    let over = |c: Option<&String>, s: &Option<String>| c.cloned().or_else(|| s.clone());
    let name = over(cfg.and_then(|c| c.stream_name.as_ref()), &st.meta.name);
    let desc = over(
        cfg.and_then(|c| c.stream_description.as_ref()),
        &st.meta.description,
    );
    let genre = over(cfg.and_then(|c| c.genre.as_ref()), &st.meta.genre);
    let url = over(cfg.and_then(|c| c.stream_url.as_ref()), &st.meta.url);
    let mut h = format!(
        "HTTP/1.0 200 OK\r\nServer: {}\r\nDate: {}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache, no-store\r\nExpires: Mon, 26 Jul 1997 05:00:00 GMT\r\nPragma: no-cache\r\nAccess-Control-Allow-Origin: *\r\nConnection: Close\r\n",
        http::SERVER,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            // Header values come from the source: never let them break the head.
            let v: String = v.chars().filter(|c| !c.is_control()).collect();
            h.push_str(k);
            h.push(':');
            h.push_str(&v);
            h.push_str("\r\n");
        }
    };
    add("icy-name", &name);
    add("icy-description", &desc);
    add("icy-genre", &genre);
    add("icy-url", &url);
    add("icy-pub", &st.meta.public);
    add(
        "icy-br",
        &st.meta
            .bitrate
            .clone()
            .or_else(|| audio_info_bitrate(st.meta.audio_info.as_deref())),
    );
    add("ice-audio-info", &st.meta.audio_info);
    if let Some(m) = metaint {
        add("icy-metaint", &Some(m.to_string()));
    }
    h.push_str("\r\n");
    h
}

/// `bitrate=` out of an `ice-audio-info` value.
pub fn audio_info_bitrate(info: Option<&str>) -> Option<String> {
    info?.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == "bitrate").then(|| v.trim().to_string())
    })
}

struct Icy {
    interval: usize,
    /// Stream bytes left before the next metadata block.
    until_meta: usize,
    /// Title version last sent in full (`u64::MAX`: none yet, so the first block is full).
    sent_version: u64,
}

/// One streaming listener: everything it holds while it streams (the task's whole state).
struct Session {
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    mount: Arc<Mount>,
    icy: Option<Icy>,
    sent_headers: Option<Arc<StreamHeaders>>,
    /// What is queued for the socket, in order: only `Bytes` handles, never copies.
    pending: VecDeque<Bytes>,
    /// Bytes written, response head included.
    sent: u64,
    log_entry: Option<access_log::Entry>,
    /// Count the listener out of the mount and the server when the session ends.
    _guards: (ListenerGuard, TotalGuard),
}

impl Session {
    async fn run(mut self, mut rx: watch::Receiver<Tail>, shared: Arc<Shared>) {
        tracing::debug!(peer = %self.peer, mount = %self.mount.path, id = self.id, "listener joined");
        let started = Instant::now();
        let end = self.stream_until_end(&mut rx).await;
        let (peer, mount, id) = (self.peer, &self.mount, self.id);
        match end {
            End::Lagged => {
                mount.slow_listeners.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, mount = %mount.path, id, "listener cut off: fell more than queue-size behind");
            }
            End::Closed => {
                tracing::debug!(%peer, mount = %mount.path, id, "listener closed: mount ended")
            }
            End::Gone => tracing::debug!(%peer, mount = %mount.path, id, "listener left"),
        }
        shared
            .access_log
            .log_listener(self.log_entry.as_ref(), 200, self.sent, started.elapsed());
    }

    /// Stream until the listener leaves, lags (with the disconnect policy) or the mount closes
    /// (which is also how a server shutdown reaches every listener).
    async fn stream_until_end(&mut self, rx: &mut watch::Receiver<Tail>) -> End {
        let (mut cursor, mut need_sync) =
            match self.mount.fanout.start(self.mount.settings.burst_size) {
                Start::At(s) => (s, false),
                Start::NextSync(s) => (s, true),
            };
        loop {
            if need_sync {
                match self.mount.fanout.first_sync_at_or_after(cursor) {
                    Some(s) => {
                        cursor = s;
                        need_sync = false;
                    }
                    None => {
                        // Skip what arrived without a sync point and wait for more.
                        cursor = rx.borrow_and_update().next_seq.max(cursor);
                        if rx.borrow().closed {
                            return End::Closed;
                        }
                        if rx.changed().await.is_err() {
                            return End::Closed;
                        }
                        continue;
                    }
                }
            }
            // Mark the current tail seen before reading, so a publish after the read wakes us.
            rx.borrow_and_update();
            let mount = self.mount.clone();
            let read = mount.fanout.read_each(cursor, MAX_BATCH, |bytes, headers| {
                self.queue_item(bytes, headers)
            });
            match read {
                Read::Data(next) => {
                    let batch_start = cursor;
                    cursor = next;
                    if let Err(end) = self.flush(rx, batch_start).await {
                        return end;
                    }
                }
                Read::Empty => {
                    if rx.changed().await.is_err() {
                        return End::Closed;
                    }
                }
                Read::Closed => return End::Closed,
                Read::Lagged => match self.mount.settings.lag_policy {
                    LagPolicy::Disconnect => return End::Lagged,
                    LagPolicy::Skip => {
                        self.mount.slow_listeners.fetch_add(1, Ordering::Relaxed);
                        (cursor, need_sync) = match self.mount.fanout.latest_sync() {
                            Start::At(s) => (s, false),
                            Start::NextSync(s) => (s, true),
                        };
                    }
                },
            }
        }
    }

    /// Queue one fan-out chunk: its headers first if they changed, ICY blocks where due.
    fn queue_item(&mut self, bytes: &Bytes, headers: &Arc<StreamHeaders>) {
        let changed = !self
            .sent_headers
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(h, headers));
        if changed {
            if !headers.bytes.is_empty() {
                self.pending.push_back(headers.bytes.clone());
            }
            self.sent_headers = Some(headers.clone());
        }
        match self.icy.as_mut() {
            None => self.pending.push_back(bytes.clone()),
            Some(icy) => {
                let mut b = bytes.clone();
                while b.len() >= icy.until_meta {
                    let head = b.split_to(icy.until_meta);
                    if !head.is_empty() {
                        self.pending.push_back(head);
                    }
                    let title = self.mount.title.read().clone();
                    if title.version != icy.sent_version {
                        icy.sent_version = title.version;
                        self.pending.push_back(title.icy_block.clone());
                    } else {
                        self.pending.push_back(NO_META.clone());
                    }
                    icy.until_meta = icy.interval;
                }
                icy.until_meta -= b.len();
                if !b.is_empty() {
                    self.pending.push_back(b);
                }
            }
        }
    }

    /// Write everything pending. While a write is blocked, watch the fan-out: if the batch
    /// being written has fallen off the queue, the listener is too far behind.
    async fn flush(&mut self, rx: &mut watch::Receiver<Tail>, batch_start: u64) -> Result<(), End> {
        while !self.pending.is_empty() {
            let n = loop {
                // The I/O vector is built inside the poll, on the stack: an array held across
                // an await would live in every listener's task state.
                let write = std::future::poll_fn(|cx| {
                    let mut iov = [IoSlice::new(&[]); MAX_IOV];
                    let mut count = 0;
                    for (slot, b) in iov.iter_mut().zip(self.pending.iter()) {
                        *slot = IoSlice::new(b);
                        count += 1;
                    }
                    Pin::new(&mut self.stream).poll_write_vectored(cx, &iov[..count])
                });
                tokio::select! {
                    biased;
                    r = write => match r {
                        Ok(0) | Err(_) => return Err(End::Gone),
                        Ok(n) => break n,
                    },
                    r = rx.changed() => {
                        let lagged = self.mount.fanout.is_lagged(batch_start);
                        if r.is_err() || (lagged && self.mount.settings.lag_policy == LagPolicy::Disconnect) {
                            return Err(if lagged { End::Lagged } else { End::Closed });
                        }
                    }
                }
            };
            self.sent += n as u64;
            self.mount.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
            let mut left = n;
            while left > 0 {
                let Some(front) = self.pending.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.pending.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        Ok(())
    }
}
