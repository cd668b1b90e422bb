//! Lock stress (#9): everything that reads a mount's state (admin stats and listmounts, the
//! JSON API, `/metrics`, `/status-json.xsl`, playlists, `/events`, listener joins, admin moves)
//! races everything that writes it (a source changing Ogg chains hundreds of times a second, a
//! source connecting and leaving over and over, titles set by the admin).
//!
//! A lock taken twice on one thread while a writer queues (the bug of #9) parks the server's
//! runtime threads for good; the pollers here then stop getting answers. The test does not time
//! out silently: it names the request that hung and prints what the server's watchdog logged
//! (each thread's state and kernel wait channel), a backtrace of every server thread from gdb,
//! and the end of the server's log.
//!
//! Runs for `AGORA_STRESS_SECS` seconds (default 20; the bug of #9 hung the server in about 4).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// How long one answer may take before the server counts as stuck. Generous: a debug build on
/// a busy 2-core CI machine answers these in milliseconds.
const ANSWER_LIMIT: Duration = Duration::from_secs(15);

/// A tiny Ogg Opus file (a whole chain: headers, a few pages, end of stream) with its own
/// serial number, so that each copy pushed is a new chain with new headers.
fn tiny_chain(dir: &Path, serial: u32) -> Vec<u8> {
    let path = dir.join(format!("chain-{serial}.opus"));
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .args(["sine=f=330:d=0.1", "-c:a", "libopus", "-b:a", "16k"])
        .args(["-serial_offset", &serial.to_string(), "-f", "ogg"])
        .arg(&path)
        .output()
        .expect("ffmpeg must be installed (scripts/install-deps)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).expect("read chain")
}

/// A keep-alive HTTP/1.1 client that pipelines its requests, as the reproduction of #9 did.
struct Poller {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Poller {
    fn new(addr: SocketAddr) -> Poller {
        Poller {
            addr,
            stream: None,
            buf: Vec::new(),
        }
    }

    /// Send every request at once, then read every answer; the status codes in order.
    fn pipeline(&mut self, requests: &[String]) -> Result<Vec<u16>, String> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, ANSWER_LIMIT)
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(ANSWER_LIMIT))
                .map_err(|e| e.to_string())?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let all: String = requests.concat();
        let result = self.exchange(all.as_bytes(), requests.len());
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, bytes: &[u8], n: usize) -> Result<Vec<u16>, String> {
        let s = self.stream.as_mut().ok_or("no connection")?;
        s.write_all(bytes).map_err(|e| format!("send: {e}"))?;
        let mut codes = Vec::with_capacity(n);
        let mut chunk = [0u8; 16384];
        while codes.len() < n {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .ok_or_else(|| format!("answer without Content-Length:\n{head}"))?;
                if self.buf.len() >= end + 4 + len {
                    let code = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    codes.push(code);
                    self.buf.drain(..end + 4 + len);
                    continue;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("no answer within {ANSWER_LIMIT:?}"));
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(codes)
    }
}

fn get(path: &str, auth: Option<&str>) -> String {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: stress\r\n");
    if let Some(a) = auth {
        r.push_str(&format!("Authorization: {a}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// What the server's threads are doing: a backtrace of every thread (gdb attaches to the
/// process). The server's own watchdog adds each thread's state and wait channel to its log.
fn threads_report(pid: u32) -> String {
    let mut out = String::new();
    match Command::new("timeout")
        .args(["120", "gdb", "-nx", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "thread apply all bt 40"])
        .output()
    {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            // Each thread, and its frames that say what it waits for and who asked: Agora's
            // own and the lock's, cut short (runtime and generic frames run to kilobytes).
            for l in text.lines() {
                let frame = l.starts_with('#')
                    && [
                        "agora",
                        "lock_api::",
                        "raw_rwlock::",
                        "raw_mutex::",
                        "futex",
                    ]
                    .iter()
                    .any(|k| l.contains(k));
                if frame || l.starts_with("Thread ") {
                    let cut = l.char_indices().nth(240).map_or(l.len(), |(i, _)| i);
                    out.push_str(&l[..cut]);
                    out.push('\n');
                }
            }
        }
        Err(e) => out.push_str(&format!("(no backtrace: gdb did not run: {e})\n")),
    }
    out
}

/// Stops every worker when dropped, and notes the first failure any worker saw.
struct Run {
    stop: AtomicBool,
    failure: std::sync::Mutex<Option<String>>,
}

impl Run {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    fn fail(&self, what: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(what);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[test]
fn status_readers_and_state_writers_never_hang_the_server() {
    let secs: u64 = std::env::var("AGORA_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    // The log level the suite uses elsewhere (debug) logs every chain; info is enough here.
    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 5\n");
    let addr = agora.addr;
    let dir = TempDir::new("agora-stress");
    let chains = Arc::new([tiny_chain(dir.path(), 1000), tiny_chain(dir.path(), 2000)]);
    let admin = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let run = Arc::new(Run {
        stop: AtomicBool::new(false),
        failure: std::sync::Mutex::new(None),
    });
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    const CHAINS: usize = 0;
    const FLAPS: usize = 1;
    const ANSWERS: usize = 2;
    const JOINS: usize = 3;
    let mut workers: Vec<JoinHandle<()>> = Vec::new();

    // Writer 1: one source that starts a new Ogg chain (new headers stored) every 2 ms.
    {
        let (run, chains, counts) = (run.clone(), chains.clone(), counts.clone());
        let (mut s, head) = raw_source(addr, "/chain.opus", "PUT", &[]);
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        agora.wait_mount("/chain.opus");
        workers.push(std::thread::spawn(move || {
            s.set_write_timeout(Some(ANSWER_LIMIT)).expect("timeout");
            let mut i = 0usize;
            while run.running() {
                if let Err(e) = s.write_all(&chains[i % 2]) {
                    run.fail(format!("the chain source could not write: {e}"));
                    return;
                }
                i += 1;
                counts[CHAINS].fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    // Writer 2: a source that connects, sends one chain and leaves, over and over (the mount
    // is taken over in its grace period each time).
    {
        let (run, chains, counts) = (run.clone(), chains.clone(), counts.clone());
        workers.push(std::thread::spawn(move || {
            while run.running() {
                let mut s = match TcpStream::connect(addr) {
                    Ok(s) => s,
                    Err(e) => return run.fail(format!("flapping source: connect: {e}")),
                };
                s.set_read_timeout(Some(ANSWER_LIMIT)).expect("timeout");
                let req = format!(
                    "PUT /flap.opus HTTP/1.1\r\nHost: stress\r\nAuthorization: {}\r\n\r\n",
                    source_auth()
                );
                let head = match s.write_all(req.as_bytes()) {
                    Ok(()) => read_head(&mut s),
                    Err(e) => return run.fail(format!("flapping source: send: {e}")),
                };
                if head.starts_with("HTTP/1.0 409 ") {
                    // The previous connection of this source is still being torn down.
                    continue;
                }
                if !head.starts_with("HTTP/1.0 200 OK\r\n") {
                    return run.fail(format!("flapping source: no answer, got {head:?}"));
                }
                let _ = s.write_all(&chains[0]);
                counts[FLAPS].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Readers: pollers pipelining every kind of status request, titles and moves among them.
    let polls: Vec<Vec<String>> = vec![
        vec![
            get("/admin/stats", Some(&admin)),
            get("/admin/stats.json", Some(&admin)),
            get("/admin/listmounts", Some(&admin)),
            get("/admin/listmounts.json", Some(&admin)),
        ],
        vec![
            get("/admin/stats.json", Some(&admin)),
            // Moves read both mounts' stream information; the fourth poller moves the other
            // way at the same time.
            get(
                "/admin/moveclients?mount=/chain.opus&destination=/flap.opus",
                Some(&admin),
            ),
            get("/admin/listclients?mount=/chain.opus", Some(&admin)),
            get(
                "/admin/metadata?mount=/chain.opus&mode=updinfo&song=Stress",
                Some(&admin),
            ),
        ],
        vec![
            get("/api/v1/status", None),
            get("/api/v1/mounts", None),
            get("/metrics", None),
            get("/status-json.xsl", None),
            get("/chain.opus.xspf", None),
        ],
        vec![
            get("/admin/listmounts.json", Some(&admin)),
            get(
                "/admin/moveclients?mount=/flap.opus&destination=/chain.opus",
                Some(&admin),
            ),
            get("/admin/stats", Some(&admin)),
        ],
    ];
    for batch in polls {
        let (run, counts) = (run.clone(), counts.clone());
        workers.push(std::thread::spawn(move || {
            let mut p = Poller::new(addr);
            while run.running() {
                match p.pipeline(&batch) {
                    Ok(codes) => {
                        // 404 and 409: a mount between sources, or a move that does not apply.
                        if let Some(c) = codes.iter().find(|c| ![200, 404, 409].contains(*c)) {
                            return run.fail(format!("unexpected status {c} for {batch:?}"));
                        }
                        counts[ANSWERS].fetch_add(codes.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let first = batch[0].lines().next().unwrap_or("");
                        return run.fail(format!(
                            "a pipelined batch starting with `{first}` got no answer: {e}"
                        ));
                    }
                }
            }
        }));
    }
    // Listeners joining (their response head reads the stream information) and staying a
    // moment, so that the moves above have someone to move.
    {
        let (run, counts) = (run.clone(), counts.clone());
        workers.push(std::thread::spawn(move || {
            while run.running() {
                let mut s = match TcpStream::connect(addr) {
                    Ok(s) => s,
                    Err(e) => return run.fail(format!("listener: connect: {e}")),
                };
                s.set_read_timeout(Some(ANSWER_LIMIT)).expect("timeout");
                let _ = s.write_all(get("/chain.opus", None).as_bytes());
                let head = read_head(&mut s);
                if head.is_empty() {
                    return run.fail("a listener got no response head".into());
                }
                counts[JOINS].fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
            }
        }));
    }
    // An events stream kept open and read throughout.
    let events = {
        let mut s = TcpStream::connect(addr).expect("connect events");
        s.write_all(get("/events", None).as_bytes()).expect("send");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let run = run.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            let mut quiet = Instant::now();
            while run.running() {
                match s.read(&mut buf) {
                    Ok(0) => return run.fail("the events stream ended".into()),
                    Ok(_) => quiet = Instant::now(),
                    Err(_) if quiet.elapsed() < ANSWER_LIMIT => {}
                    Err(e) => return run.fail(format!("the events stream went quiet: {e}")),
                }
            }
        })
    };
    workers.push(events);

    // Stop after the run time, or as soon as a worker reports a failure.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    while run.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(failure) = run.failure() {
        let report = threads_report(agora.pid());
        let watchdog: Vec<String> = agora
            .log()
            .lines()
            .filter(|l| l.contains("agora_server::watchdog"))
            .map(str::to_string)
            .collect();
        panic!(
            "{failure}\n\nThe server's watchdog:\n{}\n\nThe server's threads:\n{report}\n(after {:?}: {} chains, {} source connections, {} answers, {} listener joins)",
            watchdog.join("\n"),
            started.elapsed(),
            counts[CHAINS].load(Ordering::Relaxed),
            counts[FLAPS].load(Ordering::Relaxed),
            counts[ANSWERS].load(Ordering::Relaxed),
            counts[JOINS].load(Ordering::Relaxed),
        );
    }
    run.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("worker");
    }
    // The run did race: the writers wrote and the readers were answered.
    let (chains, flaps, answers, joins) = (
        counts[CHAINS].load(Ordering::Relaxed),
        counts[FLAPS].load(Ordering::Relaxed),
        counts[ANSWERS].load(Ordering::Relaxed),
        counts[JOINS].load(Ordering::Relaxed),
    );
    eprintln!(
        "{secs} s: {chains} chains, {flaps} source connections, {answers} answers, {joins} listener joins"
    );
    assert!(chains >= 100 * secs, "only {chains} chains pushed");
    assert!(flaps >= 5 * secs, "only {flaps} source connections");
    assert!(answers >= 50 * secs, "only {answers} answers");
    assert!(joins >= 5 * secs, "only {joins} listener joins");
    // And the server is still whole, and its watchdog never saw the runtime stall.
    assert_eq!(
        http_get(addr, "/admin/stats", &[("Authorization", &admin)]).0,
        200
    );
    assert!(
        !agora.log_has(&["runtime stalled"]),
        "the watchdog saw a stall:\n{}",
        agora
            .log()
            .lines()
            .filter(|l| l.contains("runtime"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
