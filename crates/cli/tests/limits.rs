//! Per-address limits: wrong passwords (then `429` for a while, with the line fail2ban
//! matches), connections still sending their head, listeners per client address, and the
//! address a trusted proxy names.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn admin_stats(agora: &Agora, password: &str) -> (u16, String) {
    let auth = format!("Basic {}", b64(&format!("admin:{password}")));
    let (code, head, _) = http_get(agora.addr, "/admin/stats", &[("Authorization", &auth)]);
    (code, head)
}

#[test]
fn wrong_passwords_get_429_for_a_while_and_cost_a_connection_each() {
    let agora = Agora::start_with_config(
        "[server]\nmax-login-failures = 5\nlogin-window-secs = 60\nlogin-ban-secs = 3\n",
    );
    // Asking without credentials (a browser's or libshout's first try) is not a failure.
    for _ in 0..20 {
        let (code, _, _) = http_get(agora.addr, "/admin/stats", &[]);
        assert_eq!(code, 401);
    }
    assert_eq!(admin_stats(&agora, ADMIN_PW).0, 200);

    // A wrong password on a kept connection: the answer closes it, so each guess costs a
    // connection.
    let mut s = TcpStream::connect(agora.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = format!("Basic {}", b64("admin:guess-1"));
    let req = format!(
        "GET /admin/stats HTTP/1.1\r\nHost: test\r\nAuthorization: {auth}\r\n\r\nGET /admin/stats HTTP/1.1\r\nHost: test\r\nAuthorization: {auth}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("the server closes");
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 401").count(), 1, "{text}");
    assert!(text.contains("Connection: Close"), "{text}");

    for i in 2..5 {
        assert_eq!(admin_stats(&agora, &format!("guess-{i}")).0, 401);
    }
    // The fifth wrong one starts the ban: from now on even the right password gets 429, for
    // the admin API, the admin page and sources alike.
    assert_eq!(admin_stats(&agora, "guess-5").0, 401);
    let (code, head) = admin_stats(&agora, ADMIN_PW);
    assert_eq!(code, 429, "{head}");
    assert!(head.contains("Retry-After: "), "{head}");
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let (code, _, _) = http_get(agora.addr, "/admin/", &[("Authorization", &auth)]);
    assert_eq!(code, 429);
    let (_src, head) = raw_source(
        agora.addr,
        "/banned.ogg",
        "SOURCE",
        &[("Content-Type", "audio/ogg")],
    );
    assert!(head.starts_with("HTTP/1.0 429"), "{head}");
    // Listeners need no login: they are not refused.
    let (code, _, _) = http_get(agora.addr, "/status-json.xsl", &[]);
    assert_eq!(code, 200);
    // One line says it, with the address where fail2ban looks for it.
    agora.wait_log(&[
        "too many failed logins: address refused for a while",
        "client=127.0.0.1",
        "failures=5",
        "ban_secs=3",
    ]);
    // The ban ends.
    let start = Instant::now();
    wait_until("the ban to end", Duration::from_secs(10), || {
        admin_stats(&agora, ADMIN_PW).0 == 200
    });
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn one_address_holds_a_bounded_number_of_unfinished_requests_and_listeners() {
    let agora =
        Agora::start_with_config("[server]\nmax-pending-per-ip = 3\nmax-listeners-per-ip = 2\n");
    // Three connections that send nothing yet (a slowloris): a fourth is closed unheard.
    let slow: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(agora.addr).expect("connect"))
        .collect();
    let mut fourth = TcpStream::connect(agora.addr).expect("the kernel accepts");
    fourth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = fourth.write_all(b"GET /status-json.xsl HTTP/1.0\r\n\r\n");
    let mut got = Vec::new();
    let _ = fourth.read_to_end(&mut got);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // One of them finishes its request: there is room again.
    let mut first = slow.into_iter().next().expect("one");
    first
        .write_all(b"GET /status-json.xsl HTTP/1.0\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    first.read_to_end(&mut answer).expect("answer");
    assert!(answer.starts_with(b"HTTP/1.0 200"));
    let (code, _, _) = http_get(agora.addr, "/status-json.xsl", &[]);
    assert_eq!(code, 200);
    let (_, _, metrics) = http_get(agora.addr, "/metrics", &[]);
    assert!(
        String::from_utf8_lossy(&metrics).contains("agora_connections_refused_pending_total 1"),
        "{}",
        String::from_utf8_lossy(&metrics)
    );

    // Two listeners from this address, not three.
    let (fx, file) = fixture("opus");
    let _src = ffmpeg_push(&agora, &file, "/capped.opus", fx.muxer, false);
    agora.wait_mount("/capped.opus");
    let (_a, head_a) = open_listener(agora.addr, "/capped.opus");
    let (_b, head_b) = open_listener(agora.addr, "/capped.opus");
    assert!(head_a.starts_with("HTTP/1.0 200") && head_b.starts_with("HTTP/1.0 200"));
    let (code, _, body) = http_get(agora.addr, "/capped.opus", &[]);
    assert_eq!(code, 429, "{}", String::from_utf8_lossy(&body));
    drop(_a);
    agora.wait_status("a listener gone", |a| a.listeners("/capped.opus") == 1);
    assert_decodes(&agora.url("/capped.opus"), 2);
}

#[test]
fn behind_a_trusted_proxy_the_named_client_is_limited_not_the_proxy() {
    let agora = Agora::start_with_config(
        "[server]\ntrusted-proxies = [\"127.0.0.1\"]\nmax-pending-per-ip = 2\nmax-listeners-per-ip = 1\nmax-login-failures = 2\n",
    );
    // The proxy's own connections are many: not capped as one address's.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(agora.addr).expect("connect"))
        .collect();
    let (code, _, _) = http_get(agora.addr, "/status-json.xsl", &[]);
    assert_eq!(code, 200, "the proxy is not capped");
    drop(idle);
    let (fx, file) = fixture("opus");
    let _src = ffmpeg_push(&agora, &file, "/proxied.opus", fx.muxer, false);
    agora.wait_mount("/proxied.opus");
    let one = |client: &str| {
        let mut s = TcpStream::connect(agora.addr).expect("connect");
        s.write_all(request("GET", "/proxied.opus", &[("X-Forwarded-For", client)]).as_bytes())
            .expect("send");
        let head = read_head(&mut s);
        (s, head)
    };
    let (_a, head) = one("198.51.100.1");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let (_b, head) = one("198.51.100.1");
    assert!(head.starts_with("HTTP/1.0 429"), "{head}");
    let (_c, head) = one("198.51.100.2");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    // Wrong passwords count for the client named, not for the proxy's other clients.
    let wrong = format!("Basic {}", b64("admin:nope"));
    for _ in 0..2 {
        let (code, _, _) = http_get(
            agora.addr,
            "/admin/stats",
            &[
                ("Authorization", &wrong),
                ("X-Forwarded-For", "203.0.113.5"),
            ],
        );
        assert_eq!(code, 401);
    }
    let right = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let (code, _, _) = http_get(
        agora.addr,
        "/admin/stats",
        &[
            ("Authorization", &right),
            ("X-Forwarded-For", "203.0.113.5"),
        ],
    );
    assert_eq!(code, 429);
    let (code, _, _) = http_get(
        agora.addr,
        "/admin/stats",
        &[
            ("Authorization", &right),
            ("X-Forwarded-For", "203.0.113.6"),
        ],
    );
    assert_eq!(code, 200);
}

/// An admin request with the admin's credentials; (status, body).
fn admin(agora: &Agora, path_and_query: &str) -> (u16, String) {
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let (code, _, body) = http_get(agora.addr, path_and_query, &[("Authorization", &auth)]);
    (code, String::from_utf8_lossy(&body).to_string())
}

#[test]
fn titles_lose_control_characters_everywhere_they_go() {
    let agora = Agora::start();
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/t.mp3", fx.muxer, false);
    agora.wait_mount("/t.mp3");
    // CR, LF, NUL, ESC and TAB in the song, percent-encoded as a script would send them.
    let (code, body) = admin(
        &agora,
        "/admin/metadata?mount=/t.mp3&mode=updinfo&song=Talk%0D%0AStreamTitle%3D%27x%27%3B%00%1B%5B31m%09red",
    );
    assert_eq!(code, 200, "{body}");
    let title = agora.source("/t.mp3").expect("mount")["title"]
        .as_str()
        .expect("title")
        .to_string();
    assert_eq!(title, "Talk StreamTitle='x'; [31m red");
    // The ICY block carries the clean title (the quote made typographic, as always).
    let (head, body) = read_icy(agora.addr, "/t.mp3", 40_000);
    let interval: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("icy-metaint:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("icy-metaint");
    let len = body[interval] as usize * 16;
    let block = &body[interval + 1..interval + 1 + len];
    assert!(
        !block
            .iter()
            .any(|b| matches!(b, b'\r' | b'\n' | 0x1b | b'\t')),
        "{block:?}"
    );
    assert!(
        String::from_utf8_lossy(block)
            .starts_with("StreamTitle='Talk StreamTitle=\u{2019}x\u{2019}; [31m red';")
    );
}

#[test]
fn moveclients_respects_the_destinations_credentials_and_room() {
    let agora = Agora::start_with_config(
        "[[mount]]\npath = \"/a.opus\"\n[[mount]]\npath = \"/b.opus\"\npassword = \"b-only\"\nmax-listeners = 2\n",
    );
    let (fx, file) = fixture("opus");
    let _a = ffmpeg_push(&agora, &file, "/a.opus", fx.muxer, false);
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&file)
        .args(["-c", "copy", "-f", fx.muxer])
        .arg(format!("icecast://source:b-only@{}/b.opus", agora.addr));
    let _b = Proc::spawn(&mut cmd);
    agora.wait_mount("/a.opus");
    agora.wait_mount("/b.opus");
    let listeners: Vec<Drain> = (0..3)
        .map(|_| Drain::spawn(open_listener(agora.addr, "/a.opus").0))
        .collect();
    agora.wait_status("three listeners", |a| a.listeners("/a.opus") == 3);
    // /a.opus's source credentials are not /b.opus's: refused, nobody moves.
    let src = format!("Basic {}", b64(&format!("source:{SOURCE_PW}")));
    let (code, _, body) = http_get(
        agora.addr,
        "/admin/moveclients?mount=/a.opus&destination=/b.opus",
        &[("Authorization", &src)],
    );
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(agora.listeners("/a.opus"), 3);
    // The admin moves as many as /b.opus has room for: two.
    let (code, body) = admin(
        &agora,
        "/admin/moveclients?mount=/a.opus&destination=/b.opus",
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("1 stayed"), "{body}");
    agora.wait_status("two moved", |a| {
        a.listeners("/b.opus") == 2 && a.listeners("/a.opus") == 1
    });
    assert!(listeners.iter().all(|l| l.ended().is_none()));
}

#[test]
fn mounts_and_bandwidth_are_capped() {
    let agora = Agora::start_with_config(
        "[server]\nmax-mounts = 2\n[mount-defaults]\ngrace-period-secs = 30\nmax-bandwidth-kbps = 450\n",
    );
    let (fx, file) = fixture("opus");
    // MP3 at 128 kbit/s: a constant rate, frame by frame, that the server measures closely.
    let (mp3, mp3_file) = fixture("mp3");
    // Two mounts; the first one's source leaves and it is held in its grace period.
    let first = ffmpeg_push(&agora, &file, "/one.opus", fx.muxer, false);
    let _two = ffmpeg_push(&agora, &mp3_file, "/two.mp3", mp3.muxer, false);
    agora.wait_mount("/one.opus");
    agora.wait_mount("/two.mp3");
    drop(first);
    agora.wait_log(&["source gone; holding listeners", "/one.opus"]);
    // A third mount would be one too many, held or not.
    let (_s, head) = raw_source(
        agora.addr,
        "/three.opus",
        "SOURCE",
        &[("Content-Type", "audio/ogg")],
    );
    assert!(head.starts_with("HTTP/1.0 503"), "{head}");
    assert!(agora.log_has(&["max-mounts", "/three.opus"]));
    // The held mount takes its source back.
    let _back = ffmpeg_push(&agora, &file, "/one.opus", fx.muxer, false);
    wait_until("the source back", Duration::from_secs(30), || {
        agora
            .log()
            .lines()
            .filter(|l| l.contains("source connected") && l.contains("/one.opus"))
            .count()
            == 2
    });

    // 128 kbit/s a listener, 450 kbit/s for the mount: three fit, the fourth is refused.
    wait_until("a measured bitrate", Duration::from_secs(30), || {
        let (_, _, m) = http_get(agora.addr, "/metrics", &[]);
        String::from_utf8_lossy(&m).lines().any(|l| {
            l.starts_with("agora_mount_ingest_bitrate_bits_per_second{")
                && l.contains("/two.mp3")
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) > Some(110_000.0)
        })
    });
    let held: Vec<(TcpStream, String)> = (0..3)
        .map(|_| open_listener(agora.addr, "/two.mp3"))
        .collect();
    assert!(held.iter().all(|(_, h)| h.starts_with("HTTP/1.0 200")));
    let (_fourth, head) = open_listener(agora.addr, "/two.mp3");
    assert!(head.starts_with("HTTP/1.0 503"), "{head}\n{}", agora.log());
    assert!(agora.log_has(&["Bandwidth limit reached for this mount", "/two.mp3"]));
}
