use std::fmt;

use crate::ArmError;

/// The ARM type of registries.
pub const REGISTRY_TYPE: &str = "Microsoft.ContainerRegistry/registries";

/// A parsed ARM resource ID, as far as wharf has resources: a subscription, a resource
/// group, or a registry. Segment names match case-insensitively, as in ARM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceId {
    Subscription(String),
    ResourceGroup { subscription: String, resource_group: String },
    Registry(RegistryResourceId),
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryResourceId {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl ResourceId {
    pub fn parse(s: &str) -> Result<ResourceId, ArmError> {
        let invalid = || {
            ArmError::bad_request(
                "InvalidResourceId",
                format!(
                    "'{}' is not a valid resource ID.",
                    s.chars().take(300).collect::<String>()
                ),
            )
        };
        let segments: Vec<&str> = s.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", subs, sub] if subs.eq_ignore_ascii_case("subscriptions") && !sub.is_empty() => {
                Ok(ResourceId::Subscription(sub.to_string()))
            }
            ["", subs, sub, rgs, rg]
                if subs.eq_ignore_ascii_case("subscriptions")
                    && rgs.eq_ignore_ascii_case("resourceGroups")
                    && !sub.is_empty()
                    && !rg.is_empty() =>
            {
                Ok(ResourceId::ResourceGroup {
                    subscription: sub.to_string(),
                    resource_group: rg.to_string(),
                })
            }
            ["", subs, sub, rgs, rg, providers, ns, kind, name]
                if subs.eq_ignore_ascii_case("subscriptions")
                    && rgs.eq_ignore_ascii_case("resourceGroups")
                    && providers.eq_ignore_ascii_case("providers")
                    && ns.eq_ignore_ascii_case("Microsoft.ContainerRegistry")
                    && kind.eq_ignore_ascii_case("registries")
                    && !sub.is_empty()
                    && !rg.is_empty()
                    && !name.is_empty() =>
            {
                Ok(ResourceId::Registry(RegistryResourceId {
                    subscription: sub.to_string(),
                    resource_group: rg.to_string(),
                    name: name.to_string(),
                }))
            }
            _ => Err(invalid()),
        }
    }
}

impl RegistryResourceId {
    /// Parse an ID that must name a registry.
    pub fn parse(s: &str) -> Result<RegistryResourceId, ArmError> {
        match ResourceId::parse(s)? {
            ResourceId::Registry(r) => Ok(r),
            _ => Err(ArmError::bad_request(
                "InvalidResourceId",
                format!("'{s}' is not the resource ID of a container registry."),
            )),
        }
    }
}

impl fmt::Display for RegistryResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{REGISTRY_TYPE}/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_ids_case_insensitively() {
        let id = "/subscriptions/s1/resourcegroups/RG/providers/microsoft.containerregistry/Registries/myreg";
        let r = RegistryResourceId::parse(id).unwrap();
        assert_eq!(
            (r.subscription.as_str(), r.resource_group.as_str(), r.name.as_str()),
            ("s1", "RG", "myreg")
        );
        assert_eq!(
            r.to_string(),
            "/subscriptions/s1/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/myreg"
        );
        assert!(matches!(
            ResourceId::parse("/subscriptions/s1").unwrap(),
            ResourceId::Subscription(_)
        ));
        for bad in [
            "",
            "subscriptions/s1",
            "/subscriptions//resourceGroups/x",
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/x",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad}");
        }
    }
}
