//! Ogg: real ffmpeg output framed in every split, joined at every sync point and decoded by
//! ffmpeg; chains, corrupt pages and garbage.
use std::path::PathBuf;
use std::process::Command;

use agora_format::ogg::OggFramer;
use agora_format::{Codec, Demuxer, Event, Format, FormatError, Framer};
use bytes::Bytes;

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

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

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

fn frame(data: &[u8], piece: usize) -> (Run, OggFramer) {
    let mut f = OggFramer::new();
    let mut run = Run::default();
    for p in data.chunks(piece) {
        f.push(p);
        loop {
            match f.poll() {
                Ok(Some(ev)) => run.events.push(Ok(ev)),
                Ok(None) => break,
                Err(e) => run.events.push(Err(e)),
            }
        }
    }
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
        let (whole, framer) = frame(&data, data.len());
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
        for piece in [1, 7, 4096] {
            let (run, _) = frame(&data, piece);
            assert_eq!(run.events, whole.events, "{}: split {piece}", f.name);
        }
        // Through the Demuxer: detected as Ogg, same bytes, same headers.
        let mut d = Demuxer::new();
        let mut relayed = Vec::new();
        for p in data.chunks(1000) {
            d.push(p);
            while let Some(ev) = d.poll().expect("clean stream") {
                match ev {
                    Event::Headers(h) => relayed.extend_from_slice(&h),
                    Event::Chunk(c) => relayed.extend_from_slice(&c.bytes),
                }
            }
        }
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
        let (run, _) = frame(&data, 4096);
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
        let (run, _) = frame(&data, data.len());
        // 4 s at 15 fps with a keyframe every 30 frames: keyframes at 0 s and 2 s.
        assert_eq!(run.sync_offsets().len(), 2, "{}", f.name);
        for at in run.sync_offsets() {
            let page = &data[at..];
            assert_eq!(&page[..4], b"OggS");
            assert_eq!(page[5] & 1, 0, "{}: starts a packet", f.name);
            let nsegs = usize::from(page[26]);
            assert_eq!(page[27 + nsegs] & 0xC0, 0, "{}: keyframe", f.name);
        }
    }
}

#[test]
fn a_new_chain_gives_new_headers() {
    let vorbis = fixture("vorbis.ogg");
    let opus = fixture("opus.ogg");
    let theora = fixture("theora-vorbis.ogg");
    let data = [&vorbis[..], &opus[..], &theora[..]].concat();
    let (run, f) = frame(&data, 999);
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
    let (clean, _) = frame(&data, data.len());
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
    let (run, _) = frame(&bad, 512);
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
        assert_eq!(&b[..4], b"OggS", "relayed bytes are whole pages");
        let n = usize::from(b[26]);
        let len = 27 + n + b[27..27 + n].iter().map(|&l| usize::from(l)).sum::<usize>();
        out.push(&b[..len]);
        b = &b[len..];
    }
    out
}

#[test]
fn garbage_and_truncation_never_panic_or_invent_bytes() {
    let data = fixture("theora-vorbis.ogg");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..200 {
        let mut bad = data.clone();
        for _ in 0..(round % 8 + 1) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % bad.len();
            bad[at] = (seed >> 32) as u8;
        }
        bad.truncate(bad.len() - (seed as usize % 5000));
        let (run, _) = frame(&bad, 1 + (seed as usize % 3000));
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
