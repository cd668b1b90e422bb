//! htpasswd files of bcrypt hashes, as `htpasswd -B` writes them: one `user:hash` a line,
//! blank lines and `#` comments skipped. The one parser of these files: the configuration's
//! check (`listener-htpasswd`, at load and by `--check-config`) and the listener gate's
//! reloads both read through [`load`].
//!
//! Only bcrypt (`$2a$`, `$2b$`, `$2y$`) is accepted: Apache's MD5 (`$apr1$`), `crypt` and
//! `{SHA}` lines, and Icecast's own MD5 files, are refused with the file and the line, so a
//! weak file is never half-used. **Invariant:** an error names the file and the line, never
//! a hash or a line's text.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest file read (a million users at ~70 bytes a line).
pub(crate) const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Highest bcrypt cost accepted: each step doubles a check's time, and 16 is already about
/// four seconds of a core per login.
pub(crate) const MAX_COST: u32 = 15;

/// The users of one file, each with its bcrypt hash.
#[derive(Clone, Default)]
pub(crate) struct Users(HashMap<String, String>);

impl Users {
    /// The hash of `user`, if the file has it.
    pub(crate) fn hash(&self, user: &str) -> Option<&str> {
        self.0.get(user).map(String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Without the hashes.
impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users({})", self.0.len())
    }
}

/// Why an htpasswd file was refused: the file and the line, never their text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HtpasswdError {
    #[error("cannot read {}: {why}", path.display())]
    Read {
        path: PathBuf,
        /// In the message, not a `source`: said once.
        why: std::io::Error,
    },
    #[error("{} is larger than {MAX_FILE} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{} line {line}: {why}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        why: &'static str,
    },
}

/// Read and parse `path`.
pub(crate) fn load(path: &Path) -> Result<Users, HtpasswdError> {
    let read = |why| HtpasswdError::Read {
        path: path.to_path_buf(),
        why,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(HtpasswdError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| HtpasswdError::NotText {
        path: path.to_path_buf(),
    })?;
    parse(&text).map_err(|(line, why)| HtpasswdError::Line {
        path: path.to_path_buf(),
        line,
        why,
    })
}

/// The users of a file's text, or the first bad line (1-based) and what is wrong with it.
fn parse(text: &str) -> Result<Users, (usize, &'static str)> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err((n, "not user:hash"));
        };
        if user.is_empty() {
            return Err((n, "no user name"));
        }
        check_hash(hash).map_err(|why| (n, why))?;
        if users.insert(user.to_string(), hash.to_string()).is_some() {
            return Err((n, "this user is in the file twice"));
        }
    }
    Ok(Users(users))
}

/// Whether `hash` is a bcrypt hash this server accepts: `$2a$`, `$2b$` or `$2y$`, a cost of
/// two digits from 4 to [`MAX_COST`], then 53 characters of bcrypt's base64 (22 of salt,
/// 31 of hash).
fn check_hash(hash: &str) -> Result<(), &'static str> {
    const NOT_BCRYPT: &str = "not a bcrypt hash ($2y$, $2b$ or $2a$; make one with `htpasswd -B`): \
         MD5, crypt and SHA-1 hashes are not accepted";
    let Some(rest) = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))
    else {
        return Err(NOT_BCRYPT);
    };
    let (cost, body) = rest.split_once('$').ok_or(NOT_BCRYPT)?;
    if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NOT_BCRYPT);
    }
    let cost: u32 = cost.parse().map_err(|_| NOT_BCRYPT)?;
    if cost < 4 {
        return Err("a bcrypt cost below 4 is not valid");
    }
    if cost > MAX_COST {
        return Err("a bcrypt cost above 15 makes every login take seconds of a core");
    }
    if body.len() != 53
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err("a truncated or damaged bcrypt hash");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A bcrypt hash of "secret" at cost 5 (Python's `crypt` with METHOD_BLOWFISH).
    const ALICE: &str = "alice:$2b$05$9W9kEk02aLa05P9RWt8JFet/iezELk509YEzA63DQX/DdNOUrDPS6";

    #[test]
    fn bcrypt_lines_parse_and_others_are_refused_by_line_without_their_text() {
        let users =
            parse(&format!("# listeners\n\n{ALICE}\r\nbob:{}\n", &ALICE[6..])).expect("parses");
        assert_eq!(users.len(), 2);
        assert!(
            users
                .hash("alice")
                .is_some_and(|h| h.starts_with("$2b$05$"))
        );
        assert!(users.hash("carol").is_none());
        assert_eq!(format!("{users:?}"), "Users(2)");
        for (bad, line) in [
            // Apache MD5, crypt, SHA-1, Icecast's hex MD5.
            ("alice:$apr1$Vj8a5m0o$0xT1bD5Gk0c3rFQm9x3cB/", 1),
            ("alice:rl4ZdR7F9aFvU", 1),
            ("alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", 1),
            ("alice:5ebe2294ecd0e0f08eab7690d2a6ee69", 1),
            // Damaged, a cost too high, no colon, no user, a user twice.
            (
                "alice:$2b$05$9W9kEk02aLa05P9RWt8JFet/iezELk509YEzA63DQX/DdNOU",
                1,
            ),
            (
                "alice:$2b$31$9W9kEk02aLa05P9RWt8JFet/iezELk509YEzA63DQX/DdNOUrDPS6",
                1,
            ),
            ("\nalice", 2),
            (
                ":$2b$05$9W9kEk02aLa05P9RWt8JFet/iezELk509YEzA63DQX/DdNOUrDPS6",
                1,
            ),
        ] {
            let (n, why) = parse(bad).expect_err(bad);
            assert_eq!(n, line, "{bad}");
            assert!(
                !why.contains(&bad[bad.find(':').map_or(0, |i| i + 1)..]),
                "{why}"
            );
        }
        let (n, why) = parse(&format!("{ALICE}\n{ALICE}")).expect_err("twice");
        assert_eq!((n, why), (2, "this user is in the file twice"));
    }

    #[test]
    fn a_file_error_names_the_file_and_line_never_the_hash() {
        let dir = std::env::temp_dir().join(format!("agora-htpasswd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("md5.htpasswd");
        std::fs::write(
            &path,
            format!("{ALICE}\nbob:$apr1$Vj8a5m0o$0xT1bD5Gk0c3rFQm9x3cB/\n"),
        )
        .expect("write");
        let e = load(&path).expect_err("md5").to_string();
        assert!(e.contains("md5.htpasswd line 2: not a bcrypt hash"), "{e}");
        assert!(!e.contains("apr1") && !e.contains("bob"), "{e}");
        std::fs::write(&path, format!("{ALICE}\n")).expect("write");
        assert_eq!(load(&path).expect("loads").len(), 1);
        let e = load(&dir.join("missing")).expect_err("missing").to_string();
        assert!(e.starts_with("cannot read "), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
