//! OCI error bodies: `{"errors":[{"code","message","detail"}]}` with the spec's codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wharf_registry::RegistryError;

/// A [`RegistryError`] on its way out as an OCI error response.
#[derive(Debug)]
pub struct OciError(pub RegistryError);

impl From<RegistryError> for OciError {
    fn from(e: RegistryError) -> Self {
        OciError(e)
    }
}

impl OciError {
    fn parts(&self) -> (StatusCode, &'static str) {
        use RegistryError::*;
        match &self.0 {
            BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            DigestInvalid(_) | DigestMismatch(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            ManifestChildUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_UNKNOWN"),
            NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            NameUnknown(_) | RegistryUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
            TagInvalid(_) => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
            Unsupported(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            ChunkOutOfOrder { .. } | UploadBusy { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
            }
            RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID"),
            TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            BodyIncomplete(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Storage(e) if e.is_busy() => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }
}

/// An OCI error response from parts, for conditions that aren't registry errors
/// (unknown routes, bad query parameters).
pub(crate) fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "code": code, "message": message }] });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self.0 {
            RegistryError::Storage(e) if e.is_busy() => {
                tracing::warn!(error = %e, "storage busy");
                "the registry is busy; try again shortly".to_owned()
            }
            RegistryError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                "internal storage error; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let mut res = oci_error(status, code, &message);
        match &self.0 {
            RegistryError::ChunkOutOfOrder { size } | RegistryError::UploadBusy { size } => {
                if let Ok(v) = HeaderValue::from_str(&crate::headers::range_value(*size)) {
                    res.headers_mut().insert(header::RANGE, v);
                }
            }
            RegistryError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            RegistryError::Storage(e) if e.is_busy() => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }
}

/// `429 TOOMANYREQUESTS` with `Retry-After`: a limit on concurrent work is reached; the
/// client should come back rather than queue here.
pub(crate) fn too_many_requests(message: &str) -> Response {
    let mut res = oci_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", message);
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_store_is_503_with_retry_after() {
        let busy = wharf_storage::StorageError::Busy("no database connection free".into());
        let res = OciError(RegistryError::Storage(busy)).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
        assert!(!v.to_string().contains("database"), "no internals in the answer: {v}");
    }

    #[test]
    fn a_busy_upload_session_says_how_much_it_holds() {
        let res = OciError(RegistryError::UploadBusy { size: 10 }).into_response();
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(res.headers()[header::RANGE], "0-9");
    }
}
