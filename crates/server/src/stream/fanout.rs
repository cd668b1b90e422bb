//! The per-mount fan-out buffer: one bounded queue of immutable, reference-counted chunks that
//! every listener of the mount reads through its own cursor.
//!
//! **Architecture invariants** (tests in this file and `tests/` pin them):
//! - *Bounded.* The queue holds at most `queue_size` bytes plus the newest chunk; the oldest
//!   chunks are dropped as new ones arrive, whatever listeners do.
//! - *Listeners never copy stream bytes.* A read hands out clones of [`Bytes`] (a reference
//!   count increment); the bytes go from here to the socket in a vectored write.
//! - *The source never waits for a listener.* [`Fanout::publish`] takes the write lock for a
//!   push and an eviction, then wakes readers; no listener state is touched.
//! - *Lag is explicit.* A reader whose cursor fell off the front of the queue (more than
//!   `queue_size` behind) gets [`Read::Lagged`], never a silent skip: the listener task applies
//!   the mount's [`LagPolicy`](crate::config::LagPolicy).
//! - *Every chunk knows its headers.* Each entry carries the [`StreamHeaders`] it belongs to, so
//!   a listener crossing into a new chain or a reconnected source's stream sends the new headers
//!   first (Icecast's `associated` refbuf).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::sync::RwLock;
use bytes::Bytes;
use tokio::sync::watch;

/// The header bytes a listener must receive before chunks that belong to them (Ogg BOS and
/// header pages, WebM EBML..Tracks). Empty for formats without headers (MP3, AAC).
#[derive(Debug, Default)]
pub(crate) struct StreamHeaders {
    pub(crate) bytes: Bytes,
}

impl StreamHeaders {
    pub(crate) fn new(bytes: Bytes) -> Arc<Self> {
        Arc::new(StreamHeaders { bytes })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Stream offset of the chunk's first byte (bytes published before it).
    offset: u64,
    bytes: Bytes,
    sync: bool,
    headers: Arc<StreamHeaders>,
}

/// What a reader gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Items were appended to the output; the new cursor.
    Data(u64),
    /// Nothing new yet: wait for [`Fanout::subscribe`]'s receiver to change.
    Empty,
    /// The cursor fell behind the queue's front.
    Lagged,
    /// The mount closed and everything was read.
    Closed,
}

/// Published to wake readers: the next sequence number and whether the mount is closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    pub(crate) next_seq: u64,
    pub(crate) closed: bool,
}

#[derive(Debug)]
struct Queue {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`.
    first_seq: u64,
    /// Bytes held in `entries`.
    held: usize,
    /// Stream offset after the last entry.
    end_offset: u64,
    queue_size: usize,
    closed: bool,
}

/// The fan-out buffer of one mount.
#[derive(Debug)]
pub(crate) struct Fanout {
    queue: RwLock<Queue>,
    tail: watch::Sender<Tail>,
}

/// Where a new listener starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// At this sequence number (a sync point inside the burst window, or the latest one).
    At(u64),
    /// No sync point is held: start at the next chunk that is one, from this cursor on.
    NextSync(u64),
}

impl Fanout {
    pub(crate) fn new(queue_size: usize) -> Self {
        Fanout {
            queue: RwLock::new(Queue {
                entries: VecDeque::new(),
                first_seq: 0,
                held: 0,
                end_offset: 0,
                queue_size,
                closed: false,
            }),
            tail: watch::Sender::new(Tail::default()),
        }
    }

    /// A receiver that changes whenever a chunk is published or the mount closes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Tail> {
        self.tail.subscribe()
    }

    /// Append a chunk; evicts the oldest chunks beyond `queue_size` and wakes readers.
    pub(crate) fn publish(&self, bytes: Bytes, sync: bool, headers: Arc<StreamHeaders>) {
        if bytes.is_empty() {
            return;
        }
        let next_seq = {
            let mut q = self.queue.write();
            let len = bytes.len();
            let offset = q.end_offset;
            q.entries.push_back(Entry {
                offset,
                bytes,
                sync,
                headers,
            });
            q.held += len;
            q.end_offset += len as u64;
            while q.held > q.queue_size && q.entries.len() > 1 {
                if let Some(old) = q.entries.pop_front() {
                    q.held -= old.bytes.len();
                    q.first_seq += 1;
                }
            }
            q.first_seq + q.entries.len() as u64
        };
        self.tail.send_modify(|t| t.next_seq = next_seq);
    }

    /// Wake every reader without publishing (an admin order is waiting for them).
    pub(crate) fn wake(&self) {
        self.tail.send_modify(|_| {});
    }

    /// Close the mount: readers drain what they have, then get [`Read::Closed`].
    pub(crate) fn close(&self) {
        self.queue.write().closed = true;
        self.tail.send_modify(|t| t.closed = true);
    }

    /// Bytes currently held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.queue.read().held
    }

    /// The start of a new listener with a burst of at most `burst` bytes: the oldest sync point
    /// within the last `burst` bytes, else the latest sync point held (playback still starts at
    /// once, with a larger burst), else the next sync point to arrive.
    pub(crate) fn start(&self, burst: usize) -> Start {
        let q = self.queue.read();
        let window = q.end_offset.saturating_sub(burst as u64);
        let mut in_window = None;
        let mut latest_before = None;
        for (i, e) in q.entries.iter().enumerate().rev() {
            if !e.sync {
                continue;
            }
            if e.offset >= window {
                in_window = Some(i);
            } else {
                latest_before = Some(i);
                break;
            }
        }
        let next = q.first_seq + q.entries.len() as u64;
        match in_window.or(latest_before) {
            Some(i) => Start::At(q.first_seq + i as u64),
            None => Start::NextSync(next),
        }
    }

    /// The latest sync point held, for a lagging listener moved forward.
    pub(crate) fn latest_sync(&self) -> Start {
        let q = self.queue.read();
        let next = q.first_seq + q.entries.len() as u64;
        match q.entries.iter().rposition(|e| e.sync) {
            Some(i) => Start::At(q.first_seq + i as u64),
            None => Start::NextSync(next),
        }
    }

    /// The sequence number of the first sync chunk at or after `cursor` that is still held,
    /// for a listener waiting for its first sync point.
    pub(crate) fn first_sync_at_or_after(&self, cursor: u64) -> Option<u64> {
        let q = self.queue.read();
        let from = cursor.saturating_sub(q.first_seq) as usize;
        q.entries
            .iter()
            .skip(from)
            .position(|e| e.sync)
            .map(|p| q.first_seq + (from + p) as u64)
    }

    /// Hand `f` each chunk from `cursor` on (and the headers it belongs to), stopping after
    /// `max_bytes` (at least one chunk when one is available). `f` runs under the queue's read
    /// lock: it must only take what it needs (reference counts) and return.
    pub(crate) fn read_each(
        &self,
        cursor: u64,
        max_bytes: usize,
        mut f: impl FnMut(&Bytes, &Arc<StreamHeaders>),
    ) -> Read {
        let q = self.queue.read();
        if cursor < q.first_seq {
            return Read::Lagged;
        }
        let end = q.first_seq + q.entries.len() as u64;
        if cursor >= end {
            return if q.closed { Read::Closed } else { Read::Empty };
        }
        let mut taken = 0usize;
        let mut seq = cursor;
        for e in q.entries.range((cursor - q.first_seq) as usize..) {
            if taken > 0 && taken + e.bytes.len() > max_bytes {
                break;
            }
            taken += e.bytes.len();
            f(&e.bytes, &e.headers);
            seq += 1;
        }
        Read::Data(seq)
    }

    /// True when `cursor` has fallen off the queue's front.
    pub(crate) fn is_lagged(&self, cursor: u64) -> bool {
        cursor < self.queue.read().first_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    /// `read_each` collecting the chunks (what a listener does, without its socket).
    impl Fanout {
        fn read(&self, cursor: u64, out: &mut Vec<Bytes>, max_bytes: usize) -> Read {
            self.read_each(cursor, max_bytes, |bytes, _| out.push(bytes.clone()))
        }
    }

    #[test]
    fn queue_stays_bounded_and_lagging_reader_is_told() {
        let f = Fanout::new(10_000);
        let h = StreamHeaders::new(Bytes::new());
        for i in 0..100 {
            f.publish(b(1000, i as u8), true, h.clone());
            assert!(f.held() <= 10_000 + 1000);
        }
        let mut out = Vec::new();
        assert_eq!(f.read(0, &mut out, 1 << 20), Read::Lagged);
        assert!(out.is_empty());
        assert!(f.is_lagged(0));
        // A reader at the front gets data.
        let Start::At(s) = f.latest_sync() else {
            panic!("sync expected")
        };
        assert_eq!(f.read(s, &mut out, 1 << 20), Read::Data(100));
        assert_eq!(out.len(), 1);
        assert_eq!(f.read(100, &mut out, 1 << 20), Read::Empty);
        f.close();
        assert_eq!(f.read(100, &mut out, 1 << 20), Read::Closed);
    }

    #[test]
    fn burst_starts_at_oldest_sync_point_in_window() {
        let f = Fanout::new(100_000);
        let h = StreamHeaders::new(Bytes::new());
        // seq: 0 sync, 1, 2 sync, 3, 4 sync, 5 ; 1000 bytes each.
        for i in 0..6 {
            f.publish(b(1000, 0), i % 2 == 0, h.clone());
        }
        // Window of 2500 bytes covers offsets >= 3500: entries 4 (4000) and 5.
        assert_eq!(f.start(2500), Start::At(4));
        // Window of 4500 covers offsets >= 1500: sync points 2 and 4 -> oldest is 2.
        assert_eq!(f.start(4500), Start::At(2));
        // Window too small for any sync point: the latest sync point anyway.
        assert_eq!(f.start(500), Start::At(4));
    }

    #[test]
    fn no_sync_point_waits_for_the_next() {
        let f = Fanout::new(100_000);
        let h = StreamHeaders::new(Bytes::new());
        f.publish(b(10, 0), false, h.clone());
        assert_eq!(f.start(65536), Start::NextSync(1));
        f.publish(b(10, 0), false, h.clone());
        f.publish(b(10, 0), true, h);
        assert_eq!(f.first_sync_at_or_after(1), Some(2));
    }

    #[test]
    fn read_respects_max_bytes_but_returns_at_least_one() {
        let f = Fanout::new(100_000);
        let h = StreamHeaders::new(Bytes::new());
        for _ in 0..5 {
            f.publish(b(3000, 0), true, h.clone());
        }
        let mut out = Vec::new();
        assert_eq!(f.read(0, &mut out, 1000), Read::Data(1));
        out.clear();
        assert_eq!(f.read(1, &mut out, 6000), Read::Data(3));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn chunks_are_shared_not_copied() {
        let f = Fanout::new(100_000);
        let h = StreamHeaders::new(Bytes::new());
        let chunk = b(100, 7);
        let ptr = chunk.as_ptr();
        f.publish(chunk, true, h);
        let mut a = Vec::new();
        let mut c = Vec::new();
        f.read(0, &mut a, 1 << 20);
        f.read(0, &mut c, 1 << 20);
        assert_eq!(a[0].as_ptr(), ptr);
        assert_eq!(c[0].as_ptr(), ptr);
    }
}
