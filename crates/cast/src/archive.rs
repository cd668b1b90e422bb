//! The local archive: every byte of the stream, in a file, whatever the network does.
//!
//! **Invariants:** the archive is written from the encoder's output before anything is pushed,
//! by a dedicated thread, so no target can slow it down. Writes go straight to the file (no
//! user-space buffer), so what was encoded is in the kernel the moment it was read, and a
//! crash of agora loses nothing; the file is `fsync`ed every [`SYNC_EVERY`] so a power cut
//! loses at most that much. Live Ogg, WebM (unknown sizes) and MP3 need no trailer: the file is
//! playable at every moment.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::CastError;

/// How often the archive is flushed to the disk itself.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// `DIR/<name>_<YYYY-MM-DDTHH-MM-SS>_<WxH>.<ext>`.
pub fn archive_path(
    dir: &Path,
    name: &str,
    started: time::OffsetDateTime,
    size: &str,
    ext: &str,
) -> PathBuf {
    dir.join(format!("{}_{}_{size}.{ext}", slug(name), stamp(started)))
}

/// `DIR/<name>_<YYYY-MM-DDTHH-MM-SS>_slides`: the slides of the cast whose archive files bear
/// the same name and time (see [`crate::slides::store`]).
pub fn slides_dir(dir: &Path, name: &str, started: time::OffsetDateTime) -> PathBuf {
    dir.join(format!("{}_{}_slides", slug(name), stamp(started)))
}

/// `DIR/<name>_<YYYY-MM-DDTHH-MM-SS>.html`: the page that plays the cast's archive file with its
/// slides (see [`crate::slides::page`]).
pub fn page_path(dir: &Path, name: &str, started: time::OffsetDateTime) -> PathBuf {
    dir.join(format!("{}_{}.html", slug(name), stamp(started)))
}

fn stamp(started: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}",
        started.year(),
        u8::from(started.month()),
        started.day(),
        started.hour(),
        started.minute(),
        started.second()
    )
}

/// A file-name-safe form of a stream name: letters, digits, `-`, `_`, `.`; others become `-`.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(['-', '.']).to_string();
    if s.is_empty() { "stream".into() } else { s }
}

/// A running archive writer.
#[derive(Debug)]
pub struct Archive {
    /// The file being written.
    pub path: PathBuf,
    tx: Option<mpsc::Sender<Bytes>>,
    thread: Option<std::thread::JoinHandle<Result<(), std::io::Error>>>,
    /// Bytes written so far.
    pub written: Arc<AtomicU64>,
}

impl Archive {
    /// Creates the file (never overwriting one) and starts its writer thread.
    pub fn create(path: PathBuf) -> Result<Archive, CastError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|why| CastError::Archive {
                path: path.clone(),
                why,
            })?;
        }
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|why| CastError::Archive {
                path: path.clone(),
                why,
            })?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let thread = std::thread::Builder::new()
            .name("archive".into())
            .spawn(move || {
                let mut synced = Instant::now();
                while let Some(b) = rx.blocking_recv() {
                    file.write_all(&b)?;
                    counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                    if synced.elapsed() >= SYNC_EVERY {
                        file.sync_data()?;
                        synced = Instant::now();
                    }
                }
                file.sync_all()
            })
            .map_err(|why| CastError::Archive {
                path: path.clone(),
                why,
            })?;
        Ok(Archive {
            path,
            tx: Some(tx),
            thread: Some(thread),
            written,
        })
    }

    /// Queues bytes for the file. Waits only if the disk is more than 1024 reads behind.
    pub async fn write(&mut self, b: Bytes) -> Result<(), CastError> {
        let failed = match &self.tx {
            Some(tx) => tx.send(b).await.is_err(),
            None => true,
        };
        if failed {
            // The thread ended: it hit an error. Report it.
            return self.finish().await;
        }
        Ok(())
    }

    /// Flushes, syncs and closes the file.
    pub async fn finish(&mut self) -> Result<(), CastError> {
        self.tx = None;
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let path = self.path.clone();
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(|r| r.ok());
        match joined {
            Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(CastError::Archive { path, why }),
            None => Err(CastError::Archive {
                path,
                why: std::io::Error::other("archive writer panicked"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = time::macros::datetime!(2026-11-24 09:05:03 UTC);
        assert_eq!(
            archive_path(Path::new("/a"), "PyCon FR live/stream", t, "320x240", "ogg"),
            PathBuf::from("/a/PyCon-FR-live-stream_2026-11-24T09-05-03_320x240.ogg")
        );
        assert_eq!(slug("../.."), "stream");
        assert_eq!(
            slides_dir(Path::new("/a"), "PyCon FR", t),
            PathBuf::from("/a/PyCon-FR_2026-11-24T09-05-03_slides")
        );
        assert_eq!(
            page_path(Path::new("/a"), "PyCon FR", t),
            PathBuf::from("/a/PyCon-FR_2026-11-24T09-05-03.html")
        );
    }

    #[tokio::test]
    async fn writes_every_byte_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("agora-archive-{}", std::process::id()));
        let path = dir.join("a.ogg");
        let _ = std::fs::remove_file(&path);
        let mut a = Archive::create(path.clone()).expect("create");
        a.write(Bytes::from_static(b"hello ")).await.expect("write");
        a.write(Bytes::from_static(b"world")).await.expect("write");
        a.finish().await.expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), b"hello world");
        assert!(Archive::create(path.clone()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
