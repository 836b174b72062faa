//! Where a request comes from, and whether a registry's network rules let it in.
//!
//! The client is the connection's peer, unless the peer is one of the configured trusted
//! proxies: then `X-Forwarded-For` is read from the right, past every trusted proxy, and the
//! first other address is the client (an address a client wrote itself, further left, is
//! never believed). Only the data plane of a registry is network-restricted — `/v2/`,
//! `/acr/v1/` and its token endpoints — as in ACR; the management API is not.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use wharf_management::Registry;

use crate::AppState;
use crate::error::oci_error;

/// The client's address: the peer, or what trusted proxies say it is. IPv4 peers of a
/// dual-stack listener (`::ffff:a.b.c.d`) are taken as the IPv4 addresses they are.
pub(crate) fn client_address(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_canonical())?;
    let trusted = &state.settings.trusted_proxies;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // Every hop the proxies reported, in order, from the one header they are configured to
    // write (a client's own copy of the other is never read).
    let hops: Vec<Option<String>> = match state.settings.forwarded {
        ForwardedHeader::Rfc7239 => {
            forwarded_elements(headers).iter().map(|e| element_value(e, "for")).collect()
        }
        ForwardedHeader::XForwardedFor => headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| Some(h.trim().to_owned()))
            .collect(),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        // Missing or unreadable (or an obfuscated RFC 7239 name): stop at the last address
        // a trusted proxy vouched for.
        let Some(Ok(ip)) = hop.as_deref().map(parse_node) else { break };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    Some(client)
}

/// Which header trusted proxies write (`[network] forwarded_header`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (with `X-Forwarded-Host` / `X-Forwarded-Proto`), as nginx and most
    /// proxies write them.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…;host=…;proto=…`.
    Rfc7239,
}

/// The elements of every `Forwarded` header (RFC 7239), in order.
fn forwarded_elements(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_owned())
        .collect()
}

/// The value of `key` in one `Forwarded` element, quotes removed.
fn element_value(element: &str, key: &str) -> Option<String> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// What the nearest trusted proxy said of the request: its `host` and `proto`.
pub(crate) fn forwarded_host_proto(
    state: &AppState,
    headers: &HeaderMap,
) -> (Option<String>, Option<String>) {
    let last = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .rfind(|v| !v.is_empty())
    };
    match state.settings.forwarded {
        ForwardedHeader::Rfc7239 => {
            let elements = forwarded_elements(headers);
            let nearest = elements.last();
            (
                nearest.and_then(|e| element_value(e, "host")),
                nearest.and_then(|e| element_value(e, "proto")),
            )
        }
        ForwardedHeader::XForwardedFor => (last("x-forwarded-host"), last("x-forwarded-proto")),
    }
}

/// An address as proxies write it: `192.0.2.7`, `[2001:db8::1]`, either with a `:port`.
fn parse_node(node: &str) -> Result<IpAddr, ()> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let v6 = rest.split(']').next().unwrap_or("");
        return v6.parse::<IpAddr>().map_err(|_| ());
    }
    match node.rsplit_once(':') {
        Some((v4, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            v4.parse::<std::net::Ipv4Addr>().map(IpAddr::V4).map_err(|_| ())
        }
        _ => Err(()),
    }
}

/// Whether the connection comes from one of the configured trusted proxies.
pub(crate) fn from_trusted_proxy(state: &AppState, extensions: &http::Extensions) -> bool {
    extensions.get::<ConnectInfo<SocketAddr>>().is_some_and(|c| {
        let peer = c.0.ip().to_canonical();
        state.settings.trusted_proxies.iter().any(|n| n.contains(&peer))
    })
}

/// `403 DENIED` with ACR's firewall message when the registry's network rules don't admit
/// the request's client.
pub(crate) fn gate(
    state: &AppState,
    registry: &Registry,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<(), Response> {
    let net = &registry.network;
    if !net.restricted() {
        return Ok(());
    }
    let client = client_address(state, headers, extensions);
    let private =
        client.is_some_and(|ip| state.settings.private_networks.iter().any(|n| n.contains(&ip)));
    if net.admits(client, private) {
        return Ok(());
    }
    let shown = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let message = if net.public {
        format!(
            "client with IP '{shown}' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."
        )
    } else {
        format!(
            "client with IP '{shown}' is not allowed access: the registry '{}' has public network access disabled.",
            registry.name()
        )
    };
    Err(oci_error(StatusCode::FORBIDDEN, "DENIED", &message))
}
