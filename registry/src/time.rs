//! UTC timestamps as `version.json` writes them (`YYYY-MM-DDTHH:MM:SSZ`), read and written
//! with jiff, in whole seconds.

use jiff::Timestamp;

/// An RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.fff]Z`, what `train.py` and `register` write) →
/// milliseconds since the epoch, of the whole second; anything else is treated as unknown
/// rather than an error.
pub fn parse_rfc3339_utc_ms(s: &str) -> Option<i64> {
    let at: Timestamp = s.parse().ok()?;
    Some(at.as_second() * 1000)
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339_from_ms(Timestamp::now().as_millisecond())
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (for display and `version.json`).
pub fn rfc3339_from_ms(ms: i64) -> String {
    match Timestamp::from_second(ms.div_euclid(1000)) {
        Ok(at) => at.to_string(),
        // Beyond the years ±9999 jiff represents: no registry writes such a time.
        Err(_) => format!("{ms} ms since the epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(parse_rfc3339_utc_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc_ms("2026-11-22T04:20:31Z"),
            Some(1_795_321_231_000)
        );
        assert_eq!(
            parse_rfc3339_utc_ms("2026-11-22T04:20:31.250Z"),
            Some(1_795_321_231_000)
        );
        assert_eq!(parse_rfc3339_utc_ms("2026-11-22"), None);
        assert_eq!(parse_rfc3339_utc_ms("2026-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_from_ms(1_795_321_231_000), "2026-11-22T04:20:31Z");
        let now = now_rfc3339();
        assert!(parse_rfc3339_utc_ms(&now).is_some(), "{now}");
        assert_eq!(
            parse_rfc3339_utc_ms("2024-02-29T00:00:00Z").map(rfc3339_from_ms),
            Some("2024-02-29T00:00:00Z".to_string())
        );
    }
}
