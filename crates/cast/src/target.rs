//! Push targets: a task per target that feeds one server through [`agora_client::push`] and
//! reconnects on its own.
//!
//! **Handshake** (the protocol is [`agora_client::push`]'s): PUT, and when the server does not
//! know PUT, SOURCE, a dialect then kept for the target's reconnects.
//!
//! **Reconnects.** Any failure (refused, reset, a `4xx`/`5xx`, a handshake or write that takes
//! longer than [`agora_client::IO_TIMEOUT`]) ends the connection; the task waits (capped exponential backoff,
//! [`BACKOFF_MAX`]) and connects again. On every connection it first sends the current stream
//! headers, then live data from the next sync point: never a backlog.
//!
//! **Denials are not network failures.** A `401` or `403` ([`ClientError::is_denied`]) means
//! the password, the user or the mount is wrong: retrying every few seconds changes nothing
//! and fills the server's log with failed logins (and may get the address banned). The task
//! says so once, plainly, and stops ([`TargetState::Refused`]), unless
//! [`TargetConfig::retry_refused`] asks it to try again every [`REFUSED_RETRY`].
//!
//! **Isolation.** Each target reads the [`Hub`](crate::hub::Hub) through its own broadcast
//! receiver. The encoder, the archive and the other targets never wait for it; a target that
//! falls more than the hub's capacity behind skips to the next sync point (counted in
//! [`TargetStats::skips`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_client::backoff::Backoff;
use agora_client::push::{Dialect, Push, StreamMeta};
use agora_client::{ClientError, Endpoint, ServerUrl};
use agora_format::Event;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Longest wait between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(4);

const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The wait before asking again a server that refused the credentials, with
/// [`TargetConfig::retry_refused`] (slow, as a relay waits after a refusal: someone has to fix
/// a configuration meanwhile).
pub const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// A target's state as shown in the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Waiting for the stream's format, or connecting.
    Connecting,
    /// Connected and sending.
    Live,
    /// Waiting before the next attempt; the last failure.
    Retrying(String),
    /// The server refused the credentials or the mount (401, 403): given up. (With
    /// [`TargetConfig::retry_refused`] such a target is `Retrying` for [`REFUSED_RETRY`].)
    Refused(String),
    /// The stream ended, or the cast stopped.
    Done,
}

/// What a target did, read by the status reporter.
#[derive(Debug)]
pub struct TargetStats {
    /// The server and mount.
    pub url: ServerUrl,
    /// What it is doing now.
    state: watch::Sender<TargetState>,
    /// Connections made after the first.
    pub reconnects: AtomicU64,
    /// Stream bytes written, all connections together.
    pub sent: AtomicU64,
    /// Times the target fell behind and skipped to the next sync point.
    pub skips: AtomicU64,
}

impl TargetStats {
    fn new(url: ServerUrl) -> Self {
        TargetStats {
            url,
            state: watch::Sender::new(TargetState::Connecting),
            reconnects: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skips: AtomicU64::new(0),
        }
    }

    fn set(&self, s: TargetState) {
        self.state.send_replace(s);
    }

    /// What the target is doing now.
    pub fn state(&self) -> TargetState {
        self.state.borrow().clone()
    }

    /// Resolves once the target has given up on a refusal (never, for a target that retries
    /// refusals or ended otherwise).
    pub async fn given_up(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| matches!(s, TargetState::Refused(_))).await;
    }
}

/// Everything a target task needs.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The server and mount, the password when the URL has none, TLS settings for
    /// `https://`.
    pub endpoint: Endpoint,
    /// Stream information sent with the connection (`ice-*`).
    pub meta: StreamMeta,
    /// Now-playing title, set through the admin endpoint after each connect.
    pub title: Option<String>,
    /// On a refusal of the credentials (401, 403), ask again every [`REFUSED_RETRY`] rather
    /// than give up.
    pub retry_refused: bool,
}

/// Starts a target task; it runs until the hub closes (then it sends what is queued and ends)
/// or `stop` is cancelled.
pub fn spawn(
    cfg: TargetConfig,
    hub: Arc<Hub>,
    stop: CancellationToken,
) -> (Arc<TargetStats>, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(TargetStats::new(cfg.endpoint.url.clone()));
    let task = tokio::spawn(run(cfg, hub, stats.clone(), stop));
    (stats, task)
}

async fn run(cfg: TargetConfig, hub: Arc<Hub>, stats: Arc<TargetStats>, stop: CancellationToken) {
    let Some(content_type) = hub.content_type().await else {
        stats.set(TargetState::Done);
        return;
    };
    let url = &cfg.endpoint.url;
    let mut dialect = Dialect::Put;
    let mut backoff = Backoff::new(FIRST_BACKOFF, BACKOFF_MAX);
    let mut connections = 0u64;
    loop {
        stats.set(TargetState::Connecting);
        let attempt = tokio::select! {
            r = Push::connect(&cfg.endpoint, &content_type, &cfg.meta, dialect) => r,
            _ = stop.cancelled() => break,
        };
        let attempt = match attempt {
            Err(ClientError::NoPut(code)) if dialect == Dialect::Put => {
                tracing::info!(target = %url, code, "server does not take PUT; using SOURCE");
                dialect = Dialect::Source;
                continue;
            }
            other => other,
        };
        let why = match attempt {
            Ok(push) => {
                if connections > 0 {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                connections += 1;
                backoff.reset();
                tracing::info!(target = %url, ?dialect, "target connected");
                if let Some(title) = cfg.title.clone() {
                    let endpoint = cfg.endpoint.clone();
                    tokio::spawn(async move {
                        if let Err(e) = agora_client::meta::set_title(&endpoint, &title).await {
                            tracing::warn!(target = %endpoint.url, "could not set the title: {e}");
                        }
                    });
                }
                match stream_to(push, &hub, &stats, &stop).await {
                    Ok(()) => break,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if hub.is_closed() && matches!(why, ClientError::Closed | ClientError::Lost(_)) {
            break;
        }
        let wait = if why.is_denied() {
            // The URL is shown without its password; the password itself is never shown.
            let what = match &why {
                ClientError::Refused(code, body) => format!("this source ({code} {body})"),
                _ => "the user or password (401)".to_string(),
            };
            if !cfg.retry_refused {
                tracing::error!(
                    "target refused: {url} refused {what}; check the password (--password-file, \
                     AGORA_SOURCE_PASSWORD or the URL), the user and the mount against that \
                     server's configuration. Not asked again (--retry-refused asks every {} s)",
                    REFUSED_RETRY.as_secs()
                );
                stats.set(TargetState::Refused(why.to_string()));
                return;
            }
            tracing::error!(
                "target refused: {url} refused {what}; check the password, the user and the \
                 mount; asking again in {} s (--retry-refused)",
                REFUSED_RETRY.as_secs()
            );
            stats.set(TargetState::Retrying(format!("refused: {why}")));
            REFUSED_RETRY
        } else {
            let wait = backoff.next_wait();
            tracing::warn!(target = %url, "target down: {why}; retrying in {:.1} s", wait.as_secs_f32());
            stats.set(TargetState::Retrying(why.to_string()));
            wait
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
            _ = hub.closed() => break,
        }
    }
    stats.set(TargetState::Done);
}

/// Sends headers then live data until the hub closes (`Ok`) or the connection fails.
async fn stream_to(
    mut push: Push,
    hub: &Hub,
    stats: &TargetStats,
    stop: &CancellationToken,
) -> Result<(), ClientError> {
    let (headers, mut rx) = hub.subscribe();
    stats.set(TargetState::Live);
    if let Some(h) = headers {
        stats.sent.fetch_add(push.send(h).await?, Ordering::Relaxed);
    }
    // Live from the next sync point.
    let mut need_sync = true;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            // The server says nothing after accepting; EOF or an error means it is gone.
            e = push.closed() => return Err(e),
            _ = stop.cancelled() => return Ok(()),
        };
        let bytes = match ev {
            Ok(Event::Headers(h)) => {
                need_sync = true;
                h
            }
            Ok(Event::Chunk(c)) => {
                if need_sync && !c.sync {
                    continue;
                }
                need_sync = false;
                c.bytes
            }
            Err(RecvError::Lagged(n)) => {
                stats.skips.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target = %stats.url, chunks = n, "target fell behind; skipping to the next sync point");
                need_sync = true;
                continue;
            }
            Err(RecvError::Closed) => {
                push.finish().await;
                return Ok(());
            }
        };
        stats
            .sent
            .fetch_add(push.send(bytes).await?, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An old server (Icecast before 2.4) answers PUT with 405: the target asks again with
    /// SOURCE, and keeps that dialect. The peer is a real socket speaking the old dialect.
    #[tokio::test]
    async fn falls_back_to_source_for_a_server_without_put() {
        use agora_format::Chunk;
        use tokio::net::TcpListener;

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let mut methods = Vec::new();
            loop {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    s.read_exact(&mut b).await.expect("head");
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                methods.push(head.split(' ').next().unwrap_or("").to_string());
                if head.starts_with("PUT ") {
                    s.write_all(b"HTTP/1.0 405 Method Not Allowed\r\n\r\n")
                        .await
                        .expect("answer");
                    continue;
                }
                assert!(
                    head.contains("Authorization: Basic c291cmNlOnB3\r\n"),
                    "{head}"
                );
                assert!(head.contains("ice-name: Old\r\n"), "{head}");
                s.write_all(b"HTTP/1.0 200 OK\r\n\r\n")
                    .await
                    .expect("answer");
                let mut body = Vec::new();
                s.read_to_end(&mut body).await.expect("body");
                return (methods, body);
            }
        });
        let hub = Arc::new(Hub::new());
        hub.set_format(
            agora_format::Format::Mp3,
            &agora_format::StreamInfo::default(),
        );
        let cfg = TargetConfig {
            endpoint: Endpoint::new(
                format!("http://source:pw@{addr}/old.mp3")
                    .parse()
                    .expect("url"),
            ),
            meta: StreamMeta {
                name: Some("Old".into()),
                ..StreamMeta::default()
            },
            title: None,
            retry_refused: false,
        };
        let (stats, task) = spawn(cfg, hub.clone(), CancellationToken::new());
        while stats.state() != TargetState::Live {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hub.publish(Event::Chunk(Chunk {
            bytes: Bytes::from_static(b"frame"),
            sync: true,
        }));
        hub.close();
        task.await.expect("target task");
        let (methods, body) = server.await.expect("server");
        assert_eq!(methods, ["PUT", "SOURCE"]);
        assert_eq!(body, b"frame");
    }
}
