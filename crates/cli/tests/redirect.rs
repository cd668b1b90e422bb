//! Spreading listeners over edges (#11): edges announce themselves when they poll the origin's
//! mount list (`[master] announce`), the origin probes them and sends listeners to the least
//! loaded healthy edge that carries the mount with `302 Found`, always or when full. Real
//! processes on loopback; the multi-host version, with links cut, is `netns.rs`.

mod common;

use std::time::Duration;

use common::*;

/// The origin's `/admin/relays.json`.
fn board(origin: &Agora) -> serde_json::Value {
    let (code, _, body) = http_get(
        origin.addr,
        "/admin/relays.json",
        &[("Authorization", &admin_auth())],
    );
    assert_eq!(code, 200);
    serde_json::from_slice(&body).expect("relays JSON")
}

/// The edge (its URL) at `url` on the origin's board, if known.
fn edge_on_board(origin: &Agora, url: &str) -> Option<serde_json::Value> {
    board(origin)["edges"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == url).cloned())
}

/// Where the origin sends a new listener of `mount`: the `Location` of its 302, or `None`
/// when it serves the listener itself (the connection is closed either way).
fn sent_to(origin: &Agora, mount: &str) -> Option<String> {
    let (s, head) = open_listener(origin.addr, mount);
    drop(s);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    match code {
        200 => None,
        302 => Some(
            head.lines()
                .find_map(|l| l.strip_prefix("Location: "))
                .expect("a Location")
                .trim()
                .to_string(),
        ),
        other => panic!("unexpected answer {other}: {head}"),
    }
}

fn edge_config(origin: &Agora, port: u16) -> String {
    format!(
        "[master]\nurl = \"http://relay:relay-pw@{}/\"\ninterval-secs = 1\n\
         announce = \"http://127.0.0.1:{port}\"\n",
        origin.addr
    )
}

#[test]
fn listeners_go_to_the_least_loaded_healthy_edge() {
    let origin = Agora::start_with_config(
        "[auth]\nrelay-password = \"relay-pw\"\n\
         [[mount]]\npath = \"/live.ogg\"\nredirect = \"always\"\n\
         [[mount]]\npath = \"/full.ogg\"\nmax-listeners = 1\n",
    );
    let (f, path) = fixture("theora");
    let _live = ffmpeg_push(&origin, &path, "/live.ogg", f.muxer, false);
    let _full = ffmpeg_push(&origin, &path, "/full.ogg", f.muxer, false);
    origin.wait_mount("/live.ogg");
    origin.wait_mount("/full.ogg");
    // No edge yet: the origin serves the listener itself, whatever the mode.
    assert_eq!(sent_to(&origin, "/live.ogg"), None);

    let (p1, p2) = (free_port(), free_port());
    let e1 = Agora::start_at(&format!("127.0.0.1:{p1}"), &edge_config(&origin, p1));
    let e2 = Agora::start_at(&format!("127.0.0.1:{p2}"), &edge_config(&origin, p2));
    let (u1, u2) = (
        format!("http://127.0.0.1:{p1}/"),
        format!("http://127.0.0.1:{p2}/"),
    );
    for u in [&u1, &u2] {
        wait_until(
            &format!("the origin to probe {u} and see both mounts"),
            Duration::from_secs(30),
            || {
                edge_on_board(&origin, u).is_some_and(|e| {
                    e["healthy"] == true && e["mounts"].as_array().is_some_and(|m| m.len() == 2)
                })
            },
        );
    }
    // The edges' own pulls were not redirected: they count as relays on the origin.
    let stats = board(&origin);
    assert_eq!(stats["edges"][0]["max_listeners"], 16000, "{stats}");

    // ffmpeg asked for the origin's mount follows the redirect and decodes from the edge.
    assert_decodes(&origin.url("/live.ogg"), 3);
    // Least loaded first: held listeners alternate between the two empty edges.
    let mut held = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..4 {
        let to = sent_to(&origin, "/live.ogg").expect("redirected");
        let base = if to.starts_with(&u1[..u1.len() - 1]) {
            &e1
        } else {
            &e2
        };
        assert!(to.ends_with("/live.ogg"), "{to}");
        let (s, head) = open_listener(base.addr, "/live.ogg");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        held.push(Drain::spawn(s));
        sent.push(base.addr.port());
    }
    let count = |p: u16| sent.iter().filter(|&&x| x == p).count();
    assert!(
        count(p1) >= 1 && count(p2) >= 1,
        "both edges get listeners: {sent:?}"
    );

    // A mount in the default mode is served here until it is full, then sent to an edge.
    let (s, head) = open_listener(origin.addr, "/full.ogg");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    held.push(Drain::spawn(s));
    assert!(
        sent_to(&origin, "/full.ogg").is_some_and(|to| to.ends_with("/full.ogg")),
        "the full mount redirects"
    );

    // e2 loaded by listeners of its own: the origin learns it and sends the next ones to e1.
    for _ in 0..6 {
        let (s, _) = open_listener(e2.addr, "/live.ogg");
        held.push(Drain::spawn(s));
    }
    wait_until(
        "the origin to see e2's load",
        Duration::from_secs(20),
        || edge_on_board(&origin, &u2).is_some_and(|e| e["listeners"].as_u64() >= Some(8)),
    );
    for _ in 0..3 {
        let to = sent_to(&origin, "/live.ogg").expect("redirected");
        assert!(to.starts_with(&u1[..u1.len() - 1]), "{to} should be e1");
    }

    // e1 gone: within seconds the origin sends nobody there.
    drop(e1);
    wait_until(
        "the origin to stop trusting e1",
        Duration::from_secs(10),
        || edge_on_board(&origin, &u1).is_none_or(|e| e["healthy"] == false),
    );
    for _ in 0..3 {
        let to = sent_to(&origin, "/live.ogg").expect("redirected");
        assert!(to.starts_with(&u2[..u2.len() - 1]), "{to} should be e2");
    }
    // Metrics count the redirects.
    let (_, _, metrics) = http_get(origin.addr, "/metrics", &[]);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("agora_redirects_total 12"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("redirect"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains(&format!("agora_edge_healthy{{edge=\"{u2}\"}} 1")));
    for (d, port) in held.iter().zip(&sent) {
        if *port == p2 {
            assert_eq!(d.ended(), None, "e2's listeners stay");
        }
    }
}

/// A bad announcement is ignored and logged; the mount list is answered all the same.
#[test]
fn a_bad_announcement_is_ignored() {
    let origin = Agora::start_with_config("[auth]\nrelay-password = \"relay-pw\"\n");
    let relay_auth = format!("Basic {}", b64("relay:relay-pw"));
    for q in [
        "rserver=evil/host&rport=8000",
        "rserver=h&rport=0",
        "rserver=h&rport=8000&interval=0",
        "rserver=h%0d%0aX:%20y&rport=8000",
    ] {
        let (code, _, _) = http_get(
            origin.addr,
            &format!("/admin/streamlist.txt?{q}"),
            &[("Authorization", &relay_auth)],
        );
        assert_eq!(code, 200, "{q}");
    }
    assert_eq!(board(&origin)["edges"], serde_json::json!([]));
    // Without the relay user's credentials nothing is announced.
    let (code, _, _) = http_get(origin.addr, "/admin/streamlist.txt?rserver=h&rport=1", &[]);
    assert_eq!(code, 401);
    assert_eq!(board(&origin)["edges"], serde_json::json!([]));
    assert!(origin.log().contains("edge announcement ignored"));
}
