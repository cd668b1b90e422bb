//! The slide inputs at work: the detector ffmpeg child (candidate frames as PNGs on its
//! stdout, their times in its `showinfo` lines on stderr, paired in order), the folder
//! watcher, and the PNG-to-WebP conversion of a published slide.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::image::{ImageKind, MAX_IMAGE, png_len};
use super::source::{DetectorLine, detector_line, webp_args};

/// How often a folder is listed.
const FOLDER_POLL: Duration = Duration::from_millis(500);

/// What a slide input hands over.
#[derive(Debug)]
pub enum Captured {
    /// A frame the detector wrote: a change (or its first frame), or a heartbeat.
    Frame {
        /// Seconds on the detector's clock (0 = its first frame).
        pts: f64,
        /// Whether it is a change (or the first frame); a heartbeat otherwise.
        change: bool,
        /// The detector's time 0 as a wall-clock moment (the best estimate so far).
        zero: Instant,
        /// The PNG.
        png: Bytes,
    },
    /// A folder's new image, and when it was first seen.
    File {
        /// When the file was first listed.
        seen: Instant,
        /// Its format.
        kind: ImageKind,
        /// Its bytes.
        image: Bytes,
        /// Its name.
        name: PathBuf,
    },
}

/// Runs the detector until its output ends (the source ended, or `stop` asked ffmpeg to
/// finish). Frames go to `tx`; an error says why ffmpeg failed.
///
/// The clock: each analysed frame's `showinfo` line comes as soon as ffmpeg has decoded it
/// (written frames may wait in ffmpeg, see [`super::source::HEARTBEAT_FRAMES`]); the earliest
/// `line's arrival - pts` over all of them is the detector's time 0, refined as lines come.
pub async fn detector(
    args: Vec<String>,
    threshold: f64,
    tx: mpsc::Sender<Captured>,
    stop: CancellationToken,
) -> Result<(), String> {
    tracing::debug!(args = %args.join(" "), "starting the slides detector");
    let mut child = Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg: {e}"))?;
    let mut out = child.stdout.take().ok_or("ffmpeg has no output")?;
    let err = child.stderr.take().ok_or("ffmpeg has no stderr")?;
    // (pts, score) of each written frame, in order; the score is 0 when none was printed.
    let (frames_tx, mut frames) = mpsc::unbounded_channel::<(f64, f64)>();
    let (zero_tx, zero_rx) = watch::channel::<Option<Instant>>(None);
    let errors = tokio::spawn(async move {
        let mut last_error = None;
        let mut written: Option<f64> = None;
        let mut lines = tokio::io::BufReader::new(err).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match detector_line(&line) {
                DetectorLine::Analysed(pts) => {
                    let now = Instant::now();
                    let zero = now.checked_sub(secs(pts)).unwrap_or(now);
                    zero_tx.send_if_modified(|z| {
                        let better = z.is_none_or(|z| zero < z);
                        if better {
                            *z = Some(zero);
                        }
                        better
                    });
                }
                DetectorLine::Written(pts) => {
                    if let Some(p) = written.replace(pts) {
                        let _ = frames_tx.send((p, 0.0));
                    }
                }
                DetectorLine::Score(score) => {
                    if let Some(p) = written.take() {
                        let _ = frames_tx.send((p, score));
                    }
                }
                DetectorLine::Other => {
                    if line.contains("[error]") || line.contains("[fatal]") {
                        tracing::warn!("slides ffmpeg: {line}");
                        last_error = Some(line);
                    }
                }
            }
        }
        if let Some(p) = written {
            let _ = frames_tx.send((p, 0.0));
        }
        last_error
    });
    let mut buf = BytesMut::with_capacity(1 << 20);
    let mut stopping = false;
    let mut failed = None;
    let mut first = true;
    loop {
        // Whole PNGs first.
        match png_len(&buf, MAX_IMAGE) {
            Ok(Some(n)) => {
                let png = buf.split_to(n).freeze();
                // Its lines were written before the image: here or on their way.
                let Some((pts, score)) = frames.recv().await else {
                    failed = Some("ffmpeg's frame times stopped".to_string());
                    break;
                };
                let zero = (*zero_rx.borrow()).unwrap_or_else(Instant::now);
                let change = first || score > threshold;
                first = false;
                let frame = Captured::Frame {
                    pts,
                    change,
                    zero,
                    png,
                };
                if tx.send(frame).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(None) => {}
            Err(why) => {
                failed = Some(format!("the detector's output: {why}"));
                break;
            }
        }
        buf.reserve(256 * 1024);
        let n = tokio::select! {
            r = out.read_buf(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => { failed = Some(format!("reading ffmpeg: {e}")); break; }
            },
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                interrupt(&child);
                continue;
            }
        };
        if n == 0 {
            break;
        }
    }
    if failed.is_some() {
        let _ = child.start_kill();
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    let last_error = errors.await.ok().flatten();
    if let Some(f) = failed {
        return Err(f);
    }
    if !status.success() && !stopping {
        return Err(match last_error {
            Some(l) => format!("ffmpeg exited ({status}): {l}"),
            None => format!("ffmpeg exited ({status})"),
        });
    }
    Ok(())
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}

fn interrupt(child: &tokio::process::Child) {
    if let Some(id) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(id),
            nix::sys::signal::Signal::SIGINT,
        );
    }
}

/// Watches `dir` until `stop`: each image file (PNG, WebP, JPEG by extension, then by its
/// bytes) that appears is handed over once its size has stopped changing, in name order. Of
/// the files already there at start, the last in name order is the first slide.
pub async fn folder(dir: PathBuf, tx: mpsc::Sender<Captured>, stop: CancellationToken) {
    let mut done: HashSet<PathBuf> = HashSet::new();
    // A file seen but still growing: when first seen, its last size.
    let mut growing: HashMap<PathBuf, (Instant, u64)> = HashMap::new();
    let mut first = true;
    loop {
        let names = list_images(&dir);
        let now = Instant::now();
        if first {
            first = false;
            let last = names.last().cloned();
            for (name, _) in &names {
                if Some(name) != last.as_ref().map(|(n, _)| n) {
                    done.insert(name.clone());
                }
            }
        }
        for (name, size) in names {
            if done.contains(&name) {
                continue;
            }
            match growing.get(&name) {
                Some(&(seen, prev)) if prev == size && size > 0 => {
                    growing.remove(&name);
                    done.insert(name.clone());
                    if let Some(c) = read_image(&name, seen)
                        && tx.send(c).await.is_err()
                    {
                        return;
                    }
                }
                Some(&(seen, _)) => {
                    growing.insert(name, (seen, size));
                }
                None => {
                    growing.insert(name, (now, size));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLDER_POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The image files of `dir` with their sizes, in name order.
fn list_images(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let p = e.path();
            let ext = p
                .extension()
                .and_then(|x| x.to_str())
                .map(str::to_ascii_lowercase);
            matches!(ext.as_deref(), Some("png" | "webp" | "jpg" | "jpeg"))
        })
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| (e.path(), m.len()))
        })
        .collect();
    v.sort();
    v
}

fn read_image(path: &Path, seen: Instant) -> Option<Captured> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = %path.display(), "slide not read: {e}");
            return None;
        }
    };
    if bytes.len() > MAX_IMAGE {
        tracing::warn!(
            file = %path.display(),
            "slide skipped: {} bytes, more than the {} MiB a server takes",
            bytes.len(),
            MAX_IMAGE >> 20
        );
        return None;
    }
    let Some(kind) = ImageKind::sniff(&bytes) else {
        tracing::warn!(file = %path.display(), "slide skipped: not a PNG, WebP or JPEG image");
        return None;
    };
    Some(Captured::File {
        seen,
        kind,
        image: Bytes::from(bytes),
        name: path.to_path_buf(),
    })
}

/// A lossless WebP of `png` (see [`webp_args`] for why), made by a short-lived ffmpeg.
pub async fn to_webp(png: Bytes) -> Result<Bytes, String> {
    let out = ffmpeg_once(webp_args(), png, "the WebP encode").await?;
    if ImageKind::sniff(&out.stdout) != Some(ImageKind::Webp) {
        return Err(format!(
            "ffmpeg: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Bytes::from(out.stdout))
}

/// A short-lived ffmpeg with `args` fed `input` on standard input, within 30 s (`what` names
/// it in the error): its output, when it succeeded. Killed (its whole process group) when
/// the caller stops waiting.
pub(crate) async fn ffmpeg_once(
    args: Vec<String>,
    input: Bytes,
    what: &str,
) -> Result<std::process::Output, String> {
    let mut child = Command::new("ffmpeg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    // Written beside the read: ffmpeg may start writing before it has read everything.
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| format!("{what} took more than 30 s"))?
        .map_err(|e| e.to_string());
    feed.abort();
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "ffmpeg: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}
