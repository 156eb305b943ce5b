//! Dates, which DDP sends as EJSON `{"$date": ms}` and REST as ISO strings.
//!
//! Documents are stored with EJSON dates (the DDP form, the hot path); REST
//! responses pass through [`rest_dates`] once on the way out.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Compact JSON text, as `Value::to_string` writes it. `to_string` goes
/// through `Display`, which grows the string from empty, a dozen
/// reallocations for a message; serde_json's writer starts at 128 bytes.
pub fn text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// An EJSON date.
pub fn date(ms: i64) -> Value {
    json!({ "$date": ms })
}

/// An EJSON date for documents serialised straight from a struct (the
/// same bytes as [`date`]).
#[derive(serde::Serialize)]
pub struct Date {
    #[serde(rename = "$date")]
    ms: i64,
}

impl From<i64> for Date {
    fn from(ms: i64) -> Self {
        Date { ms }
    }
}

/// The milliseconds of an EJSON date `{"$date": ms}` and of nothing else.
pub fn ejson_date(v: &Value) -> Option<i64> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get("$date").and_then(Value::as_i64),
        _ => None,
    }
}

/// The milliseconds of an EJSON date, or of an ISO string as REST clients send it.
pub fn parse_date(v: &Value) -> Option<i64> {
    match v {
        Value::Object(_) => ejson_date(v),
        Value::String(s) => parse_iso(s),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// `2016-12-14T20:56:05.117Z`, as JavaScript's `Date.prototype.toISOString`.
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses the ISO forms clients send (`YYYY-MM-DDTHH:MM:SS[.mmm]Z`).
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut millis = 0;
    let rest = &s[19..];
    let rest = if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        let padded = format!("{digits:0<3}");
        millis = padded.get(0..3)?.parse::<i64>().ok()?;
        &frac[digits.len()..]
    } else {
        rest
    };
    if !(rest.is_empty() || rest == "Z" || rest == "+00:00") {
        return None;
    }
    Some(((days_from_civil(y, mo, d) * 86_400) + h * 3600 + mi * 60 + se) * 1000 + millis)
}

/// Rewrites every `{"$date": ms}` inside `v` as an ISO string.
pub fn rest_dates(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            if m.len() == 1 {
                if let Some(ms) = m.get("$date").and_then(Value::as_i64) {
                    return Value::String(iso(ms));
                }
            }
            Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k, rest_dates(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(rest_dates).collect()),
        other => other,
    }
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        // The RC docs' chat.postMessage example: ts 1481748965123 is 2016-12-14T20:56:05.123Z.
        assert_eq!(iso(1_481_748_965_123), "2016-12-14T20:56:05.123Z");
        assert_eq!(
            parse_iso("2016-12-14T20:56:05.123Z"),
            Some(1_481_748_965_123)
        );
        assert_eq!(parse_iso("2016-12-14T20:56:05Z"), Some(1_481_748_965_000));
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_iso("2024-02-29T23:59:59.999Z").map(iso).as_deref(),
            Some("2024-02-29T23:59:59.999Z")
        );
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn rest_dates_rewrites_nested() {
        let v =
            json!({"ts": {"$date": 0}, "a": [{"b": {"$date": 1000}}], "c": {"$date": 1, "x": 2}});
        assert_eq!(
            rest_dates(v),
            json!({"ts": "1970-01-01T00:00:00.000Z", "a": [{"b": "1970-01-01T00:00:01.000Z"}], "c": {"$date": 1, "x": 2}})
        );
    }
}
