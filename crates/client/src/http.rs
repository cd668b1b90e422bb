//! Response heads, sans-IO: [`head_len`] says whether a buffer holds a whole head (and
//! allocates nothing), [`ResponseHead::parse`] reads it. [`read_head`] is the thin async
//! wrapper every request of this crate reads its answer with.
//!
//! Icecast answers `HTTP/1.0`, Icecast 2.5 `HTTP/1.1`, a Shoutcast v1 server `ICY 200 OK`:
//! all three are read.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use crate::conn::Conn;
use crate::{ClientError, Endpoint, MAX_HEAD, USER_AGENT};

/// Most headers a response may have.
const MAX_HEADERS: usize = 64;

/// The length of the head at the start of `buf` (through its blank line), or `None` while it
/// is incomplete. Bare `\n` line ends are accepted, as `httparse` does.
pub(crate) fn head_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// A parsed response head: the status and the headers (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) code: u16,
    headers: Vec<(String, Bytes)>,
}

impl ResponseHead {
    /// Parses a whole head, as delimited by [`head_len`].
    pub(crate) fn parse(head: &[u8]) -> Result<Self, ClientError> {
        // Shoutcast v1: `ICY 200 OK`, otherwise HTTP.
        let fixed;
        let head = match head.strip_prefix(b"ICY ") {
            Some(rest) => {
                fixed = [&b"HTTP/1.0 "[..], rest].concat();
                &fixed[..]
            }
            None => head,
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(ClientError::BadResponse),
        }
        let code = resp.code.ok_or(ClientError::BadResponse)?;
        let headers = resp
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), Bytes::copy_from_slice(h.value)))
            .collect();
        Ok(ResponseHead { code, headers })
    }

    /// The first value of header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
    }

    /// Every header, in order (names in lower case).
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), &v[..]))
    }

    /// A header's value as text: UTF-8, or else Latin-1 (Icecast's default charset for
    /// stream names), trimmed.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| latin1_or_utf8(v).trim().to_string())
    }
}

/// UTF-8 when it is valid, else each byte as its Latin-1 character.
pub(crate) fn latin1_or_utf8(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) => s.to_string(),
        Err(_) => v.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Reads one response head; returns it and the bytes that came after it (the start of the
/// A `GET target HTTP/1.0` request to the endpoint's server: `Host`, `User-Agent`, the
/// `extra` header lines (each ending in CRLF), and Basic credentials when the endpoint has a
/// password. The one request builder of the crate's GETs (pull, metadata, mount list).
pub(crate) fn get_request(endpoint: &Endpoint, target: &str, extra: &str) -> String {
    let mut req = format!(
        "GET {target} HTTP/1.0\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n{extra}",
        endpoint.url.authority()
    );
    if let Some(auth) = endpoint.basic_auth() {
        req.push_str(&format!("Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// body). Reads at most [`MAX_HEAD`] bytes before giving up.
pub(crate) async fn read_head(conn: &mut Conn) -> Result<(ResponseHead, BytesMut), ClientError> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(n) = head_len(&buf) {
            let head = ResponseHead::parse(&buf[..n])?;
            let _ = buf.split_to(n);
            return Ok((head, buf));
        }
        if buf.len() >= MAX_HEAD {
            return Err(ClientError::BadResponse);
        }
        // Never read past the limit: the head's size is bounded, whatever the server sends.
        let mut limited = (&mut *conn).take((MAX_HEAD - buf.len()) as u64);
        buf.reserve(1024);
        let n = limited
            .read_buf(&mut buf)
            .await
            .map_err(ClientError::Lost)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_found_in_every_split() {
        let resp = b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nicy-name:Caf\xe9\r\nicy-metaint:16000\r\n\r\nAUDIO";
        let n = resp.len() - 5;
        for cut in 0..resp.len() {
            let want = (cut >= n).then_some(n);
            assert_eq!(head_len(&resp[..cut]), want, "cut at {cut}");
        }
        let head = ResponseHead::parse(&resp[..n]).expect("parses");
        assert_eq!(head.code, 200);
        assert_eq!(head.header("content-type"), Some(&b"audio/mpeg"[..]));
        assert_eq!(head.text("icy-name").as_deref(), Some("Café"));
        assert_eq!(head.text("icy-metaint").as_deref(), Some("16000"));
        assert_eq!(head.header("icy-br"), None);
    }

    #[test]
    fn icy_and_bare_newlines_are_read() {
        let h = b"ICY 200 OK\nicy-metaint: 8192\n\n";
        assert_eq!(head_len(h), Some(h.len()));
        let head = ResponseHead::parse(h).expect("ICY");
        assert_eq!(head.code, 200);
        assert_eq!(head.text("icy-metaint").as_deref(), Some("8192"));
    }

    #[test]
    fn garbage_is_not_a_response() {
        for bad in [
            &b"SOURCE /a HTTP/1.0\r\n\r\n"[..],
            b"\r\n\r\n",
            b"HTTP/1.0 abc\r\n\r\n",
        ] {
            assert!(
                matches!(ResponseHead::parse(bad), Err(ClientError::BadResponse)),
                "{bad:?}"
            );
        }
    }
}
