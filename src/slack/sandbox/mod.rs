//! A local Slack Web API emulator.
