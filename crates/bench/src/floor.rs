//! `agora-bench floor`: the floor of the machine. A fan-out server written for the measurement
//! only, so that Agora's and icecast2's CPU per GB and forwarding latency can be read against
//! what the kernel itself costs for the same bytes to the same sockets.
//!
//! ```text
//!   acceptor thread ── accept, round-robin ──► worker inbox + eventfd
//!   source thread   ── read(2) whatever arrives ──► shared ring (Mutex, bounded) + eventfd
//!                                                     │ Bytes clones, once per chunk per worker
//!                                                     ▼
//!   worker threads (one per core): epoll (edge-triggered) over their sockets and an eventfd;
//!   on a new chunk, write(2) it to each of their listeners; EAGAIN leaves the rest pending
//!   until EPOLLOUT; a listener more than --queue bytes behind is closed.
//! ```
//!
//! What it leaves out on purpose: HTTP beyond the first word of the request line and two
//! header fields of a source (`Content-Type`, `Expect`); mounts (every path is the one stream);
//! authentication (any source credentials); logging per connection; metadata; sync points (a
//! listener starts at the next chunk the source thread read, whatever it holds). One source at
//! a time; a second is refused with 403. A `GET` while no source is on gets 404; listeners stay
//! when the source leaves, and a new source's chunks (its header first) follow.
//!
//! **Stream header.** So that players and the swarm's keyframe timer can start, a listener
//! gets the stream's header before live chunks: the header pages as `agora_format::Demuxer`
//! captures them from the source's first bytes (Ogg: every BOS and header page; WebM: up to the
//! first Cluster). Until the capture ends the header is the whole stream so far, so an early
//! listener still receives a contiguous prefix; a stream with no header found in its first
//! 256 KiB has an empty one. The demuxer is dropped once the header is known: no per-chunk
//! format work. A listener's first keyframe therefore waits for the next keyframe in the live
//! stream (up to one GOP), where Agora and icecast2 start listeners on a burst.
//!
//! **Invariant:** per chunk per listener, the only work is a `write(2)` (and, when the socket
//! is full, one more on EPOLLOUT); no allocation, lock or copy per listener. The shared ring is
//! locked once per chunk per worker.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agora_format::{Demuxer, Event};
use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};

#[derive(Args, Debug)]
pub(crate) struct FloorArgs {
    /// Address to listen on; port 0 picks a free one (the line printed at start names it).
    #[arg(long)]
    listen: SocketAddr,
    /// Fan-out threads, each with its own epoll loop; default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// A listener more than this many bytes behind the stream is closed (as Agora's and
    /// Icecast's queue-size).
    #[arg(long, default_value_t = 512 * 1024)]
    queue: u64,
    /// How a chunk reaches a listener's socket (issue #12's kernel offload experiments):
    /// `write(2)` from the chunk's memory, `sendfile(2)` from a memfd holding the stream's
    /// recent bytes (the sender copies nothing), or `send(2)` with `MSG_ZEROCOPY`.
    #[arg(long, value_enum, default_value_t = SendMode::Write)]
    send: SendMode,
    /// `SO_SNDBUF` of every listener socket (the kernel doubles it); default: auto-tuned.
    #[arg(long)]
    sndbuf: Option<usize>,
    /// `TCP_NOTSENT_LOWAT` of every listener socket, in bytes; default: unset.
    #[arg(long)]
    notsent_lowat: Option<u32>,
}

/// How chunks are written to listeners (see [`FloorArgs::send`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendMode {
    Write,
    Sendfile,
    Zerocopy,
}

/// Socket and send options of the listeners.
#[derive(Clone, Copy, Debug)]
struct Opts {
    queue: u64,
    send: SendMode,
    sndbuf: Option<usize>,
    notsent_lowat: Option<u32>,
}

/// Longest request head read.
const MAX_HEAD: usize = 8192;
/// Longest stream prefix searched for the stream header.
const HEADER_LIMIT: usize = 256 * 1024;
/// Largest chunk the source thread reads at once.
const READ_SIZE: usize = 64 * 1024;
/// Backlog asked of the kernel (capped at net.core.somaxconn), as Agora's default.
const BACKLOG: i32 = 16_384;
/// The epoll token of a worker's eventfd; other tokens are connection slots.
const WAKE: u64 = u64::MAX;

/// Runs the floor until SIGINT or SIGTERM, then prints a one-line summary.
pub(crate) fn run(args: FloorArgs) -> Result<()> {
    // Blocked here, before any thread starts, so every thread inherits the mask and the
    // signals wait for `SigSet::wait` below.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("blocking signals")?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let opts = Opts {
        queue: args.queue,
        send: args.send,
        sndbuf: args.sndbuf,
        notsent_lowat: args.notsent_lowat,
    };
    let (addr, shared) = start(args.listen, threads, opts)?;
    println!("floor listening on {addr}");
    let signal = signals.wait().context("waiting for a signal")?;
    let s = &shared.stats;
    println!(
        "floor: {signal}: {} source(s), {} chunks, {:.1} MB in; {} listeners joined, {} closed \
         lagging, {} left; {:.3} GB out",
        s.sources.load(Relaxed),
        s.chunks_in.load(Relaxed),
        s.bytes_in.load(Relaxed) as f64 / 1e6,
        s.joined.load(Relaxed),
        s.lagged.load(Relaxed),
        s.left.load(Relaxed),
        s.bytes_out.load(Relaxed) as f64 / 1e9,
    );
    Ok(())
}

/// Binds, starts the acceptor and `threads` workers; returns the bound address.
fn start(listen: SocketAddr, threads: usize, opts: Opts) -> Result<(SocketAddr, Arc<Shared>)> {
    let threads = threads.max(1);
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&listen.into())
        .with_context(|| format!("binding {listen}"))?;
    sock.listen(BACKLOG)?;
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr()?;

    let mut workers = Vec::with_capacity(threads);
    for _ in 0..threads {
        workers.push(Inbox {
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            conns: Mutex::new(Vec::new()),
        });
    }
    let file = match opts.send {
        SendMode::Sendfile => Some(memfd()?),
        _ => None,
    };
    let shared = Arc::new(Shared {
        ring: Mutex::new(Ring::default()),
        workers,
        stats: Stats::default(),
        queue: opts.queue,
        opts,
        file,
    });
    for id in 0..threads {
        let mut w = Worker::new(id, shared.clone())?;
        std::thread::Builder::new()
            .name(format!("floor-{id}"))
            .spawn(move || w.run())?;
    }
    let s = shared.clone();
    std::thread::Builder::new()
        .name("floor-accept".into())
        .spawn(move || accept_loop(&listener, &s))?;
    Ok((addr, shared))
}

/// What every thread shares.
struct Shared {
    ring: Mutex<Ring>,
    workers: Vec<Inbox>,
    stats: Stats,
    queue: u64,
    opts: Opts,
    /// With `--send sendfile`: every stream byte at its stream offset, old pages punched out.
    file: Option<std::fs::File>,
}

impl Shared {
    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A worker's doorbell: new connections, new chunks.
struct Inbox {
    wake: EventFd,
    conns: Mutex<Vec<TcpStream>>,
}

/// Counters for the summary; workers add to them once per fan-out round, not per write.
#[derive(Default)]
struct Stats {
    sources: AtomicU64,
    chunks_in: AtomicU64,
    bytes_in: AtomicU64,
    joined: AtomicU64,
    lagged: AtomicU64,
    left: AtomicU64,
    bytes_out: AtomicU64,
}

/// The stream as the source thread publishes it: the last chunks (at least `queue` bytes of
/// them, so a worker that finds a gap knows its listeners were too far behind anyway), the
/// header, and whether a source is connected.
#[derive(Default)]
struct Ring {
    chunks: VecDeque<Bytes>,
    /// Sequence number of `chunks[0]`.
    first: u64,
    /// Stream offset of `chunks[0]`'s first byte (every source's bytes, one after the other).
    first_offset: u64,
    bytes: u64,
    /// File bytes before this offset were punched out (`--send sendfile`).
    punched: u64,
    header: Bytes,
    content_type: String,
    /// Bumped whenever `header` or `content_type` changes.
    epoch: u64,
    live: bool,
}

impl Ring {
    fn end(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    /// Appends a chunk and forgets the oldest ones beyond `keep` bytes.
    fn push(&mut self, chunk: Bytes, keep: u64) {
        self.bytes += chunk.len() as u64;
        self.chunks.push_back(chunk);
        while let Some(front) = self.chunks.front()
            && self.bytes - front.len() as u64 >= keep
        {
            self.bytes -= front.len() as u64;
            self.first_offset += front.len() as u64;
            self.chunks.pop_front();
            self.first += 1;
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Shared) {
    let mut next = 0;
    loop {
        match listener.accept() {
            Ok((sock, _)) => {
                if sock.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = sock.set_nodelay(true);
                set_options(&sock, &shared.opts);
                let w = &shared.workers[next];
                next = (next + 1) % shared.workers.len();
                w.conns.lock().unwrap_or_else(|p| p.into_inner()).push(sock);
                let _ = w.wake.write(1);
            }
            // EMFILE in a connect storm: let descriptors free up.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// One connection on a worker.
enum Conn {
    /// Reading the request head.
    Head {
        sock: TcpStream,
        buf: Vec<u8>,
    },
    Listener(Listener),
}

struct Listener {
    sock: TcpStream,
    /// The response head and stream header, shared by the worker's listeners, and how much of
    /// it was written.
    pre: Option<(Bytes, usize)>,
    /// Next chunk (worker-local sequence) and offset in it.
    seq: u64,
    off: usize,
    /// The socket was full (EAGAIN): nothing more until EPOLLOUT.
    blocked: bool,
}

/// Why a connection was closed, for the summary.
#[derive(Clone, Copy)]
enum Why {
    /// The listener left, or its socket failed.
    Left,
    /// More than the queue behind.
    Lagged,
    /// Never became a listener (a bad or unanswerable request).
    Refused,
}

/// What the request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Listen,
    Source {
        content_type: Option<String>,
        expect_continue: bool,
    },
    Other,
}

/// Length of the request head including its blank line, once it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(head: &[u8]) -> Request {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let method = lines.next().and_then(|l| l.split(' ').next()).unwrap_or("");
    match method {
        "GET" => Request::Listen,
        "PUT" | "SOURCE" => {
            let (mut content_type, mut expect_continue) = (None, false);
            for (name, value) in lines.filter_map(|l| l.split_once(':')) {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-type") && !value.is_empty() {
                    content_type = Some(value.to_string());
                } else if name.eq_ignore_ascii_case("expect") {
                    expect_continue = value.eq_ignore_ascii_case("100-continue");
                }
            }
            Request::Source {
                content_type,
                expect_continue,
            }
        }
        _ => Request::Other,
    }
}

/// The chunks a worker's listeners may still need.
#[derive(Default)]
struct Local {
    /// (stream offset of the chunk's first byte, chunk); `chunks[0]` has sequence `base`.
    chunks: VecDeque<(u64, Bytes)>,
    base: u64,
    /// Stream offset just past the last chunk.
    end: u64,
}

impl Local {
    fn end_seq(&self) -> u64 {
        self.base + self.chunks.len() as u64
    }

    /// Bytes between a listener's position and the end of the stream.
    fn lag(&self, l: &Listener) -> u64 {
        match self.chunks.get((l.seq - self.base) as usize) {
            Some((start, _)) => self.end - (start + l.off as u64),
            None => 0,
        }
    }
}

struct Worker {
    id: usize,
    shared: Arc<Shared>,
    epoll: Epoll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    local: Local,
    /// Next shared sequence number to take from the ring.
    next: u64,
    /// The ring's epoch `pre` was built for, and the response head plus stream header.
    epoch: u64,
    pre: Bytes,
    /// New chunks since the last fan-out round.
    dirty: bool,
    /// Where the next fan-out round starts, so no listener is always served first.
    round: usize,
    /// Bytes written since the last flush to `Stats`.
    out: u64,
    /// `--send zerocopy`: chunks no listener needs, whose memory the kernel may still read.
    retired: (VecDeque<Bytes>, u64),
}

impl Worker {
    fn new(id: usize, shared: Arc<Shared>) -> Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            &shared.workers[id].wake,
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE),
        )?;
        Ok(Self {
            id,
            shared,
            epoll,
            conns: Vec::new(),
            free: Vec::new(),
            local: Local::default(),
            next: 0,
            epoch: u64::MAX,
            pre: Bytes::new(),
            dirty: false,
            round: 0,
            out: 0,
            retired: (VecDeque::new(), 0),
        })
    }

    fn run(&mut self) {
        let mut events = vec![EpollEvent::empty(); 1024];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("floor: epoll_wait: {e}");
                    return;
                }
            };
            let mut woken = false;
            for ev in &events[..n] {
                if ev.data() == WAKE {
                    woken = true;
                } else {
                    self.event(ev.data() as usize, ev.events());
                }
            }
            if woken {
                let _ = self.shared.workers[self.id].wake.read();
                self.take_new_connections();
                self.sync();
            }
            if self.dirty {
                self.fan_out();
            }
            if self.out > 0 {
                self.shared.stats.bytes_out.fetch_add(self.out, Relaxed);
                self.out = 0;
            }
        }
    }

    fn take_new_connections(&mut self) {
        let new = std::mem::take(
            &mut *self.shared.workers[self.id]
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for sock in new {
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            // Registered once, edge-triggered: EPOLLOUT fires only after a write met a full
            // socket, so a listener that keeps up costs no epoll_ctl and no wake-up.
            let flags = EpollFlags::EPOLLIN
                | EpollFlags::EPOLLOUT
                | EpollFlags::EPOLLRDHUP
                | EpollFlags::EPOLLET;
            if self
                .epoll
                .add(&sock, EpollEvent::new(flags, slot as u64))
                .is_err()
            {
                self.free.push(slot);
                continue;
            }
            self.conns[slot] = Some(Conn::Head {
                sock,
                buf: Vec::new(),
            });
        }
    }

    /// Takes the chunks published since the last call; rebuilds `pre` if the header changed.
    /// Returns whether a source is connected.
    fn sync(&mut self) -> bool {
        let shared = self.shared.clone();
        let ring = shared.ring();
        if self.next < ring.first && self.listeners() > 0 {
            // Chunks this worker never took are gone: every listener here is more than the
            // queue behind.
            drop(ring);
            self.close_all_listeners();
            return self.sync();
        }
        let from = (self.next.max(ring.first) - ring.first) as usize;
        let mut start = ring.first_offset
            + ring
                .chunks
                .range(..from)
                .map(|c| c.len() as u64)
                .sum::<u64>();
        for chunk in ring.chunks.range(from..) {
            self.local.chunks.push_back((start, chunk.clone()));
            start += chunk.len() as u64;
            self.local.end = start;
            self.dirty = true;
        }
        self.next = ring.end();
        if ring.epoch != self.epoch {
            self.epoch = ring.epoch;
            let ct = if ring.content_type.is_empty() {
                "application/octet-stream"
            } else {
                &ring.content_type
            };
            let head =
                format!("HTTP/1.0 200 OK\r\nContent-Type: {ct}\r\nCache-Control: no-cache\r\n\r\n");
            self.pre = Bytes::from([head.as_bytes(), &ring.header].concat());
        }
        ring.live
    }

    fn listeners(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| matches!(c, Some(Conn::Listener(_))))
            .count()
    }

    fn close_all_listeners(&mut self) {
        for i in 0..self.conns.len() {
            if matches!(self.conns[i], Some(Conn::Listener(_))) {
                self.close(i, Why::Lagged);
            }
        }
    }

    fn close(&mut self, slot: usize, why: Why) {
        if self.conns[slot].take().is_some() {
            self.free.push(slot);
            let stats = &self.shared.stats;
            match why {
                Why::Left => stats.left.fetch_add(1, Relaxed),
                Why::Lagged => stats.lagged.fetch_add(1, Relaxed),
                Why::Refused => 0,
            };
        }
    }

    fn event(&mut self, slot: usize, flags: EpollFlags) {
        match self.conns.get_mut(slot) {
            // The first EPOLLOUT (the socket is writable) comes before the request: ignored.
            Some(Some(Conn::Head { .. })) if !flags.difference(EpollFlags::EPOLLOUT).is_empty() => {
                self.read_head(slot);
            }
            Some(Some(Conn::Listener(l))) => {
                // Zero-copy completions arrive on the socket's error queue, as EPOLLERR: only a
                // hang-up or an error left after reading them closes the listener.
                let completions = self.shared.opts.send == SendMode::Zerocopy
                    && flags.contains(EpollFlags::EPOLLERR)
                    && !flags.contains(EpollFlags::EPOLLHUP)
                    && drain_completions(&l.sock);
                if !completions && flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                    return self.close(slot, Why::Left);
                }
                // A listener has nothing to say: drain what it sends, notice when it leaves.
                if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP) && !drain(&l.sock)
                {
                    return self.close(slot, Why::Left);
                }
                if flags.contains(EpollFlags::EPOLLOUT) && l.blocked {
                    l.blocked = false;
                    if flush(l, &self.local, &mut self.out, how(&self.shared)).is_err() {
                        self.close(slot, Why::Left);
                    }
                }
            }
            _ => {}
        }
    }

    fn read_head(&mut self, slot: usize) {
        let Some(Some(Conn::Head { sock, buf })) = self.conns.get_mut(slot) else {
            return;
        };
        let mut b = [0u8; 2048];
        let end = loop {
            match sock.read(&mut b) {
                Ok(0) => return self.close(slot, Why::Refused),
                Ok(n) => {
                    buf.extend_from_slice(&b[..n]);
                    if let Some(end) = head_end(buf) {
                        break end;
                    }
                    if buf.len() > MAX_HEAD {
                        return self.close(slot, Why::Refused);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(slot, Why::Refused),
            }
        };
        let Some(Conn::Head { sock, mut buf }) = self.conns[slot].take() else {
            return;
        };
        match parse_head(&buf[..end]) {
            Request::Listen => {
                if !self.sync() {
                    self.free.push(slot);
                    let _ = (&sock).write(b"HTTP/1.0 404 Not Found\r\n\r\n");
                    return;
                }
                self.shared.stats.joined.fetch_add(1, Relaxed);
                let mut l = Listener {
                    sock,
                    pre: Some((self.pre.clone(), 0)),
                    seq: self.local.end_seq(),
                    off: 0,
                    blocked: false,
                };
                if flush(&mut l, &self.local, &mut self.out, how(&self.shared)).is_ok() {
                    self.conns[slot] = Some(Conn::Listener(l));
                } else {
                    self.free.push(slot);
                    self.shared.stats.left.fetch_add(1, Relaxed);
                }
            }
            Request::Source {
                content_type,
                expect_continue,
            } => {
                self.free.push(slot);
                {
                    let mut ring = self.shared.ring();
                    if ring.live {
                        drop(ring);
                        let _ = (&sock).write(b"HTTP/1.0 403 Forbidden\r\n\r\n");
                        return;
                    }
                    ring.live = true;
                    ring.header = Bytes::new();
                    ring.content_type = content_type.unwrap_or_default();
                    ring.epoch += 1;
                }
                let _ = self.epoll.delete(&sock);
                let body = buf.split_off(end);
                let shared = self.shared.clone();
                let started = std::thread::Builder::new()
                    .name("floor-source".into())
                    .spawn(move || run_source(sock, body, expect_continue, &shared));
                if started.is_err() {
                    self.shared.ring().live = false;
                }
            }
            Request::Other => {
                self.free.push(slot);
                let _ = (&sock).write(b"HTTP/1.0 405 Method Not Allowed\r\n\r\n");
            }
        }
    }

    /// Writes new chunks to every listener that is not waiting for EPOLLOUT; closes those more
    /// than the queue behind; forgets chunks no listener needs.
    fn fan_out(&mut self) {
        self.dirty = false;
        let n = self.conns.len();
        let queue = self.shared.queue;
        let mut min_seq = self.local.end_seq();
        self.round = if n == 0 { 0 } else { (self.round + 1) % n };
        for k in 0..n {
            let slot = (self.round + k) % n;
            let Some(Conn::Listener(l)) = &mut self.conns[slot] else {
                continue;
            };
            let ok = l.blocked || flush(l, &self.local, &mut self.out, how(&self.shared)).is_ok();
            if !ok {
                self.close(slot, Why::Left);
            } else if self.local.lag(l) > queue {
                self.close(slot, Why::Lagged);
            } else {
                min_seq = min_seq.min(l.seq);
            }
        }
        while self.local.base < min_seq {
            if let Some((_, chunk)) = self.local.chunks.pop_front()
                && self.shared.opts.send == SendMode::Zerocopy
            {
                // The kernel may still read a zero-copy chunk's memory: kept a while longer.
                self.retired.1 += chunk.len() as u64;
                self.retired.0.push_back(chunk);
                while self.retired.1 > 2 * queue
                    && let Some(old) = self.retired.0.pop_front()
                {
                    self.retired.1 -= old.len() as u64;
                }
            }
            self.local.base += 1;
        }
    }
}

/// Writes what `l` has pending until it is caught up or its socket is full.
fn flush(l: &mut Listener, local: &Local, out: &mut u64, how: How<'_>) -> std::io::Result<()> {
    loop {
        let (buf, offset) = match &l.pre {
            Some((pre, at)) => (&pre[*at..], None),
            None => match local.chunks.get((l.seq - local.base) as usize) {
                Some((start, chunk)) => (&chunk[l.off..], Some(start + l.off as u64)),
                None => return Ok(()),
            },
        };
        let result = match (how, offset) {
            (How::Sendfile(file), Some(at)) => sendfile(&l.sock, file, at, buf.len()),
            (How::Zerocopy, Some(_)) => send_zerocopy(&l.sock, buf),
            _ => (&l.sock).write(buf),
        };
        match result {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                *out += n as u64;
                let done = n == buf.len();
                match &mut l.pre {
                    Some(_) if done => l.pre = None,
                    Some((_, at)) => *at += n,
                    None if done => (l.seq, l.off) = (l.seq + 1, 0),
                    None => l.off += n,
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                l.blocked = true;
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How [`flush`] sends stream chunks (the response head and stream header are always written).
#[derive(Clone, Copy)]
enum How<'a> {
    Write,
    Sendfile(&'a std::fs::File),
    Zerocopy,
}

fn how(shared: &Shared) -> How<'_> {
    match (shared.opts.send, &shared.file) {
        (SendMode::Sendfile, Some(file)) => How::Sendfile(file),
        (SendMode::Zerocopy, _) => How::Zerocopy,
        _ => How::Write,
    }
}

fn set_options(sock: &TcpStream, opts: &Opts) {
    let sock2 = socket2::SockRef::from(sock);
    if let Some(size) = opts.sndbuf {
        let _ = sock2.set_send_buffer_size(size);
    }
    if let Some(lowat) = opts.notsent_lowat {
        let _ = sock2.set_tcp_notsent_lowat(lowat);
    }
    if opts.send == SendMode::Zerocopy {
        let _ = crate::kernel::set_zerocopy(sock);
    }
}

/// An anonymous in-memory file for `--send sendfile`.
fn memfd() -> Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(c"agora-floor", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .context("memfd_create")?;
    Ok(fd.into())
}

/// Frees the memfd's pages far behind the stream (twice the queue): no listener can still
/// need them, and a page an unsent segment holds stays alive by its own reference. Whole
/// pages only: punching part of a page would zero bytes a segment may still carry.
fn punch_behind(file: &std::fs::File, ring: &mut Ring, queue: u64) {
    use nix::fcntl::FallocateFlags as F;
    const PAGE: u64 = 4096;
    let limit = ring.first_offset.saturating_sub(2 * queue) / PAGE * PAGE;
    if limit <= ring.punched + 64 * PAGE {
        return;
    }
    let (at, len) = (
        ring.punched as libc::off_t,
        (limit - ring.punched) as libc::off_t,
    );
    if nix::fcntl::fallocate(
        file,
        F::FALLOC_FL_PUNCH_HOLE | F::FALLOC_FL_KEEP_SIZE,
        at,
        len,
    )
    .is_ok()
    {
        ring.punched = limit;
    }
}

fn sendfile(sock: &TcpStream, file: &std::fs::File, at: u64, len: usize) -> std::io::Result<usize> {
    let mut offset = at as libc::off_t;
    nix::sys::sendfile::sendfile(sock, file, Some(&mut offset), len).map_err(Into::into)
}

fn send_zerocopy(sock: &TcpStream, buf: &[u8]) -> std::io::Result<usize> {
    // The chunk `buf` is part of is kept alive (retired) long after the kernel's last read.
    socket2::SockRef::from(sock).send_with_flags(buf, libc::MSG_ZEROCOPY | libc::MSG_NOSIGNAL)
}

/// Reads the zero-copy completions off a socket's error queue (a bounded number of them);
/// false if the socket has a real error.
fn drain_completions(sock: &TcpStream) -> bool {
    let sock2 = socket2::SockRef::from(sock);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    for _ in 0..64 {
        if let Err(e) = sock2.recv_with_flags(&mut buf, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) {
            return e.kind() == ErrorKind::WouldBlock && sock.take_error().ok().flatten().is_none();
        }
    }
    true
}

/// Reads and discards what a listener sent; false once it closed or failed.
fn drain(mut sock: &TcpStream) -> bool {
    let mut b = [0u8; 512];
    loop {
        match sock.read(&mut b) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// The source connection, on a thread of its own: blocking reads, each one a chunk.
fn run_source(mut sock: TcpStream, body: Vec<u8>, expect_continue: bool, shared: &Shared) {
    shared.stats.sources.fetch_add(1, Relaxed);
    let reply: &[u8] = if expect_continue {
        b"HTTP/1.1 100 Continue\r\n\r\n"
    } else {
        b"HTTP/1.0 200 OK\r\n\r\n"
    };
    if sock.set_nonblocking(false).is_ok() && sock.write_all(reply).is_ok() {
        let mut capture = Some(Capture::default());
        publish(shared, &mut capture, &body);
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => publish(shared, &mut capture, &buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    shared.ring().live = false;
}

/// The stream header being looked for in the source's first bytes.
#[derive(Default)]
struct Capture {
    demux: Demuxer,
    prefix: Vec<u8>,
}

/// Feeds `data` to the capture; returns the header as it now stands (the prefix so far, the
/// captured header pages once found, empty when none is found), or `None` once settled.
fn capture_header(state: &mut Option<Capture>, data: &[u8]) -> Option<Bytes> {
    let c = state.as_mut()?;
    c.prefix.extend_from_slice(data);
    c.demux.push(data);
    loop {
        match c.demux.poll() {
            Ok(Some(Event::Headers(h))) => {
                *state = None;
                return Some(h);
            }
            Ok(Some(Event::Chunk(_))) => {}
            Ok(None) => break,
            Err(e) if e.is_fatal() => {
                *state = None;
                return Some(Bytes::new());
            }
            Err(_) => {}
        }
    }
    if c.prefix.len() > HEADER_LIMIT {
        *state = None;
        return Some(Bytes::new());
    }
    Some(Bytes::copy_from_slice(&c.prefix))
}

fn publish(shared: &Shared, capture: &mut Option<Capture>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let chunk = Bytes::copy_from_slice(data);
    let header = capture_header(capture, data);
    {
        let mut ring = shared.ring();
        if let Some(file) = &shared.file {
            use std::os::unix::fs::FileExt;
            let end = ring.first_offset + ring.bytes;
            if file.write_all_at(data, end).is_err() {
                eprintln!("floor: cannot write the memfd");
            }
        }
        ring.push(chunk, shared.queue);
        if let Some(file) = &shared.file {
            punch_behind(file, &mut ring, shared.queue);
        }
        if let Some(h) = header {
            ring.header = h;
            ring.epoch += 1;
        }
    }
    shared.stats.chunks_in.fetch_add(1, Relaxed);
    shared.stats.bytes_in.fetch_add(data.len() as u64, Relaxed);
    for w in &shared.workers {
        let _ = w.wake.write(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_a_listener_a_source_or_refused() {
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n"), None);
        let get = b"GET /any.ogg HTTP/1.0\r\nHost: x\r\n\r\nextra";
        assert_eq!(head_end(get), Some(get.len() - 5));
        assert_eq!(parse_head(get), Request::Listen);
        assert_eq!(
            parse_head(
                b"PUT /s.ogg HTTP/1.1\r\nAuthorization: Basic eDp5\r\ncontent-TYPE: application/ogg\r\nExpect: 100-continue\r\n\r\n"
            ),
            Request::Source {
                content_type: Some("application/ogg".into()),
                expect_continue: true
            }
        );
        assert_eq!(
            parse_head(b"SOURCE /s.mp3 ICE/1.0\r\n\r\n"),
            Request::Source {
                content_type: None,
                expect_continue: false
            }
        );
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\n\r\n"), Request::Other);
        assert_eq!(parse_head(b"\xff\xfe\r\n\r\n"), Request::Other);
    }

    #[test]
    fn the_ring_keeps_at_least_the_queue_and_no_more_than_it_needs() {
        let mut r = Ring::default();
        for i in 0..10u8 {
            r.push(Bytes::from(vec![i; 100]), 250);
        }
        // 300 bytes: dropping the oldest would leave 200, under 250.
        assert_eq!((r.first, r.chunks.len(), r.bytes, r.end()), (7, 3, 300, 10));
        assert_eq!(r.chunks[0][0], 7);
    }

    /// Starts a floor and a source; returns the floor's address and the source socket.
    fn floor_with_source(queue: u64, send: SendMode) -> (SocketAddr, Arc<Shared>, TcpStream) {
        let opts = Opts {
            queue,
            send,
            sndbuf: None,
            notsent_lowat: None,
        };
        let (addr, shared) = start("127.0.0.1:0".parse().expect("addr"), 2, opts).expect("floor");
        let mut src = TcpStream::connect(addr).expect("source");
        src.write_all(
            b"PUT /x HTTP/1.1\r\nContent-Type: audio/test\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("source head");
        let mut reply = [0u8; 25];
        src.read_exact(&mut reply).expect("100 Continue");
        assert_eq!(&reply, b"HTTP/1.1 100 Continue\r\n\r\n");
        (addr, shared, src)
    }

    fn listen(addr: SocketAddr) -> TcpStream {
        let mut l = TcpStream::connect(addr).expect("listener");
        l.write_all(b"GET /x HTTP/1.0\r\n\r\n").expect("request");
        l
    }

    /// Reads until `want` body bytes arrived after the response head; returns the head.
    fn read_body(l: &mut TcpStream, want: &[u8]) -> String {
        let mut got = Vec::new();
        let mut b = [0u8; 65536];
        l.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        loop {
            let n = l.read(&mut b).expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
            if let Some(end) = head_end(&got)
                && got.len() - end >= want.len()
            {
                assert_eq!(&got[end..], want);
                return String::from_utf8_lossy(&got[..end]).into_owned();
            }
        }
    }

    /// With every way of sending (a write, a `sendfile` from the memfd, a zero-copy send).
    #[test]
    fn listeners_get_the_head_the_header_then_every_chunk_from_their_join() {
        for send in [SendMode::Write, SendMode::Sendfile, SendMode::Zerocopy] {
            every_chunk_from_the_join(send);
        }
    }

    fn every_chunk_from_the_join(send: SendMode) {
        let (addr, shared, mut src) = floor_with_source(512 * 1024, send);
        // Not a recognisable format: the header stays "the stream so far" until 256 KiB.
        src.write_all(b"early bytes").expect("write");
        while shared.stats.bytes_in.load(Relaxed) < 11 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut ls: Vec<TcpStream> = (0..5).map(|_| listen(addr)).collect();
        while shared.stats.joined.load(Relaxed) < 5 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let live: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        src.write_all(&live).expect("write");
        let want = [&b"early bytes"[..], &live].concat();
        for l in &mut ls {
            let head = read_body(l, &want);
            assert!(head.contains("Content-Type: audio/test\r\n"), "{head}");
            assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        }
        // A second source is refused while the first is on.
        let mut second = TcpStream::connect(addr).expect("second source");
        second
            .write_all(b"SOURCE /y ICE/1.0\r\n\r\n")
            .expect("head");
        let mut reply = String::new();
        second.read_to_string(&mut reply).expect("reply");
        assert_eq!(reply, "HTTP/1.0 403 Forbidden\r\n\r\n");
    }

    #[test]
    fn a_listener_that_stops_reading_is_closed_and_the_others_keep_up() {
        let (addr, shared, mut src) = floor_with_source(256 * 1024, SendMode::Write);
        let mut fast = listen(addr);
        // Small socket buffers, so the queue, not the kernel, is what it runs out of.
        let stalled = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        stalled.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        stalled.connect(&addr.into()).expect("connect");
        let mut stalled = TcpStream::from(stalled);
        stalled
            .write_all(b"GET /x HTTP/1.0\r\n\r\n")
            .expect("request");
        while shared.stats.joined.load(Relaxed) < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // 4 MiB at ~3 MB/s: far beyond the queue plus the stalled listener's socket buffers,
        // slow enough for the fast one.
        let live: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
        let want = live.clone();
        let reader = std::thread::spawn(move || read_body(&mut fast, &want));
        for piece in live.chunks(16 * 1024) {
            src.write_all(piece).expect("write");
            std::thread::sleep(Duration::from_millis(5));
        }
        reader.join().expect("the fast listener got every byte");
        assert_eq!(shared.stats.lagged.load(Relaxed), 1);
    }
}
