//! The stable JSON API (`/api/v1/...`) and the mount view shared with the events stream and
//! the web pages. Unlike `/status-json.xsl`, shapes here never depend on how many mounts there
//! are: lists are lists.
//!
//! - `GET /api/v1/mounts`: `{"mounts": [view, ...]}` in path order.
//! - `GET /api/v1/mounts/<mount>`: one view, 404 if no such mount.
//! - `GET /api/v1/status`: Icecast's status fields (`icestats`), `source` always a list of
//!   the `/status-json.xsl` objects plus `mount`, `connected` and `playable`.

use std::sync::atomic::Ordering;

use agora_format::{Codec, Format};
use serde_json::{Value, json};

use crate::control::status;
use crate::state::Shared;
use crate::stream::mount::Mount;

/// What today's browsers can play of a mount: `Some("video")`, `Some("audio")`, or `None`
/// with the reason (Chromium and Firefox no longer play Ogg Theora).
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
                (
                    None,
                    Some("browsers no longer play Ogg Theora; open the playlist in VLC or mpv"),
                )
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

/// One mount as pages and tools see it.
pub(crate) fn mount_view(m: &Mount, shared: &Shared) -> Value {
    let src = status::source_json(m, shared);
    let get = |k: &str| src.get(k).cloned().unwrap_or(Value::Null);
    let (playable, why) = playable(m);
    let st = m.state();
    json!({
        "mount": m.path,
        "listenurl": get("listenurl"),
        "name": get("server_name"),
        "description": get("server_description"),
        "genre": get("genre"),
        "url": get("server_url"),
        "content_type": get("server_type"),
        "codecs": st.info.subtype(),
        "frame_size": get("frame_size"),
        "bitrate": get("bitrate"),
        "title": m.title().text,
        "listeners": m.listeners.load(Ordering::Relaxed),
        "listener_peak": m.listener_peak.load(Ordering::Relaxed),
        "connected": m.has_source(),
        "stream_start_iso8601": status::iso8601(st.started),
        "playable": playable,
        "not_playable_because": why,
        "m3u": format!("{}.m3u", m.path),
        "xspf": format!("{}.xspf", m.path),
        "watch": format!("/watch{}", m.path),
    })
}

/// Answer a `/api/v1/...` request: (status, JSON body).
pub(crate) fn handle(path: &str, shared: &Shared) -> (u16, String) {
    let not_found = |what: &str| {
        (
            404,
            json!({ "error": format!("{what} not found") }).to_string(),
        )
    };
    match path {
        "/api/v1/mounts" => {
            let mounts: Vec<Value> = shared
                .registry
                .all()
                .iter()
                .map(|m| mount_view(m, shared))
                .collect();
            (200, json!({ "mounts": mounts }).to_string())
        }
        "/api/v1/status" => (200, status_v1(shared).to_string()),
        p => match p.strip_prefix("/api/v1/mounts/") {
            Some(rest) => {
                let mount = format!("/{rest}");
                match shared.registry.get(&mount) {
                    Some(m) => (200, mount_view(&m, shared).to_string()),
                    None => not_found(&format!("mount {mount}")),
                }
            }
            None => not_found(&format!("API path {p}")),
        },
    }
}

/// Icecast's status with `source` always a list.
fn status_v1(shared: &Shared) -> Value {
    let sources: Vec<Value> = shared
        .registry
        .all()
        .iter()
        .map(|m| {
            let mut v = status::source_json(m, shared);
            if let Value::Object(o) = &mut v {
                o.remove("dummy");
                o.insert("mount".into(), json!(m.path));
                o.insert("connected".into(), json!(m.has_source()));
                o.insert("playable".into(), json!(playable(m).0));
            }
            v
        })
        .collect();
    let mut ice = status::server_fields(shared);
    ice.insert("source".into(), Value::Array(sources));
    json!({ "icestats": ice })
}
