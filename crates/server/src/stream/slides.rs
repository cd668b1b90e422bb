//! Slides (#15): each mount's still images, in the order they came, with their moment on the
//! mount's stream timeline, kept in memory as `Bytes` and, with `[server] data-dir`, on disk.
//! Knows nothing of HTTP: the upload, the list and the images are served by
//! `control/slides.rs`.
//!
//! ```text
//!   upload ─► probe (magic bytes, dimensions) ─► SlideStore::add ─► the mount's Shelf
//!                                                  │ its writer's turn (one upload at a time)
//!                                                  ├─► files: image, then index (spawn_blocking,
//!                                                  │   temp file + rename)
//!                                                  └─► a new list swapped in (readers never wait)
//! ```
//!
//! On disk: `DATA_DIR/slides/<mount as a file name>/` holds `<id>.<ext>` per slide and
//! `index.json` (the mount, the next id, every slide's fields); each written to a temporary
//! file, synced, then renamed over the old one, so a crash leaves the old index or the new one.
//! At start every shelf is read back; a slide whose file is missing or is not what the index
//! says is left out, and files no index names (a crash between the image and the index, a
//! dropped slide's file) are removed.
//!
//! **Invariants:**
//! - *Bounded:* a slide is at most `max-slide-bytes`; a mount keeps at most
//!   `max-slides-per-mount` slides and `max-slide-bytes-per-mount` bytes (beyond either the
//!   oldest slide, the lowest id, goes, and the log says so); at most `max-slide-mounts`
//!   mounts have slides and all of them hold at most `max-slide-bytes-total` (beyond those an
//!   upload is refused: `507`). The limits are read at every upload, so a reload applies them
//!   (lowered ones at the mount's next upload).
//! - *No lock across I/O:* the map of shelves is a [`RwLock`] held for a lookup or an insert;
//!   a shelf's list is an immutable snapshot ([`ArcSwap`]) readers load without waiting. What
//!   an upload holds across its file writes is its shelf's *turn*, an async mutex that only
//!   another upload to the same mount waits for; the writes run on the blocking pool.
//! - *Validated:* an image is stored only if its first bytes are a PNG, WebP or JPEG signature
//!   and its header gives dimensions of 1 to [`MAX_SIDE`] pixels a side ([`probe`]), whatever
//!   its Content-Type said. What is read back from disk is probed again.
//! - *Ids are never reused for other bytes:* a mount's first id is the Unix time in
//!   milliseconds when its shelf was made, and ids only grow from there (the next one is kept
//!   in the index), so a URL served as `immutable` names the same image across restarts, even
//!   without a data-dir or after its folder was emptied.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::mount_path::MountPath;
use crate::sync::RwLock;

/// The largest width or height of a slide, in pixels.
pub(crate) const MAX_SIDE: u32 = 8192;
/// Each shelf's index file.
const INDEX: &str = "index.json";

/// The image formats a slide may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ImageType {
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/webp")]
    Webp,
    #[serde(rename = "image/jpeg")]
    Jpeg,
}

impl ImageType {
    pub(crate) fn mime(self) -> &'static str {
        match self {
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
            ImageType::Jpeg => "image/jpeg",
        }
    }

    pub(crate) fn ext(self) -> &'static str {
        match self {
            ImageType::Png => "png",
            ImageType::Webp => "webp",
            ImageType::Jpeg => "jpg",
        }
    }

    /// The type whose file extension `ext` is (`jpeg` too).
    pub(crate) fn from_ext(ext: &str) -> Option<ImageType> {
        Some(match ext {
            "png" => ImageType::Png,
            "webp" => ImageType::Webp,
            "jpg" | "jpeg" => ImageType::Jpeg,
            _ => return None,
        })
    }
}

/// Why bytes are not a slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadImage {
    #[error("not a PNG, WebP or JPEG image")]
    Unknown,
    #[error("the image's dimensions cannot be read from its header")]
    Unreadable,
    #[error("the image is {0}x{1}: each side must be 1 to 8192 pixels")]
    Size(u32, u32),
}

/// An image's type (by its signature) and dimensions (from its header).
///
/// The signature is checked here, for the three formats a slide may be, and the dimensions
/// come from the `imagesize` crate (PNG's IHDR, WebP's VP8/VP8L/VP8X chunk, JPEG's SOF
/// markers), a small, dependency-free and widely used reader of exactly those headers that
/// never decodes pixels: better kept than a parser of our own, and it reads only the bytes
/// it is given (no I/O). A truncated or garbled header is an error, never a panic (the unit
/// test feeds it every prefix of each format).
pub(crate) fn probe(bytes: &[u8]) -> Result<(ImageType, u32, u32), BadImage> {
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageType::Png
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        ImageType::Webp
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ImageType::Jpeg
    } else {
        return Err(BadImage::Unknown);
    };
    let size = imagesize::blob_size(bytes).map_err(|_| BadImage::Unreadable)?;
    let side = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let (w, h) = (side(size.width), side(size.height));
    if !(1..=MAX_SIDE).contains(&w) || !(1..=MAX_SIDE).contains(&h) {
        return Err(BadImage::Size(w, h));
    }
    Ok((kind, w, h))
}

/// One stored slide. Immutable: shared as `Arc<Slide>` by the lists and the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slide {
    pub(crate) id: u64,
    /// Its moment on the mount's stream timeline, in milliseconds.
    pub(crate) at_ms: u64,
    pub(crate) kind: ImageType,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// The client's name for it (a resend with the same key stores nothing).
    pub(crate) key: Option<String>,
    pub(crate) bytes: Bytes,
}

/// A slide as the index on disk holds it (its bytes are in its own file).
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    id: u64,
    at_ms: u64,
    #[serde(rename = "type")]
    kind: ImageType,
    width: u32,
    height: u32,
    bytes: u64,
    key: Option<String>,
}

/// A shelf's `index.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Index {
    mount: String,
    next_id: u64,
    slides: Vec<Entry>,
}

impl Slide {
    fn entry(&self) -> Entry {
        Entry {
            id: self.id,
            at_ms: self.at_ms,
            kind: self.kind,
            width: self.width,
            height: self.height,
            bytes: self.bytes.len() as u64,
            key: self.key.clone(),
        }
    }

    fn file_name(&self) -> String {
        format!("{}.{}", self.id, self.kind.ext())
    }
}

/// The limits of the store, from the configuration in force at an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) per_mount: usize,
    pub(crate) bytes_per_mount: u64,
    pub(crate) mounts: usize,
    pub(crate) bytes_total: u64,
}

impl Limits {
    /// The limits of a configuration's `[server]` section.
    pub(crate) fn of(s: &crate::config::ServerSection) -> Limits {
        Limits {
            per_mount: s.max_slides_per_mount,
            bytes_per_mount: s.max_slide_bytes_per_mount,
            mounts: s.max_slide_mounts,
            bytes_total: s.max_slide_bytes_total,
        }
    }
}

/// What an upload came to.
#[derive(Debug)]
pub(crate) struct Added {
    pub(crate) slide: Arc<Slide>,
    /// False: the mount already had a slide of this key, which is `slide`; nothing stored.
    pub(crate) new: bool,
    /// The oldest slides that went to make room.
    pub(crate) dropped: Vec<Arc<Slide>>,
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddError {
    #[error("the server keeps slides for at most {0} mounts")]
    TooManyMounts(usize),
    #[error("the server's slide store is full ({0} bytes)")]
    Full(u64),
    #[error("the slide is larger than a mount's slide budget ({0} bytes)")]
    LargerThanBudget(u64),
    #[error("the slide could not be written to disk: {0}")]
    Io(std::io::Error),
}

/// One mount's slides.
#[derive(Debug)]
struct Shelf {
    mount: String,
    /// Its folder (with a data-dir).
    dir: Option<PathBuf>,
    /// Every slide, by id: swapped whole under the turn, loaded by readers.
    list: ArcSwap<Vec<Arc<Slide>>>,
    /// The writer's turn, with the next id.
    turn: tokio::sync::Mutex<u64>,
}

/// Every mount's slides (see the module doc).
#[derive(Debug)]
pub(crate) struct SlideStore {
    /// `DATA_DIR/slides`; `None`: in memory only.
    dir: Option<PathBuf>,
    shelves: RwLock<HashMap<String, Arc<Shelf>>>,
    /// Bytes held by every shelf.
    total: AtomicU64,
}

/// A mount's folder name: the path with every byte outside `[A-Za-z0-9._-]` percent-encoded
/// (so `/live.webm` is `%2Flive.webm`: never hidden, never `.` or `..`, no `/`), or, when that
/// would be longer than a file name should be, `sha256-` and the path's SHA-256 in hex. The
/// index names the mount, so loading never decodes this.
pub(crate) fn folder_name(mount: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'.')
        .remove(b'_')
        .remove(b'-');
    let name = percent_encoding::utf8_percent_encode(mount, KEEP).to_string();
    if name.len() <= 200 && !name.starts_with('.') {
        return name;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, mount.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
        .max(1)
}

impl SlideStore {
    /// A store in memory only.
    pub(crate) fn in_memory() -> SlideStore {
        SlideStore {
            dir: None,
            shelves: RwLock::new(HashMap::new()),
            total: AtomicU64::new(0),
        }
    }

    /// The store of `data_dir` (its `slides/` folder made if missing), every shelf read back,
    /// at most `bytes_total` bytes of them. Blocking: call it off the async workers.
    pub(crate) fn open(data_dir: &Path, bytes_total: u64) -> std::io::Result<SlideStore> {
        let dir = data_dir.join("slides");
        std::fs::create_dir_all(&dir)?;
        let mut shelves = HashMap::new();
        let mut total = 0u64;
        let mut folders: Vec<_> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        for folder in folders {
            match load_shelf(&folder, bytes_total.saturating_sub(total)) {
                Ok(Some(shelf)) => {
                    let bytes: u64 = shelf.list.load().iter().map(|s| s.bytes.len() as u64).sum();
                    total += bytes;
                    tracing::info!(
                        mount = %crate::logging::shown(&shelf.mount),
                        slides = shelf.list.load().len(),
                        bytes,
                        "slides read back"
                    );
                    shelves.insert(shelf.mount.clone(), Arc::new(shelf));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    folder = %folder.display(),
                    "slides folder left out: {e}"
                ),
            }
        }
        Ok(SlideStore {
            dir: Some(dir),
            shelves: RwLock::new(shelves),
            total: AtomicU64::new(total),
        })
    }

    fn shelf(&self, mount: &str) -> Option<Arc<Shelf>> {
        self.shelves.read().get(mount).cloned()
    }

    /// Whether the mount has a shelf (it had a slide, or has one).
    pub(crate) fn knows(&self, mount: &str) -> bool {
        self.shelves.read().contains_key(mount)
    }

    /// The mount's slides, ordered by their moment, then id.
    pub(crate) fn list(&self, mount: &str) -> Vec<Arc<Slide>> {
        let Some(shelf) = self.shelf(mount) else {
            return Vec::new();
        };
        let mut all = shelf.list.load().as_ref().clone();
        all.sort_by_key(|s| (s.at_ms, s.id));
        all
    }

    /// One slide.
    pub(crate) fn get(&self, mount: &str, id: u64) -> Option<Arc<Slide>> {
        let shelf = self.shelf(mount)?;
        let list = shelf.list.load();
        list.binary_search_by_key(&id, |s| s.id)
            .ok()
            .map(|i| list[i].clone())
    }

    /// Bytes held by every mount's slides.
    #[cfg(test)]
    fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// The mount's shelf, made if it has none (and the mount cap allows one more).
    fn shelf_or_new(&self, mount: &str, limits: &Limits) -> Result<Arc<Shelf>, AddError> {
        if let Some(s) = self.shelf(mount) {
            return Ok(s);
        }
        let mut shelves = self.shelves.write();
        if let Some(s) = shelves.get(mount) {
            return Ok(s.clone());
        }
        if shelves.len() >= limits.mounts {
            return Err(AddError::TooManyMounts(limits.mounts));
        }
        let shelf = Arc::new(Shelf {
            mount: mount.to_string(),
            dir: self.dir.as_ref().map(|d| d.join(folder_name(mount))),
            list: ArcSwap::from_pointee(Vec::new()),
            turn: tokio::sync::Mutex::new(now_ms()),
        });
        shelves.insert(mount.to_string(), shelf.clone());
        Ok(shelf)
    }

    /// Store a probed image as the mount's next slide (or answer the slide its key already
    /// names), dropping the oldest slides the mount's limits make room from.
    pub(crate) async fn add(
        &self,
        mount: &str,
        at_ms: u64,
        key: Option<String>,
        (kind, width, height): (ImageType, u32, u32),
        bytes: Bytes,
        limits: Limits,
    ) -> Result<Added, AddError> {
        let size = bytes.len() as u64;
        if size > limits.bytes_per_mount {
            return Err(AddError::LargerThanBudget(limits.bytes_per_mount));
        }
        let shelf = self.shelf_or_new(mount, &limits)?;
        let mut next_id = shelf.turn.lock().await;
        let old = shelf.list.load_full();
        if let Some(k) = key.as_deref()
            && let Some(s) = old.iter().find(|s| s.key.as_deref() == Some(k))
        {
            return Ok(Added {
                slide: s.clone(),
                new: false,
                dropped: Vec::new(),
            });
        }
        // The oldest go until the new one fits the mount's limits.
        let mut held: u64 = old.iter().map(|s| s.bytes.len() as u64).sum();
        let mut drop_n = 0;
        while drop_n < old.len()
            && (old.len() - drop_n + 1 > limits.per_mount.max(1)
                || held + size > limits.bytes_per_mount)
        {
            held -= old[drop_n].bytes.len() as u64;
            drop_n += 1;
        }
        let freed: u64 = old[..drop_n].iter().map(|s| s.bytes.len() as u64).sum();
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                let after = t.saturating_sub(freed) + size;
                (after <= limits.bytes_total).then_some(after)
            })
            .is_err()
        {
            return Err(AddError::Full(limits.bytes_total));
        }
        let slide = Arc::new(Slide {
            id: *next_id,
            at_ms,
            kind,
            width,
            height,
            key,
            bytes,
        });
        let dropped: Vec<Arc<Slide>> = old[..drop_n].to_vec();
        let mut list: Vec<Arc<Slide>> = old[drop_n..].to_vec();
        list.push(slide.clone());
        if let Some(dir) = shelf.dir.clone() {
            let index = Index {
                mount: mount.to_string(),
                next_id: *next_id + 1,
                slides: list.iter().map(|s| s.entry()).collect(),
            };
            let (new, gone) = (slide.clone(), dropped.clone());
            let written =
                tokio::task::spawn_blocking(move || write_shelf(&dir, &index, &new, &gone))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            if let Err(e) = written {
                // Nothing changed in memory: put the budget back.
                self.total
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                        Some(t.saturating_sub(size) + freed)
                    })
                    .ok();
                return Err(AddError::Io(e));
            }
        }
        *next_id += 1;
        shelf.list.store(Arc::new(list));
        Ok(Added {
            slide,
            new: true,
            dropped,
        })
    }
}

/// An upload's files: the image, then the index (each atomically), then the dropped slides'
/// files removed (a failure there leaves a file the next start removes).
fn write_shelf(
    dir: &Path,
    index: &Index,
    new: &Slide,
    dropped: &[Arc<Slide>],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join(new.file_name()), &new.bytes)?;
    let json = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(INDEX), &json)?;
    // The renames are durable once the folder is.
    std::fs::File::open(dir)?.sync_all()?;
    for s in dropped {
        let _ = std::fs::remove_file(dir.join(s.file_name()));
    }
    Ok(())
}

/// `bytes` written to a temporary file beside `path`, synced, then renamed to `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// A shelf read back from its folder, at most `budget` bytes of it (the newest slides kept);
/// `None` for a folder without an index. Files the index does not name are removed.
fn load_shelf(folder: &Path, budget: u64) -> std::io::Result<Option<Shelf>> {
    let index_path = folder.join(INDEX);
    let text = match std::fs::read(&index_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let index: Index = serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::other(format!("{INDEX}: {e}")))?;
    let mount = MountPath::parse(&index.mount)
        .map_err(|e| std::io::Error::other(format!("{INDEX}: mount {:?}: {e}", index.mount)))?
        .into_string();
    let mut slides = Vec::with_capacity(index.slides.len());
    let mut held = 0u64;
    // Newest first, so that a budget too small for all keeps the latest.
    for e in index.slides.iter().rev() {
        let name = format!("{}.{}", e.id, e.kind.ext());
        let slide = std::fs::read(folder.join(&name)).ok().and_then(|bytes| {
            let fits = bytes.len() as u64 == e.bytes
                && probe(&bytes).ok() == Some((e.kind, e.width, e.height))
                && e.id < index.next_id
                && held + e.bytes <= budget;
            fits.then(|| Slide {
                id: e.id,
                at_ms: e.at_ms,
                kind: e.kind,
                width: e.width,
                height: e.height,
                key: e.key.clone(),
                bytes: Bytes::from(bytes),
            })
        });
        match slide {
            Some(s) => {
                held += s.bytes.len() as u64;
                slides.push(Arc::new(s));
            }
            None => tracing::warn!(
                mount = %crate::logging::shown(&mount),
                file = %name,
                "slide left out: its file is missing, is not what the index says, or the store is full"
            ),
        }
    }
    slides.sort_by_key(|s| s.id);
    slides.dedup_by_key(|s| s.id);
    // Files no index names: leftovers of a crash or of a dropped slide.
    let kept: std::collections::HashSet<String> = slides.iter().map(|s| s.file_name()).collect();
    for entry in std::fs::read_dir(folder)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != INDEX && !kept.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(Some(Shelf {
        dir: Some(folder.to_path_buf()),
        list: ArcSwap::from_pointee(slides),
        turn: tokio::sync::Mutex::new(index.next_id.max(1)),
        mount,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PNG head (signature and IHDR) of `w` x `h`.
    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    /// A minimal baseline JPEG head (SOI, an APP0 segment, SOF0) of `w` x `h`.
    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0, 0, 0xFF, 0xC0, 0x00, 0x11, 8,
        ];
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b
    }

    /// A minimal lossless WebP head (VP8L) of `w` x `h`.
    fn webp(w: u32, h: u32) -> Vec<u8> {
        let bits = (w - 1) | ((h - 1) << 14);
        let mut chunk = vec![0x2F];
        chunk.extend_from_slice(&bits.to_le_bytes());
        let mut b = b"RIFF".to_vec();
        b.extend_from_slice(&(4 + 8 + chunk.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WEBPVP8L");
        b.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        b.extend_from_slice(&chunk);
        b
    }

    #[test]
    fn probe_reads_each_format_and_refuses_the_rest() {
        assert_eq!(probe(&png(1920, 1080)), Ok((ImageType::Png, 1920, 1080)));
        assert_eq!(probe(&jpeg(640, 480)), Ok((ImageType::Jpeg, 640, 480)));
        assert_eq!(probe(&webp(800, 600)), Ok((ImageType::Webp, 800, 600)));
        assert_eq!(probe(&png(8192, 1)), Ok((ImageType::Png, 8192, 1)));
        assert_eq!(probe(&png(8193, 10)), Err(BadImage::Size(8193, 10)));
        assert_eq!(probe(&png(0, 10)), Err(BadImage::Size(0, 10)));
        assert_eq!(probe(&png(10, u32::MAX)), Err(BadImage::Size(10, u32::MAX)));
        assert_eq!(probe(&jpeg(0, 10)), Err(BadImage::Size(0, 10)));
        assert_eq!(probe(b"GIF89a\x01\0\x01\0"), Err(BadImage::Unknown));
        assert_eq!(probe(b"<svg/>"), Err(BadImage::Unknown));
        assert_eq!(probe(b""), Err(BadImage::Unknown));
        // A JPEG whose segments go nowhere.
        assert_eq!(
            probe(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 1, 2, 3]),
            Err(BadImage::Unreadable)
        );
    }

    #[test]
    fn every_truncated_or_garbled_header_is_an_error_not_a_panic() {
        for full in [png(100, 100), jpeg(100, 100), webp(100, 100)] {
            for cut in 0..full.len() {
                let _ = probe(&full[..cut]);
                let mut garbled = full.clone();
                garbled[cut] ^= 0xFF;
                let _ = probe(&garbled);
            }
        }
    }

    #[test]
    fn folder_names_are_plain_file_names() {
        assert_eq!(folder_name("/live.webm"), "%2Flive.webm");
        assert_eq!(folder_name("/a/b c.ogg"), "%2Fa%2Fb%20c.ogg");
        let long = format!("/{}", "é".repeat(99));
        let name = folder_name(&long);
        assert!(name.starts_with("sha256-") && name.len() == 71, "{name}");
        for m in ["/live.webm", "/a/../b", "/.x", long.as_str()] {
            let n = folder_name(m);
            assert!(
                !n.contains('/') && !n.starts_with('.') && n.len() <= 200,
                "{n}"
            );
        }
    }

    fn limits(per_mount: usize, bytes_per_mount: u64) -> Limits {
        Limits {
            per_mount,
            bytes_per_mount,
            mounts: 2,
            bytes_total: 10_000,
        }
    }

    async fn add(
        store: &SlideStore,
        mount: &str,
        at: u64,
        key: Option<&str>,
        size: usize,
        l: Limits,
    ) -> Result<Added, AddError> {
        let mut bytes = png(10, 10);
        bytes.resize(size.max(bytes.len()), 0);
        store
            .add(
                mount,
                at,
                key.map(str::to_string),
                (ImageType::Png, 10, 10),
                Bytes::from(bytes),
                l,
            )
            .await
    }

    #[tokio::test]
    async fn a_mount_keeps_its_newest_slides_within_its_limits() {
        let store = SlideStore::in_memory();
        let l = limits(3, 1000);
        let mut ids = Vec::new();
        for i in 0..5 {
            let a = add(&store, "/m", 100 - i, None, 100, l)
                .await
                .expect("added");
            assert!(a.new);
            ids.push(a.slide.id);
            // The fourth and fifth each drop the oldest.
            assert_eq!(a.dropped.len(), usize::from(i >= 3));
        }
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        // Ordered by moment: the last added came first on the timeline.
        let listed: Vec<u64> = store.list("/m").iter().map(|s| s.id).collect();
        assert_eq!(listed, vec![ids[4], ids[3], ids[2]]);
        assert!(store.get("/m", ids[0]).is_none() && store.get("/m", ids[4]).is_some());
        assert_eq!(store.total_bytes(), 300);
        // Bytes: with an 850-byte slide, the count drops one and the bytes one more.
        let a = add(&store, "/m", 1, None, 850, l).await.expect("added");
        assert_eq!(a.dropped.len(), 2);
        assert_eq!(store.list("/m").len(), 2);
        assert_eq!(store.total_bytes(), 950);
        // Larger than the budget at all: refused, nothing dropped.
        assert!(matches!(
            add(&store, "/m", 1, None, 1001, l).await,
            Err(AddError::LargerThanBudget(1000))
        ));
        assert_eq!(store.list("/m").len(), 2);
    }

    #[tokio::test]
    async fn a_known_key_answers_its_slide_and_stores_nothing() {
        let store = SlideStore::in_memory();
        let l = limits(10, 10_000);
        let first = add(&store, "/m", 5, Some("k1"), 100, l)
            .await
            .expect("added");
        let again = add(&store, "/m", 9, Some("k1"), 200, l)
            .await
            .expect("answered");
        assert!(first.new && !again.new);
        assert_eq!(first.slide, again.slide);
        assert_eq!(store.list("/m").len(), 1);
        assert_eq!(store.total_bytes(), 100);
    }

    #[tokio::test]
    async fn the_mount_cap_and_the_total_refuse_rather_than_drop() {
        let store = SlideStore::in_memory();
        let mut l = limits(10, 10_000);
        add(&store, "/a", 0, None, 100, l).await.expect("a");
        add(&store, "/b", 0, None, 100, l).await.expect("b");
        assert!(matches!(
            add(&store, "/c", 0, None, 100, l).await,
            Err(AddError::TooManyMounts(2))
        ));
        assert!(!store.knows("/c"));
        l.bytes_total = 350;
        add(&store, "/a", 0, None, 100, l).await.expect("fits");
        assert!(matches!(
            add(&store, "/b", 0, None, 100, l).await,
            Err(AddError::Full(350))
        ));
        assert_eq!(store.total_bytes(), 300);
    }

    #[tokio::test]
    async fn slides_on_disk_come_back_with_their_ids_and_bytes() {
        let dir = std::env::temp_dir().join(format!("agora-slides-{}", now_ms()));
        let l = limits(2, 10_000);
        let (ids, bytes) = {
            let store = SlideStore::open(&dir, 10_000).expect("open");
            let mut ids = Vec::new();
            for i in 0..3 {
                ids.push(
                    add(
                        &store,
                        "/a b.webm",
                        i,
                        Some(&format!("k{i}")),
                        100 + i as usize,
                        l,
                    )
                    .await
                    .expect("added")
                    .slide
                    .id,
                );
            }
            let bytes: Vec<Bytes> = store
                .list("/a b.webm")
                .iter()
                .map(|s| s.bytes.clone())
                .collect();
            (ids, bytes)
        };
        let folder = dir.join("slides").join(folder_name("/a b.webm"));
        std::fs::write(folder.join("999.png"), b"stray").expect("stray file");
        let store = SlideStore::open(&dir, 10_000).expect("reopen");
        let back = store.list("/a b.webm");
        assert_eq!(back.iter().map(|s| s.id).collect::<Vec<_>>(), ids[1..]);
        assert_eq!(
            back.iter().map(|s| s.bytes.clone()).collect::<Vec<_>>(),
            bytes
        );
        assert_eq!(back[0].key.as_deref(), Some("k1"));
        assert_eq!(store.total_bytes(), 101 + 102);
        // The dropped slide's file and the stray one are gone; the next id follows on.
        assert!(!folder.join(format!("{}.png", ids[0])).exists());
        assert!(!folder.join("999.png").exists());
        let next = add(&store, "/a b.webm", 9, None, 100, l)
            .await
            .expect("added");
        assert_eq!(next.slide.id, ids[2] + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
