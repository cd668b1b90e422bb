//! What the server records about itself, for operators and tools: the access log, the
//! Prometheus registry and the feed of mount events. Owned by the shared state and written by
//! every handler; the pages that show them are the control layer's (`control/`).
//!
//! - [`access_log`]: Combined Log Format, written by a thread of its own; counts requests.
//! - [`metrics`]: the Prometheus registry, mounts read at scrape time.
//! - [`events`]: the broadcast of ready-made Server-Sent Events frames.
//! - [`relays`]: the relay board: each relay's and push's state, for `/admin/relays`.
//! - [`edges`]: the edge board: the servers that announced themselves as edges of this one,
//!   their load, and the pick of the edge a listener is redirected to.

pub(crate) mod access_log;
pub(crate) mod edges;
pub(crate) mod events;
pub(crate) mod metrics;
pub(crate) mod relays;
