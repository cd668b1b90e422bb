//! Passwords and the command line: every user of the machine can read a process's arguments
//! (`ps`, `/proc/PID/cmdline`), so a password is better read from a file (`--*-password-file`,
//! what systemd credentials and Docker secrets give) or the environment. Given as an argument
//! anyway, it is warned about at start; and clap's error messages, which quote arguments, are
//! printed with every password of the command line replaced by `***`.

use std::path::Path;

use agora_client::server_url::password_text;
use agora_server::Secret;
use clap::ArgMatches;
use clap::parser::ValueSource;

/// The password in the file given to `flag`; the error names the flag and the file, never
/// the content.
pub(crate) fn read_file(flag: &str, path: &Path) -> Result<Secret, String> {
    agora_server::read_password_file(path).map_err(|e| format!("{flag}: {e}"))
}

/// The passwords written in `args`: the value of every flag whose name ends in `password`
/// (`--password X`, `--source-password=X`) and the password of every URL.
fn passwords_in(args: &[String]) -> Vec<&str> {
    let mut found = Vec::new();
    let mut next_is_password = false;
    for arg in args {
        if std::mem::take(&mut next_is_password) {
            found.push(arg.as_str());
            continue;
        }
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") && flag.ends_with("password") => {
                found.push(value)
            }
            _ if arg.starts_with("--") && arg.ends_with("password") => next_is_password = true,
            _ => {}
        }
        if let Some(pw) = password_text(arg) {
            found.push(pw);
        }
    }
    found.retain(|p| !p.is_empty());
    // Longest first: a password that holds another is replaced whole.
    found.sort_by_key(|p| std::cmp::Reverse(p.len()));
    found
}

/// `text` with every one of `passwords` replaced by `***`.
fn scrub(text: &str, passwords: &[&str]) -> String {
    passwords
        .iter()
        .fold(text.to_string(), |t, p| t.replace(p, "***"))
}

/// Exit as clap would with `e` (its message, its exit status), with the passwords of the
/// command line left out of the message: clap quotes arguments ("unexpected argument
/// 'http://source:pw@host/x' found", "to pass '-pw' as a value, use '--password=-pw'").
pub(crate) fn exit_on_clap_error(e: clap::Error) -> ! {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let passwords = passwords_in(&args);
    if passwords.is_empty() || !e.use_stderr() {
        e.exit()
    }
    // Plain text: the colours are lost, the passwords too.
    eprint!("{}", scrub(&e.render().to_string(), &passwords));
    std::process::exit(e.exit_code())
}

/// Warn about each password the command line of `matches` carries (a `--*password` flag, a URL
/// with a password), saying what to use instead.
pub(crate) fn warn_about_arguments(cmd: &clap::Command, matches: &ArgMatches) {
    let Some((name, m)) = matches.subcommand() else {
        return;
    };
    let Some(cmd) = cmd.find_subcommand(name) else {
        return;
    };
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if m.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = format!("--{}", arg.get_long().unwrap_or(id));
        if id.ends_with("password") {
            let env = arg
                .get_env()
                .map(|e| format!(" or {}", e.to_string_lossy()))
                .unwrap_or_default();
            tracing::warn!(
                "{flag} on the command line can be read by every user of this machine (ps): \
                 use {flag}-file FILE{env} instead"
            );
        } else if m
            .get_raw(id)
            .into_iter()
            .flatten()
            .any(|v| v.to_str().and_then(password_text).is_some())
        {
            tracing::warn!(
                "a password in a {flag} URL can be read by every user of this machine (ps): \
                 leave it out of the URL and use --password-file FILE or AGORA_SOURCE_PASSWORD"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_of_flags_and_urls_are_found_and_scrubbed() {
        let args: Vec<String> = [
            "agora",
            "cast",
            "--password",
            "-flag-pw",
            "--source-password=eq-pw",
            "--password-file",
            "/run/secrets/pw",
            "--server",
            "http://source:url-pw@h:bad/x",
            "http://:bare-pw@h/y",
            "--name",
            "talk",
        ]
        .map(String::from)
        .to_vec();
        let found = passwords_in(&args);
        assert_eq!(found.len(), 4, "{found:?}");
        for pw in ["-flag-pw", "eq-pw", "url-pw", "bare-pw"] {
            assert!(found.contains(&pw), "{pw}: {found:?}");
        }
        let text = "unexpected argument 'http://:bare-pw@h/y'; to pass '-flag-pw' use ...";
        let shown = scrub(text, &found);
        assert_eq!(
            shown,
            "unexpected argument 'http://:***@h/y'; to pass '***' use ..."
        );
    }
}
