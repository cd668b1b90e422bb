//! Start-up failures say their real cause once (the file, the key, the address and the
//! system's reason), and `--check-config` says the same about the same file.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::*;

/// `agora serve --config FILE [--check-config]`: (exit status success, stderr).
fn serve(cfg: &std::path::Path, check: bool, pw: &std::path::Path) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args(["serve", "--config"])
        .arg(cfg)
        .arg("--source-password-file")
        .arg(pw)
        .arg("--admin-password-file")
        .arg(pw);
    if check {
        cmd.arg("--check-config");
    }
    for var in PASSWORD_ENV {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run agora");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn each_start_up_failure_names_its_cause_once_and_check_config_says_the_same() {
    let dir = TempDir::new("agora-startup");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "a-password\n").expect("password file");
    let missing = dir.path().join("no-such-folder");
    let cases = [
        (
            "missing log folder",
            format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\naccess-log = \"{}/access.log\"\n",
                missing.display()
            ),
            vec![
                "server.access-log".to_string(),
                format!("{}/access.log", missing.display()),
                format!("mkdir -p {}", missing.display()),
            ],
        ),
        (
            "bad certificate path",
            format!(
                "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\ncertificate = \"{}/cert.pem\"\nkey = \"{}/key.pem\"\n",
                missing.display(),
                missing.display()
            ),
            vec![format!("{}/cert.pem", missing.display())],
        ),
        (
            "unknown key",
            "[server]\nlisten = [\"127.0.0.1:0\"]\nmax-listener = 10\n".to_string(),
            vec!["line 3".to_string(), "unknown field `max-listener`".into()],
        ),
        (
            "port syntax",
            "[server]\nlisten = [\"127.0.0.1:80000\"]\n".to_string(),
            vec!["line 2".to_string(), "(listen)".into()],
        ),
    ];
    for (what, toml, says) in cases {
        let cfg = dir.path().join("agora.toml");
        std::fs::write(&cfg, &toml).expect("config");
        let (ok, start) = serve(&cfg, false, &pw);
        let (check_ok, check) = serve(&cfg, true, &pw);
        assert!(!ok && !check_ok, "{what}: both must fail\n{start}\n{check}");
        for s in &says {
            assert!(
                start.contains(s.as_str()),
                "{what}: start says {s:?}\n{start}"
            );
            assert!(
                check.contains(s.as_str()),
                "{what}: --check-config says {s:?}\n{check}"
            );
        }
        assert_eq!(start, check, "{what}: the same words");
        // Once: one line, and the first needle once in it.
        assert_eq!(start.trim_end().lines().count(), 1, "{what}:\n{start}");
        assert_eq!(
            start.matches(says[0].as_str()).count(),
            1,
            "{what}:\n{start}"
        );
        assert!(
            !start.contains("cannot listen"),
            "{what}: blames the listen address\n{start}"
        );
    }
}

#[test]
fn a_port_in_use_is_named_with_the_reason_once() {
    let dir = TempDir::new("agora-startup-port");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "a-password\n").expect("password file");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let cfg = dir.path().join("agora.toml");
    std::fs::write(&cfg, format!("[server]\nlisten = [\"{addr}\"]\n")).expect("config");
    // --check-config does not bind (it runs beside the server it checks a reload for).
    assert!(serve(&cfg, true, &pw).0);
    let (ok, err) = serve(&cfg, false, &pw);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot listen on {addr}: Address already in use")),
        "{err}"
    );
    assert!(err.contains("another program listens there"), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}
