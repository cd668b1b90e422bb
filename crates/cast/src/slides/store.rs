//! The slides' archive: a folder beside the stream's archive file with every slide image and
//! an index a script can read.
//!
//! ```text
//! ARCHIVE_DIR/talk_2026-11-24T09-05-03_640x360.webm     the stream
//! ARCHIVE_DIR/talk_2026-11-24T09-05-03_slides/
//!     index.tsv      time<TAB>file, one line per slide, in order
//!     0000.webp      the slide at 0.000 s
//!     0001.webp ...
//! ```
//!
//! `time` is seconds on the stream's timeline, which is the archive file's own clock (the
//! archive holds the stream from its first byte, and the stream starts at 0). A player shows,
//! at playback time `t`, the last slide whose time is at most `t`.
//!
//! **Invariant:** an image is whole on disk (written to a temporary name, then renamed) before
//! its line is appended to the index, and each line is one `write`: an index read at any
//! moment, even after a crash, names only complete images.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::CastError;

use super::image::Slide;

/// The index's file name.
pub const INDEX: &str = "index.tsv";

/// The slides folder of a cast.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    index: File,
}

impl Store {
    /// Creates `dir` and its index (an existing index is appended to).
    pub fn create(dir: PathBuf) -> Result<Store, CastError> {
        let fail = |why| CastError::Archive {
            path: dir.clone(),
            why,
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let path = dir.join(INDEX);
        let fresh = !path.exists();
        let mut index = File::options()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(fail)?;
        if fresh {
            index.write_all(b"time\tfile\n").map_err(fail)?;
        }
        Ok(Store { dir, index })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the slide's image and its index line; returns the image's path.
    pub fn save(&mut self, slide: &Slide) -> std::io::Result<PathBuf> {
        let name = format!("{:04}.{}", slide.index, slide.kind.extension());
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.part"));
        let mut f = File::create(&tmp)?;
        f.write_all(&slide.image)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        self.index
            .write_all(format!("{:.3}\t{name}\n", slide.at).as_bytes())?;
        self.index.sync_data()?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slides::image::ImageKind;
    use bytes::Bytes;

    #[test]
    fn images_then_their_lines() {
        let dir = std::env::temp_dir().join(format!("agora-slides-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::create(dir.clone()).expect("create");
        for (i, at) in [0.0, 12.3456].into_iter().enumerate() {
            let slide = Slide {
                index: i as u64,
                at,
                key: format!("k{i}"),
                kind: ImageKind::Webp,
                image: Bytes::from_static(b"RIFF"),
                archived: None,
            };
            let p = s.save(&slide).expect("save");
            assert_eq!(std::fs::read(p).expect("image"), b"RIFF");
        }
        assert_eq!(
            std::fs::read_to_string(dir.join(INDEX)).expect("index"),
            "time\tfile\n0.000\t0000.webp\n12.346\t0001.webp\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
