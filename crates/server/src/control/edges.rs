//! The origin's side of spreading listeners over edges: the prober. Every edge that announced
//! itself in its poll of the mount list (`admin`'s `streamlist`) is asked for its
//! `/status-json.xsl` every [`PROBE_EVERY`], as a listener would reach it; the answer says
//! which mounts it serves and how many listeners it has (Agora, icecast2 and Icecast-KH all
//! serve that page). An edge that does not answer within [`PROBE_TIMEOUT`] gets no more
//! listeners until it answers again. The choice of an edge is the board's
//! (`telemetry/edges.rs`); the redirect is the listener handler's.
//!
//! **Bounds:** at most `MAX_EDGES` probes at a time, each answer read up to [`MAX_STATUS`]
//! bytes and at most `MAX_EDGE_MOUNTS` mounts kept; a change of an edge's health is logged
//! once.

use std::collections::BTreeSet;
use std::sync::Arc;

use agora_client::{Endpoint, ServerUrl};
use serde_json::Value;

use crate::state::Shared;
use crate::telemetry::edges::{
    EdgeLoad, MAX_EDGE_MOUNTS, PROBE_EVERY, PROBE_TIMEOUT, ProbeTarget, authority,
};

/// Largest status answer read from an edge.
const MAX_STATUS: u64 = 1024 * 1024;

/// Probe the announced edges until the server shuts down (idle while there are none).
pub(crate) async fn probe(shared: Arc<Shared>) {
    let board = shared.edges.clone();
    let mut known: BTreeSet<String> = BTreeSet::new();
    loop {
        let targets = board.targets();
        let now: BTreeSet<String> = targets.iter().map(|t| authority(&t.host, t.port)).collect();
        for gone in known.difference(&now) {
            tracing::info!(edge = %gone, "edge forgotten: it stopped polling the mount list");
        }
        known = now;
        let mut probes = tokio::task::JoinSet::new();
        for t in targets {
            probes.spawn(async move {
                let result = tokio::time::timeout(PROBE_TIMEOUT, load_of(&t))
                    .await
                    .unwrap_or_else(|_| Err("no answer within 2 s".to_string()));
                (t, result)
            });
        }
        while let Some(done) = probes.join_next().await {
            let Ok((t, result)) = done else { continue };
            let error = result.as_ref().err().cloned();
            if board.report(&t, result) {
                let edge = authority(&t.host, t.port);
                match error {
                    None => tracing::info!(%edge, "edge answers: it gets listeners"),
                    Some(e) => tracing::warn!(%edge, "edge gets no listeners: {e}"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = board.new_edge.notified() => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// One probe: the edge's status page, read into its load.
async fn load_of(t: &ProbeTarget) -> Result<EdgeLoad, String> {
    let url: ServerUrl = format!("http://{}/status-json.xsl", authority(&t.host, t.port))
        .parse()
        .map_err(|e: agora_client::UrlError| e.to_string())?;
    let body = agora_client::meta::get(&Endpoint::new(url), "/status-json.xsl", MAX_STATUS)
        .await
        .map_err(|e| e.to_string())?;
    parse_status(&body).ok_or_else(|| "its /status-json.xsl is not Icecast's status".to_string())
}

/// Icecast's status JSON (`icestats.source`: absent, one object, or an array) read into the
/// listeners and the mounts (the path of each `listenurl`, with its listeners).
fn parse_status(body: &[u8]) -> Option<EdgeLoad> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let stats = v.get("icestats")?;
    let sources: Vec<&Value> = match stats.get("source") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    };
    let mut load = EdgeLoad {
        listeners: 0,
        mounts: Vec::new(),
    };
    for s in sources {
        let listeners = match s.get("listeners") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(Value::String(t)) => t.parse().unwrap_or(0),
            _ => 0,
        };
        load.listeners = load.listeners.saturating_add(listeners as usize);
        let mount = s
            .get("listenurl")
            .and_then(Value::as_str)
            .and_then(|u| u.split_once("://"))
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .filter(|m| m.len() > 1 && m.len() <= 1024 && !m.contains(char::is_control));
        if let Some(m) = mount
            && load.mounts.len() < MAX_EDGE_MOUNTS
        {
            load.mounts.push((m.to_string(), listeners as usize));
        }
    }
    Some(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icecast_status_is_read_in_its_three_shapes() {
        let none = br#"{"icestats":{"admin":"a","host":"h"}}"#;
        assert_eq!(
            parse_status(none),
            Some(EdgeLoad {
                listeners: 0,
                mounts: vec![]
            })
        );
        let one =
            br#"{"icestats":{"source":{"listenurl":"http://edge:8000/live.ogg","listeners":7}}}"#;
        assert_eq!(
            parse_status(one),
            Some(EdgeLoad {
                listeners: 7,
                mounts: vec![("/live.ogg".into(), 7)]
            })
        );
        let many = br#"{"icestats":{"source":[
            {"listenurl":"http://edge:8000/a.mp3","listeners":"3"},
            {"listenurl":"http://edge:8000/b.ogg","listeners":4,"dummy":null},
            {"listenurl":"garbage","listeners":-1}]}}"#;
        assert_eq!(
            parse_status(many),
            Some(EdgeLoad {
                listeners: 7,
                mounts: vec![("/a.mp3".into(), 3), ("/b.ogg".into(), 4)]
            })
        );
        assert_eq!(parse_status(b"<html>"), None);
        assert_eq!(parse_status(br#"{"other":1}"#), None);
    }
}
