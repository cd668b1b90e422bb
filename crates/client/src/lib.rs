//! The client side of the Icecast protocol, shared by the broadcaster (`agora cast`, which
//! pushes) and relays (which pull from one server and push to another).
//!
//! ```text
//!   "http://source:pw@host:8000/live.mp3" ─► ServerUrl ─┐
//!                              TlsConfig (https only) ──┴─► Endpoint
//!                                                             │ conn::connect: TCP, or rustls
//!            ┌─────────────────────────────┬──────────────────┴───────────────┐
//!            ▼                             ▼                                  ▼
//!   Push::connect                 meta::set_title                      Pull::connect
//!   PUT + Expect: 100-continue    GET /admin/metadata                  GET + Icy-MetaData: 1
//!   (SOURCE on 400/405/501)       ?mode=updinfo&song=                  head ─► pull::StreamInfo
//!            │                                                                │ body
//!            ▼                                                                ▼
//!   Push::send(Bytes) ─► server                              icy::Deinterleaver (sans-IO)
//!                                                      IcyEvent::Audio(Bytes) / ::Metadata
//! ```
//!
//! Map:
//! - [`server_url`]: [`ServerUrl`], `http(s)://[user:pass@]host:port/mount` parsed with the
//!   `url` crate; credentials percent-decoded; shown without the password.
//! - [`conn`]: [`TlsConfig`] (system roots plus an extra CA file; verification cannot be
//!   turned off) and the one connection type, plain TCP or TLS.
//! - [`push`]: the source handshake and the [`push::Push`] a stream is written to.
//! - [`meta`]: the now-playing title through `/admin/metadata`.
//! - [`slides`]: a slide image uploaded to a mount (`PUT /admin/slides`, idempotent by key).
//! - [`form`]: a form POSTed to a URL and its answer's head (the server's listener
//!   authentication hook, as Icecast's url authentication).
//! - [`pull`]: a listener's request with ICY metadata, the response head as
//!   [`pull::StreamInfo`], and the stream as [`icy::IcyEvent`]s.
//! - [`icy`]: the sans-IO ICY de-interleaver: audio bytes out, metadata blocks parsed.
//! - `http` (private): the sans-IO response-head framing (`head_len`, then a parse) every
//!   request above reads its answer with.
//!
//! Failures are one [`ClientError`], each variant tagged by its [`Origin`]: this side's
//! configuration, the network, or the server's answer.
//!
//! **Architecture invariants:** this crate knows the client side of the protocol only (the
//! server crate is not a dependency); a password never appears in a `Display`, a `Debug` or
//! an error message; TLS verification cannot be turned off; the parsers are sans-IO and
//! bounded (a response head at most 16 KiB, a metadata block at most [`icy::MAX_BLOCK`]
//! bytes).
#![warn(missing_docs, unreachable_pub)]

pub mod backoff;
pub mod conn;
pub mod form;
#[doc(hidden)]
pub mod fuzz_checks;
mod http;
pub mod icy;
pub mod meta;
pub mod pull;
pub mod push;
pub mod server_url;
pub mod slides;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use conn::TlsConfig;
pub use server_url::{ServerUrl, UrlError};

/// Longest a connect, a request and its answer, or one write may take before the server is
/// taken for dead.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response head read; a server that sends more is not speaking HTTP to us.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// The version sent as `User-Agent: agora/<version>`.
const USER_AGENT: &str = concat!("agora/", env!("CARGO_PKG_VERSION"));

/// A mount on a server and how to reach it: the URL, a password for when the URL has none,
/// and the TLS settings an `https://` URL needs.
#[derive(Clone)]
pub struct Endpoint {
    /// The server and the mount.
    pub url: ServerUrl,
    /// Used when the URL carries no password.
    pub password: Option<String>,
    /// Needed for an `https://` URL; ignored otherwise.
    pub tls: Option<TlsConfig>,
}

impl Endpoint {
    /// An endpoint with no fallback password and no TLS settings.
    pub fn new(url: ServerUrl) -> Self {
        Endpoint {
            url,
            password: None,
            tls: None,
        }
    }

    /// An endpoint for `url`, checked against the system's trust store when it is `https://`
    /// (what a server's relays and pushes use; `agora cast` adds `--tls-ca`).
    pub fn with_system_roots(url: ServerUrl) -> Result<Self, ClientError> {
        let tls = if url.tls {
            Some(TlsConfig::new(None)?)
        } else {
            None
        };
        Ok(Endpoint {
            url,
            password: None,
            tls,
        })
    }

    /// The `Authorization` header value, when there is a password (user `source` unless the
    /// URL names one).
    pub(crate) fn basic_auth(&self) -> Option<String> {
        self.url.basic_auth(self.password.as_deref())
    }
}

/// Without the password.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// Where a failure came from, which decides what a caller does about it: fix the
/// configuration, retry later, or read what the server said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This side's configuration (a CA file, missing TLS settings).
    Local,
    /// The network: connecting, a timeout, a reset, a closed connection.
    Network,
    /// The server answered, and the answer was no (or not HTTP).
    Server,
}

/// Why a request or a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The extra CA file cannot be used.
    #[error("{}: {why}", path.display())]
    CaFile {
        /// The file given.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the TLS configuration.
    #[error("TLS: {0}")]
    TlsSetup(rustls::Error),
    /// An `https://` URL without TLS settings (a caller's mistake).
    #[error("connecting: https URL without TLS settings")]
    NoTlsConfig,
    /// The connection (TCP or TLS) could not be made.
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    /// No answer within [`IO_TIMEOUT`].
    #[error("no answer within {} s", IO_TIMEOUT.as_secs())]
    Timeout,
    /// A pulled stream sent nothing for 10 s (Icecast's source timeout).
    #[error("no stream data for {} s", pull::READ_TIMEOUT.as_secs())]
    Silent,
    /// The connection failed after it was made.
    #[error("connection lost: {0}")]
    Lost(std::io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// A write did not complete within [`IO_TIMEOUT`]: the server stopped reading.
    #[error("writes stalled for {} s", IO_TIMEOUT.as_secs())]
    Stalled,
    /// 401: the credentials were refused.
    #[error("wrong user or password (401)")]
    Unauthorized,
    /// Another source is live on the mount (the status code: 409, or Icecast 2.4's 403).
    #[error("mountpoint in use: another source is live there ({0})")]
    InUse(u16),
    /// The server does not know PUT (the status code: 400, 405 or 501); SOURCE may work.
    #[error("the server does not accept PUT ({0})")]
    NoPut(u16),
    /// Any other refusal: the status code and the start of the body.
    #[error("the server refused: {0} {1}")]
    Refused(u16, String),
    /// The answer is not an HTTP response (or its head is larger than 16 KiB).
    #[error("the server's answer is not HTTP")]
    BadResponse,
    /// A response header this client relies on has a value it cannot use.
    #[error("the server's {name} header is not valid: `{value}`")]
    BadHeader {
        /// The header's name.
        name: &'static str,
        /// Its value (lossily decoded, at most 100 characters).
        value: String,
    },
}

impl ClientError {
    /// Where the failure came from.
    pub fn origin(&self) -> Origin {
        use ClientError::*;
        match self {
            CaFile { .. } | TlsSetup(_) | NoTlsConfig => Origin::Local,
            Connect(_) | Timeout | Silent | Lost(_) | Closed | Stalled => Origin::Network,
            Unauthorized | InUse(_) | NoPut(_) | Refused(..) | BadResponse | BadHeader { .. } => {
                Origin::Server
            }
        }
    }

    /// Whether the server refused who this client is: a `401`, or a `403` other than Icecast
    /// 2.4's busy mount ([`ClientError::InUse`]) or source limit ("too many sources"). The
    /// user, the password or the mount in this side's configuration is wrong, and asking
    /// again will get the same answer: a caller says so plainly rather than retry as after a
    /// network failure.
    pub fn is_denied(&self) -> bool {
        match self {
            ClientError::Unauthorized => true,
            ClientError::Refused(403, body) => !body.to_ascii_lowercase().contains("too many"),
            _ => false,
        }
    }

    /// A refusal with the start of what the server said (at most 200 characters).
    pub(crate) fn refused(code: u16, body: &[u8]) -> Self {
        ClientError::Refused(
            code,
            // A server's words end in logs and admin pages: bounded, no control characters.
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_tagged_by_origin() {
        assert_eq!(ClientError::NoTlsConfig.origin(), Origin::Local);
        assert_eq!(ClientError::Timeout.origin(), Origin::Network);
        assert_eq!(ClientError::Unauthorized.origin(), Origin::Server);
        assert_eq!(
            ClientError::refused(403, b"  Forbidden\r\n").to_string(),
            "the server refused: 403 Forbidden"
        );
        assert_eq!(
            ClientError::refused(404, b"no\x1b[31m\nsuch\x00mount").to_string(),
            "the server refused: 404 no[31msuchmount"
        );
    }

    /// A wrong password (401) or a forbidden mount (403) is a denial; Icecast 2.4's 403s for
    /// a busy mount or the source limit, and every other answer, are not.
    #[test]
    fn denials_are_told_from_transient_refusals() {
        assert!(ClientError::Unauthorized.is_denied());
        assert!(ClientError::refused(403, b"Forbidden").is_denied());
        assert!(ClientError::refused(403, b"Content-type not supported").is_denied());
        assert!(!ClientError::refused(403, b"too many sources connected").is_denied());
        assert!(!ClientError::InUse(403).is_denied());
        assert!(!ClientError::refused(503, b"Too many sources connected").is_denied());
        assert!(!ClientError::refused(404, b"").is_denied());
        assert!(!ClientError::Closed.is_denied());
    }

    #[test]
    fn an_endpoint_never_shows_a_password() {
        let mut e = Endpoint::new("http://source:hunter2@h:8000/a.ogg".parse().expect("url"));
        e.password = Some("swordfish".into());
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
    }
}
