//! The ffmpeg child: spawned with the arguments [`preset`](crate::preset) built, supervised,
//! stopped gracefully, and its failures told in plain words.
//!
//! ffmpeg runs with `-loglevel error`: whatever it prints is a problem. The last lines are kept
//! to explain an exit; every line is also logged as it comes.

use std::collections::VecDeque;
use std::os::unix::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, ChildStdout, Command};

use crate::CastError;
use crate::preset::Input;

const STDERR_LINES: usize = 20;

/// A running encoder.
///
/// Dropping it kills ffmpeg (and dvgrab).
#[derive(Debug)]
pub struct Encoder {
    child: Child,
    /// `dvgrab` feeding ffmpeg's standard input, for `--input dvgrab`.
    feeder: Option<std::process::Child>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    input: Input,
    interrupted: bool,
}

impl Encoder {
    /// Spawns ffmpeg (and dvgrab for that input). Returns the encoder and its output.
    pub fn spawn(input: &Input, args: &[String]) -> Result<(Encoder, ChildStdout), CastError> {
        let mut feeder = None;
        let stdin = if *input == Input::Dvgrab {
            // A std child: its stdout becomes ffmpeg's stdin directly, no copy through agora.
            let mut dv = std::process::Command::new("dvgrab")
                .args(["-f", "raw", "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => CastError::DvgrabMissing,
                    _ => CastError::Encoder(format!("cannot start dvgrab: {e}")),
                })?;
            let out = dv
                .stdout
                .take()
                .ok_or_else(|| CastError::Encoder("dvgrab has no output".into()))?;
            feeder = Some(dv);
            Stdio::from(out)
        } else {
            Stdio::null()
        };
        tracing::debug!(args = %args.join(" "), "starting ffmpeg");
        let mut child = Command::new("ffmpeg")
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches agora only, which then
            // stops ffmpeg once, cleanly (a second signal makes ffmpeg drop its trailers).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => CastError::FfmpegMissing,
                _ => CastError::Encoder(format!("cannot start ffmpeg: {e}")),
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| CastError::Encoder("ffmpeg has no output".into()))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = stderr.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!("ffmpeg: {line}");
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        Ok((
            Encoder {
                child,
                feeder,
                stderr,
                input: input.clone(),
                interrupted: false,
            },
            stdout,
        ))
    }

    /// Asks ffmpeg to finish: SIGINT, on which it writes its trailers and exits. Once.
    pub fn interrupt(&mut self) {
        if self.interrupted {
            return;
        }
        self.interrupted = true;
        if let Some(id) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let pid = nix::unistd::Pid::from_raw(id);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        }
    }

    /// Interrupts ffmpeg (if not done yet) and waits up to `grace` for it to exit.
    pub async fn stop(&mut self, grace: Duration) -> Result<(), CastError> {
        self.interrupt();
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "ffmpeg did not stop within {} s; killing it",
                grace.as_secs()
            );
            let _ = self.child.kill().await;
        }
        self.stop_feeder();
        Ok(())
    }

    fn stop_feeder(&mut self) {
        if let Some(mut f) = self.feeder.take() {
            let _ = f.kill();
            let _ = f.wait();
        }
    }

    /// Waits for ffmpeg to exit; an error explains a failure in plain words.
    pub async fn wait(&mut self) -> Result<(), CastError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| CastError::Encoder(format!("waiting for ffmpeg: {e}")))?;
        self.stop_feeder();
        if status.success() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        Err(failure(&self.input, status, &lines))
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        self.stop_feeder();
    }
}

/// What ffmpeg's demuxers say when an input file is not a stream they can read (ffmpeg's own
/// report of a file it could not open, `<file>: <reason>`, is recognised by the file's name).
const UNREADABLE_INPUT: &[&str] = &[
    "Invalid data found",
    "Header missing",
    "EBML header parsing failed",
    "could not find codec parameters",
    "does not contain any stream",
];

/// A failure of ffmpeg as the cast's error: an input file it could not read is the input's
/// fault ([`CastError::InputFile`], exit 5, as a missing file found before ffmpeg starts),
/// anything else the encoder's ([`CastError::Encoder`], in the words of [`explain`]).
pub fn failure(input: &Input, status: ExitStatus, stderr: &[String]) -> CastError {
    use std::os::unix::process::ExitStatusExt;
    let Input::File(path) = input else {
        return CastError::Encoder(explain(input, status, stderr));
    };
    if status.signal().is_some() || stderr.iter().any(|l| l.contains("Unknown encoder")) {
        return CastError::Encoder(explain(input, status, stderr));
    }
    // `talk.ogg: Invalid data found when processing input`: ffmpeg could not open it. The
    // file is named once, by us.
    let name = format!("{}: ", path.display());
    let opened = stderr.iter().find_map(|l| l.strip_prefix(&name));
    // `[mp3float @ 0x...] Header missing`: a demuxer's word, without its tag.
    let demuxer = || {
        UNREADABLE_INPUT
            .iter()
            .find_map(|m| stderr.iter().find(|l| l.contains(m)))
            .map(|l| {
                l.strip_prefix('[')
                    .and_then(|l| l.split_once("] "))
                    .map_or(l.as_str(), |(_, rest)| rest)
            })
    };
    match opened.or_else(demuxer) {
        Some(why) => CastError::InputFile {
            path: path.clone(),
            why: format!("ffmpeg cannot read it ({why})"),
        },
        None => CastError::Encoder(explain(input, status, stderr)),
    }
}

/// A failure of ffmpeg, in words a user can act on.
pub fn explain(input: &Input, status: ExitStatus, stderr: &[String]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let all = stderr.join("\n");
    let has = |s: &str| all.contains(s);
    let last = stderr.last().map(String::as_str).unwrap_or("no message");
    let device = match input {
        Input::V4l2(d) => Some(d.display().to_string()),
        Input::Iec61883(g) => Some(format!("FireWire DV ({g})")),
        _ => None,
    };
    if let Some(sig) = status.signal() {
        return format!("ffmpeg was killed by signal {sig} ({last})");
    }
    if let Some(dev) = &device {
        if has("No such file or directory") || has("No such device") {
            return format!(
                "capture device {dev} not found: is it plugged in? (`v4l2-ctl --list-devices` lists video devices)"
            );
        }
        if has("Device or resource busy") {
            return format!("capture device {dev} is busy: another program is using it");
        }
        if has("Permission denied") {
            return format!(
                "no permission to open {dev}: add your user to the `video` (or `audio`) group"
            );
        }
    }
    if let Input::File(p) = input
        && has("No such file or directory")
    {
        return format!("input file {} not found", p.display());
    }
    if has("Unknown encoder") || has("Encoder not found") {
        return format!(
            "this ffmpeg lacks an encoder the preset needs ({last}); install a full build (Debian/Ubuntu: apt-get install ffmpeg)"
        );
    }
    if has("Unknown input format") {
        return format!(
            "this ffmpeg cannot capture from that kind of device ({last}); it was built without that input"
        );
    }
    if has("Invalid data found") {
        return format!("ffmpeg cannot read the input: {last}");
    }
    match status.code() {
        Some(code) => format!("ffmpeg exited with status {code}: {last}"),
        None => format!("ffmpeg failed: {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn failures_in_plain_words() {
        let v4l2 = Input::V4l2("/dev/video9".into());
        let e = explain(
            &v4l2,
            ExitStatus::from_raw(1 << 8),
            &["/dev/video9: No such file or directory".into()],
        );
        assert!(e.starts_with("capture device /dev/video9 not found"), "{e}");
        let e = explain(&Input::Test, ExitStatus::from_raw(9), &[]);
        assert!(e.contains("killed by signal 9"), "{e}");
        let e = explain(
            &Input::Test,
            ExitStatus::from_raw(1 << 8),
            &["Unknown encoder 'libvpx'".into()],
        );
        assert!(e.contains("lacks an encoder"), "{e}");
        let e = explain(&Input::Test, ExitStatus::from_raw(3 << 8), &["boom".into()]);
        assert_eq!(e, "ffmpeg exited with status 3: boom");
    }

    /// An input file ffmpeg cannot read is the input's failure (exit 5), named once; an
    /// encoder missing for a file's re-encode stays the encoder's (exit 3).
    #[test]
    fn an_unreadable_input_file_is_the_inputs_failure() {
        let file = Input::File("talk.ogg".into());
        let e = failure(
            &file,
            ExitStatus::from_raw(1 << 8),
            &["talk.ogg: Invalid data found when processing input".into()],
        );
        assert_eq!(e.exit_code(), 5);
        assert_eq!(
            e.to_string(),
            "input file talk.ogg: ffmpeg cannot read it (Invalid data found when processing input)"
        );
        let e = failure(
            &file,
            ExitStatus::from_raw(1 << 8),
            &["Unknown encoder 'libvpx'".into()],
        );
        assert_eq!(e.exit_code(), 3, "{e}");
        let e = failure(
            &file,
            ExitStatus::from_raw(1 << 8),
            &[
                "[mp3float @ 0x5611b4635a00] Header missing".into(),
                "Error initializing output stream 0:0 --".into(),
            ],
        );
        assert_eq!(
            e.to_string(),
            "input file talk.ogg: ffmpeg cannot read it (Header missing)"
        );
        let e = failure(
            &Input::Test,
            ExitStatus::from_raw(1 << 8),
            &["Invalid data found when processing input".into()],
        );
        assert_eq!(e.exit_code(), 3, "{e}");
    }
}
