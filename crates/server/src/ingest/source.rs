//! Source ingest: every dialect real Icecast source clients speak.
//!
//! - `SOURCE /m ICE/1.0` and `SOURCE /m HTTP/1.0`, body delimited by the connection's close
//!   (libshout, liquidsoap, darkice; ffmpeg with `-legacy_icecast 1`);
//! - `PUT /m HTTP/1.1` with `Expect: 100-continue`, body chunked or unframed until close
//!   (ffmpeg sends exactly the unframed kind), or with a `Content-Length`;
//! - libshout's unauthenticated probe (`Content-Length: 0`, no credentials) gets `401` with
//!   `WWW-Authenticate` and `Allow`, after which libshout retries with credentials.
//!
//! Accepted sources get `100 Continue` only when they asked for it, then `200 OK` at once, as
//! Icecast 2.4 does (ffmpeg blocks on one response head; libshout takes 100 or 2xx).
//! A second source on a live mount gets **409 Conflict** (Icecast 2.5's code; 2.4 said 403):
//! a distinct status lets scripts tell "someone else is live" from "wrong password".
//!
//! The stream's format comes from its bytes ([`agora_format::Demuxer`]), never the declared
//! Content-Type (ffmpeg labels everything `audio/mpeg`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ingest::feed::Ingest;
use crate::logging::{About, Kind, shown};
use crate::mount_path::MountPath;
use crate::state::{Login, Shared};
use crate::stream::ending::SourceEnd;
use crate::stream::mount::{ClaimError, Mount, StreamMeta};
use crate::wire::auth;
use crate::wire::conn::Connection;
use crate::wire::http::{self, Dechunker, Request, Response};

const ALLOW: &str = "GET, PUT, OPTIONS, SOURCE";

/// Read the first of several header spellings (Icecast tries ice-, icy-, x-audiocast-).
fn pick(req: &Request, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| req.header(n))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn stream_meta(req: &Request) -> StreamMeta {
    StreamMeta {
        name: pick(req, &["ice-name", "icy-name", "x-audiocast-name"]),
        description: pick(
            req,
            &[
                "ice-description",
                "icy-description",
                "x-audiocast-description",
            ],
        ),
        url: pick(req, &["ice-url", "icy-url", "x-audiocast-url"]),
        genre: pick(req, &["ice-genre", "icy-genre", "x-audiocast-genre"]),
        public: pick(req, &["ice-public", "icy-pub", "x-audiocast-public"]),
        bitrate: pick(req, &["ice-bitrate", "icy-br", "x-audiocast-bitrate"]),
        audio_info: pick(req, &["ice-audio-info"]),
        user_agent: pick(req, &["user-agent"]),
    }
}

/// Serve one source connection to its end.
pub(crate) async fn handle(
    mut stream: Connection,
    peer: SocketAddr,
    req: Request,
    rest: BytesMut,
    shared: Arc<Shared>,
) {
    let path = match MountPath::from_target(&req.target) {
        Ok(path) => path.into_string(),
        Err(e) => {
            if shared
                .logs
                .admit(Kind::SourceRefused, About::Peer(peer.ip()))
            {
                tracing::warn!(%peer, path = %shown(req.path()), "source refused: {e}");
            }
            shared
                .refuse(&mut stream, peer, &req, Response::text(400, &e.to_string()))
                .await;
            return;
        }
    };
    let credentials = shared.credentials();
    let policy = shared.config().policy_for(&path);
    let password = policy
        .source_password
        .as_deref()
        .unwrap_or(&credentials.source_password);
    let login = shared.login(peer.ip(), &req, || {
        req.header("authorization")
            .and_then(auth::parse_basic)
            .is_some_and(|g| auth::credentials_match(&g, &policy.source_user, password))
    });
    if let Login::Banned(left) = login {
        if shared
            .logs
            .admit(Kind::SourceRefused, About::Peer(peer.ip()))
        {
            tracing::info!(%peer, mount = %path, "source refused: address banned for failed logins");
        }
        shared
            .refuse(&mut stream, peer, &req, Shared::banned_response(left))
            .await;
        return;
    }
    if login != Login::Granted {
        let by = About::Peer(peer.ip());
        if login == Login::Missing {
            // libshout's first, unauthenticated probe lands here on every connect: expected,
            // so debug level (a wrong password is the loud line below).
            if shared.logs.admit(Kind::SourceProbe, by) {
                tracing::debug!(%peer, mount = %path, "source asked without credentials: 401");
            }
        } else if shared.logs.admit(Kind::SourceCredentials, by) {
            // The line fail2ban matches (docs/fail2ban/agora.conf): `peer` first.
            tracing::warn!(%peer, mount = %path, "source refused: wrong credentials");
        }
        shared
            .refuse(
                &mut stream,
                peer,
                &req,
                Response::text(401, "You need to authenticate")
                    .with_header("WWW-Authenticate", "Basic realm=\"Agora\"")
                    .with_header("Allow", ALLOW),
            )
            .await;
        return;
    }
    if req.header("transfer-encoding").is_some_and(|te| {
        let te = te.to_ascii_lowercase();
        !te.contains("chunked") && te != "identity"
    }) {
        shared
            .refuse(
                &mut stream,
                peer,
                &req,
                Response::text(501, "Transfer-Encoding not supported"),
            )
            .await;
        return;
    }
    let sources = shared.sources.fetch_add(1, Ordering::AcqRel);
    let _count = SourceCount(&shared);
    if sources >= shared.config().server.max_sources {
        if shared
            .logs
            .admit(Kind::SourceRefused, About::Peer(peer.ip()))
        {
            tracing::warn!(%peer, mount = %path, "source refused: too many sources");
        }
        shared
            .refuse(
                &mut stream,
                peer,
                &req,
                Response::text(503, "Too many sources connected"),
            )
            .await;
        return;
    }
    let claim = match shared.registry.claim(
        &path,
        || policy,
        stream_meta(&req),
        peer.ip().to_string(),
    ) {
        Ok(c) => c,
        Err(e @ (ClaimError::InUse | ClaimError::TooMany)) => {
            // A `loop-file` mount is the server's own for as long as it runs.
            let from_file = shared.config().loop_files().any(|(m, _)| m == path);
            let (code, why) = match e {
                ClaimError::InUse if from_file => {
                    (409, "Mountpoint in use: the server plays a file into it")
                }
                ClaimError::InUse => (409, "Mountpoint in use"),
                ClaimError::TooMany => (503, "Too many mounts on this server"),
            };
            if shared
                .logs
                .admit(Kind::SourceRefused, About::Peer(peer.ip()))
            {
                match e {
                    ClaimError::InUse if from_file => tracing::warn!(
                        %peer,
                        mount = %path,
                        "source refused: the mount plays its loop-file (push to a mount whose fallback it is)"
                    ),
                    ClaimError::InUse => {
                        tracing::warn!(%peer, mount = %path, "source refused: mountpoint in use")
                    }
                    ClaimError::TooMany => tracing::warn!(
                        %peer,
                        mount = %path,
                        "source refused: the server's mount limit (max-mounts)"
                    ),
                }
            }
            shared
                .refuse(&mut stream, peer, &req, Response::text(code, why))
                .await;
            return;
        }
    };
    let mount = claim.mount.clone();
    let mut accept = Vec::new();
    if req.expects_continue() {
        accept.extend_from_slice(b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n");
    }
    accept.extend_from_slice(
        format!(
            "HTTP/1.0 200 OK\r\nServer: {}\r\nConnection: Close\r\n\r\n",
            http::SERVER
        )
        .as_bytes(),
    );
    if stream.write_all(&accept).await.is_err() {
        return;
    }
    shared.source_connections.fetch_add(1, Ordering::Relaxed);
    if shared
        .logs
        .admit(Kind::SourceConnected, About::Peer(peer.ip()))
    {
        let agent = shown(req.header("user-agent").unwrap_or("-"));
        tracing::info!(%peer, mount = %path, method = %req.method, agent = ?agent, "source connected");
    }
    let started = Instant::now();
    let end = pump(&mut stream, &req, rest, &mount, &shared).await;
    let read = mount.bytes_read.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs();
    let logged = shared.logs.admit(Kind::SourceEnded, About::Peer(peer.ip()));
    if logged && end.is_orderly() {
        tracing::info!(%peer, mount = %path, secs, reason = %end, "source ended");
    } else if logged {
        tracing::warn!(%peer, mount = %path, secs, reason = %end, origin = end.origin().label(), "source dropped");
    }
    shared.metrics.source_ended(&end);
    shared.access_log.log(peer, &req, 200, read);
    drop(claim);
}

struct SourceCount<'a>(&'a Shared);

impl Drop for SourceCount<'_> {
    fn drop(&mut self) {
        self.0.sources.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Read the body until it ends, framing it into the mount.
async fn pump(
    stream: &mut Connection,
    req: &Request,
    rest: BytesMut,
    mount: &Mount,
    shared: &Shared,
) -> SourceEnd {
    let timeout = Duration::from_secs(shared.config().server.source_timeout_secs);
    let mut dechunker = req.is_chunked().then(Dechunker::default);
    // A PUT with a length is a finite upload; SOURCE ignores lengths (libshout's probe sends
    // `Content-Length: 0` but the real request has none, and Icecast 2.4 ignores it too).
    let mut remaining: Option<u64> = (req.method == "PUT" && dechunker.is_none())
        .then(|| req.header("content-length").and_then(|v| v.parse().ok()))
        .flatten();
    let kill = mount.source_kill_token();
    let mut ingest = Ingest::new(mount, &shared.logs);
    let mut raw = rest;
    let mut body = BytesMut::new();
    loop {
        // Decode what we have.
        let finished = if let Some(d) = dechunker.as_mut() {
            match d.decode(&mut raw, &mut body) {
                Ok(finished) => finished,
                Err(e) => return SourceEnd::BadChunking(e.to_string()),
            }
        } else {
            let take = remaining.map_or(raw.len(), |r| (r as usize).min(raw.len()));
            body.extend_from_slice(&raw.split_to(take));
            if let Some(r) = remaining.as_mut() {
                *r -= take as u64;
            }
            remaining == Some(0)
        };
        if !body.is_empty() {
            if let Err(end) = ingest.feed(&body) {
                return end;
            }
            body.clear();
        }
        if finished {
            break;
        }
        raw.reserve(16 * 1024);
        let n = tokio::select! {
            r = tokio::time::timeout(timeout, stream.read_buf(&mut raw)) => match r {
                Err(_) => return SourceEnd::Timeout(timeout),
                Ok(Err(e)) => return SourceEnd::Io(e),
                Ok(Ok(n)) => n,
            },
            _ = shared.shutdown.cancelled() => return SourceEnd::Shutdown,
            _ = kill.cancelled() => return SourceEnd::Killed,
        };
        if n == 0 {
            break;
        }
    }
    ingest.finish();
    SourceEnd::Finished
}
