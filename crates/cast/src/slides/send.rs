//! A task per server that uploads the cast's slides through [`agora_client::slides`], in
//! order, and keeps those it could not send yet.
//!
//! **The queue** is bounded ([`QUEUE_MAX`] slides, and [`MEMORY_MAX`] bytes of images held
//! in memory): beyond it the oldest waiting slide is dropped, and the drop logged. With an
//! archive the queue holds the slides' files, not their bytes (the images are on disk
//! already); without one it holds the bytes.
//!
//! **Resends are harmless:** each slide has a key, and a server that has that key already
//! answers with the slide it has (`200`) and stores nothing. So a slide whose answer was lost
//! is simply sent again.
//!
//! **What the server says decides:** a network failure or a `5xx` is retried (capped
//! backoff) and the slide kept; `401`/`403` (the credentials) is said once and retried every
//! [`REFUSED_RETRY`](crate::target::REFUSED_RETRY); `404`/`405`/`501` (a server without
//! slides, such as Icecast) is said once and the target's slides are dropped from then on;
//! `400`/`413`/`415`/`507` refuse that slide only (logged, dropped).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_client::backoff::Backoff;
use agora_client::slides::{Slide as Upload, upload};
use agora_client::{ClientError, Endpoint};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::image::Slide;
use crate::target::REFUSED_RETRY;

/// Most slides waiting per server.
pub const QUEUE_MAX: usize = 500;

/// Most bytes of waiting images held in memory per server (without an archive).
pub const MEMORY_MAX: usize = 64 * 1024 * 1024;

/// What a server's slide task did, for the status line.
#[derive(Debug, Default)]
pub struct SendStats {
    /// Slides the server has (stored now, or known from an earlier send).
    pub sent: AtomicU64,
    /// Slides waiting.
    pub queued: AtomicU64,
    /// Slides dropped: the queue overflowed, or the server refused them.
    pub dropped: AtomicU64,
}

enum Body {
    Memory(Bytes),
    File(PathBuf),
}

struct Waiting {
    slide: Slide,
    body: Body,
}

impl Waiting {
    fn in_memory(&self) -> usize {
        match &self.body {
            Body::Memory(b) => b.len(),
            Body::File(_) => 0,
        }
    }
}

/// Starts the task for one server: it sends what `rx` brings until `rx` is closed and the
/// queue is empty, or `stop` is cancelled.
pub fn spawn(
    endpoint: Endpoint,
    rx: mpsc::UnboundedReceiver<Slide>,
    stop: CancellationToken,
) -> (Arc<SendStats>, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(SendStats::default());
    let task = tokio::spawn(run(endpoint, rx, stats.clone(), stop));
    (stats, task)
}

struct Queue {
    q: VecDeque<Waiting>,
    memory: usize,
}

impl Queue {
    fn push(&mut self, slide: Slide, stats: &SendStats, url: &str) {
        let body = match &slide.archived {
            Some(p) => Body::File(p.clone()),
            None => Body::Memory(slide.image.clone()),
        };
        let mut slide = slide;
        if slide.archived.is_some() {
            // The file is the copy kept: no bytes held per waiting slide.
            slide.image = Bytes::new();
        }
        let w = Waiting { slide, body };
        self.memory += w.in_memory();
        self.q.push_back(w);
        while self.q.len() > QUEUE_MAX || (self.memory > MEMORY_MAX && self.q.len() > 1) {
            if let Some(old) = self.q.pop_front() {
                self.memory -= old.in_memory();
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target = %url,
                    slide = old.slide.index,
                    "slide queue full: the oldest waiting slide is dropped for this server"
                );
            }
        }
        stats.queued.store(self.q.len() as u64, Ordering::Relaxed);
    }

    fn pop(&mut self, stats: &SendStats) {
        if let Some(w) = self.q.pop_front() {
            self.memory -= w.in_memory();
        }
        stats.queued.store(self.q.len() as u64, Ordering::Relaxed);
    }
}

async fn run(
    endpoint: Endpoint,
    mut rx: mpsc::UnboundedReceiver<Slide>,
    stats: Arc<SendStats>,
    stop: CancellationToken,
) {
    let url = endpoint.url.to_string();
    let mut queue = Queue {
        q: VecDeque::new(),
        memory: 0,
    };
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    let mut open = true;
    let mut unsupported = false;
    let mut said_refused = false;
    loop {
        while let Ok(s) = rx.try_recv() {
            queue.push(s, &stats, &url);
        }
        if unsupported {
            let n = queue.q.len() as u64;
            stats.dropped.fetch_add(n, Ordering::Relaxed);
            queue.q.clear();
            queue.memory = 0;
            stats.queued.store(0, Ordering::Relaxed);
        }
        let Some(front) = queue.q.front() else {
            if !open {
                return;
            }
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => queue.push(s, &stats, &url),
                    None => open = false,
                },
                _ = stop.cancelled() => return,
            }
            continue;
        };
        let body = match &front.body {
            Body::Memory(b) => b.clone(),
            Body::File(p) => match tokio::fs::read(p).await {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::warn!(target = %url, file = %p.display(), "slide not sent, its file cannot be read: {e}");
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    queue.pop(&stats);
                    continue;
                }
            },
        };
        let s = &front.slide;
        let sent = tokio::select! {
            r = upload(&endpoint, Upload {
                at: s.at,
                key: &s.key,
                content_type: s.kind.content_type(),
                body: &body,
            }) => r,
            _ = stop.cancelled() => return,
        };
        let wait = match sent {
            Ok(_) => {
                tracing::debug!(target = %url, slide = s.index, at = s.at, "slide sent");
                stats.sent.fetch_add(1, Ordering::Relaxed);
                queue.pop(&stats);
                backoff.reset();
                said_refused = false;
                continue;
            }
            Err(e) if e.is_denied() => {
                if !said_refused {
                    tracing::error!(
                        "slides refused: {url} refused the cast's credentials for its slides ({e}); asking again every {} s",
                        REFUSED_RETRY.as_secs()
                    );
                    said_refused = true;
                }
                REFUSED_RETRY
            }
            Err(ClientError::Refused(404 | 405 | 501, _)) => {
                tracing::warn!(target = %url, "this server does not take slides (no /admin/slides): they are not sent to it");
                unsupported = true;
                continue;
            }
            Err(ClientError::Refused(code @ (400 | 413 | 415 | 507), ref why)) => {
                tracing::warn!(target = %url, slide = s.index, "the server refused a slide ({code} {why}): dropped");
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                queue.pop(&stats);
                continue;
            }
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::debug!(target = %url, "slide not sent: {e}; retrying in {:.1} s", wait.as_secs_f32());
                wait
            }
        };
        // Wait, taking new slides meanwhile.
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                s = rx.recv(), if open => match s {
                    Some(s) => queue.push(s, &stats, &url),
                    None => open = false,
                },
                _ = stop.cancelled() => return,
            }
        }
    }
}
