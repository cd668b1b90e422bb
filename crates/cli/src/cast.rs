//! `agora cast`, `agora meta` and `agora demo`: flags to an [`agora_cast::CastConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_cast::preset::{AudioDevice, Encoding, Input, PresetName, Rate};
use agora_cast::slides::SlidesConfig;
use agora_cast::slides::video::SlidesMount;
use agora_cast::target::TargetConfig;
use agora_cast::{CastConfig, CastError, StatusMode};
use agora_client::push::StreamMeta;
use agora_client::{ClientError, Endpoint, ServerUrl, TlsConfig};
use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

pub(crate) const EXAMPLES: &str = "\
Inputs (--input):
  test                 a generated test pattern with a tone (rehearsals, demos)
  -                    an already encoded Ogg/WebM/MP3/AAC stream on stdin, pushed as is
  FILE                 a media file pushed at real-time pace as is, or re-encoded with --preset
  v4l2:/dev/video0     a camera (add --audio alsa:default or pulse:default)
  iec61883             DV over FireWire through ffmpeg; `dvgrab` pipes a dvgrab child instead

Examples:
  # The classic conference pipeline
  #   dvgrab -f raw - | ffmpeg2theora -a 1 -v 6 -f dv -x 320 -y 240 -o /dev/stdout - \\
  #     | tee streams/stream_$(date +%F-%T)_320x240.ogg \\
  #     | oggfwd -n \"Pycon FR live stream\" server 8000 password /pycon_fr_2008_live.ogg
  # becomes one command that survives the network, with a 720p archive for the slides:
  agora cast --input dvgrab --preset theora --name \"Pycon FR live stream\" \\
      --archive-dir streams --archive-preset webm --archive-size 1280x720 \\
      --server http://source:password@server:8000/pycon_fr_2008_live.ogg

  # A rehearsal: test pattern in the browser-friendly default (WebM VP8+Opus 640x360)
  agora cast --input test --server http://source:PASSWORD@127.0.0.1:8000/live.webm

  # A webcam to an origin and a backup, with a local archive
  agora cast --input v4l2:/dev/video0 --audio pulse:default --archive-dir ~/talks \\
      --server http://source:PW@origin:8000/live.webm --server http://source:PW@backup:8000/live.webm

  # Replace oggfwd+tee: push an encoded stream from stdin and keep a copy
  ffmpeg -i cam.dv -c:v libtheora -c:a libvorbis -f ogg - | \\
      agora cast --input - --archive-dir streams --server http://source:PW@host:8000/live.ogg

  # Slides from the presenter's HDMI (a capture card) beside the camera: sharp stills on
  # the stream's timeline, archived in streams/<name>_<time>_slides/ with an index.tsv
  agora cast --input v4l2:/dev/video0 --audio pulse:default --slides v4l2:/dev/video1 \\
      --archive-dir streams --server http://source:PW@host:8000/live.webm

  # The same slides as a 1 fps video on a mount of its own, for VLC and mpv beside the stream
  # (vlc http://host:8000/live-slides.webm)
  agora cast --input v4l2:/dev/video0 --audio pulse:default --slides v4l2:/dev/video1 \\
      --slides-mount /live-slides.webm --server http://source:PW@host:8000/live.webm

  # The password out of the command line (every user of the machine can read it with ps)
  agora cast --input test --password-file ~/.config/agora/source.pw \\
      --server http://origin:8000/live.webm --server http://backup:8000/live.webm

Exit status: 0 the input ended or the cast was stopped (Ctrl-C, SIGTERM); 2 bad options;
3 the encoder failed or ffmpeg is missing; 4 the archive could not be written; 5 the input
could not be read (a file missing, unreadable or not a media stream); 6 every server refused
the cast's password, user or mount (401/403). Network failures never end a cast: each server
is retried on its own. A server that refuses the password is not asked again (a wrong
password is not fixed by asking again, and the server may ban the address); with
--retry-refused it is asked every 30 s.";

#[derive(Args, Debug)]
pub(crate) struct CastArgs {
    /// What to stream: test, -, FILE, v4l2:DEVICE, iec61883[:GUID], dvgrab.
    #[arg(long, short, default_value = "test")]
    input: String,
    /// Audio capture for a v4l2 input: alsa:DEVICE or pulse:DEVICE.
    #[arg(long, value_name = "DEVICE")]
    audio: Option<String>,
    /// Encoding: theora (Ogg Theora+Vorbis 320x240), webm (VP8+Opus 640x360, the default for
    /// captures), opus or mp3 (audio only). Files and stdin are pushed as they are unless a
    /// preset is given.
    #[arg(long)]
    preset: Option<String>,
    /// Video frame size, WxH.
    #[arg(long, value_name = "WxH")]
    size: Option<String>,
    /// Video bitrate (e.g. 800k, 1.5M).
    #[arg(long, conflicts_with = "video_quality")]
    video_bitrate: Option<String>,
    /// Video quality on the encoder's scale (Theora 0-10, VP8 CRF 4-63).
    #[arg(long)]
    video_quality: Option<f32>,
    /// Audio bitrate (e.g. 96k).
    #[arg(long, conflicts_with = "audio_quality")]
    audio_bitrate: Option<String>,
    /// Audio quality on the encoder's scale (Vorbis -1-10, LAME 0-9).
    #[arg(long)]
    audio_quality: Option<f32>,
    /// Keep every byte of the stream in DIR/<name>_<date>T<time>_<WxH>.<ext>.
    #[arg(long, value_name = "DIR")]
    archive_dir: Option<PathBuf>,
    /// Also record a second encode of the same capture in the archive directory.
    #[arg(long, value_name = "PRESET")]
    archive_preset: Option<String>,
    /// Frame size of the --archive-preset encode, WxH (default 1280x720).
    #[arg(long, value_name = "WxH")]
    archive_size: Option<String>,
    /// A server to push to, http(s)://[user:pass@]host:port/mount (repeatable).
    #[arg(long = "server", value_name = "URL")]
    servers: Vec<String>,
    #[command(flatten)]
    access: Access,
    /// Stream name (ice-name), also used in archive file names.
    #[arg(long)]
    name: Option<String>,
    /// Stream description (ice-description).
    #[arg(long)]
    description: Option<String>,
    /// Stream genre (ice-genre).
    #[arg(long)]
    genre: Option<String>,
    /// Web page of the stream (ice-url).
    #[arg(long)]
    url: Option<String>,
    /// List the stream in public directories (ice-public).
    #[arg(long)]
    public: bool,
    /// Now-playing title, set on every server after each connect.
    #[arg(long)]
    title: Option<String>,
    /// Keep asking a server that refused the password, user or mount (401/403), every 30 s,
    /// rather than give it up: for when its configuration is being fixed meanwhile.
    #[arg(long)]
    retry_refused: bool,
    /// Slides beside the video, sharp stills sent when the slide changes: v4l2:DEVICE (a
    /// capture card), x11grab:DISPLAY (a screen), dir:FOLDER or a folder's path (exported
    /// images, each new file a slide), ffmpeg:ARGS (any ffmpeg input, its options split at
    /// spaces), or a video file (read at real-time pace).
    #[arg(long, value_name = "SRC")]
    slides: Option<String>,
    /// Scene-change score (0 to 1) above which a frame of the slide input is a new slide.
    /// Raise it for a noisy capture, lower it for slides that differ by a word.
    #[arg(long, value_name = "SCORE", default_value_t = agora_cast::slides::DEFAULT_THRESHOLD, requires = "slides")]
    slides_threshold: f64,
    /// At most one slide per this many seconds: a video playing on a slide sends its latest
    /// frame at that pace, not every frame.
    #[arg(long, value_name = "SECONDS", default_value_t = agora_cast::slides::DEFAULT_MIN_INTERVAL.as_secs_f64(), requires = "slides")]
    slides_min_interval: f64,
    /// Also push the slides as a video to MOUNT on every --server (same host, password and
    /// TLS, e.g. /live-slides.webm): WebM VP8 at 1 frame a second showing the current slide,
    /// for VLC, mpv and other players outside the browser (docs/slides.md).
    #[arg(long, value_name = "MOUNT", requires = "slides")]
    slides_mount: Option<String>,
    /// Frame size of the --slides-mount video, WxH: the slide scaled to fit, letterboxed.
    #[arg(
        long,
        value_name = "WxH",
        default_value = "1280x720",
        requires = "slides_mount"
    )]
    slides_mount_size: String,
}

fn size(s: &str) -> Result<(u32, u32), CastError> {
    s.split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or_else(|| CastError::Usage(format!("size `{s}`: expected WxH, e.g. 1280x720")))
}

fn usage(e: String) -> CastError {
    CastError::Usage(e)
}

/// The password of `--password`, or of `--password-file` (read now).
/// How a command proves itself to servers whose URL carries no password, and what it trusts
/// over https: the options `cast`, `meta` and `slides upload` share.
#[derive(Args, Debug)]
pub(crate) struct Access {
    /// The source password for servers whose URL has none (the admin's also sets titles and
    /// uploads decks). Given here (or in a URL), every user of the machine can read it (ps):
    /// prefer --password-file or the environment.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "AGORA_SOURCE_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// File holding that password (one line; a trailing newline is stripped).
    #[arg(
        long,
        value_name = "FILE",
        env = "AGORA_SOURCE_PASSWORD_FILE",
        conflicts_with = "password"
    )]
    password_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for https:// servers, beside the system's.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

impl Access {
    /// The password given by option, environment or file, if any.
    fn password(&self) -> Result<Option<String>, CastError> {
        match (&self.password, &self.password_file) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(path)) => Ok(Some(
                crate::secrets::read_file("--password-file", path)
                    .map_err(usage)?
                    .expose()
                    .to_string(),
            )),
            (None, None) => Ok(None),
        }
    }

    /// The TLS settings for an https:// server (the system's roots and `--tls-ca`).
    fn tls(&self) -> Result<TlsConfig, CastError> {
        TlsConfig::new(self.tls_ca.as_deref()).map_err(|e| match e {
            ClientError::CaFile { .. } => usage(format!("--tls-ca {e}")),
            e => usage(e.to_string()),
        })
    }

    /// How to reach one server: its URL, the password, TLS when it is https.
    fn endpoint(&self, url: ServerUrl) -> Result<Endpoint, CastError> {
        let tls = if url.tls { Some(self.tls()?) } else { None };
        Ok(Endpoint {
            url,
            password: self.password()?,
            tls,
        })
    }
}

impl CastArgs {
    fn config(&self, started: time::OffsetDateTime) -> Result<CastConfig, CastError> {
        let input: Input = self.input.parse().map_err(usage)?;
        let audio = self
            .audio
            .as_deref()
            .map(str::parse::<AudioDevice>)
            .transpose()
            .map_err(usage)?;
        let preset = self
            .preset
            .as_deref()
            .map(str::parse::<PresetName>)
            .transpose()
            .map_err(usage)?;
        let passthrough = matches!(input, Input::Stdin | Input::File(_)) && preset.is_none();
        let live = if passthrough {
            if self.size.is_some()
                || self.video_bitrate.is_some()
                || self.video_quality.is_some()
                || self.audio_bitrate.is_some()
                || self.audio_quality.is_some()
            {
                return Err(usage(
                    "encoding options need --preset (without one the input is pushed as is)".into(),
                ));
            }
            None
        } else {
            let mut e = Encoding::new(preset.unwrap_or(PresetName::Webm));
            if let Some(s) = &self.size {
                if !e.has_video() {
                    return Err(usage(format!(
                        "preset {} has no video: --size does not apply",
                        e.preset
                    )));
                }
                e.size = Some(size(s)?);
            }
            if let Some(b) = &self.video_bitrate {
                e.video = Rate::Bitrate(b.clone());
            }
            if let Some(q) = self.video_quality {
                e.video = Rate::Quality(q);
            }
            if let Some(b) = &self.audio_bitrate {
                e.audio = Rate::Bitrate(b.clone());
            }
            if let Some(q) = self.audio_quality {
                e.audio = Rate::Quality(q);
            }
            Some(e)
        };
        let archive_encoding = match &self.archive_preset {
            None => None,
            Some(p) => {
                let mut e = Encoding::new(p.parse().map_err(usage)?);
                if e.has_video() {
                    e.size = Some(size(self.archive_size.as_deref().unwrap_or("1280x720"))?);
                    // The archive is for reading slides later: spend bits.
                    if e.preset == PresetName::Webm {
                        e.video = Rate::Bitrate("2500k".into());
                    }
                }
                Some(e)
            }
        };
        let meta = StreamMeta {
            name: self.name.clone(),
            description: self.description.clone(),
            genre: self.genre.clone(),
            url: self.url.clone(),
            public: self.public,
            audio_info: None,
            bitrate: None,
        };
        let mut targets = Vec::new();
        let password = self.access.password()?;
        for s in &self.servers {
            let url: ServerUrl = s
                .parse()
                .map_err(|e: agora_client::UrlError| usage(e.to_string()))?;
            if url.password.is_none() && password.is_none() {
                return Err(usage(format!(
                    "{url}: no password; use --password-file FILE, AGORA_SOURCE_PASSWORD_FILE or AGORA_SOURCE_PASSWORD (or put it in the URL, http://source:PASS@host:port/mount, where ps shows it)"
                )));
            }
            targets.push(TargetConfig {
                endpoint: Endpoint {
                    url,
                    password: password.clone(),
                    tls: None,
                },
                meta: meta.clone(),
                title: self.title.clone(),
                retry_refused: self.retry_refused,
            });
        }
        if targets.iter().any(|t| t.endpoint.url.tls) {
            let tls = self.access.tls()?;
            for t in &mut targets {
                t.endpoint.tls = Some(tls.clone());
            }
        }
        let name = self.name.clone().unwrap_or_else(|| {
            targets
                .first()
                .map(|t| t.endpoint.url.mount.trim_start_matches('/').to_string())
                .and_then(|m| m.split('.').next().map(str::to_string))
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "stream".into())
        });
        let status = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            StatusMode::Line
        } else {
            StatusMode::Log
        };
        let slides = match &self.slides {
            None => None,
            Some(src) => {
                if !(self.slides_min_interval.is_finite() && self.slides_min_interval >= 0.0) {
                    return Err(usage(format!(
                        "--slides-min-interval {}: expected seconds, 0 or more",
                        self.slides_min_interval
                    )));
                }
                let mount = match &self.slides_mount {
                    None => None,
                    Some(m) => Some(SlidesMount {
                        size: size(&self.slides_mount_size).map_err(|_| {
                            usage(format!(
                                "--slides-mount-size {}: expected WxH, e.g. 1280x720",
                                self.slides_mount_size
                            ))
                        })?,
                        ..SlidesMount::new(m)
                    }),
                };
                Some(SlidesConfig {
                    source: src.parse().map_err(usage)?,
                    threshold: self.slides_threshold,
                    min_interval: Duration::from_secs_f64(self.slides_min_interval.min(1e6)),
                    mount,
                })
            }
        };
        Ok(CastConfig {
            slides,
            input,
            audio,
            live,
            archive_dir: self.archive_dir.clone(),
            archive_encoding,
            name,
            targets,
            started,
            status,
        })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Cancels `token` on SIGINT or SIGTERM.
fn stop_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: finishing the archive and closing the streams");
        token.cancel();
    });
}

pub(crate) fn cast(args: CastArgs, offset: time::UtcOffset) -> ExitCode {
    let started = time::OffsetDateTime::now_utc().to_offset(offset);
    let fail = |e: &CastError| {
        eprintln!("agora cast: {e}");
        ExitCode::from(e.exit_code())
    };
    let cfg = match args.config(started).and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agora cast: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let stop = CancellationToken::new();
        stop_on_signals(stop.clone());
        agora_cast::run(cfg, stop).await
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(o) => {
            let secs = o.elapsed.as_secs();
            eprintln!(
                "agora cast: done after {:02}:{:02}:{:02}, {:.1} MB streamed",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                o.bytes as f64 / 1e6
            );
            for p in o.archive.iter().chain(&o.archive_hq) {
                eprintln!("  archive: {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

#[derive(Args, Debug)]
pub(crate) struct MetaArgs {
    /// The mount, http(s)://[user:pass@]host:port/mount.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The new now-playing title.
    #[arg(long)]
    title: String,
    #[command(flatten)]
    access: Access,
}

pub(crate) fn meta(args: MetaArgs) -> Result<()> {
    let url: ServerUrl = args.server.parse()?;
    let endpoint = args.access.endpoint(url.clone())?;
    runtime()?.block_on(async {
        agora_client::meta::set_title(&endpoint, &args.title)
            .await
            .with_context(|| format!("setting the title of {url}"))
    })?;
    println!("title of {url} set");
    Ok(())
}

/// `agora slides ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum SlidesCommand {
    /// Upload a talk's slide deck (a PDF) to a mount: the server renders its pages, and the
    /// admin page steps through them.
    Upload(DeckArgs),
}

#[derive(Args, Debug)]
pub(crate) struct DeckArgs {
    /// The server, http(s)://[user:pass@]host:port (the source user unless the URL names one:
    /// `admin` works too).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The mount the deck is for, e.g. /live.webm.
    #[arg(long, value_name = "MOUNT")]
    mount: String,
    /// The PDF.
    deck: PathBuf,
    #[command(flatten)]
    access: Access,
}

pub(crate) fn slides(cmd: SlidesCommand) -> Result<()> {
    let SlidesCommand::Upload(args) = cmd;
    let mount = if args.mount.starts_with('/') {
        args.mount.clone()
    } else {
        format!("/{}", args.mount)
    };
    let url: ServerUrl = format!("{}{mount}", args.server.trim_end_matches('/')).parse()?;
    let endpoint = args.access.endpoint(url.clone())?;
    let body =
        std::fs::read(&args.deck).with_context(|| format!("reading {}", args.deck.display()))?;
    let name = args
        .deck
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let answer = runtime()?.block_on(async {
        agora_client::slides::upload_deck(&endpoint, &name, &body)
            .await
            .with_context(|| format!("uploading {} to {url}", args.deck.display()))
    })?;
    // The server's JSON: the deck, its PDF's and pages' URLs.
    eprintln!("deck {} uploaded to {url}", args.deck.display());
    println!("{answer}");
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
}

/// A server on embedded defaults and a test cast to it.
pub(crate) fn demo(args: DemoArgs, offset: time::UtcOffset) -> Result<()> {
    let mut config = agora_server::Config::default();
    config.server.listen = vec![args.listen];
    let credentials = agora_server::Credentials {
        source_password: agora_server::random_password(),
        admin_user: "admin".into(),
        admin_password: agora_server::random_password(),
    };
    runtime()?.block_on(async move {
        let server = agora_server::Server::bind(config, credentials.clone()).await?;
        let addr = server
            .local_addrs()
            .first()
            .copied()
            .context("no listening address")?;
        let stop = server.shutdown_token();
        stop_on_signals(stop.clone());
        let serving = tokio::spawn(server.run());
        println!("Agora {} demo", env!("CARGO_PKG_VERSION"));
        println!(
            "  server:  http://{addr}/  (admin password: {})",
            credentials.admin_password
        );
        let url = format!("http://{addr}/live.webm");
        let target = TargetConfig {
            endpoint: Endpoint::new(
                format!(
                    "http://source:{}@{addr}/live.webm",
                    credentials.source_password
                )
                .parse()?,
            ),
            meta: StreamMeta {
                name: Some("Agora demo".into()),
                description: Some("A test pattern from agora demo".into()),
                ..StreamMeta::default()
            },
            title: Some("Test pattern".into()),
            retry_refused: false,
        };
        let cfg = CastConfig {
            input: Input::Test,
            audio: None,
            live: Some(Encoding::new(PresetName::Webm)),
            archive_dir: None,
            archive_encoding: None,
            name: "demo".into(),
            targets: vec![target],
            started: time::OffsetDateTime::now_utc().to_offset(offset),
            status: StatusMode::Log,
            slides: None,
        };
        println!("  watch:   http://{addr}/watch/live.webm   in a browser");
        println!("  streams: http://{addr}/   (every stream on this server)");
        println!("  play:    ffplay {url}   (or mpv, VLC)");
        println!("  admin:   http://{addr}/admin/   (user admin)");
        println!(
            "  push:    source password {} (user source), e.g.",
            credentials.source_password
        );
        println!(
            "           ffmpeg -re -f lavfi -i sine -c:a libopus -f ogg icecast://source:{}@{addr}/second.opus",
            credentials.source_password
        );
        match agora_cast::run(cfg, stop.clone()).await {
            Ok(_) => {}
            Err(e @ CastError::FfmpegMissing) => {
                println!("  no test stream: {e}");
                println!("  the server keeps running; push to it with any Icecast source client");
            }
            Err(e) => println!("  the test stream stopped: {e}"),
        }
        let _ = serving.await;
        Ok(())
    })
}
