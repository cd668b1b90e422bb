//! Agora's Icecast-compatible streaming server.
//!
//! ```text
//!  source client ──TCP──► server::accept_loop ──► http::read_head/parse_head ──► route
//!     (ffmpeg, libshout…)                                                        │
//!        source::handle ──dechunk──► agora_format::Demuxer ──► Mount::publish ───┘
//!                                                                  │
//!                                                       fanout::Fanout (bounded Bytes queue)
//!                                                                  │  one cursor per listener
//!        listener::handle ◄── headers, burst from a sync point, live chunks, ICY blocks
//! ```
//!
//! Map:
//! - [`config`]: TOML configuration, defaults, validation.
//! - [`server`]: bind (large backlog), accept loop, request routing, shutdown.
//! - [`http`]: request-head framing and parsing, responses, chunked decoding.
//! - [`auth`]: Basic credentials, constant-time comparison, generated passwords.
//! - [`source`]: source ingest in every dialect (SOURCE/PUT, 100-continue, chunked).
//! - [`mount`]: the mount registry, per-mount state and counters, the grace period.
//! - [`fanout`]: the per-mount buffer shared by all listeners, and its invariants.
//! - [`listener`]: listener responses, join logic, ICY metadata, vectored writes.
//! - [`status`]: the `/status-json.xsl` page.
//! - [`admin`]: the Icecast admin API (`/admin/stats`, `listclients`, `metadata`, ...), XML
//!   and JSON.
//! - [`api`]: the stable JSON API (`/api/v1/...`) and the mount view pages use.
//! - [`events`]: `/events`, Server-Sent Events of mount changes.
//! - [`metrics`]: `/metrics` for Prometheus.
//! - [`web`]: the embedded pages (`/`, `/watch/<mount>`, `/admin/`), playlists.
//! - [`access_log`]: Combined Log Format, and the request counter.
//! - `sync`: the server's locks and the rule that keeps them from deadlocking (every guard
//!   is a leaf), checked in debug builds.
//! - `watchdog`: a heartbeat on the runtime and a thread that reports when it stops.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod events;
pub mod fanout;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod mount;
pub mod server;
pub mod source;
pub mod status;
mod sync;
mod watchdog;
pub mod web;

pub use config::Config;
pub use server::{Credentials, Server};
