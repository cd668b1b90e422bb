//! `--slides-mount`: the slides as a video stream of their own, for players outside the browser
//! (VLC, mpv), pushed to a second mount on every server.
//!
//! ```text
//!  Publisher ─► (at, image) ─► convert: a short ffmpeg per slide (scale, letterbox, raw YUV)
//!                                  │
//!                                  ▼
//!  feed: frame n at stream time n + LAG = the latest slide with at ≤ n + 0.5 (black before)
//!                                  │ raw yuv420p frames on a pipe, 1 a second
//!                                  ▼
//!  encoder ffmpeg: VP8 (1 fps, keyframe every 2 s, ≤ 300 kbit/s) ─► WebM on stdout
//!                                  │
//!                                  ▼
//!  Demuxer ─► Void padding up to FLOOR ─► Hub ─┬─► target task ─► server A, the slides mount
//!                                              └─► target task ─► server B, the slides mount
//! ```
//!
//! **Why raw frames on a pipe.** The encoder is the one long-lived child, so its input is
//! made such that it cannot fail: frames of exactly the size it was told, in the one pixel
//! format, written by the cast. Anything that can go wrong with a slide (a folder's JPEG after
//! PNGs, an image of another size, a corrupt file) goes wrong in the short-lived ffmpeg that
//! converts that slide, once, and costs that slide only (logged; the previous one stays).
//! Images on the encoder's pipe (`-f image2pipe`) would put all of that in the long-lived
//! child: its decoder is chosen by the first image, and a size change reconfigures its
//! filters mid-stream. A `loop` filter over a file would need the file swapped under a running
//! ffmpeg. And the cast, not ffmpeg, decides what each frame shows, which is what puts the
//! frames on the stream's clock. A 1280x720 frame is 1.4 MB: 1.4 MB/s through a pipe, no
//! decode.
//!
//! **The clock.** Frame `n` has the timestamp `n` s (raw input at 1 fps: ffmpeg numbers the
//! frames), so the slides mount's time is the main stream's time when frame `n` shows the slide
//! of the main stream's second `n`. It is written when the main stream is at `n + LAG` (time 0
//! is the moment the cast read the encoder's first byte, the slides' own 0, see
//! [`crate::slides`]), and shows the latest slide whose `at` is at most `n + 0.5`: the slide
//! picked at `T` is on the frames from `T` rounded to the nearest second, within 0.5 s. `LAG`
//! covers the time a slide takes from its moment to here (the picker's settling, the detector's
//! heartbeat, the conversion); a slide later than that is shown on the next frame written,
//! late rather than never. Writes are on a fixed schedule (missed ticks are caught up at once),
//! so the frame count follows the clock whatever the encoder's speed. The slides mount runs
//! `LAG` plus a frame (the WebM muxer holds a Cluster until the next frame) behind the live
//! edge; a player of both mounts shows them on the same timeline.
//!
//! **Cost.** VP8 realtime, `-cpu-used 8`, one thread, constrained quality (`-crf 10`) capped
//! at 300 kbit/s: a still slide costs its keyframes (every 2 s, for a late joiner) and
//! near-empty frames between. Text slides changing every 15 s: 138 kbit/s (simple) to 274
//! kbit/s (dense), about 1% of one core (`scripts/bench-slides-mount`, BENCHMARKS.md).
//!
//! **Isolation.** As the slides: the encoder is a child of its own, its failure ends the slides
//! video (logged), never the cast; the pushes are the cast's own [`crate::target`] tasks, each
//! reconnecting on its own and resuming at a keyframe.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agora_format::{Chunk, Demuxer, Event};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::capture::ffmpeg_once;
use super::image::ImageKind;
use crate::hub::Hub;
use crate::target::{self, TargetConfig, TargetStats};

/// The slides video's default frame size.
pub const DEFAULT_SIZE: (u32, u32) = (1280, 720);

/// How far behind the main stream's live edge a frame is written: the time a slide may take
/// from its moment to the video (the picker's 0.5 s settling, up to a second or two of the
/// detector's heartbeat and output, the conversion; a folder's 0.5 s poll).
const LAG: Duration = Duration::from_secs(3);

/// One frame a second: a slide is a still, and a player joining needs only the next keyframe.
const FRAME: Duration = Duration::from_secs(1);

/// How long the end of the cast waits for the slides video's pushes to drain.
const DRAIN: Duration = Duration::from_secs(3);

/// What `--slides-mount` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlidesMount {
    /// The mount on every server, e.g. `/live-slides.webm`.
    pub mount: String,
    /// The frame size (the slide scaled to fit, letterboxed).
    pub size: (u32, u32),
}

impl SlidesMount {
    /// `--slides-mount MOUNT` with the default size; a leading `/` is added when missing.
    pub fn new(mount: &str) -> SlidesMount {
        let mount = if mount.starts_with('/') {
            mount.to_string()
        } else {
            format!("/{mount}")
        };
        SlidesMount {
            mount,
            size: DEFAULT_SIZE,
        }
    }

    /// Checks the values; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let m = &self.mount;
        if m.len() < 2
            || m.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(format!(
                "--slides-mount {m:?}: expected a mount path such as /live-slides.webm"
            ));
        }
        let (w, h) = self.size;
        if w < 16 || h < 16 || w % 2 == 1 || h % 2 == 1 || w > 3840 || h > 2160 {
            return Err(format!(
                "--slides-mount-size {w}x{h}: width and height must be even, from 16x16 to 3840x2160"
            ));
        }
        Ok(())
    }

    /// The main target's server, credentials, TLS and settings, on the slides mount.
    fn target(&self, main: &TargetConfig) -> TargetConfig {
        let mut t = main.clone();
        t.endpoint.url.mount = self.mount.clone();
        t.meta.name = main.meta.name.as_ref().map(|n| format!("{n} (slides)"));
        t
    }
}

/// A slide for the video: its time on the stream's timeline and its image.
#[derive(Debug)]
pub(crate) struct Shown {
    pub(crate) at: f64,
    pub(crate) kind: ImageKind,
    pub(crate) image: Bytes,
}

/// The running slides video.
#[derive(Debug)]
pub(crate) struct Video {
    /// The slides to show, in the order published.
    pub(crate) feed: mpsc::UnboundedSender<Shown>,
    /// Per server, in the order of the cast's targets.
    pub(crate) stats: Vec<Arc<TargetStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Video {
    /// Starts the encoder and a push to the slides mount of each of `targets`. Frames start
    /// once `live_start` has the main stream's time 0; `stop` ends the video (the cast is
    /// ending): the encoder finishes its stream, the pushes send what they have.
    pub(crate) fn start(
        cfg: &SlidesMount,
        targets: &[TargetConfig],
        live_start: watch::Receiver<Option<Instant>>,
        stop: CancellationToken,
    ) -> Result<Video, crate::CastError> {
        let args = encoder_args(cfg.size);
        tracing::debug!(args = %args.join(" "), "starting the slides video encoder");
        let mut child = Command::new("ffmpeg")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => crate::CastError::FfmpegMissing,
                _ => crate::CastError::Encoder(format!("cannot start the slides video: {e}")),
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(crate::CastError::Encoder(
                "the slides video encoder has no pipes".into(),
            ));
        };
        let hub = Arc::new(Hub::new());
        let target_stop = CancellationToken::new();
        let mut stats = Vec::new();
        let mut pushes = Vec::new();
        for t in targets {
            let (s, task) = target::spawn(cfg.target(t), hub.clone(), target_stop.clone());
            stats.push(s);
            pushes.push(task);
        }
        let (feed, shown) = mpsc::unbounded_channel();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let converter = tokio::spawn(convert(shown, frames_tx, cfg.size));
        let written = Arc::new(AtomicU64::new(0));
        let feeder = tokio::spawn(feed_frames(
            stdin,
            cfg.size,
            frames,
            live_start,
            written.clone(),
            stop.clone(),
        ));
        let last_error = tokio::spawn(async move {
            let mut last = None;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!("slides video ffmpeg: {line}");
                last = Some(line);
            }
            last
        });
        let task = tokio::spawn(async move {
            let pumped = pump(stdout, &hub).await;
            hub.close();
            feeder.abort();
            converter.abort();
            let status = child.wait().await;
            let last = last_error.await.ok().flatten();
            // A cast that ended before its stream started never fed the encoder: nothing to
            // say about how that ffmpeg ended.
            let fed = written.load(Ordering::Relaxed) > 0 || !stop.is_cancelled();
            let failed = match (&pumped, &status) {
                (Err(e), _) => Some(e.clone()),
                (_, Ok(s)) if !s.success() && fed => Some(format!(
                    "ffmpeg exited ({s}): {}",
                    last.as_deref().unwrap_or("no message")
                )),
                (_, Err(e)) => Some(format!("waiting for ffmpeg: {e}")),
                _ if !stop.is_cancelled() => Some("ffmpeg ended its stream".into()),
                _ => None,
            };
            if let Some(why) = failed {
                tracing::error!("slides: the slides video stopped (the cast goes on): {why}");
            }
            tracing::info!(
                frames = written.load(Ordering::Relaxed),
                "slides video ended"
            );
            // The pushes send what they have, briefly, then stop.
            let drain = async {
                for p in &mut pushes {
                    let _ = p.await;
                }
            };
            if tokio::time::timeout(DRAIN, drain).await.is_err() {
                target_stop.cancel();
            }
        });
        Ok(Video { feed, stats, task })
    }

    /// Waits for the video's end (after the `stop` given to [`Video::start`]), at most `grace`;
    /// then the encoder is killed and the pushes dropped.
    pub(crate) async fn finish(mut self, grace: Duration) {
        drop(self.feed);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!("slides: the slides video did not end in time; stopped");
            self.task.abort();
        }
    }
}

/// Turns each slide into a frame, in order; a slide that cannot be converted is skipped.
async fn convert(
    mut shown: mpsc::UnboundedReceiver<Shown>,
    frames: mpsc::UnboundedSender<(f64, Bytes)>,
    size: (u32, u32),
) {
    while let Some(s) = shown.recv().await {
        match to_frame(s.kind, s.image, size).await {
            Ok(f) => {
                if frames.send((s.at, f)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(at = s.at, "slides video: this slide is not shown: {e}"),
        }
    }
}

/// Writes a frame a second to the encoder, on the main stream's clock (see the module
/// documentation), until `stop`; then closes the encoder's input, which ends its stream.
async fn feed_frames(
    mut stdin: ChildStdin,
    size: (u32, u32),
    mut frames: mpsc::UnboundedReceiver<(f64, Bytes)>,
    mut live_start: watch::Receiver<Option<Instant>>,
    written: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let start = tokio::select! {
        s = live_start.wait_for(Option::is_some) => match s {
            Ok(s) => *s,
            Err(_) => None,
        },
        _ = stop.cancelled() => None,
    };
    let Some(start) = start else {
        return;
    };
    let mut current = black_frame(size);
    let mut current_at = f64::NEG_INFINITY;
    let mut waiting: VecDeque<(f64, Bytes)> = VecDeque::new();
    // Missed ticks fire at once (the default): frame n is never written before its time, and
    // never skipped.
    let mut tick = tokio::time::interval_at((start + LAG).into(), FRAME);
    let mut n: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some((at, frame)) = frames.recv() => {
                if at + 0.5 < f64::from(n) {
                    tracing::info!(
                        at,
                        frame = n,
                        "slides video: a slide came after its frame was written: shown from this frame"
                    );
                }
                waiting.push_back((at, frame));
                continue;
            }
            _ = stop.cancelled() => return,
        }
        // The slide shown at `t` is the last whose time is at most `t` (the watch page's and
        // the archive's rule), the frame's time rounded to the nearest.
        let t = f64::from(n) + 0.5;
        waiting.retain(|(at, frame)| {
            if *at > t {
                return true;
            }
            if *at >= current_at {
                current_at = *at;
                current = frame.clone();
            }
            false
        });
        // Not interrupted by `stop`: half a frame would end the encoder's input with an error.
        // (An encoder that stopped reading is the end's grace's business: see `finish`.)
        if let Err(e) = stdin.write_all(&current).await {
            tracing::debug!("slides video: the encoder's input closed: {e}");
            return;
        }
        written.fetch_add(1, Ordering::Relaxed);
        n = n.saturating_add(1);
    }
}

/// Reads the encoder's WebM, frames it, pads it to [`FLOOR`], and hands it to the pushes.
async fn pump(mut out: ChildStdout, hub: &Hub) -> Result<(), String> {
    let mut demux = Demuxer::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Bytes since the last keyframe Cluster began (none before the first).
    let mut since_key: Option<usize> = None;
    loop {
        buf.reserve(64 * 1024);
        let n = out
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("reading ffmpeg: {e}"))?;
        if n == 0 {
            break;
        }
        demux.push(&buf.split().freeze());
        loop {
            match demux.poll() {
                Ok(Some(ev)) => {
                    if let Some(f) = demux.format() {
                        hub.set_format(f, &demux.info());
                    }
                    if let Event::Chunk(c) = &ev {
                        if c.sync {
                            if let Some(pad) = since_key.and_then(|n| void(FLOOR - n.min(FLOOR))) {
                                hub.publish(Event::Chunk(Chunk {
                                    bytes: pad,
                                    sync: false,
                                }));
                            }
                            since_key = Some(0);
                        }
                        since_key = since_key.map(|n| n + c.bytes.len());
                    }
                    hub.publish(ev);
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => return Err(format!("its stream cannot be framed: {e}")),
                Err(e) => tracing::warn!("slides video: {e}"),
            }
        }
    }
    if let Some(Event::Chunk(c)) = demux.finish() {
        hub.publish(Event::Chunk(c));
    }
    Ok(())
}

/// The least the slides video sends between two keyframes (2 s): 100 kbit/s. A plain slide
/// (a title, a few words on a flat colour) encodes to a few kB a second, and what players and
/// servers do at a join is counted in bytes: VLC 3.0 showed its first picture of such a stream
/// after 33 s (it reads about 28 kB first), and a server's burst (Agora's 64 KiB) reached a
/// minute back, so a player joined on a slide long gone. Text slides are above the floor
/// already (121 kbit/s measured); below it, an EBML Void element (which every Matroska reader
/// skips) before the next keyframe's Cluster makes up the difference.
const FLOOR: usize = 25_000;

/// An EBML Void element of `len` bytes in all (`None` below the 9 bytes of its head).
fn void(len: usize) -> Option<Bytes> {
    let body = len.checked_sub(9)?;
    let mut v = Vec::with_capacity(len);
    v.push(0xEC);
    // The size as an 8-byte VINT: marker 0x01, then 7 bytes.
    v.push(0x01);
    v.extend_from_slice(&(body as u64).to_be_bytes()[1..]);
    v.resize(len, 0);
    Some(Bytes::from(v))
}

/// A black frame: what the video shows before the first slide.
fn black_frame((w, h): (u32, u32)) -> Bytes {
    let luma = w as usize * h as usize;
    let mut f = vec![16u8; luma];
    f.resize(frame_len((w, h)), 128);
    Bytes::from(f)
}

/// Bytes of a yuv420p frame.
fn frame_len((w, h): (u32, u32)) -> usize {
    w as usize * h as usize * 3 / 2
}

/// The slide as one raw yuv420p frame of `size`, made by a short-lived ffmpeg.
async fn to_frame(kind: ImageKind, image: Bytes, size: (u32, u32)) -> Result<Bytes, String> {
    let out = ffmpeg_once(frame_args(kind, size), image, "the conversion").await?;
    if out.stdout.len() != frame_len(size) {
        return Err(format!(
            "ffmpeg ({} bytes out): {}",
            out.stdout.len(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Bytes::from(out.stdout))
}

/// ffmpeg's arguments that make one raw yuv420p frame of `size` from the image on standard
/// input: scaled to fit (Lanczos: sharper text than bicubic when shrinking), the aspect kept,
/// centred on black.
fn frame_args(kind: ImageKind, (w, h): (u32, u32)) -> Vec<String> {
    let demuxer = match kind {
        ImageKind::Png => "png_pipe",
        ImageKind::Webp => "webp_pipe",
        ImageKind::Jpeg => "jpeg_pipe",
    };
    let filter = format!(
        "scale={w}:{h}:force_original_aspect_ratio=decrease:flags=lanczos,pad={w}:{h}:-1:-1:color=black,format=yuv420p"
    );
    [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        demuxer,
        "-i",
        "pipe:0",
        "-frames:v",
        "1",
        "-vf",
        &filter,
        "-f",
        "rawvideo",
        "pipe:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The encoder's command line: raw frames on standard input at 1 fps, WebM VP8 on standard
/// output.
fn encoder_args((w, h): (u32, u32)) -> Vec<String> {
    let size = format!("{w}x{h}");
    [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-video_size",
        &size,
        "-framerate",
        "1",
        // A raw input has nothing to find out: without these ffmpeg reads three frames (3 s)
        // before it starts.
        "-probesize",
        "32",
        "-analyzeduration",
        "0",
        "-fpsprobesize",
        "0",
        "-i",
        "pipe:0",
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-threads",
        "1",
        // Constrained quality: a still slide settles at little more than its keyframes; a
        // busy one (a photograph, a video on a slide) is capped.
        "-crf",
        "10",
        "-b:v",
        "300k",
        // A keyframe every 2 frames (2 s): where a player joining late starts.
        "-g",
        "2",
        "-f",
        "webm",
        "-live",
        "1",
        // A Cluster per frame, handed over as soon as written: the muxer holds a Cluster until
        // the next frame, so the default (a Cluster a second or more) would hold two.
        "-cluster_time_limit",
        "0",
        "-flush_packets",
        "1",
        "pipe:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_lines_are_pinned() {
        assert_eq!(
            encoder_args((1280, 720)).join(" "),
            "-hide_banner -nostdin -loglevel error -f rawvideo -pix_fmt yuv420p -video_size \
             1280x720 -framerate 1 -probesize 32 -analyzeduration 0 -fpsprobesize 0 -i pipe:0 \
             -c:v libvpx -deadline realtime -cpu-used 8 -threads 1 -crf 10 -b:v 300k -g 2 \
             -f webm -live 1 -cluster_time_limit 0 -flush_packets 1 pipe:1"
        );
        assert_eq!(
            frame_args(ImageKind::Jpeg, (640, 360)).join(" "),
            "-hide_banner -nostdin -loglevel error -f jpeg_pipe -i pipe:0 -frames:v 1 -vf \
             scale=640:360:force_original_aspect_ratio=decrease:flags=lanczos,\
             pad=640:360:-1:-1:color=black,format=yuv420p -f rawvideo pipe:1"
        );
    }

    #[test]
    fn void_elements_have_the_length_asked() {
        assert_eq!(void(8), None);
        assert_eq!(
            void(9).as_deref(),
            Some(&[0xEC, 1, 0, 0, 0, 0, 0, 0, 0][..])
        );
        let v = void(300).expect("void");
        assert_eq!(v.len(), 300);
        assert_eq!(&v[..9], &[0xEC, 1, 0, 0, 0, 0, 0, 1, 35]);
    }

    #[test]
    fn a_black_frame_is_a_whole_yuv420p_frame() {
        let f = black_frame((4, 2));
        assert_eq!(
            &f[..],
            &[16, 16, 16, 16, 16, 16, 16, 16, 128, 128, 128, 128]
        );
    }

    #[test]
    fn mounts_and_sizes_are_checked() {
        assert_eq!(SlidesMount::new("s.webm").mount, "/s.webm");
        assert!(SlidesMount::new("/s.webm").validate().is_ok());
        assert!(SlidesMount::new("/").validate().is_err());
        assert!(SlidesMount::new("/a b").validate().is_err());
        let odd = SlidesMount {
            size: (1279, 720),
            ..SlidesMount::new("/s.webm")
        };
        assert!(odd.validate().is_err());
    }

    #[test]
    fn the_slides_target_is_the_main_one_on_the_slides_mount() {
        let main = TargetConfig {
            endpoint: agora_client::Endpoint::new(
                "https://source:pw@host:8443/live.webm"
                    .parse()
                    .expect("url"),
            ),
            meta: agora_client::push::StreamMeta {
                name: Some("Talk".into()),
                ..Default::default()
            },
            title: Some("Now".into()),
            retry_refused: true,
        };
        let t = SlidesMount::new("/live-slides.webm").target(&main);
        assert_eq!(
            t.endpoint.url.to_string(),
            "https://host:8443/live-slides.webm"
        );
        assert_eq!(t.endpoint.url.password.as_deref(), Some("pw"));
        assert!(t.endpoint.url.tls);
        assert_eq!(t.meta.name.as_deref(), Some("Talk (slides)"));
        assert_eq!(t.title.as_deref(), Some("Now"));
        assert!(t.retry_refused);
    }
}
