//! When a digest is due: daily or weekly at a local time of day in a named
//! time zone.
//!
//! # Semantics
//!
//! * A digest's scheduled instants are `at`, local time in `time_zone`, on
//!   every day (`every: "day"`) or on every `weekday` (`every: "week"`).
//! * A local time the clocks skip (02:30 on a night when 02:00 jumps to
//!   03:00) is due at the first instant after the gap (03:00). One the
//!   clocks repeat (01:30 twice in autumn) is due once, at the earlier
//!   instant. Each local day therefore has exactly one instant, and the
//!   instants only grow with the day (the rules of
//!   [`crate::pipeline::oncall`]'s hand-offs, shared code).
//! * The period a digest reports on runs from the previous scheduled instant
//!   to its own: a day, or a week, of wall-clock time (23 or 25 hours across
//!   a DST change).

use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::config::DigestConfig;
use crate::model::DigestEvery;
use crate::pipeline::oncall::{parse_handoff, resolve_local};

/// A validated digest schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    every: DigestEvery,
    /// Only for weekly digests.
    weekday: Option<Weekday>,
    at: NaiveTime,
    tz: Tz,
}

/// What is wrong with a digest's schedule: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

fn error(field: &'static str, message: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field,
        message: message.into(),
    }
}

/// `HH:MM`, or `HH:MM:SS` for a schedule that must not wait for a whole
/// minute (tests, demonstrations).
fn parse_time_of_day(s: &str) -> Option<NaiveTime> {
    match s.len() {
        5 => parse_handoff(s),
        8 if s.as_bytes()[5] == b':' && s.as_bytes()[6..].iter().all(u8::is_ascii_digit) => {
            let second = s.get(6..)?.parse().ok()?;
            parse_handoff(s.get(..5)?)?.with_second(second)
        }
        _ => None,
    }
}

impl Schedule {
    pub fn new(config: &DigestConfig) -> Result<Schedule, ScheduleError> {
        let at = parse_time_of_day(&config.at).ok_or_else(|| {
            error(
                "at",
                format!(
                    "{:?} is not a time of day HH:MM (24-hour, e.g. \"09:00\"; seconds HH:MM:SS allowed)",
                    config.at
                ),
            )
        })?;
        let tz = Tz::from_str(&config.time_zone).map_err(|_| {
            error(
                "time_zone",
                format!(
                    "{:?} is not an IANA time zone name such as \"Europe/Berlin\" or \"UTC\" (names are case-sensitive)",
                    config.time_zone
                ),
            )
        })?;
        let weekday = match (config.every, &config.weekday) {
            (DigestEvery::Day, None) => None,
            (DigestEvery::Day, Some(_)) => {
                return Err(error(
                    "weekday",
                    "only a weekly digest (\"every\": \"week\") has a weekday; remove it or make the digest weekly",
                ));
            }
            (DigestEvery::Week, None) => {
                return Err(error(
                    "weekday",
                    "a weekly digest needs the day it is sent on, such as \"mon\"",
                ));
            }
            (DigestEvery::Week, Some(day)) => Some(Weekday::from_str(day).map_err(|_| {
                error(
                    "weekday",
                    format!(
                        "{day:?} is not a day of the week: use mon, tue, wed, thu, fri, sat or sun"
                    ),
                )
            })?),
        };
        Ok(Schedule {
            every: config.every,
            weekday,
            at,
            tz,
        })
    }

    pub fn every(&self) -> DigestEvery {
        self.every
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The instant scheduled on local day `date`, if the digest runs then.
    fn on(&self, date: NaiveDate) -> Option<DateTime<Utc>> {
        if self.weekday.is_some_and(|day| date.weekday() != day) {
            return None;
        }
        resolve_local(self.tz, date.and_time(self.at))
    }

    /// Scheduled instants on the local days around `t` (a week and a day
    /// either side: every window of seven days holds a weekly instant, and
    /// an instant's day is within a day of `t`'s), oldest first.
    fn around(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let today = t.with_timezone(&self.tz).date_naive();
        (0..=17u64).filter_map(move |i| {
            let date = today
                .checked_sub_days(Days::new(9))?
                .checked_add_days(Days::new(i))?;
            self.on(date)
        })
    }

    /// The latest scheduled instant at or before `now`.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.around(now).filter(|at| *at <= now).max()
    }

    /// The latest scheduled instant strictly before `t`: for the instant a
    /// digest is for, the start of the period it covers.
    pub fn previous(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.around(t).filter(|at| *at < t).max()
    }

    /// The first scheduled instant after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.around(now).find(|at| *at > now)
    }
}

impl std::fmt::Display for Schedule {
    /// `day 09:00 UTC`, `week mon 09:00:30 Europe/Berlin`: the same text for
    /// the same schedule however it was spelled.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.weekday {
            Some(day) => write!(f, "week {}", day.to_string().to_lowercase())?,
            None => f.write_str("day")?,
        }
        let at = if self.at.second() == 0 {
            "%H:%M"
        } else {
            "%H:%M:%S"
        };
        write!(f, " {} {}", self.at.format(at), self.tz.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn config(every: DigestEvery, at: &str, weekday: Option<&str>, tz: &str) -> DigestConfig {
        DigestConfig {
            channel: "C0DIGEST01".to_owned(),
            every,
            at: at.to_owned(),
            weekday: weekday.map(str::to_owned),
            time_zone: tz.to_owned(),
        }
    }

    fn daily(at: &str, tz: &str) -> Schedule {
        Schedule::new(&config(DigestEvery::Day, at, None, tz)).unwrap()
    }

    #[test]
    fn daily_instants_follow_local_time_across_dst() {
        let s = daily("09:00", "Europe/Berlin");
        // Winter: UTC+1.
        assert_eq!(
            s.latest_at_or_before(utc("2026-03-20T08:59:59Z")),
            Some(utc("2026-03-20T08:00:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(utc("2026-03-20T07:59:59Z")),
            Some(utc("2026-03-19T08:00:00Z"))
        );
        // Summer from 29 March 2026: UTC+2, still 09:00 local.
        assert_eq!(
            s.next_after(utc("2026-03-28T08:00:00Z")),
            Some(utc("2026-03-29T07:00:00Z"))
        );
        // The period across the change is 23 hours of absolute time.
        let end = utc("2026-03-29T07:00:00Z");
        assert_eq!(s.previous(end), Some(utc("2026-03-28T08:00:00Z")));
        assert_eq!(
            s.latest_at_or_before(end),
            Some(end),
            "an instant is <= itself"
        );
    }

    #[test]
    fn a_skipped_local_time_fires_at_the_end_of_the_gap() {
        // 29 March 2026 in Berlin: 02:00 jumps to 03:00.
        let s = daily("02:30", "Europe/Berlin");
        let night = s.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(night, utc("2026-03-29T01:00:00Z"), "03:00 CEST");
        // And the day after is back to 02:30 local.
        assert_eq!(s.next_after(night), Some(utc("2026-03-30T00:30:00Z")));
    }

    #[test]
    fn a_repeated_local_time_fires_once_at_the_earlier_instant() {
        // 25 October 2026 in Berlin: 03:00 goes back to 02:00, so 02:30
        // happens at 00:30 and at 01:30 UTC.
        let s = daily("02:30", "Europe/Berlin");
        let first = s.next_after(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-10-25T00:30:00Z"));
        let next = s.next_after(first).unwrap();
        assert_eq!(
            next,
            utc("2026-10-26T01:30:00Z"),
            "no second run at 01:30 UTC"
        );
        assert_eq!(
            s.latest_at_or_before(utc("2026-10-25T01:45:00Z")),
            Some(first)
        );
    }

    #[test]
    fn weekly_instants_fall_on_the_weekday() {
        let s = Schedule::new(&config(DigestEvery::Week, "09:00", Some("mon"), "UTC")).unwrap();
        // 2026-11-30 is a Monday.
        let monday = utc("2026-11-30T09:00:00Z");
        assert_eq!(s.next_after(utc("2026-11-25T10:00:00Z")), Some(monday));
        assert_eq!(
            s.latest_at_or_before(utc("2026-12-06T23:00:00Z")),
            Some(monday)
        );
        assert_eq!(s.previous(monday), Some(utc("2026-11-23T09:00:00Z")));
        assert_eq!(s.next_after(monday), Some(utc("2026-12-07T09:00:00Z")));
    }

    #[test]
    fn seconds_are_optional_and_bad_fields_are_named() {
        let s = daily("09:00:30", "UTC");
        assert_eq!(
            s.next_after(utc("2026-11-29T09:00:00Z")),
            Some(utc("2026-11-29T09:00:30Z"))
        );
        let field = |c: DigestConfig| Schedule::new(&c).unwrap_err().field;
        assert_eq!(field(config(DigestEvery::Day, "9:00", None, "UTC")), "at");
        assert_eq!(field(config(DigestEvery::Day, "24:00", None, "UTC")), "at");
        assert_eq!(field(config(DigestEvery::Day, "09:00:", None, "UTC")), "at");
        assert_eq!(
            field(config(DigestEvery::Day, "09:00", None, "Mars/Base")),
            "time_zone"
        );
        assert_eq!(
            field(config(DigestEvery::Day, "09:00", Some("mon"), "UTC")),
            "weekday"
        );
        assert_eq!(
            field(config(DigestEvery::Week, "09:00", None, "UTC")),
            "weekday"
        );
        assert_eq!(
            field(config(DigestEvery::Week, "09:00", Some("someday"), "UTC")),
            "weekday"
        );
    }
}
