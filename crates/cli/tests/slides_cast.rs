//! `agora cast --slides` (#15) with a real ffmpeg and the real server: a synthetic talk made
//! at test time (four distinct still slides, and between them a stretch of motion: a moving
//! test pattern, then cuts five times a second), cast with the same video as the camera and
//! as the slide input. The stream's own time of each change is then its time in the file, so
//! a slide's `at` is checked against the truth, not against another estimate.
//!
//! Checked: the archive's `index.tsv` holds each still exactly once, at its time within one
//! second, each image decodes at the source's 1280x720; the motion gives at most one slide
//! per `--slides-min-interval` (2 s); the player page beside the recording has every slide of
//! the index; the server lists the same slides with the same times;
//! and with the server down for the first part of the cast, every slide reaches it later,
//! once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SIZE: &str = "1280x720";

/// The stills: (start in the video, mean colour of the slide, roughly).
const STILLS: [(f64, [u8; 3]); 4] = [
    (0.0, [255, 227, 228]),
    (3.0, [228, 228, 255]),
    (12.0, [227, 242, 228]),
    (15.0, [242, 218, 22]),
];

/// The motion stretch, in the video's time.
const MOTION: (f64, f64) = (6.0, 12.0);

/// 18 s: red box, blue box, moving testsrc2 (3 s), cuts every 0.2 s (3 s), green bar,
/// yellow with a purple bar; a tone under it all.
fn make_talk(dir: &Path) -> PathBuf {
    let out = dir.join("talk.mkv");
    let still = |bg: &str, boxes: &str| format!("color=c={bg}:s={SIZE}:r=25:d=3,{boxes}");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(still("white", "drawbox=x=100:y=100:w=400:h=200:color=red:t=fill"))
        .args(["-f", "lavfi", "-i"])
        .arg(still("white", "drawbox=x=600:y=300:w=400:h=200:color=blue:t=fill"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s={SIZE}:r=25:d=3"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "color=c=black:s=64x36:r=25:d=3,geq=r='mod(floor(T*5)*97\\,255)':g='mod(floor(T*5)*53\\,255)':b='mod(floor(T*5)*31+X*4\\,255)',scale={SIZE}:flags=neighbor"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(still("white", "drawbox=x=100:y=400:w=800:h=100:color=green:t=fill"))
        .args(["-f", "lavfi", "-i"])
        .arg(still("yellow", "drawbox=x=300:y=100:w=200:h=500:color=purple:t=fill"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:d=18"])
        .args([
            "-filter_complex",
            "[0:v][1:v][2:v][3:v][4:v][5:v]concat=n=6:v=1:a=0,format=yuv420p[v]",
            "-map",
            "[v]",
            "-map",
            "6:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "10",
            "-g",
            "25",
            "-c:a",
            "aac",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "making the synthetic talk failed");
    out
}

/// `agora cast` with the talk as camera and slides; returns when it exits (its log).
fn cast(talk: &Path, archive: &Path, server: Option<&str>, during: impl FnOnce()) -> String {
    let log = archive.with_extension("log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    for var in PASSWORD_ENV {
        cmd.env_remove(var);
    }
    cmd.arg("cast")
        .arg("--input")
        .arg(talk)
        .args(["--preset", "webm", "--name", "talk", "--slides"])
        .arg(talk)
        .args(["--slides-min-interval", "2", "--archive-dir"])
        .arg(archive);
    if let Some(s) = server {
        cmd.args(["--server", s]);
    }
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("agora cast");
    during();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "agora cast did not end\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "agora cast failed: {status}\n{text}");
    text
}

/// The slides folder's index: (time, image path).
fn index(archive: &Path) -> Vec<(f64, PathBuf)> {
    let dir = std::fs::read_dir(archive)
        .expect("archive")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_slides"))
        .expect("a slides folder in the archive");
    let text = std::fs::read_to_string(dir.join("index.tsv")).expect("index.tsv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time\tfile"));
    lines
        .map(|l| {
            let (t, f) = l.split_once('\t').expect("a TSV line");
            (t.parse().expect("a time"), dir.join(f))
        })
        .collect()
}

/// The image's size and mean colour, decoded by ffmpeg.
fn decode(image: &Path) -> (String, [u8; 3]) {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0:s=x",
        ])
        .arg(image)
        .output()
        .expect("ffprobe");
    let size = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let mean = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(image)
        .args([
            "-vf",
            "scale=1:1:flags=area",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    let rgb = mean.stdout;
    assert_eq!(rgb.len(), 3, "{} does not decode", image.display());
    (size, [rgb[0], rgb[1], rgb[2]])
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

/// Checks the archive's slides; returns their times.
fn check_archive(archive: &Path, log: &str) -> Vec<f64> {
    let slides = index(archive);
    let mut stills_seen = [0usize; 4];
    let mut motion = 0;
    for (at, path) in &slides {
        let (size, colour) = decode(path);
        assert_eq!(size, SIZE, "{}: {log}", path.display());
        match STILLS.iter().position(|(_, c)| close(*c, colour)) {
            Some(i) => {
                stills_seen[i] += 1;
                let truth = STILLS[i].0;
                assert!(
                    (at - truth).abs() < 1.0,
                    "slide {i} at {at}, shown at {truth} in the stream\n{slides:?}\n{log}"
                );
                eprintln!("still {i}: at {at:.3}, truth {truth}: {:+.3} s", at - truth);
            }
            None => {
                motion += 1;
                assert!(
                    (MOTION.0 - 0.5..MOTION.1 + 0.5).contains(at),
                    "a slide at {at} outside the motion stretch, colour {colour:?}\n{slides:?}"
                );
            }
        }
    }
    assert_eq!(
        stills_seen, [1; 4],
        "each still exactly once: {slides:?}\n{log}"
    );
    // 6 s of motion, at most one slide per 2 s (and the burst's last frame).
    assert!(motion <= 4, "{motion} slides during the motion: {slides:?}");
    // The player page beside the recording names every slide of the index (the browser test
    // plays it).
    let page = std::fs::read_dir(archive)
        .expect("archive")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .unwrap_or_else(|| panic!("no player page in the archive\n{log}"));
    let html = std::fs::read_to_string(&page).expect("page");
    for (at, path) in &slides {
        let file = path.file_name().expect("name").to_string_lossy();
        assert!(
            html.contains(&format!("{{\"at\":{at:.3},\"file\":\"{file}\"}}")),
            "{file} at {at} in {}",
            page.display()
        );
    }
    slides.iter().map(|(t, _)| *t).collect()
}

/// The server's slides of the mount: their times, and their ids all different.
fn server_slides(agora: &Agora, mount: &str) -> Vec<f64> {
    let (code, _, body) = http_get(agora.addr, &format!("/api/v1/slides{mount}"), &[]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let list = v["slides"].as_array().expect("slides");
    for s in list {
        assert_eq!(s["type"], "image/webp");
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(1280), Some(720))
        );
    }
    list.iter().map(|s| s["at"].as_f64().expect("at")).collect()
}

#[test]
fn slides_are_archived_and_sent_once_each_at_their_stream_time() {
    let dir = TempDir::new("agora-slides-cast");
    let talk = make_talk(dir.path());
    let agora = Agora::start();
    let archive = dir.path().join("archive");
    let url = format!("http://source:{SOURCE_PW}@{}/live.webm", agora.addr);
    let log = cast(&talk, &archive, Some(&url), || {});
    let times = check_archive(&archive, &log);
    assert_eq!(server_slides(&agora, "/live.webm"), times, "{log}");
}

/// The server is down for the first 8 s of an 18 s cast: the slides wait in the cast's
/// queue, reach the server when it is back, each once.
#[test]
fn slides_taken_while_the_server_is_down_are_sent_when_it_is_back() {
    let dir = TempDir::new("agora-slides-late");
    let talk = make_talk(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let archive = dir.path().join("archive");
    let url = format!("http://source:{SOURCE_PW}@{listen}/late.webm");
    let mut agora = None;
    let log = cast(&talk, &archive, Some(&url), || {
        std::thread::sleep(Duration::from_secs(8));
        agora = Some(Agora::start_at(&listen, ""));
    });
    let times = check_archive(&archive, &log);
    assert!(times.len() >= 4);
    let agora = agora.expect("server");
    assert_eq!(server_slides(&agora, "/late.webm"), times, "{log}");
}
