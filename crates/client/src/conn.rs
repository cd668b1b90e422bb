//! Connections to servers: plain TCP for `http://`, TLS (rustls) for `https://`.
//!
//! Server certificates are checked against the system's trust store, plus the CA
//! certificates of an extra PEM file (a self-signed Icecast certificate, a venue's own CA).
//! There is no switch to turn verification off: a source password must not go to whoever
//! answers.

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::{ClientError, Endpoint};

/// The TLS client configuration for `https://` servers, cheap to clone.
#[derive(Clone)]
pub struct TlsConfig(Arc<rustls::ClientConfig>);

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConfig { .. }")
    }
}

impl TlsConfig {
    /// The system's trust roots, plus the certificates in `extra_ca` (PEM). A system
    /// certificate rustls cannot use is skipped, as browsers do; a bad `extra_ca` is an error.
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca {
            let bad = |why: String| ClientError::CaFile {
                path: path.to_path_buf(),
                why,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ClientError::TlsSetup)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConfig(Arc::new(config)))
    }
}

/// A connection to a server, plain or TLS.
pub(crate) struct Conn(Inner);

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, tcp) = match &self.0 {
            Inner::Plain(s) => ("plain", s),
            Inner::Tls(s) => ("tls", s.get_ref().0),
        };
        write!(f, "Conn({kind}, {:?})", tcp.peer_addr().ok())
    }
}

/// Opens a connection to the endpoint's server, TLS when its URL says `https://`. Not
/// bounded in time: callers put it under their own timeout.
pub(crate) async fn connect(endpoint: &Endpoint) -> Result<Conn, ClientError> {
    let url = &endpoint.url;
    let tls = match (url.tls, &endpoint.tls) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => return Err(ClientError::NoTlsConfig),
    };
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(ClientError::Connect)?;
    let _ = tcp.set_nodelay(true);
    watch_for_a_dead_peer(&tcp);
    let Some(TlsConfig(config)) = tls else {
        return Ok(Conn(Inner::Plain(tcp)));
    };
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| ClientError::Connect(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(ClientError::Connect)?;
    Ok(Conn(Inner::Tls(Box::new(stream))))
}

/// Keepalive probes find a server that vanished while the connection is idle (a relay's
/// upstream between two bursts, a push target behind a NAT that forgot the flow), and
/// `TCP_USER_TIMEOUT` one that stopped acknowledging what is sent to it (a push, whose writes
/// would otherwise fill the kernel's buffer for minutes before one of them times out, while
/// the kernel retransmits for up to ~15 minutes). Best effort: a socket that refuses them
/// still works.
fn watch_for_a_dead_peer(tcp: &TcpStream) {
    let sock = socket2::SockRef::from(tcp);
    let _ = sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_RETRIES),
    );
    let _ = sock.set_tcp_user_timeout(Some(USER_TIMEOUT));
}

/// The first keepalive probe after this long without traffic ...
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// ... then one every this long ...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ... and the connection ends after this many unanswered.
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest that sent data may stay unacknowledged (and, with keepalive, the longest a peer
/// may stay silent past the first unanswered probe) before the kernel ends the connection.
const USER_TIMEOUT: Duration = Duration::from_secs(30);

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_a_local_error() {
        let path = std::env::temp_dir().join(format!("agora-client-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = TlsConfig::new(Some(&path)).expect_err("no PEM in it");
        let _ = std::fs::remove_file(&path);
        assert_eq!(e.origin(), crate::Origin::Local);
        assert!(e.to_string().ends_with("no PEM certificate in it"), "{e}");
    }

    /// Every connection to a server has keepalive and a user timeout: a server that vanished
    /// is noticed by the kernel, whether the connection is idle or has data on the way.
    #[tokio::test]
    async fn connections_watch_for_a_dead_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let conn = connect(&Endpoint::new(
            format!("http://{addr}/a").parse().expect("url"),
        ))
        .await
        .expect("connect");
        let Inner::Plain(tcp) = &conn.0 else {
            panic!("a plain connection");
        };
        let sock = socket2::SockRef::from(tcp);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            KEEPALIVE_IDLE
        );
        assert_eq!(
            sock.tcp_user_timeout().expect("TCP_USER_TIMEOUT"),
            Some(USER_TIMEOUT)
        );
    }

    #[tokio::test]
    async fn https_without_tls_settings_is_refused_before_connecting() {
        let e = connect(&Endpoint::new(
            "https://127.0.0.1:1/a".parse().expect("url"),
        ))
        .await
        .expect_err("no TLS settings");
        assert!(matches!(e, ClientError::NoTlsConfig), "{e}");
    }
}
