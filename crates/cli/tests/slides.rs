//! Slides (#15), server side, against the real binary: PNG, WebP and JPEG slides made by
//! ffmpeg uploaded with the source's and the admin's password, listed, fetched, announced on
//! `/events` and kept across a restart; every bad upload refused with its code while a
//! listener of another mount decodes on and the server's memory stays put; the per-mount
//! count dropping the oldest.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::events::SlideEvents;
use common::*;

/// A slide made by ffmpeg from its test pattern: (bytes, content type).
fn make_image(dir: &Path, name: &str, size: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=s={size}"))
        .args(["-frames:v", "1"])
        .args(args)
        .arg(&path)
        .output()
        .expect("ffmpeg must be installed");
    assert!(
        out.status.success(),
        "making {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).expect("read image")
}

/// An upload and what it should come to: (credentials, query, body, type, extension, width,
/// height).
type Upload<'a> = (&'a str, &'a str, &'a [u8], &'a str, &'a str, u64, u64);
/// A bad upload: (query, headers, body, status).
type BadUpload<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);

/// `PUT /admin/slides?QUERY` with `body`: (status, head, body).
fn put_slide(
    addr: SocketAddr,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    send(
        addr,
        "PUT",
        &format!("/admin/slides?{query}"),
        headers,
        body,
    )
}

/// A GET of the whole answer (HTTP/1.0).
fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    http_get(addr, path, &[])
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

struct Images {
    png: Vec<u8>,
    webp: Vec<u8>,
    jpg: Vec<u8>,
    _dir: TempDir,
}

fn images() -> Images {
    let dir = TempDir::new("agora-slide-images");
    Images {
        png: make_image(dir.path(), "x.png", "1920x1080", &[]),
        webp: make_image(
            dir.path(),
            "x.webp",
            "1280x720",
            &["-c:v", "libwebp", "-lossless", "1"],
        ),
        jpg: make_image(dir.path(), "x.jpg", "800x600", &[]),
        _dir: dir,
    }
}

#[test]
fn slides_are_stored_listed_served_announced_and_kept_across_a_restart() {
    let img = images();
    let data = TempDir::new("agora-data");
    let toml = format!(
        "[server]\ndata-dir = {:?}\n",
        data.path().display().to_string()
    );
    let agora = Agora::start_with_config(&toml);
    let events = SlideEvents::open(agora.addr);
    let source = source_auth();
    let admin = admin_auth();
    let m = "mount=/live.webm";
    let cases: [Upload; 3] = [
        (
            &source,
            "at=12.345&key=p1",
            &img.png,
            "image/png",
            "png",
            1920,
            1080,
        ),
        (
            &admin,
            "at=3.5&key=w1",
            &img.webp,
            "image/webp",
            "webp",
            1280,
            720,
        ),
        (&source, "at=20", &img.jpg, "image/jpeg", "jpg", 800, 600),
    ];
    let mut stored = Vec::new();
    for (auth, q, bytes, ctype, ext, w, h) in cases {
        let (code, head, body) = put_slide(
            agora.addr,
            &format!("{m}&{q}"),
            &[("Authorization", auth), ("Content-Type", ctype)],
            bytes,
        );
        assert_eq!(code, 201, "{head}{}", String::from_utf8_lossy(&body));
        let v = json_body(&body);
        let id = v["id"].as_u64().expect("id");
        assert_eq!(v["type"], ctype);
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(w), Some(h))
        );
        assert_eq!(v["bytes"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(v["url"], format!("/slides/live.webm/{id}.{ext}"));
        let event = events.wait(&format!("/live.webm {id}"), |e| {
            e["mount"] == "/live.webm" && e["id"] == id
        });
        assert_eq!((&event["at"], &event["url"]), (&v["at"], &v["url"]));
        stored.push((v, bytes.to_vec(), ctype));
    }
    assert_eq!(stored[0].0["at"].as_f64(), Some(12.345));
    // A resend with a known key: the same slide, nothing stored, nothing announced.
    let (code, _, body) = put_slide(
        agora.addr,
        &format!("{m}&at=12.345&key=p1"),
        &[("Authorization", &source)],
        &img.png,
    );
    assert_eq!(code, 200);
    assert_eq!(json_body(&body), stored[0].0);
    // A slide of another mount as a marker: once it is announced, the resend would have been.
    let (code, _, body) = put_slide(
        agora.addr,
        "mount=/other.ogg&at=0",
        &[("Authorization", &admin)],
        &img.jpg,
    );
    assert_eq!(code, 201);
    let id = json_body(&body)["id"].as_u64().expect("id");
    events.wait(&format!("/other.ogg {id}"), |e| {
        e["mount"] == "/other.ogg" && e["id"] == id
    });
    let live = events
        .all()
        .into_iter()
        .filter(|e| e["mount"] == "/live.webm")
        .count();
    assert_eq!(live, 3, "{:?}", events.all());

    // Listed by moment: the WebP (3.5), the PNG (12.345), the JPEG (20).
    let check_list = |agora: &Agora| {
        let (code, _, body) = get(agora.addr, "/api/v1/slides/live.webm");
        assert_eq!(code, 200);
        let list = json_body(&body);
        assert_eq!(list["mount"], "/live.webm");
        let want: Vec<&serde_json::Value> = [1, 0, 2].iter().map(|&i| &stored[i].0).collect();
        let got: Vec<&serde_json::Value> =
            list["slides"].as_array().expect("list").iter().collect();
        assert_eq!(got, want);
        for (v, bytes, ctype) in &stored {
            let (code, head, body) = get(agora.addr, v["url"].as_str().expect("url"));
            assert_eq!(code, 200, "{head}");
            assert!(&body == bytes, "the bytes of {} differ", v["url"]);
            assert_eq!(header(&head, "content-type"), Some(*ctype));
            assert_eq!(
                header(&head, "cache-control"),
                Some("public, max-age=31536000, immutable"),
                "{head}"
            );
            assert!(
                header(&head, "etag").is_some_and(|e| e.starts_with('"')),
                "{head}"
            );
            assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
            assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
        }
    };
    check_list(&agora);
    let (code, _, _) = get(agora.addr, "/api/v1/slides/never.webm");
    assert_eq!(code, 404);
    let id = stored[0].0["id"].as_u64().expect("id");
    for path in [
        format!("/slides/live.webm/{id}.webp"),
        format!("/slides/live.webm/{}.png", id + 1000),
        "/slides/live.webm/x.png".to_string(),
        "/slides/nothing.webm/1.png".to_string(),
    ] {
        assert_eq!(get(agora.addr, &path).0, 404, "{path}");
    }
    let (_, _, metrics) = get(agora.addr, "/metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("agora_slides_stored_total 4"), "{metrics}");

    // A restart with the same data-dir: the same slides, ids, URLs and bytes.
    drop(agora);
    let agora = Agora::start_with_config(&toml);
    check_list(&agora);
    assert!(!agora.log_has(&["slide left out"]), "{}", agora.log());
}

#[test]
fn bad_uploads_are_refused_while_a_listener_decodes_and_memory_stays_put() {
    let img = images();
    let agora = Agora::start_with_config("[server]\nmax-slide-bytes = 1048576\n");
    assert!(
        agora.log_has(&["slides and decks are kept in memory only"]),
        "{}",
        agora.log()
    );
    let (_, file) = fixture("opus");
    let _push = ffmpeg_push(&agora, &file, "/radio.opus", "ogg", false);
    agora.wait_mount("/radio.opus");
    let url = agora.url("/radio.opus");
    let listener = std::thread::spawn(move || assert_decodes(&url, 5));
    let rss_before = rss_kib(agora.pid());
    let source = source_auth();
    let wrong = format!("Basic {}", b64("source:wrong"));
    let admin = admin_auth();
    let ok = "mount=/live.webm&at=1";
    let cases: Vec<BadUpload> = vec![
        (ok, vec![("Authorization", &wrong)], img.png.clone(), 401),
        (ok, vec![], img.png.clone(), 401),
        (
            ok,
            vec![("Authorization", &source)],
            b"<svg/>".repeat(100),
            415,
        ),
        (
            ok,
            vec![("Authorization", &source)],
            xorshift_bytes(100_000, 7),
            415,
        ),
        // A PNG signature with a header cut short.
        (
            ok,
            vec![("Authorization", &source)],
            img.png[..20].to_vec(),
            415,
        ),
        (
            "mount=/live.webm&at=-1",
            vec![("Authorization", &source)],
            img.png.clone(),
            400,
        ),
        (
            "mount=/live.webm&at=nan",
            vec![("Authorization", &source)],
            img.png.clone(),
            400,
        ),
        (
            "mount=/live.webm&at=inf",
            vec![("Authorization", &source)],
            img.png.clone(),
            400,
        ),
        (
            "mount=/live.webm",
            vec![("Authorization", &source)],
            img.png.clone(),
            400,
        ),
        (
            "mount=/live.webm&at=1&key=a%2Fb",
            vec![("Authorization", &source)],
            img.png.clone(),
            400,
        ),
        (
            "mount=live.webm&at=1",
            vec![("Authorization", &admin)],
            img.png.clone(),
            400,
        ),
        (
            "mount=/slides/x&at=1",
            vec![("Authorization", &admin)],
            img.png.clone(),
            400,
        ),
        (
            "mount=/a/../b&at=1",
            vec![("Authorization", &admin)],
            img.png.clone(),
            400,
        ),
        (
            ok,
            vec![("Authorization", &source), ("Sec-Fetch-Site", "cross-site")],
            img.png.clone(),
            403,
        ),
        (
            ok,
            vec![("Authorization", &source), ("Transfer-Encoding", "chunked")],
            Vec::new(),
            411,
        ),
    ];
    for (query, headers, body, want) in &cases {
        let (code, head, text) = put_slide(agora.addr, query, headers, body);
        assert_eq!(
            code,
            *want,
            "{query} {headers:?}: {head}{}",
            String::from_utf8_lossy(&text)
        );
    }
    // Too large: refused from its head, the body never taken in. 100 MiB announced, 256 KiB
    // sent, the answer read while the rest is never sent.
    for _ in 0..20 {
        let (code, head, _) = put_slide(
            agora.addr,
            ok,
            &[("Authorization", &source), ("Content-Length", "104857600")],
            &xorshift_bytes(256 * 1024, 3),
        );
        assert_eq!(code, 413, "{head}");
    }
    // A source may not take a mount under /slides.
    let (_s, head) = raw_source(agora.addr, "/slides/live.webm/1.png", "SOURCE", &[]);
    assert!(head.starts_with("HTTP/1.0 400"), "{head}");
    let rss_after = rss_kib(agora.pid());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Nothing was stored.
    assert_eq!(get(agora.addr, "/api/v1/slides/live.webm").0, 404);
    listener.join().expect("the listener decoded");
}

#[test]
fn a_mount_over_its_slide_count_drops_the_oldest() {
    let dir = TempDir::new("agora-small-slides");
    let small: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            make_image(
                dir.path(),
                &format!("{i}.png"),
                &format!("{}x64", 64 + i),
                &[],
            )
        })
        .collect();
    let agora = Agora::start_with_config("[server]\nmax-slides-per-mount = 3\n");
    let source = source_auth();
    let mut urls = Vec::new();
    for (i, png) in small.iter().enumerate() {
        let (code, _, body) = put_slide(
            agora.addr,
            &format!("mount=%2FSaal%20%C3%9C%2Ftalk.webm&at={i}"),
            &[("Authorization", &source)],
            png,
        );
        assert_eq!(code, 201);
        urls.push(json_body(&body)["url"].as_str().expect("url").to_string());
    }
    // A mount name with a space and an accent: percent-encoded in its URLs, as a playlist's.
    assert!(
        urls[0].starts_with("/slides/Saal%20%C3%9C/talk.webm/"),
        "{}",
        urls[0]
    );
    let (_, _, body) = get(agora.addr, "/api/v1/slides/Saal%20%C3%9C/talk.webm");
    assert_eq!(json_body(&body)["mount"], "/Saal Ü/talk.webm");
    let listed: Vec<String> = json_body(&body)["slides"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["url"].as_str().expect("url").to_string())
        .collect();
    assert_eq!(listed, urls[1..]);
    assert_eq!(get(agora.addr, &urls[0]).0, 404);
    assert_eq!(get(agora.addr, &urls[3]).2, small[3]);
    agora.wait_log(&["slide dropped to make room", "talk.webm"]);

    // A reload applies a lowered limit from the mount's next upload; a new data-dir waits
    // for a restart.
    std::fs::write(
        agora.config_path(),
        "[server]\nmax-slides-per-mount = 2\ndata-dir = \"/nonexistent/agora\"\n",
    )
    .expect("rewrite config");
    send_signal(agora.pid(), "HUP");
    agora.wait_log(&["not applied yet", "[server] data-dir"]);
    let (code, _, _) = put_slide(
        agora.addr,
        "mount=%2FSaal%20%C3%9C%2Ftalk.webm&at=9",
        &[("Authorization", &source)],
        &small[0],
    );
    assert_eq!(code, 201);
    let (_, _, body) = get(agora.addr, "/api/v1/slides/Saal%20%C3%9C/talk.webm");
    let slides = json_body(&body)["slides"].as_array().expect("list").len();
    assert_eq!(slides, 2);
}
