//! Retry hints: `Retry-After`, `retry-after-ms`, `x-ms-retry-after-ms` and OpenAI's rate-limit reset
//! headers.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The longest hint accepted. Servers have been seen sending values measured in days (and `-1` or
/// `0` as placeholders); such hints say nothing useful, so they are treated as absent.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Millisecond headers, checked before `Retry-After` because they are more precise.
const MILLISECOND_HEADERS: [&str; 2] = ["retry-after-ms", "x-ms-retry-after-ms"];

/// Pairs of OpenAI headers: how many requests or tokens remain, and when that budget resets.
const OPENAI_RESET_HEADERS: [(&str, &str); 2] = [
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
];

/// Returns the server's minimum wait before the next request, read from the response headers.
///
/// The headers are checked in this order and the first usable one wins: `retry-after-ms`,
/// `x-ms-retry-after-ms` (Azure), then `Retry-After` as delay-seconds (a decimal is accepted) or an
/// HTTP date. Zero, negative, unparsable and absurd values (one day or more, see
/// [`MAX_RETRY_AFTER`]) are skipped, and so is a date that is already past.
///
/// HTTP dates are compared with the system clock; use [`retry_after_at`] to pass the current time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use resilience::http::retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "1.5".parse().unwrap());
/// assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
///
/// headers.insert("retry-after-ms", "-1".parse().unwrap()); // a placeholder: skipped
/// assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    // NOTE: an HTTP date is wall-clock time, which tokio's clock cannot provide.
    retry_after_at(headers, SystemTime::now())
}

/// Returns the hint as [`retry_after`] does, comparing HTTP dates with `now`.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use resilience::http::retry_after_at;
///
/// let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT".parse().unwrap());
/// assert_eq!(retry_after_at(&headers, now), Some(Duration::from_secs(30)));
/// ```
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let milliseconds = MILLISECOND_HEADERS
        .iter()
        .filter_map(|name| header_str(headers, name))
        .find_map(|value| parse_decimal(value, 1_000));
    milliseconds.or_else(|| {
        header_str(headers, "retry-after").and_then(|value| parse_retry_after_value(value, now))
    })
}

/// Returns when OpenAI's exhausted rate limit resets, read from `x-ratelimit-reset-requests` or
/// `x-ratelimit-reset-tokens`, whichever belongs to a budget whose `x-ratelimit-remaining-*` is
/// zero. The values are durations such as `6m0s`, `1s` or `12ms`; the longest applicable one wins.
///
/// Use it as a fallback hint on a 429 that carries no `Retry-After`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use resilience::http::rate_limit_reset;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset-requests", "1m30s".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-tokens", "5000".parse().unwrap());
/// headers.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
/// assert_eq!(rate_limit_reset(&headers), Some(Duration::from_secs(90)));
/// ```
pub fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    OPENAI_RESET_HEADERS
        .iter()
        .filter(|(remaining, _)| {
            header_str(headers, remaining).is_some_and(|value| value.trim() == "0")
        })
        .filter_map(|(_, reset)| header_str(headers, reset).and_then(parse_go_duration))
        .filter(|delay| is_plausible(*delay))
        .max()
}

/// Parses one `Retry-After` value: delay-seconds (a decimal is accepted) or an HTTP date.
fn parse_retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(delay) = parse_decimal(value, 1) {
        return Some(delay);
    }
    let date = httpdate::parse_http_date(value.trim()).ok()?;
    let delay = date.duration_since(now).ok()?;
    is_plausible(delay).then_some(delay)
}

/// Parses a non-negative decimal number of `units_per_second` units into a plausible delay.
fn parse_decimal(value: &str, units_per_second: u32) -> Option<Duration> {
    let value = value.trim();
    let digits_only = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_digit() || c == '.')
        && value.chars().filter(|&c| c == '.').count() <= 1
        && value != ".";
    if !digits_only {
        // Rejects signs, exponents, `inf` and `NaN`, which f64 parsing would accept.
        return None;
    }
    let units: f64 = value.parse().ok()?;
    let seconds = units / f64::from(units_per_second);
    if seconds >= MAX_RETRY_AFTER.as_secs_f64() {
        return None;
    }
    let delay = Duration::from_secs_f64(seconds);
    is_plausible(delay).then_some(delay)
}

/// Parses a Go-style duration as OpenAI writes it: `6m0s`, `1s`, `12ms`, `1h2m3.5s`.
fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        let number: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds_per_unit = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += number * seconds_per_unit;
        rest = tail;
    }
    if !total.is_finite() || total >= MAX_RETRY_AFTER.as_secs_f64() {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

fn is_plausible(delay: Duration) -> bool {
    !delay.is_zero() && delay < MAX_RETRY_AFTER
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}
