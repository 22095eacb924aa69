//! Times in foreign data: ISO 8601 / RFC 3339 text and epoch numbers, and
//! the RFC 3339 form `twin export` writes. Civil-date arithmetic is done
//! here (proleptic Gregorian, UTC) so no time zone database is involved.

use crate::sources::mqtt::payload::days_from_civil;

/// The unit of an epoch number in a time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl TimeUnit {
    pub fn parse(s: &str) -> Result<TimeUnit, String> {
        match s {
            "s" => Ok(TimeUnit::Seconds),
            "ms" => Ok(TimeUnit::Millis),
            "us" => Ok(TimeUnit::Micros),
            "ns" => Ok(TimeUnit::Nanos),
            _ => Err("expected s, ms, us or ns".to_string()),
        }
    }

    /// The unit an epoch number of this magnitude is in. Seconds below
    /// 1e11 (until the year 5138), milliseconds below 1e14 (from March 1973
    /// on), microseconds below 1e17, nanoseconds above: each range holds
    /// every date from 1973 to 5138 in exactly one unit.
    pub fn guess(v: f64) -> TimeUnit {
        let a = v.abs();
        if a < 1e11 {
            TimeUnit::Seconds
        } else if a < 1e14 {
            TimeUnit::Millis
        } else if a < 1e17 {
            TimeUnit::Micros
        } else {
            TimeUnit::Nanos
        }
    }

    fn ns(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1e9,
            TimeUnit::Millis => 1e6,
            TimeUnit::Micros => 1e3,
            TimeUnit::Nanos => 1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Millis => "ms",
            TimeUnit::Micros => "us",
            TimeUnit::Nanos => "ns",
        }
    }
}

/// An epoch number in `unit`, as ns since the Unix epoch.
pub fn epoch_ns(v: f64, unit: TimeUnit) -> Option<i64> {
    let ns = (v * unit.ns()).round();
    (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns as i64)
}

/// An integer epoch in `unit`, exactly (an f64 would round nanoseconds).
pub fn epoch_ns_int(v: i64, unit: TimeUnit) -> Option<i64> {
    v.checked_mul(unit.ns() as i64)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    part.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// An ISO 8601 / RFC 3339 time: `2026-12-04T10:00:00Z`,
/// `2026-12-04 10:00:00.250+01:00`, `2026-12-04T10:00`, `2026-12-04`.
/// A time without a zone is UTC (historians export UTC far more often than
/// a local time, and a local time would make the import depend on the
/// machine it runs on).
pub fn parse_iso(text: &str) -> Option<i64> {
    let s = text.trim().as_bytes();
    let (y, mo, d) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut at = 10;
    let (mut h, mut mi, mut sec, mut frac_ns) = (0, 0, 0, 0i64);
    if at < s.len() {
        if !matches!(s[at], b'T' | b't' | b' ') {
            return None;
        }
        h = digits(s, at + 1, 2)?;
        if s.get(at + 3) != Some(&b':') {
            return None;
        }
        mi = digits(s, at + 4, 2)?;
        at += 6;
        if s.get(at) == Some(&b':') {
            sec = digits(s, at + 1, 2)?;
            at += 3;
            if matches!(s.get(at), Some(b'.' | b',')) {
                at += 1;
                let start = at;
                let mut scale = 100_000_000;
                while let Some(b) = s.get(at).filter(|b| b.is_ascii_digit()) {
                    frac_ns += i64::from(b - b'0') * scale;
                    scale /= 10;
                    at += 1;
                }
                if at == start {
                    return None;
                }
            }
        }
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset_s = match s.get(at..) {
        None | Some([]) => 0,
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), rest @ ..]) => {
            let (oh, om) = match rest.len() {
                2 => (digits(rest, 0, 2)?, 0),
                4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                _ => return None,
            };
            let o = oh * 3600 + om * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// `t_ns` as RFC 3339 in UTC, with as many fractional digits as it needs
/// (none for a whole second), so that [`parse_iso`] gives `t_ns` back.
pub fn format_rfc3339(t_ns: i64) -> String {
    let secs = t_ns.div_euclid(1_000_000_000);
    let frac = t_ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_with_and_without_zone_parse_to_utc() {
        let t = 1_796_378_400_000_000_000; // 2026-12-04T10:00:00Z
        assert_eq!(parse_iso("2026-12-04T10:00:00Z"), Some(t));
        assert_eq!(parse_iso("2026-12-04 10:00:00"), Some(t));
        assert_eq!(parse_iso("2026-12-04T10:00"), Some(t));
        assert_eq!(parse_iso("2026-12-04T11:00:00+01:00"), Some(t));
        assert_eq!(parse_iso("2026-12-04T09:30:00-0030"), Some(t));
        assert_eq!(parse_iso("2026-12-04T10:00:00.25Z"), Some(t + 250_000_000));
        assert_eq!(parse_iso("2026-12-04"), Some(t - 10 * 3_600_000_000_000));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-12-04T25:00",
            "2026-12-04T10:00:00X",
            "2026-12-04T10:00:00.",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_output_parses_back_exactly() {
        for t in [
            0,
            1,
            -1,
            1_796_378_400_000_000_000,
            1_796_378_400_123_456_789,
            -86_400_000_000_001,
        ] {
            assert_eq!(
                parse_iso(&format_rfc3339(t)),
                Some(t),
                "{}",
                format_rfc3339(t)
            );
        }
        assert_eq!(
            format_rfc3339(1_796_378_400_250_000_000),
            "2026-12-04T10:00:00.25Z"
        );
    }

    #[test]
    fn epoch_units_are_guessed_by_magnitude() {
        assert_eq!(TimeUnit::guess(1_796_378_400.0), TimeUnit::Seconds);
        assert_eq!(TimeUnit::guess(1_796_378_400_000.0), TimeUnit::Millis);
        assert_eq!(TimeUnit::guess(1_796_378_400_000_000.0), TimeUnit::Micros);
        assert_eq!(TimeUnit::guess(1.7963784e18), TimeUnit::Nanos);
        assert_eq!(epoch_ns(1.5, TimeUnit::Seconds), Some(1_500_000_000));
    }
}
