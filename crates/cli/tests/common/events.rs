//! `/events` read by a thread: every `event: slide` frame (slides uploaded, deck pages
//! stepped), for the tests of slides and decks.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{read_head, request, wait_until};

/// Every `event: slide` frame's data since [`SlideEvents::open`], in order.
pub(crate) struct SlideEvents(Arc<Mutex<Vec<serde_json::Value>>>);

impl SlideEvents {
    pub(crate) fn open(addr: SocketAddr) -> SlideEvents {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(request("GET", "/events", &[]).as_bytes())
            .expect("send");
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        std::thread::spawn(move || {
            let mut event = String::new();
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ")
                    && event == "slide"
                {
                    let v = serde_json::from_str(d).expect("slide event JSON");
                    out.lock().expect("events").push(v);
                }
            }
        });
        SlideEvents(seen)
    }

    pub(crate) fn all(&self) -> Vec<serde_json::Value> {
        self.0.lock().expect("events").clone()
    }

    /// Wait for the first slide event that `matches` (`what` names it if none comes).
    pub(crate) fn wait(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        wait_until(
            &format!("event: slide {what}"),
            Duration::from_secs(20),
            || {
                found = self.all().into_iter().find(|e| matches(e));
                found.is_some()
            },
        );
        found.expect("found")
    }
}
