//! Slides over HTTP (#15): the upload, the list and the images of `stream::slides`.
//!
//! - `PUT /admin/slides?mount=/live.webm&at=12.345&key=K` (or `POST`): the body is the image
//!   (PNG, WebP or JPEG, judged by its bytes), at most `max-slide-bytes`, with a
//!   `Content-Length`. The mount's source credentials or the admin's. `201` and the slide as
//!   JSON (`200` for a key the mount already has: nothing stored).
//! - `GET /api/v1/slides/<mount>`: `{"mount", "slides": [...]}` ordered by moment, then id;
//!   `404` for a mount that never had a slide and is not live.
//! - `GET /slides/<mount>/<id>.<ext>`: the image, cached for good (`immutable`: an id never
//!   names other bytes, see `stream::slides`).
//!
//! Every new slide is announced on `/events` (`event: slide`).
//!
//! Order of checks for an upload, each refusal before the body is read (so a refused upload
//! costs the server nothing but its head): the cross-site rule of the admin commands (403),
//! credentials through [`Shared::login`] (401, 429), parameters (400: `mount`, `at`, `key`), the
//! body's length (411 without a `Content-Length`, 413 beyond `max-slide-bytes`), a slot among
//! the [`crate::state::SLIDE_UPLOADS`] uploads in progress (503 if none frees within the body
//! timeout); then the body, read whole within [`upload::BODY_TIMEOUT`], the image (415), the store
//! (507 when full, 500 when the disk failed). A refusal closes the connection (its body is
//! unread); a stored or known slide keeps it open if the client wants.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use serde::Serialize;
use serde_json::json;

use crate::control::upload::{self, Expected, authorize, refusal};
use crate::logging::{About, Kind, shown};
use crate::mount_path::{self, MountPath};
use crate::state::Shared;
use crate::stream::slides::{AddError, Added, ImageType, Limits, Slide, probe};
use crate::wire::conn::Connection;
use crate::wire::http::{JSON, Request, Response};

/// What a slide upload's body is, for the checks every upload shares.
const SLIDE: Expected = Expected {
    noun: "slide",
    limit: "max-slide-bytes",
    is: "a PNG, WebP or JPEG image",
};
/// The longest `key`.
const MAX_KEY: usize = 64;
/// The largest `at`, in seconds: beyond any stream, and exact in milliseconds as a double.
const MAX_AT: f64 = 1e10;
/// How long a cached image is good for: a year, the most HTTP caches honour.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A slide as the API, the upload's answer and the events show it.
#[derive(Debug, Serialize)]
pub(crate) struct SlideView {
    id: u64,
    at: f64,
    url: String,
    #[serde(rename = "type")]
    kind: &'static str,
    width: u32,
    height: u32,
    bytes: usize,
}

/// The URL of a mount's slide: `/slides` then the mount's path (percent-encoded as a
/// playlist's) then `/ID.EXT`.
pub(crate) fn url(mount: &str, s: &Slide) -> String {
    format!(
        "/slides{}/{}.{}",
        mount_path::encoded(mount),
        s.id,
        s.kind.ext()
    )
}

pub(crate) fn view(mount: &str, s: &Slide) -> SlideView {
    SlideView {
        id: s.id,
        at: s.at_ms as f64 / 1000.0,
        url: url(mount, s),
        kind: s.kind.mime(),
        width: s.width,
        height: s.height,
        bytes: s.bytes.len(),
    }
}

/// An upload's parameters, checked.
struct Upload {
    mount: String,
    at_ms: u64,
    key: Option<String>,
}

/// `mount`, `at` and `key` from the query, or why not (400).
fn params(req: &Request) -> Result<Upload, String> {
    let q = req.query();
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mount = get("mount").ok_or("Missing parameter: mount")?;
    let mount = MountPath::parse(mount)
        .map_err(|e| format!("Bad mount: {e}"))?
        .into_string();
    let at = get("at").ok_or("Missing parameter: at")?;
    let at_ms = at
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|a| a.is_finite() && (0.0..=MAX_AT).contains(a))
        .map(|a| (a * 1000.0).round() as u64)
        .ok_or("Bad at: seconds on the stream's timeline, a number >= 0")?;
    let key = match get("key") {
        None | Some("") => None,
        Some(k)
            if k.len() <= MAX_KEY
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Some(k.to_string())
        }
        Some(_) => return Err("Bad key: at most 64 of A-Z a-z 0-9 . _ -".into()),
    };
    Ok(Upload { mount, at_ms, key })
}

/// Answer an upload: `(response, keep_alive)`; `None` when the client left mid-body.
pub(crate) async fn upload(
    stream: &mut Connection,
    peer: SocketAddr,
    req: &Request,
    rest: &mut BytesMut,
    shared: &Arc<Shared>,
) -> Option<(Response, bool)> {
    let refuse = |code: u16, message: &str| Some((refusal(code, message), false));
    let refused = upload::refuser(shared, peer, req, "slide");
    if let Err(resp) = authorize(req, peer, shared, "slides") {
        return Some((resp, false));
    }
    let up = match params(req) {
        Ok(up) => up,
        Err(why) => return refused(400, &why),
    };
    let config = shared.config();
    let (_slot, body) = match upload::receive(
        stream,
        req,
        rest,
        &SLIDE,
        config.server.max_slide_bytes,
        &shared.slide_uploads,
        &refused,
    )
    .await
    {
        Ok(got) => got,
        Err(answer) => return answer,
    };
    let probed = match probe(&body) {
        Ok(p) => p,
        Err(e) => return refused(415, &format!("Not a slide: {e}")),
    };
    let limits = Limits::of(&config.server);
    let added = match shared
        .slides
        .add(&up.mount, up.at_ms, up.key, probed, body, limits)
        .await
    {
        Ok(a) => a,
        Err(e @ AddError::Io(_)) => {
            tracing::error!(mount = %shown(&up.mount), "slide not stored: {e}");
            return refuse(500, "The slide could not be stored");
        }
        Err(e) => return refused(507, &e.to_string()),
    };
    announce(shared, peer, &up.mount, &added);
    let s = &added.slide;
    let code = if added.new { 201 } else { 200 };
    let body = serde_json::to_string(&view(&up.mount, s)).unwrap_or_default();
    Some((
        Response::new(code, JSON, body).private(),
        req.wants_keep_alive(),
    ))
}

/// A slide stored: counted, logged (bounded) and announced on `/events` (nothing for a known
/// key's).
pub(crate) fn announce(shared: &Shared, peer: SocketAddr, mount: &str, added: &Added) {
    let s = &added.slide;
    if added.new {
        shared.metrics.slides_stored.inc();
        shared
            .metrics
            .slide_bytes_stored
            .inc_by(s.bytes.len() as u64);
        if shared.logs.admit(Kind::SlideStored, About::Mount(mount)) {
            for d in &added.dropped {
                tracing::info!(mount = %shown(mount), id = d.id, bytes = d.bytes.len(), "slide dropped to make room (max-slides-per-mount, max-slide-bytes-per-mount)");
            }
            tracing::info!(
                %peer,
                mount = %shown(mount),
                id = s.id,
                at = s.at_ms as f64 / 1000.0,
                bytes = s.bytes.len(),
                width = s.width,
                height = s.height,
                "slide stored"
            );
        }
        let data = json!({
            "mount": mount,
            "id": s.id,
            "at": s.at_ms as f64 / 1000.0,
            "url": url(mount, s),
        });
        let _ = shared
            .events
            .tx
            .send(format!("event: slide\ndata: {data}\n\n").into());
    }
}

/// `GET /api/v1/slides/<mount>`.
pub(crate) fn list(req: &Request, shared: &Shared) -> Response {
    let target = req.target.strip_prefix("/api/v1/slides").unwrap_or("");
    let not_found = |what: String| Response::new(404, JSON, json!({ "error": what }).to_string());
    let Ok(mount) = MountPath::from_target(target).map(MountPath::into_string) else {
        return not_found(format!("no mount {}", shown(target)));
    };
    if !shared.slides.knows(&mount) && shared.registry.get(&mount).is_none() {
        return not_found(format!("mount {mount} has no slides"));
    }
    let slides: Vec<SlideView> = shared
        .slides
        .list(&mount)
        .iter()
        .map(|s| view(&mount, s))
        .collect();
    Response::new(
        200,
        JSON,
        json!({ "mount": mount, "slides": slides }).to_string(),
    )
}

/// `GET /slides/<mount>/<id>.<ext>`.
pub(crate) fn image(req: &Request, shared: &Shared) -> Response {
    let not_found = || Response::text(404, "No such slide");
    let target = req.target.strip_prefix("/slides").unwrap_or("");
    let Ok(path) = mount_path::decode_path(target) else {
        return not_found();
    };
    let Some((mount, file)) = path.rsplit_once('/') else {
        return not_found();
    };
    let Some((id, ext)) = file.split_once('.') else {
        return not_found();
    };
    let (Ok(mount), Ok(id), Some(kind)) = (
        MountPath::parse(mount),
        id.parse::<u64>(),
        ImageType::from_ext(ext),
    ) else {
        return not_found();
    };
    let Some(slide) = shared.slides.get(&mount.into_string(), id) else {
        return not_found();
    };
    if slide.kind != kind {
        return not_found();
    }
    let etag = format!("\"{}-{}\"", slide.id, slide.bytes.len());
    let headers = |r: Response| {
        r.with_header("Cache-Control", IMMUTABLE)
            .with_header("ETag", etag.clone())
            .with_header("X-Content-Type-Options", "nosniff")
    };
    headers(Response::new(200, slide.kind.mime(), slide.bytes.clone()))
}
