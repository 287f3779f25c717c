//! The OAuth v2 install flow against the sandbox, driven like a browser:
//! ackbar's `/slack/install`, the sandbox's authorize page, ackbar's
//! callback, the code exchange (`oauth.v2.access`), and then cards posted
//! with each installed workspace's own token. The state's protections
//! (single use, expiry, bound to the browser) and every refusal are
//! checked, with nothing stored after one; uninstalling dead-letters later
//! cards with a reason; a second replica on the same PostgreSQL database
//! completes an install the first one started.

mod common;

use std::path::Path;
use std::time::Duration;

use common::oauth::*;
use common::postgres::PgDatabase;
use common::*;
use serde_json::json;
use tokio::net::TcpListener;

const CLIENT_SECRET: &str = "client-secret-4f8a";
const SIGNING_SECRET: &str = "signing-secret-0b3c";

/// The sandbox with OAuth, and ackbar (SQLite in `dir`) reachable at its
/// own address as `public_url`; `edit` changes the config first.
async fn start(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> (Slack, Ackbar) {
    let slack = start_slack(oauth_sandbox_options(CLIENT_SECRET, SIGNING_SECRET)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", listener.local_addr().unwrap());
    let store_url = format!("sqlite://{}", dir.join("ackbar.db").display());
    let mut config = oauth_config(
        &slack.api_url,
        &store_url,
        &public_url,
        CLIENT_SECRET,
        SIGNING_SECRET,
    );
    edit(&mut config);
    let ackbar = start_ackbar_on(listener, &config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));
    (slack, ackbar)
}

async fn installations(dir: &Path) -> i64 {
    count_rows(&dir.join("ackbar.db"), "installations").await
}

/// The errors of the store's dead letters.
async fn dead_letter_errors(db: &Path) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let errors = sqlx::query_scalar("SELECT last_error FROM outbox WHERE state = 'dead'")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    errors
}

/// The workspace that posted each top-level message of `channel`.
fn posted_by(slack: &Slack, channel: &str) -> Vec<Option<String>> {
    slack
        .sandbox
        .state()
        .channels
        .get(channel)
        .map(|c| c.messages.iter().map(|m| m.team.clone()).collect())
        .unwrap_or_default()
}

async fn alert(ackbar: &Ackbar, group: &str, name: &str) {
    let r = post_webhook(
        &http(),
        &ackbar.url("/webhook/alertmanager"),
        &webhook(group, &[firing(name, "db-1")]),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_is_stored_and_its_routes_cards_go_out_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (slack, ackbar) = start(dir.path(), |_| {}).await;
    let mut browser = Browser::new();

    let authorize = browser.start_install(&ackbar.base()).await;
    assert!(
        authorize.starts_with(&authorize_url(&slack.api_url))
            && authorize.contains("client_id=1111.2222")
            && authorize.contains("scope=")
            && authorize.contains("chat%3Awrite")
            && authorize.contains("redirect_uri=http%3A%2F%2F127.0.0.1"),
        "{authorize}"
    );
    let cookie = browser
        .cookie
        .clone()
        .expect("the install page set a cookie");
    assert!(
        cookie.starts_with("ackbar_oauth=") && cookie.len() > 40,
        "{cookie}"
    );

    let callback = browser.approve(&authorize, TEAM_A, false).await;
    assert!(callback.starts_with(&format!("{}/slack/oauth/callback?code=", ackbar.base())));
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("ackbar is installed")
            && page.body.contains("ackbar sandbox T0AAAAAAA")
            && page.body.contains(TEAM_A),
        "the success page names the workspace: {}",
        page.body
    );
    assert!(!page.body.contains("xoxb-"), "the token is never shown");
    assert_eq!(installations(dir.path()).await, 1);

    alert(&ackbar, "a", "DiskFull").await;
    eventually(Duration::from_secs(10), "card posted into team A", || {
        posted_by(&slack, CHAN_A) == [Some(TEAM_A.to_owned())]
    })
    .await;

    // The same callback again (a replay, a reload): the state is used up.
    browser.cookie = Some(cookie);
    let again = browser.get(&callback).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(
        again.body.contains("unknown or was already used") && again.body.contains("/slack/install"),
        "{}",
        again.body
    );
    assert_eq!(installations(dir.path()).await, 1);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_cookie_is_http_only_same_site_lax_and_scoped_to_the_callback() {
    let dir = tempfile::tempdir().unwrap();
    let (_slack, ackbar) = start(dir.path(), |_| {}).await;
    let page = Browser::new().get(&ackbar.url("/slack/install")).await;
    let set = page.set_cookie.expect("a cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/slack/oauth",
        "Max-Age=60",
    ] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    // public_url is http here; Secure would stop the browser sending it.
    assert!(!set.contains("Secure"), "{set}");
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workspaces_each_get_their_routes_cards_and_a_route_naming_none_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (slack, ackbar) = start(dir.path(), |config| {
        let routes = config["routes"].as_array_mut().unwrap();
        routes.push(json!({ "name": "any", "channel": CHANNEL }));
    })
    .await;
    for team in [TEAM_A, TEAM_B] {
        let page = Browser::new().install(&ackbar.base(), team).await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    assert_eq!(installations(dir.path()).await, 2);

    alert(&ackbar, "a", "DiskFull").await;
    alert(&ackbar, "b", "CpuHigh").await;
    alert(&ackbar, "c", "Unrouted").await;
    eventually(Duration::from_secs(10), "each card from its team", || {
        posted_by(&slack, CHAN_A) == [Some(TEAM_A.to_owned())]
            && posted_by(&slack, CHAN_B) == [Some(TEAM_B.to_owned())]
    })
    .await;
    let db = dir.path().join("ackbar.db");
    eventually_async(
        Duration::from_secs(10),
        "the teamless card dead-lettered",
        || async { !dead_letter_errors(&db).await.is_empty() },
    )
    .await;
    let errors = dead_letter_errors(&db).await;
    assert!(
        errors.len() == 1 && errors[0].contains("set routes[].team"),
        "{errors:?}"
    );
    assert!(posted_by(&slack, CHANNEL).is_empty());
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_slack, ackbar) = start(dir.path(), |config| {
        config["slack"]["oauth"]["state_ttl"] = json!("300ms");
    })
    .await;
    let mut browser = Browser::new();
    let authorize = browser.start_install(&ackbar.base()).await;
    let callback = browser.approve(&authorize, TEAM_A, false).await;
    // The person took longer than the state lives.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("expired") && page.body.contains("/slack/install"),
        "{}",
        page.body
    );
    assert_eq!(installations(dir.path()).await, 0);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_from_another_browser_or_without_the_cookie_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_slack, ackbar) = start(dir.path(), |_| {}).await;

    // The victim's browser has its own install cookie; the attacker's
    // callback (their code, their state) must not install anything.
    let mut attacker = Browser::new();
    let authorize = attacker.start_install(&ackbar.base()).await;
    let attackers_callback = attacker.approve(&authorize, TEAM_A, false).await;
    let mut victim = Browser::new();
    victim.start_install(&ackbar.base()).await;
    let page = victim.get(&attackers_callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("another browser"), "{}", page.body);
    // Refused once, the state is burnt: not even its own browser can use it.
    let page = attacker.get(&attackers_callback).await;
    assert_eq!(page.status, 400, "{}", page.body);

    // No cookie at all (blocked, or a link opened elsewhere).
    let mut browser = Browser::new();
    let authorize = browser.start_install(&ackbar.base()).await;
    let callback = browser.approve(&authorize, TEAM_A, false).await;
    browser.cookie = None;
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("no install cookie") && page.body.contains("/slack/install"),
        "{}",
        page.body
    );
    assert_eq!(installations(dir.path()).await, 0);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_on_slacks_page_shows_a_clear_page() {
    let dir = tempfile::tempdir().unwrap();
    let (_slack, ackbar) = start(dir.path(), |_| {}).await;
    let mut browser = Browser::new();
    let authorize = browser.start_install(&ackbar.base()).await;
    let callback = browser.approve(&authorize, TEAM_A, true).await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("cancelled") && page.body.contains("Nothing was installed"),
        "{}",
        page.body
    );
    assert_eq!(installations(dir.path()).await, 0);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_is_reported_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (slack, ackbar) = start(dir.path(), |config| {
        config["slack"]["oauth"]["client_secret"] = json!("not-the-secret");
    })
    .await;
    let page = Browser::new().install(&ackbar.base(), TEAM_A).await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(
        page.body.contains("bad_client_secret") && page.body.contains("client_secret"),
        "{}",
        page.body
    );
    assert_eq!(installations(dir.path()).await, 0);
    assert_eq!(
        slack.sandbox.state().counts["oauth.v2.access"].error,
        1,
        "the exchange was tried, and refused"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstalled_workspace_is_forgotten_and_its_next_cards_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let (slack, ackbar) = start(dir.path(), |_| {}).await;
    let page = Browser::new().install(&ackbar.base(), TEAM_A).await;
    assert_eq!(page.status, 200, "{}", page.body);
    alert(&ackbar, "a", "DiskFull").await;
    eventually(Duration::from_secs(10), "first card posted", || {
        posted_by(&slack, CHAN_A).len() == 1
    })
    .await;

    let r = slack.sandbox.uninstall(TEAM_A).await.expect("event sent");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(installations(dir.path()).await, 0);

    alert(&ackbar, "a", "MemoryLow").await;
    let db = dir.path().join("ackbar.db");
    eventually_async(
        Duration::from_secs(10),
        "the new card dead-lettered",
        || async { !dead_letter_errors(&db).await.is_empty() },
    )
    .await;
    // The card's update and reply (due together) each say why.
    let errors = dead_letter_errors(&db).await;
    assert!(
        errors.iter().all(|e| e
            .contains("T0AAAAAAA has not installed ackbar, or has uninstalled it")
            && e.contains("/slack/install")),
        "{errors:?}"
    );
    assert_eq!(
        posted_by(&slack, CHAN_A).len(),
        1,
        "nothing more was posted"
    );
    let state = slack.sandbox.state();
    assert_eq!(
        state.counts["chat.postMessage"].error, 0,
        "the revoked token was never tried: {:?}",
        state.calls
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_on_the_same_postgres_completes_an_install_the_first_started() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let slack = start_slack(oauth_sandbox_options(CLIENT_SECRET, SIGNING_SECRET)).await;
    // Both replicas sit behind one public URL; which one a request reaches
    // is up to the load balancer (here: the test).
    let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", first.local_addr().unwrap());
    let config = oauth_config(
        &slack.api_url,
        &db.url,
        &public_url,
        CLIENT_SECRET,
        SIGNING_SECRET,
    );
    let replica_a = start_ackbar_on(first, &config).await;
    let replica_b = start_ackbar(&config).await;

    let mut browser = Browser::new();
    let authorize = browser.start_install(&replica_a.base()).await;
    let callback = browser.approve(&authorize, TEAM_B, false).await;
    let on_b = callback.replace(&replica_a.base(), &replica_b.base());
    assert_ne!(on_b, callback);
    let page = browser.get(&on_b).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(TEAM_B), "{}", page.body);

    // And the state is gone for replica A too.
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);

    alert(&replica_a, "b", "CpuHigh").await;
    eventually(Duration::from_secs(10), "card posted into team B", || {
        posted_by(&slack, CHAN_B) == [Some(TEAM_B.to_owned())]
    })
    .await;
    replica_a.stop().await;
    replica_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_pages_without_oauth_configured_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let ackbar = start_ackbar(&test_config(&slack.api_url, &dir.path().join("a.db"))).await;
    for path in ["/slack/install", "/slack/oauth/callback?code=x&state=y"] {
        let page = Browser::new().get(&ackbar.url(path)).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(page.body.contains("set slack.oauth"), "{}", page.body);
    }
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_a_workspace_use_its_token_and_reach_only_its_cards() {
    // The sandbox's own workspace, where its clicks and slash commands come
    // from, installs beside team A.
    const OWN: &str = ackbar::slack::sandbox::state::TEAM_ID;
    const ALICE: &str = "U0ALICE01";
    let dir = tempfile::tempdir().unwrap();
    let (slack, ackbar) = start(dir.path(), |config| {
        let routes = config["routes"].as_array_mut().unwrap();
        routes.push(json!({
            "name": "own", "matchers": ["group=own"], "channel": CHANNEL, "team": OWN,
            "alertmanager_url": "http://127.0.0.1:9"
        }));
    })
    .await;
    for team in [OWN, TEAM_A] {
        let page = Browser::new().install(&ackbar.base(), team).await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    alert(&ackbar, "a", "TeamAOnlyAlert").await;
    alert(&ackbar, "own", "OwnAlert").await;
    eventually(Duration::from_secs(10), "both cards posted", || {
        let state = slack.sandbox.state();
        cards(&state, CHANNEL).len() == 1 && cards(&state, CHAN_A).len() == 1
    })
    .await;
    let state = slack.sandbox.state();
    let (own_ts, _, _) = cards(&state, CHANNEL).remove(0);
    let (_, a_card, _) = cards(&state, CHAN_A).remove(0);

    // Silence opens its modal with the own workspace's token (the sandbox
    // refuses a trigger of its workspace with another team's token).
    let r = slack
        .sandbox
        .click(CHANNEL, &own_ts, "ackbar_silence", ALICE)
        .await
        .expect("click");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(slack.sandbox.state().views.len(), 1, "the modal opened");

    // Team A's card is not the own workspace's to acknowledge or list.
    let r = slack
        .sandbox
        .slash_command("/ackbar", &format!("ack {}", &a_card[..8]), CHANNEL, ALICE)
        .await
        .expect("command");
    assert!(r.body.contains("No card with id"), "{}", r.body);
    let r = slack
        .sandbox
        .slash_command("/ackbar", "list", CHANNEL, ALICE)
        .await
        .expect("command");
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(Duration::from_secs(10), "list answered", || {
        !slack.sandbox.state().response_posts.is_empty()
    })
    .await;
    let listed = serde_json::to_string(&slack.sandbox.state().response_posts).unwrap();
    // One card, linked (a permalink asked for with the own token) into
    // the own workspace's channel.
    assert!(
        listed.contains("1 firing card")
            && listed.contains(&format!("archives/{CHANNEL}/"))
            && !listed.contains(CHAN_A),
        "{listed}"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_dead_letters_each_operation_once_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (slack, ackbar) = start(dir.path(), |_| {}).await;
    let page = Browser::new().install(&ackbar.base(), TEAM_A).await;
    assert_eq!(page.status, 200, "{}", page.body);
    alert(&ackbar, "a", "DiskFull").await;
    eventually(Duration::from_secs(10), "first card posted", || {
        posted_by(&slack, CHAN_A).len() == 1
    })
    .await;

    // Revoked without ackbar being told (the event lost, or sent to
    // another replica): Slack refuses the token. The card's update and its
    // thread reply each fail once and are dead-lettered, not retried.
    assert_eq!(slack.sandbox.revoke_team(TEAM_A), 1);
    alert(&ackbar, "a", "MemoryLow").await;
    let db = dir.path().join("ackbar.db");
    let refused = || {
        let state = slack.sandbox.state();
        state
            .calls
            .iter()
            .filter(|c| c.outcome == ackbar::slack::sandbox::Outcome::Error("token_revoked".into()))
            .count()
    };
    eventually_async(
        Duration::from_secs(10),
        "the update and reply dead-lettered",
        || async { dead_letter_errors(&db).await.len() == 2 },
    )
    .await;
    for error in dead_letter_errors(&db).await {
        assert!(
            error.contains("token_revoked")
                && error.contains("workspace T0AAAAAAA's bot token no longer works")
                && error.contains("/slack/install"),
            "{error}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(refused(), 2, "one refused call per operation, no retries");
    assert_eq!(posted_by(&slack, CHAN_A).len(), 1);
    ackbar.stop().await;
}

/// The sandbox's side on its own: what `oauth.v2.access` refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_exchange_checks_credentials_code_and_redirect_uri() {
    let slack = start_slack(oauth_sandbox_options(CLIENT_SECRET, SIGNING_SECRET)).await;
    let redirect_uri = "http://127.0.0.1:1/slack/oauth/callback";
    let mut browser = Browser::new();
    let authorize = format!(
        "{}?client_id={CLIENT_ID}&scope=chat:write&state=s1&redirect_uri={redirect_uri}",
        authorize_url(&slack.api_url)
    );
    let code = |location: String| {
        let query = location.split_once('?').unwrap().1.to_owned();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap();
        assert!(pairs.contains(&("state".into(), "s1".into())), "{pairs:?}");
        pairs.into_iter().find(|(k, _)| k == "code").unwrap().1
    };
    let first = code(browser.approve(&authorize, TEAM_B, false).await);
    let exchange = |id: &'static str, secret: &'static str, code: String, uri: &'static str| {
        let url = format!("{}/oauth.v2.access", slack.api_url);
        async move {
            let answer: serde_json::Value = http()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("code", code.as_str()), ("redirect_uri", uri)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer
        }
    };
    let refused = |answer: serde_json::Value| answer["error"].as_str().unwrap_or("ok").to_owned();
    assert_eq!(
        refused(exchange("9.9", CLIENT_SECRET, first.clone(), redirect_uri).await),
        "invalid_client_id"
    );
    assert_eq!(
        refused(exchange(CLIENT_ID, "wrong", first.clone(), redirect_uri).await),
        "bad_client_secret"
    );
    // A refused credential check leaves the code usable; a wrong
    // redirect_uri uses it up.
    assert_eq!(
        refused(
            exchange(
                CLIENT_ID,
                CLIENT_SECRET,
                first.clone(),
                "http://evil.example/cb"
            )
            .await
        ),
        "bad_redirect_uri"
    );
    assert_eq!(
        refused(exchange(CLIENT_ID, CLIENT_SECRET, first, redirect_uri).await),
        "invalid_code"
    );
    let second = code(browser.approve(&authorize, TEAM_B, false).await);
    let granted = exchange(CLIENT_ID, CLIENT_SECRET, second.clone(), redirect_uri).await;
    assert_eq!(granted["ok"], true, "{granted}");
    assert_eq!(granted["team"]["id"], TEAM_B);
    assert_eq!(granted["token_type"], "bot");
    assert_eq!(granted["scope"], "chat:write");
    let token = granted["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("xoxb-T0BBBBBBB-"), "{token}");
    assert_eq!(
        refused(exchange(CLIENT_ID, CLIENT_SECRET, second, redirect_uri).await),
        "invalid_code",
        "a code is good for one exchange"
    );
    // The token works for its team, until revoked.
    let auth_test = || async {
        http()
            .post(format!("{}/auth.test", slack.api_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    assert_eq!(auth_test().await["team_id"], TEAM_B);
    slack.sandbox.revoke_team(TEAM_B);
    assert_eq!(auth_test().await["error"], "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_stale_cached_token_retries_with_the_reinstalled_one() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let slack = start_slack(oauth_sandbox_options(CLIENT_SECRET, SIGNING_SECRET)).await;
    let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", first.local_addr().unwrap());
    let config = oauth_config(
        &slack.api_url,
        &db.url,
        &public_url,
        CLIENT_SECRET,
        SIGNING_SECRET,
    );
    let replica_a = start_ackbar_on(first, &config).await;
    let replica_b = start_ackbar(&config).await;

    let page = Browser::new().install(&replica_a.base(), TEAM_A).await;
    assert_eq!(page.status, 200, "{}", page.body);
    alert(&replica_a, "a", "DiskFull").await;
    eventually(Duration::from_secs(10), "first card posted", || {
        posted_by(&slack, CHAN_A).len() == 1
    })
    .await;

    // The workspace's token is revoked and it reinstalls through replica
    // B; replica A has the old token cached.
    assert_eq!(slack.sandbox.revoke_team(TEAM_A), 1);
    let mut browser = Browser::new();
    let authorize = browser.start_install(&replica_b.base()).await;
    let callback = browser.approve(&authorize, TEAM_A, false).await;
    // Slack sends the browser to the public URL; the balancer picks B.
    let page = browser
        .get(&callback.replace(&replica_a.base(), &replica_b.base()))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    alert(&replica_a, "a", "MemoryLow").await;
    eventually(
        Duration::from_secs(10),
        "the card updated with the new token",
        || {
            let state = slack.sandbox.state();
            state.channels[CHAN_A].messages[0].update_count >= 1
                && !state.channels[CHAN_A].messages[0].replies.is_empty()
        },
    )
    .await;
    let dead: i64 = {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'dead'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(dead, 0, "nothing was dead-lettered");
    let refused = slack
        .sandbox
        .state()
        .calls
        .iter()
        .filter(|c| c.outcome == ackbar::slack::sandbox::Outcome::Error("token_revoked".into()))
        .count();
    assert_eq!(
        refused, 1,
        "the stale token was tried once, then the new one"
    );
    replica_a.stop().await;
    replica_b.stop().await;
}
