//! The per-mount fan-out buffer: one bounded queue of immutable, reference-counted chunks that
//! every listener of the mount reads through its own cursor.
//!
//! **Architecture invariants** (tests in this file and `tests/` pin them):
//! - *Bounded.* The queue holds at most `queue_size` bytes plus the newest chunk, and at most
//!   [`KEEP_SPANS`] spans of at most [`MAX_SPAN`] bytes each; the oldest chunks are dropped as
//!   new ones arrive, whatever listeners do. The stream headers the chunks hold count too,
//!   once per run of chunks that share them: a source that starts a new Ogg chain (or WebM
//!   Segment) with a megabyte of headers before every small page would otherwise make a
//!   queue of tiny chunks hold thousands of distinct headers (gigabytes for a 512 KiB queue).
//! - *Listeners never copy stream bytes.* A read hands out clones of [`Bytes`] (a reference
//!   count increment); the bytes go from here to the socket in a vectored write.
//! - *The source never waits for a listener.* [`Fanout::publish`] takes the write lock for a
//!   push and an eviction, then wakes readers; no listener state is touched.
//! - *Lag is explicit.* A reader whose cursor fell off the front of the queue (more than
//!   `queue_size` behind) gets [`Read::Lagged`], never a silent skip: the listener task applies
//!   the mount's [`LagPolicy`](crate::config::LagPolicy).
//! - *Wake-ups are spaced, data is not.* A published chunk is in the queue at once (a joining
//!   listener, a relay, a push read it at once), and readers are woken for it at once unless
//!   they were woken less than a delay ago, a delay that grows with the number of readers up
//!   to `coalesce-ms`; then at the end of that delay, or as soon as `coalesce-bytes` bytes
//!   wait. A radio source writes a frame of a few hundred bytes tens of times a second, and
//!   sending each to 15,000 listeners costs a write per listener per frame, while a few
//!   hundred listeners cost nothing worth a delay, nor does a stream whose writes are already
//!   further apart than the delay (video pages: they go out as they come) (see [`Wake`]). The
//!   first chunk, a small chunk a delay or more after the previous small one (a video
//!   stream's audio page, once a second), a close and admin wake-ups are never delayed.
//! - *A wake-up's chunks are one buffer.* When readers are woken for several small chunks, the
//!   chunks are also copied once into one contiguous [`Span`] that each of them points to, and
//!   a reader at any of them takes the rest of the span as one slice: one buffer, one reference
//!   count and one plain `send` per listener per wake-up instead of one of each per frame (the
//!   copy is made once per wake-up for the whole mount). The chunks stay in the queue as they
//!   are; only the last [`KEEP_SPANS`] spans are kept.
//! - *Every chunk knows its headers.* Each entry carries the [`StreamHeaders`] it belongs to, so
//!   a listener crossing into a new chain or a reconnected source's stream sends the new headers
//!   first (Icecast's `associated` refbuf).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::stream::spool::Spool;
use crate::sync::RwLock;
use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, watch};

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
    /// When it was published (how much time a burst from here spans, for a browser's fill).
    at: Instant,
    /// The span this chunk is part of, if any.
    span: Option<Span>,
    /// What it counts towards the queue's size: its bytes, plus its headers' when the chunk
    /// before it has other headers.
    cost: usize,
}

/// Consecutive small chunks, announced to readers together, copied into one buffer (see the
/// module doc). Each chunk of the span holds a handle to it.
#[derive(Debug, Clone)]
struct Span {
    bytes: Bytes,
    /// Stream offset of `bytes[0]` (the first chunk's offset).
    base: u64,
    /// Sequence numbers of its first chunk and after its last.
    first: u64,
    next: u64,
}

/// Spans kept (the newest): a reader more than this many wake-ups behind reads chunk by chunk.
const KEEP_SPANS: usize = 8;
/// Largest span: larger wake-ups are big chunks already, nothing to gather.
const MAX_SPAN: usize = 64 * 1024;

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
    /// Bytes held in `entries`, headers counted once per run (see [`Entry::cost`]).
    held: usize,
    /// Stream offset after the last entry.
    end_offset: u64,
    queue_size: usize,
    closed: bool,
    /// Sequence number up to which chunks were gathered into spans (or left alone).
    spanned: u64,
    /// First sequence number of each span kept, oldest first.
    spans: VecDeque<u64>,
}

impl Queue {
    /// Gather the chunks published since the last call into one span, when there are at least
    /// two, they belong to the same headers and they fit [`MAX_SPAN`]; drop the oldest span
    /// beyond [`KEEP_SPANS`].
    fn gather(&mut self) {
        let end = self.first_seq + self.entries.len() as u64;
        let from = self.spanned.max(self.first_seq);
        self.spanned = end;
        if end - from < 2 {
            return;
        }
        let range = (from - self.first_seq) as usize..self.entries.len();
        let first = &self.entries[range.start];
        let mut total = 0usize;
        for e in self.entries.range(range.clone()) {
            total += e.bytes.len();
            if total > MAX_SPAN || !Arc::ptr_eq(&e.headers, &first.headers) {
                return;
            }
        }
        let base = first.offset;
        let mut buf = BytesMut::with_capacity(total);
        for e in self.entries.range(range.clone()) {
            buf.extend_from_slice(&e.bytes);
        }
        let span = Span {
            bytes: buf.freeze(),
            base,
            first: from,
            next: end,
        };
        for e in self.entries.range_mut(range) {
            e.span = Some(span.clone());
        }
        self.spans.push_back(from);
        while self.spans.len() > KEEP_SPANS {
            let Some(old) = self.spans.pop_front() else {
                break;
            };
            // Its chunks still held: from `old` (or the queue's front) to the span's end.
            let from = old.max(self.first_seq);
            let first = (from - self.first_seq) as usize;
            let Some(next) = self
                .entries
                .get(first)
                .and_then(|e| e.span.as_ref())
                .filter(|s| s.first == old)
                .map(|s| s.next)
            else {
                continue;
            };
            let last = (next.saturating_sub(self.first_seq) as usize).min(self.entries.len());
            for e in self.entries.range_mut(first..last) {
                e.span = None;
            }
        }
    }
}

/// When readers are woken for published chunks: at once if the last wake-up is at least the
/// delay old, else at its end (the delay: `per_reader` for each reader, at most `max_delay`),
/// or as soon as `bytes` wait. The delay bounds the wake-ups (and writes) a mount costs per
/// second whatever its audience: `1 / per_reader` a second below the cap (33,000 with 30 µs),
/// while a small audience hears every write at once, and so does a stream that writes less
/// often than the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wake {
    /// Longest a published byte waits before readers are woken for it; zero: at once.
    pub(crate) max_delay: Duration,
    /// Delay per reader.
    pub(crate) per_reader: Duration,
    /// Readers are woken as soon as this many bytes wait.
    pub(crate) bytes: usize,
}

impl Wake {
    /// Every publish wakes readers.
    #[cfg(test)]
    pub(crate) const IMMEDIATE: Wake = Wake {
        max_delay: Duration::ZERO,
        per_reader: Duration::ZERO,
        bytes: 0,
    };

    /// The delay for `readers` readers.
    fn delay(&self, readers: usize) -> Duration {
        self.per_reader
            .saturating_mul(u32::try_from(readers).unwrap_or(u32::MAX))
            .min(self.max_delay)
    }
}

/// The fan-out buffer of one mount.
#[derive(Debug)]
pub(crate) struct Fanout {
    queue: Arc<RwLock<Queue>>,
    waker: Arc<Waker>,
    /// The queue's bytes in an in-memory file, for `sendfile` (see [`Fanout::spooled`]).
    spool: Option<Spool>,
}

/// Wakes readers, at once or after the coalescing delay (see [`Wake`]). Shared with the timer
/// task that ends a delay; every field is an atomic or the watch channel, no lock.
#[derive(Debug)]
struct Waker {
    /// The fan-out's queue, to gather what readers are woken for into a span.
    queue: Arc<RwLock<Queue>>,
    tail: watch::Sender<Tail>,
    wake: Wake,
    /// The next sequence number once everything published so far is counted.
    published: AtomicU64,
    /// Bytes published since readers were last woken.
    unannounced: AtomicUsize,
    /// A delay is running (the timer task will wake readers at its end).
    armed: AtomicBool,
    /// The running delay's length, in microseconds (set with `armed`).
    delay_us: AtomicU64,
    /// When readers were last woken for chunks: microseconds since `epoch` (tokio's clock, so
    /// that tests run it paused).
    last_wake_us: AtomicU64,
    /// When the last small chunk (under `wake.bytes`) was published, same clock.
    last_small_us: AtomicU64,
    epoch: tokio::time::Instant,
    /// The timer task was started (lazily, by the first delayed publish).
    timer: AtomicBool,
    /// Starts a delay in the timer task.
    kick: Notify,
}

impl Waker {
    /// Wake readers for everything published, if anything is waiting.
    fn announce(&self) {
        if self.unannounced.swap(0, Ordering::AcqRel) > 0 {
            self.last_wake_us.store(self.now_us(), Ordering::Release);
            self.queue.write().gather();
            let seq = self.published.load(Ordering::Acquire);
            self.tail.send_modify(|t| t.next_seq = t.next_seq.max(seq));
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The timer task: each kick starts a delay at whose end readers are woken. Ends when
    /// the mount closes.
    async fn run(self: Arc<Self>) {
        loop {
            self.kick.notified().await;
            if self.tail.borrow().closed {
                return;
            }
            let delay = Duration::from_micros(self.delay_us.load(Ordering::Acquire));
            tokio::time::sleep(delay).await;
            self.armed.store(false, Ordering::Release);
            self.announce();
        }
    }
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
    #[cfg(test)]
    pub(crate) fn new(queue_size: usize) -> Self {
        Self::with_wake(queue_size, Wake::IMMEDIATE)
    }

    pub(crate) fn with_wake(queue_size: usize, wake: Wake) -> Self {
        let queue = Arc::new(RwLock::new(Queue {
            entries: VecDeque::new(),
            first_seq: 0,
            held: 0,
            end_offset: 0,
            queue_size,
            closed: false,
            spanned: 0,
            spans: VecDeque::new(),
        }));
        Fanout {
            queue: queue.clone(),
            waker: Arc::new(Waker {
                queue,
                tail: watch::Sender::new(Tail::default()),
                wake,
                published: AtomicU64::new(0),
                unannounced: AtomicUsize::new(0),
                armed: AtomicBool::new(false),
                delay_us: AtomicU64::new(0),
                last_wake_us: AtomicU64::new(0),
                last_small_us: AtomicU64::new(0),
                epoch: tokio::time::Instant::now(),
                timer: AtomicBool::new(false),
                kick: Notify::new(),
            }),
            spool: None,
        }
    }

    /// Also keep the queue's bytes in an in-memory file (see [`spool`](crate::stream::spool)),
    /// if one can be made, so that listeners can send large ranges with [`Fanout::send_file`].
    /// `queue_size` is the queue's (the queue's lock is not taken: a mount is made under the
    /// registry's).
    pub(crate) fn spooled(mut self, queue_size: usize) -> Self {
        self.spool = Spool::new(queue_size);
        self
    }

    /// A receiver that changes when readers are woken: for published chunks (see [`Wake`]),
    /// an admin order, or the mount closing.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Tail> {
        self.waker.tail.subscribe()
    }

    /// Append a chunk; evicts the oldest chunks beyond `queue_size`; wakes readers at once or
    /// once the coalescing delay or size is reached (see [`Wake`]).
    pub(crate) fn publish(&self, bytes: Bytes, sync: bool, headers: Arc<StreamHeaders>) {
        if bytes.is_empty() {
            return;
        }
        let (next_seq, len) = {
            let mut q = self.queue.write();
            let len = bytes.len();
            let offset = q.end_offset;
            if let Some(spool) = &self.spool {
                spool.append(offset, &bytes);
            }
            let new_headers = q
                .entries
                .back()
                .is_none_or(|e| !Arc::ptr_eq(&e.headers, &headers));
            let cost = len + if new_headers { headers.bytes.len() } else { 0 };
            q.entries.push_back(Entry {
                offset,
                bytes,
                sync,
                headers,
                at: Instant::now(),
                span: None,
                cost,
            });
            q.held += cost;
            q.end_offset += len as u64;
            while q.held > q.queue_size && q.entries.len() > 1 {
                if let Some(old) = q.entries.pop_front() {
                    q.held -= old.cost;
                    q.first_seq += 1;
                }
            }
            if let (Some(spool), Some(front)) = (&self.spool, q.entries.front()) {
                spool.forget_before(front.offset);
            }
            (q.first_seq + q.entries.len() as u64, len)
        };
        let w = &self.waker;
        w.published.fetch_max(next_seq, Ordering::AcqRel);
        let waiting = w.unannounced.fetch_add(len, Ordering::AcqRel) + len;
        let delay = w.wake.delay(w.tail.receiver_count()).as_micros() as u64;
        let now = w.now_us();
        let since = now.saturating_sub(w.last_wake_us.load(Ordering::Acquire));
        // A small chunk far from the previous one (a video stream's audio page, a second
        // apart) is no series to gather: it goes at once. Small chunks so woken are at least a
        // delay apart, so the bound on wake-ups holds.
        let sparse = len < w.wake.bytes
            && now.saturating_sub(w.last_small_us.swap(now, Ordering::AcqRel)) >= delay;
        let at_once = since >= delay || sparse || waiting >= w.wake.bytes || next_seq == 1;
        if at_once || !self.start_timer() {
            w.announce();
        } else if !w.armed.load(Ordering::Acquire) {
            // Until the delay since the last wake-up is over.
            w.delay_us.store(delay - since, Ordering::Release);
            if !w.armed.swap(true, Ordering::AcqRel) {
                w.kick.notify_one();
            }
        }
    }

    /// Start the timer task if it is not running: false where there is no runtime to run it
    /// (readers are then woken at once).
    fn start_timer(&self) -> bool {
        if self.waker.timer.load(Ordering::Acquire) {
            return true;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if !self.waker.timer.swap(true, Ordering::AcqRel) {
            rt.spawn(self.waker.clone().run());
        }
        true
    }

    /// The sequence number after the last chunk published: a reader whose cursor is there has
    /// read everything (a lock-free check; chunks published later wake it).
    pub(crate) fn published(&self) -> u64 {
        self.waker.published.load(Ordering::Acquire)
    }

    /// Wake every reader without publishing (an admin order is waiting for them), and for
    /// whatever was published meanwhile.
    pub(crate) fn wake(&self) {
        self.waker.unannounced.store(0, Ordering::Release);
        let seq = self.waker.published.load(Ordering::Acquire);
        self.waker
            .tail
            .send_modify(|t| t.next_seq = t.next_seq.max(seq));
    }

    /// Close the mount: readers drain what they have, then get [`Read::Closed`].
    pub(crate) fn close(&self) {
        self.queue.write().closed = true;
        let seq = self.waker.published.load(Ordering::Acquire);
        self.waker.tail.send_modify(|t| {
            t.next_seq = t.next_seq.max(seq);
            t.closed = true;
        });
        // The timer task sees the close at its next kick and ends.
        self.waker.kick.notify_one();
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

    /// What a listener starting at `seq` would be sent at once: the bytes held from there on,
    /// and when the chunk at `seq` was published (`None` when nothing is held from there).
    pub(crate) fn held_from(&self, seq: u64) -> (u64, Option<Instant>) {
        let q = self.queue.read();
        match q.entries.get(seq.saturating_sub(q.first_seq) as usize) {
            Some(e) if seq >= q.first_seq => (q.end_offset - e.offset, Some(e.at)),
            _ => (0, None),
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
    /// `max_bytes` or `max_chunks` chunks (at least one chunk when one is available). `f` runs
    /// under the queue's read lock: it must only take what it needs (reference counts) and
    /// return.
    pub(crate) fn read_each(
        &self,
        cursor: u64,
        max_bytes: usize,
        max_chunks: usize,
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
        let (mut taken, mut items) = (0usize, 0usize);
        let mut seq = cursor;
        while let Some(e) = q.entries.get((seq - q.first_seq) as usize) {
            // The rest of the chunk's span in one slice, or the chunk.
            let span = e.span.as_ref().filter(|s| s.next > seq).map(|s| {
                (
                    s.bytes.slice((e.offset - s.base) as usize..),
                    s.next.min(end),
                )
            });
            let len = span.as_ref().map_or(e.bytes.len(), |(b, _)| b.len());
            if taken > 0 && (taken + len > max_bytes || items >= max_chunks) {
                break;
            }
            taken += len;
            items += 1;
            match span {
                Some((bytes, next)) => {
                    f(&bytes, &e.headers);
                    seq = next;
                }
                None => {
                    f(&e.bytes, &e.headers);
                    seq += 1;
                }
            }
        }
        Read::Data(seq)
    }

    /// For a reader at `cursor` that sends the stream's bytes as they are (no metadata or
    /// padding spliced in) and last sent `headers`: the stream range [`read_each`] would hand
    /// it with the same limits, as (stream offset, length, cursor after it), when the mount is
    /// spooled, the range is at least `min` bytes, and every chunk in it belongs to `headers`.
    ///
    /// [`read_each`]: Fanout::read_each
    pub(crate) fn plain_range(
        &self,
        cursor: u64,
        headers: &Arc<StreamHeaders>,
        min: usize,
        max_bytes: usize,
        max_chunks: usize,
    ) -> Option<(u64, usize, u64)> {
        if !self.spool.as_ref().is_some_and(Spool::ok) {
            return None;
        }
        let q = self.queue.read();
        let first = q.entries.get(cursor.checked_sub(q.first_seq)? as usize)?;
        let (mut len, mut seq) = (0usize, cursor);
        while let Some(e) = q.entries.get((seq - q.first_seq) as usize) {
            if !Arc::ptr_eq(&e.headers, headers)
                || (len > 0
                    && (len + e.bytes.len() > max_bytes || seq - cursor >= max_chunks as u64))
            {
                break;
            }
            len += e.bytes.len();
            seq += 1;
        }
        (len >= min).then_some((first.offset, len, seq))
    }

    /// Send `len` stream bytes from stream offset `offset` to `sock` from the spool (see
    /// [`Fanout::plain_range`]), without blocking if `sock` does not: how many were sent.
    pub(crate) fn send_file(
        &self,
        sock: impl std::os::fd::AsFd,
        offset: u64,
        len: usize,
    ) -> std::io::Result<usize> {
        match &self.spool {
            Some(spool) => spool.send_to(sock, offset, len),
            None => Err(std::io::ErrorKind::Unsupported.into()),
        }
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
            self.read_each(cursor, max_bytes, usize::MAX, |bytes, _| {
                out.push(bytes.clone())
            })
        }
    }

    #[test]
    fn headers_count_towards_the_queue_so_new_chains_cannot_pile_them_up() {
        // A source that starts a new chain with 100 KB of headers before every 50-byte page.
        let f = Fanout::new(16 * 1024);
        let mut alive = Vec::new();
        for i in 0..200u8 {
            let h = StreamHeaders::new(b(100_000, i));
            alive.push(Arc::downgrade(&h));
            f.publish(b(50, i), true, h.clone());
            f.publish(b(50, i), false, h);
            assert!(f.held() <= 16 * 1024 + 100_050, "{}", f.held());
        }
        let kept = alive.iter().filter(|w| w.strong_count() > 0).count();
        assert_eq!(kept, 1, "only the newest chain's headers are held");
        // Headers shared by consecutive chunks count once.
        let f = Fanout::new(16 * 1024);
        let h = StreamHeaders::new(b(1000, 0));
        for _ in 0..10 {
            f.publish(b(100, 1), true, h.clone());
        }
        assert_eq!(f.held(), 1000 + 10 * 100);
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
        let mut n = 0;
        assert_eq!(f.read_each(0, 1 << 20, 3, |_, _| n += 1), Read::Data(3));
        assert_eq!(n, 3, "at most 3 chunks");
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

    /// 50 ms with one reader (the tests' receiver), and 10 ms per reader at most 50.
    fn small_wake() -> Wake {
        Wake {
            max_delay: Duration::from_millis(50),
            per_reader: Duration::from_millis(50),
            bytes: 1000,
        }
    }

    #[test]
    fn the_delay_grows_with_the_readers_up_to_its_cap() {
        let w = Wake {
            max_delay: Duration::from_millis(150),
            per_reader: Duration::from_micros(30),
            bytes: 4096,
        };
        assert_eq!(w.delay(0), Duration::ZERO);
        assert_eq!(w.delay(100), Duration::from_millis(3));
        assert_eq!(w.delay(1000), Duration::from_millis(30));
        assert_eq!(w.delay(5000), Duration::from_millis(150));
        assert_eq!(w.delay(usize::MAX), Duration::from_millis(150));
    }

    /// Small publishes are in the queue at once but wake readers only after the delay, or
    /// as soon as enough bytes wait; the first chunk and a close wake them at once.
    #[tokio::test(start_paused = true)]
    async fn small_publishes_wake_readers_after_the_delay_or_the_size() {
        let f = Fanout::with_wake(100_000, small_wake());
        let h = StreamHeaders::new(Bytes::new());
        let mut rx = f.subscribe();
        f.publish(b(100, 0), true, h.clone());
        assert!(
            rx.has_changed().expect("open"),
            "the first chunk wakes at once"
        );
        assert_eq!(rx.borrow_and_update().next_seq, 1);
        f.publish(b(100, 0), true, h.clone());
        f.publish(b(100, 0), true, h.clone());
        assert!(!rx.has_changed().expect("open"), "small chunks wait");
        let mut out = Vec::new();
        assert_eq!(
            f.read(1, &mut out, 1 << 20),
            Read::Data(3),
            "but are readable"
        );
        tokio::time::sleep(Duration::from_millis(49)).await;
        assert!(!rx.has_changed().expect("open"));
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(
            rx.borrow_and_update().next_seq,
            3,
            "woken at the end of the delay"
        );
        // Nothing waiting: the timer wakes no one.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!rx.has_changed().expect("open"));
        // The last wake-up is older than the delay: at once.
        f.publish(b(100, 0), true, h.clone());
        assert_eq!(
            rx.borrow_and_update().next_seq,
            4,
            "after a quiet spell: at once"
        );
        // Enough bytes wake at once.
        f.publish(b(600, 0), true, h.clone());
        assert!(!rx.has_changed().expect("open"));
        f.publish(b(600, 0), true, h.clone());
        assert_eq!(rx.borrow_and_update().next_seq, 6, "1,200 bytes: at once");
        // The delay started by the first of them ends with nothing to announce.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!rx.has_changed().expect("open"));
        // Within the delay of a wake-up: waits for its end, not a whole delay.
        f.publish(b(100, 0), true, h.clone());
        rx.borrow_and_update();
        tokio::time::sleep(Duration::from_millis(30)).await;
        f.publish(b(100, 0), true, h.clone());
        assert!(!rx.has_changed().expect("open"));
        tokio::time::sleep(Duration::from_millis(21)).await;
        assert_eq!(
            rx.borrow_and_update().next_seq,
            8,
            "50 ms after the last wake-up"
        );
        // A small chunk long after the previous small one goes at once, even right after a
        // wake-up for a large chunk (a video stream's audio page among its video pages) ...
        tokio::time::sleep(Duration::from_millis(60)).await;
        f.publish(b(1000, 0), true, h.clone());
        assert_eq!(rx.borrow_and_update().next_seq, 9, "large: at once");
        tokio::time::sleep(Duration::from_millis(10)).await;
        f.publish(b(100, 0), true, h.clone());
        assert_eq!(
            rx.borrow_and_update().next_seq,
            10,
            "a lone small chunk: at once"
        );
        // ... but not a series of them.
        tokio::time::sleep(Duration::from_millis(10)).await;
        f.publish(b(100, 0), true, h.clone());
        assert!(!rx.has_changed().expect("open"), "10 ms after it: waits");
        // A close does not wait, and carries what was waiting.
        f.publish(b(10, 0), true, h);
        f.close();
        let t = *rx.borrow_and_update();
        assert_eq!((t.next_seq, t.closed), (12, true));
    }

    /// The chunks a wake-up announces are read as one buffer from wherever a reader is among
    /// them; byte for byte the same stream as chunk by chunk; spans never cross new headers and
    /// only the newest are kept.
    #[tokio::test(start_paused = true)]
    async fn a_wake_ups_chunks_are_read_as_one_buffer() {
        let f = Fanout::with_wake(100_000, small_wake());
        let h = StreamHeaders::new(Bytes::new());
        let mut rx = f.subscribe();
        f.publish(b(10, 0), true, h.clone());
        for i in 1..=4 {
            f.publish(b(100, i), true, h.clone());
        }
        tokio::time::sleep(Duration::from_millis(51)).await;
        assert_eq!(rx.borrow_and_update().next_seq, 5);
        let all: Vec<u8> = (1..=4u8).flat_map(|i| vec![i; 100]).collect();
        for start in 1..5u64 {
            let mut out = Vec::new();
            assert_eq!(f.read(start, &mut out, 1 << 20), Read::Data(5));
            assert_eq!(out.len(), 1, "one buffer from chunk {start}");
            assert_eq!(
                out[0][..],
                all[(start as usize - 1) * 100..],
                "from {start}"
            );
        }
        // The limits count a span as one item of its length.
        let mut out = Vec::new();
        assert_eq!(
            f.read_each(0, 1 << 20, 1, |b, _| out.push(b.clone())),
            Read::Data(1)
        );
        // New headers inside a wake-up: no span, chunk by chunk.
        let h2 = StreamHeaders::new(Bytes::from_static(b"OggS"));
        f.publish(b(100, 5), true, h.clone());
        f.publish(b(100, 6), true, h2.clone());
        tokio::time::sleep(Duration::from_millis(51)).await;
        let mut out = Vec::new();
        assert_eq!(f.read(5, &mut out, 1 << 20), Read::Data(7));
        assert_eq!(out.len(), 2);
        // Only the newest spans are kept; older chunks read one by one, the same bytes. A
        // radio-like series: a small chunk every 10 ms, five to a wake-up.
        let count = 5 * (KEEP_SPANS as u8 + 4);
        for n in 0..count {
            f.publish(b(50, n), true, h2.clone());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(51)).await;
        assert_eq!(f.queue.read().spans.len(), KEEP_SPANS);
        let mut out = Vec::new();
        assert_eq!(
            f.read(7, &mut out, 1 << 20),
            Read::Data(7 + u64::from(count))
        );
        assert!(
            out.len() > KEEP_SPANS + 5 && out.len() < usize::from(count),
            "old spans chunk by chunk, the newest as spans: {} buffers",
            out.len()
        );
        let wire: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let want: Vec<u8> = (0..count).flat_map(|n| vec![n; 50]).collect();
        assert_eq!(wire, want);
    }

    /// An admin wake-up also announces what was waiting.
    #[tokio::test(start_paused = true)]
    async fn an_admin_wake_carries_waiting_chunks() {
        let f = Fanout::with_wake(100_000, small_wake());
        let h = StreamHeaders::new(Bytes::new());
        let mut rx = f.subscribe();
        f.publish(b(100, 0), true, h.clone());
        rx.borrow_and_update();
        f.publish(b(100, 0), true, h);
        f.wake();
        assert_eq!(rx.borrow_and_update().next_seq, 2);
    }
}
