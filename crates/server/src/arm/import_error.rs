//! Import's errors in ARM's envelope: the one place an import error gets an HTTP status.
//! A failed job keeps only its code and message, so the status follows from the code —
//! the same for an import that fails while the client waits and for one polled later.

use wharf_import::{ImportError, JobError};
use wharf_management::{ArmError, ErrorKind};

use super::ArmResponse;

/// The status class of an import error code; any other code is the request's fault.
fn kind_of(code: &str) -> ErrorKind {
    match code {
        "TagAlreadyExists" | "ImportTakenOver" | "OperationNotCancelable" => ErrorKind::Conflict,
        "SourceRegistryNotFound" | "OperationNotFound" => ErrorKind::NotFound,
        "NetworkRestricted" | "AuthorizationFailed" => ErrorKind::Forbidden,
        "TooManyRequests" => ErrorKind::TooManyRequests,
        "InternalServerError" => ErrorKind::Internal,
        _ => ErrorKind::BadRequest,
    }
}

/// An import error as ARM answers it.
pub(crate) fn to_arm(e: ImportError) -> ArmError {
    match e {
        ImportError::Management(e) => e,
        ImportError::Storage(e) => e.into(),
        ImportError::Auth(e) => e.into(),
        other => ArmError::new(kind_of(other.code()), other.code(), other.to_string()),
    }
}

/// What a failed (or canceled) job answers when polled.
pub(crate) fn job_to_arm(e: JobError) -> ArmError {
    ArmError::new(kind_of(&e.code), &e.code, e.message)
}

impl From<ImportError> for ArmResponse {
    fn from(e: ImportError) -> Self {
        ArmResponse(to_arm(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_stored_failures_answer_alike() {
        for e in [
            ImportError::TagAlreadyExists("Tag a:b already exists in target registry.".into()),
            ImportError::SourceRegistryNotFound("gone".into()),
            ImportError::Canceled("The import was canceled.".into()),
            ImportError::Internal("oops".into()),
            ImportError::TakenOver("elsewhere".into()),
        ] {
            let stored = JobError { code: e.code().to_owned(), message: e.to_string() };
            assert_eq!(job_to_arm(stored), to_arm(e));
        }
        let e = to_arm(ImportError::TooManyImports("9 imports".into()));
        assert_eq!((e.kind, e.code.as_str()), (ErrorKind::TooManyRequests, "TooManyRequests"));
        let e = job_to_arm(JobError { code: "ImportInterrupted".into(), message: "m".into() });
        assert_eq!(e.kind, ErrorKind::BadRequest);
    }
}
