//! Ingest: where streams come in. A source client's connection (every Icecast dialect) is
//! authenticated, claims a mount, and its bytes are framed and published to the mount.
//! Relays (a client of another server feeding the same path) come here next.
//!
//! - [`source`]: SOURCE/PUT, `Expect: 100-continue`, chunked or close-delimited bodies, then
//!   the read → demux → publish loop.

pub(crate) mod source;
