//! Embedded mode: all of ackbar inside a host process.
//!
//! A [`Bridge`] runs what `ackbar serve` runs (store, pipeline, delivery,
//! timers, the Slack endpoints, and in sandbox mode the Slack emulator) on a
//! thread of its own with its own runtime, listening on loopback. The
//! `tracing` Layer feeds it through [`Sink`]: a host's errors become cards
//! without a second service to deploy.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let bridge = ackbar::Bridge::builder().build()?; // sandbox, in-memory store
//! println!("cards at {}/sandbox/api/state", bridge.url());
//! let (layer, _guard) = ackbar::layer().build_with(bridge)?;
//! tracing_subscriber::registry().with(layer).init();
//! tracing::error!(order = 7, "payment failed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::config::{Config, ConfigError, RouteConfig, Secret, StoreConfig};
use crate::ingest::layer::{EventRecord, Sink};
use crate::model::{Alert, Notification, Occurrences, Source};
use crate::pipeline::IngestReport;
use crate::server::{self, Embedding, Inbound, ServerError};
use crate::store::StoreError;

/// Notifications waiting for the bridge's runtime; the Layer's worker waits
/// for each answer, so this only needs to cover a short burst.
const INBOUND_CAPACITY: usize = 16;
/// Tries per notification while the store is busy, before giving it up.
const STORE_ATTEMPTS: u32 = 5;
const STORE_RETRY_BASE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid bridge configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot start the bridge: {0}")]
    Start(String),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("the bridge has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds a [`Bridge`]. Defaults: sandbox mode (no Slack account needed), an
/// in-memory store, one catch-all route, loopback on an ephemeral port.
#[derive(Debug)]
#[must_use]
pub struct BridgeBuilder {
    config: Config,
    listen: SocketAddr,
    channel: Option<String>,
    quiet_period: Option<Duration>,
}

impl BridgeBuilder {
    /// Starts from a full configuration (routes, escalation, Slack, store),
    /// as `ackbar serve` reads it. Its `listen` is ignored: see
    /// [`BridgeBuilder::listen`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Keeps cards and the outbox in a SQLite file, so they survive
    /// restarts. The default keeps them in memory.
    pub fn store_path(mut self, path: impl AsRef<Path>) -> Self {
        self.config.store.url = format!("sqlite://{}", path.as_ref().display());
        self
    }

    /// Keeps cards and the outbox in memory (the default).
    pub fn store_in_memory(mut self) -> Self {
        self.config.store.url = "sqlite::memory:".to_owned();
        self
    }

    /// Posts to a real Slack workspace with this bot token instead of the
    /// sandbox.
    pub fn slack_bot_token(mut self, token: impl Into<String>) -> Self {
        self.config.slack.bot_token = Some(Secret::Resolved(token.into()));
        self
    }

    /// Receives button presses over Socket Mode with this app-level token,
    /// so the host needs no public endpoint.
    pub fn slack_app_token(mut self, token: impl Into<String>) -> Self {
        self.config.slack.app_token = Some(Secret::Resolved(token.into()));
        self
    }

    /// Verifies requests Slack sends to the bridge's HTTP endpoints.
    pub fn slack_signing_secret(mut self, secret: impl Into<String>) -> Self {
        self.config.slack.signing_secret = Some(Secret::Resolved(secret.into()));
        self
    }

    /// Posts every card to `channel` (a Slack channel id) through one
    /// catch-all route, replacing configured routes.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// How long an error must stay away before its card resolves, on every
    /// route (default: the route's `quiet_period`, 30 minutes).
    pub fn quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet_period = Some(quiet);
        self
    }

    /// Where the bridge's HTTP endpoints (Slack requests, metrics, the
    /// sandbox) listen. Default `127.0.0.1:0`: loopback, any free port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Validates the configuration and starts the bridge's thread. Returns
    /// once it is listening.
    pub fn build(self) -> Result<Bridge, BridgeError> {
        let mut config = self.config;
        if let Some(channel) = self.channel {
            config.routes = vec![RouteConfig {
                channel,
                ..RouteConfig::catch_all()
            }];
        }
        if let Some(quiet) = self.quiet_period {
            config.routes = config
                .effective_routes()
                .into_iter()
                .map(|route| RouteConfig {
                    quiet_period: quiet,
                    ..route
                })
                .collect();
        }
        config.listen = self.listen;
        config.validate()?;
        Bridge::start(config)
    }
}

/// All of ackbar in-process; see the [module docs](self). Feed it with
/// [`crate::layer`]'s `build_with`, or call [`Bridge::ingest`]. Dropping it
/// (or the Layer's guard that owns it) stops it, delivering what it can
/// within `delivery.shutdown_deadline`.
#[derive(Debug)]
pub struct Bridge {
    addr: SocketAddr,
    sandbox: bool,
    shutdown_deadline: Duration,
    inbound: Option<mpsc::Sender<Inbound>>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<std_mpsc::Receiver<Result<(), ServerError>>>,
    thread: Option<JoinHandle<()>>,
}

impl Bridge {
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder {
            config: Config {
                store: StoreConfig {
                    url: "sqlite::memory:".to_owned(),
                    ..StoreConfig::default()
                },
                ..Config::default()
            },
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            channel: None,
            quiet_period: None,
        }
    }

    fn start(config: Config) -> Result<Bridge, BridgeError> {
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (stopped_tx, stopped_rx) = std_mpsc::channel();
        let sandbox = config.sandbox_mode();
        let shutdown_deadline = config.delivery.shutdown_deadline;
        let listen = config.listen;
        let thread = std::thread::Builder::new()
            .name("ackbar-bridge".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_start(crate::ingest::layer::mark_worker_thread)
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                crate::ingest::layer::mark_worker_thread();
                let result = runtime.block_on(async move {
                    let listener = match TcpListener::bind(listen).await {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr());
                    let stop = async {
                        let _ = stop_rx.await;
                    };
                    let embedding = Embedding {
                        inbound: inbound_rx,
                    };
                    server::run_embedded(listener, config, stop, embedding).await
                });
                let _ = stopped_tx.send(result);
            })
            .map_err(|e| BridgeError::Start(e.to_string()))?;
        let addr = match ready_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => return Err(BridgeError::Start(e.to_string())),
            // The thread ended before listening: the server failed to start
            // (the store could not open, ...).
            Err(_) => {
                let _ = thread.join();
                return Err(match stopped_rx.try_recv() {
                    Ok(Err(e)) => e.into(),
                    _ => BridgeError::Start("the bridge thread ended early".to_owned()),
                });
            }
        };
        Ok(Bridge {
            addr,
            sandbox,
            shutdown_deadline,
            inbound: Some(inbound_tx),
            stop: Some(stop_tx),
            stopped: Some(stopped_rx),
            thread: Some(thread),
        })
    }

    /// Base URL of the bridge's HTTP endpoints, e.g. `http://127.0.0.1:40213`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether cards go to the local Slack emulator (no bot token): its
    /// state is at `{url}/sandbox/api/state`.
    pub fn is_sandbox(&self) -> bool {
        self.sandbox
    }

    /// Applies a notification through the pipeline. `Ok` means every change
    /// it causes is durable in the bridge's store.
    // Not an `async fn`: the future holds a clone of the sender rather than
    // `&self`, so it is `Send` although the bridge is not `Sync`.
    pub fn ingest(
        &self,
        notification: Notification,
    ) -> impl Future<Output = Result<IngestReport, BridgeError>> + Send + 'static {
        let inbound = self.inbound.clone();
        async move {
            let inbound = inbound.ok_or(BridgeError::Stopped)?;
            let (answer, answered) = oneshot::channel();
            inbound
                .send((notification, answer))
                .await
                .map_err(|_| BridgeError::Stopped)?;
            Ok(answered.await.map_err(|_| BridgeError::Stopped)??)
        }
    }

    /// Stops accepting, delivers what it can within `deadline` (and the
    /// configured `delivery.shutdown_deadline`), and returns. A bridge still
    /// delivering at the deadline is left to finish on its own thread.
    pub fn shutdown(&mut self, deadline: Duration) -> Result<(), BridgeError> {
        self.inbound = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(stopped) = self.stopped.take() else {
            return Ok(());
        };
        match stopped.recv_timeout(deadline) {
            Ok(result) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                Ok(result?)
            }
            Err(_) => Ok(()),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.shutdown(self.shutdown_deadline + Duration::from_secs(1));
    }
}

/// Folds a batch of events into one alert per group key, counting its
/// occurrences: the first occurrence's fields and spans describe the alert,
/// the last one's time is when it was last seen.
fn fold_occurrences(batch: &[EventRecord]) -> Vec<Alert> {
    let mut alerts: Vec<Alert> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for record in batch {
        match index.get(&record.group_key) {
            Some(&i) => {
                if let Some(o) = alerts[i].occurrences.as_mut() {
                    o.count += 1;
                    o.last_seen = o.last_seen.max(record.time);
                }
            }
            None => {
                let mut alert = record.to_alert();
                alert.occurrences = Some(Occurrences {
                    count: 1,
                    last_seen: record.time,
                });
                index.insert(record.group_key, alerts.len());
                alerts.push(alert);
            }
        }
    }
    alerts
}

#[async_trait]
impl Sink for Bridge {
    async fn send(&mut self, batch: Vec<EventRecord>) {
        let alerts = fold_occurrences(&batch);
        if alerts.is_empty() {
            return;
        }
        let notification = Notification {
            source: Source::Tracing,
            group_labels: Default::default(),
            common_labels: Default::default(),
            common_annotations: Default::default(),
            alerts,
            truncated_alerts: 0,
        };
        let mut wait = STORE_RETRY_BASE;
        for attempt in 1..=STORE_ATTEMPTS {
            match self.ingest(notification.clone()).await {
                Ok(_) => return,
                Err(BridgeError::Stopped) => break,
                Err(e) if attempt < STORE_ATTEMPTS => {
                    warn!(error = %e, "cannot store events; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => warn!(error = %e, "cannot store events; giving them up"),
            }
        }
        crate::metrics::layer_events_dropped("store", batch.len() as u64);
    }

    async fn close(&mut self, deadline: tokio::time::Instant) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut bridge = std::mem::replace(
            self,
            Bridge {
                addr: self.addr,
                sandbox: self.sandbox,
                shutdown_deadline: self.shutdown_deadline,
                inbound: None,
                stop: None,
                stopped: None,
                thread: None,
            },
        );
        // Joining the bridge's thread blocks: not on the Layer's runtime.
        let _ = tokio::task::spawn_blocking(move || bridge.shutdown(left)).await;
    }
}
