//! What the fuzz targets check, as plain functions: `fuzz/fuzz_targets/*.rs` call them on the
//! fuzzer's inputs, and the test suite (`tests/fuzz_corpus.rs`) replays the committed corpora
//! (`fuzz/corpus/<target>/`) through them, so a seed that once found a bug keeps being run by
//! `cargo test` too.
//!
//! Not part of the crate's API (hidden from its documentation): each function takes arbitrary
//! bytes and panics when a property does not hold. Under `cfg(fuzzing)` the Ogg framer skips
//! its CRC check (see [`crate::ogg`]); in the test suite it does not, so the same input may
//! reach less deep there, and every property below holds either way.

use bytes::Bytes;

use crate::crc::ogg_page_crc;
use crate::detect::sniff;
use crate::mpeg::{Kind, MpegFramer, frame_header};
use crate::ogg::{OggFramer, PageLen, page_len};
use crate::ogg_title::Retitler;
use crate::webm::WebmFramer;
use crate::{Demuxer, Event, FormatError, Framer};

/// Cuts `data` into pieces whose sizes cycle through `1 + b * step` for the first three bytes
/// `b` of the input (the fuzzer picks the split along with the bytes).
fn pieces(data: &[u8], step: usize) -> Vec<&[u8]> {
    let sizes: Vec<usize> = data
        .iter()
        .take(3)
        .map(|&b| 1 + usize::from(b) * step)
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

/// Feeds `pieces` to `f`, polling after each push until `Ok(None)`; events and errors in order,
/// up to the first fatal error, after which the framer must refuse anything more (`probe` is
/// pushed to check that). Then the end of the stream.
fn run(
    mut f: impl Framer,
    pieces: &[&[u8]],
    probe: &[u8],
    each_push: impl Fn(&dyn Framer),
) -> Vec<Result<Event, FormatError>> {
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
                        f.push(probe);
                        assert!(f.poll().is_err(), "a fatal error sticks");
                        assert!(f.flush().is_none());
                        break 'feed;
                    }
                }
            }
        }
        each_push(&f);
    }
    if let Some(ev) = f.flush() {
        out.push(Ok(ev));
    }
    out
}

/// Splits bytes the framer relayed into pages; panics if they are not whole pages.
fn ogg_pages(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let PageLen::Page(len) = page_len(b) else {
            panic!("relayed bytes are whole pages: {:?}", page_len(b));
        };
        out.push(&b[..len]);
        b = &b[len..];
    }
    out
}

/// The `ogg` target. Ogg framing on arbitrary bytes, fed in data-derived pieces: no panic;
/// events do not depend on how the input was cut; everything relayed is whole pages found in
/// the input, in order; sync chunks start with a page that begins a packet.
pub fn ogg(data: &[u8]) {
    let each_push = |f: &dyn Framer| {
        let _ = f.info();
        let _ = f.dense_sync();
    };
    let whole = run(OggFramer::new(), &[data], b"OggS", each_push);
    let split = run(OggFramer::new(), &pieces(data, 17), b"OggS", each_push);
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
        for page in ogg_pages(bytes) {
            let found = data[pos..]
                .windows(page.len())
                .position(|w| w == page)
                .expect("relayed pages come from the input, in order");
            pos += found + page.len();
        }
    }
}

/// The `webm` target. WebM framing on arbitrary bytes, fed in data-derived pieces: no panic;
/// events do not depend on how the input was cut; headers start with the EBML magic, sync
/// chunks with a Cluster ID; errors other than skipped garbage are fatal; nothing is invented.
pub fn webm(data: &[u8]) {
    const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
    const CLUSTER: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];
    let each_push = |f: &dyn Framer| {
        let _ = f.info();
    };
    let whole = run(WebmFramer::new(), &[data], &EBML_MAGIC, each_push);
    let split = run(WebmFramer::new(), &pieces(data, 13), &EBML_MAGIC, each_push);
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
}

/// One MPEG framing run: bytes relayed and bytes reported skipped. Every frame chunk is one
/// valid frame; no headers, no error but garbage, nothing left at the end.
fn mpeg_run(kind: Kind, pieces: &[&[u8]]) -> (Vec<u8>, usize) {
    let mut f = MpegFramer::new(kind);
    let mut out = Vec::new();
    let mut skipped = 0;
    for piece in pieces {
        f.push(piece);
        loop {
            match f.poll() {
                Ok(Some(Event::Chunk(c))) => {
                    if c.sync {
                        let h = frame_header(kind, &c.bytes).expect("a frame chunk has a header");
                        assert_eq!(h.frame_len, c.bytes.len());
                    }
                    out.extend_from_slice(&c.bytes);
                }
                Ok(Some(Event::Headers(_))) => panic!("MPEG streams have no headers"),
                Ok(None) => break,
                Err(FormatError::Garbage { skipped: n, .. }) => skipped += n,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }
    assert!(f.flush().is_none());
    let _ = f.info();
    (out, skipped)
}

/// The `mpeg` target. MPEG audio / ADTS framing and format sniffing on arbitrary bytes, fed in
/// data-derived pieces: no panic, every frame chunk is one valid frame, nothing is invented,
/// and the bytes relayed do not depend on how the input was cut.
pub fn mpeg(data: &[u8]) {
    let cut = pieces(data, 13);
    for piece in &cut {
        let _ = sniff(piece);
    }
    let _ = sniff(data);
    for kind in [Kind::Mp3, Kind::Adts] {
        let (whole, skipped) = mpeg_run(kind, &[data]);
        assert!(whole.len() + skipped <= data.len());
        let (split, _) = mpeg_run(kind, &cut);
        assert!(whole == split, "output depends on the split");
    }
}

/// The `demuxer` target. The whole `Demuxer` (sniffing, then whichever framer the bytes
/// select) on arbitrary bytes fed in data-derived pieces: no panic, polling until `Ok(None)` or
/// a fatal error.
pub fn demuxer(data: &[u8]) {
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
}

/// Checks that `b` is a run of whole Ogg pages, each with a correct CRC or found as it is in
/// `input`.
fn check_title_pages(mut b: &[u8], input: &[u8]) {
    while !b.is_empty() {
        let len = match page_len(b) {
            PageLen::Page(len) => len,
            PageLen::NotAPage => panic!("whole pages out"),
            PageLen::Incomplete { len: None } => panic!("whole lacing table"),
            PageLen::Incomplete { len: Some(_) } => panic!("whole page body"),
        };
        let page = &b[..len];
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        assert!(
            ogg_page_crc(page) == stored || input.windows(len).any(|w| w == page),
            "a valid checksum on every page written"
        );
        b = &b[len..];
    }
}

/// The `ogg_title` target. In-band Ogg titles on arbitrary bytes: the Ogg framer's output
/// goes through a `Retitler`, with titles set at data-derived points (the first byte picks how
/// often). No panic; everything it gives back is whole pages with valid checksums (under
/// `cfg(fuzzing)` the framer skips its CRC check, so a page passed through unchanged may carry
/// the input's bad one); before the first title, data passes unchanged.
pub fn ogg_title(data: &[u8]) {
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
                if titles.ready() && chunks.is_multiple_of(every) {
                    let title = String::from_utf8_lossy(&stream[..stream.len().min(chunks)]);
                    if let Some(Ok((eos, headers))) = titles.retitle(&title) {
                        check_title_pages(&eos, &[]);
                        check_title_pages(&headers, &[]);
                        retitled = true;
                    }
                }
                let before: Bytes = c.bytes.clone();
                let out = titles.data(c.bytes);
                if !retitled {
                    assert_eq!(out, before, "unchanged until a title is set");
                }
                check_title_pages(&out, &before);
            }
            Ok(None) => break,
            Err(e) if e.is_fatal() => break,
            Err(_) => {}
        }
    }
}

/// The comment-title reader on arbitrary bytes, whole and in every prefix the fuzzer's first
/// byte picks: no panic, and a title is text found in the input (or `ARTIST - TITLE` built from
/// two such pieces), never longer than the input.
pub fn ogg_comments(data: &[u8]) {
    for input in [
        data,
        &data[..data.first().map_or(0, |&b| usize::from(b)).min(data.len())],
    ] {
        if let Some(title) = crate::ogg::comment_title(input) {
            assert!(!title.is_empty());
            assert!(
                title.len() <= input.len() + 3,
                "a title longer than its input"
            );
        }
    }
}

/// A `loop-file` (an operator's file, read at load) on arbitrary bytes: no panic; a file that
/// is taken plays a pass of a positive, bounded length whose units end in order within it,
/// and a later pass holds as many bytes as the first (headers aside) and follows it in time.
pub fn playout(data: &[u8]) {
    let Ok(p) = crate::playout::Playout::new(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let period = p.period();
    let pass = |n: u64| -> (Vec<std::time::Duration>, usize) {
        let units: Vec<_> = p.pass(n).collect();
        let bytes = units.iter().map(|(_, b)| b.len()).sum();
        (units.into_iter().map(|(t, _)| t).collect(), bytes)
    };
    let (first, first_bytes) = pass(0);
    let (second, second_bytes) = pass(1);
    assert!(!second.is_empty(), "a pass with nothing in it");
    assert!(
        first.windows(2).all(|w| w[0] <= w[1]),
        "units out of order in a pass"
    );
    assert!(
        first.last().is_some_and(|t| *t <= period),
        "a unit ends after its pass"
    );
    assert!(
        second.first() >= first.last(),
        "the second pass starts before the first ends"
    );
    // Pass 0 carries the WebM headers once on top of the same units.
    assert!(second_bytes <= first_bytes && first_bytes <= data.len() + second_bytes);
    // A far pass is computed without overflow.
    let _ = p.pass(u64::MAX).count();
}
