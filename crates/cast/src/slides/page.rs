//! The archive's player page: `ARCHIVE_DIR/<name>_<stamp>.html`, one static file beside the
//! recording and its slides folder, that plays the recording with its slides in step.
//!
//! ```text
//! ARCHIVE_DIR/talk_2026-11-24T09-05-03.html             this page
//! ARCHIVE_DIR/talk_2026-11-24T09-05-03_640x360.webm     the recording it plays
//! ARCHIVE_DIR/talk_2026-11-24T09-05-03_slides/index.tsv its slides
//! ```
//!
//! The page works from `file://` with no network: its CSS and script are inline, and the
//! index's rows are in the page as JSON (a `file://` page may not read a neighbouring file);
//! the recording and the images are loaded by relative address. It shows, at playback time
//! `t`, the last slide whose time is at most `t`.
//!
//! **Invariant:** the page is written to a temporary name and renamed, so a reader never sees
//! half a page; it is rewritten after each slide and once more at the end of the cast, from
//! the index on disk (which names only complete images, see [`super::store`]).

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use super::store::INDEX;

/// One line of the index: the slide's time in the recording's clock, and its file name.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Seconds in the recording's own clock.
    pub at: f64,
    /// The image's file name inside the slides folder.
    pub file: String,
}

/// The rows of an index's text (the header and malformed lines skipped), in time order.
pub fn parse_index(text: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (t, f) = l.split_once('\t')?;
            let at: f64 = t.trim().parse().ok()?;
            (at.is_finite() && !f.is_empty()).then(|| Row {
                at,
                file: f.to_string(),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.at.total_cmp(&b.at));
    rows
}

/// Writes `page` for the recording `media` and the slides folder `slides` (all in one folder),
/// from the index as it is on disk now.
pub fn write(page: &Path, media: &Path, slides: &Path) -> std::io::Result<()> {
    let index = match std::fs::read_to_string(slides.join(INDEX)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let html = render(
        &name(media),
        is_audio(media),
        &name(slides),
        &parse_index(&index),
    );
    let tmp = page.with_file_name(format!(".{}.part", name(page)));
    let mut f = File::create(&tmp)?;
    f.write_all(html.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, page)
}

/// Audio-only recordings: an archive named `…_audio.<ext>`, or an audio-only format.
pub fn is_audio(media: &Path) -> bool {
    let stem = media
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = media
        .extension()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    stem.ends_with("_audio") || matches!(ext.as_str(), "mp3" | "aac" | "opus" | "oga" | "m4a")
}

/// The page's HTML.
pub fn render(media: &str, audio: bool, slides: &str, rows: &[Row]) -> String {
    let mut data = String::from("{\"media\":");
    json_str(&mut data, media);
    data.push_str(",\"audio\":");
    data.push_str(if audio { "true" } else { "false" });
    data.push_str(",\"dir\":");
    json_str(&mut data, slides);
    data.push_str(",\"slides\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&format!("{{\"at\":{:.3},\"file\":", r.at));
        json_str(&mut data, &r.file);
        data.push('}');
    }
    data.push_str("]}");
    let title = html_text(media);
    PAGE.replace("{{TITLE}}", &title).replace("{{DATA}}", &data)
}

/// A JSON string literal, safe inside a `<script>` element (no `<`, `>` or `&` as such).
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn html_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}} with its slides</title>
<style>
  :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
  body { margin: 0; padding: 1rem; }
  h1 { font-size: 1.1rem; margin: 0 0 .75rem; overflow-wrap: anywhere; }
  main { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
  #media-box { flex: 1 1 24rem; min-width: 16rem; }
  #media-box video, #media-box audio { width: 100%; }
  #slides-box { flex: 2 1 32rem; min-width: 16rem; }
  #slide { display: block; width: 100%; height: auto; background: #8884; }
  #slide[hidden] { display: none; }
  .bar { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin-top: .5rem; }
  button { font: inherit; padding: .3rem .8rem; }
  #none { padding: 2rem; text-align: center; background: #8882; }
</style>
</head>
<body>
<h1>{{TITLE}}</h1>
<main>
  <div id="media-box"></div>
  <section id="slides-box" aria-label="Slides">
    <img id="slide" alt="" hidden>
    <p id="none" hidden>This recording has no slides.</p>
    <div class="bar">
      <button type="button" id="prev" aria-label="Previous slide">&#9664; Previous</button>
      <button type="button" id="next" aria-label="Next slide">Next &#9654;</button>
      <label><input type="checkbox" id="follow" checked> Follow playback</label>
      <span id="where" aria-live="polite"></span>
    </div>
  </section>
</main>
<script id="data" type="application/json">{{DATA}}</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const slides = data.slides;
const media = document.createElement(data.audio ? "audio" : "video");
media.id = "player";
media.controls = true;
media.preload = "auto";
media.setAttribute("aria-label", "Recording");
media.src = encodeURIComponent(data.media);
document.getElementById("media-box").appendChild(media);
const img = document.getElementById("slide");
const where = document.getElementById("where");
const follow = document.getElementById("follow");
const prev = document.getElementById("prev");
const next = document.getElementById("next");
let shown = -1;

function clock(t) {
  const s = Math.floor(t), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  const ss = String(s % 60).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + ss : m + ":" + ss;
}

// The last slide whose time is at most t (-1 before the first); half a millisecond of
// tolerance for a seek that lands a hair before the time asked for.
function slideAt(t) {
  let i = -1;
  for (let k = 0; k < slides.length; k++) {
    if (slides[k].at <= t + 0.0005) i = k; else break;
  }
  return i;
}

function show(i) {
  shown = i;
  if (i < 0) {
    img.hidden = true;
    img.removeAttribute("src");
    img.removeAttribute("data-file");
    where.textContent = slides.length ? "Before the first slide" : "";
  } else {
    const s = slides[i];
    img.src = encodeURIComponent(data.dir) + "/" + encodeURIComponent(s.file);
    img.dataset.file = s.file;
    img.alt = "Slide " + (i + 1) + " of " + slides.length + ", from " + clock(s.at);
    img.hidden = false;
    where.textContent = "Slide " + (i + 1) + " of " + slides.length + " (" + clock(s.at) + ")";
  }
  prev.disabled = i <= 0;
  next.disabled = i >= slides.length - 1;
}

// A live recording (WebM or Ogg as streamed) does not say how long it is, and without a
// length the seek bar cannot be used: a seek to the end makes the browser find it, then
// playback goes back to the start.
let measuring = false;
media.addEventListener("loadedmetadata", () => {
  if (media.duration === Infinity && media.currentTime === 0) {
    measuring = true;
    media.currentTime = 1e9;
  }
});
media.addEventListener("seeked", () => {
  if (measuring) {
    measuring = false;
    media.currentTime = 0;
  }
});

function sync() {
  if (follow.checked && !measuring) {
    const i = slideAt(media.currentTime);
    if (i !== shown) show(i);
  }
}

// Previous and next step the slides; following playback, the recording goes to that slide.
function step(d) {
  const i = Math.min(Math.max(shown + d, 0), slides.length - 1);
  if (i < 0) return;
  show(i);
  if (follow.checked) media.currentTime = slides[i].at;
}

prev.addEventListener("click", () => step(-1));
next.addEventListener("click", () => step(1));
follow.addEventListener("change", sync);
for (const ev of ["timeupdate", "seeking", "seeked"]) {
  media.addEventListener(ev, sync);
}
document.getElementById("none").hidden = slides.length > 0;
show(slideAt(0));
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rows_and_the_data_in_the_page() {
        let rows = parse_index("time\tfile\n12.500\t0001.webp\n0.000\t0000.webp\nbad\n");
        assert_eq!(
            rows.iter().map(|r| r.file.as_str()).collect::<Vec<_>>(),
            ["0000.webp", "0001.webp"]
        );
        let html = render("a</script>.webm", false, "x_slides", &rows);
        assert!(html.contains(
            r#"{"media":"a\u003c/script\u003e.webm","audio":false,"dir":"x_slides","slides":[{"at":0.000,"file":"0000.webp"},{"at":12.500,"file":"0001.webp"}]}"#
        ));
        assert!(html.contains("<title>a&lt;/script&gt;.webm with its slides</title>"));
        assert!(is_audio(Path::new("/a/t_2026_audio.opus")));
        assert!(is_audio(Path::new("/a/t.mp3")));
        assert!(!is_audio(Path::new("/a/t_2026_640x360.webm")));
    }
}
