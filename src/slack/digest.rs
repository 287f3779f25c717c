//! A channel's scheduled digest as a Block Kit message: the period it
//! covers, the figures, the noisiest alerts and what is firing now.
//!
//! Everything that came from alerts (names, titles) is untrusted text:
//! escaped and with mentions broken, so a digest never pings anyone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::blocks::{
    Context, Header, Message, MessageBuilder, Metadata, Section, Text, link, truncate, untrusted,
};
use super::cards::format_duration;
use crate::model::{Digest, DigestEvery, FiringCard};

/// A digest counted this long after its scheduled instant says it is late
/// (ackbar was down or behind), so readers know "firing now" is later than
/// the period's end.
const LATE_AFTER: chrono::Duration = chrono::Duration::minutes(5);
/// Message metadata naming a posted digest, so that a post whose outcome
/// is unknown can be found in the channel's history instead of sent twice.
pub const METADATA_EVENT_TYPE: &str = "ackbar_digest";

/// The metadata payload of `digest`'s message.
pub fn metadata_payload(digest: &Digest) -> serde_json::Value {
    serde_json::json!({
        "digest": digest.key,
        "period_end": digest.period_end.timestamp(),
    })
}

/// Longest alert name or card title shown.
const MAX_NAME: usize = 100;

/// Renders `digest`. `permalinks[i]` is the link to
/// `digest.figures.oldest_firing[i]`'s card, where Slack gave one.
pub fn render_digest(digest: &Digest, permalinks: &[Option<String>]) -> Message {
    let tz: Tz = digest.time_zone.parse().unwrap_or(Tz::UTC);
    let local = |t: DateTime<Utc>, format: &str| t.with_timezone(&tz).format(format).to_string();
    let f = &digest.figures;
    let title = match digest.every {
        DigestEvery::Day => format!("Daily digest: {}", local(digest.period_end, "%a %-d %b %Y")),
        DigestEvery::Week => format!(
            "Weekly digest: week to {}",
            local(digest.period_end, "%a %-d %b %Y")
        ),
    };
    let period = format!(
        "{} to {} ({})",
        local(digest.period_start, "%a %-d %b %H:%M"),
        local(digest.period_end, "%a %-d %b %H:%M"),
        tz.name()
    );
    let mut context = vec![Text::mrkdwn(format!(
        "Cards in <#{}> from {period}",
        digest.channel
    ))];
    if digest.as_of - digest.period_end > LATE_AFTER {
        context.push(Text::mrkdwn(format!(
            "Sent late, at {}: ackbar was not running at the scheduled time",
            local(digest.as_of, "%a %-d %b %H:%M")
        )));
    }
    let mean = |d: Option<std::time::Duration>| match d {
        Some(d) => format_duration(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        None => "—".to_owned(),
    };
    let figures = Section::from_fields([
        Text::mrkdwn(format!("*Fired*\n{}", f.fired)),
        Text::mrkdwn(format!("*Resolved*\n{}", f.resolved)),
        Text::mrkdwn(format!("*Acknowledged*\n{}", f.acknowledged)),
        Text::mrkdwn(format!("*Firing now*\n{}", f.firing_now)),
        Text::mrkdwn(format!(
            "*Mean time to acknowledge*\n{}",
            mean(f.mean_time_to_acknowledge)
        )),
        Text::mrkdwn(format!(
            "*Mean time to resolve*\n{}",
            mean(f.mean_time_to_resolve)
        )),
    ])
    .block_id("ackbar_digest_figures");

    let noisiest = if f.noisiest.is_empty() {
        "No alerts started in this period.".to_owned()
    } else {
        f.noisiest
            .iter()
            .map(|n| {
                let name = if n.name.is_empty() {
                    "(no alertname)".to_owned()
                } else {
                    untrusted(&truncate(&n.name, MAX_NAME))
                };
                format!("• {name} ×{}", n.count)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    let mut firing = f
        .oldest_firing
        .iter()
        .enumerate()
        .map(|(i, card)| firing_line(card, permalinks.get(i).cloned().flatten(), digest.as_of))
        .collect::<Vec<_>>();
    let unlisted = f.firing_now.saturating_sub(f.oldest_firing.len() as u64);
    if unlisted > 0 {
        firing.push(format!("and {unlisted} more"));
    }
    let firing = if firing.is_empty() {
        "Nothing is firing.".to_owned()
    } else {
        firing.join("\n")
    };

    let fallback = format!(
        "{title}: {} fired, {} resolved, {} firing now",
        f.fired, f.resolved, f.firing_now
    );
    MessageBuilder::new(fallback)
        .metadata(Metadata {
            event_type: METADATA_EVENT_TYPE.to_owned(),
            event_payload: metadata_payload(digest),
        })
        .block(Header::new(title).block_id("ackbar_digest_header"))
        .block(Context::new(context).block_id("ackbar_digest_period"))
        .block(figures)
        .block(
            Section::mrkdwn(format!("*Noisiest alerts*\n{noisiest}"))
                .block_id("ackbar_digest_noisiest"),
        )
        .block(
            Section::mrkdwn(format!(
                "*Firing now* (oldest first, as of {})\n{firing}",
                local(digest.as_of, "%H:%M")
            ))
            .block_id("ackbar_digest_firing"),
        )
        .build()
}

/// `• <permalink|Title> · firing for 2h 5m`, or the title alone.
fn firing_line(card: &FiringCard, permalink: Option<String>, now: DateTime<Utc>) -> String {
    let title = truncate(&card.title, MAX_NAME);
    let shown = match permalink {
        Some(url) => link(&url, &title),
        None => untrusted(&title),
    };
    format!(
        "• {shown} · firing for {}",
        format_duration((now - card.opened_at).num_seconds())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CardId, DigestFigures, NoisyAlert};
    use crate::slack::blocks::check_limits;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn digest(figures: DigestFigures) -> Digest {
        Digest {
            key: "C0DIGEST01 day 09:00 Europe/Berlin".to_owned(),
            channel: "C0DIGEST01".to_owned(),
            every: DigestEvery::Day,
            time_zone: "Europe/Berlin".to_owned(),
            period_start: utc("2026-11-28T08:00:00Z"),
            period_end: utc("2026-11-29T08:00:00Z"),
            as_of: utc("2026-11-29T08:00:01Z"),
            figures,
        }
    }

    fn json(message: &Message) -> String {
        serde_json::to_string(message).unwrap()
    }

    #[test]
    fn shows_the_period_in_local_time_and_the_figures() {
        let m = render_digest(
            &digest(DigestFigures {
                fired: 3,
                resolved: 2,
                acknowledged: 1,
                mean_time_to_acknowledge: Some(std::time::Duration::from_secs(240)),
                mean_time_to_resolve: Some(std::time::Duration::from_secs(3720)),
                noisiest: vec![NoisyAlert {
                    name: "DiskFull".to_owned(),
                    count: 4,
                }],
                firing_now: 1,
                oldest_firing: vec![FiringCard {
                    id: CardId("c1".to_owned()),
                    title: "DiskFull".to_owned(),
                    ts: Some("1.000001".to_owned()),
                    opened_at: utc("2026-11-29T06:00:01Z"),
                }],
            }),
            &[Some(
                "https://example.slack.com/archives/C0DIGEST01/p1000001".to_owned(),
            )],
        );
        check_limits(&m).unwrap();
        let text = json(&m);
        for expected in [
            "Daily digest: Sun 29 Nov 2026",
            "Sat 28 Nov 09:00 to Sun 29 Nov 09:00 (Europe/Berlin)",
            "*Fired*\\n3",
            "*Mean time to acknowledge*\\n4m",
            "*Mean time to resolve*\\n1h 2m",
            "• DiskFull ×4",
            "<https://example.slack.com/archives/C0DIGEST01/p1000001|DiskFull> · firing for 2h",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        assert!(!text.contains("Sent late"), "{text}");
    }

    #[test]
    fn a_late_digest_says_so_and_empty_figures_read_plainly() {
        let mut d = digest(DigestFigures::default());
        d.as_of = utc("2026-11-30T07:30:00Z");
        let text = json(&render_digest(&d, &[]));
        assert!(text.contains("Sent late, at Mon 30 Nov 08:30"), "{text}");
        assert!(text.contains("No alerts started in this period."), "{text}");
        assert!(text.contains("Nothing is firing."), "{text}");
        assert!(text.contains("*Mean time to resolve*\\n—"), "{text}");
    }

    #[test]
    fn alert_text_never_pings_and_long_lists_stay_within_limits() {
        let hostile = format!("<!channel> @here {}", "x".repeat(5_000));
        let d = digest(DigestFigures {
            noisiest: (0..5)
                .map(|i| NoisyAlert {
                    name: format!("{hostile}{i}"),
                    count: 9,
                })
                .collect(),
            firing_now: 40,
            oldest_firing: (0..5)
                .map(|i| FiringCard {
                    id: CardId(format!("c{i}")),
                    title: hostile.clone(),
                    ts: None,
                    opened_at: utc("2026-11-29T06:00:00Z"),
                })
                .collect(),
            ..DigestFigures::default()
        });
        let m = render_digest(&d, &[]);
        check_limits(&m).unwrap();
        let blocks = serde_json::to_value(&m.blocks).unwrap();
        crate::slack::sandbox::validate::validate_message(Some(&m.text), Some(&blocks)).unwrap();
        let text = json(&m);
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(
            !text.contains("@here"),
            "mention broken by a zero-width space"
        );
        assert!(text.contains("and 35 more"), "{text}");
    }
}
