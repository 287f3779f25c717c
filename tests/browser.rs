//! The sandbox page (`GET /sandbox/`): served in sandbox mode only, its
//! live-update streams end when ackbar shuts down, and, in a real headless
//! Chromium driven over WebDriver, a newcomer's path works end to end: an
//! Alertmanager webhook becomes a card, a refused click shows an ephemeral
//! refusal, Acknowledge changes the card and threads a reply, the Silence
//! modal shows ackbar's validation error and closes, and alert text that
//! looks like markup stays text.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::webdriver::{ChromeDriver, Session, browser_binaries};
use common::*;
use serde_json::{Value, json};

const ALICE: &str = "U0ALICE01";
const BOB: &str = "U0BOB0001";
/// Longest the page may take to show a change.
const SHOWN: Duration = Duration::from_secs(15);
/// Alert text that would run script if the page ever parsed it as HTML.
const XSS: &str = "<img src=x onerror=\"document.title='pwned'\">";

/// ackbar in sandbox mode (no bot token), one route into [`CHANNEL`].
fn sandbox_config(db: &std::path::Path) -> Value {
    let mut config = test_config("https://slack.invalid/api", db);
    config["slack"] = json!({ "request_timeout": "2s" });
    config
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_in_sandbox_mode_only() {
    let dir = tempfile::tempdir().unwrap();
    let client = no_redirects();

    let ackbar = start_ackbar(&sandbox_config(&dir.path().join("a.db"))).await;
    let r = client.get(ackbar.url("/sandbox")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/sandbox/");
    let r = client.get(ackbar.url("/sandbox/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("ackbar sandbox"));
    ackbar.stop().await;

    // With a bot token ackbar talks to Slack; it serves no emulator.
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let ackbar = start_ackbar(&test_config(&slack.api_url, &dir.path().join("b.db"))).await;
    for path in [
        "/sandbox",
        "/sandbox/",
        "/sandbox/page.js",
        "/sandbox/api/_events",
    ] {
        let r = client.get(ackbar.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_open_event_streams_of_sandbox_pages() {
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&sandbox_config(&dir.path().join("a.db"))).await;
    let mut stream = http()
        .get(ackbar.url("/sandbox/api/_events"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().expect("the first event");
    assert!(String::from_utf8_lossy(&first).contains("event: state"));

    // The page stays open (the stream is still being read from) while
    // ackbar stops: the graceful shutdown must not wait for it.
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = stream.chunk().await {} });
    tokio::time::timeout(Duration::from_secs(10), ackbar.stop())
        .await
        .expect("ackbar stopped with a sandbox page open");
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ended")
        .unwrap();
}

/// Where the screenshot goes: `ACKBAR_ARTEFACTS_DIR`, else
/// `target/artefacts` (of the crate, wherever cargo builds).
fn artefacts_dir() -> PathBuf {
    std::env::var_os("ACKBAR_ARTEFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artefacts"))
}

/// Saves the viewport as `name` in [`artefacts_dir`].
async fn save_screenshot(page: &Session, name: &str) {
    let png = page.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = artefacts_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Acts as `user` from now on (the page's "Acting as" field).
async fn act_as(page: &Session, user: &str) {
    let input = page.wait_for("#user", SHOWN, |_| true).await;
    page.clear(&input).await;
    page.type_text(&input, user).await;
    // `change` fires when the field loses focus.
    page.execute("document.getElementById('user').blur()", json!([]))
        .await;
}

async fn button(page: &Session, action_id: &str) -> common::webdriver::Element {
    page.wait_for(
        &format!(".message button[data-action-id='{action_id}']"),
        SHOWN,
        |_| true,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_is_acknowledged_and_silenced_in_a_real_browser() {
    let Some((chromium, driver)) = browser_binaries() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = sandbox_config(&dir.path().join("a.db"));
    // Only Alice may acknowledge; the Silence button needs an Alertmanager
    // (never called: the modal's answer is a validation error).
    config["routes"][0]["allowed"] = json!({ "acknowledge": [ALICE] });
    config["routes"][0]["alertmanager_url"] = json!("http://127.0.0.1:9");
    let ackbar = start_ackbar_process(&config, dir.path(), free_port()).await;
    let r = post_webhook(
        &http(),
        &ackbar.url("/webhook/alertmanager"),
        &webhook("disk", &[firing("DiskFull", XSS)]),
    )
    .await;
    assert!(r.status().is_success());

    let chromedriver = ChromeDriver::start(&driver, free_port()).await;
    let page = chromedriver.session(&chromium).await;
    page.goto(&ackbar.url("/sandbox/")).await;

    // The card, as Slack shows it, with the alert's markup as text.
    let card = page
        .wait_for(".message", SHOWN, |t| t.contains("DiskFull"))
        .await;
    let shown = page.text(&card).await;
    assert!(shown.contains(XSS), "the label shows as text: {shown}");
    let injected = page
        .execute(
            "return [document.querySelectorAll('.messages img').length, document.title]",
            json!([]),
        )
        .await;
    assert_eq!(
        injected,
        json!([0, "ackbar sandbox"]),
        "no markup from alerts ran"
    );
    let ack = button(&page, "ackbar_acknowledge").await;
    assert_eq!(
        page.property(&ack, "className").await,
        "button primary",
        "Acknowledge is Slack's green button"
    );

    // Bob may not acknowledge: ackbar's refusal shows to him only.
    act_as(&page, BOB).await;
    page.click(&button(&page, "ackbar_acknowledge").await).await;
    page.wait_for(".ephemeral", SHOWN, |t| {
        t.contains("Only visible to you") && t.contains("not allowed to acknowledge")
    })
    .await;

    // Alice acknowledges: the card changes in place, without a reload, and
    // the thread gets a reply.
    act_as(&page, ALICE).await;
    page.click(&button(&page, "ackbar_acknowledge").await).await;
    page.wait_for(".message", SHOWN, |t| {
        t.contains("acknowledged") && t.contains("Unacknowledge")
    })
    .await;
    let thread = page
        .wait_for(".thread-link", SHOWN, |t| t.contains("repl"))
        .await;
    page.click(&thread).await;
    page.wait_for(".thread .message", SHOWN, |t| t.contains("Acknowledged by"))
        .await;
    save_screenshot(&page, "sandbox-acknowledged.png").await;

    // The Silence modal: ackbar validates the duration and keeps the modal
    // open with the error next to the field; Cancel closes it.
    page.click(&button(&page, "ackbar_silence").await).await;
    page.wait_for("#modal .modal-title", SHOWN, |t| t == "Silence alerts")
        .await;
    let duration = page.wait_for("#modal input.input", SHOWN, |_| true).await;
    page.clear(&duration).await;
    page.type_text(&duration, "forever").await;
    page.click(&page.wait_for("#modal-submit", SHOWN, |_| true).await)
        .await;
    page.wait_for("#modal .field-error", SHOWN, |t| !t.is_empty())
        .await;
    save_screenshot(&page, "sandbox-silence-modal.png").await;
    page.click(&page.wait_for("#modal-close", SHOWN, |_| true).await)
        .await;
    page.wait_gone("#modal", SHOWN).await;

    page.quit().await;
    drop(chromedriver);
}
