//! The OAuth scopes ackbar's bot token needs, derived from the Web API
//! methods it calls, so that the app manifest and the OAuth install ask for
//! exactly what delivery and interactivity use.

use super::api::methods;

/// The bot scopes each Web API method ackbar calls with its bot token needs.
/// Methods that need no scope (`auth.test`, `chat.getPermalink`, the
/// `views.*` family, which a trigger id authorises) are listed with none, so
/// that the test below can tell a forgotten method from a scope-free one.
pub const METHOD_SCOPES: &[(&str, &[&str])] = &[
    (methods::POST_MESSAGE, &["chat:write"]),
    (methods::UPDATE, &["chat:write"]),
    (methods::POST_EPHEMERAL, &["chat:write"]),
    (methods::GET_PERMALINK, &[]),
    // Reconciliation reads the channel's history to find a card posted
    // before a crash; `groups:history` covers private channels.
    (methods::HISTORY, &["channels:history", "groups:history"]),
    (methods::AUTH_TEST, &[]),
    (methods::VIEWS_OPEN, &[]),
    (methods::VIEWS_UPDATE, &[]),
    (methods::VIEWS_PUSH, &[]),
    // Escalation DMs open the conversation first.
    (methods::CONVERSATIONS_OPEN, &["im:write"]),
    (methods::USERGROUPS_USERS_LIST, &["usergroups:read"]),
];

/// Scopes that no Web API call needs but a feature does: `commands` lets
/// the app register its slash command.
const FEATURE_SCOPES: &[&str] = &["commands"];

/// The Events API events ackbar subscribes its bot to, with the scopes each
/// needs: a mention in a card's thread ([`super::events`]), and the
/// uninstall and revocation notices that retire a workspace's token.
pub const BOT_EVENTS: &[(&str, &[&str])] = &[
    ("app_mention", &["app_mentions:read"]),
    ("app_uninstalled", &[]),
    ("tokens_revoked", &[]),
];

/// Every bot scope ackbar needs, sorted and without repeats.
pub fn bot_scopes() -> Vec<&'static str> {
    let mut scopes: Vec<&'static str> = METHOD_SCOPES
        .iter()
        .chain(BOT_EVENTS)
        .flat_map(|(_, scopes)| scopes.iter().copied())
        .chain(FEATURE_SCOPES.iter().copied())
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// The scopes `method` needs, or `None` when it is not in the table.
pub fn scopes_for(method: &str) -> Option<&'static [&'static str]> {
    METHOD_SCOPES
        .iter()
        .find(|(name, _)| *name == method)
        .map(|(_, scopes)| *scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method the bot token calls is in the table. The app-level
    /// `apps.connections.open` (Socket Mode) uses the app token's
    /// `connections:write`, and a `response_url` needs no token at all.
    #[test]
    fn every_bot_method_has_its_scopes_listed() {
        let bot_methods = [
            methods::POST_MESSAGE,
            methods::UPDATE,
            methods::GET_PERMALINK,
            methods::HISTORY,
            methods::AUTH_TEST,
            methods::POST_EPHEMERAL,
            methods::VIEWS_OPEN,
            methods::VIEWS_UPDATE,
            methods::VIEWS_PUSH,
            methods::CONVERSATIONS_OPEN,
            methods::USERGROUPS_USERS_LIST,
        ];
        for method in bot_methods {
            assert!(scopes_for(method).is_some(), "{method} has no scope entry");
        }
        assert_eq!(METHOD_SCOPES.len(), bot_methods.len());
    }

    #[test]
    fn bot_scopes_are_sorted_and_unique() {
        let scopes = bot_scopes();
        assert!(scopes.windows(2).all(|w| w[0] < w[1]), "{scopes:?}");
        assert!(scopes.contains(&"chat:write"));
        assert!(scopes.contains(&"commands"));
        assert!(
            scopes.contains(&"app_mentions:read"),
            "app_mention needs it"
        );
    }
}
