//! `agora import-icecast`: Debian's own icecast.xml, and one with mounts, relays, a master,
//! an HTTPS socket and a fallback, converted; the result passes `--check-config`, starts, and
//! serves what the Icecast file described; what did not map is listed.

mod common;

use std::path::Path;
use std::process::Command;

use common::pki::Pki;
use common::*;

/// `agora import-icecast XML -o TOML`: (TOML text, the notes on standard error).
fn import(xml: &Path, toml: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("import-icecast")
        .arg(xml)
        .arg("-o")
        .arg(toml)
        .output()
        .expect("run agora import-icecast");
    let notes = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{notes}");
    (std::fs::read_to_string(toml).expect("TOML written"), notes)
}

fn config_passes(toml: &Path) {
    let out = check_config(toml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn debians_default_icecast_xml_imports_checks_and_serves() {
    let dir = TempDir::new("import-debian");
    // The package's file as installed, its log folder moved to this test's.
    let original = std::fs::read_to_string("/etc/icecast2/icecast.xml")
        .expect("/etc/icecast2/icecast.xml (the icecast2 package, scripts/install-deps)");
    let xml = dir.path().join("icecast.xml");
    std::fs::write(
        &xml,
        original.replace("/var/log/icecast2", &dir.path().display().to_string()),
    )
    .expect("write");
    let (toml, notes) = import(&xml, &dir.path().join("agora.toml"));
    // The sample passwords are not carried over; what Agora does otherwise is said.
    assert!(!toml.contains("hackme"), "{toml}");
    for element in [
        "<authentication/source-password>: Icecast's sample password",
        "<authentication/admin-password>: Icecast's sample password",
        "<limits/client-timeout>",
        "<paths/webroot>",
        "<security>",
    ] {
        assert!(notes.contains(element), "{element} not in:\n{notes}");
    }
    assert!(toml.contains("max-listeners = 100"), "{toml}");
    config_passes(&dir.path().join("agora.toml"));

    let agora = Agora::start_with_config(&toml);
    let (fx, file) = fixture("vorbis");
    let _src = ffmpeg_push(&agora, &file, "/debian.ogg", fx.muxer, false);
    agora.wait_mount("/debian.ogg");
    assert_decodes(&agora.url("/debian.ogg"), 3);
    // The access log of the imported <logging> is written where <paths><logdir> said.
    wait_until("the access log", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(dir.path().join("access.log"))
            .is_ok_and(|l| l.contains("GET /debian.ogg"))
    });
}

#[test]
fn mounts_relays_a_master_and_https_are_carried_over() {
    // The other server: a mount for the <relay>, the master's list for <master-server>.
    let origin = Agora::start_with_config("[auth]\nrelay-password = \"relay-pw\"\n");
    let (fx, file) = fixture("vorbis");
    let _up = ffmpeg_push(&origin, &file, "/up.ogg", fx.muxer, false);
    let _listed = ffmpeg_push(&origin, &file, "/listed.ogg", fx.muxer, false);
    origin.wait_mount("/up.ogg");
    origin.wait_mount("/listed.ogg");

    let dir = TempDir::new("import-full");
    let pki = Pki::new();
    let (chain, key) = pki.issue("imported");
    // icecast2's one PEM with the certificate and the key.
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        [
            std::fs::read(&chain).expect("chain"),
            std::fs::read(&key).expect("key"),
        ]
        .concat(),
    )
    .expect("bundle");
    let tls_port = free_port();
    let xml = dir.path().join("icecast.xml");
    std::fs::write(
        &xml,
        format!(
            r#"<icecast>
  <hostname>localhost</hostname>
  <limits><clients>50</clients><sources>8</sources><burst-size>32768</burst-size></limits>
  <authentication>
    <source-password>{SOURCE_PW}</source-password>
    <admin-user>admin</admin-user><admin-password>{ADMIN_PW}</admin-password>
  </authentication>
  <listen-socket><port>{plain}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <listen-socket><port>{tls_port}</port><bind-address>127.0.0.1</bind-address><ssl>1</ssl></listen-socket>
  <mount type="normal">
    <mount-name>/live.ogg</mount-name>
    <password>mount-pw</password>
    <max-listeners>1</max-listeners>
    <fallback-mount>/standby.ogg</fallback-mount>
    <stream-name>Hall A</stream-name>
  </mount>
  <mount><mount-name>/paid.ogg</mount-name>
    <authentication type="url">
      <option name="listener_add" value="http://127.0.0.1:{hook}/add.php"/>
      <option name="listener_remove" value="http://127.0.0.1:{hook}/remove.php"/>
      <option name="username" value="ice"/><option name="password" value="p@ss"/>
    </authentication></mount>
  <relay><server>{host}</server><port>{port}</port><mount>/up.ogg</mount>
    <local-mount>/down.ogg</local-mount></relay>
  <master-server>{host}</master-server><master-server-port>{port}</master-server-port>
  <master-update-interval>1</master-update-interval><master-password>relay-pw</master-password>
  <paths><ssl-certificate>{bundle}</ssl-certificate></paths>
</icecast>"#,
            plain = free_port(),
            hook = free_port(),
            host = origin.addr.ip(),
            port = origin.addr.port(),
            bundle = bundle.display(),
        ),
    )
    .expect("write");
    let (toml, notes) = import(&xml, &dir.path().join("agora.toml"));
    assert!(!notes.contains("fallback"), "{notes}");
    // Icecast's url authentication: both URLs, with its one username and password.
    assert!(!notes.contains("listener_remove"), "{notes}");
    let paid = toml
        .split("[[mount]]")
        .find(|m| m.contains("/paid.ogg"))
        .expect("/paid.ogg imported");
    assert!(
        paid.contains("listener-auth-url = \"http://ice:p%40ss@127.0.0.1:")
            && paid.contains("/add.php\"")
            && paid.contains("listener-remove-url = \"http://ice:p%40ss@127.0.0.1:")
            && paid.contains("/remove.php\""),
        "{toml}"
    );
    assert!(
        toml.contains("fallback = \"/standby.ogg\"") && toml.contains("fallback-override = false"),
        "{toml}"
    );
    config_passes(&dir.path().join("agora.toml"));

    let agora = Agora::start_with_config(&toml);
    let tls = agora.tls_addr.expect("the imported HTTPS socket");
    assert_eq!(tls.port(), tls_port);
    // <relay>, under its local name, and the master's mounts under theirs.
    agora.wait_mount("/down.ogg");
    agora.wait_mount("/listed.ogg");
    assert_decodes(&agora.url("/down.ogg"), 3);
    // The mount's own password, its name and its limit.
    let _live = ffmpeg_push_with_password(&agora, &file, "/live.ogg", "mount-pw");
    agora.wait_mount("/live.ogg");
    let live = agora.source("/live.ogg").expect("live");
    assert_eq!(live["server_name"], "Hall A", "{live}");
    let (_held, head) = open_listener(agora.addr, "/live.ogg");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let (code, _, _) = http_get(agora.addr, "/live.ogg", &[]);
    assert_eq!(code, 503, "max-listeners 1");
    // The HTTPS socket with the bundle's certificate.
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .arg("-ca_file")
        .arg(pki.ca())
        .args(["-tls_verify", "1"]);
    assert_decodes_with(ffmpeg, &format!("https://localhost:{tls_port}/down.ogg"), 3);
}

/// [`ffmpeg_push`] with a mount's own password.
fn ffmpeg_push_with_password(agora: &Agora, file: &Path, mount: &str, password: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "ogg"])
        .arg(format!("icecast://source:{password}@{}{mount}", agora.addr));
    Proc::spawn(&mut cmd)
}
