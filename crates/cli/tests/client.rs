//! `agora-client` against the real server: pulling an MP3 mount with ICY metadata (what a
//! relay does) after a title set through `/admin/metadata`, the title arriving in-band and
//! the audio decoding cleanly; a title changed mid-pull; typed refusals.

mod common;

use std::time::{Duration, Instant};

use agora_client::icy::IcyEvent;
use agora_client::pull::Pull;
use agora_client::{ClientError, Endpoint, Origin};
use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const FIRST: &str = "Q&A: 10% left";
const NEXT: &str = "Café ✓ – the next talk";

fn endpoint(url: &str) -> Endpoint {
    Endpoint::new(url.parse().expect("url"))
}

/// Pulls until `done` says so (given the audio so far and the titles seen), failing after 30 s.
async fn pull_until(
    pull: &mut Pull,
    audio: &mut Vec<u8>,
    titles: &mut Vec<Option<String>>,
    mut done: impl FnMut(&[u8], &[Option<String>]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(audio, titles) {
        assert!(
            Instant::now() < deadline,
            "pulled {} bytes, titles {titles:?}",
            audio.len()
        );
        match pull.next().await.expect("the stream goes on") {
            Some(IcyEvent::Audio(a)) => audio.extend_from_slice(&a),
            Some(IcyEvent::Metadata(m)) => titles.push(m.title),
            None => panic!("the stream ended"),
        }
    }
}

#[test]
fn a_pulled_mp3_mount_brings_its_titles_and_decodes() {
    let agora = Agora::start();
    let (_, file) = fixture("mp3");
    let _source = ffmpeg_push(&agora, &file, "/talk.mp3", "mp3", false);
    agora.wait_mount("/talk.mp3");
    let admin = endpoint(&format!(
        "http://source:{SOURCE_PW}@{}/talk.mp3",
        agora.addr
    ));
    let (mut audio, mut titles) = (Vec::new(), Vec::new());
    runtime().block_on(async {
        agora_client::meta::set_title(&admin, FIRST)
            .await
            .expect("title set");
        let mut pull = Pull::connect(&endpoint(&agora.url("/talk.mp3")))
            .await
            .expect("pull");
        assert_eq!(pull.content_type.as_deref(), Some("audio/mpeg"));
        assert_eq!(pull.metaint, Some(16000));
        assert_eq!(pull.info.name.as_deref(), Some("Agora test"));
        assert_eq!(pull.info.description.as_deref(), Some("A test stream"));
        assert_eq!(pull.info.genre.as_deref(), Some("Test"));
        // The first block a listener gets is the current title.
        pull_until(&mut pull, &mut audio, &mut titles, |_, t| !t.is_empty()).await;
        assert_eq!(titles[0].as_deref(), Some(FIRST));
        // A title changed mid-stream arrives at the next block.
        agora_client::meta::set_title(&admin, NEXT)
            .await
            .expect("title set");
        pull_until(&mut pull, &mut audio, &mut titles, |a, t| {
            a.len() >= 64 * 1024 && t.last().is_some_and(|t| t.as_deref() == Some(NEXT))
        })
        .await;
    });
    // Nothing but the two titles, in order.
    assert!(
        titles
            .iter()
            .all(|t| [Some(FIRST), Some(NEXT)].contains(&t.as_deref())),
        "{titles:?}"
    );
    let dir = TempDir::new("client-pull");
    let out = dir.path().join("pulled.mp3");
    std::fs::write(&out, &audio).expect("write");
    assert_eq!(decode_errors(&out), "");
}

#[test]
fn refusals_are_typed_by_origin() {
    let agora = Agora::start();
    runtime().block_on(async {
        let e = Pull::connect(&endpoint(&agora.url("/nothing.mp3")))
            .await
            .expect_err("no such mount");
        assert!(matches!(e, ClientError::Refused(404, _)), "{e}");
        assert_eq!(e.origin(), Origin::Server);
        let e = agora_client::meta::set_title(
            &endpoint(&format!("http://source:wrong@{}/nothing.mp3", agora.addr)),
            "x",
        )
        .await
        .expect_err("wrong password");
        assert!(matches!(e, ClientError::Unauthorized), "{e}");
        let e = Pull::connect(&endpoint(&format!(
            "http://127.0.0.1:{}/a.mp3",
            free_port()
        )))
        .await
        .expect_err("nothing listens");
        assert_eq!(e.origin(), Origin::Network);
    });
}
