//! MPEG audio and ADTS: detection and framing of real ffmpeg output, fed in every split,
//! through `MpegFramer` alone and through the `Demuxer`; garbage, mid-frame starts, and
//! decodability of frames cut from the middle of a stream.

mod common;

use std::process::Command;

use agora_format::detect::{Sniff, sniff};
use agora_format::mpeg::{Kind, MpegFramer, frame_header};
use agora_format::{Chunk, Codec, Demuxer, Event, Format, FormatError, Framer};
use common::{XorShift, assert_bytes, feed, fixture, splits};

/// (file, format, frame syntax, has a leading ID3v2 tag)
const FIXTURES: [(&str, Format, Kind, bool); 5] = [
    ("mp3.mp3", Format::Mp3, Kind::Mp3, true),
    ("mp3-bare.mp3", Format::Mp3, Kind::Mp3, false),
    ("mp3-mpeg2.mp3", Format::Mp3, Kind::Mp3, true),
    ("mp2.mp2", Format::Mp3, Kind::Mp3, false),
    ("aac.aac", Format::Aac, Kind::Adts, false),
];

/// What a run produced: chunks and errors in order.
#[derive(Debug, Default)]
struct Run {
    chunks: Vec<Chunk>,
    errors: Vec<FormatError>,
}

impl Run {
    fn bytes(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.bytes.to_vec()).collect()
    }

    fn skipped(&self) -> usize {
        self.errors
            .iter()
            .map(|e| match e {
                FormatError::Garbage { skipped, .. } => *skipped,
                other => panic!("unexpected error {other:?}"),
            })
            .sum()
    }

    /// Chunks with consecutive non-sync chunks (a tag delivered piecemeal) joined, so runs
    /// with different splits compare equal.
    fn units(&self) -> Vec<(bool, Vec<u8>)> {
        let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
        for c in &self.chunks {
            match out.last_mut() {
                Some((false, b)) if !c.sync => b.extend_from_slice(&c.bytes),
                _ => out.push((c.sync, c.bytes.to_vec())),
            }
        }
        out
    }

    fn take(&mut self, ev: Result<Event, FormatError>) {
        match ev {
            Ok(Event::Chunk(c)) => self.chunks.push(c),
            Ok(Event::Headers(h)) => panic!("MPEG streams have no headers: {h:?}"),
            Err(e) => {
                assert!(!e.is_fatal(), "{e}");
                self.errors.push(e);
            }
        }
    }
}

fn frame(kind: Kind, data: &[u8], sizes: &[usize]) -> Run {
    let mut f = MpegFramer::new(kind);
    let mut run = Run::default();
    feed(&mut f, data, sizes, |ev| run.take(ev));
    assert_eq!(f.flush(), None);
    run
}

fn demux(data: &[u8], sizes: &[usize]) -> (Option<Format>, Run) {
    let mut d = Demuxer::new();
    let mut run = Run::default();
    feed(&mut d, data, sizes, |ev| run.take(ev));
    if let Some(ev) = d.finish() {
        run.take(Ok(ev));
    }
    (d.format(), run)
}

/// Sync chunks start with a valid header; a frame chunk is exactly one frame.
fn assert_frames(kind: Kind, run: &Run, what: &str) {
    for (i, c) in run.chunks.iter().enumerate() {
        if c.sync {
            let h = frame_header(kind, &c.bytes)
                .unwrap_or_else(|| panic!("{what}: chunk {i} has no frame header"));
            assert_eq!(h.frame_len, c.bytes.len(), "{what}: chunk {i} is one frame");
        }
    }
}

/// The frames of a clean fixture, and its tag.
fn clean_units(name: &str, kind: Kind) -> (Vec<u8>, Vec<Vec<u8>>) {
    let data = fixture(name);
    let run = frame(kind, &data, &[data.len()]);
    assert!(run.errors.is_empty(), "{name}: {:?}", run.errors);
    let mut tag = Vec::new();
    let mut frames = Vec::new();
    for (sync, bytes) in run.units() {
        if sync {
            frames.push(bytes);
        } else {
            assert!(frames.is_empty(), "{name}: a tag after frames");
            tag = bytes;
        }
    }
    (tag, frames)
}

#[test]
fn sniff_finds_every_fixture() {
    for (name, format, _, _) in FIXTURES {
        let data = fixture(name);
        assert_eq!(sniff(&data), Sniff::Found(format), "{name}");
        // A prefix too short to hold two frames is undecided, never wrong.
        assert_eq!(sniff(&data[..4]), Sniff::NeedMore, "{name}");
    }
}

#[test]
fn sniff_container_magic_text_and_noise() {
    assert_eq!(sniff(b"OggS\x00\x02\x00\x00"), Sniff::Found(Format::Ogg));
    assert_eq!(
        sniff(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"),
        Sniff::Found(Format::WebM)
    );
    let html = "<!DOCTYPE html><html><body><p>502 Bad Gateway</p></body></html>\n".repeat(100);
    assert_eq!(sniff(html.as_bytes()), Sniff::Found(Format::Opaque));
    for seed in [1u64, 7, 0xDEAD_BEEF, 0x1234_5678_9ABC] {
        let noise = XorShift(seed).bytes(agora_format::SNIFF_LIMIT);
        for len in [100, 4096, noise.len()] {
            let s = sniff(&noise[..len]);
            assert!(
                !matches!(s, Sniff::Found(Format::Mp3 | Format::Aac)),
                "seed {seed}, {len} bytes: {s:?}"
            );
        }
        let (format, run) = demux(&noise, &[1024; 16]);
        assert_eq!(format, Some(Format::Opaque), "seed {seed}");
        assert_bytes(&run.bytes(), &noise, "noise");
    }
}

#[test]
fn clean_fixtures_frame_identically_in_every_split() {
    for (name, _, kind, tagged) in FIXTURES {
        let data = fixture(name);
        let reference = frame(kind, &data, &[data.len()]);
        assert!(reference.chunks.len() > 50, "{name}");
        assert_eq!(reference.chunks[0].sync, !tagged, "{name}: tag chunk first");
        for (split, sizes) in splits(data.len()) {
            let what = format!("{name}, {split}");
            let run = frame(kind, &data, &sizes);
            assert!(run.errors.is_empty(), "{what}: {:?}", run.errors);
            assert_bytes(&run.bytes(), &data, &format!("{what}: relayed as is"));
            assert_frames(kind, &run, &what);
            assert_eq!(run.units(), reference.units(), "{what}");
        }
    }
}

#[test]
fn demuxer_relays_clean_fixtures_byte_for_byte() {
    for (name, format, kind, tagged) in FIXTURES {
        let data = fixture(name);
        for (split, sizes) in splits(data.len()) {
            let what = format!("{name}, {split}");
            let (found, run) = demux(&data, &sizes);
            assert_eq!(found, Some(format), "{what}");
            assert!(run.errors.is_empty(), "{what}: {:?}", run.errors);
            assert_bytes(&run.bytes(), &data, &what);
            for (i, c) in run.chunks.iter().enumerate() {
                if i == 0 && tagged {
                    assert!(c.bytes.starts_with(b"ID3"), "{what}");
                } else {
                    assert!(c.sync, "{what}: chunk {i}");
                    assert!(frame_header(kind, &c.bytes).is_some(), "{what}: chunk {i}");
                }
            }
        }
    }
}

#[test]
fn info_names_the_codec_once_a_frame_is_out() {
    for (name, _, kind, _) in FIXTURES {
        let data = fixture(name);
        let mut f = MpegFramer::new(kind);
        assert!(f.info().codecs.is_empty());
        f.push(&data);
        while let Ok(Some(Event::Chunk(c))) = f.poll() {
            if c.sync {
                break;
            }
        }
        let codec = if kind == Kind::Mp3 {
            Codec::Mp3
        } else {
            Codec::Aac
        };
        assert_eq!(f.info().codecs, vec![codec], "{name}");
        let h = f.last_header().expect("a frame was seen");
        assert!(h.sample_rate >= 22050 && h.channels == 1, "{name}: {h:?}");
        assert_eq!(h.bitrate_kbps.is_some(), kind == Kind::Mp3, "{name}");
    }
}

/// Garbage of several shapes, inserted after some frames of every fixture.
#[test]
fn garbage_between_frames_is_dropped_and_reported() {
    let garbages: [(&str, Vec<u8>); 4] = [
        ("text", b"garbage, not a frame".to_vec()),
        ("noise", XorShift(42).bytes(700)),
        ("lone sync bytes", vec![0xFF; 9]),
        // A valid header of another stream (MPEG-2.5 layer I; for ADTS an 8 kHz header)
        // followed by junk: without the next frame to confirm it, it is garbage.
        (
            "unconfirmed header",
            [
                &[
                    0xFF, 0xE7, 0x10, 0x00, 0xFF, 0xF1, 0x6C, 0x40, 0x20, 0x00, 0x00,
                ][..],
                &[0x55; 64],
            ]
            .concat(),
        ),
    ];
    for (name, _, kind, _) in FIXTURES {
        let (tag, frames) = clean_units(name, kind);
        let clean: Vec<u8> = [tag.clone(), frames.concat()].concat();
        for (gname, garbage) in &garbages {
            let after = [3usize, 20, frames.len() / 2, frames.len() - 3];
            let mut dirty = tag.clone();
            for (i, f) in frames.iter().enumerate() {
                dirty.extend_from_slice(f);
                if after.contains(&i) {
                    dirty.extend_from_slice(garbage);
                }
            }
            for (split, sizes) in splits(dirty.len()) {
                let what = format!("{name}, {gname}, {split}");
                let run = frame(kind, &dirty, &sizes);
                assert_bytes(
                    &run.bytes(),
                    &clean,
                    &format!("{what}: exactly the garbage is dropped"),
                );
                assert_eq!(run.errors.len(), after.len(), "{what}: one report per run");
                assert_eq!(run.skipped(), after.len() * garbage.len(), "{what}");
                assert!(
                    run.errors.iter().all(|e| matches!(
                        e,
                        FormatError::Garbage { what, .. }
                            if *what == if kind == Kind::Mp3 { "MPEG audio frame" } else { "ADTS frame" }
                    )),
                    "{what}"
                );
                assert_frames(kind, &run, &what);

                let (_, via_demuxer) = demux(&dirty, &sizes);
                assert_bytes(&via_demuxer.bytes(), &clean, &format!("{what}: demuxer"));
                assert_eq!(via_demuxer.errors, run.errors, "{what}: demuxer");
            }
        }
    }
}

/// A frame with garbage on both sides cannot be confirmed: it goes with the garbage, in one
/// report.
#[test]
fn a_frame_between_two_garbage_runs_is_dropped_with_them() {
    for (name, _, kind, _) in FIXTURES {
        let (tag, frames) = clean_units(name, kind);
        let garbage = b"garbage, not a frame";
        let dirty = [
            &tag[..],
            &frames[..4].concat(),
            garbage,
            &frames[4],
            garbage,
            &frames[5..].concat(),
        ]
        .concat();
        let expected = [&tag[..], &frames[..4].concat(), &frames[5..].concat()].concat();
        for (split, sizes) in splits(dirty.len()) {
            let what = format!("{name}, {split}");
            let run = frame(kind, &dirty, &sizes);
            assert_bytes(&run.bytes(), &expected, &what);
            assert_eq!(run.errors.len(), 1, "{what}");
            assert_eq!(run.skipped(), 2 * garbage.len() + frames[4].len(), "{what}");
        }
    }
}

#[test]
fn garbage_before_the_first_frame_is_skipped() {
    for (name, format, kind, _) in FIXTURES {
        let (_, frames) = clean_units(name, kind);
        let clean = frames.concat();
        let dirty = [b"HTTP/1.0 200 OK\r\n\r\n".to_vec(), clean.clone()].concat();
        for (split, sizes) in splits(dirty.len()) {
            let what = format!("{name}, {split}");
            let run = frame(kind, &dirty, &sizes);
            assert_bytes(&run.bytes(), &clean, &what);
            assert_eq!(run.skipped(), 19, "{what}");
            let (found, via_demuxer) = demux(&dirty, &sizes);
            assert_eq!(found, Some(format), "{what}");
            assert_bytes(&via_demuxer.bytes(), &clean, &what);
            assert_eq!(via_demuxer.errors, run.errors, "{what}");
        }
    }
}

#[test]
fn a_stream_joined_mid_frame_resyncs_at_the_next_frame() {
    for (name, format, kind, _) in FIXTURES {
        let (_, frames) = clean_units(name, kind);
        for (k, into) in [(5usize, 1usize), (10, 17), (30, 100)] {
            let partial = &frames[k][into.min(frames[k].len() - 1)..];
            let dirty = [partial, &frames[k + 1..].concat()].concat();
            let expected = frames[k + 1..].concat();
            for (split, sizes) in splits(dirty.len()) {
                let what = format!("{name}, frame {k} + {into}, {split}");
                let run = frame(kind, &dirty, &sizes);
                assert_bytes(&run.bytes(), &expected, &what);
                assert_eq!(
                    run.errors,
                    vec![FormatError::Garbage {
                        skipped: partial.len(),
                        what: if kind == Kind::Mp3 {
                            "MPEG audio frame"
                        } else {
                            "ADTS frame"
                        }
                    }],
                    "{what}"
                );
                let (found, via_demuxer) = demux(&dirty, &sizes);
                assert_eq!(found, Some(format), "{what}");
                assert_bytes(&via_demuxer.bytes(), &expected, &what);
                assert_eq!(via_demuxer.errors, run.errors, "{what}");
            }
        }
    }
}

#[test]
fn a_truncated_stream_drops_only_the_partial_last_frame() {
    for (name, _, kind, _) in FIXTURES {
        let (tag, frames) = clean_units(name, kind);
        let whole = [tag, frames.concat()].concat();
        let last = frames.last().map_or(0, Vec::len);
        let cut = &whole[..whole.len() - 1];
        let run = frame(kind, cut, &[cut.len()]);
        assert_bytes(&run.bytes(), &whole[..whole.len() - last], name);
        assert!(run.errors.is_empty(), "{name}");
    }
}

/// Frames cut from the middle of a stream, as a listener joining there receives them, decode
/// without a single error message from ffmpeg.
#[test]
fn frames_from_the_middle_decode_with_ffmpeg() {
    for (name, _, kind, _) in FIXTURES {
        let data = fixture(name);
        let run = frame(kind, &data, &splits(data.len())[3].1);
        let frames: Vec<&Chunk> = run.chunks.iter().filter(|c| c.sync).collect();
        let middle = &frames[frames.len() / 3..2 * frames.len() / 3];
        let bytes: Vec<u8> = middle.iter().flat_map(|c| c.bytes.to_vec()).collect();
        let ext = name.rsplit('.').next().unwrap_or("bin");
        let path =
            std::env::temp_dir().join(format!("agora-mpeg-{}-{name}.{ext}", std::process::id()));
        std::fs::write(&path, &bytes).expect("write temp file");
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg must be installed (scripts/install-deps)");
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.trim().is_empty() && out.stdout.is_empty(),
            "{name}: {stderr}"
        );
    }
}
