//! Listener authentication per mount: an htpasswd file of bcrypt hashes, and a URL asked as
//! Icecast's url authentication asks its `listener_add` URL (told of each departure at its
//! `listener_remove` URL, its `icecast-auth-timelimit` applied); wrong passwords count
//! towards the per-address ban.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::hook::{Call, Hook};
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

/// A listener's GET (or `method`) with `Authorization: Basic user:pass` and a user agent, its
/// connection kept: the stream, after the response head, and the head.
fn join(addr: SocketAddr, method: &str, mount: &str, login: (&str, &str)) -> (TcpStream, String) {
    let auth = basic_auth(login.0, login.1);
    let headers = [("User-Agent", "test-player/1.0"), ("Authorization", &auth)];
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request(method, mount, &headers).as_bytes())
        .expect("send");
    let head = read_head(&mut s);
    (s, head)
}

/// Read `s` until the server closes it (failing after `limit`): when that was.
fn read_to_eof(s: &mut TcpStream, limit: Duration) -> Instant {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Instant::now(),
            Ok(_) => {}
            Err(e) => panic!("the server did not close the listener within {limit:?}: {e}"),
        }
    }
}

/// The remove of the listener that `add` let in, once it came.
fn wait_remove(hook: &Hook, add: &Call) -> Call {
    let client = add.field("client").to_string();
    wait_until(
        &format!("the listener_remove of client {client}"),
        Duration::from_secs(30),
        || {
            hook.of("listener_remove")
                .iter()
                .any(|c| c.field("client") == client)
        },
    );
    let removes: Vec<Call> = hook
        .of("listener_remove")
        .into_iter()
        .filter(|c| c.field("client") == client)
        .collect();
    assert_eq!(removes.len(), 1, "one remove per listener: {removes:?}");
    removes.into_iter().next().expect("one")
}

/// The `listener_add`s for `user`, in order.
fn adds(hook: &Hook, user: &str) -> Vec<Call> {
    hook.of("listener_add")
        .into_iter()
        .filter(|c| c.field("user") == user)
        .collect()
}

/// The `n`th `listener_add` for `user` (from 0), once it came. (A player such as ffmpeg asks
/// without credentials first, and the URL is asked for that too.)
fn wait_add(hook: &Hook, user: &str, n: usize) -> Call {
    wait_until(
        &format!("listener_add {n} of {user}"),
        Duration::from_secs(30),
        || adds(hook, user).len() > n,
    );
    adds(hook, user).swap_remove(n)
}

/// A remove says what its add said, and how long the listener stayed.
fn assert_remove_matches(add: &Call, remove: &Call) {
    assert_eq!(
        remove.names(),
        [
            "action", "server", "port", "client", "mount", "user", "pass", "duration", "ip",
            "agent"
        ],
        "Icecast 2.4's fields, in its order"
    );
    assert_eq!(remove.path, "/remove");
    for k in [
        "server", "port", "client", "mount", "user", "pass", "ip", "agent",
    ] {
        assert_eq!(add.field(k), remove.field(k), "{k}: {add:?} / {remove:?}");
    }
}

/// Whole seconds in a remove's `duration`.
fn duration(remove: &Call) -> u64 {
    remove.field("duration").parse().expect("duration: seconds")
}

/// Push the first 64 KiB of the Ogg Opus fixture to `mount`, then nothing: the mount is live
/// and gets no more data (its listeners wait parked).
fn silent_source(agora: &Agora, mount: &str) -> TcpStream {
    let (_, file) = fixture("opus");
    let bytes = std::fs::read(file).expect("fixture");
    let (mut s, head) = raw_source(agora.addr, mount, "PUT", &[("Content-Type", "audio/ogg")]);
    assert!(head.contains(" 200 ") || head.contains(" 100 "), "{head}");
    s.write_all(&bytes[..64 * 1024]).expect("source bytes");
    agora.wait_mount(mount);
    s
}

#[test]
fn a_listener_let_in_by_the_url_is_removed_once_when_it_leaves() {
    let hook = Hook::start();
    let mut agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/paid.mp3\"\n\
         listener-auth-url = \"http://ice:hook-pw@{hook}/auth\"\n\
         listener-remove-url = \"http://{hook}/remove\"\n\
         listener-auth-timeout-secs = 2\nlistener-auth-cache-secs = 60\n",
        hook = hook.addr
    ));
    // MP3, a frame every 26 ms: the server finds a listener gone at its next writes.
    let (fx, media) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &media, "/paid.mp3", fx.muxer, false);
    agora.wait_mount("/paid.mp3");

    // A player listens, then leaves: one remove, the add's fields and the time it listened.
    let asked = Instant::now();
    let (s, head) = join(agora.addr, "GET", "/paid.mp3", ("alice", "wonderland"));
    let joined = Instant::now();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let add = wait_add(&hook, "alice", 0);
    let drain = Drain::spawn(s.try_clone().expect("clone"));
    wait_until("stream bytes", Duration::from_secs(20), || {
        drain.bytes() > 0
    });
    // Listening is what is measured: two seconds of it.
    std::thread::sleep(Duration::from_secs(2));
    s.shutdown(Shutdown::Both).expect("leave");
    // Let in between the two instants.
    let listened = (joined.elapsed().as_secs(), asked.elapsed().as_secs());
    let remove = wait_remove(&hook, &add);
    assert_remove_matches(&add, &remove);
    assert_eq!(remove.field("user"), "alice");
    assert_eq!(remove.field("mount"), "/paid.mp3");
    assert_eq!(remove.field("ip"), "127.0.0.1");
    assert_eq!(remove.field("agent"), "test-player/1.0");
    assert!(
        (listened.0..=listened.1 + 1).contains(&duration(&remove)),
        "duration {} after {listened:?} s",
        remove.field("duration")
    );
    // The remove URL has no credentials of its own: the add URL's are sent to both.
    let ice = basic_auth("ice", "hook-pw");
    assert_eq!(remove.authorization.as_deref(), Some(ice.as_str()));
    assert_eq!(add.authorization.as_deref(), Some(ice.as_str()));

    // The same credentials again: asked again (no cache with a remove URL), and a real
    // player decodes, then has its own remove.
    let started = Instant::now();
    assert_decodes(
        &format!("http://alice:wonderland@{}/paid.mp3", agora.addr),
        2,
    );
    let played = started.elapsed().as_secs();
    let add = wait_add(&hook, "alice", 1);
    assert_ne!(add.field("client"), remove.field("client"));
    let remove = wait_remove(&hook, &add);
    assert_remove_matches(&add, &remove);
    assert!(
        duration(&remove) <= played + 1,
        "duration {} after {played} s",
        remove.field("duration")
    );

    // Refused by the URL: no remove. An admin passes the gate: neither add nor remove.
    let (mut s, head) = join(agora.addr, "GET", "/paid.mp3", ("bob", "builder"));
    assert!(head.contains(" 401 "), "{head}");
    let _ = read_lenient(&mut s);
    wait_add(&hook, "bob", 0);
    let (s, head) = join(agora.addr, "GET", "/paid.mp3", ("admin", ADMIN_PW));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    drop(s);

    // A HEAD answered after the grant is a listener that came and went: its remove too.
    let (mut s, head) = join(agora.addr, "HEAD", "/paid.mp3", ("alice", "wonderland"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let _ = read_lenient(&mut s);
    let add = wait_add(&hook, "alice", 2);
    assert_remove_matches(&add, &wait_remove(&hook, &add));

    // A graceful shutdown sends the remove of a listener still streaming before it exits.
    let (_s, head) = join(agora.addr, "GET", "/paid.mp3", ("alice", "wonderland"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let add = wait_add(&hook, "alice", 3);
    send_signal(agora.pid(), "TERM");
    let mut status = None;
    wait_until("agora to exit", Duration::from_secs(20), || {
        status = agora.child.try_wait().expect("try_wait");
        status.is_some()
    });
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let removes = hook.of("listener_remove");
    assert!(
        removes
            .iter()
            .any(|c| c.field("client") == add.field("client")),
        "no remove before the exit: {removes:?}"
    );

    // Every listener let in had its remove, once; the refused ones (bob, a player's first
    // request without credentials) and the admin have none.
    let alice = adds(&hook, "alice");
    assert_eq!(alice.len(), 4, "{alice:?}");
    assert_eq!(removes.len(), 4, "{removes:?}");
    for add in &alice {
        let theirs = removes
            .iter()
            .filter(|r| r.field("client") == add.field("client"))
            .count();
        assert_eq!(theirs, 1, "{add:?}: {removes:?}");
    }
    assert!(adds(&hook, "admin").is_empty());
}

#[test]
fn icecast_auth_timelimit_ends_the_listener_parked_moved_or_let_in_from_the_cache() {
    let hook = Hook::start();
    let agora = Agora::start_with_config(&format!(
        "[mount-defaults]\nlistener-auth-url = \"http://{hook}/auth\"\n\
         listener-remove-url = \"http://{hook}/remove\"\nlistener-auth-timeout-secs = 2\n\n\
         [[mount]]\npath = \"/cached.ogg\"\nlistener-auth-url = \"http://{hook}/auth\"\n\
         listener-auth-cache-secs = 60\n",
        hook = hook.addr
    ));
    // Live mounts that get no more data: a listener waits parked, and only its time limit
    // can wake it.
    let _sources: Vec<TcpStream> = ["/timed.ogg", "/moved.ogg", "/other.ogg", "/cached.ogg"]
        .into_iter()
        .map(|m| silent_source(&agora, m))
        .collect();

    // Let in with `icecast-auth-timelimit: 3`: one stays where it is, one is moved by the
    // admin to another mount; both are closed by the server 3 s after they were let in.
    let asked = Instant::now();
    let (mut stays, head) = join(agora.addr, "GET", "/timed.ogg", ("timed", "x"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let (mut moved, head) = join(agora.addr, "GET", "/moved.ogg", ("timed", "y"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let (code, _, body) = http_get(
        agora.addr,
        "/admin/moveclients?mount=/moved.ogg&destination=/other.ogg",
        &[("Authorization", &admin_auth())],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    agora.wait_status("the listener moved", |a| a.listeners("/other.ogg") == 1);
    for (s, what) in [(&mut stays, "parked"), (&mut moved, "moved")] {
        let closed = read_to_eof(s, Duration::from_secs(15)) - asked;
        assert!(
            closed >= Duration::from_millis(2900) && closed < Duration::from_secs(8),
            "{what}: closed {closed:?} after it asked"
        );
    }
    // Each has its remove, 3 s after it was let in.
    for n in 0..2 {
        let add = wait_add(&hook, "timed", n);
        let remove = wait_remove(&hook, &add);
        assert_remove_matches(&add, &remove);
        assert!(
            (3..=4).contains(&duration(&remove)),
            "{}",
            remove.field("duration")
        );
    }
    agora.wait_log(&["listener's time limit reached"]);

    // From the cache, a grant keeps its deadline: a second connection 1.5 s later is closed
    // with the first, 3 s after the one answer, not 3 s after it joined.
    let asked = Instant::now();
    let (mut first, head) = join(agora.addr, "GET", "/cached.ogg", ("timed", "z"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    // Time passing is the subject here.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut second, head) = join(agora.addr, "GET", "/cached.ogg", ("timed", "z"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let rejoined = Instant::now();
    assert_eq!(adds(&hook, "timed").len(), 3, "asked once: cached");
    let first_closed = read_to_eof(&mut first, Duration::from_secs(15)) - asked;
    let second_closed = read_to_eof(&mut second, Duration::from_secs(15)) - rejoined;
    assert!(
        first_closed >= Duration::from_millis(2900) && first_closed < Duration::from_secs(8),
        "{first_closed:?}"
    );
    assert!(
        second_closed < Duration::from_millis(2500),
        "{second_closed:?}"
    );

    // A time limit that is not a number of seconds: let in, logged, no limit.
    let (_weird, head) = join(agora.addr, "GET", "/timed.ogg", ("weird", "x"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    agora.wait_log(&[
        "icecast-auth-timelimit is not a positive number of seconds",
        "soon",
    ]);
}

#[test]
fn a_remove_url_that_does_not_answer_delays_no_one() {
    let hook = Hook::start();
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/paid.opus\"\nlistener-auth-url = \"http://{hook}/auth\"\n\
         listener-remove-url = \"http://{hook}/remove-silent\"\n\
         listener-auth-timeout-secs = 2\n",
        hook = hook.addr
    ));
    let (fx, media) = fixture("opus");
    let _src = ffmpeg_push(&agora, &media, "/paid.opus", fx.muxer, false);
    agora.wait_mount("/paid.opus");

    let (s, head) = join(agora.addr, "GET", "/paid.opus", ("alice", "wonderland"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let gone = wait_add(&hook, "alice", 0);
    s.shutdown(Shutdown::Both).expect("leave");
    drop(s);
    wait_until("the remove, unanswered", Duration::from_secs(20), || {
        !hook.of("listener_remove").is_empty()
    });
    // While it hangs, another listener is let in at once and decodes.
    let asked = Instant::now();
    let (next, head) = join(agora.addr, "GET", "/paid.opus", ("alice", "wonderland"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    drop(next);
    assert_decodes(
        &format!("http://alice:wonderland@{}/paid.opus", agora.addr),
        2,
    );
    // The remove's failure: one line, once its timeout passed.
    let id = format!("id={}", gone.field("client"));
    let lines = || {
        agora
            .log()
            .lines()
            .filter(|l| l.contains("listener_remove not delivered"))
            .filter(|l| l.split_whitespace().any(|w| w == id))
            .count()
    };
    wait_until(
        "the remove's failure logged",
        Duration::from_secs(20),
        || lines() > 0,
    );
    assert_eq!(lines(), 1, "{}", agora.log());
}

#[test]
fn check_config_refuses_a_remove_url_without_an_auth_url() {
    let dir = TempDir::new("agora-lauth");
    let cfg = dir.path().join("agora.toml");
    for (toml, says) in [
        (
            "[[mount]]\npath = \"/a.ogg\"\nlistener-remove-url = \"http://h/remove\"\n",
            "/a.ogg: listener-remove-url is set without listener-auth-url",
        ),
        (
            "[mount-defaults]\nlistener-remove-url = \"http://h/remove\"\n",
            "mount-defaults: listener-remove-url is set without listener-auth-url",
        ),
    ] {
        std::fs::write(&cfg, toml).expect("write config");
        let out = check_config(&cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}: {err}");
        assert!(err.contains(says), "{toml}: {err}");
    }
}
