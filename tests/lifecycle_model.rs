//! The card lifecycle against a model: random sequences of notifications,
//! duplicates, acknowledgements, escalations, restarts and Slack failures.
//! After each sequence, Slack's final state (read back from the sandbox)
//! must equal what the model predicts: one card per group that ever fired,
//! each in the right state, with exactly the thread lines its actions
//! caused.
//!
//! The test waits for the outbox to drain after every step, so a click
//! always lands on the card's current rendering, as a person's would.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ackbar::slack::sandbox::Faults;
use ackbar::store::Store;
use ackbar::store::sqlite::SqliteStore;
use proptest::prelude::*;
use serde_json::{Value, json};

use common::{
    Ackbar, CHANNEL, Slack, cards, firing, http, message_text, post_webhook, replies, resolved,
    sandbox_options, start_ackbar, start_slack, test_config, webhook,
};

const GROUPS: u8 = 2;
const ALERTS: u8 = 3;
/// Escalation steps of the route: Escalate climbs at most this far.
const STEPS: u32 = 2;
const SECRET: &str = "model-test-signing-secret";
const USER: &str = "U0ONCALL01";

#[derive(Debug, Clone)]
enum Step {
    Fire {
        group: u8,
        alert: u8,
    },
    Resolve {
        group: u8,
        alert: u8,
    },
    /// The previous notification again (Alertmanager re-sends).
    Resend,
    Acknowledge {
        group: u8,
    },
    Unacknowledge {
        group: u8,
    },
    Escalate {
        group: u8,
    },
    /// Graceful restart on the same database.
    Restart,
    /// Slack answers 5xx to a third of the calls until turned off.
    SlackErrors(bool),
}

fn step() -> impl Strategy<Value = Step> {
    let group = 0..GROUPS;
    let alert = 0..ALERTS;
    prop_oneof![
        4 => (group.clone(), alert.clone()).prop_map(|(group, alert)| Step::Fire { group, alert }),
        3 => (group.clone(), alert).prop_map(|(group, alert)| Step::Resolve { group, alert }),
        1 => Just(Step::Resend),
        2 => group.clone().prop_map(|group| Step::Acknowledge { group }),
        1 => group.clone().prop_map(|group| Step::Unacknowledge { group }),
        2 => group.prop_map(|group| Step::Escalate { group }),
        1 => Just(Step::Restart),
        1 => any::<bool>().prop_map(Step::SlackErrors),
    ]
}

/// What Slack should show for one group.
#[derive(Debug, Default, Clone)]
struct Group {
    firing: BTreeSet<u8>,
    /// Whether a card was ever posted.
    card: bool,
    acknowledged: bool,
    level: u32,
    /// Thread lines the card's actions caused, over all its episodes.
    acknowledgements: usize,
    unacknowledgements: usize,
    escalations: usize,
}

impl Group {
    fn card_firing(&self) -> bool {
        !self.firing.is_empty()
    }

    fn fire(&mut self, alert: u8) {
        if self.card && !self.card_firing() {
            // Reopened inside the window: it starts over.
            self.acknowledged = false;
            self.level = 0;
        }
        self.card = true;
        self.firing.insert(alert);
    }

    fn acknowledge(&mut self) {
        if self.card_firing() && !self.acknowledged {
            self.acknowledged = true;
            self.acknowledgements += 1;
        }
    }

    fn unacknowledge(&mut self) {
        if self.card_firing() && self.acknowledged {
            self.acknowledged = false;
            self.unacknowledgements += 1;
        }
    }

    fn escalate(&mut self) {
        if self.card_firing() && !self.acknowledged && self.level < STEPS {
            self.level += 1;
            self.escalations += 1;
        }
    }
}

fn group_name(group: u8) -> String {
    format!("g{group}")
}

fn config(api_url: &str, db: &Path) -> Value {
    let mut config = test_config(api_url, db);
    config["slack"]["signing_secret"] = json!(SECRET);
    config["delivery"]["reply_batch_window"] = json!("20ms");
    config["delivery"]["shutdown_deadline"] = json!("5s");
    config["routes"][0]["group_by"] = json!(["group"]);
    // Far-off steps: only the Escalate button climbs during a run.
    config["routes"][0]["escalation"] = json!([
        { "after": "1h", "notify": ["U0FIRSTLVL"] },
        { "after": "2h", "notify": ["U0SECONDLV"] }
    ]);
    config
}

struct Run {
    slack: Slack,
    ackbar: Option<Ackbar>,
    config: Value,
    store: SqliteStore,
}

impl Run {
    async fn start(dir: &Path) -> Run {
        let mut options = sandbox_options(&[CHANNEL]);
        options.signing_secret = Some(SECRET.to_owned());
        let slack = start_slack(options).await;
        let db = dir.join("model.db");
        let config = config(&slack.api_url, &db);
        let ackbar = start_ackbar(&config).await;
        slack.sandbox.set_app_url(Some(ackbar.base()));
        // A second handle on the same file, to see when the outbox drains.
        let store = SqliteStore::open(
            &format!("sqlite://{}", db.display()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        Run {
            slack,
            ackbar: Some(ackbar),
            config,
            store,
        }
    }

    fn ackbar(&self) -> &Ackbar {
        self.ackbar.as_ref().expect("ackbar is running")
    }

    async fn restart(&mut self) {
        if let Some(ackbar) = self.ackbar.take() {
            ackbar.stop().await;
        }
        let ackbar = start_ackbar(&self.config).await;
        self.slack.sandbox.set_app_url(Some(ackbar.base()));
        self.ackbar = Some(ackbar);
    }

    async fn notify(&self, body: &Value) {
        let r = post_webhook(&http(), &self.ackbar().url("/webhook/alertmanager"), body).await;
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    }

    /// Clicks `action_id` on the group's card as it is rendered now. A button
    /// the card does not show cannot be clicked: nothing happens, as in Slack.
    async fn click(&self, group: u8, action_id: &str) {
        let name = group_name(group);
        let Some((ts, _, card)) = cards(&self.slack.sandbox.state(), CHANNEL)
            .into_iter()
            .find(|(_, _, m)| card_group(m) == Some(name.clone()))
        else {
            return;
        };
        if !card
            .to_string()
            .contains(&format!("\"action_id\":\"{action_id}\""))
        {
            return;
        }
        let _ = self
            .slack
            .sandbox
            .click(CHANNEL, &ts, action_id, USER)
            .await;
    }

    /// Waits until nothing is left to deliver.
    async fn settle(&self) {
        common::eventually_async(Duration::from_secs(30), "the outbox drains", || async {
            self.store.outbox_summary().await.unwrap().pending == 0
        })
        .await;
    }
}

/// The `group` a card is about, from the card key in its metadata.
fn card_group(card: &Value) -> Option<String> {
    let key = card["metadata"]["event_payload"]["card_key"].as_str()?;
    let (_, group) = key.rsplit_once("group=")?;
    Some(group.to_owned())
}

async fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::start(dir.path()).await;
    let mut model: Vec<Group> = vec![Group::default(); GROUPS as usize];
    let mut last: Option<Value> = None;
    for step in &steps {
        match *step {
            Step::Fire { group, alert } => {
                let body = webhook(&group_name(group), &[firing("Down", &format!("h{alert}"))]);
                run.notify(&body).await;
                model[group as usize].fire(alert);
                last = Some(body);
            }
            Step::Resolve { group, alert } => {
                let body = webhook(
                    &group_name(group),
                    &[resolved("Down", &format!("h{alert}"))],
                );
                run.notify(&body).await;
                model[group as usize].firing.remove(&alert);
                last = Some(body);
            }
            Step::Resend => {
                if let Some(body) = &last {
                    run.notify(body).await;
                }
            }
            Step::Acknowledge { group } => {
                run.click(group, "ackbar_acknowledge").await;
                model[group as usize].acknowledge();
            }
            Step::Unacknowledge { group } => {
                run.click(group, "ackbar_unacknowledge").await;
                model[group as usize].unacknowledge();
            }
            Step::Escalate { group } => {
                run.click(group, "ackbar_escalate").await;
                model[group as usize].escalate();
            }
            Step::Restart => run.restart().await,
            Step::SlackErrors(on) => {
                let faults = Faults {
                    error_rate: if on { 0.33 } else { 0.0 },
                    ..Faults::default()
                };
                run.slack.sandbox.set_faults(faults).unwrap();
            }
        }
        run.settle().await;
    }
    run.slack.sandbox.set_faults(Faults::default()).unwrap();
    run.settle().await;

    let state = run.slack.sandbox.state();
    let posted = cards(&state, CHANNEL);
    for (g, expected) in model.iter().enumerate() {
        let name = group_name(g as u8);
        let of_group: Vec<&(String, String, Value)> = posted
            .iter()
            .filter(|(_, _, m)| card_group(m) == Some(name.clone()))
            .collect();
        let wanted = usize::from(expected.card);
        assert_eq!(
            of_group.len(),
            wanted,
            "{name}: cards {of_group:#?}\nsteps {steps:#?}"
        );
        let Some((ts, _, card)) = of_group.first() else {
            continue;
        };
        let text = message_text(card);
        let shown = card.to_string();
        let why = || format!("{name}: {expected:?}\ncard: {text}\nsteps: {steps:#?}");
        assert_eq!(
            common::is_resolved(card),
            !expected.card_firing(),
            "{}",
            why()
        );
        if expected.card_firing() {
            let button = if expected.acknowledged {
                "ackbar_unacknowledge"
            } else {
                "ackbar_acknowledge"
            };
            assert!(
                shown.contains(&format!("\"action_id\":\"{button}\"")),
                "{}",
                why()
            );
        }
        let level = (1..=STEPS).find(|l| text.contains(&format!("escalated to step {l}")));
        assert_eq!(level.unwrap_or(0), expected.level, "{}", why());

        let thread: String = replies(&state, CHANNEL, ts)
            .iter()
            .map(message_text)
            .collect();
        for (line, count) in [
            (":eyes: Acknowledged by", expected.acknowledgements),
            ("Acknowledgement taken back by", expected.unacknowledgements),
            (":rotating_light: Escalated to step", expected.escalations),
        ] {
            assert_eq!(
                thread.matches(line).count(),
                count,
                "{line:?} in the thread of {}\nthread: {thread}",
                why()
            );
        }
    }
    if let Some(ackbar) = run.ackbar.take() {
        ackbar.stop().await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    })]

    #[test]
    fn slack_ends_as_the_model_says(steps in prop::collection::vec(step(), 15..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(steps));
    }
}
