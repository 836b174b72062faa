//! Egress policy: which source registries the server may contact, and how.
//!
//! A registry that imports on request is a server-side request forgery risk: a source
//! address must not let a caller reach the server's own network. So sources that resolve
//! to loopback, private, link-local or other non-global addresses are refused unless the
//! operator allowed that host (`--insecure-source`), which is also what permits plain HTTP,
//! like Docker's `insecure-registries`. The check runs on every resolved address (a DNS
//! resolver that filters) and on every IP-literal URL, redirects included.
//! Registry mirrors (`--registry-mirror docker.io=http://…`) redirect a registry's traffic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use url::Url;

use crate::ImportError;
use crate::request::is_docker_hub;

/// Where the server may fetch sources from.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    /// `host` or `host:port`, lowercase.
    insecure: Vec<String>,
    /// Registry host (lowercase; `docker.io` for every Docker Hub alias) → base URL.
    mirrors: Vec<(String, Url)>,
}

/// How to reach one source registry.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]` of the registry API.
    pub(crate) base: Url,
    /// The registry as the user named it, for messages.
    pub(crate) display: String,
}

impl EgressPolicy {
    /// `insecure`: `host[:port]` entries; `mirrors`: `(host, url)` pairs.
    pub fn new(insecure: &[String], mirrors: &[(String, String)]) -> Result<EgressPolicy, String> {
        let insecure = insecure
            .iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                if h.is_empty() || h.contains('/') {
                    Err(format!("invalid insecure source '{h}': expected host or host:port"))
                } else {
                    Ok(h)
                }
            })
            .collect::<Result<_, _>>()?;
        let mirrors = mirrors
            .iter()
            .map(|(host, url)| {
                let mut host = host.trim().to_ascii_lowercase();
                if is_docker_hub(&host) {
                    host = "docker.io".into();
                }
                let url = Url::parse(url.trim())
                    .map_err(|e| format!("invalid mirror URL '{url}': {e}"))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(format!(
                        "invalid mirror URL '{url}': expected http(s)://host[:port]"
                    ));
                }
                Ok((host, url))
            })
            .collect::<Result<_, _>>()?;
        Ok(EgressPolicy { insecure, mirrors })
    }

    /// Whether `host` (any port) or `host:port` is listed as an insecure source.
    fn listed(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.insecure.iter().any(|entry| {
            let (h, p) = split_host_port(entry);
            h == host && (p.is_none() || p == port)
        })
    }

    /// Whether `host` is listed, with any port.
    fn listed_any_port(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.insecure.iter().any(|entry| split_host_port(entry).0 == host)
    }

    /// May a connection to `ip` be made for `host`?
    pub(crate) fn address_allowed(&self, host: &str, port: Option<u16>, ip: IpAddr) -> bool {
        is_global(ip) || self.listed(host, port)
    }

    /// Check a URL before a request to it (the first one, and every redirect). A host the
    /// operator listed only with ports (`host:5000`) is reached on those ports alone,
    /// whatever the scheme: the resolver lets its private addresses through, so the port
    /// is what holds the entry to its word.
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), String> {
        let shown = redact_url(url);
        let host = url.host_str().ok_or_else(|| format!("{shown} has no host"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("unsupported URL scheme in {shown}"));
        }
        let port = url.port_or_known_default();
        let listed = self.listed(host, port) || self.listed(host, url.port());
        if url.scheme() == "http" && !listed {
            return Err(format!(
                "plain HTTP to {host} is not allowed; configure it as an insecure source (--insecure-source {host})"
            ));
        }
        if !listed && self.listed_any_port(host) {
            let port = port.map_or_else(String::new, |p| p.to_string());
            return Err(format!(
                "{host} is an insecure source only on the ports listed for it, not on port {port}"
            ));
        }
        if let Some(ip) = literal_ip(host)
            && !self.address_allowed(host, port, ip)
        {
            return Err(format!(
                "{host} is a loopback, private or link-local address; allow it with --insecure-source {host}"
            ));
        }
        Ok(())
    }

    /// Where a `registryUri` is reached: a mirror, plain HTTP for insecure sources, else HTTPS.
    pub(crate) fn endpoint(&self, registry_uri: &str) -> Result<Endpoint, ImportError> {
        let raw = registry_uri.trim();
        let bad = |why: &str| {
            ImportError::InvalidParameters(format!("Invalid source registry '{raw}': {why}"))
        };
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, raw),
        };
        let hostport = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
        if hostport.is_empty() || hostport.contains('@') {
            return Err(bad("expected host[:port]"));
        }
        let (host, port) = split_host_port(&hostport);
        let port = match port {
            Some(p) => Some(p),
            None if hostport.contains(':') && !hostport.starts_with('[') => {
                return Err(bad("invalid port"));
            }
            None => None,
        };
        let canonical = if is_docker_hub(&host) { "docker.io".to_owned() } else { host.clone() };
        if let Some((_, mirror)) =
            self.mirrors.iter().find(|(h, _)| *h == canonical || *h == hostport)
        {
            let mut base = mirror.clone();
            base.set_path("");
            self.check_url(&base).map_err(ImportError::SourceAddressNotAllowed)?;
            return Ok(Endpoint { base, display: raw.to_owned() });
        }
        let target = if canonical == "docker.io" {
            "registry-1.docker.io".to_owned()
        } else {
            hostport.clone()
        };
        let insecure = self.listed(&host, port);
        let scheme = match scheme.as_deref() {
            Some("http") if insecure => "http",
            Some("http") => {
                return Err(ImportError::SourceAddressNotAllowed(format!(
                    "plain HTTP to {hostport} is not allowed; configure it as an insecure source (--insecure-source {hostport})"
                )));
            }
            Some("https") => "https",
            Some(other) => return Err(bad(&format!("unsupported scheme '{other}'"))),
            None if insecure => "http",
            None => "https",
        };
        let base = Url::parse(&format!("{scheme}://{target}")).map_err(|e| bad(&e.to_string()))?;
        self.check_url(&base).map_err(ImportError::SourceAddressNotAllowed)?;
        Ok(Endpoint { base, display: raw.to_owned() })
    }
}

/// A URL as messages and logs may show it: no credentials, no query (a CDN redirect's
/// query is a signature that grants access), no fragment.
pub(crate) fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        // [v6]:port
        let (h, p) = rest.split_once(']').unwrap_or((rest, ""));
        return (h.to_owned(), p.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().ok()),
        _ => (s.to_owned(), None),
    }
}

fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Whether an address is on the public internet (std's `is_global` is unstable). IPv6
/// forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by it.
pub(crate) fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let low32 =
                Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_global_v4(v4);
            }
            // ::a.b.c.d (IPv4-compatible), 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64)
            if seg[..6] == [0; 6]
                || (seg[0] == 0x64 && seg[1] == 0xff9b && (seg[2..6] == [0; 4] || seg[2] == 1))
            {
                return is_global_v4(low32);
            }
            // 2002:AABB:CCDD::/48 (6to4): the IPv4 address is in segments 1 and 2.
            if seg[0] == 0x2002 {
                let v4 = Ipv4Addr::new(
                    (seg[1] >> 8) as u8,
                    seg[1] as u8,
                    (seg[2] >> 8) as u8,
                    seg[2] as u8,
                );
                return is_global_v4(v4);
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0100 && seg[1..4] == [0; 3])) // discard-only
        }
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 192 && b == 0 && c == 0)) // IETF protocol assignments
}

/// The egress policy refused an address or URL (a redirect, a resolved name).
#[derive(Debug)]
pub(crate) struct EgressRefused(pub(crate) String);

impl std::fmt::Display for EgressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EgressRefused {}

/// A DNS resolver that only returns addresses the policy allows for the name.
pub(crate) struct PolicyResolver(pub(crate) Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // The resolver doesn't know the port: a listed host:port allows the host here,
            // and `check_url` holds the port to the entry.
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_global(a.ip()) || policy.listed_any_port(&host))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                let err = EgressRefused(format!(
                    "{host} resolves only to loopback, private or link-local addresses; allow it with --insecure-source {host}"
                ));
                return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_no_secrets() {
        let u =
            Url::parse("https://user:pw@cdn.example.com/blobs/x?sig=SECRET&exp=1#frag").unwrap();
        assert_eq!(redact_url(&u), "https://cdn.example.com/blobs/x");
    }

    #[test]
    fn classifies_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "2002:a00:1::1",
            "2001:db8::1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
        for ip in
            ["8.8.8.8", "140.82.112.3", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]
        {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn endpoints() {
        let p = EgressPolicy::new(
            &["127.0.0.1:5001".into(), "localhost".into()],
            &[("registry.hub.docker.com".into(), "http://127.0.0.1:5001".into())],
        )
        .unwrap();
        assert_eq!(p.endpoint("127.0.0.1:5001").unwrap().base.as_str(), "http://127.0.0.1:5001/");
        assert_eq!(p.endpoint("http://localhost:7/").unwrap().base.as_str(), "http://localhost:7/");
        // Every Docker Hub alias goes to the mirror.
        for hub in ["docker.io", "index.docker.io", "registry.hub.docker.com"] {
            assert_eq!(p.endpoint(hub).unwrap().base.as_str(), "http://127.0.0.1:5001/", "{hub}");
        }
        assert_eq!(p.endpoint("ghcr.io").unwrap().base.as_str(), "https://ghcr.io/");
        assert!(matches!(
            p.endpoint("127.0.0.1:5002"),
            Err(ImportError::SourceAddressNotAllowed(_))
        ));
        assert!(matches!(
            p.endpoint("http://ghcr.io"),
            Err(ImportError::SourceAddressNotAllowed(_))
        ));
        assert!(matches!(p.endpoint("10.0.0.1"), Err(ImportError::SourceAddressNotAllowed(_))));
        assert!(matches!(p.endpoint("[::1]:5000"), Err(ImportError::SourceAddressNotAllowed(_))));
        assert!(matches!(p.endpoint("ftp://x.io"), Err(ImportError::InvalidParameters(_))));
        // A port-bound entry holds for HTTPS too, and for every URL checked (redirects).
        let bound = EgressPolicy::new(&["reg.internal:5000".into()], &[]).unwrap();
        assert!(bound.endpoint("reg.internal:5000").is_ok());
        assert!(matches!(
            bound.endpoint("https://reg.internal:6379"),
            Err(ImportError::SourceAddressNotAllowed(_))
        ));
        assert!(bound.check_url(&Url::parse("https://reg.internal/v2/").unwrap()).is_err());
        assert!(bound.check_url(&Url::parse("http://reg.internal:5000/v2/").unwrap()).is_ok());
        // A default port spelled out in the entry matches a URL that leaves it implicit.
        let eighty = EgressPolicy::new(&["10.0.0.1:80".into()], &[]).unwrap();
        assert!(eighty.check_url(&Url::parse("http://10.0.0.1/v2/").unwrap()).is_ok());
        assert!(eighty.check_url(&Url::parse("https://10.0.0.1/v2/").unwrap()).is_err());
        let none = EgressPolicy::default();
        assert_eq!(
            none.endpoint("docker.io").unwrap().base.as_str(),
            "https://registry-1.docker.io/"
        );
    }
}
