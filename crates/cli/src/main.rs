//! `agora`: the command line. Glue only: parse flags, build a configuration, run the server
//! (`serve`), the broadcaster (`cast`), both (`demo`), or set a title (`meta`).

mod cast;
mod import;
mod logging;
mod secrets;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agora_server::{Config, Credentials, Server};
use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

// mimalloc rather than glibc's malloc: with thousands of listeners joining and leaving across
// worker threads, glibc's per-thread arenas kept growing (RSS +17% over 3 minutes of churn);
// mimalloc returns freed pages and keeps RSS flat (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "agora",
    version,
    about = "Agora: live streaming for conferences, Icecast-compatible"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Icecast-compatible streaming server.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Capture, encode, archive and push a live stream to one or more servers.
    #[command(after_help = cast::EXAMPLES)]
    Cast(Box<cast::CastArgs>),
    /// Set the now-playing title of a live mount.
    Meta(cast::MetaArgs),
    /// Slide decks: `agora slides upload --server URL --mount /live.webm deck.pdf`.
    #[command(subcommand)]
    Slides(cast::SlidesCommand),
    /// A server on embedded defaults plus a test-pattern cast to it: a live stream in one command.
    Demo(cast::DemoArgs),
    /// Convert an Icecast configuration (icecast.xml) to Agora's TOML, listing what did not map.
    #[command(after_help = IMPORT_EXAMPLES)]
    ImportIcecast(ImportArgs),
}

const IMPORT_EXAMPLES: &str = "\
Examples:
  agora import-icecast /etc/icecast2/icecast.xml -o /etc/agora/agora.toml
  agora serve --config /etc/agora/agora.toml --check-config

The TOML goes to standard output (or --output); what did not map is listed on standard error,
one element a line with its line number. Icecast's sample password (hackme) is never carried
over: Agora makes random passwords at start.";

#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// The Icecast configuration.
    #[arg(default_value = "/etc/icecast2/icecast.xml")]
    file: PathBuf,
    /// Write the TOML here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

const SERVE_EXAMPLES: &str = "\
Examples:
  agora serve                                   # 127.0.0.1:8000, random passwords printed
  agora serve --listen 0.0.0.0:8000 --config /etc/agora.toml
  AGORA_SOURCE_PASSWORD=s3cret agora serve --listen [::]:8000
  agora serve --source-password-file /etc/agora/source.pw --admin-password-file /etc/agora/admin.pw

Passwords are best kept out of the command line, which every user of the machine can read
(ps): give a file (one line; one trailing newline is stripped) or the environment. Under
systemd, LoadCredential=source-password:/etc/agora/source.pw with
--source-password-file %d/source-password; with Docker secrets,
AGORA_SOURCE_PASSWORD_FILE=/run/secrets/source_password.

Push a stream to it:
  ffmpeg -re -i talk.webm -c copy -content_type video/webm \\
      icecast://source:PASSWORD@127.0.0.1:8000/live.webm
  oggfwd -p -n \"Conference live\" 127.0.0.1 8000 PASSWORD /live.ogg < talk.ogg";

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Address to listen on (repeatable). Default 127.0.0.1:8000.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Password of user `source` (default: from the config, else random, printed at start).
    /// Given here, every user of the machine can read it (ps): prefer --source-password-file
    /// or the environment.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "AGORA_SOURCE_PASSWORD",
        hide_env_values = true
    )]
    source_password: Option<String>,
    /// File holding the password of user `source` (one line; a trailing newline is stripped).
    #[arg(
        long,
        value_name = "FILE",
        env = "AGORA_SOURCE_PASSWORD_FILE",
        conflicts_with = "source_password"
    )]
    source_password_file: Option<PathBuf>,
    /// Password of user `admin` (default: from the config, else random, printed at start).
    /// Given here, every user of the machine can read it (ps): prefer --admin-password-file
    /// or the environment.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "AGORA_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    admin_password: Option<String>,
    /// File holding the password of user `admin` (one line; a trailing newline is stripped).
    #[arg(
        long,
        value_name = "FILE",
        env = "AGORA_ADMIN_PASSWORD_FILE",
        conflicts_with = "admin_password"
    )]
    admin_password_file: Option<PathBuf>,
    /// Access log in Combined Log Format: a file, or `-` for standard output.
    #[arg(long, value_name = "FILE")]
    access_log: Option<String>,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    // Read the local time zone while the process has one thread (the only time it may).
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    // Parsed by hand rather than with `Cli::parse()`: clap's errors quote arguments, and the
    // command line's passwords must be left out of them.
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| secrets::exit_on_clap_error(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| secrets::exit_on_clap_error(e));
    // To standard error; under systemd, in the journal's own shape (no timestamp of ours).
    logging::init();
    secrets::warn_about_arguments(&Cli::command(), &matches);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Cast(args) => return cast::cast(*args, offset),
        Command::Meta(args) => cast::meta(args),
        Command::Slides(cmd) => cast::slides(cmd),
        Command::Demo(args) => cast::demo(args, offset),
        Command::ImportIcecast(args) => import_icecast(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn import_icecast(args: ImportArgs) -> Result<()> {
    let xml = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let out = import::convert(&xml).with_context(|| args.file.display().to_string())?;
    let text = format!(
        "# Converted from {} by agora import-icecast {}.\n# Check it: agora serve --config FILE --check-config\n\n{}",
        args.file.display(),
        env!("CARGO_PKG_VERSION"),
        out.toml
    );
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    let name = args.file.display();
    for note in &out.notes {
        eprintln!("{name}: {note}");
    }
    eprintln!(
        "agora import-icecast: converted{}; {} element(s) not carried over (listed above)",
        args.output
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default(),
        out.notes.len()
    );
    Ok(())
}

/// The configuration `agora serve` runs with: the file (or the defaults), the command line and
/// the environment winning over it, validated. Read at start and again by every reload.
fn load_config(args: &ServeArgs) -> Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.server.listen = args.listen.clone();
    }
    // The command line and the environment win over the file.
    for (value, file, flag, password) in [
        (
            &args.source_password,
            &args.source_password_file,
            "--source-password-file",
            &mut config.auth.source_password,
        ),
        (
            &args.admin_password,
            &args.admin_password_file,
            "--admin-password-file",
            &mut config.auth.admin_password,
        ),
    ] {
        if let Some(p) = value {
            *password = Some(p.as_str().into());
        } else if let Some(path) = file {
            *password = Some(secrets::read_file(flag, path).map_err(anyhow::Error::msg)?);
        }
    }
    if args.access_log.is_some() {
        config.server.access_log = args.access_log.clone();
    }
    config.validate()?;
    Ok(config)
}

fn serve(args: ServeArgs) -> Result<()> {
    let config = load_config(&args)?;
    if args.check_config {
        // A listen address another program holds now: said, but not an error (the check
        // also runs beside the server it checks a reload for, which holds its own).
        let tls = config.server.tls.iter().flat_map(|t| t.listen.iter());
        for addr in config.server.listen.iter().chain(tls) {
            if addr.port() == 0 {
                continue;
            }
            if let Err(e) = std::net::TcpListener::bind(addr) {
                eprintln!(
                    "agora: note: cannot listen on {addr} now: {e}; start-up fails unless it is freed (if this server holds it, a reload needs no new socket)"
                );
            }
        }
        println!("configuration OK");
        return Ok(());
    }
    // No fixed default password, ever: generate what was not configured.
    let gen_source = config.auth.source_password.is_none();
    let gen_admin = config.auth.admin_password.is_none();
    let credentials = Credentials {
        source_password: config
            .auth
            .source_password
            .as_deref()
            .map_or_else(agora_server::random_password, str::to_string),
        admin_user: config
            .auth
            .admin_user
            .clone()
            .unwrap_or_else(|| "admin".into()),
        admin_password: config
            .auth
            .admin_password
            .as_deref()
            .map_or_else(agora_server::random_password, str::to_string),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // The error names the address, file or certificate and the system's reason.
        let server = Server::bind(config.clone(), credentials.clone()).await?;
        let addrs = server.local_addrs();
        banner(
            &addrs,
            &server.tls_addrs(),
            &credentials,
            gen_source,
            gen_admin,
        )?;
        let token = server.shutdown_token();
        // SIGHUP (`systemctl reload`): the configuration read again and applied without
        // closing a connection, certificates included (an ACME client renewed them); a file
        // with an error is refused whole and the configuration in force stays.
        let reloader = server.reloader();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let reload_args = args.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Reading files: off the async workers.
                let (args, reloader) = (reload_args.clone(), reloader.clone());
                let done = tokio::task::spawn_blocking(move || {
                    let config = load_config(&args)?;
                    reloader.reload(config).map_err(anyhow::Error::from)
                })
                .await;
                match done {
                    Ok(Ok(r)) => tracing::info!(
                        mounts = r.mounts,
                        links_started = r.links_started,
                        links_stopped = r.links_stopped,
                        tls_groups = r.tls_groups,
                        waiting = r.pending.len(),
                        "SIGHUP: configuration reloaded"
                    ),
                    Ok(Err(e)) => tracing::error!(
                        "SIGHUP: reload refused, the configuration in force stays: {e:#}"
                    ),
                    Err(e) => tracing::error!("SIGHUP: reload failed: {e}"),
                }
            }
        });
        let fast_exit = tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let fast = tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining"); false }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); true }
            };
            token.cancel();
            Ok::<bool, std::io::Error>(fast)
        });
        let grace = Duration::from_secs(config.server.shutdown_grace_secs);
        let run = server.run();
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => {}
            fast = fast_exit => {
                if matches!(fast, Ok(Ok(true))) {
                    // SIGINT: give connections a moment, not the full grace.
                    let _ = tokio::time::timeout(Duration::from_millis(200), &mut run).await;
                } else {
                    let _ = tokio::time::timeout(grace + Duration::from_secs(1), &mut run).await;
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Print once, clearly, where the server is and which passwords were generated.
fn banner(
    addrs: &[SocketAddr],
    tls_addrs: &[SocketAddr],
    c: &Credentials,
    gen_source: bool,
    gen_admin: bool,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "Agora {} is serving", env!("CARGO_PKG_VERSION"))?;
    for a in addrs {
        writeln!(out, "  listening on http://{a}/")?;
    }
    for a in tls_addrs {
        writeln!(out, "  listening on https://{a}/")?;
    }
    if gen_source {
        writeln!(
            out,
            "  source password (generated, user \"source\"): {}",
            c.source_password
        )?;
    }
    if gen_admin {
        writeln!(
            out,
            "  admin password (generated, user \"{}\"): {}",
            c.admin_user, c.admin_password
        )?;
    }
    if let Some(a) = addrs.first() {
        let pw = if gen_source {
            c.source_password.as_str()
        } else {
            "PASSWORD"
        };
        writeln!(
            out,
            "  push:   ffmpeg -re -i talk.webm -c copy -content_type video/webm icecast://source:{pw}@{a}/live.webm"
        )?;
        writeln!(out, "  listen: ffplay http://{a}/live.webm")?;
        writeln!(out, "  status: http://{a}/status-json.xsl")?;
    }
    out.flush()?;
    Ok(())
}
