//! Clients that stop moving (#13, item 4): listeners and event streams that stop reading are
//! cut after a no-progress timeout, and always within a short drain once their mount closed;
//! what the kernel holds for a stalled listener is bounded, and counts toward its lag.
//!
//! Every wait here is for an event (a log line, a status or metrics change, EOF on a socket);
//! where time is the subject (a timeout), the configuration keeps it short.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// What the kernel holds for the server's side of its established connections on `port`:
/// (sockets, of those with at least 8 KiB in their send queues, bytes queued in the send
/// queues (unsent and unacknowledged: `Send-Q`), memory charged to their write queues
/// (`skmem` `w`, the buffers' true size)).
fn server_send_queues(port: u16) -> (usize, usize, u64, u64) {
    let out = std::process::Command::new("ss")
        .args([
            "-tmnH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut sockets, mut full, mut queued, mut charged) = (0, 0, 0, 0);
    for line in text.lines() {
        let line = line.trim();
        if let Some(mem) = line.strip_prefix("skmem:(") {
            charged += mem
                .trim_end_matches(')')
                .split(',')
                .find_map(|kv| kv.strip_prefix('w'))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        } else if !line.is_empty() {
            // `Recv-Q Send-Q Local Peer` (the state is filtered, hence not shown).
            let q = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            sockets += 1;
            full += usize::from(q >= 8 * 1024);
            queued += q;
        }
    }
    (sockets, full, queued, charged)
}

/// A listener that sends its request and never reads, with a small receive buffer: the
/// server's writes to it block once its window is full.
fn stalled_listener(addr: SocketAddr, mount: &str) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(request("GET", mount, &[]).as_bytes())
        .expect("send");
    s
}

/// What the kernel holds unsent or unacknowledged (`Send-Q`) for the server's side of the
/// connection from `client`.
fn send_queue(server_port: u16, client: SocketAddr) -> u64 {
    let out = std::process::Command::new("ss")
        .args([
            "-tnH",
            "state",
            "established",
            &format!("( sport = :{server_port} and dport = :{} )", client.port()),
        ])
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether the server still has an established connection from `client`.
fn established(server_port: u16, client: SocketAddr) -> bool {
    let out = std::process::Command::new("ss")
        .args([
            "-tnH",
            "state",
            "established",
            &format!("( sport = :{server_port} and dport = :{} )", client.port()),
        ])
        .output()
        .expect("ss (iproute2)");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// `agora_listener_ends_total` for one reason.
fn listener_ends(agora: &Agora, reason: &str) -> u64 {
    let (code, _, body) = http_get(agora.addr, "/metrics", &[]);
    assert_eq!(code, 200);
    let label = format!("reason=\"{reason}\"");
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("agora_listener_ends_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A listener that reads nothing keeps its mount open no longer than the mount's drain after
/// the mount closed (before, its blocked write held the closed mount, its queue and its slot
/// for as long as it did not read).
#[test]
fn a_listener_that_reads_nothing_is_gone_a_drain_after_its_mount_closed() {
    let agora = Agora::start_with_config(
        "[server]\nsend-timeout-secs = 600\n[mount-defaults]\ngrace-period-secs = 1\ndrain-secs = 2\n",
    );
    let (s, head) = raw_source(agora.addr, "/closing", "PUT", &[]);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let src = PacedSource::spawn(s, 16 * 1024);
    agora.wait_mount("/closing");
    let stalled = stalled_listener(agora.addr, "/closing");
    let peer = stalled.local_addr().expect("address");
    let port = agora.addr.port();
    // Its socket is full: what the server sends waits in the kernel ...
    wait_until(
        "the stalled listener's send queue",
        Duration::from_secs(20),
        || send_queue(port, peer) >= 8 * 1024,
    );
    // ... and with 64 KiB more of the stream, its write is blocked.
    let at = src.written();
    wait_until("more of the stream", Duration::from_secs(20), || {
        src.written() >= at + 64 * 1024
    });
    drop(src);
    agora.wait_log(&["source gone", "/closing"]);
    let gone = Instant::now();
    agora.wait_log(&["mount closed", "/closing"]);
    let closed = Instant::now();
    agora.wait_log(&["did not take the rest within drain-secs", &peer.to_string()]);
    let cut = closed.elapsed();
    eprintln!(
        "mount closed {:?} after its source left, the listener cut {cut:?} after that",
        closed - gone
    );
    assert!(
        cut >= Duration::from_millis(1500),
        "cut {cut:?} after the close"
    );
    assert!(cut < Duration::from_secs(5), "cut {cut:?} after the close");
    assert!(
        !established(port, peer),
        "the server's socket is still open"
    );
    assert_eq!(listener_ends(&agora, "undrained"), 1);
    assert!(
        agora.source("/closing").is_none(),
        "the mount is still listed"
    );
    drop(stalled);
}

/// A listener whose writes take nothing for `send-timeout-secs` is cut, even with a queue so
/// large that it would not lag for minutes, and a reading listener on the same mount plays on.
#[test]
fn a_stalled_listener_is_cut_by_the_send_timeout_others_play_on() {
    let agora = Agora::start_with_config(
        "[server]\nsend-timeout-secs = 2\n[mount-defaults]\nqueue-size = 33554432\n",
    );
    let (fx, file) = fixture("webm");
    let _src = ffmpeg_push(&agora, &file, "/v.webm", fx.muxer, false);
    agora.wait_mount("/v.webm");
    let stalled = stalled_listener(agora.addr, "/v.webm");
    let peer = stalled.local_addr().expect("address");
    let (s, head) = open_listener(agora.addr, "/v.webm");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let active = Drain::spawn(s);
    let url = agora.url("/v.webm");
    let decoder = std::thread::spawn(move || assert_decodes(&url, 5));
    let port = agora.addr.port();
    wait_until(
        "the stalled listener's send queue",
        Duration::from_secs(20),
        || send_queue(port, peer) > 0,
    );
    let blocked = Instant::now();
    agora.wait_log(&["took nothing for send-timeout-secs", &peer.to_string()]);
    let cut = blocked.elapsed();
    eprintln!("stalled listener cut {cut:?} after its socket filled");
    assert!(cut < Duration::from_secs(10), "cut after {cut:?}");
    assert_eq!(listener_ends(&agora, "stalled"), 1);
    assert!(
        !established(port, peer),
        "the server's socket is still open"
    );
    if let Err(panic) = decoder.join() {
        std::panic::resume_unwind(panic);
    }
    // Only the reading listener is left (the decoder's ends when the server sees it close).
    agora.wait_status("one listener left", |a| a.listeners("/v.webm") == 1);
    assert_eq!(
        active.ended(),
        None,
        "the reading listener was disconnected"
    );
    drop(stalled);
}

/// A listener that reads, but slower than the stream, is cut when it is about `queue-size`
/// behind the stream, counting what waits for it in the kernel: before, the kernel's send
/// buffer (megabytes) came on top of the queue.
#[test]
fn a_slow_reader_is_cut_near_queue_size_behind() {
    const QUEUE: u64 = 256 * 1024;
    let agora = Agora::start_with_config(&format!(
        "[server]\nsend-timeout-secs = 600\n[mount-defaults]\nqueue-size = {QUEUE}\nburst-size = 16384\n"
    ));
    let (s, head) = raw_source(agora.addr, "/fast", "PUT", &[]);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    // 640 KiB/s.
    let src = PacedSource::spawn(s, 32 * 1024);
    agora.wait_mount("/fast");
    let mut slow = stalled_listener(agora.addr, "/fast");
    let peer = slow.local_addr().expect("address");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // 40 KiB/s: it falls behind by 600 KiB a second.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = std::thread::spawn({
        let read = read.clone();
        move || {
            let mut buf = [0u8; 4096];
            loop {
                match slow.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst),
                };
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let cut_line = ["fell more than queue-size behind", &peer.to_string()];
    wait_until("the slow reader to be cut", Duration::from_secs(30), || {
        agora.log_has(&cut_line)
    });
    // Seen within a poll of the log: the source wrote at most ~40 KiB more meanwhile.
    let behind = src
        .written()
        .saturating_sub(read.load(std::sync::atomic::Ordering::SeqCst));
    eprintln!(
        "the slow reader was cut {} KiB behind (queue-size {} KiB)",
        behind / 1024,
        QUEUE / 1024
    );
    assert!(
        behind >= QUEUE,
        "cut {behind} bytes behind, before the queue's end"
    );
    assert!(
        behind < QUEUE + 256 * 1024,
        "cut {behind} bytes behind: the kernel's share was not bounded"
    );
    drop(src);
    let _ = reader.join();
}

/// An event stream (`/events`) whose client reads nothing is cut after `send-timeout-secs`.
#[test]
fn an_event_stream_that_reads_nothing_is_cut() {
    let agora = Agora::start_with_config("[server]\nsend-timeout-secs = 2\n");
    let (s, head) = raw_source(agora.addr, "/t.mp3", "PUT", &[]);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let _src = PacedSource::spawn(s, 1024);
    agora.wait_mount("/t.mp3");
    let events = stalled_listener(agora.addr, "/events");
    let peer = events.local_addr().expect("address");
    let port = agora.addr.port();
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    // Titles of 2 KB, each a frame on the event stream, until its socket is full, and 40 KB
    // more: the stream's write is then blocked.
    let mut n = 0;
    let mut more = 20;
    while more > 0 {
        assert!(n < 1000, "the event stream's socket never filled");
        let song = format!("{n}-{}", "x".repeat(2000));
        let (code, _, _) = http_get(
            agora.addr,
            &format!("/admin/metadata?mount=/t.mp3&mode=updinfo&song={song}"),
            &[("Authorization", &auth)],
        );
        assert_eq!(code, 200);
        n += 1;
        if send_queue(port, peer) >= 8 * 1024 {
            more -= 1;
        }
    }
    let blocked = Instant::now();
    agora.wait_log(&["event stream cut off", &peer.to_string()]);
    let cut = blocked.elapsed();
    eprintln!("event stream cut {cut:?} after its socket filled ({n} titles)");
    assert!(cut < Duration::from_secs(10), "cut after {cut:?}");
    assert!(
        !established(port, peer),
        "the server's socket is still open"
    );
    drop(events);
}

/// 1,000 listeners that stopped reading hold a bounded amount of kernel memory: the server's
/// socket keeps about `tcp-notsent-lowat` (16 KiB) unsent bytes plus at most a segment,
/// where an unbounded send buffer took all it was sent (here ~640 KiB each) and grows to
/// megabytes (on loopback, and on any path where the congestion window grew before the
/// listener stalled).
#[test]
fn stalled_listeners_hold_bounded_kernel_memory() {
    const LISTENERS: usize = 1000;
    // Pushed while they are stalled; a queue larger than that, so none is cut for lag.
    const PUSHED: usize = 400 * 1024;
    let agora = Agora::start_with_config(
        // All from this one address: no per-address listener cap.
        "[server]\nmax-listeners-per-ip = 0\nmax-pending-per-ip = 0\n[mount-defaults]\nqueue-size = 4194304\nburst-size = 16384\ncoalesce-ms = 0\n",
    );
    let (mut src, head) = raw_source(agora.addr, "/many", "PUT", &[]);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    src.write_all(&xorshift_bytes(32 * 1024, 1)).expect("push");
    agora.wait_mount("/many");
    let listeners: Vec<TcpStream> = (0..LISTENERS)
        .map(|_| stalled_listener(agora.addr, "/many"))
        .collect();
    agora.wait_status("every listener counted", |a| {
        a.listeners("/many") == LISTENERS as u64
    });
    let sockstat_before = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let mut pushed = 0;
    while pushed < PUSHED {
        src.write_all(&xorshift_bytes(64 * 1024, pushed as u64 + 2))
            .expect("push");
        pushed += 64 * 1024;
    }
    // Until every listener's socket is full, then until the server wrote all it could (the
    // send queues stop growing): the most they held.
    let port = agora.addr.port();
    wait_until(
        "every stalled socket to fill",
        Duration::from_secs(20),
        || server_send_queues(port).1 >= LISTENERS,
    );
    let mut last = server_send_queues(port);
    let mut most = last;
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = server_send_queues(port);
        if now.3 > most.3 {
            most = now;
        }
        if now.2 == last.2 || started.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = now;
    }
    let sockstat_after = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let (sockets, _, queued, charged) = most;
    eprintln!(
        "{sockets} sockets: {} KiB queued, {} KiB charged ({} KiB queued, {} KiB charged per socket)\nsockstat before:\n{sockstat_before}after:\n{sockstat_after}",
        queued / 1024,
        charged / 1024,
        queued / 1024 / sockets.max(1) as u64,
        charged / 1024 / sockets.max(1) as u64,
    );
    assert!(sockets >= LISTENERS, "{sockets} server sockets");
    // The low-water mark and a segment of at most 64 KiB.
    let per = charged / sockets as u64;
    assert!(
        per < 80 * 1024,
        "{per} bytes of kernel memory per stalled listener"
    );
    drop(listeners);
}
