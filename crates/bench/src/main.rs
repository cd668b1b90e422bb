//! `agora-bench`: a listener swarm for Icecast-compatible servers (Agora, icecast2).
//!
//! `agora-bench swarm --url URL -n N` opens N listeners (all at once, or `--rate` per second),
//! in several processes when N needs more file descriptors than one may hold, reads for a
//! window, and reports: listeners connected, time to first byte and to the first decodable
//! keyframe (p50/p95/p99), the share of listeners receiving at least 95% of the stream's
//! real-time rate (with `--source`, of what the source wrote in the window), bytes delivered, and with `--server-pid` the server's CPU seconds and RSS
//! from /proc (CPU-seconds per GB, RSS per listener). With `--source FILE` (MP3, AAC-ADTS, Ogg or
//! WebM) the bench pushes the stream itself, write by write on the stream's own timeline
//! ([`workload`]), stamping each unit ([`keys`]); a sample of listeners in this process then
//! reports forwarding latency and how long a joining listener takes to reach the live edge.
//!
//! `agora-bench floor --listen ADDR` is the floor those servers are measured against: a minimal
//! fan-out server (`floor.rs`).
//!
//! A tree of servers (an origin and its edges, `scripts/bench-tree`): `--url` may be given once
//! per edge (the N listeners are split evenly over them), `--source-url` sends the source to the
//! origin, and `--latency-url` adds a few latency listeners on the origin itself, so the report's
//! `groups` give each URL's latency: source to origin, and source to origin to edge.
//!
//! Processes share one clock (Unix epoch milliseconds): the parent fixes the window's start and
//! end, workers count the bytes that arrive inside it.

mod counters;
mod floor;
mod kernel;
mod keys;
mod source;
mod stream_format;
mod swarm;
mod workload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::stream_format::StreamFormat;
use crate::swarm::{LIVE_EDGE, Plan, Samples, epoch_ms};
use crate::workload::Stream;

#[derive(Parser, Debug)]
#[command(
    name = "agora-bench",
    version,
    about = "A listener swarm for Icecast-compatible servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open N listeners to a stream URL, read for a window, report.
    Swarm(SwarmArgs),
    /// One process's share of a swarm (started by `swarm`); prints its samples as JSON.
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// A minimal fan-out server, the floor Agora and icecast2 are measured against.
    Floor(floor::FloorArgs),
}

#[derive(Args, Debug)]
struct SwarmArgs {
    /// The stream, http://host:port/mount. Repeat it to split the listeners evenly over several
    /// servers (the edges of a tree).
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Listeners, in all (split over the `--url`s).
    #[arg(short, long, default_value_t = 100)]
    n: usize,
    /// Connections per second; 0 opens them all at once (a storm).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Measurement window, seconds (after the ramp and a settle time).
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Seconds between the end of the ramp and the window.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// The stream's bitrate in kbit/s (what "real-time rate" means); with --source, the file's
    /// average over its timeline by default.
    #[arg(long)]
    kbps: Option<f64>,
    /// The server's process id, for its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Most listeners per process (each needs a file descriptor).
    #[arg(long, default_value_t = 9000)]
    per_process: usize,
    /// Push this file (MP3, AAC-ADTS, Ogg or WebM) to the mount first (PUT, each frame, page
    /// or Cluster at its moment on the stream's timeline) and measure latency.
    #[arg(long, value_name = "FILE")]
    source: Option<std::path::PathBuf>,
    /// Where --source pushes the stream (an origin whose edges are the `--url`s); default: the
    /// first `--url`.
    #[arg(long)]
    source_url: Option<String>,
    /// The --source file's format; detected from its first bytes by default.
    #[arg(long, value_enum)]
    format: Option<StreamFormat>,
    /// Source password for --source.
    #[arg(long, env = "AGORA_SOURCE_PASSWORD", hide_env_values = true)]
    source_password: Option<String>,
    /// Listeners in the main process that measure latency (with --source), per URL.
    #[arg(long, default_value_t = 50)]
    latency_listeners: usize,
    /// Also measure latency here (with --source): `--latency-listeners` listeners that are
    /// not part of the N, reported only in the report's `groups` (e.g. the origin of a tree,
    /// to tell the latency the origin adds from the latency an edge adds).
    #[arg(long, value_name = "URL")]
    latency_url: Vec<String>,
    /// Seconds to let the source run before the baseline RSS is taken, so the mount's queue
    /// is full and "RSS per listener" is what listeners add beyond the mount buffers.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Listeners leave after 0.5x to 1.5x this many seconds and new ones take their place
    /// (a memory-flatness run); 0: listeners stay for the whole run.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// A PEM file of CA certificates trusted for `https://` URLs, besides the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// The TLS cipher suite listeners offer first on `https://` URLs.
    #[arg(long, value_enum, default_value_t = swarm::Suite::Aes128)]
    tls_suite: swarm::Suite,
}

#[derive(Args, Debug)]
struct WorkerArgs {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    host: String,
    #[arg(long)]
    path: String,
    #[arg(short, long)]
    n: usize,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    window_start_ms: u64,
    #[arg(long)]
    window_end_ms: u64,
    #[arg(long, default_value_t = 0)]
    churn_ms: u64,
    /// Connect with TLS.
    #[arg(long)]
    tls: bool,
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = swarm::Suite::Aes128)]
    tls_suite: swarm::Suite,
}

fn main() -> Result<()> {
    raise_fd_limit();
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Floor(a) => return floor::run(a),
        other => other,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        Command::Worker(w) => rt.block_on(async {
            let tls = match w.tls {
                true => Some(swarm::Tls::new(&w.host, w.ca_file.as_deref(), w.tls_suite)?),
                false => None,
            };
            let plan = Plan {
                addr: w.addr,
                tls,
                host: w.host,
                path: w.path,
                listeners: w.n,
                rate: w.rate,
                window_start_ms: w.window_start_ms,
                window_end_ms: w.window_end_ms,
                churn_ms: w.churn_ms,
            };
            let s = swarm::run(plan, None).await;
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }),
        Command::Swarm(a) => rt.block_on(run_swarm(a)),
        Command::Floor(_) => unreachable!("served above, without a runtime"),
    }
}

/// Lifts the soft open-files limit to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// `http(s)://host[:port]/mount` as (address, host, path, whether it is HTTPS).
fn parse_url(url: &str) -> Result<(SocketAddr, String, String, bool)> {
    let (rest, tls) = match url.strip_prefix("https://") {
        Some(rest) => (rest, true),
        None => (
            url.strip_prefix("http://")
                .with_context(|| format!("{url}: expected http(s)://host:port/mount"))?,
            false,
        ),
    };
    let (host, path) = rest
        .split_once('/')
        .with_context(|| format!("{url}: no mount"))?;
    let hostport = if host.contains(':') && !host.ends_with(']') {
        host.to_string()
    } else {
        format!("{host}:{}", if tls { 443 } else { 80 })
    };
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .with_context(|| format!("{hostport}: no address"))?;
    Ok((addr, host.to_string(), format!("/{path}"), tls))
}

/// (utime, stime) of a process, seconds: time in user space and in the kernel on its behalf.
fn cpu_secs(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((field(11) / hz, field(12) / hz))
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * p / 100.0).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

#[derive(Debug, Serialize)]
struct Dist {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    count: usize,
}

fn dist(v: &[f64]) -> Dist {
    Dist {
        p50: pct(v, 50.0),
        p95: pct(v, 95.0),
        p99: pct(v, 99.0),
        max: v.iter().copied().fold(f64::NAN, f64::max),
        count: v.len(),
    }
}

#[derive(Debug, Serialize)]
struct Report {
    url: String,
    /// The pushed stream's format (with --source).
    format: Option<StreamFormat>,
    /// The real-time rate, kbit/s.
    kbps: f64,
    listeners: usize,
    connected: usize,
    errors: std::collections::BTreeMap<String, usize>,
    first_byte_ms: Dist,
    first_keyframe_ms: Dist,
    realtime_listeners: usize,
    realtime_share: f64,
    window_secs: u64,
    delivered_bytes: u64,
    delivered_mbps: f64,
    latency_ms: Dist,
    /// Latency listeners: milliseconds from connecting to the first unit received less than
    /// `live_edge_threshold_ms` after the source wrote it.
    live_edge_ms: Dist,
    live_edge_threshold_ms: f64,
    server_cpu_secs: Option<f64>,
    server_cpu_secs_per_gb: Option<f64>,
    /// Share of the server's CPU time spent in the kernel (stime / (utime + stime)).
    server_cpu_kernel_share: Option<f64>,
    server_rss_before_kib: Option<u64>,
    server_rss_kib: Option<u64>,
    server_rss_per_listener_kib: Option<f64>,
    /// (seconds into the window, RSS KiB), ten steps.
    server_rss_window_kib: Vec<(f64, u64)>,
    /// Growth of the server's RSS from the window's first sample to its last (0.05 = 5%).
    server_rss_window_growth: Option<f64>,
    /// Connections made (listeners replaced under churn included).
    joins: usize,
    /// Per connected listener per second of the window: the server's context switches (thread
    /// wake-ups), write calls (write, writev, sendto, sendmsg) and all system calls; the last
    /// two need perf (see `counters.rs`).
    server_context_switches_per_listener_s: Option<f64>,
    server_writes_per_listener_s: Option<f64>,
    server_syscalls_per_listener_s: Option<f64>,
    /// The window on the Unix-epoch clock (milliseconds), for samplers outside the bench.
    window_start_ms: u64,
    window_end_ms: u64,
    /// Each URL's part: the `--url`s (whose sums are the totals above) and the
    /// `--latency-url`s.
    groups: Vec<Group>,
}

/// One URL of a run and its listeners: a share of the swarm's N, or (`--latency-url`) only
/// latency listeners beside the swarm.
struct Target {
    url: String,
    addr: SocketAddr,
    tls: Option<swarm::Tls>,
    host: String,
    path: String,
    listeners: usize,
    latency_only: bool,
}

impl Target {
    fn new(
        url: &str,
        listeners: usize,
        latency_only: bool,
        ca_file: Option<&std::path::Path>,
        suite: swarm::Suite,
    ) -> Result<Target> {
        let (addr, host, path, tls) = parse_url(url)?;
        Ok(Target {
            url: url.to_string(),
            addr,
            tls: tls
                .then(|| swarm::Tls::new(&host, ca_file, suite))
                .transpose()?,
            host,
            path,
            listeners,
            latency_only,
        })
    }

    fn plan(&self, listeners: usize, rate: f64, window: (u64, u64), churn_ms: u64) -> Plan {
        Plan {
            addr: self.addr,
            tls: self.tls.clone(),
            host: self.host.clone(),
            path: self.path.clone(),
            listeners,
            rate,
            window_start_ms: window.0,
            window_end_ms: window.1,
            churn_ms,
        }
    }
}

/// Listeners that received at least 95% of `want` bytes in the window.
fn realtime(s: &Samples, want: f64) -> usize {
    s.window_bytes
        .iter()
        .filter(|&&b| b as f64 >= 0.95 * want)
        .count()
}

/// One URL's part of a report.
#[derive(Debug, Serialize)]
struct Group {
    url: String,
    /// Only latency listeners (`--latency-url`), not counted in the report's totals.
    latency_only: bool,
    listeners: usize,
    connected: usize,
    errors: std::collections::BTreeMap<String, usize>,
    realtime_listeners: usize,
    realtime_share: f64,
    delivered_bytes: u64,
    latency_ms: Dist,
}

impl Group {
    fn new(t: &Target, s: &Samples, want: f64) -> Group {
        let rt = realtime(s, want);
        Group {
            url: t.url.clone(),
            latency_only: t.latency_only,
            listeners: s.opened,
            connected: s.first_byte_ms.len(),
            errors: s.errors.clone(),
            realtime_listeners: rt,
            realtime_share: rt as f64 / s.opened.max(1) as f64,
            delivered_bytes: s.window_bytes.iter().sum(),
            latency_ms: dist(&s.latency_ms),
        }
    }
}

async fn run_swarm(a: SwarmArgs) -> Result<()> {
    if a.source.is_none() && !a.latency_url.is_empty() {
        bail!("--latency-url needs --source: latency is timed on the bench source's pages");
    }
    let k = a.url.len();
    let mut targets = Vec::new();
    for (i, url) in a.url.iter().enumerate() {
        targets.push(Target::new(
            url,
            a.n / k + usize::from(i < a.n % k),
            false,
            a.ca_file.as_deref(),
            a.tls_suite,
        )?);
    }
    for url in &a.latency_url {
        targets.push(Target::new(
            url,
            a.latency_listeners,
            true,
            a.ca_file.as_deref(),
            a.tls_suite,
        )?);
    }
    let mut stamps: Option<Arc<source::Stamps>> = None;
    let mut source_task = None;
    let mut kbps = a.kbps;
    if let Some(file) = &a.source {
        let (addr, _, path, tls) = parse_url(a.source_url.as_ref().unwrap_or(&a.url[0]))?;
        if tls {
            bail!("the bench source pushes over plain HTTP: give --source-url http://...");
        }
        let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let format = match a.format {
            Some(f) => f,
            None => StreamFormat::detect(&data).with_context(|| file.display().to_string())?,
        };
        let stream =
            Stream::new(&data, format, a.kbps).with_context(|| file.display().to_string())?;
        kbps = kbps.or(Some(stream.kbps()));
        let pw = a
            .source_password
            .clone()
            .context("--source needs --source-password (or AGORA_SOURCE_PASSWORD)")?;
        let st = Arc::new(source::Stamps::new(format));
        stamps = Some(st.clone());
        source_task = Some(tokio::spawn(async move {
            source::push(addr, &path, &pw, &stream, &st).await
        }));
    }
    let kbps = kbps.context("--kbps is needed without --source")?;
    // A stream is up when one listener gets a body byte (an edge's: once it relays the origin).
    let probe_until = epoch_ms() + 20_000;
    for t in &targets {
        loop {
            let s = swarm::run(t.plan(1, 0.0, (0, epoch_ms() + 2_000), 0), None).await;
            if !s.first_byte_ms.is_empty() {
                break;
            }
            if let Some(task) = &source_task
                && task.is_finished()
            {
                bail!(
                    "the bench source stopped: {:?}",
                    source_task.map(|t| t.is_finished())
                );
            }
            if epoch_ms() > probe_until {
                bail!("{}: no stream within 20 s ({:?})", t.url, s.errors);
            }
        }
    }

    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let rss_before = a.server_pid.and_then(|p| rss_kib(p).ok());
    let churn_ms = (a.churn * 1000.0) as u64;
    let ramp_ms = if a.rate > 0.0 {
        (a.n as f64 / a.rate * 1000.0) as u64
    } else {
        0
    };
    let mut window_start_ms = epoch_ms() + ramp_ms + a.settle * 1000;
    // Half a second off the source's whole seconds: a stream that writes a unit every whole
    // second (ffmpeg's Ogg Opus pages) would otherwise put one at each edge of the window, a
    // few milliseconds from it, and latency jitter would decide whether a listener counts it.
    if let Some(t0) = stamps.as_ref().and_then(|st| st.started()) {
        let t0_ms = epoch_ms().saturating_sub(t0.elapsed().as_millis() as u64);
        let phase = window_start_ms.saturating_sub(t0_ms) % 1000;
        window_start_ms += (1500 - phase) % 1000;
    }
    let window_end_ms = window_start_ms + a.window * 1000;
    let window = (window_start_ms, window_end_ms);
    // Each URL's connections per second are its share of --rate; latency-only URLs' few
    // listeners connect at once.
    let rate_of = |t: &Target, n: usize| {
        if a.rate > 0.0 && !t.latency_only {
            a.rate * n as f64 / a.n.max(1) as f64
        } else {
            0.0
        }
    };
    let mut workers = Vec::new();
    let mut locals = Vec::new();
    let exe = std::env::current_exe()?;
    for (ti, t) in targets.iter().enumerate() {
        let local = if a.source.is_some() {
            a.latency_listeners.min(t.listeners)
        } else {
            0
        };
        let remote = t.listeners - local;
        let procs = remote.div_ceil(a.per_process.max(1));
        for i in 0..procs {
            let n = remote / procs + usize::from(i < remote % procs);
            let child = tokio::process::Command::new(&exe)
                .args([
                    "worker",
                    "--addr",
                    &t.addr.to_string(),
                    "--host",
                    &t.host,
                    "--path",
                    &t.path,
                ])
                .args(t.tls.as_ref().map(|_| "--tls"))
                .args(["--tls-suite", a.tls_suite.name()])
                .args(
                    a.ca_file
                        .iter()
                        .flat_map(|f| [std::ffi::OsStr::new("--ca-file"), f.as_os_str()]),
                )
                .args(["-n", &n.to_string(), "--rate", &rate_of(t, n).to_string()])
                .args(["--window-start-ms", &window_start_ms.to_string()])
                .args(["--window-end-ms", &window_end_ms.to_string()])
                .args(["--churn-ms", &churn_ms.to_string()])
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")?;
            workers.push((ti, child.wait_with_output()));
        }
        let plan = t.plan(local, rate_of(t, local), window, churn_ms);
        locals.push(tokio::spawn(swarm::run(plan, stamps.clone())));
    }
    let format = stamps.as_ref().map(|st| st.format());

    let until = |t: u64| tokio::time::sleep(Duration::from_millis(t.saturating_sub(epoch_ms())));
    until(window_start_ms).await;
    let cpu0 = a.server_pid.and_then(|p| cpu_secs(p).ok());
    let written0 = stamps.as_ref().map(|st| st.written());
    let counting = a.server_pid.map(|p| counters::start(p, a.window));
    // RSS through the window, ten samples, for memory flatness.
    let mut rss_window = Vec::new();
    let step = (window_end_ms - window_start_ms) / 10;
    for k in 0..=10u64 {
        until(window_start_ms + k * step).await;
        if let Some(kib) = a.server_pid.and_then(|p| rss_kib(p).ok()) {
            rss_window.push(((k * step) as f64 / 1000.0, kib));
        }
    }
    until(window_end_ms).await;
    let cpu1 = a.server_pid.and_then(|p| cpu_secs(p).ok());
    let written1 = stamps.as_ref().map(|st| st.written());
    let rss_after = a.server_pid.and_then(|p| rss_kib(p).ok());
    let counts = match counting {
        Some(c) => c.finish().await,
        None => counters::Counts::default(),
    };

    let mut per_target = Vec::new();
    for l in locals {
        per_target.push(l.await.unwrap_or_default());
    }
    for (ti, w) in workers {
        let out = w.await.context("waiting for a worker")?;
        let s: Samples = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("a worker's report ({})", out.status))?;
        per_target[ti].merge(s);
    }
    if let Some(t) = source_task {
        t.abort();
    }

    // Real time: what the bench's own source wrote in the window (a variable-bitrate stream
    // sends more in some windows than in others), else the stated bitrate's worth.
    let want = match written0.zip(written1) {
        Some((w0, w1)) if w1 > w0 => (w1 - w0) as f64,
        _ => kbps * 1000.0 / 8.0 * a.window as f64,
    };
    let mut all = Samples::default();
    let mut groups = Vec::new();
    for (t, s) in targets.iter().zip(per_target) {
        groups.push(Group::new(t, &s, want));
        if !t.latency_only {
            all.merge(s);
        }
    }
    let realtime = realtime(&all, want);
    let delivered: u64 = all.window_bytes.iter().sum();
    let cpu_split = cpu0.zip(cpu1).map(|(a, b)| (b.0 - a.0, b.1 - a.1));
    let cpu = cpu_split.map(|(u, s)| u + s);
    let connected = all.first_byte_ms.len();
    let per_listener_s =
        |n: Option<u64>| n.map(|n| n as f64 / connected.max(1) as f64 / a.window.max(1) as f64);
    let report = Report {
        url: a.url.join(" "),
        format,
        kbps,
        listeners: all.opened,
        connected,
        errors: all.errors.clone(),
        first_byte_ms: dist(&all.first_byte_ms),
        first_keyframe_ms: dist(&all.first_keyframe_ms),
        realtime_listeners: realtime,
        realtime_share: realtime as f64 / all.opened.max(1) as f64,
        window_secs: a.window,
        delivered_bytes: delivered,
        delivered_mbps: delivered as f64 * 8.0 / a.window as f64 / 1e6,
        latency_ms: dist(&all.latency_ms),
        live_edge_ms: dist(&all.live_edge_ms),
        live_edge_threshold_ms: LIVE_EDGE.as_secs_f64() * 1e3,
        server_cpu_secs: cpu,
        server_cpu_secs_per_gb: cpu.map(|c| c / (delivered as f64 / 1e9)),
        server_cpu_kernel_share: cpu_split
            .filter(|(u, s)| u + s > 0.0)
            .map(|(u, s)| s / (u + s)),
        server_rss_before_kib: rss_before,
        server_rss_kib: rss_after,
        server_rss_per_listener_kib: rss_before
            .zip(rss_after)
            .map(|(b, a)| (a as f64 - b as f64) / connected.max(1) as f64),
        server_rss_window_growth: rss_window
            .first()
            .zip(rss_window.last())
            .map(|(f, l)| (l.1 as f64 - f.1 as f64) / f.1.max(1) as f64),
        server_rss_window_kib: rss_window,
        joins: all.joins,
        server_context_switches_per_listener_s: per_listener_s(counts.context_switches),
        server_writes_per_listener_s: per_listener_s(counts.writes),
        server_syscalls_per_listener_s: per_listener_s(counts.syscalls),
        window_start_ms,
        window_end_ms,
        groups,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    let d = |d: &Dist| {
        format!(
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            d.p50, d.p95, d.p99, d.max, d.count
        )
    };
    match r.format {
        Some(f) => println!(
            "stream:             {} ({f:?}, {:.1} kbit/s)",
            r.url, r.kbps
        ),
        None => println!("stream:             {} ({:.1} kbit/s)", r.url, r.kbps),
    }
    if r.groups.len() > 1 {
        for g in &r.groups {
            println!(
                "  {}{}: {} of {} connected, {:.2}% at real time, latency p50 {:.1} ms, p99 {:.1} ms ({} samples)",
                g.url,
                if g.latency_only {
                    " (latency only)"
                } else {
                    ""
                },
                g.connected,
                g.listeners,
                g.realtime_share * 100.0,
                g.latency_ms.p50,
                g.latency_ms.p99,
                g.latency_ms.count
            );
        }
    }
    println!(
        "listeners:          {} opened, {} connected, errors: {}",
        r.listeners,
        r.connected,
        if r.errors.is_empty() {
            "none".to_string()
        } else {
            format!("{:?}", r.errors)
        }
    );
    println!("first byte:         {}", d(&r.first_byte_ms));
    println!("first keyframe:     {}", d(&r.first_keyframe_ms));
    println!(
        ">=95% real-time:    {} of {} ({:.2}%) over {} s",
        r.realtime_listeners,
        r.listeners,
        r.realtime_share * 100.0,
        r.window_secs
    );
    println!(
        "delivered:          {:.1} MB in the window ({:.1} Mbit/s)",
        r.delivered_bytes as f64 / 1e6,
        r.delivered_mbps
    );
    if r.latency_ms.count > 0 {
        println!("forwarding latency: {}", d(&r.latency_ms));
    }
    if r.live_edge_ms.count > 0 {
        println!(
            "live edge:          {} (connect to the first unit under {:.0} ms old)",
            d(&r.live_edge_ms),
            r.live_edge_threshold_ms
        );
    }
    if let Some(c) = r.server_cpu_secs {
        println!(
            "server CPU:         {c:.2} s in the window ({:.1}% of a core), {:.2} CPU-s/GB, {:.0}% in the kernel",
            c / r.window_secs as f64 * 100.0,
            r.server_cpu_secs_per_gb.unwrap_or(f64::NAN),
            r.server_cpu_kernel_share.unwrap_or(f64::NAN) * 100.0
        );
    }
    if let Some(cs) = r.server_context_switches_per_listener_s {
        let opt = |v: Option<f64>| v.map_or("- (no perf)".to_string(), |v| format!("{v:.2}"));
        println!(
            "server per listener per second: {cs:.3} context switches, {} writes, {} system calls",
            opt(r.server_writes_per_listener_s),
            opt(r.server_syscalls_per_listener_s)
        );
    }
    if let (Some(b), Some(a)) = (r.server_rss_before_kib, r.server_rss_kib) {
        println!(
            "server RSS:         {b} KiB before, {a} KiB with listeners, {:.2} KiB per listener",
            r.server_rss_per_listener_kib.unwrap_or(f64::NAN)
        );
    }
    if let Some(g) = r.server_rss_window_growth {
        let samples: Vec<String> = r
            .server_rss_window_kib
            .iter()
            .map(|(t, k)| format!("{t:.0}s {k}"))
            .collect();
        println!(
            "server RSS in window: {:+.1}% first to last ({} KiB)",
            g * 100.0,
            samples.join(", ")
        );
    }
    if r.joins > r.listeners {
        println!(
            "joins:              {} (listeners replaced under churn)",
            r.joins
        );
    }
}
