//! The stream itself: mounts and their fan-out. Everything between a source's framed chunks
//! and a listener's cursor. Knows nothing of HTTP.
//!
//! - [`mount`]: the mount registry, per-mount state and counters, source claims and the grace
//!   period.
//! - [`ending`]: why a source or a listener ended, tagged by origin.
//! - [`fanout`]: the per-mount queue of `Bytes` every listener reads through its own cursor.

pub(crate) mod ending;
pub(crate) mod fanout;
pub(crate) mod mount;
