//! Durations and sizes as flags and the controller ConfigMap write them, in nginx's syntax.

use std::time::Duration;

/// A duration in seconds (`60`), or with a unit (`500ms`, `5s`, `2m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected a duration such as 60, 5s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: not a representable duration"))
}

/// A size in bytes, with nginx's suffixes: `1m`, `8k`, `1g`; `0` means no limit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t.as_str(), 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a size such as 1m, 8k or 1048576"))?;
    if n == 0 {
        return Ok(u64::MAX);
    }
    n.checked_mul(mult).ok_or_else(|| format!("{s:?}: too large"))
}
