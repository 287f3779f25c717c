//! The OAuth v2 install flow driven like a browser: ackbar's install page,
//! the sandbox's authorize page, ackbar's callback, with the install
//! cookie kept by hand (so a test can also drop or swap it).

use serde_json::{Value, json};

use super::{CHANNEL, TOKEN, test_config};
use ackbar::slack::sandbox::{OAuthApp, SandboxOptions};

pub const CLIENT_ID: &str = "1111.2222";
pub const TEAM_A: &str = "T0AAAAAAA";
pub const TEAM_B: &str = "T0BBBBBBB";
pub const CHAN_A: &str = "C0CHANAAA";
pub const CHAN_B: &str = "C0CHANBBB";

/// A sandbox that knows the app's client id and `client_secret`, signs
/// with `signing_secret`, and accepts no token but the ones its installs
/// issue ([`TOKEN`] is configured there and never given to ackbar).
pub fn oauth_sandbox_options(client_secret: &str, signing_secret: &str) -> SandboxOptions {
    SandboxOptions {
        channels: vec![CHAN_A.to_owned(), CHAN_B.to_owned(), CHANNEL.to_owned()],
        token: Some(TOKEN.to_owned()),
        signing_secret: Some(signing_secret.to_owned()),
        oauth: Some(OAuthApp {
            client_id: CLIENT_ID.to_owned(),
            client_secret: client_secret.to_owned(),
        }),
        ..SandboxOptions::default()
    }
}

/// The sandbox's authorize page for its API base (`http://HOST/api`).
pub fn authorize_url(api_url: &str) -> String {
    format!("{}/oauth/v2/authorize", api_url.trim_end_matches("/api"))
}

/// [`test_config`] without a bot token, with OAuth installs, reachable at
/// `public_url`, and one route per team: `group=a` into [`CHAN_A`] of
/// [`TEAM_A`], `group=b` into [`CHAN_B`] of [`TEAM_B`].
pub fn oauth_config(
    api_url: &str,
    store_url: &str,
    public_url: &str,
    client_secret: &str,
    signing_secret: &str,
) -> Value {
    let mut config = test_config(api_url, std::path::Path::new("unused.db"));
    config["store"]["url"] = json!(store_url);
    config["public_url"] = json!(public_url);
    config["slack"] = json!({
        "api_url": api_url,
        "request_timeout": "2s",
        "signing_secret": signing_secret,
        "oauth": {
            "client_id": CLIENT_ID,
            "client_secret": client_secret,
            "authorize_url": authorize_url(api_url),
            "state_ttl": "1m",
        },
    });
    config["routes"] = json!([
        { "name": "a", "matchers": ["group=a"], "channel": CHAN_A, "team": TEAM_A },
        { "name": "b", "matchers": ["group=b"], "channel": CHAN_B, "team": TEAM_B },
    ]);
    config
}

/// What a browser got back.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

/// A browser: follows nothing by itself, keeps ackbar's install cookie.
pub struct Browser {
    http: reqwest::Client,
    /// `name=value` of the install cookie, as it would send it.
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let mut request = self.http.get(url);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("browser request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let location = header("location");
        let set_cookie = header("set-cookie");
        if let Some(set) = &set_cookie {
            let pair = set.split(';').next().unwrap().trim().to_owned();
            self.cookie = if set.contains("Max-Age=0") || pair.ends_with('=') {
                None
            } else {
                Some(pair)
            };
        }
        Page {
            status: response.status().as_u16(),
            location,
            set_cookie,
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// Opens ackbar's install page; returns where it sends the browser.
    pub async fn start_install(&mut self, ackbar_base: &str) -> String {
        let page = self.get(&format!("{ackbar_base}/slack/install")).await;
        assert_eq!(page.status, 302, "{page:?}");
        page.location.expect("the install page redirects")
    }

    /// On Slack's (the sandbox's) authorize page, installs into `team`, or
    /// cancels with `deny`; returns the callback URL Slack sends the
    /// browser to.
    pub async fn approve(&mut self, authorize: &str, team: &str, deny: bool) -> String {
        let deny = if deny { "&deny=1" } else { "" };
        let page = self.get(&format!("{authorize}&team={team}{deny}")).await;
        assert_eq!(page.status, 302, "{page:?}");
        page.location.expect("the authorize page redirects")
    }

    /// The whole install of `team`: install page, approval, callback.
    pub async fn install(&mut self, ackbar_base: &str, team: &str) -> Page {
        let authorize = self.start_install(ackbar_base).await;
        let callback = self.approve(&authorize, team, false).await;
        self.get(&callback).await
    }
}
