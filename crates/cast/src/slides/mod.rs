//! Slides (`agora cast --slides SRC`): a second input watched for slide changes, each new
//! slide a sharp still placed on the live stream's timeline, archived, and uploaded to every
//! server.
//!
//! ```text
//!  capture card / screen / file ─► detector ffmpeg ─► candidates (PNG + pts)
//!                                  fps=5, select scene > T       │
//!  folder of exported images ─► watcher ─► new files (+ when seen)│
//!                                                                ▼
//!                         pick::Picker (settle, min interval) ─► WebP ─► Slide { at, key }
//!                                                                           │
//!                                         store: ARCHIVE/<name>_<stamp>_slides/ + index.tsv
//!                                               page: ARCHIVE/<name>_<stamp>.html (a player)
//!                                                                           │
//!                                               send: a queue and a task per server ─► PUT
//!                                                                           │
//!                   video (--slides-mount): the current slide at 1 fps ─► VP8 ─► a push per server
//! ```
//!
//! **The clock.** A slide's `at` is seconds on the stream's timeline: 0 is the live encoder's
//! first output. Both ffmpeg children start together and both read in real time, so a moment
//! on each child's clock is a wall-clock moment plus a constant: the stream's time 0 is taken
//! as the moment the cast read the encoder's first byte, and the detector's time 0 as the
//! earliest `line's arrival - pts` over the `showinfo` lines of the frames it analyses (five a
//! second, each printed as soon as it is decoded; see [`capture::detector`]). Then
//! `at = pts + (detector's 0 - stream's 0)`. Both estimates are late by what each child does
//! before its output (the encoder's setup on its first frame, a frame's decode); the tests,
//! with the same video as camera and slides, measure 0.05 to 0.08 s. A folder's image is
//! placed at the moment it was first listed (within the folder's 0.5 s poll).
//!
//! **Keys.** `<cast start, Unix seconds>-<index>-<at in ms>`: unique per cast and per slide,
//! the same for a resend, so a server never stores a slide twice.

pub mod capture;
pub mod image;
pub mod page;
pub mod pick;
pub mod send;
pub mod source;
pub mod store;
pub mod video;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use capture::Captured;
use image::{ImageKind, Slide};
use pick::{Candidate, Picker};
use send::SendStats;
use source::SlidesSource;
use store::Store;
use video::{Shown, SlidesMount, Video};

use crate::target::{TargetConfig, TargetStats};

/// Default scene-change threshold (ffmpeg's `scene` score, 0 to 1). Measured on 1920x1080
/// slides with added noise: a bullet line appearing on a white slide scores about 0.010, the
/// noise of a still picture about 0.0001; 0.004 takes the first and leaves the second.
pub const DEFAULT_THRESHOLD: f64 = 0.004;

/// Default minimum interval between two published slides.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(3);

/// What `--slides` asks.
#[derive(Debug, Clone)]
pub struct SlidesConfig {
    /// The slide input.
    pub source: SlidesSource,
    /// Scene-change score above which a frame is a candidate (0 to 1).
    pub threshold: f64,
    /// At most one slide per this interval (capture inputs; a folder's files are each a
    /// slide).
    pub min_interval: Duration,
    /// The slides as a video on a mount of their own (`--slides-mount`).
    pub mount: Option<SlidesMount>,
}

impl SlidesConfig {
    /// Checks the values; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!(
                "--slides-threshold {}: expected a scene-change score between 0 and 1 (e.g. {DEFAULT_THRESHOLD})",
                self.threshold
            ));
        }
        if self.min_interval > Duration::from_secs(3600) {
            return Err("--slides-min-interval: at most 3600 s".into());
        }
        if let Some(m) = &self.mount {
            m.validate()?;
        }
        match &self.source {
            SlidesSource::Folder(d) if !d.is_dir() => {
                Err(format!("--slides {}: not a folder", d.display()))
            }
            SlidesSource::File(p) if !p.is_file() => Err(format!(
                "--slides {}: no such file (inputs: v4l2:DEVICE, x11grab:DISPLAY, dir:FOLDER, ffmpeg:ARGS, or a video file)",
                p.display()
            )),
            _ => Ok(()),
        }
    }
}

/// What the slides did so far, for the status line.
#[derive(Debug)]
pub struct SlideStats {
    /// Slides published (archived and queued for the servers).
    pub captured: AtomicU64,
    /// Per server, in the order of the cast's targets.
    pub targets: Vec<Arc<SendStats>>,
    /// The slides video's push per server (`--slides-mount`), in the same order; empty
    /// without one.
    pub video: Vec<Arc<TargetStats>>,
}

/// The running slides of a cast.
#[derive(Debug)]
pub struct Slides {
    /// Counters.
    pub stats: Arc<SlideStats>,
    /// The archive folder, when there is one.
    pub dir: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
    send_stop: CancellationToken,
    video: Option<Video>,
}

impl Slides {
    /// Starts the capture, the archive folder (`archive`), a sender per target's server and,
    /// with [`SlidesConfig::mount`], the slides video to each server.
    /// With `page`, the player page is rewritten after each archived slide once the recording's
    /// path is known. `live_start` becomes the moment the live stream's first byte was read; `capture_stop`
    /// ends the capture and the slides video (the cast is ending). `key_prefix` is the cast's
    /// own part of each key.
    pub fn start(
        cfg: &SlidesConfig,
        archive: Option<PathBuf>,
        page: Option<PagePlan>,
        targets: &[TargetConfig],
        key_prefix: String,
        live_start: watch::Receiver<Option<Instant>>,
        capture_stop: CancellationToken,
    ) -> Result<Slides, crate::CastError> {
        let store = archive.map(Store::create).transpose()?;
        let dir = store.as_ref().map(|s| s.dir().to_path_buf());
        if let Some(d) = &dir {
            tracing::info!(path = %d.display(), "archiving slides");
        }
        let send_stop = CancellationToken::new();
        let mut txs = Vec::new();
        let mut stats = Vec::new();
        let mut senders = Vec::new();
        for t in targets {
            let (tx, rx) = mpsc::unbounded_channel();
            let (s, task) = send::spawn(t.endpoint.clone(), rx, send_stop.clone());
            txs.push(tx);
            stats.push(s);
            senders.push(task);
        }
        let video = cfg
            .mount
            .as_ref()
            .map(|m| Video::start(m, targets, live_start.clone(), capture_stop.clone()))
            .transpose()?;
        let stats = Arc::new(SlideStats {
            captured: AtomicU64::new(0),
            targets: stats,
            video: video.as_ref().map(|v| v.stats.clone()).unwrap_or_default(),
        });
        let (cap_tx, cap_rx) = mpsc::channel(16);
        let source = cfg.source.clone();
        let threshold = cfg.threshold;
        let capture = {
            let stop = capture_stop.clone();
            match source::detector_args(&source, cfg.threshold) {
                Some(args) => tokio::spawn(async move {
                    if let Err(e) = capture::detector(args, threshold, cap_tx, stop).await {
                        tracing::error!("slides: the capture failed, no more slides: {e}");
                    }
                }),
                None => {
                    let SlidesSource::Folder(d) = source else {
                        unreachable!("only a folder has no detector");
                    };
                    tokio::spawn(capture::folder(d, cap_tx, stop))
                }
            }
        };
        let publisher = Publisher {
            store,
            page,
            txs,
            stats: stats.clone(),
            key_prefix,
            live_start,
            detector_zero: None,
            next_index: 0,
            video: video.as_ref().map(|v| v.feed.clone()),
        };
        let min_interval = cfg.min_interval.as_secs_f64();
        let task = tokio::spawn(async move {
            publisher.run(cap_rx, min_interval).await;
            let _ = capture.await;
            for s in senders {
                let _ = s.await;
            }
        });
        Ok(Slides {
            stats,
            dir,
            task,
            send_stop,
            video,
        })
    }

    /// Waits for the last slides to be archived and sent, at most `grace` for the sending;
    /// what is still unsent then is given up (it is in the archive, when there is one). The
    /// slides video ends meanwhile.
    pub async fn finish(mut self, grace: Duration) {
        let video = self.video.take();
        let video = async move {
            if let Some(v) = video {
                v.finish(grace).await;
            }
        };
        tokio::join!(video, self.finish_sending(grace));
    }

    async fn finish_sending(&mut self, grace: Duration) {
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.send_stop.cancel();
            let _ = (&mut self.task).await;
            let left: u64 = self
                .stats
                .targets
                .iter()
                .map(|t| t.queued.load(Ordering::Relaxed))
                .sum();
            if left > 0 {
                tracing::warn!(
                    "{left} slide uploads were still waiting at the end of the cast (the archive keeps the slides)"
                );
            }
        }
    }
}

/// Turns candidates into slides: picking, the clock, WebP, archive, senders.
struct Publisher {
    store: Option<Store>,
    page: Option<PagePlan>,
    txs: Vec<mpsc::UnboundedSender<Slide>>,
    stats: Arc<SlideStats>,
    key_prefix: String,
    live_start: watch::Receiver<Option<Instant>>,
    /// The detector's time 0 as a wall-clock moment (the latest estimate).
    detector_zero: Option<Instant>,
    next_index: u64,
    /// The slides video's input (`--slides-mount`).
    video: Option<mpsc::UnboundedSender<Shown>>,
}

impl Publisher {
    async fn run(mut self, mut rx: mpsc::Receiver<Captured>, min_interval: f64) {
        let mut picker: Picker<Bytes> = Picker::new(min_interval);
        while let Some(c) = rx.recv().await {
            match c {
                Captured::Frame {
                    pts,
                    change,
                    zero,
                    png,
                } => {
                    self.detector_zero = Some(zero);
                    if change {
                        tracing::debug!(pts, bytes = png.len(), "slides: a change");
                        picker.offer(Candidate { pts, item: png });
                    }
                    // Every written frame up to `pts` is here (they come in order): what
                    // waits may be due.
                    if let Some(c) = picker.poll(pts) {
                        tracing::debug!(pts = c.pts, now = pts, "slides: picked");
                        self.publish_frame(c).await;
                    }
                }
                Captured::File {
                    seen,
                    kind,
                    image,
                    name,
                } => {
                    tracing::info!(file = %name.display(), "new slide file");
                    let at = self.stream_time(seen).await;
                    self.show(at, kind, image.clone());
                    self.publish(at, kind, image).await;
                }
            }
        }
        if let Some(c) = picker.finish() {
            self.publish_frame(c).await;
        }
    }

    /// A wall-clock moment on the stream's timeline (waits for the stream's first byte).
    async fn stream_time(&mut self, moment: Instant) -> f64 {
        let start = match self.live_start.wait_for(Option::is_some).await {
            Ok(s) => (*s).unwrap_or(moment),
            // The cast ended before its stream started: place it at 0.
            Err(_) => moment,
        };
        if moment >= start {
            moment.duration_since(start).as_secs_f64()
        } else {
            0.0
        }
    }

    async fn publish_frame(&mut self, c: Candidate<Bytes>) {
        let moment = self
            .detector_zero
            .map_or_else(Instant::now, |z| z + secs(c.pts));
        let at = self.stream_time(moment).await;
        // The video takes the PNG now: the WebP encode (up to a second) would delay it.
        self.show(at, ImageKind::Png, c.item.clone());
        let (kind, image) = match capture::to_webp(c.item.clone()).await {
            Ok(webp) => (ImageKind::Webp, webp),
            Err(e) => {
                tracing::warn!("slides: WebP encode failed, the PNG is used: {e}");
                (ImageKind::Png, c.item)
            }
        };
        self.publish(at, kind, image).await;
    }

    /// Hands a slide to the slides video, if there is one.
    fn show(&self, at: f64, kind: ImageKind, image: Bytes) {
        if let Some(v) = &self.video {
            // Gone only when the video ended, which said why.
            let _ = v.send(Shown { at, kind, image });
        }
    }

    async fn publish(&mut self, at: f64, kind: ImageKind, image: Bytes) {
        let index = self.next_index;
        self.next_index += 1;
        let at = (at * 1000.0).round() / 1000.0;
        let mut slide = Slide {
            index,
            at,
            key: format!(
                "{}-{index}-{}",
                self.key_prefix,
                (at * 1000.0).round() as u64
            ),
            kind,
            image,
            archived: None,
        };
        if let Some(store) = &mut self.store {
            match store.save(&slide) {
                Ok(p) => {
                    slide.archived = Some(p);
                    if let Some(page) = &self.page {
                        page.write(store.dir());
                    }
                }
                Err(e) => tracing::error!(
                    dir = %store.dir().display(),
                    "slide {index} could not be archived: {e}"
                ),
            }
        }
        tracing::info!(slide = index, at, bytes = slide.image.len(), "slide");
        self.stats.captured.fetch_add(1, Ordering::Relaxed);
        for tx in &self.txs {
            let _ = tx.send(slide.clone());
        }
    }
}

/// Where the archive's player page goes, and the recording it plays once that is open (a
/// stream passed through opens its archive when its format is known).
#[derive(Debug, Clone)]
pub struct PagePlan {
    /// The page's path.
    pub path: PathBuf,
    /// The archive file, once open.
    pub media: watch::Receiver<Option<PathBuf>>,
}

impl PagePlan {
    /// Rewrites the page from the slides folder `slides`, if the recording is open; a failure is
    /// logged (the index and the images are what the archive keeps).
    pub fn write(&self, slides: &Path) {
        let media = self.media.borrow().clone();
        if let Some(media) = media
            && let Err(e) = page::write(&self.path, &media, slides)
        {
            tracing::warn!(path = %self.path.display(), "the archive's player page: {e}");
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}
