//! Server-side import: wharf copies an image (with every platform, and its referrers) from
//! another registry into one of its own, as a long-running operation.
//!
//! The path of an import:
//! 1. [`request`]: the ARM body (`ImportImageParameters`) becomes an [`ImportRequest`] —
//!    source, target repositories and tags, mode — with ACR's defaults and checks.
//! 2. [`ImportService::submit`] records a job, runs it in the background and answers at
//!    once or after a short wait; [`ImportService::status`] reports progress.
//! 3. [`source`]: the source is another registry over HTTP ([`remote`]: auth, retries,
//!    rate limits, egress policy) or a registry on this server (no HTTP at all).
//! 4. [`plan`]: the manifest tree is fetched and verified (index → platform manifests →
//!    configs and layers, plus referrers), before anything is copied.
//! 5. [`engine`]: missing blobs are streamed into the blob store in parallel (resuming broken
//!    downloads with `Range`, hashing once, never buffering), then every manifest, blob
//!    link and tag is committed in one transaction.
//!
//! Architecture invariants: a failed import changes no tag and leaves nothing visible;
//! source credentials live only in memory, never in logs, job status, errors or storage.

mod engine;
mod error;
mod inflight;
mod jobs;
mod plan;
mod policy;
mod progress;
mod remote;
mod request;
mod source;

pub use engine::MinThroughput;
pub use error::ImportError;
pub use jobs::{CancelOutcome, ImportService, ImportSettings, JobStatus, Submitted};
pub use plan::PlanLimits;
pub use policy::EgressPolicy;
pub use request::{Credentials, ImportMode, ImportRequest, SourceLocation, parse_parameters};
pub use wharf_storage::JobError;
