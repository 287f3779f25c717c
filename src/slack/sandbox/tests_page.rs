//! The sandbox page and its live updates, over real loopback HTTP.

use std::time::Duration;

use super::*;
use crate::slack::api::SlackClient;
use crate::slack::blocks::Message;

const CH: &str = "C0ALERTS01";
const TOKEN: &str = "xoxb-sandbox-test-token";
/// Longest any single wait of these tests takes.
const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    sandbox: Sandbox,
    client: SlackClient,
    /// `http://127.0.0.1:PORT` (the page is at `/`, the API under `/api`).
    root: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Harness {
    let sandbox = Sandbox::new(SandboxOptions {
        token: Some(TOKEN.to_owned()),
        post_per_channel: RateLimit::UNLIMITED,
        ..SandboxOptions::with_channels([CH])
    });
    let (base, task) = spawn_standalone(sandbox.clone()).await.expect("bind");
    let client = SlackClient::new(&base, TOKEN, WAIT).expect("client");
    Harness {
        sandbox,
        client,
        root: base.trim_end_matches("/api").to_owned(),
        http: reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
        task,
    }
}

fn text(t: &str) -> Message {
    Message {
        text: t.to_owned(),
        blocks: Vec::new(),
        metadata: None,
    }
}

/// An open `GET /api/_events` stream.
struct Events(reqwest::Response, String);

impl Events {
    async fn open(h: &Harness) -> Events {
        let r = h
            .http
            .get(format!("{}/api/_events", h.root))
            .send()
            .await
            .expect("events");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Events(r, String::new())
    }

    /// The version carried by the next `state` event.
    async fn next_version(&mut self) -> u64 {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.1.find("\n\n") {
                    let event: String = self.1.drain(..end + 2).collect();
                    if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                        assert!(event.contains("event: state"), "{event}");
                        let v: serde_json::Value = serde_json::from_str(data).expect("json data");
                        return v["version"].as_u64().expect("version");
                    }
                    continue;
                }
                let chunk = self.0.chunk().await.expect("read").expect("stream open");
                self.1.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event within the wait")
    }

    /// Reads until the server ends the stream.
    async fn until_end(mut self) {
        tokio::time::timeout(WAIT, async {
            while let Ok(Some(_)) = self.0.chunk().await {}
        })
        .await
        .expect("the stream ended");
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let h = start().await;
    for (path, content_type, needle) in [
        ("/", "text/html", "page.js"),
        ("/page.js", "text/javascript", "EventSource"),
        ("/page.css", "text/css", ".button.primary"),
    ] {
        let r = h
            .http
            .get(format!("{}{path}", h.root))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with(content_type),
            "{path}: {headers:?}"
        );
        let csp = headers["content-security-policy"]
            .to_str()
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(r.text().await.expect("body").contains(needle), "{path}");
    }
}

#[test]
fn the_page_builds_its_dom_from_text_only() {
    // Alert labels reach the page; markup from them must never be parsed.
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setAttribute('on",
    ] {
        assert!(!page::PAGE_JS.contains(sink), "page.js uses {sink}");
    }
    for html in [page::INDEX_HTML, page::PAGE_CSS] {
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing fetched from elsewhere"
        );
    }
    assert!(
        !page::INDEX_HTML.contains("<script>"),
        "no inline script (the policy forbids it)"
    );
}

#[tokio::test]
async fn changes_wake_the_event_stream_and_reading_the_state_does_not() {
    let h = start().await;
    let mut events = Events::open(&h).await;
    let first = events.next_version().await;
    assert_eq!(
        first,
        h.sandbox.live_version(),
        "the first event comes at once"
    );

    for path in ["/api/state", "/api/_faults", "/", "/page.js"] {
        h.http
            .get(format!("{}{path}", h.root))
            .send()
            .await
            .expect("read");
    }
    assert_eq!(
        h.sandbox.live_version(),
        first,
        "reads do not bump the version"
    );

    h.client
        .post_message(CH, &text("DiskFull"), None)
        .await
        .expect("post");
    let next = events.next_version().await;
    assert!(next > first, "{next} > {first}");
    assert_eq!(h.sandbox.live_watchers(), 1);
}

#[tokio::test]
async fn event_streams_are_bounded_and_give_their_seat_back() {
    let h = start().await;
    let mut open = Vec::new();
    for _ in 0..live::MAX_WATCHERS {
        open.push(Events::open(&h).await);
    }
    let refused = h
        .http
        .get(format!("{}/api/_events", h.root))
        .send()
        .await
        .expect("events");
    assert_eq!(refused.status(), 503);
    let body = refused.text().await.expect("body");
    assert!(body.contains("at most 16"), "{body}");

    // A closed page is noticed at the next write (a change, or the
    // keep-alive), and its seat is free again.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.sandbox.live_watchers() == live::MAX_WATCHERS {
        assert!(tokio::time::Instant::now() < deadline, "the seat came back");
        h.client
            .post_message(CH, &text("tick"), None)
            .await
            .expect("post");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    open.push(Events::open(&h).await);
}

#[tokio::test]
async fn closing_live_updates_ends_every_stream() {
    let h = start().await;
    let mut events = Events::open(&h).await;
    events.next_version().await;
    h.sandbox.close_live_updates();
    events.until_end().await;
    let refused = h
        .http
        .get(format!("{}/api/_events", h.root))
        .send()
        .await
        .expect("events");
    assert_eq!(refused.status(), 503);
    assert_eq!(h.sandbox.live_watchers(), 0);
}
