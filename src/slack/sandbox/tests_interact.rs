//! The sandbox acting as Slack toward an app: a tiny axum app on loopback
//! records what it receives and answers what each test tells it to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;
use crate::slack::api::{SlackClient, SlackError};
use crate::slack::blocks::{Message, Metadata};
use crate::slack::verify::{self, VerifyError};

const CH: &str = "C0ALERTS01";
const TOKEN: &str = "xoxb-sandbox-test-token";
const SECRET: &str = "sandbox-signing-secret";
const ALICE: &str = "U0ALICE001";
const BOB: &str = "U0BOB00001";

/// One request the app received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Per path: status, body, content type, delay.
type Answers = HashMap<String, (u16, String, &'static str, Duration)>;

#[derive(Clone, Default)]
struct App {
    seen: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<Answers>>,
}

impl App {
    fn answer(&self, path: &str, status: u16, body: &str) {
        let ct = if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain"
        };
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                path.to_owned(),
                (status, body.to_owned(), ct, Duration::ZERO),
            );
    }

    fn delay(&self, path: &str, delay: Duration) {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_owned(), (200, String::new(), "text/plain", delay));
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn last(&self) -> Received {
        self.seen().pop().expect("the app received a request")
    }
}

async fn app_handler(State(app): State<App>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default()
        .to_vec();
    app.seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Received {
            path: path.clone(),
            headers,
            body,
        });
    let answer = app
        .answers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&path)
        .cloned();
    let (status, body, ct, delay) =
        answer.unwrap_or((200, String::new(), "text/plain", Duration::ZERO));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = axum::http::StatusCode::from_u16(status).unwrap_or_default();
    (status, [("content-type", ct)], body).into_response()
}

struct Harness {
    sandbox: Sandbox,
    client: SlackClient,
    base: String,
    app: App,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn options() -> SandboxOptions {
    SandboxOptions {
        token: Some(TOKEN.to_owned()),
        signing_secret: Some(SECRET.to_owned()),
        post_per_channel: RateLimit::UNLIMITED,
        update_limit: RateLimit::UNLIMITED,
        ..SandboxOptions::with_channels([CH])
    }
}

async fn start(opts: SandboxOptions) -> Harness {
    let app = App::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let app_addr = listener.local_addr().expect("addr");
    let router = axum::Router::new()
        .fallback(app_handler)
        .with_state(app.clone());
    let app_task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let sandbox = Sandbox::new(opts);
    sandbox.set_app_url(Some(format!("http://{app_addr}")));
    let (base, task) = spawn_standalone(sandbox.clone()).await.expect("bind");
    let sb_task = tokio::spawn(async move {
        let _ = task.await;
    });
    let client = SlackClient::new(&base, TOKEN, Duration::from_secs(5)).expect("client");
    Harness {
        sandbox,
        client,
        base,
        app,
        tasks: vec![app_task, sb_task],
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Decode `application/x-www-form-urlencoded`.
fn form(body: &[u8]) -> HashMap<String, String> {
    fn dec(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf-8")
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

fn payload(r: &Received) -> Value {
    let f = form(&r.body);
    serde_json::from_str(f.get("payload").expect("payload field")).expect("payload json")
}

fn card() -> Message {
    use crate::slack::blocks::{Actions, Button, ButtonStyle, Section};
    let actions = Actions::new([
        Button::new("Acknowledge", "ack", "card-k1").style(ButtonStyle::Primary),
        Button::new("Silence 1h", "silence", "card-k1:1h"),
    ])
    .expect("buttons")
    .block_id("actions");
    Message::builder("DiskFull on db-1")
        .block(Section::mrkdwn("*DiskFull* on db-1").block_id("summary"))
        .block(actions)
        .metadata(Metadata {
            event_type: "ackbar_card".into(),
            event_payload: json!({"card_key": "k1"}),
        })
        .build()
}

fn modal(title: &str) -> Value {
    json!({"type": "modal", "callback_id": "ack_note", "private_metadata": "card-k1",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Save"},
        "blocks": [{"type": "input", "block_id": "note", "label": {"type": "plain_text", "text": "Note"},
            "element": {"type": "plain_text_input", "action_id": "text"}}]})
}

/// Click `ack` on a fresh card; the payload the app received.
async fn click_ack(h: &Harness) -> (String, Value) {
    let posted = h
        .client
        .post_message(CH, &card(), None)
        .await
        .expect("post");
    let resp = h
        .sandbox
        .click(CH, &posted.ts, "ack", ALICE)
        .await
        .expect("click");
    assert_eq!(resp.status, 200);
    (posted.ts, payload(&h.app.last()))
}

async fn open_modal(h: &Harness, title: &str) -> crate::slack::api::ViewInfo {
    let (_, p) = click_ack(h).await;
    let trigger = p["trigger_id"].as_str().expect("trigger_id");
    h.client
        .views_open(trigger, &modal(title))
        .await
        .expect("views.open")
}

#[tokio::test]
async fn click_sends_a_signed_block_actions_payload_with_the_button_value() {
    let h = start(options()).await;
    let posted = h
        .client
        .post_message(CH, &card(), None)
        .await
        .expect("post");
    h.app.answer("/slack/interactions", 200, "");
    let resp = h
        .sandbox
        .click(CH, &posted.ts, "ack", ALICE)
        .await
        .expect("click");
    assert_eq!((resp.status, resp.body.as_str()), (200, ""));

    let got = h.app.last();
    assert_eq!(got.path, "/slack/interactions");
    assert_eq!(
        got.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        verify::verify(SECRET.as_bytes(), &got.headers, &got.body, now()),
        Ok(())
    );
    let p = payload(&got);
    assert_eq!(p, resp.sent);
    assert_eq!(p["type"], "block_actions");
    assert_eq!(p["user"]["id"], ALICE);
    assert_eq!(p["user"]["team_id"], state::TEAM_ID);
    assert_eq!(p["team"]["id"], state::TEAM_ID);
    assert_eq!(p["api_app_id"], interact::APP_ID);
    assert_eq!(p["channel"]["id"], CH);
    assert_eq!(
        p["container"],
        json!({"type": "message", "message_ts": posted.ts, "channel_id": CH, "is_ephemeral": false})
    );
    assert_eq!(p["message"]["ts"], json!(posted.ts));
    assert_eq!(
        p["message"]["metadata"]["event_payload"],
        json!({"card_key": "k1"})
    );
    let action = &p["actions"][0];
    assert_eq!(action["action_id"], "ack");
    assert_eq!(action["block_id"], "actions");
    assert_eq!(action["value"], "card-k1");
    assert_eq!(action["type"], "button");
    assert!(
        action["action_ts"]
            .as_str()
            .is_some_and(|t| t.contains('.'))
    );
    assert!(p["trigger_id"].as_str().is_some_and(|t| !t.is_empty()));
    let url = p["response_url"].as_str().expect("response_url");
    assert!(
        url.starts_with(&format!("{}/_response/", h.base)),
        "{url} vs {}",
        h.base
    );

    let acts = h.sandbox.state().acts;
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].kind, "block_actions");
    assert_eq!(acts[0].status, Some(200));

    // A button that does not exist, a message that does not exist.
    assert!(matches!(
        h.sandbox.click(CH, &posted.ts, "nope", ALICE).await,
        Err(ActError::ActionNotFound(_))
    ));
    assert!(matches!(
        h.sandbox.click(CH, "1.000001", "ack", ALICE).await,
        Err(ActError::MessageNotFound { .. })
    ));
    assert!(matches!(
        h.sandbox.click(CH, &posted.ts, "ack", "not-a-user").await,
        Err(ActError::UnknownUser(_))
    ));
}

#[tokio::test]
async fn clicking_without_app_url_or_signing_secret_is_refused() {
    let h = start(SandboxOptions {
        signing_secret: None,
        ..options()
    })
    .await;
    let posted = h
        .client
        .post_message(CH, &card(), None)
        .await
        .expect("post");
    assert_eq!(
        h.sandbox.click(CH, &posted.ts, "ack", ALICE).await,
        Err(ActError::NoSigningSecret)
    );
    h.sandbox.set_app_url(None);
    assert_eq!(
        h.sandbox.click(CH, &posted.ts, "ack", ALICE).await,
        Err(ActError::NoAppUrl)
    );
    assert!(h.app.seen().is_empty());
}

#[tokio::test]
async fn an_app_slower_than_slacks_timeout_is_reported() {
    let h = start(SandboxOptions {
        app_timeout: Duration::from_millis(200),
        ..options()
    })
    .await;
    h.app.delay("/slack/interactions", Duration::from_secs(2));
    let posted = h
        .client
        .post_message(CH, &card(), None)
        .await
        .expect("post");
    let err = h
        .sandbox
        .click(CH, &posted.ts, "ack", ALICE)
        .await
        .expect_err("timeout");
    assert_eq!(err, ActError::Timeout { after_ms: 200 });
    let acts = h.sandbox.state().acts;
    assert_eq!(acts[0].status, None);
    assert!(acts[0].error.is_some());
}

#[tokio::test]
async fn trigger_ids_are_single_use_and_expire() {
    let h = start(SandboxOptions {
        trigger_ttl: Duration::from_millis(500),
        ..options()
    })
    .await;
    let (_, p) = click_ack(&h).await;
    let trigger = p["trigger_id"].as_str().expect("trigger").to_owned();
    let view = h
        .client
        .views_open(&trigger, &modal("Acknowledge"))
        .await
        .expect("views.open");
    assert!(
        view.id.starts_with('V') && !view.hash.is_empty(),
        "{view:?}"
    );
    let again = h.client.views_open(&trigger, &modal("Again")).await;
    assert_eq!(
        again.expect_err("used").api_error(),
        Some("exchanged_trigger_id")
    );
    let unknown = h.client.views_open("1.2.3", &modal("Unknown")).await;
    assert_eq!(
        unknown.expect_err("unknown").api_error(),
        Some("invalid_trigger_id")
    );

    let (_, p) = click_ack(&h).await;
    let late = p["trigger_id"].as_str().expect("trigger").to_owned();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let expired = h.client.views_open(&late, &modal("Late")).await;
    assert_eq!(
        expired.expect_err("expired").api_error(),
        Some("expired_trigger_id")
    );
    let state = h.sandbox.state();
    assert_eq!(state.views.len(), 1);
    assert_eq!(state.views[0].user, ALICE);
    assert_eq!(state.views[0].view, modal("Acknowledge"));
    assert!(!state.views[0].closed);
}

#[tokio::test]
async fn views_are_validated_updated_by_hash_and_pushed_at_most_three_deep() {
    let h = start(options()).await;
    let (_, p) = click_ack(&h).await;
    let trigger = p["trigger_id"].as_str().expect("trigger").to_owned();
    let too_long = h
        .client
        .views_open(&trigger, &modal("A title of 25 characters!"))
        .await;
    assert_eq!(
        too_long.expect_err("title").api_error(),
        Some("invalid_arguments")
    );

    let root = open_modal(&h, "Acknowledge").await;
    let updated = h
        .client
        .views_update(&root.id, Some(&root.hash), &modal("Updated"))
        .await
        .expect("update with the current hash");
    assert_eq!(updated.id, root.id);
    assert_ne!(updated.hash, root.hash);
    let stale = h
        .client
        .views_update(&root.id, Some(&root.hash), &modal("Stale"))
        .await;
    assert_eq!(stale.expect_err("stale").api_error(), Some("hash_conflict"));
    h.client
        .views_update(&root.id, None, &modal("No hash"))
        .await
        .expect("update without hash");
    assert_eq!(
        h.client
            .views_update("V0NOPE", None, &modal("x"))
            .await
            .expect_err("unknown")
            .api_error(),
        Some("not_found")
    );

    // Triggers minted by a submission in the modal push onto its stack.
    h.app.answer(
        "/slack/interactions",
        200,
        r#"{"response_action":"errors","errors":{"note":"say more"}}"#,
    );
    let mut top = root.id.clone();
    for depth in 2..=3 {
        let sub = h
            .sandbox
            .submit_view(&top, ALICE, json!({}))
            .await
            .expect("submit");
        let trigger = sub.sent["trigger_id"].as_str().expect("trigger").to_owned();
        let pushed = h
            .client
            .views_push(&trigger, &modal(&format!("Step {depth}")))
            .await
            .expect("push");
        top = pushed.id;
    }
    let sub = h
        .sandbox
        .submit_view(&top, ALICE, json!({}))
        .await
        .expect("submit");
    let trigger = sub.sent["trigger_id"].as_str().expect("trigger").to_owned();
    let fourth = h.client.views_push(&trigger, &modal("Step 4")).await;
    assert_eq!(
        fourth.expect_err("limit").api_error(),
        Some("push_limit_reached")
    );
    let state = h.sandbox.state();
    let stacks: Vec<usize> = state
        .views
        .iter()
        .filter(|v| v.root_view_id == root.id)
        .map(|v| v.stack)
        .collect();
    assert_eq!(stacks, [1, 2, 3]);
}

#[tokio::test]
async fn view_submission_answers_are_applied_like_slack() {
    let h = start(options()).await;
    let view = open_modal(&h, "Acknowledge").await;
    let values = json!({"note": {"text": {"type": "plain_text_input", "value": "on it"}}});

    h.app.answer(
        "/slack/interactions",
        200,
        r#"{"response_action":"errors","errors":{"note":"too short"}}"#,
    );
    let resp = h
        .sandbox
        .submit_view(&view.id, ALICE, values.clone())
        .await
        .expect("submit");
    let p = payload(&h.app.last());
    assert_eq!(
        verify::verify(
            SECRET.as_bytes(),
            &h.app.last().headers,
            &h.app.last().body,
            now()
        ),
        Ok(())
    );
    assert_eq!(p["type"], "view_submission");
    assert_eq!(p["user"]["id"], ALICE);
    assert_eq!(p["view"]["id"], json!(view.id));
    assert_eq!(p["view"]["hash"], json!(view.hash));
    assert_eq!(p["view"]["callback_id"], "ack_note");
    assert_eq!(p["view"]["private_metadata"], "card-k1");
    assert_eq!(p["view"]["state"]["values"], values);
    assert_eq!(
        resp.json.as_ref().map(|j| &j["response_action"]),
        Some(&json!("errors"))
    );
    let v = h.sandbox.state().view(&view.id).cloned().expect("view");
    assert!(!v.closed);
    assert_eq!(v.errors, Some(json!({"note": "too short"})));

    // Somebody else cannot submit it.
    assert!(matches!(
        h.sandbox.submit_view(&view.id, BOB, json!({})).await,
        Err(ActError::NotViewOwner(_))
    ));

    h.app.answer(
        "/slack/interactions",
        200,
        &json!({"response_action": "update", "view": modal("Thanks")}).to_string(),
    );
    h.sandbox
        .submit_view(&view.id, ALICE, values.clone())
        .await
        .expect("submit");
    let v = h.sandbox.state().view(&view.id).cloned().expect("view");
    assert_eq!(v.view["title"]["text"], "Thanks");
    assert_ne!(v.hash, view.hash);
    assert!(!v.closed && v.errors.is_none());

    h.app.answer("/slack/interactions", 500, "");
    h.sandbox
        .submit_view(&view.id, ALICE, values.clone())
        .await
        .expect("submit");
    assert!(!h.sandbox.state().view(&view.id).expect("view").closed);

    h.app.answer("/slack/interactions", 200, "");
    h.sandbox
        .submit_view(&view.id, ALICE, values.clone())
        .await
        .expect("submit");
    assert!(h.sandbox.state().view(&view.id).expect("view").closed);
    assert_eq!(
        h.sandbox.submit_view(&view.id, ALICE, values).await,
        Err(ActError::ViewClosed(view.id.clone()))
    );

    // `clear` closes the whole stack.
    let root = open_modal(&h, "Two").await;
    h.app.answer(
        "/slack/interactions",
        200,
        &json!({"response_action": "push", "view": modal("Pushed")}).to_string(),
    );
    h.sandbox
        .submit_view(&root.id, ALICE, json!({}))
        .await
        .expect("submit");
    let state = h.sandbox.state();
    let pushed = state
        .views
        .iter()
        .find(|v| v.root_view_id == root.id && v.stack == 2)
        .expect("pushed view")
        .id
        .clone();
    h.app
        .answer("/slack/interactions", 200, r#"{"response_action":"clear"}"#);
    h.sandbox
        .submit_view(&pushed, ALICE, json!({}))
        .await
        .expect("submit");
    let state = h.sandbox.state();
    assert!(
        state
            .views
            .iter()
            .filter(|v| v.root_view_id == root.id)
            .all(|v| v.closed)
    );
}

#[tokio::test]
async fn response_url_takes_five_posts_then_refuses() {
    let h = start(options()).await;
    let (ts, p) = click_ack(&h).await;
    let url = p["response_url"].as_str().expect("url").to_owned();
    for i in 0..5 {
        h.client
            .post_response_url(&url, &json!({"text": format!("note {i}")}))
            .await
            .expect("within the limit");
    }
    let err = h
        .client
        .post_response_url(&url, &json!({"text": "sixth"}))
        .await
        .expect_err("used up");
    assert_eq!(
        err,
        SlackError::Status {
            method: "response_url",
            status: 410
        }
    );
    let state = h.sandbox.state();
    let mine = state.ephemerals_for(ALICE);
    assert_eq!(mine.len(), 5);
    assert_eq!(mine[0].text, "note 0");
    assert_eq!(mine[0].channel, CH);
    assert_eq!(mine[0].source, "response_url");
    assert_eq!(state.response_posts.len(), 6);
    assert_eq!(state.response_posts[5].outcome, "used_url");
    // Ephemerals never reach the channel.
    assert_eq!(state.messages(CH).len(), 1);
    assert_eq!(state.messages(CH)[0].ts, ts);

    let unknown = format!("{}/_response/0000", h.base);
    let err = h
        .client
        .post_response_url(&unknown, &json!({"text": "x"}))
        .await
        .expect_err("unknown");
    assert_eq!(
        err,
        SlackError::Status {
            method: "response_url",
            status: 404
        }
    );
}

#[tokio::test]
async fn response_url_replaces_deletes_and_expires() {
    let h = start(options()).await;
    let (ts, p) = click_ack(&h).await;
    let url = p["response_url"].as_str().expect("url").to_owned();
    h.client
        .post_response_url(
            &url,
            &json!({"replace_original": true, "text": "Acknowledged by <@U0ALICE001>"}),
        )
        .await
        .expect("replace");
    let state = h.sandbox.state();
    assert_eq!(state.messages(CH)[0].text, "Acknowledged by <@U0ALICE001>");
    assert!(state.messages(CH)[0].edited);
    h.client
        .post_response_url(
            &url,
            &json!({"response_type": "in_channel", "text": "posted", "thread_ts": ts}),
        )
        .await
        .expect("in_channel");
    assert_eq!(h.sandbox.state().messages(CH)[0].reply_count, 1);
    let bad = h
        .client
        .post_response_url(&url, &json!({"blocks": "nope"}))
        .await
        .expect_err("invalid");
    assert!(
        matches!(bad, SlackError::Status { status: 400, .. }),
        "{bad:?}"
    );
    h.client
        .post_response_url(&url, &json!({"delete_original": true}))
        .await
        .expect("delete");
    assert!(h.sandbox.state().messages(CH).is_empty());

    let h = start(SandboxOptions {
        response_url_ttl: Duration::ZERO,
        ..options()
    })
    .await;
    let (_, p) = click_ack(&h).await;
    let url = p["response_url"].as_str().expect("url").to_owned();
    let err = h
        .client
        .post_response_url(&url, &json!({"text": "late"}))
        .await
        .expect_err("expired");
    assert!(
        matches!(err, SlackError::Status { status: 410, .. }),
        "{err:?}"
    );
    assert_eq!(h.sandbox.state().response_posts[0].outcome, "expired_url");
}

#[tokio::test]
async fn ephemeral_messages_are_recorded_and_never_in_history() {
    let h = start(SandboxOptions {
        users: vec![ALICE.to_owned(), BOB.to_owned()],
        ..options()
    })
    .await;
    let msg = Message {
        text: "only you can see this".into(),
        blocks: Vec::new(),
        metadata: None,
    };
    h.client
        .post_ephemeral(CH, BOB, &msg, Some("1700000000.000100"))
        .await
        .expect("ephemeral");
    let err = h
        .client
        .post_ephemeral(CH, "U0STRANGER", &msg, None)
        .await
        .expect_err("unknown user");
    assert_eq!(err.api_error(), Some("user_not_found"));
    let err = h
        .client
        .post_ephemeral("C0NOWHERE1", BOB, &msg, None)
        .await
        .expect_err("unknown channel");
    assert_eq!(err.api_error(), Some("channel_not_found"));

    let state = h.sandbox.state();
    assert_eq!(state.ephemerals.len(), 1);
    let e = &state.ephemerals[0];
    assert_eq!(
        (e.channel.as_str(), e.user.as_str(), e.text.as_str()),
        (CH, BOB, "only you can see this")
    );
    assert_eq!(e.thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(e.source, "chat.postEphemeral");
    assert!(state.messages(CH).is_empty());
    let page = h
        .client
        .conversations_history(&crate::slack::api::HistoryRequest {
            channel: CH.into(),
            ..Default::default()
        })
        .await
        .expect("history");
    assert!(page.messages.is_empty());
}

#[tokio::test]
async fn dms_are_stable_per_user_and_user_groups_list_members() {
    let mut groups = std::collections::BTreeMap::new();
    groups.insert(
        "S0ONCALL01".to_owned(),
        vec![ALICE.to_owned(), BOB.to_owned()],
    );
    let h = start(SandboxOptions {
        user_groups: groups,
        ..options()
    })
    .await;
    let dm = h.client.conversations_open(&[ALICE]).await.expect("dm");
    assert!(dm.starts_with('D'), "{dm}");
    assert_eq!(h.client.conversations_open(&[ALICE]).await.expect("dm"), dm);
    let other = h.client.conversations_open(&[BOB]).await.expect("dm");
    assert_ne!(other, dm);
    let posted = h
        .client
        .post_message(&dm, &card(), None)
        .await
        .expect("post to the DM");
    assert_eq!(h.sandbox.state().messages(&dm)[0].ts, posted.ts);
    let err = h
        .client
        .conversations_open(&["bogus"])
        .await
        .expect_err("bad user");
    assert_eq!(err.api_error(), Some("user_not_found"));

    assert_eq!(
        h.client
            .usergroups_users_list("S0ONCALL01")
            .await
            .expect("members"),
        vec![ALICE.to_owned(), BOB.to_owned()]
    );
    let err = h
        .client
        .usergroups_users_list("S0MISSING1")
        .await
        .expect_err("unknown group");
    assert_eq!(err.api_error(), Some("no_such_subteam"));
}

#[tokio::test]
async fn slash_commands_are_signed_forms_and_the_answer_is_shown_ephemerally() {
    let h = start(options()).await;
    h.app.answer(
        "/slack/commands",
        200,
        r#"{"response_type":"ephemeral","text":"2 alerts firing"}"#,
    );
    let resp = h
        .sandbox
        .slash_command("/ackbar", "status db-1", CH, ALICE)
        .await
        .expect("command");
    assert_eq!(resp.status, 200);
    let got = h.app.last();
    assert_eq!(got.path, "/slack/commands");
    assert_eq!(
        verify::verify(SECRET.as_bytes(), &got.headers, &got.body, now()),
        Ok(())
    );
    let f = form(&got.body);
    assert_eq!(f["command"], "/ackbar");
    assert_eq!(f["text"], "status db-1");
    assert_eq!(f["user_id"], ALICE);
    assert_eq!(f["channel_id"], CH);
    assert_eq!(f["team_id"], state::TEAM_ID);
    assert!(f["trigger_id"].contains('.'));
    assert!(f["response_url"].starts_with(&h.base));
    let state = h.sandbox.state();
    let mine = state.ephemerals_for(ALICE);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].text, "2 alerts firing");
    assert_eq!(mine[0].source, "slash_command");
    assert!(state.messages(CH).is_empty());

    // The command's response_url takes a delayed answer.
    h.client
        .post_response_url(&f["response_url"], &json!({"text": "later"}))
        .await
        .expect("delayed answer");
    assert_eq!(h.sandbox.state().ephemerals_for(ALICE).len(), 2);
    // ...but has no original message to replace.
    let err = h
        .client
        .post_response_url(
            &f["response_url"],
            &json!({"replace_original": true, "text": "x"}),
        )
        .await
        .expect_err("no original");
    assert!(
        matches!(err, SlackError::Status { status: 400, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn events_carry_the_envelope_and_retries_keep_the_event_id() {
    let h = start(options()).await;
    let event =
        json!({"type": "app_mention", "user": ALICE, "text": "<@U0ACKBAR> status", "channel": CH});
    let first = h
        .sandbox
        .send_event(event.clone(), None, None)
        .await
        .expect("event");
    let got = h.app.last();
    assert_eq!(got.path, "/slack/events");
    assert_eq!(
        verify::verify(SECRET.as_bytes(), &got.headers, &got.body, now()),
        Ok(())
    );
    assert!(got.headers.get(verify::RETRY_NUM_HEADER).is_none());
    let envelope: Value = serde_json::from_slice(&got.body).expect("json");
    assert_eq!(envelope, first.sent);
    assert_eq!(envelope["type"], "event_callback");
    assert_eq!(envelope["event"], event);
    assert_eq!(envelope["team_id"], state::TEAM_ID);
    assert_eq!(envelope["api_app_id"], interact::APP_ID);
    assert!(envelope["event_time"].as_i64().is_some());
    let id = envelope["event_id"].as_str().expect("event_id").to_owned();
    assert!(id.starts_with("Ev"));

    h.sandbox
        .send_event(event, Some(&id), Some(1))
        .await
        .expect("retry");
    let got = h.app.last();
    let retried: Value = serde_json::from_slice(&got.body).expect("json");
    assert_eq!(retried["event_id"], json!(id));
    let header = |n: &str| {
        got.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header(verify::RETRY_NUM_HEADER).as_deref(), Some("1"));
    assert_eq!(
        header(verify::RETRY_REASON_HEADER).as_deref(),
        Some("http_timeout")
    );

    h.app
        .answer("/slack/events", 200, r#"{"challenge":"abc123"}"#);
    let resp = h
        .sandbox
        .url_verification("abc123")
        .await
        .expect("challenge");
    assert_eq!(resp.json, Some(json!({"challenge": "abc123"})));
    let sent: Value = serde_json::from_slice(&h.app.last().body).expect("json");
    assert_eq!(sent["type"], "url_verification");
    assert_eq!(sent["challenge"], "abc123");
}

#[tokio::test]
async fn bad_signature_modes_produce_the_headers_they_claim() {
    let h = start(options()).await;
    let body = b"command=%2Fackbar&text=";
    let cases: [(Signing, Result<(), VerifyError>); 5] = [
        (Signing::Valid, Ok(())),
        (
            Signing::None,
            Err(VerifyError::MissingHeader(verify::TIMESTAMP_HEADER)),
        ),
        (Signing::WrongSecret, Err(VerifyError::BadSignature)),
        (Signing::Stale, Err(VerifyError::Stale { age_secs: 600 })),
        (
            Signing::Future,
            Err(VerifyError::FutureDated { ahead_secs: 600 }),
        ),
    ];
    for (signing, expected) in cases {
        h.sandbox
            .send_raw(
                "/slack/commands",
                "application/x-www-form-urlencoded",
                body,
                signing,
            )
            .await
            .expect("sent");
        let got = h.app.last();
        assert_eq!(got.body, body);
        // `now()` may tick between signing and checking: allow one second.
        let result = verify::verify(SECRET.as_bytes(), &got.headers, &got.body, now());
        let result = match result {
            Err(VerifyError::Stale { age_secs: 601 }) => Err(VerifyError::Stale { age_secs: 600 }),
            Err(VerifyError::FutureDated { ahead_secs: 599 }) => {
                Err(VerifyError::FutureDated { ahead_secs: 600 })
            }
            r => r,
        };
        assert_eq!(result, expected, "{signing:?}");
        if signing != Signing::None {
            // The signature is well-formed in every mode but `None`.
            let sig = got
                .headers
                .get(verify::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(sig.starts_with("v0=") && sig.len() == 67, "{sig}");
        } else {
            assert!(got.headers.get(verify::SIGNATURE_HEADER).is_none());
        }
    }
    assert!(matches!(
        h.sandbox
            .send_raw("no-slash", "text/plain", b"", Signing::Valid)
            .await,
        Err(ActError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn control_routes_act_over_http() {
    let h = start(options()).await;
    let posted = h
        .client
        .post_message(CH, &card(), None)
        .await
        .expect("post");
    let http = reqwest::Client::new();
    let act = |kind: &str, body: Value| {
        let req = http.post(format!("{}/_act/{kind}", h.base)).json(&body);
        async move {
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    h.app
        .answer("/slack/interactions", 200, r#"{"text":"thanks"}"#);
    let (status, body) = act(
        "click",
        json!({"channel": CH, "message_ts": posted.ts, "action_id": "silence", "user": ALICE}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["json"], json!({"text": "thanks"}));
    assert_eq!(body["sent"]["actions"][0]["value"], "card-k1:1h");
    assert!(body["elapsed_ms"].as_u64().is_some());

    let (status, body) = act(
        "click",
        json!({"channel": CH, "message_ts": "1.000001", "action_id": "ack", "user": ALICE}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("message_not_found"))
    );
    let (status, _) = act("click", json!({"channel": CH})).await;
    assert_eq!(status, 400);
    let (status, _) = act("dance", json!({})).await;
    assert_eq!(status, 400);

    let (status, body) = act(
        "raw",
        json!({"path": "/slack/events", "body": "{}", "signing": "stale"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = h.app.last();
    assert!(matches!(
        verify::verify(SECRET.as_bytes(), &got.headers, &got.body, now()),
        Err(VerifyError::Stale { .. })
    ));

    let (status, body) = act("app_url", json!({"url": null})).await;
    assert_eq!((status, &body["app_url"]), (200, &Value::Null));
    let (status, body) = act("url_verification", json!({"challenge": "x"})).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("no_app_url")));

    // What another web page can send without a CORS preflight is refused,
    // before anything reaches the app.
    let sent = h.app.seen().len();
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let resp = http
            .post(format!("{}/_act/click", h.base))
            .header("content-type", content_type)
            .body(
                json!({"channel": CH, "message_ts": posted.ts, "action_id": "ack", "user": ALICE})
                    .to_string(),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 415, "{content_type}");
    }
    let reset = http
        .post(format!("{}/_reset", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(reset.status().as_u16(), 415);
    assert_eq!(h.app.seen().len(), sent, "a refused act reached the app");
}

#[tokio::test]
async fn closing_a_modal_tells_the_app_only_when_it_asked() {
    let h = start(options()).await;
    let quiet = open_modal(&h, "Quiet").await;
    let before = h.app.seen().len();
    assert_eq!(
        h.sandbox.close_view(&quiet.id, BOB).await,
        Err(ActError::NotViewOwner(quiet.id.clone()))
    );
    assert_eq!(h.sandbox.close_view(&quiet.id, ALICE).await, Ok(None));
    assert!(h.sandbox.state().view(&quiet.id).expect("view").closed);
    assert_eq!(
        h.app.seen().len(),
        before,
        "no view_closed without notify_on_close"
    );
    assert_eq!(
        h.sandbox.close_view(&quiet.id, ALICE).await,
        Err(ActError::ViewClosed(quiet.id.clone()))
    );

    let (_, p) = click_ack(&h).await;
    let mut spec = modal("Notifying");
    spec["notify_on_close"] = json!(true);
    let notifying = h
        .client
        .views_open(p["trigger_id"].as_str().expect("trigger"), &spec)
        .await
        .expect("views.open");
    let answer = h
        .sandbox
        .close_view(&notifying.id, ALICE)
        .await
        .expect("close")
        .expect("the app was told");
    assert_eq!(answer.status, 200);
    let got = h.app.last();
    assert_eq!(got.path, "/slack/interactions");
    verify::verify(SECRET.as_bytes(), &got.headers, &got.body, now()).expect("signed");
    let sent = payload(&got);
    assert_eq!(sent["type"], "view_closed");
    assert_eq!(sent["view"]["id"], notifying.id.as_str());
    assert_eq!(sent["user"]["id"], ALICE);
    assert!(h.sandbox.state().view(&notifying.id).expect("view").closed);
}
