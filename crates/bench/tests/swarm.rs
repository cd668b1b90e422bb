//! The benchmark at small scale, in the test suite: 200 listeners for 5 s against the real
//! server, fed by the bench's own source, and 5 latency listeners beside them (`--latency-url`,
//! as `scripts/bench-tree` uses it for the origin). Correctness only (everyone connected and reached a
//! keyframe, a real player decodes the same stream, every number is there); never speed.

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

#[test]
fn a_small_swarm_connects_everyone_and_reports_every_number() {
    let dir = std::env::temp_dir().join(format!("agora-bench-test-{}", std::process::id()));
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
    let mut lines = BufReader::new(server.0.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("agora printed its address")
            .expect("read");
        if let Some(a) = line.trim().strip_prefix("listening on http://") {
            break a.trim_end_matches('/').to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let url = format!("http://{addr}/bench.ogg");
    // A real player decodes the stream while the swarm runs.
    let player_url = url.clone();
    let player = std::thread::spawn(move || {
        // Wait for the mount: ffprobe fails with 404 until the bench source is up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !Command::new("ffprobe")
            .args(["-v", "quiet", &player_url])
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
                "-nostdin",
                "-v",
                "error",
                "-i",
                &player_url,
                "-t",
                "3",
                "-f",
                "null",
                "-",
            ])
            .output()
            .expect("ffmpeg")
    });

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
