//! A listener authentication URL for tests: an HTTP endpoint that records the forms POSTed to
//! it (Icecast's url authentication, from Agora or icecast2) and answers per action.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use super::read_head;

/// A form, decoded: its fields in order.
pub(crate) type Form = Vec<(String, String)>;

/// One request the hook received.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The request's path (`/auth`, `/remove`...).
    pub(crate) path: String,
    /// Its `Authorization` header, if any.
    pub(crate) authorization: Option<String>,
    pub(crate) form: Form,
}

impl Call {
    /// The form's field `k` (empty when absent).
    pub(crate) fn field(&self, k: &str) -> &str {
        field(&self.form, k)
    }

    /// The form's field names, in order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.form.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// A form's field `k` (empty when absent).
pub(crate) fn field<'a>(form: &'a Form, k: &str) -> &'a str {
    form.iter()
        .find(|(n, _)| n == k)
        .map_or("", |(_, v)| v.as_str())
}

/// What the test's authentication URL saw and how it answers. `listener_add`: it lets in
/// `alice` with password `wonderland`; `timed` (any password) with `icecast-auth-timelimit: 3`;
/// `weird` with `icecast-auth-timelimit: soon`; never answers user `slow`; refuses everyone
/// else. `listener_remove`: answers `200` at once, but never on the path `/remove-silent`.
pub(crate) struct Hook {
    pub(crate) addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Connections it does not answer, kept open until the hook is dropped.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hook {
    pub(crate) fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (c, h) = (calls.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (c, h) = (c.clone(), h.clone());
                std::thread::spawn(move || Hook::answer(conn, &c, &h));
            }
        });
        Hook {
            addr,
            calls,
            _held: held,
        }
    }

    fn answer(mut conn: TcpStream, calls: &Mutex<Vec<Call>>, held: &Mutex<Vec<TcpStream>>) {
        let head = read_head(&mut conn);
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).expect("form body");
        let path = head
            .strip_prefix("POST ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("not a POST: {head}"))
            .to_string();
        assert!(
            header("content-type").as_deref() == Some("application/x-www-form-urlencoded"),
            "{head}"
        );
        let form = form_decode(&String::from_utf8_lossy(&body));
        let (action, user) = (
            field(&form, "action").to_string(),
            field(&form, "user").to_string(),
        );
        let pass = field(&form, "pass").to_string();
        calls.lock().expect("calls").push(Call {
            path: path.clone(),
            authorization: header("authorization"),
            form,
        });
        let granted = "HTTP/1.1 200 OK\r\nicecast-auth-user: 1\r\nContent-Length: 0\r\n";
        let answer = match (action.as_str(), user.as_str()) {
            ("listener_remove", _) if path == "/remove-silent" => {
                held.lock().expect("held").push(conn);
                return;
            }
            ("listener_remove", _) => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
            (_, "alice") if pass == "wonderland" => format!("{granted}\r\n"),
            (_, "timed") => format!("{granted}icecast-auth-timelimit: 3\r\n\r\n"),
            (_, "weird") => format!("{granted}icecast-auth-timelimit: soon\r\n\r\n"),
            (_, "slow") => {
                held.lock().expect("held").push(conn);
                return;
            }
            _ => "HTTP/1.1 200 OK\r\nicecast-auth-user: 0\r\nicecast-auth-message: not on the list\r\nContent-Length: 0\r\n\r\n".to_string(),
        };
        let _ = conn.write_all(answer.as_bytes());
    }

    /// Every request so far, in order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// The forms of every request so far, in order.
    pub(crate) fn forms(&self) -> Vec<Form> {
        self.calls().into_iter().map(|c| c.form).collect()
    }

    /// The requests whose form's `action` is `action`.
    pub(crate) fn of(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.field("action") == action)
            .collect()
    }
}

/// `application/x-www-form-urlencoded` to pairs, in order.
pub(crate) fn form_decode(s: &str) -> Form {
    let decode = |v: &str| {
        let b = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8")
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
