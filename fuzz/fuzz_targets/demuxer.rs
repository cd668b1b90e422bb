//! The whole `Demuxer` (sniffing, then whichever framer the bytes select) on arbitrary bytes
//! fed in data-derived pieces: no panic, polling until `Ok(None)` or a fatal error.
#![no_main]

use agora_format::Demuxer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the piece sizes.
    let a = 1 + usize::from(data.first().copied().unwrap_or(0)) * 31;
    let b = 1 + usize::from(data.get(1).copied().unwrap_or(0));
    let mut d = Demuxer::new();
    let mut rest = data;
    let mut i = 0;
    'feed: while !rest.is_empty() {
        let n = if i % 2 == 0 { a } else { b }.min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        i += 1;
        d.push(piece);
        loop {
            match d.poll() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if e.is_fatal() => break 'feed,
                Err(_) => {}
            }
        }
        let _ = d.info();
        let _ = d.format();
    }
    let _ = d.finish();
});
