//! Every format, pushed by a real source client to the real server, joined mid-stream by a
//! real player that must decode from its first byte.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
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

/// The stream time an Ogg mount's listener has reached: the newest granule position of its
/// first Vorbis or Opus stream, in seconds (the audio of a Theora mount carries the clock too).
fn ogg_audio_seconds(pages: &[u8]) -> Option<f64> {
    let (mut rate, mut serial, mut newest) = (None, None, None::<i64>);
    let mut at = 0;
    while at + 27 <= pages.len() && &pages[at..at + 4] == b"OggS" {
        let segs = usize::from(pages[at + 26]);
        let Some(lacing) = pages.get(at + 27..at + 27 + segs) else {
            break;
        };
        let body = at + 27 + segs;
        let len = lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
        let Some(packet) = pages.get(body..body + len) else {
            break;
        };
        let granule = i64::from_le_bytes(
            pages[at + 6..at + 14]
                .try_into()
                .expect("slice of its length"),
        );
        let page_serial = u32::from_le_bytes(
            pages[at + 14..at + 18]
                .try_into()
                .expect("slice of its length"),
        );
        if rate.is_none() {
            if packet.starts_with(b"\x01vorbis") && packet.len() >= 16 {
                rate = Some(u32::from_le_bytes(
                    packet[12..16].try_into().expect("slice of its length"),
                ));
                serial = Some(page_serial);
            } else if packet.starts_with(b"OpusHead") {
                rate = Some(48_000);
                serial = Some(page_serial);
            }
        } else if serial == Some(page_serial) && granule > 0 {
            newest = Some(granule);
        }
        at = body + len;
    }
    Some(newest? as f64 / f64::from(rate?))
}

/// Waits until the mount's stream has run `seconds` on its own timeline (granule positions),
/// so that a listener joining next joins that far into the stream.
fn wait_stream_time(agora: &Agora, mount: &str, seconds: f64) {
    let mut s = TcpStream::connect(agora.addr).expect("connect");
    s.write_all(request("GET", mount, &[]).as_bytes())
        .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{mount} never reached {seconds} s"
        );
        let n = s.read(&mut buf).expect("read stream");
        assert!(n > 0, "{mount} ended before {seconds} s");
        got.extend_from_slice(&buf[..n]);
        let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        if ogg_audio_seconds(&got[p + 4..]).is_some_and(|t| t >= seconds) {
            return;
        }
    }
}

/// Seconds of audio in a WAV file VLC's `afile` output is still writing (its header's sizes
/// are written at the end: the length comes from the file's size and the format fields).
fn wav_seconds(path: &std::path::Path) -> f64 {
    let Ok(wav) = std::fs::read(path) else {
        return 0.0;
    };
    if wav.len() < 44 || &wav[..4] != b"RIFF" {
        return 0.0;
    }
    let channels = f64::from(u16::from_le_bytes([wav[22], wav[23]]));
    let rate = f64::from(u32::from_le_bytes(
        wav[24..28].try_into().expect("slice of its length"),
    ));
    let bits = f64::from(u16::from_le_bytes([wav[34], wav[35]]));
    let per_second = channels * rate * bits / 8.0;
    if per_second == 0.0 {
        return 0.0;
    }
    (wav.len() - 44) as f64 / per_second
}

/// VLC (3.0, the player most viewers have) joins an Ogg mount well into the stream and plays
/// it: run as `nobody` (VLC refuses root), its audio written by the `afile` output, it must
/// keep running until it has played 6 s, without its input reaching an end. #14 reported VLC
/// giving up on such joins ("EOF reached" within a second); this pins that it does not.
fn vlc_plays_a_join_well_into(name: &str, mount: &str, video: bool) {
    let agora = Agora::start();
    let (fx, file) = fixture(name);
    let _src = ffmpeg_push(&agora, &file, mount, fx.muxer, false);
    agora.wait_mount(mount);
    wait_stream_time(&agora, mount, 20.0);

    let dir = TempDir::new("agora-vlc");
    let wav = dir.path().join("out.wav");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let log = std::fs::File::create(dir.path().join("vlc.log")).expect("log file");
    let mut vlc = Command::new("runuser");
    vlc.args(["-u", "nobody", "--", "cvlc", "-vv", "--play-and-exit"])
        .args(["--intf", "dummy", "--vout", "dummy", "--aout", "afile"])
        .arg("--audiofile-file")
        .arg(&wav)
        .arg(agora.url(mount))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let mut vlc = Proc(
        vlc.spawn()
            .expect("cvlc must be installed (scripts/install-deps)"),
    );
    let read_log = || std::fs::read_to_string(dir.path().join("vlc.log")).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while wav_seconds(&wav) < 6.0 {
        let exited = vlc.0.try_wait().expect("wait vlc");
        assert!(
            exited.is_none() && std::time::Instant::now() < deadline,
            "VLC played {:.1} s of {mount} joined 20 s in, then {}:\n{}",
            wav_seconds(&wav),
            if exited.is_some() {
                "exited"
            } else {
                "stalled"
            },
            tail(&read_log(), 40)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = read_log();
    // The stream's input never ended (a playlist or media library may log its own EOF, but
    // nothing is opened here except the mount).
    assert!(
        !text.contains("EOF reached"),
        "VLC's input ended:\n{}",
        tail(&text, 40)
    );
    assert!(
        text.contains("using demux module \"ogg\""),
        "{}",
        tail(&text, 40)
    );
    if video {
        assert!(
            text.contains("Received first picture"),
            "no picture decoded:\n{}",
            tail(&text, 40)
        );
    }
    drop(vlc);

    // ffmpeg decodes the same join cleanly.
    assert_decodes(&agora.url(mount), 5);
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn vlc_plays_ogg_vorbis_joined_20_s_in() {
    vlc_plays_a_join_well_into("vorbis", "/vlc-vorbis.ogg", false);
}

#[test]
fn vlc_plays_ogg_opus_joined_20_s_in() {
    vlc_plays_a_join_well_into("opus", "/vlc-opus.ogg", false);
}

#[test]
fn vlc_plays_ogg_theora_vorbis_joined_20_s_in() {
    vlc_plays_a_join_well_into("theora", "/vlc-theora.ogg", true);
}
