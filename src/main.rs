//! The `wsedge` binary: command line, logging, signals. Nothing else —
//! the server itself is the library.
//!
//! Owns: the command line (flags handed to [`wsedge::settings`] as
//! overrides of the file and environment), logging set-up, starting the
//! [`wsedge::Server`], the periodic counts log line, graceful shutdown
//! on SIGINT/SIGTERM, and reloading the TLS certificates on SIGHUP. Must not touch: sockets or connections.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use toml::Value;
use wsedge::config::{LogConfig, LogFormat};
use wsedge::settings::{self, layers::Loaded, FlagKind, LoadError};
use wsedge::{Config, Server};

#[derive(Parser, Debug)]
#[command(
    name = "wsedge",
    version,
    about = "A thread-per-core WebSocket edge server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Mint a one-time connection token (prints it on stdout).
    Token(TokenArgs),
    /// Validate a configuration file and print the effective configuration
    /// (file and environment applied, secrets masked); exit 2 if invalid.
    CheckConfig {
        /// The TOML file.
        #[arg(required_unless_present = "example")]
        file: Option<PathBuf>,
        /// Print the example file instead: every setting at its default,
        /// with its documentation (this is `wsedge.example.toml`).
        #[arg(long, conflicts_with = "file")]
        example: bool,
    },
}

#[derive(clap::Args, Debug)]
struct TokenArgs {
    /// The user id.
    #[arg(long)]
    user: String,
    /// A channel (or `prefix*` pattern) the user may subscribe to; repeat.
    #[arg(long)]
    subscribe: Vec<String>,
    /// A channel (or `prefix*` pattern) the user may publish to; repeat.
    #[arg(long)]
    publish: Vec<String>,
    /// Lifetime in seconds, at most `token.max_ttl` (default 1 h; read from
    /// --config and WSEDGE_TOKEN_MAX_TTL like the server's).
    #[arg(long, default_value_t = 300)]
    ttl: u64,
    /// The server's TOML configuration file, for `token.max_ttl`.
    #[arg(long, env = "WSEDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Signing key.
    #[arg(long, env = "WSEDGE_TOKEN_KEY", hide_env_values = true)]
    key: String,
}

/// `wsedge token`: refuses a lifetime over the `token.max_ttl` the server
/// is configured with (file and environment, as `serve` reads them), which
/// the server would refuse anyway.
fn mint(a: TokenArgs) -> ExitCode {
    let cfg = match load(a.config.as_deref(), &[]) {
        Ok(l) => l.config,
        Err(code) => return code,
    };
    if let Err(e) = wsedge::admission::token::check_ttl(&cfg.token, a.ttl) {
        eprintln!("wsedge token: --ttl: {e}");
        return ExitCode::from(2);
    }
    let claims = wsedge::admission::token::claims_for(a.user, a.ttl, a.subscribe, a.publish);
    println!(
        "{}",
        wsedge::admission::token::mint(a.key.as_bytes(), &claims)
    );
    ExitCode::SUCCESS
}

/// `wsedge serve`: every flag is optional and, when given, overrides the
/// file and the environment (see `wsedge.example.toml` for every key).
#[derive(Parser, Debug, Default)]
#[command(name = "serve")]
struct ServeArgs {
    /// A TOML configuration file (every key optional; defaults embedded).
    #[arg(long, env = "WSEDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (file < environment < flags,
    /// secrets masked) and exit without serving.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: SettingFlags,
}

/// The flags that set keys: one per setting that declares a flag in
/// `wsedge::config` (built by `settings::flags`, help naming the key), and
/// `--set KEY=VALUE` for any key. What was given, in command-line order.
#[derive(Debug, Default)]
struct SettingFlags {
    /// (position, the flag or `None` for `--set`, its texts) per flag given.
    given: Vec<(usize, Option<settings::Flag>, Vec<String>)>,
}

const SET: &str = "set";

impl clap::Args for SettingFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        use clap::{Arg, ArgAction};
        for f in settings::flags() {
            let arg = Arg::new(f.name)
                .long(f.name)
                .help(f.help)
                .long_help(f.long_help);
            let value_name = f.key.rsplit('.').next().unwrap_or_default().to_uppercase();
            cmd = cmd.arg(match f.kind {
                FlagKind::Value => arg.value_name(value_name).action(ArgAction::Set),
                FlagKind::List => arg.value_name(value_name).action(ArgAction::Append),
                FlagKind::Switch(_) => arg.action(ArgAction::SetTrue),
            });
        }
        cmd.arg(
            Arg::new(SET)
                .long(SET)
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .help("Any setting by its key, e.g. --set admin.threads=4; repeat"),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for f in settings::flags() {
            let at = m.index_of(f.name).unwrap_or(0);
            let texts = match f.kind {
                FlagKind::Switch(_) if m.get_flag(f.name) => Vec::new(),
                FlagKind::Switch(_) => continue,
                _ => match m.get_many::<String>(f.name) {
                    Some(texts) => texts.cloned().collect(),
                    None => continue,
                },
            };
            given.push((at, Some(f), texts));
        }
        if let (Some(at), Some(texts)) = (m.indices_of(SET), m.get_many::<String>(SET)) {
            for (at, text) in at.zip(texts) {
                given.push((at, None, vec![text.clone()]));
            }
        }
        given.sort_by_key(|g| g.0);
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl SettingFlags {
    /// The flags that were given, as (key, value, flag name); a later one
    /// wins over an earlier one for the same key.
    fn overrides(&self) -> Result<Vec<(String, Value, String)>, LoadError> {
        let err = |flag: String| move |message| LoadError::Flag { flag, message };
        self.given
            .iter()
            .map(|(_, flag, texts)| match flag {
                Some(f) => {
                    let flag = format!("--{}", f.name);
                    let value = f
                        .value(texts)
                        .map_err(|m| format!("{}: {m}", f.key))
                        .map_err(err(flag.clone()))?;
                    Ok((f.key.clone(), value, flag))
                }
                None => {
                    let text = &texts[0];
                    let (key, value) =
                        settings::parse_set(text).map_err(err(format!("--set {text}")))?;
                    let flag = format!("--set {key}");
                    Ok((key, value, flag))
                }
            })
            .collect()
    }
}

/// Variables the binary reads itself (not configuration keys).
const OWN_ENV: [&str; 2] = ["WSEDGE_CONFIG", "WSEDGE_LOG"];

fn load(file: Option<&Path>, flags: &[(String, Value, String)]) -> Result<Loaded, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = settings::load(file, &env, flags).map_err(config_error)?;
    for var in settings::layers::unknown_env(&env, &OWN_ENV) {
        eprintln!("wsedge: warning: environment variable {var} names no setting (ignored)");
    }
    Ok(loaded)
}

fn config_error(e: LoadError) -> ExitCode {
    eprintln!("wsedge: configuration error: {e}");
    ExitCode::from(2)
}

fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WSEDGE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.format == LogFormat::Json {
        builder.json().flatten_event(true).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => *a,
        Some(Command::Token(t)) => return mint(t),
        Some(Command::CheckConfig { example: true, .. }) => {
            print!("{}", settings::example());
            return ExitCode::SUCCESS;
        }
        Some(Command::CheckConfig { file, .. }) => {
            let file = file.expect("clap requires a file without --example");
            return match load(Some(&file), &[]) {
                Ok(l) => {
                    println!(
                        "# {}: valid. Effective configuration (file < environment):",
                        file.display()
                    );
                    print!("{}", l.render());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        None => ServeArgs::parse_from(["serve"]),
    };
    let overrides = match args.settings.overrides() {
        Ok(o) => o,
        Err(e) => return config_error(e),
    };
    let loaded = match load(args.config.as_deref(), &overrides) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if args.dry_run {
        print!("{}", loaded.render());
        return ExitCode::SUCCESS;
    }
    init_logging(&loaded.config.log);
    // Only in a binary built by `cargo test` or `cargo bench` (the
    // test-only feature), and even then off unless asked for.
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("WSEDGE_FAULT_INJECTION").is_some_and(|v| v == "1") {
        wsedge::panics::fault::enable();
        tracing::warn!("test-only fault injection is on (WSEDGE_FAULT_INJECTION=1)");
    }
    match serve(loaded.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "wsedge failed");
            ExitCode::FAILURE
        }
    }
}

fn serve(cfg: Config) -> std::io::Result<()> {
    let (sig_tx, sig_rx) = crossbeam_channel::bounded(4);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    let stats_interval = cfg.log.stats_interval;
    let server = Server::start(cfg)?;
    let cores = server.cores().len();
    tracing::info!(
        addr = %server.local_addr(),
        cores,
        admin = %server.admin_addr().map_or("off".to_string(), |a| a.to_string()),
        tls = server.is_tls(),
        "wsedge listening; routes /echo and /ws"
    );
    std::thread::Builder::new()
        .name("wsedge-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig_tx.send(sig).is_err() {
                    break;
                }
            }
        })?;
    loop {
        match sig_rx.recv_timeout(stats_interval) {
            Ok(signal_hook::consts::SIGHUP) => {
                // Each listener logs its outcome; a bad file keeps the
                // previous certificate.
                let _ = server.reload_tls();
            }
            Ok(sig) => {
                tracing::info!(signal = sig, "shutting down: closing connections with 1001");
                break;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let hub = server.hub();
                tracing::info!(
                    "stats {} channels={} users_online={}",
                    server.stats(),
                    hub.channel_count(),
                    hub.users_online()
                );
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    server.shutdown();
    let stats_at_exit = {
        // Wait for the drain, then report the final counts.
        let stats = server.stats_view().clone();
        server.join()?;
        stats.total()
    };
    tracing::info!("stopped; stats {}", stats_at_exit);
    Ok(())
}
