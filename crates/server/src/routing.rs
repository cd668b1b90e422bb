//! Request routing: one request head in, the handler that answers it.
//!
//! Built-in routes come first (status, admin, API, metrics, events); a path that names a live
//! mount is a listener; everything else is a page or a 404. Sources (`SOURCE`/`PUT`) go to
//! ingest whatever the path.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::control::{admin, api, events, status};
use crate::egress::listener;
use crate::ingest::source;
use crate::state::Shared;
use crate::telemetry::metrics;
use crate::web;
use crate::wire::conn::Connection;
use crate::wire::http::{self, Request};

/// Dispatch a request. Returns the stream (and unread bytes) when the connection may carry
/// another request (keep-alive), `None` when it is done.
pub(crate) async fn route(
    mut stream: Connection,
    peer: SocketAddr,
    req: Request,
    rest: BytesMut,
    shared: &Arc<Shared>,
) -> Option<(Connection, BytesMut)> {
    let method = req.method.as_str();
    let path = req.path().to_string();
    let respond = |code: u16, ctype: &str, extra: &[(&str, &str)], body: &[u8]| {
        http::simple_response(
            &response_version(&req),
            code,
            ctype,
            extra,
            body,
            req.keep_alive(),
        )
    };
    let (code, bytes) = match method {
        "SOURCE" | "PUT" => {
            source::handle(stream, peer, req, rest, shared.clone()).await;
            return None;
        }
        "OPTIONS" => {
            // libshout's TLS probe (`Upgrade: TLS/1.0`): no TLS here, so no upgrade; it then
            // carries on with plain HTTP, as with icecast2 built without TLS.
            let resp = respond(
                200,
                "text/plain",
                &[("Allow", "GET, HEAD, PUT, OPTIONS, SOURCE")],
                b"",
            );
            (200, resp)
        }
        "GET" | "HEAD" if path == "/status-json.xsl" || path == "/status-json.json" => {
            let body = status::status_json(shared);
            (
                200,
                respond(200, "application/json; charset=utf-8", &[], body.as_bytes()),
            )
        }
        "GET" | "HEAD" | "POST" if path.starts_with("/admin/") && !web::is_page(&path) => {
            // POST as Icecast allows it (libshout sends metadata by POST when offered);
            // parameters are read from the query string either way.
            let (code, ctype, body) = admin::handle(&req, peer, shared);
            (
                code,
                respond(code, ctype, &admin::extra_headers(code), body.as_bytes()),
            )
        }
        "GET" | "HEAD" if path.starts_with("/api/v1/") => {
            let (code, body) = api::handle(&path, shared);
            (
                code,
                respond(
                    code,
                    "application/json; charset=utf-8",
                    &[],
                    body.as_bytes(),
                ),
            )
        }
        "GET" | "HEAD" if path == "/metrics" => {
            let body = shared.metrics.render();
            (
                200,
                respond(200, metrics::CONTENT_TYPE, &[], body.as_bytes()),
            )
        }
        "GET" | "HEAD" if path == "/events" => {
            drop(rest);
            events::serve(stream, peer, req, shared.clone()).await;
            return None;
        }
        "GET" | "HEAD" => {
            if let Some(mount) = shared.registry.get(&path) {
                drop(rest);
                listener::handle(stream, peer, req, mount, shared.clone()).await;
                return None;
            }
            match web::handle(&req, shared) {
                Some(page) => {
                    let extra: Vec<(&str, &str)> =
                        page.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    (
                        page.code,
                        respond(page.code, &page.content_type, &extra, &page.body),
                    )
                }
                None => {
                    let body = format!("Mount {path} is not available\n");
                    (
                        404,
                        respond(404, "text/plain; charset=utf-8", &[], body.as_bytes()),
                    )
                }
            }
        }
        _ => {
            let body = format!("Method {method} is not supported\n");
            (
                405,
                respond(
                    405,
                    "text/plain; charset=utf-8",
                    &[("Allow", "GET, HEAD, PUT, OPTIONS, SOURCE")],
                    body.as_bytes(),
                ),
            )
        }
    };
    let head_only = method == "HEAD";
    let to_send = if head_only {
        let end = http::head_len(&bytes).unwrap_or(bytes.len());
        &bytes[..end]
    } else {
        &bytes[..]
    };
    if stream.write_all(to_send).await.is_err() {
        return None;
    }
    shared
        .access_log
        .log(peer, &req, code, to_send.len() as u64);
    if req.keep_alive() && !shared.shutdown.is_cancelled() {
        Some((stream, rest))
    } else {
        let _ = stream.shutdown().await;
        None
    }
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
