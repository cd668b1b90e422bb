//! `agora cast`: capture, encode, archive and push, surviving the network.
//!
//! Map:
//! - [`preset`]: inputs (`-`, a file, `test`, `v4l2:`, FireWire DV), presets (theora, webm,
//!   opus, mp3) with overrides, and the ffmpeg command line built from them (pure).
//! - [`encoder`]: the ffmpeg child (and `dvgrab`): spawn, graceful stop, failures in plain words.
//! - [`archive`]: every byte of the stream to a file, by its own thread, synced regularly.
//! - [`hub`]: the never-waiting hand-off from the encoder to the targets.
//! - [`target`]: one task per server that pushes through [`agora_client::push`] (PUT, falling
//!   back to SOURCE), reconnects with capped backoff and resumes live at a sync point, and sets
//!   the title through [`agora_client::meta`] after each connect.
//! - [`slides`]: `--slides`: a second input watched for slide changes; each slide a lossless
//!   WebP on the stream's timeline, archived with an index and uploaded to every server; with
//!   `--slides-mount`, also a 1 fps video of the current slide pushed to a mount of its own.
//! - [`cast`]: one cast wired together, with the status line.
//!
//! Stream bytes are framed with [`agora_format::Demuxer`], the same sans-IO framer the server
//! uses, so a target that (re)connects starts with the stream headers and a sync point. The
//! wire protocol (URLs, TLS, the source handshake, titles) is [`agora_client`]'s.

pub mod archive;
pub mod cast;
pub mod encoder;
pub mod hub;
pub mod preset;
pub mod slides;
pub mod target;

pub use cast::{CastConfig, Outcome, StatusMode, run, write_log};

use std::path::PathBuf;

/// Why a cast could not start or had to stop. [`CastError::exit_code`] maps each to the
/// process exit status documented in `agora cast --help`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CastError {
    /// The options do not make sense together (exit 2).
    #[error("{0}")]
    Usage(String),
    /// ffmpeg is not on the PATH (exit 3).
    #[error(
        "ffmpeg is not installed (or not on PATH). Install it: `sudo apt-get install ffmpeg` (Debian, Ubuntu), `sudo dnf install ffmpeg` (Fedora), `brew install ffmpeg` (macOS)"
    )]
    FfmpegMissing,
    /// `--input dvgrab` without dvgrab installed (exit 3).
    #[error("dvgrab is not installed: `sudo apt-get install dvgrab`, or use --input iec61883")]
    DvgrabMissing,
    /// ffmpeg failed; the message says why in plain words (exit 3).
    #[error("the encoder failed: {0}")]
    Encoder(String),
    /// The archive could not be written (exit 4).
    #[error("archive {}: {why}", path.display())]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// What the file system said (in the message, not a `source`: said once).
        why: std::io::Error,
    },
    /// The input could not be read (exit 5).
    #[error("reading the input: {0}")]
    Input(std::io::Error),
    /// The encoded stream could not be framed (exit 5).
    #[error("the stream is broken: {0}")]
    Stream(String),
    /// An input file that cannot be read: missing, unreadable, or not a stream ffmpeg can
    /// read (exit 5).
    #[error("input file {}: {why}", path.display())]
    InputFile {
        /// The file.
        path: PathBuf,
        /// Why, in words (the system's or ffmpeg's).
        why: String,
    },
    /// Every server refused the cast's credentials or mount (401, 403) and was given up
    /// (exit 6); the servers, without their passwords.
    #[error(
        "every server refused the cast (wrong password, user or mount): {0}. Check the password (--password-file, AGORA_SOURCE_PASSWORD or the URL) against each server's configuration"
    )]
    Refused(String),
}

impl CastError {
    /// Process exit status: 2 usage, 3 encoder (ffmpeg missing or failed), 4 archive, 5 input,
    /// 6 every server refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            CastError::Usage(_) => 2,
            CastError::FfmpegMissing | CastError::DvgrabMissing | CastError::Encoder(_) => 3,
            CastError::Archive { .. } => 4,
            CastError::Input(_) | CastError::Stream(_) | CastError::InputFile { .. } => 5,
            CastError::Refused(_) => 6,
        }
    }
}
