//! On-call rotations: who is on call in a rotation at an instant, and who
//! comes next.
//!
//! # Semantics
//!
//! * Shift `k` (counting from 0) belongs to `members[k % members.len()]`.
//!   Shift 0 begins on `start` at `handoff`, local time in `timezone`.
//! * Shifts that are whole days (`"1d"`, `"7d"`, and `"24h"`, which is the
//!   same duration) hand off at the same local wall-clock time every N days.
//!   A shift that spans a DST change is therefore 23 or 25 hours long (for
//!   a weekly shift, 167 or 169), and nobody's hand-off moves to 08:00 or
//!   10:00 in spring or autumn.
//! * Other shifts (`"12h"`, `"8h"`, `"36h"`) have a fixed length in absolute
//!   time, counted from the first hand-off. Their local hand-off times move by
//!   the DST change; a fixed length is what people splitting the day into
//!   12-hour or 8-hour shifts expect.
//! * A hand-off local time that does not exist (the clocks skip it in spring)
//!   becomes the first instant after the gap: 02:30 on a night when 02:00
//!   jumps to 03:00 hands off at 03:00. An ambiguous one (the clocks repeat
//!   it in autumn) is the earlier of the two instants.
//! * Before the first hand-off, the schedule has nobody on call and
//!   [`Rotation::on_call`] returns `None` (an active override still counts).
//!   We do not stretch the first member's shift backwards: a rotation that has
//!   not started is usually one the team has not agreed to yet, and a caller
//!   that pages `oncall:NAME` should report "nobody" rather than page someone
//!   whose first shift is still to come.
//! * Overrides: while `from <= now < until`, the override's user is on call
//!   instead. Where overrides overlap, the one listed last wins, so a newer
//!   arrangement is appended rather than edited in. An override splits the
//!   shift it falls into, and [`Rotation::on_call`] and [`Rotation::upcoming`]
//!   report the pieces, so shifts always touch: one's `ends` is the next one's
//!   `starts`.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// The longest shift. Longer ones are almost certainly a typo ("70d" for
/// "7d"), and the bound keeps every instant computation far from chrono's
/// range limits.
pub const MAX_SHIFT: Duration = Duration::from_secs(366 * 86_400);

/// The most shifts [`Rotation::upcoming`] returns, whatever it is asked
/// for: the slash command passes through a number a user typed.
pub const MAX_UPCOMING: usize = 100;

/// Earliest and latest year a rotation may start in. Before 1970 the time
/// zone database holds local mean times and date-line moves that make
/// hand-offs meaningless; after 9999 nobody is on call anyway.
const START_YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// A rotation as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// What `oncall:NAME` refers to.
    pub name: String,
    /// Slack user ids (`U…` or `W…`), in the order they take shifts. A user
    /// may appear more than once (to take two shifts per cycle).
    pub members: Vec<String>,
    /// Length of one shift, e.g. `"7d"`, `"1d"`, `"12h"`. Whole days hand off
    /// at the same local time; anything else is a fixed length.
    #[serde(deserialize_with = "crate::config::de_duration")]
    pub shift: Duration,
    /// Local time of day, `"HH:MM"` (24-hour), at which shifts change.
    pub handoff: String,
    /// IANA time zone name of `handoff` and `start`, e.g. `"Europe/Berlin"`.
    pub timezone: String,
    /// The date the first member's first shift begins (at `handoff`).
    pub start: NaiveDate,
    /// Someone covering for whoever the schedule says; the last listed wins
    /// where they overlap.
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// `user` is on call from `from` (inclusive) to `until` (exclusive),
/// whatever the schedule says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Slack user id of whoever covers; need not be a member.
    pub user: String,
    /// RFC 3339, e.g. `"2024-03-06T12:00:00+01:00"`.
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl RotationConfig {
    /// Checks everything [`Rotation::new`] needs; the message starts with
    /// the offending field (`members[2]: ...`).
    pub fn validate(&self) -> Result<(), String> {
        Rotation::new(self).map(|_| ())
    }
}

/// Someone's stretch on call: `starts <= t < ends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub user: String,
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
}

/// How hand-offs are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cadence {
    /// At `handoff` local time every this many days.
    Days(u64),
    /// Every this long in absolute time, from the first hand-off.
    Fixed(TimeDelta),
}

/// A validated rotation, ready to answer "who is on call".
#[derive(Debug, Clone)]
pub struct Rotation {
    name: String,
    members: Vec<String>,
    tz: Tz,
    handoff: NaiveTime,
    start: NaiveDate,
    cadence: Cadence,
    /// Shift 0's start, computed once: every query compares against it.
    first: DateTime<Utc>,
    overrides: Vec<Override>,
}

impl Rotation {
    pub fn new(config: &RotationConfig) -> Result<Rotation, String> {
        if config.name.trim().is_empty() {
            return Err("name: must not be empty".to_owned());
        }
        if config.name.chars().any(char::is_whitespace) {
            return Err(format!(
                "name: {:?} contains whitespace, which `oncall:NAME` cannot refer to",
                config.name
            ));
        }
        if config.members.is_empty() {
            return Err(
                "members: must list at least one Slack user id (U0123ABCD), in shift order"
                    .to_owned(),
            );
        }
        for (i, member) in config.members.iter().enumerate() {
            if !is_user_id(member) {
                return Err(format!(
                    "members[{i}]: {member:?} is not a Slack user id (U… or W…, from the user's profile)"
                ));
            }
        }
        let shift = config.shift;
        if shift.is_zero() {
            return Err("shift: must be longer than zero, e.g. \"7d\" or \"12h\"".to_owned());
        }
        if shift.subsec_nanos() != 0 || !shift.as_secs().is_multiple_of(60) {
            return Err(format!("shift: {shift:?} is not a whole number of minutes"));
        }
        if shift > MAX_SHIFT {
            return Err(format!(
                "shift: {shift:?} is longer than the maximum of 366d"
            ));
        }
        let secs = shift.as_secs();
        let cadence = if secs.is_multiple_of(86_400) {
            Cadence::Days(secs / 86_400)
        } else {
            // Bounded by MAX_SHIFT, so both conversions succeed.
            let delta = i64::try_from(secs)
                .ok()
                .and_then(TimeDelta::try_seconds)
                .ok_or_else(|| format!("shift: {shift:?} is too long"))?;
            Cadence::Fixed(delta)
        };
        let handoff = parse_handoff(&config.handoff).ok_or_else(|| {
            format!(
                "handoff: {:?} is not a time of day HH:MM (24-hour, e.g. \"09:00\")",
                config.handoff
            )
        })?;
        let tz = Tz::from_str(&config.timezone).map_err(|_| {
            format!(
                "timezone: {:?} is not an IANA time zone name such as \"Europe/Berlin\" or \"America/New_York\" (names are case-sensitive)",
                config.timezone
            )
        })?;
        if !START_YEARS.contains(&config.start.year()) {
            return Err(format!(
                "start: {} is outside the years {} to {}",
                config.start,
                START_YEARS.start(),
                START_YEARS.end()
            ));
        }
        for (i, o) in config.overrides.iter().enumerate() {
            if !is_user_id(&o.user) {
                return Err(format!(
                    "overrides[{i}].user: {:?} is not a Slack user id (U… or W…)",
                    o.user
                ));
            }
            if o.from >= o.until {
                return Err(format!(
                    "overrides[{i}]: from ({}) must be before until ({})",
                    o.from.to_rfc3339(),
                    o.until.to_rfc3339()
                ));
            }
        }
        let first = resolve_local(tz, config.start.and_time(handoff)).ok_or_else(|| {
            format!(
                "start: cannot place {} {} in {}",
                config.start, config.handoff, config.timezone
            )
        })?;
        Ok(Rotation {
            name: config.name.clone(),
            members: config.members.clone(),
            tz,
            handoff,
            start: config.start,
            cadence,
            first,
            overrides: config.overrides.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members in shift order.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Who is on call at `now`, and for how long without a change. `None`
    /// before the rotation starts (unless an override is active then).
    pub fn on_call(&self, now: DateTime<Utc>) -> Option<Shift> {
        let winner = self
            .overrides
            .iter()
            .enumerate()
            .rev()
            .find(|(_, o)| o.from <= now && now < o.until);
        if let Some((i, o)) = winner {
            // The override holds until it ends or a later-listed one begins;
            // it held since it began or a later-listed one ended.
            let later = self.overrides.get(i + 1..).unwrap_or_default();
            return Some(Shift {
                user: o.user.clone(),
                starts: later
                    .iter()
                    .map(|l| l.until)
                    .filter(|&u| u <= now)
                    .fold(o.from, DateTime::max),
                ends: later
                    .iter()
                    .map(|l| l.from)
                    .filter(|&f| f > now)
                    .fold(o.until, DateTime::min),
            });
        }
        let base = self.scheduled(now)?;
        // No override is active at `now`; the nearest ones on either side
        // cut the scheduled shift.
        Some(Shift {
            user: base.user,
            starts: self
                .overrides
                .iter()
                .map(|o| o.until)
                .filter(|&u| u <= now)
                .fold(base.starts, DateTime::max),
            ends: self
                .overrides
                .iter()
                .map(|o| o.from)
                .filter(|&f| f > now)
                .fold(base.ends, DateTime::min),
        })
    }

    /// The shift in effect at `now` followed by the next ones, at most `n`
    /// (and at most [`MAX_UPCOMING`]) in all. Before the rotation starts the
    /// list begins with the first shift (or an earlier override).
    pub fn upcoming(&self, now: DateTime<Utc>, n: usize) -> Vec<Shift> {
        let n = n.min(MAX_UPCOMING);
        let mut shifts = Vec::with_capacity(n);
        let mut t = now;
        while shifts.len() < n {
            match self.on_call(t) {
                Some(shift) => {
                    if shift.ends <= t {
                        break; // cannot happen; never loop forever
                    }
                    t = shift.ends;
                    shifts.push(shift);
                }
                None => match self.next_coverage(t) {
                    Some(next) => t = next,
                    None => break,
                },
            }
        }
        shifts
    }

    /// The schedule's shift at `t`, ignoring overrides.
    fn scheduled(&self, t: DateTime<Utc>) -> Option<Shift> {
        let k = self.shift_index(t)?;
        let len = u64::try_from(self.members.len()).ok()?;
        let member = usize::try_from(k % len).ok()?;
        Some(Shift {
            user: self.members.get(member)?.clone(),
            starts: self.handoff_at(k)?,
            ends: self.handoff_at(k.checked_add(1)?)?,
        })
    }

    /// Which shift of the schedule `t` falls in; `None` before the first.
    fn shift_index(&self, t: DateTime<Utc>) -> Option<u64> {
        if t < self.first {
            return None;
        }
        match self.cadence {
            Cadence::Fixed(len) => {
                let elapsed = (t - self.first).num_seconds();
                u64::try_from(elapsed / len.num_seconds()).ok()
            }
            Cadence::Days(days) => {
                // The local date gives the shift to within one; the hand-off
                // instants settle it (t may be before that day's hand-off).
                let local = t.with_timezone(&self.tz).date_naive();
                let elapsed = (local - self.start).num_days().max(0);
                let mut k = u64::try_from(elapsed).ok()? / days;
                while k > 0 && self.handoff_at(k)? > t {
                    k -= 1;
                }
                while self.handoff_at(k.checked_add(1)?)? <= t {
                    k += 1;
                }
                Some(k)
            }
        }
    }

    /// The instant shift `k` starts.
    fn handoff_at(&self, k: u64) -> Option<DateTime<Utc>> {
        match self.cadence {
            Cadence::Days(days) => {
                let date = self
                    .start
                    .checked_add_days(chrono::Days::new(k.checked_mul(days)?))?;
                resolve_local(self.tz, date.and_time(self.handoff))
            }
            Cadence::Fixed(len) => {
                let secs = i64::try_from(k).ok()?.checked_mul(len.num_seconds())?;
                self.first.checked_add_signed(TimeDelta::try_seconds(secs)?)
            }
        }
    }

    /// The next instant after `t` at which someone is on call, when nobody
    /// is at `t`.
    fn next_coverage(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.overrides
            .iter()
            .map(|o| o.from)
            .chain(std::iter::once(self.first))
            .filter(|&s| s > t)
            .min()
    }
}

/// All configured rotations, by name.
#[derive(Debug, Clone, Default)]
pub struct Rotations {
    /// In config order, which is how the slash command lists them.
    rotations: Vec<Rotation>,
    by_name: HashMap<String, usize>,
}

impl Rotations {
    /// Compiles every rotation; errors start with `oncall[i]`.
    pub fn new(configs: &[RotationConfig]) -> Result<Rotations, String> {
        let mut rotations = Rotations::default();
        for (i, config) in configs.iter().enumerate() {
            let rotation = Rotation::new(config).map_err(|e| format!("oncall[{i}].{e}"))?;
            if rotations.by_name.contains_key(rotation.name()) {
                return Err(format!(
                    "oncall[{i}].name: rotation name {:?} is used twice; names must be unique",
                    rotation.name()
                ));
            }
            rotations
                .by_name
                .insert(rotation.name().to_owned(), rotations.rotations.len());
            rotations.rotations.push(rotation);
        }
        Ok(rotations)
    }

    pub fn get(&self, name: &str) -> Option<&Rotation> {
        self.by_name.get(name).and_then(|&i| self.rotations.get(i))
    }

    /// In config order.
    pub fn iter(&self) -> impl Iterator<Item = &Rotation> {
        self.rotations.iter()
    }

    pub fn len(&self) -> usize {
        self.rotations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rotations.is_empty()
    }
}

/// Same shape as `config::Target` accepts for users: `U`/`W` then upper-case
/// alphanumerics.
fn is_user_id(s: &str) -> bool {
    s.len() >= 3
        && matches!(s.as_bytes().first(), Some(b'U' | b'W'))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Strict `HH:MM`: "9:00" and "09:00:00" are rejected rather than guessed.
pub(crate) fn parse_handoff(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || !b[..2].iter().chain(&b[3..]).all(u8::is_ascii_digit) {
        return None;
    }
    let hour = s.get(..2)?.parse().ok()?;
    let minute = s.get(3..)?.parse().ok()?;
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// The instant a local wall-clock time means: the earlier one when the
/// clocks repeat it, the first instant after the gap when they skip it.
pub(crate) fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => end_of_gap(tz, local),
    }
}

/// The transition instant at which local time jumps over `local`. Offsets
/// are within a day of UTC, so a day either side of `local` read as UTC
/// brackets it; local time crosses `local` only at the jump.
fn end_of_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let as_utc = local.and_utc().timestamp();
    let wall = |secs: i64| -> Option<NaiveDateTime> {
        Some(
            DateTime::from_timestamp(secs, 0)?
                .with_timezone(&tz)
                .naive_local(),
        )
    };
    let (mut lo, mut hi) = (as_utc.checked_sub(86_400)?, as_utc.checked_add(86_400)?);
    // Invariant: wall(lo) < local < wall(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if wall(mid)? > local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn config(
        members: &[&str],
        shift: &str,
        handoff: &str,
        tz: &str,
        start: &str,
    ) -> RotationConfig {
        RotationConfig {
            name: "primary".to_owned(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            shift: crate::config::parse_duration(shift).unwrap(),
            handoff: handoff.to_owned(),
            timezone: tz.to_owned(),
            start: start.parse().unwrap(),
            overrides: Vec::new(),
        }
    }

    fn weekly_berlin(start: &str) -> Rotation {
        Rotation::new(&config(
            &["U1A", "U2B", "U3C"],
            "7d",
            "09:00",
            "Europe/Berlin",
            start,
        ))
        .unwrap()
    }

    fn shift(user: &str, starts: &str, ends: &str) -> Shift {
        Shift {
            user: user.to_owned(),
            starts: utc(starts),
            ends: utc(ends),
        }
    }

    fn berlin_local(t: DateTime<Utc>) -> String {
        t.with_timezone(&chrono_tz::Europe::Berlin)
            .format("%a %Y-%m-%d %H:%M")
            .to_string()
    }

    #[test]
    fn weekly_rotation_hands_off_at_0900_berlin_on_the_start_weekday() {
        // 2024-01-01 is a Monday; CET is UTC+1.
        let r = weekly_berlin("2024-01-01");
        assert_eq!(
            r.on_call(utc("2024-01-01T08:00:00Z")),
            Some(shift("U1A", "2024-01-01T08:00:00Z", "2024-01-08T08:00:00Z"))
        );
        assert_eq!(r.on_call(utc("2024-01-08T07:59:59Z")).unwrap().user, "U1A");
        assert_eq!(
            r.on_call(utc("2024-01-08T08:00:00Z")),
            Some(shift("U2B", "2024-01-08T08:00:00Z", "2024-01-15T08:00:00Z"))
        );
        let next = r.upcoming(utc("2024-01-03T12:00:00Z"), 5);
        let users: Vec<_> = next.iter().map(|s| s.user.as_str()).collect();
        assert_eq!(users, ["U1A", "U2B", "U3C", "U1A", "U2B"]);
        for s in &next {
            assert_eq!(
                berlin_local(s.starts)[..3],
                *"Mon",
                "{}",
                berlin_local(s.starts)
            );
            assert!(berlin_local(s.starts).ends_with("09:00"));
        }
    }

    #[test]
    fn weekly_handoff_stays_at_0900_local_across_march_dst_change() {
        // Clocks go 02:00 CET -> 03:00 CEST on Sunday 2024-03-31.
        let r = weekly_berlin("2024-03-18");
        let s = r.on_call(utc("2024-03-31T12:00:00Z")).unwrap();
        assert_eq!(
            s,
            shift("U2B", "2024-03-25T08:00:00Z", "2024-04-01T07:00:00Z")
        );
        assert_eq!(s.ends - s.starts, TimeDelta::hours(167));
        assert_eq!(berlin_local(s.ends), "Mon 2024-04-01 09:00");
        assert_eq!(r.on_call(s.ends).unwrap().user, "U3C");
    }

    #[test]
    fn weekly_handoff_stays_at_0900_local_across_october_dst_change() {
        // Clocks go 03:00 CEST -> 02:00 CET on Sunday 2024-10-27.
        let r = weekly_berlin("2024-10-21");
        let s = r.on_call(utc("2024-10-27T12:00:00Z")).unwrap();
        assert_eq!(
            s,
            shift("U1A", "2024-10-21T07:00:00Z", "2024-10-28T08:00:00Z")
        );
        assert_eq!(s.ends - s.starts, TimeDelta::hours(169));
        assert_eq!(berlin_local(s.ends), "Mon 2024-10-28 09:00");
    }

    #[test]
    fn daily_shift_is_23_hours_in_spring_and_25_in_autumn() {
        let r = Rotation::new(&config(
            &["U1A", "U2B"],
            "1d",
            "09:00",
            "Europe/Berlin",
            "2024-01-01",
        ))
        .unwrap();
        let spring = r.on_call(utc("2024-03-31T06:00:00Z")).unwrap();
        assert_eq!(spring.ends - spring.starts, TimeDelta::hours(23));
        let autumn = r.on_call(utc("2024-10-27T06:00:00Z")).unwrap();
        assert_eq!(autumn.ends - autumn.starts, TimeDelta::hours(25));
        assert_eq!(berlin_local(autumn.starts), "Sat 2024-10-26 09:00");
        assert_eq!(berlin_local(autumn.ends), "Sun 2024-10-27 09:00");
    }

    #[test]
    fn twelve_hour_shifts_alternate_with_fixed_length_across_dst() {
        let r = Rotation::new(&config(
            &["U1A", "U2B"],
            "12h",
            "08:00",
            "Europe/Berlin",
            "2024-03-30",
        ))
        .unwrap();
        let shifts = r.upcoming(utc("2024-03-30T07:00:00Z"), 4);
        assert_eq!(
            shifts,
            [
                shift("U1A", "2024-03-30T07:00:00Z", "2024-03-30T19:00:00Z"),
                shift("U2B", "2024-03-30T19:00:00Z", "2024-03-31T07:00:00Z"),
                shift("U1A", "2024-03-31T07:00:00Z", "2024-03-31T19:00:00Z"),
                shift("U2B", "2024-03-31T19:00:00Z", "2024-04-01T07:00:00Z"),
            ]
        );
        // Fixed length: after the change the local hand-off is 09:00 CEST.
        assert_eq!(berlin_local(shifts[2].starts), "Sun 2024-03-31 09:00");
    }

    #[test]
    fn nobody_is_on_call_before_the_rotation_starts() {
        let r = weekly_berlin("2024-01-01");
        assert_eq!(r.on_call(utc("2024-01-01T07:59:59Z")), None);
        assert_eq!(r.on_call(utc("2023-06-01T00:00:00Z")), None);
        // Upcoming still shows the first shifts.
        let next = r.upcoming(utc("2023-12-25T00:00:00Z"), 2);
        assert_eq!(
            next,
            [
                shift("U1A", "2024-01-01T08:00:00Z", "2024-01-08T08:00:00Z"),
                shift("U2B", "2024-01-08T08:00:00Z", "2024-01-15T08:00:00Z"),
            ]
        );
    }

    #[test]
    fn handoff_skipped_by_spring_forward_happens_at_the_end_of_the_gap() {
        // 02:30 does not exist in Berlin on 2024-03-31; 03:00 CEST = 01:00Z.
        let r = Rotation::new(&config(
            &["U1A", "U2B"],
            "1d",
            "02:30",
            "Europe/Berlin",
            "2024-03-29",
        ))
        .unwrap();
        let s = r.on_call(utc("2024-03-31T12:00:00Z")).unwrap();
        assert_eq!(
            s,
            shift("U1A", "2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z")
        );
        let before = r.on_call(utc("2024-03-31T00:59:59Z")).unwrap();
        assert_eq!(before.ends, s.starts);
        assert_eq!(before.starts, utc("2024-03-30T01:30:00Z"));
    }

    #[test]
    fn ambiguous_handoff_in_autumn_uses_the_earlier_instant() {
        // 02:30 happens twice on 2024-10-27: 00:30Z (CEST) and 01:30Z (CET).
        let r = Rotation::new(&config(
            &["U1A", "U2B"],
            "1d",
            "02:30",
            "Europe/Berlin",
            "2024-10-26",
        ))
        .unwrap();
        let s = r.on_call(utc("2024-10-27T01:00:00Z")).unwrap();
        assert_eq!(
            s,
            shift("U2B", "2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z")
        );
    }

    #[test]
    fn daily_rotation_survives_a_skipped_calendar_day() {
        // Samoa skipped 2011-12-30 (23:59:59 on the 29th, -10:00, was
        // followed by 00:00 on the 31st, +14:00). That day's 09:00 hand-off
        // becomes 00:00 on the 31st; nobody's shift vanishes or overlaps.
        let r = Rotation::new(&config(
            &["U1A", "U2B"],
            "1d",
            "09:00",
            "Pacific/Apia",
            "2011-12-28",
        ))
        .unwrap();
        assert_eq!(
            r.upcoming(utc("2011-12-29T20:00:00Z"), 3),
            [
                shift("U2B", "2011-12-29T19:00:00Z", "2011-12-30T10:00:00Z"),
                shift("U1A", "2011-12-30T10:00:00Z", "2011-12-30T19:00:00Z"),
                shift("U2B", "2011-12-30T19:00:00Z", "2011-12-31T19:00:00Z"),
            ]
        );
    }

    #[test]
    fn active_override_wins_and_splits_the_scheduled_shift() {
        let mut c = config(
            &["U1A", "U2B"],
            "7d",
            "09:00",
            "Europe/Berlin",
            "2024-01-01",
        );
        c.overrides.push(Override {
            user: "U9Z".to_owned(),
            from: utc("2024-01-03T11:00:00Z"),
            until: utc("2024-01-04T11:00:00Z"),
        });
        let r = Rotation::new(&c).unwrap();
        assert_eq!(
            r.upcoming(utc("2024-01-02T00:00:00Z"), 4),
            [
                shift("U1A", "2024-01-01T08:00:00Z", "2024-01-03T11:00:00Z"),
                shift("U9Z", "2024-01-03T11:00:00Z", "2024-01-04T11:00:00Z"),
                shift("U1A", "2024-01-04T11:00:00Z", "2024-01-08T08:00:00Z"),
                shift("U2B", "2024-01-08T08:00:00Z", "2024-01-15T08:00:00Z"),
            ]
        );
        assert_eq!(r.on_call(utc("2024-01-04T10:59:59Z")).unwrap().user, "U9Z");
        assert_eq!(r.on_call(utc("2024-01-04T11:00:00Z")).unwrap().user, "U1A");
    }

    #[test]
    fn later_listed_override_wins_where_overrides_overlap() {
        let mut c = config(&["U1A"], "7d", "09:00", "UTC", "2024-01-01");
        c.overrides = vec![
            Override {
                user: "U8Y".to_owned(),
                from: utc("2024-01-02T00:00:00Z"),
                until: utc("2024-01-05T00:00:00Z"),
            },
            Override {
                user: "U9Z".to_owned(),
                from: utc("2024-01-03T00:00:00Z"),
                until: utc("2024-01-04T00:00:00Z"),
            },
        ];
        let r = Rotation::new(&c).unwrap();
        assert_eq!(
            r.upcoming(utc("2024-01-01T12:00:00Z"), 5),
            [
                shift("U1A", "2024-01-01T09:00:00Z", "2024-01-02T00:00:00Z"),
                shift("U8Y", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"),
                shift("U9Z", "2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z"),
                shift("U8Y", "2024-01-04T00:00:00Z", "2024-01-05T00:00:00Z"),
                shift("U1A", "2024-01-05T00:00:00Z", "2024-01-08T09:00:00Z"),
            ]
        );
    }

    #[test]
    fn override_before_the_start_covers_only_its_own_window() {
        let mut c = config(&["U1A"], "1d", "09:00", "UTC", "2024-01-10");
        c.overrides.push(Override {
            user: "U9Z".to_owned(),
            from: utc("2024-01-05T00:00:00Z"),
            until: utc("2024-01-06T00:00:00Z"),
        });
        let r = Rotation::new(&c).unwrap();
        assert_eq!(r.on_call(utc("2024-01-04T23:59:59Z")), None);
        assert_eq!(r.on_call(utc("2024-01-06T00:00:00Z")), None);
        assert_eq!(
            r.upcoming(utc("2024-01-01T00:00:00Z"), 2),
            [
                shift("U9Z", "2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z"),
                shift("U1A", "2024-01-10T09:00:00Z", "2024-01-11T09:00:00Z"),
            ]
        );
    }

    #[test]
    fn upcoming_returns_at_most_max_upcoming_shifts() {
        let r = weekly_berlin("2024-01-01");
        assert_eq!(r.upcoming(utc("2024-02-01T00:00:00Z"), 0), []);
        assert_eq!(
            r.upcoming(utc("2024-02-01T00:00:00Z"), 1_000_000).len(),
            MAX_UPCOMING
        );
    }

    #[test]
    fn invalid_configs_are_rejected_with_the_field_and_the_reason() {
        let good = config(
            &["U1A", "W2B"],
            "7d",
            "09:00",
            "Europe/Berlin",
            "2024-01-01",
        );
        assert_eq!(good.validate(), Ok(()));
        type Breakage = Box<dyn Fn(&mut RotationConfig)>;
        let cases: Vec<(&str, Breakage)> = vec![
            ("name: must not be empty", Box::new(|c| c.name.clear())),
            (
                "contains whitespace",
                Box::new(|c| c.name = "on call".into()),
            ),
            (
                "members: must list at least one",
                Box::new(|c| c.members.clear()),
            ),
            (
                "members[1]: \"alice\" is not a Slack user id",
                Box::new(|c| c.members[1] = "alice".into()),
            ),
            (
                "members[0]: \"S0GROUP\"",
                Box::new(|c| c.members[0] = "S0GROUP".into()),
            ),
            (
                "shift: must be longer than zero",
                Box::new(|c| c.shift = Duration::ZERO),
            ),
            (
                "shift: 90s is not a whole number of minutes",
                Box::new(|c| c.shift = Duration::from_secs(90)),
            ),
            (
                "not a whole number of minutes",
                Box::new(|c| c.shift = Duration::from_millis(3_600_500)),
            ),
            (
                "maximum of 366d",
                Box::new(|c| c.shift = Duration::from_secs(367 * 86_400)),
            ),
            (
                "handoff: \"9:00\" is not a time of day HH:MM",
                Box::new(|c| c.handoff = "9:00".into()),
            ),
            (
                "handoff: \"24:00\"",
                Box::new(|c| c.handoff = "24:00".into()),
            ),
            (
                "handoff: \"09:60\"",
                Box::new(|c| c.handoff = "09:60".into()),
            ),
            ("handoff: \"0900\"", Box::new(|c| c.handoff = "0900".into())),
            (
                "handoff: \"09:00:00\"",
                Box::new(|c| c.handoff = "09:00:00".into()),
            ),
            (
                "handoff: \"+9:00\"",
                Box::new(|c| c.handoff = "+9:00".into()),
            ),
            (
                "timezone: \"Berlin\" is not an IANA time zone name",
                Box::new(|c| c.timezone = "Berlin".into()),
            ),
            (
                "timezone: \"europe/berlin\"",
                Box::new(|c| c.timezone = "europe/berlin".into()),
            ),
            (
                "start: 1969-12-31 is outside",
                Box::new(|c| c.start = "1969-12-31".parse().unwrap()),
            ),
            (
                "overrides[0].user: \"bob\"",
                Box::new(|c| {
                    c.overrides.push(Override {
                        user: "bob".into(),
                        from: utc("2024-01-02T00:00:00Z"),
                        until: utc("2024-01-03T00:00:00Z"),
                    })
                }),
            ),
            (
                "overrides[0]: from (2024-01-03T00:00:00+00:00) must be before until",
                Box::new(|c| {
                    c.overrides.push(Override {
                        user: "U9Z".into(),
                        from: utc("2024-01-03T00:00:00Z"),
                        until: utc("2024-01-03T00:00:00Z"),
                    })
                }),
            ),
        ];
        for (expected, break_it) in cases {
            let mut c = good.clone();
            break_it(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn rotations_reject_duplicate_names_and_are_found_by_name_in_config_order() {
        let mut a = config(&["U1A"], "7d", "09:00", "UTC", "2024-01-01");
        a.name = "secondary".into();
        let b = config(&["U2B"], "1d", "09:00", "UTC", "2024-01-01");
        let rotations = Rotations::new(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(rotations.len(), 2);
        assert_eq!(rotations.get("primary").unwrap().members(), ["U2B"]);
        assert!(rotations.get("tertiary").is_none());
        let names: Vec<_> = rotations.iter().map(Rotation::name).collect();
        assert_eq!(names, ["secondary", "primary"]);

        let err = Rotations::new(&[b.clone(), b.clone()]).unwrap_err();
        assert!(
            err.starts_with("oncall[1].name:") && err.contains("used twice"),
            "{err}"
        );
        let mut bad = b;
        bad.timezone = "Mars/Olympus".into();
        let err = Rotations::new(&[a, bad]).unwrap_err();
        assert!(err.starts_with("oncall[1].timezone:"), "{err}");
    }

    #[test]
    fn rotation_config_deserializes_from_json_with_rfc3339_overrides() {
        let json = r#"{
            "name": "primary",
            "members": ["U1A", "U2B"],
            "shift": "7d",
            "handoff": "09:00",
            "timezone": "Europe/Berlin",
            "start": "2024-01-01",
            "overrides": [{"user": "U9Z", "from": "2024-01-03T12:00:00+01:00", "until": "2024-01-04T11:00:00Z"}]
        }"#;
        let c: RotationConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.shift, Duration::from_secs(7 * 86_400));
        assert_eq!(c.overrides[0].from, utc("2024-01-03T11:00:00Z"));
        let r = Rotation::new(&c).unwrap();
        assert_eq!(r.on_call(utc("2024-01-03T11:00:00Z")).unwrap().user, "U9Z");

        let typo = json.replace("\"handoff\"", "\"hand_off\"");
        let err = serde_json::from_str::<RotationConfig>(&typo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `hand_off`"), "{err}");
    }

    #[test]
    fn config_file_oncall_section_parses_into_rotations() {
        let c = crate::config::Config::from_json(
            r#"{"oncall": [{"name": "primary", "members": ["U1A"], "shift": "12h",
                "handoff": "08:00", "timezone": "UTC", "start": "2024-01-01"}]}"#,
        )
        .unwrap();
        let rotations = Rotations::new(&c.oncall).unwrap();
        let s = rotations
            .get("primary")
            .unwrap()
            .on_call(utc("2024-01-01T21:00:00Z"))
            .unwrap();
        assert_eq!(
            s,
            shift("U1A", "2024-01-01T20:00:00Z", "2024-01-02T08:00:00Z")
        );
    }

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "America/Santiago",    // changes at midnight
        "America/St_Johns",    // half-hour offset
        "Australia/Lord_Howe", // 30-minute DST
        "Pacific/Chatham",     // +12:45/+13:45
        "Pacific/Apia",        // skipped 2011-12-30 entirely
        "Asia/Tehran",
        "Asia/Kolkata",
    ];

    /// A rotation with distinct members, any zone, hand-off and cadence.
    fn any_rotation() -> impl Strategy<Value = RotationConfig> {
        (
            1usize..5,
            prop_oneof![
                (1u64..=14).prop_map(|d| d * 86_400),
                (1u64..4 * 1440)
                    .prop_filter("not whole days", |m| m % 1440 != 0)
                    .prop_map(|m| m * 60),
            ],
            0u32..24,
            0u32..60,
            0..ZONES.len(),
            0u64..15_000, // days after 2000-01-01
        )
            .prop_map(|(n, secs, h, m, zone, day)| RotationConfig {
                name: "p".to_owned(),
                members: (0..n).map(|i| format!("U{i}X")).collect(),
                shift: Duration::from_secs(secs),
                handoff: format!("{h:02}:{m:02}"),
                timezone: ZONES[zone].to_owned(),
                start: NaiveDate::from_ymd_opt(2000, 1, 1)
                    .unwrap()
                    .checked_add_days(chrono::Days::new(day))
                    .unwrap(),
                overrides: Vec::new(),
            })
    }

    fn any_overrides() -> impl Strategy<Value = Vec<(i64, i64)>> {
        // (start offset, length) in minutes, relative to the first hand-off.
        proptest::collection::vec((-20_000i64..40_000, 1i64..10_000), 0..5)
    }

    proptest! {
        #[test]
        fn on_call_after_start_contains_now(
            c in any_rotation(),
            offset in 0i64..20 * 366 * 86_400,
        ) {
            let r = Rotation::new(&c).unwrap();
            let now = r.first + TimeDelta::seconds(offset);
            let s = r.on_call(now).unwrap();
            prop_assert!(s.starts <= now && now < s.ends, "{s:?} at {now}");
            prop_assert_eq!(r.on_call(now - TimeDelta::seconds(offset + 1)), None);
        }

        #[test]
        fn consecutive_shifts_touch_and_cycle_through_members_in_order(
            c in any_rotation(),
            offset in 0i64..20 * 366 * 86_400,
        ) {
            let r = Rotation::new(&c).unwrap();
            let now = r.first + TimeDelta::seconds(offset);
            let shifts = r.upcoming(now, 2 * c.members.len() + 3);
            prop_assert_eq!(shifts.len(), 2 * c.members.len() + 3);
            prop_assert!(shifts[0].starts <= now && now < shifts[0].ends);
            let first = c.members.iter().position(|m| *m == shifts[0].user).unwrap();
            for (i, s) in shifts.iter().enumerate() {
                prop_assert!(s.starts < s.ends, "{s:?}");
                prop_assert_eq!(&s.user, &c.members[(first + i) % c.members.len()]);
                prop_assert_eq!(r.on_call(s.starts), Some(s.clone()));
                if let Some(next) = shifts.get(i + 1) {
                    prop_assert_eq!(s.ends, next.starts);
                }
            }
        }

        #[test]
        fn whole_day_shifts_start_at_the_local_handoff_time_when_it_exists(
            c in any_rotation().prop_filter("whole days", |c| c.shift.as_secs() % 86_400 == 0),
            offset in 0i64..20 * 366 * 86_400,
        ) {
            let r = Rotation::new(&c).unwrap();
            let days = c.shift.as_secs() / 86_400;
            for s in r.upcoming(r.first + TimeDelta::seconds(offset), 4) {
                let wall = |t: DateTime<Utc>| t.with_timezone(&r.tz).naive_local();
                let local = wall(s.starts);
                let before = wall(s.starts - TimeDelta::seconds(1));
                if before + TimeDelta::seconds(1) == local {
                    // No clock change at the hand-off: it is at the hand-off
                    // time, on a hand-off day, and the earlier of two if the
                    // clocks repeat it.
                    prop_assert_eq!(local.time(), r.handoff);
                    let elapsed = u64::try_from((local.date() - c.start).num_days()).unwrap();
                    prop_assert_eq!(elapsed % days, 0);
                    prop_assert_eq!(r.tz.from_local_datetime(&local).earliest().map(|t| t.with_timezone(&Utc)), Some(s.starts));
                } else {
                    // At a clock change: either the hand-off time happens to
                    // be right after it, or that day's hand-off time was
                    // skipped.
                    let mut skipped = false;
                    let mut d = before.date();
                    while d <= local.date() {
                        skipped |= matches!(r.tz.from_local_datetime(&d.and_time(r.handoff)), LocalResult::None);
                        d = d.succ_opt().unwrap();
                    }
                    prop_assert!(local.time() == r.handoff || skipped, "{s:?} local {local}");
                }
            }
        }

        #[test]
        fn with_overrides_shifts_still_contain_now_and_touch(
            c in any_rotation(),
            overrides in any_overrides(),
            offset in -30_000i64..60_000,
        ) {
            let mut c = c;
            let base = Rotation::new(&c).unwrap();
            c.overrides = overrides
                .iter()
                .enumerate()
                .map(|(i, &(from, len))| Override {
                    user: format!("W{i}O"),
                    from: base.first + TimeDelta::minutes(from),
                    until: base.first + TimeDelta::minutes(from + len),
                })
                .collect();
            let r = Rotation::new(&c).unwrap();
            let now = r.first + TimeDelta::minutes(offset);
            match r.on_call(now) {
                Some(s) => prop_assert!(s.starts <= now && now < s.ends, "{s:?} at {now}"),
                None => prop_assert!(
                    now < r.first && c.overrides.iter().all(|o| !(o.from <= now && now < o.until))
                ),
            }
            let shifts = r.upcoming(now, 12);
            for pair in shifts.windows(2) {
                prop_assert!(pair[0].starts < pair[0].ends);
                if pair[0].ends >= r.first {
                    prop_assert_eq!(pair[0].ends, pair[1].starts, "{:?}", pair);
                }
            }
            for s in &shifts {
                // The last-listed active override is who is on call.
                let expected = c.overrides.iter().rev()
                    .find(|o| o.from <= s.starts && s.starts < o.until)
                    .map(|o| o.user.clone())
                    .or_else(|| base.on_call(s.starts).map(|b| b.user));
                prop_assert_eq!(Some(&s.user), expected.as_ref());
            }
        }
    }
}
