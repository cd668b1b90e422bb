//! Listener authentication per mount: an htpasswd file of bcrypt hashes, and a URL asked as
//! Icecast's url authentication asks its `listener_add` URL; wrong passwords count towards
//! the per-address ban.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A listener's request with `Authorization: Basic user:pass` (when given) and a user agent:
/// the response head's status and the head. The stream, if any, is dropped.
fn listen(addr: SocketAddr, mount: &str, login: Option<(&str, &str)>) -> (u16, String) {
    let auth = login.map(|(u, p)| format!("Basic {}", b64(&format!("{u}:{p}"))));
    let mut headers = vec![("User-Agent", "test-player/1.0")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request("GET", mount, &headers).as_bytes())
        .expect("send");
    let head = read_head(&mut s);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head)
}

/// An htpasswd line for `user` (bcrypt, cost 4: fast enough for a test).
fn htpasswd_line(user: &str, pass: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(pass, 4).expect("bcrypt"))
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write htpasswd");
}

#[test]
fn an_htpasswd_file_lets_its_users_listen_and_no_one_else() {
    let dir = TempDir::new("agora-lauth");
    let file = dir.path().join("hall-a.htpasswd");
    write_file(&file, &htpasswd_line("alice", "wonderland"));
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/private.opus\"\nlistener-htpasswd = \"{}\"\n",
        file.display()
    ));
    let (fx, media) = fixture("opus");
    let _private = ffmpeg_push(&agora, &media, "/private.opus", fx.muxer, false);
    let _public = ffmpeg_push(&agora, &media, "/public.opus", fx.muxer, false);
    agora.wait_mount("/private.opus");
    agora.wait_mount("/public.opus");

    // No credentials: 401 with the challenge players answer with the URL's credentials.
    let (code, head) = listen(agora.addr, "/private.opus", None);
    assert_eq!(code, 401, "{head}");
    assert!(
        head.contains("WWW-Authenticate: Basic realm=\"Icecast2 Server\""),
        "{head}"
    );
    // Wrong password, unknown user: 401 too, as Icecast answers.
    for login in [("alice", "looking-glass"), ("mallory", "wonderland")] {
        let (code, head) = listen(agora.addr, "/private.opus", Some(login));
        assert_eq!(code, 401, "{login:?}: {head}");
    }
    // The right one streams; a player with the credentials in its URL decodes it.
    let (code, head) = listen(agora.addr, "/private.opus", Some(("alice", "wonderland")));
    assert_eq!(code, 200, "{head}");
    assert_decodes(
        &format!("http://alice:wonderland@{}/private.opus", agora.addr),
        3,
    );
    // An admin (like a relay) passes the gate.
    let (code, head) = listen(agora.addr, "/private.opus", Some(("admin", ADMIN_PW)));
    assert_eq!(code, 200, "{head}");
    // Another mount needs nothing.
    let (code, head) = listen(agora.addr, "/public.opus", None);
    assert_eq!(code, 200, "{head}");
    assert_decodes(&agora.url("/public.opus"), 2);

    // A user added to the file is let in without a restart.
    let (code, _) = listen(agora.addr, "/private.opus", Some(("bob", "builder")));
    assert_eq!(code, 401);
    write_file(
        &file,
        &format!(
            "{}{}",
            htpasswd_line("alice", "wonderland"),
            htpasswd_line("bob", "builder")
        ),
    );
    let (code, head) = listen(agora.addr, "/private.opus", Some(("bob", "builder")));
    assert_eq!(code, 200, "{head}");
}

#[test]
fn an_htpasswd_file_that_is_not_bcrypt_is_refused_by_file_and_line() {
    let dir = TempDir::new("agora-lauth");
    let file = dir.path().join("md5.htpasswd");
    let md5 = "bob:$apr1$Vj8a5m0o$0xT1bD5Gk0c3rFQm9x3cB/";
    write_file(&file, &format!("{}{md5}\n", htpasswd_line("alice", "w")));
    let cfg = dir.path().join("agora.toml");
    std::fs::write(
        &cfg,
        "[[mount]]\npath = \"/private.opus\"\nlistener-htpasswd = \"md5.htpasswd\"\n",
    )
    .expect("write config");
    let out = check_config(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("listener-htpasswd") && err.contains("md5.htpasswd line 2: not a bcrypt hash"),
        "{err}"
    );
    // Neither the line nor its hash is shown.
    assert!(!err.contains("Vj8a5m0o") && !err.contains("bob"), "{err}");
}

#[test]
fn wrong_listener_passwords_count_towards_the_ban() {
    let dir = TempDir::new("agora-lauth");
    let file = dir.path().join("users");
    write_file(&file, &htpasswd_line("alice", "wonderland"));
    let agora = Agora::start_with_config(&format!(
        "[server]\nmax-login-failures = 4\nlogin-window-secs = 60\nlogin-ban-secs = 60\n\n\
         [[mount]]\npath = \"/private.opus\"\nlistener-htpasswd = \"{}\"\n",
        file.display()
    ));
    let (fx, media) = fixture("opus");
    let _src = ffmpeg_push(&agora, &media, "/private.opus", fx.muxer, false);
    agora.wait_mount("/private.opus");
    // Asking without credentials is no failure.
    for _ in 0..10 {
        assert_eq!(listen(agora.addr, "/private.opus", None).0, 401);
    }
    for i in 1..=4 {
        let (code, head) = listen(
            agora.addr,
            "/private.opus",
            Some(("alice", &format!("guess-{i}"))),
        );
        assert_eq!(code, 401, "guess {i}: {head}");
    }
    // Banned: even the right password gets 429, unchecked.
    let (code, head) = listen(agora.addr, "/private.opus", Some(("alice", "wonderland")));
    assert_eq!(code, 429, "{head}");
    assert!(head.contains("Retry-After: "), "{head}");
    agora.wait_log(&["too many failed logins", "client=127.0.0.1", "failures=4"]);
}

/// A form, decoded: its fields in order.
type Form = Vec<(String, String)>;

/// What the test's authentication URL saw and how it answers: it lets in `alice` with
/// password `wonderland`, never answers user `slow`, and refuses everyone else.
struct Hook {
    addr: SocketAddr,
    /// The forms received, decoded, in order.
    forms: Arc<Mutex<Vec<Form>>>,
    /// Connections it does not answer, kept open until the hook is dropped.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hook {
    fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
        let addr = listener.local_addr().expect("addr");
        let forms = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (f, h) = (forms.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (f, h) = (f.clone(), h.clone());
                std::thread::spawn(move || Hook::answer(conn, &f, &h));
            }
        });
        Hook {
            addr,
            forms,
            _held: held,
        }
    }

    fn answer(mut conn: TcpStream, forms: &Mutex<Vec<Form>>, held: &Mutex<Vec<TcpStream>>) {
        let head = read_head(&mut conn);
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).expect("form body");
        assert!(head.starts_with("POST /auth HTTP/1."), "{head}");
        assert!(
            head.contains("Content-Type: application/x-www-form-urlencoded"),
            "{head}"
        );
        let form = form_decode(&String::from_utf8_lossy(&body));
        let field = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let (user, pass) = (field("user"), field("pass"));
        forms.lock().expect("forms").push(form);
        let answer = match (user.as_str(), pass.as_str()) {
            ("alice", "wonderland") => {
                "HTTP/1.1 200 OK\r\nicecast-auth-user: 1\r\nContent-Length: 0\r\n\r\n"
            }
            ("slow", _) => {
                held.lock().expect("held").push(conn);
                return;
            }
            _ => {
                "HTTP/1.1 200 OK\r\nicecast-auth-user: 0\r\nicecast-auth-message: not on the list\r\nContent-Length: 0\r\n\r\n"
            }
        };
        let _ = conn.write_all(answer.as_bytes());
    }

    fn forms(&self) -> Vec<Form> {
        self.forms.lock().expect("forms").clone()
    }
}

/// `application/x-www-form-urlencoded` to pairs, in order.
fn form_decode(s: &str) -> Form {
    let decode = |v: &str| {
        let b = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8")
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[test]
fn a_url_lets_in_whom_it_answers_icecast_auth_user_1_for() {
    let hook = Hook::start();
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/hook.opus\"\nlistener-auth-url = \"http://{}/auth\"\n\
         listener-auth-timeout-secs = 2\nlistener-auth-cache-secs = 60\n",
        hook.addr
    ));
    let (fx, media) = fixture("opus");
    let _src = ffmpeg_push(&agora, &media, "/hook.opus", fx.muxer, false);
    agora.wait_mount("/hook.opus");

    // Let in: the form carries Icecast's fields, in Icecast's order.
    let (code, head) = listen(agora.addr, "/hook.opus", Some(("alice", "wonderland")));
    assert_eq!(code, 200, "{head}");
    let forms = hook.forms();
    assert_eq!(forms.len(), 1, "{forms:?}");
    let names: Vec<&str> = forms[0].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "action", "server", "port", "client", "mount", "user", "pass", "ip", "agent"
        ]
    );
    let port = agora.addr.port().to_string();
    for (k, v) in [
        ("action", "listener_add"),
        ("server", "localhost"),
        ("port", port.as_str()),
        ("mount", "/hook.opus"),
        ("user", "alice"),
        ("pass", "wonderland"),
        ("ip", "127.0.0.1"),
        ("agent", "test-player/1.0"),
    ] {
        assert!(
            forms[0].contains(&(k.to_string(), v.to_string())),
            "{k}: {forms:?}"
        );
    }
    assert!(forms[0][3].1.parse::<u64>().is_ok(), "client: {forms:?}");

    // Again within the cache's time: let in without asking.
    let (code, head) = listen(agora.addr, "/hook.opus", Some(("alice", "wonderland")));
    assert_eq!(code, 200, "{head}");
    assert_eq!(hook.forms().len(), 1, "the URL was asked again");
    // A player with the credentials in its URL decodes the stream.
    assert_decodes(
        &format!("http://alice:wonderland@{}/hook.opus", agora.addr),
        3,
    );

    // Refused: 401, and the URL's message is logged.
    let asked = hook.forms().len();
    let (code, head) = listen(agora.addr, "/hook.opus", Some(("bob", "builder")));
    assert_eq!(code, 401, "{head}");
    assert!(head.contains("WWW-Authenticate: Basic"), "{head}");
    let forms = hook.forms();
    assert_eq!(forms.len(), asked + 1);
    assert!(forms[asked].contains(&("user".to_string(), "bob".to_string())));
    agora.wait_log(&[
        "listener refused by the authentication URL",
        "not on the list",
    ]);
    // Refusals are not cached: asked again.
    assert_eq!(
        listen(agora.addr, "/hook.opus", Some(("bob", "builder"))).0,
        401
    );
    assert_eq!(hook.forms().len(), asked + 2);

    // A URL that does not answer: refused once the timeout (2 s) passed, with 503.
    let start = Instant::now();
    let (code, head) = listen(agora.addr, "/hook.opus", Some(("slow", "x")));
    let took = start.elapsed();
    assert_eq!(code, 503, "{head}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // Alice is still let in.
    assert_eq!(
        listen(agora.addr, "/hook.opus", Some(("alice", "wonderland"))).0,
        200
    );
}
