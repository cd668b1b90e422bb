//! The URL space against the real binary (issue #13): what a source may name a mount, how
//! request paths are decoded, and the built-in routes answering as themselves whatever a source
//! with the right password tries.

mod common;

use std::io::Read;

use common::*;

/// The built-in pages and assets, as (path, status, body).
fn pages(agora: &Agora) -> Vec<(&'static str, u16, Vec<u8>)> {
    let admin = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    [
        "/",
        "/index.html",
        "/watch/x",
        "/watch//evil.host/x",
        "/assets/agora.js",
        "/assets/watch.js",
        "/assets/admin.js",
        "/admin/",
        "/admin/index.html",
    ]
    .into_iter()
    .map(|p| {
        let (code, _, body) = http_get(agora.addr, p, &[("Authorization", &admin)]);
        (p, code, body)
    })
    .collect()
}

#[test]
fn reserved_and_malformed_mount_names_are_refused_and_the_pages_stay() {
    let agora = Agora::start();
    let before = pages(&agora);
    assert!(before.iter().all(|(_, code, _)| *code == 200), "{before:?}");
    let long = format!("/{}.mp3", "a".repeat(300));
    let cases: &[(&str, &str)] = &[
        ("/admin/", "the server's own"),
        ("/admin/index.html", "the server's own"),
        ("/admin/metadata", "the server's own"),
        ("/index.html", "the server's own"),
        ("/watch/x", "the server's own"),
        ("/watch//evil.host/x", "the server's own"),
        ("/assets/agora.js", "the server's own"),
        ("/assets/watch.js", "the server's own"),
        ("/api/v1/mounts", "the server's own"),
        ("/events", "the server's own"),
        ("/slides", "the server's own"),
        ("/slides/live.webm/1.png", "the server's own"),
        ("/metrics", "the server's own"),
        ("/status-json.xsl", "the server's own"),
        ("/live.mp3.m3u", "the server's own"),
        ("/live.mp3.xspf", "the server's own"),
        ("/%61dmin/x", "the server's own"),
        ("//evil.example/x.mp3", "segment"),
        ("/a/../b.mp3", "segment"),
        ("/%2e%2e/admin/", "segment"),
        ("/live/", "segment"),
        ("/", "names a mount"),
        ("/a%0Db.mp3", "control characters"),
        ("/a%0D%0AX-Evil:%201.mp3", "control characters"),
        ("/a%1B[31mb.mp3", "control characters"),
        ("/a%00b.mp3", "control characters"),
        ("/a%09b.mp3", "control characters"),
        ("/a%7Fb.mp3", "control characters"),
        ("/a%2525b.mp3", "none of"),
        ("/a%ZZb.mp3", "none of"),
        ("/a%C3b.mp3", "is UTF-8"),
        (long.as_str(), "at most"),
    ];
    for (name, why) in cases {
        for method in ["SOURCE", "PUT"] {
            let (mut s, head) =
                raw_source(agora.addr, name, method, &[("Content-Type", "audio/mpeg")]);
            assert_eq!(
                head.split_whitespace().nth(1),
                Some("400"),
                "{method} {name}:\n{head}"
            );
            let mut body = Vec::new();
            let _ = s.read_to_end(&mut body);
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(why), "{method} {name}: {body:?}");
        }
    }
    assert!(agora.sources().is_empty(), "{:?}", agora.sources());
    assert_eq!(pages(&agora), before, "the pages changed");
    // The first refusals are logged, with the path's control characters escaped; the rest
    // from this peer are counted in a summary (#13: logs bounded per peer).
    let log = agora.log();
    assert!(log.matches("source refused").count() >= 5, "{log}");
    assert!(
        !log.contains('\u{1b}') && !log.contains("X-Evil: 1\n") && !log.contains('\0'),
        "{log}"
    );
}

/// Public answers may be read by any site's scripts, as Icecast's are; the admin page and
/// commands may not.
#[test]
fn only_public_answers_allow_other_origins() {
    let agora = Agora::start();
    let admin = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    for (path, public) in [
        ("/status-json.xsl", true),
        ("/api/v1/mounts", true),
        ("/", true),
        ("/admin/", false),
        ("/admin/stats", false),
        ("/admin/listmounts", false),
    ] {
        let (code, head, _) = http_get(agora.addr, path, &[("Authorization", &admin)]);
        assert_eq!(code, 200, "{path}: {head}");
        assert_eq!(
            head.contains("Access-Control-Allow-Origin: *\r\n"),
            public,
            "{path}: {head}"
        );
    }
}

#[test]
fn a_percent_encoded_mount_is_decoded_once_for_sources_and_listeners() {
    let agora = Agora::start();
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/caf%C3%A9.mp3", fx.muxer, true);
    agora.wait_mount("/café.mp3");
    let head = read_stream_bytes(agora.addr, "/caf%C3%A9.mp3", 8192);
    assert!(head.starts_with("HTTP/1.0 200 "), "{head}");
    assert!(
        head.contains("X-Content-Type-Options: nosniff\r\n"),
        "{head}"
    );
    assert_decodes(&agora.url("/caf%C3%A9.mp3"), 3);
    // Encoded twice is another name, which no mount has.
    let (code, _, _) = http_get(agora.addr, "/caf%25C3%25A9.mp3", &[]);
    assert_eq!(code, 404);
}

#[test]
fn playlists_of_a_mount_with_spaces_and_accents_hold_a_url_players_open() {
    let agora = Agora::start();
    let (fx, file) = fixture("mp3");
    let _src = ffmpeg_push(&agora, &file, "/Saal%20%C3%9C.mp3", fx.muxer, true);
    agora.wait_mount("/Saal Ü.mp3");
    let (code, _, m3u) = http_get(agora.addr, "/Saal%20%C3%9C.mp3.m3u", &[]);
    assert_eq!(code, 200);
    let m3u = String::from_utf8_lossy(&m3u).to_string();
    let url = m3u.trim();
    assert!(url.ends_with("/Saal%20%C3%9C.mp3"), "{m3u}");
    let (code, _, xspf) = http_get(agora.addr, "/Saal%20%C3%9C.mp3.xspf", &[]);
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&xspf).contains("/Saal%20%C3%9C.mp3</location>"),
        "{}",
        String::from_utf8_lossy(&xspf)
    );
    // What a player opens: the URL in the playlist as fetched by a real client.
    let out = std::process::Command::new("curl")
        .args(["-sS", &format!("{}.m3u", agora.url("/Saal%20%C3%9C.mp3"))])
        .output()
        .expect("curl");
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(url, agora.url("/Saal%20%C3%9C.mp3"));
    assert_decodes(&url, 3);
}

/// #14: the watch page is what other sites embed, so any site may frame it; no other page
/// may be framed (the admin page inside another site's page is a clickjacking tool), said
/// both ways (`frame-ancestors` and `X-Frame-Options`).
#[test]
fn only_the_watch_page_may_be_framed_by_other_sites() {
    let agora = Agora::start();
    let admin = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    for (path, frameable) in [
        ("/watch/live.webm", true),
        ("/watch/live.webm?embed", true),
        ("/", false),
        ("/admin/", false),
        ("/assets/watch.js", false),
    ] {
        let (code, head, _) = http_get(agora.addr, path, &[("Authorization", &admin)]);
        assert_eq!(code, 200, "{path}: {head}");
        let csp = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Security-Policy: "))
            .unwrap_or_else(|| panic!("{path}: no CSP: {head}"));
        assert_eq!(
            !csp.contains("frame-ancestors 'none'") && !head.contains("X-Frame-Options"),
            frameable,
            "{path}: {head}"
        );
        if !frameable {
            assert!(head.contains("X-Frame-Options: DENY\r\n"), "{path}: {head}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {head}");
        }
    }
}

/// #14: browsers ask every server for `/favicon.ico`; it was a 404 on every page load. It is a
/// small icon now, and the pages link the same icon as SVG.
#[test]
fn the_server_has_an_icon() {
    let agora = Agora::start();
    let (code, head, ico) = http_get(agora.addr, "/favicon.ico", &[]);
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("Content-Type: image/x-icon\r\n"), "{head}");
    // An ICO directory of one image, a PNG.
    assert!(ico.starts_with(&[0, 0, 1, 0, 1, 0]), "{ico:?}");
    assert_eq!(&ico[22..26], b"\x89PNG", "{ico:?}");
    assert!(ico.len() < 2048, "{} bytes", ico.len());
    let (code, head, svg) = http_get(agora.addr, "/assets/favicon.svg", &[]);
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("Content-Type: image/svg+xml\r\n"), "{head}");
    assert!(
        svg.starts_with(b"<svg"),
        "{}",
        String::from_utf8_lossy(&svg)
    );
    for page in ["/", "/watch/x"] {
        let (_, _, html) = http_get(agora.addr, page, &[]);
        let html = String::from_utf8_lossy(&html);
        assert!(
            html.contains("<link rel=\"icon\" href=\"/assets/favicon.svg\""),
            "{page}: {html}"
        );
    }
}
