//! Request routing: one request head in, the handler that answers it.
//!
//! Built-in routes come first (status, admin, API, slides, metrics, events); a path that names a live
//! mount is a listener; everything else is a page or a 404. Sources (`SOURCE`/`PUT`) go to
//! ingest whatever the path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::control::{admin, api, decks, events, slides, status};
use crate::egress::listener;
use crate::ingest::source;
use crate::logging::shown;
use crate::mount_path::MountPath;
use crate::state::Shared;
use crate::telemetry::metrics;
use crate::web;
use crate::wire::conn::Connection;
use crate::wire::http::{self, Request, Response};

/// How long a listener of an on-demand relay's mount waits for the relay to connect.
const ON_DEMAND_WAIT: Duration = Duration::from_secs(10);

/// The largest body an admin command may carry: a form of a few parameters.
const MAX_ADMIN_BODY: u64 = 8 * 1024;
/// How long an admin command's body may take to arrive once its head has.
const ADMIN_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Dispatch a request. Returns the stream (and unread bytes) when the connection may carry
/// another request (keep-alive), `None` when it is done.
pub(crate) async fn route(
    mut stream: Connection,
    peer: SocketAddr,
    req: Request,
    mut rest: BytesMut,
    shared: &Arc<Shared>,
) -> Option<(Connection, BytesMut)> {
    let method = req.method.as_str();
    let path = req.path().to_string();
    const ALLOW: &str = "GET, HEAD, PUT, OPTIONS, SOURCE";
    let mut keep_alive = req.keep_alive();
    let resp = match method {
        // A slide (#15): before sources, which every other PUT is.
        "PUT" | "POST" if path == "/admin/slides" => {
            match slides::upload(&mut stream, peer, &req, &mut rest, shared).await {
                Some((resp, keep)) => {
                    keep_alive = keep;
                    resp
                }
                None => return None,
            }
        }
        // A deck (#15): likewise.
        "PUT" | "POST" if path == "/admin/decks" => {
            match decks::upload(&mut stream, peer, &req, &mut rest, shared).await {
                Some((resp, keep)) => {
                    keep_alive = keep;
                    resp
                }
                None => return None,
            }
        }
        "SOURCE" | "PUT" => {
            source::handle(stream, peer, req, rest, shared.clone()).await;
            return None;
        }
        // libshout's TLS probe (`Upgrade: TLS/1.0`): no TLS here, so no upgrade; it then
        // carries on with plain HTTP, as with icecast2 built without TLS.
        "OPTIONS" => Response::new(200, "text/plain", "").with_header("Allow", ALLOW),
        "GET" | "HEAD" if path == "/status-json.xsl" || path == "/status-json.json" => {
            Response::new(200, http::JSON, status::status_json(shared))
        }
        // POST as Icecast allows it, and as the admin page sends its actions: parameters
        // from the query string, then from a form body, read whole (bounded) so that the
        // connection may carry the next request. Another body is not read (the connection
        // then ends after the answer, see `Request::keep_alive`).
        // Its parameters in the query; a body is not read (see `Request::keep_alive`).
        "POST" if path == "/admin/decks/step" => decks::step(&req, peer, shared).await,
        "POST" if path.starts_with("/admin/") && !web::is_page(&path) && req.is_form() => {
            match read_admin_body(&mut stream, &req, &mut rest).await {
                Ok(Some(body)) => {
                    keep_alive = req.wants_keep_alive();
                    admin::handle(&req, &body, peer, shared).private()
                }
                Ok(None) => return None,
                Err(resp) => {
                    keep_alive = false;
                    resp.private()
                }
            }
        }
        "GET" | "HEAD" | "POST" if path.starts_with("/admin/") && !web::is_page(&path) => {
            admin::handle(&req, &[], peer, shared).private()
        }
        "GET" | "HEAD" if path.starts_with("/api/v1/slides/") => slides::list(&req, shared),
        "GET" | "HEAD" if path.starts_with("/api/v1/decks/") => decks::list(&req, shared),
        "GET" | "HEAD" if path.starts_with("/api/v1/") => api::handle(&path, shared),
        "GET" | "HEAD" if path.starts_with("/slides/") => {
            decks::image(&req, shared).unwrap_or_else(|| slides::image(&req, shared))
        }
        "GET" | "HEAD" if path == "/metrics" => {
            Response::new(200, metrics::CONTENT_TYPE, shared.metrics.render())
        }
        "GET" | "HEAD" if path == "/events" => {
            drop(rest);
            events::serve(stream, peer, req, shared.clone()).await;
            return None;
        }
        "GET" | "HEAD" => {
            // A mount is named by its decoded path; what no mount can be named (a malformed
            // path, a built-in route's) is never looked up as one.
            let mount_path = MountPath::from_target(&req.target).map(MountPath::into_string);
            let path = mount_path.as_deref().unwrap_or("");
            let wake = shared.on_demand.load().get(path).cloned();
            if let Some(wake) = wake {
                // An on-demand relay: wake it, and give it a moment to bring the stream.
                wake.notify_one();
                let deadline = tokio::time::Instant::now() + ON_DEMAND_WAIT;
                while shared.registry.get(path).is_none() && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if let Some(mount) = shared.registry.get(path) {
                drop(rest);
                listener::handle(stream, peer, req, mount, shared.clone()).await;
                return None;
            }
            web::handle(&req, peer.ip(), shared).unwrap_or_else(|| {
                Response::text(
                    404,
                    &format!("Mount {} is not available", shown(req.path())),
                )
            })
        }
        _ => Response::text(405, &format!("Method {method} is not supported"))
            .with_header("Allow", ALLOW),
    };
    let version = response_version(&req);
    // A refused login ends the connection: a guess costs a connection, not a line.
    if matches!(resp.status, 401 | 429) && req.header("authorization").is_some() {
        keep_alive = false;
    }
    let bytes = if method == "HEAD" {
        resp.head(&version, keep_alive).into_bytes()
    } else {
        resp.encode(&version, keep_alive)
    };
    if stream.write_all(&bytes).await.is_err() {
        return None;
    }
    shared
        .access_log
        .log(peer, &req, resp.status, bytes.len() as u64);
    if keep_alive && !shared.shutdown.is_cancelled() {
        Some((stream, rest))
    } else {
        let _ = stream.shutdown().await;
        None
    }
}

/// An admin command's form body, whole: at most [`MAX_ADMIN_BODY`] bytes with a `Content-Length`,
/// within [`ADMIN_BODY_TIMEOUT`]. What follows it in `rest` stays there (the next request of a
/// keep-alive connection). `Ok(None)`: the client left before sending it all. A refusal (411,
/// 400, 413, 408) is an answer that closes the connection, the body unread.
async fn read_admin_body(
    stream: &mut Connection,
    req: &Request,
    rest: &mut BytesMut,
) -> Result<Option<bytes::Bytes>, Response> {
    let len = req
        .content_length()
        .map_err(|(code, why)| Response::text(code, why))?;
    if len > MAX_ADMIN_BODY {
        return Err(Response::text(
            413,
            &format!("An admin command's body is at most {MAX_ADMIN_BODY} bytes"),
        ));
    }
    let len = len as usize;
    if rest.len() < len && req.expects_continue() {
        let interim = format!("{} 100 Continue\r\n\r\n", response_version(req));
        if stream.write_all(interim.as_bytes()).await.is_err() {
            return Ok(None);
        }
    }
    let deadline = tokio::time::Instant::now() + ADMIN_BODY_TIMEOUT;
    while rest.len() < len {
        rest.reserve(len - rest.len());
        match tokio::time::timeout_at(deadline, stream.read_buf(rest)).await {
            Err(_) => return Err(Response::text(408, "The request body did not come in time")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
    }
    Ok(Some(rest.split_to(len).freeze()))
}

/// Icecast 2.4 answers HTTP/1.0 except to HTTP/1.1 keep-alive clients, which need 1.1 to
/// keep the connection.
pub(crate) fn response_version(req: &Request) -> String {
    if req.is_http11() {
        "HTTP/1.1".into()
    } else {
        "HTTP/1.0".into()
    }
}
