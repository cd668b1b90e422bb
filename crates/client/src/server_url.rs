//! Server URLs: `http(s)://[user:pass@]host[:port]/mount`, and `icecast://` as ffmpeg spells
//! it.
//!
//! Parsed with the `url` crate (WHATWG rules: the userinfo ends at the last `@` of the
//! authority, a host name is lowercased, a path is percent-encoded as it goes on the wire);
//! the user and password are percent-decoded with `percent-encoding`. Two rules are Icecast's
//! rather than the web's: without a port, `http://` and `icecast://` mean 8000 (`https://`
//! 443), and the mount (the path) is required.
//!
//! **A password is never shown:** `Display` and `Debug` leave the credentials out, and an
//! error quotes the input with its password replaced by `***` ([`redact`], also what the
//! server's configuration errors and the command line's argument errors show of a URL).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Icecast's port, when a plain URL gives none.
const ICECAST_PORT: u16 = 8000;

/// A mount on a server, as given on the command line.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `https://`: the connection is TLS.
    pub tls: bool,
    /// The host name or address (an IPv6 address without brackets).
    pub(crate) host: String,
    /// The TCP port.
    pub(crate) port: u16,
    /// The mount: the path (and query, if any) as sent on the request line, e.g. `/live.webm`.
    pub mount: String,
    /// The user, percent-decoded; `None` when absent or empty.
    pub(crate) user: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
}

/// Why a server URL was refused. The input is quoted with its password replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `http://`, `https://` or `icecast://`.
    #[error("{input}: expected http(s)://[user:pass@]host:port/mount")]
    Scheme {
        /// The input, redacted.
        input: String,
    },
    /// No path after the host.
    #[error("{input}: no mount (the URL needs a path, e.g. /live.webm)")]
    NoMount {
        /// The input, redacted.
        input: String,
    },
    /// The port is not a number from 0 to 65535.
    #[error("{input}: bad port `{port}`")]
    BadPort {
        /// The input, redacted.
        input: String,
        /// The port as written.
        port: String,
    },
    /// No host.
    #[error("{input}: no host")]
    NoHost {
        /// The input, redacted.
        input: String,
    },
    /// Anything else the URL parser refused.
    #[error("{input}: {why}")]
    Invalid {
        /// The input, redacted.
        input: String,
        /// The parser's reason.
        why: url::ParseError,
    },
}

impl FromStr for ServerUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let input = redact(s);
        let scheme = s
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        let tls = match scheme.as_deref() {
            Some("http" | "icecast") => false,
            Some("https") => true,
            _ => return Err(UrlError::Scheme { input }),
        };
        let url = url::Url::parse(s).map_err(|why| match why {
            url::ParseError::InvalidPort => {
                let port = port_text(s).unwrap_or_default();
                // Shown only when the redacted input shows it too.
                let port = if input.contains(port) { port } else { "?" };
                UrlError::BadPort {
                    port: port.to_string(),
                    input: input.clone(),
                }
            }
            url::ParseError::EmptyHost => UrlError::NoHost {
                input: input.clone(),
            },
            why => UrlError::Invalid {
                input: input.clone(),
                why,
            },
        })?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(UrlError::NoHost { input }),
        };
        // The `url` crate drops a port equal to the scheme's default (`http://h:80/`): tell
        // that apart from no port at all, which means Icecast's 8000.
        let port = match url.port() {
            Some(p) => p,
            None if port_text(s).is_some_and(|p| !p.is_empty()) => {
                url.port_or_known_default().unwrap_or(ICECAST_PORT)
            }
            None if tls => 443,
            None => ICECAST_PORT,
        };
        let path = url.path();
        if path.is_empty() || path == "/" {
            return Err(UrlError::NoMount { input });
        }
        let mount = match url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Ok(ServerUrl {
            tls,
            host,
            port,
            mount,
            user: Some(decode(url.username())).filter(|u| !u.is_empty()),
            password: url.password().map(decode),
        })
    }
}

/// The port as written in `s` (after the last `@` of the authority, after an IPv6 literal's
/// `]`), or `None` when there is no `:`.
fn port_text(s: &str) -> Option<&str> {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest
        .find(['/', '\\', '?', '#'])
        .map_or(rest, |end| &rest[..end]);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.rsplit_once(']') {
        Some((_, tail)) => tail,
        None => host_port,
    };
    after_host.rsplit_once(':').map(|(_, p)| p)
}

/// `s` with anything between the user's `:` and the last `@` replaced by `***` (the last
/// `@` of the whole input: a password with an unescaped `/` or `@` is hidden too). What an
/// error or a log line may show of a URL that may not parse.
pub fn redact(s: &str) -> String {
    match password_span(s) {
        Some(r) => format!("{}***{}", &s[..r.start], &s[r.end..]),
        None => s.to_string(),
    }
}

/// The password of a URL as written in `s` (not decoded): what [`redact`] hides. `None` when
/// `s` has no `scheme://user:…@`.
pub fn password_text(s: &str) -> Option<&str> {
    password_span(s).map(|r| &s[r])
}

fn password_span(s: &str) -> Option<std::ops::Range<usize>> {
    let (scheme, rest) = s.split_once("://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    let start = scheme.len() + "://".len() + user.len() + 1;
    Some(start..start + password.len())
}

/// Shown without the credentials.
impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.mount)
    }
}

/// The same as `Display`: without the credentials.
impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl ServerUrl {
    /// `host:port` (`[v6]:port`) for `Host:`.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL with `other`'s user and password when it has neither of its own: one set of
    /// credentials for two URLs of one service (Icecast's url authentication sends its
    /// `listener_add` credentials to its `listener_remove` URL too).
    pub fn or_credentials_of(mut self, other: &ServerUrl) -> ServerUrl {
        if self.user.is_none() && self.password.is_none() {
            self.user.clone_from(&other.user);
            self.password.clone_from(&other.password);
        }
        self
    }

    /// The `Authorization` header value, with `fallback` when the URL has no password; the
    /// user is `source` unless the URL names one.
    pub(crate) fn basic_auth(&self, fallback: Option<&str>) -> Option<String> {
        let pass = self.password.as_deref().or(fallback)?;
        let user = self.user.as_deref().unwrap_or("source");
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    }
}

/// What a query value keeps as is: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A query-string value, percent-encoded (UTF-8, upper-case hex).
pub(crate) fn query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u: ServerUrl = "http://source:p%40ss@example.org:8001/live.webm"
            .parse()
            .expect("valid");
        assert_eq!(u.host, "example.org");
        assert_eq!(u.port, 8001);
        assert_eq!(u.mount, "/live.webm");
        assert_eq!(u.user.as_deref(), Some("source"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.to_string(), "http://example.org:8001/live.webm");
        let u: ServerUrl = "http://[::1]:9000/a.ogg".parse().expect("v6");
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:9000");
        assert_eq!(u.to_string(), "http://[::1]:9000/a.ogg");
        let u: ServerUrl = "http://h/a.ogg".parse().expect("default port");
        assert_eq!(u.port, 8000);
        assert_eq!(
            u.basic_auth(Some("pw")).as_deref(),
            Some("Basic c291cmNlOnB3")
        );
        assert_eq!(u.basic_auth(None), None);
        let u: ServerUrl = "https://h/a".parse().expect("https");
        assert!(u.tls && u.port == 443);
        assert_eq!(u.to_string(), "https://h:443/a");
        let u: ServerUrl = "icecast://source:pw@127.0.0.1:8002/x.mp3"
            .parse()
            .expect("ffmpeg's spelling");
        assert!(!u.tls);
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8002));
        assert_eq!(u.password.as_deref(), Some("pw"));
    }

    #[test]
    fn a_url_without_credentials_takes_the_others() {
        let add: ServerUrl = "http://hook:pw@h/add".parse().expect("url");
        let remove: ServerUrl = "http://h/remove".parse().expect("url");
        let remove = remove.or_credentials_of(&add);
        assert_eq!(remove.mount, "/remove");
        assert_eq!(remove.basic_auth(None), add.basic_auth(None));
        let own: ServerUrl = "http://other:pw2@h/remove".parse().expect("url");
        let own = own.or_credentials_of(&add);
        assert_eq!(
            (own.user.as_deref(), own.password.as_deref()),
            (Some("other"), Some("pw2"))
        );
        let user_only: ServerUrl = "http://other@h/remove".parse().expect("url");
        let user_only = user_only.or_credentials_of(&add);
        assert_eq!(
            (user_only.user.as_deref(), user_only.password.as_deref()),
            (Some("other"), None)
        );
    }

    #[test]
    fn an_explicit_default_port_is_kept() {
        // The `url` crate forgets `:80`; without a port Icecast's 8000 is meant.
        let u: ServerUrl = "http://h:80/a".parse().expect("port 80");
        assert_eq!(u.port, 80);
        let u: ServerUrl = "https://h:443/a".parse().expect("port 443");
        assert_eq!(u.port, 443);
        let u: ServerUrl = "icecast://h/a".parse().expect("no port");
        assert_eq!(u.port, 8000);
    }

    #[test]
    fn userinfo_is_split_at_the_last_at_and_the_first_colon() {
        let u: ServerUrl = "http://me:a:b@c@h:8000/m".parse().expect("valid");
        assert_eq!(u.user.as_deref(), Some("me"));
        assert_eq!(u.password.as_deref(), Some("a:b@c"));
        assert_eq!(
            u.basic_auth(None).as_deref(),
            Some("Basic bWU6YTpiQGM=") // me:a:b@c
        );
        let u: ServerUrl = "http://:pw@h:8000/m".parse().expect("no user");
        assert_eq!(u.user, None);
        assert_eq!(u.password.as_deref(), Some("pw"));
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        let err = |s: &str| s.parse::<ServerUrl>().expect_err(s).to_string();
        assert_eq!(
            err("ftp://h/a"),
            "ftp://h/a: expected http(s)://[user:pass@]host:port/mount"
        );
        assert!(err("h:8000/a").contains("expected http(s)://"));
        assert_eq!(
            err("http://h:8000/"),
            "http://h:8000/: no mount (the URL needs a path, e.g. /live.webm)"
        );
        assert!(err("http://h:8000").contains("no mount"));
        assert_eq!(
            err("http://source:secret@h:80x/a"),
            "http://source:***@h:80x/a: bad port `80x`"
        );
        assert!(err("http://h:99999/a").contains("bad port `99999`"));
        assert!(err("http://source:secret@/a").contains("no host"));
        assert!(err("icecast:///a").contains("no host"));
        for s in [
            "http://source:secret@h:80x/a",
            "http://source:se/cret@h:8000/a",
            "ftp://u:secret@h/a",
        ] {
            assert!(!err(s).contains("secret"), "{}", err(s));
        }
    }

    #[test]
    fn the_password_as_written_is_what_redact_hides() {
        for (s, pw, shown) in [
            (
                "http://source:s%40cret@h/a",
                Some("s%40cret"),
                "http://source:***@h/a",
            ),
            (
                "--server=icecast://u:a@b@h:1/x",
                Some("a@b"),
                "--server=icecast://u:***@h:1/x",
            ),
            ("http://relay@h/", None, "http://relay@h/"),
            ("http://:pw@h/", Some("pw"), "http://:***@h/"),
            ("not a url", None, "not a url"),
        ] {
            assert_eq!(password_text(s), pw, "{s}");
            assert_eq!(redact(s), shown, "{s}");
        }
    }

    #[test]
    fn the_path_goes_on_the_wire_encoded() {
        let u: ServerUrl = "http://h:8000/my talk.ogg".parse().expect("space");
        assert_eq!(u.mount, "/my%20talk.ogg");
        let u: ServerUrl = "http://h:8000/a.mp3?x=1".parse().expect("query");
        assert_eq!(u.mount, "/a.mp3?x=1");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_value("Talk: A & B"), "Talk%3A%20A%20%26%20B");
        assert_eq!(query_value("/live.mp3"), "%2Flive.mp3");
        assert_eq!(query_value("Café ~ 10%"), "Caf%C3%A9%20~%2010%25");
    }
}
