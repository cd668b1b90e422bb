//! The stable JSON API (`/api/v1/...`) and the mount view shared with the events stream and
//! the web pages. Unlike `/status-json.xsl`, shapes here never depend on how many mounts there
//! are: lists are lists.
//!
//! - `GET /api/v1/mounts`: `{"mounts": [view, ...]}` in path order.
//! - `GET /api/v1/mounts/<mount>`: one view, 404 if no such mount.
//! - `GET /api/v1/status`: Icecast's status fields (`icestats`), `source` always a list of
//!   the `/status-json.xsl` objects plus `mount`, `connected` and `playable`.

use agora_format::{Codec, Format};
use serde::Serialize;
use serde_json::{Value, json};

use crate::control::status::{self, Scalar, SourceStatus};
use crate::state::Shared;
use crate::stream::mount::Mount;
use crate::wire::http::{JSON, Response};

/// What today's browsers can play of a mount: `Some("video")`, `Some("audio")`, or `None`
/// with the reason (Chromium and Firefox no longer play Ogg Theora): a clause, lower case and
/// without a full stop, which the pages make a sentence of and follow with what to do.
pub(crate) fn playable(m: &Mount) -> (Option<&'static str>, Option<&'static str>) {
    let st = m.state();
    let codecs = &st.info.codecs;
    match st.format {
        None => (None, Some("the stream has not started yet")),
        Some(Format::WebM) => {
            let video_ok = codecs
                .iter()
                .filter(|c| c.is_video())
                .all(|c| matches!(c, Codec::Vp8 | Codec::Vp9 | Codec::Av1));
            if !video_ok {
                (None, Some("browsers do not play this WebM video codec"))
            } else if st.info.has_video() {
                (Some("video"), None)
            } else {
                (Some("audio"), None)
            }
        }
        Some(Format::Ogg) => {
            if codecs.contains(&Codec::Theora) {
                (None, Some("browsers no longer play Ogg Theora"))
            } else if codecs
                .iter()
                .all(|c| matches!(c, Codec::Opus | Codec::Vorbis | Codec::Flac))
            {
                (Some("audio"), None)
            } else {
                (None, Some("browsers do not play this Ogg codec"))
            }
        }
        Some(Format::Mp3 | Format::Aac) => (Some("audio"), None),
        Some(_) => (None, Some("browsers do not play this format")),
    }
}

/// One mount as pages and tools see it (`/api/v1/mounts`, `/events`): every key always
/// present, `null` when unknown.
#[derive(Debug, Serialize)]
pub(crate) struct MountView {
    mount: String,
    listenurl: String,
    name: Option<Scalar>,
    description: Option<Scalar>,
    genre: Option<Scalar>,
    url: Option<Scalar>,
    content_type: &'static str,
    codecs: String,
    frame_size: Option<String>,
    bitrate: Option<Scalar>,
    title: String,
    listeners: usize,
    listener_peak: usize,
    /// Other servers relaying the mount (not counted in `listeners`).
    relays: usize,
    /// The mount's listeners on the edges that announced themselves here, at their last probe
    /// (not counted in `listeners`): `listeners + edge_listeners` is the whole audience.
    edge_listeners: usize,
    connected: bool,
    stream_start_iso8601: String,
    playable: Option<&'static str>,
    not_playable_because: Option<&'static str>,
    m3u: String,
    xspf: String,
    watch: String,
}

impl std::fmt::Display for MountView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
    }
}

pub(crate) fn mount_view(m: &Mount, shared: &Shared) -> MountView {
    let s = SourceStatus::of(m, shared);
    let (playable, why) = playable(m);
    MountView {
        mount: m.path.clone(),
        listenurl: s.listenurl,
        name: s.server_name,
        description: s.server_description,
        genre: s.genre,
        url: s.server_url,
        content_type: s.server_type,
        codecs: s.subtype.unwrap_or_default(),
        frame_size: s.frame_size,
        bitrate: s.bitrate,
        title: s.title,
        listeners: s.listeners,
        listener_peak: s.listener_peak,
        relays: m.relays.load(std::sync::atomic::Ordering::Relaxed),
        edge_listeners: shared.edges.listeners_of(&m.path),
        connected: m.has_source(),
        stream_start_iso8601: s.stream_start_iso8601,
        playable,
        not_playable_because: why,
        m3u: format!("{}.m3u", m.path),
        xspf: format!("{}.xspf", m.path),
        watch: format!("/watch{}", m.path),
    }
}

/// Answer a `/api/v1/...` request: (status, JSON body).
pub(crate) fn handle(path: &str, shared: &Shared) -> Response {
    let not_found = |what: &str| {
        Response::new(
            404,
            JSON,
            json!({ "error": format!("{what} not found") }).to_string(),
        )
    };
    match path {
        "/api/v1/mounts" => {
            let mounts: Vec<MountView> = shared
                .registry
                .all()
                .iter()
                .map(|m| mount_view(m, shared))
                .collect();
            Response::new(200, JSON, json!({ "mounts": mounts }).to_string())
        }
        "/api/v1/status" => Response::new(200, JSON, status_v1(shared).to_string()),
        p => match p.strip_prefix("/api/v1/mounts/") {
            Some(rest) => {
                let mount = format!("/{rest}");
                match shared.registry.get(&mount) {
                    Some(m) => Response::new(200, JSON, mount_view(&m, shared).to_string()),
                    None => not_found(&format!("mount {mount}")),
                }
            }
            None => not_found(&format!("API path {p}")),
        },
    }
}

/// A source of `/api/v1/status`: Icecast's object without its `dummy`, plus the mount,
/// whether a source is connected and what browsers can play.
#[derive(Debug, Serialize)]
struct StatusV1Source {
    #[serde(flatten)]
    source: SourceStatus,
    mount: String,
    connected: bool,
    playable: Option<&'static str>,
}

/// Icecast's status with `source` always a list.
fn status_v1(shared: &Shared) -> Value {
    let sources: Vec<StatusV1Source> = shared
        .registry
        .all()
        .iter()
        .map(|m| StatusV1Source {
            source: SourceStatus::of(m, shared),
            mount: m.path.clone(),
            connected: m.has_source(),
            playable: playable(m).0,
        })
        .collect();
    let mut ice = status::server_fields(shared);
    ice.insert("source".into(), json!(sources));
    json!({ "icestats": ice })
}
