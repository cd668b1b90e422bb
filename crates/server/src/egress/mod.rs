//! Egress: where streams go out. A listener gets Icecast's response head, the stream headers,
//! a burst from a sync point and then live chunks, with ICY metadata spliced in on request.
//!
//! - [`listener`]: the join, the session task that streams, ICY, lag handling.
//! - [`push`]: `[[push]]`: a mount forwarded to another server as its source client.

pub(crate) mod listener;
pub(crate) mod push;
