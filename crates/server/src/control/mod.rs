//! Control: what operators, dashboards and pages ask the server. Reads the mounts, never
//! touches the stream path.
//!
//! - [`status`]: `/status-json.xsl` in Icecast's shape.
//! - [`admin`]: Icecast's admin API (XML and JSON).
//! - [`api`]: the stable JSON API (`/api/v1/...`) and the mount view pages use.
//! - [`edges`]: the prober of the edges that announced themselves (their health and load).
//! - [`slides`]: slide uploads, the list of a mount's slides and the images (#15).
//! - [`decks`]: PDF deck uploads, their pages stepped as slides, their files (#15).
//! - [`upload`]: what the two uploads share: their checks and their body.
//! - [`events`]: the hub that turns mount changes into `/events` frames, and the handler.

pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod decks;
pub(crate) mod edges;
pub(crate) mod events;
pub(crate) mod slides;
pub(crate) mod status;
pub(crate) mod upload;
