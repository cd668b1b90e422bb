//! The hand-off between the encoder's output and the push targets.
//!
//! **Invariant:** publishing never waits. Events go into a bounded broadcast ring
//! ([`CAPACITY`] events); a target that falls further behind loses the oldest and is told so
//! (`Lagged`), and skips to the next sync point. The current stream headers are kept beside the
//! ring, updated under the same lock as the subscription, so a target that subscribes gets
//! exactly the headers that belong to the events it will receive.

use std::sync::Mutex;

use agora_format::{Event, Format, StreamInfo};
use bytes::Bytes;
use tokio::sync::{broadcast, watch};

/// Events a target may fall behind before it skips ahead. Chunks are one encoder read each
/// (a few KiB), so this is tens of seconds of a 250 kbit/s stream, and bounded memory.
pub const CAPACITY: usize = 512;

#[derive(Debug)]
struct Inner {
    headers: Option<Bytes>,
    tx: Option<broadcast::Sender<Event>>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// The stream's Content-Type once the format is known; `None` in the channel until then,
    /// and the sender dropped (closed) when the stream ends.
    kind: watch::Sender<Option<String>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An open hub with no headers yet.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Hub {
            inner: Mutex::new(Inner {
                headers: None,
                tx: Some(tx),
            }),
            kind: watch::Sender::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the stream's format (first call wins): targets waiting for it connect.
    pub fn set_format(&self, format: Format, info: &StreamInfo) {
        let ct = format.content_type(info.has_video()).to_string();
        self.kind.send_if_modified(|k| {
            if k.is_none() {
                *k = Some(ct);
                true
            } else {
                false
            }
        });
    }

    /// Hands an event to every target. Never waits.
    pub fn publish(&self, ev: Event) {
        let mut inner = self.lock();
        if let Event::Headers(h) = &ev {
            inner.headers = Some(h.clone());
        }
        if let Some(tx) = &inner.tx {
            // No receiver (every target down) is fine: the data is live, not kept.
            let _ = tx.send(ev);
        }
    }

    /// The current headers and a receiver of every event after them.
    pub fn subscribe(&self) -> (Option<Bytes>, broadcast::Receiver<Event>) {
        let inner = self.lock();
        let rx = match &inner.tx {
            Some(tx) => tx.subscribe(),
            None => {
                // Closed: a receiver that reports Closed at once.
                let (tx, rx) = broadcast::channel(1);
                drop(tx);
                rx
            }
        };
        (inner.headers.clone(), rx)
    }

    /// The stream ended: receivers drain what they have, then see `Closed`.
    pub fn close(&self) {
        self.lock().tx = None;
        self.kind.send_modify(|_| {});
    }

    /// Whether the stream ended.
    pub fn is_closed(&self) -> bool {
        self.lock().tx.is_none()
    }

    /// Resolves when the hub is closed.
    pub async fn closed(&self) {
        let mut rx = self.kind.subscribe();
        while !self.is_closed() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits for the stream's Content-Type; `None` if the stream ended before it was known.
    pub async fn content_type(&self) -> Option<String> {
        let mut rx = self.kind.subscribe();
        loop {
            // The watch's read guard ends with this statement, not with the `if let`.
            let ct = rx.borrow_and_update().clone();
            if let Some(ct) = ct {
                return Some(ct);
            }
            if self.is_closed() || rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_format::Chunk;

    #[tokio::test]
    async fn subscribers_get_the_headers_of_what_follows_and_see_the_end() {
        let hub = Hub::new();
        hub.publish(Event::Headers(Bytes::from_static(b"H1")));
        hub.publish(Event::Chunk(Chunk {
            bytes: Bytes::from_static(b"old"),
            sync: true,
        }));
        let (h, mut rx) = hub.subscribe();
        assert_eq!(h.as_deref(), Some(&b"H1"[..]));
        hub.publish(Event::Headers(Bytes::from_static(b"H2")));
        hub.close();
        assert_eq!(
            rx.recv().await.ok(),
            Some(Event::Headers(Bytes::from_static(b"H2")))
        );
        assert!(rx.recv().await.is_err());
        assert!(hub.content_type().await.is_none());
        hub.closed().await;
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking() {
        let hub = Hub::new();
        let (_, mut rx) = hub.subscribe();
        for _ in 0..CAPACITY + 10 {
            hub.publish(Event::Chunk(Chunk {
                bytes: Bytes::from_static(b"x"),
                sync: false,
            }));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }
}
