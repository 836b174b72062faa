//! The registry resource: ACR's `Registry` JSON, its validation and its defaults.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ArmError;

/// A registry's mutable ARM properties (stored as JSON; absent fields take ACR's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegistryProperties {
    pub admin_user_enabled: bool,
    pub public_network_access: String,
    pub network_rule_set: NetworkRuleSet,
    pub network_rule_bypass_options: String,
    pub network_rule_bypass_allowed_for_tasks: bool,
    pub anonymous_pull_enabled: bool,
    pub data_endpoint_enabled: bool,
    pub zone_redundancy: String,
    pub role_assignment_mode: String,
    pub policies: Value,
    pub encryption: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleSet {
    pub default_action: String,
    #[serde(default)]
    pub ip_rules: Vec<IpRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRule {
    #[serde(default = "allow")]
    pub action: String,
    pub value: String,
}

fn allow() -> String {
    "Allow".into()
}

impl Default for NetworkRuleSet {
    fn default() -> Self {
        NetworkRuleSet { default_action: "Allow".into(), ip_rules: Vec::new() }
    }
}

impl Default for RegistryProperties {
    fn default() -> Self {
        RegistryProperties {
            admin_user_enabled: false,
            public_network_access: "Enabled".into(),
            network_rule_set: NetworkRuleSet::default(),
            network_rule_bypass_options: "AzureServices".into(),
            network_rule_bypass_allowed_for_tasks: false,
            anonymous_pull_enabled: false,
            data_endpoint_enabled: false,
            zone_redundancy: "Disabled".into(),
            role_assignment_mode: "LegacyRegistryPermissions".into(),
            policies: json!({
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {"days": 7, "status": "disabled"},
                "exportPolicy": {"status": "enabled"},
                "azureADAuthenticationAsArmPolicy": {"status": "enabled"}
            }),
            encryption: json!({"status": "disabled"}),
        }
    }
}

/// ACR's rule: 5 to 50 alphanumeric characters.
pub fn validate_registry_name(name: &str) -> Result<(), ArmError> {
    if (5..=50).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidResourceName",
            format!(
                "The registry name '{}' is invalid: it must be 5 to 50 characters long and contain only alphanumeric characters.",
                name.chars().take(100).collect::<String>()
            ),
        ))
    }
}

/// ACR's SKUs, canonically cased; `Classic` can no longer be created.
pub(crate) fn canonical_sku(name: &str) -> Result<&'static str, ArmError> {
    ["Basic", "Standard", "Premium"].into_iter().find(|s| s.eq_ignore_ascii_case(name)).ok_or_else(
        || {
            ArmError::bad_request(
                "InvalidSku",
                format!("The SKU '{name}' is not supported. Use Basic, Standard or Premium."),
            )
        },
    )
}

fn one_of(field: &str, value: &str, allowed: &[&'static str]) -> Result<String, ArmError> {
    allowed.iter().find(|a| a.eq_ignore_ascii_case(value)).map(|a| a.to_string()).ok_or_else(|| {
        ArmError::invalid_content(format!(
            "'{value}' is not a valid value for {field}; expected one of {}",
            allowed.join(", ")
        ))
    })
}

impl RegistryProperties {
    /// Apply the fields present in a PUT's or PATCH's `properties`, validating each.
    pub fn merge(&mut self, patch: &Value) -> Result<(), ArmError> {
        let Some(obj) = patch.as_object() else {
            return Err(ArmError::invalid_content("properties must be an object"));
        };
        for (key, value) in obj {
            let bool_of = |v: &Value| {
                v.as_bool()
                    .ok_or_else(|| ArmError::invalid_content(format!("{key} must be a boolean")))
            };
            let str_of = |v: &Value| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ArmError::invalid_content(format!("{key} must be a string")))
            };
            match key.as_str() {
                "adminUserEnabled" => self.admin_user_enabled = bool_of(value)?,
                "anonymousPullEnabled" => self.anonymous_pull_enabled = bool_of(value)?,
                "dataEndpointEnabled" => self.data_endpoint_enabled = bool_of(value)?,
                "networkRuleBypassAllowedForTasks" => {
                    self.network_rule_bypass_allowed_for_tasks = bool_of(value)?
                }
                "publicNetworkAccess" => {
                    self.public_network_access =
                        one_of(key, &str_of(value)?, &["Enabled", "Disabled"])?
                }
                "networkRuleBypassOptions" => {
                    self.network_rule_bypass_options =
                        one_of(key, &str_of(value)?, &["AzureServices", "None"])?
                }
                "zoneRedundancy" => {
                    self.zone_redundancy = one_of(key, &str_of(value)?, &["Enabled", "Disabled"])?
                }
                "roleAssignmentMode" => {
                    self.role_assignment_mode = one_of(
                        key,
                        &str_of(value)?,
                        &["LegacyRegistryPermissions", "AbacRepositoryPermissions"],
                    )?
                }
                "networkRuleSet" => {
                    let mut set: NetworkRuleSet =
                        serde_json::from_value(value.clone()).map_err(ArmError::invalid_content)?;
                    set.default_action =
                        one_of("defaultAction", &set.default_action, &["Allow", "Deny"])?;
                    for rule in &mut set.ip_rules {
                        rule.action = one_of("ipRules.action", &rule.action, &["Allow"])?;
                        validate_ipv4_rule(&rule.value)?;
                    }
                    self.network_rule_set = set;
                }
                "policies" => {
                    if !value.is_object() {
                        return Err(ArmError::invalid_content("policies must be an object"));
                    }
                    merge_json(&mut self.policies, value);
                }
                "encryption" => {
                    if !value.is_object() {
                        return Err(ArmError::invalid_content("encryption must be an object"));
                    }
                    merge_json(&mut self.encryption, value);
                }
                // Read-only or not modelled: accepted and ignored, as ARM ignores read-only input.
                _ => {}
            }
        }
        Ok(())
    }
}

impl RegistryProperties {
    /// Refuse settings wharf would store but not enforce: a registry that says "quarantine
    /// on" or "encrypted with my key" must not silently be neither. Only their defaults are
    /// accepted. Also ACR's rule that exports may be disabled only on a registry closed to
    /// the public network.
    pub fn check_enforceable(&self) -> Result<(), ArmError> {
        let unsupported = |setting: &str, default: &str| {
            Err(ArmError::bad_request(
                "UnsupportedSetting",
                format!(
                    "wharf does not enforce {setting}, so it refuses to store it; leave it at {default}."
                ),
            ))
        };
        let status = |v: &Value, name: &str| {
            v[name]["status"].as_str().map(str::to_ascii_lowercase).unwrap_or_default()
        };
        if self.data_endpoint_enabled {
            return unsupported("dataEndpointEnabled (dedicated data endpoints)", "false");
        }
        if self.zone_redundancy.eq_ignore_ascii_case("Enabled") {
            return unsupported("zoneRedundancy", "Disabled");
        }
        if self.network_rule_bypass_allowed_for_tasks {
            return unsupported("networkRuleBypassAllowedForTasks (there are no tasks)", "false");
        }
        for (policy, default) in [
            ("quarantinePolicy", "disabled"),
            ("trustPolicy", "disabled"),
            ("retentionPolicy", "disabled"),
            ("softDeletePolicy", "disabled"),
        ] {
            let s = status(&self.policies, policy);
            if !s.is_empty() && s != default {
                return unsupported(&format!("policies.{policy}"), &format!("status {default}"));
            }
        }
        let aad = status(&self.policies, "azureADAuthenticationAsArmPolicy");
        if !aad.is_empty() && aad != "enabled" {
            return unsupported("policies.azureADAuthenticationAsArmPolicy", "status enabled");
        }
        let s = status(&self.policies, "exportPolicy");
        if !matches!(s.as_str(), "" | "enabled" | "disabled") {
            return Err(ArmError::invalid_content(format!(
                "'{s}' is not a valid value for policies.exportPolicy.status; expected enabled or disabled"
            )));
        }
        if s == "disabled" && self.public_network_access.eq_ignore_ascii_case("Enabled") {
            return Err(ArmError::bad_request(
                "InvalidExportPolicy",
                "Exports can be disabled only on a registry with publicNetworkAccess Disabled.",
            ));
        }
        let e = self.encryption["status"].as_str().map(str::to_ascii_lowercase);
        let e = e.unwrap_or_default();
        if !e.is_empty() && e != "disabled" {
            return unsupported("encryption with a customer-managed key", "status disabled");
        }
        Ok(())
    }
}

fn merge_json(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge_json(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// ACR's IP rules: an IPv4 address or CIDR range.
fn validate_ipv4_rule(v: &str) -> Result<(), ArmError> {
    let (addr, prefix) = v.split_once('/').map_or((v, None), |(a, p)| (a, Some(p)));
    let ok = addr.parse::<std::net::Ipv4Addr>().is_ok()
        && prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|n| n <= 32));
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidIpRule",
            format!("'{v}' is not an IPv4 address or CIDR range."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        validate_registry_name("myregistry").unwrap();
        validate_registry_name("Abc12").unwrap();
        for bad in ["abcd", "my-registry", "a".repeat(51).as_str(), "regé1"] {
            assert_eq!(validate_registry_name(bad).unwrap_err().code, "InvalidResourceName");
        }
    }

    #[test]
    fn merge_validates_and_keeps_the_rest() {
        let mut p = RegistryProperties::default();
        p.merge(&json!({"adminUserEnabled": true, "publicNetworkAccess": "disabled",
            "networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"value": "10.0.0.0/8"}]},
            "policies": {"exportPolicy": {"status": "disabled"}}, "loginServer": "ignored"}))
            .unwrap();
        assert!(p.admin_user_enabled);
        assert_eq!(p.public_network_access, "Disabled");
        assert_eq!(p.network_rule_set.ip_rules[0].action, "Allow");
        assert_eq!(p.policies["exportPolicy"]["status"], "disabled");
        assert_eq!(p.policies["quarantinePolicy"]["status"], "disabled");
        assert!(p.merge(&json!({"publicNetworkAccess": "Maybe"})).is_err());
        assert!(p.merge(&json!({"adminUserEnabled": "yes"})).is_err());
        assert!(
            p.merge(
                &json!({"networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"value": "::1"}]}})
            )
            .is_err()
        );
        assert_eq!(canonical_sku("premium").unwrap(), "Premium");
        assert!(canonical_sku("Classic").is_err());
    }
}

/// A stored registry with its settings decoded once, where a request loaded it: the rest of
/// the request reads who may do what in it (`policy`) and from where (`network`) without
/// decoding its properties again.
#[derive(Clone, Debug)]
pub struct Registry {
    pub record: wharf_storage::RegistryRecord,
    pub properties: RegistryProperties,
    pub policy: wharf_auth::RegistryPolicy,
    pub network: crate::network::NetworkPolicy,
}

impl Registry {
    /// Decode a registry's stored settings (ACR's defaults where unset or unreadable).
    pub fn decode(record: wharf_storage::RegistryRecord) -> Registry {
        let properties = crate::Management::properties(&record);
        let policy = crate::Management::policy_of(&record, &properties);
        let network = crate::Management::network_of(&properties);
        Registry { record, properties, policy, network }
    }

    /// wharf's number for it.
    pub fn id(&self) -> wharf_storage::RegistryId {
        self.record.id
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }
}
