//! The paths ackbar answers Slack on: the server routes them, the app
//! manifest advertises them, and the sandbox sends to them, so all three
//! read them from here.

/// `block_actions`, `view_submission`, `view_closed`, shortcuts.
pub const INTERACTIONS: &str = "/slack/interactions";
/// Slash commands.
pub const COMMANDS: &str = "/slack/commands";
/// The Events API.
pub const EVENTS: &str = "/slack/events";
/// Where a browser starts the OAuth v2 install.
pub const INSTALL: &str = "/slack/install";
/// Where Slack sends the browser back after the install.
pub const OAUTH_CALLBACK: &str = "/slack/oauth/callback";
