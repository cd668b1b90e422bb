//! WebM framing on arbitrary bytes, fed in data-derived pieces: no panic, polling until
//! `Ok(None)` or a fatal error; events do not depend on how the input was cut; headers start
//! with the EBML magic, sync chunks with a Cluster ID; nothing is invented.
#![no_main]

use agora_format::webm::WebmFramer;
use agora_format::{Event, FormatError, Framer};
use libfuzzer_sys::fuzz_target;

const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
const CLUSTER: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];

/// Piece sizes cycle through values taken from the first bytes of the input.
fn pieces(data: &[u8]) -> Vec<&[u8]> {
    let sizes: Vec<usize> = data
        .iter()
        .take(3)
        .map(|&b| 1 + usize::from(b) * 13)
        .collect();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
        i += 1;
    }
    out
}

/// Events and errors, in order, up to the first fatal error.
fn run(pieces: &[&[u8]]) -> Vec<Result<Event, FormatError>> {
    let mut f = WebmFramer::new();
    let mut out = Vec::new();
    'feed: for piece in pieces {
        f.push(piece);
        loop {
            match f.poll() {
                Ok(Some(ev)) => out.push(Ok(ev)),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        // A fatal error sticks, and the framer takes no more input.
                        f.push(b"\x1a\x45\xdf\xa3");
                        assert!(f.poll().is_err());
                        assert!(f.flush().is_none());
                        break 'feed;
                    }
                }
            }
        }
        let _ = f.info();
    }
    if let Some(ev) = f.flush() {
        out.push(Ok(ev));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    let split = run(&pieces(data));
    assert!(whole == split, "output depends on the split");

    let mut relayed = 0;
    let mut skipped = 0;
    for ev in &whole {
        match ev {
            Ok(Event::Headers(h)) => {
                assert!(h.starts_with(&EBML_MAGIC));
                relayed += h.len();
            }
            Ok(Event::Chunk(c)) => {
                assert!(!c.bytes.is_empty());
                if c.sync {
                    assert!(c.bytes.starts_with(&CLUSTER));
                }
                relayed += c.bytes.len();
            }
            Err(FormatError::Garbage { skipped: n, .. }) => skipped += n,
            Err(e) => assert!(e.is_fatal(), "{e}"),
        }
    }
    assert!(relayed + skipped <= data.len());
});
