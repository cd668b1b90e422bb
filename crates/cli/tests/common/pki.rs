//! A test CA made with openssl, and the certificates it signs.

use std::path::PathBuf;
use std::process::Command;

use super::TempDir;

/// A test CA and certificates it signs for `localhost` and 127.0.0.1 (openssl, ECDSA P-256).
pub(crate) struct Pki {
    dir: TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let pki = Pki {
            dir: TempDir::new("agora-pki"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Agora Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `NAME.pem` (the leaf, then the CA: a full chain) and `NAME.key`, with `NAME` as the
    /// organisation so that the test can tell certificates apart.
    pub(crate) fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        std::fs::write(
            self.path("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        let (key, csr, leaf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.leaf"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/O={name}/CN=localhost"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "7",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            &leaf,
        ]);
        let chain = [
            std::fs::read(self.path(&leaf)).expect("leaf"),
            std::fs::read(self.path("ca.pem")).expect("ca"),
        ]
        .concat();
        std::fs::write(self.path(&format!("{name}.pem")), chain).expect("chain");
        (self.path(&format!("{name}.pem")), self.path(&key))
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }
}
