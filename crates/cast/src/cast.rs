//! One cast: the encoder's output (or standard input) read once, written to the archive,
//! framed, and handed to every target.
//!
//! ```text
//!   ffmpeg stdout ─► pump ─┬─► archive thread (every byte, first)
//!   (or stdin)             └─► Demuxer ─► Hub ─┬─► target task ─► server A
//!                                              └─► target task ─► server B
//! ```
//!
//! **Invariant:** the pump never waits for a target. It waits only for the archive's disk
//! (bounded queue) and for the encoder. The second, higher-quality archive of
//! `--archive-preset` is written by ffmpeg itself, from the same capture.
//!
//! **Every target refused** (each gave up on a `401`/`403`, see [`crate::target`]): without an
//! archive there is nothing left to do, and the cast stops at once; with one, the recording
//! goes on until the input ends or the cast is stopped. Either way the cast ends with
//! [`CastError::Refused`].
//!
//! **The status line** (a terminal) is redrawn in place every second; log lines written to the
//! same terminal go through [`write_log`], which erases it first and draws it again after, so
//! neither runs into the other.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_format::{Demuxer, Event};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::CastError;
use crate::archive::{Archive, archive_path, page_path, slides_dir};
use crate::encoder::Encoder;
use crate::hub::Hub;
use crate::preset::{AudioDevice, Encoding, Input, ffmpeg_args, muxer_for_extension};
use crate::slides::{PagePlan, SlideStats, Slides, SlidesConfig};
use crate::target::{self, TargetConfig, TargetState, TargetStats};

/// How the cast reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    /// One live status line (a terminal).
    Line,
    /// A log line every few seconds.
    Log,
}

/// Everything a cast needs.
#[derive(Debug, Clone)]
pub struct CastConfig {
    /// What is captured or read.
    pub input: Input,
    /// The audio device captured beside a video device.
    pub audio: Option<AudioDevice>,
    /// The live encoding; `None` pushes the input as is (stdin, or a file copied).
    pub live: Option<Encoding>,
    /// Where archives are written; `None`: no archive.
    pub archive_dir: Option<PathBuf>,
    /// A second encode, written by ffmpeg next to the live archive.
    pub archive_encoding: Option<Encoding>,
    /// Stream name used in archive file names.
    pub name: String,
    /// The servers the stream is pushed to.
    pub targets: Vec<TargetConfig>,
    /// Wall-clock start, in the local time zone when it could be read.
    pub started: time::OffsetDateTime,
    /// How progress is shown.
    pub status: StatusMode,
    /// Slides captured beside the stream (`--slides`).
    pub slides: Option<SlidesConfig>,
}

/// What a cast did.
#[derive(Debug)]
pub struct Outcome {
    /// The live stream's archive file.
    pub archive: Option<PathBuf>,
    /// The second encode's archive file.
    pub archive_hq: Option<PathBuf>,
    /// Stream bytes read from the encoder.
    pub bytes: u64,
    /// How long the cast ran.
    pub elapsed: Duration,
}

impl CastConfig {
    /// Checks the combination of options; the message says what to change.
    pub fn validate(&self) -> Result<(), CastError> {
        let usage = |s: &str| Err(CastError::Usage(s.into()));
        if self.targets.is_empty() && self.archive_dir.is_none() {
            return usage("nothing to do: give --server URL (repeatable) and/or --archive-dir DIR");
        }
        if self.input == Input::Stdin && (self.live.is_some() || self.archive_encoding.is_some()) {
            return usage(
                "standard input is pushed as is: --preset and --archive-preset need a capture, file or test input",
            );
        }
        if self.archive_encoding.is_some() && self.archive_dir.is_none() {
            return usage("--archive-preset needs --archive-dir");
        }
        if let Input::File(p) = &self.input {
            // Opened to be sure it can be read (ffmpeg opens it again).
            let unreadable = |why: String| CastError::InputFile {
                path: p.clone(),
                why,
            };
            match std::fs::File::open(p).and_then(|f| f.metadata()) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(unreadable("not found".into()));
                }
                Err(e) => return Err(unreadable(e.to_string())),
                Ok(m) if m.is_dir() => return Err(unreadable("is a folder, not a file".into())),
                Ok(_) => {}
            }
            if self.live.is_none() && muxer_for_extension(p).is_none() {
                return Err(CastError::Usage(format!(
                    "cannot tell the container of {} from its extension: pass --preset to re-encode it",
                    p.display()
                )));
            }
        }
        for e in self.live.iter().chain(&self.archive_encoding) {
            e.validate()?;
        }
        if let Some(s) = &self.slides {
            s.validate().map_err(CastError::Usage)?;
            if let Some(m) = &s.mount {
                if self.targets.is_empty() {
                    return usage("--slides-mount pushes to the servers: give --server URL");
                }
                if let Some(t) = self
                    .targets
                    .iter()
                    .find(|t| t.endpoint.url.mount == m.mount)
                {
                    return Err(CastError::Usage(format!(
                        "--slides-mount {}: that is the stream's own mount on {}; give the slides a mount of their own (e.g. /live-slides.webm)",
                        m.mount, t.endpoint.url
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Runs a cast until the input ends, the encoder fails, or `stop` is cancelled.
pub async fn run(cfg: CastConfig, stop: CancellationToken) -> Result<Outcome, CastError> {
    cfg.validate()?;
    // Stopped by the caller, or by every target refusing when there is no archive to keep.
    let stop = stop.child_token();
    let t0 = Instant::now();
    let hq_path = match (&cfg.archive_dir, &cfg.archive_encoding) {
        (Some(dir), Some(e)) => {
            let live_label = cfg.live.as_ref().map(|l| (l.size_label(), l.extension()));
            let name = if live_label == Some((e.size_label(), e.extension())) {
                format!("{}-archive", cfg.name)
            } else {
                cfg.name.clone()
            };
            Some(archive_path(
                dir,
                &name,
                cfg.started,
                &e.size_label(),
                e.extension(),
            ))
        }
        _ => None,
    };

    // The encoder, or standard input.
    let (mut encoder, mut reader): (Option<Encoder>, Box<dyn AsyncRead + Unpin + Send>) =
        if cfg.input == Input::Stdin {
            (None, Box::new(tokio::io::stdin()))
        } else {
            let copy_muxer = match &cfg.input {
                Input::File(p) => muxer_for_extension(p).unwrap_or("matroska"),
                _ => "matroska",
            };
            let args = ffmpeg_args(
                &cfg.input,
                cfg.audio.as_ref(),
                cfg.live.as_ref(),
                copy_muxer,
                cfg.archive_encoding.as_ref().zip(hq_path.as_deref()),
            );
            let (enc, out) = Encoder::spawn(&cfg.input, &args)?;
            (Some(enc), Box::new(out))
        };

    let hub = Arc::new(Hub::new());
    let target_stop = CancellationToken::new();
    let mut targets = Vec::new();
    for t in &cfg.targets {
        targets.push(target::spawn(t.clone(), hub.clone(), target_stop.clone()));
    }
    let stats: Vec<Arc<TargetStats>> = targets.iter().map(|(s, _)| s.clone()).collect();
    let all_refused = Arc::new(AtomicBool::new(false));
    let refusals = (!stats.is_empty()).then(|| {
        let (stats, flag, stop) = (stats.clone(), all_refused.clone(), stop.clone());
        let archiving = cfg.archive_dir.is_some();
        tokio::spawn(async move {
            // A target that gave up stays given up: waiting for each in turn waits for all.
            for t in &stats {
                t.given_up().await;
            }
            flag.store(true, Ordering::Relaxed);
            if archiving {
                tracing::error!(
                    "every server refused the cast; the archive goes on until the cast is stopped"
                );
            } else {
                tracing::error!("every server refused the cast, and there is no archive: stopping");
                stop.cancel();
            }
        })
    });

    // The moment the stream's first byte was read: time 0 of the stream's timeline, for the
    // slides.
    let (first_byte, live_start) = watch::channel(None);
    // The archive file once open, for the slides' player page.
    let (archive_opened, archive_media) = watch::channel(None);
    let slides_stop = CancellationToken::new();
    let page = cfg
        .slides
        .as_ref()
        .and(cfg.archive_dir.as_ref())
        .map(|d| PagePlan {
            path: page_path(d, &cfg.name, cfg.started),
            media: archive_media,
        });
    let slides = match &cfg.slides {
        None => None,
        Some(s) => {
            let dir = cfg
                .archive_dir
                .as_ref()
                .map(|d| slides_dir(d, &cfg.name, cfg.started));
            Some(Slides::start(
                s,
                dir,
                page.clone(),
                &cfg.targets,
                cfg.started.unix_timestamp().to_string(),
                live_start,
                slides_stop.clone(),
            )?)
        }
    };

    let read_total = Arc::new(AtomicU64::new(0));
    let archive_written = Arc::new(AtomicU64::new(0));
    let reporter = tokio::spawn(report(
        cfg.status,
        cfg.archive_dir.is_some(),
        t0,
        read_total.clone(),
        archive_written.clone(),
        stats.clone(),
        slides.as_ref().map(|s| s.stats.clone()),
    ));

    let pumped = pump(
        &cfg,
        &mut reader,
        encoder.as_mut(),
        &hub,
        &Progress {
            read_total: &read_total,
            archive_written: &archive_written,
            first_byte: &first_byte,
            archive_opened: &archive_opened,
        },
        &stop,
    )
    .await;
    hub.close();

    // The encoder's verdict: a stop we asked for is not a failure.
    let (archive, mut result) = match pumped {
        Ok(a) => (a, Ok(())),
        Err((a, e)) => (a, Err(e)),
    };
    if let Some(enc) = encoder.as_mut() {
        // The output ended by itself: ffmpeg is exiting, its status says how it went. Otherwise
        // (a stop, or the archive failed) nobody reads its output any more: stop it.
        let verdict = if stop.is_cancelled() || result.is_err() {
            enc.stop(Duration::from_secs(5)).await
        } else {
            enc.wait().await
        };
        if result.is_ok() {
            result = verdict;
        }
    }
    // The slides: the capture stops, its last slide is published, the servers get what they
    // can within the grace.
    slides_stop.cancel();
    drop(first_byte);
    if let Some(s) = slides {
        s.finish(SLIDES_GRACE).await;
    }
    // Targets send what they have queued, briefly, then stop.
    let drain = async {
        for (_, task) in &mut targets {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(3), drain)
        .await
        .is_err()
    {
        target_stop.cancel();
    }
    target_stop.cancel();
    reporter.abort();
    if let Some(r) = refusals {
        r.abort();
    }
    end_status_line();
    let archive_path = archive.as_ref().map(|a| a.path.clone());
    if let Some(mut a) = archive {
        let closed = a.finish().await;
        if result.is_ok() {
            result = closed;
        }
    }
    // The player page, from the slides' final index (it was rewritten at each slide, but the
    // recording may have opened after the first ones).
    if let (Some(p), Some(dir)) = (&page, &cfg.archive_dir) {
        p.write(&slides_dir(dir, &cfg.name, cfg.started));
        if p.path.is_file() {
            tracing::info!(path = %p.path.display(), "the recording with its slides: open this page");
        }
    }
    if result.is_ok() && all_refused.load(Ordering::Relaxed) {
        result = Err(CastError::Refused(
            stats
                .iter()
                .map(|t| t.url.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    result.map(|()| Outcome {
        archive: archive_path,
        archive_hq: hq_path,
        bytes: read_total.load(Ordering::Relaxed),
        elapsed: t0.elapsed(),
    })
}

/// How long a cast's end waits for slide uploads still queued (a server that just came back).
const SLIDES_GRACE: Duration = Duration::from_secs(15);

/// What the pump tells the rest of the cast as it goes.
struct Progress<'a> {
    /// Bytes read from the encoder.
    read_total: &'a AtomicU64,
    /// Bytes the archive wrote.
    archive_written: &'a AtomicU64,
    /// The moment of the stream's first byte (time 0 of its timeline, for the slides).
    first_byte: &'a watch::Sender<Option<Instant>>,
    /// The archive file, once open (for the slides' player page).
    archive_opened: &'a watch::Sender<Option<PathBuf>>,
}

type PumpResult = Result<Option<Archive>, (Option<Archive>, CastError)>;

/// Reads the stream until it ends: archive first, then the demuxer and the hub.
async fn pump(
    cfg: &CastConfig,
    reader: &mut (dyn AsyncRead + Unpin + Send),
    mut encoder: Option<&mut Encoder>,
    hub: &Hub,
    progress: &Progress<'_>,
    stop: &CancellationToken,
) -> PumpResult {
    let Progress {
        read_total,
        archive_written,
        first_byte,
        archive_opened,
    } = progress;
    // With a known encoding the archive opens now; passing a stream through, it opens when the
    // format and the frame size are known, and the bytes before are held (bounded: the sniff
    // limit plus the stream headers).
    let mut archive: Option<Archive> = None;
    let mut early: Vec<Bytes> = Vec::new();
    let open = |size: String, ext: &str| -> Result<Option<Archive>, CastError> {
        let Some(dir) = &cfg.archive_dir else {
            return Ok(None);
        };
        let a = Archive::create(archive_path(dir, &cfg.name, cfg.started, &size, ext))?;
        tracing::info!(path = %a.path.display(), "archiving");
        archive_opened.send_replace(Some(a.path.clone()));
        Ok(Some(a))
    };
    if let Some(e) = &cfg.live {
        archive = match open(e.size_label(), e.extension()) {
            Ok(a) => a,
            Err(e) => return Err((None, e)),
        };
    }
    let mut opened = cfg.live.is_some() || cfg.archive_dir.is_none();
    let mut demux = Demuxer::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut stopping = false;
    loop {
        buf.reserve(64 * 1024);
        let n = tokio::select! {
            r = reader.read_buf(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => return Err((archive, CastError::Input(e))),
            },
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                match encoder.as_deref_mut() {
                    // ffmpeg finishes its outputs and closes its stdout: keep reading to EOF.
                    Some(enc) => { enc.interrupt(); continue; }
                    None => break,
                }
            }
        };
        if n == 0 {
            break;
        }
        if first_byte.borrow().is_none() {
            first_byte.send_replace(Some(Instant::now()));
        }
        let bytes = buf.split().freeze();
        read_total.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(a) = archive.as_mut() {
            if let Err(e) = a.write(bytes.clone()).await {
                return Err((archive, e));
            }
        } else if !opened {
            early.push(bytes.clone());
        }
        demux.push(&bytes);
        loop {
            match demux.poll() {
                Ok(Some(ev)) => {
                    if let Some(f) = demux.format() {
                        hub.set_format(f, &demux.info());
                        if !opened {
                            opened = true;
                            let info = demux.info();
                            let size = info
                                .video_size
                                .map_or_else(|| "audio".to_string(), |(w, h)| format!("{w}x{h}"));
                            let ext = match f {
                                agora_format::Format::Ogg => "ogg",
                                agora_format::Format::WebM => "webm",
                                agora_format::Format::Mp3 => "mp3",
                                agora_format::Format::Aac => "aac",
                                agora_format::Format::Opaque => "bin",
                            };
                            archive = match open(size, ext) {
                                Ok(a) => a,
                                Err(e) => return Err((None, e)),
                            };
                            if let Some(a) = archive.as_mut() {
                                for b in early.drain(..) {
                                    if let Err(e) = a.write(b).await {
                                        return Err((archive, e));
                                    }
                                }
                            }
                        }
                    }
                    hub.publish(ev);
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    tracing::error!("the stream cannot be framed any more: {e}");
                    return Err((archive, CastError::Stream(e.to_string())));
                }
                Err(e) => tracing::warn!("stream: {e}"),
            }
        }
        if let Some(a) = &archive {
            archive_written.store(a.written.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
    if let Some(Event::Chunk(c)) = demux.finish() {
        hub.publish(Event::Chunk(c));
    }
    if !opened && !early.is_empty() {
        // The stream ended before its format was known: keep its bytes anyway.
        archive = match open("unknown".into(), "bin") {
            Ok(a) => a,
            Err(e) => return Err((None, e)),
        };
        if let Some(a) = archive.as_mut() {
            for b in early.drain(..) {
                if let Err(e) = a.write(b).await {
                    return Err((archive, e));
                }
            }
        }
    }
    Ok(archive)
}

/// The status line or log lines, until aborted.
async fn report(
    mode: StatusMode,
    archiving: bool,
    t0: Instant,
    read_total: Arc<AtomicU64>,
    archive_written: Arc<AtomicU64>,
    targets: Vec<Arc<TargetStats>>,
    slides: Option<Arc<SlideStats>>,
) {
    let every = match mode {
        StatusMode::Line => Duration::from_secs(1),
        StatusMode::Log => Duration::from_secs(10),
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let total = read_total.load(Ordering::Relaxed);
        let kbps = (total - last.1) as f64 * 8.0 / 1000.0 / (now - last.0).as_secs_f64();
        last = (now, total);
        let secs = t0.elapsed().as_secs();
        let mut line = format!(
            "{:02}:{:02}:{:02} | encoder {kbps:.0} kbit/s",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
        );
        if archiving {
            line.push_str(&format!(
                " | archive {:.1} MB",
                archive_written.load(Ordering::Relaxed) as f64 / 1e6
            ));
        }
        if let Some(s) = &slides {
            line.push_str(&format!(" | slides {}", s.captured.load(Ordering::Relaxed)));
        }
        for (i, t) in targets.iter().enumerate() {
            line.push_str(&format!(
                " | {} {}, {} reconnects",
                t.url,
                state_words(&t.state()),
                t.reconnects.load(Ordering::Relaxed)
            ));
            if let Some(s) = slides.as_ref().and_then(|s| s.targets.get(i)) {
                line.push_str(&format!(", slides sent {}", s.sent.load(Ordering::Relaxed)));
                let queued = s.queued.load(Ordering::Relaxed);
                if queued > 0 {
                    line.push_str(&format!(" ({queued} waiting)"));
                }
            }
            if let Some(v) = slides.as_ref().and_then(|s| s.video.get(i)) {
                line.push_str(&format!(", {} {}", v.url.mount, state_words(&v.state())));
            }
        }
        match mode {
            StatusMode::Line => draw_status_line(line),
            StatusMode::Log => tracing::info!("{line}"),
        }
    }
}

/// A target's state in the status line.
fn state_words(state: &TargetState) -> String {
    match state {
        TargetState::Connecting => "connecting".to_string(),
        TargetState::Live => "live".to_string(),
        TargetState::Retrying(why) => format!("retrying ({why})"),
        TargetState::Refused(why) => format!("refused ({why}), given up"),
        TargetState::Done => "done".to_string(),
    }
}

/// The status line on the terminal now, if one is drawn (its text, to draw it again after a
/// log line). The lock also keeps a log line and a redraw from interleaving.
static STATUS_LINE: Mutex<Option<String>> = Mutex::new(None);

/// Draws `line` in place of the status line.
fn draw_status_line(line: String) {
    let mut shown = STATUS_LINE.lock().unwrap_or_else(|p| p.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r{line}\x1b[K");
    let _ = err.flush();
    *shown = Some(line);
}

/// Ends the status line (a line break after it), so that what is written next starts a line of
/// its own; the line stays on the terminal as the cast's last word.
fn end_status_line() {
    let mut shown = STATUS_LINE.lock().unwrap_or_else(|p| p.into_inner());
    if shown.take().is_some() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b"\n");
        let _ = err.flush();
    }
}

/// Writes log text (whole lines) to standard error: with a status line on the terminal, the
/// status line is erased first and drawn again below the text, so neither runs into the other.
/// For the binary's log writer; without a status line it is a plain write.
pub fn write_log(text: &[u8]) -> std::io::Result<()> {
    let shown = STATUS_LINE.lock().unwrap_or_else(|p| p.into_inner());
    let mut err = std::io::stderr().lock();
    match shown.as_deref() {
        Some(line) => {
            err.write_all(b"\r\x1b[K")?;
            err.write_all(text)?;
            write!(err, "{line}\x1b[K")?;
        }
        None => err.write_all(text)?,
    }
    err.flush()
}
