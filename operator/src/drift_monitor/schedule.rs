//! When the next check runs (pure): from a five-field cron `schedule` in an optional time
//! zone, or a fixed interval. Runs missed while the operator was down are run once, not one
//! per missed slot; a running check is waited for, never doubled.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::validate::Error;

/// How often a monitor checks.
#[derive(Clone, Debug)]
pub enum Every {
    /// A cron pattern (minute hour day-of-month month day-of-week), read in `zone`.
    Cron { cron: Box<Cron>, zone: TimeZone },
    /// A fixed interval.
    Interval(Duration),
}

impl PartialEq for Every {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Every::Cron { cron: a, zone: za }, Every::Cron { cron: b, zone: zb }) => {
                a == b && za.iana_name() == zb.iana_name()
            }
            (Every::Interval(a), Every::Interval(b)) => a == b,
            _ => false,
        }
    }
}

impl Every {
    /// Parse `schedule` (as a Kubernetes CronJob's: five fields, or `@hourly`-style
    /// nicknames) in the IANA zone `time_zone` (UTC when none).
    pub fn cron(schedule: &str, time_zone: Option<&str>) -> Result<Every, Error> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(schedule.trim())
            .map_err(|e| Error::InvalidCron {
                schedule: schedule.into(),
                reason: e.to_string(),
            })?;
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => {
                TimeZone::get(name).map_err(|_| Error::InvalidTimeZone(name.to_string()))?
            }
        };
        // A pattern that never matches (30 February) is as invalid as a malformed one.
        next_cron(&cron, &zone, Timestamp::UNIX_EPOCH).ok_or_else(|| Error::InvalidCron {
            schedule: schedule.into(),
            reason: "never matches a real date".into(),
        })?;
        Ok(Every::Cron {
            cron: Box::new(cron),
            zone,
        })
    }

    /// The first run time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Every::Cron { cron, zone } => next_cron(cron, zone, t),
            Every::Interval(d) => t.checked_add(jiff::SignedDuration::try_from(*d).ok()?).ok(),
        }
    }

    /// The latest run time at or before `now`, not before `from` (the run a monitor owes
    /// after downtime: only the newest of the missed ones).
    fn latest_due(&self, from: Timestamp, now: Timestamp) -> Timestamp {
        match self {
            Every::Cron { cron, zone } => cron
                .find_previous_occurrence(&now.to_zoned(zone.clone()), true)
                .map(|z| z.timestamp())
                .ok()
                .filter(|t| *t >= from)
                .unwrap_or(from),
            Every::Interval(d) => {
                let step = d.as_secs().max(1) as i64;
                let behind = (now.as_second() - from.as_second()).max(0);
                let slots = behind / step;
                Timestamp::from_second(from.as_second() + slots * step).unwrap_or(from)
            }
        }
    }
}

fn next_cron(cron: &Cron, zone: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    cron.find_next_occurrence(&t.to_zoned(zone.clone()), false)
        .ok()
        .map(|z| z.timestamp())
}

/// What the scheduler decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Start a check now, for this scheduled time (it names the Job).
    pub start: Option<Timestamp>,
    /// The next scheduled time after this decision (`status.nextRunTime`); none while
    /// suspended.
    pub next_run: Option<Timestamp>,
}

/// Decide whether a check starts now.
///
/// `last_scheduled` is the scheduled time of the newest Job started (none before the first:
/// the first check runs at once). `running` is true while a Job of the monitor is unfinished.
pub fn decide(
    every: &Every,
    last_scheduled: Option<Timestamp>,
    now: Timestamp,
    running: bool,
    suspend: bool,
) -> Decision {
    if suspend {
        return Decision {
            start: None,
            next_run: None,
        };
    }
    let due = match last_scheduled {
        None => Some(now),
        Some(last) => every.next_after(last),
    };
    match due {
        Some(due) if due <= now && !running => {
            let at = match last_scheduled {
                None => now,
                Some(_) => every.latest_due(due, now),
            };
            Decision {
                start: Some(at),
                next_run: every.next_after(at),
            }
        }
        // Due but a check still runs: it is waited for, and this run starts when it ends.
        due => Decision {
            start: None,
            next_run: due,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn first_check_runs_at_once_then_on_the_schedule() {
        let every = Every::cron("0 * * * *", None).unwrap();
        let now = ts("2026-03-01T10:17:00Z");
        let d = decide(&every, None, now, false, false);
        assert_eq!(d.start, Some(now));
        assert_eq!(d.next_run, Some(ts("2026-03-01T11:00:00Z")));
        // Next reconcile, before the hour: nothing to start, requeue at 11:00.
        let d = decide(&every, Some(now), ts("2026-03-01T10:40:00Z"), false, false);
        assert_eq!(
            d,
            Decision {
                start: None,
                next_run: Some(ts("2026-03-01T11:00:00Z"))
            }
        );
        let d = decide(&every, Some(now), ts("2026-03-01T11:00:00Z"), false, false);
        assert_eq!(d.start, Some(ts("2026-03-01T11:00:00Z")));
        assert_eq!(d.next_run, Some(ts("2026-03-01T12:00:00Z")));
    }

    #[test]
    fn missed_runs_after_downtime_run_once_for_the_latest_slot() {
        let every = Every::cron("*/15 * * * *", None).unwrap();
        let last = ts("2026-03-01T08:00:00Z");
        // The operator was down for 2h 10m: eight slots were missed.
        let now = ts("2026-03-01T10:10:00Z");
        let d = decide(&every, Some(last), now, false, false);
        assert_eq!(d.start, Some(ts("2026-03-01T10:00:00Z")));
        assert_eq!(d.next_run, Some(ts("2026-03-01T10:15:00Z")));
        // And once it started, the next reconcile owes nothing more.
        let d = decide(&every, d.start, now, true, false);
        assert_eq!(d.start, None);

        let every = Every::Interval(Duration::from_secs(600));
        let d = decide(&every, Some(last), ts("2026-03-01T09:05:00Z"), false, false);
        assert_eq!(d.start, Some(ts("2026-03-01T09:00:00Z")));
        assert_eq!(d.next_run, Some(ts("2026-03-01T09:10:00Z")));
    }

    #[test]
    fn a_running_check_is_waited_for() {
        let every = Every::Interval(Duration::from_secs(600));
        let last = ts("2026-03-01T08:00:00Z");
        let d = decide(&every, Some(last), ts("2026-03-01T08:12:00Z"), true, false);
        assert_eq!(d.start, None);
        assert_eq!(d.next_run, Some(ts("2026-03-01T08:10:00Z")));
    }

    #[test]
    fn suspend_starts_nothing_and_has_no_next_run() {
        let every = Every::Interval(Duration::from_secs(600));
        let d = decide(&every, None, ts("2026-03-01T08:00:00Z"), false, true);
        assert_eq!(
            d,
            Decision {
                start: None,
                next_run: None
            }
        );
    }

    #[test]
    fn cron_is_read_in_its_time_zone_across_daylight_saving() {
        // 02:30 every day in Berlin. On 2026-03-29 the clocks jump 02:00 → 03:00.
        let every = Every::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        // Winter: UTC+1.
        assert_eq!(
            every.next_after(ts("2026-01-10T12:00:00Z")),
            Some(ts("2026-01-11T01:30:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            every.next_after(ts("2026-06-10T12:00:00Z")),
            Some(ts("2026-06-11T00:30:00Z"))
        );
        // 02:30 does not exist on 29 March: the check is not run twice nor lost for good.
        let next = every.next_after(ts("2026-03-28T12:00:00Z")).unwrap();
        assert!(next > ts("2026-03-28T12:00:00Z") && next < ts("2026-03-30T01:00:00Z"));
        // In New York the same pattern is six hours later in winter.
        let ny = Every::cron("30 2 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            ny.next_after(ts("2026-01-10T12:00:00Z")),
            Some(ts("2026-01-11T07:30:00Z"))
        );
    }

    #[test]
    fn invalid_patterns_say_why() {
        for (bad, says) in [
            ("61 * * * *", "61 * * * *"),
            ("* * * *", "* * * *"),
            ("0 0 0 * * *", "0 0 0 * * *"),
            ("0 0 30 2 *", "never matches"),
        ] {
            let err = Every::cron(bad, None).unwrap_err();
            assert_eq!(err.reason(), "InvalidSchedule");
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
        assert!(Every::cron("@hourly", None).is_ok());
        assert!(Every::cron("0 * * * *", Some("Nowhere/City")).is_err());
    }
}
