//! Registry token scopes, as Docker's token protocol and ACR write them:
//! `repository:<name>:pull,push,delete,metadata_read,metadata_write` and
//! `registry:catalog:*`.

use serde::{Deserialize, Serialize};

/// One entry of a registry access token (`access` claim) or of a token request's `scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Actions a repository scope may ask for.
pub const REPOSITORY_ACTIONS: &[&str] =
    &["pull", "push", "delete", "metadata_read", "metadata_write"];

impl Access {
    /// Parse `type:name:actions` (the name may contain `:`-free path segments only, as
    /// repository names do). Unknown types or actions are dropped, not granted.
    pub fn parse(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if name.is_empty() {
            return None;
        }
        let allowed: &[&str] = match kind {
            "repository" => REPOSITORY_ACTIONS,
            "registry" if name == "catalog" => &["*"],
            _ => return None,
        };
        let mut out: Vec<String> = Vec::new();
        for a in actions.split(',').map(str::trim) {
            // `*` on a repository means every repository action.
            let expanded: Vec<&str> = if a == "*" && kind == "repository" {
                REPOSITORY_ACTIONS.to_vec()
            } else {
                vec![a]
            };
            for a in expanded {
                if allowed.contains(&a) && !out.iter().any(|x| x == a) {
                    out.push(a.to_owned());
                }
            }
        }
        Some(Access { kind: kind.to_owned(), name: name.to_owned(), actions: out })
    }

    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == "*")
    }
}

/// Parse every scope of a token request (`scope` may repeat, or hold several separated by
/// spaces).
pub fn parse_all<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<Access> {
    scopes.into_iter().flat_map(|s| s.split(' ')).filter_map(Access::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let a = Access::parse("repository:samples/app:pull,push").unwrap();
        assert_eq!((a.kind.as_str(), a.name.as_str()), ("repository", "samples/app"));
        assert_eq!(a.actions, ["pull", "push"]);
        assert_eq!(Access::parse("repository:x:*").unwrap().actions.len(), 5);
        assert_eq!(Access::parse("registry:catalog:*").unwrap().actions, ["*"]);
        assert_eq!(Access::parse("repository:x:pull,admin").unwrap().actions, ["pull"]);
        assert!(Access::parse("registry:other:*").is_none());
        assert!(Access::parse("repository::pull").is_none());
        assert!(Access::parse("nonsense").is_none());
        assert_eq!(
            parse_all(["repository:a:pull repository:b:push", "registry:catalog:*"]).len(),
            3
        );
        assert!(a.allows("repository", "samples/app", "pull"));
        assert!(!a.allows("repository", "samples/other", "pull"));
    }
}
