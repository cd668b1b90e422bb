//! Pull relays (#11): an edge `agora serve` with `[[relay]]` tables pulls mounts of an origin
//! `agora serve`, real processes over real sockets, and its listeners get streams that decode.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;

fn relays(origin: &Agora, mounts: &[&str], extra: &str) -> String {
    let mut cfg = String::from(extra);
    for m in mounts {
        cfg.push_str(&format!("\n[[relay]]\nupstream = \"{}\"\n", origin.url(m)));
    }
    cfg
}

fn admin_auth() -> String {
    format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")))
}

/// Read a listener's stream (asking for ICY metadata) until `needle` shows up in it.
fn icy_stream_contains(addr: std::net::SocketAddr, mount: &str, needle: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request("GET", mount, &[("Icy-MetaData", "1")]).as_bytes())
        .expect("send");
    let head = read_head(&mut s);
    assert!(head.contains("icy-metaint:"), "{head}");
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    // Two metadata intervals of 128 kbit/s MP3 are about two seconds.
    while got.len() < 400_000 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

#[test]
fn an_edge_serves_the_origins_mounts_and_titles() {
    let origin = Agora::start();
    let mut sources = Vec::new();
    for (name, mount) in [("mp3", "/r.mp3"), ("theora", "/r.ogg"), ("webm", "/r.webm")] {
        let (f, path) = fixture(name);
        sources.push(ffmpeg_push(&origin, &path, mount, f.muxer, false));
        origin.wait_mount(mount);
    }
    let edge = Agora::start_with_config(&relays(&origin, &["/r.mp3", "/r.ogg", "/r.webm"], ""));
    for m in ["/r.mp3", "/r.ogg", "/r.webm"] {
        edge.wait_status(&format!("{m} relayed and connected"), |a| {
            a.source(m)
                .is_some_and(|s| s["server_type"].as_str() != Some("application/octet-stream"))
        });
        // A listener of the edge joins mid-stream and decodes from its first byte.
        assert_decodes(&edge.url(m), 4);
    }
    // The origin's stream information came along.
    let src = edge.source("/r.ogg").expect("relayed mount");
    assert_eq!(src["server_name"], "Agora test", "{src}");
    assert_eq!(src["subtype"], "Theora/Vorbis", "{src}");

    // A title set on the origin reaches the edge's status and its ICY listeners (the edge
    // asked the origin for ICY metadata and turned it into its own title).
    let (code, _, body) = http_get(
        origin.addr,
        "/admin/metadata?mount=/r.mp3&mode=updinfo&song=Opening+keynote",
        &[("Authorization", &admin_auth())],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    edge.wait_status("the origin's title on the edge", |a| {
        a.source("/r.mp3")
            .is_some_and(|s| s["title"] == "Opening keynote")
    });
    assert!(
        icy_stream_contains(edge.addr, "/r.mp3", b"StreamTitle='Opening keynote';"),
        "an ICY listener of the edge did not get the title"
    );
    // The relay's connections are counted as relays in the edge's stats.
    let (_, _, body) = http_get(
        edge.addr,
        "/admin/stats.json",
        &[("Authorization", &admin_auth())],
    );
    let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
    assert_eq!(stats["icestats"]["source_relay_connections"], 3, "{stats}");
    drop(sources);
}

/// Bytes a listener receives, kept, read by a thread until the connection ends.
struct Capture {
    bytes: Arc<std::sync::Mutex<Vec<u8>>>,
    len: Arc<AtomicU64>,
}

impl Capture {
    fn start(addr: std::net::SocketAddr, mount: &str) -> (Capture, String) {
        let (mut s, head) = open_listener(addr, mount);
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let len = Arc::new(AtomicU64::new(0));
        let (b, l) = (bytes.clone(), len.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                b.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]);
                l.fetch_add(n as u64, Ordering::SeqCst);
            }
            l.fetch_or(1 << 63, Ordering::SeqCst);
        });
        (Capture { bytes, len }, head)
    }

    fn received(&self) -> u64 {
        self.len.load(Ordering::SeqCst) & !(1 << 63)
    }

    fn ended(&self) -> bool {
        self.len.load(Ordering::SeqCst) & (1 << 63) != 0
    }
}

#[test]
fn edge_listeners_stay_through_an_origin_restart_and_decode_across_it() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let origin = Agora::start_at(&listen, "");
    let (f, path) = fixture("vorbis");
    let source = ffmpeg_push(&origin, &path, "/talk.ogg", f.muxer, false);
    origin.wait_mount("/talk.ogg");
    let edge = Agora::start_with_config(&relays(
        &origin,
        &["/talk.ogg"],
        "[mount-defaults]\ngrace-period-secs = 30\n",
    ));
    edge.wait_log(&["relay connected", "/talk.ogg"]);
    let (listener, head) = Capture::start(edge.addr, "/talk.ogg");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    // The fixture is a sine tone: ~1.7 KB/s of Vorbis, after 3.2 KB of headers.
    wait_until(
        "the edge listener to stream",
        Duration::from_secs(30),
        || listener.received() > 10_000,
    );

    // The origin goes away, source and all.
    drop(source);
    drop(origin);
    edge.wait_log(&["relay: ", "/talk.ogg"]);
    let before = listener.received();
    assert!(
        !listener.ended(),
        "the edge listener was dropped with the upstream"
    );

    // ... and comes back on the same address, with its source, within the grace period.
    let origin = Agora::start_at(&listen, "");
    let _source = ffmpeg_push(&origin, &path, "/talk.ogg", f.muxer, false);
    origin.wait_mount("/talk.ogg");
    wait_until("the relay to reconnect", Duration::from_secs(30), || {
        edge.log()
            .lines()
            .filter(|l| l.contains("relay connected"))
            .count()
            >= 2
    });
    wait_until(
        "the held listener to get the new stream",
        Duration::from_secs(30),
        || listener.received() > before + 10_000,
    );
    assert!(!listener.ended());

    // Everything it received, across the restart (a new Ogg chain with its headers), decodes.
    let dir = TempDir::new("agora-relay");
    let file = dir.path().join("edge.ogg");
    let bytes = listener
        .bytes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    std::fs::write(&file, &bytes).expect("write capture");
    assert_eq!(decode_errors(&file), "", "the edge listener's stream");
    assert!(probe_duration(file.to_str().expect("path")) > 2.0);
}

#[test]
fn a_failing_or_refusing_upstream_is_retried_and_logged_once_per_state() {
    let origin = Agora::start();
    // An upstream that accepts connections and hangs up at once (a network failure, retried
    // with the short backoff): the test counts the relay's attempts as they come.
    let flaky = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let flaky_addr = flaky.local_addr().expect("addr");
    let attempts = Arc::new(AtomicU64::new(0));
    {
        let attempts = attempts.clone();
        std::thread::spawn(move || {
            for conn in flaky.incoming() {
                drop(conn);
                attempts.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let cfg = format!(
        "[[relay]]\nupstream = \"{}\"\n\n[[relay]]\nupstream = \"http://{flaky_addr}/flaky.ogg\"\n",
        origin.url("/missing.ogg")
    );
    let edge = Agora::start_with_config(&cfg);
    // The origin has no such mount: 404, logged as a refusal (retried every 30 s).
    edge.wait_log(&["relay: ", "/missing.ogg", "404"]);
    wait_until(
        "three attempts at the flaky upstream",
        Duration::from_secs(30),
        || attempts.load(Ordering::SeqCst) >= 3,
    );
    let log = edge.log();
    let lines = |needle: &str| {
        log.lines()
            .filter(|l| l.contains("relay: ") && l.contains(needle))
            .count()
    };
    assert_eq!(
        lines("/flaky.ogg"),
        1,
        "one line for three failures alike:\n{log}"
    );
    assert_eq!(lines("/missing.ogg"), 1, "{log}");
    // No mount is made for a relay that never got a stream.
    assert!(edge.source("/flaky.ogg").is_none() && edge.source("/missing.ogg").is_none());
}
