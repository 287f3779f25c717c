//! `POST /slack/commands` bodies: the form decoder is total, and the
//! command text is read into a subcommand whose echo back to the user is
//! bounded.
#![no_main]

use ackbar::slack::commands::{Command, Subcommand, unknown_subcommand_text};
use ackbar::slack::interact::InteractError;
use libfuzzer_sys::fuzz_target;

/// `unknown_subcommand_text` repeats at most 40 characters of the word,
/// each escaped to at most 5 bytes (`&amp;`), plus the ellipsis and the
/// help text around it.
const MAX_UNKNOWN_ECHO_BYTES: usize = 41 * 5 + 1024;

fuzz_target!(|data: &[u8]| {
    let command = match Command::from_form(data) {
        Ok(command) => command,
        Err(InteractError::Malformed(_)) => return,
        Err(e) => panic!("decoding failed with {e:?}"),
    };
    let word = |w: &str| !w.is_empty() && !w.contains(char::is_whitespace);
    match command.subcommand() {
        Subcommand::Help => assert!(
            command.text.trim().is_empty()
                || command
                    .text
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("help"))
        ),
        Subcommand::Ack(Some(id)) | Subcommand::Silence(Some(id)) => assert!(word(id)),
        Subcommand::Unknown(first) => {
            assert!(word(first));
            let lower = first.to_ascii_lowercase();
            assert!(!["help", "list", "ack", "silence", "oncall"].contains(&lower.as_str()));
            let text = unknown_subcommand_text(first);
            assert!(text.len() <= MAX_UNKNOWN_ECHO_BYTES, "{} bytes", text.len());
            assert!(!text.contains("<@") && !text.contains("<!"), "{text}");
        }
        Subcommand::List
        | Subcommand::Ack(None)
        | Subcommand::Silence(None)
        | Subcommand::Oncall => {}
    }
});
