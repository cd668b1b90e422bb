//! What to capture and how to encode it: inputs, presets, and the ffmpeg command line built
//! from them. Pure functions, unit-tested; nothing here runs a process.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::CastError;

/// Where the stream comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An already encoded stream on standard input, pushed as is (no ffmpeg).
    Stdin,
    /// A media file: pushed at real-time pace (`-re`, stream copy), or re-encoded when a
    /// preset is given.
    File(PathBuf),
    /// A generated test pattern with a tone.
    Test,
    /// A Video4Linux2 capture device, e.g. `/dev/video0`.
    V4l2(PathBuf),
    /// DV over FireWire through ffmpeg's `iec61883` input (`auto` or a GUID).
    Iec61883(String),
    /// DV over FireWire from a `dvgrab -f raw -` child piped into ffmpeg.
    Dvgrab,
}

impl FromStr for Input {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "-" => Input::Stdin,
            "test" => Input::Test,
            "dvgrab" => Input::Dvgrab,
            "iec61883" | "dv" => Input::Iec61883("auto".into()),
            _ => {
                if let Some(dev) = s.strip_prefix("v4l2:") {
                    Input::V4l2(dev.into())
                } else if let Some(guid) = s.strip_prefix("iec61883:") {
                    Input::Iec61883(guid.into())
                } else {
                    Input::File(s.into())
                }
            }
        })
    }
}

/// An audio capture device for live inputs: `alsa:default`, `pulse:default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDevice {
    /// ffmpeg input format: `alsa` or `pulse`.
    pub kind: String,
    /// The device name (`default`, `hw:1`...).
    pub device: String,
}

impl FromStr for AudioDevice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((kind @ ("alsa" | "pulse"), device)) if !device.is_empty() => Ok(AudioDevice {
                kind: kind.into(),
                device: device.into(),
            }),
            _ => Err(format!(
                "audio device `{s}`: expected alsa:DEVICE or pulse:DEVICE (e.g. alsa:default)"
            )),
        }
    }
}

/// The encodings people tune, named after what they produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetName {
    /// Ogg Theora + Vorbis, 320x240, video quality 6, audio quality 1 (about 250 kbit/s).
    Theora,
    /// WebM VP8 + Opus, 640x360: plays in current browsers.
    Webm,
    /// Ogg Opus, audio only.
    Opus,
    /// MP3, audio only.
    Mp3,
}

impl FromStr for PresetName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "theora" => Ok(PresetName::Theora),
            "webm" => Ok(PresetName::Webm),
            "opus" => Ok(PresetName::Opus),
            "mp3" => Ok(PresetName::Mp3),
            _ => Err(format!("preset `{s}`: expected theora, webm, opus or mp3")),
        }
    }
}

impl fmt::Display for PresetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PresetName::Theora => "theora",
            PresetName::Webm => "webm",
            PresetName::Opus => "opus",
            PresetName::Mp3 => "mp3",
        })
    }
}

/// A quality setting: a target bitrate or an encoder quality level.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    /// Bits per second, as ffmpeg writes them (`800k`, `1M`).
    Bitrate(String),
    /// The encoder's quality scale (Theora 0–10, Vorbis -1–10, VP8 CRF 4–63, LAME 0–9).
    Quality(f32),
}

/// A preset with its overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    /// The preset overridden.
    pub preset: PresetName,
    /// Video frame size; `None` for audio-only presets.
    pub size: Option<(u32, u32)>,
    /// The video bitrate or quality.
    pub video: Rate,
    /// The audio bitrate or quality.
    pub audio: Rate,
}

impl Encoding {
    /// The preset as it is, no override.
    pub fn new(preset: PresetName) -> Self {
        match preset {
            PresetName::Theora => Encoding {
                preset,
                size: Some((320, 240)),
                video: Rate::Quality(6.0),
                audio: Rate::Quality(1.0),
            },
            PresetName::Webm => Encoding {
                preset,
                size: Some((640, 360)),
                video: Rate::Bitrate("800k".into()),
                audio: Rate::Bitrate("96k".into()),
            },
            PresetName::Opus => Encoding {
                preset,
                size: None,
                video: Rate::Bitrate("0".into()),
                audio: Rate::Bitrate("96k".into()),
            },
            PresetName::Mp3 => Encoding {
                preset,
                size: None,
                video: Rate::Bitrate("0".into()),
                audio: Rate::Bitrate("128k".into()),
            },
        }
    }

    /// Whether the encoding has a video track.
    pub fn has_video(&self) -> bool {
        self.size.is_some()
    }

    /// Container muxer name for ffmpeg's `-f`.
    pub fn muxer(&self) -> &'static str {
        match self.preset {
            PresetName::Theora | PresetName::Opus => "ogg",
            PresetName::Webm => "webm",
            PresetName::Mp3 => "mp3",
        }
    }

    /// File extension of this encoding.
    pub fn extension(&self) -> &'static str {
        match self.preset {
            PresetName::Theora => "ogg",
            PresetName::Webm => "webm",
            PresetName::Opus => "opus",
            PresetName::Mp3 => "mp3",
        }
    }

    /// `WxH`, or `audio` for audio-only encodings (used in archive names).
    pub fn size_label(&self) -> String {
        match self.size {
            Some((w, h)) => format!("{w}x{h}"),
            None => "audio".into(),
        }
    }

    /// Checks that the overrides make sense for this preset.
    pub fn validate(&self) -> Result<(), CastError> {
        let bad = |what: String| Err(CastError::Usage(what));
        if let Some((w, h)) = self.size
            && (w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 || w > 7680 || h > 4320)
        {
            return bad(format!(
                "size {w}x{h}: width and height must be even and at most 7680x4320"
            ));
        }
        match (&self.preset, &self.audio) {
            (PresetName::Opus | PresetName::Webm, Rate::Quality(_)) => {
                return bad(format!(
                    "preset {}: Opus has no quality scale, use --audio-bitrate",
                    self.preset
                ));
            }
            (PresetName::Theora, Rate::Quality(q)) if !(-1.0..=10.0).contains(q) => {
                return bad(format!("Vorbis audio quality {q}: expected -1 to 10"));
            }
            (PresetName::Mp3, Rate::Quality(q)) if !(0.0..=9.0).contains(q) => {
                return bad(format!("MP3 audio quality {q}: expected 0 (best) to 9"));
            }
            _ => {}
        }
        match (&self.preset, &self.video) {
            (PresetName::Theora, Rate::Quality(q)) if !(0.0..=10.0).contains(q) => {
                bad(format!("Theora video quality {q}: expected 0 to 10"))
            }
            (PresetName::Webm, Rate::Quality(q)) if !(4.0..=63.0).contains(q) => bad(format!(
                "VP8 video quality (CRF) {q}: expected 4 (best) to 63"
            )),
            _ => Ok(()),
        }
    }

    /// Encoder options for one output (after its `-map`s).
    fn codec_args(&self, out: &mut Vec<String>) {
        let mut push = |args: &[&str]| out.extend(args.iter().map(|s| s.to_string()));
        if let Some((w, h)) = self.size {
            match self.preset {
                PresetName::Theora => push(&["-c:v", "libtheora"]),
                _ => push(&["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]),
            }
            match (&self.video, self.preset) {
                (Rate::Bitrate(b), _) => push(&["-b:v", b]),
                (Rate::Quality(q), PresetName::Theora) => push(&["-q:v", &q.to_string()]),
                // VP8 constrained quality: CRF with a ceiling.
                (Rate::Quality(q), _) => push(&["-crf", &q.to_string(), "-b:v", "4M"]),
            }
            // A keyframe every 2 s whatever the frame rate: where listeners can join.
            push(&[
                "-vf",
                &format!(
                    "scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:-1:-1,format=yuv420p"
                ),
                "-force_key_frames",
                "expr:gte(t,n_forced*2)",
            ]);
        }
        match self.preset {
            PresetName::Theora => push(&["-c:a", "libvorbis"]),
            PresetName::Webm | PresetName::Opus => push(&["-c:a", "libopus"]),
            PresetName::Mp3 => push(&["-c:a", "libmp3lame"]),
        }
        match &self.audio {
            Rate::Bitrate(b) => push(&["-b:a", b]),
            Rate::Quality(q) => push(&["-q:a", &q.to_string()]),
        }
        // Opus runs at 48 kHz; others take what comes.
        if matches!(self.preset, PresetName::Webm | PresetName::Opus) {
            push(&["-ar", "48000"]);
        }
        push(&["-f", self.muxer()]);
        if self.preset == PresetName::Webm {
            push(&["-live", "1"]);
        }
    }
}

/// Which input streams feed the outputs.
struct Maps {
    video: Option<&'static str>,
    audio: &'static str,
}

/// The full ffmpeg argument list: read `input`, write `live` to standard output, and
/// optionally a second, independent encode (`archive`) to a file.
///
/// `encode` is `None` for a file pushed as is (stream copy at real-time pace); its muxer is
/// then `copy_muxer`.
pub fn ffmpeg_args(
    input: &Input,
    audio: Option<&AudioDevice>,
    live: Option<&Encoding>,
    copy_muxer: &str,
    archive: Option<(&Encoding, &Path)>,
) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let wants_video =
        live.is_none_or(|e| e.has_video()) || archive.is_some_and(|(e, _)| e.has_video());
    let mut push = |args: &[&str]| a.extend(args.iter().map(|s| s.to_string()));
    let maps = match input {
        Input::Test => {
            let (w, h) = live
                .and_then(|e| e.size)
                .into_iter()
                .chain(archive.and_then(|(e, _)| e.size))
                .max()
                .unwrap_or((640, 360));
            let mut maps = Maps {
                video: None,
                audio: "0:a:0",
            };
            if wants_video {
                push(&[
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    &format!("testsrc2=size={w}x{h}:rate=25"),
                ]);
                maps = Maps {
                    video: Some("0:v:0"),
                    audio: "1:a:0",
                };
            }
            push(&[
                "-re",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:beep_factor=4:sample_rate=48000",
            ]);
            maps
        }
        Input::File(path) => {
            push(&["-re", "-i", &path.to_string_lossy()]);
            Maps {
                video: Some("0:v:0?"),
                audio: "0:a:0?",
            }
        }
        Input::V4l2(dev) => {
            push(&["-f", "v4l2", "-i", &dev.to_string_lossy()]);
            match audio {
                Some(ad) => {
                    push(&["-f", &ad.kind, "-i", &ad.device]);
                    Maps {
                        video: Some("0:v:0"),
                        audio: "1:a:0",
                    }
                }
                None => Maps {
                    video: Some("0:v:0"),
                    audio: "0:a:0?",
                },
            }
        }
        Input::Iec61883(guid) => {
            push(&["-f", "iec61883", "-i", guid]);
            Maps {
                video: Some("0:v:0"),
                audio: "0:a:0",
            }
        }
        Input::Dvgrab => {
            push(&["-f", "dv", "-i", "pipe:0"]);
            Maps {
                video: Some("0:v:0"),
                audio: "0:a:0",
            }
        }
        // No ffmpeg for stdin passthrough; callers do not ask.
        Input::Stdin => Maps {
            video: None,
            audio: "0:a:0",
        },
    };
    let output = |enc: Option<&Encoding>, target: &str, a: &mut Vec<String>| {
        let video = enc.is_none_or(|e| e.has_video());
        if let Some(v) = maps.video.filter(|_| video) {
            a.extend(["-map".to_string(), v.to_string()]);
        }
        a.extend(["-map".to_string(), maps.audio.to_string()]);
        match enc {
            Some(e) => e.codec_args(a),
            None => a.extend(["-c", "copy", "-f", copy_muxer].map(String::from)),
        }
        // Hand each packet over as soon as it is muxed: low latency, and a crash loses little.
        a.extend([
            "-flush_packets".to_string(),
            "1".to_string(),
            target.to_string(),
        ]);
    };
    output(live, "pipe:1", &mut a);
    if let Some((enc, path)) = archive {
        output(Some(enc), &path.to_string_lossy(), &mut a);
    }
    a
}

/// The muxer for a file pushed as is, from its extension.
pub fn muxer_for_extension(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "ogg" | "ogv" | "oga" | "opus" | "spx" => "ogg",
        "webm" | "mkv" | "mka" => "webm",
        "mp3" => "mp3",
        "aac" => "adts",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(v: &[String]) -> String {
        v.join(" ")
    }

    #[test]
    fn inputs_parse() {
        assert_eq!("-".parse(), Ok(Input::Stdin));
        assert_eq!("test".parse(), Ok(Input::Test));
        assert_eq!(
            "v4l2:/dev/video0".parse(),
            Ok(Input::V4l2("/dev/video0".into()))
        );
        assert_eq!("dv".parse(), Ok(Input::Iec61883("auto".into())));
        assert_eq!("talk.ogg".parse(), Ok(Input::File("talk.ogg".into())));
        assert!("alsa:default".parse::<AudioDevice>().is_ok());
        assert!("jack:x".parse::<AudioDevice>().is_err());
        assert!("bogus".parse::<PresetName>().is_err());
    }

    #[test]
    fn theora_preset_is_the_classic_pipeline() {
        let e = Encoding::new(PresetName::Theora);
        let a = joined(&ffmpeg_args(&Input::Test, None, Some(&e), "", None));
        for part in [
            "-re -f lavfi -i testsrc2=size=320x240:rate=25",
            "-map 0:v:0 -map 1:a:0 -c:v libtheora -q:v 6",
            "scale=320:240",
            "-c:a libvorbis -q:a 1 -f ogg -flush_packets 1 pipe:1",
        ] {
            assert!(a.contains(part), "{part} in {a}");
        }
    }

    #[test]
    fn audio_presets_map_no_video_and_archive_is_a_second_output() {
        let live = Encoding::new(PresetName::Opus);
        let mut arch = Encoding::new(PresetName::Webm);
        arch.size = Some((1280, 720));
        let a = joined(&ffmpeg_args(
            &Input::Test,
            None,
            Some(&live),
            "",
            Some((&arch, Path::new("/tmp/a.webm"))),
        ));
        assert!(a.contains("testsrc2=size=1280x720"), "{a}");
        assert!(
            a.contains("-map 1:a:0 -c:a libopus -b:a 96k -ar 48000 -f ogg -flush_packets 1 pipe:1"),
            "{a}"
        );
        assert!(
            a.ends_with("-f webm -live 1 -flush_packets 1 /tmp/a.webm"),
            "{a}"
        );
    }

    #[test]
    fn a_file_is_copied_at_real_time_pace() {
        let a = joined(&ffmpeg_args(
            &Input::File("t.ogg".into()),
            None,
            None,
            "ogg",
            None,
        ));
        assert!(
            a.ends_with(
                "-re -i t.ogg -map 0:v:0? -map 0:a:0? -c copy -f ogg -flush_packets 1 pipe:1"
            ),
            "{a}"
        );
        assert_eq!(muxer_for_extension(Path::new("x.OGV")), Some("ogg"));
        assert_eq!(muxer_for_extension(Path::new("x.txt")), None);
    }

    #[test]
    fn captures_read_their_devices() {
        let e = Encoding::new(PresetName::Webm);
        let cam = Input::V4l2("/dev/video0".into());
        let mic: AudioDevice = "alsa:default".parse().expect("alsa");
        let a = joined(&ffmpeg_args(&cam, Some(&mic), Some(&e), "", None));
        assert!(
            a.contains(
                "-f v4l2 -i /dev/video0 -f alsa -i default -map 0:v:0 -map 1:a:0 -c:v libvpx"
            ),
            "{a}"
        );
        let a = joined(&ffmpeg_args(&Input::Dvgrab, None, Some(&e), "", None));
        assert!(a.contains("-f dv -i pipe:0 -map 0:v:0 -map 0:a:0"), "{a}");
        let a = joined(&ffmpeg_args(
            &Input::Iec61883("auto".into()),
            None,
            Some(&e),
            "",
            None,
        ));
        assert!(a.contains("-f iec61883 -i auto"), "{a}");
    }

    #[test]
    fn overrides_are_checked() {
        let mut e = Encoding::new(PresetName::Webm);
        e.audio = Rate::Quality(3.0);
        assert!(e.validate().is_err());
        let mut e = Encoding::new(PresetName::Theora);
        e.size = Some((321, 240));
        assert!(e.validate().is_err());
        e.size = Some((1280, 720));
        e.video = Rate::Quality(11.0);
        assert!(e.validate().is_err());
        e.video = Rate::Bitrate("1M".into());
        assert!(e.validate().is_ok());
    }
}
