//! Requests from Slack: button clicks (block_actions) on cards, and the
//! silence modal's submission (view_submission).
//!
//! Every request is verified (v0 signature over the raw body, see
//! [`crate::slack::verify`]) before anything is parsed. A click becomes a
//! store [`Action`] (one transaction: card state, the card's update and a
//! thread reply in the outbox) and is answered as soon as that commits, well
//! inside Slack's 3 seconds. Whoever may not act gets an ephemeral refusal
//! through the click's `response_url`, and nothing changes.
//!
//! Follow-ups (a modal, an ephemeral message, a user group's members) go
//! out with the bot token of the workspace the request came from
//! ([`Workspaces::for_request`]), and a request acts only on cards of that
//! workspace's routes (`Interactions::serves`): with several workspaces
//! installed, one cannot list, acknowledge or silence another's cards.
//!
//! Idempotency comes from the state, not from remembering requests: an
//! acknowledgement applies only to an unacknowledged card, and an Escalate
//! button carries the level the card was at when rendered, so a double click
//! or a redelivered request changes state once.
//!
//! Silence is different: the click opens a modal (`views.open` with the
//! click's trigger id, inside the request, because the trigger expires 3
//! seconds after the click), and the modal's submission creates the silence
//! in Alertmanager and is answered with the outcome: an empty 200 closes the
//! modal, `response_action: errors` keeps it open with the reason next to a
//! field. Alertmanager's time is bounded by
//! [`crate::silence::ALERTMANAGER_TIMEOUT`] so the answer still comes within
//! Slack's 3 seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::config::{RouteConfig, Secret, Target};
use crate::deliver::Deliverer;
use crate::model::{CardId, CardState, CardView, ThreadEvent, is_slack_id};
use crate::pipeline::escalation;
use crate::pipeline::oncall::Rotations;
use crate::pipeline::route::Router;
use crate::silence::{self, AlertmanagerClient, Requester, SilenceError, SilenceMatcher};
use crate::slack::api::SlackClient;
use crate::slack::blocks::Message;
use crate::slack::cards::{
    ACK_ACTION_ID, ESCALATE_ACTION_ID, RESOLVE_ACTION_ID, SILENCE_ACTION_ID, UNACK_ACTION_ID,
    parse_escalate_value,
};
use crate::slack::verify;
use crate::slack::workspaces::Workspaces;
use crate::store::{Action, ActionOutcome, CardBrief, Store, StoreError};

/// How long a user group's member list is trusted before asking Slack again.
const GROUP_CACHE_TTL: Duration = Duration::from_secs(60);
/// Chars of a card id accepted back from a modal's `private_metadata`.
const MAX_CARD_ID_CHARS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum InteractError {
    #[error("request signature rejected: {0}")]
    Unsigned(#[from] verify::VerifyError),
    #[error("slack.signing_secret is not configured, so requests from Slack cannot be verified")]
    NoSigningSecret,
    #[error("malformed interaction payload: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The workspace a request came from (`team` in interaction payloads).
#[derive(Debug, Default, Deserialize)]
struct Team {
    #[serde(default)]
    id: Option<String>,
}

/// The part of a `block_actions` payload ackbar reads.
#[derive(Debug, Deserialize)]
struct BlockActions {
    user: SlackUser,
    #[serde(default)]
    team: Option<Team>,
    #[serde(default)]
    actions: Vec<ActionItem>,
    #[serde(default)]
    response_url: Option<String>,
    /// Opens a modal within 3 seconds of the click (once).
    #[serde(default)]
    trigger_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SlackUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl SlackUser {
    fn requester(&self) -> Requester {
        Requester {
            id: self.id.clone(),
            name: self.username.clone().or_else(|| self.name.clone()),
        }
    }
}

/// The part of a `view_submission` / `view_closed` payload ackbar reads.
#[derive(Debug, Deserialize)]
struct ViewPayload {
    user: SlackUser,
    #[serde(default)]
    team: Option<Team>,
    view: SubmittedView,
}

#[derive(Debug, Deserialize)]
struct SubmittedView {
    #[serde(default)]
    callback_id: String,
    #[serde(default)]
    private_metadata: String,
    #[serde(default)]
    state: SubmittedState,
}

#[derive(Debug, Default, Deserialize)]
struct SubmittedState {
    #[serde(default)]
    values: silence::StateValues,
}

#[derive(Debug, Deserialize)]
struct ActionItem {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Payload {
    BlockActions(BlockActions),
    ViewSubmission(ViewPayload),
    ViewClosed(ViewPayload),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Form {
    payload: String,
}

/// An interaction payload decoded but not yet acted on. Opaque: only the
/// handlers read it. Decoding is a step of its own, and public, so that it
/// can be tested and fuzzed (`fuzz/`) without a store or a Slack client.
#[derive(Debug)]
pub struct Interaction(Payload);

impl Interaction {
    /// Decodes a `POST /slack/interactions` body: a form whose `payload`
    /// field holds the JSON.
    pub fn from_form(body: &[u8]) -> Result<Interaction, InteractError> {
        let form: Form = serde_urlencoded::from_bytes(body).map_err(|e| {
            InteractError::Malformed(format!("expected a form with a `payload` field: {e}"))
        })?;
        Interaction::from_json(form.payload.as_bytes())
    }

    /// Decodes the JSON payload itself (what Socket Mode's `interactive`
    /// envelopes carry).
    pub fn from_json(json: &[u8]) -> Result<Interaction, InteractError> {
        serde_json::from_slice(json)
            .map(Interaction)
            .map_err(|e| InteractError::Malformed(format!("payload is not an interaction: {e}")))
    }
}

/// What the action handler decided, for the HTTP answer and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Applied,
    NoChange(String),
    Refused(String),
    Ignored,
}

/// Handles every kind of request from Slack (interactions, slash commands,
/// events). Cheap to clone.
#[derive(Clone)]
pub struct Interactions {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    deliverer: Deliverer,
    router: Arc<Router>,
    rotations: Arc<Rotations>,
    workspaces: Workspaces,
    signing_secret: Option<Secret>,
    groups: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    /// Shared by every Alertmanager call (its connection pool); made on
    /// first use.
    alertmanager_http: OnceLock<reqwest::Client>,
}

impl Interactions {
    pub fn new(
        store: Arc<dyn Store>,
        deliverer: Deliverer,
        router: Arc<Router>,
        rotations: Arc<Rotations>,
        workspaces: Workspaces,
        signing_secret: Option<Secret>,
    ) -> Interactions {
        Interactions {
            inner: Arc::new(Inner {
                store,
                deliverer,
                router,
                rotations,
                workspaces,
                signing_secret,
                groups: Mutex::new(HashMap::new()),
                alertmanager_http: OnceLock::new(),
            }),
        }
    }

    pub(super) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(super) fn workspaces(&self) -> &Workspaces {
        &self.inner.workspaces
    }

    /// Whether a request from workspace `team` may see and act on cards of
    /// `route`: routes naming a workspace serve only it; routes naming none
    /// (one workspace, or `slack.bot_token`'s) and requests that carry no
    /// team serve every one.
    pub(super) fn serves(&self, route: &str, team: Option<&str>) -> bool {
        let route_team = self
            .inner
            .router
            .by_name(route)
            .and_then(|r| r.team.as_deref());
        match (route_team, team) {
            (Some(route_team), Some(team)) => route_team == team,
            _ => true,
        }
    }

    /// The client for calls that need no token (a `response_url`).
    pub(super) fn untokened(&self) -> &SlackClient {
        self.inner.workspaces.template()
    }

    /// The client of the workspace `team` a request came from, or `None`
    /// (logged) when ackbar has no token for it.
    pub(super) async fn slack_for(&self, team: Option<&str>) -> Option<SlackClient> {
        match self.inner.workspaces.for_request(team).await {
            Ok(client) => Some(client),
            Err(e) => {
                warn!(team, error = %e, "no bot token to answer a request from this workspace");
                None
            }
        }
    }

    pub(super) fn rotations(&self) -> &Rotations {
        &self.inner.rotations
    }

    pub(super) fn deliverer(&self) -> &Deliverer {
        &self.inner.deliverer
    }

    /// Verifies the request; call before looking at the body in any way.
    pub fn verify(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<(), InteractError> {
        let secret = self
            .inner
            .signing_secret
            .as_ref()
            .ok_or(InteractError::NoSigningSecret)?;
        verify::verify(
            secret.expose().as_bytes(),
            headers,
            body,
            Utc::now().timestamp(),
        )?;
        Ok(())
    }

    /// Handles a verified `POST /slack/interactions` body; returns the JSON
    /// to answer with (`None`: an empty 200, which also closes a submitted
    /// modal).
    pub async fn interaction(&self, body: &[u8]) -> Result<Option<Value>, InteractError> {
        self.handle_interaction(Interaction::from_form(body)?).await
    }

    /// Handles an interaction payload (the JSON Slack puts in the form's
    /// `payload` field over HTTP, or in a Socket Mode envelope); returns the
    /// JSON to answer with, as [`Interactions::interaction`] does.
    pub async fn interaction_payload(&self, json: &[u8]) -> Result<Option<Value>, InteractError> {
        self.handle_interaction(Interaction::from_json(json)?).await
    }

    async fn handle_interaction(
        &self,
        Interaction(payload): Interaction,
    ) -> Result<Option<Value>, InteractError> {
        match payload {
            Payload::BlockActions(actions) => {
                self.block_actions(actions).await?;
                Ok(None)
            }
            Payload::ViewSubmission(submission) => self.view_submission(submission).await,
            Payload::ViewClosed(closed) => {
                // Only sent for modals opened with notify_on_close, which
                // ackbar's are not; nothing to clean up either way.
                debug!(
                    callback_id = closed.view.callback_id,
                    "modal closed without submitting"
                );
                Ok(None)
            }
            Payload::Other => Ok(None),
        }
    }

    async fn block_actions(&self, actions: BlockActions) -> Result<Vec<Handled>, InteractError> {
        let user = actions.user.id;
        let team = actions.team.and_then(|t| t.id);
        let team = team.as_deref();
        if !is_slack_id(&user) {
            return Err(InteractError::Malformed(
                "user.id is not a Slack user id".to_owned(),
            ));
        }
        let mut results = Vec::with_capacity(actions.actions.len());
        for item in &actions.actions {
            let handled = self
                .action(&user, team, item, actions.trigger_id.as_deref(), Utc::now())
                .await?;
            if let (Handled::Refused(text) | Handled::NoChange(text), Some(url)) =
                (&handled, &actions.response_url)
            {
                self.tell(url, text);
            }
            results.push(handled);
        }
        Ok(results)
    }

    async fn action(
        &self,
        user: &str,
        team: Option<&str>,
        item: &ActionItem,
        trigger_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Handled, InteractError> {
        let value = item.value.as_deref().unwrap_or_default();
        match item.action_id.as_str() {
            ACK_ACTION_ID => {
                self.acknowledge(user, team, &CardId(value.to_owned()), now)
                    .await
            }
            RESOLVE_ACTION_ID => {
                let by = user.to_owned();
                self.guarded(
                    user,
                    team,
                    &CardId(value.to_owned()),
                    Verb::Resolve,
                    now,
                    |_, _| Some(Action::Resolve { by }),
                )
                .await
            }
            UNACK_ACTION_ID => {
                self.unacknowledge(user, team, &CardId(value.to_owned()), now)
                    .await
            }
            ESCALATE_ACTION_ID => match parse_escalate_value(value) {
                Some((card, level)) => self.escalate(user, team, &card, level, now).await,
                None => Err(InteractError::Malformed(
                    "Escalate button value is not CARD:LEVEL".into(),
                )),
            },
            SILENCE_ACTION_ID => {
                self.open_silence_modal(user, team, &CardId(value.to_owned()), trigger_id, now)
                    .await
            }
            other => {
                debug!(
                    action_id = other,
                    "ignoring an action ackbar did not render"
                );
                Ok(Handled::Ignored)
            }
        }
    }

    /// Acknowledges a card for `user`, if the route allows them.
    pub async fn acknowledge(
        &self,
        user: &str,
        team: Option<&str>,
        card: &CardId,
        now: DateTime<Utc>,
    ) -> Result<Handled, InteractError> {
        self.guarded(user, team, card, Verb::Acknowledge, now, |_, _| {
            Some(Action::Acknowledge {
                by: user.to_owned(),
            })
        })
        .await
    }

    async fn unacknowledge(
        &self,
        user: &str,
        team: Option<&str>,
        card: &CardId,
        now: DateTime<Utc>,
    ) -> Result<Handled, InteractError> {
        self.guarded(user, team, card, Verb::Acknowledge, now, |route, brief| {
            Some(Action::Unacknowledge {
                by: user.to_owned(),
                next_escalation_at: route.and_then(|r| {
                    escalation::resume_at(r, brief.escalation_level, brief.opened_at, now)
                }),
            })
        })
        .await
    }

    async fn escalate(
        &self,
        user: &str,
        team: Option<&str>,
        card: &CardId,
        level: u32,
        now: DateTime<Utc>,
    ) -> Result<Handled, InteractError> {
        let rotations = self.inner.rotations.clone();
        self.guarded(user, team, card, Verb::Escalate, now, |route, brief| {
            escalation::next_step(
                route?,
                &rotations,
                level,
                brief.opened_at,
                Some(user.to_owned()),
                now,
            )
        })
        .await
    }

    /// Checks who may act, builds the action from the card's state and
    /// applies it. `build` returning `None` means there is nothing to do.
    async fn guarded(
        &self,
        user: &str,
        team: Option<&str>,
        card: &CardId,
        verb: Verb,
        now: DateTime<Utc>,
        build: impl FnOnce(Option<&RouteConfig>, &CardBrief) -> Option<Action>,
    ) -> Result<Handled, InteractError> {
        let Some(brief) = self
            .inner
            .store
            .card_brief(card)
            .await?
            .filter(|b| self.serves(&b.route, team))
        else {
            return Ok(Handled::NoChange(
                "That card is no longer known to ackbar.".to_owned(),
            ));
        };
        let route = self.inner.router.by_name(&brief.route);
        let allowed = route.and_then(|r| match verb {
            Verb::Acknowledge => r.allowed.acknowledge.as_ref(),
            Verb::Escalate => r.allowed.escalate.as_ref(),
            Verb::Resolve => r.allowed.resolve.as_ref(),
        });
        if let Some(allowed) = allowed
            && !self.is_allowed(user, team, allowed, now).await
        {
            crate::metrics::card_action(verb.as_str(), "refused");
            return Ok(Handled::Refused(format!(
                "You are not allowed to {} cards of route `{}`; nothing was changed.",
                verb.as_str(),
                brief.route
            )));
        }
        let Some(action) = build(route, &brief) else {
            return Ok(Handled::NoChange(no_further_step(route)));
        };
        let outcome = self.inner.store.act(card, action, now).await?;
        let label = if matches!(outcome, ActionOutcome::Applied { .. }) {
            "applied"
        } else {
            "unchanged"
        };
        crate::metrics::card_action(verb.as_str(), label);
        match outcome {
            ActionOutcome::Applied { channel } => {
                self.inner.deliverer.wake(&channel);
                Ok(Handled::Applied)
            }
            ActionOutcome::NoChange(now_brief) => Ok(Handled::NoChange(why_unchanged(&now_brief))),
            ActionOutcome::NotFound => Ok(Handled::NoChange(
                "That card is no longer known to ackbar.".to_owned(),
            )),
        }
    }

    /// Opens the silence modal for `card` with `trigger_id` (from a click or
    /// a slash command), if `user` may silence the card's route. `Applied`
    /// means the modal is open; anything else carries what to tell the user.
    pub(super) async fn open_silence_modal(
        &self,
        user: &str,
        team: Option<&str>,
        card: &CardId,
        trigger_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Handled, InteractError> {
        let target = match self.silence_target(user, team, card, true, now).await {
            Ok(target) => target,
            Err(e @ SilenceError::NotAllowed(_)) => {
                return Ok(Handled::Refused(format!("{e} Nothing was changed.")));
            }
            Err(e) => return Ok(Handled::NoChange(e.to_string())),
        };
        let Some(trigger_id) = trigger_id.filter(|t| !t.is_empty()) else {
            return Ok(Handled::NoChange(
                "Slack sent nothing to open the silence dialog with; please try again.".to_owned(),
            ));
        };
        let modal = silence::silence_modal(&target.view, &target.matchers);
        let opened = match self.slack_for(team).await {
            Some(slack) => slack.views_open(trigger_id, &modal).await.map(|_| ()),
            None => Err(crate::slack::api::SlackError::InvalidConfig {
                reason: "no bot token for the workspace".to_owned(),
            }),
        };
        match opened {
            Ok(()) => Ok(Handled::Applied),
            Err(e) => {
                warn!(card = %card, error = %e, "cannot open the silence modal");
                Ok(Handled::NoChange(
                    "Slack did not open the silence dialog in time; please try again.".to_owned(),
                ))
            }
        }
    }

    /// Everything needed to silence `card` for `user`, or why it cannot be.
    /// `opening`: refuse resolved cards (a modal already open may still be
    /// submitted after the card resolved: the person asked while it fired).
    async fn silence_target(
        &self,
        user: &str,
        team: Option<&str>,
        card: &CardId,
        opening: bool,
        now: DateTime<Utc>,
    ) -> Result<SilenceTarget, SilenceError> {
        let view = match self.inner.store.card_view(card, 1).await {
            Ok(Some(view)) if self.serves(&view.route, team) => view,
            Ok(_) => return Err(SilenceError::CardGone),
            Err(e) => {
                warn!(card = %card, error = %e, "cannot read the card to silence");
                return Err(SilenceError::Unavailable);
            }
        };
        if opening && view.state == CardState::Resolved {
            return Err(SilenceError::Resolved);
        }
        let route = self.inner.router.by_name(&view.route);
        if let Some(allowed) = route.and_then(|r| r.allowed.silence.as_ref())
            && !self.is_allowed(user, team, allowed, now).await
        {
            // Route names come from ackbar's config, not from alerts.
            return Err(SilenceError::NotAllowed(crate::slack::blocks::truncate(
                &view.route,
                100,
            )));
        }
        let Some((route, base_url)) =
            route.and_then(|r| r.alertmanager_url.clone().map(|url| (r, url)))
        else {
            return Err(SilenceError::NotConfigured);
        };
        let matchers = silence::card_matchers(&view, &route.group_by);
        if matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        Ok(SilenceTarget {
            view,
            base_url,
            matchers,
        })
    }

    /// A submission of the silence modal: validate, check who may act again
    /// (their on-call shift may have ended since the modal opened), create
    /// the silence, thread the reply. The answer keeps the modal open with
    /// errors unless the silence was created.
    async fn view_submission(
        &self,
        submission: ViewPayload,
    ) -> Result<Option<Value>, InteractError> {
        if submission.view.callback_id != silence::CALLBACK_ID {
            debug!(
                callback_id = submission.view.callback_id,
                "ignoring a submission of a modal ackbar did not open"
            );
            return Ok(None);
        }
        let requester = submission.user.requester();
        let team = submission.team.and_then(|t| t.id);
        let team = team.as_deref();
        if !is_slack_id(&requester.id) {
            return Err(InteractError::Malformed(
                "user.id is not a Slack user id".to_owned(),
            ));
        }
        let card_id = submission.view.private_metadata.trim();
        if card_id.is_empty() || card_id.chars().count() > MAX_CARD_ID_CHARS {
            return Err(InteractError::Malformed(
                "the silence modal's private_metadata is not a card id".to_owned(),
            ));
        }
        let card = CardId(card_id.to_owned());
        let form = match silence::parse_submission(&submission.view.state.values) {
            Ok(form) => form,
            Err(errors) => return Ok(Some(silence::errors_answer(&errors))),
        };
        let now = Utc::now();
        let target = match self
            .silence_target(&requester.id, team, &card, false, now)
            .await
        {
            Ok(target) => target,
            Err(e) => return Ok(Some(silence::errors_answer(&[e]))),
        };
        let new = silence::new_silence(target.matchers, &form, &requester, now);
        let created = match self.alertmanager(&target.base_url) {
            Ok(client) => client.create_silence(&new).await,
            Err(e) => Err(e),
        };
        let silence_id = match created {
            Ok(id) => id,
            Err(e) => {
                warn!(card = %card, route = target.view.route, error = %e, "Alertmanager did not create the silence");
                return Ok(Some(silence::errors_answer(&[e])));
            }
        };
        info!(card = %card, silence_id, user = requester.id, until = %new.ends_at, "silence created");
        let event = ThreadEvent::Silenced {
            by: requester.id.clone(),
            until: new.ends_at,
            silence_id: silence_id.clone(),
            comment: form.comment,
            at: now,
        };
        // The silence exists now: whatever happens to the thread reply, the
        // modal closes, or a retry would create a second silence.
        match self
            .inner
            .store
            .act(&card, Action::Note { event }, now)
            .await
        {
            Ok(ActionOutcome::Applied { channel }) => self.inner.deliverer.wake(&channel),
            Ok(outcome) => {
                warn!(card = %card, ?outcome, silence_id, "silence created but not noted in the card's thread");
            }
            Err(e) => {
                warn!(card = %card, error = %e, silence_id, "silence created but not noted in the card's thread");
                self.whisper(
                    team,
                    &target.view.channel,
                    &requester.id,
                    format!(
                        "Silence `{}` was created in Alertmanager, but ackbar could not note it in the card's thread.",
                        crate::slack::blocks::untrusted(&crate::slack::blocks::truncate(
                            &silence_id,
                            64
                        ))
                    ),
                );
            }
        }
        Ok(None)
    }

    fn alertmanager(&self, base_url: &str) -> Result<AlertmanagerClient, SilenceError> {
        let http = match self.inner.alertmanager_http.get() {
            Some(http) => http.clone(),
            None => {
                let http = silence::http_client()?;
                self.inner.alertmanager_http.get_or_init(|| http).clone()
            }
        };
        Ok(AlertmanagerClient::with_http(
            http,
            base_url,
            silence::ALERTMANAGER_TIMEOUT,
        ))
    }

    /// An ephemeral message to `user` in `channel`, without holding up the
    /// HTTP answer.
    fn whisper(&self, team: Option<&str>, channel: &str, user: &str, text: String) {
        let this = self.clone();
        let (team, channel, user) = (team.map(str::to_owned), channel.to_owned(), user.to_owned());
        tokio::spawn(async move {
            let Some(slack) = this.slack_for(team.as_deref()).await else {
                return;
            };
            let message = Message::new(text, []);
            if let Err(e) = slack.post_ephemeral(&channel, &user, &message, None).await {
                warn!(error = %e, "cannot post an ephemeral message");
            }
        });
    }

    /// Whether `user` is one of `allowed`, directly, through a user group,
    /// or by being on call in a listed rotation.
    async fn is_allowed(
        &self,
        user: &str,
        team: Option<&str>,
        allowed: &[Target],
        now: DateTime<Utc>,
    ) -> bool {
        for target in allowed {
            let ok = match target {
                Target::User(id) => id == user,
                Target::Rotation(name) => self
                    .inner
                    .rotations
                    .get(name)
                    .and_then(|r| r.on_call(now))
                    .is_some_and(|shift| shift.user == user),
                Target::Group(group) => self
                    .group_members(group, team)
                    .await
                    .iter()
                    .any(|m| m == user),
            };
            if ok {
                return true;
            }
        }
        false
    }

    async fn group_members(&self, group: &str, team: Option<&str>) -> Vec<String> {
        if let Some((at, members)) = lock(&self.inner.groups).get(group)
            && at.elapsed() < GROUP_CACHE_TTL
        {
            return members.clone();
        }
        let Some(slack) = self.slack_for(team).await else {
            return Vec::new(); // fail closed, as below
        };
        match slack.usergroups_users_list(group).await {
            Ok(members) => {
                lock(&self.inner.groups)
                    .insert(group.to_owned(), (Instant::now(), members.clone()));
                members
            }
            Err(e) => {
                // Fail closed: without the member list nobody passes as a member.
                warn!(group, error = %e, "cannot list user group members; treating as not a member");
                Vec::new()
            }
        }
    }

    /// Answers the clicking user alone, through the click's response_url,
    /// without holding up the HTTP answer.
    fn tell(&self, response_url: &str, text: &str) {
        let slack = self.untokened().clone();
        let url = response_url.to_owned();
        let body = json!({ "response_type": "ephemeral", "replace_original": false, "text": text });
        tokio::spawn(async move {
            if let Err(e) = slack.post_response_url(&url, &body).await {
                warn!(error = %e, "cannot answer through response_url");
            }
        });
    }
}

/// A card about to be silenced: its view, the Alertmanager of its route and
/// the matchers ([`silence::card_matchers`]).
struct SilenceTarget {
    view: CardView,
    base_url: String,
    matchers: Vec<SilenceMatcher>,
}

#[derive(Debug, Clone, Copy)]
enum Verb {
    Acknowledge,
    Escalate,
    Resolve,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Acknowledge => "acknowledge",
            Verb::Escalate => "escalate",
            Verb::Resolve => "resolve",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn no_further_step(route: Option<&RouteConfig>) -> String {
    match route {
        Some(r) if r.escalation.is_empty() => {
            format!(
                "Route `{}` has no escalation policy; nothing was changed.",
                r.name
            )
        }
        _ => "The card is already at the last escalation step.".to_owned(),
    }
}

fn why_unchanged(brief: &CardBrief) -> String {
    if brief.state == crate::model::CardState::Resolved {
        return "The card is resolved; nothing was changed.".to_owned();
    }
    match &brief.acked_by {
        Some(by) => format!("Already acknowledged by <@{by}>; nothing was changed."),
        None => "Someone acted on this card a moment ago; nothing more was changed.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_decodes_the_same_over_http_and_socket_mode() {
        let json = r#"{"type":"block_actions","user":{"id":"U0ALICE01"},"actions":[{"action_id":"ack","value":"c+1 %"}]}"#;
        let form = format!(
            "payload={}",
            serde_urlencoded::to_string([("", json)])
                .expect("a form")
                .trim_start_matches('=')
        );
        for decoded in [
            Interaction::from_json(json.as_bytes()),
            Interaction::from_form(form.as_bytes()),
        ] {
            assert!(
                matches!(&decoded, Ok(Interaction(Payload::BlockActions(a))) if a.actions[0].value.as_deref() == Some("c+1 %")),
                "{decoded:?}"
            );
        }
        for body in [&b"payload="[..], b"payload=%7B%7D", b"nopayload=1", b"\xff"] {
            assert!(
                matches!(
                    Interaction::from_form(body),
                    Err(InteractError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }
}
