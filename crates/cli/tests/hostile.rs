//! The bad-input corpus of #13, all at once against one server while a listener decodes a
//! live mount: malformed and huge heads, slowloris, garbage on a mount, corrupt Ogg pages,
//! bogus EBML sizes, oversized metadata, wrong passwords in a loop, non-reading clients. Each
//! case gets its clear answer, the listener decodes throughout, and the server's memory stays
//! bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// What a connection got before the server closed it (at most 64 KiB, 20 s).
fn answer(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = (&mut s).take(64 * 1024).read_to_end(&mut got);
    String::from_utf8_lossy(&got).to_string()
}

fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.write_all(bytes);
    answer(s)
}

#[test]
fn the_bad_input_corpus_gets_its_answers_while_a_listener_decodes() {
    let agora = Agora::start_with_config(
        "[server]\nheader-timeout-secs = 3\nsend-timeout-secs = 4\ntrusted-proxies = [\"127.0.0.1\"]\nmax-login-failures = 10\n[mount-defaults]\ngrace-period-secs = 1\n",
    );
    let (fx, file) = fixture("opus");
    // Made before the live stream starts (its first making can take longer than the stream).
    let (_, vorbis_file) = fixture("vorbis");
    let _live = ffmpeg_push(&agora, &file, "/live.opus", fx.muxer, false);
    agora.wait_mount("/live.opus");
    let rss_before = rss_kib(agora.pid());
    let url = agora.url("/live.opus");
    let listener = std::thread::spawn(move || assert_decodes(&url, 20));

    let mut cases: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let addr = agora.addr;

    // Malformed heads: 400; a huge one: 431.
    cases.push(std::thread::spawn(move || {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /x HTTP/1.1\r\nNo colon here\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ] {
            let got = send(addr, bad);
            assert!(got.contains(" 400 "), "{bad:?}: {got}");
        }
        let huge = format!(
            "GET /live.opus HTTP/1.1\r\n{}\r\n",
            "X-Junk: 0123456789abcdef0123456789abcdef\r\n".repeat(3000)
        );
        let got = send(addr, huge.as_bytes());
        assert!(got.contains(" 431 "), "{got}");
    }));

    // Slowloris: 100 connections, a byte each second; the header timeout ends them (408).
    cases.push(std::thread::spawn(move || {
        let mut slow: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for byte in b"GET /liv" {
            for s in &mut slow {
                let _ = s.write_all(&[*byte]);
            }
            std::thread::sleep(Duration::from_millis(400));
        }
        for s in slow {
            let got = answer(s);
            assert!(got.is_empty() || got.contains(" 408 "), "{got}");
        }
    }));

    // Garbage, corrupt Ogg pages and a bogus EBML size on mounts of their own.
    cases.push(std::thread::spawn(move || {
        let junk = xorshift_bytes(256 * 1024, 7);
        let (mut s, head) = raw_source(addr, "/junk", "PUT", &[]);
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let _ = s.write_all(&junk);
        drop(s);
        let mut ogg = std::fs::read(vorbis_file).expect("fixture");
        let n = ogg.len();
        for i in (4096..n).step_by(997) {
            ogg[i] ^= 0x5a;
        }
        let (mut s, head) = raw_source(addr, "/corrupt.ogg", "PUT", &[]);
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let _ = s.write_all(&ogg[..n.min(512 * 1024)]);
        drop(s);
        // An EBML header, a Segment of unknown size, then a Cluster claiming 2^55 bytes.
        let mut webm = vec![
            0x1a, 0x45, 0xdf, 0xa3, 0x84, 0x42, 0x82, 0x84, b'w', b'e', b'b', b'm',
        ];
        webm.extend_from_slice(&[
            0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        webm.extend_from_slice(&[
            0x1f, 0x43, 0xb6, 0x75, 0x01, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
        ]);
        webm.extend_from_slice(&xorshift_bytes(64 * 1024, 9));
        let (mut s, head) = raw_source(addr, "/bogus.webm", "PUT", &[]);
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let _ = s.write_all(&webm);
        let got = answer(s);
        assert!(!got.contains("HTTP/"), "{got}");
    }));

    // Oversized metadata: the title is cut, nothing else happens.
    cases.push(std::thread::spawn(move || {
        let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
        let song = "A".repeat(60_000);
        let (code, _, body) = http_get(
            addr,
            &format!("/admin/metadata?mount=/live.opus&mode=updinfo&song={song}"),
            &[("Authorization", &auth)],
        );
        assert!(
            code == 200 || code == 431,
            "{code}: {}",
            String::from_utf8_lossy(&body)
        );
        let song = "B".repeat(8_000);
        let (code, _, _) = http_get(
            addr,
            &format!("/admin/metadata?mount=/live.opus&mode=updinfo&song={song}"),
            &[("Authorization", &auth)],
        );
        assert_eq!(code, 200);
    }));

    // Wrong passwords in a loop from one address (named by the trusted proxy): 401, then 429.
    cases.push(std::thread::spawn(move || {
        let wrong = format!("Basic {}", b64("admin:guess"));
        let codes: Vec<u16> = (0..40)
            .map(|_| {
                http_get(
                    addr,
                    "/admin/stats",
                    &[
                        ("Authorization", &wrong),
                        ("X-Forwarded-For", "203.0.113.66"),
                    ],
                )
                .0
            })
            .collect();
        assert_eq!(codes.iter().filter(|c| **c == 401).count(), 10, "{codes:?}");
        assert!(codes[10..].iter().all(|c| *c == 429), "{codes:?}");
    }));

    // Non-reading clients: cut by the send timeout, not kept.
    cases.push(std::thread::spawn(move || {
        let stalled: Vec<TcpStream> = (0..50)
            .map(|_| {
                let s = TcpStream::connect(addr).expect("connect");
                socket2::SockRef::from(&s)
                    .set_recv_buffer_size(4096)
                    .expect("rcvbuf");
                let mut s = s;
                s.write_all(request("GET", "/live.opus", &[]).as_bytes())
                    .expect("send");
                s
            })
            .collect();
        // The server cuts every one of them (its metrics say so).
        wait_until("50 stalled listeners cut", Duration::from_secs(30), || {
            let (_, _, m) = http_get(addr, "/metrics", &[]);
            String::from_utf8_lossy(&m).lines().any(|l| {
                l.starts_with("agora_listener_ends_total{")
                    && l.contains("reason=\"stalled\"")
                    && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(50.0)
            })
        });
        drop(stalled);
    }));

    for c in cases {
        c.join().expect("a case got its answer");
    }
    listener
        .join()
        .expect("the live listener decoded throughout");
    // No listener is left behind: the stalled ones were cut, the decoder left.
    agora.wait_status("no listener left", |a| a.listeners("/live.opus") == 0);
    // Every case was answered and ended; the server holds what it held before, give or take.
    let rss_after = rss_kib(agora.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    let title = agora.source("/live.opus").expect("live")["title"]
        .as_str()
        .map(str::len)
        .unwrap_or_default();
    assert!(title <= 1024, "title of {title} bytes");
    assert!(agora.log_has(&["too many failed logins", "client=203.0.113.66"]));
    assert_decodes(&agora.url("/live.opus"), 2);
}

/// `VmHWM` of a process: the most RSS it ever had, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// An EBML element with an 8-byte size.
fn ebml(id: &[u8], body: &[u8]) -> Vec<u8> {
    [id, &[0x01], &(body.len() as u64).to_be_bytes()[1..], body].concat()
}

const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/// EBML header, an unknown-size Segment and Tracks with one VP8 track (number 1).
fn webm_headers() -> Vec<u8> {
    let entry = [
        ebml(&[0xd7], &[1]),
        ebml(&[0x83], &[1]),
        ebml(&[0x86], b"V_VP8"),
    ]
    .concat();
    [
        ebml(&[0x1a, 0x45, 0xdf, 0xa3], &ebml(&[0x42, 0x82], b"webm")),
        vec![0x18, 0x53, 0x80, 0x67],
        UNKNOWN_SIZE.to_vec(),
        ebml(&[0x16, 0x54, 0xae, 0x6b], &ebml(&[0xae], &entry)),
    ]
    .concat()
}

/// An unknown-size Cluster whose one large element is `kind`: a keyframe SimpleBlock, a
/// BlockGroup's Block, or an element no framer knows (after a small keyframe), of `size`
/// payload bytes.
fn webm_cluster(kind: &str, size: usize, seed: u64) -> Vec<u8> {
    let payload = xorshift_bytes(size, seed);
    let big = match kind {
        "simple" => ebml(&[0xa3], &[&[0x81, 0, 0, 0x80][..], &payload].concat()),
        "group" => ebml(
            &[0xa0],
            &ebml(&[0xa1], &[&[0x81, 0, 0, 0][..], &payload].concat()),
        ),
        _ => [
            ebml(&[0xa3], &[0x81, 0, 0, 0x80, 0]),
            ebml(&[0xec], &payload),
        ]
        .concat(),
    };
    [
        &[0x1f, 0x43, 0xb6, 0x75][..],
        &UNKNOWN_SIZE,
        &ebml(&[0xe7], &[0]),
        &big,
    ]
    .concat()
}

/// Ogg pages carrying one packet (continued across pages when it needs more than one).
fn ogg_packet_pages(packet: &[u8], serial: u32, seq: &mut u32, bos: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lacing = vec![255u8; packet.len() / 255];
    lacing.push((packet.len() % 255) as u8);
    let (mut at, mut first) = (0, true);
    for segs in lacing.chunks(255) {
        let n: usize = segs.iter().map(|&s| usize::from(s)).sum();
        let flags = if first { u8::from(bos) * 2 } else { 1 };
        let mut page = [
            &b"OggS\0"[..],
            &[flags],
            &0u64.to_le_bytes(),
            &serial.to_le_bytes(),
            &seq.to_le_bytes(),
            &[0; 4],
            &[segs.len() as u8],
            segs,
            &packet[at..at + n],
        ]
        .concat();
        let crc = agora_format::crc::ogg_page_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        out.extend(page);
        (at, first, *seq) = (at + n, false, *seq + 1);
    }
    out
}

/// An Ogg Opus chain of logical stream `serial`: its headers with a comment packet of about
/// `tags` bytes, then one tiny audio page.
fn ogg_chain(serial: u32, tags: usize) -> Vec<u8> {
    let mut seq = 0;
    let head = [&b"OpusHead\x01\x02\x38\x01\x80\xbb\0\0\0\0\0"[..]].concat();
    let comment = [b"Z=".to_vec(), xorshift_bytes(tags, u64::from(serial))].concat();
    let opus_tags = [
        &b"OpusTags\x01\0\0\0x\x01\0\0\0"[..],
        &(comment.len() as u32).to_le_bytes(),
        &comment,
    ]
    .concat();
    [
        ogg_packet_pages(&head, serial, &mut seq, true),
        ogg_packet_pages(&opus_tags, serial, &mut seq, false),
        ogg_packet_pages(&[0xfc, 0xff, 0xfe], serial, &mut seq, false),
    ]
    .concat()
}

/// #13 item 5: what one source can make the server hold. WebM elements just under the old
/// 16 MiB cap (a keyframe SimpleBlock, a Block in a BlockGroup, an unknown element) are refused
/// from their head by the default `max-element-size` (8 MiB), saying why; a source of elements
/// just under that limit, with a listener, is served; a source starting a new Ogg chain with a
/// megabyte of headers before every tiny page (which made the queue keep every chain's
/// headers: 800 MB after 600 chains) is held to the queue's size. The server's peak RSS stays
/// within 64 MiB of what it was, while a listener of another mount decodes throughout.
#[test]
fn a_source_cannot_make_the_server_hold_more_than_its_limits() {
    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 1\n");
    let (fx, file) = fixture("opus");
    let _live = ffmpeg_push(&agora, &file, "/live.opus", fx.muxer, false);
    agora.wait_mount("/live.opus");
    let addr = agora.addr;
    let rss_before = rss_kib(agora.pid());
    let url = agora.url("/live.opus");
    let listener = std::thread::spawn(move || assert_decodes(&url, 25));

    // Elements just under 16 MiB: refused as soon as their head is in.
    for kind in ["simple", "group", "unknown"] {
        let mount = format!("/huge-{kind}.webm");
        let (mut s, head) = raw_source(addr, &mount, "PUT", &[("Content-Type", "video/webm")]);
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let _ = s.write_all(&webm_headers());
        let _ = s.write_all(&webm_cluster(kind, (16 << 20) - 1024, 3));
        agora.wait_log(&[
            "source dropped",
            &mount,
            "larger than the limit of 8388608 bytes",
            "max-element-size",
        ]);
    }

    // Elements just under the limit: taken, relayed to a listener, and no more held.
    let (mut s, head) = raw_source(addr, "/big.webm", "PUT", &[("Content-Type", "video/webm")]);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    s.write_all(&webm_headers()).expect("headers");
    s.write_all(&webm_cluster("simple", 4096, 1))
        .expect("first cluster");
    agora.wait_mount("/big.webm");
    let (big_listener, head) = open_listener(addr, "/big.webm");
    assert!(head.contains(" 200 "), "{head}");
    let drain = Drain::spawn(big_listener);
    for (i, kind) in ["simple", "group", "unknown"]
        .iter()
        .cycle()
        .take(9)
        .enumerate()
    {
        s.write_all(&webm_cluster(kind, (8 << 20) - 1024, i as u64 + 5))
            .expect("an element under the limit is taken");
        // One at a time: an element larger than the queue (512 KiB) is all the queue holds,
        // so a listener still reading one when the next comes would be cut for lag.
        let want = (i as u64 + 1) * ((8 << 20) - 1024);
        wait_until(
            "the listener got the cluster",
            Duration::from_secs(30),
            || drain.bytes() >= want,
        );
    }
    drop(s);

    // New Ogg chains with 1 MB of headers before each tiny page, two chains in turn.
    let chains = [ogg_chain(1, 1_000_000), ogg_chain(2, 1_000_000)];
    let (mut s, head) = raw_source(addr, "/chains.ogg", "PUT", &[("Content-Type", "audio/ogg")]);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    for i in 0..300 {
        s.write_all(&chains[i % 2]).expect("a chain");
    }
    agora.wait_status("the chains' mount is live", |a| {
        a.source("/chains.ogg").is_some()
    });
    drop(s);

    listener
        .join()
        .expect("the live listener decoded throughout");
    let peak = peak_rss_kib(agora.pid());
    eprintln!("peak RSS {peak} KiB, {rss_before} KiB before the hostile sources");
    assert!(
        peak < rss_before + 64 * 1024,
        "peak RSS {peak} KiB, {rss_before} KiB before the hostile sources"
    );
    assert_decodes(&agora.url("/live.opus"), 2);
}
