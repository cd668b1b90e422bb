//! Pulling a mount as a listener, as a relay does: `GET /mount` with `Icy-MetaData: 1`, the
//! response head read into [`StreamInfo`], then the stream as [`IcyEvent`]s (audio bytes,
//! and the metadata blocks the server interleaves every `icy-metaint` bytes).
//!
//! The request is `HTTP/1.0`, as Icecast's own relays send it, so the body is the raw,
//! close-delimited stream. Redirects (`301`, `302`, `303`, `307`, `308` with a `Location`) are
//! followed, at most [`MAX_REDIRECTS`] of them, as ffmpeg and players do: an origin that
//! spreads its listeners over edges answers `302` to an edge. The credentials go along only
//! to the same host and port.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::{self, Conn};
use crate::http::{ResponseHead, get_request, read_head};
use crate::icy::{Deinterleaver, IcyEvent};
use crate::{ClientError, Endpoint, IO_TIMEOUT, ServerUrl, TlsConfig, UrlError};

/// Longest a pulled stream may stay silent before it is taken for dead (Icecast's source
/// timeout).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How much one read asks for.
const READ_SIZE: usize = 16 * 1024;

/// Most redirects followed by one [`Pull::connect`].
pub const MAX_REDIRECTS: usize = 5;

/// What the server says about the stream in its response head (Icecast's `icy-*` spellings,
/// with or without a space after the colon).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// `icy-name`.
    pub name: Option<String>,
    /// `icy-description`.
    pub description: Option<String>,
    /// `icy-genre`.
    pub genre: Option<String>,
    /// `icy-url`: the stream's web page.
    pub url: Option<String>,
    /// `icy-br`, kbit/s (the leading number: Shoutcast sends `128,128`).
    pub bitrate: Option<u32>,
    /// `icy-pub`: listed in public directories.
    pub public: Option<bool>,
    /// `ice-audio-info`, e.g. `channels=2;samplerate=44100`.
    pub audio_info: Option<String>,
}

impl StreamInfo {
    fn from_head(head: &ResponseHead) -> Self {
        let text = |name| head.text(name).filter(|v| !v.is_empty());
        StreamInfo {
            name: text("icy-name"),
            description: text("icy-description"),
            genre: text("icy-genre"),
            url: text("icy-url"),
            bitrate: text("icy-br").and_then(|v| {
                let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
                v[..digits].parse().ok()
            }),
            public: text("icy-pub").and_then(|v| match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Some(true),
                "0" | "false" | "no" => Some(false),
                _ => None,
            }),
            audio_info: text("ice-audio-info"),
        }
    }
}

/// A mount being pulled.
#[derive(Debug)]
pub struct Pull {
    /// The response's Content-Type (what a relay's own source announces).
    pub content_type: Option<String>,
    /// The stream's description.
    pub info: StreamInfo,
    /// `icy-metaint`: audio bytes between two metadata blocks; `None`, no metadata.
    pub metaint: Option<usize>,
    /// Where the stream came from after redirects (without credentials); `None` when the
    /// endpoint answered itself.
    pub redirected_to: Option<String>,
    conn: Conn,
    icy: Deinterleaver,
    buf: BytesMut,
    ended: bool,
}

impl Pull {
    /// Connects, asks for the endpoint's mount with ICY metadata, and reads the response
    /// head, each hop bounded by [`IO_TIMEOUT`], following redirects. Sends Basic
    /// credentials only when the endpoint has a password.
    pub async fn connect(endpoint: &Endpoint) -> Result<Pull, ClientError> {
        let mut hop = endpoint.clone();
        let mut redirected_to = None;
        let mut hops = 0;
        let (conn, head, rest) = loop {
            let req = request(&hop);
            let exchange = async {
                let mut conn = conn::connect(&hop).await?;
                conn.write_all(req.as_bytes())
                    .await
                    .map_err(ClientError::Lost)?;
                let (head, rest) = read_head(&mut conn).await?;
                Ok::<_, ClientError>((conn, head, rest))
            };
            let (conn, head, rest) = tokio::time::timeout(IO_TIMEOUT, exchange)
                .await
                .map_err(|_| ClientError::Timeout)??;
            match head.code {
                200..=299 => break (conn, head, rest),
                401 => return Err(ClientError::Unauthorized),
                301 | 302 | 303 | 307 | 308 => {
                    hops += 1;
                    let location = head.text("location").unwrap_or_default();
                    if hops > MAX_REDIRECTS || location.is_empty() {
                        return Err(ClientError::refused(head.code, &rest));
                    }
                    hop = redirect(&hop, &location)?;
                    redirected_to = Some(hop.url.to_string());
                }
                code => return Err(ClientError::refused(code, &rest)),
            }
        };
        let bad = |name: &'static str, value: &str| ClientError::BadHeader {
            name,
            value: value.chars().take(100).collect(),
        };
        if let Some(te) = head.text("transfer-encoding")
            && !te.eq_ignore_ascii_case("identity")
        {
            return Err(bad("transfer-encoding", &te));
        }
        let metaint = match head.text("icy-metaint") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n > 0 => Some(n as usize),
                _ => return Err(bad("icy-metaint", &v)),
            },
        };
        let mut pull = Pull {
            content_type: head.text("content-type"),
            info: StreamInfo::from_head(&head),
            metaint,
            redirected_to,
            conn,
            icy: Deinterleaver::new(metaint),
            buf: rest,
            ended: false,
        };
        // The start of the stream may have come with the head.
        pull.icy.push(pull.buf.split().freeze());
        Ok(pull)
    }

    /// The next piece of the stream, `Ok(None)` once the server has ended it. A stream silent
    /// for 10 s is [`ClientError::Silent`]. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<IcyEvent>, ClientError> {
        loop {
            if let Some(ev) = self.icy.poll() {
                return Ok(Some(ev));
            }
            if self.ended {
                return Ok(None);
            }
            self.buf.reserve(READ_SIZE);
            let n = tokio::time::timeout(READ_TIMEOUT, self.conn.read_buf(&mut self.buf))
                .await
                .map_err(|_| ClientError::Silent)?
                .map_err(ClientError::Lost)?;
            if n == 0 {
                self.ended = true;
            } else {
                self.icy.push(self.buf.split().freeze());
            }
        }
    }
}

/// The endpoint a redirect points to: `location` is a URL or a path on the same server.
/// The credentials (the URL's and the fallback password) carry over only to the same host and
/// port, unless `location` names its own; the TLS settings carry over (the system's roots for
/// an `https://` location reached from plain HTTP).
fn redirect(from: &Endpoint, location: &str) -> Result<Endpoint, ClientError> {
    let url: ServerUrl = if location.starts_with('/') && !location.starts_with("//") {
        let mut url = from.url.clone();
        url.mount = location.to_string();
        url
    } else {
        location
            .parse()
            .map_err(|e: UrlError| ClientError::BadHeader {
                name: "location",
                value: e.to_string().chars().take(100).collect(),
            })?
    };
    let same_server = url.host == from.url.host && url.port == from.url.port;
    let mut to = Endpoint::new(url);
    if same_server && to.url.user.is_none() && to.url.password.is_none() {
        to.url.user = from.url.user.clone();
        to.url.password = from.url.password.clone();
        to.password = from.password.clone();
    }
    to.tls = match (&from.tls, to.url.tls) {
        (Some(tls), _) => Some(tls.clone()),
        (None, true) => Some(TlsConfig::new(None)?),
        (None, false) => None,
    };
    Ok(to)
}

/// The request (pure: the wire bytes, pinned by a test).
fn request(endpoint: &Endpoint) -> String {
    get_request(endpoint, &endpoint.url.mount, "Icy-MetaData: 1\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::USER_AGENT;
    use crate::http::head_len;

    #[test]
    fn the_request_is_pinned() {
        let e = Endpoint::new("http://h:8000/live.mp3".parse().expect("url"));
        assert_eq!(
            request(&e),
            format!(
                "GET /live.mp3 HTTP/1.0\r\nHost: h:8000\r\nUser-Agent: {USER_AGENT}\r\nIcy-MetaData: 1\r\n\r\n"
            )
        );
        let e = Endpoint::new("http://relay:pw@h:8000/live.mp3".parse().expect("url"));
        assert!(request(&e).contains("\r\nAuthorization: Basic cmVsYXk6cHc=\r\n"));
    }

    #[test]
    fn stream_info_comes_from_the_head() {
        let h = b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nicy-name:Talk\r\n\
                  icy-description: About things\r\nicy-genre:Tech\r\nicy-url:http://x/\r\n\
                  icy-br:128,128\r\nicy-pub:1\r\nice-audio-info:channels=2;samplerate=44100\r\n\
                  icy-metaint:16000\r\n\r\n";
        let head = ResponseHead::parse(&h[..head_len(h).expect("whole")]).expect("parses");
        assert_eq!(
            StreamInfo::from_head(&head),
            StreamInfo {
                name: Some("Talk".into()),
                description: Some("About things".into()),
                genre: Some("Tech".into()),
                url: Some("http://x/".into()),
                bitrate: Some(128),
                public: Some(true),
                audio_info: Some("channels=2;samplerate=44100".into()),
            }
        );
    }

    /// A server on a real socket: the head and the first bytes of the stream in one write,
    /// metadata split across writes.
    #[tokio::test]
    async fn a_pull_reads_head_audio_and_titles() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.expect("request");
            assert!(String::from_utf8_lossy(&req[..n]).contains("Icy-MetaData: 1\r\n"));
            s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nicy-metaint:4\r\n\r\nabc")
                .await
                .expect("head");
            for piece in [&b"d\x01StreamTitle='A"[..], b"';efgh\0ij"] {
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.write_all(piece).await.expect("piece");
            }
        });
        let mut pull = Pull::connect(&Endpoint::new(
            format!("http://{addr}/a.mp3").parse().expect("url"),
        ))
        .await
        .expect("connects");
        assert_eq!(pull.content_type.as_deref(), Some("audio/mpeg"));
        assert_eq!(pull.metaint, Some(4));
        let mut audio = Vec::new();
        let mut titles = Vec::new();
        while let Some(ev) = pull.next().await.expect("reads") {
            match ev {
                IcyEvent::Audio(a) => audio.extend_from_slice(&a),
                IcyEvent::Metadata(m) => titles.push((audio.len(), m.title)),
            }
        }
        server.await.expect("server");
        assert_eq!(audio, b"abcdefghij");
        assert_eq!(titles, [(4, Some("A".to_string()))]);
    }

    #[tokio::test]
    async fn refusals_are_typed() {
        for (answer, want) in [
            (
                &b"HTTP/1.0 404 Not Found\r\n\r\nMount unavailable"[..],
                "the server refused: 404 Mount unavailable",
            ),
            (
                b"HTTP/1.0 401 Unauthorized\r\n\r\n",
                "wrong user or password (401)",
            ),
            (
                b"HTTP/1.0 200 OK\r\nicy-metaint: lots\r\n\r\n",
                "the server's icy-metaint header is not valid: `lots`",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "the server's transfer-encoding header is not valid: `chunked`",
            ),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut req = vec![0u8; 1024];
                let _ = s.read(&mut req).await;
                let _ = s.write_all(answer).await;
            });
            let e = Pull::connect(&Endpoint::new(
                format!("http://{addr}/a.mp3").parse().expect("url"),
            ))
            .await
            .expect_err("refused");
            assert_eq!(e.to_string(), want);
            assert_eq!(e.origin(), crate::Origin::Server);
        }
    }

    #[test]
    fn credentials_follow_a_redirect_to_the_same_server_only() {
        let mut from = Endpoint::new("http://relay:pw@o:8000/live.ogg".parse().expect("url"));
        from.password = Some("fallback".into());
        let same = redirect(&from, "/other.ogg?x=1").expect("a path");
        assert_eq!(same.url.to_string(), "http://o:8000/other.ogg?x=1");
        assert!(request(&same).contains("Authorization: Basic cmVsYXk6cHc="));
        let other = redirect(&from, "http://edge:8001/live.ogg").expect("a URL");
        assert_eq!(other.url.to_string(), "http://edge:8001/live.ogg");
        assert!(
            !request(&other).contains("Authorization"),
            "{}",
            request(&other)
        );
        assert_eq!(other.password, None);
        let own = redirect(&from, "http://u:p@edge:8001/live.ogg").expect("a URL");
        assert!(request(&own).contains("Authorization: Basic dTpw"));
        assert!(matches!(
            redirect(&from, "gopher://x/"),
            Err(ClientError::BadHeader {
                name: "location",
                ..
            })
        ));
    }

    /// Two servers on real sockets: the first answers `302` to the second, which streams;
    /// a server that redirects to itself forever is given up after [`MAX_REDIRECTS`].
    #[tokio::test]
    async fn a_pull_follows_redirects_and_stops_at_a_loop() {
        let edge = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let origin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (edge_addr, origin_addr) = (
            edge.local_addr().expect("addr"),
            origin.local_addr().expect("addr"),
        );
        tokio::spawn(async move {
            loop {
                let (mut s, _) = origin.accept().await.expect("accept");
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).await.expect("request");
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                let to = if req.starts_with("GET /loop") {
                    format!("http://{origin_addr}/loop")
                } else {
                    format!("http://{edge_addr}/live.mp3?from=origin")
                };
                let head = format!("HTTP/1.0 302 Found\r\nLocation: {to}\r\n\r\n");
                s.write_all(head.as_bytes()).await.expect("head");
            }
        });
        tokio::spawn(async move {
            let (mut s, _) = edge.accept().await.expect("accept");
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.expect("request");
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            assert!(
                req.starts_with("GET /live.mp3?from=origin HTTP/1.0"),
                "{req}"
            );
            assert!(!req.contains("Authorization"), "{req}");
            s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\nabc")
                .await
                .expect("head");
        });
        let url = format!("http://relay:pw@{origin_addr}/live.mp3");
        let mut pull = Pull::connect(&Endpoint::new(url.parse().expect("url")))
            .await
            .expect("follows the redirect");
        assert_eq!(
            pull.redirected_to,
            Some(format!("http://{edge_addr}/live.mp3?from=origin"))
        );
        let mut audio = Vec::new();
        while let Some(ev) = pull.next().await.expect("reads") {
            if let IcyEvent::Audio(a) = ev {
                audio.extend_from_slice(&a);
            }
        }
        assert_eq!(audio, b"abc");
        let looped = Pull::connect(&Endpoint::new(
            format!("http://{origin_addr}/loop").parse().expect("url"),
        ))
        .await;
        assert!(
            matches!(looped, Err(ClientError::Refused(302, _))),
            "{looped:?}"
        );
    }
}
