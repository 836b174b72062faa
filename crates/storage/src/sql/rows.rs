//! Rows to records, for the store this file is compiled into (see [`crate::sql`]).
//!
//! Columns decode alike in both databases: SQLite's 0/1 integers as `bool`, PostgreSQL's
//! `BIGINT` and SQLite's `INTEGER` as `i64`. (A listing's tags — an array or a joined
//! string — are each dialect's, in `dialect.rs`.)

use bytes::Bytes;
use sqlx::Row as _;
use wharf_oci::Digest;

use crate::StorageError;
use crate::identity::*;
use crate::job::{JobError, JobProgress, JobState};
use crate::meta::*;
use crate::sql::parse_digest;

use super::DbRow;

pub(crate) fn digest_col(row: &DbRow, col: &str) -> Result<Digest, StorageError> {
    let s: String = row.try_get(col)?;
    parse_digest(&s)
}

pub(crate) fn opt_digest_col(row: &DbRow, col: &str) -> Result<Option<Digest>, StorageError> {
    let s: Option<String> = row.try_get(col)?;
    s.as_deref().map(parse_digest).transpose()
}

pub(crate) fn registry_row(row: &DbRow) -> Result<crate::RegistryRecord, StorageError> {
    Ok(crate::RegistryRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        is_default: row.try_get("is_default")?,
        subscription: row.try_get("subscription_id")?,
        resource_group: row.try_get("resource_group")?,
        location: row.try_get("location")?,
        sku: row.try_get("sku")?,
        properties: row.try_get("properties")?,
        tags: row.try_get("tags")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn principal_row(r: &DbRow) -> Result<PrincipalRecord, StorageError> {
    Ok(PrincipalRecord {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        app_id: r.try_get("app_id")?,
        enabled: r.try_get("enabled")?,
        created_at: r.try_get("created_at")?,
        token_generation: r.try_get("token_generation")?,
    })
}

pub(crate) fn credential_row(r: &DbRow) -> Result<CredentialRecord, StorageError> {
    Ok(CredentialRecord {
        id: r.try_get("id")?,
        principal: r.try_get("principal")?,
        hash: r.try_get("hash")?,
        hint: r.try_get("hint")?,
        display_name: r.try_get("display_name")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn role_definition_row(r: &DbRow) -> Result<RoleDefinitionRecord, StorageError> {
    Ok(RoleDefinitionRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        body: r.try_get("body")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn assignment_row(r: &DbRow) -> Result<RoleAssignmentRecord, StorageError> {
    Ok(RoleAssignmentRecord {
        id: r.try_get("id")?,
        scope: r.try_get("scope")?,
        role_definition_id: r.try_get("role_definition_id")?,
        principal_id: r.try_get("principal_id")?,
        principal_type: r.try_get("principal_type")?,
        condition: r.try_get("condition")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn scope_map_row(r: &DbRow) -> Result<ScopeMapRecord, StorageError> {
    let actions: String = r.try_get("actions")?;
    Ok(ScopeMapRecord {
        registry_id: r.try_get("registry_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        actions: serde_json::from_str(&actions)
            .map_err(|e| StorageError::Corrupt(format!("scope map actions: {e}")))?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn registry_token_row(r: &DbRow) -> Result<RegistryTokenRecord, StorageError> {
    Ok(RegistryTokenRecord {
        registry_id: r.try_get("registry_id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        scope_map: r.try_get("scope_map")?,
        enabled: r.try_get("enabled")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn token_password_row(r: &DbRow) -> Result<TokenPasswordRecord, StorageError> {
    Ok(TokenPasswordRecord {
        registry_id: r.try_get("registry_id")?,
        kind: r.try_get("kind")?,
        token: r.try_get("token")?,
        slot: r.try_get("slot")?,
        hash: r.try_get("hash")?,
        sealed: r.try_get("sealed")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn rg_row(r: &DbRow) -> Result<ResourceGroupRecord, StorageError> {
    Ok(ResourceGroupRecord {
        subscription: r.try_get("subscription_id")?,
        name: r.try_get("name")?,
        location: r.try_get("location")?,
        tags: r.try_get("tags")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn sub_row(r: &DbRow) -> Result<SubscriptionRecord, StorageError> {
    Ok(SubscriptionRecord {
        id: r.try_get("id")?,
        display_name: r.try_get("display_name")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn job_row(r: &DbRow) -> Result<JobRecord, StorageError> {
    Ok(JobRecord {
        id: r.try_get("id")?,
        registry_id: r.try_get("registry_id")?,
        request: r.try_get("request")?,
        resumable: r.try_get("resumable")?,
        status: JobState::parse(r.try_get("status")?)?,
        progress: JobProgress::from_text(r.try_get("progress")?)?,
        error: r.try_get::<Option<&str>, _>("error")?.map(JobError::from_text).transpose()?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        owner: r.try_get("owner")?,
        lease_until: r.try_get("lease_until")?,
        lease_epoch: r.try_get("lease_epoch")?,
    })
}

pub(crate) fn tag_row(r: &DbRow) -> Result<TagRecord, StorageError> {
    Ok(TagRecord {
        name: r.try_get("name")?,
        digest: digest_col(r, "digest")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub(crate) fn manifest_row(row: &DbRow) -> Result<ManifestRecord, StorageError> {
    Ok(ManifestRecord {
        digest: digest_col(row, "digest")?,
        media_type: row.try_get("media_type")?,
        content: Bytes::from(row.try_get::<Vec<u8>, _>("content")?),
        artifact_type: row.try_get("artifact_type")?,
        subject: opt_digest_col(row, "subject")?,
        annotations: row.try_get("annotations")?,
        platform: row.try_get("platform")?,
        config_media_type: row.try_get("config_media_type")?,
        blob_bytes: row.try_get::<i64, _>("blob_bytes")? as u64,
        created_at: row.try_get("created_at")?,
    })
}
