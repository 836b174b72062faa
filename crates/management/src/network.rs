//! Who may reach a registry over the network, as ACR decides it: `publicNetworkAccess`,
//! `networkRuleSet` (`defaultAction` + IPv4 `ipRules`), `networkRuleBypassOptions` (the
//! server's own trusted paths, i.e. import) and `policies.exportPolicy` (import *out of* the
//! registry). The management API itself is never network-restricted (ARM isn't either).

use std::net::IpAddr;

use ipnet::Ipv4Net;
use wharf_storage::RegistryRecord;

use crate::{Management, RegistryProperties};

/// A registry's network settings, ready to check addresses against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// `publicNetworkAccess: Enabled`.
    pub public: bool,
    /// `networkRuleSet.defaultAction: Deny`: only `ip_rules` get in from the public network.
    pub deny_by_default: bool,
    pub ip_rules: Vec<Ipv4Net>,
    /// `networkRuleBypassOptions: AzureServices`: the server's own trusted paths (import into
    /// and out of the registry) pass the rules.
    pub trusted_services: bool,
    /// `policies.exportPolicy.status: enabled`: images may be imported out of it.
    pub export: bool,
}

impl NetworkPolicy {
    /// Whether any network rule applies (else everyone may reach it).
    pub fn restricted(&self) -> bool {
        !self.public || self.deny_by_default
    }

    /// Whether a client at `client` (the connection's address, or the one a trusted proxy
    /// reported) may use the data plane. `private` says it came from one of the server's
    /// configured private networks, which stand for ACR's private endpoints: they pass the
    /// public-network rules.
    pub fn admits(&self, client: Option<IpAddr>, private: bool) -> bool {
        if private || !self.restricted() {
            return true;
        }
        if !self.public {
            return false;
        }
        let v4 = match client {
            Some(IpAddr::V4(a)) => Some(a),
            Some(IpAddr::V6(a)) => a.to_ipv4_mapped(),
            None => None,
        };
        v4.is_some_and(|a| self.ip_rules.iter().any(|r| r.contains(&a)))
    }
}

impl Management {
    /// A registry's network settings (rules that don't parse admit nobody: they were
    /// validated when stored).
    pub fn network(r: &RegistryRecord) -> NetworkPolicy {
        Self::network_of(&Self::properties(r))
    }

    pub(crate) fn network_of(p: &RegistryProperties) -> NetworkPolicy {
        let status = |name: &str| p.policies[name]["status"].as_str().map(str::to_ascii_lowercase);
        NetworkPolicy {
            public: p.public_network_access.eq_ignore_ascii_case("Enabled"),
            deny_by_default: p.network_rule_set.default_action.eq_ignore_ascii_case("Deny"),
            ip_rules: p
                .network_rule_set
                .ip_rules
                .iter()
                .filter_map(|r| parse_ipv4_rule(&r.value))
                .collect(),
            trusted_services: p.network_rule_bypass_options.eq_ignore_ascii_case("AzureServices"),
            export: status("exportPolicy").is_none_or(|s| s != "disabled"),
        }
    }
}

/// An IPv4 address or CIDR range (`10.0.0.0/8`, `192.0.2.7`).
pub fn parse_ipv4_rule(v: &str) -> Option<Ipv4Net> {
    match v.split_once('/') {
        Some(_) => v.parse::<Ipv4Net>().ok().map(|n| n.trunc()),
        None => v.parse::<std::net::Ipv4Addr>().ok().map(Ipv4Net::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(public: bool, deny: bool, rules: &[&str]) -> NetworkPolicy {
        NetworkPolicy {
            public,
            deny_by_default: deny,
            ip_rules: rules.iter().map(|r| parse_ipv4_rule(r).unwrap()).collect(),
            trusted_services: true,
            export: true,
        }
    }

    #[test]
    fn rules_admit_what_they_name() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(policy(true, false, &[]).admits(ip("203.0.113.9"), false));
        let p = policy(true, true, &["10.1.0.0/16", "192.0.2.7"]);
        assert!(p.admits(ip("10.1.200.3"), false));
        assert!(p.admits(ip("192.0.2.7"), false));
        assert!(p.admits(ip("::ffff:10.1.0.1"), false), "IPv4-mapped IPv6");
        assert!(!p.admits(ip("10.2.0.1"), false));
        assert!(!p.admits(ip("192.0.2.8"), false));
        assert!(!p.admits(ip("2001:db8::1"), false));
        assert!(!p.admits(None, false));
        assert!(p.admits(ip("10.2.0.1"), true), "a private network passes");
        let closed = policy(false, false, &[]);
        assert!(!closed.admits(ip("10.1.0.1"), false));
        assert!(closed.admits(ip("10.1.0.1"), true));
        assert_eq!(parse_ipv4_rule("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_ipv4_rule("10.1.2.3/33").is_none());
        assert!(parse_ipv4_rule("::1").is_none());
    }
}
