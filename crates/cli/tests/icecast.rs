//! `agora cast` against a real icecast2 (Debian's 2.4.4): the cast's PUT handshake is accepted,
//! icecast2 relays the stream and a listener of icecast2 decodes it; one cast feeds Agora and
//! icecast2 at once.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const ICE_SOURCE_PW: &str = "ice-source-pw";

/// A running icecast2 in the foreground, killed on drop.
struct Icecast {
    addr: SocketAddr,
    /// With TLS: the TLS listen address and the CA that signed the server's certificate.
    tls: Option<(SocketAddr, PathBuf)>,
    _proc: Proc,
    dir: TempDir,
}

impl Icecast {
    fn start() -> Icecast {
        Self::start_with(false)
    }

    /// With `tls`, a second listen socket speaks TLS with a certificate for 127.0.0.1 signed by
    /// a CA made here (openssl).
    fn start_with(tls: bool) -> Icecast {
        Self::start_full(tls, "", "")
    }

    /// With extra XML in `<authentication>` (`auth`) and at the top level (`top`).
    fn start_full(tls: bool, auth: &str, top: &str) -> Icecast {
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let port = free();
        let dir = TempDir::new("icecast2");
        let logdir = dir.path().join("log");
        std::fs::create_dir_all(&logdir).expect("log dir");
        let mut tls_socket = String::new();
        let mut tls_paths = String::new();
        let mut tls_info = None;
        if tls {
            let tls_port = free();
            let (ca, pem) = make_certificates(dir.path());
            tls_socket = format!(
                "<listen-socket><port>{tls_port}</port><bind-address>127.0.0.1</bind-address><ssl>1</ssl></listen-socket>"
            );
            tls_paths = format!("<ssl-certificate>{}</ssl-certificate>", pem.display());
            let addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().expect("addr");
            tls_info = Some((addr, ca));
        }
        // icecast2 refuses to run as root: it then changes to the package's user, who must be
        // able to write its logs. Run as another user it warns about <changeowner> and goes on.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
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
        }
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
    <admin-user>admin</admin-user><admin-password>ice-admin-pw</admin-password>{auth}</authentication>
  {top}
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  {tls_socket}
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{log}</logdir>{tls_paths}
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
            tls: tls_info,
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

    /// icecast2's status entry for `mount` (its JSON `source` is an object or an array).
    fn source(&self, mount: &str) -> Option<serde_json::Value> {
        let (code, _, body) = http_get(self.addr, "/status-json.xsl", &[]);
        if code != 200 {
            return None;
        }
        let json = serde_json::from_slice::<serde_json::Value>(&body).ok()?;
        let sources = match json["icestats"].get("source") {
            Some(serde_json::Value::Array(a)) => a.clone(),
            Some(o) => vec![o.clone()],
            None => Vec::new(),
        };
        sources
            .into_iter()
            .find(|s| s["listenurl"].as_str().is_some_and(|u| u.ends_with(mount)))
    }

    fn wait_mount(&self, mount: &str) {
        wait_until(
            &format!("icecast2 to list {mount}"),
            Duration::from_secs(30),
            || self.source(mount).is_some(),
        );
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/error.log")).unwrap_or_default()
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- icecast2 error.log ----\n{}", self.error_log());
        }
    }
}

/// `agora cast --input test` to `servers`, its log kept in a file (printed if the test fails).
struct Cast {
    _proc: Proc,
    log: PathBuf,
    _dir: TempDir,
}

impl Cast {
    fn start(preset: &str, servers: &[String]) -> Cast {
        let mut args = vec!["--preset", preset];
        for s in servers {
            args.extend(["--server", s.as_str()]);
        }
        Self::start_args(&args)
    }

    /// `agora cast --input test --name ... ARGS`.
    fn start_args(args: &[&str]) -> Cast {
        let dir = TempDir::new("icecast-cast");
        let log = dir.path().join("cast.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
        cmd.args(["cast", "--input", "test", "--name", "To icecast2"]);
        cmd.args(args);
        let proc = Proc(
            cmd.env_remove("AGORA_SOURCE_PASSWORD")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("cast log"))
                .spawn()
                .expect("agora cast"),
        );
        Cast {
            _proc: proc,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Cast {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- agora cast log ----\n{}", self.log());
        }
    }
}

/// The codecs ffprobe finds in `url`, comma-separated (empty if it finds none).
fn probe_codecs(url: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "10000000"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(",")
}

/// icecast2 accepts the cast's WebM (the default preset) with PUT, takes it as `video/webm`
/// and relays VP8 and Opus, live, to a listener.
///
/// Why no decode check here: icecast2 2.4.4 starts a joining listener at whichever Cluster is
/// current, not at a keyframe (the first VP8 keyframe came 1 to 37 frames into what a
/// listener received), so `ffmpeg -v error` prints "Error while decoding stream #0:0: Invalid
/// data found when processing input" (stream #0:0 is the VP8 video, 1 to 36 repeats a run).
/// And in the first second after the mount appears in its status, icecast2 drops a WebM
/// listener ("format_prepare_headers Client format header generation failed. (Likely not
/// enough or wrong source data) Dropping client." in its error.log; ffmpeg says "End of
/// file"), hence the wait for ffprobe below. Both are icecast2's join, which Agora's server does
/// not share; the decode check against icecast2 is `cast_pushes_opus_to_icecast2`.
#[test]
fn cast_pushes_webm_to_icecast2() {
    let ice = Icecast::start();
    let cast = Cast::start("webm", &[ice.target("/live.webm")]);
    ice.wait_mount("/live.webm");
    wait_until(
        "agora cast to log that icecast2 accepted its PUT",
        Duration::from_secs(30),
        || {
            cast.log()
                .lines()
                .any(|l| l.contains("target connected") && l.contains("Put"))
        },
    );
    let src = ice.source("/live.webm").expect("mount listed");
    assert_eq!(src["server_type"], "video/webm");
    assert_eq!(src["server_name"], "To icecast2");
    wait_until(
        "an icecast2 listener to get VP8 and Opus",
        Duration::from_secs(30),
        || probe_codecs(&ice.url("/live.webm")) == "vp8,opus",
    );
    // More than icecast2's 64 KiB burst: live data, not only what it held.
    let head = read_stream_bytes(ice.addr, "/live.webm", 256 * 1024);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.contains("Content-Type: video/webm"), "{head}");
}

/// icecast2 relays the cast's Ogg Opus and its listener decodes it cleanly, even one that
/// joins as soon as the mount is listed (icecast2 keeps the Ogg headers for each listener).
#[test]
fn cast_pushes_opus_to_icecast2() {
    let ice = Icecast::start();
    let _cast = Cast::start("opus", &[ice.target("/live.opus")]);
    ice.wait_mount("/live.opus");
    assert_decodes(&ice.url("/live.opus"), 5);
}

/// One cast, two servers: a listener of each decodes. (Ogg Opus, for the reason given at
/// `cast_pushes_webm_to_icecast2`.)
#[test]
fn cast_reaches_agora_and_icecast2_at_once() {
    let ice = Icecast::start();
    let agora = Agora::start();
    let _cast = Cast::start(
        "opus",
        &[
            ice.target("/both.opus"),
            format!("http://source:{SOURCE_PW}@{}/both.opus", agora.addr),
        ],
    );
    ice.wait_mount("/both.opus");
    agora.wait_mount("/both.opus");
    let agora_url = agora.url("/both.opus");
    let other = std::thread::spawn(move || assert_decodes(&agora_url, 5));
    assert_decodes(&ice.url("/both.opus"), 5);
    other.join().expect("the Agora listener decodes");
}

/// A CA and a server certificate signed by it, in `dir`: returns the CA's PEM and the
/// server's certificate-and-key PEM (what icecast2's `<ssl-certificate>` takes).
fn make_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let pki = common::pki::Pki::new();
    let (chain, key) = pki.issue("icecast");
    let pem = [
        std::fs::read(chain).expect("chain"),
        std::fs::read(key).expect("key"),
    ]
    .concat();
    std::fs::write(dir.join("icecast.pem"), pem).expect("icecast.pem");
    std::fs::copy(pki.ca(), dir.join("ca.pem")).expect("ca.pem");
    (dir.join("ca.pem"), dir.join("icecast.pem"))
}

/// `https://` targets: the server's certificate is verified (a cast that does not trust its CA
/// is refused, says why, and keeps retrying); with `--tls-ca` the stream goes through TLS and a
/// listener of icecast2 decodes it.
#[test]
fn cast_pushes_over_tls_and_verifies_the_certificate() {
    let ice = Icecast::start_with(true);
    let (tls_addr, ca) = ice.tls.clone().expect("TLS socket");
    let url = format!("https://source:{ICE_SOURCE_PW}@{tls_addr}/tls.opus");
    let untrusted = Cast::start_args(&["--preset", "opus", "--server", &url]);
    wait_until(
        "the untrusted certificate to be refused",
        Duration::from_secs(30),
        || untrusted.log().contains("target down") && untrusted.log().contains("certificate"),
    );
    assert!(ice.source("/tls.opus").is_none());
    drop(untrusted);

    let _cast = Cast::start_args(&[
        "--preset",
        "opus",
        "--server",
        &url,
        "--tls-ca",
        ca.to_str().expect("utf-8 path"),
    ]);
    ice.wait_mount("/tls.opus");
    assert_decodes(&ice.url("/tls.opus"), 5);
}

/// An Agora edge relays a mount of an icecast2 origin (`[[relay]]`): an MP3 pushed to icecast2
/// by ffmpeg reaches the edge's listener, which decodes it, and the title set on icecast2
/// (which icecast2 interleaves as ICY metadata for the relay) becomes the edge's title.
#[test]
fn agora_relays_a_mount_of_icecast2_with_its_titles() {
    let ice = Icecast::start();
    let (_, mp3) = fixture("mp3");
    let _src = Proc::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&mp3)
            .args(["-c", "copy", "-f", "mp3", "-ice_name", "From icecast2"])
            .arg(format!(
                "icecast://source:{ICE_SOURCE_PW}@{}/ice.mp3",
                ice.addr
            )),
    );
    ice.wait_mount("/ice.mp3");
    let edge = Agora::start_with_config(&format!(
        "[[relay]]\nupstream = \"{}\"\n",
        ice.url("/ice.mp3")
    ));
    edge.wait_log(&["relay connected", "/ice.mp3"]);
    edge.wait_mount("/ice.mp3");
    assert_decodes(&edge.url("/ice.mp3"), 4);
    let src = edge.source("/ice.mp3").expect("relayed");
    assert_eq!(src["server_name"], "From icecast2", "{src}");
    assert_eq!(src["server_type"], "audio/mpeg", "{src}");
    let auth = format!("Basic {}", b64("admin:ice-admin-pw"));
    let (code, _, body) = http_get(
        ice.addr,
        "/admin/metadata?mount=/ice.mp3&mode=updinfo&song=From+the+origin",
        &[("Authorization", &auth)],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    edge.wait_status("icecast2's title on the edge", |a| {
        a.source("/ice.mp3")
            .is_some_and(|s| s["title"] == "From the origin")
    });
}

/// icecast2 as a slave of an Agora master, with icecast2's default relay user (`relay`): it
/// lists Agora's mounts through `/admin/streamlist.txt`, relays them, and its listener decodes.
#[test]
fn icecast2_follows_agora_as_its_master_with_the_default_relay_user() {
    let origin = Agora::start_with_config("[auth]\nrelay-password = \"relay-pw\"\n");
    let (f, mp3) = fixture("mp3");
    let _src = ffmpeg_push(&origin, &mp3, "/m.mp3", f.muxer, false);
    origin.wait_mount("/m.mp3");
    let ice = Icecast::start_full(
        false,
        "",
        &format!(
            "<master-server>127.0.0.1</master-server><master-server-port>{}</master-server-port>\
             <master-update-interval>1</master-update-interval><master-password>relay-pw</master-password>",
            origin.addr.port()
        ),
    );
    ice.wait_mount("/m.mp3");
    assert_decodes(&ice.url("/m.mp3"), 4);
    // icecast2 logged in as the relay user: a relay on Agora's page and stats, not a viewer.
    let view = |a: &Agora| {
        let (_, _, body) = http_get(a.addr, "/api/v1/mounts/m.mp3", &[]);
        serde_json::from_slice::<serde_json::Value>(&body).expect("view")
    };
    wait_until(
        "icecast2 counted as a relay",
        Duration::from_secs(20),
        || {
            let v = view(&origin);
            v["relays"] == 1 && v["listeners"] == 0
        },
    );
}

/// Agora as a slave of an icecast2 master (`[master]` with icecast2's relay user): it picks up
/// icecast2's mount and its listener decodes.
#[test]
fn agora_follows_icecast2_as_its_master() {
    let ice = Icecast::start_full(
        false,
        "<relay-user>relay</relay-user><relay-password>ice-relay-pw</relay-password>",
        "",
    );
    let (_, mp3) = fixture("mp3");
    let _src = Proc::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&mp3)
            .args(["-c", "copy", "-f", "mp3"])
            .arg(format!(
                "icecast://source:{ICE_SOURCE_PW}@{}/from-ice.mp3",
                ice.addr
            )),
    );
    ice.wait_mount("/from-ice.mp3");
    let edge = Agora::start_with_config(&format!(
        "[master]\nurl = \"http://relay:ice-relay-pw@{}/\"\ninterval-secs = 1\n",
        ice.addr
    ));
    edge.wait_mount("/from-ice.mp3");
    assert_decodes(&edge.url("/from-ice.mp3"), 4);
}

/// `[[push]]`: Agora forwards its mounts to icecast2 as their source (PUT): icecast2's listener
/// decodes the Ogg Opus one, and a title set on Agora reaches icecast2's MP3 mount.
#[test]
fn agora_pushes_mounts_into_icecast2() {
    let ice = Icecast::start();
    let agora = Agora::start_with_config(&format!(
        "[[push]]\nmount = \"/p.opus\"\ntarget = \"{}\"\n\n[[push]]\nmount = \"/p.mp3\"\ntarget = \"{}\"\n",
        ice.target("/p.opus"),
        ice.target("/p.mp3")
    ));
    let (opus, opus_path) = fixture("opus");
    let (mp3, mp3_path) = fixture("mp3");
    let _a = ffmpeg_push(&agora, &opus_path, "/p.opus", opus.muxer, false);
    let _b = ffmpeg_push(&agora, &mp3_path, "/p.mp3", mp3.muxer, false);
    ice.wait_mount("/p.opus");
    ice.wait_mount("/p.mp3");
    assert_decodes(&ice.url("/p.opus"), 4);
    assert_decodes(&ice.url("/p.mp3"), 4);
    let src = ice.source("/p.mp3").expect("listed");
    assert_eq!(src["server_name"], "Agora test", "{src}");
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let (code, _, _) = http_get(
        agora.addr,
        "/admin/metadata?mount=/p.mp3&mode=updinfo&song=Pushed+title",
        &[("Authorization", &auth)],
    );
    assert_eq!(code, 200);
    wait_until("the title on icecast2", Duration::from_secs(20), || {
        ice.source("/p.mp3")
            .is_some_and(|s| s["title"] == "Pushed title")
    });
}

/// The forms of Agora's listener authentication are icecast2's: one hook, as the
/// `listener_add` and `listener_remove` URLs of both servers, sees a listener come and go on
/// each; the field names and their order are the same, and each server's remove repeats its
/// add.
#[test]
fn agora_sends_the_listener_add_and_remove_forms_icecast2_sends() {
    use common::hook::Hook;
    use std::io::Write;
    use std::net::TcpStream;

    let hook = Hook::start();
    let ice = Icecast::start_full(
        false,
        "",
        &format!(
            r#"<mount><mount-name>/paid.mp3</mount-name><authentication type="url">
  <option name="listener_add" value="http://{h}/auth"/>
  <option name="listener_remove" value="http://{h}/remove"/>
</authentication></mount>"#,
            h = hook.addr
        ),
    );
    let agora = Agora::start_with_config(&format!(
        "[[mount]]\npath = \"/paid.mp3\"\nlistener-auth-url = \"http://{h}/auth\"\n\
         listener-remove-url = \"http://{h}/remove\"\n",
        h = hook.addr
    ));
    let (_, mp3) = fixture("mp3");
    let _ice_src = Proc::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&mp3)
            .args(["-c", "copy", "-f", "mp3"])
            .arg(format!(
                "icecast://source:{ICE_SOURCE_PW}@{}/paid.mp3",
                ice.addr
            )),
    );
    let _agora_src = ffmpeg_push(&agora, &mp3, "/paid.mp3", "mp3", false);
    ice.wait_mount("/paid.mp3");
    agora.wait_mount("/paid.mp3");

    let mut seen = Vec::new();
    for (server, addr) in [("icecast2", ice.addr), ("agora", agora.addr)] {
        // A listener comes, takes some of the stream and goes.
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let auth = basic_auth("alice", "wonderland");
        s.write_all(
            request(
                "GET",
                "/paid.mp3",
                &[("User-Agent", "test-player/1.0"), ("Authorization", &auth)],
            )
            .as_bytes(),
        )
        .expect("send");
        let head = read_head(&mut s);
        assert!(head.contains(" 200 "), "{server}: {head}");
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut s, &mut byte).expect("stream bytes");
        drop(s);
        let port = addr.port().to_string();
        let of = |action: &str| {
            hook.of(action)
                .into_iter()
                .filter(|c| c.field("port") == port)
                .collect::<Vec<_>>()
        };
        wait_until(
            &format!("{server}'s listener_remove"),
            Duration::from_secs(30),
            || !of("listener_remove").is_empty(),
        );
        let (add, remove) = (of("listener_add"), of("listener_remove"));
        assert_eq!(
            (add.len(), remove.len()),
            (1, 1),
            "{server}: {add:?} {remove:?}"
        );
        for k in ["client", "mount", "user", "pass", "ip", "agent"] {
            assert_eq!(add[0].field(k), remove[0].field(k), "{server}: {k}");
        }
        seen.push((
            server,
            add[0].names().join("&"),
            remove[0].names().join("&"),
        ));
    }
    let (ice_add, ice_remove) = (&seen[0].1, &seen[0].2);
    let (agora_add, agora_remove) = (&seen[1].1, &seen[1].2);
    assert_eq!(agora_add, ice_add);
    assert_eq!(agora_remove, ice_remove);
    assert_eq!(
        agora_remove,
        "action&server&port&client&mount&user&pass&duration&ip&agent"
    );
}
