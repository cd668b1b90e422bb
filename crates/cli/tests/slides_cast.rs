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

/// The slides folder's index as it is now: `None` before the cast made its folder or index
/// (or while a line is half written).
fn index_now(archive: &Path) -> Option<Vec<(f64, PathBuf)>> {
    let dir = std::fs::read_dir(archive)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_slides"))?;
    let text = std::fs::read_to_string(dir.join("index.tsv")).ok()?;
    let mut lines = text.lines();
    (lines.next()? == "time\tfile").then_some(())?;
    lines
        .map(|l| {
            let (t, f) = l.split_once('\t')?;
            Some((t.parse().ok()?, dir.join(f)))
        })
        .collect()
}

/// The server's slides of the mount, as listed: (at, url, type).
fn server_list(agora: &Agora, mount: &str) -> Vec<(f64, String, String)> {
    let (code, _, body) = http_get(agora.addr, &format!("/api/v1/slides{mount}"), &[]);
    if code != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["slides"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    (
                        s["at"].as_f64().expect("at"),
                        s["url"].as_str().expect("url").to_string(),
                        s["type"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An image's pixels as RGB, decoded by ffmpeg.
fn pixels(image: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(image)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "{} does not decode", image.display());
    out.stdout
}

/// `--slides dir:FOLDER` (#15): a folder that receives exported images, empty at the start.
/// Each PNG written into it (by ffmpeg, so the cast sees it being written) becomes one slide
/// once its size stops changing, in the order written, each written only after the one before
/// was taken: the archive's index and the server's list hold each file once, in order, with
/// the file's own bytes, which decode at the file's size.
#[test]
fn a_folders_new_images_become_slides_once_each_in_order() {
    let dir = TempDir::new("agora-slides-folder");
    let folder = dir.path().join("export");
    std::fs::create_dir_all(&folder).expect("folder");
    let archive = dir.path().join("archive");
    let agora = Agora::start();
    let url = format!("http://source:{SOURCE_PW}@{}/folder.webm", agora.addr);
    let log = dir.path().join("cast.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    for var in PASSWORD_ENV {
        cmd.env_remove(var);
    }
    cmd.args([
        "cast", "--input", "test", "--preset", "webm", "--name", "folder",
    ])
    .arg("--archive-dir")
    .arg(&archive)
    .arg("--slides")
    .arg(format!("dir:{}", folder.display()))
    .args(["--server", &url])
    .env("RUST_LOG", "info")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).expect("log"));
    let mut cast = Proc(cmd.spawn().expect("agora cast"));
    let cast_log = || std::fs::read_to_string(&log).unwrap_or_default();
    agora.wait_mount("/folder.webm");

    // (file name, colour, size): sizes differ, so each slide is known by its size too.
    let files = [
        ("01-title.png", "navy", "1280x720"),
        ("02-plan.png", "darkgreen", "800x600"),
        ("03-end.png", "maroon", "640x360"),
    ];
    for (n, (name, colour, size)) in files.iter().enumerate() {
        let path = folder.join(name);
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .arg("-i")
            .arg(format!(
                "color=c={colour}:s={size},drawbox=x=40:y=40:w={}:h=60:color=white:t=fill",
                100 * (n + 1)
            ))
            .args(["-frames:v", "1"])
            .arg(&path)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "making {name}");
        wait_until(
            &format!("{name} in the archive and on the server"),
            Duration::from_secs(30),
            || {
                index_now(&archive).is_some_and(|i| i.len() > n)
                    && server_list(&agora, "/folder.webm").len() > n
            },
        );
    }

    // Stopped as an operator does (Ctrl-C): nothing more comes from the folder.
    send_signal(cast.0.id(), "INT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = cast.0.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "agora cast did not stop\n{}",
            cast_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = cast_log();
    assert!(status.success(), "agora cast failed: {status}\n{text}");

    let slides = index(&archive);
    let listed = server_list(&agora, "/folder.webm");
    assert_eq!(
        slides.len(),
        files.len(),
        "each file once: {slides:?}\n{text}"
    );
    assert_eq!(
        listed.len(),
        files.len(),
        "each file once: {listed:?}\n{text}"
    );
    for (i, ((at, image), (name, _, size))) in slides.iter().zip(&files).enumerate() {
        let file = folder.join(name);
        let bytes = std::fs::read(&file).expect("the file");
        assert_eq!(
            std::fs::read(image).expect("the archived image"),
            bytes,
            "{} is {name}'s bytes",
            image.display()
        );
        assert_eq!(decode(image).0, *size, "{}", image.display());
        assert_eq!(pixels(image), pixels(&file), "{name}'s picture");
        let (server_at, url, kind) = &listed[i];
        assert_eq!(server_at, at, "{name}: the server's time is the archive's");
        assert_eq!(kind, "image/png", "{name}");
        let (code, _, body) = http_get(agora.addr, url, &[]);
        assert_eq!(code, 200, "{url}");
        assert_eq!(body, bytes, "{url} is {name}'s bytes");
        if i > 0 {
            assert!(
                *at > slides[i - 1].0,
                "{name} at {at}, after the slide before it: {slides:?}"
            );
        }
    }
}
