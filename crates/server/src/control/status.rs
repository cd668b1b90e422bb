//! `/status-json.xsl`: Icecast's JSON status, shape included, because dashboards, munin
//! plugins and exporters parse it: `icestats.source` is absent with no mount, an object with
//! one, and an array with several (a quirk those tools already handle).

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value, json};

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

/// A text value that Icecast's XSLT prints as a JSON number when it looks like one
/// (`"bitrate": 128`, a stream named `"2024"` becomes `2024`); dashboards expect that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub(crate) String);

impl Serialize for Scalar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.parse::<i64>() {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.serialize_str(&self.0),
        }
    }
}

/// Icecast's `source` object: what `/status-json.xsl`, the admin stats and the API report of
/// a mount, in Icecast's field order. Absent values are left out, as Icecast does.
#[derive(Debug, Serialize)]
pub(crate) struct SourceStatus {
    pub(crate) listenurl: String,
    pub(crate) listeners: usize,
    pub(crate) listener_peak: usize,
    pub(crate) server_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subtype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_name: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_description: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_url: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) genre: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bitrate: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audio_info: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frame_size: Option<String>,
    pub(crate) stream_start: String,
    pub(crate) stream_start_iso8601: String,
    pub(crate) title: String,
}

impl SourceStatus {
    pub(crate) fn of(m: &Mount, shared: &Shared) -> SourceStatus {
        let st = m.state();
        let scalar = |v: &Option<String>| v.clone().map(Scalar);
        let subtype = st.info.subtype();
        SourceStatus {
            listenurl: format!(
                "http://{}:{}{}",
                shared.config().server.hostname,
                shared.public_port,
                m.path
            ),
            listeners: m.listeners.load(Ordering::Relaxed),
            listener_peak: m.listener_peak.load(Ordering::Relaxed),
            server_type: st
                .format
                .unwrap_or(agora_format::Format::Opaque)
                .content_type(st.info.has_video()),
            subtype: (!subtype.is_empty()).then_some(subtype),
            server_name: scalar(&st.meta.name),
            server_description: scalar(&st.meta.description),
            server_url: scalar(&st.meta.url),
            genre: scalar(&st.meta.genre),
            bitrate: scalar(&st.meta.bitrate()),
            audio_info: scalar(&st.meta.audio_info),
            frame_size: st.info.video_size.map(|(w, h)| format!("{w}x{h}")),
            stream_start: rfc2822(st.started),
            stream_start_iso8601: iso8601(st.started),
            title: m.title().text.clone(),
        }
    }
}

/// `/status-json.xsl`'s object: Icecast's XSLT ends every source with `"dummy": null`.
#[derive(Debug, Serialize)]
struct IcecastSource {
    #[serde(flatten)]
    source: SourceStatus,
    dummy: (),
}

/// The server-level fields of `icestats`.
pub(crate) fn server_fields(shared: &Shared) -> Map<String, Value> {
    let mut ice = Map::new();
    ice.insert("admin".into(), json!(shared.config().server.admin_email));
    ice.insert("host".into(), json!(shared.config().server.hostname));
    ice.insert("location".into(), json!(shared.config().server.location));
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
    let sources: Vec<Value> = mounts
        .iter()
        .map(|m| {
            json!(IcecastSource {
                source: SourceStatus::of(m, shared),
                dummy: (),
            })
        })
        .collect();
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
        assert_eq!(json!(Scalar("128".into())), json!(128));
        assert_eq!(json!(Scalar("x".into())), json!("x"));
    }
}
