//! The admin endpoints needed by source clients now: `/admin/metadata` (libshout's
//! `shout_set_metadata`, ezstream, `curl` one-liners). The full admin API is issue #5.

use std::net::SocketAddr;

use crate::auth;
use crate::http::Request;
use crate::server::Shared;

fn iceresponse(message: &str, ok: bool) -> String {
    let esc = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\"?>\n<iceresponse><message>{esc}</message><return>{}</return></iceresponse>\n",
        u8::from(ok)
    )
}

pub fn extra_headers(code: u16) -> Vec<(&'static str, &'static str)> {
    if code == 401 {
        vec![("WWW-Authenticate", "Basic realm=\"Agora admin\"")]
    } else {
        Vec::new()
    }
}

/// Returns (status, content type, body).
pub fn handle(req: &Request, _peer: SocketAddr, shared: &Shared) -> (u16, &'static str, String) {
    const XML: &str = "text/xml; charset=utf-8";
    let given = req.header("authorization").and_then(auth::parse_basic);
    let admin_ok = given.as_ref().is_some_and(|g| {
        auth::credentials_match(
            g,
            &shared.credentials.admin_user,
            &shared.credentials.admin_password,
        )
    });
    match req.path() {
        "/admin/metadata" | "/admin/metadata.xsl" => {
            let Some(mount_path) = req.query_param("mount") else {
                return (400, XML, iceresponse("Missing parameter: mount", false));
            };
            // A mount's own source credentials may set its metadata, as in Icecast.
            let cfg = shared.config.mount(&mount_path);
            let user = cfg.and_then(|m| m.username.as_deref()).unwrap_or("source");
            let pass = cfg
                .and_then(|m| m.password.as_deref())
                .unwrap_or(&shared.credentials.source_password);
            let source_ok = given
                .as_ref()
                .is_some_and(|g| auth::credentials_match(g, user, pass));
            if !admin_ok && !source_ok {
                tracing::warn!(mount = %mount_path, "metadata update refused: bad credentials");
                return (401, XML, iceresponse("You need to authenticate", false));
            }
            if req.query_param("mode").as_deref() != Some("updinfo") {
                return (
                    400,
                    XML,
                    iceresponse("Unsupported mode (expected mode=updinfo)", false),
                );
            }
            let Some(mount) = shared.registry.get(&mount_path) else {
                return (404, XML, iceresponse("Source does not exist", false));
            };
            let song = req.query_param("song").or_else(|| {
                let artist = req.query_param("artist");
                let title = req.query_param("title");
                match (artist, title) {
                    (Some(a), Some(t)) if !a.is_empty() => Some(format!("{a} - {t}")),
                    (_, Some(t)) => Some(t),
                    (Some(a), None) => Some(a),
                    (None, None) => None,
                }
            });
            let Some(song) = song else {
                return (
                    400,
                    XML,
                    iceresponse("Missing parameter: song (or artist/title)", false),
                );
            };
            tracing::info!(mount = %mount_path, title = %song, "metadata updated");
            mount.set_title(song);
            (200, XML, iceresponse("Metadata update successful", true))
        }
        _ => {
            if !admin_ok {
                return (401, XML, iceresponse("You need to authenticate", false));
            }
            (404, XML, iceresponse("Unknown admin command", false))
        }
    }
}
