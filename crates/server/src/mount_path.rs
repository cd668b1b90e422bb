//! Mount paths: the one validated name a mount has, whichever way it is named (a `[[mount]]`
//! table, a push, a relay's local mount, a source's claim, a master's list).
//!
//! **Invariants** (the table-driven test below and `tests/urls.rs` pin them):
//! - A [`MountPath`] starts with `/`, is at most [`MAX_LEN`] bytes, and holds no control
//!   character (C0, DEL, C1: CR, LF, NUL, ESC and TAB included), no empty, `.` or `..`
//!   segment, no trailing `/`, and none of `?`, `#`, `%`, `\`. So it is the same string
//!   in a URL, a header, a log line and a page's link, and no client can read it as another
//!   host (`//evil.example/x`) or another path.
//! - It never names one of the server's own routes: the pages (`/`, `/index.html`,
//!   `/watch/...`, `/admin...`), their assets, the API, `/events`, `/slides/...`, `/metrics`, the status
//!   documents, `/favicon.ico`, nor a path ending in a playlist's suffix (`X.m3u`, `X.xspf`
//!   are the playlists of mount `X`). Built-in routes therefore always answer as themselves.
//! - Paths from the wire are percent-decoded once, before they are checked
//!   ([`MountPath::from_target`]); a mount is looked up by its decoded name.

use std::fmt;

/// The longest mount path, in bytes.
pub(crate) const MAX_LEN: usize = 200;

/// Prefixes that belong to the server's routes (a path equal to one, or under it, is refused).
const RESERVED_TREES: &[&str] = &["/admin", "/api", "/assets", "/watch", "/events", "/slides"];
/// Whole paths that belong to the server's routes.
const RESERVED_PATHS: &[&str] = &[
    "/index.html",
    "/metrics",
    "/status-json.xsl",
    "/status-json.json",
    "/status.xsl",
    "/favicon.ico",
    "/robots.txt",
];
/// Suffixes of the playlist routes (`/X.m3u` is the playlist of `/X`).
const PLAYLIST_SUFFIXES: &[&str] = &[".m3u", ".xspf"];

/// Why a mount path was refused: each says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadMountPath {
    #[error("a mount path starts with / and names a mount")]
    NoName,
    #[error("a mount path is at most {MAX_LEN} bytes")]
    TooLong,
    #[error("a mount path holds no control characters")]
    Control,
    #[error("a mount path has no empty, . or .. segment and does not end with /")]
    Segment,
    #[error("a mount path holds none of ? # % \\")]
    Char,
    #[error("a mount path is UTF-8 (percent-encoded in a URL)")]
    Encoding,
    #[error("{0} is the server's own: choose another mount path")]
    Reserved(String),
}

/// A valid mount path (see the module's invariants).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MountPath(String);

impl MountPath {
    /// Check a decoded path.
    pub(crate) fn parse(path: &str) -> Result<MountPath, BadMountPath> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(BadMountPath::NoName);
        };
        if rest.is_empty() {
            return Err(BadMountPath::NoName);
        }
        if path.len() > MAX_LEN {
            return Err(BadMountPath::TooLong);
        }
        if path.chars().any(char::is_control) {
            return Err(BadMountPath::Control);
        }
        // Without allocating: this runs for every GET.
        let bytes = path.as_bytes();
        let starts =
            |p: &str| bytes.len() >= p.len() && bytes[..p.len()].eq_ignore_ascii_case(p.as_bytes());
        let ends = |p: &str| {
            bytes.len() >= p.len()
                && bytes[bytes.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
        };
        let reserved = RESERVED_PATHS.iter().any(|p| path.eq_ignore_ascii_case(p))
            || RESERVED_TREES
                .iter()
                .any(|t| starts(t) && matches!(bytes.get(t.len()), None | Some(b'/')))
            || PLAYLIST_SUFFIXES.iter().any(|s| ends(s));
        if reserved {
            return Err(BadMountPath::Reserved(path.to_string()));
        }
        if path.contains(['?', '#', '%', '\\']) {
            return Err(BadMountPath::Char);
        }
        if rest
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(BadMountPath::Segment);
        }
        Ok(MountPath(path.to_string()))
    }

    /// The path of a request target (`/x%20y.mp3?query`), percent-decoded once, then checked.
    pub(crate) fn from_target(target: &str) -> Result<MountPath, BadMountPath> {
        MountPath::parse(&decode_path(target)?)
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MountPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bytes a path keeps as they are in a URL (RFC 3986's unreserved characters, `/` and the
/// sub-delimiters a mount name may hold); everything else (a space, non-ASCII) is escaped.
const PATH_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// A mount's path as it goes into a URL for players (a playlist): percent-encoded, so that
/// `/Saal Ü.ogg` is `/Saal%20%C3%9C.ogg`; [`decode_path`] gives the name back.
pub(crate) fn encoded(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, PATH_KEEP).to_string()
}

/// The path of a request target, percent-decoded once (`+` stays a `+`: that is a form's
/// rule, not a path's). Bytes that are not UTF-8 are refused; a malformed escape stays as
/// written, and its `%` is then refused by [`MountPath::parse`].
pub(crate) fn decode_path(target: &str) -> Result<String, BadMountPath> {
    let path = target.split('?').next().unwrap_or("");
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map(|p| p.into_owned())
        .map_err(|_| BadMountPath::Encoding)
}

/// The format a mount's name promises by its extension (`.webm`/`.mkv`/`.mka` WebM,
/// `.ogg`/`.oga`/`.ogv`/`.opus`/`.spx` Ogg, `.mp3` MP3, `.aac`/`.adts` AAC); `None` for any
/// other name. Only a hint for configuration checks: a mount's format is what its bytes are.
pub(crate) fn format_by_extension(path: &str) -> Option<agora_format::Format> {
    use agora_format::Format;
    let name = path.rsplit('/').next()?;
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "webm" | "mkv" | "mka" => Format::WebM,
        "ogg" | "oga" | "ogv" | "opus" | "spx" => Format::Ogg,
        "mp3" => Format::Mp3,
        "aac" | "adts" => Format::Aac,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_path_decodes_to_the_name() {
        for name in [
            "/live.ogg",
            "/Saal Ü/Vortrag (1).ogg",
            "/a+b@c:d.mp3",
            "/日本.opus",
        ] {
            let e = encoded(name);
            assert!(e.is_ascii() && !e.contains(' '), "{e}");
            assert_eq!(decode_path(&e).as_deref(), Ok(name));
        }
        assert_eq!(encoded("/Saal Ü.ogg"), "/Saal%20%C3%9C.ogg");
        assert_eq!(encoded("/live.ogg"), "/live.ogg");
    }

    #[test]
    fn every_malformed_or_reserved_path_is_refused() {
        let long = format!("/{}", "a".repeat(MAX_LEN));
        let cases: &[(&str, BadMountPath)] = &[
            ("", BadMountPath::NoName),
            ("/", BadMountPath::NoName),
            ("live.mp3", BadMountPath::NoName),
            (long.as_str(), BadMountPath::TooLong),
            ("/a\rb", BadMountPath::Control),
            ("/a\nb", BadMountPath::Control),
            ("/a\0b", BadMountPath::Control),
            ("/a\x1bb", BadMountPath::Control),
            ("/a\tb", BadMountPath::Control),
            ("/a\u{7f}b", BadMountPath::Control),
            ("/a\u{85}b", BadMountPath::Control),
            ("//evil.example/x.mp3", BadMountPath::Segment),
            ("/a//b", BadMountPath::Segment),
            ("/a/../admin/", BadMountPath::Segment),
            ("/..", BadMountPath::Segment),
            ("/./x", BadMountPath::Segment),
            ("/live/", BadMountPath::Segment),
            ("/a?b", BadMountPath::Char),
            ("/a#b", BadMountPath::Char),
            ("/a%2fb", BadMountPath::Char),
            ("/a\\b", BadMountPath::Char),
        ];
        for (path, want) in cases {
            assert_eq!(MountPath::parse(path).as_ref(), Err(want), "{path:?}");
        }
        for path in [
            "/admin",
            "/admin/",
            "/admin/index.html",
            "/ADMIN/metadata",
            "/index.html",
            "/watch",
            "/watch/x",
            "/assets/agora.js",
            "/assets/watch.js",
            "/api/v1/mounts",
            "/events",
            "/slides",
            "/slides/live.webm/1.png",
            "/metrics",
            "/status-json.xsl",
            "/favicon.ico",
            "/live.mp3.m3u",
            "/X.xspf",
        ] {
            assert_eq!(
                MountPath::parse(path),
                Err(BadMountPath::Reserved(path.to_string())),
                "{path:?}"
            );
        }
        for path in [
            "/live.mp3",
            "/a/b.ogg",
            "/café.opus",
            "/stream",
            "/administrator.mp3",
            "/watching.webm",
            "/slideshow.webm",
            "/x.m3u8",
        ] {
            assert_eq!(
                MountPath::parse(path).map(MountPath::into_string),
                Ok(path.to_string())
            );
        }
    }

    #[test]
    fn request_paths_are_decoded_once() {
        let ok = |t: &str| MountPath::from_target(t).map(MountPath::into_string);
        assert_eq!(ok("/caf%C3%A9.opus?x=1"), Ok("/café.opus".into()));
        assert_eq!(ok("/a%20b.mp3"), Ok("/a b.mp3".into()));
        assert_eq!(ok("/a+b.mp3"), Ok("/a+b.mp3".into()));
        // Decoded once: an encoded % stays a %, which no mount path holds.
        assert_eq!(ok("/a%2541.mp3"), Err(BadMountPath::Char));
        assert_eq!(ok("/a%0d%0ab"), Err(BadMountPath::Control));
        assert_eq!(ok("/%2e%2e/admin/"), Err(BadMountPath::Segment));
        assert_eq!(ok("/%2fevil.example/x"), Err(BadMountPath::Segment));
        assert_eq!(
            ok("/%61dmin/metadata"),
            Err(BadMountPath::Reserved("/admin/metadata".into()))
        );
        assert_eq!(ok("/a%zz"), Err(BadMountPath::Char));
        assert_eq!(ok("/a%"), Err(BadMountPath::Char));
        assert_eq!(ok("/a%c3"), Err(BadMountPath::Encoding));
    }
}
