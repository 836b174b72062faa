//! Role definitions: the built-in roles (with Azure's ids, names and action strings) and
//! custom ones, and how an action string is matched against a role's patterns.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// One block of a role's permissions, as ARM writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

/// A role: built in, or defined by a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleDefinition {
    /// A GUID (the last segment of the ARM id).
    pub id: String,
    pub name: String,
    pub description: String,
    pub built_in: bool,
    pub permissions: Vec<Permission>,
    /// Where it may be assigned (resource ids; `/` for anywhere).
    pub assignable_scopes: Vec<String>,
}

/// Whether an action pattern (`*`, `Microsoft.ContainerRegistry/*`, `*/read`, or exact)
/// matches an action, ignoring case as ARM does. The directory's actions are reached only
/// by patterns that name the directory: as in Entra ID, it is administered by its own
/// roles, never by a resource role's `*` (a Contributor at `/` must not be able to set a
/// secret on an Owner's service principal).
pub fn matches(pattern: &str, action: &str) -> bool {
    if starts_with_ignore_case(action, DIRECTORY_NAMESPACE)
        && !starts_with_ignore_case(pattern, DIRECTORY_NAMESPACE)
    {
        return false;
    }
    crate::glob::matches_ignore_case(pattern, action)
}

/// The namespace of the directory's actions (`Wharf/directory/read`, `…/write`).
pub const DIRECTORY_NAMESPACE: &str = "Wharf/directory/";

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Limits on a custom role's permissions: what ARM takes, and what keeps every check cheap.
const MAX_BLOCKS: usize = 16;
const MAX_PATTERNS: usize = 128;
const MAX_PATTERN_LEN: usize = 256;
const MAX_STARS: usize = 4;

/// Check a custom role's permissions before they are stored: a few blocks of action
/// patterns, each printable ARM action syntax (letters, digits, `.`, `_`, `-`, `/`) with a
/// few `*`s and no two in a row.
pub fn validate_permissions(permissions: &[Permission]) -> Result<(), String> {
    if permissions.is_empty() || permissions.len() > MAX_BLOCKS {
        return Err(format!("a role needs 1 to {MAX_BLOCKS} permission blocks"));
    }
    for p in permissions {
        let lists = [&p.actions, &p.not_actions, &p.data_actions, &p.not_data_actions];
        let count: usize = lists.iter().map(|l| l.len()).sum();
        if count > MAX_PATTERNS {
            return Err(format!("a permission block may hold at most {MAX_PATTERNS} actions"));
        }
        if p.actions.is_empty() && p.data_actions.is_empty() {
            return Err("a permission block needs actions or dataActions".into());
        }
        for pattern in lists.into_iter().flatten() {
            validate_pattern(pattern)?;
        }
    }
    Ok(())
}

fn validate_pattern(pattern: &str) -> Result<(), String> {
    let shown: String = pattern.chars().take(64).collect();
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("the action '{shown}' must be 1 to {MAX_PATTERN_LEN} characters"));
    }
    if !pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/*".contains(&b)) {
        return Err(format!(
            "the action '{shown}' may hold only letters, digits, '.', '_', '-', '/' and '*'"
        ));
    }
    if pattern.matches('*').count() > MAX_STARS || pattern.contains("**") {
        return Err(format!(
            "the action '{shown}' may hold at most {MAX_STARS} '*', never two in a row"
        ));
    }
    Ok(())
}

impl Permission {
    /// Whether this block grants `action` (a data action if `data`).
    pub fn allows(&self, action: &str, data: bool) -> bool {
        let (yes, no) = if data {
            (&self.data_actions, &self.not_data_actions)
        } else {
            (&self.actions, &self.not_actions)
        };
        // An exclusion excludes whatever it matches, directory actions included.
        yes.iter().any(|p| matches(p, action))
            && !no.iter().any(|p| crate::glob::matches_ignore_case(p, action))
    }
}

impl Permission {
    /// Whether this block grants every action `pattern` could name (a data action if
    /// `data`): one of its patterns covers it and none of its exclusions could touch it.
    pub fn covers(&self, pattern: &str, data: bool) -> bool {
        let (yes, no) = if data {
            (&self.data_actions, &self.not_data_actions)
        } else {
            (&self.actions, &self.not_actions)
        };
        let reaches = |p: &str| {
            !starts_with_ignore_case(pattern, DIRECTORY_NAMESPACE)
                || starts_with_ignore_case(p, DIRECTORY_NAMESPACE)
        };
        yes.iter().any(|p| reaches(p) && crate::glob::covers(p, pattern))
            && !no.iter().any(|n| crate::glob::overlap(n, pattern))
    }
}

impl RoleDefinition {
    /// Whether the role grants nothing but directory actions (Directory Administrator,
    /// Directory Reader).
    pub fn directory_only(&self) -> bool {
        let directory = |p: &String| starts_with_ignore_case(p, DIRECTORY_NAMESPACE);
        self.permissions
            .iter()
            .all(|p| p.data_actions.is_empty() && p.actions.iter().all(directory))
    }

    /// Whether any block of the role grants `action`.
    pub fn allows(&self, action: &str, data: bool) -> bool {
        self.permissions.iter().any(|p| p.allows(action, data))
    }
}

fn built(id: &str, name: &str, description: &str, p: Permission) -> RoleDefinition {
    RoleDefinition {
        id: id.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        built_in: true,
        permissions: vec![p],
        assignable_scopes: vec!["/".to_owned()],
    }
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const ACR: &str = "Microsoft.ContainerRegistry/registries";

/// The id of the built-in Directory Administrator role (wharf's own).
pub const DIRECTORY_ADMINISTRATOR: &str = "5f1b7a3c-8d2e-4c6a-9b0f-2e7d4a1c3b58";

/// The built-in roles, with Azure's role ids.
pub fn built_in() -> &'static [RoleDefinition] {
    static ROLES: OnceLock<Vec<RoleDefinition>> = OnceLock::new();
    ROLES.get_or_init(|| {
        let acr = |s: &str| format!("{ACR}/{s}");
        let actions = |a: Vec<String>| Permission { actions: a, ..Permission::default() };
        let data = |d: Vec<String>| Permission { data_actions: d, ..Permission::default() };
        vec![
            built(
                "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                "Owner",
                "Grants full access to manage all resources, including the ability to assign roles.",
                actions(list(&["*"])),
            ),
            built(
                "b24988ac-6180-42a0-ab88-20f7382dd24c",
                "Contributor",
                "Grants full access to manage all resources, but does not allow you to assign roles.",
                Permission {
                    actions: list(&["*"]),
                    not_actions: list(&[
                        "Microsoft.Authorization/*/Delete",
                        "Microsoft.Authorization/*/Write",
                        "Microsoft.Authorization/elevateAccess/Action",
                    ]),
                    ..Permission::default()
                },
            ),
            built(
                "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "Reader",
                "View all resources, but does not allow you to make any changes.",
                actions(list(&["*/read"])),
            ),
            built(
                "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
                "User Access Administrator",
                "Lets you manage user access to Azure resources.",
                actions(list(&["*/read", "Microsoft.Authorization/*"])),
            ),
            // wharf's own: the directory (users, service principals, their secrets) has its
            // own roles, as Entra ID's directory roles are apart from Azure RBAC.
            built(
                DIRECTORY_ADMINISTRATOR,
                "Directory Administrator",
                "Manages users and service principals: creates and deletes them, sets their secrets and passwords, enables and disables them.",
                actions(list(&["Wharf/directory/*"])),
            ),
            built(
                "9c2e4b6d-1a3f-4e5b-8c7d-6f0a2b4c1d37",
                "Directory Reader",
                "Reads users and service principals.",
                actions(list(&["Wharf/directory/read"])),
            ),
            built(
                "7f951dda-4ed3-4680-a7ca-43fe172d538d",
                "AcrPull",
                "acr pull",
                actions(vec![acr("pull/read")]),
            ),
            built(
                "8311e382-0749-4cb8-b61a-304f252e45ec",
                "AcrPush",
                "acr push",
                actions(vec![acr("pull/read"), acr("push/write")]),
            ),
            built(
                "c2f4ef07-c644-48eb-af81-4b1b4947fb11",
                "AcrDelete",
                "acr delete",
                actions(vec![acr("artifacts/delete")]),
            ),
            built(
                "6cef56e8-d556-48e5-a04f-b8e64114680f",
                "AcrImageSigner",
                "acr image signer",
                Permission {
                    actions: vec![acr("sign/write")],
                    data_actions: vec![acr("trustedCollections/write")],
                    ..Permission::default()
                },
            ),
            built(
                "577a9874-89fd-4f24-9dbd-b5034d0ad23a",
                "Container Registry Data Importer and Data Reader",
                "Allows importing images into a registry and reading its content.",
                Permission {
                    actions: vec![acr("importImage/action"), acr("read"), acr("pull/read")],
                    data_actions: vec![
                        acr("repositories/content/read"),
                        acr("repositories/metadata/read"),
                        acr("catalog/read"),
                    ],
                    ..Permission::default()
                },
            ),
            built(
                "b93aa761-3e63-49ed-ac28-beffa264f7ac",
                "Container Registry Repository Reader",
                "Allows reading images, tags and metadata of repositories.",
                data(vec![acr("repositories/metadata/read"), acr("repositories/content/read")]),
            ),
            built(
                "2a1e307c-b015-4ebd-883e-5b7698a07328",
                "Container Registry Repository Writer",
                "Allows reading and writing images, tags and metadata of repositories.",
                data(vec![
                    acr("repositories/metadata/read"),
                    acr("repositories/metadata/write"),
                    acr("repositories/content/read"),
                    acr("repositories/content/write"),
                ]),
            ),
            built(
                "2efddaa5-3f1f-4df3-97df-af3f13818f4c",
                "Container Registry Repository Contributor",
                "Allows reading, writing and deleting images, tags and metadata of repositories.",
                data(vec![
                    acr("repositories/metadata/read"),
                    acr("repositories/metadata/write"),
                    acr("repositories/metadata/delete"),
                    acr("repositories/content/read"),
                    acr("repositories/content/write"),
                    acr("repositories/content/delete"),
                ]),
            ),
            built(
                "bfdb9389-c9a5-478a-bb2f-ba9ca092c3c7",
                "Container Registry Repository Catalog Lister",
                "Allows listing the repositories of a registry.",
                data(vec![acr("catalog/read")]),
            ),
            built(
                "3bc748fc-213d-45c1-8d91-9da5725539b9",
                "Container Registry Contributor and Data Access Configuration Administrator",
                "Manages registries and their data-access configuration (tokens, scope maps, credentials), without access to their content.",
                actions(vec![
                    acr("read"),
                    acr("write"),
                    acr("delete"),
                    acr("listCredentials/action"),
                    acr("regenerateCredential/action"),
                    acr("tokens/*"),
                    acr("scopeMaps/*"),
                    "Microsoft.ContainerRegistry/locations/operationResults/read".to_owned(),
                    "Microsoft.ContainerRegistry/checkNameAvailability/read".to_owned(),
                    "Microsoft.Resources/subscriptions/resourceGroups/read".to_owned(),
                ]),
            ),
        ]
    })
}

/// A built-in role by id or (case-insensitive) name.
pub fn find_built_in(id_or_name: &str) -> Option<&'static RoleDefinition> {
    built_in()
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(id_or_name) || r.name.eq_ignore_ascii_case(id_or_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions;

    #[test]
    fn patterns() {
        assert!(matches("*", actions::IMPORT_IMAGE));
        assert!(matches("*/read", actions::PULL));
        assert!(matches("microsoft.containerregistry/*", actions::PUSH));
        assert!(!matches("*/read", actions::PUSH));
        assert!(matches("Microsoft.Authorization/*/Write", actions::ROLE_ASSIGNMENT_WRITE));
        assert!(!matches("Microsoft.Authorization/*/Write", actions::ROLE_ASSIGNMENT_READ));
        assert!(matches(actions::PULL, &actions::PULL.to_uppercase()));
        assert!(!matches("Microsoft.ContainerRegistry/registries/pull", actions::PULL));
    }

    #[test]
    fn the_directory_is_reached_only_by_its_own_patterns_and_excluded_by_any() {
        let allows = |actions: &[&str], not: &[&str], action: &str| {
            Permission { actions: list(actions), not_actions: list(not), ..Permission::default() }
                .allows(action, false)
        };
        assert!(!allows(&["*"], &[], actions::DIRECTORY_WRITE), "Owner's * doesn't reach it");
        assert!(!allows(&["*/read"], &[], actions::DIRECTORY_READ));
        assert!(allows(&["Wharf/directory/*"], &[], actions::DIRECTORY_WRITE));
        assert!(!allows(&["Wharf/directory/*"], &["*/write"], actions::DIRECTORY_WRITE));
        assert!(allows(&["Wharf/directory/*"], &["*/write"], actions::DIRECTORY_READ));
    }

    #[test]
    fn built_ins_grant_what_acr_documents() {
        let role = |n: &str| find_built_in(n).unwrap();
        assert!(role("AcrPull").allows(actions::PULL, false));
        assert!(!role("AcrPull").allows(actions::PUSH, false));
        assert!(role("AcrPush").allows(actions::PUSH, false));
        // AcrPush alone cannot import (as in ACR).
        assert!(!role("AcrPush").allows(actions::IMPORT_IMAGE, false));
        assert!(
            role("Container Registry Data Importer and Data Reader")
                .allows(actions::IMPORT_IMAGE, false)
        );
        assert!(role("Reader").allows(actions::PULL, false));
        assert!(!role("Reader").allows(actions::REGISTRY_WRITE, false));
        assert!(role("Contributor").allows(actions::IMPORT_IMAGE, false));
        assert!(!role("Contributor").allows(actions::ROLE_ASSIGNMENT_WRITE, false));
        assert!(role("Owner").allows(actions::ROLE_ASSIGNMENT_WRITE, false));
        // Data actions come only from roles that name them.
        assert!(!role("Owner").allows(actions::CONTENT_READ, true));
        assert!(role("Container Registry Repository Writer").allows(actions::CONTENT_WRITE, true));
        assert!(
            !role("Container Registry Repository Writer").allows(actions::CONTENT_DELETE, true)
        );
        assert!(role("8e3af657-a8ff-443c-a75c-2fe8c4bcb635").name == "Owner");
    }
}
