//! Prometheus durations (`30s`, `1m30s`, `1h`, `500ms`, `0`): the units
//! `y`, `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and largest first,
//! as Prometheus's own parser takes them. A duration Prometheus would refuse
//! must not reach its configuration: the whole file would be refused.

/// The durations Prometheus takes, as a CRD `pattern` (the one
/// prometheus-operator's CRDs use).
#[cfg(test)]
pub const PATTERN: &str = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$";

/// The duration in milliseconds; `None` when Prometheus would refuse it.
pub fn millis(text: &str) -> Option<u64> {
    if text == "0" {
        return Some(0);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`: the longer unit wins.
        let unit = if rest.starts_with("ms") { "ms" } else { rest.get(..1)? };
        let at = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        total = total.checked_add(number.checked_mul(UNITS[at].1)?)?;
        next_unit = at + 1;
        rest = &rest[unit.len()..];
    }
    (!text.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations() {
        assert_eq!(millis("30s"), Some(30_000));
        assert_eq!(millis("1m30s"), Some(90_000));
        assert_eq!(millis("1h"), Some(3_600_000));
        assert_eq!(millis("500ms"), Some(500));
        assert_eq!(millis("1m500ms"), Some(60_500));
        assert_eq!(millis("2w1d"), Some(15 * 24 * 3_600_000));
        assert_eq!(millis("0"), Some(0));
        assert_eq!(millis("0s"), Some(0));
    }

    #[test]
    fn what_prometheus_refuses() {
        for bad in [
            "", "30", "s", "1.5s", "30 s", "1s1m", "1m1m", "-1s", "1sec", "10S", "1h ", "ms",
        ] {
            assert_eq!(millis(bad), None, "{bad:?}");
        }
    }
}
