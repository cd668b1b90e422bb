//! Slide decks over HTTP (#15): the upload, the steps, the list and the files of
//! `stream::decks`.
//!
//! - `PUT /admin/decks?mount=/live.webm&name=talk.pdf` (or `POST`): the body is a PDF, at most
//!   `max-deck-bytes`, with a `Content-Length`. The admin's or the mount's source credentials,
//!   the cross-site rule of the admin commands (the admin page sends its token). The pages are
//!   rendered before the answer: `201` and the deck as JSON; `413` too large (from the head,
//!   the body unread), `415` not a PDF, `422` a PDF that cannot be a deck (corrupt, encrypted,
//!   too many pages, too heavy to render in time), each with the reason.
//! - `POST /admin/decks/step?mount=/live.webm&page=N` (`N` from 1, or `next`, `prev`,
//!   `first`, `last`): the page becomes the mount's current slide, a slide of the slide store
//!   at the mount's live edge (`Mount::stream_time`; for MP3 and AAC the duration of the
//!   frames since the source connected), announced on `/events`; `409` when the mount is not
//!   live.
//! - `GET /api/v1/decks/<mount>`: the deck, its page URLs and the current page.
//! - `GET /slides/<mount>/deck-<id>.pdf` and `/slides/<mount>/deck-<id>-<page>.png`: the PDF
//!   and its pages, cached for good (a deck id names one deck).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use serde_json::json;

use crate::control::slides;
use crate::control::upload::{self, Expected, authorize, refusal};
use crate::logging::shown;
use crate::mount_path::{self, MountPath};
use crate::state::Shared;
use crate::stream::decks::{Deck, PutError, render};
use crate::stream::slides::{AddError, ImageType, Limits};
use crate::wire::conn::Connection;
use crate::wire::http::{JSON, Request, Response};

/// What a deck upload's body is, for the checks every upload shares.
const DECK: Expected = Expected {
    noun: "deck",
    limit: "max-deck-bytes",
    is: "a PDF",
};
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn page_url(mount: &str, deck: &Deck, page: usize) -> String {
    format!(
        "/slides{}/deck-{}-{}.png",
        mount_path::encoded(mount),
        deck.id,
        page + 1
    )
}

fn pdf_url(mount: &str, deck: &Deck) -> String {
    format!("/slides{}/deck-{}.pdf", mount_path::encoded(mount), deck.id)
}

/// A deck as its JSON says it, with the mount's live edge (`stream_time`, seconds on the
/// stream's timeline; `null` when the mount is not live or its source sent no media yet): the
/// `at` a step would give its slide now.
fn view(mount: &str, deck: &Deck, shared: &Shared) -> serde_json::Value {
    let current = *deck.current.lock();
    let now = shared
        .registry
        .get(mount)
        .and_then(|m| m.stream_time())
        .map(|t| t.as_millis() as f64 / 1000.0);
    json!({
        "stream_time": now,
        "mount": mount,
        "id": deck.id,
        "name": deck.name,
        "pdf": pdf_url(mount, deck),
        "bytes": deck.pdf.len(),
        "pages": deck.pages.iter().enumerate().map(|(i, (b, w, h))| json!({
            "page": i + 1,
            "url": page_url(mount, deck, i),
            "width": w,
            "height": h,
            "bytes": b.len(),
        })).collect::<Vec<_>>(),
        "page": current.map(|p| p + 1),
    })
}

fn mount_param(req: &Request) -> Result<String, Response> {
    let m = req
        .query_param("mount")
        .ok_or_else(|| refusal(400, "Missing parameter: mount"))?;
    MountPath::parse(&m)
        .map(MountPath::into_string)
        .map_err(|e| refusal(400, &format!("Bad mount: {e}")))
}

/// A download name: the `name` parameter's letters, digits and `._-` (others become `_`),
/// at most 100, ending in `.pdf`.
fn file_name(req: &Request) -> Option<String> {
    let n = req.query_param("name")?;
    let base = n.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() {
        return None;
    }
    Some(if clean.to_ascii_lowercase().ends_with(".pdf") {
        clean
    } else {
        format!("{clean}.pdf")
    })
}

/// Answer a deck upload: `(response, keep_alive)`; `None` when the client left mid-body.
pub(crate) async fn upload(
    stream: &mut Connection,
    peer: SocketAddr,
    req: &Request,
    rest: &mut BytesMut,
    shared: &Arc<Shared>,
) -> Option<(Response, bool)> {
    let refused = upload::refuser(shared, peer, req, "deck");
    if let Err(resp) = authorize(req, peer, shared, "decks") {
        return Some((resp, false));
    }
    let mount = match mount_param(req) {
        Ok(m) => m,
        Err(resp) => return Some((resp, false)),
    };
    let config = shared.config();
    let (_slot, pdf) = match upload::receive(
        stream,
        req,
        rest,
        &DECK,
        config.server.max_deck_bytes,
        &shared.deck_uploads,
        &refused,
    )
    .await
    {
        Ok(got) => got,
        Err(answer) => return answer,
    };
    let started = std::time::Instant::now();
    let pages = match render(&pdf, config.server.max_deck_pages, &shared.deck_renders).await {
        Ok(p) => p,
        Err(e) => {
            let code = e.status();
            if code >= 500 {
                tracing::error!(mount = %shown(&mount), "deck not rendered: {e}");
            }
            return refused(code, &format!("Not a deck: {e}"));
        }
    };
    let total = config.server.max_deck_bytes_total;
    let deck = match shared
        .decks
        .put(&mount, file_name(req), pdf, pages, total)
        .await
    {
        Ok(deck) => deck,
        Err(e @ PutError::Io(_)) => {
            tracing::error!(mount = %shown(&mount), "deck not stored: {e}");
            return Some((refusal(500, "The deck could not be stored"), false));
        }
        Err(e) => return refused(507, &e.to_string()),
    };
    tracing::info!(
        %peer,
        mount = %shown(&mount),
        id = deck.id,
        pages = deck.pages.len(),
        bytes = deck.pdf.len(),
        ms = started.elapsed().as_millis() as u64,
        "deck rendered"
    );
    let body = view(&mount, &deck, shared).to_string();
    Some((
        Response::new(201, JSON, body).private(),
        req.wants_keep_alive(),
    ))
}

/// `POST /admin/decks/step?mount=&page=`.
pub(crate) async fn step(req: &Request, peer: SocketAddr, shared: &Arc<Shared>) -> Response {
    if let Err(resp) = authorize(req, peer, shared, "decks/step") {
        return resp;
    }
    let mount = match mount_param(req) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let Some(deck) = shared.decks.get(&mount) else {
        return refusal(404, &format!("Mount {mount} has no deck: upload one first"));
    };
    let last = deck.pages.len() - 1;
    let current = *deck.current.lock();
    let page = match req.query_param("page").as_deref().map(str::trim) {
        None | Some("next") => current.map_or(0, |p| (p + 1).min(last)),
        Some("prev") => current.map_or(0, |p| p.saturating_sub(1)),
        Some("first") => 0,
        Some("last") => last,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=last + 1).contains(&n) => n - 1,
            _ => {
                return refusal(
                    400,
                    &format!("Bad page: 1 to {}, or next, prev, first, last", last + 1),
                );
            }
        },
    };
    let Some(at) = shared.registry.get(&mount).and_then(|m| m.stream_time()) else {
        return refusal(
            409,
            &format!(
                "Mount {mount} has no stream time: it is not live, or its source has sent no media yet"
            ),
        );
    };
    let (bytes, w, h) = deck.pages[page].clone();
    let limits = Limits::of(&shared.config().server);
    let at_ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
    let added = match shared
        .slides
        .add(&mount, at_ms, None, (ImageType::Png, w, h), bytes, limits)
        .await
    {
        Ok(a) => a,
        Err(e @ AddError::Io(_)) => {
            tracing::error!(mount = %shown(&mount), "slide not stored: {e}");
            return refusal(500, "The slide could not be stored");
        }
        Err(e) => return refusal(507, &e.to_string()),
    };
    shared.decks.step(&mount, &deck, page).await;
    slides::announce(shared, peer, &mount, &added);
    let body = json!({
        "mount": mount,
        "deck": deck.id,
        "page": page + 1,
        "pages": deck.pages.len(),
        "slide": slides::view(&mount, &added.slide),
        "message": format!("Page {} of {}", page + 1, deck.pages.len()),
    });
    Response::new(200, JSON, body.to_string()).private()
}

/// `GET /api/v1/decks/<mount>`.
pub(crate) fn list(req: &Request, shared: &Shared) -> Response {
    let target = req.target.strip_prefix("/api/v1/decks").unwrap_or("");
    let not_found = |what: String| Response::new(404, JSON, json!({ "error": what }).to_string());
    let Ok(mount) = MountPath::from_target(target).map(MountPath::into_string) else {
        return not_found(format!("no mount {}", shown(target)));
    };
    match shared.decks.get(&mount) {
        Some(deck) => Response::new(200, JSON, view(&mount, &deck, shared).to_string())
            .with_header("Cache-Control", "no-store"),
        None => not_found(format!("mount {mount} has no deck")),
    }
}

/// `GET /slides/<mount>/deck-...`: `None` when the path names no deck file (a slide's, then).
pub(crate) fn image(req: &Request, shared: &Shared) -> Option<Response> {
    let target = req.target.strip_prefix("/slides")?;
    let path = mount_path::decode_path(target).ok()?;
    let (mount, name) = path.rsplit_once('/')?;
    if !name.starts_with("deck-") {
        return None;
    }
    Some(match MountPath::parse(mount) {
        Ok(m) => file(&m.into_string(), name, shared),
        Err(_) => Response::text(404, "No such deck file"),
    })
}

/// `deck-<id>.pdf` or `deck-<id>-<page>.png` of `mount`.
fn file(mount: &str, file: &str, shared: &Shared) -> Response {
    let not_found = || Response::text(404, "No such deck file");
    let Some(rest) = file.strip_prefix("deck-") else {
        return not_found();
    };
    let Some(deck) = shared.decks.get(mount) else {
        return not_found();
    };
    let cached = |r: Response| {
        r.with_header("Cache-Control", IMMUTABLE)
            .with_header("X-Content-Type-Options", "nosniff")
    };
    if let Some(id) = rest.strip_suffix(".pdf") {
        if id.parse::<u64>().ok() != Some(deck.id) {
            return not_found();
        }
        let name = deck.name.clone().unwrap_or_else(|| "deck.pdf".into());
        return cached(Response::new(200, "application/pdf", deck.pdf.clone())).with_header(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        );
    }
    let Some((id, page)) = rest
        .strip_suffix(".png")
        .and_then(|r| r.split_once('-'))
        .and_then(|(i, p)| Some((i.parse::<u64>().ok()?, p.parse::<usize>().ok()?)))
    else {
        return not_found();
    };
    if id != deck.id || page == 0 || page > deck.pages.len() {
        return not_found();
    }
    cached(Response::new(
        200,
        "image/png",
        deck.pages[page - 1].0.clone(),
    ))
}
