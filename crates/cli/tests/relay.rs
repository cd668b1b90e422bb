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
    // Operators see each relay: its upstream (no credentials), state, connections, bytes.
    let (code, _, body) = http_get(
        edge.addr,
        "/admin/relays.json",
        &[("Authorization", &admin_auth())],
    );
    assert_eq!(code, 200);
    let board: serde_json::Value = serde_json::from_slice(&body).expect("relays JSON");
    let rows = board["relays"].as_array().expect("a list");
    assert_eq!(rows.len(), 3, "{board}");
    for r in rows {
        assert_eq!(r["kind"], "pull", "{r}");
        assert_eq!(r["state"], "connected", "{r}");
        assert_eq!(r["connections"], 1, "{r}");
        assert!(r["bytes"].as_u64().is_some_and(|b| b > 0), "{r}");
        assert!(
            r["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("http://127.0.0.1:"))
        );
    }
    let (code, _, _) = http_get(edge.addr, "/admin/relays", &[]);
    assert_eq!(code, 401, "the relay board is the admin's");
    let (_, _, body) = http_get(edge.addr, "/metrics", &[]);
    let metrics = String::from_utf8_lossy(&body);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("agora_relay_connected{")
                && l.contains("mount=\"/r.mp3\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
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

/// `[master]`: an edge follows an origin's mount list (with the origin's relay user), relays
/// each mount, picks up a new one and drops an ended one. The relay user lists mounts and can
/// do nothing else.
#[test]
fn a_master_is_followed_new_mounts_picked_up_ended_ones_dropped() {
    let origin = Agora::start_with_config(
        "[auth]\nrelay-password = \"relay-pw\"\n[mount-defaults]\ngrace-period-secs = 1\n",
    );
    let relay_auth = format!("Basic {}", b64("relay:relay-pw"));
    let (code, _, _) = http_get(origin.addr, "/admin/streamlist.txt", &[]);
    assert_eq!(code, 401);
    let (code, _, _) = http_get(
        origin.addr,
        "/admin/stats",
        &[("Authorization", &relay_auth)],
    );
    assert_eq!(code, 401, "the relay user may list mounts, nothing more");

    let (mp3, mp3_path) = fixture("mp3");
    let (vorbis, vorbis_path) = fixture("vorbis");
    let (opus, opus_path) = fixture("opus");
    let _a = ffmpeg_push(&origin, &mp3_path, "/a.mp3", mp3.muxer, false);
    let b = ffmpeg_push(&origin, &vorbis_path, "/b.ogg", vorbis.muxer, false);
    origin.wait_mount("/a.mp3");
    origin.wait_mount("/b.ogg");
    let (code, _, body) = http_get(
        origin.addr,
        "/admin/streamlist.txt",
        &[("Authorization", &relay_auth)],
    );
    assert_eq!(code, 200);
    assert_eq!(String::from_utf8_lossy(&body), "/a.mp3\n/b.ogg\n");

    let edge = Agora::start_with_config(&format!(
        "[master]\nurl = \"http://relay:relay-pw@{}/\"\ninterval-secs = 1\n\
         [mount-defaults]\ngrace-period-secs = 1\n",
        origin.addr
    ));
    edge.wait_mount("/a.mp3");
    edge.wait_mount("/b.ogg");
    assert_decodes(&edge.url("/a.mp3"), 3);
    // On the origin the edge is a relay, not a viewer.
    let relays_of = |mount: &str| -> (u64, u64) {
        let (_, _, body) = http_get(
            origin.addr,
            "/admin/stats.json",
            &[("Authorization", &admin_auth())],
        );
        let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats");
        let src = stats["icestats"]["source"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["mount"] == mount).cloned())
            .unwrap_or_default();
        (
            src["relays"].as_u64().unwrap_or(0),
            src["listeners"].as_u64().unwrap_or(99),
        )
    };
    wait_until(
        "the edge counted as a relay",
        Duration::from_secs(20),
        || relays_of("/a.mp3") == (1, 0),
    );

    // A new mount on the origin appears on the edge.
    let _c = ffmpeg_push(&origin, &opus_path, "/c.opus", opus.muxer, false);
    edge.wait_mount("/c.opus");
    assert_decodes(&edge.url("/c.opus"), 3);

    // A mount that ends on the origin ends on the edge.
    drop(b);
    edge.wait_status("/b.ogg to end on the edge", |a| {
        a.source("/b.ogg").is_none()
    });
    edge.wait_log(&["master no longer lists the mount", "/b.ogg"]);
    assert!(edge.source("/a.mp3").is_some() && edge.source("/c.opus").is_some());

    // Wrong relay credentials: refused, said once.
    let wrong = Agora::start_with_config(&format!(
        "[master]\nurl = \"http://relay:nope@{}/\"\ninterval-secs = 1\n",
        origin.addr
    ));
    wrong.wait_log(&["master: cannot list the mounts", "401"]);
}

/// Titles that a source client writes inside an Ogg stream (the Vorbis comments of each new
/// chain, as ezstream sends a playlist's files) become the mount's title, on the origin and,
/// through a relay, on an edge.
#[test]
fn ogg_titles_from_ezstream_reach_the_origin_and_an_edge() {
    let origin = Agora::start();
    let dir = TempDir::new("ezstream-titles");
    let tagged = |name: &str, secs: u32, tags: &[(&str, &str)]| {
        let path = dir.path().join(name);
        let mut cmd = std::process::Command::new("ffmpeg");
        cmd.args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("sine=f=330:d={secs}"))
            .args(["-c:a", "libvorbis", "-q:a", "1"]);
        for (k, v) in tags {
            cmd.args(["-metadata", &format!("{k}={v}")]);
        }
        let out = cmd.arg(&path).output().expect("ffmpeg");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    };
    let first = tagged(
        "first.ogg",
        3,
        &[("artist", "Jane Doe"), ("title", "First talk")],
    );
    let second = tagged("second.ogg", 40, &[("title", "Second talk")]);
    let list = dir.path().join("playlist.txt");
    std::fs::write(
        &list,
        format!("{}\n{}\n", first.display(), second.display()),
    )
    .expect("playlist");
    let cfg = dir.path().join("ezstream.xml");
    std::fs::write(
        &cfg,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server><protocol>HTTP</protocol><hostname>127.0.0.1</hostname>
    <port>{port}</port><password>{SOURCE_PW}</password><reconnect_attempts>1</reconnect_attempts></server></servers>
  <streams><stream><mountpoint>/titled.ogg</mountpoint><format>Ogg</format></stream></streams>
  <intakes><intake><type>playlist</type><filename>{list}</filename></intake></intakes>
</ezstream>
"#,
            port = origin.addr.port(),
            list = list.display()
        ),
    )
    .expect("write ezstream config");
    // ezstream refuses configs readable by others (they hold a password).
    std::process::Command::new("chmod")
        .arg("600")
        .arg(&cfg)
        .status()
        .expect("chmod");
    let _src = Proc::spawn(std::process::Command::new("ezstream").arg("-c").arg(&cfg));
    origin.wait_mount("/titled.ogg");
    origin.wait_status("the first file's tags as the title", |a| {
        a.source("/titled.ogg")
            .is_some_and(|s| s["title"] == "Jane Doe - First talk")
    });
    let edge = Agora::start_with_config(&relays(&origin, &["/titled.ogg"], ""));
    origin.wait_status("the second file's title", |a| {
        a.source("/titled.ogg")
            .is_some_and(|s| s["title"] == "Second talk")
    });
    edge.wait_status("the title on the edge", |a| {
        a.source("/titled.ogg")
            .is_some_and(|s| s["title"] == "Second talk")
    });
    assert_decodes(&edge.url("/titled.ogg"), 3);
}

/// `[[push]]`: a mount forwarded to another Agora as its source; when that server goes away
/// and comes back, the push reconnects by itself and the target's listeners decode again.
#[test]
fn a_push_reconnects_to_a_target_that_comes_back() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let target = Agora::start_at(&listen, "");
    let origin = Agora::start_with_config(&format!(
        "[[push]]\nmount = \"/up.ogg\"\ntarget = \"http://source:{SOURCE_PW}@{listen}/up.ogg\"\n"
    ));
    let (f, path) = fixture("vorbis");
    let _src = ffmpeg_push(&origin, &path, "/up.ogg", f.muxer, false);
    origin.wait_mount("/up.ogg");
    target.wait_mount("/up.ogg");
    assert_decodes(&target.url("/up.ogg"), 3);
    origin.wait_log(&["push: pushing", "/up.ogg"]);

    drop(target);
    origin.wait_log(&["push: target lost", "/up.ogg"]);
    let target = Agora::start_at(&listen, "");
    target.wait_mount("/up.ogg");
    assert_decodes(&target.url("/up.ogg"), 3);
    let pushing = origin
        .log()
        .lines()
        .filter(|l| l.contains("push: pushing"))
        .count();
    assert_eq!(
        pushing,
        2,
        "connected, lost, connected again:\n{}",
        origin.log()
    );
    // The board says so too, in Icecast's XML as well as JSON.
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let (_, _, body) = http_get(
        origin.addr,
        "/admin/relays.json",
        &[("Authorization", &auth)],
    );
    let board: serde_json::Value = serde_json::from_slice(&body).expect("relays JSON");
    let push = &board["relays"][0];
    assert_eq!(push["kind"], "push", "{board}");
    assert_eq!(push["connections"], 2, "{board}");
    assert_eq!(push["state"], "connected", "{board}");
    assert!(
        push["last_error"].is_string(),
        "the loss is remembered: {board}"
    );
    assert!(
        !push["peer"].as_str().unwrap_or("").contains(SOURCE_PW),
        "{board}"
    );
    let (_, _, body) = http_get(origin.addr, "/admin/relays", &[("Authorization", &auth)]);
    let xml = String::from_utf8_lossy(&body);
    assert!(
        xml.contains("<relay><bytes>") && xml.contains("<kind>push</kind>"),
        "{xml}"
    );
}

/// `on-demand = true`: the edge pulls from the origin only while someone listens (and
/// `linger-secs` after), and a new listener wakes it again.
#[test]
fn an_on_demand_relay_connects_only_for_its_listeners() {
    let origin = Agora::start();
    let (f, path) = fixture("mp3");
    let _src = ffmpeg_push(&origin, &path, "/od.mp3", f.muxer, false);
    origin.wait_mount("/od.mp3");
    let edge = Agora::start_with_config(&format!(
        "[mount-defaults]\ngrace-period-secs = 1\n\n[[relay]]\nupstream = \"{}\"\non-demand = true\nlinger-secs = 1\n",
        origin.url("/od.mp3")
    ));
    let board = |a: &Agora| -> serde_json::Value {
        let (_, _, body) = http_get(
            a.addr,
            "/admin/relays.json",
            &[("Authorization", &admin_auth())],
        );
        let b: serde_json::Value = serde_json::from_slice(&body).expect("relays JSON");
        b["relays"][0].clone()
    };
    // Nobody listens: the relay is idle, the origin has no listener, the edge no mount.
    wait_until("the relay to be idle", Duration::from_secs(20), || {
        board(&edge)["state"] == "idle (on demand)"
    });
    assert_eq!(origin.listeners("/od.mp3"), 0);
    assert!(edge.source("/od.mp3").is_none());

    // A listener asks: the edge connects upstream and the listener decodes.
    assert_decodes(&edge.url("/od.mp3"), 3);
    assert_eq!(board(&edge)["connections"], 1);
    // It left: after the linger the edge lets go of the origin.
    edge.wait_log(&["on-demand relay: no listener for 1 s; disconnected"]);
    wait_until(
        "the origin to lose its listener",
        Duration::from_secs(20),
        || origin.listeners("/od.mp3") == 0,
    );
    // The next listener wakes it again.
    assert_decodes(&edge.url("/od.mp3"), 3);
    assert_eq!(board(&edge)["connections"], 2);
}
