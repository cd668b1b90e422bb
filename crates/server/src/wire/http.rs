//! The HTTP/ICE wire: request heads in, response heads out, and the chunked-body decoder.
//!
//! Request heads are parsed by `httparse` (well kept, zero-copy, and it accepts any
//! `PROTO/VER` once the version check is relaxed below). Icecast's dialects need three things
//! it does not give: the `ICE/1.0` protocol token of old source clients, a hard bound on the
//! head's size, and a sans-IO check (`head_len`) that finds the end of a head without parsing.
//!
//! **Architecture invariant:** only this crate speaks HTTP; the format crate never sees it.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use crate::logging::shown;

/// A parsed request head. Header names are kept as sent; lookups ignore case.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// Path with the query string, as sent.
    pub(crate) target: String,
    /// `HTTP/1.1`, `HTTP/1.0` or `ICE/1.0`.
    pub(crate) version: String,
    pub(crate) headers: Vec<(String, String)>,
    /// The client reached the server over HTTPS (its own connection, or a trusted proxy
    /// says so): set by the server once per request, before routing.
    pub(crate) secure: bool,
    /// When the head was received, the time the access log stamps the request with (Combined
    /// Log Format's "time the request was received", not the time it ended): set by the
    /// server as it reads the head (the parser knows no clock; it leaves the epoch).
    pub(crate) received: SystemTime,
}

/// Why a request head was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HeadError {
    #[error("request head larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed request head: {0}")]
    Malformed(String),
}

impl HeadError {
    /// The response status that says so.
    pub(crate) fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge { .. } => 431,
            HeadError::Malformed(_) => 400,
        }
    }
}

const MAX_HEADERS: usize = 64;

/// Length of the head (through the blank line) if `buf` holds a whole one. Cheap: allocates
/// nothing and parses nothing, so it can run after every read.
pub(crate) fn head_len(buf: &[u8]) -> Option<usize> {
    // Accept bare LF line ends too, as Icecast does for old clients.
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Parse a complete head (as delimited by [`head_len`]).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    // httparse insists on `HTTP/1.x`; source clients may say `ICE/1.0` (and anything Icecast's
    // parser takes). Rewrite the version token for parsing and keep the original.
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| HeadError::Malformed("no request line".into()))?;
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| HeadError::Malformed("request line is not UTF-8".into()))?
        .trim_end_matches('\r');
    let bad_line = || HeadError::Malformed(format!("bad request line {:?}", shown(line)));
    // A control character (a CR inside the line, ESC, NUL, TAB) is no part of a request line
    // (httparse refuses them too): a target with one would reach a redirect's `Location`.
    if line.chars().any(char::is_control) {
        return Err(bad_line());
    }
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), version, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_line());
    };
    let version = version.unwrap_or("HTTP/1.0");
    let proto_ok = version.split_once('/').is_some_and(|(p, v)| {
        !p.is_empty() && p.bytes().all(|c| c.is_ascii_uppercase()) && !v.is_empty()
    });
    if !proto_ok {
        return Err(HeadError::Malformed(format!(
            "bad protocol {:?}",
            shown(version)
        )));
    }
    if !method.bytes().all(|c| c.is_ascii_uppercase()) {
        return Err(HeadError::Malformed(format!(
            "bad method {:?}",
            shown(method)
        )));
    }
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let rest = &head[line_end + 1..];
    let parsed = httparse::parse_headers(rest, &mut hdrs)
        .map_err(|e| HeadError::Malformed(format!("headers: {e}")))?;
    let httparse::Status::Complete((_, hdrs)) = parsed else {
        return Err(HeadError::Malformed("incomplete headers".into()));
    };
    let headers = hdrs
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        secure: false,
        received: SystemTime::UNIX_EPOCH,
    })
}

impl Request {
    /// First header of this name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Query parameters, decoded as a form (`+` is a space, `%XX` a byte; a malformed escape
    /// stays as it is), as Icecast's admin URLs are written.
    pub(crate) fn query(&self) -> Vec<(String, String)> {
        let Some((_, q)) = self.target.split_once('?') else {
            return Vec::new();
        };
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub(crate) fn is_http11(&self) -> bool {
        self.version.eq_ignore_ascii_case("HTTP/1.1")
    }

    /// Whether the connection may carry another request after this one's response. Never
    /// after a request with a body (a `Content-Length` other than 0, or a `Transfer-Encoding`)
    /// that was not read (only sources', admin commands' and slides' bodies are), so a body is never
    /// taken for the next request. A handler that read the whole body asks
    /// [`Request::wants_keep_alive`] instead.
    pub(crate) fn keep_alive(&self) -> bool {
        !self.has_body() && self.wants_keep_alive()
    }

    /// Whether the request carries a body: a `Transfer-Encoding`, or a `Content-Length` other
    /// than 0.
    pub(crate) fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }

    /// Whether the client asked to keep the connection (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 with `Connection: keep-alive`), whatever its body.
    pub(crate) fn wants_keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if conn.contains("close") {
            return false;
        }
        self.is_http11() || conn.contains("keep-alive")
    }

    /// The length of a body that is read whole (an admin command's form): its `Content-Length`
    /// (0 without one). Refused with the status that says why: a `Transfer-Encoding` (411:
    /// such a body must say its length), `Content-Length` values that are not a number or
    /// disagree (400: where the body ends would be a guess).
    pub(crate) fn content_length(&self) -> Result<u64, (u16, &'static str)> {
        if self.header("transfer-encoding").is_some() {
            return Err((411, "A request body must come with a Content-Length"));
        }
        let mut length = None;
        for (name, value) in &self.headers {
            if !name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            let v = value.trim();
            let n = (!v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or((400, "Bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err((400, "Bad Content-Length"));
            }
            length = Some(n);
        }
        Ok(length.unwrap_or(0))
    }

    /// Whether the body is a form (`application/x-www-form-urlencoded`), as HTML forms and
    /// `curl -d` send parameters.
    pub(crate) fn is_form(&self) -> bool {
        self.header("content-type").is_some_and(|t| {
            t.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
    }

    pub(crate) fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    pub(crate) fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// Reason phrase of the status codes Agora sends.
pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Authentication Required",
        403 => "Forbidden",
        404 => "File Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

pub(crate) const SERVER: &str = concat!("Agora/", env!("CARGO_PKG_VERSION"));

/// The client of a request: `peer`, unless `peer` is one of the `trusted` reverse proxies and
/// the request names the client in `X-Forwarded-For` (or RFC 7239's `Forwarded: for=`). The
/// list is read from the right, past the trusted proxies that appended to it, so a client
/// cannot pose as another by sending the header itself. The port is the proxy's.
pub(crate) fn forwarded_client(req: &Request, peer: SocketAddr, trusted: &[IpAddr]) -> SocketAddr {
    if !trusted.contains(&peer.ip()) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            hops.extend(value.split(',').filter_map(|h| parse_hop(h.trim())));
        } else if name.eq_ignore_ascii_case("forwarded") {
            hops.extend(value.split(',').filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("for")
                        .then(|| parse_hop(v.trim().trim_matches('"')))?
                })
            }));
        }
    }
    hops.iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .or(hops.first())
        .map_or(peer, |ip| SocketAddr::new(*ip, peer.port()))
}

/// Whether a trusted reverse proxy says the client came over HTTPS (`X-Forwarded-Proto:
/// https` or RFC 7239's `Forwarded: proto=https`, the last hop's word); anyone else's claim
/// is ignored.
pub(crate) fn forwarded_https(req: &Request, peer: SocketAddr, trusted: &[IpAddr]) -> bool {
    if !trusted.contains(&peer.ip()) {
        return false;
    }
    let mut last = None;
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case("x-forwarded-proto") {
            last = value.rsplit(',').next().map(str::trim);
        } else if name.eq_ignore_ascii_case("forwarded") {
            let proto = value.rsplit(',').next().and_then(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("proto")
                        .then(|| v.trim().trim_matches('"'))
                })
            });
            if proto.is_some() {
                last = proto;
            }
        }
    }
    last.is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// An address in a forwarding header: `1.2.3.4`, `1.2.3.4:5678`, `[::1]`, `[::1]:5678`.
fn parse_hop(h: &str) -> Option<IpAddr> {
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if let Ok(sa) = h.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    h.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// Content types the server answers with.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// A complete response: every answer that is not a stream (errors, status pages, the admin
/// API, pages and assets, playlists). It always carries a length, so it works on keep-alive
/// connections too. Streams (listeners, `/events`) write heads of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    /// Headers beyond the ones every response has.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Shared, not copied: the embedded pages are `Bytes::from_static`.
    pub(crate) body: Bytes,
    /// `Access-Control-Allow-Origin: *`: any site's scripts may read the answer (status,
    /// API, playlists, as Icecast allows). Off for the admin commands and page.
    pub(crate) cors: bool,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            cors: true,
        }
    }

    /// Not readable by other sites' scripts (no `Access-Control-Allow-Origin`): an answer that
    /// needs credentials.
    pub(crate) fn private(mut self) -> Self {
        self.cors = false;
        self
    }

    /// A plain-text message, one line.
    pub(crate) fn text(status: u16, message: &str) -> Self {
        Response::new(status, TEXT, format!("{message}\n"))
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The head alone (for `HEAD`), ending with the blank line.
    pub(crate) fn head(&self, version: &str, keep_alive: bool) -> String {
        let mut s = format!(
            "{version} {} {}\r\nServer: {SERVER}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}",
            self.status,
            reason(self.status),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
            self.content_type,
            self.body.len(),
            // Not cached, unless the response says otherwise (an icon, a slide).
            if self
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("cache-control"))
            {
                ""
            } else {
                "Cache-Control: no-cache, no-store\r\n"
            },
            if self.cors {
                "Access-Control-Allow-Origin: *\r\n"
            } else {
                ""
            }
        );
        s.push_str(if keep_alive {
            "Connection: Keep-Alive\r\n"
        } else {
            "Connection: Close\r\n"
        });
        for (k, v) in &self.headers {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s
    }

    /// Head and body, ready to write.
    pub(crate) fn encode(&self, version: &str, keep_alive: bool) -> Vec<u8> {
        let mut out = self.head(version, keep_alive).into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Sans-IO decoder of a `Transfer-Encoding: chunked` body.
#[derive(Debug, Default)]
pub(crate) struct Dechunker {
    state: ChunkState,
}

#[derive(Debug, Default)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Why a chunked body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad chunked encoding: {0}")]
pub(crate) struct ChunkError(&'static str);

impl Dechunker {
    /// Decode what `input` holds into `out`, consuming what was used. Returns `Ok(true)` once
    /// the final chunk was seen.
    pub(crate) fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, ChunkError> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(true),
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        if input.len() > 1024 {
                            return Err(ChunkError("chunk size line too long"));
                        }
                        return Ok(false);
                    };
                    let line = input.split_to(nl + 1);
                    let text = std::str::from_utf8(&line)
                        .map_err(|_| ChunkError("size line is not text"))?
                        .trim();
                    if matches!(self.state, ChunkState::Trailer) {
                        if text.is_empty() {
                            self.state = ChunkState::Done;
                        }
                        continue;
                    }
                    let hex = text.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| ChunkError("chunk size is not hex"))?;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let n = (left as usize).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input.advance(n);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        if input.len() > 2 {
                            return Err(ChunkError("missing CRLF after chunk data"));
                        }
                        return Ok(false);
                    };
                    if nl > 1 || (nl == 1 && input[0] != b'\r') {
                        return Err(ChunkError("missing CRLF after chunk data"));
                    }
                    input.advance(nl + 1);
                    self.state = ChunkState::Size;
                }
            }
        }
    }
}

/// What the `request_head` fuzz target runs on arbitrary bytes (and the suite on its corpus):
/// the head framer and parser, the mount path of the target, the credentials parser, and the
/// chunked decoder fed whatever follows the head in two pieces. Panics only on a broken
/// invariant.
pub fn fuzz_request_head(data: &[u8]) {
    if let Some(n) = head_len(data) {
        if let Ok(req) = parse_head(&data[..n]) {
            // No control character in a target (it would reach a `Location`, and logs).
            assert!(!req.target.chars().any(char::is_control), "{req:?}");
            let _ = req.path();
            // A mount path from the wire: decoded once, and what passes stays valid.
            if let Ok(p) = crate::mount_path::MountPath::from_target(&req.target) {
                let p = p.into_string();
                assert!(
                    p.starts_with('/') && !p.contains("//") && !p.chars().any(char::is_control),
                    "{p:?}"
                );
                assert_eq!(
                    crate::mount_path::MountPath::parse(&p).map(|q| q.into_string()),
                    Ok(p.clone())
                );
            }
            let _ = req.query();
            let _ = req.keep_alive();
            let _ = req
                .header("authorization")
                .map(crate::wire::auth::parse_basic);
        }
        let rest = &data[n..];
        let cut = rest.first().map_or(0, |&b| b as usize % (rest.len() + 1));
        let mut d = Dechunker::default();
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&rest[..cut]);
        if d.decode(&mut input, &mut out).is_ok() {
            input.extend_from_slice(&rest[cut..]);
            let _ = d.decode(&mut input, &mut out);
        }
        assert!(out.len() <= rest.len(), "the dechunker grew the body");
    } else {
        let _ = parse_head(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_icecasts_shape_with_a_length() {
        let r = Response::text(404, "Mount /x is not available").with_header("Allow", "GET");
        let bytes = r.encode("HTTP/1.0", false);
        let text = String::from_utf8(bytes).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(
            head.starts_with("HTTP/1.0 404 File Not Found\r\nServer: Agora/"),
            "{head}"
        );
        for line in [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Length: 26",
            "Connection: Close",
            "Allow: GET",
        ] {
            assert!(head.contains(&format!("\r\n{line}")), "{line} in {head}");
        }
        assert_eq!(body, "Mount /x is not available\n");
        let keep = r.head("HTTP/1.1", true);
        assert!(keep.ends_with("Allow: GET\r\n\r\n") && keep.contains("Connection: Keep-Alive"));
    }

    #[test]
    fn the_client_behind_a_trusted_proxy_is_the_one_it_names() {
        let proxy: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let trusted = [
            "127.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        ];
        let req = |h: &str| {
            parse_head(format!("GET /m HTTP/1.0\r\n{h}\r\n\r\n").as_bytes()).expect("head")
        };
        let client = |h: &str, peer: SocketAddr| forwarded_client(&req(h), peer, &trusted).ip();
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        assert_eq!(
            client("X-Forwarded-For: 198.51.100.7", proxy),
            ip("198.51.100.7")
        );
        // A client's own header is to the left of what the proxies appended.
        assert_eq!(
            client("X-Forwarded-For: 6.6.6.6, 198.51.100.7, 10.0.0.2", proxy),
            ip("198.51.100.7")
        );
        assert_eq!(
            client("Forwarded: for=\"[2001:db8::1]:4711\";proto=https", proxy),
            ip("2001:db8::1")
        );
        assert_eq!(client("Forwarded: For=192.0.2.60", proxy), ip("192.0.2.60"));
        // An untrusted peer's header is ignored; a header naming nothing usable too.
        let stranger: SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        assert_eq!(
            client("X-Forwarded-For: 198.51.100.7", stranger),
            stranger.ip()
        );
        assert_eq!(client("X-Forwarded-For: unknown", proxy), proxy.ip());
        assert_eq!(client("User-Agent: x", proxy), proxy.ip());
    }

    #[test]
    fn only_a_trusted_proxy_says_the_client_came_over_https() {
        let proxy: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let stranger: SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        let trusted = ["127.0.0.1".parse().expect("ip")];
        let https = |h: &str, peer: SocketAddr| {
            let req =
                parse_head(format!("GET /m HTTP/1.0\r\n{h}\r\n\r\n").as_bytes()).expect("head");
            forwarded_https(&req, peer, &trusted)
        };
        assert!(https("X-Forwarded-Proto: https", proxy));
        assert!(https("X-Forwarded-Proto: HTTPS", proxy));
        assert!(https("Forwarded: for=192.0.2.60;proto=https", proxy));
        // The last hop's word counts.
        assert!(!https(
            "Forwarded: proto=https, for=10.0.0.1;proto=http",
            proxy
        ));
        assert!(!https("X-Forwarded-Proto: http", proxy));
        assert!(!https("User-Agent: x", proxy));
        assert!(!https("X-Forwarded-Proto: https", stranger));
    }

    /// The `request_head` fuzz target's committed corpus, replayed as an ordinary test.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/request_head"
        );
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("the request_head corpus") {
            let path = entry.expect("corpus entry").path();
            fuzz_request_head(&std::fs::read(&path).expect("corpus file"));
            n += 1;
        }
        assert!(n > 0, "empty corpus in {dir}");
    }

    #[test]
    fn parses_ice_and_http_heads() {
        let h = b"SOURCE /live.ogg ICE/1.0\r\nAuthorization: Basic eDp5\r\nice-name: Test\r\n\r\n";
        let n = head_len(h).expect("complete");
        assert_eq!(n, h.len());
        let r = parse_head(&h[..n]).expect("parses");
        assert_eq!(
            (r.method.as_str(), r.path(), r.version.as_str()),
            ("SOURCE", "/live.ogg", "ICE/1.0")
        );
        assert_eq!(r.header("ICE-NAME"), Some("Test"));
        let r = parse_head(b"PUT /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect("parses");
        assert!(r.expects_continue() && r.is_http11() && r.keep_alive());
    }

    #[test]
    fn a_body_is_measured_by_its_length_alone() {
        let req = |h: &str| {
            parse_head(format!("POST /admin/killsource HTTP/1.1\r\n{h}\r\n\r\n").as_bytes())
                .expect("head")
        };
        assert_eq!(req("Host: x").content_length(), Ok(0));
        assert_eq!(req("Content-Length: 12").content_length(), Ok(12));
        assert_eq!(
            req("Content-Length: 12\r\ncontent-length: 12").content_length(),
            Ok(12)
        );
        for bad in [
            "Content-Length: 12\r\nContent-Length: 13",
            "Content-Length: -1",
            "Content-Length: 0x10",
            "Content-Length: +5",
            "Content-Length: 99999999999999999999999",
        ] {
            assert_eq!(
                req(bad).content_length().map_err(|e| e.0),
                Err(400),
                "{bad}"
            );
        }
        let chunked = req("Transfer-Encoding: chunked\r\nContent-Length: 5");
        assert_eq!(chunked.content_length().map_err(|e| e.0), Err(411));
        // A body ends keep-alive unless it was read; the client's wish stays known.
        let r = req("Content-Length: 12");
        assert!(r.has_body() && !r.keep_alive() && r.wants_keep_alive());
        assert!(!req("Content-Length: 12\r\nConnection: close").wants_keep_alive());
        assert!(req("Content-Type: application/x-www-form-urlencoded").is_form());
        assert!(req("content-type: Application/X-WWW-Form-Urlencoded; charset=UTF-8").is_form());
        assert!(!req("Content-Type: text/plain").is_form());
        assert!(!req("Content-Type: multipart/form-data; boundary=x").is_form());
        assert!(!req("Host: x").is_form());
    }

    #[test]
    fn head_len_waits_for_blank_line() {
        assert_eq!(head_len(b"GET / HTTP/1.0\r\nHost: x\r\n"), None);
        assert_eq!(head_len(b"GET / HTTP/1.0\n\nrest"), Some(16));
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"get / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.0 extra\r\n\r\n",
            b"GET / junk\r\n\r\n",
            b"GET / HTTP/1.0\r\nno colon here\r\n\r\n",
            b"\xff\xfe / HTTP/1.0\r\n\r\n",
            b"GET /a\rb HTTP/1.0\r\n\r\n",
            b"GET /a\x1b[2Jb HTTP/1.0\r\n\r\n",
            b"GET /a\0b HTTP/1.0\r\n\r\n",
            b"GET\t/a HTTP/1.0\r\n\r\n",
            b"GET /a\xc2\x9bb HTTP/1.0\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn query_is_decoded() {
        let r = parse_head(b"GET /admin/metadata?mount=%2Flive&song=A+b%26c HTTP/1.0\r\n\r\n")
            .expect("parses");
        assert_eq!(r.path(), "/admin/metadata");
        assert_eq!(r.query_param("mount").as_deref(), Some("/live"));
        assert_eq!(r.query_param("song").as_deref(), Some("A b&c"));
        let r = parse_head(b"GET /x?a=100%&b=%zz%4&c=%C3%A9 HTTP/1.0\r\n\r\n").expect("parses");
        assert_eq!(r.query_param("a").as_deref(), Some("100%"));
        assert_eq!(r.query_param("b").as_deref(), Some("%zz%4"));
        assert_eq!(r.query_param("c").as_deref(), Some("é"));
    }

    #[test]
    fn dechunks_across_every_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        for cut in 0..body.len() {
            let mut d = Dechunker::default();
            let mut out = BytesMut::new();
            let mut input = BytesMut::from(&body[..cut]);
            assert!(!d.decode(&mut input, &mut out).expect("ok"));
            input.extend_from_slice(&body[cut..]);
            assert!(d.decode(&mut input, &mut out).expect("ok"));
            assert_eq!(&out[..], b"hello world");
        }
        let mut d = Dechunker::default();
        let mut out = BytesMut::new();
        assert!(
            d.decode(&mut BytesMut::from(&b"zz\r\n"[..]), &mut out)
                .is_err()
        );
    }
}
