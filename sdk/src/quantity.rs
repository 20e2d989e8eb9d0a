//! Scaling Kubernetes resource quantities (`400m`, `4Gi`, `1.5`) by a whole
//! number: quotas sized to a number of replicas, volumes sized to memory.

/// `quantity` times `factor`, in the same unit; `None` when the quantity is
/// not one Kubernetes would accept.
pub fn times(quantity: &str, factor: i32) -> Option<String> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    const SUFFIXES: &[&str] = &[
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if number.is_empty() || !SUFFIXES.contains(&suffix) {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // Exact decimal arithmetic: scale to an integer of thousandths at most.
    if fraction.len() > 3 || whole.parse::<u64>().is_err() && !whole.is_empty() {
        return None;
    }
    let scale = 10u64.pow(u32::try_from(fraction.len()).ok()?);
    let digits: u64 = format!("{whole}{fraction}").parse().ok()?;
    let product = digits.checked_mul(u64::try_from(factor).ok()?)?;
    let (int, frac) = (product / scale, product % scale);
    let number = if frac == 0 {
        int.to_string()
    } else {
        let frac = format!("{frac:0width$}", width = fraction.len());
        format!("{int}.{}", frac.trim_end_matches('0'))
    };
    Some(format!("{number}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::times;

    #[test]
    fn scales_in_the_same_unit() {
        assert_eq!(times("2", 3).as_deref(), Some("6"));
        assert_eq!(times("400m", 3).as_deref(), Some("1200m"));
        assert_eq!(times("4Gi", 4).as_deref(), Some("16Gi"));
        assert_eq!(times("0.5", 3).as_deref(), Some("1.5"));
        assert_eq!(times("1.25", 4).as_deref(), Some("5"));
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        assert_eq!(times("lots", 2), None);
        assert_eq!(times("4Zi", 2), None);
        assert_eq!(times("", 2), None);
    }
}
