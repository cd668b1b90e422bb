//! `/status-json.xsl`: Icecast's JSON status, shape included, because dashboards, munin
//! plugins and exporters parse it: `icestats.source` is absent with no mount, an object with
//! one, and an array with several (a quirk those tools already handle).

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::egress::listener::audio_info_bitrate;
use crate::state::Shared;
use crate::stream::mount::Mount;

/// RFC 2822-style date as Icecast prints `server_start`/`stream_start`.
pub(crate) fn rfc2822(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// ISO 8601 with offset, as Icecast prints `*_iso8601`.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    t.format(&f).unwrap_or_default()
}

/// Numbers that look numeric become JSON numbers, as Icecast's XSLT does.
fn scalar(s: &str) -> Value {
    if let Ok(n) = s.parse::<i64>() {
        return Value::from(n);
    }
    Value::from(s)
}

pub(crate) fn source_json(m: &Mount, shared: &Shared) -> Value {
    let st = m.state();
    let cfg = shared.config.mount(&m.path);
    let over = |c: Option<&String>, s: &Option<String>| c.cloned().or_else(|| s.clone());
    let mut o = Map::new();
    o.insert(
        "listenurl".into(),
        json!(format!(
            "http://{}:{}{}",
            shared.config.server.hostname, shared.public_port, m.path
        )),
    );
    o.insert(
        "listeners".into(),
        json!(m.listeners.load(Ordering::Relaxed)),
    );
    o.insert(
        "listener_peak".into(),
        json!(m.listener_peak.load(Ordering::Relaxed)),
    );
    let fmt = st.format.unwrap_or(agora_format::Format::Opaque);
    o.insert(
        "server_type".into(),
        json!(fmt.content_type(st.info.has_video())),
    );
    let subtype = st.info.subtype();
    if !subtype.is_empty() {
        o.insert("subtype".into(), json!(subtype));
    }
    let fields = [
        (
            "server_name",
            over(cfg.and_then(|c| c.stream_name.as_ref()), &st.meta.name),
        ),
        (
            "server_description",
            over(
                cfg.and_then(|c| c.stream_description.as_ref()),
                &st.meta.description,
            ),
        ),
        (
            "server_url",
            over(cfg.and_then(|c| c.stream_url.as_ref()), &st.meta.url),
        ),
        (
            "genre",
            over(cfg.and_then(|c| c.genre.as_ref()), &st.meta.genre),
        ),
        (
            "bitrate",
            st.meta
                .bitrate
                .clone()
                .or_else(|| audio_info_bitrate(st.meta.audio_info.as_deref())),
        ),
        ("audio_info", st.meta.audio_info.clone()),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            o.insert(k.into(), scalar(&v));
        }
    }
    if let Some((w, h)) = st.info.video_size {
        o.insert("frame_size".into(), json!(format!("{w}x{h}")));
    }
    o.insert("stream_start".into(), json!(rfc2822(st.started)));
    o.insert("stream_start_iso8601".into(), json!(iso8601(st.started)));
    let title = m.title().text.clone();
    o.insert("title".into(), json!(title));
    o.insert("dummy".into(), Value::Null);
    Value::Object(o)
}

/// The server-level fields of `icestats`.
pub(crate) fn server_fields(shared: &Shared) -> Map<String, Value> {
    let mut ice = Map::new();
    ice.insert("admin".into(), json!(shared.config.server.admin_email));
    ice.insert("host".into(), json!(shared.config.server.hostname));
    ice.insert("location".into(), json!(shared.config.server.location));
    ice.insert("server_id".into(), json!(crate::wire::http::SERVER));
    ice.insert("server_start".into(), json!(rfc2822(shared.started)));
    ice.insert(
        "server_start_iso8601".into(),
        json!(iso8601(shared.started)),
    );
    ice
}

pub(crate) fn status_json(shared: &Shared) -> String {
    let mounts = shared.registry.all();
    let sources: Vec<Value> = mounts.iter().map(|m| source_json(m, shared)).collect();
    let mut ice = server_fields(shared);
    match sources.len() {
        0 => {}
        1 => {
            ice.insert(
                "source".into(),
                sources.into_iter().next().unwrap_or(Value::Null),
            );
        }
        _ => {
            ice.insert("source".into(), Value::Array(sources));
        }
    }
    json!({ "icestats": ice }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_look_like_icecasts() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(iso8601(t), "2023-11-14T22:13:20+0000");
        assert_eq!(rfc2822(t), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(scalar("128"), json!(128));
        assert_eq!(scalar("x"), json!("x"));
    }
}
