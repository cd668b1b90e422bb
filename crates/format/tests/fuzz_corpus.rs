//! The committed fuzz corpora (`fuzz/corpus/<target>/`) replayed through the checks their fuzz
//! targets run (`agora_format::fuzz_checks`, shared with `fuzz/fuzz_targets/`), so every seed,
//! and every crash once minimised into a seed, is run by the ordinary test suite too.
//!
//! `request_head` is not here: its code is the server crate's, and so would be its replay.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use agora_format::fuzz_checks;

/// Runs `check` on every file of `fuzz/corpus/<target>/`, and fails naming each file that
/// panicked.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = common::crate_dir().join("../../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no corpus files", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files fail their fuzz target's checks: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn ogg_corpus() {
    replay("ogg", fuzz_checks::ogg);
}

#[test]
fn webm_corpus() {
    replay("webm", fuzz_checks::webm);
}

#[test]
fn mpeg_corpus() {
    replay("mpeg", fuzz_checks::mpeg);
}

#[test]
fn demuxer_corpus() {
    replay("demuxer", fuzz_checks::demuxer);
}

#[test]
fn ogg_title_corpus() {
    replay("ogg_title", fuzz_checks::ogg_title);
}

#[test]
fn ogg_comments_corpus() {
    replay("ogg_comments", fuzz_checks::ogg_comments);
}

#[test]
fn playout_corpus() {
    replay("playout", fuzz_checks::playout);
}
