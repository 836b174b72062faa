//! The management plane: resources shaped like Azure Resource Manager's, so that scripts and
//! SDKs written for Azure Container Registry work against wharf by changing the endpoint.
//!
//! - [`ResourceId`]: parsing and printing ARM resource IDs.
//! - [`Management`]: subscriptions, resource groups and registries — create, read, update,
//!   delete, list, name availability — with ACR's validation rules and JSON shapes.
//! - [`authorization`]: role definitions and role assignments (`Microsoft.Authorization`).
//! - [`ArmError`]: an error with ARM's code and message; the HTTP layer wraps it in the ARM
//!   envelope (`{"error":{"code","message"}}`).
//!
//! Architecture invariant: no HTTP here; JSON appears only as the resources' own schema
//! (`serde_json::Value` bodies in and out), as ARM defines it.

mod api_version;
pub mod authorization;
mod error;
pub mod network;
mod registry;
pub mod registry_credentials;
mod resource_id;
mod service;

pub use api_version::check_api_version;
pub use error::{ArmError, ErrorKind};
pub use registry::{Registry, RegistryProperties, validate_registry_name};
pub use resource_id::{REGISTRY_TYPE, RegistryResourceId, ResourceId};
pub use service::{LoginServers, Management, timestamp};
