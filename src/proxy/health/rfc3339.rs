//! Timestamps in the form Go's `encoding/json` writes a `time.Time` (RFC 3339 with nanoseconds, trailing
//! zeros of the fraction dropped), always in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// How Go writes its zero `time.Time`, which kube-proxy reports as `lastUpdated` before any sync.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Formats `t` as RFC 3339 in UTC with up to nine fraction digits, e.g. `2024-05-01T12:00:00.5Z`.
pub fn format(t: SystemTime) -> String {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let whole = d.as_secs() as i64;
            match d.subsec_nanos() {
                0 => (-whole, 0),
                n => (-whole - 1, 1_000_000_000 - n),
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Formats an optional time, writing Go's zero time for `None`.
pub fn format_or_zero(t: Option<SystemTime>) -> String {
    t.map_or_else(|| ZERO_TIME.to_string(), format)
}

/// The proleptic Gregorian date of a day count relative to 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn epoch_and_whole_seconds() {
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(format(at(1_700_000_000, 0)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn fraction_drops_trailing_zeros() {
        assert_eq!(
            format(at(1_700_000_000, 500_000_000)),
            "2023-11-14T22:13:20.5Z"
        );
        assert_eq!(
            format(at(1_700_000_000, 123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            format(at(1_700_000_000, 1_000)),
            "2023-11-14T22:13:20.000001Z"
        );
    }

    #[test]
    fn leap_day_and_year_ends() {
        // 2024-02-29T00:00:00Z
        assert_eq!(format(at(1_709_164_800, 0)), "2024-02-29T00:00:00Z");
        // 1999-12-31T23:59:59Z
        assert_eq!(format(at(946_684_799, 0)), "1999-12-31T23:59:59Z");
        // 2000-03-01T00:00:00Z
        assert_eq!(format(at(951_868_800, 0)), "2000-03-01T00:00:00Z");
    }

    #[test]
    fn before_the_epoch() {
        let t = UNIX_EPOCH - Duration::new(1, 500_000_000);
        assert_eq!(format(t), "1969-12-31T23:59:58.5Z");
    }

    #[test]
    fn zero_time_for_none() {
        assert_eq!(format_or_zero(None), ZERO_TIME);
        assert_eq!(format_or_zero(Some(UNIX_EPOCH)), "1970-01-01T00:00:00Z");
    }
}
