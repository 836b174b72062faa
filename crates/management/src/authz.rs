//! The one place a permission is checked: every management route and import names the
//! action and scope it needs (as ARM role definitions do) and calls
//! [`Authorizer::check`] once. Until identities exist every caller is allowed; access
//! control plugs in here without touching the routes.

use crate::ArmError;

/// Who is calling. Anonymous until authentication exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated principal, if any.
    pub principal: Option<String>,
}

/// Decides whether a caller may perform an ARM action on a scope (a resource ID).
pub trait Authorizer: Send + Sync + 'static {
    fn check(&self, caller: &Caller, action: &str, scope: &str) -> Result<(), ArmError>;
}

/// Allows everything: the policy of a server without access control.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn check(&self, _caller: &Caller, _action: &str, _scope: &str) -> Result<(), ArmError> {
        Ok(())
    }
}

/// The actions wharf checks, named as in ACR's role definitions.
pub mod actions {
    pub const REGISTRY_READ: &str = "Microsoft.ContainerRegistry/registries/read";
    pub const REGISTRY_WRITE: &str = "Microsoft.ContainerRegistry/registries/write";
    pub const REGISTRY_DELETE: &str = "Microsoft.ContainerRegistry/registries/delete";
    pub const IMPORT_IMAGE: &str = "Microsoft.ContainerRegistry/registries/importImage/action";
    pub const PULL: &str = "Microsoft.ContainerRegistry/registries/pull/read";
    pub const PUSH: &str = "Microsoft.ContainerRegistry/registries/push/write";
    pub const DELETE_ARTIFACT: &str = "Microsoft.ContainerRegistry/registries/artifacts/delete";
    pub const CATALOG_READ: &str = "Microsoft.ContainerRegistry/registries/catalog/read";
    pub const OPERATION_READ: &str = "Microsoft.ContainerRegistry/locations/operationResults/read";
    /// wharf's own: cancel a running import (ACR has no such action).
    pub const OPERATION_CANCEL: &str =
        "Microsoft.ContainerRegistry/locations/operationResults/cancel/action";
    pub const CHECK_NAME: &str = "Microsoft.ContainerRegistry/checkNameAvailability/read";
    pub const RESOURCE_GROUP_READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";
    pub const RESOURCE_GROUP_WRITE: &str = "Microsoft.Resources/subscriptions/resourceGroups/write";
    pub const RESOURCE_GROUP_DELETE: &str =
        "Microsoft.Resources/subscriptions/resourceGroups/delete";
    pub const SUBSCRIPTION_READ: &str = "Microsoft.Resources/subscriptions/read";
    pub const SUBSCRIPTION_WRITE: &str = "Microsoft.Resources/subscriptions/write";
    /// wharf's own: run garbage collection now (server-wide).
    pub const GARBAGE_COLLECT: &str = "Wharf/garbageCollect/action";
}
