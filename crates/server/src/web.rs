//! The embedded web pages and the playlists.
//!
//! - `/`: the live mounts; `/watch/<mount>`: one mount's player page; `/admin/`: the admin
//!   page (admin credentials). All three are static files from `crates/server/web/`, compiled
//!   into the binary (no build step, no CDN: a venue may be offline); they get their data from
//!   `/api/v1/...` and `/events` in the browser.
//! - `/assets/<file>`: the pages' scripts and styles.
//! - `/<mount>.m3u` and `/<mount>.xspf`: playlists pointing at the mount, as Icecast serves
//!   them, for VLC, mpv and the like.
//!
//! **Invariants:** the pages hold no inline script or style (the Content-Security-Policy
//! forbids them, so text from a source's headers cannot run as code even if a page forgot to
//! escape it); every asset is in [`ASSETS`], nothing is read from disk at run time.

use crate::control::admin;
use crate::state::Shared;
use crate::wire::http::Request;

/// A response for the router.
#[derive(Debug)]
pub(crate) struct Page {
    pub code: u16,
    pub content_type: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// (name under `/assets/`, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "agora.css",
        "text/css; charset=utf-8",
        include_str!("../web/agora.css"),
    ),
    (
        "agora.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/agora.js"),
    ),
    (
        "index.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/index.js"),
    ),
    (
        "watch.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/watch.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/admin.js"),
    ),
];

const INDEX_HTML: &str = include_str!("../web/index.html");
const WATCH_HTML: &str = include_str!("../web/watch.html");
const ADMIN_HTML: &str = include_str!("../web/admin.html");

const HTML: &str = "text/html; charset=utf-8";
/// Scripts and styles from this server only; media from this server (the mounts).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'";

/// Paths under `/admin/` that are the admin page rather than an admin command.
pub(crate) fn is_page(path: &str) -> bool {
    matches!(path, "/admin/" | "/admin/index.html")
}

fn page(code: u16, content_type: &str, body: &[u8], framing: bool) -> Page {
    let mut headers = vec![
        ("Content-Security-Policy", CSP.to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Referrer-Policy", "same-origin".to_string()),
    ];
    if !framing {
        headers.push(("X-Frame-Options", "DENY".to_string()));
    }
    Page {
        code,
        content_type: content_type.to_string(),
        headers,
        body: body.to_vec(),
    }
}

/// Answer a page, asset or playlist request; `None` if the path is none of those.
pub(crate) fn handle(req: &Request, shared: &Shared) -> Option<Page> {
    let path = req.path();
    match path {
        "/" | "/index.html" => return Some(page(200, HTML, INDEX_HTML.as_bytes(), false)),
        p if is_page(p) => {
            if !admin::is_admin(req, shared) {
                let mut p = page(
                    401,
                    "text/plain; charset=utf-8",
                    b"You need to authenticate\n",
                    false,
                );
                p.headers.push((
                    "WWW-Authenticate",
                    "Basic realm=\"Agora admin\"".to_string(),
                ));
                return Some(p);
            }
            return Some(page(200, HTML, ADMIN_HTML.as_bytes(), false));
        }
        _ => {}
    }
    if path.starts_with("/watch/") {
        // The page finds its mount in its own URL; an unknown mount shows "waiting".
        return Some(page(200, HTML, WATCH_HTML.as_bytes(), true));
    }
    if let Some(name) = path.strip_prefix("/assets/") {
        let (_, ctype, body) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
        return Some(page(200, ctype, body.as_bytes(), false));
    }
    for (ext, ctype) in [
        (".m3u", "audio/x-mpegurl"),
        (".xspf", "application/xspf+xml"),
    ] {
        if let Some(mount_path) = path.strip_suffix(ext) {
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
            let mut p = page(200, ctype, body.as_bytes(), false);
            let file = mount_path.rsplit('/').next().unwrap_or("stream");
            p.headers.push((
                "Content-Disposition",
                format!("inline; filename=\"{}{ext}\"", file.replace('"', "")),
            ));
            return Some(p);
        }
    }
    None
}

/// The stream's URL as the client reached this server (its `Host` header), else the
/// configured hostname and port.
fn stream_url(req: &Request, shared: &Shared, mount: &str) -> String {
    let host = req
        .header("host")
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}:{}", shared.config.server.hostname, shared.public_port));
    format!("http://{host}{mount}")
}
