//! The embedded web pages and the playlists.
//!
//! - `/`: the live mounts; `/watch/<mount>`: one mount's player page; `/admin/`: the admin
//!   page (admin credentials). All three are static files from `crates/server/web/`, compiled
//!   into the binary (no build step, no CDN: a venue may be offline); they get their data from
//!   `/api/v1/...` and `/events` in the browser.
//! - `/assets/<file>`: the pages' scripts, styles and icon (`favicon.svg`, which every page
//!   links); `/favicon.ico`: the same icon as a 32x32 PNG in an ICO, for what asks that path
//!   anyway (a browser showing a stream or a JSON document, feed readers), drawn by
//!   `scripts/favicon`.
//! - `/<mount>.m3u` and `/<mount>.xspf`: playlists pointing at the mount, as Icecast serves
//!   them, for VLC, mpv and the like.
//!
//! **Invariants:** the pages hold no inline script or style (the Content-Security-Policy
//! forbids them, so text from a source's headers cannot run as code even if a page forgot to
//! escape it); every asset is in [`ASSETS`], nothing is read from disk at run time. Only the
//! watch page may be framed by other sites (it is what the embed snippet frames); every
//! other page and asset says `X-Frame-Options: DENY` and `frame-ancestors 'none'`, so the
//! admin page can never be dressed up inside another site's page.

use crate::control::admin;
use crate::state::{Login, Shared};
use bytes::Bytes;

use crate::wire::http::{self, Request, Response};

const JS: &str = "text/javascript; charset=utf-8";

/// (name under `/assets/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "agora.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/agora.css"),
    ),
    ("agora.js", JS, include_bytes!("../web/agora.js")),
    ("index.js", JS, include_bytes!("../web/index.js")),
    ("embed.js", JS, include_bytes!("../web/embed.js")),
    ("watch.js", JS, include_bytes!("../web/watch.js")),
    ("admin.js", JS, include_bytes!("../web/admin.js")),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/favicon.svg"),
    ),
];

/// `/favicon.ico` (see the module doc).
const FAVICON_ICO: &[u8] = include_bytes!("../web/favicon.ico");

const INDEX_HTML: &str = include_str!("../web/index.html");
const WATCH_HTML: &str = include_str!("../web/watch.html");
const ADMIN_HTML: &str = include_str!("../web/admin.html");
/// Where the admin page's token goes in `admin.html` (the `content` of a `<meta>`).
const TOKEN_SLOT: &str = "AGORA_ADMIN_TOKEN";

const HTML: &str = "text/html; charset=utf-8";
/// Scripts and styles from this server only. Media from this server (the mounts) or from
/// any http(s) server: a mount's request may be redirected to an edge on another host (see
/// `redirect` in the mount settings), and media cannot run code. Any site may frame the page
/// (the watch page's embed snippet).
const CSP_FRAMEABLE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' http: https:; connect-src 'self'; object-src 'none'; base-uri 'none'";
/// [`CSP_FRAMEABLE`] for everything but the watch page: no site may frame it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' http: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Paths under `/admin/` that are the admin page rather than an admin command.
pub(crate) fn is_page(path: &str) -> bool {
    matches!(path, "/admin/" | "/admin/index.html")
}

/// A page or asset with the headers every page gets: the CSP, no sniffing, and (unless it is
/// meant to be embedded) no framing, said both ways: `frame-ancestors` for current browsers,
/// `X-Frame-Options` for the others.
fn page(code: u16, content_type: &'static str, body: impl Into<Bytes>, framing: bool) -> Response {
    let csp = if framing { CSP_FRAMEABLE } else { CSP };
    let r = Response::new(code, content_type, body)
        .with_header("Content-Security-Policy", csp)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "same-origin");
    if framing {
        r
    } else {
        r.with_header("X-Frame-Options", "DENY")
    }
}

/// Answer a page, asset or playlist request; `None` if the path is none of those.
pub(crate) fn handle(req: &Request, client: std::net::IpAddr, shared: &Shared) -> Option<Response> {
    let path = req.path();
    match path {
        "/" | "/index.html" => {
            return Some(page(
                200,
                HTML,
                Bytes::from_static(INDEX_HTML.as_bytes()),
                false,
            ));
        }
        p if is_page(p) => {
            let login = shared.login(client, req, || shared.is_admin(req));
            if let Login::Banned(left) = login {
                return Some(Shared::banned_response(left).private());
            }
            if login != Login::Granted {
                return Some(
                    page(
                        401,
                        http::TEXT,
                        Bytes::from_static(b"You need to authenticate\n"),
                        false,
                    )
                    .with_header("WWW-Authenticate", "Basic realm=\"Agora admin\"")
                    .private(),
                );
            }
            // The page carries the token its actions are sent with (see `control::admin`):
            // only this answer, to the admin credentials and never to another site's script,
            // holds it.
            let html = ADMIN_HTML.replace(TOKEN_SLOT, shared.admin_token.reveal());
            return Some(page(200, HTML, html, false).private());
        }
        _ => {}
    }
    if path.starts_with("/watch/") {
        // The page finds its mount in its own URL; an unknown mount shows "waiting".
        return Some(page(
            200,
            HTML,
            Bytes::from_static(WATCH_HTML.as_bytes()),
            true,
        ));
    }
    if let Some(name) = path.strip_prefix("/assets/") {
        let (_, ctype, body) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
        return Some(page(200, ctype, Bytes::from_static(body), false));
    }
    if path == "/favicon.ico" {
        // Asked on every visit by browsers that were not told of the SVG: a day in their cache.
        return Some(
            page(200, "image/x-icon", Bytes::from_static(FAVICON_ICO), false)
                .with_header("Cache-Control", "max-age=86400"),
        );
    }
    for (ext, ctype) in [
        (".m3u", "audio/x-mpegurl"),
        (".xspf", "application/xspf+xml"),
    ] {
        if let Some(raw) = path.strip_suffix(ext) {
            // The mount's name, decoded once as a listener's request is.
            let mount_path = &crate::mount_path::decode_path(raw).ok()?;
            let mount = shared.registry.get(mount_path)?;
            let url = stream_url(req, shared, mount_path);
            let body = if ext == ".m3u" {
                format!("{url}\n")
            } else {
                let title = mount
                    .state()
                    .meta
                    .name
                    .clone()
                    .unwrap_or_else(|| mount_path.to_string());
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<playlist version=\"1\" xmlns=\"http://xspf.org/ns/0/\">\n  <trackList>\n    <track>\n      <location>{}</location>\n      <title>{}</title>\n    </track>\n  </trackList>\n</playlist>\n",
                    admin::esc(&url),
                    admin::esc(&title)
                )
            };
            let file = mount_path.rsplit('/').next().unwrap_or("stream");
            return Some(page(200, ctype, body, false).with_header(
                "Content-Disposition",
                format!("inline; filename=\"{}{ext}\"", file.replace('"', "")),
            ));
        }
    }
    None
}

/// The stream's URL as the client reached this server (its `Host` header and scheme), else
/// the configured hostname and port.
fn stream_url(req: &Request, shared: &Shared, mount: &str) -> String {
    let host = req
        .header("host")
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}:{}", shared.config().server.hostname, shared.public_port));
    let scheme = if req.secure { "https" } else { "http" };
    format!("{scheme}://{host}{}", crate::mount_path::encoded(mount))
}
