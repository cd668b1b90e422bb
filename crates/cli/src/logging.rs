//! Where the log goes and what a line looks like: standard error, with a timestamp (and
//! colours on a terminal); or, when systemd made standard error the journal, lines the
//! journal can take as they are.
//!
//! The journal stamps every line it receives and shows it with its own time, so a timestamp of
//! ours would be printed twice (`journalctl` lines would read `Nov 20 10:00:00 host agora[42]:
//! 2026-11-20T10:00:00.123456Z  INFO ...`). Instead each line starts with its syslog priority,
//! `<3>` to `<7>`, which the journal takes off the line and keeps as the entry's priority
//! (`journalctl -p warning -u agora` then finds the warnings).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Install the global subscriber: `RUST_LOG` (default `info`), written to standard error.
pub(crate) fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogLine::default);
    if stderr_is_journal() {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false);
        builder
            .with_ansi(false)
            .event_format(JournalFormat(format))
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// One log event's text, written to standard error whole when the event is done: through
/// [`agora_cast::write_log`], above `agora cast`'s status line when one is on the terminal (a
/// plain write otherwise).
#[derive(Default)]
struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = agora_cast::write_log(&self.0);
        }
    }
}

/// Whether standard error is the journal's stream: systemd then sets `JOURNAL_STREAM` to the
/// device and inode numbers of that stream (`DEV:INODE`, decimal). The variable alone is not
/// enough: a child of a service inherits it with its standard error sent elsewhere (a file, a
/// pipe, a terminal), and there lines need their timestamps.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    stderr_identity() == Some((dev, ino))
}

/// `DEV:INODE` as systemd writes it.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The device and inode numbers of what standard error is (`fstat` on a copy of the
/// descriptor; a socket has them too).
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The syslog priority of a level, as the journal reads it from a line's `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The inner format (the usual one, without time or colours) behind a `<N>` priority prefix.
struct JournalFormat<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_journal_stream("8:"), None);
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(
            [
                Level::ERROR,
                Level::WARN,
                Level::INFO,
                Level::DEBUG,
                Level::TRACE
            ]
            .map(priority),
            [3, 4, 6, 7, 7]
        );
    }
}
