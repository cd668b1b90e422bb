//! Credentials: HTTP Basic parsing, constant-time comparison, and the random passwords
//! generated when none is configured (Agora has no fixed default password).

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
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(20);
    let mut buf = [0u8; 64];
    while out.len() < 20 {
        // If the OS has no randomness, there is no safe password to make: stop the server.
        getrandom::fill(&mut buf).expect("the operating system's random source failed");
        for &b in &buf {
            // Rejection sampling keeps the letters uniform.
            if (b as usize) < 62 * 4 && out.len() < 20 {
                out.push(ALPHABET[b as usize % 62] as char);
            }
        }
    }
    out
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
}
