//! The stream itself: mounts and their fan-out. Everything between a source's framed chunks
//! and a listener's cursor. Knows nothing of HTTP.
//!
//! - [`mount`]: the mount registry, per-mount state and counters, source claims and the grace
//!   period.
//! - [`ending`]: why a source or a listener ended, tagged by origin.
//! - [`fanout`]: the per-mount queue of `Bytes` every listener reads through its own cursor.
//! - [`spool`]: a mount's recent bytes in an in-memory file, for `sendfile`.
//! - [`slides`]: each mount's slide images (#15), in memory and on disk, bounded.
//! - [`decks`]: each mount's uploaded PDF deck (#15), its pages rendered by poppler's
//!   children, bounded.
//! - [`parking`]: caught-up listeners wait with their mount, without a task, and the mount's
//!   writers send them each wake-up's chunks.

pub(crate) mod decks;
pub(crate) mod ending;
pub(crate) mod fanout;
pub(crate) mod mount;
pub(crate) mod parking;
pub(crate) mod slides;
pub(crate) mod spool;
