//! A calendar day, the only time resolution Hamlet keeps for feedback.
//!
//! Responses carry a recording *day*, never a time of day, and the timestamps Automerge writes
//! into changes are coarsened to midnight UTC of that day, so that the order of a collector's
//! visits cannot be read back from a document.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A proleptic Gregorian calendar day, stored as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Day(i32);

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Day {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::text("A calendar day, YYYY-MM-DD.", Some(r"^\d{4}-\d{2}-\d{2}$"))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Day {}

/// A day that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid day {input:?}: expected YYYY-MM-DD")]
pub struct DayError {
    /// The text that was given.
    pub input: String,
}

impl Day {
    /// The day with this year, month (1–12) and day of month, if it exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Day> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Day(days_from_civil(year, month, day)))
    }

    /// The day that contains this Unix time (seconds, UTC).
    pub fn from_unix_seconds(seconds: i64) -> Day {
        Day(seconds.div_euclid(86_400) as i32)
    }

    /// Midnight UTC of this day, in Unix seconds: the timestamp Hamlet puts on changes.
    pub fn unix_seconds(self) -> i64 {
        i64::from(self.0) * 86_400
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i32 {
        self.0
    }

    /// Year, month and day of month.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// The day `n` days later (or earlier, for negative `n`).
    pub fn plus_days(self, n: i32) -> Day {
        Day(self.0 + n)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Day {
    type Err = DayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DayError { input: s.to_owned() };
        let bytes = s.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(err());
        }
        let num = |range: std::ops::Range<usize>| -> Result<u32, DayError> {
            let part = &s[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            part.parse().map_err(|_| err())
        };
        let year = num(0..4)? as i32;
        Day::from_ymd(year, num(5..7)?, num(8..10)?).ok_or_else(err)
    }
}

impl TryFrom<String> for Day {
    type Error = DayError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Day> for String {
    fn from(d: Day) -> String {
        d.to_string()
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Civil-calendar conversions after Howard Hinnant's public-domain algorithms (eras of 400 years).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_days() {
        assert_eq!(Day::from_ymd(1970, 1, 1).map(Day::days_since_epoch), Some(0));
        let d: Day = "2025-07-01".parse().expect("valid day");
        assert_eq!(d.unix_seconds(), 1_751_328_000);
        assert_eq!(d.to_string(), "2025-07-01");
        assert_eq!(Day::from_unix_seconds(1_751_328_000 + 86_399), d);
        assert_eq!(Day::from_unix_seconds(-1).to_string(), "1969-12-31");
    }

    #[test]
    fn round_trips_every_day_of_four_centuries() {
        let start = Day::from_ymd(1900, 1, 1).expect("valid");
        for n in 0..146_097 {
            let d = start.plus_days(n);
            let (y, m, dd) = d.ymd();
            assert_eq!(Day::from_ymd(y, m, dd), Some(d));
            assert_eq!(d.to_string().parse::<Day>(), Ok(d));
        }
    }

    #[test]
    fn rejects_malformed_days() {
        for bad in ["", "2025-7-01", "2025-02-29", "2024-13-01", "2024-00-10", "20x4-01-01", "2024/01/01", "+024-01-01"]
        {
            assert!(bad.parse::<Day>().is_err(), "{bad:?} should be refused");
        }
        assert!("2024-02-29".parse::<Day>().is_ok());
    }
}
