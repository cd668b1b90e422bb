//! The watch page in Debian's headless Chromium, driven through chromedriver (WebDriver, with
//! the `fantoccini` crate), against the real server fed by a real `agora cast --preset webm
//! --input test`: the page plays (the `<video>`'s `currentTime` advances), shows the listener
//! count and a title set through `/admin/metadata`, and resumes by itself, without a reload,
//! after the source is killed and restarted. Every control on the three pages has an accessible
//! name, and the admin page works from the keyboard alone. A screenshot is left in
//! `target/screenshots/watch.png` for people to look at.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A child process killed on drop with everything it started (it leads a process group of
/// its own: chromedriver's Chromium outlived a failed test otherwise), its output in a file
/// shown when a test fails.
struct Logged {
    child: Child,
    log: PathBuf,
    name: &'static str,
}

impl Logged {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Logged {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Logged { child, log, name }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- {} (last lines) ----", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn cast(agora: &Agora, dir: &Path, name: &'static str) -> Logged {
    Logged::spawn(
        name,
        Command::new(env!("CARGO_BIN_EXE_agora"))
            .args([
                "cast",
                "--input",
                "test",
                "--preset",
                "webm",
                "--name",
                "Agora browser test",
                "--server",
                &format!("http://source:{SOURCE_PW}@{}/live.webm", agora.addr),
            ])
            .env("RUST_LOG", "info"),
        dir,
    )
}

/// chromedriver on a free port, once it accepts connections.
fn chromedriver(dir: &Path) -> (Logged, String) {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: run scripts/install-deps (apt-get install chromium chromium-driver)"
        );
    }
    let port = free_port();
    let driver = Logged::spawn(
        "chromedriver",
        Command::new(CHROMEDRIVER).arg(format!("--port={port}")),
        dir,
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_until("chromedriver to listen", Duration::from_secs(20), || {
        TcpStream::connect(addr).is_ok()
    });
    (driver, format!("http://{addr}"))
}

/// The runtime a test drives the browser from.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn browser(driver_url: &str, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("a Chromium session through chromedriver")
}

/// Evaluate `script` (a function body returning a value) until `ok` accepts its result.
async fn wait_js(
    c: &Client,
    what: &str,
    script: &str,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        match c.execute(script, vec![]).await {
            Ok(v) if ok(&v) => return v,
            Ok(v) => last = v,
            Err(e) => last = json!(format!("script error: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = c
        .execute(
            "const s = document.getElementById('state'); const p = document.getElementById('player');
             return {state: s && s.textContent, src: p && p.getAttribute('src'),
                     time: p && p.currentTime, error: p && p.error && p.error.message,
                     ready: p && p.readyState, network: p && p.networkState};",
            vec![],
        )
        .await
        .unwrap_or(Value::Null);
    panic!("timed out waiting for {what}: last value {last}, page {state}");
}

/// Controls without an accessible name (aria-label, a label, their text or a title).
const UNNAMED_CONTROLS: &str = "
    const unnamed = [];
    for (const e of document.querySelectorAll('a, button, input, select, textarea, video, audio')) {
      const label = e.labels && e.labels.length ? e.labels[0].textContent : '';
      const name = e.getAttribute('aria-label') || label || e.textContent || e.title || '';
      if (!name.trim()) unnamed.push(e.outerHTML.slice(0, 120));
    }
    return unnamed;";

async fn assert_controls_named(c: &Client, page: &str) {
    let unnamed = c.execute(UNNAMED_CONTROLS, vec![]).await.expect("script");
    assert_eq!(unnamed, json!([]), "controls without a name on {page}");
}

/// Presses keys (WebDriver key codes for special keys, e.g. Tab `\u{e004}`, Enter `\u{e007}`)
/// as a keyboard does, on whatever has the focus.
async fn press(c: &Client, keys: &str) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let mut actions = KeyActions::new("keyboard".into());
    for k in keys.chars() {
        actions = actions
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
    }
    c.perform_actions(actions).await.expect("key presses");
}

const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

/// Presses Tab until the control whose `data-key` is `key` has the focus.
async fn tab_to(c: &Client, key: &str) {
    let mut seen = Vec::new();
    for _ in 0..40 {
        press(c, TAB).await;
        let focused = c
            .execute(
                "const e = document.activeElement; return e ? (e.getAttribute('data-key') || e.tagName) : null;",
                vec![],
            )
            .await
            .expect("focus");
        if focused == json!(key) {
            return;
        }
        seen.push(focused);
    }
    panic!("Tab never reached {key}; focus went through {seen:?}");
}

const CURRENT_TIME: &str =
    "const p = document.getElementById('player'); return p ? p.currentTime : -1;";

#[test]
fn watch_page_plays_shows_the_title_and_resumes_after_the_source_restarts() {
    let dir = TempDir::new("browser");
    let profile = dir.path().join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let (_driver, driver_url) = chromedriver(dir.path());
    let agora = Agora::start();
    let first = cast(&agora, dir.path(), "agora cast");
    agora.wait_mount("/live.webm");

    let rt = runtime();
    let (first, screenshot) = rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://{}/watch/live.webm", agora.addr))
            .await
            .expect("open the watch page");

        // It plays: currentTime advances by several seconds.
        let t0 = wait_js(&c, "the video to start", CURRENT_TIME, Duration::from_secs(40), |v| {
            v.as_f64().is_some_and(|t| t > 0.2)
        })
        .await
        .as_f64()
        .unwrap_or_default();
        wait_js(&c, "3 s of playback", CURRENT_TIME, Duration::from_secs(30), |v| {
            v.as_f64().is_some_and(|t| t >= t0 + 3.0)
        })
        .await;
        let loaded = c
            .execute("return window.agoraPageLoad;", vec![])
            .await
            .expect("page marker");
        assert!(loaded.is_number(), "the page's load marker: {loaded}");

        // The listener count includes this page.
        wait_js(
            &c,
            "a listener count of 1 or more",
            "return document.getElementById('listeners').textContent;",
            Duration::from_secs(10),
            |v| v.as_str().and_then(|s| s.parse::<u64>().ok()).is_some_and(|n| n >= 1),
        )
        .await;

        assert_controls_named(&c, "the watch page").await;

        // A title set through the admin API appears on screen.
        let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
        let (code, _, body) = http_get(
            agora.addr,
            "/admin/metadata?mount=/live.webm&mode=updinfo&song=Hello%20Agora",
            &[("Authorization", &auth)],
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        wait_js(
            &c,
            "the new title on the page",
            "return document.getElementById('title').textContent;",
            Duration::from_secs(10),
            |v| v.as_str() == Some("Hello Agora"),
        )
        .await;
        let screenshot = c.screenshot().await.expect("screenshot");

        // The source dies and comes back: the page says it waits, then plays again by
        // itself, in the same page load.
        drop(first);
        wait_js(
            &c,
            "the page to say it is waiting",
            "return document.getElementById('state').textContent;",
            Duration::from_secs(20),
            |v| v.as_str().is_some_and(|s| s.contains("Waiting")),
        )
        .await;
        let src_before = c
            .execute(
                "return document.getElementById('player').getAttribute('src');",
                vec![],
            )
            .await
            .expect("src");
        let second = cast(&agora, dir.path(), "agora cast (restarted)");
        wait_js(
            &c,
            "a new response after the source returned",
            "return document.getElementById('player').getAttribute('src');",
            Duration::from_secs(30),
            |v| v.is_string() && *v != src_before,
        )
        .await;
        wait_js(&c, "playback to resume", CURRENT_TIME, Duration::from_secs(40), |v| {
            v.as_f64().is_some_and(|t| t >= 3.0)
        })
        .await;
        let again = c
            .execute("return window.agoraPageLoad;", vec![])
            .await
            .expect("page marker");
        assert_eq!(again, loaded, "the page was reloaded");

        // The front page lists the mount.
        c.goto(&format!("http://{}/", agora.addr))
            .await
            .expect("open /");
        wait_js(
            &c,
            "the mount on the front page",
            "const li = document.querySelector('li[data-mount=\"/live.webm\"]'); return li ? li.textContent : '';",
            Duration::from_secs(10),
            |v| v.as_str().is_some_and(|s| s.contains("Agora browser test") && s.contains("VP8/Opus")),
        )
        .await;
        assert_controls_named(&c, "the front page").await;
        // The admin page, with the credentials the browser is given, lists the mount and its
        // listeners (this browser left the watch page, so it lists none or the last ones).
        c.goto(&format!("http://admin:{ADMIN_PW}@{}/admin/", agora.addr))
            .await
            .expect("open /admin/");
        wait_js(
            &c,
            "the mount on the admin page",
            "const h = document.querySelector('#mounts section h2'); return h ? h.textContent : document.getElementById('result').textContent;",
            Duration::from_secs(10),
            |v| v.as_str().is_some_and(|s| s.contains("/live.webm")),
        )
        .await;
        assert_controls_named(&c, "the admin page").await;
        // Keyboard only: Tab to the title field, type a title and press Enter; Tab on to the
        // source's disconnect button and press Enter. The page is rebuilt every few seconds;
        // the focus stays where the keyboard put it.
        tab_to(&c, "/live.webm title").await;
        const BUILDS: &str = "return Number(document.getElementById('mounts').dataset.builds || 0);";
        let builds = c.execute(BUILDS, vec![]).await.expect("builds");
        let builds = builds.as_u64().unwrap_or_default();
        press(&c, &format!("Typed at the keyboard{ENTER}")).await;
        agora.wait_status("the title typed on the admin page", |a| {
            a.source("/live.webm")
                .is_some_and(|m| m["title"] == "Typed at the keyboard")
        });
        // The command rebuilt the page; the focus is where it was.
        wait_js(&c, "the page to rebuild after the command", BUILDS, Duration::from_secs(10), |v| {
            v.as_u64().is_some_and(|n| n > builds)
        })
        .await;
        let focused = c
            .execute("return document.activeElement.getAttribute('data-key');", vec![])
            .await
            .expect("focus");
        assert_eq!(focused, "/live.webm title", "the focus after the rebuild");
        tab_to(&c, "/live.webm killsource").await;
        press(&c, ENTER).await;
        wait_js(
            &c,
            "the admin page to say the source was removed",
            "return document.getElementById('result').textContent;",
            Duration::from_secs(10),
            |v| v.as_str().is_some_and(|s| s.contains("Source Removed")),
        )
        .await;
        let _ = c.close().await;
        (second, screenshot)
    });
    drop(first);

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let path = shots.join("watch.png");
    std::fs::write(&path, &screenshot).expect("write the screenshot");
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// An origin that sends its viewers to an edge (#11, `redirect = "always"`): the watch page
/// opened on the origin plays from the edge (its `<video>` follows the `302`), and counts the
/// viewer although the origin itself has none.
#[test]
fn the_watch_page_plays_from_an_edge_when_the_origin_redirects() {
    let dir = TempDir::new("browser-edge");
    let profile = dir.path().join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let (_driver, driver_url) = chromedriver(dir.path());
    let origin = Agora::start_with_config(
        "[auth]\nrelay-password = \"relay-pw\"\n[mount-defaults]\nredirect = \"always\"\n",
    );
    let _cast = cast(&origin, dir.path(), "agora cast");
    origin.wait_mount("/live.webm");
    let port = free_port();
    let edge = Agora::start_at(
        &format!("127.0.0.1:{port}"),
        &format!(
            "[master]\nurl = \"http://relay:relay-pw@{}/\"\ninterval-secs = 1\n\
             announce = \"http://127.0.0.1:{port}\"\n",
            origin.addr
        ),
    );
    edge.wait_mount("/live.webm");
    let admin = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    wait_until(
        "the origin to probe the edge",
        Duration::from_secs(30),
        || {
            let (_, _, body) = http_get(
                origin.addr,
                "/admin/relays.json",
                &[("Authorization", &admin)],
            );
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            v["edges"][0]["healthy"] == true && v["edges"][0]["mounts"][0] == "/live.webm"
        },
    );

    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://{}/watch/live.webm", origin.addr))
            .await
            .expect("open the watch page");
        let t0 = wait_js(
            &c,
            "the video to start",
            CURRENT_TIME,
            Duration::from_secs(40),
            |v| v.as_f64().is_some_and(|t| t > 0.2),
        )
        .await
        .as_f64()
        .unwrap_or_default();
        wait_js(
            &c,
            "3 s of playback",
            CURRENT_TIME,
            Duration::from_secs(30),
            |v| v.as_f64().is_some_and(|t| t >= t0 + 3.0),
        )
        .await;
        // The viewer is the edge's, and the origin's page counts it.
        assert!(
            edge.listeners("/live.webm") >= 1,
            "the edge serves the page's player"
        );
        assert_eq!(
            origin.listeners("/live.webm"),
            0,
            "the origin serves no viewer"
        );
        wait_js(
            &c,
            "the page to count the viewer on the edge",
            "return document.getElementById('listeners').textContent;",
            Duration::from_secs(20),
            |v| {
                v.as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|n| n >= 1)
            },
        )
        .await;
        c.close().await.expect("close the browser");
    });
}

/// One join in the page: an `<audio>` for `url`; resolves with the milliseconds from setting
/// `src` to the first advance of `currentTime` (null if none within 8 s), and how far playback
/// got in the 3 s after it (a player that starts and then stalls is no better than a late one).
const FIRST_SOUND: &str = r#"
const [url, done] = arguments;
const m = document.createElement('audio');
document.body.append(m);
const t0 = performance.now();
let first = null, at = 0;
const poll = setInterval(() => {
  const now = performance.now() - t0;
  if (first === null && m.currentTime > 0) { first = now; at = m.currentTime; }
  if ((first !== null && now > first + 3000) || (first === null && now > 8000)) {
    clearInterval(poll);
    const played = first === null ? 0 : m.currentTime - at;
    m.removeAttribute('src'); m.load(); m.remove();
    done({first, played});
  }
}, 5);
m.src = url;
m.play().catch(() => {});
"#;

/// #12: Chromium reads a live response in 32 KiB blocks, so a mount that holds less than that
/// (a source that just started, a low bitrate) used to play only once 32 KiB more had come:
/// 2 s after the source started, 6 s for these MP3 and AAC streams, 9 s for Opus at 24 kbit/s
/// and 17 s for the mono Vorbis stream. Each format is joined 2 s after its source started:
/// first sound within 3 s, then at least 2 s of playback in the next 3 s (no stall).
#[test]
fn a_browser_joining_early_hears_every_audio_format_within_seconds() {
    let dir = TempDir::new("browser-first-sound");
    let profile = dir.path().join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let (_driver, driver_url) = chromedriver(dir.path());
    let agora = Agora::start();
    let sine = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"];
    let cases: [(&str, &[&str]); 4] = [
        (
            "/mono.ogg",
            &["-ac", "1", "-c:a", "libvorbis", "-q:a", "3", "-f", "ogg"],
        ),
        (
            "/low.opus",
            &[
                "-c:a", "libopus", "-b:a", "24k", "-ar", "48000", "-f", "ogg",
            ],
        ),
        (
            "/low.mp3",
            &["-ac", "1", "-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3"],
        ),
        (
            "/low.aac",
            &["-ac", "1", "-c:a", "aac", "-b:a", "32k", "-f", "adts"],
        ),
    ];
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://{}/status-json.xsl", agora.addr))
            .await
            .expect("a page of the server");
        for (mount, encode) in cases {
            let _source = Proc::spawn(
                Command::new("ffmpeg")
                    .args(["-nostdin", "-v", "error", "-re"])
                    .args(sine)
                    .args(encode)
                    .arg(agora.icecast_url(mount)),
            );
            agora.wait_mount(mount);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let r = c
                .execute_async(FIRST_SOUND, vec![json!(agora.url(mount))])
                .await
                .expect("the join script");
            let first = r["first"].as_f64();
            eprintln!(
                "{mount}: first sound after {first:?} ms, then {} s played in 3 s",
                r["played"]
            );
            assert!(
                first.is_some_and(|ms| ms <= 3000.0),
                "{mount}: no sound within 3 s of load: {r}"
            );
            assert!(
                r["played"].as_f64().is_some_and(|s| s >= 2.0),
                "{mount}: playback stalled after it started: {r}"
            );
        }
        c.close().await.expect("close the browser");
    });
}
