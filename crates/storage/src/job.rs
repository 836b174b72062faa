//! Import jobs' typed fields: their state, progress (with its phase) and error. The
//! database holds them as text, exactly as earlier releases wrote it; a row is parsed once,
//! when it is read, and text no release writes is [`StorageError::Corrupt`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::StorageError;

/// Where a job is in its life. Stored as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Recorded, possibly waiting for an import slot.
    Accepted,
    Running,
    /// A cancel was asked on a server other than the one running it, which sees it at its
    /// next heartbeat.
    Canceling,
    Succeeded,
    Failed,
    Canceled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Accepted,
        JobState::Running,
        JobState::Canceling,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Canceled,
    ];

    /// The state as the database stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Accepted => "Accepted",
            JobState::Running => "Running",
            JobState::Canceling => "Canceling",
            JobState::Succeeded => "Succeeded",
            JobState::Failed => "Failed",
            JobState::Canceled => "Canceled",
        }
    }

    /// A stored state; anything else is corrupt.
    pub fn parse(s: &str) -> Result<JobState, StorageError> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown import job state '{s}'")))
    }

    /// Nothing changes after these (the stores' `FINISHED` lists them).
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Canceled)
    }
}

/// What a running job is doing, as its progress reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for an import slot.
    Queued,
    /// Fetching the manifest tree.
    Resolving,
    /// Fetching blobs.
    Copying,
    Committing,
    Done,
}

/// A manifest's state in ACR's status map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestState {
    Pending,
    Succeeded,
}

/// A job's progress as stored and reported: ACR's status map (`"<repo>@<digest>":
/// "Pending"`), a note on why it waits, and wharf's counters (absent before it starts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<JobCounters>,
    /// Every other key: one per manifest.
    #[serde(flatten)]
    pub manifests: BTreeMap<String, ManifestState>,
}

/// The `progress` object of a job's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCounters {
    pub phase: Phase,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub blobs_total: u64,
    pub blobs_done: u64,
    pub blobs_reused: u64,
    pub manifests_total: u64,
    pub referrers: u64,
    pub platforms: Vec<String>,
}

/// Why a job failed (or was canceled): an error code and its message. Earlier releases
/// stored a `kind` beside them, which is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

fn corrupt(what: &str, e: serde_json::Error) -> StorageError {
    StorageError::Corrupt(format!("import job {what}: {e}"))
}

impl JobProgress {
    pub(crate) fn to_text(&self) -> Result<String, StorageError> {
        serde_json::to_string(self).map_err(|e| corrupt("progress", e))
    }

    pub(crate) fn from_text(s: &str) -> Result<JobProgress, StorageError> {
        serde_json::from_str(s).map_err(|e| corrupt("progress", e))
    }
}

impl JobError {
    pub(crate) fn to_text(&self) -> Result<String, StorageError> {
        serde_json::to_string(self).map_err(|e| corrupt("error", e))
    }

    pub(crate) fn from_text(s: &str) -> Result<JobError, StorageError> {
        serde_json::from_str(s).map_err(|e| corrupt("error", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_as_written() {
        for st in JobState::ALL {
            assert_eq!(JobState::parse(st.as_str()).unwrap(), st);
        }
        assert!(matches!(JobState::parse("Paused"), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn earlier_releases_rows_read() {
        // As c6b6334 wrote them.
        let p = r#"{"harness/a@sha256:63d0":"Succeeded","progress":{"blobsDone":12,"blobsReused":12,"blobsTotal":12,"bytesDone":4196,"bytesTotal":4196,"manifestsTotal":5,"phase":"Done","platforms":["linux/amd64"],"referrers":1}}"#;
        let read = JobProgress::from_text(p).unwrap();
        assert_eq!(read.progress.as_ref().map(|c| c.phase), Some(Phase::Done));
        assert_eq!(read.manifests["harness/a@sha256:63d0"], ManifestState::Succeeded);
        // Reported byte for byte as before (a `Value`'s keys are sorted).
        let v = serde_json::to_value(&read).unwrap();
        assert_eq!(v.to_string(), p);
        assert_eq!(JobProgress::from_text("{}").unwrap(), JobProgress::default());
        let e = JobError::from_text(r#"{"code":"X","message":"m","kind":"Conflict"}"#).unwrap();
        assert_eq!((e.code.as_str(), e.message.as_str()), ("X", "m"));
        assert!(JobError::from_text("garbage").is_err());
        assert!(JobProgress::from_text(r#"{"progress":{"phase":"Napping"}}"#).is_err());
    }
}
