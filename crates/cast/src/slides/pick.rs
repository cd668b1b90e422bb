//! Which scene changes become slides: the policy, pure (times are seconds on the slide
//! capture's own clock, passed in).
//!
//! ffmpeg marks *candidates*: frames whose scene-change score is above the threshold (and the
//! first frame). One click to the next slide often gives two or three candidates (a
//! transition, the frame after the change); a video playing on a slide gives a stream of them.
//! The rule:
//!
//! - **The last frame of a burst wins.** A new candidate replaces the one waiting.
//! - **Published once the picture settles:** when no newer candidate came for [`SETTLE`]
//!   (a click: the slide goes out about half a second after it appeared, with the time it
//!   appeared).
//! - **At most one slide per `min_interval`**, counted between publications; and a burst that
//!   never settles (a video) publishes its latest frame once `min_interval` has passed since
//!   the burst began, so viewers see it move at that pace and no faster.
//!
//! Each slide keeps the time of its own frame, so a slide that waited is still placed where
//! it appeared on the video's timeline.

/// How long the picture must stay still before its latest candidate is published.
pub const SETTLE: f64 = 0.5;

/// A frame that may become a slide.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<T> {
    /// Seconds on the capture's clock.
    pub pts: f64,
    /// What goes with it (the image).
    pub item: T,
}

/// The waiting candidate and the times the rule needs.
#[derive(Debug)]
pub struct Picker<T> {
    min_interval: f64,
    held: Option<Candidate<T>>,
    /// When the burst the held candidate ends began.
    burst_began: f64,
    last_published: Option<f64>,
}

impl<T> Picker<T> {
    /// A picker publishing at most one slide per `min_interval` seconds.
    pub fn new(min_interval: f64) -> Self {
        Picker {
            min_interval: min_interval.max(0.0),
            held: None,
            burst_began: 0.0,
            last_published: None,
        }
    }

    /// A new candidate: it replaces the waiting one.
    pub fn offer(&mut self, c: Candidate<T>) {
        if self.held.is_none() {
            self.burst_began = c.pts;
        }
        self.held = Some(c);
    }

    /// When the waiting candidate is due (capture clock), if one waits.
    pub fn due_at(&self) -> Option<f64> {
        let held = self.held.as_ref()?;
        let ready = (held.pts + SETTLE).min(self.burst_began + self.min_interval);
        Some(match self.last_published {
            Some(last) => ready.max(last + self.min_interval),
            None => ready,
        })
    }

    /// The candidate to publish now (`now` on the capture clock), if one is due.
    pub fn poll(&mut self, now: f64) -> Option<Candidate<T>> {
        if self.due_at()? > now {
            return None;
        }
        self.last_published = Some(now);
        self.held.take()
    }

    /// The end of the capture: the waiting candidate, if any, whatever the time.
    pub fn finish(&mut self) -> Option<Candidate<T>> {
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs candidates (their pts) through a picker polled every 0.1 s; the published pts.
    fn run(min_interval: f64, candidates: &[f64], end: f64) -> Vec<f64> {
        let mut p = Picker::new(min_interval);
        let mut out = Vec::new();
        let mut next = candidates.iter().peekable();
        let mut now = 0.0;
        while now <= end {
            while let Some(&&c) = next.peek() {
                if c > now + 1e-9 {
                    break;
                }
                p.offer(Candidate { pts: c, item: () });
                next.next();
            }
            if let Some(c) = p.poll(now) {
                out.push(c.pts);
            }
            now = ((now + 0.1) * 10.0f64).round() / 10.0;
        }
        out.extend(p.finish().map(|c| c.pts));
        out
    }

    #[test]
    fn a_click_is_one_slide_with_the_time_of_its_last_frame() {
        // The first frame, then a change seen on two frames in a row.
        assert_eq!(run(2.0, &[0.0, 3.0, 3.2], 6.0), [0.0, 3.2]);
    }

    #[test]
    fn a_video_on_a_slide_gives_one_slide_per_interval_and_its_end() {
        let motion: Vec<f64> = (0..30).map(|i| 6.0 + f64::from(i) * 0.2).collect();
        let mut all = vec![0.0, 3.0];
        all.extend(&motion);
        all.push(12.0);
        let got = run(2.0, &all, 15.0);
        let during: Vec<f64> = got
            .iter()
            .copied()
            .filter(|t| (5.9..11.9).contains(t))
            .collect();
        assert!(during.len() <= 3, "{got:?}");
        assert_eq!(&got[..2], &[0.0, 3.0]);
        assert_eq!(*got.last().expect("slides"), 12.0, "{got:?}");
        // Publications are at least the interval apart: so are the candidates they took, at
        // worst one polling step early.
        for w in got.windows(2).skip(1) {
            assert!(w[1] - w[0] >= 0.2, "{got:?}");
        }
    }

    #[test]
    fn the_last_candidate_waits_for_the_end() {
        assert_eq!(run(2.0, &[0.0, 1.0], 1.2), [0.0, 1.0]);
    }
}
