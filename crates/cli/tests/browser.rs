//! The watch page in Debian's headless Chromium, driven through chromedriver (WebDriver, with
//! the `fantoccini` crate), against the real server fed by a real `agora cast --preset webm
//! --input test`: the page plays (the `<video>`'s `currentTime` advances), shows the listener
//! count and a title set through `/admin/metadata`, and resumes by itself, without a reload,
//! after the source is killed and restarted. Every control on the three pages has an accessible
//! name, and the admin page works from the keyboard alone. Screenshots are left in
//! `target/screenshots/` for people to look at (`watch.png`, and `embed-640x360.png` and
//! `embed-1280x720.png` of the embedded player); `AGORA_DOCS_SCREENSHOTS=1` writes them to
//! `docs/` too, where the README and docs/embedding.md show them:
//!
//! ```text
//! AGORA_DOCS_SCREENSHOTS=1 cargo nextest run -p agora-cli --test browser -E 'test(watch_page_plays_shows) | test(embedded)'
//! ```
//!
//! Issue #15's slides panel: `the_watch_pages_slides_follow_playback` leaves
//! `watch-slides.png` the same way (`-E 'test(slides_follow)'`).
//!
//! Issue #15's archive: `the_archives_page_plays_the_recording_with_its_slides` opens the
//! player page `agora cast --slides --archive-dir` leaves beside the recording, from `file://`.
//!
//! Issue #14's first hour: the embed snippet in another site's frame shows the player alone,
//! whole, at any size; a "click for sound" control unmutes in one click or key press; the
//! Theora notice is one sentence; the admin page offers moves only between mounts of one
//! format.

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

/// chromedriver on a free port, once it accepts connections: the process, its URL, and a
/// new browser profile folder, `DIR/profile`.
fn chromedriver(dir: &Path) -> (Logged, String, PathBuf) {
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
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    (driver, format!("http://{addr}"), profile)
}

/// The runtime a test drives the browser from.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn browser(driver_url: &str, profile: &Path) -> Client {
    browser_with(driver_url, profile, Autoplay::Anything).await
}

/// What the browser lets a page play by itself.
#[derive(Clone, Copy, PartialEq)]
enum Autoplay {
    /// Sound included (`--autoplay-policy=no-user-gesture-required`): for tests about what
    /// plays, not about how it starts.
    Anything,
    /// Chromium's own policy, as viewers have it: muted media starts by itself, sound needs
    /// the viewer's click or key press.
    AsShipped,
}

async fn browser_with(driver_url: &str, profile: &Path, autoplay: Autoplay) -> Client {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        // The browser's output only: `video.muted` is the page's and still reported.
        "--mute-audio".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if autoplay == Autoplay::Anything {
        args.push("--autoplay-policy=no-user-gesture-required".into());
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": CHROMIUM, "args": args }),
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

/// Presses Tab until the control whose `data-key` (else its `id`) is `key` has the focus.
async fn tab_to(c: &Client, key: &str) {
    let mut seen = Vec::new();
    for _ in 0..40 {
        press(c, TAB).await;
        let focused = c
            .execute(
                "const e = document.activeElement; return e ? (e.getAttribute('data-key') || e.id || e.tagName) : null;",
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
    let (_driver, driver_url, profile) = chromedriver(dir.path());
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
    save_screenshot("watch.png", &screenshot);
}

/// An origin that sends its viewers to an edge (#11, `redirect = "always"`): the watch page
/// opened on the origin plays from the edge (its `<video>` follows the `302`), and counts the
/// viewer although the origin itself has none.
#[test]
fn the_watch_page_plays_from_an_edge_when_the_origin_redirects() {
    let dir = TempDir::new("browser-edge");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
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
    let (_driver, driver_url, profile) = chromedriver(dir.path());
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

/// Another site's web server for the attacks of #13: serves `pages` (path, HTML) to whoever
/// asks, one request per connection, for as long as the test process lives.
fn serve_pages(pages: Vec<(&'static str, String)>) -> u16 {
    let pages = std::sync::Arc::new(pages);
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the other site");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let pages = pages.clone();
            // A thread each: Chromium opens connections it may never use.
            std::thread::spawn(move || {
                // Chromium opens connections ahead of its requests and may keep one idle for
                // a while: wait long, and never answer a request that did not come (an answer
                // written to an idle connection would be read as the next page's).
                let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let resp = match pages.iter().find(|(p, _)| *p == path) {
                    Some((_, html)) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{html}",
                        html.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                let _ = s.write_all(resp.as_bytes());
            });
        }
    });
    port
}

/// An endless MP3 source (a sine) on `mount`.
fn sine_source(agora: &Agora, mount: &str) -> Proc {
    sine_source_as(agora, mount, mount)
}

/// [`sine_source`] pushed to `path` (percent-encoded, say), the mount named `name`.
fn sine_source_as(agora: &Agora, path: &str, name: &str) -> Proc {
    let p = Proc::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:sample_rate=44100")
            .args(["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"])
            .arg(agora.icecast_url(path)),
    );
    agora.wait_mount(name);
    p
}

/// Waits for a navigation to the Agora server to have finished (its answer is on screen),
/// and returns the text it shows.
async fn landed_on(c: &Client, origin: &str, what: &str) -> String {
    let script = format!(
        "return location.origin === {origin:?} && document.readyState === 'complete'
           ? document.documentElement.textContent : null;"
    );
    let text = wait_js(c, what, &script, Duration::from_secs(20), |v| v.is_string()).await;
    text.as_str().unwrap_or_default().to_string()
}

/// #13, in Chromium as it was reported: the operator opened the admin page (the browser keeps
/// the credentials), then visited other pages. A page of another site (`localhost` against
/// `127.0.0.1`) navigates to `/admin/metadata` and POSTs a form to `/admin/killsource`; a
/// page of this host on another port (same site, another origin) sets a title with an `<img>`
/// and a `no-cors` fetch, and POSTs `killsource` with a `no-cors` fetch. Each is refused and
/// changes nothing. The admin page itself still sets a title and kills a source, by POST with
/// its token.
#[test]
fn other_sites_pages_cannot_use_the_operators_credentials_but_the_admin_page_can() {
    let dir = TempDir::new("browser-csrf");
    let access_log = dir.path().join("access.log");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start_with_config(&format!(
        "[server]\naccess-log = {:?}\n[mount-defaults]\ngrace-period-secs = 30\n",
        access_log.display().to_string()
    ));
    let _a = sine_source(&agora, "/a.mp3");
    let _b = sine_source(&agora, "/b.mp3");
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let (code, _, body) = http_get(
        agora.addr,
        "/admin/metadata?mount=/a.mp3&mode=updinfo&song=Before",
        &[("Authorization", &auth)],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let title = || {
        agora
            .source("/a.mp3")
            .map(|m| m["title"].clone())
            .unwrap_or_default()
    };
    let connected = |mount: &str| {
        let (_, _, body) = http_get(agora.addr, &format!("/api/v1/mounts{mount}"), &[]);
        serde_json::from_slice::<Value>(&body).unwrap_or_default()["connected"] == true
    };

    let server = format!("http://{}", agora.addr);
    let site = serve_pages(vec![
        (
            "/navigate",
            format!(
                "<!doctype html><title>Another site</title><script>
                 location.href = '{server}/admin/metadata?mount=/a.mp3&mode=updinfo&song=Forged+by+a+link';
                 </script>"
            ),
        ),
        (
            "/form",
            format!(
                "<!doctype html><title>Another site</title>
                 <form method=post action='{server}/admin/killsource?mount=/a.mp3'>
                 <input type=hidden name=mount value=/a.mp3></form>
                 <script>document.forms[0].submit();</script>"
            ),
        ),
        (
            "/subresources",
            format!(
                "<!doctype html><title>This host, another port</title><script>
                 window.done = 0;
                 const img = new Image();
                 img.onload = img.onerror = () => window.done++;
                 img.src = '{server}/admin/metadata?mount=/a.mp3&mode=updinfo&song=Forged+by+an+image';
                 fetch('{server}/admin/metadata?mount=/a.mp3&mode=updinfo&song=Forged+by+fetch',
                       {{mode: 'no-cors', credentials: 'include'}})
                   .finally(() => window.done++);
                 fetch('{server}/admin/killsource?mount=/b.mp3',
                       {{method: 'POST', mode: 'no-cors', credentials: 'include',
                         body: new URLSearchParams({{mount: '/b.mp3'}})}})
                   .finally(() => window.done++);
                 </script>"
            ),
        ),
    ]);

    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        // The operator logs in: the browser keeps the credentials for this server.
        c.goto(&format!("http://admin:{ADMIN_PW}@{}/admin/", agora.addr))
            .await
            .expect("open /admin/");
        wait_js(
            &c,
            "the mounts on the admin page",
            "return document.querySelectorAll('#mounts section').length;",
            Duration::from_secs(10),
            |v| v.as_u64() == Some(2),
        )
        .await;

        // Another site: a top-level GET, then a form POST.
        c.goto(&format!("http://localhost:{site}/navigate"))
            .await
            .expect("open the other site");
        let shown = landed_on(&c, &server, "the link to the admin API to load").await;
        assert_eq!(title(), "Before", "a forged link changed the title");
        assert!(
            shown.contains("Refused"),
            "the forged link's answer: {shown}"
        );
        c.goto(&format!("http://localhost:{site}/form"))
            .await
            .expect("open the other site's form");
        let shown = landed_on(&c, &server, "the forged form's answer").await;
        assert!(
            !agora.log_has(&["source removed by the admin"]),
            "a forged form removed the source"
        );
        assert!(
            shown.contains("Refused"),
            "the forged form's answer: {shown}"
        );

        // This host on another port: an image and two no-cors fetches.
        c.goto(&format!("http://127.0.0.1:{site}/subresources"))
            .await
            .expect("open the same-site page");
        wait_js(
            &c,
            "the image and the fetches to be answered",
            "return window.done;",
            Duration::from_secs(20),
            |v| v.as_u64() == Some(3),
        )
        .await;
        assert_eq!(
            title(),
            "Before",
            "an image or a no-cors fetch changed the title"
        );
        assert!(connected("/a.mp3") && connected("/b.mp3"));
        for forged in ["Forged", "source removed by the admin"] {
            assert!(!agora.log_has(&[forged]), "{forged}:\n{}", agora.log());
        }
        for command in ["metadata", "killsource"] {
            assert!(
                agora.log_has(&["admin request refused", &format!("command=\"{command}\"")]),
                "no refusal of {command} logged:\n{}",
                agora.log()
            );
        }

        // The admin page still acts: a title, then the source of /a.mp3 (which must still be
        // there to be removed).
        c.goto(&format!("http://{}/admin/", agora.addr))
            .await
            .expect("back to /admin/");
        wait_js(
            &c,
            "the mounts on the admin page again",
            "return document.querySelectorAll('#mounts section').length;",
            Duration::from_secs(10),
            |v| v.as_u64() == Some(2),
        )
        .await;
        c.execute(
            "const f = document.querySelector('[data-key=\"/a.mp3 title\"]');
             f.value = 'Set on the admin page'; f.form.requestSubmit();",
            vec![],
        )
        .await
        .expect("submit a title");
        agora.wait_status("the admin page's title", |_| {
            title() == "Set on the admin page"
        });
        c.execute(
            "document.querySelector('[data-key=\"/a.mp3 killsource\"]').click();",
            vec![],
        )
        .await
        .expect("click the kill button");
        wait_js(
            &c,
            "the admin page to say the source was removed",
            "return document.getElementById('result').textContent;",
            Duration::from_secs(10),
            |v| v.as_str() == Some("Source Removed"),
        )
        .await;
        wait_until("/a.mp3's source to go", Duration::from_secs(10), || {
            !connected("/a.mp3")
        });
        assert!(connected("/b.mp3"), "the other source is still there");
        let _ = c.close().await;
    });
    // The page's actions went as POST.
    wait_until("the access log lines", Duration::from_secs(10), || {
        let log = std::fs::read_to_string(&access_log).unwrap_or_default();
        log.contains("\"POST /admin/metadata.json HTTP/1.1\" 200")
            && log.contains("\"POST /admin/killsource.json HTTP/1.1\" 200")
    });
}

/// The admin page's token is made at start: a page opened before the server restarted holds
/// the old one. Its first action is refused (403), and the page takes the new token from the
/// server and sends the action again, so the operator sees it done.
#[test]
fn the_admin_page_takes_a_restarted_servers_new_token() {
    let dir = TempDir::new("browser-token");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let first = Agora::start_at(&listen, "");
    let source = sine_source(&first, "/a.mp3");
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://admin:{ADMIN_PW}@{listen}/admin/"))
            .await
            .expect("open /admin/");
        const BUILDS: &str = "return document.querySelectorAll('#mounts section').length
            ? Number(document.getElementById('mounts').dataset.builds) : 0;";
        let builds = wait_js(
            &c,
            "the mount on the admin page",
            BUILDS,
            Duration::from_secs(10),
            |v| v.as_u64().is_some_and(|n| n > 0),
        )
        .await
        .as_u64()
        .unwrap_or_default();
        drop(source);
        drop(first);
        let second = Agora::start_at(&listen, "");
        let _source = sine_source(&second, "/a.mp3");
        // The page lists the mount of the new server (it refreshes by itself).
        wait_js(
            &c,
            "the page to list the new server's mount",
            BUILDS,
            Duration::from_secs(20),
            |v| v.as_u64().is_some_and(|n| n > builds),
        )
        .await;
        c.execute(
            "const f = document.querySelector('[data-key=\"/a.mp3 title\"]');
             f.value = 'After the restart'; f.form.requestSubmit();",
            vec![],
        )
        .await
        .expect("submit a title");
        second.wait_status("the title from the page", |a| {
            a.source("/a.mp3")
                .is_some_and(|m| m["title"] == "After the restart")
        });
        wait_js(
            &c,
            "the page to say it was done",
            "return document.getElementById('result').textContent;",
            Duration::from_secs(10),
            |v| v.as_str() == Some("Metadata update successful"),
        )
        .await;
        assert!(
            second.log_has(&["admin request refused", "StaleToken"]),
            "the old token was not refused first:\n{}",
            second.log()
        );
        let _ = c.close().await;
    });
}

/// #13's URL space, in Chromium: a source with the password tries to take over the pages'
/// paths (each refused), then the admin page still works, and a mount whose name has a space
/// and an accent is listed on the front page with a watch page that plays it.
#[test]
fn pages_survive_takeover_attempts_and_play_a_mount_named_with_accents() {
    let dir = TempDir::new("browser-urls");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start();
    for path in [
        "/admin/",
        "/admin/index.html",
        "/index.html",
        "/assets/agora.js",
        "/assets/admin.js",
        "/watch/x",
        "/Saal%20%C3%9C.mp3.m3u",
    ] {
        let (_s, head) = raw_source(
            agora.addr,
            path,
            "SOURCE",
            &[("Content-Type", "audio/mpeg")],
        );
        assert!(head.starts_with("HTTP/1.0 400"), "{path}: {head}");
    }
    let _sine = sine_source_as(&agora, "/Saal%20%C3%9C.mp3", "/Saal Ü.mp3");
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        // The admin page runs its own script and lists the mount by its name.
        c.goto(&format!("http://admin:{ADMIN_PW}@{}/admin/", agora.addr))
            .await
            .expect("open /admin/");
        wait_js(
            &c,
            "the mount on the admin page",
            "const h = document.querySelector('#mounts section h2'); return h ? h.textContent : null;",
            Duration::from_secs(10),
            |v| v.as_str().is_some_and(|s| s.contains("/Saal Ü.mp3")),
        )
        .await;
        // The front page links to the watch page, which plays the mount.
        c.goto(&format!("http://{}/", agora.addr))
            .await
            .expect("open /");
        let href = wait_js(
            &c,
            "the mount's watch link",
            "const a = document.querySelector('#mounts a'); return a ? a.href : null;",
            Duration::from_secs(10),
            |v| v.is_string(),
        )
        .await;
        let href = href.as_str().unwrap_or_default().to_string();
        assert!(href.ends_with("/watch/Saal%20%C3%9C.mp3"), "{href}");
        c.goto(&href).await.expect("open the watch page");
        let t0 = wait_js(&c, "the stream to play", CURRENT_TIME, Duration::from_secs(40), |v| {
            v.as_f64().is_some_and(|t| t > 0.2)
        })
        .await
        .as_f64()
        .unwrap_or_default();
        wait_js(&c, "2 s of playback", CURRENT_TIME, Duration::from_secs(30), |v| {
            v.as_f64().is_some_and(|t| t >= t0 + 2.0)
        })
        .await;
        let m3u = c
            .execute("return document.getElementById('m3u').href;", vec![])
            .await
            .expect("the playlist link");
        assert!(
            m3u.as_str().is_some_and(|h| h.ends_with("/Saal%20%C3%9C.mp3.m3u")),
            "{m3u}"
        );
        c.close().await.expect("close the browser");
    });
}

/// Where screenshots for people go: `target/screenshots/`, and `docs/` too when
/// `AGORA_DOCS_SCREENSHOTS=1` (the docs' pictures are remade on purpose, not by every run of
/// the suite: a live test pattern never gives the same bytes twice).
fn save_screenshot(name: &str, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec![root.join("target/screenshots")];
    if std::env::var_os("AGORA_DOCS_SCREENSHOTS").is_some_and(|v| v == "1") {
        dirs.push(root.join("docs"));
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
    }
}

/// The value of `attr="..."` in an HTML snippet.
fn attribute<'a>(html: &'a str, attr: &str) -> &'a str {
    let start = html
        .find(&format!(" {attr}=\""))
        .unwrap_or_else(|| panic!("no {attr} in {html}"))
        + attr.len()
        + 3;
    let len = html[start..].find('"').expect("a closing quote");
    &html[start..start + len]
}

/// The snippet with its `width` and `height` set, the rest as the page wrote it.
fn sized(snippet: &str, width: u32, height: u32) -> String {
    let w = attribute(snippet, "width");
    let h = attribute(snippet, "height");
    snippet
        .replacen(
            &format!(" width=\"{w}\""),
            &format!(" width=\"{width}\""),
            1,
        )
        .replacen(
            &format!(" height=\"{h}\""),
            &format!(" height=\"{height}\""),
            1,
        )
}

/// The watch page inside a frame, measured from inside it: the frame's viewport, the
/// scrolling element's client and scroll sizes, which parts of the page are on screen, the
/// player's box and the sound control's.
const FRAME_LAYOUT: &str = r#"
const vw = window.innerWidth, vh = window.innerHeight;
const s = document.scrollingElement;
const onScreen = (e) => {
  if (!e) return false;
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0 && r.left < vw
    && r.top < vh && getComputedStyle(e).visibility !== 'hidden';
};
const box = (e) => {
  if (!onScreen(e)) return null;
  const r = e.getBoundingClientRect();
  return [r.left, r.top, r.right, r.bottom];
};
const p = document.getElementById('player');
return {
  viewport: [vw, vh],
  client: [s.clientWidth, s.clientHeight],
  scroll: [s.scrollWidth, s.scrollHeight],
  shown: ['site', 'name', 'description', 'elsewhere', 'embed', 'copy']
    .filter((id) => onScreen(document.getElementById(id))),
  player: box(p),
  kind: p ? p.tagName : null,
  controls: p ? p.controls : false,
  sound: box(document.getElementById('sound')),
  time: p ? p.currentTime : -1,
};
"#;

/// `[left, top, right, bottom]` lies within a `w`x`h` viewport.
fn inside(b: &Value, w: f64, h: f64) -> bool {
    let v: Vec<f64> = b
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    v.len() == 4 && v[0] >= -0.5 && v[1] >= -0.5 && v[2] <= w + 0.5 && v[3] <= h + 0.5
}

/// The player's state and the sound control's, in the current page or frame.
const SOUND: &str =
    "const p = document.getElementById('player'); const b = document.getElementById('sound');
    return p ? {muted: p.muted, volume: p.volume, paused: p.paused, time: p.currentTime,
                control: !!b && !b.hidden && b.getClientRects().length > 0} : null;";

/// The sound goes on (unmuted, volume above 0) and the player keeps playing: two more seconds
/// of playback, not paused, and the control gone.
async fn sound_comes_on(c: &Client, what: &str) {
    let on = wait_js(
        c,
        &format!("the sound on after {what}"),
        SOUND,
        Duration::from_secs(10),
        |v| v["muted"] == false && v["volume"].as_f64().is_some_and(|x| x > 0.0),
    )
    .await;
    let t = on["time"].as_f64().unwrap_or_default();
    let after = wait_js(
        c,
        &format!("playback to go on after {what}"),
        SOUND,
        Duration::from_secs(20),
        |v| v["time"].as_f64().is_some_and(|x| x >= t + 2.0),
    )
    .await;
    assert_eq!(after["paused"], false, "{what}: {after}");
    assert_eq!(after["muted"], false, "{what}: {after}");
    assert_eq!(
        after["control"], false,
        "{what}: the sound control is still there: {after}"
    );
}

/// #14: the embed snippet the watch page offers, pasted into another site's page (another
/// host name and port: cross-site) at its own size, at 1280x720 and at 320x180 for a video
/// mount, and at its own size for an audio mount. Inside the frame, measured from inside
/// it: no site header, title, description or links, no scrollbar (the scrolling element is
/// the frame's size), the player and its controls whole within the frame, a video filling
/// it; the sound control on screen, and one click on it unmutes. It used to show the header
/// (`hidden` lost to the stylesheet's `display: flex`) and cut the video off behind a
/// scrollbar. The admin page does not load in a frame. Screenshots of the 640x360 and
/// 1280x720 frames: `target/screenshots/embed-*.png` (and `docs/`, see [`save_screenshot`]).
#[test]
fn the_embedded_watch_page_fills_its_frame_on_another_site() {
    let dir = TempDir::new("browser-embed");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start();
    let _video = cast(&agora, dir.path(), "agora cast");
    let _audio = sine_source(&agora, "/radio.mp3");
    agora.wait_mount("/live.webm");
    let rt = runtime();
    rt.block_on(async {
        let c = browser_with(&driver_url, &profile, Autoplay::AsShipped).await;
        c.set_window_size(1440, 1000).await.expect("window size");
        // The snippets as the watch pages offer them (once the page knows the mount's kind).
        let mut snippets = Vec::new();
        for mount in ["/live.webm", "/radio.mp3"] {
            c.goto(&format!("http://{}/watch{mount}", agora.addr))
                .await
                .expect("open the watch page");
            wait_js(
                &c,
                "the player",
                CURRENT_TIME,
                Duration::from_secs(40),
                |v| v.as_f64().is_some_and(|t| t >= 0.0),
            )
            .await;
            let snippet = c
                .execute("return document.getElementById('embed').value;", vec![])
                .await
                .expect("the embed snippet");
            let snippet = snippet.as_str().unwrap_or_default().to_string();
            let src = attribute(&snippet, "src");
            assert!(
                src.starts_with(&format!("http://{}/watch{mount}", agora.addr)),
                "{snippet}"
            );
            snippets.push(snippet);
        }
        let (video, audio) = (&snippets[0], &snippets[1]);
        let own = |s: &str| -> (u32, u32) {
            (
                attribute(s, "width").parse().expect("a width"),
                attribute(s, "height").parse().expect("a height"),
            )
        };
        let (vw, vh) = own(video);
        let cases = [
            (
                "/video-own",
                video.to_string(),
                vw,
                vh,
                Some("embed-640x360.png"),
            ),
            (
                "/video-hd",
                sized(video, 1280, 720),
                1280,
                720,
                Some("embed-1280x720.png"),
            ),
            ("/video-small", sized(video, 320, 180), 320, 180, None),
            (
                "/audio-own",
                audio.to_string(),
                own(audio).0,
                own(audio).1,
                None,
            ),
        ];
        let host = |frame: &str| {
            format!(
                "<!doctype html><html lang=en><title>Another site</title>\
                 <body style='margin:8px;background:#ddd'>{frame}</body></html>"
            )
        };
        let mut pages: Vec<(&'static str, String)> = cases
            .iter()
            .map(|(p, frame, ..)| (*p, host(frame)))
            .collect();
        pages.push((
            "/admin",
            host(&format!(
                "<iframe src='http://{}/admin/' width=640 height=360></iframe>",
                agora.addr
            )),
        ));
        let site = serve_pages(pages);

        for (path, _, w, h, shot) in &cases {
            c.goto(&format!("http://localhost:{site}{path}"))
                .await
                .expect("open the other site's page");
            wait_js(
                &c,
                &format!("{path}: the other site's page"),
                "return document.querySelector('iframe') ? true
                   : location.href + ' ' + document.documentElement.outerHTML.slice(0, 200);",
                Duration::from_secs(20),
                |v| *v == json!(true),
            )
            .await;
            let frame = c
                .find(fantoccini::Locator::Css("iframe"))
                .await
                .expect("the iframe");
            frame.clone().enter_frame().await.expect("into the frame");
            // A video starts by itself, muted; an audio player waits for a click (Chromium
            // starts muted media by itself only in a <video>).
            let layout = wait_js(
                &c,
                &format!("{path}: the player"),
                FRAME_LAYOUT,
                Duration::from_secs(40),
                |v| v["kind"] == "AUDIO" || v["time"].as_f64().is_some_and(|t| t > 0.5),
            )
            .await;
            eprintln!("{path}: {layout}");
            assert_eq!(layout["viewport"], json!([w, h]), "{path}: {layout}");
            assert_eq!(
                layout["client"],
                json!([w, h]),
                "{path}: a scrollbar: {layout}"
            );
            assert_eq!(layout["scroll"], json!([w, h]), "{path}: scrolls: {layout}");
            let (w, h) = (f64::from(*w), f64::from(*h));
            assert_eq!(
                layout["shown"],
                json!([]),
                "{path}: more than the player: {layout}"
            );
            assert_eq!(layout["controls"], true, "{path}: {layout}");
            assert!(
                inside(&layout["player"], w, h),
                "{path}: the player is cut: {layout}"
            );
            assert!(
                inside(&layout["sound"], w, h),
                "{path}: the sound control: {layout}"
            );
            if layout["kind"] == "VIDEO" {
                let b: Vec<f64> = layout["player"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                assert!(
                    b[2] - b[0] >= w - 1.0 && b[3] - b[1] >= h - 1.0,
                    "{path}: the video does not fill its frame: {layout}"
                );
            }
            if let Some(name) = shot {
                // With the pointer over the frame, as a viewer would see it: the controls up.
                c.enter_parent_frame().await.expect("out of the frame");
                use fantoccini::actions::{InputSource, MouseActions, PointerAction};
                let hover = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
                    element: frame.clone(),
                    duration: None,
                    x: 0.0,
                    y: 0.0,
                });
                c.perform_actions(hover).await.expect("hover the frame");
                let png = frame.screenshot().await.expect("screenshot of the frame");
                save_screenshot(name, &png);
                frame.clone().enter_frame().await.expect("into the frame");
            }
            // The sound control works in the frame: one click.
            let before = c.execute(SOUND, vec![]).await.expect("sound state");
            assert_eq!(before["muted"], true, "{path}: starts muted: {before}");
            c.find(fantoccini::Locator::Id("sound"))
                .await
                .expect("the sound control")
                .click()
                .await
                .expect("click for sound");
            sound_comes_on(&c, &format!("{path}: a click in the frame")).await;
        }

        // The admin page is not framed: the frame holds the browser's error page.
        c.goto(&format!("http://localhost:{site}/admin"))
            .await
            .expect("open the other site's admin frame");
        c.find(fantoccini::Locator::Css("iframe"))
            .await
            .expect("the iframe")
            .enter_frame()
            .await
            .expect("into the frame");
        let inner = c
            .execute(
                "return {url: location.href, admin: !!document.getElementById('mounts')};",
                vec![],
            )
            .await
            .expect("the frame's document");
        assert_eq!(
            inner["admin"], false,
            "the admin page loaded in a frame: {inner}"
        );
        // The size the page suggests for a video: 16:9, as cameras and slides are.
        assert_eq!((vw, vh), (640, 360), "the video snippet's size: {video}");
        let _ = c.close().await;
    });
}

/// #14: the watch page starts muted (browsers start only muted media by themselves) and says
/// so: a "click for sound" control, on screen, named, reached with Tab. Chromium's own
/// autoplay policy, as viewers have it. One click on it turns the sound on and the video
/// plays on; in a second page load, one key press (M) does the same.
#[test]
fn one_click_or_one_key_turns_the_watch_pages_sound_on() {
    let dir = TempDir::new("browser-sound");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start();
    let _cast = cast(&agora, dir.path(), "agora cast");
    agora.wait_mount("/live.webm");
    let rt = runtime();
    rt.block_on(async {
        let c = browser_with(&driver_url, &profile, Autoplay::AsShipped).await;
        for how in ["a click", "a key press"] {
            c.goto(&format!("http://{}/watch/live.webm", agora.addr))
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
            let v = wait_js(&c, "muted playback", SOUND, Duration::from_secs(20), |v| {
                v["time"].as_f64().is_some_and(|t| t >= t0 + 1.0)
            })
            .await;
            assert_eq!(v["muted"], true, "{how}: the page starts muted: {v}");
            assert_eq!(v["paused"], false, "{how}: {v}");
            assert_eq!(v["control"], true, "{how}: no sound control on screen: {v}");
            if how == "a click" {
                assert_controls_named(&c, "the watch page").await;
                tab_to(&c, "sound").await;
                c.find(fantoccini::Locator::Id("sound"))
                    .await
                    .expect("the sound control")
                    .click()
                    .await
                    .expect("click for sound");
            } else {
                press(&c, "m").await;
            }
            sound_comes_on(&c, how).await;
        }
        let _ = c.close().await;
    });
}

/// #14: the admin page offered to move listeners to any other mount, and the server refused a
/// move to one of another format (409). `listmounts.json` says each mount's format; the page
/// offers only mounts of the same one, and no move at all where there is none.
#[test]
fn the_admin_page_offers_moves_only_to_mounts_of_the_same_format() {
    let dir = TempDir::new("browser-move");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start();
    let _a = sine_source(&agora, "/a.mp3");
    let _b = sine_source(&agora, "/b.mp3");
    let _c = Proc::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:sample_rate=44100")
            .args(["-c:a", "libvorbis", "-f", "ogg"])
            .arg(agora.icecast_url("/c.ogg")),
    );
    agora.wait_mount("/c.ogg");
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let formats = || {
        let (_, _, body) = http_get(
            agora.addr,
            "/admin/listmounts.json",
            &[("Authorization", &auth)],
        );
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        v["icestats"]["source"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| (m["mount"].clone(), m["format"].clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    wait_until("the three formats known", Duration::from_secs(20), || {
        formats().iter().all(|(_, f)| f.is_string()) && formats().len() == 3
    });
    assert_eq!(
        formats(),
        vec![
            (json!("/a.mp3"), json!("mp3")),
            (json!("/b.mp3"), json!("mp3")),
            (json!("/c.ogg"), json!("ogg")),
        ]
    );
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://admin:{ADMIN_PW}@{}/admin/", agora.addr))
            .await
            .expect("open /admin/");
        let offers = wait_js(
            &c,
            "the three mounts on the admin page",
            "if (document.querySelectorAll('#mounts section').length < 3) return null;
             const offers = {};
             for (const m of ['/a.mp3', '/b.mp3', '/c.ogg']) {
               const s = document.querySelector(`[data-key=\"${m} destination\"]`);
               offers[m] = s ? [...s.options].map((o) => o.value) : null;
             }
             return offers;",
            Duration::from_secs(20),
            |v| v.is_object(),
        )
        .await;
        assert_eq!(
            offers,
            json!({"/a.mp3": ["/b.mp3"], "/b.mp3": ["/a.mp3"], "/c.ogg": null}),
            "the destinations offered"
        );
        assert_controls_named(&c, "the admin page").await;
        let _ = c.close().await;
    });
}

/// #15: a deck uploaded from the admin page's file input (with the page's token), then stepped
/// by its buttons and by the keys a presenter remote sends (Page Down, Page Up, arrows,
/// space): each step makes that page the mount's current slide, at the stream's live edge.
#[test]
fn the_admin_page_uploads_a_deck_and_steps_it_by_buttons_and_remote_keys() {
    let dir = TempDir::new("browser-deck");
    let pdf = dir.path().join("keynote.pdf");
    std::fs::write(&pdf, common::pdf::make_pdf(3)).expect("pdf");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start();
    let (_, file) = fixture("webm");
    let _push = ffmpeg_push(&agora, &file, "/live.webm", "webm", false);
    agora.wait_mount("/live.webm");
    let deck = || {
        let (code, _, body) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
        (code == 200).then(|| serde_json::from_slice::<Value>(&body).unwrap_or_default())
    };
    // The newest slide of the mount's list: (url, bytes).
    let newest = || {
        let (_, _, body) = http_get(agora.addr, "/api/v1/slides/live.webm", &[]);
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let url = v["slides"]
            .as_array()
            .and_then(|a| a.last())
            .map(|s| s["url"].as_str().unwrap_or_default().to_string())?;
        Some(http_get(agora.addr, &url, &[]).2)
    };
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://admin:{ADMIN_PW}@{}/admin/", agora.addr))
            .await
            .expect("open /admin/");
        wait_js(
            &c,
            "the deck's file input",
            "return !!document.querySelector('[data-key=\"/live.webm deck-file\"]');",
            Duration::from_secs(20),
            |v| v == &json!(true),
        )
        .await;
        let input = c
            .find(fantoccini::Locator::Css(
                "[data-key=\"/live.webm deck-file\"]",
            ))
            .await
            .expect("file input");
        input
            .send_keys(&pdf.display().to_string())
            .await
            .expect("choose the PDF");
        wait_js(
            &c,
            "the deck's controls",
            "return document.querySelectorAll('[data-deck-step]').length;",
            Duration::from_secs(60),
            |v| v == &json!(3),
        )
        .await;
        let d = deck().expect("the deck is on the server");
        assert_eq!(d["name"], "keynote.pdf");
        let pages: Vec<Vec<u8>> = d["pages"]
            .as_array()
            .expect("pages")
            .iter()
            .map(|p| http_get(agora.addr, p["url"].as_str().expect("url"), &[]).2)
            .collect();
        assert_eq!(pages.len(), 3);
        wait_until("the mount's stream time", Duration::from_secs(20), || {
            deck().is_some_and(|d| d["stream_time"].is_number())
        });
        let page_is = |n: usize| {
            format!(
                "const p = document.querySelector('.deck-page'); \
                 return p && p.textContent === 'Page {n} of 3';"
            )
        };
        // The button shows page 1.
        c.find(fantoccini::Locator::Css(
            "[data-key=\"/live.webm deck-next\"]",
        ))
        .await
        .expect("next button")
        .click()
        .await
        .expect("click");
        wait_js(&c, "page 1", &page_is(1), Duration::from_secs(20), |v| {
            v == &json!(true)
        })
        .await;
        assert_eq!(newest().as_ref(), Some(&pages[0]), "page 1 is the slide");
        // The remote's keys, on the page (nothing focused).
        for (key, want) in [
            ("\u{e00f}", 2), // Page Down
            ("\u{e00e}", 1), // Page Up
            ("\u{e014}", 2), // Arrow Right
            ("\u{e00d}", 3), // space
            ("\u{e012}", 2), // Arrow Left
        ] {
            c.execute(
                "document.activeElement && document.activeElement.blur();",
                vec![],
            )
            .await
            .expect("blur");
            press(&c, key).await;
            wait_js(
                &c,
                &format!("page {want}"),
                &page_is(want),
                Duration::from_secs(20),
                |v| v == &json!(true),
            )
            .await;
            assert_eq!(newest().as_ref(), Some(&pages[want - 1]), "page {want}");
        }
        assert_eq!(deck().expect("deck")["page"], 2);
        assert_controls_named(&c, "the admin page with a deck").await;
        let _ = c.close().await;
    });
}

/// Uploads a PDF as the mount's deck with the source's credentials: the deck's JSON.
fn upload_deck(agora: &Agora, mount: &str, pdf: &[u8]) -> Value {
    use std::io::Write;
    let mut s = TcpStream::connect(agora.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .expect("timeout");
    let head = format!(
        "PUT /admin/decks?mount={mount}&name=talk.pdf HTTP/1.0\r\nHost: test\r\nAuthorization: {}\r\n\
         Content-Type: application/pdf\r\nContent-Length: {}\r\n\r\n",
        source_auth(),
        pdf.len()
    );
    s.write_all(head.as_bytes()).expect("send head");
    s.write_all(pdf).expect("send the PDF");
    let (code, head, body) = split_response(&read_lenient(&mut s));
    assert_eq!(
        code,
        201,
        "deck upload: {head}{}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("deck JSON")
}

/// #15, end to end in two browsers: the operator steps a deck on the admin page (one Chromium)
/// while a viewer watches the mount (a second Chromium, its own profile). Each step, a click on
/// Next then the remote's Page Down, makes the viewer's watch page show that page's image, by
/// the time the viewer's playback reaches the new slide's `at` (plus a few seconds), and not
/// before playback is within a second of it.
#[test]
fn a_deck_stepped_on_the_admin_page_shows_on_a_viewers_watch_page() {
    let dir = TempDir::new("browser-deck-viewer");
    let admin_profile = dir.path().join("admin-profile");
    let viewer_profile = dir.path().join("viewer-profile");
    for p in [&admin_profile, &viewer_profile] {
        std::fs::create_dir_all(p).expect("profile dir");
    }
    let (_driver, driver_url, _) = chromedriver(dir.path());
    let agora = Agora::start();
    let _video = timed_video(&agora, "/live.webm");
    agora.wait_mount("/live.webm");
    let deck = upload_deck(&agora, "/live.webm", &common::pdf::make_pdf(3));
    let pages: Vec<Vec<u8>> = deck["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| http_get(agora.addr, p["url"].as_str().expect("url"), &[]).2)
        .collect();
    assert_eq!(pages.len(), 3);
    wait_until("the mount's stream time", Duration::from_secs(20), || {
        let (_, _, body) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
        serde_json::from_slice::<Value>(&body).is_ok_and(|d| d["stream_time"].is_number())
    });
    // The mount's slides as the API lists them: (at, url).
    let listed = || {
        let (_, _, body) = http_get(agora.addr, "/api/v1/slides/live.webm", &[]);
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        v["slides"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["at"].as_f64().expect("at"),
                            s["url"].as_str().expect("url").to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    // The viewer's frame on screen (its stream time) and the slide image shown.
    let shown = format!(
        "const v = (() => {{ {PLAYBACK} }})(); \
         return {{ frame: v && v.frame, src: document.getElementById('slide-img').getAttribute('src') }};"
    );

    let rt = runtime();
    rt.block_on(async {
        let viewer = browser(&driver_url, &viewer_profile).await;
        viewer
            .goto(&format!("http://{}/watch/live.webm", agora.addr))
            .await
            .expect("open the watch page");
        wait_js(
            &viewer,
            "the viewer's first frame",
            &shown,
            Duration::from_secs(40),
            |v| v["frame"].is_number(),
        )
        .await;
        let admin = browser(&driver_url, &admin_profile).await;
        admin
            .goto(&format!("http://admin:{ADMIN_PW}@{}/admin/", agora.addr))
            .await
            .expect("open /admin/");
        wait_js(
            &admin,
            "the deck's controls",
            "return document.querySelectorAll('[data-deck-step]').length;",
            Duration::from_secs(20),
            |v| v == &json!(3),
        )
        .await;

        for step in 1..=2usize {
            if step == 1 {
                admin
                    .find(fantoccini::Locator::Css(
                        "[data-key=\"/live.webm deck-next\"]",
                    ))
                    .await
                    .expect("next button")
                    .click()
                    .await
                    .expect("click");
            } else {
                admin
                    .execute(
                        "document.activeElement && document.activeElement.blur();",
                        vec![],
                    )
                    .await
                    .expect("blur");
                press(&admin, "\u{e00f}").await; // Page Down
            }
            wait_js(
                &admin,
                &format!("page {step} on the admin page"),
                &format!(
                    "const p = document.querySelector('.deck-page'); \
                     return p && p.textContent === 'Page {step} of 3';"
                ),
                Duration::from_secs(20),
                |v| v == &json!(true),
            )
            .await;
            let slides = listed();
            assert_eq!(slides.len(), step, "one slide per step: {slides:?}");
            let (at, url) = slides.last().cloned().expect("the new slide");
            assert_eq!(
                http_get(agora.addr, &url, &[]).2,
                pages[step - 1],
                "the slide {url} is page {step}"
            );
            // How far the viewer's playback is from the slide's moment now.
            let now = wait_js(
                &viewer,
                "the viewer's frame",
                &shown,
                Duration::from_secs(10),
                |v| v["frame"].is_number(),
            )
            .await;
            let ahead = (at - now["frame"].as_f64().expect("frame")).max(0.0);
            eprintln!("step {step}: slide at {at}, viewer at {now}, {ahead:.2} s ahead");
            let seen = wait_js(
                &viewer,
                &format!("page {step} ({url}) on the watch page"),
                &shown,
                Duration::from_secs_f64(ahead + 5.0),
                |v| v["src"] == json!(url),
            )
            .await;
            let frame = seen["frame"].as_f64().expect("frame");
            assert!(
                frame >= at - 1.0,
                "page {step} (at {at}) shown at frame time {frame}: too early"
            );
        }
        assert_eq!(listed().len(), 2);
        let _ = admin.close().await;
        let _ = viewer.close().await;
    });
}

/// #14: the watch page of an Ogg Theora mount (which browsers no longer play) said "browsers no
/// longer play Ogg Theora; open the playlist in VLC or mpv Open the playlist in VLC or mpv.",
/// and the status line said it once more. The reason is now one sentence, said once, with the
/// playlist's link; the front page's card says it as a sentence too.
#[test]
fn the_theora_notice_is_a_sentence_said_once() {
    let dir = TempDir::new("browser-theora");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start();
    let (theora, file) = fixture("theora");
    let _push = ffmpeg_push(&agora, &file, "/t.ogg", theora.muxer, false);
    agora.wait_mount("/t.ogg");
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://{}/watch/t.ogg", agora.addr))
            .await
            .expect("open the watch page");
        let shown = wait_js(
            &c,
            "the notice",
            "const n = document.getElementById('not-playable');
             return n ? {notice: n.textContent, state: document.getElementById('state').textContent,
                         page: document.querySelector('main').textContent} : null;",
            Duration::from_secs(30),
            |v| v["notice"].as_str().is_some_and(|n| n.contains("Theora")),
        )
        .await;
        assert_eq!(
            shown["notice"],
            "Browsers no longer play Ogg Theora. Open the playlist in VLC or mpv.",
            "{shown}"
        );
        let page = shown["page"].as_str().unwrap_or_default();
        assert_eq!(page.matches("no longer play").count(), 1, "said more than once: {shown}");
        assert!(!shown["state"].as_str().unwrap_or_default().contains("Theora"), "{shown}");
        c.goto(&format!("http://{}/", agora.addr))
            .await
            .expect("open /");
        wait_js(
            &c,
            "the front page's notice",
            "const n = document.querySelector('li[data-mount=\"/t.ogg\"] .notice'); return n ? n.textContent : null;",
            Duration::from_secs(20),
            |v| v.as_str() == Some("Browsers no longer play Ogg Theora. Use the playlist links below."),
        )
        .await;
        let _ = c.close().await;
    });
}

/// #14: the README's quick start, walked as a new user would (the demo on a free port): the
/// banner's push example, run as printed with the printed source password, makes a second
/// stream a listener decodes; the printed watch URL plays in Chromium (its own autoplay
/// policy: muted), and one click on the sound control turns the sound on.
#[test]
fn the_quick_start_goes_from_the_demo_to_a_second_stream_and_sound() {
    let dir = TempDir::new("browser-quick-start");
    let port = free_port();
    let demo = Logged::spawn(
        "agora demo",
        Command::new(env!("CARGO_BIN_EXE_agora")).args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]),
        dir.path(),
    );
    let banner = || std::fs::read_to_string(&demo.log).unwrap_or_default();
    wait_until("the demo's banner", Duration::from_secs(30), || {
        banner().lines().any(|l| l.contains("icecast://source:"))
    });
    let banner = banner();
    let line = |label: &str| -> String {
        banner
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line in the banner:\n{banner}"))
            .split_whitespace()
            .next()
            .expect("a URL")
            .to_string()
    };
    let watch = line("watch:");
    assert!(
        watch.starts_with(&format!("http://127.0.0.1:{port}/watch/")),
        "{banner}"
    );

    // The push example, as printed.
    let example = banner
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ffmpeg ") && l.contains("icecast://source:"))
        .expect("a push example");
    let words: Vec<&str> = example.split_whitespace().collect();
    let second = words
        .last()
        .and_then(|u| u.rsplit_once('/'))
        .map(|(_, m)| format!("http://127.0.0.1:{port}/{m}"))
        .expect("a mount in the example");
    let _push = Proc::spawn(Command::new(words[0]).args(&words[1..]));
    wait_until("the pushed stream", Duration::from_secs(30), || {
        Command::new("ffprobe")
            .args(["-v", "quiet", &second])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert_decodes(&second, 3);

    // The watch page, then one click for sound.
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    runtime().block_on(async {
        let c = browser_with(&driver_url, &profile, Autoplay::AsShipped).await;
        c.goto(&watch).await.expect("open the printed watch URL");
        wait_js(
            &c,
            "the demo to play",
            CURRENT_TIME,
            Duration::from_secs(60),
            |v| v.as_f64().is_some_and(|t| t > 0.5),
        )
        .await;
        let v = wait_js(
            &c,
            "the page's state",
            SOUND,
            Duration::from_secs(10),
            |v| v["control"] == true,
        )
        .await;
        assert_eq!(v["muted"], true, "it starts muted: {v}");
        c.find(fantoccini::Locator::Id("sound"))
            .await
            .expect("the sound control")
            .click()
            .await
            .expect("one click for sound");
        sound_comes_on(&c, "one click").await;
        let _ = c.close().await;
    });
}

/// A live WebM of 320x240 frames that carry their own time: the top band is ten black or
/// white blocks, the bits of the frame's time in quarter seconds (read back from a canvas by
/// [`PLAYBACK`]), and the time is written under it for people (the screenshot).
fn timed_video(agora: &Agora, mount: &str) -> Proc {
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
    let mut filter = String::from(
        "testsrc=size=320x240:rate=10,format=yuv420p,\
         geq=lum='if(lt(Y\\,24)\\,255*mod(floor(floor(T*4+0.01)/pow(2\\,floor(X/32)))\\,2)\\,lum(X\\,Y))'\
         :cb='if(lt(Y\\,12)\\,128\\,cb(X\\,Y))':cr='if(lt(Y\\,12)\\,128\\,cr(X\\,Y))'",
    );
    if Path::new(font).exists() {
        filter.push_str(&format!(
            ",drawtext=fontfile={font}:text='%{{pts\\:hms}}':x=10:y=196:fontsize=28:fontcolor=white:box=1:boxcolor=black"
        ));
    }
    Proc::spawn(
        Command::new("ffmpeg")
            .args([
                "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", &filter,
            ])
            .args(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"])
            .args([
                "-b:v",
                "600k",
                "-g",
                "20",
                "-f",
                "webm",
                "-content_type",
                "video/webm",
            ])
            .arg(agora.icecast_url(mount)),
    )
}

/// One sample of the watch page: the stream time of the frame on screen (from its blocks),
/// the player's `currentTime`, and the slide the panel shows (`id`, `at`), or null before a
/// frame is there.
const PLAYBACK: &str = "
    const p = document.getElementById('player');
    if (!p || p.readyState < 2 || !p.videoWidth) return null;
    const c = document.createElement('canvas');
    c.width = 320; c.height = 240;
    const g = c.getContext('2d', { willReadFrequently: true });
    g.drawImage(p, 0, 0, 320, 240);
    const d = g.getImageData(0, 0, 320, 24).data;
    let n = 0;
    for (let b = 0; b < 10; b++) if (d[(12 * 320 + 16 + 32 * b) * 4] > 128) n += 1 << b;
    const s = document.getElementById('slides');
    return { frame: n / 4, current: p.currentTime, hidden: s.hidden,
             id: s.dataset.id ? Number(s.dataset.id) : null,
             at: s.dataset.at ? Number(s.dataset.at) : null,
             following: document.getElementById('slide-live').getAttribute('aria-pressed') === 'true',
             pos: document.getElementById('slide-pos').textContent };";

/// A 640x360 slide of one colour with its number and moment written on it (PNG).
fn slide_image(dir: &Path, n: usize, at: f64) -> Vec<u8> {
    let colours = [
        "navy",
        "darkgreen",
        "maroon",
        "purple",
        "teal",
        "olive",
        "black",
        "brown",
    ];
    let path = dir.join(format!("slide{n}.png"));
    let mut filter = format!("color=c={}:s=640x360", colours[n % colours.len()]);
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
    if Path::new(font).exists() {
        filter.push_str(&format!(
            ",drawtext=fontfile={font}:text='Slide {n}  at {at:.1} s':x=40:y=150:fontsize=48:fontcolor=white"
        ));
    }
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", &filter,
        ])
        .args(["-frames:v", "1"])
        .arg(&path)
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).expect("slide image")
}

/// Uploads a slide with the source's credentials: its `(id, at, url)` from the answer.
fn upload_slide(agora: &Agora, mount: &str, at: f64, png: &[u8]) -> (u64, f64, String) {
    let mut s = TcpStream::connect(agora.addr).expect("connect");
    let head = format!(
        "PUT /admin/slides?mount={mount}&at={at:.3} HTTP/1.0\r\nHost: test\r\nAuthorization: {}\r\n\
         Content-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        source_auth(),
        png.len()
    );
    use std::io::{Read, Write};
    s.write_all(head.as_bytes()).expect("send head");
    s.write_all(png).expect("send slide");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let (code, head, body) = split_response(&all);
    assert_eq!(
        code,
        201,
        "upload at {at}: {head}{}",
        String::from_utf8_lossy(&body)
    );
    let v: Value = serde_json::from_slice(&body).expect("slide JSON");
    (
        v["id"].as_u64().expect("id"),
        v["at"].as_f64().expect("at"),
        v["url"].as_str().expect("url").to_string(),
    )
}

/// Issue #15's watch page: joined mid-stream, the page shows each slide when the frame on
/// screen reaches the slide's moment (within a second, sampled all along), slides uploaded
/// after the join included; paging back stays put while new slides come, "follow live"
/// returns, a slide opens full size and has a download link; an audio-only mount gets its
/// slides too. Leaves `watch-slides.png` (see [`save_screenshot`]).
#[test]
fn the_watch_pages_slides_follow_playback() {
    let dir = TempDir::new("browser-slides");
    let (_driver, driver_url, profile) = chromedriver(dir.path());
    let agora = Agora::start();
    let started = Instant::now();
    let _video = timed_video(&agora, "/live.webm");
    agora.wait_mount("/live.webm");
    // (id, at) of every slide, in the order of `at`.
    let mut slides: Vec<(u64, f64)> = Vec::new();
    let (id, at, _) = upload_slide(&agora, "/live.webm", 1.0, &slide_image(dir.path(), 0, 1.0));
    slides.push((id, at));
    // Mid-stream: the page joins after a few seconds of stream, so its first frame's time is
    // far from 0 (the clock under test is the stream's, not the page's).
    wait_until("5 s of stream", Duration::from_secs(20), || {
        started.elapsed() >= Duration::from_secs(5)
    });

    let rt = runtime();
    let screenshot = rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://{}/watch/live.webm", agora.addr))
            .await
            .expect("open the watch page");
        let first = wait_js(&c, "the first frame and the slides panel", PLAYBACK, Duration::from_secs(40), |v| {
            v["frame"].as_f64().is_some_and(|t| t > 2.0) && v["hidden"] == json!(false)
        })
        .await;
        eprintln!("joined at {first}");

        // Slides at the live edge, ahead of this viewer's playback: each is due when the
        // frame on screen reaches it, not when the page hears of it.
        let mut samples: Vec<Value> = Vec::new();
        for n in 1..=5 {
            let live = started.elapsed().as_secs_f64();
            let at = (live * 10.0).round() / 10.0;
            let (id, at, _) = upload_slide(&agora, "/live.webm", at, &slide_image(dir.path(), n, at));
            slides.push((id, at));
            let until = Instant::now() + Duration::from_millis(2500);
            while Instant::now() < until {
                if let Ok(v) = c.execute(PLAYBACK, vec![]).await {
                    samples.push(v);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Playback past the last slide's moment.
        let last_at = slides.last().map(|s| s.1).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let v = c.execute(PLAYBACK, vec![]).await.unwrap_or(Value::Null);
            let past = v["frame"].as_f64().is_some_and(|t| t > last_at + 1.5);
            samples.push(v);
            if past {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Every sample: the slide shown is the one the frame on screen has reached, give or
        // take a second; the player's currentTime is the frame's stream time.
        let mut shown = Vec::new();
        let mut checked = 0;
        for v in &samples {
            let (Some(frame), Some(current)) = (v["frame"].as_f64(), v["current"].as_f64()) else {
                continue;
            };
            assert!(
                (current - frame).abs() <= 0.5,
                "currentTime {current} is not the frame's stream time {frame}"
            );
            let id = v["id"].as_u64().unwrap_or_else(|| panic!("no slide shown: {v}"));
            let i = slides.iter().position(|s| s.0 == id).expect("a known slide");
            assert!(
                slides[i].1 <= frame + 1.0,
                "slide {i} (at {}) shown at frame time {frame}: too early",
                slides[i].1
            );
            if let Some(next) = slides.get(i + 1) {
                assert!(
                    next.1 > frame - 1.0,
                    "slide {i} still shown at frame time {frame}, slide {} was due at {}",
                    i + 1,
                    next.1
                );
            }
            if shown.last() != Some(&id) {
                shown.push(id);
            }
            checked += 1;
        }
        assert!(checked >= 40, "too few samples with a frame: {checked}");
        let all: Vec<u64> = slides.iter().map(|s| s.0).collect();
        assert_eq!(shown, all[all.len() - shown.len()..], "the slides in order");
        assert!(shown.len() >= 5, "switches seen: {shown:?} of {all:?}");

        // Paging back: an earlier slide, and it stays while a new one comes and is reached.
        c.find(fantoccini::Locator::Id("slide-prev"))
            .await
            .expect("previous")
            .click()
            .await
            .expect("click previous");
        let before = slides[slides.len() - 2];
        let paged = wait_js(&c, "the previous slide", PLAYBACK, Duration::from_secs(5), |v| {
            v["id"].as_u64() == Some(before.0) && v["following"] == json!(false)
        })
        .await;
        let live = started.elapsed().as_secs_f64();
        let at = (live * 10.0).round() / 10.0;
        let (new_id, new_at, _) = upload_slide(&agora, "/live.webm", at, &slide_image(dir.path(), 6, at));
        slides.push((new_id, new_at));
        let count = format!("/ {}", slides.len());
        let still = wait_js(&c, "playback past the new slide", PLAYBACK, Duration::from_secs(20), |v| {
            v["frame"].as_f64().is_some_and(|t| t > new_at + 1.0)
                && v["pos"].as_str().is_some_and(|p| p.ends_with(&count))
        })
        .await;
        assert_eq!(still["id"], paged["id"], "paged back, the page stays put: {still}");
        assert_eq!(still["following"], json!(false));

        // "Follow live": the slide playback has reached, the new one.
        c.find(fantoccini::Locator::Id("slide-live"))
            .await
            .expect("follow live")
            .click()
            .await
            .expect("click follow live");
        wait_js(&c, "the live slide again", PLAYBACK, Duration::from_secs(5), |v| {
            v["id"].as_u64() == Some(new_id) && v["following"] == json!(true)
        })
        .await;
        assert_controls_named(&c, "the watch page with slides").await;
        // The slide image loaded.
        wait_js(
            &c,
            "the slide's image",
            "const i = document.getElementById('slide-img'); return i.complete && i.naturalWidth;",
            Duration::from_secs(10),
            |v| v.as_u64() == Some(640),
        )
        .await;
        let screenshot = c.screenshot().await.expect("screenshot");

        // Full size, from the keyboard: the image at its own size in a dialog; Escape closes.
        tab_to(&c, "slide-open").await;
        press(&c, ENTER).await;
        wait_js(
            &c,
            "the slide full size",
            "const d = document.getElementById('slide-full'); const i = document.getElementById('slide-full-img');
             return d.open && i.complete ? [i.naturalWidth, Math.round(i.getBoundingClientRect().width)] : null;",
            Duration::from_secs(10),
            |v| v == &json!([640, 640]),
        )
        .await;
        press(&c, "\u{e00c}").await;
        wait_js(&c, "the dialog closed", "return document.getElementById('slide-full').open;", Duration::from_secs(5), |v| {
            v == &json!(false)
        })
        .await;
        let download = c
            .execute(
                "const a = document.getElementById('slide-download'); return [a.hasAttribute('download'), a.getAttribute('href')];",
                vec![],
            )
            .await
            .expect("download link");
        assert_eq!(download[0], json!(true), "{download}");
        assert!(
            download[1].as_str().is_some_and(|h| h.starts_with("/slides/live.webm/") && h.contains(&new_id.to_string())),
            "{download}"
        );
        c.close().await.expect("close");
        screenshot
    });
    save_screenshot("watch-slides.png", &screenshot);

    // Audio only (MP3, whose player counts from 0 at the join): the slide is the picture.
    let _radio = sine_source(&agora, "/radio.mp3");
    let (radio_id, _, _) =
        upload_slide(&agora, "/radio.mp3", 0.5, &slide_image(dir.path(), 7, 0.5));
    rt.block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("http://{}/watch/radio.mp3", agora.addr))
            .await
            .expect("open the radio's page");
        wait_js(
            &c,
            "the radio's slide",
            "const s = document.getElementById('slides'); const i = document.getElementById('slide-img');
             return !s.hidden && i.complete && i.naturalWidth ? Number(s.dataset.id) : null;",
            Duration::from_secs(30),
            |v| v.as_u64() == Some(radio_id),
        )
        .await;
        assert_controls_named(&c, "the radio's watch page").await;
        c.close().await.expect("close");
    });
}

/// A 9 s talk for `agora cast --slides`: three stills of 3 s each (a red box, a blue box, a
/// purple bar on yellow) over a tone.
fn three_slide_talk(dir: &Path) -> PathBuf {
    let out = dir.join("talk.mkv");
    let still = |bg: &str, b: &str| format!("color=c={bg}:s=1280x720:r=25:d=3,drawbox={b}:t=fill");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(still("white", "x=100:y=100:w=400:h=200:color=red"))
        .args(["-f", "lavfi", "-i"])
        .arg(still("white", "x=600:y=300:w=400:h=200:color=blue"))
        .args(["-f", "lavfi", "-i"])
        .arg(still("yellow", "x=300:y=100:w=200:h=500:color=purple"))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:d=9",
        ])
        .args([
            "-filter_complex",
            "[0:v][1:v][2:v]concat=n=3:v=1:a=0,format=yuv420p[v]",
        ])
        .args([
            "-map",
            "[v]",
            "-map",
            "3:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-g", "25", "-c:a", "aac"])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "making the synthetic talk failed");
    out
}

/// The media, the slide shown (its image's file name, once loaded) and the buttons' state.
const ARCHIVE_PAGE_STATE: &str = "
    const m = document.getElementById('player'), i = document.getElementById('slide');
    const file = !i.hidden && i.complete && i.naturalWidth > 0
      ? decodeURIComponent(new URL(i.src).pathname.split('/').pop()) : null;
    return {ready: m.readyState, duration: m.duration, time: m.currentTime, seeking: m.seeking,
            tag: m.tagName, file, error: m.error && m.error.message,
            prev: document.getElementById('prev').disabled,
            next: document.getElementById('next').disabled};";

/// Issue #15, item 5: `agora cast --slides --archive-dir` leaves a player page beside the
/// recording; opened from `file://`, it plays the recording with the slide of each moment.
#[test]
fn the_archives_page_plays_the_recording_with_its_slides() {
    let dir = TempDir::new("browser-archive-page");
    let talk = three_slide_talk(dir.path());
    let archive = dir.path().join("archive");
    let log = dir.path().join("cast.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("cast")
        .arg("--input")
        .arg(&talk)
        .args(["--preset", "webm", "--name", "talk", "--slides"])
        .arg(&talk)
        .args(["--slides-min-interval", "1", "--archive-dir"])
        .arg(&archive)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("agora cast");
    let mut status = None;
    wait_until("the cast to end", Duration::from_secs(60), || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "agora cast failed\n{text}"
    );

    let files: Vec<PathBuf> = std::fs::read_dir(&archive)
        .expect("archive")
        .map(|e| e.expect("entry").path())
        .collect();
    let with_ext = |ext: &str| {
        files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap_or_else(|| panic!("no .{ext} in {files:?}\n{text}"))
            .clone()
    };
    let page = with_ext("html");
    let recording = with_ext("webm");
    let stem = recording.file_stem().expect("stem").to_string_lossy();
    assert!(
        stem.starts_with(page.file_stem().expect("stem").to_string_lossy().as_ref()),
        "{page:?} beside {recording:?}"
    );
    let slides_dir = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with("_slides"))
        .expect("slides folder");
    let index = std::fs::read_to_string(slides_dir.join("index.tsv")).expect("index");
    let rows: Vec<(f64, String)> = index
        .lines()
        .skip(1)
        .map(|l| {
            let (t, f) = l.split_once('\t').expect("a TSV line");
            (t.parse().expect("a time"), f.to_string())
        })
        .collect();
    assert!(
        rows.len() >= 3,
        "three stills, three slides: {index}\n{text}"
    );

    let (_driver, driver_url, profile) = chromedriver(dir.path());
    runtime().block_on(async {
        let c = browser(&driver_url, &profile).await;
        c.goto(&format!("file://{}", page.display()))
            .await
            .expect("open the page");
        // A live WebM's length is known once the page has had the browser look at its end.
        let loaded = wait_js(
            &c,
            "the recording's length",
            ARCHIVE_PAGE_STATE,
            Duration::from_secs(20),
            |v| {
                v["ready"].as_u64().is_some_and(|r| r >= 1)
                    && v["duration"].is_f64()
                    && v["time"] == json!(0)
                    && v["seeking"] == json!(false)
            },
        )
        .await;
        assert_eq!(loaded["tag"], json!("VIDEO"));
        let duration = loaded["duration"].as_f64().expect("a duration");
        assert!(duration > rows[rows.len() - 1].0, "{loaded}: {rows:?}");
        assert_controls_named(&c, "the archive's page").await;

        // Seeking: just after each slide's time, that slide; back to the first at the end.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.push(0);
        for i in order {
            let (at, file) = &rows[i];
            let t = (at + 0.3).min(duration - 0.05);
            c.execute(
                "document.getElementById('player').currentTime = arguments[0];",
                vec![json!(t)],
            )
            .await
            .expect("seek");
            let what = format!("slide {file} after a seek to {t:.2}");
            wait_js(
                &c,
                &what,
                ARCHIVE_PAGE_STATE,
                Duration::from_secs(10),
                |v| v["seeking"] == json!(false) && v["file"].as_str() == Some(file.as_str()),
            )
            .await;
        }

        // Next and previous step the slides and take the recording to each one's time.
        let next = c.find(fantoccini::Locator::Id("next")).await.expect("next");
        let prev = c.find(fantoccini::Locator::Id("prev")).await.expect("prev");
        for (at, file) in rows.iter().skip(1) {
            next.click().await.expect("click next");
            let v = wait_js(
                &c,
                &format!("next: {file}"),
                ARCHIVE_PAGE_STATE,
                Duration::from_secs(10),
                |v| v["seeking"] == json!(false) && v["file"].as_str() == Some(file.as_str()),
            )
            .await;
            assert!(
                (v["time"].as_f64().expect("time") - at).abs() < 0.1,
                "{v}, slide at {at}"
            );
        }
        let last = wait_js(
            &c,
            "next disabled at the last slide",
            ARCHIVE_PAGE_STATE,
            Duration::from_secs(5),
            |v| v["next"] == json!(true),
        )
        .await;
        assert_eq!(last["prev"], json!(false));
        for i in (0..rows.len() - 1).rev() {
            prev.click().await.expect("click previous");
            let file = &rows[i].1;
            wait_js(
                &c,
                &format!("previous: {file}"),
                ARCHIVE_PAGE_STATE,
                Duration::from_secs(10),
                |v| v["seeking"] == json!(false) && v["file"].as_str() == Some(file.as_str()),
            )
            .await;
        }

        // Not following playback, the buttons browse the slides and leave the recording be.
        c.find(fantoccini::Locator::Id("follow"))
            .await
            .expect("follow")
            .click()
            .await
            .expect("click follow");
        let before = c.execute(ARCHIVE_PAGE_STATE, vec![]).await.expect("state");
        next.click().await.expect("click next");
        let after = wait_js(
            &c,
            "next, not following",
            ARCHIVE_PAGE_STATE,
            Duration::from_secs(10),
            |v| v["file"].as_str() == Some(rows[1].1.as_str()),
        )
        .await;
        assert_eq!(
            after["time"], before["time"],
            "the recording stays where it was"
        );
        c.close().await.expect("close");
    });
}
