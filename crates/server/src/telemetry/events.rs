//! The event feed: ready-made Server-Sent Events frames broadcast to every `/events`
//! connection. The hub that writes into it and the handler that reads from it are in
//! the control layer (`control/events.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::sync::broadcast;

/// Frames a slow event connection may fall behind before it is resynchronised.
pub(crate) const CAPACITY: usize = 256;

/// The hub's output: SSE frames, shared by every connection.
#[derive(Debug)]
pub(crate) struct EventFeed {
    pub(crate) tx: broadcast::Sender<Arc<str>>,
    /// Open `/events` connections (bounded by the server's listener limit).
    pub(crate) connections: AtomicUsize,
}

impl Default for EventFeed {
    fn default() -> Self {
        EventFeed {
            tx: broadcast::Sender::new(CAPACITY),
            connections: AtomicUsize::new(0),
        }
    }
}
