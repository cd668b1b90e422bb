//! In-band Ogg titles on arbitrary bytes: the Ogg framer's output goes through a `Retitler`,
//! with titles set at data-derived points. No panic; everything it gives back is whole pages
//! with valid checksums (the framer skips its CRC check under `cfg(fuzzing)`, so a page passed
//! through unchanged may carry the input's bad one); before the first title, data passes
//! unchanged.
#![no_main]

use agora_format::crc::ogg_page_crc;
use agora_format::ogg::OggFramer;
use agora_format::ogg_title::Retitler;
use agora_format::{Event, Framer};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Checks that `b` is a run of whole Ogg pages, each with a correct CRC or found as it is in
/// `input`.
fn check_pages(mut b: &[u8], input: &[u8]) {
    while !b.is_empty() {
        assert!(b.len() >= 27 && &b[..4] == b"OggS", "whole pages out");
        let n = usize::from(b[26]);
        assert!(b.len() >= 27 + n, "whole lacing table");
        let len = 27 + n + b[27..27 + n].iter().map(|&l| usize::from(l)).sum::<usize>();
        assert!(b.len() >= len, "whole page body");
        let page = &b[..len];
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        assert!(
            ogg_page_crc(page) == stored || input.windows(len).any(|w| w == page),
            "a valid checksum on every page written"
        );
        b = &b[len..];
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks how often a title is set (every k-th chunk).
    let Some((&k, stream)) = data.split_first() else {
        return;
    };
    let every = usize::from(k % 7) + 1;
    let mut framer = OggFramer::new();
    framer.push(stream);
    let mut titles = Retitler::new();
    let mut retitled = false;
    let mut chunks = 0usize;
    loop {
        match framer.poll() {
            Ok(Some(Event::Headers(h))) => {
                if titles.headers(&h).is_ok() {
                    assert!(titles.ready());
                }
            }
            Ok(Some(Event::Chunk(c))) => {
                chunks += 1;
                if titles.ready() && chunks % every == 0 {
                    let title = String::from_utf8_lossy(&stream[..stream.len().min(chunks)]);
                    if let Some(Ok((eos, headers))) = titles.retitle(&title) {
                        check_pages(&eos, &[]);
                        check_pages(&headers, &[]);
                        retitled = true;
                    }
                }
                let before: Bytes = c.bytes.clone();
                let out = titles.data(c.bytes);
                if !retitled {
                    assert_eq!(out, before, "unchanged until a title is set");
                }
                check_pages(&out, &before);
            }
            Ok(None) => break,
            Err(e) if e.is_fatal() => break,
            Err(_) => {}
        }
    }
});
