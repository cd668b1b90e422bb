//! Fallback mounts (#13 item 8): a mount whose source is gone past its grace period moves its
//! listeners to its fallback, and with `fallback-override` they come back when a source
//! returns; a player decodes across both moves. Formats must match: by name at
//! configuration time, by the live streams' bytes at run time. The slate a fallback names
//! may be a `loop-file` mount the server plays itself (every format, followed across its
//! passes), and a mount's `intro` goes to each new listener before the stream.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The admin's `Authorization` header value.
/// An admin command's JSON answer.
fn admin_json(agora: &Agora, path: &str) -> serde_json::Value {
    let auth = admin_auth();
    let (code, _, body) = http_get(agora.addr, path, &[("Authorization", &auth)]);
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("admin JSON")
}

/// Bytes the server sent to the listeners of `mount` (0 when it is absent).
fn bytes_sent(agora: &Agora, mount: &str) -> u64 {
    let stats = admin_json(agora, "/admin/stats.json");
    stats["icestats"]["source"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["mount"] == mount)
        .and_then(|s| s["total_bytes_sent"].as_u64())
        .unwrap_or(0)
}

/// Listeners of `mount` as `/admin/listmounts` counts them (0 when it is absent).
fn listeners_of(agora: &Agora, mount: &str) -> u64 {
    let list = admin_json(agora, "/admin/listmounts.json");
    list["icestats"]["source"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["mount"] == mount)
        .and_then(|s| s["listeners"].as_u64())
        .unwrap_or(0)
}

/// Wait until `mount` is live with its format known (its first bytes in).
fn wait_live(agora: &Agora, mount: &str) {
    agora.wait_status(&format!("{mount} live"), |a| {
        let list = admin_json(a, "/admin/listmounts.json");
        list["icestats"]["source"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["mount"] == mount && s["content-type"] != "")
    });
}

/// Push `file` in real time, looped for as long as the test needs it.
fn push_looped(agora: &Agora, file: &Path, mount: &str, muxer: &str) -> Proc {
    Proc::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(file)
            .args(["-c", "copy", "-f", muxer])
            .arg(agora.icecast_url(mount)),
    )
}

/// ffmpeg as a player of `url`: decoding for as long as the test lets it, errors on stderr.
fn player(url: &str) -> Proc {
    Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rw_timeout", "20000000", "-i"])
            .arg(url)
            .args(["-t", "600", "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ffmpeg"),
    )
}

/// Stop the player with SIGINT (it ends as a user's Ctrl-C ends it) and return what it
/// printed at `-v error`: empty when every byte it got decoded cleanly.
fn stop_player(mut p: Proc) -> String {
    assert!(
        p.0.try_wait().expect("try_wait").is_none(),
        "the player stopped by itself"
    );
    send_signal(p.0.id(), "INT");
    let _ = p.0.wait();
    let mut err = String::new();
    if let Some(mut e) = p.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// Wait until `mount` sent `more` bytes beyond `from` to its listeners: the stream flows.
fn wait_flowing(agora: &Agora, mount: &str, from: u64, more: u64) {
    agora.wait_status(&format!("{more} more bytes sent on {mount}"), |a| {
        bytes_sent(a, mount) >= from + more
    });
}

const CONFIG: &str = r#"
[[mount]]
path = "/live.opus"
fallback = "/standby.opus"
grace-period-secs = 1
"#;

/// A player on `/live.opus` when its source goes: after the grace period it is on
/// `/standby.opus` and keeps decoding; when the source is back it returns (fallback-override,
/// on by default), decoding across both moves without an error.
#[test]
fn listeners_move_to_the_fallback_and_back_decoding_throughout() {
    let agora = Agora::start_with_config(CONFIG);
    let (_, opus) = fixture("opus");
    let _standby = push_looped(&agora, &opus, "/standby.opus", "ogg");
    let live = push_looped(&agora, &opus, "/live.opus", "ogg");
    wait_live(&agora, "/standby.opus");
    wait_live(&agora, "/live.opus");
    let listmounts = admin_json(&agora, "/admin/listmounts.json");
    let row = listmounts["icestats"]["source"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["mount"] == "/live.opus").cloned())
        .expect("listed");
    assert_eq!(row["fallback"], "/standby.opus", "{row}");

    let player = player(&agora.url("/live.opus"));
    agora.wait_status("the player on /live.opus", |a| {
        listeners_of(a, "/live.opus") == 1
    });
    wait_flowing(&agora, "/live.opus", 0, 80_000);

    // The source goes: after the grace period the player is on the fallback.
    drop(live);
    agora.wait_status("the player moved to /standby.opus", |a| {
        a.source("/live.opus").is_none() && listeners_of(a, "/standby.opus") == 1
    });
    agora.wait_log(&[
        "listeners moved to the fallback",
        "/live.opus",
        "/standby.opus",
    ]);
    let sent = bytes_sent(&agora, "/standby.opus");
    wait_flowing(&agora, "/standby.opus", sent, 40_000);

    // The source is back: the player returns to it.
    let _live = push_looped(&agora, &opus, "/live.opus", "ogg");
    agora.wait_status("the player back on /live.opus", |a| {
        listeners_of(a, "/live.opus") == 1 && listeners_of(a, "/standby.opus") == 0
    });
    agora.wait_log(&["listeners return from the fallback", "/live.opus"]);
    wait_flowing(&agora, "/live.opus", 0, 80_000);

    let err = stop_player(player);
    assert!(
        err.trim().is_empty(),
        "the player could not decode across the moves:\n{err}"
    );
}

/// With `fallback-override = false` the listeners stay on the fallback when the source
/// returns (Icecast's default); new listeners of the mount get the source.
#[test]
fn without_override_listeners_stay_on_the_fallback() {
    let agora = Agora::start_with_config(&format!("{CONFIG}fallback-override = false\n"));
    let (_, opus) = fixture("opus");
    let _standby = push_looped(&agora, &opus, "/standby.opus", "ogg");
    let live = push_looped(&agora, &opus, "/live.opus", "ogg");
    wait_live(&agora, "/standby.opus");
    wait_live(&agora, "/live.opus");
    let (s, head) = open_listener(agora.addr, "/live.opus");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let first = Drain::spawn(s);
    drop(live);
    agora.wait_status("the listener moved to /standby.opus", |a| {
        listeners_of(a, "/standby.opus") == 1
    });
    let _live = push_looped(&agora, &opus, "/live.opus", "ogg");
    wait_live(&agora, "/live.opus");
    // A new listener of the source gets a burst and then live data: the source has been
    // back for seconds, longer than a return would take.
    let (s, head) = open_listener(agora.addr, "/live.opus");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let second = Drain::spawn(s);
    wait_flowing(&agora, "/live.opus", 0, 100_000);
    assert_eq!(listeners_of(&agora, "/standby.opus"), 1);
    assert_eq!(listeners_of(&agora, "/live.opus"), 1);
    let before = first.bytes();
    wait_until(
        "the first listener keeps receiving",
        Duration::from_secs(30),
        || first.bytes() > before + 20_000,
    );
    assert!(first.ended().is_none() && second.ended().is_none());
    assert!(!agora.log_has(&["listeners return from the fallback"]));
}

/// What `agora serve --check-config` says about a configuration (it must refuse it).
fn refused(toml: &str) -> String {
    let dir = TempDir::new("agora-fallback-check");
    let cfg = dir.path().join("agora.toml");
    std::fs::write(&cfg, toml).expect("config");
    let out = check_config(&cfg);
    assert!(!out.status.success(), "accepted:\n{toml}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A fallback to the mount itself, to an invalid path, of another format by name, or in a
/// loop is refused with words that say which mount and why; a chain is accepted.
#[test]
fn check_config_refuses_bad_fallbacks() {
    for (toml, says) in [
        (
            "[[mount]]\npath = \"/live.ogg\"\nfallback = \"/live.ogg\"\n",
            "mount /live.ogg: the fallback is the mount itself",
        ),
        (
            "[[mount]]\npath = \"/live.ogg\"\nfallback = \"standby.ogg\"\n",
            "mount /live.ogg: fallback \"standby.ogg\": a mount path starts with /",
        ),
        (
            "[[mount]]\npath = \"/live.ogg\"\nfallback = \"/admin/x.ogg\"\n",
            "mount /live.ogg: fallback \"/admin/x.ogg\"",
        ),
        (
            "[[mount]]\npath = \"/live.webm\"\nfallback = \"/standby.mp3\"\n",
            "mount /live.webm: fallback /standby.mp3 is another format",
        ),
        (
            "[[mount]]\npath = \"/a.ogg\"\nfallback = \"/b.ogg\"\n[[mount]]\npath = \"/b.ogg\"\nfallback = \"/a.ogg\"\n",
            "the fallbacks loop: /a.ogg -> /b.ogg -> /a.ogg",
        ),
    ] {
        let err = refused(toml);
        assert!(err.contains(says), "{toml}\n{err}");
    }
    let dir = TempDir::new("agora-fallback-ok");
    let cfg = dir.path().join("agora.toml");
    std::fs::write(
        &cfg,
        "[[mount]]\npath = \"/live.opus\"\nfallback = \"/standby.ogg\"\n[[mount]]\npath = \"/standby.ogg\"\nfallback = \"/slate\"\n",
    )
    .expect("config");
    let out = check_config(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fallback is live but carries another format (its name said nothing): the listeners
/// are not moved (they end with the mount, as without a fallback) and the log says why.
#[test]
fn a_fallback_of_another_format_is_refused_at_run_time() {
    let agora = Agora::start_with_config(
        "[[mount]]\npath = \"/live.opus\"\nfallback = \"/standby\"\ngrace-period-secs = 1\n",
    );
    let (_, opus) = fixture("opus");
    let (_, mp3) = fixture("mp3");
    let _standby = push_looped(&agora, &mp3, "/standby", "mp3");
    let live = push_looped(&agora, &opus, "/live.opus", "ogg");
    wait_live(&agora, "/standby");
    wait_live(&agora, "/live.opus");
    let (s, head) = open_listener(agora.addr, "/live.opus");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let listener = Drain::spawn(s);
    wait_flowing(&agora, "/live.opus", 0, 70_000);
    drop(live);
    wait_until("the listener's end", Duration::from_secs(30), || {
        listener.ended().is_some()
    });
    assert_eq!(listener.ended().as_deref(), Some("EOF"));
    agora.wait_log(&[
        "listeners not moved to the fallback",
        "/live.opus",
        "/standby",
        "another format",
    ]);
    assert_eq!(listeners_of(&agora, "/standby"), 0);
}

/// `/admin/fallbacks` sets a mount's fallback at run time (shown by listmounts), refuses one
/// of another format (409) or without the fallback's credentials (403); with
/// `fallback-when-full`, a listener beyond `max-listeners` is sent to the fallback.
#[test]
fn fallbacks_set_by_the_admin_and_when_full() {
    let agora = Agora::start_with_config(
        "[[mount]]\npath = \"/live.mp3\"\nmax-listeners = 1\nfallback-when-full = true\ngrace-period-secs = 1\n[[mount]]\npath = \"/other.mp3\"\npassword = \"other-pw\"\n",
    );
    let (_, mp3) = fixture("mp3");
    let (_, opus) = fixture("opus");
    let _standby = push_looped(&agora, &mp3, "/standby.mp3", "mp3");
    let _opus = push_looped(&agora, &opus, "/talk.opus", "ogg");
    let live = push_looped(&agora, &mp3, "/live.mp3", "mp3");
    for m in ["/standby.mp3", "/talk.opus", "/live.mp3"] {
        wait_live(&agora, m);
    }
    let auth = admin_auth();
    let set = |fallback: &str, auth: &str| {
        http_get(
            agora.addr,
            &format!("/admin/fallbacks?mount=/live.mp3&fallback={fallback}"),
            &[("Authorization", auth)],
        )
        .0
    };
    assert_eq!(set("/talk.opus", &auth), 409);
    // The mount's source may not send its listeners to a mount it is not the source of.
    assert_eq!(set("/other.mp3", &source_auth()), 403);
    assert_eq!(set("/standby.mp3", &auth), 200);
    let list = admin_json(&agora, "/admin/listmounts.json");
    let row = list["icestats"]["source"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["mount"] == "/live.mp3").cloned())
        .expect("listed");
    assert_eq!(row["fallback"], "/standby.mp3", "{row}");

    // Full: the second listener is served the fallback.
    let (s, head) = open_listener(agora.addr, "/live.mp3");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let first = Drain::spawn(s);
    let (s, head) = open_listener(agora.addr, "/live.mp3");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let second = Drain::spawn(s);
    agora.wait_status("one listener on each", |a| {
        listeners_of(a, "/live.mp3") == 1 && listeners_of(a, "/standby.mp3") == 1
    });
    agora.wait_log(&["mount full: listener sent to its fallback", "/live.mp3"]);

    // The source goes: the first listener follows to the fallback set by the admin.
    drop(live);
    agora.wait_status("both listeners on /standby.mp3", |a| {
        listeners_of(a, "/standby.mp3") == 2
    });
    let before = (first.bytes(), second.bytes());
    wait_until("both keep receiving", Duration::from_secs(30), || {
        first.bytes() > before.0 + 20_000 && second.bytes() > before.1 + 20_000
    });
}

/// A short (~3 s) file made by ffmpeg from lavfi sources into `dir`: the slates and intros of
/// the tests below.
fn media(dir: &TempDir, file: &str, args: &[&str]) -> std::path::PathBuf {
    let path = dir.path().join(file);
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .output()
        .expect("ffmpeg must be installed");
    assert!(
        out.status.success(),
        "making {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A 3-second sine (a slate's sound), encoded with `codec`.
fn tone(dir: &TempDir, file: &str, freq: u32, secs: u32, codec: &[&str]) -> std::path::PathBuf {
    let sine = format!("sine=f={freq}:d={secs}");
    let args: Vec<&str> = ["-f", "lavfi", "-i", sine.as_str()]
        .into_iter()
        .chain(codec.iter().copied())
        .collect();
    media(dir, file, &args)
}

/// The slate of a live mount is a `loop-file` mount: a player on `/live.opus` when its source
/// goes moves to `/slate.opus` (no source client: the server plays the 3-second file), keeps
/// decoding across more than two passes of the loop (each a new Ogg chain), and returns to
/// the live mount when its source is back, decoding throughout. A source client pushing to
/// the slate is refused with a reason.
#[test]
fn a_listener_follows_its_mount_to_a_looped_file_slate_and_back() {
    let dir = TempDir::new("agora-slate");
    let slate = tone(
        &dir,
        "slate.opus",
        660,
        3,
        &["-c:a", "libopus", "-b:a", "64k", "-f", "ogg"],
    );
    let slate_len = std::fs::metadata(&slate).expect("slate").len();
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/live.opus\"\nfallback = \"/slate.opus\"\ngrace-period-secs = 1\n[[mount]]\npath = \"/slate.opus\"\nloop-file = {:?}\n",
        slate.display().to_string()
    ));
    wait_live(&agora, "/slate.opus");
    agora.wait_log(&["loop-file playing", "/slate.opus"]);
    let (mut s, head) = raw_source(agora.addr, "/slate.opus", "SOURCE", &[]);
    assert!(head.starts_with("HTTP/1.0 409"), "{head}");
    let body = read_lenient(&mut s);
    assert!(
        String::from_utf8_lossy(&body).contains("the server plays a file into it"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    let (_, opus) = fixture("opus");
    let live = push_looped(&agora, &opus, "/live.opus", "ogg");
    wait_live(&agora, "/live.opus");
    let player = player(&agora.url("/live.opus"));
    agora.wait_status("the player on /live.opus", |a| {
        listeners_of(a, "/live.opus") == 1
    });
    wait_flowing(&agora, "/live.opus", 0, 80_000);

    drop(live);
    agora.wait_status("the player moved to /slate.opus", |a| {
        a.source("/live.opus").is_none() && listeners_of(a, "/slate.opus") == 1
    });
    // More than two passes of the file reach the player: it crosses two loop boundaries.
    let sent = bytes_sent(&agora, "/slate.opus");
    wait_flowing(&agora, "/slate.opus", sent, slate_len * 2 + slate_len / 4);

    let _live = push_looped(&agora, &opus, "/live.opus", "ogg");
    agora.wait_status("the player back on /live.opus", |a| {
        listeners_of(a, "/live.opus") == 1 && listeners_of(a, "/slate.opus") == 0
    });
    wait_flowing(&agora, "/live.opus", 0, 80_000);
    let err = stop_player(player);
    assert!(
        err.trim().is_empty(),
        "the player could not decode across the slate's loops and the moves:\n{err}"
    );
}

/// The bytes a mount has read from its source (for a loop-file mount: played so far).
fn bytes_read(agora: &Agora, mount: &str) -> u64 {
    let stats = admin_json(agora, "/admin/stats.json");
    stats["icestats"]["source"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["mount"] == mount)
        .and_then(|s| s["total_bytes_read"].as_u64())
        .unwrap_or(0)
}

/// Every format a loop-file plays: a listener of the mount decodes 8 seconds (more than two
/// passes of the 3-second file) without an error, and the file is paced in real time: two
/// passes take about two periods, neither a burst nor a crawl.
fn loop_file_plays(file: &str, mount: &str, args: &[&str]) {
    let dir = TempDir::new("agora-loop");
    let path = media(&dir, file, args);
    let len = std::fs::metadata(&path).expect("file").len();
    let started = std::time::Instant::now();
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"{mount}\"\nloop-file = {:?}\n",
        path.display().to_string()
    ));
    wait_live(&agora, mount);
    agora.wait_status("two passes played", |a| bytes_read(a, mount) >= 2 * len);
    let two_passes = started.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(12)).contains(&two_passes),
        "two passes of a 3 s file took {two_passes:?}"
    );
    // The media time ffmpeg reached, not only its silence: a stream a player stops following
    // (timestamps that go back, a chain it cannot take) ends the decode early without a word.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-rw_timeout", "20000000", "-i"])
        .arg(agora.url(mount))
        .args(["-t", "8", "-progress", "pipe:1", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{mount}: {err}"
    );
    let reached = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        reached >= 7_500_000,
        "{mount}: ffmpeg decoded {reached} µs of 8 s across the passes"
    );
}

/// The ffmpeg arguments that make each format's 3-second slate.
const MP3: &str = "-f lavfi -i sine=f=660:d=3 -c:a libmp3lame -b:a 128k";
const AAC: &str = "-f lavfi -i sine=f=660:d=3 -c:a aac -b:a 96k -f adts";
const VORBIS: &str = "-f lavfi -i sine=f=660:d=3 -c:a libvorbis -q:a 2";
const WEBM: &str = "-f lavfi -i testsrc=s=320x240:r=25:d=3 -f lavfi -i sine=f=660:d=3 \
    -c:v libvpx -deadline realtime -cpu-used 8 -b:v 300k -g 50 -c:a libopus -b:a 48k";

fn args(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn a_looped_mp3_file_decodes_across_passes() {
    loop_file_plays("slate.mp3", "/slate.mp3", &args(MP3));
}

#[test]
fn a_looped_aac_file_decodes_across_passes() {
    loop_file_plays("slate.aac", "/slate.aac", &args(AAC));
}

/// Each pass of a looped Ogg file reaches a listener as a chain of its own: a BOS page with
/// a serial the previous pass did not have, its headers again. (ffmpeg alone would not tell:
/// it also decodes a stream whose pages restart without a new BOS.)
#[test]
fn a_looped_ogg_vorbis_file_decodes_across_passes_each_a_new_chain() {
    loop_file_plays("slate.ogg", "/slate.ogg", &args(VORBIS));
    let dir = TempDir::new("agora-chains");
    let path = media(&dir, "slate.ogg", &args(VORBIS));
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/slate.ogg\"\nloop-file = {:?}\n",
        path.display().to_string()
    ));
    wait_live(&agora, "/slate.ogg");
    let (mut s, head) = open_listener(agora.addr, "/slate.ogg");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let (mut buf, mut at, mut serials) = (Vec::new(), 0usize, Vec::new());
    let mut chunk = [0u8; 8192];
    let len = std::fs::metadata(&path).expect("file").len() as usize;
    while serials.len() < 3 {
        assert!(
            buf.len() < 4 * len,
            "four passes' bytes and only these chains: {serials:x?}"
        );
        let n = s.read(&mut chunk).expect("stream");
        assert!(n > 0, "the stream ended");
        buf.extend_from_slice(&chunk[..n]);
        // Whole pages only: header, lacing table, body.
        while let Some(h) = buf.get(at..at + 27) {
            assert_eq!(&h[..4], b"OggS", "a page at byte {at}");
            let segments = usize::from(h[26]);
            let Some(lacing) = buf.get(at + 27..at + 27 + segments) else {
                break;
            };
            let len = 27 + segments + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
            if buf.len() < at + len {
                break;
            }
            if h[5] & 0x02 != 0 {
                let serial = u32::from_le_bytes([h[14], h[15], h[16], h[17]]);
                assert!(
                    !serials.contains(&serial),
                    "serial {serial:#x} again: {serials:x?}"
                );
                serials.push(serial);
            }
            at += len;
        }
    }
}

#[test]
fn a_looped_webm_file_decodes_across_passes() {
    loop_file_plays("slate.webm", "/slate.webm", &args(WEBM));
}

/// A listener of a mount with an `intro` gets the intro's bytes first, then the live stream,
/// and decodes both: MP3 (frames continue) and Ogg Opus (the intro is a chain of its own).
#[test]
fn a_listener_gets_the_intro_first_then_the_live_stream() {
    let dir = TempDir::new("agora-intro");
    // Raw frames only (no ID3 tag, no Xing frame): what the server sends of an MP3 intro.
    let mp3 = tone(
        &dir,
        "intro.mp3",
        880,
        1,
        &[
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
        ],
    );
    let opus = tone(
        &dir,
        "intro.opus",
        880,
        1,
        &["-c:a", "libopus", "-b:a", "64k", "-f", "ogg"],
    );
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/live.mp3\"\nintro = {:?}\n[[mount]]\npath = \"/live.opus\"\nintro = {:?}\n",
        mp3.display().to_string(),
        opus.display().to_string()
    ));
    let (_, live_mp3) = fixture("mp3");
    let (_, live_opus) = fixture("opus");
    let _a = push_looped(&agora, &live_mp3, "/live.mp3", "mp3");
    let _b = push_looped(&agora, &live_opus, "/live.opus", "ogg");
    for (mount, intro) in [("/live.mp3", &mp3), ("/live.opus", &opus)] {
        wait_live(&agora, mount);
        let intro = std::fs::read(intro).expect("intro");
        let (mut s, head) = open_listener(agora.addr, mount);
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let mut first = vec![0u8; intro.len() + 4];
        s.read_exact(&mut first).expect("the intro and more");
        assert!(
            first[..intro.len()] == intro[..],
            "{mount}: the intro is not first"
        );
        if mount == "/live.opus" {
            assert_eq!(&first[intro.len()..], b"OggS", "the live chain follows");
        }
        assert_decodes(&agora.url(mount), 4);
    }
}

/// `--check-config` names a loop-file or intro that cannot be played: missing, another
/// format than its mount's name, too large, a WebM intro, a looped mount also relayed; a
/// relative path is the configuration's directory's.
#[test]
fn check_config_refuses_unplayable_loop_files_and_intros() {
    let dir = TempDir::new("agora-slate-check");
    let mp3 = tone(&dir, "tone.mp3", 440, 1, &["-c:a", "libmp3lame"]);
    let webm = tone(
        &dir,
        "tone.webm",
        440,
        1,
        &["-c:a", "libopus", "-f", "webm"],
    );
    let big = dir.path().join("big.mp3");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(65 << 20))
        .expect("sparse file");
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    for (toml, says) in [
        (
            "[[mount]]\npath = \"/slate.mp3\"\nloop-file = \"missing.mp3\"\n".to_string(),
            "mount /slate.mp3: loop-file ".to_string(),
        ),
        (
            format!(
                "[[mount]]\npath = \"/slate.ogg\"\nloop-file = {}\n",
                q(&mp3)
            ),
            "mount /slate.ogg: loop-file".to_string(),
        ),
        (
            format!(
                "[[mount]]\npath = \"/slate.mp3\"\nloop-file = {}\n",
                q(&big)
            ),
            "more than the 67108864 bytes a played file may have".to_string(),
        ),
        (
            format!("[[mount]]\npath = \"/live.webm\"\nintro = {}\n", q(&webm)),
            "mount /live.webm: intro".to_string(),
        ),
        (
            format!(
                "[[mount]]\npath = \"/s.mp3\"\nloop-file = {}\n[[relay]]\nupstream = \"http://127.0.0.1:9/s.mp3\"\n",
                q(&mp3)
            ),
            "mount /s.mp3: it has a loop-file and is relayed".to_string(),
        ),
    ] {
        let err = refused(&toml);
        assert!(err.contains(&says), "{toml}\n{err}");
        if toml.contains("missing") {
            assert!(err.contains("cannot read it"), "{err}");
        }
        if toml.contains("slate.ogg") {
            assert!(err.contains("is Mp3, the mount's name says Ogg"), "{err}");
        }
        if toml.contains("webm") {
            assert!(err.contains("is WebM"), "{err}");
        }
    }
    // Relative to the configuration's directory.
    let cfg = dir.path().join("agora.toml");
    std::fs::write(
        &cfg,
        "[[mount]]\npath = \"/slate.mp3\"\nloop-file = \"tone.mp3\"\nintro = \"tone.mp3\"\n",
    )
    .expect("config");
    let out = check_config(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
