//! Passwords out of sight: [`Secret`], a password that no `Debug` shows and no TOML error
//! quotes, and [`read_password_file`], the one reader of password files (systemd's
//! `LoadCredential=`, Docker secrets, any file only the service may read), shared by the
//! configuration's `*-password-file` keys and the command line's `--*-password-file` flags.
//!
//! **Invariant:** a password's text never reaches a `Debug`, a `Display` or an error message;
//! errors about a password file name the file and what is wrong with it, never its content.

use std::fmt;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// The largest password file read: a secret is a line, not a document (`/dev/zero` given by
/// mistake is refused rather than read until memory runs out).
pub(crate) const MAX_PASSWORD_FILE: u64 = 4096;

/// A password: compared and sent, never shown (`Debug` prints `***`; there is no `Display`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The password itself, for the code that compares or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A string, as any other; anything else is refused without quoting it (serde's own message
/// would: "invalid type: integer `12345678`").
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl Visitor {
            fn refuse<E: serde::de::Error>(self, what: &str) -> Result<Secret, E> {
                Err(E::invalid_type(serde::de::Unexpected::Other(what), &self))
            }
        }
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a password in quotes")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Secret, E> {
                Ok(Secret(s.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Secret, E> {
                Ok(Secret(s))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                self.refuse("a boolean")
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                self.refuse("a number")
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                self.refuse("a number")
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                self.refuse("a number")
            }
        }
        d.deserialize_string(Visitor)
    }
}

/// Why a password file was refused: the file is named, its content never.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFileError {
    /// Missing, unreadable, a directory.
    #[error("cannot read {}: {why}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said (in the message, not a `source`: said once).
        why: std::io::Error,
    },
    /// Nothing in it (one newline only counts as nothing).
    #[error("{} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// More than 4096 bytes.
    #[error("{} is larger than {MAX_PASSWORD_FILE} bytes: not a password file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not UTF-8 text.
    #[error("{} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A line break or NUL before the end (one trailing newline is allowed and stripped).
    #[error(
        "{} holds a line break or NUL inside the password (a password file is one line; one trailing newline is allowed)",
        path.display()
    )]
    Control {
        /// The file.
        path: PathBuf,
    },
}

/// The password in `path`: the whole file, with one trailing newline (`\n` or `\r\n`) stripped,
/// as `echo pw > file`, systemd's `LoadCredential=` and Docker secrets leave it.
pub fn read_password_file(path: &Path) -> Result<Secret, SecretFileError> {
    let read = |why| SecretFileError::Read {
        path: path.to_path_buf(),
        why,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PASSWORD_FILE + 1).read_to_end(&mut bytes))
        .map_err(read)?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE {
        return Err(SecretFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText {
        path: path.to_path_buf(),
    })?;
    let pw = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if pw.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    if pw.contains(['\n', '\r', '\0']) {
        return Err(SecretFileError::Control {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(pw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agora-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join(name);
        std::fs::write(&p, content).expect("write");
        p
    }

    #[test]
    fn one_trailing_newline_is_stripped() {
        for (name, content, pw) in [
            ("plain", &b"s3cret"[..], "s3cret"),
            ("lf", b"s3cret\n", "s3cret"),
            ("crlf", b"s3cret\r\n", "s3cret"),
            ("spaces", b" a b \n", " a b "),
        ] {
            let got = read_password_file(&file(name, content)).expect(name);
            assert_eq!(got.expose(), pw, "{name}");
        }
    }

    #[test]
    fn bad_files_are_named_and_their_content_never_shown() {
        let big = vec![b'x'; MAX_PASSWORD_FILE as usize + 1];
        for (name, content, says) in [
            ("empty", &b""[..], "is empty"),
            ("newline", b"\n", "is empty"),
            ("two-lines", b"s3cret\nmore\n", "line break"),
            ("two-newlines", b"s3cret\n\n", "line break"),
            ("cr", b"s3c\rret", "line break"),
            ("nul", b"s3c\0ret", "NUL"),
            ("latin1", b"s3c\xe9ret", "not UTF-8"),
            ("big", &big, "larger than 4096"),
        ] {
            let path = file(name, content);
            let e = read_password_file(&path).expect_err(name).to_string();
            assert!(e.contains(says), "{name}: {e}");
            assert!(e.contains(&path.display().to_string()), "{name}: {e}");
            assert!(!e.contains("s3c") && !e.contains("xxxx"), "{name}: {e}");
        }
        let missing = std::env::temp_dir().join("agora-no-such-password-file");
        let e = read_password_file(&missing)
            .expect_err("missing")
            .to_string();
        assert!(e.contains("cannot read") && e.contains("agora-no-such-password-file"));
    }

    #[test]
    fn a_secret_is_never_shown_nor_quoted() {
        assert_eq!(format!("{:?}", Secret::from("s3cret")), "***");
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            pw: Secret,
        }
        let t: T = toml::from_str("pw = \"s3cret\"").expect("a string");
        assert_eq!(t.pw.expose(), "s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
        for bad in ["pw = 12345678", "pw = 1234.5678", "pw = true"] {
            let e = toml::from_str::<T>(bad).expect_err(bad);
            assert!(!e.message().contains("1234"), "{bad}: {}", e.message());
            assert!(e.message().contains("a password in quotes"), "{bad}: {e}");
        }
    }
}
