//! Header values the `/v2` handlers and the OCI error body (`error.rs`) both write.

use axum::http::HeaderValue;

/// A header value from a string built by the server (an empty value if it can't be one).
pub(crate) fn value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of an upload's `Range` header: `0-<last byte>` (`0-0` when empty, as
/// distribution answers).
pub(crate) fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}
