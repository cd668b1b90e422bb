//! Edge cases and misbehaving peers, against the real binary: wrong credentials, busy mounts,
//! the exact source handshakes, source loss and the grace period, stalled listeners, bad and
//! garbage bytes, hostile request heads, limits, HEAD, the status JSON's shape, SIGTERM.
//!
//! Every wait here is for an event (a status change, a log line, bytes or EOF on a socket);
//! the only deliberate waits are where time is the subject, and the config keeps them short.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Connect and send a request head with an exact request line (`version` as given).
fn send_head(
    addr: SocketAddr,
    method: &str,
    mount: &str,
    version: &str,
    headers: &[(&str, &str)],
) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("{method} {mount} {version}\r\nHost: test\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send head");
    s
}

/// Assert that nothing more arrives on `s` for a short while (the absence of an event can only
/// be observed over time).
fn assert_silent(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(n) => panic!(
            "{what}: unexpected {n} bytes: {:?}",
            String::from_utf8_lossy(&b[..n])
        ),
        Err(e) => panic!("{what}: unexpected error {e}"),
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
}

/// A raw source request, read to the server's close: (status, head, body).
fn source_attempt(
    agora: &Agora,
    method: &str,
    mount: &str,
    auth: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut headers = vec![("Content-Type", "audio/ogg")];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    let version = if method == "PUT" {
        "HTTP/1.1"
    } else {
        "HTTP/1.0"
    };
    let mut s = send_head(agora.addr, method, mount, version, &headers);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    split_response(&all)
}

// ---------------------------------------------------------------------------------------------
// Credentials and busy mounts
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_password_is_401_and_live_mount_unaffected() {
    let agora = Agora::start();
    let (fx, file) = fixture("vorbis");
    let _src = ffmpeg_push(&agora, &file, "/live.ogg", fx.muxer, false);
    agora.wait_mount("/live.ogg");

    let wrong = format!("Basic {}", b64("source:not-the-password"));
    for (method, mount) in [
        ("SOURCE", "/live.ogg"),
        ("PUT", "/live.ogg"),
        ("SOURCE", "/other.ogg"),
        ("PUT", "/other.ogg"),
    ] {
        let (code, head, _) = source_attempt(&agora, method, mount, Some(&wrong));
        assert_eq!(code, 401, "{method} {mount}:\n{head}");
        assert!(head.contains("\r\nWWW-Authenticate: Basic"), "{head}");
        assert!(
            head.contains("\r\nAllow: GET, PUT, OPTIONS, SOURCE\r\n"),
            "{head}"
        );
    }
    assert!(
        agora.log_has(&["wrong credentials", "/live.ogg"])
            && agora.log_has(&["wrong credentials", "/other.ogg"]),
        "no log line about the wrong credentials:\n{}",
        agora.log()
    );

    // libshout's first, unauthenticated probe.
    let mut s = send_head(
        agora.addr,
        "SOURCE",
        "/probe.ogg",
        "HTTP/1.0",
        &[("Content-Length", "0")],
    );
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let (code, head, _) = split_response(&all);
    assert_eq!(code, 401, "{head}");
    assert!(head.contains("\r\nWWW-Authenticate: Basic"), "{head}");

    // None of that touched the live mount or created another.
    assert!(agora.source("/other.ogg").is_none());
    assert!(agora.source("/probe.ogg").is_none());
    assert!(agora.source("/live.ogg").is_some());
    assert_decodes(&agora.url("/live.ogg"), 3);
    assert!(agora.source("/live.ogg").is_some());
}

#[test]
fn second_source_gets_409_mountpoint_in_use() {
    let agora = Agora::start();
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/busy.mp3", fx.muxer, true);
    agora.wait_mount("/busy.mp3");
    for method in ["SOURCE", "PUT"] {
        let (mut s, head) = raw_source(agora.addr, "/busy.mp3", method, &[]);
        assert!(head.starts_with("HTTP/1.0 409 "), "{method}:\n{head}");
        let mut body = Vec::new();
        let _ = s.read_to_end(&mut body);
        assert_eq!(
            String::from_utf8_lossy(&body).trim(),
            "Mountpoint in use",
            "{method}"
        );
    }
    assert!(agora.log_has(&["mountpoint in use", "/busy.mp3"]));
    assert_decodes(&agora.url("/busy.mp3"), 3);
}

// ---------------------------------------------------------------------------------------------
// Source handshakes on the wire
// ---------------------------------------------------------------------------------------------

#[test]
fn put_with_expect_gets_100_then_200() {
    let agora = Agora::start();
    let auth = source_auth();
    let mut s = send_head(
        agora.addr,
        "PUT",
        "/put.ogg",
        "HTTP/1.1",
        &[
            ("Authorization", &auth),
            ("Content-Type", "audio/ogg"),
            ("Expect", "100-continue"),
        ],
    );
    let first = read_head(&mut s);
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first:?}");
    let second = read_head(&mut s);
    assert!(second.starts_with("HTTP/1.0 200 OK\r\n"), "{second:?}");
    assert_silent(&mut s, "after the 200");
    agora.wait_mount("/put.ogg");
}

#[test]
fn source_without_expect_gets_200_only() {
    let agora = Agora::start();
    let auth = source_auth();
    let mut s = send_head(
        agora.addr,
        "SOURCE",
        "/src.ogg",
        "ICE/1.0",
        &[("Authorization", &auth), ("Content-Type", "audio/ogg")],
    );
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head:?}");
    assert_silent(&mut s, "after the 200");
    agora.wait_mount("/src.ogg");
}

/// `Transfer-Encoding: chunked` in uneven chunks (some with extensions), the final chunk ending
/// the source cleanly. The queue holds the whole fixture so a listener joining after the push
/// hears it from the start.
#[test]
fn chunked_put_is_accepted_and_decodes() {
    let agora =
        Agora::start_with_config("[mount-defaults]\nqueue-size = 8388608\nburst-size = 4194304\n");
    let (_, file) = fixture("vorbis");
    let data = std::fs::read(&file).expect("fixture");
    let auth = source_auth();
    let mut s = send_head(
        agora.addr,
        "PUT",
        "/chunked.ogg",
        "HTTP/1.1",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/ogg"),
            ("Transfer-Encoding", "chunked"),
            ("Expect", "100-continue"),
        ],
    );
    assert!(read_head(&mut s).starts_with("HTTP/1.1 100 Continue\r\n"));
    assert!(read_head(&mut s).starts_with("HTTP/1.0 200 OK\r\n"));
    let sizes = [1usize, 7, 100, 4096, 333, 16384, 2];
    let mut off = 0;
    for (i, size) in sizes.iter().cycle().enumerate() {
        if off >= data.len() {
            break;
        }
        let end = (off + size).min(data.len());
        let ext = if i % 3 == 0 { ";x=y" } else { "" };
        let mut chunk = format!("{:x}{ext}\r\n", end - off).into_bytes();
        chunk.extend_from_slice(&data[off..end]);
        chunk.extend_from_slice(b"\r\n");
        s.write_all(&chunk).expect("send chunk");
        off = end;
    }
    agora.wait_mount("/chunked.ogg");
    assert_decodes(&agora.url("/chunked.ogg"), 5);
    // The last chunk ends the source without an error.
    s.write_all(b"0\r\n\r\n").expect("send last chunk");
    agora.wait_log(&["source ended", "/chunked.ogg"]);
    assert!(
        !agora.log_has(&["source dropped", "/chunked.ogg"]),
        "{}",
        agora.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Source loss and the grace period
// ---------------------------------------------------------------------------------------------

#[test]
fn source_returns_within_grace_keeps_listeners() {
    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 30\n");
    let (fx, file) = fixture("mp3");
    let src = ffmpeg_push(&agora, &file, "/g.mp3", fx.muxer, false);
    agora.wait_mount("/g.mp3");
    let (s, head) = open_listener(agora.addr, "/g.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let listener = Drain::spawn(s);
    wait_until("listener bytes", Duration::from_secs(20), || {
        listener.bytes() > 16 * 1024
    });

    drop(src); // kills ffmpeg
    agora.wait_log(&["source gone", "/g.mp3"]);
    let src_json = agora
        .source("/g.mp3")
        .expect("mount held in its grace period");
    assert_eq!(src_json["listeners"], 1, "{src_json}");
    assert_eq!(listener.ended(), None);

    let before = listener.bytes();
    let _src2 = ffmpeg_push(&agora, &file, "/g.mp3", fx.muxer, false);
    wait_until(
        "50 KB from the returning source",
        Duration::from_secs(30),
        || listener.bytes() > before + 50_000 || listener.ended().is_some(),
    );
    assert_eq!(listener.ended(), None, "the listener was disconnected");
    assert_eq!(agora.listeners("/g.mp3"), 1);
}

/// An Ogg source that returns inside the grace period with a different stream (new serials,
/// another codec): the held listener gets the new chain's header pages before its first data
/// page, and what it received is valid Ogg from end to end (two chains, no broken page).
#[test]
fn returning_ogg_source_sends_its_new_headers_first() {
    use agora_format::ogg::OggFramer;
    use agora_format::{Codec, Event, Framer};

    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 30\n");
    let (vorbis, vorbis_file) = fixture("vorbis");
    let (opus, opus_file) = fixture("opus");
    let src = ffmpeg_push(&agora, &vorbis_file, "/chain.ogg", vorbis.muxer, false);
    agora.wait_mount("/chain.ogg");
    let (mut s, head) = open_listener(agora.addr, "/chain.ogg");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16384];
    let mut read_until = |got: &mut Vec<u8>, done: &dyn Fn(&[u8]) -> bool| {
        while !done(got) {
            let n = s.read(&mut buf).expect("listener read");
            assert!(n > 0, "listener closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
    };
    read_until(&mut got, &|g| g.len() > 16 * 1024);

    drop(src);
    agora.wait_log(&["source gone", "/chain.ogg"]);
    let _src2 = ffmpeg_push(&agora, &opus_file, "/chain.ogg", opus.muxer, false);
    let contains = |g: &[u8], what: &[u8]| g.windows(what.len()).any(|w| w == what);
    read_until(&mut got, &|g| contains(g, b"OpusHead"));
    let at = got.len();
    read_until(&mut got, &|g| g.len() > at + 8 * 1024);

    let mut f = OggFramer::new();
    f.push(&got);
    let mut headers = Vec::new();
    let mut data_after_second = 0;
    while let Some(ev) = f.poll().expect("the listener's stream is valid Ogg") {
        match ev {
            Event::Headers(h) => headers.push(h),
            Event::Chunk(c) if headers.len() == 2 => data_after_second += c.bytes.len(),
            Event::Chunk(_) => {}
        }
    }
    assert_eq!(headers.len(), 2, "one header set per chain");
    assert!(contains(&headers[0], b"\x01vorbis"));
    assert!(contains(&headers[1], b"OpusHead") && contains(&headers[1], b"OpusTags"));
    assert_eq!(f.info().codecs, vec![Codec::Opus]);
    assert!(
        data_after_second > 0,
        "the new stream's data follows its headers"
    );
    assert_eq!(agora.listeners("/chain.ogg"), 1);
}

/// A web page's player (`?page`) is not held through a source loss like other listeners: its
/// response ends with its source, so the page reconnects to the next stream instead of being
/// fed a restarted one mid-response (browsers stop on that). Other listeners are held.
#[test]
fn web_player_listener_ends_with_its_source_others_are_held() {
    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 30\n");
    let (fx, file) = fixture("mp3");
    let src = ffmpeg_push(&agora, &file, "/p.mp3", fx.muxer, false);
    agora.wait_mount("/p.mp3");
    let (s, head) = open_listener(agora.addr, "/p.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let plain = Drain::spawn(s);
    let (s, head) = open_listener(agora.addr, "/p.mp3?page=1");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let page = Drain::spawn(s);
    wait_until("bytes to both listeners", Duration::from_secs(20), || {
        plain.bytes() > 16 * 1024 && page.bytes() > 16 * 1024
    });

    drop(src);
    wait_until(
        "the page listener to see EOF",
        Duration::from_secs(10),
        || page.ended().is_some(),
    );
    assert_eq!(page.ended().as_deref(), Some("EOF"));
    assert_eq!(plain.ended(), None, "the plain listener is held");

    let _src2 = ffmpeg_push(&agora, &file, "/p.mp3", fx.muxer, false);
    // The page connects when the events say the source is back.
    wait_until("the source to return", Duration::from_secs(20), || {
        let (code, _, body) = http_get(agora.addr, "/api/v1/mounts/p.mp3", &[]);
        code == 200 && String::from_utf8_lossy(&body).contains("\"connected\":true")
    });
    let before = plain.bytes();
    let (s, head) = open_listener(agora.addr, "/p.mp3?page=1");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let page2 = Drain::spawn(s);
    wait_until(
        "the returning source's bytes to both",
        Duration::from_secs(30),
        || page2.bytes() > 16 * 1024 && plain.bytes() > before + 16 * 1024,
    );
    assert_eq!(plain.ended(), None);
    assert_eq!(page2.ended(), None);
}

#[test]
fn source_gone_past_grace_closes_listeners() {
    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 1\n");
    let (fx, file) = fixture("mp3");
    let src = ffmpeg_push(&agora, &file, "/short.mp3", fx.muxer, false);
    agora.wait_mount("/short.mp3");
    let (s, head) = open_listener(agora.addr, "/short.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let listener = Drain::spawn(s);
    wait_until("listener bytes", Duration::from_secs(20), || {
        listener.bytes() > 16 * 1024
    });
    let killed = Instant::now();
    drop(src);
    wait_until("the listener to see EOF", Duration::from_secs(10), || {
        listener.ended().is_some()
    });
    assert_eq!(listener.ended().as_deref(), Some("EOF"));
    assert!(
        killed.elapsed() >= Duration::from_millis(900),
        "closed before the grace ran out"
    );
    agora.wait_status("the mount to disappear", |a| {
        a.source("/short.mp3").is_none()
    });
}

// ---------------------------------------------------------------------------------------------
// A stalled listener
// ---------------------------------------------------------------------------------------------

/// A listener that sends its request and never reads, with a small receive buffer and an
/// Internet-sized MSS so the server's writes block soon. (On loopback the MSS is 64 KiB, and
/// the kernel sizes the server's send buffer from it: a stalled loopback peer absorbed ~3 MB
/// before a write blocked, where a real client with MSS 1460 absorbs ~100 KB. The server now
/// bounds unsent bytes per socket, `tcp-notsent-lowat`, so either way its writes block soon.)
fn stalled_listener(addr: SocketAddr, mount: &str) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.set_tcp_mss(1460).expect("TCP_MAXSEG");
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(request("GET", mount, &[]).as_bytes())
        .expect("send");
    s
}

#[test]
fn stalled_listener_is_cut_off_others_unaffected() {
    let agora =
        Agora::start_with_config("[mount-defaults]\nqueue-size = 65536\nburst-size = 16384\n");
    let (fx, file) = fixture("webm");
    let _src = ffmpeg_push(&agora, &file, "/v.webm", fx.muxer, false);
    agora.wait_mount("/v.webm");
    let mut stalled = stalled_listener(agora.addr, "/v.webm");
    let (s, head) = open_listener(agora.addr, "/v.webm");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let active = Drain::spawn(s);
    let url = agora.url("/v.webm");
    let decoder = std::thread::spawn(move || assert_decodes(&url, 5));

    let stall = Instant::now();
    agora.wait_log(&["cut off", "/v.webm"]);
    eprintln!("stalled listener cut off after {:?}", stall.elapsed());
    if let Err(panic) = decoder.join() {
        std::panic::resume_unwind(panic);
    }
    // Only the reading listener is left.
    agora.wait_status("one listener left", |a| a.listeners("/v.webm") == 1);
    assert_eq!(
        active.ended(),
        None,
        "the reading listener was disconnected"
    );
    assert!(active.bytes() > 100_000, "{} bytes", active.bytes());

    // The stalled client, reading at last, finds what its buffers held, then the end.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    let ended = Instant::now();
    loop {
        match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("stalled listener: {e} after {:?}", ended.elapsed()),
        }
    }
    let rss = rss_kib(agora.pid());
    assert!(rss < 100 * 1024, "server RSS {rss} KiB");
}

// ---------------------------------------------------------------------------------------------
// Bad and unknown bytes from a source
// ---------------------------------------------------------------------------------------------

#[test]
fn corrupt_ogg_page_is_dropped() {
    let agora =
        Agora::start_with_config("[mount-defaults]\nqueue-size = 8388608\nburst-size = 4194304\n");
    let (_, file) = fixture("vorbis");
    let mut data = std::fs::read(&file).expect("fixture");
    let pages: Vec<usize> = data
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"OggS")
        .map(|(i, _)| i)
        .collect();
    assert!(pages.len() > 20, "{} pages", pages.len());
    // A page well after the headers, early enough that 30 s of decoding cross it.
    let page = pages[pages.len() / 4];
    assert!(pages[pages.len() / 4 + 1] - page > 200, "page too short");
    data[page + 100] ^= 0xff;

    let (mut s, head) = raw_source(
        agora.addr,
        "/bad.ogg",
        "PUT",
        &[("Content-Type", "application/ogg")],
    );
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    s.write_all(&data).expect("push");
    agora.wait_log(&["CRC", "/bad.ogg"]);
    // The source stays connected (the mount with it) while the listener decodes what it got.
    assert_decodes(&agora.url("/bad.ogg"), 30);
    drop(s);
}

/// Parked listeners are sent large ranges with `sendfile` from the mount's in-memory file
/// (here every range: `sendfile-min-bytes = 1`): what a listener gets is still the source's
/// bytes in order, byte for byte, also after it stopped reading long enough for a `sendfile`
/// to be cut short by its full socket, and the metric counts what went that way.
#[test]
fn bytes_sent_from_the_in_memory_file_are_the_sources() {
    let agora = Agora::start_with_config(
        "[mount-defaults]\nsendfile-min-bytes = 1\nqueue-size = 33554432\n",
    );
    let (s, head) = raw_source(agora.addr, "/sf", "PUT", &[]);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    const TICK: usize = 200_000;
    let _src = PacedSource::spawn(s, TICK);
    agora.wait_mount("/sf");
    // A small receive window: the server's send buffer (at most 4 MB) is what fills.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(32 * 1024).expect("SO_RCVBUF");
    sock.connect(&agora.addr.into()).expect("connect");
    let mut l: TcpStream = sock.into();
    l.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    l.write_all(request("GET", "/sf", &[]).as_bytes())
        .expect("send");
    assert!(read_head(&mut l).starts_with("HTTP/1.0 200 OK\r\n"));
    let mut got = vec![0u8; 12 << 20];
    l.read_exact(&mut got[..400 * 1024]).expect("stream bytes");
    // 4 MB/s while the listener reads nothing: more than its socket's buffers hold.
    std::thread::sleep(Duration::from_secs(2));
    l.read_exact(&mut got[400 * 1024..]).expect("stream bytes");
    // What the source wrote, tick by tick (the seeds `PacedSource` uses).
    let mut sent = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    while sent.len() < 48 << 20 {
        seed = seed.wrapping_add(1);
        sent.extend(xorshift_bytes(TICK, seed));
    }
    let at = sent
        .windows(64)
        .position(|w| w == &got[..64])
        .expect("the listener's first bytes are the source's");
    assert!(
        sent[at..at + got.len()] == got[..],
        "the listener's bytes are not a run of the source's"
    );
    let (_, _, body) = http_get(agora.addr, "/metrics", &[]);
    let body = String::from_utf8_lossy(&body);
    let from_file: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("agora_mount_sent_from_file_bytes_total{mount=\"/sf\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sendfile counter in\n{body}"));
    assert!(
        from_file >= 100_000.0,
        "{from_file} bytes sent from the file"
    );
}

#[test]
fn garbage_bytes_are_relayed_opaquely_and_others_unaffected() {
    let agora = Agora::start();
    let (fx, file) = fixture("vorbis");
    let _ogg = ffmpeg_push(&agora, &file, "/ok.ogg", fx.muxer, false);
    let junk = xorshift_bytes(100 * 1024, 0x5eed);
    let (mut s, head) = raw_source(agora.addr, "/junk", "PUT", &[]);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    s.write_all(&junk).expect("push junk");
    agora.wait_mount("/junk");

    let (mut l, head) = open_listener(agora.addr, "/junk");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/octet-stream\r\n"),
        "{head}"
    );
    let mut got = vec![0u8; 32 * 1024];
    l.read_exact(&mut got).expect("junk bytes");
    // Relayed byte for byte: what the listener got is a run of what the source sent.
    assert!(
        junk.windows(got.len()).any(|w| w == got.as_slice()),
        "the listener's bytes are not a run of the source's"
    );

    agora.wait_mount("/ok.ogg");
    assert_decodes(&agora.url("/ok.ogg"), 3);
    assert_eq!(agora.sources().len(), 2);
    drop(s);
}

// ---------------------------------------------------------------------------------------------
// Hostile and malformed request heads
// ---------------------------------------------------------------------------------------------

#[test]
fn oversized_request_head_is_431() {
    let agora = Agora::start();
    let mut s = TcpStream::connect(agora.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = format!(
        "GET /x HTTP/1.0\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may answer and close before it has read all of this.
    let _ = s.write_all(req.as_bytes());
    let (code, head, _) = split_response(&read_lenient(&mut s));
    assert_eq!(code, 431, "{head:?}");
    // The server still serves.
    assert_eq!(http_get(agora.addr, "/status-json.xsl", &[]).0, 200);
}

#[test]
fn endless_head_is_cut() {
    let agora = Agora::start();
    let mut s = TcpStream::connect(agora.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        w.write_all(b"GET /x HTTP/1.0\r\n").expect("request line");
        let line =
            b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut sent = 0u64;
        loop {
            match w.write(line) {
                Ok(n) => sent += n as u64,
                Err(e) => return (sent, e.kind()),
            }
        }
    });
    let (code, head, _) = split_response(&read_lenient(&mut s));
    assert_eq!(code, 431, "{head:?}");
    let (sent, why) = writer.join().expect("writer");
    // The writer stopped because the server closed, not because the server stopped reading.
    assert!(
        matches!(why, ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
        "writer ended with {why:?} after {sent} bytes"
    );
    assert!(sent < 64 * 1024 * 1024, "{sent} bytes accepted");
}

#[test]
fn slow_head_times_out_with_408() {
    let agora = Agora::start_with_config("[server]\nheader-timeout-secs = 1\n");
    let mut s = TcpStream::connect(agora.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sent = Instant::now();
    s.write_all(b"GET /x HTTP/1.0\r\n").expect("send");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read to close");
    let took = sent.elapsed();
    let (code, head, _) = split_response(&all);
    assert_eq!(code, 408, "{head:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
}

#[test]
fn malformed_request_is_400() {
    let agora = Agora::start();
    for bad in [
        "BLAH\r\n\r\n",
        "GET / HTTP/1.0\r\nno colon\r\n\r\n",
        "GET / HTTP/1.0 extra\r\n\r\n",
        "get / HTTP/1.0\r\n\r\n",
    ] {
        let (code, head, _) = raw_request(agora.addr, bad);
        assert_eq!(code, 400, "{bad:?}:\n{head}");
    }
    assert_eq!(http_get(agora.addr, "/status-json.xsl", &[]).0, 200);
}

#[test]
fn unknown_mount_is_404() {
    let agora = Agora::start();
    let (code, head, body) = http_get(agora.addr, "/nothing.ogg", &[]);
    assert_eq!(code, 404, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("/nothing.ogg"));
}

/// A body on a request that is not a source's is never read as the next request of a
/// keep-alive connection (request smuggling): one answer, then the connection is closed.
#[test]
fn a_body_on_get_or_post_is_never_taken_as_the_next_request() {
    let agora = Agora::start();
    let smuggled = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";
    let bodies = [
        (
            format!("Content-Length: {}", smuggled.len()),
            smuggled.to_string(),
        ),
        (
            "Transfer-Encoding: chunked".to_string(),
            format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len()),
        ),
    ];
    for method in ["GET", "POST"] {
        for (framing, body) in &bodies {
            let mut s = TcpStream::connect(agora.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let req = format!(
                "{method} /status-json.xsl HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n{body}"
            );
            s.write_all(req.as_bytes()).expect("send");
            let mut all = Vec::new();
            let r = s.read_to_end(&mut all);
            let text = String::from_utf8_lossy(&all);
            assert!(r.is_ok(), "{method} {framing}: not closed ({r:?}): {text}");
            assert_eq!(
                text.matches("HTTP/1.1 ").count(),
                1,
                "{method} {framing}: {text}"
            );
            assert!(!text.contains("agora_"), "{method} {framing}: {text}");
        }
    }
}

/// Every accepted connection has TCP keepalive on, so a peer that vanished without a FIN is
/// found by the kernel (`ss` shows the socket's keepalive timer).
#[test]
fn accepted_connections_have_tcp_keepalive() {
    let agora = Agora::start();
    let client = TcpStream::connect(agora.addr).expect("connect");
    let local = client.local_addr().expect("local address");
    let port = agora.addr.port();
    let mut shown = String::new();
    // The kernel shows the connection as soon as the handshake is done, before the server
    // has accepted it and set its options: wait for the keepalive timer itself (the test
    // fails, on the deadline, if it never comes).
    let has_keepalive = |shown: &str| {
        shown
            .lines()
            .any(|l| l.contains(&local.to_string()) && l.contains("timer:(keepalive,"))
    };
    wait_until(
        "the server's socket to show its keepalive timer",
        Duration::from_secs(10),
        || {
            let out = std::process::Command::new("ss")
                .args([
                    "-tnoH",
                    "state",
                    "established",
                    &format!("( sport = :{port} )"),
                ])
                .output()
                .expect("ss (iproute2)");
            shown = String::from_utf8_lossy(&out.stdout).to_string();
            has_keepalive(&shown)
        },
    );
    let line = shown
        .lines()
        .find(|l| l.contains(&local.to_string()))
        .expect("the server's side of the connection");
    assert!(line.contains("timer:(keepalive,"), "{line}");
}

#[test]
fn unknown_method_is_405() {
    let agora = Agora::start();
    let (code, head, _) = raw_request(agora.addr, &request("DELETE", "/x.ogg", &[]));
    assert_eq!(code, 405, "{head}");
    assert!(head.contains("\r\nAllow: "), "{head}");
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[test]
fn listener_limit_per_mount_gives_503() {
    let agora = Agora::start_with_config("[[mount]]\npath = \"/lim.mp3\"\nmax-listeners = 1\n");
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/lim.mp3", fx.muxer, false);
    agora.wait_mount("/lim.mp3");
    let (mut first, head) = open_listener(agora.addr, "/lim.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let mut b = [0u8; 1];
    first.read_exact(&mut b).expect("first listener gets bytes");
    let (code, head, body) = http_get(agora.addr, "/lim.mp3", &[]);
    assert_eq!(code, 503, "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("Maximum listeners"),
        "{body:?}"
    );
    // The place is free again once the first leaves.
    drop(first);
    agora.wait_status("no listener", |a| a.listeners("/lim.mp3") == 0);
    let (_again, head) = open_listener(agora.addr, "/lim.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
}

#[test]
fn listener_limit_server_wide_gives_503() {
    let agora = Agora::start_with_config("[server]\nmax-listeners = 1\n");
    let (fx, file) = fixture("mp3");
    let _a = ffmpeg_push(&agora, &file, "/a.mp3", fx.muxer, false);
    let _b = ffmpeg_push(&agora, &file, "/b.mp3", fx.muxer, false);
    agora.wait_mount("/a.mp3");
    agora.wait_mount("/b.mp3");
    let (mut first, head) = open_listener(agora.addr, "/a.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let mut b = [0u8; 1];
    first.read_exact(&mut b).expect("first listener gets bytes");
    let (code, head, body) = http_get(agora.addr, "/b.mp3", &[]);
    assert_eq!(code, 503, "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("Server listener limit"),
        "{body:?}"
    );
    drop(first);
    agora.wait_status("no listener", |a| a.listeners("/a.mp3") == 0);
    let (_again, head) = open_listener(agora.addr, "/b.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
}

// ---------------------------------------------------------------------------------------------
// HEAD and the status JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn head_request_gets_headers_only() {
    let agora = Agora::start();
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/h.mp3", fx.muxer, false);
    agora.wait_mount("/h.mp3");
    read_stream_bytes(agora.addr, "/h.mp3", 1);
    let (code, head, body) = raw_request(agora.addr, &request("HEAD", "/h.mp3", &[]));
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("\r\nContent-Type: audio/mpeg\r\n"), "{head}");
    assert!(head.contains("\r\nicy-name:Agora test\r\n"), "{head}");
    assert!(body.is_empty(), "{} body bytes after a HEAD", body.len());
    agora.wait_status("the HEAD not to count", |a| a.listeners("/h.mp3") == 0);
    // Short responses too.
    let (code, _, body) = raw_request(agora.addr, &request("HEAD", "/status-json.xsl", &[]));
    assert_eq!((code, body.len()), (200, 0));
    let (code, _, body) = raw_request(agora.addr, &request("HEAD", "/none.mp3", &[]));
    assert_eq!((code, body.len()), (404, 0));
}

#[test]
fn status_json_shape() {
    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 1\n");
    assert!(
        agora.status()["icestats"].get("source").is_none(),
        "{}",
        agora.status()
    );

    // One mount: an object, with what the source declared.
    let (mut one, head) = raw_source(
        agora.addr,
        "/one",
        "SOURCE",
        &[
            ("ice-name", "Stream one"),
            ("ice-description", "The first stream"),
            ("ice-genre", "Talk"),
            ("ice-url", "https://example.org/"),
            ("ice-audio-info", "samplerate=44100;channels=2;bitrate=96"),
        ],
    );
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    // Past the format sniffing at once, then live, so a listener's leaving is noticed.
    one.write_all(&xorshift_bytes(20 * 1024, 7)).expect("push");
    let one = PacedSource::spawn(one, 1024);
    agora.wait_mount("/one");
    let status = agora.status();
    let src = &status["icestats"]["source"];
    assert!(src.is_object(), "{status}");
    let port = agora.addr.port();
    assert_eq!(src["listenurl"], format!("http://localhost:{port}/one"));
    assert_eq!(src["listeners"], 0);
    assert_eq!(src["listener_peak"], 0);
    assert_eq!(src["server_name"], "Stream one");
    assert_eq!(src["server_description"], "The first stream");
    assert_eq!(src["server_url"], "https://example.org/");
    assert_eq!(src["genre"], "Talk");
    assert_eq!(src["audio_info"], "samplerate=44100;channels=2;bitrate=96");
    assert_eq!(src["bitrate"], 96);
    assert!(src["server_type"].is_string(), "{src}");
    assert!(src["title"].is_string(), "{src}");
    let start = src["stream_start_iso8601"].as_str().expect("iso date");
    assert!(
        start.len() == 24 && start.as_bytes()[10] == b'T' && start[19..].starts_with(['+', '-']),
        "{start}"
    );

    // A listener shows, and its peak stays after it leaves.
    let (l, _) = open_listener(agora.addr, "/one");
    agora.wait_status("one listener", |a| a.listeners("/one") == 1);
    drop(l);
    agora.wait_status("no listener", |a| a.listeners("/one") == 0);
    assert_eq!(agora.source("/one").expect("mount")["listener_peak"], 1);

    // Two mounts: an array, in path order.
    let (fx, file) = fixture("mp3");
    let two = ffmpeg_push(&agora, &file, "/two.mp3", fx.muxer, false);
    agora.wait_mount("/two.mp3");
    let status = agora.status();
    let arr = status["icestats"]["source"].as_array().expect("array");
    assert_eq!(arr.len(), 2, "{status}");
    assert_eq!(arr[0]["listenurl"], format!("http://localhost:{port}/one"));
    assert_eq!(arr[1]["server_name"], "Agora test");
    assert_eq!(arr[1]["genre"], "Test");

    // Back to one once the second source is gone past its grace period.
    drop(two);
    agora.wait_status("one mount again", |a| {
        a.status()["icestats"]["source"].is_object()
    });
    drop(one);
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

/// A listener that keeps up waits parked with its mount, without a task: a shutdown still
/// ends it in order (EOF, its access line written before the process exits).
#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = TempDir::new("agora-sigterm");
    let log = dir.path().join("access.log");
    let mut agora = Agora::start_with_config(&format!(
        "[server]\nshutdown-grace-secs = 2\naccess-log = \"{}\"\n",
        log.display()
    ));
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/t.mp3", fx.muxer, false);
    agora.wait_mount("/t.mp3");
    let (s, head) = open_listener(agora.addr, "/t.mp3");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let listener = Drain::spawn(s);
    wait_until("listener bytes", Duration::from_secs(20), || {
        listener.bytes() > 0
    });

    let sent = Instant::now();
    send_signal(agora.pid(), "TERM");
    let mut status = None;
    wait_until("agora to exit", Duration::from_secs(2 + 4), || {
        status = agora.child.try_wait().expect("try_wait");
        status.is_some()
    });
    let status = status.expect("exited");
    assert!(
        status.success(),
        "exit status {status:?} after {:?}",
        sent.elapsed()
    );
    wait_until("the listener to see EOF", Duration::from_secs(5), || {
        listener.ended().is_some()
    });
    assert_eq!(listener.ended().as_deref(), Some("EOF"));
    assert!(agora.log_has(&["SIGTERM"]), "{}", agora.log());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("\"GET /t.mp3 HTTP/1.0\" 200 ")),
        "the listener's access line: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// The access log
// ---------------------------------------------------------------------------------------------

#[test]
fn access_log_has_a_combined_line_per_request_and_listener() {
    let dir = TempDir::new("agora-access");
    let log = dir.path().join("access.log");
    let agora =
        Agora::start_with_config(&format!("[server]\naccess-log = \"{}\"\n", log.display()));
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/log.mp3", fx.muxer, false);
    agora.wait_mount("/log.mp3");
    let mut s = send_head(
        agora.addr,
        "GET",
        "/log.mp3",
        "HTTP/1.1",
        &[("User-Agent", "test \"agent\""), ("Referer", "http://x/")],
    );
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("listener gets bytes");
    drop(s);
    let (code, _, _) = http_get(agora.addr, "/nothing-here", &[]);
    assert_eq!(code, 404);
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    // Both awaited by content: the source's own line may come first.
    wait_until("both access lines", Duration::from_secs(10), || {
        let l = lines();
        l.contains("\"GET /log.mp3 ") && l.contains("/nothing-here")
    });
    let text = lines();
    let listener = text
        .lines()
        .find(|l| l.contains("/log.mp3"))
        .expect("listener line");
    // `ip - user [time] "request" status bytes "referer" "agent" seconds`
    assert!(
        listener.starts_with("127.0.0.1 - - ["),
        "listener line: {listener}"
    );
    assert!(
        listener.contains("] \"GET /log.mp3 HTTP/1.1\" 200 "),
        "listener line: {listener}"
    );
    assert!(
        // Quotes inside a field escaped as Apache does.
        listener.contains(" \"http://x/\" \"test \\\"agent\\\"\" "),
        "listener line: {listener}"
    );
    let secs = listener.rsplit(' ').next().unwrap_or("");
    assert!(
        secs.parse::<u64>().is_ok(),
        "connected seconds at the end: {listener}"
    );
    let bytes: u64 = listener
        .split("\" 200 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("byte count");
    assert!(bytes > 0, "listener line counts bytes: {listener}");
    assert!(
        text.lines()
            .any(|l| l.contains("\"GET /nothing-here HTTP/1.0\" 404 ")),
        "404 line: {text}"
    );
}

/// `t` as Combined Log Format writes it (the server writes UTC).
fn clf(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        ))
        .expect("format")
}

/// Regression (#14): a line was stamped with the time its request ended. Combined Log Format
/// stamps the time a request was received: a listener that stays 3 s gets a line, written as
/// it leaves, stamped with the second it came (and its 3 s at the end).
#[test]
fn a_listeners_access_line_is_stamped_with_its_start() {
    let dir = TempDir::new("agora-access-time");
    let log = dir.path().join("access.log");
    let agora =
        Agora::start_with_config(&format!("[server]\naccess-log = \"{}\"\n", log.display()));
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/stamp.mp3", fx.muxer, false);
    agora.wait_mount("/stamp.mp3");
    let came = std::time::SystemTime::now();
    let mut s = send_head(agora.addr, "GET", "/stamp.mp3", "HTTP/1.1", &[]);
    // Staying is the subject: read the stream for 3 s of wall-clock time.
    let stay = Instant::now();
    let mut buf = [0u8; 4096];
    while stay.elapsed() < Duration::from_secs(3) {
        assert!(s.read(&mut buf).expect("stream") > 0, "the stream ended");
    }
    drop(s);
    let line = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("\"GET /stamp.mp3 "))
            .map(str::to_string)
    };
    wait_until("the listener's line", Duration::from_secs(10), || {
        line().is_some()
    });
    let line = line().expect("listener line");
    // The head went out right after `came`: its second, or the next one on a slow machine.
    let stamps: Vec<String> = (0..2)
        .map(|s| clf(came + Duration::from_secs(s)))
        .map(|t| format!("[{}]", t))
        .collect();
    assert!(
        stamps.iter().any(|t| line.contains(t.as_str())),
        "stamped with the listener's start, one of {stamps:?}: {line}"
    );
    let secs: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("connected seconds at the end");
    assert!(secs >= 3, "connected seconds at the end: {line}");
}
