//! The access log in Combined Log Format (what log analysers read), one line per finished
//! request; listener lines carry the connected seconds at the end, as Icecast's do. A line is
//! written when its request ends (its status and bytes are known then) but stamped with the
//! time the request was received, as the format wants: a listener who stayed an hour is
//! stamped with the moment it came, and its line adds the hour.
//!
//! Every finished request passes here, log on or off, so this is also where the
//! `agora_http_requests_total{code}` metric is counted.
//!
//! Every field a client chose (the request line, the user, the referer, the user agent) is
//! escaped as Apache escapes it, which is what log analysers expect: `"` and `\` with a
//! backslash, every byte outside printable ASCII as `\xhh` (`\n`, `\r`, `\t` by name), and a
//! space too in the unquoted user field. So a line is one line, its quoted fields end where
//! they seem to, and no control character reaches a terminal.
//!
//! **Invariant:** logging never blocks the runtime. Lines go through a bounded queue to a
//! thread of their own that does the writing; a full disk, a slow NFS mount or a stalled
//! terminal on standard output holds up that thread only, and lines beyond the queue are
//! dropped and counted (a warning says how many).

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::telemetry::metrics::StatusLabels;
use crate::wire::http::Request;

/// Lines the writer thread may fall behind before new ones are dropped.
const QUEUE_LINES: usize = 8192;

/// Where access lines go: a file, standard output, or nowhere.
pub(crate) struct AccessLog {
    out: Option<Writer>,
    requests: Family<StatusLabels, Counter>,
}

/// The sending end of the writer thread.
struct Writer {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn spawn(out: Box<dyn Write + Send>) -> std::io::Result<Writer> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(out, rx, &counted))?;
        Ok(Writer { tx, dropped })
    }

    fn send(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread: write what is queued, flush when the queue is empty, until the log is
/// dropped.
fn write_lines(out: Box<dyn Write + Send>, rx: Receiver<String>, dropped: &AtomicU64) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
        let n = dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                lines = n,
                "access log lines dropped: the log could not keep up"
            );
        }
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.out.is_some())
            .finish()
    }
}

impl AccessLog {
    /// `None`: no access log; `Some("-")`: standard output; else a file, appended to.
    pub(crate) fn open(
        path: Option<&str>,
        requests: Family<StatusLabels, Counter>,
    ) -> std::io::Result<AccessLog> {
        let out: Option<Box<dyn Write + Send>> = match path {
            None => None,
            Some("-") => Some(Box::new(std::io::stdout())),
            Some(p) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
        };
        Ok(AccessLog {
            out: out.map(Writer::spawn).transpose()?,
            requests,
        })
    }

    fn count(&self, code: u16) {
        self.requests
            .get_or_create(&vec![("code", code.to_string())])
            .inc();
    }

    pub(crate) fn log(&self, peer: SocketAddr, req: &Request, code: u16, bytes: u64) {
        self.count(code);
        let line = format!("{} {}", req.method, req.target.replace('"', "%22"));
        self.write(peer, &line, &req.version, req, code, bytes);
    }

    /// The parts of a listener's line known at its start, kept (only when the log is on) for
    /// [`AccessLog::log_listener`] at its end, so the request itself can be dropped while the
    /// listener streams.
    pub(crate) fn listener_entry(&self, peer: SocketAddr, req: &Request) -> Option<Entry> {
        self.out.as_ref()?;
        let line = format!("{} {}", req.method, req.target.replace('"', "%22"));
        Some(Entry(
            self.render(peer, &line, &req.version, req).into_boxed_str(),
        ))
    }

    /// A listener's line, written when it leaves (stamped with its request's arrival), with
    /// its connected seconds at the end.
    pub(crate) fn log_listener(&self, entry: Option<&Entry>, code: u16, bytes: u64, d: Duration) {
        self.count(code);
        let (Some(out), Some(Entry(e))) = (&self.out, entry) else {
            return;
        };
        let (who, rest) = e.split_once('\u{0}').unwrap_or((e, ""));
        let (request, tail) = rest.split_once('\u{0}').unwrap_or((rest, ""));
        out.send(format!(
            "{who} {request} {code} {bytes} {tail} {}\n",
            d.as_secs()
        ));
    }

    /// A line for a request that could not be parsed.
    pub(crate) fn log_raw(
        &self,
        peer: SocketAddr,
        line: &str,
        code: u16,
        bytes: u64,
        referer: &str,
        agent: &str,
    ) {
        self.count(code);
        if let Some(out) = &self.out {
            let ts = clf_time(SystemTime::now());
            out.send(format!(
                "{} - - [{ts}] \"{}\" {code} {bytes} \"{}\" \"{}\"\n",
                peer.ip(),
                escaped(line, false),
                escaped(referer, false),
                escaped(agent, false),
            ));
        }
    }

    fn write(
        &self,
        peer: SocketAddr,
        line: &str,
        version: &str,
        req: &Request,
        code: u16,
        bytes: u64,
    ) {
        let Some(out) = &self.out else { return };
        let e = self.render(peer, line, version, req);
        let mut parts = e.split('\u{0}');
        let (who, request, tail) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        out.send(format!("{who} {request} {code} {bytes} {tail}\n"));
    }

    /// `ip - user [time received]`, `"line version"` and `"referer" "agent"`, separated by
    /// NULs (which the escaping keeps out of every part).
    fn render(&self, peer: SocketAddr, line: &str, version: &str, req: &Request) -> String {
        let user = req
            .header("authorization")
            .and_then(crate::wire::auth::parse_basic)
            .map(|(u, _)| escaped(&u, true))
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "-".into());
        let field = |s: Option<&str>| escaped(s.unwrap_or("-"), false);
        format!(
            "{} - {user} [{}]\u{0}\"{} {}\"\u{0}\"{}\" \"{}\"",
            peer.ip(),
            clf_time(req.received),
            field(Some(line)),
            field(Some(version)),
            field(req.header("referer")),
            field(req.header("user-agent")),
        )
    }
}

/// `s` escaped as Apache's `ap_escape_logitem` does (see the module doc); `space`: a space too,
/// for a field that is not quoted.
fn escaped(s: &str, space: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b' ' if space => out.push_str("\\x20"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// A listener's access line as known at its start (see [`AccessLog::listener_entry`]).
#[derive(Debug)]
pub(crate) struct Entry(Box<str>);

fn clf_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let f = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client chose is escaped as Apache escapes it: one line, quoted fields that end
    /// where they seem to, no control character.
    #[test]
    fn fields_a_client_chose_are_escaped_as_apache_does() {
        let user = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "a b\x1b:pw");
        // Built by hand: `parse_head` refuses control characters in the request line, but
        // the escaping does not count on it.
        let req = Request {
            method: "GET".into(),
            target: "/x\x1b[2J\"y\\z\r".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Authorization".into(), format!("Basic {user}")),
                ("Referer".into(), "http://r/\"q\"".into()),
                ("User-Agent".into(), "ua\\\"\t\u{9b}x".into()),
            ],
            secure: false,
            received: SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 + 3_723),
        };
        let log = AccessLog::open(None, Family::default()).expect("log");
        let peer: SocketAddr = "192.0.2.1:5000".parse().expect("peer");
        let line = format!("{} {}", req.method, req.target.replace('"', "%22"));
        let e = log.render(peer, &line, &req.version, &req);
        assert_eq!(
            e,
            "192.0.2.1 - a\\x20b\\x1b [02/Jan/1970:01:02:03 +0000]\u{0}\"GET /x\\x1b[2J%22y\\\\z\\r HTTP/1.1\"\u{0}\"http://r/\\\"q\\\"\" \"ua\\\\\\\"\\t\\xc2\\x9bx\""
        );
    }
}
