//! Command line: `serve`, `check-config`, `manifest`, `preview`,
//! `send-test` and `outbox`.
//!
//! Exit codes: 0 success; 1 the command ran but failed (Slack refused, a
//! timeout, the store is unreachable, a previewed message or a route
//! template's sample render breaks a Block Kit limit); 2 the input is wrong (command line, config file, alerts
//! file, an unknown outbox id).

mod manifest;
mod outbox;
mod preview;
mod send_test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, redact_url};

pub use manifest::{ManifestError, manifest};
pub use preview::{PreviewError, PreviewMessage, block_kit_builder_url, preview};

/// The command ran but did not succeed.
const EXIT_FAILED: u8 = 1;
/// The command line, config or input is wrong: fix it and run again.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ackbar",
    version,
    about = "Alerts to Slack cards that on-call engineers act on.",
    after_help = "Exit codes: 0 success; 1 the command failed (Slack error, timeout, store unreachable, \
                  Block Kit limit broken); 2 wrong command line, config or input."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive alerts and deliver cards to Slack (or to the local sandbox
    /// when no bot token is configured).
    Serve {
        /// Config file (JSON). Without it, built-in defaults: listen on
        /// 127.0.0.1:9094, store in ./ackbar.db, sandbox mode.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Parse and validate a config file; print what it sets up.
    CheckConfig {
        /// Config file (JSON).
        file: PathBuf,
    },
    /// Print the Slack app manifest (JSON) that matches the config.
    ///
    /// Bot scopes, events, the slash command, and request URLs under
    /// `public_url` (or Socket Mode when `slack.app_token` is set). Paste it
    /// at <https://api.slack.com/apps?new_app=1> ("From a manifest").
    Manifest {
        /// Config file (JSON).
        #[arg(long, short)]
        config: PathBuf,
        /// The app's name (and its bot user's), at most 35 characters.
        #[arg(long, default_value = manifest::DEFAULT_APP_NAME)]
        name: String,
    },
    /// Print the Slack messages ackbar would send for alerts (JSON).
    ///
    /// Runs Alertmanager webhook payloads through routing, grouping and the
    /// card state machine on an in-memory store (never the configured store,
    /// never Slack) and prints, per card, each chat.postMessage/chat.update
    /// body with a Block Kit Builder link. Exits 1 when a message breaks a
    /// Block Kit limit.
    Preview {
        /// Config file (JSON) whose routes and card settings apply.
        /// Without it, the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// An Alertmanager webhook payload (JSON), or a JSON array of
        /// payloads applied in order (a firing, then its resolve...).
        alerts: PathBuf,
    },
    /// Post a test card to a Slack channel and wait until it is there.
    ///
    /// The card is labelled as a test, pages nobody (no escalation) and can
    /// be resolved. It goes through the real delivery path: the configured
    /// store, the outbox, pacing and the channel lease shared with running
    /// replicas. Prints the channel, ts and permalink; on a Slack error
    /// says what to fix and exits 1. Without `slack.bot_token` (sandbox
    /// mode) it posts to the emulator of the `ackbar serve` running with the
    /// same config, where the card shows on the /sandbox/ page.
    SendTest {
        /// Config file (JSON): its store, and `slack.bot_token` (or the
        /// running sandbox at `listen`).
        #[arg(long, short)]
        config: PathBuf,
        /// Slack channel id to post in (C..., G...); invite the bot first.
        #[arg(long)]
        channel: String,
        /// How long to wait for the card to be posted (e.g. 30s, 2m).
        #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
        timeout: Duration,
    },
    /// List pending Slack operations and dead letters; `retry ID` revives one.
    ///
    /// Columns: id, state (pending, sending, dead), kind (post, update,
    /// reply, dm), channel, card, attempts, age, last error.
    Outbox {
        /// Config file (JSON) naming the store. Without it, the built-in
        /// default store (./ackbar.db).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Only dead letters.
        #[arg(long)]
        dead: bool,
        /// A JSON array, for scripts.
        #[arg(long)]
        json: bool,
        /// At most this many operations, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(subcommand)]
        action: Option<OutboxCommand>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Put a dead letter back to pending (for a card post, with the card's
    /// other dead operations); a running ackbar then sends it.
    Retry {
        /// The operation id `ackbar outbox --dead` lists.
        id: i64,
    },
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                let routes = config.effective_routes();
                println!("{}: ok", file.display());
                println!("  listen: {}", config.listen);
                println!("  store:  {}", redact_url(&config.store.url));
                if config.sandbox_mode() {
                    println!(
                        "  slack:  sandbox mode (no bot token, no OAuth; local emulator at /sandbox/)"
                    );
                } else {
                    // How Slack's requests (clicks, commands, events) arrive.
                    let transport = if config.slack.app_token.is_some() {
                        "requests over Socket Mode".to_owned()
                    } else if let Some(url) = &config.public_url {
                        format!("requests over HTTP at {url}/slack/...")
                    } else {
                        format!(
                            "requests over HTTP at {}/slack/... (set public_url for the manifest)",
                            config.listen
                        )
                    };
                    println!(
                        "  slack:  {}; {transport}",
                        redact_url(&config.slack.api_url)
                    );
                }
                if let (Some(oauth), Some(public_url)) = (&config.slack.oauth, &config.public_url) {
                    println!(
                        "  oauth:  workspaces install at {public_url}{} (client id {})",
                        crate::slack::paths::INSTALL,
                        oauth.client_id
                    );
                }
                let otlp = &config.otlp;
                println!(
                    "  otlp:   log records with severityNumber >= {} and ERROR spans become alerts{}",
                    otlp.logs.min_severity,
                    otlp.traces
                        .trace_url
                        .as_deref()
                        .map(|url| format!("; trace links {}", redact_url(url)))
                        .unwrap_or_default()
                );
                let mut template_problems = 0;
                for r in &routes {
                    let matchers: Vec<String> =
                        r.matchers.iter().map(ToString::to_string).collect();
                    println!(
                        "  route {:?} -> {} [{}]",
                        r.name,
                        r.channel,
                        matchers.join(", ")
                    );
                    if let Some(team) = &r.team {
                        println!("    posts into workspace {team}");
                    }
                    template_problems += check_templates(&file, r);
                    if let Some(url) = &r.alertmanager_url {
                        println!("    silences via {}", redact_url(url));
                    }
                    for (i, step) in r.escalation.iter().enumerate() {
                        let who: Vec<String> =
                            step.notify.iter().map(ToString::to_string).collect();
                        println!(
                            "    escalation step {} after {:?}: {}",
                            i + 1,
                            step.after,
                            who.join(", ")
                        );
                    }
                }
                if let Ok(rotations) = crate::pipeline::oncall::Rotations::new(&config.oncall) {
                    let now = chrono::Utc::now();
                    for rotation in rotations.iter() {
                        match rotation.on_call(now) {
                            Some(shift) => println!(
                                "  on call in {:?} now: {} until {}",
                                rotation.name(),
                                shift.user,
                                shift.ends.format("%Y-%m-%d %H:%M UTC")
                            ),
                            None => println!(
                                "  on call in {:?} now: nobody (not started)",
                                rotation.name()
                            ),
                        }
                    }
                }
                let now = chrono::Utc::now();
                for digest in crate::pipeline::digest::from_config(&config.digests) {
                    if let Some(next) = digest.schedule.next_after(now) {
                        println!(
                            "  digest {:?}: next {}",
                            digest.key,
                            next.format("%Y-%m-%d %H:%M:%S UTC")
                        );
                    }
                }
                if template_problems > 0 {
                    eprintln!(
                        "{}: {template_problems} template render(s) would fall back to the default card or reply",
                        file.display()
                    );
                    return ExitCode::from(EXIT_FAILED);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Manifest { config, name } => {
            let config = match load_config(Some(&config)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match manifest(&config, &name) {
                Ok(m) => {
                    println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ackbar manifest: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Preview { config, alerts } => {
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            with_runtime(preview::run(config, alerts))
        }
        Command::SendTest {
            config,
            channel,
            timeout,
        } => {
            let config = match load_config(Some(&config)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(config.log.format, Some("warn"));
            with_runtime(send_test::run(config, channel, timeout))
        }
        Command::Outbox {
            config,
            dead,
            json,
            limit,
            action,
        } => {
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match action {
                None => with_runtime(outbox::list(config, dead, json, limit)),
                Some(OutboxCommand::Retry { id }) => with_runtime(outbox::retry(config, id)),
            }
        }
        Command::Serve { config } => {
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(config.log.format, config.log.level.as_deref());
            with_runtime(async {
                let listener = match tokio::net::TcpListener::bind(config.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!(
                            "cannot listen on {} (set \"listen\" in the config): {e}",
                            config.listen
                        );
                        return ExitCode::FAILURE;
                    }
                };
                match crate::server::run(listener, config, shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("ackbar: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

/// Renders `route`'s templates on the sample cards and replies, prints the
/// outcome and each failure; returns how many failed.
fn check_templates(file: &Path, route: &crate::config::RouteConfig) -> usize {
    use crate::slack::template::{TemplateKind, sample};
    let Some(templates) = route.template.as_ref().and_then(|t| t.compiled.as_ref()) else {
        return 0;
    };
    let problems = sample::check(route, chrono::Utc::now());
    for kind in [TemplateKind::Card, TemplateKind::Reply] {
        if templates.has(kind) {
            let failed = problems
                .iter()
                .filter(|p| p.starts_with(kind.as_str()))
                .count();
            let outcome = if failed == 0 { "ok" } else { "FAILS" };
            println!("    {kind} template: {outcome} on the sample data");
        }
    }
    for problem in &problems {
        eprintln!("{}: route {:?}: {problem}", file.display(), route.name);
    }
    problems.len()
}

/// The config at `path`, or the built-in defaults; a mistake is printed
/// with the file's name and becomes exit code 2.
fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    let loaded = match path {
        Some(path) => Config::load(path).map_err(|e| format!("{}: {e}", path.display())),
        None => Config::from_json("{}").map_err(|e| format!("built-in defaults: {e}")),
    };
    loaded.map_err(|message| {
        eprintln!("{message}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// Runs a command's future on a multi-threaded runtime.
fn with_runtime(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}
