//! Requests to the management API (ARM) as the admin or another principal.

use super::*;

/// The ARM api-version tests send.
pub const API: &str = "api-version=2025-11-01";

/// A management call as the admin; the status and the JSON body (`Null` when empty).
pub fn arm(w: &Wharf, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    arm_as(w, Some(&w.admin_token()), method, path, body)
}

/// A management call with a given token (or none); the status and the JSON body.
pub fn arm_as(
    w: &Wharf,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = if path.contains("api-version") {
        format!("{}{path}", w.url())
    } else {
        format!("{}{path}{sep}{API}", w.url())
    };
    let mut req = w.anon().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The ARM ID of a registry in the default subscription and resource group.
pub fn registry_id(name: &str) -> String {
    format!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}
