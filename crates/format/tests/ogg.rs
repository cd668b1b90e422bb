//! Ogg: real ffmpeg output framed in every split, joined at every sync point and decoded by
//! ffmpeg; chains, corrupt pages and garbage.
mod common;

use std::process::Command;

use agora_format::ogg::{HEADER_LEN, OggFramer, PageLen, page_len};
use agora_format::{Codec, Demuxer, Event, Format, FormatError, Framer};
use bytes::Bytes;
use common::{XorShift, even, feed, fixture, splits};

struct Fixture {
    name: &'static str,
    codecs: &'static [Codec],
    video_size: Option<(u32, u32)>,
}

const FIXTURES: [Fixture; 6] = [
    Fixture {
        name: "vorbis.ogg",
        codecs: &[Codec::Vorbis],
        video_size: None,
    },
    Fixture {
        name: "opus.ogg",
        codecs: &[Codec::Opus],
        video_size: None,
    },
    Fixture {
        name: "theora-vorbis.ogg",
        codecs: &[Codec::Theora, Codec::Vorbis],
        video_size: Some((160, 120)),
    },
    Fixture {
        name: "theora-opus.ogg",
        codecs: &[Codec::Theora, Codec::Opus],
        video_size: Some((160, 120)),
    },
    Fixture {
        name: "flac.ogg",
        codecs: &[Codec::Flac],
        video_size: None,
    },
    Fixture {
        name: "speex.ogg",
        codecs: &[Codec::Speex],
        video_size: None,
    },
];

/// Everything a framer produced, with each chunk's offset in the relayed stream.
#[derive(Debug, Default)]
struct Run {
    events: Vec<Result<Event, FormatError>>,
}

impl Run {
    fn headers(&self) -> Vec<&Bytes> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ok(Event::Headers(h)) => Some(h),
                _ => None,
            })
            .collect()
    }

    /// Bytes relayed, in order (headers and chunks).
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.events {
            match e {
                Ok(Event::Headers(h)) => out.extend_from_slice(h),
                Ok(Event::Chunk(c)) => out.extend_from_slice(&c.bytes),
                Err(_) => {}
            }
        }
        out
    }

    /// Offsets in the relayed stream where a sync chunk starts.
    fn sync_offsets(&self) -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::new();
        for e in &self.events {
            match e {
                Ok(Event::Headers(h)) => at += h.len(),
                Ok(Event::Chunk(c)) => {
                    if c.sync {
                        out.push(at);
                    }
                    at += c.bytes.len();
                }
                Err(_) => {}
            }
        }
        out
    }

    fn errors(&self) -> Vec<&FormatError> {
        self.events
            .iter()
            .filter_map(|e| e.as_ref().err())
            .collect()
    }
}

fn frame(data: &[u8], sizes: &[usize]) -> (Run, OggFramer) {
    let mut f = OggFramer::new();
    let mut run = Run::default();
    feed(&mut f, data, sizes, |ev| run.events.push(ev));
    run.events.extend(f.flush().map(Ok));
    (run, f)
}

/// What `ffmpeg -v error` prints decoding `bytes` (empty: decoded cleanly).
fn ffmpeg_errors(bytes: &[u8], tag: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "agora-ogg-{}-{}.ogg",
        std::process::id(),
        tag.replace([' ', ',', '/'], "-")
    ));
    std::fs::write(&path, bytes).expect("write temp file");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg must be installed (scripts/install-deps)");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        stderr
    } else {
        format!("exit status {}: {stderr}", out.status)
    }
}

#[test]
fn fixtures_relay_byte_for_byte_in_every_split() {
    for f in &FIXTURES {
        let data = fixture(f.name);
        let (whole, framer) = frame(&data, &[data.len()]);
        assert_eq!(whole.bytes(), data, "{}: relayed bytes", f.name);
        assert!(
            whole.errors().is_empty(),
            "{}: {:?}",
            f.name,
            whole.errors()
        );
        assert_eq!(whole.headers().len(), 1, "{}", f.name);
        assert!(
            matches!(whole.events[0], Ok(Event::Headers(_))),
            "{}: headers first",
            f.name
        );
        let info = framer.info();
        assert_eq!(info.codecs, f.codecs, "{}", f.name);
        assert_eq!(info.video_size, f.video_size, "{}", f.name);
        assert_eq!(framer.dense_sync(), f.video_size.is_none(), "{}", f.name);
        assert!(whole.sync_offsets().len() >= 2, "{}: sync points", f.name);
        let fixed = [7, 4096].map(|p| (format!("pieces of {p}"), even(data.len(), p)));
        for (split, sizes) in splits(data.len()).into_iter().chain(fixed) {
            let (run, _) = frame(&data, &sizes);
            assert_eq!(run.events, whole.events, "{}: {split}", f.name);
        }
        // Through the Demuxer: detected as Ogg, same bytes, same headers.
        let mut d = Demuxer::new();
        let mut relayed = Vec::new();
        feed(&mut d, &data, &even(data.len(), 1000), |ev| {
            match ev.expect("clean stream") {
                Event::Headers(h) => relayed.extend_from_slice(&h),
                Event::Chunk(c) => relayed.extend_from_slice(&c.bytes),
            }
        });
        assert_eq!(d.format(), Some(Format::Ogg));
        assert_eq!(relayed, data, "{}: through the demuxer", f.name);
    }
}

/// A listener joining at any sync point gets the headers then the stream from there; ffmpeg
/// must decode that without a single message.
#[test]
fn joining_at_every_sync_point_decodes_cleanly() {
    for f in &FIXTURES {
        let data = fixture(f.name);
        let (run, _) = frame(&data, &even(data.len(), 4096));
        let headers = run.headers()[0].to_vec();
        assert_eq!(ffmpeg_errors(&data, f.name), "", "{}: whole", f.name);
        let syncs = run.sync_offsets();
        // Every sync point for video; a sample of them for audio (every page is one).
        let step = if f.video_size.is_some() {
            1
        } else {
            syncs.len() / 4
        };
        for &at in syncs.iter().skip(1).step_by(step.max(1)) {
            let joined = [&headers[..], &data[at..]].concat();
            let label = format!("{} at {at}", f.name);
            assert_eq!(ffmpeg_errors(&joined, &label), "", "{label}");
        }
    }
}

#[test]
fn video_sync_points_are_theora_keyframe_pages() {
    for f in FIXTURES.iter().filter(|f| f.video_size.is_some()) {
        let data = fixture(f.name);
        let (run, _) = frame(&data, &[data.len()]);
        // 4 s at 15 fps with a keyframe every 30 frames: keyframes at 0 s and 2 s.
        assert_eq!(run.sync_offsets().len(), 2, "{}", f.name);
        for at in run.sync_offsets() {
            let page = &data[at..];
            assert_eq!(&page[..4], b"OggS");
            assert_eq!(page[5] & 1, 0, "{}: starts a packet", f.name);
            let nsegs = usize::from(page[26]);
            assert_eq!(page[HEADER_LEN + nsegs] & 0xC0, 0, "{}: keyframe", f.name);
        }
    }
}

#[test]
fn a_new_chain_gives_new_headers() {
    let vorbis = fixture("vorbis.ogg");
    let opus = fixture("opus.ogg");
    let theora = fixture("theora-vorbis.ogg");
    let data = [&vorbis[..], &opus[..], &theora[..]].concat();
    let (run, f) = frame(&data, &even(data.len(), 999));
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert_eq!(run.bytes(), data);
    let headers = run.headers();
    assert_eq!(headers.len(), 3);
    assert!(opus.starts_with(headers[1]));
    assert!(theora.starts_with(headers[2]));
    assert_eq!(f.info().codecs, vec![Codec::Theora, Codec::Vorbis]);
    assert!(!f.dense_sync());
}

#[test]
fn a_corrupt_page_is_dropped_and_the_rest_relayed() {
    let data = fixture("vorbis.ogg");
    let (clean, _) = frame(&data, &[data.len()]);
    // Corrupt one byte in the body of the third data page.
    let starts: Vec<usize> = {
        let mut at = 0;
        let mut v = Vec::new();
        for e in &clean.events {
            match e {
                Ok(Event::Headers(h)) => at += h.len(),
                Ok(Event::Chunk(c)) => {
                    v.push((at, c.bytes.len()));
                    at += c.bytes.len();
                }
                Err(_) => {}
            }
        }
        v.into_iter().map(|(a, _)| a).collect()
    };
    let (at, next) = (starts[2], starts[3]);
    let mut bad = data.clone();
    bad[next - 10] ^= 0x55;
    let (run, _) = frame(&bad, &even(bad.len(), 512));
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(errors[0], FormatError::OggCrc { len, .. } if *len == next - at),
        "{errors:?}"
    );
    let relayed = run.bytes();
    assert_eq!(relayed, [&data[..at], &data[next..]].concat());
}

/// Splits relayed bytes (whole pages only) into pages.
fn pages(mut b: &[u8]) -> Vec<&[u8]> {
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

/// `page_len` on every page of every fixture, in every split: each prefix of a page is
/// incomplete (with the length known once the segment table is in), the whole page is a page
/// with or without the bytes after it, and the pages tile the file.
#[test]
fn page_len_measures_every_page_of_every_fixture_in_every_split() {
    for f in &FIXTURES {
        let data = fixture(f.name);
        let mut at = 0;
        let mut n = 0;
        while at < data.len() {
            let PageLen::Page(len) = page_len(&data[at..]) else {
                panic!("{}: no page at {at}: {:?}", f.name, page_len(&data[at..]));
            };
            let page = &data[at..at + len];
            let head = HEADER_LEN + usize::from(page[26]);
            for cut in 0..len {
                let want = PageLen::Incomplete {
                    len: (cut >= head).then_some(len),
                };
                assert_eq!(page_len(&page[..cut]), want, "{} page {n}, {cut}", f.name);
            }
            assert_eq!(page_len(page), PageLen::Page(len), "{} page {n}", f.name);
            // One byte in: not at a page.
            if data.len() - at > HEADER_LEN {
                assert_eq!(page_len(&data[at + 1..]), PageLen::NotAPage, "{}", f.name);
            }
            at += len;
            n += 1;
        }
        assert!(n >= 3, "{}: {n} pages", f.name);
    }
}

#[test]
fn garbage_and_truncation_never_panic_or_invent_bytes() {
    let data = fixture("theora-vorbis.ogg");
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for round in 0..200 {
        let mut bad = data.clone();
        let mut seed = 0;
        for _ in 0..(round % 8 + 1) {
            seed = rng.next();
            let at = (seed as usize) % bad.len();
            bad[at] = (seed >> 32) as u8;
        }
        bad.truncate(bad.len() - (seed as usize % 5000));
        let (run, _) = frame(&bad, &even(bad.len(), 1 + (seed as usize % 3000)));
        // Nothing invented: every relayed piece is found in the input, in order.
        let mut pos = 0;
        for e in &run.events {
            let piece: &[u8] = match e {
                Ok(Event::Headers(h)) => h,
                Ok(Event::Chunk(c)) => &c.bytes,
                Err(_) => continue,
            };
            for page in pages(piece) {
                let found = bad[pos..]
                    .windows(page.len())
                    .position(|w| w == page)
                    .unwrap_or_else(|| panic!("round {round}: relayed page not in the input"));
                pos += found + page.len();
            }
        }
    }
}
