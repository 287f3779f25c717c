//! `ackbar manifest`: the Slack app manifest that matches a config, so that
//! creating the app is one paste at <https://api.slack.com/apps?new_app=1>.
//!
//! Scopes and events come from [`crate::slack::scopes`] (derived from the
//! Web API methods ackbar calls); the request URLs are the paths the server
//! routes, under the config's `public_url`, unless Socket Mode carries
//! everything over the app token's connection.

use serde_json::{Value, json};

use crate::config::Config;
use crate::slack::paths;
use crate::slack::scopes::{BOT_EVENTS, bot_scopes};

/// The app name Slack shows when `--name` is not given.
pub const DEFAULT_APP_NAME: &str = "ackbar";
/// Slack's limit on `display_information.name`.
const MAX_APP_NAME_CHARS: usize = 35;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error(
        "Slack needs URLs to reach ackbar: set \"public_url\" in the config (for example \"https://ackbar.example.com\"), or use Socket Mode by setting \"slack.app_token\" to an xapp- token"
    )]
    NoPublicUrl,
    #[error("--name must be 1 to {MAX_APP_NAME_CHARS} characters, not {0}")]
    BadName(usize),
}

/// The manifest (JSON) for the app `name` that `config` runs.
pub fn manifest(config: &Config, name: &str) -> Result<Value, ManifestError> {
    let chars = name.trim().chars().count();
    if chars == 0 || chars > MAX_APP_NAME_CHARS {
        return Err(ManifestError::BadName(chars));
    }
    let socket_mode = config.slack.app_token.is_some();
    // In Socket Mode Slack delivers over the app's websocket: no URLs.
    let base = match (&config.public_url, socket_mode) {
        (_, true) => None,
        (Some(url), false) => Some(url.as_str()),
        (None, false) => return Err(ManifestError::NoPublicUrl),
    };
    let url = |path: &str| base.map(|b| format!("{b}{path}"));

    let mut command = json!({
        "command": config.slack.command,
        "description": "Firing cards, acknowledge, silence, who is on call",
        "usage_hint": "[list | ack CARD | silence CARD | oncall | help]",
        "should_escape": false,
    });
    let mut interactivity = json!({"is_enabled": true});
    let bot_events: Vec<&str> = BOT_EVENTS.iter().map(|(event, _)| *event).collect();
    let mut events = json!({"bot_events": bot_events});
    // What an OAuth install asks for, so the app grants the same.
    let scopes = match &config.slack.oauth {
        Some(oauth) => oauth.effective_scopes(),
        None => bot_scopes().into_iter().map(str::to_owned).collect(),
    };
    let mut oauth = json!({"scopes": {"bot": scopes}});
    if let Some(base) = base {
        command["url"] = json!(url(paths::COMMANDS));
        interactivity["request_url"] = json!(url(paths::INTERACTIONS));
        events["request_url"] = json!(url(paths::EVENTS));
        oauth["redirect_urls"] = json!([format!("{base}{}", paths::OAUTH_CALLBACK)]);
    }
    Ok(json!({
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name.trim(),
            "description": "Alerts as Slack cards to acknowledge and escalate",
        },
        "features": {
            "bot_user": {"display_name": name.trim(), "always_online": true},
            "slash_commands": [command],
        },
        "oauth_config": oauth,
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": false,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": false,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        Config::from_json(json).unwrap()
    }

    #[test]
    fn http_mode_points_every_request_url_at_public_url() {
        let c = config(r#"{"public_url": "https://ackbar.example.com"}"#);
        let m = manifest(&c, "ackbar").unwrap();
        assert_eq!(
            m["settings"]["interactivity"]["request_url"],
            "https://ackbar.example.com/slack/interactions"
        );
        assert_eq!(
            m["features"]["slash_commands"][0]["url"],
            "https://ackbar.example.com/slack/commands"
        );
        assert_eq!(m["settings"]["socket_mode_enabled"], false);
    }

    #[test]
    fn an_overlong_name_is_refused() {
        let c = config(r#"{"public_url": "https://a.example"}"#);
        assert_eq!(
            manifest(&c, &"x".repeat(36)),
            Err(ManifestError::BadName(36))
        );
        assert_eq!(manifest(&c, "  "), Err(ManifestError::BadName(0)));
    }
}
