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
    // --check-config names it, but as a note: it also runs beside the server it checks a
    // reload for, which holds its own address.
    let (ok, note) = serve(&cfg, true, &pw);
    assert!(ok, "{note}");
    assert!(
        note.contains(&format!(
            "cannot listen on {addr} now: Address already in use"
        )),
        "{note}"
    );
    let (ok, err) = serve(&cfg, false, &pw);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot listen on {addr}: Address already in use")),
        "{err}"
    );
    assert!(err.contains("another program listens there"), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

/// Regression (#14): an error that carries the system's reason printed it twice ("cannot read
/// X: No such file or directory (os error 2): No such file or directory (os error 2)"), once
/// in its message and once as its cause. Every file a configuration names, and the file
/// itself, is now said once, at start and with `--check-config`; `import-icecast` too.
#[test]
fn a_file_that_cannot_be_read_is_said_once() {
    let dir = TempDir::new("agora-startup-once");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "a-password\n").expect("password file");
    let garbage = dir.path().join("garbage.mp3");
    std::fs::write(&garbage, xorshift_bytes(4096, 7)).expect("garbage");
    let cases = [
        ("no configuration file", None, "nope.toml"),
        (
            "a password file",
            Some("[auth]\nrelay-password-file = \"no-such.pw\"\n".to_string()),
            "no-such.pw",
        ),
        (
            "a loop-file",
            Some("[[mount]]\npath = \"/a.mp3\"\nloop-file = \"no-such.mp3\"\n".to_string()),
            "no-such.mp3",
        ),
        (
            "an htpasswd file",
            Some(
                "[[mount]]\npath = \"/a.mp3\"\nlistener-htpasswd = \"no-such.htpasswd\"\n"
                    .to_string(),
            ),
            "no-such.htpasswd",
        ),
    ];
    for (what, toml, file) in cases {
        let cfg = match &toml {
            Some(t) => {
                let cfg = dir.path().join("agora.toml");
                std::fs::write(&cfg, t).expect("config");
                cfg
            }
            None => dir.path().join(file),
        };
        for check in [false, true] {
            let (ok, err) = serve(&cfg, check, &pw);
            assert!(!ok, "{what}: must fail\n{err}");
            assert!(err.contains(file), "{what}: names {file}\n{err}");
            assert_eq!(
                err.matches("No such file or directory").count(),
                1,
                "{what} (--check-config: {check}): the reason once\n{err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{what}:\n{err}");
        }
    }
    // A loop-file that is not media: the reason once.
    let cfg = dir.path().join("agora.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mount]]\npath = \"/a.mp3\"\nloop-file = {:?}\n",
            garbage.display().to_string()
        ),
    )
    .expect("config");
    let (ok, err) = serve(&cfg, true, &pw);
    assert!(!ok && err.contains("garbage.mp3"), "{err}");
    assert_eq!(err.matches("not Ogg, WebM").count(), 1, "{err}");
    // import-icecast with a file that is not XML.
    let xml = dir.path().join("icecast.xml");
    std::fs::write(&xml, "<icecast><limits>").expect("xml");
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("import-icecast")
        .arg(&xml)
        .output()
        .expect("agora import-icecast");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let why = err.split("not XML: ").nth(1).unwrap_or("").trim();
    assert!(!why.is_empty(), "{err}");
    assert_eq!(err.matches(why).count(), 1, "{err}");
}

/// An unknown key in any table is one line naming it, its line and what was expected, the
/// same at start and with `--check-config`.
#[test]
fn an_unknown_key_in_any_table_is_said_once() {
    let dir = TempDir::new("agora-startup-keys");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "a-password\n").expect("password file");
    for (table, line) in [
        ("", 1),
        ("[server]\n", 2),
        ("[auth]\n", 2),
        ("[mount-defaults]\n", 2),
        ("[[mount]]\npath = \"/a.ogg\"\n", 3),
        ("[[relay]]\nupstream = \"http://127.0.0.1:9/a.ogg\"\n", 3),
        (
            "[[push]]\nmount = \"/a.ogg\"\ntarget = \"http://127.0.0.1:9/a.ogg\"\n",
            4,
        ),
        ("[master]\nurl = \"http://127.0.0.1:9/\"\n", 3),
        ("[[server.tls]]\n", 2),
    ] {
        let cfg = dir.path().join("agora.toml");
        std::fs::write(&cfg, format!("{table}no-such-key = 1\n")).expect("config");
        let (ok, start) = serve(&cfg, false, &pw);
        let (check_ok, check) = serve(&cfg, true, &pw);
        assert!(!ok && !check_ok, "{table}: must fail\n{start}\n{check}");
        assert_eq!(start, check, "{table}: the same words");
        assert_eq!(start.trim_end().lines().count(), 1, "{table}:\n{start}");
        assert_eq!(start.matches("no-such-key").count(), 1, "{table}:\n{start}");
        assert!(
            start.contains(&format!(
                "line {line}, column 1: unknown field `no-such-key`"
            )),
            "{table}:\n{start}"
        );
    }
}
