//! Secrets out of sight (#13): `agora serve`'s passwords from files and the environment,
//! never in `ps` (`/proc/PID/cmdline`), and never echoed by an error, a warning or a log line,
//! against the real binary on real sockets. (`agora cast --password-file` is in `cast.rs`.)

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

/// A password file in `dir`, written as `echo` and systemd write them (one trailing newline).
fn password_file(dir: &TempDir, name: &str, password: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{password}\n")).expect("write password file");
    path
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The status a source gets for `SOURCE mount` with these credentials (the connection is then
/// dropped: each call should use its own mount).
fn source_status(addr: SocketAddr, mount: &str, user: &str, password: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = basic(user, password);
    let req = request(
        "SOURCE",
        mount,
        &[("Authorization", &auth), ("Content-Type", "audio/mpeg")],
    );
    s.write_all(req.as_bytes()).expect("send");
    let head = read_head(&mut s);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn admin_status(agora: &Agora, user: &str, password: &str) -> u16 {
    let (code, _, _) = http_get(
        agora.addr,
        "/admin/stats",
        &[("Authorization", &basic(user, password))],
    );
    code
}

/// What `ps` shows of the server, and everything it wrote, hold none of `secrets`.
fn assert_out_of_sight(agora: &Agora, secrets: &[&str]) {
    let cmd = cmdline(agora.pid());
    assert!(
        cmd.contains(" serve "),
        "not the server's command line: {cmd}"
    );
    let (log, out) = (agora.log(), agora.stdout());
    for s in secrets {
        assert!(!cmd.contains(s), "{s} in ps: {cmd}");
        assert!(!log.contains(s), "{s} in the log:\n{log}");
        assert!(!out.contains(s), "{s} on stdout:\n{out}");
    }
    assert!(
        !out.contains("(generated"),
        "a configured password is not generated:\n{out}"
    );
}

const WARNING: &str = "can be read by every user of this machine";

/// `--source-password-file` and `AGORA_ADMIN_PASSWORD`: the source and the admin get in with
/// them, and `ps` shows neither.
#[test]
fn passwords_from_a_file_and_the_environment_are_not_in_ps() {
    let dir = TempDir::new("secrets");
    let file = password_file(&dir, "source.pw", "file-s3cret");
    let agora = Agora::start_with(
        "",
        &["--source-password-file", utf8(&file)],
        &[("AGORA_ADMIN_PASSWORD", "env-s3cret")],
    );
    assert_eq!(
        source_status(agora.addr, "/a.mp3", "source", "file-s3cret"),
        200
    );
    assert_eq!(
        source_status(agora.addr, "/b.mp3", "source", "file-s3cret\n"),
        401
    );
    assert_eq!(
        source_status(agora.addr, "/c.mp3", "source", "env-s3cret"),
        401
    );
    assert_eq!(admin_status(&agora, "admin", "env-s3cret"), 200);
    assert_eq!(admin_status(&agora, "admin", "file-s3cret"), 401);
    assert_out_of_sight(&agora, &["file-s3cret", "env-s3cret"]);
    assert!(!agora.log().contains(WARNING), "{}", agora.log());
}

/// `AGORA_SOURCE_PASSWORD_FILE` (as with Docker secrets) and `--admin-password-file`; a
/// password still given on the command line works, and is warned about without being shown.
#[test]
fn password_files_from_the_environment_and_a_warning_for_the_command_line() {
    let dir = TempDir::new("secrets");
    let source = password_file(&dir, "source.pw", "env-file-s3cret");
    let admin = password_file(&dir, "admin.pw", "admin-file-s3cret");
    let agora = Agora::start_with(
        "",
        &["--admin-password-file", utf8(&admin)],
        &[("AGORA_SOURCE_PASSWORD_FILE", utf8(&source))],
    );
    assert_eq!(
        source_status(agora.addr, "/a.mp3", "source", "env-file-s3cret"),
        200
    );
    assert_eq!(admin_status(&agora, "admin", "admin-file-s3cret"), 200);
    assert_out_of_sight(&agora, &["env-file-s3cret", "admin-file-s3cret"]);
    assert!(!agora.log().contains(WARNING), "{}", agora.log());

    let agora = Agora::start_with("", &["--admin-password", "argv-s3cret"], &[]);
    assert_eq!(admin_status(&agora, "admin", "argv-s3cret"), 200);
    assert!(
        agora.log_has(&[
            "--admin-password on the command line",
            WARNING,
            "--admin-password-file"
        ]),
        "{}",
        agora.log()
    );
    assert!(!agora.log().contains("argv-s3cret"), "{}", agora.log());
}

/// The configuration's `*-password-file` keys: the server's source and admin passwords and a
/// mount's own, each authenticating, none shown.
#[test]
fn password_files_in_the_configuration_authenticate() {
    let dir = TempDir::new("secrets");
    let source = password_file(&dir, "source.pw", "cfg-source-s3cret");
    let admin = password_file(&dir, "admin.pw", "cfg-admin-s3cret");
    let mount = password_file(&dir, "mount.pw", "cfg-mount-s3cret");
    let agora = Agora::start_with(
        &format!(
            "[auth]\nsource-password-file = {:?}\nadmin-password-file = {:?}\n\
             [[mount]]\npath = \"/own.mp3\"\npassword-file = {:?}\n",
            utf8(&source),
            utf8(&admin),
            utf8(&mount)
        ),
        &[],
        &[],
    );
    assert_eq!(
        source_status(agora.addr, "/a.mp3", "source", "cfg-source-s3cret"),
        200
    );
    assert_eq!(
        source_status(agora.addr, "/own.mp3", "source", "cfg-source-s3cret"),
        401
    );
    assert_eq!(
        source_status(agora.addr, "/own.mp3", "source", "cfg-mount-s3cret"),
        200
    );
    assert_eq!(admin_status(&agora, "admin", "cfg-admin-s3cret"), 200);
    assert_out_of_sight(
        &agora,
        &["cfg-source-s3cret", "cfg-admin-s3cret", "cfg-mount-s3cret"],
    );
}

/// `[[push]]` and `[master]` credentials from `password-file`, the origin's relay user from
/// `relay-password-file`: a push reaches its target and an edge follows its master with them,
/// and no log shows them.
#[test]
fn push_and_master_credentials_from_files() {
    let dir = TempDir::new("secrets");
    let push_pw = password_file(&dir, "push.pw", SOURCE_PW);
    let relay_pw = password_file(&dir, "relay.pw", "relay-s3cret");
    let target = Agora::start();
    let origin = Agora::start_with_config(&format!(
        "[auth]\nrelay-password-file = {:?}\n\
         [[push]]\nmount = \"/up.mp3\"\ntarget = \"http://{}/up.mp3\"\npassword-file = {:?}\n",
        utf8(&relay_pw),
        target.addr,
        utf8(&push_pw)
    ));
    let edge = Agora::start_with_config(&format!(
        "[master]\nurl = \"http://relay@{}/\"\npassword-file = {:?}\ninterval-secs = 1\n",
        origin.addr,
        utf8(&relay_pw)
    ));
    let (f, path) = fixture("mp3");
    let _src = ffmpeg_push(&origin, &path, "/up.mp3", f.muxer, false);
    origin.wait_mount("/up.mp3");
    target.wait_mount("/up.mp3");
    edge.wait_mount("/up.mp3");
    for a in [&origin, &edge] {
        for secret in ["relay-s3cret", SOURCE_PW] {
            assert!(!a.log().contains(secret), "{secret}:\n{}", a.log());
        }
    }
}

/// Everything that goes wrong before a server or a cast runs says what is wrong, and none of
/// it quotes a password: clap's argument errors, URL errors, TOML errors (which would quote
/// the line), configuration errors, unusable password files.
#[test]
fn errors_never_echo_a_password() {
    let dir = TempDir::new("secrets");
    let empty = dir.path().join("empty.pw");
    std::fs::write(&empty, "").expect("write");
    let two_lines = dir.path().join("two-lines.pw");
    std::fs::write(&two_lines, "s3cret-1\ns3cret-2\n").expect("write");
    let toml = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_string()
    };
    let check = |cfg: String| {
        vec![
            "serve".to_string(),
            "--config".into(),
            cfg,
            "--check-config".into(),
        ]
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            check(toml(
                "typo.toml",
                "[auth]\nsource-pasword = \"s3cret-typo\"\n",
            )),
            "line 2, column 1: unknown field `source-pasword`",
        ),
        (
            check(toml("number.toml", "[auth]\nadmin-password = 123456789\n")),
            "expected a password in quotes",
        ),
        (
            check(toml(
                "unquoted.toml",
                "[[mount]]\npath = \"/a\"\npassword = s3cret-u\n",
            )),
            "line 3",
        ),
        (
            check(toml(
                "announce.toml",
                "[master]\nurl = \"http://relay@h/\"\nannounce = \"http://u:s3cret-a@edge:8001\"\n",
            )),
            "master.announce",
        ),
        (
            check(toml(
                "push.toml",
                "[[push]]\nmount = \"/a\"\ntarget = \"http://source:s3cret-p@h:bad/a\"\n",
            )),
            "bad port",
        ),
        (
            check(toml(
                "twice.toml",
                &format!(
                    "[[relay]]\nupstream = \"http://u:s3cret-r@h/a\"\npassword-file = {:?}\n",
                    utf8(&two_lines)
                ),
            )),
            "keep one",
        ),
        (
            args(&[
                "serve",
                "--source-password-file",
                utf8(&empty),
                "--check-config",
            ]),
            "--source-password-file: ",
        ),
        (
            args(&[
                "serve",
                "--admin-password-file",
                utf8(&two_lines),
                "--check-config",
            ]),
            "line break",
        ),
        (
            args(&["cast", "--input", "test", "http://source:s3cret-pos@h/x"]),
            "unexpected argument 'http://source:***@h/x'",
        ),
        (
            args(&[
                "cast",
                "--input",
                "test",
                "--server",
                "icecast://source:s3cret-c@h:bad/x",
            ]),
            "bad port",
        ),
        (
            args(&[
                "cast",
                "--input",
                "test",
                "--password-file",
                utf8(&two_lines),
                "--server",
                "http://h/x",
            ]),
            "--password-file: ",
        ),
        (
            args(&[
                "meta",
                "--server",
                "http://source:s3cret-m@h:bad/x",
                "--title",
                "t",
            ]),
            "bad port",
        ),
    ];
    for (args, says) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
        for var in PASSWORD_ENV {
            cmd.env_remove(var);
        }
        let out = cmd.args(&args).output().expect("run agora");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?}: {all}");
        assert!(all.contains(says), "{args:?}: wanted {says:?} in\n{all}");
        for secret in ["s3cret", "123456789"] {
            assert!(!all.contains(secret), "{args:?} shows {secret}:\n{all}");
        }
    }
}
