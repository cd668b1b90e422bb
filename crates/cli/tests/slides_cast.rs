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
//! once. With `--slides-mount`, the slides video (a mount of its own) shows each still on the
//! frames of its time in the talk, and reaches a server that comes back; a folder's slides on
//! it are checked with ffmpeg, ffprobe and VLC.

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
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

/// `agora cast` with the talk as camera and slides, and `extra` options; returns when it exits
/// (its log).
fn cast(
    talk: &Path,
    archive: &Path,
    server: Option<&str>,
    extra: &[&str],
    during: impl FnOnce(),
) -> String {
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
    cmd.args(extra);
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("agora cast");
    during();
    let status = wait_exit(&mut child, Duration::from_secs(90), || {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
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

/// With `--slides-mount`, the slides video shows each still of the talk on the frames of its
/// time in the talk (the slides mount's clock is the stream's): every frame a second or more
/// from a change shows the talk's picture of that moment.
#[test]
fn slides_are_archived_and_sent_once_each_at_their_stream_time() {
    let dir = TempDir::new("agora-slides-cast");
    let talk = make_talk(dir.path());
    let agora = Agora::start();
    let archive = dir.path().join("archive");
    let url = format!("http://source:{SOURCE_PW}@{}/live.webm", agora.addr);
    let mut video = None;
    let log = cast(
        &talk,
        &archive,
        Some(&url),
        &["--slides-mount", "/live-slides.webm"],
        || {
            agora.wait_mount("/live-slides.webm");
            video = Some(Frames::watch(&agora.url("/live-slides.webm")));
        },
    );
    let times = check_archive(&archive, &log);
    assert_eq!(server_slides(&agora, "/live.webm"), times, "{log}");

    let video = video.expect("the slides mount watched");
    let last = frames_written(&log) - 1;
    wait_until(
        &format!("the slides video's last frame ({last} s)"),
        Duration::from_secs(30),
        || video.get().last().is_some_and(|f| f.pts >= last as f64),
    );
    let frames = video.get();
    let changes: Vec<f64> = STILLS.iter().map(|s| s.0).chain([MOTION.0]).collect();
    let mut checked = Vec::new();
    for f in &frames {
        // Frames from a second before the talk's end (18 s) on are not compared: the cast
        // writes the slides video's last frames as it stops, a second or two past the talk
        // on a loaded machine, where the talk has no picture to match.
        if changes.iter().any(|c| (f.pts - c).abs() < 1.0)
            || (MOTION.0..MOTION.1).contains(&f.pts)
            || f.pts > 17.0
        {
            continue;
        }
        let truth = talk_mean(&talk, f.pts);
        assert!(
            close_yuv(f.mean, truth, 8),
            "the slides video at {} s shows {:?}, the talk {truth:?}\n{frames:?}\n{log}",
            f.pts,
            f.mean
        );
        checked.push(f.pts);
    }
    eprintln!("slides video frames checked against the talk: {checked:?}");
    assert!(
        checked.len() >= 4,
        "too few frames away from the changes: {checked:?} of {frames:?}"
    );
}

/// The server is down for the first 8 s of an 18 s cast: the slides wait in the cast's
/// queue, reach the server when it is back, each once; the slides video reaches its mount.
#[test]
fn slides_taken_while_the_server_is_down_are_sent_when_it_is_back() {
    let dir = TempDir::new("agora-slides-late");
    let talk = make_talk(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let archive = dir.path().join("archive");
    let url = format!("http://source:{SOURCE_PW}@{listen}/late.webm");
    let mut agora = None;
    let log = cast(
        &talk,
        &archive,
        Some(&url),
        &["--slides-mount", "/late-slides.webm"],
        || {
            std::thread::sleep(Duration::from_secs(8));
            let server = Agora::start_at(&listen, "");
            // The slides video's push reconnects as the main one does.
            server.wait_mount("/late-slides.webm");
            assert_decodes(&server.url("/late-slides.webm"), 2);
            agora = Some(server);
        },
    );
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
    let status = wait_exit(&mut cast.0, Duration::from_secs(30), cast_log);
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

/// One decoded frame of a video mount: its time on the stream's clock, whether it is a
/// keyframe, and its mean Y, U, V.
#[derive(Debug, Clone)]
struct Frame {
    pts: f64,
    key: bool,
    mean: [u8; 3],
}

/// A listener that decodes a mount with ffmpeg and reads each frame's [`Frame`] from
/// `showinfo` as it comes (`-copyts`: the stream's own timestamps). Killed on drop.
struct Frames {
    frames: Arc<Mutex<Vec<Frame>>>,
    _ffmpeg: Proc,
}

impl Frames {
    fn watch(url: &str) -> Frames {
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"])
            .args(["-copyts", "-rw_timeout", "20000000", "-i", url])
            .args(["-vf", "showinfo", "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg");
        let err = child.stderr.take().expect("stderr");
        let frames = Arc::new(Mutex::new(Vec::new()));
        let into = frames.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = showinfo_frame(&line) {
                    into.lock().expect("frames").push(f);
                }
            }
        });
        Frames {
            frames,
            _ffmpeg: Proc(child),
        }
    }

    /// The frames decoded so far.
    fn get(&self) -> Vec<Frame> {
        self.frames.lock().expect("frames").clone()
    }
}

/// A `showinfo` line's frame: `... pts_time:52 ... iskey:1 ... mean:[221 133 127] ...`.
fn showinfo_frame(line: &str) -> Option<Frame> {
    if !line.starts_with("[Parsed_showinfo") {
        return None;
    }
    let field = |name: &str| -> Option<&str> {
        let rest = &line[line.find(name)? + name.len()..];
        rest.split_whitespace().next()
    };
    let mean = &line[line.find("mean:[")? + "mean:[".len()..];
    let mean: Vec<u8> = mean[..mean.find(']')?]
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    Some(Frame {
        pts: field(" pts_time:")?.parse().ok()?,
        key: field(" iskey:")? == "1",
        mean: [*mean.first()?, *mean.get(1)?, *mean.get(2)?],
    })
}

/// The talk's mean Y, U, V at `t` seconds.
fn talk_mean(talk: &Path, t: f64) -> [u8; 3] {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"])
        .args(["-ss", &format!("{t:.3}"), "-i"])
        .arg(talk)
        .args(["-frames:v", "1", "-vf", "showinfo", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(showinfo_frame)
        .unwrap_or_else(|| panic!("no frame of the talk at {t}"))
        .mean
}

fn close_yuv(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
}

/// The frames the cast's slides video wrote, from its last log line.
fn frames_written(log: &str) -> u64 {
    log.lines()
        .find(|l| l.contains("slides video ended"))
        .and_then(|l| l.split("frames=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `slides video ended` line:\n{log}"))
}

/// A PNG of one colour and size.
fn solid_png(path: &Path, colour: &str, size: &str) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .arg("-i")
        .arg(format!("color=c={colour}:s={size}"))
        .args(["-frames:v", "1"])
        .arg(path)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "making {}", path.display());
}

/// Mean Y, U, V (BT.601, limited range) of black, of red filling the frame, and of a white 4:3
/// slide in a 16:9 frame: scaled to 960x720, a black band of 160 on each side (a stretched
/// slide would be 235, a cropped one too).
const BLACK: [u8; 3] = [16, 128, 128];
const RED: [u8; 3] = [81, 90, 240];
const WHITE_4_3: [u8; 3] = [180, 128, 128];

/// `--slides-mount` (#15): the slides as a video for players outside the browser. A folder's
/// images (a red 16:9 slide, then a white 4:3 one) cast beside a test pattern: the slides mount
/// is WebM VP8 1280x720 that ffmpeg decodes without a word, at one frame a second with a
/// keyframe every two; it is black before the first slide, then shows each slide scaled to
/// fit and letterboxed, the new one from the frame of the slide's time on the main stream
/// (within a second); VLC (run as `nobody`) plays it and shows the current slide; the main
/// stream decodes meanwhile.
#[test]
fn a_slides_mount_is_a_1_fps_vp8_video_of_the_current_slide() {
    let dir = TempDir::new("agora-slides-mount");
    let folder = dir.path().join("export");
    std::fs::create_dir_all(&folder).expect("folder");
    // A player joining starts at the latest keyframe, not a 64 KiB burst back: seconds of
    // stale slides at a few kbit/s (docs/players.md).
    let agora = Agora::start_with_config("[[mount]]\npath = \"/s.webm\"\nburst-size = 4096\n");
    let url = format!("http://source:{SOURCE_PW}@{}/main.webm", agora.addr);
    let log = dir.path().join("cast.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    for var in PASSWORD_ENV {
        cmd.env_remove(var);
    }
    cmd.args(["cast", "--input", "test", "--preset", "webm", "--slides"])
        .arg(format!("dir:{}", folder.display()))
        .args(["--slides-mount", "s.webm", "--server", &url])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut cast = Proc(cmd.spawn().expect("agora cast"));
    let cast_log = || std::fs::read_to_string(&log).unwrap_or_default();
    agora.wait_mount("/main.webm");
    agora.wait_mount("/s.webm");
    let main = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-rw_timeout", "20000000", "-i"])
        .arg(agora.url("/main.webm"))
        .args(["-t", "15", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");

    let slides = agora.url("/s.webm");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0", &slides])
        .output()
        .expect("ffprobe");
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "vp8,1280,720"
    );
    assert_decodes(&slides, 5);

    let video = Frames::watch(&slides);
    wait_until("a first frame", Duration::from_secs(30), || {
        !video.get().is_empty()
    });
    assert!(
        close_yuv(video.get()[0].mean, BLACK, 4),
        "before the first slide: {:?}",
        video.get()
    );
    solid_png(&folder.join("01-red.png"), "red", "1280x720");
    wait_until("the red slide", Duration::from_secs(30), || {
        video.get().iter().any(|f| close_yuv(f.mean, RED, 8))
    });
    solid_png(&folder.join("02-white.png"), "white", "800x600");
    wait_until(
        "the white 4:3 slide, pillarboxed",
        Duration::from_secs(30),
        || video.get().iter().any(|f| close_yuv(f.mean, WHITE_4_3, 6)),
    );
    let listed = server_list(&agora, "/main.webm");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let (red_at, white_at) = (listed[0].0, listed[1].0);
    let frames = video.get();
    let shows = |colour: [u8; 3]| {
        frames
            .iter()
            .find(|f| close_yuv(f.mean, colour, 8))
            .map(|f| f.pts)
            .unwrap_or(f64::NAN)
    };
    // Frame n shows the slide of n + 0.5 on the main stream's clock.
    for (what, at, from) in [
        ("red", red_at, shows(RED)),
        ("white", white_at, shows(WHITE_4_3)),
    ] {
        assert!(
            (-0.5..=1.0).contains(&(from - at)),
            "the {what} slide, at {at} s on the stream, is on the slides video from {from} s\n{frames:?}"
        );
    }
    for w in frames.windows(2) {
        assert_eq!(w[1].pts - w[0].pts, 1.0, "one frame a second: {frames:?}");
        assert!(w[0].key || w[1].key, "a keyframe every 2 s: {frames:?}");
    }
    for f in &frames {
        assert!(
            [BLACK, RED, WHITE_4_3]
                .iter()
                .any(|c| close_yuv(f.mean, *c, 8)),
            "{f:?} is neither black nor a slide: {frames:?}"
        );
    }

    // RGB: black, red, and white on 3/4 of the width.
    vlc_shows(&slides, [191, 191, 191], &[[0, 0, 0], [255, 0, 0]]);

    send_signal(cast.0.id(), "INT");
    let status = wait_exit(&mut cast.0, Duration::from_secs(30), cast_log);
    let text = cast_log();
    assert!(status.success(), "agora cast failed: {status}\n{text}");
    assert!(!text.contains("slides video stopped"), "{text}");
    let main = main.wait_with_output().expect("ffmpeg");
    let err = String::from_utf8_lossy(&main.stderr);
    assert!(
        main.status.success() && err.trim().is_empty(),
        "the main stream did not decode cleanly meanwhile: {err}"
    );
}

/// VLC (3.0, run as `nobody`: it refuses root) plays the mount: its `scene` video filter writes
/// each picture it shows as a PNG; once a few are written, the latest whole one's mean RGB is
/// nearer `rgb` than any of `others` (VLC's own colour conversion is not ffmpeg's).
fn vlc_shows(url: &str, rgb: [u8; 3], others: &[[u8; 3]]) {
    let distance = |a: [u8; 3], b: [u8; 3]| -> u32 {
        a.iter().zip(b).map(|(x, y)| u32::from(x.abs_diff(y))).sum()
    };
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("agora-vlc-slides");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let log = std::fs::File::create(dir.path().join("vlc.log")).expect("log");
    let mut vlc = Proc(
        Command::new("runuser")
            .args(["-u", "nobody", "--", "cvlc", "-v", "--play-and-exit"])
            .args(["--intf", "dummy", "--vout", "dummy", "--aout", "dummy"])
            .args([
                "--video-filter",
                "scene",
                "--scene-format",
                "png",
                "--scene-ratio",
                "1",
            ])
            .args(["--scene-prefix", "f", "--scene-path"])
            .arg(dir.path())
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cvlc must be installed (scripts/install-deps)"),
    );
    let pictures = || {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "png"));
        v.sort();
        v
    };
    let vlc_log = || std::fs::read_to_string(dir.path().join("vlc.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = pictures();
        // The newest may be half written: the one before it is whole.
        if shown.len() >= 3 {
            let (_, mean) = decode(&shown[shown.len() - 2]);
            if others
                .iter()
                .all(|o| distance(mean, rgb) < distance(mean, *o))
            {
                break;
            }
        }
        assert!(
            vlc.0.try_wait().expect("wait vlc").is_none() && Instant::now() < deadline,
            "VLC showed {} pictures, the last {:?}:\n{}",
            shown.len(),
            shown.len().checked_sub(2).map(|i| decode(&shown[i]).1),
            vlc_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--slides-mount` needs `--slides` (a usage error, exit 2, as the cast's others), a server to
/// push to, and a mount other than the stream's.
#[test]
fn a_slides_mount_without_slides_or_on_the_streams_mount_is_a_usage_error() {
    let dir = TempDir::new("agora-slides-mount-usage");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
        for var in PASSWORD_ENV {
            cmd.env_remove(var);
        }
        let out = cmd.arg("cast").args(args).output().expect("agora cast");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let folder = format!("dir:{}", dir.path().display());
    let server = "http://source:pw@127.0.0.1:9/live.webm";
    let (code, err) = run(&[
        "--input",
        "test",
        "--slides-mount",
        "/s.webm",
        "--server",
        server,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--slides <SRC>"), "{err}");
    let (code, err) = run(&[
        "--input",
        "test",
        "--slides",
        &folder,
        "--slides-mount",
        "/live.webm",
        "--server",
        server,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--slides-mount /live.webm: that is the stream's own mount"),
        "{err}"
    );
    let archive = dir.path().join("archive");
    let (code, err) = run(&[
        "--input",
        "test",
        "--slides",
        &folder,
        "--slides-mount",
        "/s.webm",
        "--archive-dir",
        &archive.to_string_lossy(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--slides-mount pushes to the servers"),
        "{err}"
    );
    let (code, err) = run(&[
        "--input",
        "test",
        "--slides",
        &folder,
        "--slides-mount",
        "/s.webm",
        "--slides-mount-size",
        "1279x720",
        "--server",
        server,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--slides-mount-size 1279x720"), "{err}");
    assert!(!archive.exists(), "nothing started");
}
