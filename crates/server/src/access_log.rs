//! The access log in Combined Log Format (what log analysers read), one line per finished
//! request; listener lines carry the connected seconds at the end, as Icecast's do.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::http::Request;

/// Where access lines go: a file, standard output, or nowhere.
pub struct AccessLog {
    out: Option<Mutex<Box<dyn Write + Send>>>,
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
    pub fn open(path: Option<&str>) -> std::io::Result<AccessLog> {
        let out: Option<Box<dyn Write + Send>> = match path {
            None => None,
            Some("-") => Some(Box::new(std::io::LineWriter::new(std::io::stdout()))),
            Some(p) => Some(Box::new(std::io::LineWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ))),
        };
        Ok(AccessLog {
            out: out.map(Mutex::new),
        })
    }

    pub fn log(&self, peer: SocketAddr, req: &Request, code: u16, bytes: u64) {
        let line = format!("{} {}", req.method, req.target.replace('"', "%22"));
        self.write(peer, &line, &req.version, req, code, bytes, None);
    }

    pub fn log_listener(
        &self,
        peer: SocketAddr,
        req: &Request,
        code: u16,
        bytes: u64,
        d: Duration,
    ) {
        let line = format!("{} {}", req.method, req.target.replace('"', "%22"));
        self.write(peer, &line, &req.version, req, code, bytes, Some(d));
    }

    /// A line for a request that could not be parsed.
    pub fn log_raw(
        &self,
        peer: SocketAddr,
        line: &str,
        code: u16,
        bytes: u64,
        referer: &str,
        agent: &str,
    ) {
        if let Some(out) = &self.out {
            let ts = clf_time(SystemTime::now());
            let _ = writeln!(
                out.lock(),
                "{} - - [{ts}] \"{line}\" {code} {bytes} \"{referer}\" \"{agent}\"",
                peer.ip()
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        peer: SocketAddr,
        line: &str,
        version: &str,
        req: &Request,
        code: u16,
        bytes: u64,
        d: Option<Duration>,
    ) {
        let Some(out) = &self.out else { return };
        let clean = |s: Option<&str>| -> String {
            s.unwrap_or("-")
                .chars()
                .map(|c| if c == '"' || c.is_control() { '_' } else { c })
                .collect()
        };
        let user = req
            .header("authorization")
            .and_then(crate::auth::parse_basic)
            .map(|(u, _)| clean(Some(&u)))
            .unwrap_or_else(|| "-".into());
        let ts = clf_time(SystemTime::now());
        let tail = d.map(|d| format!(" {}", d.as_secs())).unwrap_or_default();
        let _ = writeln!(
            out.lock(),
            "{} - {user} [{ts}] \"{line} {version}\" {code} {bytes} \"{}\" \"{}\"{tail}",
            peer.ip(),
            clean(req.header("referer")),
            clean(req.header("user-agent")),
        );
    }
}

fn clf_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let f = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    t.format(&f).unwrap_or_default()
}
