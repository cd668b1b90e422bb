//! Push targets: the Icecast source protocol, client side, and a task per target that
//! reconnects on its own.
//!
//! **Handshake.** `PUT /mount HTTP/1.1` with `Expect: 100-continue`, Basic auth, a
//! Content-Type and the `ice-*` stream headers; a `100` or any `2xx` means "go" (Icecast 2.4
//! and Agora send `100` then `200`, Icecast 2.5 only `100`). A server that does not know PUT
//! (`400`, `405`, `501`: Icecast before 2.4) is asked again with `SOURCE /mount HTTP/1.0`,
//! and that dialect is kept for the target's reconnects. The body is the raw stream,
//! close-delimited, as ffmpeg and libshout send it.
//!
//! **Reconnects.** Any failure (refused, reset, a `4xx`/`5xx`, a handshake or write that takes
//! longer than [`IO_TIMEOUT`]) ends the connection; the task waits (capped exponential backoff,
//! [`BACKOFF_MAX`]) and connects again. On every connection it first sends the current stream
//! headers, then live data from the next sync point: never a backlog.
//!
//! **Isolation.** Each target reads the [`Hub`](crate::hub::Hub) through its own broadcast
//! receiver. The encoder, the archive and the other targets never wait for it; a target that
//! falls more than the hub's capacity behind skips to the next sync point (counted in
//! [`TargetStats::skips`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_format::Event;
use base64::Engine;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::tls::{Conn, connect};

/// Longest a connect, a handshake or one write may take before the target is taken for dead.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(4);

const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// `http://[user:pass@]host:port/mount`.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetUrl {
    /// `https://`: the connection is TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub mount: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl FromStr for TargetUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("icecast://") {
            (false, r)
        } else {
            return Err(format!(
                "{s}: expected http(s)://[user:pass@]host:port/mount"
            ));
        };
        // Icecast's port when none is given; 443 for https.
        let default_port = if tls { 443 } else { 8000 };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s}: no mount (the URL needs a path, e.g. /live.webm)"))?;
        if path.is_empty() {
            return Err(format!(
                "{s}: no mount (the URL needs a path, e.g. /live.webm)"
            ));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
                None => (Some(percent_decode(u)), None),
            },
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("{s}: bad port `{p}`"))?,
            ),
            _ => (hostport.to_string(), default_port),
        };
        if host.is_empty() {
            return Err(format!("{s}: no host"));
        }
        Ok(TargetUrl {
            tls,
            host,
            port,
            mount: format!("/{path}"),
            user: user.filter(|u| !u.is_empty()),
            password,
        })
    }
}

/// Shown without the password.
impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}{}", self.host, self.port, self.mount)
        } else {
            write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.mount)
        }
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TargetUrl {
    /// `host:port` for `Host:` and for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `Authorization` header value, with `fallback` when the URL has no password.
    pub fn basic_auth(&self, fallback: Option<&str>) -> Option<String> {
        let pass = self.password.as_deref().or(fallback)?;
        let user = self.user.as_deref().unwrap_or("source");
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    }
}

/// Decodes `%XX` escapes (userinfo of a URL).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query-string value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The stream's public description, sent as `ice-*` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamMeta {
    pub name: Option<String>,
    pub description: Option<String>,
    pub genre: Option<String>,
    pub url: Option<String>,
    pub public: bool,
    /// `ice-audio-info`, e.g. `channels=2;samplerate=48000;bitrate=96`.
    pub audio_info: Option<String>,
    /// `ice-bitrate`, kbit/s.
    pub bitrate: Option<u32>,
}

/// Why a connection attempt or a live connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {} s", IO_TIMEOUT.as_secs())]
    Timeout,
    #[error("wrong user or password (401)")]
    Unauthorized,
    #[error("mountpoint in use: another source is live there ({0})")]
    InUse(u16),
    #[error("the server does not accept PUT ({0})")]
    NoPut(u16),
    #[error("the server refused: {0} {1}")]
    Refused(u16, String),
    #[error("the server's answer is not HTTP")]
    BadResponse,
    #[error("connection lost: {0}")]
    Lost(std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("writes stalled for {} s", IO_TIMEOUT.as_secs())]
    Stalled,
}

/// The source dialect a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Put,
    Source,
}

/// A target's state as shown in the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Waiting for the stream's format, or connecting.
    Connecting,
    Live,
    /// Waiting before the next attempt; the last failure.
    Retrying(String),
    Done,
}

/// What a target did, read by the status reporter.
#[derive(Debug)]
pub struct TargetStats {
    pub url: TargetUrl,
    pub state: Mutex<TargetState>,
    /// Connections made after the first.
    pub reconnects: AtomicU64,
    /// Stream bytes written, all connections together.
    pub sent: AtomicU64,
    /// Times the target fell behind and skipped to the next sync point.
    pub skips: AtomicU64,
}

impl TargetStats {
    fn new(url: TargetUrl) -> Self {
        TargetStats {
            url,
            state: Mutex::new(TargetState::Connecting),
            reconnects: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skips: AtomicU64::new(0),
        }
    }

    fn set(&self, s: TargetState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn state(&self) -> TargetState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Everything a target task needs.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub url: TargetUrl,
    /// Password when the URL has none.
    pub password: Option<String>,
    pub meta: StreamMeta,
    /// Now-playing title, set through the admin endpoint after each connect.
    pub title: Option<String>,
    /// TLS settings for `https://` targets.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl TargetConfig {
    /// TLS settings when this target's URL asks for TLS.
    pub fn tls_for_url(&self) -> Result<Option<&Arc<rustls::ClientConfig>>, PushError> {
        match (self.url.tls, &self.tls) {
            (false, _) => Ok(None),
            (true, Some(c)) => Ok(Some(c)),
            (true, None) => Err(PushError::Connect(std::io::Error::other(
                "https target without TLS settings",
            ))),
        }
    }
}

/// Starts a target task; it runs until the hub closes (then it sends what is queued and ends)
/// or `stop` is cancelled.
pub fn spawn(
    cfg: TargetConfig,
    hub: Arc<Hub>,
    stop: CancellationToken,
) -> (Arc<TargetStats>, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(TargetStats::new(cfg.url.clone()));
    let task = tokio::spawn(run(cfg, hub, stats.clone(), stop));
    (stats, task)
}

async fn run(cfg: TargetConfig, hub: Arc<Hub>, stats: Arc<TargetStats>, stop: CancellationToken) {
    let Some(content_type) = hub.content_type().await else {
        stats.set(TargetState::Done);
        return;
    };
    let mut dialect = Dialect::Put;
    let mut backoff = FIRST_BACKOFF;
    let mut connections = 0u64;
    loop {
        stats.set(TargetState::Connecting);
        let attempt = tokio::select! {
            r = handshake(&cfg, &content_type, dialect) => r,
            _ = stop.cancelled() => break,
        };
        let attempt = match attempt {
            Err(PushError::NoPut(code)) if dialect == Dialect::Put => {
                tracing::info!(target = %cfg.url, code, "server does not take PUT; using SOURCE");
                dialect = Dialect::Source;
                continue;
            }
            other => other,
        };
        let why = match attempt {
            Ok(stream) => {
                if connections > 0 {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                connections += 1;
                backoff = FIRST_BACKOFF;
                tracing::info!(target = %cfg.url, ?dialect, "target connected");
                if let Some(title) = cfg.title.clone() {
                    let cfg = cfg.clone();
                    tokio::spawn(async move {
                        if let Err(e) = crate::meta::set_title(
                            &cfg.url,
                            cfg.password.as_deref(),
                            &title,
                            cfg.tls_for_url().ok().flatten(),
                        )
                        .await
                        {
                            tracing::warn!(target = %cfg.url, "could not set the title: {e}");
                        }
                    });
                }
                match stream_to(stream, &hub, &stats, &stop).await {
                    Ok(()) => break,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if hub.is_closed() && matches!(why, PushError::Closed | PushError::Lost(_)) {
            break;
        }
        tracing::warn!(target = %cfg.url, "target down: {why}; retrying in {:.1} s", backoff.as_secs_f32());
        stats.set(TargetState::Retrying(why.to_string()));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => break,
            _ = hub.closed() => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    stats.set(TargetState::Done);
}

/// Connects and asks to be the source of the mount.
pub async fn handshake(
    cfg: &TargetConfig,
    content_type: &str,
    dialect: Dialect,
) -> Result<Conn, PushError> {
    let url = &cfg.url;
    let tls = cfg.tls_for_url()?;
    let mut stream = tokio::time::timeout(IO_TIMEOUT, connect(&url.host, url.port, tls))
        .await
        .map_err(|_| PushError::Timeout)?
        .map_err(PushError::Connect)?;
    let mut head = match dialect {
        Dialect::Put => format!(
            "PUT {} HTTP/1.1\r\nHost: {}\r\nExpect: 100-continue\r\n",
            url.mount,
            url.authority()
        ),
        Dialect::Source => format!(
            "SOURCE {} HTTP/1.0\r\nHost: {}\r\n",
            url.mount,
            url.authority()
        ),
    };
    let clean = |v: &str| v.chars().filter(|c| !c.is_control()).collect::<String>();
    head.push_str(&format!(
        "User-Agent: agora/{}\r\nContent-Type: {content_type}\r\n",
        env!("CARGO_PKG_VERSION")
    ));
    if let Some(auth) = url.basic_auth(cfg.password.as_deref()) {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    let m = &cfg.meta;
    for (k, v) in [
        ("ice-name", &m.name),
        ("ice-description", &m.description),
        ("ice-genre", &m.genre),
        ("ice-url", &m.url),
        ("ice-audio-info", &m.audio_info),
    ] {
        if let Some(v) = v {
            head.push_str(&format!("{k}: {}\r\n", clean(v)));
        }
    }
    if let Some(b) = m.bitrate {
        head.push_str(&format!("ice-bitrate: {b}\r\n"));
    }
    head.push_str(&format!("ice-public: {}\r\n\r\n", u8::from(m.public)));
    let answer = async {
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(PushError::Lost)?;
        read_response(&mut stream).await
    };
    let (code, body) = tokio::time::timeout(IO_TIMEOUT, answer)
        .await
        .map_err(|_| PushError::Timeout)??;
    match code {
        100 | 200..=299 => Ok(stream),
        401 => Err(PushError::Unauthorized),
        409 => Err(PushError::InUse(code)),
        403 if body.to_ascii_lowercase().contains("in use") => Err(PushError::InUse(code)),
        400 | 405 | 501 if dialect == Dialect::Put => Err(PushError::NoPut(code)),
        _ => Err(PushError::Refused(
            code,
            body.trim().chars().take(200).collect(),
        )),
    }
}

/// Reads one response head (and, for an error, what of its body came with it).
async fn read_response(stream: &mut Conn) -> Result<(u16, String), PushError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(PushError::Lost)?;
        if n == 0 {
            return Err(PushError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = resp.code.ok_or(PushError::BadResponse)?;
                let body = String::from_utf8_lossy(&buf[len..]).into_owned();
                return Ok((code, body));
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => return Err(PushError::BadResponse),
        }
    }
}

/// One write, bounded by [`IO_TIMEOUT`]: a server that stops reading is taken for dead.
async fn write_timed(w: &mut WriteHalf<Conn>, b: Bytes) -> Result<u64, PushError> {
    match tokio::time::timeout(IO_TIMEOUT, w.write_all(&b)).await {
        Err(_) => Err(PushError::Stalled),
        Ok(Err(e)) => Err(PushError::Lost(e)),
        Ok(Ok(())) => Ok(b.len() as u64),
    }
}

/// Sends headers then live data until the hub closes (`Ok`) or the connection fails.
async fn stream_to(
    stream: Conn,
    hub: &Hub,
    stats: &TargetStats,
    stop: &CancellationToken,
) -> Result<(), PushError> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (headers, mut rx) = hub.subscribe();
    stats.set(TargetState::Live);
    if let Some(h) = headers {
        stats
            .sent
            .fetch_add(write_timed(&mut writer, h).await?, Ordering::Relaxed);
    }
    // Live from the next sync point.
    let mut need_sync = true;
    let mut sink = [0u8; 512];
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            // The server says nothing after accepting; EOF or an error means it is gone.
            r = reader.read(&mut sink) => match r {
                Ok(0) => return Err(PushError::Closed),
                Ok(_) => continue,
                Err(e) => return Err(PushError::Lost(e)),
            },
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
                let _ = writer.shutdown().await;
                return Ok(());
            }
        };
        stats
            .sent
            .fetch_add(write_timed(&mut writer, bytes).await?, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u: TargetUrl = "http://source:p%40ss@example.org:8001/live.webm"
            .parse()
            .expect("valid");
        assert_eq!(u.host, "example.org");
        assert_eq!(u.port, 8001);
        assert_eq!(u.mount, "/live.webm");
        assert_eq!(u.user.as_deref(), Some("source"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.to_string(), "http://example.org:8001/live.webm");
        let u: TargetUrl = "http://[::1]:9000/a.ogg".parse().expect("v6");
        assert_eq!(u.authority(), "[::1]:9000");
        let u: TargetUrl = "http://h/a.ogg".parse().expect("default port");
        assert_eq!(u.port, 8000);
        assert_eq!(
            u.basic_auth(Some("pw")).as_deref(),
            Some("Basic c291cmNlOnB3")
        );
        assert!("http://h:8000/".parse::<TargetUrl>().is_err());
        assert!("http://h:80x/a".parse::<TargetUrl>().is_err());
        let u: TargetUrl = "https://h/a".parse().expect("https");
        assert!(u.tls && u.port == 443);
        assert_eq!(u.to_string(), "https://h:443/a");
        assert!("ftp://h/a".parse::<TargetUrl>().is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(percent_encode("Talk: A & B"), "Talk%3A%20A%20%26%20B");
        assert_eq!(percent_decode("a%20b%zz"), "a b%zz");
    }

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
            url: format!("http://source:pw@{addr}/old.mp3")
                .parse()
                .expect("url"),
            password: None,
            meta: StreamMeta {
                name: Some("Old".into()),
                ..StreamMeta::default()
            },
            title: None,
            tls: None,
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
