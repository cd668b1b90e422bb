//! HTTPS: listeners and sources over TLS with a test CA, HTTP and HTTPS side by side on the
//! same mounts, certificates swapped on SIGHUP without dropping anyone, and what a bad
//! certificate or a client that does not speak TLS gets.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::Pki;
use common::*;

/// A server with an HTTPS socket beside its plain one.
fn start_tls(cert: &Path, key: &Path) -> Agora {
    let agora = Agora::start_with_config(&format!(
        "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\ncertificate = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    assert!(agora.tls_addr.is_some(), "no https address in the banner");
    agora
}

/// A server with an HTTPS socket (certificate "first" of a new test CA) and `/live.ogg`
/// pushed by ffmpeg: (the CA, the certificate and key files, the server, its HTTPS address,
/// the source).
fn https_server_with_a_live_mount() -> (Pki, (PathBuf, PathBuf), Agora, SocketAddr, Proc) {
    let pki = Pki::new();
    let (cert, key) = pki.issue("first");
    let agora = start_tls(&cert, &key);
    let tls = agora.tls_addr.expect("https");
    let (fx, file) = fixture("vorbis");
    let src = ffmpeg_push(&agora, &file, "/live.ogg", fx.muxer, false);
    agora.wait_mount("/live.ogg");
    (pki, (cert, key), agora, tls, src)
}

fn https_url(addr: SocketAddr, mount: &str) -> String {
    format!("https://localhost:{}{mount}", addr.port())
}

/// ffmpeg that trusts the test CA only and checks the server's certificate and name.
fn ffmpeg_verifying(ca: &Path) -> Command {
    let mut c = Command::new("ffmpeg");
    c.arg("-ca_file").arg(ca).args(["-tls_verify", "1"]);
    c
}

/// The organisation of the certificate an HTTPS socket presents now (openssl s_client).
fn served_organisation(addr: SocketAddr, ca: &Path) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Verify return code: 0 (ok)"),
        "the certificate does not verify:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.trim().strip_prefix("subject=O = "))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("no subject in:\n{text}"))
        .to_string()
}

#[test]
fn a_listener_over_https_decodes_beside_a_plain_one() {
    let (pki, _, agora, tls, _src) = https_server_with_a_live_mount();
    // The same mount over HTTPS (the certificate and its name checked) and over HTTP.
    assert_decodes_with(ffmpeg_verifying(&pki.ca()), &https_url(tls, "/live.ogg"), 5);
    assert_decodes(&agora.url("/live.ogg"), 3);
    // Pages and the API answer over HTTPS too, and a playlist fetched over HTTPS points to
    // the HTTPS stream.
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(pki.ca())
        .arg(https_url(tls, "/live.ogg.m3u"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        https_url(tls, "/live.ogg"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(pki.ca())
        .arg(https_url(tls, "/status-json.xsl"))
        .output()
        .expect("curl");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert!(status["icestats"]["source"].is_object(), "{status}");
}

#[test]
fn a_source_pushes_over_tls() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("first");
    let agora = start_tls(&cert, &key);
    let tls = agora.tls_addr.expect("https");
    let (fx, file) = fixture("opus");
    // ffmpeg's icecast protocol over TLS: `-tls 1`.
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&file)
        .args(["-c", "copy", "-f", fx.muxer, "-tls", "1"])
        .arg(format!(
            "icecast://source:{SOURCE_PW}@localhost:{}/secure.opus",
            tls.port()
        ));
    let _src = Proc::spawn(&mut cmd);
    agora.wait_mount("/secure.opus");
    assert_decodes(&agora.url("/secure.opus"), 4);
    assert_decodes_with(
        ffmpeg_verifying(&pki.ca()),
        &https_url(tls, "/secure.opus"),
        3,
    );
}

#[test]
fn a_certificate_swapped_on_sighup_serves_new_connections_and_keeps_old_ones() {
    let (pki, (cert, key), agora, tls, _src) = https_server_with_a_live_mount();
    assert_eq!(served_organisation(tls, &pki.ca()), "first");

    // A listener over HTTPS, decoding 12 s of the stream across the swap.
    let ca = pki.ca();
    let url = https_url(tls, "/live.ogg");
    let before = std::thread::spawn(move || assert_decodes_with(ffmpeg_verifying(&ca), &url, 12));
    agora.wait_status("the https listener", |a| a.listeners("/live.ogg") >= 1);

    // Renewed files in place, as an ACME client writes them, then SIGHUP.
    let (new_cert, new_key) = pki.issue("second");
    std::fs::copy(&new_cert, &cert).expect("copy cert");
    std::fs::copy(&new_key, &key).expect("copy key");
    send_signal(agora.pid(), "HUP");
    agora.wait_log(&["TLS certificate reloaded"]);
    assert_eq!(served_organisation(tls, &pki.ca()), "second");
    assert_decodes_with(ffmpeg_verifying(&pki.ca()), &https_url(tls, "/live.ogg"), 2);
    before
        .join()
        .expect("the listener from before the swap decoded throughout");

    // A key that is not the certificate's: refused, the current pair stays.
    let (_, other_key) = pki.issue("third");
    std::fs::copy(&other_key, &key).expect("copy key");
    send_signal(agora.pid(), "HUP");
    agora.wait_log(&["reload refused"]);
    assert_eq!(served_organisation(tls, &pki.ca()), "second");
    assert!(agora.log_has(&["reload refused", &key.display().to_string()]));
}

#[test]
fn a_client_that_does_not_speak_tls_is_dropped_and_counted() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("first");
    let agora = start_tls(&cert, &key);
    let tls = agora.tls_addr.expect("https");
    // Plain HTTP to the HTTPS socket: no answer in clear text, the connection ends.
    let mut s = TcpStream::connect(tls).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request("GET", "/status-json.xsl", &[]).as_bytes())
        .expect("send");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // Counted by the connection's task, which may end after the client saw the close.
    wait_until(
        "the failed handshake counted",
        Duration::from_secs(20),
        || {
            let (code, _, body) = http_get(agora.addr, "/metrics", &[]);
            code == 200
                && String::from_utf8_lossy(&body).contains("agora_tls_handshake_failures_total 1")
        },
    );
}

/// A client that opens the HTTPS socket and stalls in the handshake (nothing sent, or half a
/// ClientHello) holds its connection no longer than a slow request head would.
#[test]
fn a_handshake_that_stalls_is_cut_at_the_header_timeout() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("first");
    let agora = Agora::start_with_config(&format!(
        "[server]\nheader-timeout-secs = 2\n\n[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\ncertificate = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    let tls = agora.tls_addr.expect("https");
    // A TLS record header announcing a 512-byte handshake message, and 3 of its bytes.
    let stalls: [&[u8]; 2] = [b"", &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]];
    for (i, first) in stalls.iter().enumerate() {
        let mut s = TcpStream::connect(tls).expect("connect");
        s.write_all(first).expect("send");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        let took = started.elapsed();
        assert!(r.is_ok() && got.is_empty(), "{r:?} {got:?}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
            "closed after {took:?}"
        );
        let n = i + 1;
        wait_until(
            "the stalled handshake counted",
            Duration::from_secs(20),
            || {
                let (code, _, body) = http_get(agora.addr, "/metrics", &[]);
                code == 200
                    && String::from_utf8_lossy(&body)
                        .contains(&format!("agora_tls_handshake_failures_total {n}"))
            },
        );
    }
}

#[test]
fn an_unusable_certificate_is_named_by_check_config_and_at_start() {
    let pki = Pki::new();
    let (cert, _) = pki.issue("first");
    let dir = TempDir::new("agora-tls-config");
    let missing = dir.path().join("missing.key");
    let cfg = dir.path().join("agora.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\ncertificate = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            missing.display().to_string()
        ),
    )
    .expect("config");
    for extra in [&["--check-config"][..], &[]] {
        let out = Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .args(extra)
            .output()
            .expect("run agora");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} accepted a missing key");
        assert!(
            err.contains(&format!("TLS key {}", missing.display())) && err.contains("No such file"),
            "{extra:?}: {err}"
        );
    }
}

/// libshout over TLS from the first byte (RFC 2818), as ezstream's `HTTPS` protocol does it,
/// the server's certificate checked against the test CA.
#[test]
fn ezstream_pushes_over_https() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("first");
    let agora = start_tls(&cert, &key);
    let tls = agora.tls_addr.expect("https");
    let (_, file) = fixture("vorbis");
    let dir = TempDir::new("ezstream-tls");
    let cfg = dir.path().join("ezstream.xml");
    std::fs::write(
        &cfg,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server><protocol>HTTPS</protocol><hostname>localhost</hostname>
    <port>{port}</port><password>{SOURCE_PW}</password><ca_file>{ca}</ca_file>
    <reconnect_attempts>1</reconnect_attempts></server></servers>
  <streams><stream><mountpoint>/ez-tls.ogg</mountpoint><format>Ogg</format></stream></streams>
  <intakes><intake><type>file</type><filename>{file}</filename></intake></intakes>
</ezstream>
"#,
            port = tls.port(),
            ca = pki.ca().display(),
            file = file.display()
        ),
    )
    .expect("write ezstream config");
    // ezstream refuses configs readable by others (they hold a password).
    let ok = Command::new("chmod")
        .arg("600")
        .arg(&cfg)
        .status()
        .expect("chmod")
        .success();
    assert!(ok);
    let _src = Proc::spawn(Command::new("ezstream").arg("-c").arg(&cfg));
    agora.wait_mount("/ez-tls.ogg");
    assert_decodes(&agora.url("/ez-tls.ogg"), 4);
}
