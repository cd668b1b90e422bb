//! The benchmark at small scale, in the test suite: 200 listeners for 5 s against the real
//! server with 5 latency listeners beside them (`--latency-url`, as `scripts/bench-tree` uses it
//! for the origin), and 50 against the floor (`agora-bench floor`), fed by the bench's own
//! source. Correctness only (everyone connected and reached a keyframe, a real player decodes the
//! same stream, every number is there); never speed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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
fn a_small_swarm_connects_everyone_and_reports_every_number() {
    let (dir, stream, kbps) = fixture("swarm");

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
    let addr = wait_for_line(&mut server.0, "listening on http://");
    let url = format!("http://{}/bench.ogg", addr.trim_end_matches('/'));
    // A real player decodes the stream while the swarm runs.
    let player = play(url.clone());

    let out = Command::new(env!("CARGO_BIN_EXE_agora-bench"))
        .args([
            "swarm", "--url", &url, "-n", "200", "--rate", "400", "--window", "5",
        ])
        .args(["--settle", "1", "--kbps", &format!("{kbps:.1}")])
        .args(["--server-pid", &server.0.id().to_string()])
        .arg("--source")
        .arg(&stream)
        .args(["--source-password", "bench-pw", "--json"])
        // The tree's option, on one server: a few latency listeners beside the swarm.
        .args(["--latency-url", &url, "--latency-listeners", "5"])
        .output()
        .expect("agora-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["listeners"], 200, "{r:#}");
    assert_eq!(r["connected"], 200, "{r:#}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["first_keyframe_ms"]["count"], 200, "{r:#}");
    assert!(
        r["delivered_bytes"].as_u64().is_some_and(|b| b > 0),
        "{r:#}"
    );
    assert!(
        r["latency_ms"]["count"].as_u64().is_some_and(|c| c > 0),
        "{r:#}"
    );
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

/// The floor (`agora-bench floor`) under the same bench source and a small swarm: everyone
/// connected, at real time, reached a keyframe (the floor sends the captured Ogg headers, then
/// live chunks), and a real player decodes it.
#[test]
fn the_floor_serves_a_small_swarm_at_real_time() {
    let (dir, stream, kbps) = fixture("floor");
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
        .args(["--kbps", &format!("{kbps:.1}")])
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
