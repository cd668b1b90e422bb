//! WebM: real ffmpeg output (and variants rewritten to unknown-size Clusters and BlockGroups)
//! fed in every split through `WebmFramer` alone and through the `Demuxer`; sync points checked
//! against an independent walk of the file; decodability of a mid-stream join; garbage, bogus
//! sizes, corruption and concatenated streams.

mod common;

use std::process::Command;

use agora_format::webm::WebmFramer;
use agora_format::{Chunk, Codec, Demuxer, Event, Format, FormatError, Framer};
use bytes::Bytes;
use common::{XorShift, assert_bytes, feed, fixture, splits};

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const REFERENCE_BLOCK: u32 = 0xFB;
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

struct Fixture {
    name: &'static str,
    codecs: &'static [Codec],
    /// ffmpeg numbers tracks in input order: video first when there is one.
    video_track: Option<u64>,
    video_size: Option<(u32, u32)>,
}

const FIXTURES: [Fixture; 4] = [
    Fixture {
        name: "vp8-opus.webm",
        codecs: &[Codec::Vp8, Codec::Opus],
        video_track: Some(1),
        video_size: Some((160, 120)),
    },
    Fixture {
        name: "vp8-opus-seekable.webm",
        codecs: &[Codec::Vp8, Codec::Opus],
        video_track: Some(1),
        video_size: Some((160, 120)),
    },
    Fixture {
        name: "vp9-opus.webm",
        codecs: &[Codec::Vp9, Codec::Opus],
        video_track: Some(1),
        video_size: Some((160, 120)),
    },
    Fixture {
        name: "opus.webm",
        codecs: &[Codec::Opus],
        video_track: None,
        video_size: None,
    },
];

// ---- an independent EBML walk of the test data ----

/// (ID, head length, body size or `None` for unknown) of the element at the start of `b`.
fn head(b: &[u8]) -> (u32, usize, Option<usize>) {
    let id_len = b[0].leading_zeros() as usize + 1;
    let id = b[..id_len]
        .iter()
        .fold(0u32, |v, &x| (v << 8) | u32::from(x));
    let s = &b[id_len..];
    let size_len = s[0].leading_zeros() as usize + 1;
    let mut size = u64::from(s[0]) & ((1u64 << (8 - size_len)) - 1);
    for &x in &s[1..size_len] {
        size = (size << 8) | u64::from(x);
    }
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    (
        id,
        id_len + size_len,
        (!unknown).then(|| usize::try_from(size).expect("size fits")),
    )
}

/// One element found by [`walk`]: Segment children at depth 1, Cluster children at depth 2.
#[derive(Clone, Debug)]
struct El {
    id: u32,
    start: usize,
    head: usize,
    end: usize,
    depth: u8,
}

impl El {
    fn body<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.start + self.head..self.end]
    }
}

/// Elements of well-formed test data, in order, descending into Segments and Clusters.
fn walk(data: &[u8]) -> Vec<El> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (id, h, size) = head(&data[pos..]);
        match id {
            SEGMENT => {
                out.push(El {
                    id,
                    start: pos,
                    head: h,
                    end: pos + h,
                    depth: 0,
                });
                pos += h;
            }
            CLUSTER => {
                let at = out.len();
                out.push(El {
                    id,
                    start: pos,
                    head: h,
                    end: 0,
                    depth: 1,
                });
                let end = size.map(|s| pos + h + s);
                pos += h;
                while pos < end.unwrap_or(data.len()) {
                    let (cid, ch, csize) = head(&data[pos..]);
                    if end.is_none() && cid > 0x00FF_FFFF {
                        break; // a 4-byte ID ends an unknown-size Cluster
                    }
                    let cend = pos + ch + csize.expect("known-size Cluster child");
                    out.push(El {
                        id: cid,
                        start: pos,
                        head: ch,
                        end: cend,
                        depth: 2,
                    });
                    pos = cend;
                }
                out[at].end = pos;
            }
            _ => {
                let end = pos + h + size.expect("known size");
                out.push(El {
                    id,
                    start: pos,
                    head: h,
                    end,
                    depth: if id == EBML { 0 } else { 1 },
                });
                pos = end;
            }
        }
    }
    out
}

/// The track of a SimpleBlock or BlockGroup body, and whether it is a keyframe.
fn block_info(id: u32, body: &[u8]) -> Option<(u64, bool)> {
    match id {
        SIMPLE_BLOCK => Some((u64::from(body[0] & 0x7F), body[3] & 0x80 != 0)),
        BLOCK_GROUP => {
            let mut pos = 0;
            let mut track = None;
            let mut key = true;
            while pos < body.len() {
                let (id, h, size) = head(&body[pos..]);
                let size = size.expect("known size");
                match id {
                    BLOCK => track = Some(u64::from(body[pos + h] & 0x7F)),
                    REFERENCE_BLOCK => key = false,
                    _ => {}
                }
                pos += h + size;
            }
            Some((track?, key))
        }
        _ => None,
    }
}

/// Offsets of the Clusters a listener may join at: every Cluster without video, else those
/// whose first video block is a keyframe.
fn join_points(data: &[u8], video: Option<u64>) -> Vec<usize> {
    let els = walk(data);
    let mut out = Vec::new();
    for (i, c) in els.iter().enumerate().filter(|(_, e)| e.id == CLUSTER) {
        let Some(video) = video else {
            out.push(c.start);
            continue;
        };
        let first_video = els[i + 1..]
            .iter()
            .take_while(|e| e.depth == 2)
            .find_map(|e| block_info(e.id, e.body(data)).filter(|&(t, _)| t == video));
        if let Some((_, true)) = first_video {
            out.push(c.start);
        }
    }
    out
}

// ---- running the framer ----

/// What a run produced, in order.
#[derive(Debug, Default, PartialEq)]
struct Run {
    events: Vec<Event>,
    errors: Vec<FormatError>,
}

impl Run {
    fn take(&mut self, ev: Result<Event, FormatError>) {
        match ev {
            Ok(ev) => self.events.push(ev),
            Err(e) => self.errors.push(e),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.events
            .iter()
            .flat_map(|ev| match ev {
                Event::Headers(b) => b.to_vec(),
                Event::Chunk(c) => c.bytes.to_vec(),
            })
            .collect()
    }

    fn headers(&self) -> Vec<&Bytes> {
        self.events
            .iter()
            .filter_map(|ev| match ev {
                Event::Headers(h) => Some(h),
                Event::Chunk(_) => None,
            })
            .collect()
    }

    fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.events.iter().filter_map(|ev| match ev {
            Event::Chunk(c) => Some(c),
            Event::Headers(_) => None,
        })
    }

    /// Stream offsets where sync chunks start.
    fn sync_offsets(&self) -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::new();
        for ev in &self.events {
            match ev {
                Event::Headers(h) => at += h.len(),
                Event::Chunk(c) => {
                    if c.sync {
                        out.push(at);
                    }
                    at += c.bytes.len();
                }
            }
        }
        out
    }

    /// Headers, and chunks with each non-sync chunk joined to the chunk before it: what is
    /// comparable between the framer and the Demuxer, which merges.
    fn units(&self) -> Vec<(Option<bool>, Vec<u8>)> {
        let mut out: Vec<(Option<bool>, Vec<u8>)> = Vec::new();
        for ev in &self.events {
            match ev {
                Event::Headers(h) => out.push((None, h.to_vec())),
                Event::Chunk(c) => match out.last_mut() {
                    Some((Some(_), b)) if !c.sync => b.extend_from_slice(&c.bytes),
                    _ => out.push((Some(c.sync), c.bytes.to_vec())),
                },
            }
        }
        out
    }
}

fn frame(data: &[u8], sizes: &[usize]) -> (Run, WebmFramer) {
    let mut f = WebmFramer::new();
    let mut run = Run::default();
    feed(&mut f, data, sizes, |ev| run.take(ev));
    if let Some(ev) = f.flush() {
        run.events.push(ev);
    }
    (run, f)
}

fn demux(mut d: Demuxer, data: &[u8], sizes: &[usize]) -> (Run, Demuxer) {
    let mut run = Run::default();
    feed(&mut d, data, sizes, |ev| run.take(ev));
    if let Some(ev) = d.finish() {
        run.events.push(ev);
    }
    (run, d)
}

/// `data` as the framer relays it: Segment sizes rewritten as unknown, with the same length.
fn relayed(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for e in walk(data).iter().filter(|e| e.id == SEGMENT) {
        let field = &mut out[e.start + 4..e.start + e.head];
        field.fill(0xFF);
        field[0] = 0xFF >> (field.len() - 1);
    }
    out
}

/// A sync chunk starts with a Cluster head and ends with the Cluster's first video block,
/// a keyframe (without video: it is the Cluster head alone).
#[track_caller]
fn assert_sync_chunk(c: &Chunk, video: Option<u64>, what: &str) {
    let (id, h, _) = head(&c.bytes);
    assert_eq!(id, CLUSTER, "{what}: a sync chunk starts a Cluster");
    let Some(video) = video else {
        assert_eq!(h, c.bytes.len(), "{what}: the Cluster head alone");
        return;
    };
    let mut pos = h;
    let mut found = None;
    while pos < c.bytes.len() {
        let (id, h, size) = head(&c.bytes[pos..]);
        let end = pos + h + size.expect("known size");
        if let Some((t, key)) = block_info(id, &c.bytes[pos + h..end])
            && t == video
        {
            found = Some((key, end));
            break;
        }
        pos = end;
    }
    let (key, end) = found.unwrap_or_else(|| panic!("{what}: no video block in a sync chunk"));
    assert!(key, "{what}: the first video block is a keyframe");
    assert_eq!(end, c.bytes.len(), "{what}: the chunk ends with that block");
}

/// Every check on one clean stream in every split; returns the reference run.
fn check_stream(f: &Fixture, data: &[u8], label: &str) -> Run {
    let (reference, framer) = frame(data, &[data.len()]);
    let info = framer.info();
    assert_eq!(info.codecs, f.codecs, "{label}");
    assert_eq!(info.video_size, f.video_size, "{label}");
    assert!(!framer.dense_sync(), "{label}");

    assert!(
        reference.errors.is_empty(),
        "{label}: {:?}",
        reference.errors
    );
    let relayed = relayed(data);
    assert_bytes(
        &reference.bytes(),
        &relayed,
        &format!("{label}: relayed as is"),
    );
    let headers = reference.headers();
    assert_eq!(headers.len(), 1, "{label}: headers once");
    assert!(
        matches!(reference.events[0], Event::Headers(_)),
        "{label}: headers first"
    );
    assert_eq!(
        head(&data[headers[0].len()..]).0,
        CLUSTER,
        "{label}: headers end at the first Cluster"
    );
    let joins = join_points(data, f.video_track);
    assert!(!joins.is_empty(), "{label}");
    assert_eq!(reference.sync_offsets(), joins, "{label}: sync chunks");
    for c in reference.chunks().filter(|c| c.sync) {
        assert_sync_chunk(c, f.video_track, label);
    }

    for (split, sizes) in splits(data.len()) {
        let what = format!("{label}, {split}");
        let (run, _) = frame(data, &sizes);
        assert!(run == reference, "{what}: events differ from a whole push");
        let (via, d) = demux(Demuxer::new(), data, &sizes);
        assert_eq!(d.format(), Some(Format::WebM), "{what}");
        assert_eq!(d.info(), info, "{what}");
        assert!(via.errors.is_empty(), "{what}: {:?}", via.errors);
        assert_bytes(&via.bytes(), &relayed, &format!("{what}: demuxer"));
        assert_eq!(via.sync_offsets(), joins, "{what}: demuxer sync chunks");
        assert!(via.units() == reference.units(), "{what}: demuxer units");
    }
    reference
}

/// The stream with every Cluster (and Segment) size rewritten as unknown, as some live muxers
/// write them, and, with `block_groups`, the video SimpleBlocks rewritten as BlockGroups
/// (ReferenceBlock on delta frames). With unknown sizes no size needs fixing up.
fn rewrite(data: &[u8], video: Option<u64>, block_groups: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    let mut pos = 0;
    for e in walk(data) {
        out.extend_from_slice(&data[pos..e.start]);
        pos = e.start;
        if e.id == CLUSTER {
            out.extend_from_slice(&data[e.start..e.start + 4]);
            out.extend_from_slice(&UNKNOWN_SIZE);
            pos = e.start + e.head;
        } else if e.id == SIMPLE_BLOCK && block_groups && e.depth == 2 {
            let body = e.body(data);
            let Some((track, key)) = block_info(e.id, body) else {
                continue;
            };
            if Some(track) != video {
                continue;
            }
            let mut block = body.to_vec();
            block[3] &= !0x81; // keyframe and discardable are SimpleBlock-only flags
            let mut group = el(BLOCK, &block);
            if !key {
                group.extend(el(REFERENCE_BLOCK, &[0xFF]));
            }
            out.extend(el(BLOCK_GROUP, &group));
            pos = e.end;
        }
    }
    out.extend_from_slice(&data[pos..]);
    // Unknown-size Clusters in a known-size Segment are invalid.
    relayed(&out)
}

/// An element with a 1-byte ID and an 8-byte size.
fn el(id: u32, body: &[u8]) -> Vec<u8> {
    let id = u8::try_from(id).expect("1-byte ID");
    let size = (body.len() as u64 | 1 << 56).to_be_bytes();
    [&[id][..], &size, body].concat()
}

#[test]
fn fixtures_frame_identically_in_every_split_and_through_the_demuxer() {
    for f in &FIXTURES {
        let data = fixture(f.name);
        check_stream(f, &data, f.name);
    }
}

#[test]
fn unknown_size_clusters_and_block_groups_frame_the_same_way() {
    for f in &FIXTURES {
        let data = fixture(f.name);
        let clean = check_stream(f, &data, f.name);
        for block_groups in [false, true] {
            let label = format!(
                "{}, unknown-size Clusters, BlockGroups {block_groups}",
                f.name
            );
            let rewritten = rewrite(&data, f.video_track, block_groups);
            let els = walk(&rewritten);
            let blocks = |id| {
                els.iter()
                    .filter(|e| e.id == id)
                    .filter(|e| {
                        block_info(e.id, e.body(&rewritten)).map(|(t, _)| t) == f.video_track
                    })
                    .count()
            };
            if f.video_track.is_some() {
                assert_eq!(blocks(SIMPLE_BLOCK) == 0, block_groups, "{label}");
                assert_eq!(blocks(BLOCK_GROUP) > 0, block_groups, "{label}");
            }
            let run = check_stream(f, &rewritten, &label);
            assert_eq!(
                run.sync_offsets().len(),
                clean.sync_offsets().len(),
                "{label}: the same join points"
            );
        }
    }
}

/// The piped fixtures really have an unknown-size Segment and known-size Clusters; the
/// seekable one a known-size Segment and Cues at the end. (Pins what the other tests cover.)
#[test]
fn fixtures_have_the_layouts_ffmpeg_writes() {
    for f in &FIXTURES {
        let data = fixture(f.name);
        let els = walk(&data);
        let segment = els.iter().find(|e| e.id == SEGMENT).expect("a Segment");
        let (_, _, size) = head(&data[segment.start..]);
        let seekable = f.name.contains("seekable");
        assert_eq!(size.is_none(), !seekable, "{}", f.name);
        for c in els.iter().filter(|e| e.id == CLUSTER) {
            assert!(head(&data[c.start..]).2.is_some(), "{}", f.name);
        }
        let has_cues = els.iter().any(|e| e.id == 0x1C53_BB6B);
        assert_eq!(has_cues, seekable, "{}", f.name);
        // Relayed with an unknown Segment size: a no-op for live output.
        let relayed = relayed(&data);
        let differ = data.iter().zip(&relayed).filter(|(a, b)| a != b).count();
        assert_eq!(differ > 0, seekable, "{}", f.name);
        assert!(head(&relayed[segment.start..]).2.is_none(), "{}", f.name);
    }
}

/// What `ffmpeg -v error` prints decoding `bytes` (empty: decoded cleanly).
fn ffmpeg_errors(bytes: &[u8], tag: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "agora-webm-{}-{}.webm",
        std::process::id(),
        tag.replace([' ', ','], "-")
    ));
    std::fs::write(&path, bytes).expect("write temp file");
    // -copyts: a joined stream starts at its Cluster's timecode (2 s here); without it the
    // ffmpeg CLI shifts timestamps to 0 and its rounding to the 1/15 s frame rate makes the
    // null muxer complain about equal DTS, a CLI artefact rather than a decoding error. A
    // player presents by the original timestamps anyway.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-copyts", "-f", "null", "-"])
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

/// A listener joining at the second sync point gets the headers then the stream from there;
/// ffmpeg must decode that without a single message. Joining at a Cluster whose first video
/// frame is a delta frame (what Icecast 2.4.4 does: any Cluster is a start point) must not:
/// that proves the check can fail.
#[test]
fn a_listener_joining_at_a_sync_chunk_gets_a_stream_ffmpeg_decodes_cleanly() {
    let mut delta_joins = 0;
    for f in &FIXTURES {
        let data = fixture(f.name);
        let variants = [
            ("as written", data.clone()),
            (
                "unknown-size Clusters",
                rewrite(&data, f.video_track, false),
            ),
            ("BlockGroups", rewrite(&data, f.video_track, true)),
        ];
        for (variant, data) in variants {
            let label = format!("{}, {variant}", f.name);
            let (run, _) = frame(&data, &splits(data.len())[3].1);
            let headers = run.headers()[0].to_vec();
            let syncs = run.sync_offsets();
            let second = *syncs
                .get(1)
                .unwrap_or_else(|| panic!("{label}: two sync chunks"));
            let joined = [&headers[..], &data[second..]].concat();
            assert_eq!(ffmpeg_errors(&data, &label), "", "{label}: whole");
            assert_eq!(ffmpeg_errors(&joined, &label), "", "{label}: joined");

            // The first Cluster that is not a sync point, if it has video.
            let els = walk(&data);
            let delta = els.iter().enumerate().find(|(i, e)| {
                e.id == CLUSTER
                    && !syncs.contains(&e.start)
                    && els[i + 1..]
                        .iter()
                        .take_while(|c| c.depth == 2)
                        .any(|c| block_info(c.id, c.body(&data)).map(|(t, _)| t) == f.video_track)
            });
            if let Some((_, c)) = delta {
                let bad = [&headers[..], &data[c.start..]].concat();
                let errors = ffmpeg_errors(&bad, &format!("{label}, delta"));
                assert!(
                    !errors.is_empty(),
                    "{label}: joining at {} decodes",
                    c.start
                );
                delta_joins += 1;
            }
        }
    }
    assert!(delta_joins >= 6, "{delta_joins}");
}

#[test]
fn garbage_before_the_ebml_header_is_skipped_and_reported() {
    let garbage = b"HTTP/1.0 200 OK\r\nContent-Type: video/webm\r\n\r\n\x1a\x45\xdf\x1a".to_vec();
    for f in &FIXTURES {
        let data = fixture(f.name);
        let (clean, _) = frame(&data, &[data.len()]);
        let dirty = [garbage.clone(), data.clone()].concat();
        for (split, sizes) in splits(dirty.len()) {
            let what = format!("{}, {split}", f.name);
            let expected_error = FormatError::Garbage {
                skipped: garbage.len(),
                what: "EBML header",
            };
            let (run, _) = frame(&dirty, &sizes);
            assert_eq!(run.errors, vec![expected_error.clone()], "{what}");
            assert!(run.events == clean.events, "{what}");
            let (via, _) = demux(Demuxer::with_format(Format::WebM), &dirty, &sizes);
            assert_eq!(via.errors, vec![expected_error], "{what}: demuxer");
            assert!(via.units() == clean.units(), "{what}: demuxer");
        }
    }
}

/// Bogus sizes: a huge block in a Cluster, a huge element in the headers, a truncated stream.
#[test]
fn bogus_sizes_are_fatal_and_truncation_is_quiet() {
    let data = fixture("vp8-opus.webm");
    let els = walk(&data);
    let block = els.iter().find(|e| e.id == SIMPLE_BLOCK).expect("a block");
    let tracks = els.iter().find(|e| e.id == 0x1654_AE6B).expect("Tracks");
    // A SimpleBlock claiming 1 TiB, and Tracks claiming 2 MiB.
    let mut huge_block = data.clone();
    huge_block.splice(
        block.start + 1..block.start + block.head,
        [0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00],
    );
    let mut huge_tracks = data.clone();
    huge_tracks.splice(
        tracks.start + 4..tracks.start + tracks.head,
        [0x10, 0x20, 0x00, 0x00],
    );
    // A size VINT with no length marker in the first Cluster.
    let mut bad_vint = data.clone();
    bad_vint[block.start + 1] = 0x00;
    for (name, bytes, err) in [
        (
            "huge block",
            &huge_block,
            FormatError::ElementTooLarge {
                size: (1 << 40) + 9,
                limit: agora_format::webm::MAX_ELEMENT as usize,
            },
        ),
        (
            "huge Tracks",
            &huge_tracks,
            FormatError::HeadersTooLarge {
                limit: agora_format::webm::HEADERS_LIMIT,
            },
        ),
        (
            "size without marker",
            &bad_vint,
            FormatError::Ebml("invalid element size"),
        ),
    ] {
        for (split, sizes) in splits(bytes.len()) {
            let what = format!("{name}, {split}");
            let (run, mut f) = frame(bytes, &sizes);
            assert_eq!(run.errors, vec![err.clone()], "{what}");
            assert!(err.is_fatal());
            // Everything before the bad element came out; nothing after it.
            let out = run.bytes();
            assert!(out.len() <= block.start.max(tracks.start), "{what}");
            assert_bytes(&out, &bytes[..out.len()], &what);
            f.push(&data);
            assert_eq!(f.poll(), Err(err.clone()), "{what}: the error sticks");
        }
    }

    // A stream cut anywhere: no error, and only whole elements come out.
    for cut in [10, 100, 600, 700, 5000, data.len() - 1] {
        let (run, _) = frame(&data[..cut], &[cut]);
        assert!(run.errors.is_empty(), "cut at {cut}: {:?}", run.errors);
        let out = run.bytes();
        assert_bytes(&out, &data[..out.len()], &format!("cut at {cut}"));
        let boundaries: Vec<usize> = els.iter().flat_map(|e| [e.start, e.end]).collect();
        assert!(
            out.is_empty() || boundaries.contains(&out.len()),
            "cut at {cut}: {} bytes out",
            out.len()
        );
    }
}

/// Random bytes overwritten in real streams: never a panic, errors are fatal EBML errors (or
/// header limits), and what comes out before the error is the input as is.
#[test]
fn corrupted_streams_never_panic() {
    for f in &FIXTURES {
        let data = fixture(f.name);
        let segment = walk(&data)
            .into_iter()
            .find(|e| e.id == SEGMENT)
            .expect("a Segment");
        let segment_size = segment.start + 4..segment.start + segment.head;
        let mut rng = XorShift(0xC0FF_EE00 ^ data.len() as u64);
        for round in 0..200 {
            let mut bad = data.clone();
            for _ in 0..1 + round % 4 {
                // Past the magic: garbage before it is the one non-fatal case.
                let at = 4 + rng.below(bad.len() - 4);
                bad[at] = rng.next() as u8;
            }
            let cut = 1 + rng.below(5000);
            let sizes: Vec<usize> = (0..bad.len())
                .step_by(cut)
                .map(|s| cut.min(bad.len() - s))
                .collect();
            let (run, _) = frame(&bad, &sizes);
            let what = format!("{}, round {round}", f.name);
            for e in &run.errors {
                assert!(e.is_fatal(), "{what}: {e}");
            }
            // Relayed as is, but for a Segment size made unknown.
            let mut out = run.bytes();
            let len = out.len().min(segment_size.end);
            out[segment_size.start.min(len)..len]
                .copy_from_slice(&bad[segment_size.start.min(len)..len]);
            assert_bytes(&out, &bad[..out.len()], &what);
            // And through the Demuxer (sniffing included): no panic either.
            let _ = demux(Demuxer::new(), &bad, &sizes);
        }
    }
}

/// A source that restarts (or files played back to back): each stream's headers are sent
/// again, and the info follows them.
#[test]
fn concatenated_streams_give_new_headers() {
    let vp8 = fixture("vp8-opus.webm");
    let opus = fixture("opus.webm");
    let vp9 = fixture("vp9-opus.webm");
    let seekable = fixture("vp8-opus-seekable.webm");
    let unknown_clusters = rewrite(&vp8, Some(1), false);
    for (name, parts) in [
        ("vp8 + opus + vp9", vec![&vp8, &opus, &vp9]),
        ("seekable + opus", vec![&seekable, &opus]),
        // The EBML header ends an unknown-size Cluster.
        ("unknown-size Clusters + vp9", vec![&unknown_clusters, &vp9]),
    ] {
        let data: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        let mut reference = None;
        for (split, sizes) in splits(data.len()) {
            let what = format!("{name}, {split}");
            let (run, _) = frame(&data, &sizes);
            assert!(run.errors.is_empty(), "{what}: {:?}", run.errors);
            let relayed: Vec<Vec<u8>> = parts.iter().map(|p| relayed(p)).collect();
            assert_bytes(&run.bytes(), &relayed.concat(), &what);
            let headers = run.headers();
            assert_eq!(headers.len(), parts.len(), "{what}");
            for (h, part) in headers.iter().zip(&relayed) {
                assert!(part.starts_with(h), "{what}: each stream's own headers");
            }
            match &reference {
                None => reference = Some(run),
                Some(r) => assert!(&run == r, "{what}"),
            }
        }
    }

    // Info follows the headers being sent.
    let mut f = WebmFramer::new();
    let mut seen = Vec::new();
    f.push(&[&vp8[..], &opus, &vp9].concat());
    while let Ok(Some(ev)) = f.poll() {
        if matches!(ev, Event::Headers(_)) {
            seen.push(f.info().codecs);
        }
    }
    assert_eq!(
        seen,
        vec![
            vec![Codec::Vp8, Codec::Opus],
            vec![Codec::Opus],
            vec![Codec::Vp9, Codec::Opus]
        ]
    );
}

/// Live latency: an element goes out as soon as its last byte is in, without waiting for its
/// Cluster to end; only a Cluster prefix waiting for its first video block is held.
#[test]
fn elements_go_out_as_soon_as_they_are_complete() {
    for f in &FIXTURES {
        let original = fixture(f.name);
        for (variant, data) in [
            ("as written", original.clone()),
            (
                "unknown-size Clusters",
                rewrite(&original, f.video_track, false),
            ),
        ] {
            let els = walk(&data);
            for (i, c) in els.iter().enumerate().filter(|(_, e)| e.id == CLUSTER) {
                let children: Vec<&El> = els[i + 1..].iter().take_while(|e| e.depth == 2).collect();
                let known_size = head(&data[c.start..]).2.is_some();
                // Where the Cluster's held prefix is released.
                let release = match f.video_track {
                    None => c.start + c.head,
                    Some(video) => children
                        .iter()
                        .find(|e| block_info(e.id, e.body(&data)).is_some_and(|(t, _)| t == video))
                        .map(|e| e.end)
                        .unwrap_or(if known_size { c.end } else { usize::MAX }),
                };
                for e in children {
                    let mut framer = WebmFramer::new();
                    let mut run = Run::default();
                    feed(&mut framer, &data, &[e.end], |ev| run.take(ev));
                    let expected = if e.end >= release { e.end } else { c.start };
                    assert_eq!(
                        run.bytes().len(),
                        expected,
                        "{}, {variant}: element {:#x} at {}",
                        f.name,
                        e.id,
                        e.start
                    );
                }
            }
        }
    }
}
