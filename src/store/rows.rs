//! Rows to types, the same for every backend.
//!
//! Both schemas store the same columns with the same meaning: instants as
//! unix milliseconds, fingerprints and digests as the signed 64-bit
//! reinterpretation of their unsigned value, label maps and thread events as
//! JSON text. So one set of decoders serves SQLite and PostgreSQL rows
//! through [`Columns`], and only the SQL differs between the backends.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};

use super::{
    CardBrief, CardSummary, DueEscalation, OpKind, OpState, OutboxEntry, OutboxOp, StoreError,
};
use crate::model::{
    Acknowledgement, AlertStatus, CardAlert, CardId, CardState, CardView, DigestFigures,
    Fingerprint, FiringCard, Labels, NoisyAlert, Occurrences,
};
use crate::pipeline::card::{CardSnapshot, KnownAlert};

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {v}")))
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    // Serializing maps of strings and our own enums cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

/// Typed access to the columns of one row, whichever the backend.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;

    fn instant(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        from_ms(self.int(column)?)
    }
    fn opt_instant(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(column)?.map(from_ms).transpose()
    }
    fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T, StoreError> {
        from_json(&self.text(column)?)
    }
    fn card_state(&self, column: &str) -> Result<CardState, StoreError> {
        CardState::from_str(&self.text(column)?).map_err(StoreError::Corrupt)
    }
    fn alert_status(&self, column: &str) -> Result<AlertStatus, StoreError> {
        AlertStatus::from_str(&self.text(column)?).map_err(StoreError::Corrupt)
    }
    /// A counter or level: never negative in a sound store.
    fn count(&self, column: &str) -> Result<u64, StoreError> {
        let v = self.int(column)?;
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {column}: {v}")))
    }
}

macro_rules! impl_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> Result<bool, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

impl_columns!(sqlx::sqlite::SqliteRow);
#[cfg(feature = "postgres")]
impl_columns!(sqlx::postgres::PgRow);

/// Columns `id, state, opened_at, resolved_at, group_digest, firing_count,
/// resolved_count` of a card.
pub(crate) fn card_snapshot(row: &impl Columns) -> Result<CardSnapshot, StoreError> {
    Ok(CardSnapshot {
        id: CardId(row.text("id")?),
        state: row.card_state("state")?,
        opened_at: row.instant("opened_at")?,
        resolved_at: row.opt_instant("resolved_at")?,
        group_digest: row.int("group_digest")? as u64,
        firing_count: row.count("firing_count")?,
        resolved_count: row.count("resolved_count")?,
    })
}

/// Columns `fingerprint, status, digest, expires_at` of an alert.
pub(crate) fn known_alert(row: &impl Columns) -> Result<(Fingerprint, KnownAlert), StoreError> {
    Ok((
        Fingerprint(row.int("fingerprint")? as u64),
        KnownAlert {
            status: row.alert_status("status")?,
            digest: row.int("digest")? as u64,
            expires_at: row.opt_instant("expires_at")?,
        },
    ))
}

/// The occurrence columns of an alert row (both NULL for state sources).
pub(crate) fn occurrences(row: &impl Columns) -> Result<Option<Occurrences>, StoreError> {
    match (row.opt_int("occurrences")?, row.opt_int("last_seen_at")?) {
        (Some(count), Some(last_seen)) => Ok(Some(Occurrences {
            count: count as u64,
            last_seen: from_ms(last_seen)?,
        })),
        _ => Ok(None),
    }
}

/// Columns `route, channel, state, opened_at, acked_by, escalation_level,
/// ts, manual_resolve` of the card `id`.
pub(crate) fn card_brief(id: &CardId, row: &impl Columns) -> Result<CardBrief, StoreError> {
    Ok(CardBrief {
        id: id.clone(),
        route: row.text("route")?,
        channel: row.text("channel")?,
        state: row.card_state("state")?,
        opened_at: row.instant("opened_at")?,
        acked_by: row.opt_text("acked_by")?,
        escalation_level: row.count("escalation_level")? as u32,
        ts: row.opt_text("ts")?,
        manual_resolve: row.flag("manual_resolve")?,
    })
}

/// An outbox row left-joined with its card (`card_id`, `ts`, `opened_at`;
/// NULL for a digest, which has no card). The events of a reply live in
/// their own rows; the caller adds them.
pub(crate) fn outbox_op(row: &impl Columns) -> Result<OutboxOp, StoreError> {
    let events = match row.opt_text("events")? {
        Some(text) => from_json(&text)?,
        None => Vec::new(),
    };
    let digest = row.opt_text("digest")?.map(|t| from_json(&t)).transpose()?;
    Ok(OutboxOp {
        id: row.int("id")?,
        kind: OpKind::parse(&row.text("kind")?)?,
        card: row.opt_text("card_id")?.map(CardId),
        channel: row.text("channel")?,
        card_ts: row.opt_text("ts")?,
        events,
        recipient: row.opt_text("recipient")?,
        attempts: row.count("attempts")? as u32,
        reconcile: row.flag("reconcile")?,
        card_opened_at: row.opt_instant("opened_at")?,
        card_route: row.opt_text("route")?,
        digest,
    })
}

/// An alert row as a card shows it.
pub(crate) fn card_alert(row: &impl Columns) -> Result<CardAlert, StoreError> {
    Ok(CardAlert {
        fingerprint: Fingerprint(row.int("fingerprint")? as u64),
        status: row.alert_status("status")?,
        labels: row.json("labels")?,
        annotations: row.json("annotations")?,
        starts_at: row.instant("starts_at")?,
        ends_at: row.opt_instant("ends_at")?,
        generator_url: row.opt_text("generator_url")?,
        occurrences: occurrences(row)?,
    })
}

/// A whole card row with the alerts to show.
pub(crate) fn card_view(
    id: &CardId,
    row: &impl Columns,
    alerts: Vec<CardAlert>,
) -> Result<CardView, StoreError> {
    Ok(CardView {
        id: id.clone(),
        key: row.text("card_key")?,
        route: row.text("route")?,
        channel: row.text("channel")?,
        state: row.card_state("state")?,
        opened_at: row.instant("opened_at")?,
        resolved_at: row.opt_instant("resolved_at")?,
        group_labels: row.json("group_labels")?,
        common_labels: row.json("common_labels")?,
        common_annotations: row.json("common_annotations")?,
        external_url: row.opt_text("external_url")?,
        key_labels: Vec::new(),
        alerts,
        firing_count: row.count("firing_count")?,
        resolved_count: row.count("resolved_count")?,
        acknowledged: match (row.opt_text("acked_by")?, row.opt_instant("acked_at")?) {
            (Some(by), Some(at)) => Some(Acknowledgement { by, at }),
            _ => None,
        },
        escalation_level: row.count("escalation_level")? as u32,
        manual_resolve: row.flag("manual_resolve")?,
    })
}

/// Columns `id, kind, channel, state, attempts, last_error, recipient,
/// created_at, not_before, card_id`.
pub(crate) fn outbox_entry(row: &impl Columns) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        id: row.int("id")?,
        kind: OpKind::parse(&row.text("kind")?)?,
        card: row.opt_text("card_id")?.map(CardId),
        channel: row.text("channel")?,
        state: OpState::parse(&row.text("state")?)?,
        attempts: row.count("attempts")? as u32,
        last_error: row.opt_text("last_error")?,
        recipient: row.opt_text("recipient")?,
        created_at: row.instant("created_at")?,
        not_before: row.instant("not_before")?,
    })
}

/// Columns `id, route, channel, ts, common_labels, group_labels,
/// firing_count, acked_by, escalation_level, opened_at`.
pub(crate) fn card_summary(row: &impl Columns) -> Result<CardSummary, StoreError> {
    let common: Labels = row.json("common_labels")?;
    let group: Labels = row.json("group_labels")?;
    let title = common
        .get("alertname")
        .or_else(|| group.get("alertname"))
        .cloned()
        .unwrap_or_else(|| "Alert".to_owned());
    Ok(CardSummary {
        id: CardId(row.text("id")?),
        route: row.text("route")?,
        channel: row.text("channel")?,
        ts: row.opt_text("ts")?,
        title,
        firing_count: row.count("firing_count")?,
        acked_by: row.opt_text("acked_by")?,
        escalation_level: row.count("escalation_level")? as u32,
        opened_at: row.instant("opened_at")?,
    })
}

/// Columns `id, route, escalation_level, opened_at`.
pub(crate) fn due_escalation(row: &impl Columns) -> Result<DueEscalation, StoreError> {
    Ok(DueEscalation {
        card: CardId(row.text("id")?),
        route: row.text("route")?,
        level: row.count("escalation_level")? as u32,
        opened_at: row.instant("opened_at")?,
    })
}

/// Rows of firing alerts past their quiet period joined with their card,
/// ordered by card: one [`QuietCard`](super::QuietCard) per card, its alerts
/// resolved at their last occurrence.
pub(crate) fn quiet_cards(rows: &[impl Columns]) -> Result<Vec<super::QuietCard>, StoreError> {
    let mut cards: Vec<(i64, super::QuietCard)> = Vec::new();
    for row in rows {
        let seq = row.int("card_seq")?;
        if cards.last().is_none_or(|(s, _)| *s != seq) {
            cards.push((
                seq,
                super::QuietCard {
                    key: row.text("card_key")?,
                    route: row.text("route")?,
                    channel: row.text("channel")?,
                    group_labels: row.json("group_labels")?,
                    common_labels: row.json("common_labels")?,
                    common_annotations: row.json("common_annotations")?,
                    external_url: row.opt_text("external_url")?,
                    alerts: Vec::new(),
                },
            ));
        }
        let occurrences = occurrences(row)?;
        let Some((_, card)) = cards.last_mut() else {
            continue;
        };
        card.alerts.push(crate::model::Alert {
            fingerprint: Fingerprint(row.int("fingerprint")? as u64),
            status: AlertStatus::Resolved,
            labels: row.json("labels")?,
            annotations: row.json("annotations")?,
            starts_at: row.instant("starts_at")?,
            ends_at: occurrences.map(|o| o.last_seen),
            generator_url: row.opt_text("generator_url")?,
            occurrences,
        });
    }
    Ok(cards.into_iter().map(|(_, card)| card).collect())
}

/// `(id, state, ts)` of a card row.
pub(crate) fn card_identity(
    row: &impl Columns,
) -> Result<(CardId, CardState, Option<String>), StoreError> {
    Ok((
        CardId(row.text("id")?),
        row.card_state("state")?,
        row.opt_text("ts")?,
    ))
}

/// Columns `pending, dead, firing` (counts).
pub(crate) fn outbox_summary(row: &impl Columns) -> Result<super::OutboxSummary, StoreError> {
    Ok(super::OutboxSummary {
        pending: row.count("pending")?,
        dead: row.count("dead")?,
        cards_firing: row.count("firing")?,
    })
}

/// A digest's figures: the `counts` row (`fired, firing, acked, mtta,
/// resolved, mttr`), `noisiest` rows (`name, n`) and the oldest firing
/// cards (the columns of [`card_summary`]).
pub(crate) fn digest_figures(
    counts: &impl Columns,
    noisiest: &[impl Columns],
    oldest: &[impl Columns],
) -> Result<DigestFigures, StoreError> {
    let mean = |column: &str| -> Result<Option<std::time::Duration>, StoreError> {
        Ok(counts
            .opt_int(column)?
            .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)))
    };
    Ok(DigestFigures {
        fired: counts.count("fired")?,
        resolved: counts.count("resolved")?,
        acknowledged: counts.count("acked")?,
        mean_time_to_acknowledge: mean("mtta")?,
        mean_time_to_resolve: mean("mttr")?,
        noisiest: noisiest
            .iter()
            .map(|r| {
                Ok(NoisyAlert {
                    name: r.text("name")?,
                    count: r.count("n")?,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        firing_now: counts.count("firing")?,
        oldest_firing: oldest
            .iter()
            .map(|r| {
                let card = card_summary(r)?;
                Ok(FiringCard {
                    id: card.id,
                    title: card.title,
                    ts: card.ts,
                    opened_at: card.opened_at,
                })
            })
            .collect::<Result<_, StoreError>>()?,
    })
}
