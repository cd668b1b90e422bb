//! Slide images, from the client side: `PUT /admin/slides?mount=&at=&key=` with the mount's
//! source credentials (the slides contract of issue #15; the server's side is
//! `control/slides.rs` in agora-server).
//!
//! One upload is one request on its own connection (`HTTP/1.0`, `Content-Length`, the image as
//! the body). The `key` makes it idempotent: a server that already has a slide with that key
//! answers `200` with it and stores nothing, so a caller that did not see the answer (a
//! timeout, a reset) simply sends again.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::connect;
use crate::http::{ResponseHead, head_len};
use crate::server_url::query_value;
use crate::{ClientError, Endpoint, IO_TIMEOUT, USER_AGENT};

/// The answer (a small JSON object) is read up to this size.
const MAX_ANSWER: u64 = 64 * 1024;

/// The slowest upload waited for: [`IO_TIMEOUT`] plus one second per this many bytes of
/// image (64 KiB/s, a poor uplink; a 1 MB slide may take 20 s).
const SLOW_LINK_BYTES_PER_SEC: usize = 64 * 1024;

/// What the server said to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// `201`: stored now.
    Stored,
    /// `200`: the server already had a slide with this key (a resend); nothing stored.
    Known,
}

/// One slide: its image and where it goes on the mount's timeline.
#[derive(Debug, Clone, Copy)]
pub struct Slide<'a> {
    /// Seconds on the stream's timeline (millisecond precision on the wire).
    pub at: f64,
    /// The client's name for the slide (at most 64 of `[A-Za-z0-9._-]`).
    pub key: &'a str,
    /// `image/png`, `image/webp` or `image/jpeg`.
    pub content_type: &'a str,
    /// The image.
    pub body: &'a [u8],
}

/// Uploads `slide` to the endpoint's mount. A `401` is [`ClientError::Unauthorized`], any other
/// answer but `200`/`201` a [`ClientError::Refused`] with its code (`404`/`405`: the server
/// has no slides; `413`, `415`, `400`: this slide will never be taken; `507`: the mount's
/// slide budget is full).
pub async fn upload(endpoint: &Endpoint, slide: Slide<'_>) -> Result<Uploaded, ClientError> {
    let head = request_head(endpoint, &slide);
    let exchange = async {
        let mut conn = connect(endpoint).await?;
        conn.write_all(head.as_bytes())
            .await
            .map_err(ClientError::Lost)?;
        conn.write_all(slide.body)
            .await
            .map_err(ClientError::Lost)?;
        conn.flush().await.map_err(ClientError::Lost)?;
        let mut resp = Vec::new();
        (&mut conn)
            .take(MAX_ANSWER)
            .read_to_end(&mut resp)
            .await
            .map_err(ClientError::Lost)?;
        Ok::<_, ClientError>(resp)
    };
    let limit =
        IO_TIMEOUT + Duration::from_secs((slide.body.len() / SLOW_LINK_BYTES_PER_SEC) as u64);
    let resp = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ClientError::Timeout)??;
    let n = head_len(&resp).ok_or(ClientError::BadResponse)?;
    match ResponseHead::parse(&resp[..n])?.code {
        201 => Ok(Uploaded::Stored),
        200 => Ok(Uploaded::Known),
        401 => Err(ClientError::Unauthorized),
        code => Err(ClientError::refused(code, &resp[n..])),
    }
}

/// Uploads a slide deck (a PDF) to the endpoint's mount: `PUT /admin/decks?mount=&name=`,
/// the same credentials. The server renders its pages before it answers, so the wait allows
/// for that (a minute) on top of the upload. `Ok` is the server's JSON answer (the deck, its
/// pages' URLs); a refusal is a [`ClientError::Refused`] with the server's reason in its body
/// (`413` too large, `415` not a PDF, `422` corrupt, encrypted or too many pages).
pub async fn upload_deck(
    endpoint: &Endpoint,
    name: &str,
    body: &[u8],
) -> Result<String, ClientError> {
    let mut head = format!(
        "PUT /admin/decks?mount={}&name={} HTTP/1.0\r\nHost: {}\r\n\
         User-Agent: {USER_AGENT}\r\nContent-Type: application/pdf\r\nContent-Length: {}\r\n",
        query_value(&endpoint.url.mount),
        query_value(name),
        endpoint.url.authority(),
        body.len()
    );
    if let Some(auth) = endpoint.basic_auth() {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    let exchange = async {
        let mut conn = connect(endpoint).await?;
        conn.write_all(head.as_bytes())
            .await
            .map_err(ClientError::Lost)?;
        // A refusal from the head (413) may close the connection before the body is in.
        let sent = conn.write_all(body).await;
        let _ = conn.flush().await;
        let mut resp = Vec::new();
        let read = (&mut conn).take(MAX_ANSWER).read_to_end(&mut resp).await;
        if resp.is_empty() {
            sent.map_err(ClientError::Lost)?;
            read.map_err(ClientError::Lost)?;
        }
        Ok::<_, ClientError>(resp)
    };
    let limit =
        IO_TIMEOUT + Duration::from_secs(60 + (body.len() / SLOW_LINK_BYTES_PER_SEC) as u64);
    let resp = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ClientError::Timeout)??;
    let n = head_len(&resp).ok_or(ClientError::BadResponse)?;
    match ResponseHead::parse(&resp[..n])?.code {
        200 | 201 => Ok(String::from_utf8_lossy(&resp[n..]).into_owned()),
        401 => Err(ClientError::Unauthorized),
        code => Err(ClientError::refused(code, &resp[n..])),
    }
}

/// The request head (pure: the wire bytes, pinned by a test).
fn request_head(endpoint: &Endpoint, slide: &Slide<'_>) -> String {
    let mut req = format!(
        "PUT /admin/slides?mount={}&at={:.3}&key={} HTTP/1.0\r\nHost: {}\r\n\
         User-Agent: {USER_AGENT}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        query_value(&endpoint.url.mount),
        slide.at.max(0.0),
        query_value(slide.key),
        endpoint.url.authority(),
        slide.content_type,
        slide.body.len()
    );
    if let Some(auth) = endpoint.basic_auth() {
        req.push_str(&format!("Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_pinned() {
        let e = Endpoint::new("http://source:pw@h:8000/live.webm".parse().expect("url"));
        let slide = Slide {
            at: 12.3456,
            key: "1764543600-3-12346",
            content_type: "image/webp",
            body: b"RIFF",
        };
        assert_eq!(
            request_head(&e, &slide),
            format!(
                "PUT /admin/slides?mount=%2Flive.webm&at=12.346&key=1764543600-3-12346 HTTP/1.0\r\n\
                 Host: h:8000\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: image/webp\r\n\
                 Content-Length: 4\r\nAuthorization: Basic c291cmNlOnB3\r\n\r\n"
            )
        );
    }
}
