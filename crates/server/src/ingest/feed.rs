//! The one path every stream takes into a mount, whoever brings it (a source client's
//! connection, a relay's pull): bytes in, counted, framed by the demuxer, published to the
//! mount, with in-band Ogg titles put in when the mount asks for them.
//!
//! What a source sends decides how often the lines here come (a new Ogg chain every few
//! milliseconds, a bad page after every good one), so each is limited per mount
//! ([`Limiter`]), and titles from the stream are shown escaped.

use std::sync::atomic::Ordering;
use std::time::Instant;

use agora_format::{Demuxer, Event, Format, clock::StreamClock, ogg_title::Retitler};

use crate::logging::{About, Kind, Limiter, shown};
use crate::stream::ending::SourceEnd;
use crate::stream::mount::Mount;

/// A stream being framed into one mount.
#[derive(Debug)]
pub(crate) struct Ingest<'a> {
    mount: &'a Mount,
    logs: &'a Limiter,
    demux: Demuxer,
    /// `ogg-title-in-stream`: titles set by the admin go into the Ogg stream.
    titles: Option<Retitler>,
    reported_format: bool,
    /// Ingest bitrate (what the bandwidth caps and the metrics read).
    rate: Rate,
    /// The stream's live edge in its own clock, stored in [`Mount::stream_ms`].
    clock: StreamClock,
}

/// A source's bitrate over its last [`Rate::WINDOWS`] windows of [`Rate::WINDOW`] (12 s):
/// long enough that VBR audio in 1 s Ogg pages (Opus, Vorbis) reads close to its bitrate (one
/// 3 s window holds three pages: a 64 kbit/s Opus stream read anywhere from 43 to 87 kbit/s),
/// short enough to follow a source that changes its bitrate within a quarter of a minute.
#[derive(Debug)]
struct Rate {
    /// The window under way: its start and its bytes.
    current: (Instant, u64),
    /// The last windows: (seconds, bytes), oldest overwritten first.
    past: [(f64, u64); Rate::WINDOWS],
    next: usize,
}

impl Rate {
    const WINDOW: f64 = 3.0;
    const WINDOWS: usize = 4;

    fn new(now: Instant) -> Rate {
        Rate {
            current: (now, 0),
            past: [(0.0, 0); Rate::WINDOWS],
            next: 0,
        }
    }

    /// `bytes` arrived at `now`: the bitrate in bits/s when a window just closed.
    fn add(&mut self, bytes: u64, now: Instant) -> Option<u64> {
        self.current.1 += bytes;
        let secs = now.duration_since(self.current.0).as_secs_f64();
        if secs < Rate::WINDOW {
            return None;
        }
        self.past[self.next] = (secs, self.current.1);
        self.next = (self.next + 1) % Rate::WINDOWS;
        self.current = (now, 0);
        let (secs, bytes) = self
            .past
            .iter()
            .fold((0.0, 0), |(s, b), (ws, wb)| (s + ws, b + wb));
        Some((bytes as f64 * 8.0 / secs) as u64)
    }
}

impl<'a> Ingest<'a> {
    pub(crate) fn new(mount: &'a Mount, logs: &'a Limiter) -> Self {
        Ingest {
            mount,
            logs,
            // The largest unit the source can make the framer hold (and the queue keep as
            // its newest chunk): the mount's `max-element-size`.
            demux: Demuxer::new().max_element(mount.settings().max_element_size),
            titles: mount.settings().ogg_title_in_stream.then(Retitler::new),
            reported_format: false,
            rate: Rate::new(Instant::now()),
            clock: StreamClock::new(),
        }
    }

    /// Frame `body` into the mount; an error ends the stream.
    pub(crate) fn feed(&mut self, body: &[u8]) -> Result<(), SourceEnd> {
        let mount = self.mount;
        mount
            .bytes_read
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if let Some(bps) = self.rate.add(body.len() as u64, Instant::now()) {
            mount.ingest_bps.store(bps, Ordering::Relaxed);
        }
        self.demux.push(body);
        drain(
            &mut self.demux,
            mount,
            self.logs,
            &mut self.titles,
            &mut self.clock,
        )?;
        if !self.reported_format
            && let Some(f) = self.demux.format()
        {
            self.reported_format = true;
            tracing::info!(mount = %mount.path, format = ?f, "stream format detected");
        }
        Ok(())
    }

    /// The stream ended: publish what the demuxer still holds.
    pub(crate) fn finish(mut self) {
        if let Some(Event::Chunk(c)) = self.demux.finish() {
            let bytes = match self.titles.as_mut() {
                Some(t) => t.data(c.bytes),
                None => c.bytes,
            };
            self.mount.publish(bytes, c.sync);
        }
    }
}

/// Move every event the demuxer has into the mount; log what it rejected. With
/// `ogg-title-in-stream`, `titles` puts titles set by the admin into the Ogg stream.
fn drain(
    demux: &mut Demuxer,
    mount: &Mount,
    logs: &Limiter,
    titles: &mut Option<Retitler>,
    clock: &mut StreamClock,
) -> Result<(), SourceEnd> {
    let about = About::Mount(&mount.path);
    loop {
        match demux.poll() {
            Ok(None) => return Ok(()),
            Ok(Some(Event::Headers(h))) => {
                if let Some(f) = demux.format() {
                    clock.headers(f, &h);
                }
                if logs.admit(Kind::StreamHeaders, about) {
                    tracing::info!(mount = %mount.path, bytes = h.len(), codecs = %demux.info().subtype(), "stream headers");
                }
                if let Some(t) = titles.as_mut() {
                    let result = if demux.format() == Some(Format::Ogg) {
                        t.headers(&h).map_err(|e| e.to_string())
                    } else {
                        Err("the stream is not Ogg".to_string())
                    };
                    if let Err(why) = result
                        && logs.admit(Kind::TitlesOut, about)
                    {
                        tracing::warn!(mount = %mount.path, "ogg-title-in-stream is on, but titles stay out of this stream: {why}");
                    }
                }
                if demux.format() == Some(Format::Ogg)
                    && let Some(title) = agora_format::ogg::comment_title(&h)
                {
                    if logs.admit(Kind::StreamTitle, about) {
                        tracing::info!(mount = %mount.path, title = %shown(&title), "title from the stream's comments");
                    }
                    mount.set_title_from_stream(title);
                }
                mount.set_headers(h);
                mount.set_stream(demux.format(), demux.info());
            }
            Ok(Some(Event::Chunk(c))) => {
                if mount.format() != demux.format() {
                    mount.set_stream(demux.format(), demux.info());
                }
                if let Some(f) = demux.format() {
                    clock.chunk(f, &c.bytes);
                    if let Some(t) = clock.now() {
                        let ms = u64::try_from(t.as_millis()).unwrap_or(Mount::NO_TIME - 1);
                        mount
                            .stream_ms
                            .store(ms.min(Mount::NO_TIME - 1), Ordering::Relaxed);
                    }
                }
                let bytes = match titles.as_mut().filter(|t| t.ready()) {
                    None => c.bytes,
                    Some(t) => {
                        if let Some(title) = mount.take_inband_title() {
                            match t.retitle(&title) {
                                Some(Ok((eos, headers))) => {
                                    // The end of the link goes out under the old headers,
                                    // then listeners get the new ones before the next page.
                                    mount.publish(eos, false);
                                    mount.set_headers(headers);
                                    if logs.admit(Kind::InbandTitle, about) {
                                        tracing::info!(mount = %mount.path, title = %shown(&title), "title put into the Ogg stream (new chain link)");
                                    }
                                }
                                Some(Err(e)) if logs.admit(Kind::InbandTitle, about) => {
                                    tracing::warn!(mount = %mount.path, "title not put into the stream: {e}")
                                }
                                Some(Err(_)) | None => {}
                            }
                        }
                        t.data(c.bytes)
                    }
                };
                mount.publish(bytes, c.sync);
            }
            Err(e) if e.is_fatal() => return Err(SourceEnd::Rejected(e)),
            Err(e) => {
                if logs.admit(Kind::BadData, about) {
                    tracing::warn!(mount = %mount.path, "source sent bad data: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 64 kbit/s of VBR audio in one page a second (Opus, Vorbis): pages of 4,000 to 12,000
    /// bytes, 8,000 on average. One 3 s window holds three pages: 53 to 75 kbit/s.
    #[test]
    fn a_vbr_stream_of_one_second_pages_reads_close_to_its_bitrate() {
        let t0 = Instant::now();
        let mut rate = Rate::new(t0);
        let sizes = [4000, 12000, 4000, 4000, 12000, 12000];
        let mut read = Vec::new();
        for page in 0..60u64 {
            let at = t0 + Duration::from_millis(1000 + page * 1000);
            read.extend(rate.add(sizes[(page % 6) as usize], at));
        }
        // Once the windows are all in, every reading is within 12% of 64 kbit/s.
        assert!(read.len() > 8, "{read:?}");
        for bps in &read[Rate::WINDOWS..] {
            assert!((56_000..72_000).contains(bps), "{read:?}");
        }
    }
}
