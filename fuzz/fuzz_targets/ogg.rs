//! Ogg framing on arbitrary bytes, fed in data-derived pieces: no panic; events do not depend
//! on how the input was cut; everything relayed is whole pages found in the input, in order;
//! headers and sync chunks start with a page that begins a packet; errors are accounted for.
#![no_main]

use agora_format::ogg::OggFramer;
use agora_format::{Event, FormatError, Framer};
use libfuzzer_sys::fuzz_target;

/// Piece sizes cycle through values taken from the first bytes of the input.
fn pieces(data: &[u8]) -> Vec<&[u8]> {
    let sizes: Vec<usize> = data
        .iter()
        .take(3)
        .map(|&b| 1 + usize::from(b) * 17)
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

fn run(pieces: &[&[u8]]) -> Vec<Result<Event, FormatError>> {
    let mut f = OggFramer::new();
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
                        f.push(b"OggS");
                        assert!(f.poll().is_err(), "a fatal error sticks");
                        assert!(f.flush().is_none());
                        break 'feed;
                    }
                }
            }
        }
        let _ = f.info();
        let _ = f.dense_sync();
    }
    if let Some(ev) = f.flush() {
        out.push(Ok(ev));
    }
    out
}

/// Splits relayed bytes into pages; panics if they are not whole pages.
fn pages(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 27 && &b[..4] == b"OggS", "relayed bytes are whole pages");
        let n = usize::from(b[26]);
        let len = 27 + n + b[27..27 + n].iter().map(|&l| usize::from(l)).sum::<usize>();
        out.push(&b[..len]);
        b = &b[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    let split = run(&pieces(data));
    assert!(whole == split, "output depends on the split");

    let mut pos = 0;
    for ev in &whole {
        let bytes = match ev {
            Ok(Event::Headers(h)) => h,
            Ok(Event::Chunk(c)) => {
                if c.sync {
                    assert_eq!(c.bytes[5] & 1, 0, "a sync page begins a packet");
                }
                &c.bytes
            }
            Err(_) => continue,
        };
        assert!(!bytes.is_empty());
        for page in pages(bytes) {
            let found = data[pos..]
                .windows(page.len())
                .position(|w| w == page)
                .expect("relayed pages come from the input, in order");
            pos += found + page.len();
        }
    }
});
