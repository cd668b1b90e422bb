//! Credentials: HTTP Basic parsing, constant-time comparison, the random passwords generated
//! when none is configured (Agora has no fixed default password), and the admin page's token.

use base64::Engine;
use subtle::ConstantTimeEq;

/// User name and password from an `Authorization: Basic` header value.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Whether `given` (user, password) matches the expected pair. Both parts are always compared,
/// so a wrong user name takes as long as a wrong password.
pub(crate) fn credentials_match(given: &(String, String), user: &str, password: &str) -> bool {
    let u = given.0.as_bytes().ct_eq(user.as_bytes());
    let p = given.1.as_bytes().ct_eq(password.as_bytes());
    (u & p).into()
}

/// A random password of 20 characters from a 62-letter alphabet (about 119 bits).
pub fn random_password() -> String {
    random_letters(20)
}

/// `n` random letters and digits (a 62-letter alphabet, uniform).
fn random_letters(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        // If the OS has no randomness, there is no safe secret to make: stop the server.
        getrandom::fill(&mut buf).expect("the operating system's random source failed");
        for &b in &buf {
            // Rejection sampling keeps the letters uniform.
            if (b as usize) < 62 * 4 && out.len() < n {
                out.push(ALPHABET[b as usize % 62] as char);
            }
        }
    }
    out
}

/// The admin page's token: a secret made at start (32 letters and digits, about 190 bits) and
/// written into the admin page, which only the admin credentials open and no other site's
/// script can read. The page sends it with its actions (`X-Agora-Token`), so a request that
/// carries it comes from that page (see the cross-site rule in `control::admin`). A new one at
/// every start: a page older than the server is told to reload. Never logged: `Debug` shows
/// none of it, and it is compared in constant time.
pub(crate) struct Token(String);

impl Token {
    pub(crate) fn generate() -> Token {
        Token(random_letters(32))
    }

    /// Whether `given` is this token (constant time).
    pub(crate) fn matches(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.0.as_bytes()).into()
    }

    /// The token itself, for the admin page (letters and digits: safe in an HTML attribute).
    pub(crate) fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_round_trip() {
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("source:hack:me")
        );
        assert_eq!(parse_basic(&v), Some(("source".into(), "hack:me".into())));
        assert_eq!(parse_basic("Bearer xyz"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn comparisons() {
        let g = ("source".to_string(), "pw".to_string());
        assert!(credentials_match(&g, "source", "pw"));
        assert!(!credentials_match(&g, "admin", "pw"));
    }

    #[test]
    fn random_passwords_differ() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_password());
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn tokens_match_themselves_only_and_never_show() {
        let t = Token::generate();
        assert_eq!(t.reveal().len(), 32);
        assert!(t.reveal().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(t.matches(t.reveal()));
        assert!(!t.matches(""));
        assert!(!t.matches(&t.reveal()[..31]));
        assert!(!t.matches(Token::generate().reveal()));
        assert_eq!(format!("{t:?}"), "Token(..)");
    }
}
