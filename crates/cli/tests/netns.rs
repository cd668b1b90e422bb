//! Relays across hosts (#11): every server in a network namespace of its own, joined by veth
//! links to a bridge in a "switch" namespace, so that each has its own address and a link the
//! test can cut. Needs root (`ip netns`); without it the tests fail and say so, they never
//! pass by skipping.
//!
//! The test process stays in the root namespace and never touches its interfaces: it reaches
//! the servers by running commands (curl, ffmpeg) inside the namespaces with `ip netns exec`.

mod common;

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Namespace names start with this, then the test process's pid: `agora<pid>n<k>-<host>`.
const PREFIX: &str = "agora";

/// The port every namespaced server listens on (each host has an address of its own).
const PORT: u16 = 8000;

const NEEDS_ROOT: &str =
    "needs root to create network namespaces (ip netns): run the suite as root, as CI does";

/// A small network: a switch namespace with a bridge, and one namespace per host, each joined
/// to the bridge by a veth pair (`eth0` on the host, `v-<host>` on the switch) with an address
/// in a /24 of its own. Dropping it ends what still runs inside its namespaces and deletes
/// them; nothing else is touched.
struct Net {
    /// `agora<pid>n<k>-`: unique to this `Net` among live processes.
    prefix: String,
    hosts: Vec<String>,
    subnet: [u8; 3],
}

impl Net {
    /// Create the switch and `hosts` (at most 13 characters each, an interface name's room),
    /// each up with its address (`addr`).
    fn new(hosts: &[&str]) -> Net {
        static N: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let k = N.fetch_add(1, Ordering::Relaxed);
        remove_leftovers();
        // The subnet is only for readable logs: each switch is a world of its own.
        let id = pid.wrapping_mul(8).wrapping_add(k);
        let net = Net {
            prefix: format!("{PREFIX}{pid}n{k}-"),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            subnet: [10, (id >> 8) as u8, id as u8],
        };
        let sw = net.switch();
        let made = Command::new("ip")
            .args(["netns", "add", &sw])
            .output()
            .unwrap_or_else(|e| panic!("{NEEDS_ROOT} (cannot run ip: {e}; install iproute2)"));
        assert!(
            made.status.success(),
            "{NEEDS_ROOT}\n`ip netns add {sw}`: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        );
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for h in hosts {
            assert!(h.len() <= 13, "host name {h:?}: 13 characters at most");
            let ns = net.ns(h);
            let port = format!("v-{h}");
            let addr = format!("{}/24", net.addr(h));
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    fn switch(&self) -> String {
        format!("{}switch", self.prefix)
    }

    /// The namespace of `host`.
    fn ns(&self, host: &str) -> String {
        assert!(
            self.hosts.iter().any(|h| h == host),
            "no host {host:?} in {:?}",
            self.hosts
        );
        format!("{}{host}", self.prefix)
    }

    /// The address of `host` (its `eth0`).
    fn addr(&self, host: &str) -> Ipv4Addr {
        let i = self
            .hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("no host {host:?} in {:?}", self.hosts));
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, i as u8 + 1)
    }

    /// The command prefix that runs a program inside `host`'s namespace.
    fn prefix_of(&self, host: &str) -> [String; 4] {
        ["ip".into(), "netns".into(), "exec".into(), self.ns(host)]
    }

    /// `program` to be run inside `host`'s namespace.
    fn command(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        c
    }

    /// Run `program args` inside `host`'s namespace to its end.
    fn run(&self, host: &str, program: &str, args: &[&str]) -> Output {
        self.command(host, program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program} in {host}: {e}"))
    }

    /// Take `host`'s link down at the switch: the host is unreachable (its own address still
    /// answers inside its namespace), and its open connections hang as over a cut cable.
    fn cut(&self, host: &str) {
        self.link(host, "down");
    }

    /// Bring `host`'s link back up at the switch.
    fn restore(&self, host: &str) {
        self.link(host, "up");
    }

    /// Set the switch side of `host`'s link `up` or `down`.
    fn link(&self, host: &str, state: &str) {
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &format!("v-{host}"),
            state,
        ]);
    }

    /// `agora serve` inside `host`'s namespace on `ADDR:8000`, with the TOML configuration;
    /// ready once it printed its address, as `Agora::start` waits.
    fn serve(&self, host: &str, toml: &str) -> Server {
        let prefix = self.prefix_of(host);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let listen = format!("{}:{PORT}", self.addr(host));
        Server {
            agora: Agora::start_under(&prefix, &listen, toml),
            ns: self.ns(host),
        }
    }

    /// curl run inside `from`'s namespace (`-sS`, a 10 s limit, 2 s to connect) with `args`.
    fn curl(&self, from: &str, args: &[&str]) -> Output {
        self.run(
            from,
            "curl",
            &[&["-sS", "--max-time", "10", "--connect-timeout", "2"], args].concat(),
        )
    }

    /// GET `url` from `from`'s namespace: `Ok((status, body))`, or `Err` with curl's exit code
    /// and message when no response came (unreachable, refused, timed out). Redirects are not
    /// followed, so a `302` shows as such; credentials go in the URL (`http://user:pw@...`).
    fn get(&self, from: &str, url: &str) -> Result<(u16, Vec<u8>), (i32, String)> {
        curl_get(self.curl(from, &["-w", "%{stderr}%{http_code}", url]))
    }

    /// A listener inside `from`'s namespace that stays connected to `url` (following
    /// redirects), reading and discarding the stream until it is dropped.
    fn listen(&self, from: &str, url: &str) -> Proc {
        Proc::spawn(
            self.command(from, "curl")
                .args(["-sSLN", "--max-redirs", "5", "-o", "/dev/null"])
                .arg(url),
        )
    }

    /// ffmpeg inside `from`'s namespace decodes `seconds` of `url` and prints nothing at
    /// `-v error` (see `assert_decodes`).
    fn assert_decodes(&self, from: &str, url: &str, seconds: u32) {
        assert_decodes_with(self.command(from, "ffmpeg"), url, seconds);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut names: Vec<String> = self.hosts.iter().map(|h| self.ns(h)).collect();
        names.push(self.switch());
        for ns in &names {
            kill_inside(ns);
        }
        for ns in &names {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
    }
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Kill what still runs inside namespace `ns` (all of it started by this test, whose
/// namespaces they are): a child that outlived its handle would keep the namespace alive.
fn kill_inside(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).output();
    }
}

/// Delete the namespaces of test processes that died without cleaning up (killed by a
/// timeout): `agora<pid>n...` whose pid no longer runs.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once('n'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_inside(name);
            let _ = Command::new("ip").args(["netns", "delete", name]).output();
        }
    }
}

/// A curl run with `-w '%{stderr}%{http_code}'`: the body on stdout, the status on stderr.
fn curl_get(out: Output) -> Result<(u16, Vec<u8>), (i32, String)> {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        return Err((out.status.code().unwrap_or(-1), err));
    }
    let code = err.trim().parse().unwrap_or(0);
    Ok((code, out.stdout))
}

/// An `agora serve` inside a host's namespace, killed on drop (its log printed if the test
/// fails). Its JSON is read from inside its own namespace, so it can be read while its link
/// is cut.
struct Server {
    agora: Agora,
    ns: String,
}

impl Server {
    /// `http://ADDR:8000/mount` (`http://ADDR:8000` for `""`)
    fn url(&self, mount: &str) -> String {
        self.agora.url(mount)
    }

    /// GET `path` (with the admin's credentials) from inside the server's namespace.
    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let url = format!("http://admin:{ADMIN_PW}@{}{path}", self.agora.addr);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sS", "--max-time", "10"])
            .args(["-w", "%{stderr}%{http_code}", &url])
            .stdin(Stdio::null())
            .output()
            .expect("run curl in a namespace");
        curl_get(out).unwrap_or_else(|(code, err)| panic!("GET {url}: curl exit {code}: {err}"))
    }

    /// The JSON at `path` (`/status-json.xsl`, `/admin/stats.json`, `/admin/relays.json`...),
    /// which must answer 200.
    fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("JSON of {path}: {e}"))
    }

    /// The `source` entries of `/status-json.xsl` as a list, whatever Icecast's shape.
    fn sources(&self) -> Vec<serde_json::Value> {
        as_list(&self.json("/status-json.xsl")["icestats"]["source"])
    }

    /// The status of `mount` (found by the path of its `listenurl`).
    fn source(&self, mount: &str) -> Option<serde_json::Value> {
        let suffix = format!(":{PORT}{mount}");
        self.sources().into_iter().find(|s| {
            s["listenurl"]
                .as_str()
                .is_some_and(|u| u.ends_with(&suffix))
        })
    }

    /// The listeners of `mount` (0 when it is not listed).
    fn listeners(&self, mount: &str) -> u64 {
        self.source(mount)
            .and_then(|s| s["listeners"].as_u64())
            .unwrap_or(0)
    }

    /// Wait until `mount` is listed with a stream (its format known: the data flows).
    fn wait_stream(&self, mount: &str) {
        wait_until(
            &format!("{mount} streaming on {}", self.agora.addr),
            Duration::from_secs(30),
            || {
                self.source(mount).is_some_and(|s| {
                    s["server_type"]
                        .as_str()
                        .is_some_and(|t| t != "application/octet-stream")
                })
            },
        );
    }
}

/// A JSON value that may be absent, one object or a list, as a list.
fn as_list(v: &serde_json::Value) -> Vec<serde_json::Value> {
    match v {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => a.clone(),
        o => vec![o.clone()],
    }
}

/// An origin, a source pushing to it and two edges following it (`[master]`), each on a host
/// of its own; a client host's listeners decode from both edges. One edge's link is cut: it
/// is unreachable and the other edge still serves; the link comes back and so does the edge.
#[test]
fn two_edges_on_their_own_hosts_serve_a_client_and_one_comes_back_after_a_cut() {
    let net = Net::new(&["origin", "edge1", "edge2", "client"]);
    let origin = net.serve("origin", "[auth]\nrelay-password = \"relay-pw\"\n");
    let (f, path) = fixture("theora");
    let _source = ffmpeg_push_with(
        net.command("origin", "ffmpeg"),
        &origin.agora,
        &path,
        "/live.ogg",
        f.muxer,
        false,
    );
    origin.wait_stream("/live.ogg");

    let edge_cfg = format!(
        "[master]\nurl = \"http://relay:relay-pw@{}/\"\ninterval-secs = 1\n",
        origin.agora.addr
    );
    let edge1 = net.serve("edge1", &edge_cfg);
    let edge2 = net.serve("edge2", &edge_cfg);
    edge1.wait_stream("/live.ogg");
    edge2.wait_stream("/live.ogg");
    // The origin sees two relays from two addresses, no viewer.
    wait_until(
        "the origin to count two relays",
        Duration::from_secs(30),
        || {
            as_list(&origin.json("/admin/stats.json")["icestats"]["source"])
                .iter()
                .any(|s| s["mount"] == "/live.ogg" && s["relays"] == 2 && s["listeners"] == 0)
        },
    );
    // The client decodes from each edge, both at once.
    std::thread::scope(|s| {
        for edge in [&edge1, &edge2] {
            s.spawn(|| net.assert_decodes("client", &edge.url("/live.ogg"), 5));
        }
    });

    // A listener of edge2 stays connected through what follows.
    let mut held = net.listen("client", &edge2.url("/live.ogg"));
    wait_until("edge2's listener", Duration::from_secs(30), || {
        edge2.listeners("/live.ogg") == 1
    });

    // edge1's cable is pulled: the client cannot reach it (no answer within the connect
    // timeout, or no route to it), while edge2 carries on.
    net.cut("edge1");
    let asked = Instant::now();
    let status_url = edge1.url("/status-json.xsl");
    match net.get("client", &status_url) {
        Err((28 | 7, _)) => {}
        other => panic!("edge1 answered through a cut link: {other:?}"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "a connect to a cut host should give up within its timeout"
    );
    net.assert_decodes("client", &edge2.url("/live.ogg"), 5);

    // The cable is back: edge1 answers the client again, with the stream, which decodes.
    net.restore("edge1");
    wait_until(
        "edge1 to answer the client with its mount",
        Duration::from_secs(30),
        || {
            net.get("client", &status_url).is_ok_and(|(code, body)| {
                code == 200 && String::from_utf8_lossy(&body).contains("/live.ogg")
            })
        },
    );
    net.assert_decodes("client", &edge1.url("/live.ogg"), 5);
    assert!(
        held.0.try_wait().expect("listener status").is_none(),
        "edge2's listener was cut off"
    );
    // The decoders have hung up (an edge sees that at its next write): the held one remains.
    wait_until(
        "edge2 to keep just its held listener",
        Duration::from_secs(30),
        || edge2.listeners("/live.ogg") == 1,
    );
}

/// The origin's view of one edge (from `/admin/relays.json`), by the edge's server.
fn edge_view(origin: &Server, edge: &Server) -> Option<serde_json::Value> {
    let url = format!("{}/", edge.url(""));
    as_list(&origin.json("/admin/relays.json")["edges"])
        .into_iter()
        .find(|e| e["url"] == url.as_str())
}

/// Listeners the origin has sent to `edge` so far.
fn sent_to(origin: &Server, edge: &Server) -> u64 {
    edge_view(origin, edge)
        .and_then(|e| e["redirects"].as_u64())
        .unwrap_or(0)
}

/// Spreading viewers (#11): edges on hosts of their own announce themselves to the origin;
/// listeners asking the origin land on both edges by redirect, least-loaded first; one edge's
/// link is cut and new listeners go only to the other within seconds; the link is back and
/// the edge gets listeners again.
#[test]
fn listeners_asking_the_origin_are_spread_over_the_edges_that_answer() {
    let net = Net::new(&["origin", "edge1", "edge2", "client"]);
    let origin = net.serve(
        "origin",
        "[auth]\nrelay-password = \"relay-pw\"\n[mount-defaults]\nredirect = \"always\"\n",
    );
    let (f, path) = fixture("theora");
    // Looped: the test outlasts the 40 s fixture.
    let mut ffmpeg = net.command("origin", "ffmpeg");
    ffmpeg.args(["-stream_loop", "-1"]);
    let _source = ffmpeg_push_with(ffmpeg, &origin.agora, &path, "/live.ogg", f.muxer, false);
    origin.wait_stream("/live.ogg");
    let edge = |host: &str| {
        let addr = net.addr(host);
        net.serve(
            host,
            &format!(
                "[master]\nurl = \"http://relay:relay-pw@{}/\"\ninterval-secs = 1\n\
                 announce = \"http://{addr}:{PORT}\"\n",
                origin.agora.addr
            ),
        )
    };
    let (edge1, edge2) = (edge("edge1"), edge("edge2"));
    for e in [&edge1, &edge2] {
        wait_until(
            "the origin to probe the edge and see its mount",
            Duration::from_secs(30),
            || {
                edge_view(&origin, e)
                    .is_some_and(|v| v["healthy"] == true && v["mounts"][0] == "/live.ogg")
            },
        );
    }
    // A player asking the origin follows the redirect and decodes from an edge.
    net.assert_decodes("client", &origin.url("/live.ogg"), 3);
    wait_until(
        "the decoder gone from the edges",
        Duration::from_secs(30),
        || edge1.listeners("/live.ogg") + edge2.listeners("/live.ogg") == 0,
    );

    // Least-loaded first: edge1 has a viewer of its own; once the origin knows it, the next
    // listener goes to edge2, then they alternate.
    let mut held = vec![net.listen("client", &edge1.url("/live.ogg"))];
    wait_until(
        "the origin to see edge1's viewer",
        Duration::from_secs(30),
        || edge_view(&origin, &edge1).is_some_and(|v| v["listeners"] == 1),
    );
    let (before1, before2) = (sent_to(&origin, &edge1), sent_to(&origin, &edge2));
    held.push(net.listen("client", &origin.url("/live.ogg")));
    wait_until(
        "the first listener on edge2",
        Duration::from_secs(30),
        || edge2.listeners("/live.ogg") == 1,
    );
    assert_eq!(sent_to(&origin, &edge2), before2 + 1);
    assert_eq!(sent_to(&origin, &edge1), before1, "edge1 was the busier");
    for _ in 0..2 {
        held.push(net.listen("client", &origin.url("/live.ogg")));
    }
    wait_until(
        "two listeners on each edge",
        Duration::from_secs(30),
        || edge1.listeners("/live.ogg") == 2 && edge2.listeners("/live.ogg") == 2,
    );
    assert_eq!(
        origin.listeners("/live.ogg"),
        0,
        "the origin serves no viewer"
    );

    // edge1's link is cut: within seconds the origin sends nobody there.
    net.cut("edge1");
    let cut_at = Instant::now();
    wait_until(
        "the origin to give up on edge1",
        Duration::from_secs(15),
        || edge_view(&origin, &edge1).is_some_and(|v| v["healthy"] == false),
    );
    let noticed = cut_at.elapsed();
    assert!(
        noticed < Duration::from_secs(6),
        "noticed after {noticed:?}"
    );
    let before1 = sent_to(&origin, &edge1);
    for _ in 0..3 {
        held.push(net.listen("client", &origin.url("/live.ogg")));
    }
    wait_until(
        "edge2 to get the three new listeners",
        Duration::from_secs(30),
        || edge2.listeners("/live.ogg") == 5,
    );
    assert_eq!(
        sent_to(&origin, &edge1),
        before1,
        "nobody sent to a cut edge"
    );

    // The link is back: the origin trusts edge1 again and, as the less loaded, it gets the
    // next listeners.
    net.restore("edge1");
    wait_until(
        "the origin to trust edge1 again",
        Duration::from_secs(30),
        || edge_view(&origin, &edge1).is_some_and(|v| v["healthy"] == true),
    );
    for _ in 0..2 {
        held.push(net.listen("client", &origin.url("/live.ogg")));
    }
    wait_until(
        "edge1 to get the two new listeners",
        Duration::from_secs(30),
        || sent_to(&origin, &edge1) == before1 + 2 && edge1.listeners("/live.ogg") >= 3,
    );
    for (i, l) in held.iter_mut().enumerate() {
        assert!(
            l.0.try_wait().expect("listener status").is_none(),
            "listener {i} was cut off"
        );
    }
}
