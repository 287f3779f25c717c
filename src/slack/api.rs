//! Typed Slack Web API client.
