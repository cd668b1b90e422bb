//! `agora cast` against a real icecast2 (Debian's 2.4.4): the cast's PUT handshake is accepted
//! and a listener of icecast2 decodes the stream; one cast feeds Agora and icecast2 at once.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const ICE_SOURCE_PW: &str = "ice-source-pw";

/// A running icecast2 in the foreground, killed on drop.
struct Icecast {
    addr: SocketAddr,
    _proc: Proc,
    dir: TempDir,
}

impl Icecast {
    fn start() -> Icecast {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = TempDir::new("icecast2");
        let logdir = dir.path().join("log");
        std::fs::create_dir_all(&logdir).expect("log dir");
        // icecast2 refuses to run as root: it changes to the package's user, who must be able
        // to write its logs.
        let owned = Command::new("chown")
            .args(["-R", "icecast2:icecast"])
            .arg(dir.path())
            .status()
            .expect("chown")
            .success();
        assert!(
            owned,
            "chown to icecast2 (is the icecast2 package installed?)"
        );
        let config = dir.path().join("icecast.xml");
        std::fs::write(
            &config,
            format!(
                r#"<icecast>
  <location>test</location><admin>test@localhost</admin>
  <hostname>127.0.0.1</hostname>
  <limits><clients>100</clients><sources>4</sources><burst-size>65536</burst-size>
    <queue-size>524288</queue-size><source-timeout>10</source-timeout></limits>
  <authentication><source-password>{ICE_SOURCE_PW}</source-password>
    <admin-user>admin</admin-user><admin-password>ice-admin-pw</admin-password></authentication>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{log}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot><changeowner><user>icecast2</user><group>icecast</group></changeowner></security>
</icecast>
"#,
                log = logdir.display()
            ),
        )
        .expect("write icecast.xml");
        let proc = Proc(
            Command::new("icecast2")
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("icecast2 must be installed (scripts/install-deps)"),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let ice = Icecast {
            addr,
            _proc: proc,
            dir,
        };
        wait_until("icecast2 to answer", Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        ice
    }

    fn target(&self, mount: &str) -> String {
        format!("http://source:{ICE_SOURCE_PW}@{}{mount}", self.addr)
    }

    fn url(&self, mount: &str) -> String {
        format!("http://{}{mount}", self.addr)
    }

    /// Whether icecast2's status lists `mount` (its JSON `source` is an object or an array).
    fn has_mount(&self, mount: &str) -> bool {
        let (code, _, body) = http_get(self.addr, "/status-json.xsl", &[]);
        if code != 200 {
            return false;
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return false;
        };
        let sources = match json["icestats"].get("source") {
            Some(serde_json::Value::Array(a)) => a.clone(),
            Some(o) => vec![o.clone()],
            None => Vec::new(),
        };
        sources
            .iter()
            .any(|s| s["listenurl"].as_str().is_some_and(|u| u.ends_with(mount)))
    }

    fn wait_mount(&self, mount: &str) {
        wait_until(
            &format!("icecast2 to list {mount}"),
            Duration::from_secs(30),
            || self.has_mount(mount),
        );
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(Path::new(self.dir.path()).join("log/error.log"))
            .unwrap_or_default()
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- icecast2 error.log ----\n{}", self.error_log());
        }
    }
}

fn cast(servers: &[String]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args([
        "cast",
        "--input",
        "test",
        "--preset",
        "opus",
        "--name",
        "To icecast2",
    ]);
    for s in servers {
        cmd.args(["--server", s]);
    }
    Proc(
        cmd.env_remove("AGORA_SOURCE_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agora cast"),
    )
}

/// icecast2 accepts `agora cast`'s PUT and relays a stream its listener decodes. (Ogg Opus:
/// with `--preset webm` a listener joining icecast2 2.4.4 mid-stream gets
/// "Error while decoding stream #0:0: Invalid data found when processing input" a dozen times
/// from ffmpeg, since icecast2 starts it at any Cluster rather than at a keyframe; that is
/// icecast2's join, which Agora does not share, not the cast.)
#[test]
fn cast_pushes_to_icecast2() {
    let ice = Icecast::start();
    let _cast = cast(&[ice.target("/live.opus")]);
    ice.wait_mount("/live.opus");
    assert_decodes(&ice.url("/live.opus"), 5);
}

#[test]
fn cast_reaches_agora_and_icecast2_at_once() {
    let ice = Icecast::start();
    let agora = Agora::start();
    let _cast = cast(&[
        ice.target("/both.opus"),
        format!("http://source:{SOURCE_PW}@{}/both.opus", agora.addr),
    ]);
    ice.wait_mount("/both.opus");
    agora.wait_mount("/both.opus");
    let agora_url = agora.url("/both.opus");
    let other = std::thread::spawn(move || assert_decodes(&agora_url, 5));
    assert_decodes(&ice.url("/both.opus"), 5);
    other.join().expect("the Agora listener decodes");
}
