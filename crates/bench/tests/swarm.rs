//! The benchmark at small scale, in the test suite: against the real server, fed by the
//! bench's own source, three mounts at once for 5 s: Ogg Theora (200 listeners, and 5 latency
//! listeners beside them through `--latency-url`, as `scripts/bench-tree` uses it for the
//! origin), MP3 and Ogg Opus (100 each); and 50 listeners against the floor (`agora-bench
//! floor`). Correctness only (everyone connected and reached a keyframe, latency and the live
//! edge measured, a real player decodes the Theora stream, every number is there); never speed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `agora` binary, built beside `agora-bench` by `cargo nextest run --workspace`.
fn agora_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_agora-bench"));
    let agora = bench.with_file_name("agora");
    assert!(
        agora.exists(),
        "{} is missing: build the workspace (cargo nextest run --workspace)",
        agora.display()
    );
    agora
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes `name` in `dir` with ffmpeg (20 s), returns its path.
fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .args(["-t", "20"])
        .arg(&out)
        .status()
        .expect("ffmpeg must be installed (scripts/install-deps)");
    assert!(made.success(), "generating {name}");
    out
}

/// Pink noise (every frame unique: the latency stamps need it) and a tone, at `rate` Hz.
fn noise_and_tone(rate: u32) -> Vec<String> {
    [
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("anoisesrc=color=pink:amplitude=0.25:sample_rate={rate}"),
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=sample_rate={rate}"),
        "-filter_complex".into(),
        "[0:a][1:a]amix=inputs=2,aformat=channel_layouts=stereo".into(),
    ]
    .into()
}

/// `agora-bench swarm` against `url` with `n` listeners, its own source pushing `stream`.
fn swarm(
    url: &str,
    n: usize,
    server_pid: u32,
    stream: &Path,
    extra: &[&str],
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_agora-bench"))
        .args(["swarm", "--url", url, "-n", &n.to_string(), "--rate", "400"])
        .args(["--window", "5", "--settle", "1"])
        .args(["--server-pid", &server_pid.to_string()])
        .arg("--source")
        .arg(stream)
        .args(["--source-password", "bench-pw", "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agora-bench")
}

/// The report of a finished swarm, with what every workload must show: everyone connected
/// and reached a sync point, bytes delivered, latency and live-edge samples.
fn report(child: std::process::Child, n: usize) -> serde_json::Value {
    let out = child.wait_with_output().expect("agora-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["listeners"], n, "{r:#}");
    assert_eq!(r["connected"], n, "{r:#}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["first_keyframe_ms"]["count"], n, "{r:#}");
    assert!(
        r["delivered_bytes"].as_u64().is_some_and(|b| b > 0),
        "{r:#}"
    );
    for key in ["latency_ms", "live_edge_ms"] {
        assert!(
            r[key]["count"].as_u64().is_some_and(|c| c > 0),
            "{key}: {r:#}"
        );
    }
    assert!(r["realtime_share"].is_number(), "{r:#}");
    r
}

#[test]
fn a_small_swarm_connects_everyone_and_reports_every_number() {
    let dir = std::env::temp_dir().join(format!("agora-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let theora = generate(
        &dir,
        "stream.ogg",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=15",
            "-f",
            "lavfi",
            "-i",
            "sine=d=20",
            "-c:v",
            "libtheora",
            "-b:v",
            "100k",
            "-g",
            "15",
            "-c:a",
            "libvorbis",
            "-q:a",
            "0",
        ],
    );
    let noise = noise_and_tone(44_100);
    let mp3_args: Vec<&str> = noise.iter().map(String::as_str).collect();
    let mp3 = generate(
        &dir,
        "stream.mp3",
        &[
            &mp3_args[..],
            &["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
        ]
        .concat(),
    );
    // Pages of 200 ms rather than ffmpeg's 1 s: a 5 s window then holds enough of them.
    let noise = noise_and_tone(48_000);
    let opus_args: Vec<&str> = noise.iter().map(String::as_str).collect();
    let opus = generate(
        &dir,
        "stream.opus",
        &[
            &opus_args[..],
            &[
                "-c:a",
                "libopus",
                "-b:a",
                "64k",
                "-page_duration",
                "200000",
                "-f",
                "ogg",
            ],
        ]
        .concat(),
    );
    let mut server = Kill(
        Command::new(agora_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args([
                "--source-password",
                "bench-pw",
                "--admin-password",
                "bench-admin",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("agora serve"),
    );
    let addr = wait_for_line(&mut server.0, "listening on http://")
        .trim_end_matches('/')
        .to_string();
    let url = format!("http://{addr}/bench.ogg");
    let mp3_url = format!("http://{addr}/bench.mp3");
    let opus_url = format!("http://{addr}/bench.opus");
    // A real player decodes the stream while the swarm runs.
    let player = play(url.clone());

    // Three mounts at once (the test stays fast): Theora with 200 listeners, MP3 and Opus
    // with 100 each.
    let pid = server.0.id();
    let [theora_run, mp3_run, opus_run] = [
        // The tree's option, on one server: a few latency listeners beside the swarm.
        swarm(
            &url,
            200,
            pid,
            &theora,
            &["--latency-url", &url, "--latency-listeners", "5"],
        ),
        swarm(&mp3_url, 100, pid, &mp3, &[]),
        swarm(&opus_url, 100, pid, &opus, &[]),
    ];
    let r = report(theora_run, 200);
    // One group per URL: the swarm's (its totals) and the latency-only one, not in the totals.
    let groups = r["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{r:#}");
    assert_eq!(groups[0]["connected"], 200, "{r:#}");
    assert_eq!(groups[0]["latency_only"], false, "{r:#}");
    assert_eq!(groups[1]["latency_only"], true, "{r:#}");
    assert_eq!(groups[1]["connected"], 5, "{r:#}");
    for g in groups {
        assert!(
            g["latency_ms"]["count"].as_u64().is_some_and(|c| c > 0),
            "{r:#}"
        );
    }
    assert!(
        r["window_end_ms"].as_u64() > r["window_start_ms"].as_u64(),
        "{r:#}"
    );
    for (run, format) in [(mp3_run, "mp3"), (opus_run, "ogg")] {
        let a = report(run, 100);
        assert_eq!(a["format"], format, "{a:#}");
        // Audio written frame by frame (page by page) at its pace reaches the listeners at
        // that pace: most of them keep up, even on a busy test machine.
        assert!(
            a["realtime_share"].as_f64().is_some_and(|s| s >= 0.5),
            "{a:#}"
        );
    }
    for key in [
        "server_cpu_secs",
        "server_cpu_secs_per_gb",
        "server_rss_kib",
        "server_rss_per_listener_kib",
        "realtime_share",
    ] {
        assert!(r[key].is_number(), "{key} missing: {r:#}");
    }
    // The kernel's share is a ratio of CPU ticks: there is one when any tick was spent.
    if r["server_cpu_secs"].as_f64().is_some_and(|c| c > 0.0) {
        let share = r["server_cpu_kernel_share"].as_f64();
        assert!(share.is_some_and(|s| (0.0..=1.0).contains(&s)), "{r:#}");
    }
    let played = player.join().expect("player");
    assert!(
        played.status.success() && played.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&played.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 20 s Ogg Theora+Vorbis 160x120 file made by ffmpeg in a fresh directory named after the
/// test, and its bitrate in kbit/s.
fn fixture(test: &str) -> (PathBuf, PathBuf, f64) {
    let dir = std::env::temp_dir().join(format!("agora-bench-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let stream = dir.join("stream.ogg");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=160x120:rate=15",
            "-f",
            "lavfi",
            "-i",
            "sine=d=20",
        ])
        .args(["-t", "20", "-c:v", "libtheora", "-b:v", "100k", "-g", "15"])
        .args(["-c:a", "libvorbis", "-q:a", "0"])
        .arg(&stream)
        .status()
        .expect("ffmpeg must be installed (scripts/install-deps)");
    assert!(made.success());
    let kbps = std::fs::metadata(&stream).expect("stream").len() as f64 * 8.0 / 20.0 / 1000.0;
    (dir, stream, kbps)
}

/// Reads a child's stdout until the line starting with `prefix`; returns the rest of that line
/// and keeps draining the output so the child never blocks on it.
fn wait_for_line(child: &mut std::process::Child, prefix: &str) -> String {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let rest = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no line starting {prefix:?}"))
            .expect("read");
        if let Some(a) = line.trim().strip_prefix(prefix) {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    rest
}

/// A real player decoding the stream for 3 s, once the mount is up.
fn play(url: String) -> std::thread::JoinHandle<std::process::Output> {
    std::thread::spawn(move || {
        // Wait for the mount: ffprobe fails with 404 until the bench source is up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !Command::new("ffprobe")
            .args(["-v", "quiet", &url])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the mount never came up"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Command::new("ffmpeg")
            .args([
                "-nostdin", "-v", "error", "-i", &url, "-t", "3", "-f", "null", "-",
            ])
            .output()
            .expect("ffmpeg")
    })
}

#[test]
fn the_floor_serves_a_small_swarm_at_real_time() {
    let (dir, stream, _kbps) = fixture("floor");
    let mut floor = Kill(
        Command::new(env!("CARGO_BIN_EXE_agora-bench"))
            .args(["floor", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("agora-bench floor"),
    );
    let addr = wait_for_line(&mut floor.0, "floor listening on ");
    let url = format!("http://{addr}/bench.ogg");
    let player = play(url.clone());

    let out = Command::new(env!("CARGO_BIN_EXE_agora-bench"))
        .args(["swarm", "--url", &url, "-n", "50", "--rate", "100"])
        .args(["--window", "5", "--settle", "1"])
        .args(["--server-pid", &floor.0.id().to_string()])
        .arg("--source")
        .arg(&stream)
        .args(["--source-password", "any", "--json"])
        .output()
        .expect("agora-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["connected"], 50, "{r:#}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["realtime_listeners"], 50, "{r:#}");
    assert_eq!(r["first_keyframe_ms"]["count"], 50, "{r:#}");
    assert!(
        r["latency_ms"]["count"].as_u64().is_some_and(|c| c > 0),
        "{r:#}"
    );
    assert!(r["server_cpu_secs_per_gb"].is_number(), "{r:#}");
    let played = player.join().expect("player");
    assert!(
        played.status.success(),
        "{}",
        String::from_utf8_lossy(&played.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
