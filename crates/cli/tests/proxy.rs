//! Edges behind a standard load balancer (#11): Debian's nginx, `least_conn`, buffering off,
//! in front of two Agora edges relaying an origin. Listeners through nginx decode, and each
//! edge sees (in `listclients`) the listener's own address through `X-Forwarded-For`, because
//! nginx's address is in its `trusted-proxies`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// nginx in the foreground with its own configuration, killed on drop.
struct Nginx {
    addr: SocketAddr,
    _proc: Proc,
    _dir: TempDir,
}

impl Nginx {
    fn start(upstreams: &[SocketAddr]) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|a| format!("    server {a};\n"))
            .collect();
        let d = dir.path().display();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                r#"daemon off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream edges {{
    least_conn;
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://edges;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_read_timeout 3600s;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"#
            ),
        )
        .expect("write nginx.conf");
        let proc = Proc(
            Command::new("nginx")
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx must be installed (scripts/install-deps)"),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_until("nginx to answer", Duration::from_secs(20), || {
            TcpStream::connect(addr).is_ok()
        });
        Nginx {
            addr,
            _proc: proc,
            _dir: dir,
        }
    }
}

/// A listener connecting from `from` (another loopback address), through `to`: it reads the
/// response head and keeps the connection open until dropped.
fn listener_from(from: &str, to: SocketAddr, mount: &str) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("addr");
    sock.bind(&local.into()).expect("bind the client address");
    sock.connect(&to.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request("GET", mount, &[]).as_bytes())
        .expect("send");
    let head = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    let mut buf = [0u8; 4096];
    assert!(s.read(&mut buf).expect("stream bytes") > 0);
    s
}

fn listclient_ips(edge: &Agora, mount: &str) -> Vec<String> {
    let auth = format!("Basic {}", b64(&format!("admin:{ADMIN_PW}")));
    let (_, _, body) = http_get(
        edge.addr,
        &format!("/admin/listclients.json?mount={mount}"),
        &[("Authorization", &auth)],
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("listclients JSON");
    v["icestats"]["source"][0]["clients"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ip"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn nginx_in_front_of_two_edges_passes_listeners_and_their_addresses() {
    let origin = Agora::start();
    let (f, path) = fixture("mp3");
    let _src = ffmpeg_push(&origin, &path, "/lb.mp3", f.muxer, false);
    origin.wait_mount("/lb.mp3");
    let edge_cfg = format!(
        "[server]\ntrusted-proxies = [\"127.0.0.1\"]\n\n[[relay]]\nupstream = \"{}\"\n",
        origin.url("/lb.mp3")
    );
    let edges = [
        Agora::start_with_config(&edge_cfg),
        Agora::start_with_config(&edge_cfg),
    ];
    for e in &edges {
        e.wait_mount("/lb.mp3");
    }
    let nginx = Nginx::start(&[edges[0].addr, edges[1].addr]);

    // A listener through nginx decodes.
    assert_decodes(&format!("http://{}/lb.mp3", nginx.addr), 3);

    // Two listeners from another address: least_conn gives each edge one, and each edge
    // names the listener's own address, not nginx's.
    let _a = listener_from("127.0.0.2", nginx.addr, "/lb.mp3");
    let _b = listener_from("127.0.0.2", nginx.addr, "/lb.mp3");
    for e in &edges {
        wait_until(
            "the edge to list its listener",
            Duration::from_secs(20),
            || listclient_ips(e, "/lb.mp3") == ["127.0.0.2"],
        );
    }

    // Without the proxy among its trusted ones, an edge sees nginx (the header is ignored).
    let plain = Agora::start_with_config(&format!(
        "[[relay]]\nupstream = \"{}\"\n",
        origin.url("/lb.mp3")
    ));
    plain.wait_mount("/lb.mp3");
    let solo = Nginx::start(&[plain.addr]);
    let _c = listener_from("127.0.0.2", solo.addr, "/lb.mp3");
    wait_until(
        "the untrusting edge to list nginx",
        Duration::from_secs(20),
        || listclient_ips(&plain, "/lb.mp3") == ["127.0.0.1"],
    );
}
