//! What the slide and deck uploads (`control::slides`, `control::decks`) share: the checks they
//! start with, in the admin order (the cross-site rule, then credentials), and the body, taken
//! only after its head passed: a `Content-Length` (411 without one or with a chunked body), at
//! most the kind's limit (413, the body unread), not empty (415), a slot among the uploads in
//! progress (503 when none frees within [`BODY_TIMEOUT`]), then read whole within
//! [`BODY_TIMEOUT`] (408). Every refusal closes the connection: its body is never read.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::control::admin;
use crate::logging::{About, Kind, shown};
use crate::mount_path::MountPath;
use crate::state::{Login, Shared};
use crate::wire::conn::Connection;
use crate::wire::http::{JSON, Request, Response};

/// How long an upload's body may take to arrive once its head has (8 MiB at 1.2 Mbit/s).
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What an upload's body is, named in its refusals.
pub(crate) struct Expected {
    /// "slide", "deck".
    pub(crate) noun: &'static str,
    /// The configuration key of its largest size.
    pub(crate) limit: &'static str,
    /// What a body of this kind is, for the empty body's refusal.
    pub(crate) is: &'static str,
}

/// An answer to give instead of the upload's: `(response, keep_alive)`, or `None` when the
/// client left mid-body.
pub(crate) type Answer = Option<(Response, bool)>;

/// The answer to a refusal of the client's upload, logged with its reason: a few lines per
/// address (`Kind::SlideRefused`), however many bad uploads it sends.
pub(crate) fn refuser<'a>(
    shared: &'a Shared,
    peer: SocketAddr,
    req: &'a Request,
    noun: &'static str,
) -> impl Fn(u16, &str) -> Answer + Sync + 'a {
    move |code, why| {
        if shared
            .logs
            .admit(Kind::SlideRefused, About::Peer(peer.ip()))
        {
            let mount = req.query_param("mount").unwrap_or_default();
            tracing::warn!(%peer, code, mount = ?shown(&mount), "{noun} refused: {why}");
        }
        Some((refusal(code, why), false))
    }
}

/// The body of an upload whose parameters passed, with its slot among the uploads in progress
/// (held until the caller is done with the body: what uploads hold at once is bounded).
/// `refused` answers (and logs, bounded) a refusal about the client's request; a busy server
/// (503) and a slow body (408) are answered without a log line.
pub(crate) async fn receive<'a>(
    stream: &mut Connection,
    req: &Request,
    rest: &mut BytesMut,
    what: &Expected,
    max: u64,
    slots: &'a Semaphore,
    refused: &(dyn Fn(u16, &str) -> Answer + Sync),
) -> Result<(SemaphorePermit<'a>, Bytes), Answer> {
    let noun = what.noun;
    if req.header("content-length").is_none() || req.header("transfer-encoding").is_some() {
        return Err(refused(
            411,
            &format!("A {noun} must come with a Content-Length"),
        ));
    }
    let len = match req.content_length() {
        Ok(n) => n,
        Err((code, why)) => return Err(refused(code, why)),
    };
    if len > max {
        return Err(refused(
            413,
            &format!(
                "A {noun} is at most {max} bytes ({}); this one is {len}",
                what.limit
            ),
        ));
    }
    if len == 0 {
        return Err(refused(
            415,
            &format!("The body is empty: a {noun} is {}", what.is),
        ));
    }
    // A slot before the body: what uploads hold in memory at once is bounded.
    let Ok(Ok(slot)) = tokio::time::timeout(BODY_TIMEOUT, slots.acquire()).await else {
        return Err(Some((
            refusal(503, &format!("Too many {noun} uploads at once: try again")),
            false,
        )));
    };
    match read_body(stream, req, rest, len as usize).await {
        Ok(Some(body)) => Ok((slot, body)),
        Ok(None) => Err(None),
        Err(()) => Err(Some((
            refusal(408, &format!("The {noun} did not come in time")),
            false,
        ))),
    }
}

/// A JSON message (`{"error": ...}`): every refusal of an upload.
pub(crate) fn refusal(code: u16, message: &str) -> Response {
    Response::new(code, JSON, json!({ "error": message }).to_string()).private()
}

/// The checks every slide and deck command starts with, in the admin order: the cross-site
/// rule (403), then credentials through [`Shared::login`] (401, 429): the admin's, or the
/// source credentials of the `mount` parameter. `command` names it in the log.
pub(crate) fn authorize(
    req: &Request,
    peer: SocketAddr,
    shared: &Shared,
    command: &'static str,
) -> Result<(), Response> {
    if let Some(why) = admin::forgery(req, shared) {
        if shared
            .logs
            .admit(Kind::CrossSite, About::PeerCommand(peer.ip(), command))
        {
            tracing::warn!(%peer, command, reason = ?why, "admin request refused by the cross-site rule");
        }
        return Err(refusal(403, &why.message()));
    }
    let mount_param = req
        .query_param("mount")
        .filter(|m| MountPath::parse(m).is_ok());
    let login = shared.login(peer.ip(), req, || {
        shared.is_admin(req)
            || mount_param
                .as_deref()
                .is_some_and(|m| admin::is_mount_source(req, m, shared))
    });
    match login {
        Login::Granted => Ok(()),
        Login::Banned(left) => Err(Shared::banned_response(left).private()),
        Login::Missing | Login::Wrong => {
            if login == Login::Wrong
                && shared
                    .logs
                    .admit(Kind::AdminCredentials, About::Peer(peer.ip()))
            {
                // The line fail2ban matches (docs/fail2ban/agora.conf): `peer` first.
                tracing::warn!(
                    %peer,
                    command,
                    mount = ?shown(mount_param.as_deref().unwrap_or("-")),
                    "admin request refused: wrong credentials"
                );
            }
            Err(refusal(401, "You need to authenticate")
                .with_header("WWW-Authenticate", "Basic realm=\"Agora\""))
        }
    }
}

/// Exactly `len` body bytes (those already in `rest` first) within [`BODY_TIMEOUT`]; what
/// follows stays in `rest`. `Ok(None)`: the client left; `Err`: too slow.
pub(crate) async fn read_body(
    stream: &mut Connection,
    req: &Request,
    rest: &mut BytesMut,
    len: usize,
) -> Result<Option<Bytes>, ()> {
    if rest.len() < len && req.expects_continue() {
        let interim = format!(
            "{} 100 Continue\r\n\r\n",
            if req.is_http11() {
                "HTTP/1.1"
            } else {
                "HTTP/1.0"
            }
        );
        if stream.write_all(interim.as_bytes()).await.is_err() {
            return Ok(None);
        }
    }
    // Room for the body and no more: what is read past it is the next request's.
    let mut body = BytesMut::with_capacity(len);
    let from_rest = rest.len().min(len);
    body.extend_from_slice(&rest.split_to(from_rest));
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    while body.len() < len {
        let mut limited = (&mut *stream).take((len - body.len()) as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut body)).await {
            Err(_) => return Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
    }
    Ok(Some(body.freeze()))
}
