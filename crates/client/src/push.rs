//! The source protocol, client side: ask to be a mount's source, then write the stream.
//!
//! **Handshake.** `PUT /mount HTTP/1.1` with `Expect: 100-continue`, Basic auth, a
//! Content-Type and the `ice-*` stream headers; a `100` or any `2xx` means "go" (Icecast 2.4
//! and Agora send `100` then `200`, Icecast 2.5 only `100`). A server that does not know PUT
//! (`400`, `405`, `501`: Icecast before 2.4) answers [`ClientError::NoPut`]: ask again with
//! [`Dialect::Source`] (`SOURCE /mount HTTP/1.0`), and keep that dialect for the reconnects.
//! The body is the raw stream, close-delimited, as ffmpeg and libshout send it.
//!
//! **Afterwards** the server says nothing; [`Push::closed`] watches for it going away while
//! [`Push::send`] writes, each write bounded by [`IO_TIMEOUT`]. Reconnecting is the
//! caller's business (the broadcaster's targets do it with a capped backoff).

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::{self, Conn};
use crate::http::read_head;
use crate::{ClientError, Endpoint, IO_TIMEOUT, USER_AGENT};

/// The stream's public description, sent as `ice-*` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamMeta {
    /// `ice-name`.
    pub name: Option<String>,
    /// `ice-description`.
    pub description: Option<String>,
    /// `ice-genre`.
    pub genre: Option<String>,
    /// `ice-url`: the stream's web page.
    pub url: Option<String>,
    /// `ice-public`: list the stream in public directories.
    pub public: bool,
    /// `ice-audio-info`, e.g. `channels=2;samplerate=48000;bitrate=96`.
    pub audio_info: Option<String>,
    /// `ice-bitrate`, kbit/s.
    pub bitrate: Option<u32>,
}

/// The source dialect spoken to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `PUT /mount HTTP/1.1` with `Expect: 100-continue` (Icecast 2.4 and later).
    Put,
    /// `SOURCE /mount HTTP/1.0` (every Icecast).
    Source,
}

/// A mount being fed: the connection after a successful handshake.
#[derive(Debug)]
pub struct Push {
    conn: Conn,
}

/// The request head of the handshake (pure: the wire bytes, pinned by tests).
fn request_head(
    endpoint: &Endpoint,
    content_type: &str,
    meta: &StreamMeta,
    dialect: Dialect,
) -> String {
    let url = &endpoint.url;
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
    // A header value cannot hold a line break: control characters are left out.
    let clean = |v: &str| v.chars().filter(|c| !c.is_control()).collect::<String>();
    head.push_str(&format!(
        "User-Agent: {USER_AGENT}\r\nContent-Type: {}\r\n",
        clean(content_type)
    ));
    if let Some(auth) = endpoint.basic_auth() {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    for (k, v) in [
        ("ice-name", &meta.name),
        ("ice-description", &meta.description),
        ("ice-genre", &meta.genre),
        ("ice-url", &meta.url),
        ("ice-audio-info", &meta.audio_info),
    ] {
        if let Some(v) = v {
            head.push_str(&format!("{k}: {}\r\n", clean(v)));
        }
    }
    if let Some(b) = meta.bitrate {
        head.push_str(&format!("ice-bitrate: {b}\r\n"));
    }
    head.push_str(&format!("ice-public: {}\r\n\r\n", u8::from(meta.public)));
    head
}

impl Push {
    /// Connects and asks to be the source of the endpoint's mount, the whole handshake bounded
    /// by [`IO_TIMEOUT`] (connect, then request and answer).
    pub async fn connect(
        endpoint: &Endpoint,
        content_type: &str,
        meta: &StreamMeta,
        dialect: Dialect,
    ) -> Result<Push, ClientError> {
        let mut conn = tokio::time::timeout(IO_TIMEOUT, conn::connect(endpoint))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let head = request_head(endpoint, content_type, meta, dialect);
        let answer = async {
            conn.write_all(head.as_bytes())
                .await
                .map_err(ClientError::Lost)?;
            read_head(&mut conn).await
        };
        let (head, body) = tokio::time::timeout(IO_TIMEOUT, answer)
            .await
            .map_err(|_| ClientError::Timeout)??;
        match head.code {
            100 | 200..=299 => Ok(Push { conn }),
            401 => Err(ClientError::Unauthorized),
            409 => Err(ClientError::InUse(409)),
            403 if String::from_utf8_lossy(&body)
                .to_ascii_lowercase()
                .contains("in use") =>
            {
                Err(ClientError::InUse(403))
            }
            code @ (400 | 405 | 501) if dialect == Dialect::Put => Err(ClientError::NoPut(code)),
            code => Err(ClientError::refused(code, &body)),
        }
    }

    /// Writes `bytes`, bounded by [`IO_TIMEOUT`] (a server that stops reading is taken for
    /// dead: [`ClientError::Stalled`]); returns the number of bytes written.
    pub async fn send(&mut self, bytes: Bytes) -> Result<u64, ClientError> {
        match tokio::time::timeout(IO_TIMEOUT, self.conn.write_all(&bytes)).await {
            Err(_) => Err(ClientError::Stalled),
            Ok(Err(e)) => Err(ClientError::Lost(e)),
            Ok(Ok(())) => Ok(bytes.len() as u64),
        }
    }

    /// Resolves when the server goes away ([`ClientError::Closed`] or
    /// [`ClientError::Lost`]); whatever it says meanwhile (Icecast 2.4's `200` after the
    /// `100`) is read and dropped. Cancel-safe: meant for a `select!` beside the stream's
    /// source, with [`Push::send`] called outside it.
    pub async fn closed(&mut self) -> ClientError {
        let mut sink = [0u8; 512];
        loop {
            match self.conn.read(&mut sink).await {
                Ok(0) => return ClientError::Closed,
                Ok(_) => {}
                Err(e) => return ClientError::Lost(e),
            }
        }
    }

    /// Ends the stream: the write side is shut down (a TLS close_notify, then FIN).
    pub async fn finish(mut self) {
        let _ = self.conn.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::new(url.parse().expect("url"))
    }

    /// The wire bytes of both dialects, as `agora cast` has always sent them.
    #[test]
    fn handshake_heads_are_pinned() {
        let meta = StreamMeta {
            name: Some("Talk\r\nX-Evil: 1".into()),
            genre: Some("Tech".into()),
            bitrate: Some(96),
            public: true,
            ..StreamMeta::default()
        };
        let mut e = endpoint("http://h:8000/live.ogg");
        e.password = Some("pw".into());
        let ua = USER_AGENT;
        assert_eq!(
            request_head(&e, "application/ogg", &meta, Dialect::Put),
            format!(
                "PUT /live.ogg HTTP/1.1\r\nHost: h:8000\r\nExpect: 100-continue\r\n\
                 User-Agent: {ua}\r\nContent-Type: application/ogg\r\n\
                 Authorization: Basic c291cmNlOnB3\r\n\
                 ice-name: TalkX-Evil: 1\r\nice-genre: Tech\r\nice-bitrate: 96\r\nice-public: 1\r\n\r\n"
            )
        );
        let e = endpoint("http://dj:pw@[::1]:9000/a.mp3");
        assert_eq!(
            request_head(&e, "audio/mpeg", &StreamMeta::default(), Dialect::Source),
            format!(
                "SOURCE /a.mp3 HTTP/1.0\r\nHost: [::1]:9000\r\n\
                 User-Agent: {ua}\r\nContent-Type: audio/mpeg\r\n\
                 Authorization: Basic ZGo6cHc=\r\nice-public: 0\r\n\r\n"
            )
        );
    }

    /// A one-connection peer that reads a head, answers `answer`, then reads the body.
    async fn peer(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<(String, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).await.expect("head");
                head.push(b[0]);
            }
            s.write_all(answer).await.expect("answer");
            let mut body = Vec::new();
            let _ = s.read_to_end(&mut body).await;
            (String::from_utf8_lossy(&head).into_owned(), body)
        });
        (format!("http://source:pw@{addr}/m.mp3"), task)
    }

    #[tokio::test]
    async fn a_100_then_200_is_go_and_the_body_follows() {
        let (url, server) =
            peer(b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\nHTTP/1.0 200 OK\r\n\r\n")
                .await;
        let mut push = Push::connect(
            &endpoint(&url),
            "audio/mpeg",
            &StreamMeta::default(),
            Dialect::Put,
        )
        .await
        .expect("accepted");
        assert_eq!(
            push.send(Bytes::from_static(b"frame")).await.expect("send"),
            5
        );
        push.finish().await;
        let (head, body) = server.await.expect("peer");
        assert!(head.starts_with("PUT /m.mp3 HTTP/1.1\r\n"), "{head}");
        assert_eq!(body, b"frame");
    }

    #[tokio::test]
    async fn refusals_are_typed() {
        for (answer, want) in [
            (
                &b"HTTP/1.0 405 Method Not Allowed\r\n\r\n"[..],
                "the server does not accept PUT (405)",
            ),
            (
                b"HTTP/1.0 401 Unauthorized\r\n\r\n",
                "wrong user or password (401)",
            ),
            (
                b"HTTP/1.0 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nMountpoint in use",
                "mountpoint in use: another source is live there (403)",
            ),
            (
                b"HTTP/1.1 409 Conflict\r\n\r\n",
                "mountpoint in use: another source is live there (409)",
            ),
            (
                b"HTTP/1.0 403 Forbidden\r\n\r\nContent-type not supported",
                "the server refused: 403 Content-type not supported",
            ),
            (b"SOURCE? no\r\n\r\n", "the server's answer is not HTTP"),
        ] {
            let answer: &'static [u8] = answer;
            let (url, server) = peer(answer).await;
            let e = Push::connect(
                &endpoint(&url),
                "audio/mpeg",
                &StreamMeta::default(),
                Dialect::Put,
            )
            .await
            .expect_err("refused");
            assert_eq!(e.to_string(), want);
            assert_eq!(e.origin(), crate::Origin::Server);
            drop(server);
        }
    }

    #[tokio::test]
    async fn a_source_dialect_405_is_a_plain_refusal() {
        let (url, _server) = peer(b"HTTP/1.0 405 Method Not Allowed\r\n\r\n").await;
        let e = Push::connect(
            &endpoint(&url),
            "audio/mpeg",
            &StreamMeta::default(),
            Dialect::Source,
        )
        .await
        .expect_err("refused");
        assert!(matches!(e, ClientError::Refused(405, _)), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_network_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let e = Push::connect(
            &endpoint(&format!("http://127.0.0.1:{port}/m")),
            "audio/mpeg",
            &StreamMeta::default(),
            Dialect::Put,
        )
        .await
        .expect_err("nothing listens");
        assert!(e.to_string().starts_with("connecting: "), "{e}");
        assert_eq!(e.origin(), crate::Origin::Network);
    }
}
