//! What a registry credential may do in its own registry: the admin user everything, a
//! repository-scoped token what its scope map's rules allow (`samples/*`-style wildcards),
//! and the system scope maps every registry has.

use crate::AuthError;
use crate::actions::RepoOp;

/// `kind` of the admin user's record.
pub const ADMIN: &str = "admin";
/// `kind` of a repository-scoped token's record.
pub const TOKEN: &str = "token";

/// Repositories a scope-map rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RepoPattern {
    /// One repository (lowercase).
    Exact(String),
    /// Every repository under a prefix ending in `/` (`samples/*`).
    Under(String),
    /// Every repository (`*`).
    All,
}

impl RepoPattern {
    fn matches(&self, repository: &str) -> bool {
        match self {
            RepoPattern::Exact(r) => r.eq_ignore_ascii_case(repository),
            RepoPattern::Under(p) => {
                repository.len() > p.len()
                    && repository.is_char_boundary(p.len())
                    && repository[..p.len()].eq_ignore_ascii_case(p)
            }
            RepoPattern::All => true,
        }
    }
}

/// One action of a scope map: `repositories/<repo>/<content|metadata>/<read|write|delete>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRule {
    pattern: RepoPattern,
    op: RepoOp,
}

impl ScopeRule {
    /// Parse one scope-map action, as ACR accepts them: the repository may be a name, `*`,
    /// or a prefix ending in `/*` (one `*`, at the end).
    pub fn parse(action: &str) -> Result<ScopeRule, AuthError> {
        let bad = |why: &str| {
            AuthError::BadRequest(format!(
                "invalid scope map action '{action}': {why}; expected \
                 repositories/<repository>/<content|metadata>/<read|write|delete>"
            ))
        };
        let rest =
            action.strip_prefix("repositories/").ok_or_else(|| bad("no repositories/ prefix"))?;
        let (rest, verb) = rest.rsplit_once('/').ok_or_else(|| bad("no action"))?;
        let (repo, kind) = rest.rsplit_once('/').ok_or_else(|| bad("no action"))?;
        let op = match (kind, verb) {
            ("content", "read") => RepoOp::Pull,
            ("content", "write") => RepoOp::Push,
            ("content", "delete") => RepoOp::Delete,
            ("metadata", "read") => RepoOp::MetadataRead,
            ("metadata", "write") => RepoOp::MetadataWrite,
            _ => return Err(bad("unknown action")),
        };
        let pattern = if repo == "*" {
            RepoPattern::All
        } else if let Some(prefix) = repo.strip_suffix("/*") {
            if prefix.contains('*') || wharf_oci::RepositoryName::parse(prefix).is_err() {
                return Err(bad("a wildcard must be one `*` ending a valid repository prefix"));
            }
            RepoPattern::Under(format!("{}/", prefix.to_ascii_lowercase()))
        } else {
            if wharf_oci::RepositoryName::parse(repo).is_err() {
                return Err(bad("not a valid repository name"));
            }
            RepoPattern::Exact(repo.to_ascii_lowercase())
        };
        Ok(ScopeRule { pattern, op })
    }
}

/// What a registry credential may do in its own registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryGrant {
    /// The admin user: everything on the data plane, catalog included.
    Admin,
    /// A token: what its scope map's rules allow (additive); never the catalog.
    Rules(Vec<ScopeRule>),
}

impl RegistryGrant {
    pub fn allows(&self, op: RepoOp, repository: &str) -> bool {
        match self {
            RegistryGrant::Admin => true,
            RegistryGrant::Rules(rules) => {
                rules.iter().any(|r| r.op == op && r.pattern.matches(repository))
            }
        }
    }

    /// `registry:catalog:*` — ACR gives tokens no catalog.
    pub fn catalog(&self) -> bool {
        matches!(self, RegistryGrant::Admin)
    }

    /// The `kind` of the credential record holding it: [`ADMIN`] or [`TOKEN`].
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RegistryGrant::Admin => ADMIN,
            RegistryGrant::Rules(_) => TOKEN,
        }
    }

    /// Whether every repository may be read.
    pub fn reads_all(&self) -> bool {
        match self {
            RegistryGrant::Admin => true,
            RegistryGrant::Rules(rules) => {
                rules.iter().any(|r| r.op == RepoOp::Pull && r.pattern == RepoPattern::All)
            }
        }
    }
}

/// The system scope maps every registry has (read-only), with ACR's names and actions.
pub fn system_scope_maps() -> Vec<(&'static str, &'static str, Vec<String>)> {
    let all = |verbs: &[&str]| verbs.iter().map(|v| format!("repositories/*/{v}")).collect();
    vec![
        (
            "_repositories_admin",
            "Can perform all read, write and delete operations on the registry",
            all(&[
                "metadata/read",
                "metadata/write",
                "content/read",
                "content/write",
                "content/delete",
            ]),
        ),
        ("_repositories_pull", "Can pull any repository of the registry", all(&["content/read"])),
        (
            "_repositories_pull_metadata_read",
            "Can perform all read operations on the registry",
            all(&["content/read", "metadata/read"]),
        ),
        (
            "_repositories_push",
            "Can push to any repository of the registry",
            all(&["content/read", "content/write"]),
        ),
        (
            "_repositories_push_metadata_write",
            "Can perform all read and write operations on the registry",
            all(&["metadata/read", "metadata/write", "content/read", "content/write"]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_map_actions_parse_as_acr_takes_them() {
        let r = ScopeRule::parse("repositories/samples/*/content/read").unwrap();
        let g = RegistryGrant::Rules(vec![
            r,
            ScopeRule::parse("repositories/app/content/write").unwrap(),
        ]);
        assert!(g.allows(RepoOp::Pull, "samples/hello"));
        assert!(g.allows(RepoOp::Pull, "Samples/a/b"));
        assert!(!g.allows(RepoOp::Pull, "samples"), "the prefix itself isn't under it");
        assert!(!g.allows(RepoOp::Pull, "samplesx/a"));
        assert!(!g.allows(RepoOp::Push, "samples/hello"));
        assert!(g.allows(RepoOp::Push, "app"));
        assert!(!g.allows(RepoOp::Pull, "app"), "write doesn't imply read");
        assert!(!g.catalog() && !g.reads_all());
        for bad in [
            "samples/content/read",
            "repositories/a/content/push",
            "repositories/a*/content/read",
            "repositories/a/*/b/content/read",
            "repositories/*/*/content/read",
            "repositories/../content/read",
            "repositories/A B/content/read",
            "repositories//content/read",
        ] {
            assert!(ScopeRule::parse(bad).is_err(), "{bad}");
        }
        let all =
            RegistryGrant::Rules(vec![ScopeRule::parse("repositories/*/content/read").unwrap()]);
        assert!(all.reads_all() && all.allows(RepoOp::Pull, "anything/at/all"));
        for (_, _, actions) in system_scope_maps() {
            for a in actions {
                ScopeRule::parse(&a).unwrap();
            }
        }
    }
}
