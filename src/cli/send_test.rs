//! `ackbar send-test`: a test card through the real delivery path.
//!
//! The test alert goes through the pipeline into the configured store (one
//! transaction with its outbox post), and a [`Deliverer`] sends it under
//! the channel's lease, paced like any card: a running replica on the same
//! store never sends the channel's operations at the same time. The card is
//! labelled as a test, has no escalation policy (it pages nobody), offers
//! Resolve, and resolves by itself after [`TEST_QUIET_PERIOD`] on a running
//! ackbar.
//!
//! In sandbox mode (no bot token) Slack is the emulator of the `ackbar serve`
//! running with the same config: the card shows on its `/sandbox/` page,
//! and since both use the config's store, its buttons work there.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::outbox::open_store;
use super::{EXIT_FAILED, EXIT_USAGE};
use crate::config::{Config, RouteConfig};
use crate::deliver::Deliverer;
use crate::ingest::alertmanager::fingerprint;
use crate::model::is_slack_id;
use crate::model::{Alert, AlertStatus, CardId, Labels, Notification, Occurrences, Source};
use crate::pipeline::Pipeline;
use crate::pipeline::route::Router;
use crate::slack::api::SlackClient;
use crate::slack::workspaces::Workspaces;
use crate::store::{OpState, Store};

/// The route the test card belongs to (it is not one of the config's).
pub const TEST_ROUTE: &str = "ackbar-send-test";
/// The test card resolves this long after it was sent.
const TEST_QUIET_PERIOD: Duration = Duration::from_secs(5 * 60);
/// How often the store is asked whether the card went out.
const POLL: Duration = Duration::from_millis(100);
/// How long delivery may finish other work before the command exits.
const DRAIN: Duration = Duration::from_secs(2);

pub(super) async fn run(config: Config, channel: String, timeout: Duration) -> ExitCode {
    if !is_slack_id(&channel) {
        eprintln!(
            "--channel takes a channel id such as C0123ABCD, not {channel:?}: in Slack, open the channel's details; the id is at the bottom"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let (api, token) = match slack_client(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Without a bot token, the card goes out with the only installed
    // workspace's token (OAuth); several installed is an error saying so.
    let install_url = format!(
        "{}{}",
        config.public_url.as_deref().unwrap_or_default(),
        crate::slack::paths::INSTALL
    );
    let workspaces = match Workspaces::new(
        store.clone(),
        api,
        token.as_deref(),
        config.slack.oauth.is_some(),
        install_url,
    ) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let slack = match workspaces.for_route(None).await {
        Ok(slack) => slack,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let test_route = RouteConfig {
        name: TEST_ROUTE.to_owned(),
        channel: channel.clone(),
        quiet_period: TEST_QUIET_PERIOD,
        escalation: Vec::new(),
        ..RouteConfig::catch_all()
    };
    let pipeline = Pipeline::new(
        Arc::new(Router::new(vec![test_route.clone()])),
        store.clone(),
        config.delivery.reply_batch_window,
    );
    let card = match pipeline.ingest(test_notification(), Utc::now()).await {
        Ok(report) => match report.outcomes.first().and_then(|o| o.card.clone()) {
            Some(card) => card,
            None => {
                eprintln!("the test alert made no card (this is a bug in ackbar)");
                return ExitCode::from(EXIT_FAILED);
            }
        },
        Err(e) => {
            eprintln!("cannot store the test card: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };

    // Delivery renders other cards it may send meanwhile with their routes.
    let mut routes = config.effective_routes();
    routes.push(test_route);
    let (deliverer, supervisor) = Deliverer::start(
        store.clone(),
        workspaces,
        Arc::new(Router::new(routes)),
        config.delivery.clone(),
    );
    deliverer.wake(&channel);
    let result = wait_for_post(&*store, &card, timeout).await;
    deliverer.drain(DRAIN).await;
    supervisor.abort();

    match result {
        Ok(ts) => {
            println!("posted test card {card} to {channel} at ts {ts}");
            match slack.get_permalink(&channel, &ts).await {
                Ok(link) => println!("{link}"),
                Err(e) => eprintln!("(no permalink: {e})"),
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The Web API client without a token, and the token to post with: Slack
/// with the configured bot token (or, with OAuth and none, the installed
/// workspaces' tokens), or in sandbox mode the emulator of the `ackbar
/// serve` running with this config (its `listen` address), so that the test
/// card shows on the sandbox page and its buttons work there: both share
/// the config's store.
async fn slack_client(config: &Config) -> Result<(SlackClient, Option<String>), ExitCode> {
    let (api_url, token) = match config.slack.bot_token.as_ref() {
        Some(token) => (
            config.slack.api_url.clone(),
            Some(token.expose().to_owned()),
        ),
        None if !config.sandbox_mode() => (config.slack.api_url.clone(), None),
        None => {
            let server = local_address(config.listen);
            let running = reqwest::Client::new()
                .get(format!("http://{server}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !running {
                eprintln!(
                    "no bot token in the config, so send-test posts to the sandbox of a running `ackbar serve`, \
                     but nothing answers on http://{server}/: start `ackbar serve --config FILE` with this config first, \
                     or set \"slack.bot_token\" to post to Slack"
                );
                return Err(ExitCode::from(EXIT_FAILED));
            }
            (
                format!("http://{server}/sandbox/api"),
                Some(crate::server::SANDBOX_TOKEN.to_owned()),
            )
        }
    };
    let client =
        SlackClient::without_token(&api_url, config.slack.request_timeout).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EXIT_USAGE)
        })?;
    Ok((client, token))
}

/// Where to reach a server listening on `listen`: a wildcard address is
/// reached on loopback.
fn local_address(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, listen.port()).into()
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, listen.port()).into()
        }
        _ => listen,
    }
}

/// A firing alert that says what it is.
fn test_notification() -> Notification {
    let now = Utc::now();
    let labels: Labels = [
        ("alertname", "AckbarSendTest"),
        ("severity", "info"),
        ("source", "ackbar send-test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("test_id".to_owned(), CardId::random().0[..8].to_owned())])
    .collect();
    let annotations: Labels = [(
        "summary".to_owned(),
        format!(
            "Test card from `ackbar send-test`: delivery to this channel works. Nobody is paged; \
             resolve it, or it resolves by itself {} minutes after it was sent.",
            TEST_QUIET_PERIOD.as_secs() / 60
        ),
    )]
    .into_iter()
    .collect();
    Notification {
        source: Source::Tracing,
        group_labels: Labels::new(),
        common_labels: labels.clone(),
        common_annotations: annotations.clone(),
        alerts: vec![Alert {
            fingerprint: fingerprint(&labels),
            status: AlertStatus::Firing,
            labels,
            annotations,
            starts_at: now,
            ends_at: None,
            generator_url: None,
            occurrences: Some(Occurrences {
                count: 1,
                last_seen: now,
            }),
        }],
        truncated_alerts: 0,
    }
}

/// Waits until the card has a ts, its post is a dead letter, or `timeout`.
async fn wait_for_post(
    store: &dyn Store,
    card: &CardId,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let brief = store
            .card_brief(card)
            .await
            .map_err(|e| format!("cannot read the store: {e}"))?;
        if let Some(ts) = brief.and_then(|b| b.ts) {
            return Ok(ts);
        }
        let ops = store
            .outbox_entries(false, u32::MAX)
            .await
            .map_err(|e| format!("cannot read the outbox: {e}"))?;
        let mine = ops.iter().find(|o| o.card.as_ref() == Some(card));
        if let Some(dead) = mine.filter(|o| o.state == OpState::Dead) {
            let error = dead.last_error.as_deref().unwrap_or("unknown error");
            return Err(format!(
                "Slack refused the test card: {error}\n{}\n(the card stays as dead letter {}: `ackbar outbox retry {}` sends it again once fixed)",
                advice(error),
                dead.id,
                dead.id
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            let last = mine
                .and_then(|o| o.last_error.as_deref())
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(format!(
                "the test card was not posted within {}s{last}; it stays in the outbox and a running ackbar sends it (see `ackbar outbox`)",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What to do about a Slack error code.
fn advice(error: &str) -> &'static str {
    const ADVICE: &[(&str, &str)] = &[
        (
            "not_in_channel",
            "invite the bot to the channel first: /invite @<your app> in that channel",
        ),
        (
            "channel_not_found",
            "check the channel id (channel details, at the bottom); for a private channel invite the bot first",
        ),
        (
            "is_archived",
            "the channel is archived: unarchive it or pick another",
        ),
        (
            "invalid_auth",
            "check \"slack.bot_token\": it must be the xoxb- bot token of the installed app",
        ),
        (
            "not_authed",
            "check \"slack.bot_token\": it must be the xoxb- bot token of the installed app",
        ),
        (
            "token_revoked",
            "the bot token was revoked: reinstall the app and update \"slack.bot_token\"",
        ),
        (
            "account_inactive",
            "the bot token's app was uninstalled: reinstall it and update \"slack.bot_token\"",
        ),
        (
            "missing_scope",
            "the app lacks a scope: update it from `ackbar manifest` and reinstall",
        ),
    ];
    ADVICE.iter().find(|(code, _)| error.contains(code)).map_or(
        "see the Slack error above; `ackbar outbox --dead` lists what failed",
        |(_, advice)| advice,
    )
}
