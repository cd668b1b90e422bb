//! Live reload (SIGHUP): a new configuration file applied while sources and listeners stay
//! connected, a broken one refused whole, relays started and stopped to match the file.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// The status line's code of a source's `PUT` to `mount` with `password`, and the head.
fn source_answer(addr: SocketAddr, mount: &str, password: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = format!("Basic {}", b64(&format!("source:{password}")));
    let req = request(
        "PUT",
        mount,
        &[("Authorization", &auth), ("Content-Type", "audio/mpeg")],
    )
    .replace("HTTP/1.0", "HTTP/1.1");
    s.write_all(req.as_bytes()).expect("send head");
    let head = read_head(&mut s);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head)
}

/// The configuration of the test, in three versions: `relay` relays `/b.mp3` of the server
/// itself into `/copy.mp3`.
fn config(source_pw: &str, name: &str, max_listeners: u32, relay: Option<SocketAddr>) -> String {
    let mut toml = format!(
        "[auth]\nsource-password = \"{source_pw}\"\nadmin-password = \"{ADMIN_PW}\"\n\n\
         [[mount]]\npath = \"/live.ogg\"\nstream-name = \"{name}\"\nmax-listeners = {max_listeners}\n"
    );
    if let Some(addr) = relay {
        toml.push_str(&format!(
            "\n[[relay]]\nupstream = \"http://{addr}/b.mp3\"\nmount = \"/copy.mp3\"\n"
        ));
    }
    toml
}

/// `/live.ogg`'s stream name in the status JSON.
fn name(agora: &Agora) -> serde_json::Value {
    agora.source("/live.ogg").expect("the mount is live")["server_name"].clone()
}

fn reload(agora: &Agora, toml: &str, times: &mut usize, outcome: &str) {
    std::fs::write(agora.config_path(), toml).expect("rewrite the configuration");
    send_signal(agora.pid(), "HUP");
    *times += 1;
    let want = *times;
    wait_until(
        &format!("reload {want} to be answered ({outcome})"),
        Duration::from_secs(30),
        || {
            agora
                .log()
                .lines()
                .filter(|l| l.contains("SIGHUP:"))
                .count()
                >= want
        },
    );
}

#[test]
fn a_reload_applies_the_new_file_and_keeps_sources_and_listeners() {
    let agora = Agora::start_with(&config(SOURCE_PW, "Before", 5, None), &[], &[]);
    let addr = agora.addr;
    let (ogg, ogg_file) = fixture("vorbis");
    let (mp3, mp3_file) = fixture("mp3");
    let _live = ffmpeg_push(&agora, &ogg_file, "/live.ogg", ogg.muxer, false);
    let _b = ffmpeg_push(&agora, &mp3_file, "/b.mp3", mp3.muxer, false);
    agora.wait_mount("/live.ogg");
    agora.wait_mount("/b.mp3");
    assert_eq!(name(&agora), "Before");

    // A listener decoding 15 s across every reload below.
    let url = agora.url("/live.ogg");
    let listener = std::thread::spawn(move || assert_decodes(&url, 15));
    agora.wait_status("the listener", |a| a.listeners("/live.ogg") == 1);

    // New password, stream name, a listener limit under the listeners there are, a relay.
    let mut reloads = 0;
    reload(
        &agora,
        &config("second-pw", "After", 1, Some(addr)),
        &mut reloads,
        "applied",
    );
    assert!(
        agora.log_has(&["SIGHUP: configuration reloaded", "links_started=1"]),
        "{}",
        agora.log()
    );
    assert_eq!(name(&agora), "After");
    // The source that logged in with the old password is still live; new sources need the
    // new one.
    assert_eq!(source_answer(addr, "/new.mp3", SOURCE_PW).0, 401);
    let (code, head) = source_answer(addr, "/new.mp3", "second-pw");
    assert_eq!(code, 200, "{head}");
    // The limit holds for new listeners; the one there stays.
    let (code, head, _) = http_get(addr, "/live.ogg", &[]);
    assert_eq!(code, 503, "{head}");
    // The relay the file added runs: its mount decodes.
    agora.wait_mount("/copy.mp3");
    assert_decodes(&agora.url("/copy.mp3"), 3);

    // A file with an error: refused with the reason, nothing changed.
    reload(
        &agora,
        "[[mount]]\npath = \"/live.ogg\"\nmax-listeners = \"many\"\n",
        &mut reloads,
        "refused",
    );
    assert!(
        agora.log_has(&["reload refused", "max-listeners"]),
        "{}",
        agora.log()
    );
    assert_eq!(source_answer(addr, "/other.mp3", "second-pw").0, 200);
    assert_eq!(name(&agora), "After");
    assert!(
        agora.source("/copy.mp3").is_some(),
        "{:#?}",
        agora.sources()
    );

    // The relay taken out of the file: stopped; everything else as it was.
    reload(
        &agora,
        &config("second-pw", "After", 1, None),
        &mut reloads,
        "applied",
    );
    agora.wait_log(&["relay /copy.mp3", "stopped"]);
    assert!(
        agora.log_has(&["SIGHUP: configuration reloaded", "links_stopped=1"]),
        "{}",
        agora.log()
    );

    listener
        .join()
        .expect("the listener decoded throughout the reloads");
    assert!(agora.source("/live.ogg").is_some(), "the source stayed");
}

#[test]
fn a_reload_changes_the_limits_and_names_what_waits() {
    let agora = Agora::start_with_config("[[mount]]\npath = \"/live.mp3\"\nqueue-size = 524288\n");
    let addr = agora.addr;
    let (mp3, mp3_file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &mp3_file, "/live.mp3", mp3.muxer, false);
    agora.wait_mount("/live.mp3");
    let (_first, head) = open_listener(addr, "/live.mp3");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");

    let mut reloads = 0;
    reload(
        &agora,
        "[server]\nbacklog = 100\nmax-listeners-per-ip = 1\nmax-login-failures = 2\n\n\
         [[mount]]\npath = \"/live.mp3\"\nqueue-size = 262144\n",
        &mut reloads,
        "applied",
    );
    // What a reload cannot do without closing sockets, and what waits for the next source.
    agora.wait_log(&["not applied yet", "[server] backlog"]);
    assert!(
        agora.log_has(&[
            "not applied yet",
            "/live.mp3 queue-size (from its next source)"
        ]),
        "{}",
        agora.log()
    );
    // Still serving where it was; the new per-address limit holds for a second listener.
    let (code, head, _) = http_get(addr, "/live.mp3", &[]);
    assert_eq!(code, 429, "{head}");
    // Two wrong passwords and the address is refused for a while.
    for _ in 0..2 {
        assert_eq!(source_answer(addr, "/x.mp3", "wrong").0, 401);
    }
    assert_eq!(source_answer(addr, "/x.mp3", SOURCE_PW).0, 429);
}
