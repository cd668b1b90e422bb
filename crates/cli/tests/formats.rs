//! Every format, pushed by a real source client to the real server, joined mid-stream by a
//! real player that must decode from its first byte.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::*;

/// Push with ffmpeg, join mid-stream, decode 5 s, check status and headers.
fn push_and_join(name: &str, mount: &str, content_type: &str, legacy: bool) {
    let agora = Agora::start();
    let (fx, file) = fixture(name);
    let _src = ffmpeg_push(&agora, &file, mount, fx.muxer, legacy);
    agora.wait_mount(mount);
    // The stream has flowed for a while: a join now is a mid-stream join.
    let head = read_stream_bytes(agora.addr, mount, 40 * 1024);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {content_type}\r\n")),
        "{head}"
    );
    assert!(head.contains("icy-name:Agora test\r\n"), "{head}");
    assert!(
        head.contains("Access-Control-Allow-Origin: *\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );

    // A listener held open shows in the status JSON.
    let mut held = TcpStream::connect(agora.addr).expect("connect");
    held.write_all(request("GET", mount, &[]).as_bytes())
        .expect("send");
    let mut first = [0u8; 1];
    held.read_exact(&mut first).expect("first byte");
    agora.wait_status("one listener", |a| a.listeners(mount) == 1);
    let src = agora.source(mount).expect("mount in status");
    assert_eq!(src["server_type"], content_type);
    assert_eq!(src["server_name"], "Agora test");
    assert_eq!(src["genre"], "Test");
    assert!(
        src["stream_start_iso8601"]
            .as_str()
            .is_some_and(|s| s.len() >= 20)
    );
    drop(held);

    assert_decodes(&agora.url(mount), 5);
}

#[test]
fn ffmpeg_put_ogg_vorbis() {
    push_and_join("vorbis", "/vorbis.ogg", "audio/ogg", false);
}

#[test]
fn ffmpeg_put_ogg_opus() {
    push_and_join("opus", "/opus.ogg", "audio/ogg", false);
}

#[test]
fn ffmpeg_put_ogg_theora_vorbis() {
    push_and_join("theora", "/theora.ogg", "video/ogg", false);
}

#[test]
fn ffmpeg_put_webm_vp8_opus() {
    push_and_join("webm", "/live.webm", "video/webm", false);
}

#[test]
fn ffmpeg_put_mp3() {
    push_and_join("mp3", "/live.mp3", "audio/mpeg", false);
}

#[test]
fn ffmpeg_put_aac() {
    push_and_join("aac", "/live.aac", "audio/aac", false);
}

#[test]
fn ffmpeg_legacy_source_mp3() {
    push_and_join("mp3", "/legacy.mp3", "audio/mpeg", true);
}

#[test]
fn ffmpeg_legacy_source_ogg_vorbis() {
    push_and_join("vorbis", "/legacy.ogg", "audio/ogg", true);
}

/// oggfwd (libshout): OPTIONS probe, unauthenticated SOURCE probe, then the real request.
fn oggfwd_push(name: &str, mount: &str, content_type: &str) {
    let agora = Agora::start();
    let (_, file) = fixture(name);
    let port = agora.addr.port().to_string();
    let _src = Proc::spawn(Command::new("sh").arg("-c").arg(format!(
        "exec oggfwd -n 'oggfwd test' -g Talks 127.0.0.1 {port} {SOURCE_PW} {mount} < '{}'",
        file.display()
    )));
    agora.wait_mount(mount);
    let head = read_stream_bytes(agora.addr, mount, 40 * 1024);
    assert!(
        head.contains(&format!("Content-Type: {content_type}\r\n")),
        "{head}"
    );
    assert!(head.contains("icy-name:oggfwd test\r\n"), "{head}");
    assert_decodes(&agora.url(mount), 5);
}

#[test]
fn oggfwd_pushes_ogg_vorbis() {
    oggfwd_push("vorbis", "/oggfwd.ogg", "audio/ogg");
}

#[test]
fn oggfwd_pushes_ogg_theora() {
    oggfwd_push("theora", "/oggfwd-video.ogg", "video/ogg");
}

/// ezstream 1.0.2 with Debian's libshout 2.4.6 crashes (SIGSEGV, client side, before sending
/// a byte) on ffmpeg's Ogg Opus files, so it pushes Vorbis here; Opus is pushed by ffmpeg.
#[test]
fn ezstream_pushes_ogg_vorbis() {
    let agora = Agora::start();
    let (_, file) = fixture("vorbis");
    let dir = TempDir::new("ezstream");
    let cfg = dir.path().join("ezstream.xml");
    std::fs::write(
        &cfg,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server><protocol>HTTP</protocol><hostname>127.0.0.1</hostname>
    <port>{port}</port><password>{SOURCE_PW}</password><reconnect_attempts>1</reconnect_attempts></server></servers>
  <streams><stream><mountpoint>/ez.ogg</mountpoint><format>Ogg</format>
    <stream_name>ezstream test</stream_name></stream></streams>
  <intakes><intake><type>file</type><filename>{file}</filename></intake></intakes>
</ezstream>
"#,
            port = agora.addr.port(),
            file = file.display()
        ),
    )
    .expect("write ezstream config");
    // ezstream refuses configs readable by others (they hold a password).
    Command::new("chmod")
        .arg("600")
        .arg(&cfg)
        .status()
        .expect("chmod");
    let _src = Proc::spawn(Command::new("ezstream").arg("-c").arg(&cfg));
    agora.wait_mount("/ez.ogg");
    let head = read_stream_bytes(agora.addr, "/ez.ogg", 30 * 1024);
    assert!(head.contains("Content-Type: audio/ogg\r\n"), "{head}");
    assert_decodes(&agora.url("/ez.ogg"), 5);
}

/// ICY metadata on MP3: `icy-metaint`, then a block every 16000 bytes, the title once set.
#[test]
fn icy_metadata_interleaved_on_mp3() {
    let agora = Agora::start();
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/icy.mp3", fx.muxer, false);
    agora.wait_mount("/icy.mp3");
    let (code, _, body) = http_get(
        agora.addr,
        "/admin/metadata?mount=/icy.mp3&mode=updinfo&song=Keynote%20-%20Opening",
        &[(
            "Authorization",
            &format!("Basic {}", b64(&format!("admin:{ADMIN_PW}"))),
        )],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (head, body) = read_icy(agora.addr, "/icy.mp3", 40_000);
    assert!(head.contains("icy-metaint:16000\r\n"), "{head}");
    let len = body[16000] as usize * 16;
    let block = String::from_utf8_lossy(&body[16001..16001 + len]).to_string();
    assert!(
        block.starts_with("StreamTitle='Keynote - Opening';"),
        "{block:?}"
    );
    // Unchanged title: the next block is a single zero byte.
    assert_eq!(body[16001 + len + 16000], 0);
    assert_eq!(
        agora.source("/icy.mp3").expect("mount")["title"],
        "Keynote - Opening"
    );
}
