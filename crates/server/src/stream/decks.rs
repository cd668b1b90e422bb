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
//!   at most [`MAX_DECKS`] mounts have a deck (`507` for one more). Decks are kept in memory:
//!   a restart forgets them (the slides stepped to stay, in the slide store).
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
}

impl DeckStore {
    /// The mount's deck.
    pub(crate) fn get(&self, mount: &str) -> Option<Arc<Deck>> {
        self.decks.read().get(mount).cloned()
    }

    /// Make `pages` the mount's deck, in place of the one it had; `None` when [`MAX_DECKS`]
    /// other mounts have one.
    pub(crate) fn put(
        &self,
        mount: &str,
        name: Option<String>,
        pdf: Bytes,
        pages: Vec<(Bytes, u32, u32)>,
    ) -> Option<Arc<Deck>> {
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
        let mut decks = self.decks.write();
        if !decks.contains_key(mount) && decks.len() >= MAX_DECKS {
            return None;
        }
        decks.insert(mount.to_string(), deck.clone());
        Some(deck)
    }
}
