//! `agora import-icecast`: an Icecast configuration (`icecast.xml`: icecast2 2.4, 2.5 and
//! Icecast-KH's additions) as Agora's TOML, with a note for every element that did not map.
//!
//! Sans-IO: [`convert`] takes the XML text and gives back the TOML text and the notes; the
//! command reads and writes the files. Nothing is guessed silently: an element is either
//! mapped to a key, or named in a note that says why not (Agora does it differently, does not
//! do it, or the value is unusable). The result is meant to pass `agora serve --check-config`.

use std::fmt;

use toml::{Table, Value};

/// The converted configuration and what did not map.
#[derive(Debug)]
pub(crate) struct Imported {
    pub(crate) toml: String,
    pub(crate) notes: Vec<Note>,
}

/// An element that was not carried over, or carried over with a change.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Note {
    /// Line in the XML.
    pub(crate) line: u32,
    /// The element's path, e.g. `limits/client-timeout`.
    pub(crate) element: String,
    pub(crate) why: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: <{}>: {}", self.line, self.element, self.why)
    }
}

/// Why the file could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    /// roxmltree's words in the message, not a `source`: said once.
    #[error("not XML: {0}")]
    Xml(roxmltree::Error),
    #[error("the root element is <{0}>, not <icecast>")]
    NotIcecast(String),
}

/// Icecast's sample password: never carried over (Agora has no fixed password).
const SAMPLE_PASSWORD: &str = "hackme";

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

/// What a conversion builds: the tables, and the notes.
#[derive(Default)]
struct Builder {
    server: Table,
    auth: Table,
    defaults: Table,
    mounts: Vec<Value>,
    relays: Vec<Value>,
    tls_sockets: Vec<(String, u32)>,
    tls: Vec<Value>,
    master: Table,
    notes: Vec<Note>,
    /// `<paths><logdir>` and `<logging><accesslog>`, joined at the end.
    logdir: Option<String>,
    accesslog: Option<String>,
    certificate: Option<String>,
}

/// Convert `xml` (an `icecast.xml`).
pub(crate) fn convert(xml: &str) -> Result<Imported, ImportError> {
    let doc = roxmltree::Document::parse(xml).map_err(ImportError::Xml)?;
    let root = doc.root_element();
    if root.tag_name().name() != "icecast" {
        return Err(ImportError::NotIcecast(root.tag_name().name().to_string()));
    }
    let mut b = Builder::default();
    for n in elements(root) {
        b.top(n, &doc);
    }
    Ok(b.finish())
}

fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(Node::is_element)
}

fn text(n: Node<'_, '_>) -> String {
    n.text().unwrap_or_default().trim().to_string()
}

/// The element's path from below `<icecast>`, e.g. `limits/burst-size`.
fn path(n: Node<'_, '_>) -> String {
    let mut parts: Vec<&str> = n
        .ancestors()
        .filter(Node::is_element)
        .map(|a| a.tag_name().name())
        .collect();
    parts.pop(); // <icecast>
    parts.reverse();
    parts.join("/")
}

impl Builder {
    fn note(&mut self, n: Node<'_, '_>, doc: &roxmltree::Document<'_>, why: impl Into<String>) {
        self.notes.push(Note {
            line: doc.text_pos_at(n.range().start).row,
            element: path(n),
            why: why.into(),
        });
    }

    /// A number, or a note that says the value is unusable.
    fn number(&mut self, n: Node<'_, '_>, doc: &roxmltree::Document<'_>) -> Option<i64> {
        match text(n).parse::<i64>() {
            Ok(v) if v >= 0 => Some(v),
            _ => {
                self.note(n, doc, format!("{:?} is not a number: left out", text(n)));
                None
            }
        }
    }

    /// Icecast reads flags with `atoi`: anything but a number other than 0 is false.
    fn flag(n: Node<'_, '_>) -> bool {
        text(n).parse::<i64>().is_ok_and(|v| v != 0)
    }

    fn top(&mut self, n: Node<'_, '_>, doc: &roxmltree::Document<'_>) {
        match n.tag_name().name() {
            "hostname" => {
                self.server.insert("hostname".into(), text(n).into());
            }
            "location" => {
                self.server.insert("location".into(), text(n).into());
            }
            "admin" => {
                self.server.insert("admin-email".into(), text(n).into());
            }
            "limits" => {
                for c in elements(n) {
                    self.limit(c, doc);
                }
            }
            "authentication" => {
                for c in elements(n) {
                    self.authentication(c, doc);
                }
            }
            "listen-socket" => self.listen_socket(n, doc),
            "paths" => {
                for c in elements(n) {
                    self.paths(c, doc);
                }
            }
            "logging" => {
                for c in elements(n) {
                    match c.tag_name().name() {
                        "accesslog" => self.accesslog = Some(text(c)),
                        _ => self.note(
                            c,
                            doc,
                            "Agora logs to standard error (journald); RUST_LOG sets the level",
                        ),
                    }
                }
            }
            "mount" => self.mount(n, doc),
            "relay" => self.relay(n, doc),
            "master-server" | "master-server-port" | "master-update-interval"
            | "master-username" | "master-password" => {
                self.master
                    .insert(n.tag_name().name().to_string(), text(n).into());
            }
            "relays-on-demand" => self.note(
                n,
                doc,
                "relays made from the master's list connect at once; give a [[relay]] `on-demand = true` for one that should wait for a listener",
            ),
            "x-forwarded-for" => {
                let list = self
                    .server
                    .entry("trusted-proxies")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(a) = list {
                    a.push(text(n).into());
                }
            }
            "security" => self.note(
                n,
                doc,
                "chroot and changeowner: run Agora as its own user with systemd instead (docs/operating.md)",
            ),
            "directory" => self.note(n, doc, "YP directory listings are not supported"),
            "fileserve" => self.note(
                n,
                doc,
                "Agora serves its own embedded pages, no files from a web root",
            ),
            "http-headers" => self.note(
                n,
                doc,
                "not configurable: public answers already carry Access-Control-Allow-Origin: *",
            ),
            "shoutcast-mount" => self.note(n, doc, "Shoutcast sources are not supported"),
            _ => self.note(n, doc, "not known to the importer: left out"),
        }
    }

    fn limit(&mut self, c: Node<'_, '_>, doc: &roxmltree::Document<'_>) {
        let (table, key) = match c.tag_name().name() {
            "clients" => ("server", "max-listeners"),
            "sources" => ("server", "max-sources"),
            "header-timeout" => ("server", "header-timeout-secs"),
            "source-timeout" => ("server", "source-timeout-secs"),
            "queue-size" => ("defaults", "queue-size"),
            "burst-size" => ("defaults", "burst-size"),
            "burst-on-connect" => {
                if !Self::flag(c) {
                    self.defaults.insert("burst-size".into(), 0.into());
                }
                return;
            }
            "client-timeout" => {
                return self.note(c, doc, "unused by icecast2 itself; Agora has no such limit");
            }
            "threadpool" => return self.note(c, doc, "Agora sizes its own threads"),
            _ => return self.note(c, doc, "not known to the importer: left out"),
        };
        let Some(v) = self.number(c, doc) else {
            return;
        };
        let t = if table == "server" {
            &mut self.server
        } else {
            &mut self.defaults
        };
        // `burst-on-connect` 0 wins over a burst size given after it.
        if !(key == "burst-size" && t.get(key) == Some(&Value::Integer(0))) {
            t.insert(key.into(), v.into());
        }
    }

    fn authentication(&mut self, c: Node<'_, '_>, doc: &roxmltree::Document<'_>) {
        let key = match c.tag_name().name() {
            "source-password" => "source-password",
            "admin-user" => "admin-user",
            "admin-password" => "admin-password",
            "relay-user" => "relay-user",
            "relay-password" => "relay-password",
            _ => return self.note(c, doc, "not known to the importer: left out"),
        };
        let value = text(c);
        if key.ends_with("password") && value == SAMPLE_PASSWORD {
            return self.note(
                c,
                doc,
                "Icecast's sample password is not carried over: Agora makes a random one at each start and prints it (or set it, better with a -file key)",
            );
        }
        self.auth.insert(key.into(), value.into());
    }

    fn listen_socket(&mut self, n: Node<'_, '_>, doc: &roxmltree::Document<'_>) {
        let (mut port, mut bind, mut tls) = (None, None, false);
        for c in elements(n) {
            match c.tag_name().name() {
                "port" => port = self.number(c, doc),
                "bind-address" => bind = Some(text(c)),
                // 2.4's name, and 2.5's.
                "ssl" | "tls" => tls = Self::flag(c) || text(c) == "true",
                "shoutcast-mount" | "shoutcast-compat" => {
                    self.note(c, doc, "Shoutcast sources are not supported")
                }
                _ => self.note(c, doc, "not known to the importer: left out"),
            }
        }
        let Some(port) = port.filter(|p| (1..=65535).contains(p)) else {
            return self.note(n, doc, "no usable <port>: socket left out");
        };
        // Without an address icecast2 listens on every one, IPv4 and IPv6.
        let addrs: Vec<String> = match bind.as_deref() {
            Some(a) if a.contains(':') => vec![format!("[{a}]:{port}")],
            Some(a) => vec![format!("{a}:{port}")],
            None => vec![format!("0.0.0.0:{port}"), format!("[::]:{port}")],
        };
        let line = doc.text_pos_at(n.range().start).row;
        for a in addrs {
            if tls {
                self.tls_sockets.push((a, line));
            } else if let Value::Array(list) = self
                .server
                .entry("listen")
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.push(a.into());
            }
        }
    }

    fn paths(&mut self, c: Node<'_, '_>, doc: &roxmltree::Document<'_>) {
        match c.tag_name().name() {
            "logdir" => self.logdir = Some(text(c)),
            "ssl-certificate" | "tls-certificate" => self.certificate = Some(text(c)),
            "x-forwarded-for" => self.top(c, doc),
            "basedir" | "webroot" | "adminroot" => {
                self.note(c, doc, "Agora's pages are embedded in the binary")
            }
            "pidfile" => self.note(c, doc, "run under systemd, which knows the process"),
            "alias" => self.note(c, doc, "aliases are not supported: left out"),
            _ => self.note(c, doc, "not known to the importer: left out"),
        }
    }

    fn mount(&mut self, n: Node<'_, '_>, doc: &roxmltree::Document<'_>) {
        let default = n.attribute("type") == Some("default");
        let mut m = Table::new();
        for c in elements(n) {
            let name = c.tag_name().name();
            let key = match name {
                "mount-name" if !default => "path",
                "username" if !default => "username",
                "password" if !default => "password",
                "max-listeners" => "max-listeners",
                "burst-size" => "burst-size",
                "queue-size" => "queue-size",
                "mp3-metadata-interval" => "icy-metaint",
                "stream-name" if !default => "stream-name",
                "stream-description" if !default => "stream-description",
                "stream-url" if !default => "stream-url",
                "genre" if !default => "genre",
                "fallback-mount" if !default => "fallback",
                "fallback-mount" => {
                    self.note(
                        c,
                        doc,
                        "Agora sets a fallback per mount, not for every mount: left out",
                    );
                    continue;
                }
                "fallback-override" => "fallback-override",
                "fallback-when-full" => "fallback-when-full",
                "authentication" => {
                    self.listener_auth(c, doc, &mut m);
                    continue;
                }
                "intro" => {
                    self.note(
                        c,
                        doc,
                        "left out: Icecast reads it under its webroot; give the file's path as the mount's `intro` by hand",
                    );
                    continue;
                }
                "dump-file"
                | "on-connect"
                | "on-disconnect"
                | "max-listener-duration"
                | "charset"
                | "public"
                | "hidden"
                | "no-yp"
                | "bitrate"
                | "type"
                | "subtype"
                | "http-headers" => {
                    self.note(c, doc, "not supported: left out");
                    continue;
                }
                _ => {
                    self.note(c, doc, "not known to the importer: left out");
                    continue;
                }
            };
            let value: Value = if matches!(
                key,
                "max-listeners" | "burst-size" | "queue-size" | "icy-metaint"
            ) {
                match self.number(c, doc) {
                    Some(v) => v.into(),
                    None => continue,
                }
            } else if matches!(key, "fallback-override" | "fallback-when-full") {
                // Icecast 2.5 also says `all`, `own` or `none` for the override.
                let t = text(c);
                (Self::flag(c) || matches!(t.as_str(), "all" | "own")).into()
            } else {
                text(c).into()
            };
            if key == "password" && value.as_str() == Some(SAMPLE_PASSWORD) {
                self.note(
                    c,
                    doc,
                    "Icecast's sample password is not carried over: the mount takes the source password",
                );
                continue;
            }
            m.insert(key.into(), value);
        }
        // Icecast's listeners stay on the fallback unless the override is set; Agora's come
        // back by default: the imported mount keeps Icecast's behaviour.
        if m.contains_key("fallback") && !m.contains_key("fallback-override") {
            m.insert("fallback-override".into(), false.into());
        }
        if default {
            // `max-listeners` of every mount is a per-mount limit in [mount-defaults].
            for (k, v) in m {
                self.defaults.insert(k, v);
            }
        } else if m.contains_key("path") {
            self.mounts.push(Value::Table(m));
        } else {
            self.note(n, doc, "no <mount-name>: left out");
        }
    }

    /// A mount's `<authentication type="htpasswd|url">` as `listener-htpasswd` or
    /// `listener-auth-url` (and `listener-remove-url`); the options Agora does not have are
    /// noted.
    fn listener_auth(&mut self, n: Node<'_, '_>, doc: &roxmltree::Document<'_>, m: &mut Table) {
        let kind = n.attribute("type").unwrap_or("");
        let options: Vec<(Node<'_, '_>, &str, &str)> = elements(n)
            .filter(|o| o.tag_name().name() == "option")
            .filter_map(|o| Some((o, o.attribute("name")?, o.attribute("value")?)))
            .collect();
        match kind {
            "htpasswd" => {
                let Some((_, _, file)) = options.iter().find(|(_, k, _)| *k == "filename") else {
                    return self.note(
                        n,
                        doc,
                        "htpasswd authentication without a filename: left out",
                    );
                };
                m.insert("listener-htpasswd".into(), (*file).into());
                self.note(
                    n,
                    doc,
                    "listener-htpasswd: Icecast's htpasswd files hold MD5 hashes, Agora reads bcrypt \
                     only: make the file again with `htpasswd -B` (--check-config names each MD5 line)",
                );
                for (o, k, _) in &options {
                    if *k != "filename" {
                        self.note(*o, doc, format!("option {k}: not supported: left out"));
                    }
                }
            }
            "url" => {
                let Some((_, _, add)) = options.iter().find(|(_, k, _)| *k == "listener_add")
                else {
                    return self.note(n, doc, "url authentication without listener_add: left out");
                };
                let find = |name: &str| options.iter().find(|(_, k, _)| *k == name).map(|o| o.2);
                let add = with_credentials(add, find("username"), find("password"));
                m.insert("listener-auth-url".into(), add.into());
                // Icecast sends the one username and password to both URLs.
                if let Some(remove) = find("listener_remove") {
                    let remove = with_credentials(remove, find("username"), find("password"));
                    m.insert("listener-remove-url".into(), remove.into());
                }
                for (o, k, v) in &options {
                    match *k {
                        "listener_add" | "listener_remove" | "username" | "password" => {}
                        "auth_header" if v.trim().eq_ignore_ascii_case("icecast-auth-user: 1") => {}
                        "auth_header" => self.note(
                            *o,
                            doc,
                            "Agora lets in on `icecast-auth-user: 1` only: left out",
                        ),
                        _ => self.note(*o, doc, format!("option {k}: not supported: left out")),
                    }
                }
            }
            other => self.note(
                n,
                doc,
                format!("listener authentication of type {other:?} is not supported: left out"),
            ),
        }
    }

    fn relay(&mut self, n: Node<'_, '_>, doc: &roxmltree::Document<'_>) {
        let (mut server, mut port, mut mount) = (None, 8000, "/".to_string());
        let (mut user, mut password, mut local, mut on_demand) = (None, None, None, false);
        for c in elements(n) {
            match c.tag_name().name() {
                "server" => server = Some(text(c)),
                "port" => port = self.number(c, doc).unwrap_or(port),
                "mount" => mount = text(c),
                "local-mount" => local = Some(text(c)),
                "username" => user = Some(text(c)),
                "password" => password = Some(text(c)),
                "on-demand" => on_demand = Self::flag(c),
                "relay-shoutcast-metadata" => self.note(
                    c,
                    doc,
                    "Agora always asks for ICY metadata and keeps the titles",
                ),
                "bind" => self.note(c, doc, "the kernel picks the local address"),
                _ => self.note(c, doc, "not known to the importer: left out"),
            }
        }
        let Some(server) = server else {
            return self.note(n, doc, "no <server>: relay left out");
        };
        let mut r = Table::new();
        r.insert(
            "upstream".into(),
            url(&server, port, &mount, user.as_deref(), password.as_deref()).into(),
        );
        if let Some(local) = local {
            r.insert("mount".into(), local.into());
        }
        if on_demand {
            r.insert("on-demand".into(), true.into());
        }
        self.relays.push(Value::Table(r));
    }

    fn finish(mut self) -> Imported {
        if let Some(file) = self.accesslog.take() {
            let path = match &self.logdir {
                Some(dir) if !file.starts_with('/') => {
                    format!("{}/{file}", dir.trim_end_matches('/'))
                }
                _ => file,
            };
            self.server.insert("access-log".into(), path.into());
        }
        for (addr, line) in std::mem::take(&mut self.tls_sockets) {
            match &self.certificate {
                // icecast2 takes one PEM file with the certificate and the key: Agora reads
                // both from it.
                Some(pem) => {
                    let mut t = Table::new();
                    t.insert("listen".into(), Value::Array(vec![addr.into()]));
                    t.insert("certificate".into(), pem.clone().into());
                    t.insert("key".into(), pem.clone().into());
                    self.tls.push(Value::Table(t));
                }
                None => self.notes.push(Note {
                    line,
                    element: "listen-socket".into(),
                    why: format!("TLS socket {addr} without <paths><ssl-certificate>: left out"),
                }),
            }
        }
        if !self.tls.is_empty() {
            self.server
                .insert("tls".into(), Value::Array(std::mem::take(&mut self.tls)));
        }
        let mut out = Table::new();
        let master = std::mem::take(&mut self.master);
        if let Some(host) = master.get("master-server").and_then(Value::as_str) {
            let port = master
                .get("master-server-port")
                .and_then(Value::as_str)
                .and_then(|p| p.parse().ok())
                .unwrap_or(8000);
            let user = master
                .get("master-username")
                .and_then(Value::as_str)
                .unwrap_or("relay");
            let password = master.get("master-password").and_then(Value::as_str);
            let mut m = Table::new();
            m.insert(
                "url".into(),
                url(host, port, "/", Some(user), password).into(),
            );
            if let Some(i) = master
                .get("master-update-interval")
                .and_then(Value::as_str)
                .and_then(|i| i.parse::<i64>().ok())
                .filter(|i| *i > 0)
            {
                m.insert("interval-secs".into(), i.into());
            }
            out.insert("master".into(), Value::Table(m));
        }
        for (key, table) in [
            ("server", std::mem::take(&mut self.server)),
            ("auth", std::mem::take(&mut self.auth)),
            ("mount-defaults", std::mem::take(&mut self.defaults)),
        ] {
            if !table.is_empty() {
                out.insert(key.into(), Value::Table(table));
            }
        }
        if !self.mounts.is_empty() {
            out.insert("mount".into(), Value::Array(self.mounts));
        }
        if !self.relays.is_empty() {
            out.insert("relay".into(), Value::Array(self.relays));
        }
        self.notes.sort_by_key(|n| n.line);
        Imported {
            toml: toml::to_string_pretty(&out).unwrap_or_default(),
            notes: self.notes,
        }
    }
}

/// `url` with `user:password@` (percent-encoded) after its scheme, when both are given and
/// it has no credentials yet.
fn with_credentials(url: &str, user: Option<&str>, password: Option<&str>) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    match (url.split_once("://"), user, password) {
        (Some((scheme, rest)), Some(u), Some(p))
            if !rest.split('/').next().unwrap_or("").contains('@') =>
        {
            format!("{scheme}://{}:{}@{rest}", enc(u), enc(p))
        }
        _ => url.to_string(),
    }
}

/// `http://[user:password@]host:port/mount`, the user and password percent-encoded; as
/// icecast2, credentials only with both a user and a password.
fn url(host: &str, port: i64, mount: &str, user: Option<&str>, password: Option<&str>) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let userinfo = match (user, password) {
        (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
        _ => String::new(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mount = if mount.starts_with('/') {
        mount.to_string()
    } else {
        format!("/{mount}")
    };
    format!("http://{userinfo}{host}:{port}{mount}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<icecast>
  <location>Hall A</location>
  <admin>av@example.org</admin>
  <hostname>stream.example.org</hostname>
  <limits>
    <clients>5000</clients>
    <sources>4</sources>
    <queue-size>1048576</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-size>65536</burst-size>
  </limits>
  <authentication>
    <source-password>hackme</source-password>
    <relay-user>edge</relay-user>
    <relay-password>r3lay:p@ss</relay-password>
    <admin-user>root</admin-user>
    <admin-password>adm1n</admin-password>
  </authentication>
  <listen-socket><port>8000</port></listen-socket>
  <listen-socket><port>8443</port><bind-address>127.0.0.1</bind-address><ssl>1</ssl></listen-socket>
  <mount type="normal">
    <mount-name>/live.ogg</mount-name>
    <password>m0unt</password>
    <max-listeners>300</max-listeners>
    <fallback-mount>/standby.ogg</fallback-mount>
    <stream-name>Keynote</stream-name>
  </mount>
  <mount><mount-name>/members.ogg</mount-name>
    <authentication type="htpasswd"><option name="filename" value="/etc/icecast2/members"/>
      <option name="allow_duplicate_users" value="0"/></authentication></mount>
  <mount><mount-name>/paid.ogg</mount-name>
    <authentication type="url">
      <option name="listener_add" value="http://auth.example.org/add.php"/>
      <option name="listener_remove" value="http://auth.example.org/remove.php"/>
      <option name="username" value="ice"/><option name="password" value="p@ss"/>
      <option name="auth_header" value="icecast-auth-user: 1"/>
    </authentication></mount>
  <mount type="normal">
    <mount-name>/hall-b.ogg</mount-name>
    <fallback-mount>/standby.ogg</fallback-mount>
    <fallback-override>1</fallback-override>
    <fallback-when-full>1</fallback-when-full>
  </mount>
  <mount type="default"><burst-size>32768</burst-size><fallback-mount>/x.ogg</fallback-mount></mount>
  <relay><server>origin.example.org</server><port>8000</port><mount>/a.mp3</mount>
    <local-mount>/b.mp3</local-mount><on-demand>1</on-demand></relay>
  <master-server>master.example.org</master-server>
  <master-server-port>8001</master-server-port>
  <master-update-interval>30</master-update-interval>
  <master-password>s3cret</master-password>
  <paths><logdir>/var/log/icecast2</logdir><ssl-certificate>/etc/icecast2/bundle.pem</ssl-certificate>
    <webroot>/usr/share/icecast2/web</webroot></paths>
  <logging><accesslog>access.log</accesslog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot></security>
</icecast>"#;

    #[test]
    fn every_element_is_mapped_or_noted() {
        let out = convert(SAMPLE).expect("converts");
        let t: Table = out.toml.parse().expect("TOML");
        let s = &t["server"];
        assert_eq!(s["max-listeners"].as_integer(), Some(5000));
        assert_eq!(s["hostname"].as_str(), Some("stream.example.org"));
        assert_eq!(
            s["listen"].as_array().map(Vec::len),
            Some(2),
            "both families: {}",
            out.toml
        );
        assert_eq!(
            s["access-log"].as_str(),
            Some("/var/log/icecast2/access.log")
        );
        assert_eq!(s["tls"][0]["listen"][0].as_str(), Some("127.0.0.1:8443"));
        assert_eq!(
            s["tls"][0]["key"].as_str(),
            Some("/etc/icecast2/bundle.pem")
        );
        assert!(t["auth"].get("source-password").is_none(), "{}", out.toml);
        assert_eq!(t["auth"]["admin-user"].as_str(), Some("root"));
        assert_eq!(t["mount-defaults"]["burst-size"].as_integer(), Some(32768));
        assert_eq!(
            t["mount-defaults"]["queue-size"].as_integer(),
            Some(1048576)
        );
        assert_eq!(t["mount"][0]["path"].as_str(), Some("/live.ogg"));
        assert_eq!(t["mount"][0]["max-listeners"].as_integer(), Some(300));
        // Fallbacks: Icecast's listeners stay on the fallback unless it says otherwise.
        assert_eq!(t["mount"][0]["fallback"].as_str(), Some("/standby.ogg"));
        assert_eq!(t["mount"][0]["fallback-override"].as_bool(), Some(false));
        assert_eq!(t["mount"][3]["fallback"].as_str(), Some("/standby.ogg"));
        assert_eq!(t["mount"][3]["fallback-override"].as_bool(), Some(true));
        assert_eq!(t["mount"][3]["fallback-when-full"].as_bool(), Some(true));
        assert!(t["mount-defaults"].get("fallback").is_none());
        assert_eq!(
            t["relay"][0]["upstream"].as_str(),
            Some("http://origin.example.org:8000/a.mp3")
        );
        assert_eq!(t["relay"][0]["on-demand"].as_bool(), Some(true));
        assert_eq!(
            t["master"]["url"].as_str(),
            Some("http://relay:s3cret@master.example.org:8001/")
        );
        // Listener authentication: the file (with a note: Icecast's are MD5) and the URL.
        assert_eq!(
            t["mount"][1]["listener-htpasswd"].as_str(),
            Some("/etc/icecast2/members")
        );
        assert_eq!(
            t["mount"][2]["listener-auth-url"].as_str(),
            Some("http://ice:p%40ss@auth.example.org/add.php")
        );
        assert_eq!(
            t["mount"][2]["listener-remove-url"].as_str(),
            Some("http://ice:p%40ss@auth.example.org/remove.php")
        );
        let why = |e: &str| {
            out.notes
                .iter()
                .filter(|n| n.element == e)
                .map(|n| n.why.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        assert!(
            why("mount/authentication").contains("MD5"),
            "{:?}",
            out.notes
        );
        assert!(why("mount/authentication/option").contains("allow_duplicate_users"));
        assert!(!why("mount/authentication/option").contains("listener_remove"));
        assert!(!why("mount/authentication/option").contains("auth_header"));
        let noted: Vec<&str> = out.notes.iter().map(|n| n.element.as_str()).collect();
        for e in [
            "limits/client-timeout",
            "authentication/source-password",
            "paths/webroot",
            "logging/loglevel",
            "security",
        ] {
            assert!(noted.contains(&e), "{e} not noted: {noted:?}");
        }
        // Each note names its line (the default mount's fallback, which Agora sets per mount).
        let fallback = out
            .notes
            .iter()
            .find(|n| n.element == "mount/fallback-mount")
            .expect("note");
        assert_eq!(fallback.line, 46);
    }

    #[test]
    fn credentials_in_urls_are_encoded_and_bad_input_is_refused() {
        assert_eq!(
            url("h", 8000, "x.ogg", Some("us er"), Some("p@ss:w/rd")),
            "http://us%20er:p%40ss%3Aw%2Frd@h:8000/x.ogg"
        );
        assert_eq!(url("::1", 80, "/m", None, None), "http://[::1]:80/m");
        assert!(matches!(convert("<x/>"), Err(ImportError::NotIcecast(_))));
        assert!(matches!(convert("<icecast>"), Err(ImportError::Xml(_))));
    }
}
