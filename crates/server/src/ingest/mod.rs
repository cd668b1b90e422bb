//! Ingest: where streams come in. A source client's connection (every Icecast dialect) is
//! authenticated, claims a mount, and its bytes are framed and published to the mount.
//! A relay is a client of another server (`agora-client`'s pull) feeding the same path.
//!
//! - [`source`]: SOURCE/PUT, `Expect: 100-continue`, chunked or close-delimited bodies, then
//!   the read loop.
//! - [`relay`]: a mount pulled from another server (`[[relay]]`), reconnecting on its own.
//! - [`master`]: `[master]`: every mount another server lists, relayed, followed as it changes.
//! - [`loop_file`]: `loop-file`: the server plays a media file into a mount, in a loop.
//! - [`feed`]: [`feed::Ingest`], the path all of them take into the mount: count, demux,
//!   publish.

pub(crate) mod feed;
pub(crate) mod loop_file;
pub(crate) mod master;
pub(crate) mod relay;
pub(crate) mod source;
