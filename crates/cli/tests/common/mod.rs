//! Test harness: the real `agora` binary on an ephemeral port, real ffmpeg fixtures, real
//! source clients, and helpers that await events (a status change, bytes on a socket) rather
//! than sleeping.
#![allow(dead_code)]

pub(crate) mod events;
pub(crate) mod hook;
pub(crate) mod pdf;
pub(crate) mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const SOURCE_PW: &str = "test-source-pw";
pub(crate) const ADMIN_PW: &str = "test-admin-pw";

/// A running `agora serve`, killed on drop.
pub(crate) struct Agora {
    pub child: Child,
    pub addr: SocketAddr,
    /// The first HTTPS address (a `[[server.tls]]` in the configuration).
    pub tls_addr: Option<SocketAddr>,
    pub stderr_log: PathBuf,
    pub stdout_log: PathBuf,
    _dir: TempDir,
}

/// The environment variables that give `agora` its passwords: cleared for every process the
/// tests start, so that the runner's own environment changes nothing.
pub(crate) const PASSWORD_ENV: &[&str] = &[
    "AGORA_SOURCE_PASSWORD",
    "AGORA_SOURCE_PASSWORD_FILE",
    "AGORA_ADMIN_PASSWORD",
    "AGORA_ADMIN_PASSWORD_FILE",
];

impl Agora {
    pub(crate) fn start() -> Agora {
        Self::start_with_config("")
    }

    /// Start with a TOML configuration (listen address and passwords are set by flags).
    pub(crate) fn start_with_config(toml: &str) -> Agora {
        Self::start_at("127.0.0.1:0", toml)
    }

    /// Start listening on `listen` (a fixed port, to restart a server where it was).
    pub(crate) fn start_at(listen: &str, toml: &str) -> Agora {
        Self::start_under(&[], listen, toml)
    }

    /// Start under a command `prefix` (such as `["ip", "netns", "exec", NS]`: the server then
    /// runs inside that network namespace), listening on `listen`.
    pub(crate) fn start_under(prefix: &[&str], listen: &str, toml: &str) -> Agora {
        Self::launch(
            prefix,
            listen,
            toml,
            &["--source-password", SOURCE_PW, "--admin-password", ADMIN_PW],
            &[],
        )
    }

    /// Start with `args` in place of the flags that set the test passwords, and `env` set:
    /// passwords given another way (a file, the environment, the configuration).
    pub(crate) fn start_with(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Agora {
        Self::launch(&[], "127.0.0.1:0", toml, args, env)
    }

    /// [`Agora::start_with`] running another `agora` binary (the one a package installs).
    pub(crate) fn start_binary(bin: &Path, toml: &str, args: &[&str]) -> Agora {
        Self::launch_binary(bin, &[], "127.0.0.1:0", toml, args, &[])
    }

    fn launch(
        prefix: &[&str],
        listen: &str,
        toml: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agora {
        let bin = Path::new(env!("CARGO_BIN_EXE_agora"));
        Self::launch_binary(bin, prefix, listen, toml, args, env)
    }

    fn launch_binary(
        bin: &Path,
        prefix: &[&str],
        listen: &str,
        toml: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agora {
        let dir = TempDir::new("agora-serve");
        let cfg = dir.path().join("agora.toml");
        std::fs::write(&cfg, toml).expect("write config");
        let stderr_log = dir.path().join("stderr.log");
        let stdout_log = dir.path().join("stdout.log");
        let mut cmd = match prefix.split_first() {
            None => Command::new(bin),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
        };
        cmd.args(["serve", "--listen", listen, "--config"])
            .arg(&cfg)
            .args(args);
        for var in PASSWORD_ENV {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,agora_server=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log file"))
            .spawn()
            .expect("spawn agora");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut out = std::fs::File::create(&stdout_log).expect("stdout log");
        // The banner's addresses: plain ones, then HTTPS ones, then other lines.
        let (mut addr, mut tls_addr) = (None, None);
        let addr = loop {
            let Some(line) = lines.next() else {
                let _ = child.wait();
                panic!(
                    "agora exited before printing its address; its log:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            };
            let line = line.expect("read stdout");
            writeln!(out, "{line}").expect("stdout log");
            let parse =
                |rest: &str| -> SocketAddr { rest.trim_end_matches('/').parse().expect("address") };
            if let Some(rest) = line.trim().strip_prefix("listening on http://") {
                addr = addr.or(Some(parse(rest)));
            } else if let Some(rest) = line.trim().strip_prefix("listening on https://") {
                tls_addr = tls_addr.or(Some(parse(rest)));
            } else if let Some(a) = addr {
                break a;
            }
        };
        // Keep draining stdout (into its file) so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(out, "{line}");
            }
        });
        Agora {
            child,
            addr,
            tls_addr,
            stderr_log,
            stdout_log,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, mount: &str) -> String {
        format!("http://{}{}", self.addr, mount)
    }

    pub(crate) fn icecast_url(&self, mount: &str) -> String {
        format!("icecast://source:{SOURCE_PW}@{}{}", self.addr, mount)
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let (code, _, body) = http_get(self.addr, "/status-json.xsl", &[]);
        assert_eq!(code, 200);
        serde_json::from_slice(&body).expect("status JSON parses")
    }

    /// The `source` entries of the status JSON as a list, whatever Icecast's shape.
    pub(crate) fn sources(&self) -> Vec<serde_json::Value> {
        match self.status()["icestats"].get("source") {
            None => Vec::new(),
            Some(serde_json::Value::Array(a)) => a.clone(),
            Some(o) => vec![o.clone()],
        }
    }

    pub(crate) fn source(&self, mount: &str) -> Option<serde_json::Value> {
        let url = self
            .url(mount)
            .replace(&self.addr.ip().to_string(), "localhost");
        self.sources()
            .into_iter()
            .find(|s| s["listenurl"].as_str() == Some(url.as_str()))
    }

    /// Wait until `check` holds on the status JSON (polling the server's own report).
    pub(crate) fn wait_status(&self, what: &str, mut check: impl FnMut(&Agora) -> bool) {
        wait_until(what, Duration::from_secs(30), || check(self));
    }

    pub(crate) fn wait_mount(&self, mount: &str) {
        self.wait_status(&format!("mount {mount} to appear"), |a| {
            a.source(mount).is_some()
        });
    }

    pub(crate) fn listeners(&self, mount: &str) -> u64 {
        self.source(mount)
            .and_then(|s| s["listeners"].as_u64())
            .unwrap_or(0)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// What the server printed on its standard output so far (the banner).
    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_log).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file the server was started with (rewrite it, then SIGHUP).
    pub(crate) fn config_path(&self) -> PathBuf {
        self._dir.path().join("agora.toml")
    }
}

impl Drop for Agora {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The end of the log: a stress test's log can run to thousands of lines.
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let skip = lines.len().saturating_sub(300);
            eprintln!(
                "---- agora log ({skip} earlier lines left out) ----\n{}",
                lines[skip..].join("\n")
            );
        }
    }
}

/// Poll `cond` until it holds, failing the test after `limit`.
pub(crate) fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal blocking HTTP/1.0 GET: (status, head, body). For small responses.
pub(crate) fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    raw_request(addr, &request("GET", path, headers))
}

pub(crate) fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut r = format!("{method} {path} HTTP/1.0\r\nHost: test\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// A listener asking `mount` for ICY metadata (`Icy-MetaData: 1`): its response head and at
/// least `n` bytes of its body.
pub(crate) fn read_icy(addr: SocketAddr, mount: &str, n: usize) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request("GET", mount, &[("Icy-MetaData", "1")]).as_bytes())
        .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() - p - 4 >= n
        {
            let (_, head, body) = split_response(&got);
            return (head, body);
        }
        let k = s.read(&mut buf).expect("read");
        assert!(k > 0, "the stream ended after {} bytes", got.len());
        got.extend_from_slice(&buf[..k]);
    }
}

/// Send raw bytes, read the whole response until close.
pub(crate) fn raw_request(addr: SocketAddr, req: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("send");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    split_response(&all)
}

pub(crate) fn split_response(all: &[u8]) -> (u16, String, Vec<u8>) {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(all.len());
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head, all[end..].to_vec())
}

/// Open a listener and read until `n` body bytes arrived: proof that the stream is flowing
/// (more than the burst means live data). Returns the response head.
pub(crate) fn read_stream_bytes(addr: SocketAddr, mount: &str, n: usize) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request("GET", mount, &[]).as_bytes())
        .expect("send");
    let mut buf = vec![0u8; 16384];
    let mut got = Vec::new();
    loop {
        let k = s.read(&mut buf).expect("stream read");
        assert!(k > 0, "stream ended after {} bytes, wanted {n}", got.len());
        got.extend_from_slice(&buf[..k]);
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() - p - 4 >= n
        {
            return String::from_utf8_lossy(&got[..p + 4]).to_string();
        }
    }
}

/// The check every listener test ends with: ffmpeg decodes `seconds` of the URL and prints
/// nothing at `-v error`.
pub(crate) fn assert_decodes(url: &str, seconds: u32) {
    assert_decodes_with(Command::new("ffmpeg"), url, seconds);
}

/// [`assert_decodes`] with the ffmpeg command given (e.g. one run inside a network namespace).
pub(crate) fn assert_decodes_with(mut ffmpeg: Command, url: &str, seconds: u32) {
    let out = ffmpeg
        .args([
            "-nostdin",
            "-v",
            "error",
            "-rw_timeout",
            "20000000",
            "-i",
            url,
        ])
        .args(["-t", &seconds.to_string(), "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffmpeg could not decode {url} cleanly (status {:?}):\n{err}",
        out.status
    );
}

/// Duration ffprobe reports for a URL or file, in seconds.
pub(crate) fn probe_duration(target: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            target,
        ])
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

/// A background process killed on drop (source clients).
pub(crate) struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command) -> Proc {
        Proc(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
        )
    }
}

/// Push `file` in real time with ffmpeg's icecast protocol (PUT, or SOURCE with `legacy`).
pub(crate) fn ffmpeg_push(
    agora: &Agora,
    file: &Path,
    mount: &str,
    format: &str,
    legacy: bool,
) -> Proc {
    ffmpeg_push_with(Command::new("ffmpeg"), agora, file, mount, format, legacy)
}

/// [`ffmpeg_push`] with the ffmpeg command given (e.g. one run inside a network namespace).
pub(crate) fn ffmpeg_push_with(
    mut cmd: Command,
    agora: &Agora,
    file: &Path,
    mount: &str,
    format: &str,
    legacy: bool,
) -> Proc {
    cmd.args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", format]);
    if legacy {
        cmd.args(["-legacy_icecast", "1"]);
    }
    cmd.args([
        "-ice_name",
        "Agora test",
        "-ice_description",
        "A test stream",
        "-ice_genre",
        "Test",
    ])
    .arg(agora.icecast_url(mount));
    Proc::spawn(&mut cmd)
}

/// Fixtures generated once per test process by ffmpeg from lavfi sources.
pub(crate) struct Fixture {
    pub name: &'static str,
    pub file: &'static str,
    /// Muxer for `-f` when pushing.
    pub muxer: &'static str,
    pub args: &'static [&'static str],
}

pub(crate) const SECONDS: u32 = 40;

pub(crate) const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "vorbis",
        file: "vorbis.ogg",
        muxer: "ogg",
        args: &[
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=40",
            "-c:a",
            "libvorbis",
            "-q:a",
            "2",
        ],
    },
    Fixture {
        name: "opus",
        file: "opus.ogg",
        muxer: "ogg",
        args: &[
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=40",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
        ],
    },
    Fixture {
        name: "theora",
        file: "theora.ogg",
        muxer: "ogg",
        args: &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=320x240:r=25:d=40",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=40",
            "-c:v",
            "libtheora",
            "-q:v",
            "6",
            "-g",
            "50",
            "-c:a",
            "libvorbis",
            "-q:a",
            "1",
        ],
    },
    Fixture {
        name: "webm",
        file: "vp8opus.webm",
        muxer: "webm",
        args: &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=320x240:r=25:d=40",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=40",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "300k",
            "-g",
            "50",
            "-c:a",
            "libopus",
            "-b:a",
            "48k",
        ],
    },
    Fixture {
        name: "mp3",
        file: "tone.mp3",
        muxer: "mp3",
        args: &[
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=40",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
        ],
    },
    Fixture {
        name: "aac",
        file: "tone.aac",
        muxer: "adts",
        args: &[
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=40",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-f",
            "adts",
        ],
    },
];

pub(crate) fn fixture(name: &str) -> (&'static Fixture, PathBuf) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("agora-fixtures-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("fixture dir");
        d
    });
    let f = FIXTURES
        .iter()
        .find(|f| f.name == name)
        .expect("known fixture");
    let path = dir.join(f.file);
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let tmp = dir.join(format!("tmp-{}", f.file));
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y"])
            .args(f.args)
            .arg(&tmp)
            .output()
            .expect("ffmpeg must be installed (apt-get install ffmpeg)");
        assert!(
            out.status.success(),
            "generating {}: {}",
            f.file,
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &path).expect("rename fixture");
    }
    (f, path)
}

/// A temporary directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A raw source connection driven by the test (for bad bytes and exact wire checks).
pub(crate) fn raw_source(
    addr: SocketAddr,
    mount: &str,
    method: &str,
    extra: &[(&str, &str)],
) -> (TcpStream, String) {
    let auth = format!("Basic {}", b64(&format!("source:{SOURCE_PW}")));
    let mut headers: Vec<(&str, &str)> = vec![("Authorization", &auth)];
    headers.extend_from_slice(extra);
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = request(method, mount, &headers).replace(
        "HTTP/1.0",
        if method == "PUT" {
            "HTTP/1.1"
        } else {
            "HTTP/1.0"
        },
    );
    s.write_all(req.as_bytes()).expect("send head");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).to_string())
}

/// Standard base64 (tests only; the server uses the base64 crate).
pub(crate) fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Wait for `child` to exit, at most `limit` (polling its status: an exit is not an event a
/// test can block on with a deadline); past it the child is killed and the test fails with
/// `log()`.
pub(crate) fn wait_exit(
    child: &mut Child,
    limit: Duration,
    log: impl Fn() -> String,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{limit:?} passed and the process did not end\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `agora serve --check-config --config CFG` (with `--listen 127.0.0.1:0`, so that a port in
/// use here is no matter): what it printed and its status.
pub(crate) fn check_config(cfg: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--check-config",
            "--config",
        ])
        .arg(cfg)
        .output()
        .expect("run agora serve --check-config")
}

/// An `Authorization: Basic` header value.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

/// The `Authorization` header value of the source user.
pub(crate) fn source_auth() -> String {
    basic_auth("source", SOURCE_PW)
}

/// The `Authorization` header value of the admin.
pub(crate) fn admin_auth() -> String {
    basic_auth("admin", ADMIN_PW)
}

/// A request with `body` and a `Content-Length` (unless `headers` has one), over HTTP/1.0:
/// (status, head, body), read leniently (a refused upload's body may be left unread).
pub(crate) fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .expect("timeout");
    let mut head = format!("{method} {target} HTTP/1.0\r\nHost: test\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send head");
    let _ = s.write_all(body);
    split_response(&read_lenient(&mut s))
}

/// A body that must be JSON.
pub(crate) fn json_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Read one response head (through the blank line) byte by byte, leaving what follows unread.
/// Stops early at EOF or on a read error (the partial head is returned).
pub(crate) fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).to_string()
}

/// Read until EOF, a read error or the socket's read timeout, keeping what arrived. For
/// responses the server sends just before closing a socket that still holds unread input
/// (the kernel may then end the connection with a reset after the response).
pub(crate) fn read_lenient(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Open a listener: send a GET, read the response head; the body is left to the caller.
pub(crate) fn open_listener(addr: SocketAddr, mount: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request("GET", mount, &[]).as_bytes())
        .expect("send");
    let head = read_head(&mut s);
    (s, head)
}

/// A stream drained by a background thread that counts bytes and notes how the stream ended.
pub(crate) struct Drain {
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ended: std::sync::Arc<Mutex<Option<String>>>,
}

impl Drain {
    /// Keep reading `s` (read timeout 60 s) until EOF or an error.
    pub(crate) fn spawn(mut s: TcpStream) -> Drain {
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ended = std::sync::Arc::new(Mutex::new(None));
        let (b, e) = (bytes.clone(), ended.clone());
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16384];
            let why = loop {
                match s.read(&mut buf) {
                    Ok(0) => break "EOF".to_string(),
                    Ok(n) => {
                        b.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(err) => break format!("read error: {err}"),
                }
            };
            *e.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        });
        Drain { bytes, ended }
    }

    /// Body bytes read so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How the stream ended (`"EOF"` or the read error), `None` while it is open.
    pub(crate) fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A process's command line as `ps` shows it (from `/proc/<pid>/cmdline`, arguments joined by
/// spaces).
pub(crate) fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("proc cmdline");
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Resident set size of a process, in KiB (from `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// Deterministic pseudo-random bytes (xorshift64), for garbage that no format detector takes.
pub(crate) fn xorshift_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Send a signal (`"TERM"`, `"INT"`, …) to a process with kill(1).
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}

impl Agora {
    /// Wait until the server's log has a line containing every one of `needles`.
    pub(crate) fn wait_log(&self, needles: &[&str]) {
        wait_until(
            &format!("a log line with {needles:?}"),
            Duration::from_secs(30),
            || self.log_has(needles),
        );
    }

    /// Whether one line of the log contains every one of `needles`.
    pub(crate) fn log_has(&self, needles: &[&str]) -> bool {
        self.log()
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
    }
}

/// A raw source connection fed pseudo-random bytes at a steady rate by a thread (a live source
/// that is not a media stream); stops and closes when dropped.
pub(crate) struct PacedSource {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PacedSource {
    /// Write `per_tick` bytes every 50 ms to `s` (an accepted source connection).
    pub(crate) fn spawn(mut s: TcpStream, per_tick: usize) -> PacedSource {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (flag, count) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                seed = seed.wrapping_add(1);
                if s.write_all(&xorshift_bytes(per_tick, seed)).is_err() {
                    return;
                }
                count.fetch_add(per_tick as u64, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        PacedSource {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// Bytes written to the server so far (at least what it took from the source).
    pub(crate) fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for PacedSource {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port with nothing listening on it (bound once, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// What `ffmpeg -v error` prints decoding a whole file (empty: clean).
pub(crate) fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg must be installed (scripts/install-deps)");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        err
    } else {
        format!("exit {}: {err}", out.status)
    }
}
