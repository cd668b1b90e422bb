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
        let (_, file) = fixture("vorbis");
        let mut ogg = std::fs::read(file).expect("fixture");
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
