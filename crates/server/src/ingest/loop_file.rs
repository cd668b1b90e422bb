//! `loop-file`: the server itself is the source of a mount, playing a media file in a loop
//! (a "we'll be right back" slate that needs no source client).
//!
//! ```text
//!   file (read and cut at load: agora_format::playout) ──pass 0, 1, 2..── paced ──► Ingest ─► mount
//! ```
//!
//! The file was read, checked and cut into timed units when the configuration was loaded
//! (`config.rs`: a file `--check-config` accepts is a file this plays). A task per such mount
//! claims it like a source and feeds each unit to [`Ingest`] at the moment the stream's own
//! timestamps give it (its end on the timeline, from the task's start), pass after pass, so
//! listeners, burst, format-aware joins, fallbacks and metrics are those of any source. How a
//! pass follows the previous one (frames continue; a new Ogg chain; WebM Clusters with
//! timecodes moved on) is [`Playout::pass`]'s business.
//!
//! **The mount is the file's.** The task holds the claim for as long as the server runs, so a
//! source client that pushes to the mount is refused (`409`, the log says why): the switch
//! between a live stream and the slate is a live mount's `fallback` naming this one.
//! `/admin/killsource` ends the pass being played: listeners are held for the grace period as
//! after any source, and the loop starts again from its beginning a second later.
//!
//! **Pacing:** units go out at their end time, as a live encoder would write them. When the
//! task falls more than [`MAX_BEHIND`] behind (the runtime stalled, the machine slept), the
//! timeline is moved on rather than caught up in a burst.

use std::sync::Arc;
use std::time::Duration;

use agora_format::playout::Playout;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LoopMedia;
use crate::ingest::feed::Ingest;
use crate::state::Shared;
use crate::stream::ending::SourceEnd;
use crate::stream::mount::{ClaimError, Mount, StreamMeta};

/// Wait before the loop starts again after it ended (killed by the admin).
const RESTART: Duration = Duration::from_secs(1);
/// Wait before another try when the mount could not be claimed (the mount limit).
const RETRY: Duration = Duration::from_secs(10);
/// How far behind its timeline the player may fall before it skips ahead instead.
const MAX_BEHIND: Duration = Duration::from_secs(1);

/// Play `media` into the mount at `path` until `stop` is cancelled (the server shuts down, or
/// a reload removed or changed the mount's `loop-file`).
pub(crate) async fn run(
    path: String,
    media: LoopMedia,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let file = media.path.display().to_string();
    let mut refused_logged = false;
    loop {
        let meta = StreamMeta {
            user_agent: Some(format!("agora loop-file {file}")),
            ..StreamMeta::default()
        };
        let wait = match shared.registry.claim(
            &path,
            || shared.config().policy_for(&path),
            meta,
            "loop-file".into(),
        ) {
            Err(e) => {
                if !refused_logged {
                    let why = match e {
                        ClaimError::InUse => "the mount is in use",
                        ClaimError::TooMany => "the server's mount limit (max-mounts) is reached",
                    };
                    tracing::warn!(mount = %path, %file, "loop-file waiting: {why}");
                    refused_logged = true;
                }
                RETRY
            }
            Ok(claim) => {
                refused_logged = false;
                tracing::info!(mount = %path, %file, period_ms = media.playout.period().as_millis() as u64, "loop-file playing");
                let end = play(&claim.mount, &media.playout, &shared, &stop).await;
                shared.metrics.source_ended(&end);
                drop(claim);
                if matches!(end, SourceEnd::Shutdown) {
                    return;
                }
                tracing::warn!(mount = %path, %file, reason = %end, "loop-file stopped; it starts again in a second");
                RESTART
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Feed pass after pass of `playout` into `mount`, each unit at its moment, until the server
/// shuts down or the admin kills the source.
async fn play(
    mount: &Mount,
    playout: &Playout,
    shared: &Shared,
    stop: &CancellationToken,
) -> SourceEnd {
    let kill = mount.source_kill_token();
    let mut ingest = Ingest::new(mount, &shared.logs);
    let mut start = Instant::now();
    for pass in 0u64.. {
        for (at, bytes) in playout.pass(pass) {
            let due = start + at;
            let now = Instant::now();
            if now > due + MAX_BEHIND {
                start += now - due;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(start + at) => {}
                _ = stop.cancelled() => return SourceEnd::Shutdown,
                _ = kill.cancelled() => return SourceEnd::Killed,
            }
            if let Err(end) = ingest.feed(&bytes) {
                return end;
            }
        }
    }
    SourceEnd::Finished
}
