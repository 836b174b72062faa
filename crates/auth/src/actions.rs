//! The action strings wharf checks, named as in Azure's role definitions, and the data-plane
//! operations ([`RepoOp`]) they grant.

// Management (control-plane) actions.
pub const REGISTRY_READ: &str = "Microsoft.ContainerRegistry/registries/read";
pub const REGISTRY_WRITE: &str = "Microsoft.ContainerRegistry/registries/write";
pub const REGISTRY_DELETE: &str = "Microsoft.ContainerRegistry/registries/delete";
pub const IMPORT_IMAGE: &str = "Microsoft.ContainerRegistry/registries/importImage/action";
pub const LIST_CREDENTIALS: &str = "Microsoft.ContainerRegistry/registries/listCredentials/action";
pub const REGENERATE_CREDENTIAL: &str =
    "Microsoft.ContainerRegistry/registries/regenerateCredential/action";
pub const OPERATION_READ: &str = "Microsoft.ContainerRegistry/locations/operationResults/read";
/// wharf's own: cancel a running import (ACR has no such action).
pub const OPERATION_CANCEL: &str =
    "Microsoft.ContainerRegistry/locations/operationResults/cancel/action";
pub const CHECK_NAME: &str = "Microsoft.ContainerRegistry/checkNameAvailability/read";
pub const RESOURCE_GROUP_READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";
pub const RESOURCE_GROUP_WRITE: &str = "Microsoft.Resources/subscriptions/resourceGroups/write";
pub const RESOURCE_GROUP_DELETE: &str = "Microsoft.Resources/subscriptions/resourceGroups/delete";
pub const SUBSCRIPTION_READ: &str = "Microsoft.Resources/subscriptions/read";
pub const SUBSCRIPTION_WRITE: &str = "Microsoft.Resources/subscriptions/write";
pub const ROLE_DEFINITION_READ: &str = "Microsoft.Authorization/roleDefinitions/read";
pub const ROLE_DEFINITION_WRITE: &str = "Microsoft.Authorization/roleDefinitions/write";
pub const ROLE_DEFINITION_DELETE: &str = "Microsoft.Authorization/roleDefinitions/delete";
pub const ROLE_ASSIGNMENT_READ: &str = "Microsoft.Authorization/roleAssignments/read";
pub const ROLE_ASSIGNMENT_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
pub const ROLE_ASSIGNMENT_DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
/// wharf's own: the directory (users, service principals) of a tenant.
pub const DIRECTORY_READ: &str = "Wharf/directory/read";
pub const DIRECTORY_WRITE: &str = "Wharf/directory/write";
/// wharf's own: run garbage collection now (server-wide).
pub const GARBAGE_COLLECT: &str = "Wharf/garbageCollect/action";
/// wharf's own: the keys that sign every token (list; rotate and prune).
pub const SIGNING_KEYS_READ: &str = "Wharf/signingKeys/read";
pub const SIGNING_KEYS_WRITE: &str = "Wharf/signingKeys/write";
/// wharf's own: read `/metrics` (checked at `/`).
pub const METRICS_READ: &str = "Wharf/metrics/read";

// Registry content, as ACR's classic roles name it (checked at the registry).
pub const PULL: &str = "Microsoft.ContainerRegistry/registries/pull/read";
pub const PUSH: &str = "Microsoft.ContainerRegistry/registries/push/write";
pub const DELETE_ARTIFACT: &str = "Microsoft.ContainerRegistry/registries/artifacts/delete";
pub const CATALOG_READ: &str = "Microsoft.ContainerRegistry/registries/catalog/read";

// Registry content as data actions (the Repository roles; ABAC conditions apply to them).
pub const CONTENT_READ: &str = "Microsoft.ContainerRegistry/registries/repositories/content/read";
pub const CONTENT_WRITE: &str = "Microsoft.ContainerRegistry/registries/repositories/content/write";
pub const CONTENT_DELETE: &str =
    "Microsoft.ContainerRegistry/registries/repositories/content/delete";
pub const METADATA_READ: &str = "Microsoft.ContainerRegistry/registries/repositories/metadata/read";
pub const METADATA_WRITE: &str =
    "Microsoft.ContainerRegistry/registries/repositories/metadata/write";
pub const METADATA_DELETE: &str =
    "Microsoft.ContainerRegistry/registries/repositories/metadata/delete";
pub const CATALOG_DATA_READ: &str = "Microsoft.ContainerRegistry/registries/catalog/read";

// A registry's repository-scoped tokens and scope maps.
pub const TOKEN_READ: &str = "Microsoft.ContainerRegistry/registries/tokens/read";
pub const TOKEN_WRITE: &str = "Microsoft.ContainerRegistry/registries/tokens/write";
pub const TOKEN_DELETE: &str = "Microsoft.ContainerRegistry/registries/tokens/delete";
pub const GENERATE_CREDENTIALS: &str =
    "Microsoft.ContainerRegistry/registries/generateCredentials/action";
pub const SCOPE_MAP_READ: &str = "Microsoft.ContainerRegistry/registries/scopeMaps/read";
pub const SCOPE_MAP_WRITE: &str = "Microsoft.ContainerRegistry/registries/scopeMaps/write";
pub const SCOPE_MAP_DELETE: &str = "Microsoft.ContainerRegistry/registries/scopeMaps/delete";

/// What a data-plane request does in a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoOp {
    Pull,
    Push,
    Delete,
    MetadataRead,
    MetadataWrite,
}

impl RepoOp {
    /// The action of a registry token scope (`repository:<name>:<action>`).
    pub fn scope_action(self) -> &'static str {
        match self {
            RepoOp::Pull => "pull",
            RepoOp::Push => "push",
            RepoOp::Delete => "delete",
            RepoOp::MetadataRead => "metadata_read",
            RepoOp::MetadataWrite => "metadata_write",
        }
    }

    /// The operation a registry token scope's action names.
    pub fn from_scope_action(action: &str) -> Option<RepoOp> {
        Some(match action {
            "pull" => RepoOp::Pull,
            "push" => RepoOp::Push,
            "delete" => RepoOp::Delete,
            "metadata_read" => RepoOp::MetadataRead,
            "metadata_write" => RepoOp::MetadataWrite,
            _ => return None,
        })
    }

    /// The classic registry action that grants it (AcrPull, AcrPush, AcrDelete…).
    pub(crate) fn classic_action(self) -> &'static str {
        match self {
            RepoOp::Pull | RepoOp::MetadataRead => PULL,
            RepoOp::Push | RepoOp::MetadataWrite => PUSH,
            RepoOp::Delete => DELETE_ARTIFACT,
        }
    }

    /// The data action of the Repository roles (ABAC mode).
    pub(crate) fn data_action(self) -> &'static str {
        match self {
            RepoOp::Pull => CONTENT_READ,
            RepoOp::Push => CONTENT_WRITE,
            RepoOp::Delete => CONTENT_DELETE,
            RepoOp::MetadataRead => METADATA_READ,
            RepoOp::MetadataWrite => METADATA_WRITE,
        }
    }
}
