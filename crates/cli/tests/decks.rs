//! Slide decks (#15, item 3), against the real binary and Debian's poppler-utils: a PDF
//! written at test time (a page per slide, each showing its number as bars) uploaded with
//! `agora slides upload`, rendered to page images of the expected size, the PDF offered
//! back; stepping by the POST command moves the mount's current slide at the live stream's
//! time (the slides list and `/events` show the page); a corrupt PDF, a file that is not a
//! PDF, an encrypted one, one with too many pages and an oversized one refused with their reasons while a
//! listener of the mount decodes on and the server's memory stays bounded.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::events::SlideEvents;
use common::pdf::{make_encrypted_pdf, make_pdf};
use common::*;

/// Width and height of an image, by ffprobe decoding it.
fn probe_image(bytes: &[u8], dir: &std::path::Path, name: &str) -> (u64, u64) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write image");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{name}: {err}"
    );
    let (w, h) = text.trim().split_once(',').expect("width,height");
    (w.parse().expect("w"), h.parse().expect("h"))
}

/// `POST /admin/decks/step?mount=/live.webm&page=PAGE` with the source's password.
fn step(addr: SocketAddr, page: &str) -> serde_json::Value {
    let (code, head, body) = send(
        addr,
        "POST",
        &format!("/admin/decks/step?mount=/live.webm&page={page}"),
        &[("Authorization", &source_auth())],
        b"",
    );
    assert_eq!(code, 200, "{head}{}", String::from_utf8_lossy(&body));
    json_body(&body)
}

#[test]
fn a_pdf_becomes_page_images_and_steps_move_the_mounts_slide() {
    let dir = TempDir::new("agora-decks");
    let agora = Agora::start();
    let (_, file) = fixture("webm");
    // ffmpeg -re sends the file from its time 0 in real time: the stream's live edge is about
    // the time since it started.
    let pushed = std::time::Instant::now();
    let _push = ffmpeg_push(&agora, &file, "/live.webm", "webm", false);
    agora.wait_mount("/live.webm");
    let events = SlideEvents::open(agora.addr);
    let pdf = make_pdf(5);
    let path = dir.path().join("talk.pdf");
    std::fs::write(&path, &pdf).expect("write pdf");
    // Stepping before a deck: a clear 404.
    let (code, _, body) = send(
        agora.addr,
        "POST",
        "/admin/decks/step?mount=/live.webm&page=1",
        &[("Authorization", &source_auth())],
        b"",
    );
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));

    // The command line, with the password from the environment as `agora cast` takes it.
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["slides", "upload", "--server"])
        .arg(format!("http://{}", agora.addr))
        .args(["--mount", "/live.webm"])
        .arg(&path)
        .env("AGORA_SOURCE_PASSWORD", SOURCE_PW)
        .output()
        .expect("agora slides upload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deck = json_body(&out.stdout);
    let pages = deck["pages"].as_array().expect("pages").clone();
    assert_eq!(pages.len(), 5, "{deck}");
    assert_eq!(deck["name"], "talk.pdf");
    let mut images = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        let url = p["url"].as_str().expect("url");
        let (code, head, bytes) = http_get(agora.addr, url, &[]);
        assert_eq!(code, 200, "{url}: {head}");
        assert!(head.contains("immutable"), "{head}");
        assert_eq!(
            probe_image(&bytes, dir.path(), &format!("p{i}.png")),
            (1920, 1080),
            "{url}"
        );
        images.push(bytes);
    }
    // Five different pictures.
    for i in 1..images.len() {
        assert_ne!(images[i], images[i - 1], "pages {i} and {}", i + 1);
    }
    // The PDF, as uploaded.
    let (code, head, back) = http_get(agora.addr, deck["pdf"].as_str().expect("pdf"), &[]);
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("application/pdf"), "{head}");
    assert_eq!(back, pdf);
    // The API says the same.
    let (code, _, api) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
    assert_eq!(code, 200);
    assert_eq!(json_body(&api)["id"], deck["id"]);

    // The mount's live edge, as the server reads it from the stream's Cluster timecodes.
    let stream_time = || {
        let (_, _, api) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
        json_body(&api)["stream_time"].as_f64()
    };
    wait_until("a stream time", Duration::from_secs(20), || {
        stream_time().is_some()
    });
    // Stepping: page 3, then next (4), prev (3), first (1).
    let mut last_at = 0.0;
    for (page, want) in [("3", 3), ("next", 4), ("prev", 3), ("first", 1)] {
        let before = stream_time().expect("stream time");
        let r = step(agora.addr, page);
        let after = stream_time().expect("stream time");
        assert_eq!(r["page"], want, "{r}");
        let slide = &r["slide"];
        let url = slide["url"].as_str().expect("slide url");
        // The mount's current slide is the page: announced, listed, the page's image.
        let e = events.wait(url, |e| e["url"] == url);
        assert_eq!(e["mount"], "/live.webm");
        let (_, _, bytes) = http_get(agora.addr, url, &[]);
        assert_eq!(bytes, images[want - 1], "step {page}");
        // At the live edge of the stream, which moves on.
        let at = slide["at"].as_f64().expect("at");
        assert!(at >= last_at, "{at} after {last_at}");
        assert!(
            before <= at && at <= after,
            "slide at {at}, stream from {before} to {after}"
        );
        // ffmpeg -re sends the file from its time 0 in real time, never ahead of it: the live
        // edge is at most the time since the push started (behind it by a Cluster, and by
        // ffmpeg's start-up, which a loaded machine makes longer).
        let wall = pushed.elapsed().as_secs_f64();
        assert!(
            at <= wall + 0.5 && at > wall - 10.0,
            "slide at {at}, {wall} s after the push started"
        );
        last_at = at;
        let (_, _, list) = http_get(agora.addr, "/api/v1/slides/live.webm", &[]);
        let list = json_body(&list);
        let newest = list["slides"]
            .as_array()
            .expect("slides")
            .iter()
            .max_by(|a, b| a["at"].as_f64().partial_cmp(&b["at"].as_f64()).expect("at"))
            .cloned()
            .expect("a slide");
        assert_eq!(newest["url"], url, "{list}");
        let (_, _, api) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
        assert_eq!(json_body(&api)["page"], want);
    }
    // A page out of range, and a mount that is not live.
    let (code, _, _) = send(
        agora.addr,
        "POST",
        "/admin/decks/step?mount=/live.webm&page=6",
        &[("Authorization", &admin_auth())],
        b"",
    );
    assert_eq!(code, 400);
    let (code, _, _) = send(
        agora.addr,
        "POST",
        "/admin/decks/step?mount=/live.webm&page=2",
        &[("Authorization", &basic_auth("source", "wrong"))],
        b"",
    );
    assert_eq!(code, 401);
}

/// A refused deck: (what, body, extra headers, status, what its message says).
type BadDeck<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);

#[test]
fn bad_decks_are_refused_with_reasons_while_a_listener_decodes() {
    let agora =
        Agora::start_with_config("[server]\nmax-deck-bytes = 1048576\nmax-deck-pages = 4\n");
    let (_, file) = fixture("webm");
    let _push = ffmpeg_push(&agora, &file, "/live.webm", "webm", false);
    agora.wait_mount("/live.webm");
    let url = agora.url("/live.webm");
    let listener = std::thread::spawn(move || assert_decodes(&url, 5));
    let rss_before = rss_kib(agora.pid());
    let source = source_auth();
    let target = "/admin/decks?mount=/live.webm";
    let good = make_pdf(3);
    let mut corrupt = good[..good.len() / 2].to_vec();
    corrupt.extend_from_slice(&xorshift_bytes(4000, 5));
    let cases: Vec<BadDeck> = vec![
        ("corrupt", corrupt, vec![], 422, "cannot be read"),
        (
            "not a PDF",
            xorshift_bytes(50_000, 9),
            vec![],
            415,
            "not a PDF",
        ),
        ("encrypted", make_encrypted_pdf(), vec![], 422, "encrypted"),
        ("too many pages", make_pdf(5), vec![], 422, "at most 4"),
        (
            "cross-site",
            good.clone(),
            vec![("Sec-Fetch-Site", "cross-site")],
            403,
            "another site",
        ),
    ];
    for (what, body, extra, want, says) in &cases {
        let mut headers = vec![("Authorization", source.as_str())];
        headers.extend(extra.iter().copied());
        let (code, head, text) = send(agora.addr, "PUT", target, &headers, body);
        let text = String::from_utf8_lossy(&text);
        assert_eq!(code, *want, "{what}: {head}{text}");
        assert!(text.contains(says), "{what}: {text}");
    }
    // Too large: refused from its head, the body never taken in (100 MiB announced).
    for _ in 0..10 {
        let (code, head, text) = send(
            agora.addr,
            "PUT",
            target,
            &[("Authorization", &source), ("Content-Length", "104857600")],
            &xorshift_bytes(256 * 1024, 3),
        );
        assert_eq!(code, 413, "{head}");
        assert!(String::from_utf8_lossy(&text).contains("max-deck-bytes"));
    }
    // Nothing kept; a good one still goes through after all that.
    assert_eq!(http_get(agora.addr, "/api/v1/decks/live.webm", &[]).0, 404);
    let (code, head, text) = send(
        agora.addr,
        "PUT",
        target,
        &[("Authorization", &source)],
        &good,
    );
    assert_eq!(code, 201, "{head}{}", String::from_utf8_lossy(&text));
    let rss_after = rss_kib(agora.pid());
    assert!(
        rss_after < rss_before + 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    listener.join().expect("the listener decoded");
}

/// `PUT /admin/decks?mount=MOUNT` of a PDF of `pages` pages with the source's password:
/// (status, the answer's JSON or error).
fn upload(addr: SocketAddr, mount: &str, pages: usize) -> (u16, serde_json::Value) {
    let (code, head, body) = send(
        addr,
        "PUT",
        &format!("/admin/decks?mount={mount}&name=talk.pdf"),
        &[("Authorization", &source_auth())],
        &make_pdf(pages),
    );
    assert!(!body.is_empty(), "{head}");
    (code, json_body(&body))
}

/// A deck's files as served: the PDF, then each page.
fn deck_files(addr: SocketAddr, deck: &serde_json::Value) -> Vec<Vec<u8>> {
    let mut urls = vec![deck["pdf"].as_str().expect("pdf").to_string()];
    for p in deck["pages"].as_array().expect("pages") {
        urls.push(p["url"].as_str().expect("page url").to_string());
    }
    urls.iter()
        .map(|url| {
            let (code, head, bytes) = http_get(addr, url, &[]);
            assert_eq!(code, 200, "{url}: {head}");
            bytes
        })
        .collect()
}

/// Decks outlive a restart with `data-dir` (the same id, URLs, bytes and current page), and
/// all mounts' decks together stay within `max-deck-bytes-total`: one more is refused with
/// `507` and the reason, a mount's new deck replaces its old one within the bound.
#[test]
fn decks_are_kept_across_a_restart_and_bounded_in_total() {
    let data = TempDir::new("agora-deck-data");
    let toml = format!(
        "[server]\ndata-dir = {:?}\n",
        data.path().display().to_string()
    );
    let agora = Agora::start_with_config(&toml);
    let (_, file) = fixture("webm");
    let push = ffmpeg_push(&agora, &file, "/live.webm", "webm", false);
    agora.wait_mount("/live.webm");
    let (code, deck) = upload(agora.addr, "/live.webm", 3);
    assert_eq!(code, 201, "{deck}");
    let files = deck_files(agora.addr, &deck);
    wait_until("a stream time", Duration::from_secs(20), || {
        let (_, _, api) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
        json_body(&api)["stream_time"].as_f64().is_some()
    });
    assert_eq!(step(agora.addr, "2")["page"], 2);
    drop(push);

    // A restart with the same data-dir: the same deck, its files and its page.
    drop(agora);
    let agora = Agora::start_with_config(&toml);
    assert!(
        agora.log_has(&["deck read back", "pages=3"]),
        "{}",
        agora.log()
    );
    let (code, _, api) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
    assert_eq!(code, 200);
    let back = json_body(&api);
    assert_eq!(back["id"], deck["id"], "{back}");
    assert_eq!(back["pdf"], deck["pdf"], "{back}");
    assert_eq!(back["page"], 2, "{back}");
    assert_eq!(deck_files(agora.addr, &back), files);

    // The total: what the deck holds, and room for less than a second one.
    let held = files.iter().map(Vec::len).sum::<usize>();
    let bounded = format!(
        "{toml}max-deck-bytes = {0}\nmax-deck-bytes-total = {0}\n",
        held * 3 / 2
    );
    std::fs::write(agora.config_path(), &bounded).expect("rewrite the configuration");
    send_signal(agora.pid(), "HUP");
    agora.wait_log(&["SIGHUP: configuration reloaded"]);
    let (code, refused) = upload(agora.addr, "/other.webm", 3);
    assert_eq!(code, 507, "{refused}");
    let why = refused["error"].as_str().unwrap_or_default();
    assert!(why.contains("max-deck-bytes-total"), "{why}");
    // The mount's own deck is replaced within the bound, and the new one is kept.
    let (code, second) = upload(agora.addr, "/live.webm", 2);
    assert_eq!(code, 201, "{second}");
    assert_ne!(second["id"], deck["id"]);
    drop(agora);
    let agora = Agora::start_with_config(&bounded);
    let (_, _, api) = http_get(agora.addr, "/api/v1/decks/live.webm", &[]);
    let back = json_body(&api);
    assert_eq!(back["id"], second["id"], "{back}");
    assert_eq!(back["pages"].as_array().map(Vec::len), Some(2), "{back}");
    assert!(back["page"].is_null(), "{back}");
    let (code, _, _) = http_get(agora.addr, deck["pdf"].as_str().expect("pdf"), &[]);
    assert_eq!(code, 404, "the replaced deck's files are gone");
    let folder = std::fs::read_dir(data.path().join("decks"))
        .expect("decks folder")
        .filter_map(Result::ok)
        .next()
        .expect("a mount's folder")
        .path();
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .expect("the mount's folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let id = second["id"].as_u64().expect("id");
    let mut want = vec![
        format!("{id}-1.png"),
        format!("{id}-2.png"),
        format!("{id}.pdf"),
        "deck.json".to_string(),
    ];
    want.sort();
    assert_eq!(names, want);
}

/// MP3 and AAC frames carry no time: the server counts their durations from the source's
/// first frame, so a deck steps on a radio mount too (it was `409`), at a moment that moves
/// on with the stream as the wall clock does (ffmpeg -re sends in real time); when the source
/// is gone, a step is refused (`409`) instead of stamped with a past moment.
#[test]
fn a_deck_steps_on_mp3_and_aac_mounts_at_the_frames_time() {
    let agora = Agora::start_with_config("[mount-defaults]\ngrace-period-secs = 30\n");
    let (_, mp3) = fixture("mp3");
    let (_, aac) = fixture("aac");
    for (mount, file, muxer) in [("/radio.mp3", &mp3, "mp3"), ("/radio.aac", &aac, "adts")] {
        let push = ffmpeg_push(&agora, file, mount, muxer, false);
        let pushed = std::time::Instant::now();
        agora.wait_mount(mount);
        let (code, deck) = upload(agora.addr, mount, 2);
        assert_eq!(code, 201, "{deck}");
        let api = format!("/api/v1/decks{mount}");
        let stream_time = || json_body(&http_get(agora.addr, &api, &[]).2)["stream_time"].as_f64();
        wait_until("a stream time", Duration::from_secs(20), || {
            stream_time().is_some_and(|t| t > 2.0)
        });
        let step_to = |page: &str| {
            send(
                agora.addr,
                "POST",
                &format!("/admin/decks/step?mount={mount}&page={page}"),
                &[("Authorization", &source_auth())],
                b"",
            )
        };
        let before = stream_time().expect("stream time");
        let (code, head, body) = step_to("2");
        let after = stream_time().expect("stream time");
        assert_eq!(
            code,
            200,
            "{mount}: {head}{}",
            String::from_utf8_lossy(&body)
        );
        let at = json_body(&body)["slide"]["at"].as_f64().expect("at");
        assert!(
            before <= at && at <= after,
            "{mount}: {before} <= {at} <= {after}"
        );
        // Real time, give or take what ffmpeg sends ahead (its -re keeps it within a second
        // or two) and the frames a source had not sent yet.
        let wall = pushed.elapsed().as_secs_f64();
        assert!(
            (at - wall).abs() < 3.0,
            "{mount}: at {at} s, {wall} s of wall clock"
        );
        drop(push);
        agora.wait_log(&["source gone", &format!("mount={mount} ")]);
        let (code, _, body) = step_to("1");
        assert_eq!(code, 409, "{mount}: {}", String::from_utf8_lossy(&body));
    }
}
