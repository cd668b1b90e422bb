//! Agora's Icecast-compatible streaming server.
//!
//! The crate is laid out by the path a stream takes:
//!
//! ```text
//!  server ── accept loop, one task per connection, request heads ──► routing
//!    │                                                                 │
//!    │  wire/ (HTTP heads, responses, credentials)                     ├─► ingest/source ──► agora_format::Demuxer
//!    │                                                                 │                          │ Mount::publish
//!    │                                                                 │                          ▼
//!    │                                                                 │          stream/mount ─► stream/fanout (bounded Bytes queue)
//!    │                                                                 │                          │ one cursor per listener
//!    │                                                                 ├─► egress/listener ◄──────┘ headers, burst, live, ICY
//!    │                                                                 ├─► control/ (admin, api, status, events)
//!    │                                                                 └─► web (pages, playlists)
//!    └── state (Shared: config, credentials, registry, telemetry/)
//! ```
//!
//! Map (each module's doc has its own):
//! - `server`: bind (large backlog), accept loop, reading request heads, shutdown.
//! - `reload`: a new configuration applied while the server runs (SIGHUP), and the relays,
//!   pushes and `[master]` started and stopped to match it.
//! - `routing`: which handler answers a request.
//! - `state`: `Shared`, what every connection shares.
//! - `config`: TOML configuration, defaults, validation.
//! - `secret`: [`Secret`] (a password no `Debug` shows) and [`read_password_file`] (the
//!   `*-password-file` keys and flags).
//! - `mount_path`: the validated name of a mount; request paths decoded once.
//! - `listener_auth`: a mount's listener authentication (an htpasswd file of bcrypt
//!   hashes, or a URL asked as Icecast's url authentication, with its remove URL and time
//!   limit), bcrypt off the runtime.
//! - `htpasswd`: the one parser of htpasswd files (bcrypt lines only).
//! - `limits`: per-address limits (connections still sending their head, listeners, failed
//!   logins).
//! - `wire`: the HTTP wire (`http`), credentials (`auth`), the connection (`conn`, plain or
//!   TLS).
//! - `tls`: HTTPS certificates and keys, read from PEM files, swapped on reload.
//! - `ingest`: sources (`source`); relays next.
//! - `stream`: mounts (`mount`), their fan-out (`fanout`) and their slides (`slides`).
//! - `egress`: listeners (`listener`).
//! - `control`: `status`, `admin`, `api`, `events`, `slides`.
//! - `telemetry`: `access_log`, `metrics`, the `events` feed.
//! - `web`: the embedded pages (`/`, `/watch/<mount>`, `/admin/`), playlists.
//! - `logging`: the server's own log against floods and forgeries: peer text shown escaped
//!   and bounded, and the lines a peer can repeat limited per peer (a few, then a summary).
//! - `sync`: the server's locks and the rule that keeps them from deadlocking (every guard
//!   is a leaf), checked in debug builds.
//! - `watchdog`: a heartbeat on the runtime and a thread that reports when it stops.
//!
//! **Layering** (checked by `scripts/module-cycles`): a module uses only modules below it in
//! this list: `server` → `reload` → `routing` → `ingest`, `egress`, `control`, `web` → `state` →
//! `telemetry` → `stream`, `listener_auth` → `wire`, `config` → `mount_path`, `logging`,
//! `secret`, `htpasswd`, `tls`, `limits` → `sync`, `watchdog`.

mod config;
mod control;
mod egress;
mod htpasswd;
mod ingest;
mod limits;
mod listener_auth;
mod logging;
mod mount_path;
mod reload;
mod routing;
mod secret;
mod server;
mod state;
mod stream;
mod sync;
mod telemetry;
mod tls;
mod watchdog;
mod web;
mod wire;

pub use config::Config;
pub use reload::{ReloadError, Reloaded, Reloader};
pub use secret::{Secret, SecretFileError, read_password_file};
pub use server::{Server, StartError};
pub use state::Credentials;
pub use tls::TlsError;
pub use wire::auth::random_password;

/// Entry points for the fuzz targets in `fuzz/` and for the suite's replay of their corpora:
/// not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::wire::http::fuzz_request_head as request_head;
}
