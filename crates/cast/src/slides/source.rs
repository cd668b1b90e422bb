//! Where slides come from (`--slides SRC`) and the ffmpeg command line that watches a video
//! source for slide changes. Pure: nothing here runs a process.

use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Frames per second the change detector looks at: enough to place a change within 0.2 s,
/// and little work on a 60 fps capture.
pub const ANALYSIS_FPS: u32 = 5;

/// A slide source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlidesSource {
    /// A Video4Linux2 device: an HDMI capture card (`v4l2:/dev/video1`).
    V4l2(PathBuf),
    /// An X11 screen (`x11grab:DISPLAY`, e.g. `x11grab::0.0` or `x11grab::0.0+1920,0`).
    X11(String),
    /// A folder that receives exported images (`dir:PATH`, or the path of an existing
    /// folder): each new image file is a slide, in name order.
    Folder(PathBuf),
    /// A video file read at real-time pace (rehearsals, tests).
    File(PathBuf),
    /// Any ffmpeg input, as its options (`ffmpeg:-f lavfi -i testsrc2`), split at spaces.
    Ffmpeg(Vec<String>),
}

impl FromStr for SlidesSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let empty = |what: &str| Err(format!("--slides {what}: nothing after the colon"));
        if let Some(dev) = s.strip_prefix("v4l2:") {
            return if dev.is_empty() {
                empty("v4l2:")
            } else {
                Ok(SlidesSource::V4l2(dev.into()))
            };
        }
        if let Some(display) = s.strip_prefix("x11grab:") {
            return if display.is_empty() {
                empty("x11grab:")
            } else {
                Ok(SlidesSource::X11(display.into()))
            };
        }
        if let Some(dir) = s.strip_prefix("dir:") {
            return if dir.is_empty() {
                empty("dir:")
            } else {
                Ok(SlidesSource::Folder(dir.into()))
            };
        }
        if let Some(args) = s.strip_prefix("ffmpeg:") {
            let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
            if !args.iter().any(|a| a == "-i") {
                return Err(format!(
                    "--slides {s}: an ffmpeg input needs its -i (e.g. ffmpeg:-f lavfi -i testsrc2)"
                ));
            }
            return Ok(SlidesSource::Ffmpeg(args));
        }
        if s.is_empty() {
            return Err("--slides: empty".into());
        }
        if Path::new(s).is_dir() {
            return Ok(SlidesSource::Folder(s.into()));
        }
        Ok(SlidesSource::File(s.into()))
    }
}

impl SlidesSource {
    /// The ffmpeg arguments that read this source (`None` for a folder: no ffmpeg).
    fn input_args(&self) -> Option<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        Some(match self {
            SlidesSource::V4l2(dev) => s(&["-f", "v4l2", "-i", &dev.to_string_lossy()]),
            SlidesSource::X11(display) => s(&[
                "-f",
                "x11grab",
                "-framerate",
                &ANALYSIS_FPS.to_string(),
                "-i",
                display,
            ]),
            SlidesSource::File(path) => s(&["-re", "-i", &path.to_string_lossy()]),
            SlidesSource::Ffmpeg(args) => args.clone(),
            SlidesSource::Folder(_) => return None,
        })
    }
}

/// Every this many analysed frames (one second) a frame is written even without a change: a
/// heartbeat. ffmpeg 5.1 hands an output frame over only when the next one comes (and its
/// PNG encoder, frame-threaded, a few more: it runs with one thread), so without heartbeats
/// a slide would wait in ffmpeg until the next change. Heartbeats are dropped by the cast;
/// they cost one PNG encode a second.
pub const HEARTBEAT_FRAMES: u32 = ANALYSIS_FPS;

/// The detector's ffmpeg command line: read the source, look at [`ANALYSIS_FPS`] frames a
/// second, report every analysed frame (`showinfo`: the detector's clock, see
/// [`crate::slides`]), keep the first frame, every frame whose scene-change score is above
/// `threshold` (0 to 1) and a heartbeat, report each kept frame's time and score (`metadata`),
/// and write it as a PNG to standard output (fast to encode: most frames written are never
/// published; the published ones are made WebP after). Log lines carry their level. `None`
/// for a folder.
pub fn detector_args(source: &SlidesSource, threshold: f64) -> Option<Vec<String>> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "level+info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(source.input_args()?);
    a.extend(
        [
            "-map".to_string(),
            "0:v:0".to_string(),
            "-vf".to_string(),
            format!(
                "fps={ANALYSIS_FPS},showinfo,select='eq(n,0)+gt(scene,{threshold})+not(mod(n,{HEARTBEAT_FRAMES}))',metadata=print:key=lavfi.scene_score"
            ),
            // One image per kept frame: no frame repeated to fill a constant rate.
            "-fps_mode".to_string(),
            "passthrough".to_string(),
            "-c:v".to_string(),
            "png".to_string(),
            "-threads".to_string(),
            "1".to_string(),
            "-f".to_string(),
            "image2pipe".to_string(),
            // Each image handed over whole at once, not when ffmpeg's buffer fills.
            "-flush_packets".to_string(),
            "1".to_string(),
            "pipe:1".to_string(),
        ],
    );
    Some(a)
}

/// What a line of the detector's stderr says.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectorLine {
    /// An analysed frame's time (`showinfo`, before the selection).
    Analysed(f64),
    /// A written frame's time (`metadata`, after the selection).
    Written(f64),
    /// The scene score of the written frame last named.
    Score(f64),
    /// Anything else.
    Other,
}

/// Reads one line of the detector's stderr: `[Parsed_showinfo_1 @ 0x..] [info] n: 3 pts: 15
/// pts_time:3 ...`, `[Parsed_metadata_3 @ 0x..] [info] frame:1 pts:15 pts_time:3`,
/// `[Parsed_metadata_3 @ 0x..] [info] lavfi.scene_score=0.302083`.
pub fn detector_line(line: &str) -> DetectorLine {
    let time = || -> Option<f64> {
        let rest = &line[line.find(" pts_time:")? + " pts_time:".len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    if line.starts_with("[Parsed_showinfo_") {
        return time().map_or(DetectorLine::Other, DetectorLine::Analysed);
    }
    if line.starts_with("[Parsed_metadata_") {
        if let Some(score) = line
            .split_once("lavfi.scene_score=")
            .and_then(|(_, v)| v.trim().parse().ok())
        {
            return DetectorLine::Score(score);
        }
        return time().map_or(DetectorLine::Other, DetectorLine::Written);
    }
    DetectorLine::Other
}

/// ffmpeg's arguments that make a lossless WebP of the PNG on standard input.
///
/// Why WebP: on a text slide at 1920x1080 (measured with ffmpeg 5.1), a lossless WebP is 24 KB
/// where the PNG is 63 KB, and 120 KB against 230 KB on a busy synthetic picture; it costs
/// about 0.1 s (text) to 1 s (photographic) of one core, once per published slide.
/// Compression level 1: level 4 (ffmpeg's default) saves under 2% more for twice the time.
/// `bgra`: the full colour resolution, no 4:2:0 chroma.
pub fn webp_args() -> Vec<String> {
    [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "png_pipe",
        "-i",
        "pipe:0",
        "-frames:v",
        "1",
        "-pix_fmt",
        "bgra",
        "-c:v",
        "libwebp",
        "-lossless",
        "1",
        "-compression_level",
        "1",
        "-f",
        "image2pipe",
        "pipe:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            "v4l2:/dev/video1".parse(),
            Ok(SlidesSource::V4l2("/dev/video1".into()))
        );
        assert_eq!(
            "x11grab::0.0+1920,0".parse(),
            Ok(SlidesSource::X11(":0.0+1920,0".into()))
        );
        assert_eq!(
            "dir:/tmp/export".parse(),
            Ok(SlidesSource::Folder("/tmp/export".into()))
        );
        assert_eq!(
            "/".parse::<SlidesSource>(),
            Ok(SlidesSource::Folder("/".into()))
        );
        assert_eq!(
            "talk.mkv".parse(),
            Ok(SlidesSource::File("talk.mkv".into()))
        );
        assert_eq!(
            "ffmpeg:-f lavfi  -i testsrc2".parse(),
            Ok(SlidesSource::Ffmpeg(
                ["-f", "lavfi", "-i", "testsrc2"].map(String::from).to_vec()
            ))
        );
        assert!("ffmpeg:-f lavfi".parse::<SlidesSource>().is_err());
        assert!("v4l2:".parse::<SlidesSource>().is_err());
    }

    #[test]
    fn the_detector_command_line_is_pinned() {
        let a = detector_args(&SlidesSource::V4l2("/dev/video1".into()), 0.004).expect("args");
        assert_eq!(
            a.join(" "),
            "-hide_banner -nostdin -nostats -loglevel level+info -f v4l2 -i /dev/video1 \
             -map 0:v:0 -vf fps=5,showinfo,select='eq(n,0)+gt(scene,0.004)+not(mod(n,5))',\
             metadata=print:key=lavfi.scene_score -fps_mode passthrough -c:v png -threads 1 \
             -f image2pipe -flush_packets 1 pipe:1"
        );
        assert_eq!(detector_args(&SlidesSource::Folder("d".into()), 0.1), None);
    }

    #[test]
    fn detector_lines_are_read() {
        use DetectorLine::*;
        assert_eq!(
            detector_line(
                "[Parsed_showinfo_1 @ 0x55d0c8f0a5c0] [info] n:   3 pts:     15 pts_time:3       duration:1"
            ),
            Analysed(3.0)
        );
        assert_eq!(
            detector_line("[Parsed_showinfo_1 @ 0x1] [info] color_range:tv"),
            Other
        );
        assert_eq!(
            detector_line("[Parsed_metadata_3 @ 0x1] [info] frame:1    pts:16      pts_time:3.2"),
            Written(3.2)
        );
        assert_eq!(
            detector_line("[Parsed_metadata_3 @ 0x1] [info] lavfi.scene_score=0.302083"),
            Score(0.302083)
        );
        assert_eq!(detector_line("[info] Output #0, image2pipe"), Other);
    }
}
