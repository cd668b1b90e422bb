//! The admin API at Icecast's paths, with Icecast's parameters and XML, so scripts written for
//! Icecast keep working; every command also answers JSON (`.json` suffix or
//! `Accept: application/json`).
//!
//! | path | parameters | credentials |
//! |---|---|---|
//! | `/admin/stats` (`stats.xml`) | | admin |
//! | `/admin/listmounts` | | admin |
//! | `/admin/streamlist.txt` | `rserver`, `rport`, `interval`, `maxlisteners` (an edge announcing itself) | admin or relay |
//! | `/admin/relays` (`relays.json`) | | admin |
//! | `/admin/listclients` | `mount` | admin or the mount's source |
//! | `/admin/metadata` | `mount`, `mode=updinfo`, `song` (or `artist`/`title`) | admin or the mount's source |
//! | `/admin/killsource` | `mount` | admin or the mount's source |
//! | `/admin/killclient` | `mount`, `id` | admin or the mount's source |
//! | `/admin/moveclients` | `mount`, `destination` | admin or the mount's source |
//! | `/admin/fallbacks` | `mount`, `fallback` (empty: none) | admin or the mount's source |
//!
//! Parameters come from the query string, as Icecast's URLs are written, or from a form body
//! (`POST`, `application/x-www-form-urlencoded`, at most 8 KiB), as the admin page sends them.
//!
//! Order of checks, for every command: known command (404), the cross-site rule for commands
//! that change something (403, below), credentials (401), parameters (400), mount exists
//! (404), then the action. A refused request changes nothing.
//!
//! **Cross-site rule (#13).** The commands that change something (`metadata`, `killsource`,
//! `killclient`, `moveclients`, `fallbacks`, and `streamlist` when it carries an edge's announcement,
//! `rserver`) are authorised by Basic credentials, which a browser sends by itself once the
//! operator typed them, whichever page makes the request. So a request that a browser says
//! comes from another page is refused, before its credentials are looked at (no password
//! oracle either):
//! - `Sec-Fetch-Site` present and other than `same-origin` or `none`: `cross-site`, and
//!   `same-site` too (a page on another port of the same host is another origin). `none` is a
//!   URL the operator typed or bookmarked, which Icecast's GET commands are made for.
//! - `X-Agora-Token` present and not this server's admin-page token ([`auth::Token`]).
//! - `Origin` present and naming another server than the request's `Host` (host and port; the
//!   scheme is left to `Sec-Fetch-Site`, since behind a TLS proxy the server cannot know its
//!   own), unless the request carries the admin page's token: a browser too old for
//!   `Sec-Fetch-Site` still sends `Origin` with a POST, and the token lets the admin page
//!   work behind a proxy that rewrites `Host`.
//!
//! Scripts, players and other servers (curl, libshout, ffmpeg, liquidsoap, Icecast's tools and
//! slaves) send none of these headers and are not concerned. The admin page sends its actions
//! as `POST` with its token. The refusal is a 403 and a warning naming the peer and the
//! command.
//!
//! JSON mirrors the XML, except that lists are always lists: `{"icestats": {...,
//! "source": [...]}}` for stats and listmounts, `{"icestats": {"source": [{"mount", "listeners",
//! "clients": [...]}]}}` for listclients, `{"message", "return"}` for actions.
//!
//! The XML is written by hand: five fixed shapes of at most a few levels, every text and
//! attribute through [`esc`]; an XML crate would add a dependency for no safety gained.

use std::sync::atomic::Ordering;

use std::net::SocketAddr;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::control::status::{self, SourceStatus};
use crate::logging::{About, Kind, shown};
use crate::mount_path::MountPath;
use crate::state::{Login, Shared};
use crate::stream::mount::{Mount, MoveKind};
use crate::wire::auth;
use crate::wire::http::{JSON, Request, Response, TEXT};

const XML: &str = "text/xml; charset=utf-8";

/// XML text and attribute escaping.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether the request carries the source credentials of `mount` (Icecast accepts them for
/// the commands about that mount).
pub(crate) fn is_mount_source(req: &Request, mount: &str, shared: &Shared) -> bool {
    let credentials = shared.credentials();
    let policy = shared.config().policy_for(mount);
    let pass = policy
        .source_password
        .as_deref()
        .unwrap_or(&credentials.source_password);
    req.header("authorization")
        .and_then(auth::parse_basic)
        .is_some_and(|g| auth::credentials_match(&g, &policy.source_user, pass))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Stats,
    ListMounts,
    StreamList,
    Relays,
    ListClients,
    Metadata,
    KillSource,
    KillClient,
    MoveClients,
    Fallbacks,
}

impl Command {
    fn parse(name: &str) -> Option<Command> {
        Some(match name {
            "stats" => Command::Stats,
            "listmounts" => Command::ListMounts,
            "streamlist" => Command::StreamList,
            "relays" => Command::Relays,
            "listclients" => Command::ListClients,
            "metadata" => Command::Metadata,
            "killsource" => Command::KillSource,
            "killclient" => Command::KillClient,
            "moveclients" => Command::MoveClients,
            "fallbacks" => Command::Fallbacks,
            _ => return None,
        })
    }

    /// Commands about one mount, which its source credentials may also run.
    fn about_a_mount(self) -> bool {
        !matches!(
            self,
            Command::Stats | Command::ListMounts | Command::StreamList | Command::Relays
        )
    }

    /// Whether the command changes something (and so falls under the cross-site rule): the
    /// actions, and the mount list when an edge announces itself with it (an announced edge may
    /// be sent listeners).
    fn changes_state(self, params: &Params) -> bool {
        match self {
            Command::Metadata
            | Command::KillSource
            | Command::KillClient
            | Command::MoveClients
            | Command::Fallbacks => true,
            Command::StreamList => params.get("rserver").is_some(),
            Command::Stats | Command::ListMounts | Command::Relays | Command::ListClients => false,
        }
    }
}

/// A command's parameters: the query string's, then a form body's (a `POST` of
/// `application/x-www-form-urlencoded`); the first of a name wins.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(req: &Request, body: &[u8]) -> Params {
        let mut all = req.query();
        if req.is_form() {
            all.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Params(all)
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Why a browser's request for a command that changes something was refused (see the
/// cross-site rule in the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forgery {
    /// `Sec-Fetch-Site` says another site (`cross-site`) or another origin of this site
    /// (`same-site`), or something unknown.
    FetchSite(&'static str),
    /// A token that is not this server's admin-page token.
    StaleToken,
    /// An `Origin` that is not the server the request was sent to.
    ForeignOrigin,
}

impl Forgery {
    pub(crate) fn message(self) -> String {
        match self {
            Forgery::FetchSite(site) => format!(
                "Refused: the request came from another site's page (Sec-Fetch-Site: {site}); \
                 use this server's admin page, or a script"
            ),
            Forgery::StaleToken => {
                "Refused: the admin page's token is not this server's; reload the page".into()
            }
            Forgery::ForeignOrigin => "Refused: the request came from another origin's page \
                 (its Origin is not this server); use this server's admin page, or a script"
                .into(),
        }
    }
}

/// The cross-site rule: `Some` when the request is a browser's on another page's behalf.
pub(crate) fn forgery(req: &Request, shared: &Shared) -> Option<Forgery> {
    if let Some(site) = req.header("sec-fetch-site") {
        match site.to_ascii_lowercase().as_str() {
            "same-origin" | "none" => {}
            "same-site" => return Some(Forgery::FetchSite("same-site")),
            "cross-site" => return Some(Forgery::FetchSite("cross-site")),
            _ => return Some(Forgery::FetchSite("unknown")),
        }
    }
    let token = match req.header(TOKEN_HEADER) {
        Some(given) if shared.admin_token.matches(given) => true,
        Some(_) => return Some(Forgery::StaleToken),
        None => false,
    };
    match req.header("origin") {
        Some(origin) if !token && !same_server(origin, req.header("host")) => {
            Some(Forgery::ForeignOrigin)
        }
        _ => None,
    }
}

/// The header the admin page sends its token in.
const TOKEN_HEADER: &str = "x-agora-token";

/// Whether `origin` (a browser's `Origin`: `scheme://host[:port]`) names the server `host` (the
/// request's `Host`) names: the same host and port, a missing port being the scheme's default.
/// Anything malformed (`null`, a path, credentials, no `Host`) is another server.
fn same_server(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    if host.is_empty()
        || host.chars().any(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return false;
    }
    let Ok(o) = url::Url::parse(origin) else {
        return false;
    };
    // Only a bare origin, as browsers write it (lower case, no default port, no path).
    let o = o.origin();
    if !o.is_tuple() || !o.ascii_serialization().eq_ignore_ascii_case(origin) {
        return false;
    }
    let scheme = match &o {
        url::Origin::Tuple(scheme, _, _) if scheme == "http" || scheme == "https" => scheme,
        _ => return false,
    };
    url::Url::parse(&format!("{scheme}://{host}")).is_ok_and(|h| h.origin() == o)
}

/// How to answer: Icecast's XML or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Xml,
    Json,
}

struct Reply {
    style: Style,
}

impl Reply {
    /// An action's outcome: `<iceresponse>` or `{"message", "return"}`.
    fn message(&self, code: u16, message: &str) -> Response {
        let ok = (200..300).contains(&code);
        let resp = match self.style {
            Style::Xml => Response::new(
                code,
                XML,
                format!(
                    "<?xml version=\"1.0\"?>\n<iceresponse><message>{}</message><return>{}</return></iceresponse>\n",
                    esc(message),
                    u8::from(ok)
                ),
            ),
            Style::Json => Response::new(
                code,
                JSON,
                json!({ "message": message, "return": u8::from(ok) }).to_string(),
            ),
        };
        if code == 401 {
            resp.with_header("WWW-Authenticate", "Basic realm=\"Agora admin\"")
        } else {
            resp
        }
    }
}

/// Answer an `/admin/...` request (`body`: a `POST`'s, read whole; empty otherwise).
pub(crate) fn handle(req: &Request, body: &[u8], peer: SocketAddr, shared: &Shared) -> Response {
    let path = req.path();
    let name = path.strip_prefix("/admin/").unwrap_or(path);
    let (name, suffix) = match name.rsplit_once('.') {
        Some((n, s)) if matches!(s, "json" | "xml" | "xsl" | "txt") => (n, Some(s)),
        _ => (name, None),
    };
    let wants_json = suffix == Some("json")
        || (suffix.is_none()
            && req
                .header("accept")
                .is_some_and(|a| a.contains("application/json")));
    let reply = Reply {
        style: if wants_json { Style::Json } else { Style::Xml },
    };
    let Some(cmd) = Command::parse(name) else {
        // Say nothing about what exists to someone without credentials.
        return if shared.is_admin(req) {
            reply.message(404, "Unknown admin command")
        } else {
            reply.message(401, "You need to authenticate")
        };
    };
    let params = Params::of(req, body);
    let mount_param = params.get("mount");
    let mount_shown = shown(mount_param.as_deref().unwrap_or("-"));
    if cmd.changes_state(&params)
        && let Some(why) = forgery(req, shared)
    {
        // Keyed by command too (a handful): each command's refusal is seen.
        if shared
            .logs
            .admit(Kind::CrossSite, About::PeerCommand(peer.ip(), name))
        {
            tracing::warn!(
                %peer,
                command = ?shown(name),
                mount = ?mount_shown,
                reason = ?why,
                "admin request refused by the cross-site rule"
            );
        }
        return reply.message(403, &why.message());
    }
    let login = shared.login(peer.ip(), req, || {
        shared.is_admin(req)
            || (cmd == Command::StreamList && shared.is_relay(req))
            || (cmd.about_a_mount()
                && mount_param
                    .as_deref()
                    .is_some_and(|m| is_mount_source(req, m, shared)))
    });
    match login {
        Login::Granted => {}
        Login::Banned(left) => {
            let secs = left.as_secs().max(1);
            return reply
                .message(
                    429,
                    &format!("Too many failed logins from this address: try again in {secs} s"),
                )
                .with_header("Retry-After", secs.to_string());
        }
        Login::Missing | Login::Wrong => {
            if login == Login::Wrong {
                // The line fail2ban matches (docs/fail2ban/agora.conf): `peer` first.
                if shared
                    .logs
                    .admit(Kind::AdminCredentials, About::Peer(peer.ip()))
                {
                    tracing::warn!(
                        %peer,
                        command = ?shown(name),
                        mount = ?mount_shown,
                        "admin request refused: wrong credentials"
                    );
                }
            } else if shared
                .logs
                .admit(Kind::AdminProbe, About::PeerCommand(peer.ip(), name))
            {
                // A client's first, credential-less try (libshout's metadata call, a
                // browser): expected, so debug level; bounded like every line a peer makes.
                tracing::debug!(
                    %peer,
                    command = ?shown(name),
                    "admin request without credentials: 401"
                );
            }
            return reply.message(401, "You need to authenticate");
        }
    }
    let relay = cmd == Command::StreamList && shared.is_relay(req);
    if relay {
        shared.relay_host(peer.ip());
    }
    match cmd {
        Command::Stats => stats(&reply, shared),
        Command::Relays => relays(&reply, shared),
        Command::ListMounts => listmounts(&reply, shared),
        Command::StreamList => {
            if let Some(host) = params.get("rserver") {
                announce(&params, &host, peer, shared);
            }
            let mut body = String::new();
            for m in shared.registry.all() {
                body.push_str(&m.path);
                body.push('\n');
            }
            Response::new(200, TEXT, body)
        }
        _ => {
            let Some(mount_path) = mount_param else {
                return reply.message(400, "Missing parameter: mount");
            };
            mount_command(req, cmd, &reply, &params, &mount_path, shared)
        }
    }
}

/// An edge's poll of the mount list announced it (Icecast-KH's `rserver`, `rport`,
/// `interval`; Agora's `maxlisteners`): the origin probes it and may send it listeners. A bad
/// announcement is logged and ignored; the mount list is answered anyway.
fn announce(params: &Params, host: &str, peer: SocketAddr, shared: &Shared) {
    let port = params.get("rport").unwrap_or_else(|| "8000".into());
    let interval = params.get("interval");
    let limit = params.get("maxlisteners");
    match shared.edges.announce(
        host,
        &port,
        interval.as_deref(),
        limit.as_deref(),
        peer.ip(),
    ) {
        Ok(true) => tracing::info!(
            edge = %crate::telemetry::edges::authority(host, port.parse().unwrap_or(0)),
            from = %peer.ip(),
            "edge announced itself: probing it"
        ),
        Ok(false) => {}
        Err(e) => {
            if shared
                .logs
                .admit(Kind::EdgeAnnouncement, About::Peer(peer.ip()))
            {
                tracing::warn!(from = %peer.ip(), "edge announcement ignored: {e}");
            }
        }
    }
}

fn mount_command(
    req: &Request,
    cmd: Command,
    reply: &Reply,
    params: &Params,
    mount_path: &str,
    shared: &Shared,
) -> Response {
    // Parameters first (a bad request is 400 whether or not the mount exists).
    match cmd {
        Command::Metadata if params.get("mode").as_deref() != Some("updinfo") => {
            return reply.message(400, "Unsupported mode (expected mode=updinfo)");
        }
        Command::KillClient => match params.get("id") {
            None => return reply.message(400, "Missing parameter: id"),
            Some(id) if id.parse::<u64>().is_err() => {
                return reply.message(400, "Parameter id must be a listener id (a number)");
            }
            Some(_) => {}
        },
        Command::Fallbacks => match params.get("fallback") {
            None => return reply.message(400, "Missing parameter: fallback (empty for none)"),
            Some(f) if f == mount_path => {
                return reply.message(400, "A mount cannot be its own fallback");
            }
            Some(f) if !f.is_empty() && MountPath::parse(&f).is_err() => {
                return reply.message(400, "Parameter fallback must be a mount path");
            }
            Some(_) => {}
        },
        Command::MoveClients => match params.get("destination") {
            None => return reply.message(400, "Missing parameter: destination"),
            Some(d) if d == mount_path => {
                return reply.message(400, "The source and destination mounts are the same");
            }
            Some(_) => {}
        },
        _ => {}
    }
    let Some(mount) = shared.registry.get(mount_path) else {
        return reply.message(404, "Source does not exist");
    };
    match cmd {
        Command::ListClients => listclients(reply, &mount),
        Command::Metadata => {
            let song =
                params
                    .get("song")
                    .or_else(|| match (params.get("artist"), params.get("title")) {
                        (Some(a), Some(t)) if !a.is_empty() => Some(format!("{a} - {t}")),
                        (_, Some(t)) => Some(t),
                        (Some(a), None) => Some(a),
                        (None, None) => None,
                    });
            let Some(song) = song else {
                return reply.message(400, "Missing parameter: song (or artist/title)");
            };
            if shared.logs.admit(Kind::TitleSet, About::Mount(&mount.path)) {
                tracing::info!(mount = %mount.path, title = %shown(&song), "metadata updated");
            }
            mount.set_title(song);
            reply.message(200, "Metadata update successful")
        }
        Command::KillSource => {
            if mount.kill_source() {
                tracing::info!(mount = %mount.path, "source removed by the admin");
                reply.message(200, "Source Removed")
            } else {
                reply.message(404, "The mount has no source connected")
            }
        }
        Command::KillClient => {
            let id: u64 = params
                .get("id")
                .and_then(|v| v.parse().ok())
                .unwrap_or_default();
            if mount.kill_client(id) {
                reply.message(200, &format!("Client {id} removed"))
            } else {
                reply.message(404, &format!("Client {id} not found"))
            }
        }
        Command::MoveClients => {
            let dest_path = params.get("destination").unwrap_or_default();
            let Some(dest) = shared.registry.get(&dest_path) else {
                return reply.message(404, "Destination does not exist");
            };
            let (from, to) = (mount.format(), dest.format());
            if from.is_some() && to.is_some() && from != to {
                // Icecast moves them anyway and the players break; say why instead.
                return reply.message(
                    409,
                    "The destination carries another format; its listeners could not play it",
                );
            }
            // The mount's source may move its listeners only to a mount it is the source
            // of too; an admin anywhere.
            if !shared.is_admin(req) && !is_mount_source(req, &dest.path, shared) {
                return reply.message(
                    403,
                    "Moving listeners to a mount needs its source's credentials (or an admin's)",
                );
            }
            let (moved, stayed) = mount.move_clients(&dest, MoveKind::Admin);
            tracing::info!(from = %mount.path, to = %dest.path, listeners = moved, stayed, "listeners moved by the admin");
            if stayed > 0 {
                return reply.message(
                    200,
                    &format!(
                        "{moved} clients moved from {} to {}; {stayed} stayed: the destination is at its listener limit",
                        mount.path, dest.path
                    ),
                );
            }
            reply.message(
                200,
                &format!("Clients moved from {} to {}", mount.path, dest.path),
            )
        }
        Command::Fallbacks => {
            let fallback = params.get("fallback").filter(|f| !f.is_empty());
            if let Some(f) = &fallback {
                // The same rule as the configuration's, with what is known now: the mount's
                // format from its bytes, the fallback's from its bytes when live, else from
                // the names.
                let by_ext = crate::mount_path::format_by_extension;
                let here = mount.format().or_else(|| by_ext(&mount.path));
                let there = shared
                    .registry
                    .get(f)
                    .and_then(|d| d.format())
                    .or_else(|| by_ext(f));
                if here.is_some() && there.is_some() && here != there {
                    return reply.message(
                        409,
                        "The fallback carries another format; the mount's listeners could not play it",
                    );
                }
            }
            // As with moveclients: the mount's source may send its listeners only to a mount
            // it is the source of too; an admin anywhere.
            if let Some(f) = &fallback
                && !shared.is_admin(req)
                && !is_mount_source(req, f, shared)
            {
                return reply.message(
                    403,
                    "A fallback needs its source's credentials (or an admin's)",
                );
            }
            mount.set_fallback(fallback.as_deref());
            tracing::info!(mount = %mount.path, fallback = fallback.as_deref().unwrap_or("none"), "fallback set by the admin");
            reply.message(200, "Fallback configured")
        }
        Command::Stats | Command::ListMounts | Command::StreamList | Command::Relays => {
            reply.message(404, "Unknown admin command")
        }
    }
}

/// Seconds since the mount's current source connected (0 without one).
fn source_seconds(m: &Mount) -> u64 {
    if !m.has_source() {
        return 0;
    }
    let at = m.state().connected_at;
    at.elapsed().unwrap_or_default().as_secs()
}

/// A mount in `/admin/stats`: the public fields plus the admin-only ones.
#[derive(Debug, Serialize)]
struct StatsSource {
    #[serde(flatten)]
    status: SourceStatus,
    /// A number, or `"unlimited"` as Icecast says.
    max_listeners: Value,
    slow_listeners: u64,
    /// Other servers relaying the mount (not counted in `listeners`).
    relays: usize,
    source_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public: Option<String>,
    total_bytes_read: u64,
    total_bytes_sent: u64,
    /// Seconds the current source has been connected.
    connected: u64,
    /// Where listeners go when the mount closes (Icecast's `fallback` in its stats).
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
}

fn stats_source(m: &Mount, shared: &Shared) -> Map<String, Value> {
    let st = m.state();
    let row = StatsSource {
        status: SourceStatus::of(m, shared),
        max_listeners: match m.settings().max_listeners {
            Some(n) => json!(n),
            None => json!("unlimited"),
        },
        slow_listeners: m.slow_listeners.load(Ordering::Relaxed),
        relays: m.relays.load(Ordering::Relaxed),
        source_ip: st.source_ip.clone(),
        user_agent: st.meta.user_agent.clone(),
        public: st.meta.public.clone(),
        total_bytes_read: m.bytes_read.load(Ordering::Relaxed),
        total_bytes_sent: m.bytes_sent.get(),
        connected: source_seconds(m),
        fallback: m.fallback().map(|f| f.to_string()),
    };
    match json!(row) {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// Values as XML text (`null` as empty).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// Each field as an element; a list as one element per item inside it (`<mounts><mount>`).
fn xml_fields(out: &mut String, fields: &Map<String, Value>) {
    for (k, v) in fields {
        match v {
            Value::Array(items) => {
                let one = k.strip_suffix('s').unwrap_or("item");
                out.push_str(&format!("<{k}>"));
                for item in items {
                    out.push_str(&format!("<{one}>{}</{one}>", text(item)));
                }
                out.push_str(&format!("</{k}>"));
            }
            _ => out.push_str(&format!("<{k}>{}</{k}>", text(v))),
        }
    }
}

fn stats(reply: &Reply, shared: &Shared) -> Response {
    let mounts = shared.registry.all();
    let mut ice = status::server_fields(shared);
    let listeners = shared.registry.total_listeners.load(Ordering::Relaxed);
    let sources = mounts.iter().filter(|m| m.has_source()).count();
    let counters = [
        ("clients", (listeners + sources) as u64),
        ("listeners", listeners as u64),
        ("sources", sources as u64),
        ("stats", 0),
        (
            "client_connections",
            shared.connections.load(Ordering::Relaxed),
        ),
        ("connections", shared.connections.load(Ordering::Relaxed)),
        ("file_connections", 0),
        (
            "listener_connections",
            shared.listener_connections.load(Ordering::Relaxed),
        ),
        (
            "source_client_connections",
            shared.source_connections.load(Ordering::Relaxed),
        ),
        (
            "source_relay_connections",
            shared.relay_connections.load(Ordering::Relaxed),
        ),
        (
            "source_total_connections",
            shared.source_connections.load(Ordering::Relaxed)
                + shared.relay_connections.load(Ordering::Relaxed),
        ),
        ("stats_connections", 0),
    ];
    for (k, v) in counters {
        ice.insert(k.into(), json!(v));
    }
    match reply.style {
        Style::Json => {
            let sources: Vec<Value> = mounts
                .iter()
                .map(|m| {
                    let mut o = stats_source(m, shared);
                    o.insert("mount".into(), json!(m.path));
                    Value::Object(o)
                })
                .collect();
            ice.insert("source".into(), Value::Array(sources));
            Response::new(200, JSON, json!({ "icestats": ice }).to_string())
        }
        Style::Xml => {
            let mut out = String::from("<?xml version=\"1.0\"?>\n<icestats>");
            xml_fields(&mut out, &ice);
            for m in &mounts {
                out.push_str(&format!("<source mount=\"{}\">", esc(&m.path)));
                xml_fields(&mut out, &stats_source(m, shared));
                out.push_str("</source>");
            }
            out.push_str("</icestats>\n");
            Response::new(200, XML, out)
        }
    }
}

/// A row of `/admin/listmounts.json`.
#[derive(Debug, Serialize)]
struct ListMount {
    mount: String,
    /// The mount's fallback (`null` without one; Icecast's XML has an empty element).
    fallback: Option<String>,
    listeners: usize,
    /// Seconds the source has been connected.
    connected: u64,
    source_connected: bool,
    #[serde(rename = "content-type")]
    content_type: String,
    /// The stream's format (`null` until the source's first bytes): listeners move only
    /// between mounts of one format, and the admin page offers only those.
    format: Option<&'static str>,
}

/// A format's name in `listmounts` (an Agora field, beside Icecast's).
fn format_name(f: agora_format::Format) -> &'static str {
    use agora_format::Format;
    match f {
        Format::Ogg => "ogg",
        Format::WebM => "webm",
        Format::Mp3 => "mp3",
        Format::Aac => "aac",
        Format::Opaque => "other",
    }
}

/// `/admin/relays`: every relay and push, with its state, connections, bytes and last error;
/// and the edges that announced themselves, with their health, load and the listeners sent
/// to each.
fn relays(reply: &Reply, shared: &Shared) -> Response {
    let rows: Vec<Value> = shared
        .relays
        .all()
        .iter()
        .map(|r| json!(r.view()))
        .collect();
    let edges: Vec<Value> = shared.edges.views().iter().map(|e| json!(e)).collect();
    match reply.style {
        Style::Json => Response::new(
            200,
            JSON,
            json!({ "relays": rows, "edges": edges, "redirects": shared.edges.redirects() })
                .to_string(),
        ),
        Style::Xml => {
            let mut out = String::from("<?xml version=\"1.0\"?>\n<icestats>");
            for (tag, list) in [("relay", &rows), ("edge", &edges)] {
                for row in list {
                    out.push_str(&format!("<{tag}>"));
                    if let Value::Object(fields) = row {
                        xml_fields(&mut out, fields);
                    }
                    out.push_str(&format!("</{tag}>"));
                }
            }
            out.push_str(&format!(
                "<redirects>{}</redirects></icestats>\n",
                shared.edges.redirects()
            ));
            Response::new(200, XML, out)
        }
    }
}

fn listmounts(reply: &Reply, shared: &Shared) -> Response {
    let mounts = shared.registry.all();
    let row = |m: &Mount| {
        let st = m.state();
        let ctype = st
            .format
            .map(|f| f.content_type(st.info.has_video()))
            .unwrap_or("");
        (
            m.listeners.load(Ordering::Relaxed),
            source_seconds(m),
            ctype.to_string(),
            st.format.map(format_name),
        )
    };
    match reply.style {
        Style::Json => {
            let sources: Vec<ListMount> = mounts
                .iter()
                .map(|m| {
                    let (listeners, connected, content_type, format) = row(m);
                    ListMount {
                        mount: m.path.clone(),
                        fallback: m.fallback().map(|f| f.to_string()),
                        listeners,
                        connected,
                        source_connected: m.has_source(),
                        content_type,
                        format,
                    }
                })
                .collect();
            Response::new(
                200,
                JSON,
                json!({ "icestats": { "source": sources } }).to_string(),
            )
        }
        Style::Xml => {
            let mut out = String::from("<?xml version=\"1.0\"?>\n<icestats>");
            for m in &mounts {
                let (listeners, secs, ctype, format) = row(m);
                out.push_str(&format!(
                    "<source mount=\"{}\"><fallback>{}</fallback><listeners>{listeners}</listeners><Connected>{secs}</Connected><content-type>{}</content-type><format>{}</format></source>",
                    esc(&m.path),
                    esc(m.fallback().as_deref().map_or("", String::as_str)),
                    esc(&ctype),
                    format.unwrap_or("")
                ));
            }
            out.push_str("</icestats>\n");
            Response::new(200, XML, out)
        }
    }
}

fn listclients(reply: &Reply, m: &Mount) -> Response {
    let clients = m.clients();
    match reply.style {
        Style::Json => {
            let list: Vec<Value> = clients
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "ip": c.peer.ip().to_string(),
                        "user_agent": c.user_agent,
                        "connected": c.connected.elapsed().as_secs(),
                    })
                })
                .collect();
            let source = json!({ "mount": m.path, "listeners": clients.len(), "clients": list });
            Response::new(
                200,
                JSON,
                json!({ "icestats": { "source": [source] } }).to_string(),
            )
        }
        Style::Xml => {
            let mut out = format!(
                "<?xml version=\"1.0\"?>\n<icestats><source mount=\"{}\"><Listeners>{}</Listeners>",
                esc(&m.path),
                clients.len()
            );
            for c in &clients {
                out.push_str(&format!(
                    "<listener id=\"{id}\"><IP>{}</IP><UserAgent>{}</UserAgent><Connected>{}</Connected><ID>{id}</ID></listener>",
                    c.peer.ip(),
                    esc(&c.user_agent),
                    c.connected.elapsed().as_secs(),
                    id = c.id,
                ));
            }
            out.push_str("</source></icestats>\n");
            Response::new(200, XML, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_control_characters() {
        assert_eq!(esc("a<b>&\"'\u{1}c"), "a&lt;b&gt;&amp;&quot;&apos;c");
    }

    #[test]
    fn an_origin_is_this_server_when_it_names_the_host_and_port_asked() {
        for (origin, host) in [
            ("http://radio.example", "radio.example"),
            ("http://radio.example", "radio.example:80"),
            ("http://radio.example", "RADIO.example"),
            ("https://radio.example", "radio.example:443"),
            ("http://radio.example:8000", "radio.example:8000"),
            ("http://127.0.0.1:8000", "127.0.0.1:8000"),
            ("http://[::1]:8000", "[::1]:8000"),
            // Behind a TLS proxy that keeps Host: the scheme is Sec-Fetch-Site's business.
            ("https://radio.example", "radio.example"),
        ] {
            assert!(same_server(origin, Some(host)), "{origin} {host}");
        }
        for (origin, host) in [
            ("http://evil.example", Some("radio.example")),
            ("http://radio.example:9999", Some("radio.example:8000")),
            ("http://radio.example", Some("radio.example:8000")),
            ("http://radio.example.evil.example", Some("radio.example")),
            ("null", Some("radio.example")),
            ("", Some("radio.example")),
            ("http://radio.example/", Some("radio.example")),
            ("http://radio.example:80", Some("radio.example")),
            ("http://user@radio.example", Some("radio.example")),
            ("file://radio.example", Some("radio.example")),
            ("http://radio.example", None),
            ("http://radio.example", Some("")),
            ("http://radio.example", Some("radio.example/x")),
            ("http://radio.example", Some("evil@radio.example")),
        ] {
            assert!(!same_server(origin, host), "{origin} {host:?}");
        }
    }

    #[test]
    fn commands_by_name() {
        assert_eq!(Command::parse("stats"), Some(Command::Stats));
        assert_eq!(Command::parse("killclient"), Some(Command::KillClient));
        assert_eq!(Command::parse("nope"), None);
        assert!(Command::Metadata.about_a_mount());
        assert!(!Command::Stats.about_a_mount());
    }
}
