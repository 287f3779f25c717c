//! `POST /alertmanager`: any body either decodes into a notification within
//! the decoder's limits or is refused with a short message.
#![no_main]

use ackbar::ingest::alertmanager::{
    self, MAX_ALERTS, MAX_ANNOTATION_VALUE_BYTES, MAX_FIELD_BYTES, MAX_LABEL_VALUE_BYTES,
    MAX_LABELS, MAX_NAME_BYTES,
};
use ackbar::model::{Labels, Source};
use libfuzzer_sys::fuzz_target;

/// Longest refusal, in characters: a JSON path, at most 64 characters of
/// any input string and 300 of serde's message (see the module docs).
const MAX_ERROR_CHARS: usize = 1024;

fuzz_target!(|body: &[u8]| {
    match alertmanager::decode(body) {
        Ok(notification) => {
            assert!(notification.alerts.len() <= MAX_ALERTS);
            let Source::Alertmanager {
                receiver,
                group_key,
                external_url,
            } = &notification.source
            else {
                panic!("not an Alertmanager source");
            };
            for field in [receiver, group_key].into_iter().chain(external_url) {
                assert!(field.len() <= MAX_FIELD_BYTES);
            }
            check_labels(&notification.group_labels, MAX_LABEL_VALUE_BYTES);
            check_labels(&notification.common_labels, MAX_LABEL_VALUE_BYTES);
            check_labels(&notification.common_annotations, MAX_ANNOTATION_VALUE_BYTES);
            for alert in &notification.alerts {
                check_labels(&alert.labels, MAX_LABEL_VALUE_BYTES);
                check_labels(&alert.annotations, MAX_ANNOTATION_VALUE_BYTES);
                if let Some(url) = &alert.generator_url {
                    assert!(!url.is_empty() && url.len() <= MAX_FIELD_BYTES);
                }
                assert!(alert.occurrences.is_none());
            }
        }
        Err(e) => {
            let message = e.to_string();
            let n = message.chars().count();
            assert!(n <= MAX_ERROR_CHARS, "{n}-character error: {message}");
        }
    }
});

fn check_labels(labels: &Labels, max_value: usize) {
    assert!(labels.len() <= MAX_LABELS);
    for (name, value) in labels {
        assert!(name.len() <= MAX_NAME_BYTES);
        assert!(value.len() <= max_value);
    }
}
