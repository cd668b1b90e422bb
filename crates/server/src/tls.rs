//! HTTPS: the certificate and key of a group of TLS sockets, read from PEM files and swapped
//! whole on reload.
//!
//! A handshake takes the configuration that is current when it starts, so a reload (SIGHUP)
//! gives new connections the new certificate while connections already up keep theirs and
//! are never dropped. A reload that cannot read or match the new files changes nothing and
//! says why.
//!
//! rustls with the `ring` provider (the client crate uses the same), TLS 1.2 and 1.3, no
//! client certificates, no ALPN (browsers then speak HTTP/1.1, the only HTTP Agora speaks).
//! Kernel TLS would let encrypted listeners keep `sendfile` and parking without a user-space
//! buffer, but it needs the kernel's `tls` module (`/proc/sys/net/ipv4/tcp_available_ulp`),
//! which the machines Agora is tested on do not have.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file is unreadable, not PEM, or holds no certificate.
    #[error("TLS certificate {}: {why}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key file is unreadable, not PEM, or holds no private key (its content is never
    /// quoted).
    #[error("TLS key {}: {why}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the pair (a key that is not the certificate's, an unsupported key).
    #[error("TLS certificate {} with key {}: {why}", certificate.display(), key.display())]
    Pair {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        why: String,
    },
}

/// The TLS side of a group of sockets: where its files are, and the configuration read from
/// them last.
pub(crate) struct TlsSettings {
    /// The certificate and key files: a reload may name others.
    files: ArcSwap<(PathBuf, PathBuf)>,
    current: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = self.files.load();
        f.debug_struct("TlsSettings")
            .field("certificate", &files.0)
            .field("key", &files.1)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Read the certificate chain and key.
    pub(crate) fn load(certificate: &Path, key: &Path) -> Result<TlsSettings, TlsError> {
        Ok(TlsSettings {
            files: ArcSwap::from_pointee((certificate.to_path_buf(), key.to_path_buf())),
            current: ArcSwap::new(server_config(certificate, key)?),
        })
    }

    /// The configuration new handshakes use.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Read the files again: the new configuration, not yet in use (see [`TlsSettings::swap`]).
    pub(crate) fn reread(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let files = self.files.load();
        server_config(&files.0, &files.1)
    }

    /// Use `config` for the handshakes from now on.
    pub(crate) fn swap(&self, config: Arc<ServerConfig>) {
        self.current.store(config);
    }

    /// Use `config`, read from other files, from now on; those files are read on the next
    /// reload.
    pub(crate) fn swap_files(&self, certificate: &Path, key: &Path, config: Arc<ServerConfig>) {
        self.files
            .store(Arc::new((certificate.to_path_buf(), key.to_path_buf())));
        self.swap(config);
    }

    /// The certificate file (for log lines).
    pub(crate) fn certificate(&self) -> PathBuf {
        self.files.load().0.clone()
    }
}

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let bad_cert = |why: String| TlsError::Certificate {
        path: certificate.to_path_buf(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| bad_cert(pem_error(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(pem_error(e)))?;
    if chain.is_empty() {
        return Err(bad_cert("no PEM certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        why: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            e => pem_error(e),
        },
    })?;
    let pair = |why: String| TlsError::Pair {
        certificate: certificate.to_path_buf(),
        key: key.to_path_buf(),
        why,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        // Also checks that the key is the certificate's.
        .with_single_cert(chain, private)
        .map_err(|e| pair(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A PEM error in words (an unreadable file names the OS error).
fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        e => format!("not a usable PEM file: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("agora-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let e = server_config(&missing, &empty).expect_err("missing");
        assert!(
            e.to_string().contains("missing.pem") && e.to_string().contains("No such file"),
            "{e}"
        );
        let e = server_config(&empty, &empty).expect_err("empty");
        assert_eq!(
            e.to_string(),
            format!(
                "TLS certificate {}: no PEM certificate in it",
                empty.display()
            )
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
