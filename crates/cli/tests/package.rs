//! The Debian package, checked without installing it on this machine: `scripts/package-deb`
//! packages the `agora` binary this suite built (no second, release build: see
//! ARCHITECTURE.md), then `dpkg-deb` lists and unpacks it into a temporary root. The unit goes
//! through `systemd-analyze verify` and its offline security review; the maintainer scripts run
//! with `DPKG_ROOT` set to that root (random passwords made once, kept on upgrade, gone on
//! purge); the packaged binary runs the packaged configuration with the unit's own command
//! line and the passwords handed over as systemd's credentials are, and a listener decodes a
//! stream pushed with the generated source password.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `cmd`, failing the test with its output unless it succeeds.
fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The package, made by the script operators and CI use, from the binary under test.
struct Package {
    deb: PathBuf,
    /// `dpkg-deb -x`: the files as they would land on `/`.
    root: PathBuf,
    /// `dpkg-deb -e`: the control files and maintainer scripts.
    control: PathBuf,
    dir: TempDir,
}

impl Package {
    fn build() -> Package {
        let dir = TempDir::new("agora-deb");
        let started = Instant::now();
        let out = run(
            "scripts/package-deb",
            Command::new(repo().join("scripts/package-deb"))
                .args([
                    "--binary",
                    env!("CARGO_BIN_EXE_agora"),
                    "--fast",
                    "--output",
                ])
                .arg(dir.path().join("out")),
        );
        let deb = PathBuf::from(text(&out.stdout).lines().last().unwrap_or("").trim());
        assert!(
            deb.is_file() && deb.extension().is_some_and(|e| e == "deb"),
            "scripts/package-deb printed {deb:?}\n{}",
            text(&out.stderr)
        );
        eprintln!(
            "package {} made in {:.1} s",
            deb.display(),
            started.elapsed().as_secs_f64()
        );
        let (root, control) = (dir.path().join("root"), dir.path().join("control"));
        run(
            "dpkg-deb -x",
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        );
        run(
            "dpkg-deb -e",
            Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control),
        );
        Package {
            deb,
            root,
            control,
            dir,
        }
    }

    /// A packaged file's path under the unpacked root (`path` absolute, as installed).
    fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn unit(&self) -> String {
        std::fs::read_to_string(self.file("/usr/lib/systemd/system/agora.service"))
            .expect("the package installs agora.service")
    }

    /// Run a maintainer script as dpkg would, into the unpacked root (`DPKG_ROOT`), with
    /// `systemctl` and `deb-systemd-invoke` replaced by stubs that only note their arguments
    /// (nothing is started or reloaded on this machine). `deb-systemd-helper` is the real one:
    /// it keeps its state under `DPKG_ROOT`. Returns what the script printed.
    fn maintainer_script(&self, script: &str, args: &[&str]) -> String {
        let stubs = self.dir.path().join("stubs");
        std::fs::create_dir_all(&stubs).expect("stubs folder");
        let calls = self.dir.path().join("stub-calls");
        for name in ["systemctl", "deb-systemd-invoke"] {
            let stub = stubs.join(name);
            std::fs::write(
                &stub,
                format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n", calls.display()),
            )
            .expect("stub");
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755))
                .expect("stub mode");
        }
        let path = format!(
            "{}:{}",
            stubs.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = run(
            &format!("{script} {}", args.join(" ")),
            Command::new("sh")
                .arg(self.control.join(script))
                .args(args)
                .env("DPKG_ROOT", &self.root)
                .env("DPKG_MAINTSCRIPT_PACKAGE", "agora")
                .env("PATH", path),
        );
        text(&out.stdout) + &text(&out.stderr)
    }
}

/// The `[Service]`-style `Key=value` lines of a unit, every value of a repeated key in order.
fn unit_keys(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            keys.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    keys
}

#[test]
fn the_package_holds_the_binary_a_sandboxed_unit_a_conffile_and_the_docs() {
    let pkg = Package::build();
    let info = text(
        &run(
            "dpkg-deb -I",
            Command::new("dpkg-deb").arg("-I").arg(&pkg.deb),
        )
        .stdout,
    );
    for field in [
        "Package: agora",
        "Section: net",
        "Depends: libc6",
        "Recommends: poppler-utils",
        "Suggests: ffmpeg",
    ] {
        assert!(info.contains(field), "no {field:?} in\n{info}");
    }
    let listing = text(
        &run(
            "dpkg-deb -c",
            Command::new("dpkg-deb").arg("-c").arg(&pkg.deb),
        )
        .stdout,
    );
    // (mode, path) of every file the package holds.
    let files: BTreeMap<String, String> = listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let mode = f.next()?.to_string();
            let owner = f.next()?;
            assert_eq!(owner, "0/0", "{l}");
            Some((f.last()?.trim_start_matches('.').to_string(), mode))
        })
        .collect();
    for (path, mode) in [
        ("/usr/bin/agora", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/agora.service", "-rw-r--r--"),
        ("/etc/agora/agora.toml", "-rw-r--r--"),
        ("/etc/logrotate.d/agora", "-rw-r--r--"),
        ("/usr/share/doc/agora/README.md", "-rw-r--r--"),
        ("/usr/share/doc/agora/operating.md", "-rw-r--r--"),
        ("/usr/share/doc/agora/config.md", "-rw-r--r--"),
        ("/usr/share/doc/agora/copyright", "-rw-r--r--"),
    ] {
        assert_eq!(
            files.get(path).map(String::as_str),
            Some(mode),
            "{path} in\n{listing}"
        );
    }
    // Passwords are made at install, never shipped.
    assert!(
        !files.keys().any(|p| p.contains("password")),
        "a password file in the package:\n{listing}"
    );
    let conffiles = std::fs::read_to_string(pkg.control.join("conffiles")).expect("conffiles");
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/agora/agora.toml", "/etc/logrotate.d/agora"]
    );
    // The packaged binary is the one under test, stripped.
    let version = run(
        "agora --version",
        Command::new(pkg.file("/usr/bin/agora")).arg("--version"),
    );
    assert!(
        text(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&version.stdout)
    );

    // The unit docs/operating.md shows is the one the package installs, line for line.
    let unit = pkg.unit();
    let guide = std::fs::read_to_string(repo().join("docs/operating.md")).expect("operating.md");
    let first = unit.lines().next().expect("unit's first line");
    let shown: Vec<&str> = guide
        .lines()
        .skip_while(|l| *l != first)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert_eq!(
        shown,
        unit.lines().collect::<Vec<_>>(),
        "docs/operating.md's unit differs from crates/cli/debian/agora.service"
    );

    // What the unit promises (ARCHITECTURE.md, docs/operating.md).
    let keys = unit_keys(&unit);
    let one = |k: &str| -> &str {
        match keys.get(k).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("{k}: {other:?}"),
        }
    };
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("LogsDirectory", "agora"),
        ("StateDirectory", "agora"),
        ("ConfigurationDirectory", "agora"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    let nofile: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE");
    let config = std::fs::read_to_string(pkg.file("/etc/agora/agora.toml")).expect("agora.toml");
    let max_listeners: u64 = config
        .lines()
        .find_map(|l| l.strip_prefix("max-listeners = "))
        .expect("max-listeners in agora.toml")
        .parse()
        .expect("a number");
    assert!(
        max_listeners + 1000 <= nofile,
        "LimitNOFILE {nofile} leaves no room above max-listeners {max_listeners}"
    );
    // No capability, so no privileged port in the default configuration.
    assert!(
        config.contains("listen = [\"0.0.0.0:8000\", \"[::]:8000\"]"),
        "{config}"
    );
    // The access log is in the folder systemd makes for the service.
    assert!(
        config.contains("access-log = \"/var/log/agora/access.log\""),
        "{config}"
    );
    assert!(!config.contains("password ="), "{config}");

    // systemd-analyze reads the unit as systemd would, with the packaged binary in place of
    // /usr/bin/agora (it checks that the command exists); any warning fails the test.
    let bin = pkg.file("/usr/bin/agora");
    let units = pkg.dir.path().join("units");
    std::fs::create_dir_all(&units).expect("units folder");
    let copy = units.join("agora.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/agora ", &format!("{} ", bin.display())),
    )
    .expect("unit copy");
    let verify = run(
        "systemd-analyze verify",
        Command::new("systemd-analyze").arg("verify").arg(&copy),
    );
    let warnings = text(&verify.stdout) + &text(&verify.stderr);
    assert!(
        warnings.trim().is_empty(),
        "systemd-analyze verify:\n{warnings}"
    );
    // Its own exposure review, offline: 2.0 ("OK") at most (it is 1.5 today).
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    assert!(
        security.status.success(),
        "systemd-analyze security:\n{}",
        text(&security.stdout)
    );
}

#[test]
fn the_packaged_service_starts_with_random_passwords_serves_and_is_purged() {
    let pkg = Package::build();
    let etc = pkg.file("/etc/agora");
    let (source_pw, admin_pw) = (etc.join("source-password"), etc.join("admin-password"));

    // First install: two passwords, random, 0600, owned by whoever ran the script (root under
    // dpkg), and the operator is told where they are.
    let said = pkg.maintainer_script("postinst", &["configure"]);
    for f in [&source_pw, &admin_pw] {
        assert!(said.contains(&f.display().to_string()), "{said}");
    }
    assert!(said.contains("systemctl enable --now agora"), "{said}");
    let mine = std::fs::metadata(pkg.dir.path()).expect("temp dir").uid();
    let read = |f: &Path| {
        let meta = std::fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", f.display());
        assert_eq!(meta.uid(), mine, "{}", f.display());
        std::fs::read_to_string(f).expect("password")
    };
    let (source, admin) = (read(&source_pw), read(&admin_pw));
    for pw in [&source, &admin] {
        let line = pw.strip_suffix('\n').expect("one line");
        assert!(
            line.len() == 32 && line.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{line:?}"
        );
    }
    assert_ne!(source, admin);
    // Upgrade (or a reconfigure): the passwords stay.
    let said = pkg.maintainer_script("postinst", &["configure", "0.0.9-1"]);
    assert!(!said.contains("made a random password"), "{said}");
    assert_eq!(
        (read(&source_pw), read(&admin_pw)),
        (source.clone(), admin.clone())
    );

    // The unit's command line, as systemd runs it: the packaged binary and configuration, the
    // passwords copied to the credentials folder (%d) by LoadCredential=.
    let unit = pkg.unit();
    let keys = unit_keys(&unit);
    let creds = pkg.dir.path().join("credentials");
    std::fs::create_dir_all(&creds).expect("credentials folder");
    for cred in &keys["LoadCredential"] {
        let (id, from) = cred.split_once(':').expect("ID:PATH");
        std::fs::copy(pkg.file(from), creds.join(id)).expect("credential");
    }
    let exec: Vec<String> = keys["ExecStart"][0]
        .split_whitespace()
        .map(|a| a.replace("%d", &creds.display().to_string()))
        .collect();
    assert_eq!(
        exec[..4],
        [
            "/usr/bin/agora",
            "serve",
            "--config",
            "/etc/agora/agora.toml"
        ]
    );
    let args: Vec<&str> = exec[4..].iter().map(String::as_str).collect();
    // The configuration as installed, but for the log and state folders, which systemd makes
    // (LogsDirectory=, StateDirectory=) and which are under the unpacked root here; the listen
    // address is a free port (`--listen`, over the file's 0.0.0.0:8000).
    let logs = pkg.file("/var/log/agora");
    std::fs::create_dir_all(&logs).expect("log folder");
    let state = pkg.dir.path().join("state");
    let config = std::fs::read_to_string(pkg.file("/etc/agora/agora.toml"))
        .expect("agora.toml")
        .replace("/var/log/agora/", &format!("{}/", logs.display()));
    assert!(config.contains("data-dir = \"/var/lib/agora\""), "{config}");
    let config = config.replace(
        "\"/var/lib/agora\"",
        &format!("{:?}", state.display().to_string()),
    );
    let bin = pkg.file("/usr/bin/agora");
    let cfg = pkg.dir.path().join("agora.toml");
    std::fs::write(&cfg, &config).expect("config copy");
    let check = run(
        "--check-config",
        Command::new(&bin)
            .args(["serve", "--config"])
            .arg(&cfg)
            .args(&args)
            .arg("--check-config")
            .env_remove("AGORA_SOURCE_PASSWORD")
            .env_remove("AGORA_ADMIN_PASSWORD")
            .env_remove("AGORA_SOURCE_PASSWORD_FILE")
            .env_remove("AGORA_ADMIN_PASSWORD_FILE"),
    );
    assert!(text(&check.stdout).contains("configuration OK"));

    let agora = Agora::start_binary(&bin, &config, &args);
    // Passwords given, none generated: the banner (the journal, under systemd) shows none.
    let banner = agora.stdout();
    assert!(!banner.contains("generated"), "{banner}");
    for pw in [&source, &admin] {
        assert!(!banner.contains(pw.trim()), "{banner}");
    }
    // A source pushes with the generated password; a listener decodes.
    let (_, file) = fixture("opus");
    let push = Proc::spawn(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&file)
            .args(["-c", "copy", "-f", "ogg"])
            .arg(format!(
                "icecast://source:{}@{}/live.opus",
                source.trim(),
                agora.addr
            )),
    );
    agora.wait_mount("/live.opus");
    assert_decodes(&agora.url("/live.opus"), 5);
    // The admin password is the other file's.
    let auth = format!("Basic {}", b64(&format!("admin:{}", admin.trim())));
    let (code, _, _) = http_get(agora.addr, "/admin/stats", &[("Authorization", &auth)]);
    assert_eq!(code, 200);
    // The access log, in the log folder, has the listener's request.
    let access = logs.join("access.log");
    wait_until(
        "the listener in the access log",
        Duration::from_secs(10),
        || std::fs::read_to_string(&access).is_ok_and(|l| l.contains("GET /live.opus")),
    );
    drop(push);
    drop(agora);

    // Remove keeps the passwords and logs (a reinstall finds them); purge takes them away.
    pkg.maintainer_script("prerm", &["remove"]);
    pkg.maintainer_script("postrm", &["remove"]);
    assert!(source_pw.exists() && admin_pw.exists() && access.exists());
    // What systemd made for a DynamicUser= service: the folders under private/, linked.
    // (The log folder above stands for /var/log/agora; /var/lib/agora is a link here.)
    for real in ["/var/lib/private/agora", "/var/log/private/agora"] {
        std::fs::create_dir_all(pkg.file(real)).expect("private folder");
    }
    std::os::unix::fs::symlink("private/agora", pkg.file("/var/lib/agora")).expect("link");
    pkg.maintainer_script("postrm", &["purge"]);
    for gone in [
        "/etc/agora/source-password",
        "/etc/agora/admin-password",
        "/var/log/agora",
        "/var/log/private/agora",
        "/var/lib/agora",
        "/var/lib/private/agora",
    ] {
        assert!(
            std::fs::symlink_metadata(pkg.file(gone)).is_err(),
            "{gone} is left after purge"
        );
    }
    // The conffile is dpkg's to remove; the binary and the unit are still there until dpkg
    // removes the package's files, which this test does not do.
    assert!(pkg.file("/etc/agora/agora.toml").exists());
}
