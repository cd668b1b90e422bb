//! A mount's recent stream bytes in an anonymous in-memory file, so that large writes to
//! listeners are `sendfile(2)` calls from it: the kernel takes the file's pages by reference
//! instead of copying the bytes into every listener's socket (#12's kernel offload).
//!
//! Measured with the floor (`agora-bench floor --send sendfile`, BENCHMARKS.md): a 34 KB WebM
//! cluster costs 10-30% less CPU per byte sent this way than with a `write`, a 12 KB Ogg page
//! ~5%, an 8 KB page the same, and a few hundred bytes of radio ~12% more. Listeners therefore
//! use it only for writes of at least the mount's `sendfile-min-bytes`.
//!
//! **Invariants:**
//! - *Every stream byte is at its stream offset.* The fan-out appends each chunk under its
//!   queue's write lock, so the file holds exactly the bytes its entries hold, at their
//!   offsets.
//! - *Bounded.* Pages more than `keep` bytes behind the queue's front are punched out (whole
//!   pages only: punching part of a page would zero bytes an unsent segment may still carry).
//!   A page that a socket's unsent segment references stays alive by its own reference, so a
//!   punch never changes bytes in flight; `keep` (half the queue, at least 1 MiB) is far more
//!   than is published between a reader finding its range in the queue and sending it.
//! - *Failure falls back.* If the file cannot take a chunk (memory limits), the spool is
//!   marked broken and listeners write from memory as before.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const PAGE: u64 = 4096;

#[derive(Debug)]
pub(crate) struct Spool {
    file: File,
    /// Bytes before this offset were punched out.
    punched: AtomicU64,
    /// Bytes kept behind the queue's front.
    keep: u64,
    broken: AtomicBool,
}

impl Spool {
    /// A spool for a queue of `queue_size` bytes; `None` when no in-memory file can be made.
    pub(crate) fn new(queue_size: usize) -> Option<Spool> {
        let file =
            nix::sys::memfd::memfd_create(c"agora-spool", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .inspect_err(|e| tracing::warn!("no in-memory file for sendfile: {e}"))
                .ok()?;
        Some(Spool {
            file: file.into(),
            punched: AtomicU64::new(0),
            keep: (queue_size as u64 / 2).max(1 << 20),
            broken: AtomicBool::new(false),
        })
    }

    /// Usable: every byte appended so far is in the file.
    pub(crate) fn ok(&self) -> bool {
        !self.broken.load(Ordering::Acquire)
    }

    /// Write `bytes` at stream offset `offset` (called by the publisher under the queue's
    /// write lock, in stream order).
    pub(crate) fn append(&self, offset: u64, bytes: &[u8]) {
        if self.ok()
            && let Err(e) = self.file.write_all_at(bytes, offset)
        {
            tracing::warn!("in-memory file full, listeners write from memory: {e}");
            self.broken.store(true, Ordering::Release);
        }
    }

    /// The queue's front is now at stream offset `front`: free what lies `keep` behind it.
    pub(crate) fn forget_before(&self, front: u64) {
        use nix::fcntl::FallocateFlags as F;
        let limit = front.saturating_sub(self.keep) / PAGE * PAGE;
        let punched = self.punched.load(Ordering::Acquire);
        // In steps of at least 64 pages: one call per 256 KiB of stream.
        if limit < punched + 64 * PAGE {
            return;
        }
        let (Ok(at), Ok(len)) = (i64::try_from(punched), i64::try_from(limit - punched)) else {
            return;
        };
        if nix::fcntl::fallocate(
            &self.file,
            F::FALLOC_FL_PUNCH_HOLE | F::FALLOC_FL_KEEP_SIZE,
            at,
            len,
        )
        .is_ok()
        {
            self.punched.store(limit, Ordering::Release);
        }
    }

    /// `sendfile(2)` of `len` bytes from stream offset `offset` to `sock` (non-blocking if
    /// the socket is): how many were sent.
    pub(crate) fn send_to(
        &self,
        sock: impl AsFd,
        offset: u64,
        len: usize,
    ) -> std::io::Result<usize> {
        let mut at = i64::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        Ok(nix::sys::sendfile::sendfile(
            sock,
            &self.file,
            Some(&mut at),
            len,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn bytes_are_sent_from_their_offsets_and_old_pages_are_freed() {
        let spool = Spool::new(16 * 1024).expect("memfd");
        let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        for (i, piece) in data.chunks(10_000).enumerate() {
            spool.append(i as u64 * 10_000, piece);
        }
        assert!(spool.ok());
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let n = spool.send_to(&b, 1_234_567, 5_000).expect("sendfile");
        assert_eq!(n, 5_000);
        let mut got = vec![0u8; n];
        a.read_exact(&mut got).expect("read");
        assert_eq!(got, data[1_234_567..1_234_567 + n]);
        // The front at 3 MiB: everything more than 1 MiB behind it goes, page by page.
        spool.forget_before(3 << 20);
        assert_eq!(spool.punched.load(Ordering::Acquire), 2 << 20);
        // Punched bytes read as zeros; the rest is intact.
        let mut probe = [0u8; 2];
        spool
            .file
            .read_exact_at(&mut probe, (2 << 20) - 1)
            .expect("read");
        assert_eq!(probe, [0, data[2 << 20]]);
        // Small steps are not worth a call.
        spool.forget_before((3 << 20) + PAGE);
        assert_eq!(spool.punched.load(Ordering::Acquire), 2 << 20);
    }
}
