//! Timestamps written as chrono writes them (RFC 3339, `Z`, the fraction
//! in 0, 3, 6 or 9 digits as needed), without going through `core::fmt`:
//! every position message and team delta carries two, and at tens of
//! thousands a second the formatting machinery showed in profiles.
//!
//! Reading: the quick parse of the messages sent at rate
//! ([`crate::validate::Validate::parse_quick`]) reads the strict form
//! `YYYY-MM-DDTHH:MM:SS[.f…]` with `Z` or `±HH:MM` here, and hands anything
//! else to chrono's own reader, which is what the careful parse uses; both
//! give the same instant for every text the strict form takes (tested).

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeDelta, Timelike, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

/// Longest text written here: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

fn two(out: &mut [u8], at: usize, n: u32) {
    out[at] = b'0' + (n / 10 % 10) as u8;
    out[at + 1] = b'0' + (n % 10) as u8;
}

/// `t` as chrono's `Serialize` writes it (`to_rfc3339_opts(AutoSi, true)`).
fn write<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; MAX_LEN]) -> Option<&'b str> {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let year = year as u32;
    two(buf, 0, year / 100);
    two(buf, 2, year % 100);
    buf[4] = b'-';
    two(buf, 5, t.month());
    buf[7] = b'-';
    two(buf, 8, t.day());
    buf[10] = b'T';
    let (mut sec, mut nano) = (t.second(), t.nanosecond());
    if nano >= 1_000_000_000 {
        // A leap second.
        sec += 1;
        nano -= 1_000_000_000;
    }
    two(buf, 11, t.hour());
    buf[13] = b':';
    two(buf, 14, t.minute());
    buf[16] = b':';
    two(buf, 17, sec);
    let (mut len, digits, mut frac) = match nano {
        0 => (19, 0, 0),
        n if n % 1_000_000 == 0 => (20, 3, n / 1_000_000),
        n if n % 1_000 == 0 => (20, 6, n / 1_000),
        n => (20, 9, n),
    };
    if digits > 0 {
        buf[19] = b'.';
        for i in (0..digits).rev() {
            buf[20 + i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        len += digits;
    }
    buf[len] = b'Z';
    std::str::from_utf8(&buf[..=len]).ok()
}

/// `serialize_with` for a `DateTime<Utc>`.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match write(t, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// `serialize_with` for an `Option<DateTime<Utc>>`.
pub fn serialize_option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// The digits `b[at..at + n]` as a number, if all are ASCII digits.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    b.get(at..at + n)?
        .iter()
        .try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

/// The instant of `text` in the strict form, or `None` for any other text
/// (a leap second, more than nine digits of fraction, a lower-case `t` or
/// `z`, a space for `T`…), which chrono then reads.
fn read_strict(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let (month, day) = (digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if second > 59 {
        return None;
    }
    let mut at = 19;
    let mut nano = 0;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let n = at - start;
        if n == 0 || n > 9 {
            return None;
        }
        nano = digits(b, start, n)? * 10u32.pow(9 - n as u32);
    }
    let offset_s = match &b[at..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(b, at + 1, 2)?, digits(b, at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let s = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -s } else { s }
        }
        _ => return None,
    };
    let local =
        NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_nano_opt(hour, minute, second, nano)?;
    Some(local.checked_sub_signed(TimeDelta::seconds(offset_s))?.and_utc())
}

/// A timestamp read strictly where it can be, else by chrono.
fn read(text: &str) -> Option<DateTime<Utc>> {
    read_strict(text).or_else(|| text.parse::<DateTime<chrono::FixedOffset>>().ok().map(|t| t.to_utc()))
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 date and time")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        read(v).ok_or_else(|| E::custom("not an RFC 3339 date and time"))
    }
}

/// `deserialize_with` for a `DateTime<Utc>` of the quick parse.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(TimeVisitor)
}

/// A timestamp of the quick parse, for options.
struct Read(DateTime<Utc>);

impl<'de> Deserialize<'de> for Read {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d).map(Read)
    }
}

/// `deserialize_with` for an `Option<DateTime<Utc>>` of the quick parse.
pub fn deserialize_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(Option::<Read>::deserialize(d)?.map(|r| r.0))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn ours(t: &DateTime<Utc>) -> String {
        let mut out = Vec::new();
        serialize(t, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fractions_leap_seconds_and_far_years_are_written_as_chrono_writes_them() {
        let base = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        let cases = [
            base,
            base + chrono::Duration::milliseconds(120),
            base + chrono::Duration::microseconds(5),
            base + chrono::Duration::nanoseconds(7),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
                .unwrap()
                .and_utc(),
        ];
        for t in cases {
            assert_eq!(ours(&t), serde_json::to_string(&t).unwrap(), "{t:?}");
        }
        assert_eq!(ours(&base), r#""2026-03-01T10:00:00Z""#);
    }

    proptest! {
        #[test]
        fn any_time_is_written_as_chrono_writes_it(secs in -62_000_000_000i64..260_000_000_000, nanos in 0u32..2_000_000_000, round in 0u32..3) {
            // Round the fraction to ms or µs a third of the time each, to
            // reach every width.
            let nanos = match round { 0 => nanos / 1_000_000 * 1_000_000, 1 => nanos / 1_000 * 1_000, _ => nanos };
            if let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) {
                prop_assert_eq!(ours(&t), serde_json::to_string(&t).unwrap());
            }
        }
    }

    /// What the careful parse reads: chrono's `Deserialize`.
    fn chrono_reads(text: &str) -> Option<DateTime<Utc>> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    #[test]
    fn the_forms_phones_send_are_read_strictly_and_as_chrono_reads_them() {
        for text in [
            "2025-05-14T18:04:00Z",
            "2025-05-14T18:04:00.5Z",
            "2025-05-14T18:04:00.123456789Z",
            "2025-05-14T23:04:00+05:00",
            "2025-05-14T13:04:00-05:30",
            "2024-02-29T00:00:00Z",
            "2025-01-01T00:30:00+01:00",
        ] {
            let strict = read_strict(text);
            assert!(strict.is_some(), "{text}");
            assert_eq!(strict, chrono_reads(text), "{text}");
        }
    }

    #[test]
    fn other_forms_go_to_chrono() {
        // Chrono takes these; the strict reader leaves them to it.
        for text in [
            "2025-05-14 18:04:00Z",
            "2025-05-14t18:04:00z",
            "2016-12-31T23:59:60Z",
            "2025-05-14T18:04:00.1234567891Z",
        ] {
            assert_eq!(read_strict(text), None, "{text}");
            assert_eq!(read(text), chrono_reads(text), "{text}");
            assert!(read(text).is_some(), "{text}");
        }
        for text in [
            "2025-02-30T00:00:00Z",
            "2025-05-14T24:00:00Z",
            "2025-05-14T18:04:00",
            "2025-05-14T18:04:00+5:00",
            "",
        ] {
            assert_eq!(read(text), None, "{text}");
            assert_eq!(chrono_reads(text), None, "{text}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Texts near the strict form, digit by digit and separator by
        /// separator: whatever the strict reader takes, chrono reads as the
        /// same instant, and it takes every instant written the usual way.
        #[test]
        fn the_strict_reader_agrees_with_chrono(
            text in "[0-9]{4}-[0-1][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{0,11})?(Z|z|[+-][0-2][0-9]:[0-6][0-9]|[+-][0-9]{4})?",
            secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000,
        ) {
            if let Some(t) = read_strict(&text) {
                prop_assert_eq!(Some(t), chrono_reads(&text), "{}", text);
            }
            if let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) {
                let usual = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                prop_assert_eq!(read_strict(&usual), Some(t), "{}", usual);
            }
        }
    }
}
