//! Which bot token a Slack call goes out with.
//!
//! ackbar posts into one workspace with `slack.bot_token`, into several
//! with the installations OAuth installs leave in the store
//! ([`crate::slack::oauth`]), or both. A route names its workspace with
//! `routes[].team`; a route without one uses `slack.bot_token`, or else
//! the only installed workspace. Anything else (the route's workspace is
//! not installed, or several are and the route names none) is a permanent
//! error whose message says what to do: delivery dead-letters the
//! operation with it instead of retrying.
//!
//! Tokens read from the store are cached for [`TOKEN_CACHE_TTL`], so a send
//! does not cost a store read, yet a workspace uninstalled through another
//! replica stops being used soon; a call Slack refuses because the token
//! was revoked drops the cache entry at once ([`Workspaces::forget`]), and
//! when the store holds a newer token by then (the workspace reinstalled
//! through another replica) delivery retries with it
//! ([`Workspaces::token_replaced`]) instead of dead-lettering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api::{SlackClient, SlackError};
use crate::store::{Store, StoreError};

/// How long a token read from the store is used without reading it again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

/// Slack errors after which a token is not worth using again: the cached
/// copy is dropped so the next call reads the store.
const DEAD_TOKEN_ERRORS: &[&str] = &[
    "invalid_auth",
    "token_revoked",
    "account_inactive",
    "not_authed",
];

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "workspace {team} has not installed ackbar, or has uninstalled it; install it at {install}"
    )]
    NotInstalled { team: String, install: String },
    #[error(
        "no workspace has installed ackbar yet and slack.bot_token is not set; install it at {install}"
    )]
    NoneInstalled { install: String },
    #[error(
        "several workspaces have installed ackbar and this route names none of them: set routes[].team to the workspace's id (T...)"
    )]
    Ambiguous,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Slack(#[from] SlackError),
}

impl WorkspaceError {
    /// Whether trying again later can help (the store was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, WorkspaceError::Store(_))
    }
}

/// The clients of every workspace ackbar posts into. Cheap to clone.
#[derive(Clone)]
pub struct Workspaces {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// Same API base and connection pool; no token.
    template: SlackClient,
    /// `slack.bot_token` (or the sandbox's token).
    default: Option<SlackClient>,
    /// Whether OAuth installs are configured: without them the store holds
    /// no tokens worth asking for.
    oauth: bool,
    /// Shown in errors: where to install.
    install_url: String,
    cache: Mutex<HashMap<String, (Instant, SlackClient)>>,
}

/// The number of installations read to tell "one" from "several".
const AMBIGUITY_PROBE: u32 = 2;

impl Workspaces {
    /// `template` is a client without a token ([`SlackClient::without_token`]);
    /// `default_token` is `slack.bot_token`.
    pub fn new(
        store: Arc<dyn Store>,
        template: SlackClient,
        default_token: Option<&str>,
        oauth: bool,
        install_url: String,
    ) -> Result<Workspaces, SlackError> {
        let default = default_token.map(|t| template.with_token(t)).transpose()?;
        Ok(Workspaces {
            inner: Arc::new(Inner {
                store,
                template,
                default,
                oauth,
                install_url,
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The client without a token, for calls that need none (a
    /// `response_url`, Socket Mode).
    pub fn template(&self) -> &SlackClient {
        &self.inner.template
    }

    /// The client a route naming `team` (or none) posts with.
    pub async fn for_route(&self, team: Option<&str>) -> Result<SlackClient, WorkspaceError> {
        let inner = &self.inner;
        match team {
            Some(team) => self
                .installed(team)
                .await?
                .ok_or_else(|| WorkspaceError::NotInstalled {
                    team: team.to_owned(),
                    install: inner.install_url.clone(),
                }),
            None => {
                if let Some(default) = &inner.default {
                    return Ok(default.clone());
                }
                self.only_installation().await
            }
        }
    }

    /// The client to answer a request from workspace `team` with (an
    /// interaction's follow-up: a modal, an ephemeral message): its
    /// installation, else `slack.bot_token`, else the only installation.
    pub async fn for_request(&self, team: Option<&str>) -> Result<SlackClient, WorkspaceError> {
        if let Some(team) = team {
            if let Some(client) = self.installed(team).await? {
                return Ok(client);
            }
            if self.inner.default.is_none() && self.inner.oauth {
                return Err(WorkspaceError::NotInstalled {
                    team: team.to_owned(),
                    install: self.inner.install_url.clone(),
                });
            }
        }
        self.for_route(None).await
    }

    /// After Slack refused a call with `error`: stop using the cached token
    /// of `team` (`None`: the route's default) if the token is dead.
    pub fn forget_if_dead(&self, team: Option<&str>, error: &SlackError) {
        if is_dead_token(error) {
            self.forget(team);
        }
    }

    /// After `used` failed with `error`: whether it failed because its token
    /// is dead and the store now holds another one for `team` (a reinstall
    /// through another replica while this one had the old token cached).
    /// Drops the cached token either way, so the next call reads the store.
    pub async fn token_replaced(
        &self,
        team: Option<&str>,
        used: &SlackClient,
        error: &SlackError,
    ) -> bool {
        if !is_dead_token(error) || !self.inner.oauth {
            return false;
        }
        self.forget(team);
        match self.for_route(team).await {
            Ok(fresh) => !fresh.same_token(used),
            Err(_) => false,
        }
    }

    /// `error` as a dead letter's reason: for a dead token, with what to do.
    pub fn explain(&self, team: Option<&str>, error: &SlackError) -> String {
        if !is_dead_token(error) {
            return error.to_string();
        }
        let whose = match team {
            Some(team) => format!("workspace {team}'s bot token"),
            None => "the bot token".to_owned(),
        };
        let fix = if self.inner.oauth {
            format!("install ackbar again at {}", self.inner.install_url)
        } else {
            "set a valid slack.bot_token".to_owned()
        };
        format!("{error}: {whose} no longer works; {fix}")
    }

    /// Drops the cached token of `team` (`None`: the only installation).
    pub fn forget(&self, team: Option<&str>) {
        lock(&self.inner.cache).remove(team.unwrap_or_default());
    }

    /// The installation of `team`, from the cache or the store.
    async fn installed(&self, team: &str) -> Result<Option<SlackClient>, WorkspaceError> {
        if !self.inner.oauth {
            return Ok(None);
        }
        if let Some(client) = self.cached(team) {
            return Ok(Some(client));
        }
        let Some(installation) = self.inner.store.installation(team).await? else {
            return Ok(None);
        };
        let client = self.inner.template.with_token(&installation.bot_token)?;
        self.remember(team, &client);
        Ok(Some(client))
    }

    async fn only_installation(&self) -> Result<SlackClient, WorkspaceError> {
        let install = || self.inner.install_url.clone();
        if !self.inner.oauth {
            return Err(WorkspaceError::NoneInstalled { install: install() });
        }
        // Cached under the empty team: "whichever is the only one".
        if let Some(client) = self.cached("") {
            return Ok(client);
        }
        let mut found = self.inner.store.installations(AMBIGUITY_PROBE).await?;
        match found.len() {
            0 => Err(WorkspaceError::NoneInstalled { install: install() }),
            1 => {
                let installation = found.remove(0);
                let client = self.inner.template.with_token(&installation.bot_token)?;
                self.remember("", &client);
                Ok(client)
            }
            _ => Err(WorkspaceError::Ambiguous),
        }
    }

    fn cached(&self, key: &str) -> Option<SlackClient> {
        let cache = lock(&self.inner.cache);
        let (at, client) = cache.get(key)?;
        (at.elapsed() < TOKEN_CACHE_TTL).then(|| client.clone())
    }

    fn remember(&self, key: &str, client: &SlackClient) {
        lock(&self.inner.cache).insert(key.to_owned(), (Instant::now(), client.clone()));
    }
}

fn is_dead_token(error: &SlackError) -> bool {
    error
        .api_error()
        .is_some_and(|code| DEAD_TOKEN_ERRORS.contains(&code))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
