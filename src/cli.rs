//! Command line: `serve` and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, redact_url};

#[derive(Debug, Parser)]
#[command(
    name = "ackbar",
    version,
    about = "Alerts to Slack cards that on-call engineers act on."
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
                    println!("  slack:  {}", redact_url(&config.slack.api_url));
                }
                if let (Some(oauth), Some(public_url)) = (&config.slack.oauth, &config.public_url) {
                    println!(
                        "  oauth:  workspaces install at {public_url}{} (client id {})",
                        crate::slack::oauth::INSTALL_PATH,
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
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            let config = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
                None => match Config::from_json("{}") {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("built-in defaults: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            init_logging(config.log.format, config.log.level.as_deref());
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
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
