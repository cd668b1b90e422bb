//! Slide decks (#15): a talk's PDF uploaded to a mount, its pages rendered to PNG images by
//! poppler's `pdfinfo` and `pdftoppm` as child processes, kept with the PDF for the operator
//! to step through (each step makes a page the mount's current slide, through
//! `stream::slides`). Knows nothing of HTTP: `control/decks.rs` serves it.
//!
//! ```text
//!   PDF ─► render: a temporary folder ─► pdfinfo (pages, encrypted?) ─► pdftoppm -png
//!          (children, killed on timeout or when the output grows too large; one at a time)
//!        ─► Deck { pdf, pages } ─► DeckStore: one deck per mount, the newest replaces
//! ```
//!
//! **Invariants:**
//! - *Never on the async workers, never blocking the server:* the renderers are child
//!   processes awaited by the upload's task; at most [`RENDERS`] run at once, each within
//!   [`RENDER_TIMEOUT`] (killed then, and when its task ends: `kill_on_drop`), at most
//!   `max-deck-pages` pages, and their output at most [`MAX_RENDER_BYTES`] (the folder is
//!   measured while `pdftoppm` runs; it is killed beyond that). Files are read and written on
//!   the blocking pool.
//! - *Bounded:* a deck is at most `max-deck-bytes` of PDF and [`MAX_RENDER_BYTES`] of images;
//!   at most [`MAX_DECKS`] mounts have a deck, and all decks together at most
//!   `max-deck-bytes-total` (`507` beyond either). Decks are served from memory; with a
//!   `data-dir` they are also kept in `decks/<mount folder>/` (the PDF, the pages and an index
//!   written last, atomically) with the page the operator last stepped to, and read back at
//!   start within the same bounds.
//! - *Ids are never reused:* a deck's id is the Unix time in milliseconds when it was stored
//!   (one more than the last if that is not later), so its URLs can be cached for good.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::process::Command;

use crate::sync::{Mutex, RwLock};

/// Renders at once, whatever the mounts.
pub(crate) const RENDERS: usize = 1;
/// How long a deck's rendering may take, all pages.
pub(crate) const RENDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The most bytes of images a deck's rendering may produce.
pub(crate) const MAX_RENDER_BYTES: u64 = 256 << 20;
/// Mounts with a deck at once.
pub(crate) const MAX_DECKS: usize = 16;
/// The rendered width of a page, in pixels: slide text sharp on a full-HD screen.
pub(crate) const PAGE_WIDTH: u32 = 1920;

/// A rendered deck.
#[derive(Debug)]
pub(crate) struct Deck {
    pub(crate) id: u64,
    /// The name it was uploaded as (for the download), if any.
    pub(crate) name: Option<String>,
    pub(crate) pdf: Bytes,
    /// Each page as a PNG with its width and height.
    pub(crate) pages: Vec<(Bytes, u32, u32)>,
    /// The page the operator last stepped to (0-based), `None` before the first step.
    pub(crate) current: Mutex<Option<usize>>,
}

/// Why a PDF did not become a deck: each says it to the uploader.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenderError {
    #[error("not a PDF: the file does not begin with %PDF-")]
    NotPdf,
    #[error("the PDF is encrypted (password-protected): upload it without a password")]
    Encrypted,
    #[error("the PDF cannot be read: {0}")]
    Corrupt(String),
    #[error("the PDF has {0} pages: a deck has at most {1} (max-deck-pages)")]
    TooManyPages(u32, u32),
    #[error("the PDF has no pages")]
    NoPages,
    #[error("rendering the pages took longer than {0} s: the PDF is too heavy")]
    Timeout(u64),
    #[error("the rendered pages would be larger than {0} bytes")]
    TooLarge(u64),
    #[error("the server cannot render PDFs: {0} (is poppler-utils installed?)")]
    Renderer(String),
    #[error("the server could not use its temporary folder: {0}")]
    Io(std::io::Error),
}

impl RenderError {
    /// The HTTP status that says it: the uploader's file (4xx) or the server (5xx).
    pub(crate) fn status(&self) -> u16 {
        match self {
            RenderError::NotPdf => 415,
            RenderError::Encrypted
            | RenderError::Corrupt(_)
            | RenderError::TooManyPages(..)
            | RenderError::NoPages
            | RenderError::Timeout(_)
            | RenderError::TooLarge(_) => 422,
            RenderError::Renderer(_) | RenderError::Io(_) => 500,
        }
    }
}

/// A temporary folder, removed with what it holds when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// The last lines a child wrote to its standard error, for a message (bounded, one line).
fn said(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no reason given");
    let clean: String = line.chars().filter(|c| !c.is_control()).take(200).collect();
    clean
}

/// Render `pdf`'s pages (see the module doc). Waits for a turn among [`RENDERS`] first
/// (`turns`); the whole takes at most [`RENDER_TIMEOUT`] once started.
pub(crate) async fn render(
    pdf: &Bytes,
    max_pages: u32,
    turns: &tokio::sync::Semaphore,
) -> Result<Vec<(Bytes, u32, u32)>, RenderError> {
    if !pdf.starts_with(b"%PDF-") {
        return Err(RenderError::NotPdf);
    }
    let _turn = turns
        .acquire()
        .await
        .map_err(|_| RenderError::Renderer("the server is stopping".into()))?;
    let dir = std::env::temp_dir().join(format!(
        "agora-deck-{}-{}",
        std::process::id(),
        SCRATCH.fetch_add(1, Ordering::Relaxed)
    ));
    let scratch = Scratch(dir.clone());
    let input = dir.join("deck.pdf");
    let bytes = pdf.clone();
    let written = {
        let (dir, input) = (dir.clone(), input.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&input, &bytes)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    written.map_err(RenderError::Io)?;
    let deadline = tokio::time::Instant::now() + RENDER_TIMEOUT;
    let timeout = || RenderError::Timeout(RENDER_TIMEOUT.as_secs());
    // Pages and encryption, first: a refusal before anything is drawn.
    let info = Command::new("pdfinfo")
        .arg(&input)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let info = tokio::time::timeout_at(deadline, info)
        .await
        .map_err(|_| timeout())?
        .map_err(|e| RenderError::Renderer(format!("pdfinfo: {e}")))?;
    let out = String::from_utf8_lossy(&info.stdout);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim().to_string())
    };
    let err = said(&info.stderr);
    if !info.status.success() {
        if err.contains("password") {
            return Err(RenderError::Encrypted);
        }
        return Err(RenderError::Corrupt(err));
    }
    if field("Encrypted").is_some_and(|e| e.starts_with("yes")) {
        return Err(RenderError::Encrypted);
    }
    let pages: u32 = field("Pages")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| RenderError::Corrupt(err.clone()))?;
    if pages == 0 {
        return Err(RenderError::NoPages);
    }
    if pages > max_pages {
        return Err(RenderError::TooManyPages(pages, max_pages));
    }
    let mut child = Command::new("pdftoppm")
        .args(["-png", "-scale-to-x"])
        .arg(PAGE_WIDTH.to_string())
        .args(["-scale-to-y", "-1", "-l"])
        .arg(pages.to_string())
        .arg(&input)
        .arg(dir.join("page"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RenderError::Renderer(format!("pdftoppm: {e}")))?;
    let mut stderr = child.stderr.take();
    let errors = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.take(64 * 1024).read_to_end(&mut buf).await;
        }
        buf
    });
    // The output is measured while it grows; the child is killed past the limit.
    let status = loop {
        let tick = tokio::time::sleep(Duration::from_millis(200));
        tokio::select! {
            s = child.wait() => break s.map_err(|e| RenderError::Renderer(format!("pdftoppm: {e}")))?,
            _ = tick => {
                if tokio::time::Instant::now() >= deadline {
                    let _ = child.kill().await;
                    return Err(timeout());
                }
                let d = dir.clone();
                let size = tokio::task::spawn_blocking(move || folder_bytes(&d)).await.unwrap_or(0);
                if size > MAX_RENDER_BYTES + pdf.len() as u64 {
                    let _ = child.kill().await;
                    return Err(RenderError::TooLarge(MAX_RENDER_BYTES));
                }
            }
        }
    };
    let err = said(&errors.await.unwrap_or_default());
    if !status.success() {
        return Err(RenderError::Corrupt(err));
    }
    let read = tokio::task::spawn_blocking(move || read_pages(&dir, &scratch))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(RenderError::Io)?;
    if read.is_empty() {
        return Err(RenderError::Corrupt(err));
    }
    if read.iter().map(|(b, _, _)| b.len() as u64).sum::<u64>() > MAX_RENDER_BYTES {
        return Err(RenderError::TooLarge(MAX_RENDER_BYTES));
    }
    Ok(read)
}

/// Bytes of the files in `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `pdftoppm`'s `page-1.png`, `page-2.png`... (its numbers are padded to the page count's
/// width), in page order, each probed. The scratch folder goes when this returns.
fn read_pages(dir: &Path, _scratch: &Scratch) -> std::io::Result<Vec<(Bytes, u32, u32)>> {
    let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("page-")?
                .strip_suffix(".png")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    numbered.sort();
    let mut pages = Vec::with_capacity(numbered.len());
    for (_, path) in numbered {
        let bytes = std::fs::read(&path)?;
        let (_, w, h) = crate::stream::slides::probe(&bytes)
            .map_err(|e| std::io::Error::other(format!("a rendered page: {e}")))?;
        pages.push((Bytes::from(bytes), w, h));
    }
    Ok(pages)
}

/// Every mount's deck (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct DeckStore {
    decks: RwLock<HashMap<String, Arc<Deck>>>,
    last_id: Mutex<u64>,
    /// `data-dir/decks`, where each mount's deck is kept; `None`: in memory only.
    dir: Option<PathBuf>,
    /// Held while a deck's files are written and it replaces the one in memory, so that two
    /// uploads to a mount leave the files and the memory of the same (the later) deck. Only
    /// deck writers wait for it; readers never do.
    turn: tokio::sync::Mutex<()>,
}

/// Why a rendered deck was not kept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PutError {
    #[error("The server keeps decks for at most {MAX_DECKS} mounts")]
    Mounts,
    #[error(
        "The server keeps at most {total} bytes of decks (max-deck-bytes-total); this one is {bytes}, and the others hold {held}"
    )]
    Full { bytes: u64, held: u64, total: u64 },
    #[error("the deck could not be written to the data-dir: {0}")]
    Io(std::io::Error),
}

/// What `deck.json` says of a deck kept in the data-dir: the files beside it are checked
/// against it when read back.
#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    mount: String,
    id: u64,
    name: Option<String>,
    current: Option<usize>,
    pdf_bytes: u64,
    /// Each page's bytes, width and height.
    pages: Vec<(u64, u32, u32)>,
}

/// The index of a deck's folder.
const INDEX: &str = "deck.json";

impl Deck {
    /// Bytes it holds: the PDF and its pages.
    pub(crate) fn bytes(&self) -> u64 {
        self.pdf.len() as u64 + self.pages.iter().map(|p| p.0.len() as u64).sum::<u64>()
    }

    fn index(&self, mount: &str) -> Index {
        Index {
            mount: mount.to_string(),
            id: self.id,
            name: self.name.clone(),
            current: *self.current.lock(),
            pdf_bytes: self.pdf.len() as u64,
            pages: self
                .pages
                .iter()
                .map(|(b, w, h)| (b.len() as u64, *w, *h))
                .collect(),
        }
    }
}

impl DeckStore {
    /// A store in memory only.
    pub(crate) fn in_memory() -> DeckStore {
        DeckStore::default()
    }

    /// The store of `data_dir` (its `decks/` folder made if missing), every deck read back:
    /// the newest [`MAX_DECKS`], at most `bytes_total` bytes of them. Blocking: call it off
    /// the async workers.
    pub(crate) fn open(data_dir: &Path, bytes_total: u64) -> std::io::Result<DeckStore> {
        let dir = data_dir.join("decks");
        std::fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir)?.filter_map(Result::ok) {
            let folder = entry.path();
            if !folder.is_dir() {
                continue;
            }
            match load(&folder) {
                Ok(Some((mount, deck))) => found.push((folder, mount, deck)),
                Ok(None) => {}
                Err(e) => tracing::warn!(folder = %folder.display(), "deck left out: {e}"),
            }
        }
        // Newest first: those beyond the bounds are the oldest.
        found.sort_by_key(|(_, _, d)| std::cmp::Reverse(d.id));
        let mut decks = HashMap::new();
        let (mut held, mut last_id) = (0u64, 0u64);
        for (folder, mount, deck) in found {
            let fits = decks.len() < MAX_DECKS && held + deck.bytes() <= bytes_total;
            if !fits || decks.contains_key(&mount) {
                tracing::warn!(mount = %crate::logging::shown(&mount), id = deck.id, "deck left out: beyond the deck limits, or older than another of its mount");
                let _ = std::fs::remove_dir_all(&folder);
                continue;
            }
            held += deck.bytes();
            last_id = last_id.max(deck.id);
            tracing::info!(
                mount = %crate::logging::shown(&mount),
                id = deck.id,
                pages = deck.pages.len(),
                bytes = deck.bytes(),
                "deck read back"
            );
            decks.insert(mount, Arc::new(deck));
        }
        Ok(DeckStore {
            decks: RwLock::new(decks),
            last_id: Mutex::new(last_id),
            dir: Some(dir),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// The mount's deck.
    pub(crate) fn get(&self, mount: &str) -> Option<Arc<Deck>> {
        self.decks.read().get(mount).cloned()
    }

    /// Make `pages` the mount's deck, in place of the one it had (in the data-dir too, when
    /// there is one): refused when [`MAX_DECKS`] other mounts have one, or when it would take
    /// the decks past `bytes_total`.
    pub(crate) async fn put(
        &self,
        mount: &str,
        name: Option<String>,
        pdf: Bytes,
        pages: Vec<(Bytes, u32, u32)>,
        bytes_total: u64,
    ) -> Result<Arc<Deck>, PutError> {
        let _turn = self.turn.lock().await;
        let id = {
            let mut last = self.last_id.lock();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(1);
            *last = now.max(*last + 1);
            *last
        };
        let deck = Arc::new(Deck {
            id,
            name,
            pdf,
            pages,
            current: Mutex::new(None),
        });
        self.fits(mount, &deck, bytes_total)?;
        if let Some(dir) = &self.dir {
            let folder = dir.join(crate::stream::slides::folder_name(mount));
            let (d, index) = (deck.clone(), deck.index(mount));
            tokio::task::spawn_blocking(move || save(&folder, &d, &index))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(PutError::Io)?;
        }
        // Checked again: only writers change the map, and they take turns.
        self.fits(mount, &deck, bytes_total)?;
        self.decks.write().insert(mount.to_string(), deck.clone());
        Ok(deck)
    }

    /// Whether `deck` may replace the mount's deck.
    fn fits(&self, mount: &str, deck: &Deck, bytes_total: u64) -> Result<(), PutError> {
        let decks = self.decks.read();
        if !decks.contains_key(mount) && decks.len() >= MAX_DECKS {
            return Err(PutError::Mounts);
        }
        let held: u64 = decks
            .iter()
            .filter(|(m, _)| m.as_str() != mount)
            .map(|(_, d)| d.bytes())
            .sum();
        if held + deck.bytes() > bytes_total {
            return Err(PutError::Full {
                bytes: deck.bytes(),
                held,
                total: bytes_total,
            });
        }
        Ok(())
    }

    /// The operator stepped `deck` to `page`: remembered, in the data-dir too (a failure there
    /// is logged; the step stands).
    pub(crate) async fn step(&self, mount: &str, deck: &Arc<Deck>, page: usize) {
        let _turn = self.turn.lock().await;
        *deck.current.lock() = Some(page);
        let Some(dir) = &self.dir else {
            return;
        };
        // A deck replaced meanwhile keeps its own folder's index.
        if !self.get(mount).is_some_and(|d| Arc::ptr_eq(&d, deck)) {
            return;
        }
        let path = dir
            .join(crate::stream::slides::folder_name(mount))
            .join(INDEX);
        let index = deck.index(mount);
        let written = tokio::task::spawn_blocking(move || {
            let json = serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?;
            crate::stream::slides::write_atomic(&path, &json)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            tracing::error!(mount = %crate::logging::shown(mount), "the deck's page not written to the data-dir: {e}");
        }
    }
}

/// A deck's files in `folder`: `<id>.pdf` and `<id>-<page>.png` written (synced) first, then
/// the index naming them, atomically; then the files of the deck it replaced are removed.
/// A crash leaves the old deck or the new one, never a mix. Blocking.
fn save(folder: &Path, deck: &Deck, index: &Index) -> std::io::Result<()> {
    use crate::stream::slides::write_atomic;
    std::fs::create_dir_all(folder)?;
    write_atomic(&folder.join(format!("{}.pdf", deck.id)), &deck.pdf)?;
    for (n, (bytes, _, _)) in deck.pages.iter().enumerate() {
        write_atomic(&folder.join(format!("{}-{}.png", deck.id, n + 1)), bytes)?;
    }
    let json = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    write_atomic(&folder.join(INDEX), &json)?;
    std::fs::File::open(folder)?.sync_all()?;
    remove_others(folder, deck.id)
}

/// Files of `folder` that are not the index or deck `id`'s: leftovers of a replaced deck or
/// of a crash.
fn remove_others(folder: &Path, id: u64) -> std::io::Result<()> {
    let (pdf, prefix) = (format!("{id}.pdf"), format!("{id}-"));
    for entry in std::fs::read_dir(folder)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != INDEX && name != pdf && !name.starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A deck read back from its folder: `None` for a folder without an index; an error when a
/// file is missing or not what the index says.
fn load(folder: &Path) -> std::io::Result<Option<(String, Deck)>> {
    let text = match std::fs::read(folder.join(INDEX)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let index: Index = serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::other(format!("{INDEX}: {e}")))?;
    let mount = crate::mount_path::MountPath::parse(&index.mount)
        .map_err(|e| std::io::Error::other(format!("{INDEX}: mount {:?}: {e}", index.mount)))?
        .into_string();
    if index.pages.is_empty() || index.pages.len() > 2000 {
        return Err(std::io::Error::other(format!(
            "{INDEX}: no pages, or too many"
        )));
    }
    let read = |name: String, len: u64| -> std::io::Result<Bytes> {
        let bytes = std::fs::read(folder.join(&name))?;
        if bytes.len() as u64 != len {
            return Err(std::io::Error::other(format!(
                "{name} has {} bytes, the index says {len}",
                bytes.len()
            )));
        }
        Ok(Bytes::from(bytes))
    };
    let pdf = read(format!("{}.pdf", index.id), index.pdf_bytes)?;
    let mut pages = Vec::with_capacity(index.pages.len());
    for (n, &(len, w, h)) in index.pages.iter().enumerate() {
        let name = format!("{}-{}.png", index.id, n + 1);
        let bytes = read(name.clone(), len)?;
        if crate::stream::slides::probe(&bytes).ok()
            != Some((crate::stream::slides::ImageType::Png, w, h))
        {
            return Err(std::io::Error::other(format!(
                "{name} is not the {w}x{h} PNG the index says"
            )));
        }
        pages.push((bytes, w, h));
    }
    remove_others(folder, index.id)?;
    let current = index.current.filter(|&p| p < pages.len());
    Ok(Some((
        mount,
        Deck {
            id: index.id,
            name: index.name,
            pdf,
            pages,
            current: Mutex::new(current),
        },
    )))
}
