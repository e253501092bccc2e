//! Go's `time.Time.MarshalText` / `UnmarshalText`: RFC 3339 with nanoseconds, the text
//! containerd keeps in an ingest's `startedat` and `updatedat` files and in the
//! `containerd.io/gc.expire` label of leases.
//!
//! Written: `2026-11-23T14:11:09.857878063Z`, always UTC, the fraction without trailing
//! zeros and left out when zero (Go's `RFC3339Nano` layout). Read: any offset
//! (`+02:00`; containerd writes `time.Now()` in its local zone) and 1 to 9 fraction digits
//! (more are cut, as Go does).

use super::encoding::Timestamp;

const SECS_PER_DAY: i64 = 86_400;

/// A time that is not RFC 3339 text, or not representable as such.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeTextError {
    /// Go's `MarshalText` refuses years outside `0..=9999`.
    #[error("Time.MarshalText: year outside of range [0,9999]")]
    YearOutOfRange,
    /// The text does not parse.
    #[error("parsing time {text:?}: {reason}")]
    Parse { text: String, reason: &'static str },
}

/// Formats `t` as Go's `MarshalText` does for a UTC time.
pub fn format(t: Timestamp) -> Result<String, TimeTextError> {
    let t = Timestamp::new(t.secs, t.nanos);
    let days = t.secs.div_euclid(SECS_PER_DAY);
    let secs_of_day = t.secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return Err(TimeTextError::YearOutOfRange);
    }
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    );
    if t.nanos != 0 {
        let fraction = format!("{:09}", t.nanos);
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    Ok(out)
}

/// Parses RFC 3339 text as Go's `UnmarshalText` does, into the instant it names.
pub fn parse(text: &str) -> Result<Timestamp, TimeTextError> {
    let fail = |reason| TimeTextError::Parse {
        text: text.to_string(),
        reason,
    };
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err(fail("too short"));
    }
    let num = |range: std::ops::Range<usize>, what| -> Result<i64, TimeTextError> {
        let digits = &b[range];
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(fail(what));
        }
        Ok(digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    for (i, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        if b[i] != sep {
            return Err(fail("bad separator"));
        }
    }
    let year = num(0..4, "bad year")?;
    let month = num(5..7, "bad month")?;
    let day = num(8..10, "bad day")?;
    let hour = num(11..13, "bad hour")?;
    let minute = num(14..16, "bad minute")?;
    let second = num(17..19, "bad second")?;
    if !(1..=12).contains(&month) {
        return Err(fail("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(fail("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail("time of day out of range"));
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(fail("empty fraction"));
        }
        for (i, d) in fraction[..len].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
        }
        for _ in len..9 {
            nanos *= 10;
        }
        rest = &fraction[len..];
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let zone = [*h1, *h2, *m1, *m2];
            if !zone.iter().all(u8::is_ascii_digit) {
                return Err(fail("bad zone offset"));
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if h > 23 || m > 59 {
                return Err(fail("zone offset out of range"));
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(fail("bad zone")),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset;
    Ok(Timestamp::new(secs, nanos))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (years counted from March, so the
/// leap day is the last day of its year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: year, month, day.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        // 2026-11-23T14:11:09.857878063Z, the fixture's container time (meta-db.md).
        let t = Timestamp::new(63_931_039_869 - 62_135_596_800, 857_878_063);
        assert_eq!(format(t).unwrap(), "2026-11-23T14:11:09.857878063Z");
        assert_eq!(
            format(Timestamp::new(t.secs, 857_000_000)).unwrap(),
            "2026-11-23T14:11:09.857Z"
        );
        assert_eq!(
            format(Timestamp::new(t.secs, 0)).unwrap(),
            "2026-11-23T14:11:09Z"
        );
        assert_eq!(
            format(Timestamp::new(0, 1)).unwrap(),
            "1970-01-01T00:00:00.000000001Z"
        );
        assert_eq!(
            format(Timestamp::new(-1, 0)).unwrap(),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            format(Timestamp::new(951_782_400, 0)).unwrap(),
            "2000-02-29T00:00:00Z"
        );
        let year_zero = days_from_civil(0, 1, 1) * SECS_PER_DAY;
        assert_eq!(
            format(Timestamp::new(year_zero, 0)).unwrap(),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(
            format(Timestamp::new(year_zero - 1, 0)),
            Err(TimeTextError::YearOutOfRange)
        );
        let after_9999 = days_from_civil(10_000, 1, 1) * SECS_PER_DAY;
        assert_eq!(
            format(Timestamp::new(after_9999, 0)),
            Err(TimeTextError::YearOutOfRange)
        );
    }

    #[test]
    fn parses_what_go_writes() {
        let t = Timestamp::new(1_795_443_069, 857_878_063);
        assert_eq!(parse("2026-11-23T14:11:09.857878063Z").unwrap(), t);
        // containerd writes its local zone.
        assert_eq!(parse("2026-11-23T15:41:09.857878063+01:30").unwrap(), t);
        assert_eq!(parse("2026-11-23T09:11:09.857878063-05:00").unwrap(), t);
        assert_eq!(
            parse("2026-11-23T14:11:09.8578780639999Z").unwrap(),
            t,
            "digits past nanoseconds are cut"
        );
        assert_eq!(
            parse("2026-11-23T14:11:09.5Z").unwrap(),
            Timestamp::new(t.secs, 500_000_000)
        );
        assert_eq!(
            parse("1969-12-31T23:59:59Z").unwrap(),
            Timestamp::new(-1, 0)
        );
        assert_eq!(
            parse("2024-02-29T00:00:00Z").unwrap(),
            Timestamp::new(1_709_164_800, 0)
        );
    }

    #[test]
    fn round_trips() {
        let mut secs = -62_167_219_200i64; // 0000-01-01
        let mut nanos = 0u32;
        while secs < 253_402_300_800 {
            // 10000-01-01
            let t = Timestamp::new(secs, nanos);
            let text = format(t).unwrap();
            assert_eq!(parse(&text).unwrap(), t, "{text}");
            secs += 7_777_777 + i64::from(nanos % 97);
            nanos = (nanos + 123_456_789) % 1_000_000_000;
        }
        let now = Timestamp::now();
        assert_eq!(parse(&format(now).unwrap()).unwrap(), now);
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23 14:11:09Z",
            "2026-11-23T14:11:09",
            "2026-11-23T14:11:09z",
            "2026-11-23T14:11:09.Z",
            "2026-11-23T14:11:09.5",
            "2026-13-23T14:11:09Z",
            "2026-02-29T14:11:09Z",
            "2026-11-00T14:11:09Z",
            "2026-11-23T24:11:09Z",
            "2026-11-23T14:60:09Z",
            "2026-11-23T14:11:60Z",
            "2026-11-23T14:11:09+24:00",
            "2026-11-23T14:11:09+0100",
            "2026-11-23T14:11:09Z\n",
            "+026-11-23T14:11:09Z",
            "2026-11-23T14:11:09.12x4Z",
            "２026-11-23T14:11:09Z",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = parse("nope").unwrap_err();
        assert_eq!(e.to_string(), "parsing time \"nope\": too short");
    }

    #[test]
    fn round_trips_and_reads_like_go_time_parse() {
        for (text, secs, nanos) in [
            ("1970-01-01T00:00:00Z", 0, 0),
            ("2024-01-01T00:00:00Z", 1_704_067_200, 0),
            ("2024-02-29T23:59:59.5Z", 1_709_251_199, 500_000_000),
            ("1969-12-31T23:59:59.000000001Z", -1, 1),
        ] {
            let t = Timestamp::new(secs, nanos);
            assert_eq!(format(t).unwrap(), text);
            assert_eq!(parse(text).unwrap(), t, "{text}");
        }
        assert_eq!(
            parse("2024-01-01T02:00:00+02:00").unwrap(),
            parse("2024-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse("2023-12-31T19:00:00-05:00").unwrap(),
            parse("2024-01-01T00:00:00Z").unwrap()
        );
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00:00Zjunk",
            "yesterday",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
