//! A tiny W3C WebDriver client (reqwest, JSON over HTTP) driving headless
//! Chromium through `chromedriver`: enough to open a page, find elements by
//! CSS selector, click, type, read text, run a script and take a
//! screenshot. `chromedriver` runs in a process group of its own, killed
//! (with the browsers it started) when [`ChromeDriver`] is dropped, so a
//! failing test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// W3C's key for an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Longest a single WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The browser and its driver, or `None` (with the reason printed) when
/// they are not installed. With `ACKBAR_REQUIRE_BROWSER=1` (set by CI) a
/// missing one fails the test instead.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|name| {
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.is_file())
        })
    };
    let chromium = find(&["chromium", "chromium-browser"]);
    let driver = find(&["chromedriver"]);
    if let (Some(chromium), Some(driver)) = (chromium.clone(), driver.clone()) {
        return Some((chromium, driver));
    }
    let missing = match (chromium, driver) {
        (None, None) => "chromium and chromedriver",
        (None, _) => "chromium",
        _ => "chromedriver",
    };
    if std::env::var("ACKBAR_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("ACKBAR_REQUIRE_BROWSER=1 but {missing} is not on PATH");
    }
    eprintln!(
        "SKIPPED: this test needs a real browser ({missing} missing); install them with `apt-get install chromium chromium-driver`"
    );
    None
}

/// A running `chromedriver` on a loopback port.
pub struct ChromeDriver {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The driver and every browser it started share its process group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChromeDriver {
    /// Starts `driver` on `port` and waits (bounded) until it is ready.
    pub async fn start(driver: &Path, port: u16) -> ChromeDriver {
        use std::os::unix::process::CommandExt;
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let cd = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(COMMAND_TIMEOUT)
                .build()
                .expect("http client"),
        };
        for _ in 0..200 {
            if let Ok(r) = cd.http.get(format!("{}/status", cd.url)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return cd;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver was not ready within 10 s");
    }

    /// A new headless Chromium session.
    pub async fn session(&self, chromium: &Path) -> Session {
        let caps = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,900"],
                },
            }}
        });
        let r = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("POST /session");
        let status = r.status();
        let v: Value = r.json().await.expect("session answer");
        assert!(status.is_success(), "chromedriver refused a session: {v}");
        let id = v["value"]["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        Session {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.url),
        }
    }
}

/// A found element (its WebDriver reference).
#[derive(Debug, Clone)]
pub struct Element(String);

/// One browser session.
pub struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    /// Sends a command; `Err` carries WebDriver's error code.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.map_err(|e| format!("transport: {e}"))?;
        let ok = r.status().is_success();
        let v: Value = r.json().await.map_err(|e| format!("answer: {e}"))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"]["error"].as_str().unwrap_or("unknown").to_owned()
                + ": "
                + v["value"]["message"].as_str().unwrap_or(""))
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("WebDriver POST {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The elements matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned())))
            .collect()
    }

    /// Polls until an element matches `css` and `check` holds for its
    /// text, within `timeout`.
    pub async fn wait_for(
        &self,
        css: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> Element {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for e in self.find_all(css).await {
                // An element may go stale when the page re-renders.
                if let Ok(text) = self.try_text(&e).await
                    && check(&text)
                {
                    return e;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{css}` as expected within {timeout:?}; the page shows:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until nothing matches `css`, within `timeout`.
    pub async fn wait_gone(&self, css: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.find_all(css).await.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{css}` still there after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_text(&self, e: &Element) -> Result<String, String> {
        let v = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{}/text", e.0),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    pub async fn text(&self, e: &Element) -> String {
        self.try_text(e)
            .await
            .unwrap_or_else(|err| panic!("element text: {err}"))
    }

    /// A DOM property of `e` (`className`, `value`, ...), as text.
    pub async fn property(&self, e: &Element, name: &str) -> String {
        let v = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{}/property/{name}", e.0),
                None,
            )
            .await
            .unwrap_or_else(|err| panic!("element property {name}: {err}"));
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Everything the page shows, as text.
    pub async fn page_text(&self) -> String {
        self.execute("return document.body.innerText", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn clear(&self, e: &Element) {
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    pub async fn type_text(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }))
            .await;
    }

    /// Runs `script` (a function body) with `args`; its return value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64 PNG")
    }

    /// Ends the session (closes the browser).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}
