//! Access control as users meet it: every kind of caller against every kind of route, and
//! the attacks a registry on the internet sees.

use std::collections::BTreeMap;
use std::process::Command;

use reqwest::Method;
use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};

use crate::util::*;

const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000000";
const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/authz";

fn reg_id(name: &str) -> String {
    format!("{RG}/providers/Microsoft.ContainerRegistry/registries/{name}")
}

/// A service principal: its object id, app id and secret.
pub(crate) struct Sp {
    pub(crate) id: String,
    pub(crate) app: String,
    pub(crate) secret: String,
}

pub(crate) fn create_sp(w: &Wharf, name: &str) -> Sp {
    let r = w
        .graph_client()
        .post(format!("{}/v1.0/servicePrincipals", w.url()))
        .json(&json!({"displayName": name}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    Sp {
        id: v["id"].as_str().unwrap().into(),
        app: v["appId"].as_str().unwrap().into(),
        secret: v["passwordCredentials"][0]["secretText"].as_str().unwrap().into(),
    }
}

/// The id of a role definition by name.
fn role_id(w: &Wharf, name: &str) -> String {
    let (s, v) = arm(
        w,
        Method::GET,
        &format!("/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName eq '{name}'"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v["value"][0]["id"].as_str().unwrap_or_else(|| panic!("no role {name}: {v}")).to_owned()
}

pub(crate) fn assign(w: &Wharf, principal: &str, role: &str, scope: &str) -> String {
    let name = uuid();
    let (s, v) = arm(
        w,
        Method::PUT,
        &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        Some(
            json!({"properties": {"roleDefinitionId": role_id(w, role), "principalId": principal}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    name
}

fn uuid() -> String {
    let b = bytes(rand_seed(), 16);
    let h = hex::encode(b);
    format!("{}-{}-4{}-8{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn rand_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.as_nanos() as u64 ^ N.fetch_add(0x9E37_79B9, Ordering::Relaxed)
}

/// A JWT's payload (read, not verified).
fn payload(token: &str) -> Value {
    use base64::Engine as _;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap())
        .unwrap()
}

/// One caller of the matrix: what it sends to the management API and to the data plane.
struct Who {
    name: String,
    /// The `Authorization` it sends to the management API (none: nothing).
    arm: Option<String>,
    /// It has no management identity at all (a registry token): ARM rows don't apply.
    arm_na: bool,
    /// The `Authorization` it sends to the directory (a token for Graph's audience).
    graph: Option<String>,
    data: Option<String>,
}

/// The test's world: a server, two registries (classic and ABAC) in one resource group.
struct World {
    w: Wharf,
    legacy: String,
    abac: String,
    manifest: Vec<u8>,
    /// A service principal holding Owner at `/`, and one holding no role at all.
    root_owner: String,
    roleless: String,
    /// An import into legacyreg: its operation's path.
    operation: std::sync::OnceLock<String>,
}

/// Custom roles defined at the subscription: one the UAA of the resource group holds, one
/// nobody does.
const SUB_ROLE: &str = "33333333-0000-4000-8000-000000000001";
const SPARE_ROLE: &str = "33333333-0000-4000-8000-000000000002";

fn sub_role_body(id: &str) -> Value {
    json!({"properties": {"roleName": format!("Subscription registry reader {id}"),
        "permissions": [{"actions": ["Microsoft.ContainerRegistry/registries/read"]}],
        "assignableScopes": [SUB]}})
}

fn put_sub_role(w: &Wharf, id: &str) {
    let path = format!("{SUB}/providers/Microsoft.Authorization/roleDefinitions/{id}");
    let (s, v) = arm(w, Method::PUT, &path, Some(sub_role_body(id)));
    assert!(s == 200 || s == 201, "{v}");
}

impl World {
    fn data(&self, method: Method, login: &str, path: &str, auth: Option<&str>) -> RequestBuilder {
        let mut r =
            anon_client().request(method, format!("{}{path}", self.w.url())).header("host", login);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r
    }

    fn arm(&self, method: Method, path: &str, who: &Who, body: Option<Value>) -> Option<String> {
        if who.arm_na {
            return None;
        }
        Some(self.arm_status(method, path, who.arm.as_deref(), body).to_string())
    }

    fn arm_status(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> u16 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut r = anon_client().request(method, format!("{}{path}{sep}{API}", self.w.url()));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().unwrap().status().as_u16()
    }

    /// A directory POST (`/v1.0/servicePrincipals/{path}`) with the caller's Graph token.
    fn directory_post(&self, path: &str, who: &Who) -> Option<String> {
        if who.arm_na {
            return None;
        }
        let mut r = anon_client()
            .post(format!("{}/v1.0/servicePrincipals/{path}", self.w.url()))
            .json(&json!({"passwordCredential": {"displayName": "matrix"}}));
        if let Some(a) = &who.graph {
            r = r.header("authorization", a);
        }
        status(r.send().unwrap().status().as_u16())
    }

    /// What a denied request must not have changed: tags in both registries, the classic
    /// registry's resource, the role assignments.
    fn fingerprint(&self) -> String {
        let admin = admin_basic();
        let mut out = String::new();
        for login in [&self.legacy, &self.abac] {
            let tags = self
                .data(Method::GET, login, "/v2/app/tags/list", Some(&admin))
                .send()
                .unwrap()
                .text()
                .unwrap();
            out.push_str(&tags);
        }
        out.push_str(&arm(&self.w, Method::GET, &reg_id("legacyreg"), None).1.to_string());
        let (_, ra) = arm(
            &self.w,
            Method::GET,
            &format!("{RG}/providers/Microsoft.Authorization/roleAssignments"),
            None,
        );
        let mut names: Vec<&str> =
            ra["value"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        names.sort();
        out.push_str(&names.join(","));
        let (_, tokens) =
            arm(&self.w, Method::GET, &format!("{}/tokens", reg_id("legacyreg")), None);
        out.push_str(&tokens.to_string());
        out
    }

    fn push_tag(&self, login: &str, tag: &str) {
        let r = self
            .data(Method::PUT, login, &format!("/v2/app/manifests/{tag}"), Some(&admin_basic()))
            .header("content-type", OCI_MANIFEST)
            .body(self.manifest.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    fn delete_tag(&self, login: &str, tag: &str) {
        let r = self
            .data(Method::DELETE, login, &format!("/acr/v1/app/_tags/{tag}"), Some(&admin_basic()))
            .send()
            .unwrap();
        assert!(r.status().is_success() || r.status() == 404, "{}", r.status());
    }
}

/// A row of the matrix: a request made as a caller; its status (and what a token granted).
struct Row {
    name: &'static str,
    run: fn(&World, &Who) -> Option<String>,
    /// After a success: put things back for the next caller.
    undo: fn(&World),
}

fn status(s: u16) -> Option<String> {
    Some(s.to_string())
}

fn nothing(_: &World) {}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "ARM  GET  subscriptions (listed)",
            run: |x, who| {
                if who.arm_na {
                    return None;
                }
                let mut r = anon_client().get(format!("{}/subscriptions?{API}", x.w.url()));
                if let Some(a) = &who.arm {
                    r = r.header("authorization", a);
                }
                let r = r.send().unwrap();
                let code = r.status().as_u16();
                let n = r.json::<Value>().ok().and_then(|v| v["value"].as_array().map(Vec::len));
                Some(match n {
                    Some(n) => format!("{code}:{n}"),
                    None => code.to_string(),
                })
            },
            undo: nothing,
        },
        Row {
            name: "ARM  GET  registry",
            run: |x, who| x.arm(Method::GET, &reg_id("legacyreg"), who, None),
            undo: nothing,
        },
        Row {
            name: "ARM  PATCH registry tags",
            run: |x, who| {
                x.arm(
                    Method::PATCH,
                    &reg_id("legacyreg"),
                    who,
                    Some(json!({"tags": {"by": "someone"}})),
                )
            },
            undo: |x| {
                arm(&x.w, Method::PATCH, &reg_id("legacyreg"), Some(json!({"tags": {}})));
            },
        },
        Row {
            name: "ARM  POST importImage (resourceId source)",
            run: |x, who| {
                let body = json!({"source": {"resourceId": reg_id("legacyreg"), "sourceImage": "app:v1"}, "targetTags": ["app:imported"]});
                let path = format!("{}/importImage", reg_id("legacyreg"));
                x.arm(Method::POST, &path, who, Some(body))
            },
            undo: |x| x.delete_tag(&x.legacy, "imported"),
        },
        Row {
            name: "ARM  GET  role assignments",
            run: |x, who| {
                let path = format!("{RG}/providers/Microsoft.Authorization/roleAssignments");
                x.arm(Method::GET, &path, who, None)
            },
            undo: nothing,
        },
        Row {
            name: "ARM  PUT  role assignment",
            run: |x, who| {
                let path = format!(
                    "{RG}/providers/Microsoft.Authorization/roleAssignments/11111111-2222-4333-8444-555555555555"
                );
                let body = json!({"properties": {"roleDefinitionId": role_id(&x.w, "Owner"), "principalId": "admin"}});
                x.arm(Method::PUT, &path, who, Some(body))
            },
            undo: |x| {
                arm(
                    &x.w,
                    Method::DELETE,
                    &format!(
                        "{RG}/providers/Microsoft.Authorization/roleAssignments/11111111-2222-4333-8444-555555555555"
                    ),
                    None,
                );
            },
        },
        Row {
            name: "ARM  POST listCredentials (admin user)",
            run: |x, who| {
                let path = format!("{}/listCredentials", reg_id("legacyreg"));
                x.arm(Method::POST, &path, who, None)
            },
            undo: nothing,
        },
        Row {
            name: "ARM  PUT  token",
            run: |x, who| {
                let reg = reg_id("legacyreg");
                let body = json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/_repositories_pull")}});
                x.arm(Method::PUT, &format!("{reg}/tokens/matrix-token"), who, Some(body))
            },
            undo: |x| {
                arm(
                    &x.w,
                    Method::DELETE,
                    &format!("{}/tokens/matrix-token", reg_id("legacyreg")),
                    None,
                );
            },
        },
        Row {
            name: "ARM  GET  resources (listed)",
            run: |x, who| {
                if who.arm_na {
                    return None;
                }
                let mut r = anon_client().get(format!(
                    "{}/subscriptions/00000000-0000-0000-0000-000000000000/resources?{API}",
                    x.w.url()
                ));
                if let Some(a) = &who.arm {
                    r = r.header("authorization", a);
                }
                let r = r.send().unwrap();
                let code = r.status().as_u16();
                let n = r.json::<Value>().ok().and_then(|v| v["value"].as_array().map(Vec::len));
                Some(match n {
                    Some(n) => format!("{code}:{n}"),
                    None => code.to_string(),
                })
            },
            undo: nothing,
        },
        Row {
            name: "ARM  PATCH network rules",
            run: |x, who| {
                let body = json!({"properties": {"networkRuleSet": {"defaultAction": "Allow", "ipRules": [{"action": "Allow", "value": "192.0.2.0/24"}]}}});
                x.arm(Method::PATCH, &reg_id("legacyreg"), who, Some(body))
            },
            undo: |x| {
                let body = json!({"properties": {"networkRuleSet": {"defaultAction": "Allow", "ipRules": []}}});
                arm(&x.w, Method::PATCH, &reg_id("legacyreg"), Some(body));
            },
        },
        Row {
            name: "ARM  PUT  scope map",
            run: |x, who| {
                let body = json!({"properties": {"actions": ["repositories/app/content/read"]}});
                let path = format!("{}/scopeMaps/matrix-map", reg_id("legacyreg"));
                x.arm(Method::PUT, &path, who, Some(body))
            },
            undo: |x| {
                arm(
                    &x.w,
                    Method::DELETE,
                    &format!("{}/scopeMaps/matrix-map", reg_id("legacyreg")),
                    None,
                );
            },
        },
        Row {
            name: "ARM  POST generateCredentials",
            run: |x, who| {
                let reg = reg_id("legacyreg");
                let body =
                    json!({"tokenId": format!("{reg}/tokens/other-token"), "name": "password2"});
                x.arm(Method::POST, &format!("{reg}/generateCredentials"), who, Some(body))
            },
            undo: nothing,
        },
        Row {
            name: "ARM  DELETE registry",
            run: |x, who| x.arm(Method::DELETE, &reg_id("doomedreg"), who, None),
            undo: |x| {
                let (s, _) = arm(
                    &x.w,
                    Method::PUT,
                    &reg_id("doomedreg"),
                    Some(json!({"location": "local", "sku": {"name": "Basic"}})),
                );
                assert_eq!(s, 201);
            },
        },
        Row {
            name: "DIR  POST servicePrincipals",
            run: |x, who| {
                if who.arm_na {
                    return None;
                }
                let mut r = anon_client()
                    .post(format!("{}/v1.0/servicePrincipals", x.w.url()))
                    .json(&json!({"displayName": "matrix-made"}));
                if let Some(a) = &who.graph {
                    r = r.header("authorization", a);
                }
                status(r.send().unwrap().status().as_u16())
            },
            undo: |x| {
                let list: Value =
                    x.w.graph_client()
                        .get(format!("{}/v1.0/servicePrincipals", x.w.url()))
                        .send()
                        .unwrap()
                        .json()
                        .unwrap();
                for sp in list["value"].as_array().unwrap() {
                    if sp["displayName"] == "matrix-made" {
                        let id = sp["id"].as_str().unwrap();
                        x.w.graph_client()
                            .delete(format!("{}/v1.0/servicePrincipals/{id}", x.w.url()))
                            .send()
                            .unwrap();
                    }
                }
            },
        },
        Row {
            name: "ARM  GET  subscription",
            run: |x, who| x.arm(Method::GET, SUB, who, None),
            undo: nothing,
        },
        Row {
            name: "ARM  PUT  resource group",
            run: |x, who| {
                let path = format!("{SUB}/resourceGroups/matrixrg");
                x.arm(Method::PUT, &path, who, Some(json!({"location": "local"})))
            },
            undo: |x| {
                arm(&x.w, Method::DELETE, &format!("{SUB}/resourceGroups/matrixrg"), None);
            },
        },
        Row {
            name: "ARM  POST checkNameAvailability",
            run: |x, who| {
                let path =
                    format!("{SUB}/providers/Microsoft.ContainerRegistry/checkNameAvailability");
                let body =
                    json!({"name": "freename1", "type": "Microsoft.ContainerRegistry/registries"});
                x.arm(Method::POST, &path, who, Some(body))
            },
            undo: nothing,
        },
        Row {
            name: "ARM  PUT  registry (new)",
            run: |x, who| {
                let body = json!({"location": "local", "sku": {"name": "Basic"}});
                x.arm(Method::PUT, &reg_id("matrixnew"), who, Some(body))
            },
            undo: |x| {
                arm(&x.w, Method::DELETE, &reg_id("matrixnew"), None);
            },
        },
        Row {
            name: "ARM  GET  role definitions",
            run: |x, who| {
                let path = format!("{RG}/providers/Microsoft.Authorization/roleDefinitions");
                x.arm(Method::GET, &path, who, None)
            },
            undo: nothing,
        },
        Row {
            name: "ARM  PUT  role definition",
            run: |x, who| {
                let path = format!(
                    "{RG}/providers/Microsoft.Authorization/roleDefinitions/22222222-0000-4000-8000-000000000002"
                );
                let body = json!({"properties": {"roleName": "Matrix made", "permissions": [{"actions": [
                    "Microsoft.ContainerRegistry/registries/read"]}], "assignableScopes": [RG]}});
                x.arm(Method::PUT, &path, who, Some(body))
            },
            undo: |x| {
                let path = format!(
                    "{RG}/providers/Microsoft.Authorization/roleDefinitions/22222222-0000-4000-8000-000000000002"
                );
                arm(&x.w, Method::DELETE, &path, None);
            },
        },
        Row {
            name: "ARM  GET  tokens",
            run: |x, who| x.arm(Method::GET, &format!("{}/tokens", reg_id("legacyreg")), who, None),
            undo: nothing,
        },
        Row {
            name: "ARM  DELETE token",
            run: |x, who| {
                x.arm(
                    Method::DELETE,
                    &format!("{}/tokens/victim-token", reg_id("legacyreg")),
                    who,
                    None,
                )
            },
            undo: |x| {
                let reg = reg_id("legacyreg");
                let body = json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/_repositories_pull")}});
                let (s, _) =
                    arm(&x.w, Method::PUT, &format!("{reg}/tokens/victim-token"), Some(body));
                assert_eq!(s, 201);
            },
        },
        Row {
            name: "ARM  POST regenerateCredential",
            run: |x, who| {
                let path = format!("{}/regenerateCredential", reg_id("legacyreg"));
                x.arm(Method::POST, &path, who, Some(json!({"name": "password2"})))
            },
            undo: nothing,
        },
        Row {
            name: "DIR  GET  servicePrincipals",
            run: |x, who| {
                if who.arm_na {
                    return None;
                }
                let mut r = anon_client().get(format!("{}/v1.0/servicePrincipals", x.w.url()));
                if let Some(a) = &who.graph {
                    r = r.header("authorization", a);
                }
                status(r.send().unwrap().status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "ADM  POST /_wharf/gc",
            run: |x, who| {
                if who.arm_na {
                    return None;
                }
                let mut r = anon_client().post(format!("{}/_wharf/gc", x.w.url()));
                if let Some(a) = &who.arm {
                    r = r.header("authorization", a);
                }
                let r = r.send().unwrap();
                status(r.status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "V2   GET  /v2/",
            run: |x, who| {
                status(
                    x.data(Method::GET, &x.legacy, "/v2/", who.data.as_deref())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16(),
                )
            },
            undo: nothing,
        },
        Row {
            name: "V2   GET  manifest (classic)",
            run: |x, who| {
                status(
                    x.data(Method::GET, &x.legacy, "/v2/app/manifests/v1", who.data.as_deref())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16(),
                )
            },
            undo: nothing,
        },
        Row {
            name: "V2   PUT  manifest (classic)",
            run: |x, who| {
                let r = x
                    .data(Method::PUT, &x.legacy, "/v2/app/manifests/pushed", who.data.as_deref())
                    .header("content-type", OCI_MANIFEST)
                    .body(x.manifest.clone())
                    .send()
                    .unwrap();
                status(r.status().as_u16())
            },
            undo: |x| x.delete_tag(&x.legacy, "pushed"),
        },
        Row {
            name: "V2   DELETE manifest (classic)",
            run: |x, who| {
                let d = digest_of(&x.manifest);
                let r = x
                    .data(
                        Method::DELETE,
                        &x.legacy,
                        &format!("/v2/app/manifests/{d}"),
                        who.data.as_deref(),
                    )
                    .send()
                    .unwrap();
                status(r.status().as_u16())
            },
            undo: |x| {
                x.push_tag(&x.legacy, "v1");
                x.push_tag(&x.legacy, "victim");
            },
        },
        Row {
            name: "V2   GET  _catalog (classic)",
            run: |x, who| {
                status(
                    x.data(Method::GET, &x.legacy, "/v2/_catalog", who.data.as_deref())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16(),
                )
            },
            undo: nothing,
        },
        Row {
            name: "V2   GET  manifest (ABAC)",
            run: |x, who| {
                status(
                    x.data(Method::GET, &x.abac, "/v2/app/manifests/v1", who.data.as_deref())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16(),
                )
            },
            undo: nothing,
        },
        Row {
            name: "V2   PUT  manifest (ABAC)",
            run: |x, who| {
                let r = x
                    .data(Method::PUT, &x.abac, "/v2/app/manifests/pushed", who.data.as_deref())
                    .header("content-type", OCI_MANIFEST)
                    .body(x.manifest.clone())
                    .send()
                    .unwrap();
                status(r.status().as_u16())
            },
            undo: |x| x.delete_tag(&x.abac, "pushed"),
        },
        Row {
            name: "ACR  GET  _tags (classic)",
            run: |x, who| {
                status(
                    x.data(Method::GET, &x.legacy, "/acr/v1/app/_tags", who.data.as_deref())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16(),
                )
            },
            undo: nothing,
        },
        Row {
            name: "ACR  DELETE tag (classic)",
            run: |x, who| {
                let r = x
                    .data(
                        Method::DELETE,
                        &x.legacy,
                        "/acr/v1/app/_tags/victim",
                        who.data.as_deref(),
                    )
                    .send()
                    .unwrap();
                status(r.status().as_u16())
            },
            undo: |x| x.push_tag(&x.legacy, "victim"),
        },
        Row {
            name: "ACR  GET  _catalog (ABAC)",
            run: |x, who| {
                status(
                    x.data(Method::GET, &x.abac, "/acr/v1/_catalog", who.data.as_deref())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16(),
                )
            },
            undo: nothing,
        },
        Row {
            name: "V2   POST blob upload (classic)",
            run: |x, who| {
                status(
                    x.data(Method::POST, &x.legacy, "/v2/app/blobs/uploads/", who.data.as_deref())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16(),
                )
            },
            undo: nothing,
        },
        Row {
            name: "TOK  POST /oauth2/exchange",
            run: |x, who| {
                if who.arm_na {
                    return None;
                }
                let token =
                    who.arm.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
                let r = x
                    .data(Method::POST, &x.legacy, "/oauth2/exchange", None)
                    .form(&[
                        ("grant_type", "access_token"),
                        ("service", x.legacy.as_str()),
                        ("access_token", token),
                    ])
                    .send()
                    .unwrap();
                status(r.status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "V2   GET  tags/list (classic)",
            run: |x, who| {
                let r = x.data(Method::GET, &x.legacy, "/v2/app/tags/list", who.data.as_deref());
                status(r.send().unwrap().status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "V2   HEAD blob (classic)",
            run: |x, who| {
                let m: Value = serde_json::from_slice(&x.manifest).unwrap();
                let digest = m["layers"][0]["digest"].as_str().unwrap();
                let path = format!("/v2/app/blobs/{digest}");
                let r = x.data(Method::HEAD, &x.legacy, &path, who.data.as_deref());
                status(r.send().unwrap().status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "V2   GET  referrers (classic)",
            run: |x, who| {
                let path = format!("/v2/app/referrers/{}", digest_of(&x.manifest));
                let r = x.data(Method::GET, &x.legacy, &path, who.data.as_deref());
                status(r.send().unwrap().status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "ACR  GET  _manifests (classic)",
            run: |x, who| {
                let r =
                    x.data(Method::GET, &x.legacy, "/acr/v1/app/_manifests", who.data.as_deref());
                status(r.send().unwrap().status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "TOK  POST /oauth2/token password grant",
            run: |x, who| {
                use base64::Engine as _;
                let basic = who.data.as_deref().and_then(|a| a.strip_prefix("Basic "));
                if who.data.is_some() && basic.is_none() {
                    return None;
                }
                let (user, password) = match basic {
                    Some(b) => {
                        let raw = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
                        let raw = String::from_utf8(raw).unwrap();
                        let (u, p) = raw.split_once(':').unwrap();
                        (u.to_owned(), p.to_owned())
                    }
                    None => (String::new(), String::new()),
                };
                let r = x
                    .data(Method::POST, &x.legacy, "/oauth2/token", None)
                    .form(&[
                        ("grant_type", "password"),
                        ("service", x.legacy.as_str()),
                        ("scope", "repository:app:pull"),
                        ("username", user.as_str()),
                        ("password", password.as_str()),
                    ])
                    .send()
                    .unwrap();
                status(r.status().as_u16())
            },
            undo: nothing,
        },
        Row {
            name: "TOK  GET  /oauth2/token app:pull,push",
            run: |x, who| {
                let auth = who.data.as_deref().filter(|a| a.starts_with("Basic"));
                if who.data.is_some() && auth.is_none() {
                    return None;
                }
                let r = x
                    .data(
                        Method::GET,
                        &x.legacy,
                        "/oauth2/token?service=x&scope=repository:app:pull,push",
                        auth,
                    )
                    .send()
                    .unwrap();
                let code = r.status().as_u16();
                if code != 200 {
                    return status(code);
                }
                let t: Value = r.json().unwrap();
                let access = payload(t["access_token"].as_str().unwrap())["access"].clone();
                // pull and push, as r and w.
                let granted: String = access
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|a| a["actions"].as_array().unwrap().iter())
                    .map(|x| if x == "pull" { "r" } else { "w" })
                    .collect();
                Some(format!("200:{}", if granted.is_empty() { "-" } else { &granted }))
            },
            undo: nothing,
        },
        Row {
            name: "ARM  PUT  role def. of the sub, at RG",
            run: |x, who| {
                let path =
                    format!("{RG}/providers/Microsoft.Authorization/roleDefinitions/{SUB_ROLE}");
                let body = json!({"properties": {"roleName": "Subscription registry reader (rewritten)",
                    "permissions": [{"actions": ["*"]}], "assignableScopes": [RG]}});
                x.arm(Method::PUT, &path, who, Some(body))
            },
            undo: |x| put_sub_role(&x.w, SUB_ROLE),
        },
        Row {
            name: "ARM  DELETE role def. of the sub, at RG",
            run: |x, who| {
                let path =
                    format!("{RG}/providers/Microsoft.Authorization/roleDefinitions/{SPARE_ROLE}");
                x.arm(Method::DELETE, &path, who, None)
            },
            undo: |x| put_sub_role(&x.w, SPARE_ROLE),
        },
        Row {
            name: "ARM  GET  resource groups (listed)",
            run: |x, who| {
                if who.arm_na {
                    return None;
                }
                let mut r = anon_client().get(format!("{}{SUB}/resourcegroups?{API}", x.w.url()));
                if let Some(a) = &who.arm {
                    r = r.header("authorization", a);
                }
                let r = r.send().unwrap();
                let code = r.status().as_u16();
                let n = r.json::<Value>().ok().and_then(|v| v["value"].as_array().map(Vec::len));
                Some(n.map_or(code.to_string(), |n| format!("{code}:{n}")))
            },
            undo: nothing,
        },
        Row {
            name: "ARM  GET  import operation (legacyreg)",
            run: |x, who| x.arm(Method::GET, x.operation.get().unwrap(), who, None),
            undo: nothing,
        },
        Row {
            name: "DIR  POST addPassword (Owner at /)",
            run: |x, who| x.directory_post(&format!("{}/addPassword", x.root_owner), who),
            undo: nothing,
        },
        Row {
            name: "DIR  POST addPassword (no role)",
            run: |x, who| x.directory_post(&format!("{}/addPassword", x.roleless), who),
            undo: nothing,
        },
    ]
}

/// Every route × every kind of caller → the status each gets, printed as a table and kept
/// as a snapshot; a denied request changes nothing.
#[test]
fn authorization_matrix() {
    // A generous failure limit: the wrong-password column fails on every row.
    let w = Wharf::start_with_config("[auth]\nmax_failed_sign_ins = 1000\n", &[]);
    let (s, _) = arm(&w, Method::PUT, RG, Some(json!({"location": "local"})));
    assert_eq!(s, 201);
    for (name, mode) in [
        ("legacyreg", "LegacyRegistryPermissions"),
        ("abacreg", "AbacRepositoryPermissions"),
        ("doomedreg", "LegacyRegistryPermissions"),
    ] {
        let (s, v) = arm(
            &w,
            Method::PUT,
            &reg_id(name),
            Some(
                json!({"location": "local", "sku": {"name": "Premium"}, "properties": {"roleAssignmentMode": mode}}),
            ),
        );
        assert_eq!(s, 201, "{v}");
    }
    // In ABAC mode even the Owner reads and writes content only through a Repository role.
    let admin_id = {
        let r = w.graph_client().get(format!("{}/v1.0/users/admin", w.url())).send().unwrap();
        r.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned()
    };
    assign(&w, &admin_id, "Container Registry Repository Contributor", &reg_id("abacreg"));

    // Custom roles of the subscription; a principal owning everything, one holding nothing.
    put_sub_role(&w, SUB_ROLE);
    put_sub_role(&w, SPARE_ROLE);
    let root_owner = create_sp(&w, "root-owner");
    assign(&w, &root_owner.id, "Owner", "/");
    let roleless = create_sp(&w, "roleless");
    let legacy = format!("legacyreg.localhost:{}", w.port);
    let abac = format!("abacreg.localhost:{}", w.port);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = bytes(7, 1000);
    let manifest = image_manifest(&config, &[&layer]);
    let world = World {
        w,
        legacy: legacy.clone(),
        abac: abac.clone(),
        manifest,
        root_owner: root_owner.id,
        roleless: roleless.id,
        operation: std::sync::OnceLock::new(),
    };
    for login in [&legacy, &abac] {
        for b in [&config, &layer] {
            let r = world
                .data(
                    Method::POST,
                    login,
                    &format!("/v2/app/blobs/uploads/?digest={}", digest_of(b)),
                    Some(&admin_basic()),
                )
                .body(b.clone())
                .send()
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        world.push_tag(login, "v1");
        world.push_tag(login, "victim");
    }
    let w = &world.w;
    // An import into legacyreg, whose operation each caller polls.
    let r = w
        .arm_client()
        .post(format!("{}{}/importImage?{API}", w.url(), reg_id("legacyreg")))
        .json(&json!({"source": {"resourceId": reg_id("legacyreg"), "sourceImage": "app:v1"},
                      "targetTags": ["app:op-probe"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let location = header_value(&r, "location");
    let path = location.split_once("/subscriptions/").map(|(_, p)| format!("/subscriptions/{p}"));
    let path = path.unwrap().split('?').next().unwrap().to_owned();
    world.operation.set(path).unwrap();

    // The callers (and every secret they hold, to look for in the log afterwards).
    let mut secrets: Vec<String> = Vec::new();
    let mut who: Vec<Who> =
        vec![Who { name: "anonymous".into(), arm: None, arm_na: false, graph: None, data: None }];
    let pull = create_sp(w, "puller");
    secrets.push(pull.secret.clone());
    assign(w, &pull.id, "AcrPull", RG);
    who.push(Who {
        name: "wrong-password".into(),
        arm: Some("Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into()),
        arm_na: false,
        graph: Some("Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into()),
        data: Some(basic(&pull.app, "not-the-secret")),
    });
    let expired = create_sp(w, "expired");
    secrets.push(expired.secret.clone());
    assign(w, &expired.id, "AcrPull", RG);
    let db = w.data.join("wharf.db");
    run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA busy_timeout=5000'); c.execute('UPDATE credentials SET expires_at=1 WHERE principal=?', (sys.argv[2],)); c.commit()",
        db.to_str().unwrap(),
        &expired.id,
    ]));
    let r = anon_client()
        .post(format!("{}/common/oauth2/v2.0/token", w.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", expired.app.as_str()),
            ("client_secret", expired.secret.as_str()),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "an expired secret gets no token");
    who.push(Who {
        name: "expired-secret".into(),
        arm: None,
        arm_na: false,
        graph: None,
        data: Some(basic(&expired.app, &expired.secret)),
    });
    let roles = [
        "Owner",
        "Contributor",
        "Reader",
        "User Access Administrator",
        "AcrPull",
        "AcrPush",
        "AcrDelete",
        "AcrImageSigner",
        "Container Registry Data Importer and Data Reader",
        "Container Registry Repository Reader",
        "Container Registry Repository Writer",
        "Container Registry Repository Contributor",
        "Container Registry Repository Catalog Lister",
    ];
    for role in roles {
        let sp = create_sp(w, &role.replace(' ', "-"));
        secrets.push(sp.secret.clone());
        assign(w, &sp.id, role, RG);
        who.push(Who {
            name: role.into(),
            arm: Some(format!("Bearer {}", w.token_for_app(&sp.app, &sp.secret))),
            arm_na: false,
            graph: Some(format!("Bearer {}", w.graph_token_for_app(&sp.app, &sp.secret))),
            data: Some(basic(&sp.app, &sp.secret)),
        });
    }
    // The resource group's User Access Administrator also holds the subscription's role.
    let uaa = who.iter().find(|c| c.name == "User Access Administrator").unwrap();
    let uaa_token = uaa.arm.clone().unwrap();
    let uaa_id =
        payload(uaa_token.trim_start_matches("Bearer "))["oid"].as_str().unwrap().to_owned();
    assign(w, &uaa_id, &format!("Subscription registry reader {SUB_ROLE}"), RG);
    // A Contributor of everything, and a Directory Administrator with no other role.
    for (name, role) in [
        ("Contributor at /", "Contributor"),
        ("Directory Administrator", "Directory Administrator"),
    ] {
        let sp = create_sp(w, &name.replace([' ', '/'], "-"));
        secrets.push(sp.secret.clone());
        assign(w, &sp.id, role, "/");
        who.push(Who {
            name: name.into(),
            arm: Some(format!("Bearer {}", w.token_for_app(&sp.app, &sp.secret))),
            arm_na: false,
            graph: Some(format!("Bearer {}", w.graph_token_for_app(&sp.app, &sp.secret))),
            data: Some(basic(&sp.app, &sp.secret)),
        });
    }
    let nobody = create_sp(w, "no-role");
    secrets.push(nobody.secret.clone());
    who.push(Who {
        name: "no role assignment".into(),
        arm: Some(format!("Bearer {}", w.token_for_app(&nobody.app, &nobody.secret))),
        arm_na: false,
        graph: Some(format!("Bearer {}", w.graph_token_for_app(&nobody.app, &nobody.secret))),
        data: Some(basic(&nobody.app, &nobody.secret)),
    });
    // A custom role that may import and nothing else (what ACR's docs give as an example).
    let custom = "11111111-0000-4000-8000-000000000001";
    let (s, v) = arm(
        w,
        Method::PUT,
        &format!("{RG}/providers/Microsoft.Authorization/roleDefinitions/{custom}"),
        Some(json!({"properties": {"roleName": "Importer only", "permissions": [{"actions": [
            "Microsoft.ContainerRegistry/registries/importImage/action",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/pull/read"]}], "assignableScopes": [RG]}})),
    );
    assert_eq!(s, 201, "{v}");
    let importer = create_sp(w, "importer");
    secrets.push(importer.secret.clone());
    assign(w, &importer.id, "Importer only", RG);
    who.push(Who {
        name: "custom: import only".into(),
        arm: Some(format!("Bearer {}", w.token_for_app(&importer.app, &importer.secret))),
        arm_na: false,
        graph: Some(format!("Bearer {}", w.graph_token_for_app(&importer.app, &importer.secret))),
        data: Some(basic(&importer.app, &importer.secret)),
    });
    // A registry token the admin got for another repository.
    let r = world
        .data(
            Method::GET,
            &legacy,
            "/oauth2/token?scope=repository:other:pull,push,delete",
            Some(&admin_basic()),
        )
        .send()
        .unwrap();
    let other: Value = r.json().unwrap();
    who.push(Who {
        name: "token for repo 'other'".into(),
        arm: None,
        arm_na: true,
        graph: None,
        data: Some(format!("Bearer {}", other["access_token"].as_str().unwrap())),
    });

    // The registry's own credentials: its admin user, a token for another repository, and a
    // token with every right that was then disabled.
    let (s, v) = arm(
        w,
        Method::PATCH,
        &reg_id("legacyreg"),
        Some(json!({"properties": {"adminUserEnabled": true}})),
    );
    assert_eq!(s, 200, "{v}");
    let (_, creds) =
        arm(w, Method::POST, &format!("{}/listCredentials", reg_id("legacyreg")), None);
    let admin_user_password = creds["passwords"][0]["value"].as_str().unwrap().to_owned();
    secrets.push(admin_user_password.clone());
    who.push(Who {
        name: "admin user of legacyreg".into(),
        arm: None,
        arm_na: true,
        graph: None,
        data: Some(basic("legacyreg", &admin_user_password)),
    });
    let token_secret = |name: &str, map: &str| {
        let reg = reg_id("legacyreg");
        let (s, v) = arm(
            w,
            Method::PUT,
            &format!("{reg}/tokens/{name}"),
            Some(json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/{map}")}})),
        );
        assert_eq!(s, 201, "{v}");
        let (s, v) = arm(
            w,
            Method::POST,
            &format!("{reg}/generateCredentials"),
            Some(json!({"tokenId": format!("{reg}/tokens/{name}"), "name": "password1"})),
        );
        assert_eq!(s, 200, "{v}");
        v["passwords"][0]["value"].as_str().unwrap().to_owned()
    };
    let (s, v) = arm(
        w,
        Method::PUT,
        &format!("{}/scopeMaps/other-only", reg_id("legacyreg")),
        Some(json!({"properties": {"actions": [
            "repositories/other/content/read", "repositories/other/content/write",
            "repositories/other/content/delete"]}})),
    );
    assert_eq!(s, 201, "{v}");
    token_secret("victim-token", "_repositories_pull");
    let other_token = token_secret("other-token", "other-only");
    secrets.push(other_token.clone());
    who.push(Who {
        name: "token with scope map for 'other'".into(),
        arm: None,
        arm_na: true,
        graph: None,
        data: Some(basic("other-token", &other_token)),
    });
    let disabled = token_secret("disabled-token", "_repositories_admin");
    secrets.push(disabled.clone());
    let (s, v) = arm(
        w,
        Method::PATCH,
        &format!("{}/tokens/disabled-token", reg_id("legacyreg")),
        Some(json!({"properties": {"status": "disabled"}})),
    );
    assert_eq!(s, 200, "{v}");
    who.push(Who {
        name: "disabled token (_repositories_admin)".into(),
        arm: None,
        arm_na: true,
        graph: None,
        data: Some(basic("disabled-token", &disabled)),
    });

    // Each row for each caller; a refusal changes nothing.
    let mut table: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let rows = rows();
    for (i, row) in rows.iter().enumerate() {
        // What a refusal must leave as it was: read once per row, and again after each
        // success has been undone.
        let mut before = world.fingerprint();
        for caller in &who {
            let cell = (row.run)(&world, caller);
            let ok = cell.as_deref().is_some_and(|c| c.starts_with('2'));
            if ok {
                (row.undo)(&world);
                before = world.fingerprint();
            } else if cell.is_some() {
                assert_eq!(
                    world.fingerprint(),
                    before,
                    "{} as {}: a refusal changed something",
                    row.name,
                    caller.name
                );
            }
            table.entry(i).or_default().push(cell.unwrap_or_else(|| "-".into()));
        }
    }
    // Print: callers down, routes across would be too wide; routes down, callers across.
    let mut out = String::new();
    for (n, caller) in who.iter().enumerate() {
        out.push_str(&format!("c{n:<2} = {}\n", caller.name));
    }
    out.push('\n');
    out.push_str(&format!("{:<42}", "route"));
    for n in 0..who.len() {
        out.push_str(&format!("{:>7}", format!("c{n}")));
    }

    out.push('\n');
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&format!("{:<42}", row.name));
        for cell in &table[&i] {
            out.push_str(&format!("{cell:>7}"));
        }
        out.push('\n');
    }
    out.push_str("TOK: what the token grants (r = pull, w = push); - = not applicable\n");
    println!("{out}");
    // No secret or token used above reached the log.
    let log = world.w.log();
    for caller in &who {
        for cred in [&caller.arm, &caller.data].into_iter().flatten() {
            let secret = cred.split_once(' ').map_or(cred.as_str(), |(_, s)| s);
            assert!(!log.contains(secret), "{}'s credentials are in the log", caller.name);
        }
    }
    assert!(!log.contains(ADMIN_PASSWORD));
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a client secret is in the log");
    }
    insta::assert_snapshot!("authorization_matrix", out);
}

/// A registry access token of `w`'s default registry for `scope`, as the admin.
fn registry_token(w: &Wharf, host: &str, scope: &str) -> String {
    let r = anon_client()
        .get(format!("{}/oauth2/token?service=x&scope={scope}", w.url()))
        .header("host", host)
        .header("authorization", admin_basic())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_owned()
}

fn with_payload(token: &str, change: impl FnOnce(&mut Value)) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut p = payload(token);
    change(&mut p);
    format!("{}.{}.{}", parts[0], b64.encode(p.to_string()), parts[2])
}

#[test]
fn tokens_cannot_be_forged_widened_or_carried_elsewhere() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let w = Wharf::start();
    w.reg().push_image("a", "v1", &[b"layer a"]);
    w.reg().push_image("b", "v1", &[b"layer b"]);
    cli(&w, &["registry", "create", "-n", "second1"]).ok_json();
    let get = |host: &str, path: &str, auth: &str| {
        anon_client()
            .get(format!("{}{path}", w.url()))
            .header("host", host)
            .header("authorization", auth)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let host = w.host();
    let a = registry_token(&w, &host, "repository:a:pull");
    assert_eq!(get(&host, "/v2/a/manifests/v1", &format!("Bearer {a}")), 200);
    // A token for `a` opens nothing in `b`, nor in another registry of the same server.
    assert_eq!(get(&host, "/v2/b/manifests/v1", &format!("Bearer {a}")), 401);
    let second = format!("second1.localhost:{}", w.port);
    assert_eq!(get(&second, "/v2/a/manifests/v1", &format!("Bearer {a}")), 401);
    // Widening the claims breaks the signature.
    let widened = with_payload(&a, |p| {
        p["access"] = json!([{"type": "repository", "name": "b", "actions": ["pull", "push"]}])
    });
    assert_eq!(get(&host, "/v2/b/manifests/v1", &format!("Bearer {widened}")), 401);
    let longer = with_payload(&a, |p| p["exp"] = json!(p["exp"].as_i64().unwrap() + 86400));
    assert_eq!(get(&host, "/v2/a/manifests/v1", &format!("Bearer {longer}")), 401);
    // `alg: none`, and HMAC keyed with the public key (key confusion).
    let claims = payload(&a);
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    assert_eq!(get(&host, "/v2/a/manifests/v1", &format!("Bearer {none}")), 401);
    let jwks: Value = anon_client()
        .get(format!("{}/common/discovery/v2.0/keys", w.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let public = jwks["keys"][0].to_string();
    let header = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let mac = hmac_sha256(public.as_bytes(), signing_input.as_bytes());
    let confused = format!("{signing_input}.{}", b64.encode(mac));
    assert_eq!(get(&host, "/v2/a/manifests/v1", &format!("Bearer {confused}")), 401);
    // A token of another wharf (another key) is nobody here.
    let other = Wharf::start();
    let foreign = registry_token(&other, &other.host(), "repository:a:pull");
    assert_eq!(get(&host, "/v2/a/manifests/v1", &format!("Bearer {foreign}")), 401);
    // Tokens don't cross planes: a management token isn't a registry token and back.
    let mgmt = w.admin_token();
    assert_eq!(get(&host, "/v2/a/manifests/v1", &format!("Bearer {mgmt}")), 401);
    let (s, _) = arm_as(&w, Some(&a), Method::GET, "/subscriptions", None);
    assert_eq!(s, 401);
    // The challenge says what went wrong.
    let r = anon_client()
        .get(format!("{}/v2/a/manifests/v1", w.url()))
        .header("authorization", format!("Bearer {widened}"))
        .send()
        .unwrap();
    let challenge = header_value(&r, "www-authenticate");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains(&format!("realm=\"http://{host}/oauth2/token\"")), "{challenge}");
}

fn header_value(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// HMAC-SHA256 (RFC 2104), written out: only this test forges one.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = if key.len() > 64 { Sha256::digest(key).to_vec() } else { key.to_vec() };
    k.resize(64, 0);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let ih = Sha256::new().chain_update(&inner).chain_update(msg).finalize();
    Sha256::new().chain_update(&outer).chain_update(ih).finalize().to_vec()
}

#[test]
fn credential_stuffing_meets_a_wall_per_name_and_address() {
    let w = Wharf::start();
    let sp = create_sp(&w, "target");
    assign(&w, &sp.id, "AcrPull", &registry_id("default"));
    let v2 = |user: &str, password: &str| {
        anon_client()
            .get(format!("{}/v2/", w.url()))
            .header("authorization", basic(user, password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for _ in 0..10 {
        assert_eq!(v2(&sp.app, "guess"), 401);
    }
    // The name is locked for a while: even the right secret, on every endpoint.
    assert_eq!(v2(&sp.app, &sp.secret), 429);
    let r = anon_client()
        .post(format!("{}/common/oauth2/v2.0/token", w.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sp.app.as_str()),
            ("client_secret", sp.secret.as_str()),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Others from the same address are not locked out by it.
    assert_eq!(v2("admin", ADMIN_PASSWORD), 200);
    let fresh = create_sp(&w, "fresh");
    assign(&w, &fresh.id, "AcrPull", &registry_id("default"));
    // Guessing many names from one address hits the address's own (higher) limit: a secret
    // not yet verified is refused from there; one already verified still passes.
    for i in 0..100 {
        v2(&format!("nobody{i}"), "guess");
    }
    assert_eq!(v2(&fresh.app, &fresh.secret), 429);
    assert_eq!(v2("admin", ADMIN_PASSWORD), 200);
    // Secrets are never echoed.
    assert!(!w.log().contains(&sp.secret));
}

/// 200 wrong guesses for one name at once: each reserves its attempt before the secret is
/// hashed, so no more than the limit are evaluated (the rest 429); the owner of the name,
/// signing in from another address meanwhile, is not locked out.
#[test]
fn parallel_guesses_meet_the_limit_before_hashing_and_lock_only_the_guesser() {
    let w = Wharf::start();
    let sp = create_sp(&w, "parallel-target");
    assign(&w, &sp.id, "AcrPull", &registry_id("default"));
    let v2 = |from: &str, password: &str| {
        client_from(from)
            .get(format!("{}/v2/", w.url()))
            .header("authorization", basic(&sp.app, password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let guesses: Vec<_> =
            (0..200).map(|i| scope.spawn(move || v2("127.0.0.1", &format!("guess-{i}")))).collect();
        guesses.into_iter().map(|g| g.join().unwrap()).collect()
    });
    let evaluated = codes.iter().filter(|c| **c == 401).count();
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(evaluated + refused, 200, "only 401 and 429: {codes:?}");
    assert!((1..=10).contains(&evaluated), "{evaluated} guesses were evaluated; the limit is 10");
    // The right secret from another address signs in (the name's ceiling is far off)...
    assert_eq!(v2("127.0.0.3", &sp.secret), 200);
    // ...and, once verified, passes from the guesser's address too; guesses there don't.
    assert_eq!(v2("127.0.0.1", &sp.secret), 200);
    assert_eq!(v2("127.0.0.1", "another-guess"), 429);
    assert!(!w.log().contains(&sp.secret));
}

#[test]
fn abac_conditions_scope_a_role_to_repositories() {
    let w = Wharf::start();
    let id = registry_id("default");
    let (s, _) = arm(
        &w,
        Method::PATCH,
        &id,
        Some(json!({"properties": {"roleAssignmentMode": "AbacRepositoryPermissions"}})),
    );
    assert_eq!(s, 200);
    let admin = cli(&w, &["ad", "user", "show", "--id", "admin"]).ok_json();
    let admin_id = admin["id"].as_str().unwrap();
    assign(&w, admin_id, "Container Registry Repository Contributor", &id);
    for repo in ["samples/app", "prod/app"] {
        w.reg().push_image(repo, "v1", &[repo.as_bytes()]);
    }
    let sp = create_sp(&w, "samples-reader");
    let condition = "((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})) OR (@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'samples/'))";
    let (s, v) = arm(
        &w,
        Method::PUT,
        &format!("{id}/providers/Microsoft.Authorization/roleAssignments/{}", uuid()),
        Some(json!({"properties": {
            "roleDefinitionId": role_id(&w, "Container Registry Repository Reader"),
            "principalId": sp.id, "condition": condition, "conditionVersion": "2.0"}})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["properties"]["condition"], condition);
    let get = |path: &str| {
        anon_client()
            .get(format!("{}{path}", w.url()))
            .header("authorization", basic(&sp.app, &sp.secret))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get("/v2/samples/app/manifests/v1"), 200);
    assert_eq!(get("/v2/prod/app/manifests/v1"), 401);
    // Names are checked before permissions: no way around the condition through the path.
    // (Sent as-is: reqwest would normalise `..` away.)
    let auth = basic(&sp.app, &sp.secret);
    for path in [
        "/v2/samples/../prod/app/manifests/v1",
        "/v2/samples/%2e%2e/prod/app/manifests/v1",
        "/v2/samples/..%2fprod/app/manifests/v1",
        "/v2/SAMPLES/../prod/app/manifests/v1",
    ] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let res = raw_request(w.port, &head, b"", false);
        assert!(res.starts_with("HTTP/1.1 400"), "{path}: {res}");
        assert!(res.contains("NAME_INVALID"), "{path}: {res}");
    }
    // The token service grants along the same line.
    let token = |scope: &str| {
        let r = anon_client()
            .get(format!("{}/oauth2/token?scope={scope}", w.url()))
            .header("authorization", basic(&sp.app, &sp.secret))
            .send()
            .unwrap();
        payload(r.json::<Value>().unwrap()["access_token"].as_str().unwrap())["access"].clone()
    };
    assert_eq!(token("repository:samples/app:pull,push")[0]["actions"], json!(["pull"]));
    assert_eq!(token("repository:prod/app:pull")[0]["actions"], json!([]));
    // A condition that doesn't parse is refused, not stored.
    let (s, v) = arm(
        &w,
        Method::PUT,
        &format!("{id}/providers/Microsoft.Authorization/roleAssignments/{}", uuid()),
        Some(json!({"properties": {
            "roleDefinitionId": role_id(&w, "Container Registry Repository Reader"),
            "principalId": sp.id, "condition": "@Request[x] Foo 'y'"}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("condition"), "{v}");

    // Conditions and patterns built to exhaust the server are refused with ARM's 400 (before
    // the fix: a 500-deep condition overflowed the stack and aborted the process; 8 stars in
    // an action took 35 s a check), and the server goes on answering.
    let leaf = "ActionMatches{'a'}";
    for depth in [1_000, 10_000] {
        let deep = format!("{}{leaf}{}", "(".repeat(depth), ")".repeat(depth));
        let (s, v) = arm(
            &w,
            Method::PUT,
            &format!("{id}/providers/Microsoft.Authorization/roleAssignments/{}", uuid()),
            Some(json!({"properties": {
                "roleDefinitionId": role_id(&w, "Container Registry Repository Reader"),
                "principalId": sp.id, "condition": deep, "conditionVersion": "2.0"}})),
        );
        assert_eq!(s, 400, "{depth} deep: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("condition"), "{v}");
    }
    let stars = "*".repeat(40) + "x";
    let (s, v) = arm(
        &w,
        Method::PUT,
        &format!("{SUB}/providers/Microsoft.Authorization/roleDefinitions/{}", uuid()),
        Some(json!({"properties": {"roleName": "stars", "assignableScopes": [SUB],
            "permissions": [{"actions": [format!("Microsoft.ContainerRegistry/{stars}")]}]}})),
    );
    assert_eq!(s, 400, "{v}");
    // A wildcard condition is allowed and costs nothing to evaluate on a long name.
    let starry = format!(
        "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringLike '{stars}'"
    );
    let (s, v) = arm(
        &w,
        Method::PUT,
        &format!("{id}/providers/Microsoft.Authorization/roleAssignments/{}", uuid()),
        Some(json!({"properties": {
            "roleDefinitionId": role_id(&w, "Container Registry Repository Writer"),
            "principalId": sp.id, "condition": starry, "conditionVersion": "2.0"}})),
    );
    assert_eq!(s, 201, "{v}");
    let long = format!("/v2/{}/manifests/v1", "a".repeat(250));
    assert_eq!(get(&long), 401);
    assert_eq!(get("/v2/samples/app/manifests/v1"), 200);
}

/// A registry refresh token for `host` in exchange for an identity token (`/oauth2/exchange`).
fn exchange(w: &Wharf, host: &str, identity_token: &str) -> String {
    let r = anon_client()
        .post(format!("{}/oauth2/exchange", w.url()))
        .header("host", host)
        .form(&[
            ("grant_type", "access_token"),
            ("service", host),
            ("access_token", identity_token),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["refresh_token"].as_str().unwrap().to_owned()
}

#[test]
fn import_takes_every_credential_kind_of_another_wharf() {
    let source = Wharf::start();
    let (_, digest) = source.reg().push_image("team/app", "v1", &[b"from the other wharf"]);
    let reader = create_sp(&source, "reader");
    assign(&source, &reader.id, "AcrPull", &registry_id("default"));
    let deleter = create_sp(&source, "deleter");
    assign(&source, &deleter.id, "AcrDelete", &registry_id("default"));
    let identity_token = source.token_for_app(&reader.app, &reader.secret);
    let refresh = exchange(&source, &source.host(), &identity_token);
    // The source registry's own credentials: its admin user, a token for `team/*`, and a
    // token for another repository.
    cli(&source, &["registry", "update", "-n", "default", "--admin-enabled", "true"]).ok_json();
    let admin_user = cli(&source, &["registry", "credential", "show", "-n", "default"]).ok_json();
    let admin_user_pw = admin_user["passwords"][1]["value"].as_str().unwrap().to_owned();
    let team = cli(
        &source,
        &[
            "token",
            "create",
            "-n",
            "team-reader",
            "-r",
            "default",
            "--repository",
            "team/*",
            "content/read",
        ],
    )
    .ok_json();
    let team_pw =
        team["properties"]["credentials"]["passwords"][0]["value"].as_str().unwrap().to_owned();
    let elsewhere = cli(
        &source,
        &[
            "token",
            "create",
            "-n",
            "elsewhere",
            "-r",
            "default",
            "--repository",
            "other",
            "content/read",
        ],
    )
    .ok_json();
    let elsewhere_pw = elsewhere["properties"]["credentials"]["passwords"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    let w = Wharf::start_with(&["--insecure-source", &source.host()]);
    let src = format!("{}/team/app:v1", source.host());
    let import = |tag: &str, creds: &[&str]| {
        let mut args = vec!["import", "-n", "default", "--source", &src, "-t", tag];
        args.extend_from_slice(creds);
        cli(&w, &args)
    };
    // A service principal's app id and secret.
    import("sp:v1", &["-u", &reader.app, "-p", &reader.secret]).ok_json();
    // An identity access token as the password, no user name (`az account get-access-token`).
    import("token:v1", &["-p", &identity_token]).ok_json();
    // A user's name and password.
    import("user:v1", &["-u", "admin", "-p", ADMIN_PASSWORD]).ok_json();
    // A registry refresh token with the null GUID as user name.
    import("refresh:v1", &["-u", "00000000-0000-0000-0000-000000000000", "-p", &refresh]).ok_json();
    // The registry's admin user, and a repository-scoped token.
    import("adminuser:v1", &["-u", "default", "-p", &admin_user_pw]).ok_json();
    import("scoped:v1", &["-u", "team-reader", "-p", &team_pw]).ok_json();
    for repo in ["sp", "token", "user", "refresh", "adminuser", "scoped"] {
        let m = manifest_bytes(&w.url(), None, repo, "v1").unwrap();
        assert_eq!(digest_of(&m), digest, "{repo}");
    }
    // Refusals, typed, with no secret in the message.
    let err = import("wrong:v1", &["-u", &reader.app, "-p", "not-it"]).err_line();
    assert!(err.contains("SourceUnauthorized"), "{err}");
    assert!(!err.contains("not-it"));
    let err = import("none:v1", &[]).err_line();
    assert!(err.contains("SourceUnauthorized"), "{err}");
    let err = import("nopull:v1", &["-u", &deleter.app, "-p", &deleter.secret]).err_line();
    assert!(err.contains("SourceUnauthorized") || err.contains("SourceForbidden"), "{err}");
    let err = import("elsewhere:v1", &["-u", "elsewhere", "-p", &elsewhere_pw]).err_line();
    assert!(err.contains("SourceUnauthorized") || err.contains("SourceForbidden"), "{err}");
    for secret in [
        &reader.secret,
        &identity_token,
        &refresh,
        &deleter.secret,
        &admin_user_pw,
        &team_pw,
        &elsewhere_pw,
    ] {
        assert!(!w.log().contains(secret.as_str()), "a secret in the target's log");
        assert!(!source.log().contains(secret.as_str()), "a secret in the source's log");
    }
}

#[test]
fn import_needs_import_on_the_target_and_pull_on_a_same_server_source() {
    let w = Wharf::start();
    for name in ["srcreg1", "tgtreg1"] {
        cli(&w, &["registry", "create", "-n", name]).ok_json();
    }
    let src_host = format!("srcreg1.localhost:{}", w.port);
    let reg = w.reg();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = bytes(3, 5000);
    for b in [&config, &layer] {
        let r = reg
            .http
            .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={}", digest_of(b))))
            .header("host", &src_host)
            .body(b.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let m = image_manifest(&config, &[&layer]);
    let r = reg
        .http
        .put(reg.url("/v2/app/manifests/v1"))
        .header("host", &src_host)
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let (src_id, tgt_id) = (registry_id("srcreg1"), registry_id("tgtreg1"));
    let import = |token: &str, source: Value| {
        arm_as(
            &w,
            Some(token),
            Method::POST,
            &format!("{tgt_id}/importImage"),
            Some(json!({"source": source, "targetTags": ["app:v1"], "mode": "Force"})),
        )
    };
    let by_id = json!({"resourceId": src_id, "sourceImage": "app:v1"});

    // AcrPush alone can't import (ACR: import is a management action).
    let pusher = create_sp(&w, "pusher");
    assign(&w, &pusher.id, "AcrPush", &tgt_id);
    assign(&w, &pusher.id, "AcrPull", &src_id);
    let (s, v) = import(&w.token_for_app(&pusher.app, &pusher.secret), by_id.clone());
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "AuthorizationFailed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("importImage/action") && message.contains(&pusher.id), "{message}");

    // Import on the target but no pull on the source.
    let importer = create_sp(&w, "importer");
    assign(&w, &importer.id, "Container Registry Data Importer and Data Reader", &tgt_id);
    let token = w.token_for_app(&importer.app, &importer.secret);
    let (s, v) = import(&token, by_id.clone());
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("pull/read"), "{v}");
    assert!(
        manifest_bytes(&w.url(), Some(&format!("tgtreg1.localhost:{}", w.port)), "app", "v1")
            .is_none()
    );

    // Given pull on the source too, it imports.
    assign(&w, &importer.id, "AcrPull", &src_id);
    let (s, v) = import(&token, by_id);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        manifest_bytes(&w.url(), Some(&format!("tgtreg1.localhost:{}", w.port)), "app", "v1"),
        Some(m)
    );

    // A login server of this server with credentials is read as those credentials (and
    // anonymously without any), not as the caller.
    let by_uri = |creds: Option<(&str, &str)>| {
        let mut src = json!({"registryUri": src_host, "sourceImage": "app:v1"});
        if let Some((u, p)) = creds {
            src["credentials"] = json!({"username": u, "password": p});
        }
        src
    };
    let (s, v) = import(&w.admin_token(), by_uri(None));
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "SourceUnauthorized");
    let nobody = create_sp(&w, "nobody");
    let (s, v) = import(&w.admin_token(), by_uri(Some((&nobody.app, &nobody.secret))));
    assert_eq!(s, 403, "{v}");
    let (s, v) = import(&w.admin_token(), by_uri(Some((&importer.app, &importer.secret))));
    assert_eq!(s, 200, "{v}");
}

#[test]
fn service_principals_and_roles_from_the_cli_with_real_clients() {
    let w = Wharf::start();
    let id = registry_id("default");
    let sp =
        cli(&w, &["ad", "sp", "create-for-rbac", "-n", "ci", "--role", "AcrPush", "--scopes", &id])
            .ok_json();
    let (app, secret) = (sp["appId"].as_str().unwrap(), sp["password"].as_str().unwrap());
    assert!(sp["tenant"].as_str().is_some_and(|t| t.len() == 36), "{sp}");
    // The secret is shown once: never in a listing.
    let listed = cli(&w, &["ad", "sp", "list"]);
    assert!(!listed.stdout.contains(secret));
    assert!(listed.stdout.contains(app));

    // skopeo pushes and reads with the service principal.
    w.reg().push_image("base", "v1", &[b"base layer"]);
    let sp_creds = format!("{app}:{secret}");
    let copy = |from: &str, to: &str, creds: &str| {
        Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .args(["--src-creds", creds, "--dest-creds", creds])
            .arg(format!("docker://{}/{from}", w.host()))
            .arg(format!("docker://{}/{to}", w.host()))
            .output()
            .unwrap()
    };
    let out = copy("base:v1", "ci/app:v1", &sp_creds);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(manifest_bytes(&w.url(), None, "ci/app", "v1").is_some());
    // … and with a refresh token (the null GUID as user name), as `az acr login --expose-token` hands out.
    let refresh = exchange(&w, &w.host(), &w.token_for_app(app, secret));
    let out =
        copy("base:v1", "ci/app:v2", &format!("00000000-0000-0000-0000-000000000000:{refresh}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The assignment is listed, and deleting it takes the access away at once.
    let assignments = cli(&w, &["role", "assignment", "list", "--assignee", app]).ok_json();
    assert_eq!(assignments.as_array().unwrap().len(), 1, "{assignments}");
    assert_eq!(assignments[0]["properties"]["roleDefinitionName"], "AcrPush");
    cli(
        &w,
        &["role", "assignment", "delete", "--assignee", app, "--role", "AcrPush", "--scope", &id],
    )
    .ok_json_or_empty();
    let out = copy("base:v1", "ci/app:v3", &sp_creds);
    assert!(!out.status.success(), "pushed without a role");

    // A reset secret replaces the old one.
    cli(
        &w,
        &["role", "assignment", "create", "--assignee", app, "--role", "AcrPull", "--scope", &id],
    )
    .ok_json();
    let reset = cli(&w, &["ad", "sp", "credential", "reset", "--id", app]).ok_json();
    let new_secret = reset["password"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let v2 = |user: &str, password: &str| {
        anon_client()
            .get(format!("{}/v2/base/manifests/v1", w.url()))
            .header("authorization", basic(user, password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(v2(app, secret), 401);
    assert_eq!(v2(app, new_secret), 200);

    // `wharf login` as the service principal: later commands run as it, until logout.
    let logged = cli_as(&w, None, &["login", "--service-principal", "-u", app, "-p", new_secret]);
    let v = logged.ok_json();
    assert_eq!(v[0]["user"]["type"], "servicePrincipal");
    let tokens = w.data.with_extension("cli").join("tokens.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        !std::fs::read_to_string(&tokens).unwrap().contains(new_secret),
        "only tokens are cached"
    );
    let tags = cli_as(
        &w,
        None,
        &["repository", "show-tags", "-n", "default", "-g", "default", "--repository", "base"],
    );
    // AcrPull may read tags but not the registry's ARM resource, which the CLI looks up
    // first: as with az, a role with `registries/read` is needed too.
    let err = tags.err_line();
    assert!(err.contains("AuthorizationFailed") && err.contains("registries/read"), "{err}");
    cli(
        &w,
        &["role", "assignment", "create", "--assignee", app, "--role", "Reader", "--scope", &id],
    )
    .ok_json();
    let tags =
        cli_as(&w, None, &["repository", "show-tags", "-n", "default", "--repository", "base"]);
    assert_eq!(tags.ok_json(), json!(["v1"]));
    cli_as(&w, None, &["logout"]).ok_json_or_empty();
    let err = cli_as(&w, None, &["registry", "list"]).err_line();
    assert!(err.contains("AuthenticationFailed"), "{err}");

    // Deleting the service principal ends it.
    cli(&w, &["ad", "sp", "delete", "--id", app]).ok_json_or_empty();
    assert_eq!(v2(app, new_secret), 401);
    // A user: created, signs in, has no roles (sees nothing), deleted.
    cli(
        &w,
        &[
            "ad",
            "user",
            "create",
            "--user-principal-name",
            "dev@example.com",
            "--password",
            "a-long-password-1",
        ],
    )
    .ok_json();
    let listed =
        cli_as(&w, Some(("dev@example.com", "a-long-password-1")), &["registry", "list"]).ok_json();
    assert_eq!(listed, json!([]));
    cli(&w, &["ad", "user", "delete", "--id", "dev@example.com"]).ok_json_or_empty();
    let err = cli_as(&w, Some(("dev@example.com", "a-long-password-1")), &["registry", "list"])
        .err_line();
    assert!(err.contains("sign-in"), "{err}");
    // The admin can't be deleted, nor its last Owner assignment.
    let err = cli(&w, &["ad", "user", "delete", "--id", "admin"]).err_line();
    assert!(err.contains("admin user can't be deleted"), "{err}");
    let err = cli(
        &w,
        &["role", "assignment", "delete", "--assignee", "admin", "--role", "Owner", "--scope", "/"],
    )
    .err_line();
    assert!(err.contains("last Owner"), "{err}");
}

#[test]
fn bad_input_on_the_identity_endpoints_gets_each_protocols_error() {
    let w = Wharf::start();
    let id = registry_id("default");
    let ra = |name: &str, body: Value| {
        arm(
            &w,
            Method::PUT,
            &format!("{id}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            Some(body),
        )
    };
    let admin = cli(&w, &["ad", "user", "show", "--id", "admin"]).ok_json();
    let good = json!({"properties": {"roleDefinitionId": role_id(&w, "AcrPull"), "principalId": admin["id"]}});
    for (name, body, code) in [
        ("not-a-guid", good.clone(), "InvalidRoleAssignmentId"),
        (
            &uuid() as &str,
            json!({"properties": {"principalId": admin["id"]}}),
            "InvalidRequestContent",
        ),
        (
            &uuid(),
            json!({"properties": {"roleDefinitionId": "/x/roleDefinitions/00000000-0000-4000-8000-000000000009", "principalId": admin["id"]}}),
            "RoleDefinitionDoesNotExist",
        ),
        (
            &uuid(),
            json!({"properties": {"roleDefinitionId": role_id(&w, "AcrPull"), "principalId": "nobody-at-all"}}),
            "PrincipalNotFound",
        ),
        (
            &uuid(),
            json!({"properties": {"roleDefinitionId": role_id(&w, "AcrPull"), "principalId": admin["id"], "condition": "x", "conditionVersion": "1.0"}}),
            "InvalidConditionVersion",
        ),
        (&uuid(), json!("not an object"), "InvalidRequestContent"),
    ] {
        let (s, v) = ra(name, body);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    // The same assignment twice under two names: a conflict, as ARM answers it.
    let first = uuid();
    assert_eq!(ra(&first, good.clone()).0, 201);
    assert_eq!(ra(&first, good.clone()).0, 200, "the same PUT again is fine");
    let (s, v) = ra(&uuid(), good);
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("RoleAssignmentExists")), "{v}");
    // Built-in roles can't be replaced; custom roles need permissions.
    let builtin = role_id(&w, "AcrPull");
    let builtin = builtin.rsplit('/').next().unwrap();
    let (s, _) = arm(
        &w,
        Method::PUT,
        &format!("/providers/Microsoft.Authorization/roleDefinitions/{builtin}"),
        Some(json!({"properties": {"roleName": "Mine", "permissions": [{"actions": ["*"]}]}})),
    );
    assert_eq!(s, 409);
    let (s, _) = arm(
        &w,
        Method::PUT,
        &format!("/providers/Microsoft.Authorization/roleDefinitions/{}", uuid()),
        Some(json!({"properties": {"roleName": "Empty", "permissions": []}})),
    );
    assert_eq!(s, 400);
    // An unknown scope is no route.
    let (s, v) = arm(
        &w,
        Method::GET,
        "/subscriptions/x/foo/providers/Microsoft.Authorization/roleAssignments",
        None,
    );
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("InvalidResourceType")), "{v}");

    // The token endpoint answers OAuth2's errors.
    let token = |form: &[(&str, &str)], tenant: &str| {
        let r = anon_client()
            .post(format!("{}/{tenant}/oauth2/v2.0/token", w.url()))
            .form(form)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap_or(Value::Null))
    };
    let scope = ("scope", "https://management.azure.com/.default");
    for (form, tenant, status, error) in [
        (vec![("grant_type", "client_credentials"), scope], "common", 400, "invalid_request"),
        (vec![("grant_type", "implicit"), scope], "common", 400, "unsupported_grant_type"),
        (
            vec![("grant_type", "password"), ("username", "admin"), ("password", ADMIN_PASSWORD)],
            "common",
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("scope", "https://evil.example/.default"),
            ],
            "common",
            400,
            "invalid_scope",
        ),
        (
            vec![("grant_type", "password"), ("username", "admin"), ("password", "wrong"), scope],
            "common",
            400,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "x"),
                ("client_secret", "y"),
                scope,
            ],
            "common",
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                scope,
            ],
            "not-a-tenant",
            400,
            "invalid_tenant",
        ),
    ] {
        let (s, v) = token(&form, tenant);
        assert_eq!((s, v["error"].as_str()), (status, Some(error)), "{form:?}: {v}");
        assert!(v["error_description"].as_str().unwrap().starts_with("AADSTS"), "{v}");
    }
    let huge = "x".repeat(100_000);
    let (s, v) = token(&[("grant_type", huge.as_str())], "common");
    assert_eq!((s, v["error"].as_str()), (413, Some("invalid_request")), "{v}");
    // A user's password is no client secret, and a service principal has no password grant.
    let (s, _) = token(
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "admin"),
            ("client_secret", ADMIN_PASSWORD),
            scope,
        ],
        "common",
    );
    assert_eq!(s, 401);

    // The registry's token service and exchange answer the OCI error body.
    let post = |path: &str, form: &[(&str, &str)]| {
        let r = anon_client().post(format!("{}{path}", w.url())).form(form).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap_or(Value::Null))
    };
    for (path, form, status) in [
        ("/oauth2/exchange", vec![("grant_type", "refresh_token")], 400),
        ("/oauth2/exchange", vec![("grant_type", "access_token")], 400),
        (
            "/oauth2/exchange",
            vec![("grant_type", "access_token"), ("access_token", "eyJ.x.y")],
            401,
        ),
        ("/oauth2/token", vec![("grant_type", "client_credentials")], 400),
        (
            "/oauth2/token",
            vec![("grant_type", "refresh_token"), ("refresh_token", "nonsense")],
            401,
        ),
        (
            "/oauth2/token",
            vec![("grant_type", "password"), ("username", "admin"), ("password", "wrong")],
            401,
        ),
    ] {
        let (s, v) = post(path, &form);
        assert_eq!(s, status, "{path} {form:?}: {v}");
        assert!(v["errors"][0]["code"].is_string(), "{path}: {v}");
    }
    // A registry refresh token can't be exchanged for another (no endless renewal).
    let refresh = exchange(&w, &w.host(), &w.admin_token());
    let (s, _) =
        post("/oauth2/exchange", &[("grant_type", "access_token"), ("access_token", &refresh)]);
    assert_eq!(s, 401);
    // The directory: Graph-shaped errors.
    let r = w.graph_client().post(format!("{}/v1.0/users", w.url())).body("{").send().unwrap();
    assert_eq!(r.status(), 400);
    let r =
        w.graph_client().get(format!("{}/v1.0/servicePrincipals/nope", w.url())).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "Request_ResourceNotFound");
    let r = w
        .graph_client()
        .post(format!("{}/v1.0/users", w.url()))
        .json(&json!({"userPrincipalName": "short", "passwordProfile": {"password": "short"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!w.log().contains("panicked"));
}

#[test]
fn the_admin_user_and_repository_scoped_tokens_work_with_real_clients() {
    let w = Wharf::start();
    w.reg().push_image("samples/base", "v1", &[b"samples base layer"]);
    w.reg().push_image("prod/app", "v1", &[b"prod layer"]);
    let host = w.host();
    let copy = |from: &str, to: &str, creds: &str| {
        Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .args(["--src-creds", creds, "--dest-creds", creds])
            .arg(format!("docker://{host}/{from}"))
            .arg(format!("docker://{host}/{to}"))
            .output()
            .unwrap()
    };
    let v2 = |path: &str, user: &str, password: &str| {
        anon_client()
            .get(format!("{}{path}", w.url()))
            .header("authorization", basic(user, password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };

    // The admin user: off until enabled, as in ACR.
    let err = cli(&w, &["registry", "credential", "show", "-n", "default"]).err_line();
    assert!(err.contains("AdminUserDisabled"), "{err}");
    let updated =
        cli(&w, &["registry", "update", "-n", "default", "--admin-enabled", "true"]).ok_json();
    assert_eq!(updated["properties"]["adminUserEnabled"], true);
    let creds = cli(&w, &["registry", "credential", "show", "-n", "default"]).ok_json();
    assert_eq!(creds["username"], "default");
    let first = creds["passwords"][0]["value"].as_str().unwrap().to_owned();
    let second = creds["passwords"][1]["value"].as_str().unwrap().to_owned();
    assert_eq!(creds["passwords"][1]["name"], "password2");
    // Shown again, the same (ACR's listCredentials); either password signs in.
    let again = cli(&w, &["registry", "credential", "show", "-n", "default"]).ok_json();
    assert_eq!(again["passwords"][0]["value"], first.as_str());
    let out = copy("samples/base:v1", "admin/copy:v1", &format!("default:{first}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(v2("/v2/_catalog", "default", &second), 200);
    // Renewing a password retires it at once; the other one keeps working.
    let renewed = cli(
        &w,
        &["registry", "credential", "renew", "-n", "default", "--password-name", "password"],
    )
    .ok_json();
    let renewed_first = renewed["passwords"][0]["value"].as_str().unwrap().to_owned();
    assert_ne!(renewed_first, first);
    assert_eq!(v2("/v2/prod/app/manifests/v1", "default", &first), 401);
    assert_eq!(v2("/v2/prod/app/manifests/v1", "default", &renewed_first), 200);
    assert_eq!(v2("/v2/prod/app/manifests/v1", "default", &second), 200);
    // Disabling the admin user turns its passwords off.
    cli(&w, &["registry", "update", "-n", "default", "--admin-enabled", "false"]).ok_json();
    assert_eq!(v2("/v2/prod/app/manifests/v1", "default", &second), 401);

    // A token for `samples/*`: push and pull there, nothing elsewhere, no catalog.
    let token = cli(
        &w,
        &[
            "token",
            "create",
            "-n",
            "samples-ci",
            "-r",
            "default",
            "--repository",
            "samples/*",
            "content/read",
            "content/write",
            "--repository",
            "prod/app",
            "content/read",
        ],
    )
    .ok_json();
    let creds = &token["properties"]["credentials"];
    assert_eq!(creds["username"], "samples-ci");
    let pw1 = creds["passwords"][0]["value"].as_str().unwrap().to_owned();
    let pw2 = creds["passwords"][1]["value"].as_str().unwrap().to_owned();
    let listed = cli(&w, &["token", "list", "-r", "default"]);
    assert!(!listed.stdout.contains(&pw1) && !listed.stdout.contains(&pw2), "passwords listed");
    let tok = format!("samples-ci:{pw1}");
    let out = copy("samples/base:v1", "samples/new:v1", &tok);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = copy("prod/app:v1", "samples/from-prod:v1", &format!("samples-ci:{pw2}"));
    assert!(out.status.success(), "read prod/app: {}", String::from_utf8_lossy(&out.stderr));
    let out = copy("samples/base:v1", "prod/app:v2", &tok);
    assert!(!out.status.success(), "pushed outside its scope map");
    assert!(manifest_bytes(&w.url(), None, "prod/app", "v2").is_none());
    assert_eq!(v2("/v2/admin/copy/manifests/v1", "samples-ci", &pw1), 401);
    assert_eq!(v2("/v2/_catalog", "samples-ci", &pw1), 401, "tokens don't list the catalog");
    // The token's rights follow its scope map: widened by an update, at once.
    cli(
        &w,
        &[
            "scope-map",
            "update",
            "-n",
            "samples-ci-scope-map",
            "-r",
            "default",
            "--add-repository",
            "admin/copy",
            "content/read",
        ],
    )
    .ok_json();
    assert_eq!(v2("/v2/admin/copy/manifests/v1", "samples-ci", &pw1), 200);
    // oras-py pushes an artifact with the token too, and only where the scope map says.
    crate::clients::get_clients();
    let venv = std::env::var("VENV").unwrap_or_else(|_| "/tmp/harness-venv".into());
    let dir = w.data.with_extension("oras");
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"
import sys, oras.client
reg, user, password, repo = sys.argv[1:5]
c = oras.client.OrasClient(hostname=reg, insecure=True, auth_backend="basic")
c.login(username=user, password=password, hostname=reg)
open("note.txt", "w").write("a note\n")
try:
    r = c.push(files=["note.txt"], target=f"{reg}/{repo}:v1")
    print(r.status_code)
except Exception as e:
    print("refused", type(e).__name__)
"#;
    let oras = |repo: &str| {
        run(Command::new(format!("{venv}/bin/python")).current_dir(&dir).args([
            "-c",
            script,
            &host,
            "samples-ci",
            &pw1,
            repo,
        ]))
    };
    assert_eq!(oras("samples/note").trim().lines().last(), Some("201"));
    let refused = oras("prod/note");
    assert!(refused.contains("refused"), "oras pushed outside the scope map: {refused}");
    assert!(manifest_bytes(&w.url(), None, "prod/note", "v1").is_none());

    // Disabled: refused; enabled again: back.
    cli(&w, &["token", "update", "-n", "samples-ci", "-r", "default", "--status", "disabled"])
        .ok_json();
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &pw1), 401);
    cli(&w, &["token", "update", "-n", "samples-ci", "-r", "default", "--status", "enabled"])
        .ok_json();
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &pw1), 200);
    // A regenerated password replaces that slot only.
    let regen = cli(
        &w,
        &["token", "credential", "generate", "-n", "samples-ci", "-r", "default", "--password1"],
    )
    .ok_json();
    let pw1b = regen["passwords"][0]["value"].as_str().unwrap().to_owned();
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &pw1), 401);
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &pw1b), 200);
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &pw2), 200);
    // A password that expires stops working when it does.
    let reg = registry_id("default");
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, v) = arm(
        &w,
        Method::POST,
        &format!("{reg}/generateCredentials"),
        Some(
            json!({"tokenId": format!("{reg}/tokens/samples-ci"), "name": "password2", "expiry": soon}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    let short = v["passwords"][0]["value"].as_str().unwrap().to_owned();
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &short), 200);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &short), 401, "expired");

    // A scope map in use can't go; a system one can't change; deleting the token works.
    let err =
        cli(&w, &["scope-map", "delete", "-n", "samples-ci-scope-map", "-r", "default", "--yes"])
            .err_line();
    assert!(err.contains("used by the tokens samples-ci"), "{err}");
    let (s, v) = arm(
        &w,
        Method::PUT,
        &format!("{reg}/scopeMaps/_repositories_pull"),
        Some(json!({"properties": {"actions": ["repositories/*/content/write"]}})),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("BadRequest")), "{v}");
    cli(&w, &["token", "delete", "-n", "samples-ci", "-r", "default", "--yes"]).ok_json_or_empty();
    assert_eq!(v2("/v2/samples/new/manifests/v1", "samples-ci", &pw2), 401);
    cli(&w, &["scope-map", "delete", "-n", "samples-ci-scope-map", "-r", "default", "--yes"])
        .ok_json_or_empty();

    // A token goes with its registry.
    cli(&w, &["registry", "create", "-n", "shortlived"]).ok_json();
    cli(
        &w,
        &[
            "token",
            "create",
            "-n",
            "goes-too",
            "-r",
            "shortlived",
            "--scope-map",
            "_repositories_pull",
        ],
    )
    .ok_json();
    cli(&w, &["registry", "delete", "-n", "shortlived", "--yes"]).ok_json_or_empty();
    cli(&w, &["registry", "create", "-n", "shortlived"]).ok_json();
    let tokens = cli(&w, &["token", "list", "-r", "shortlived"]).ok_json();
    assert_eq!(tokens, json!([]));

    let log = w.log();
    for secret in [&first, &second, &renewed_first, &pw1, &pw2, &pw1b, &short] {
        assert!(!log.contains(secret.as_str()), "a registry credential is in the log");
    }
}

#[test]
fn bad_input_on_tokens_and_scope_maps_gets_arms_error() {
    let w = Wharf::start();
    let reg = registry_id("default");
    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::PUT,
            format!("{reg}/scopeMaps/bad-actions"),
            Some(json!({"properties": {"actions": ["repositories/app/content/push"]}})),
            400,
            "BadRequest",
        ),
        (
            Method::PUT,
            format!("{reg}/scopeMaps/bad-wild"),
            Some(json!({"properties": {"actions": ["repositories/a*b/content/read"]}})),
            400,
            "BadRequest",
        ),
        (
            Method::PUT,
            format!("{reg}/scopeMaps/no-actions"),
            Some(json!({"properties": {}})),
            400,
            "InvalidRequestContent",
        ),
        (
            Method::PUT,
            format!("{reg}/scopeMaps/x"),
            Some(json!({"properties": {"actions": ["repositories/app/content/read"]}})),
            400,
            "BadRequest",
        ),
        (
            Method::PUT,
            format!("{reg}/scopeMaps/list-not"),
            Some(json!({"properties": {"actions": "repositories/app/content/read"}})),
            400,
            "InvalidRequestContent",
        ),
        (
            Method::PUT,
            format!("{reg}/tokens/no-map-token"),
            Some(json!({"properties": {}})),
            400,
            "InvalidRequestContent",
        ),
        (
            Method::PUT,
            format!("{reg}/tokens/missing-map"),
            Some(json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/nope-nope")}})),
            400,
            "BadRequest",
        ),
        (
            Method::PUT,
            format!("{reg}/tokens/foreign-map"),
            Some(
                json!({"properties": {"scopeMapId": format!("{}/scopeMaps/_repositories_pull", registry_id("other"))}}),
            ),
            400,
            "InvalidRequestContent",
        ),
        (
            Method::PUT,
            format!("{reg}/tokens/bad-status"),
            Some(
                json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/_repositories_pull"), "status": "maybe"}}),
            ),
            400,
            "InvalidRequestContent",
        ),
        (Method::PUT, format!("{reg}/tokens/bad-body"), None, 400, "InvalidRequestContent"),
        (Method::GET, format!("{reg}/tokens/absent-token"), None, 404, "ResourceNotFound"),
        (
            Method::PATCH,
            format!("{reg}/tokens/absent-token"),
            Some(json!({"properties": {"status": "disabled"}})),
            404,
            "ResourceNotFound",
        ),
        (Method::GET, format!("{reg}/scopeMaps/absent-map"), None, 404, "ResourceNotFound"),
        (
            Method::POST,
            format!("{reg}/generateCredentials"),
            Some(json!({})),
            400,
            "InvalidRequestContent",
        ),
        (
            Method::POST,
            format!("{reg}/generateCredentials"),
            Some(json!({"tokenId": format!("{reg}/tokens/absent-token")})),
            404,
            "ResourceNotFound",
        ),
        (Method::POST, format!("{reg}/listCredentials"), None, 400, "AdminUserDisabled"),
        (
            Method::POST,
            format!("{}/listCredentials", registry_id("nosuchreg")),
            None,
            404,
            "ResourceNotFound",
        ),
        (Method::DELETE, format!("{reg}/scopeMaps/_repositories_admin"), None, 400, "BadRequest"),
        (Method::GET, format!("{reg}/tokens/a/b"), None, 404, "InvalidResourceType"),
        (
            Method::PUT,
            format!("{reg}/tokens/00000000-0000-0000-0000-000000000000"),
            Some(
                json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/_repositories_pull")}}),
            ),
            400,
            "BadRequest",
        ),
        (
            Method::PUT,
            format!("{reg}/tokens/multibyte"),
            Some(
                json!({"properties": {"scopeMapId": format!("{}ü/scopeMaps/_repositories_pull", &reg[..reg.len() - 1])}}),
            ),
            400,
            "InvalidRequestContent",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (s, v) = arm(&w, method.clone(), &path, body);
        assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{method} {path}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // A token with a real scope map, then bad credential requests on it.
    let (s, v) = arm(
        &w,
        Method::PUT,
        &format!("{reg}/tokens/good-token"),
        Some(json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/_repositories_pull")}})),
    );
    assert_eq!(s, 201, "{v}");
    for (body, code) in [
        (json!({"tokenId": format!("{reg}/tokens/good-token"), "name": "password3"}), "BadRequest"),
        (
            json!({"tokenId": format!("{reg}/tokens/good-token"), "expiry": "tomorrow"}),
            "InvalidRequestContent",
        ),
        (
            json!({"tokenId": format!("{reg}/tokens/good-token"), "expiry": "2001-01-01T00:00:00Z"}),
            "BadRequest",
        ),
    ] {
        let (s, v) = arm(&w, Method::POST, &format!("{reg}/generateCredentials"), Some(body));
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    // The CLI says it in one line, clap's usage errors included.
    let err =
        cli(&w, &["token", "create", "-n", "t-cli-1", "-r", "default", "--repository", "app"])
            .err_line();
    assert!(err.contains("2 values required"), "{err}");
    let err = cli(
        &w,
        &["token", "create", "-n", "t-cli-1", "-r", "default", "--repository", "app", "app2"],
    )
    .err_line();
    assert!(err.contains("--repository app: give at least one action"), "{err}");
}

#[test]
fn anonymous_pull_lets_anyone_read_and_nobody_write() {
    let w = Wharf::start();
    w.reg().push_image("public/app", "v1", &[b"a public layer"]);
    let host = w.host();
    let pull = |dest: &str| {
        Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false", "--src-no-creds"])
            .arg(format!("docker://{host}/public/app:v1"))
            .arg(format!("dir:{dest}"))
            .output()
            .unwrap()
    };
    let dir = w.data.with_extension("pulled");
    let out = pull(dir.to_str().unwrap());
    assert!(!out.status.success(), "pulled anonymously while anonymous pull is off");
    cli(&w, &["registry", "update", "-n", "default", "--anonymous-pull-enabled", "true"]).ok_json();
    let out = pull(dir.to_str().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("manifest.json").exists());
    // Anonymous readers get a pull token and nothing more; writing still needs a sign-in.
    let r = anon_client()
        .get(format!("{}/oauth2/token?scope=repository:public/app:pull,push,delete", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let access =
        payload(r.json::<Value>().unwrap()["access_token"].as_str().unwrap())["access"].clone();
    assert_eq!(access[0]["actions"], json!(["pull"]), "{access}");
    let r = anon_client().post(format!("{}/v2/public/app/blobs/uploads/", w.url())).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = anon_client().delete(format!("{}/v2/public/app/manifests/v1", w.url())).send().unwrap();
    assert_eq!(r.status(), 401);
    // The catalog isn't a pull: it stays closed.
    let r = anon_client().get(format!("{}/v2/_catalog", w.url())).send().unwrap();
    assert_eq!(r.status(), 401);
    cli(&w, &["registry", "update", "-n", "default", "--anonymous-pull-enabled", "false"])
        .ok_json();
    let r = anon_client().get(format!("{}/v2/public/app/manifests/v1", w.url())).send().unwrap();
    assert_eq!(r.status(), 401, "closed again");
}

#[test]
fn a_registry_credential_is_throttled_on_its_own_registry_only() {
    let w = Wharf::start();
    cli(&w, &["registry", "create", "-n", "lockreg1", "--admin-enabled"]).ok_json();
    let creds = cli(&w, &["registry", "credential", "show", "-n", "lockreg1"]).ok_json();
    let pw = creds["passwords"][0]["value"].as_str().unwrap().to_owned();
    let lock_host = format!("lockreg1.localhost:{}", w.port);
    let v2 = |host: &str, user: &str, password: &str| {
        anon_client()
            .get(format!("{}/v2/", w.url()))
            .header("host", host)
            .header("authorization", basic(user, password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // Failing with its name on another registry doesn't lock it out (the name is public).
    for _ in 0..15 {
        // Refused, then throttled there (for that name on that registry).
        assert!(matches!(v2(&w.host(), "lockreg1", "guess"), 401 | 429));
    }
    assert_eq!(v2(&w.host(), "lockreg1", "guess"), 429);
    assert_eq!(v2(&lock_host, "lockreg1", &pw), 200);
    // Docker's OAuth2 sign-in (password grant, access_type=offline) as the admin user, more
    // times than the failure limit: each succeeds, none counts as a failure.
    for _ in 0..12 {
        let r = anon_client()
            .post(format!("{}/oauth2/token", w.url()))
            .header("host", &lock_host)
            .form(&[
                ("grant_type", "password"),
                ("access_type", "offline"),
                ("service", lock_host.as_str()),
                ("scope", "repository:app:pull"),
                ("username", "lockreg1"),
                ("password", pw.as_str()),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // On its own registry, wrong passwords are counted against it: after the limit the
    // guesser waits, while the password already verified still works.
    for _ in 0..10 {
        assert_eq!(v2(&lock_host, "lockreg1", "guess"), 401);
    }
    assert_eq!(v2(&lock_host, "lockreg1", "guess"), 429);
    assert_eq!(v2(&lock_host, "lockreg1", &pw), 200);
    assert!(!w.log().contains(&pw));
}

/// The tokens a service principal holds: an identity token (ARM), a registry refresh token
/// exchanged for it, and an access token from that refresh token.
struct HeldTokens {
    identity: String,
    refresh: String,
    access: String,
}

fn tokens_of(w: &Wharf, sp: &Sp) -> HeldTokens {
    let identity = w.token_for_app(&sp.app, &sp.secret);
    let refresh = exchange(w, &w.host(), &identity);
    let r = anon_client()
        .post(format!("{}/oauth2/token", w.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("service", w.host().as_str()),
            ("scope", "repository:app:pull"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let access = r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_owned();
    HeldTokens { identity, refresh, access }
}

/// Each of the tokens' statuses: ARM GET of the default registry, exchange of the identity
/// token, a refresh, and `/v2/` with the access token.
fn token_statuses(w: &Wharf, t: &HeldTokens) -> [u16; 4] {
    let (management, _) = arm_as(w, Some(&t.identity), Method::GET, &registry_id("default"), None);
    let send = |form: &[(&str, &str)], path: &str| {
        anon_client()
            .post(format!("{}{path}", w.url()))
            .form(form)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let host = w.host();
    let exchanged = send(
        &[("grant_type", "access_token"), ("service", &host), ("access_token", &t.identity)],
        "/oauth2/exchange",
    );
    let refreshed = send(
        &[("grant_type", "refresh_token"), ("service", &host), ("refresh_token", &t.refresh)],
        "/oauth2/token",
    );
    let pulled = anon_client()
        .get(format!("{}/v2/", w.url()))
        .bearer_auth(&t.access)
        .send()
        .unwrap()
        .status()
        .as_u16();
    [management, exchanged, refreshed, pulled]
}

/// Revocation as a user meets it: a secret reset, a disabled or deleted principal, a user's
/// new password, a disabled or deleted registry token, a pruned signing key — each ends
/// every token issued before it, at once, whatever kind it is.
#[test]
fn tokens_stop_working_when_what_issued_them_changes() {
    let w = Wharf::start();
    let sp = create_sp(&w, "revoked");
    assign(&w, &sp.id, "Reader", &registry_id("default"));
    let before = tokens_of(&w, &sp);
    assert_eq!(token_statuses(&w, &before), [200, 200, 200, 200]);

    // A reset: the old secret and every token issued with it stop working at once.
    let sp_path = format!("{}/v1.0/servicePrincipals/{}", w.url(), sp.id);
    let r =
        w.graph_client().post(format!("{sp_path}/resetPassword")).json(&json!({})).send().unwrap();
    assert_eq!(r.status(), 200);
    let secret = r.json::<Value>().unwrap()["passwordCredentials"][0]["secretText"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token_statuses(&w, &before), [401, 401, 401, 401]);
    let sp = Sp { secret, ..sp };
    let after_reset = tokens_of(&w, &sp);
    assert_eq!(token_statuses(&w, &after_reset), [200, 200, 200, 200]);

    // Disabled: nothing works and nothing can be had; enabled again, only new tokens work.
    let disable = |enabled: bool| {
        let r = w
            .graph_client()
            .patch(&sp_path)
            .json(&json!({"accountEnabled": enabled}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    };
    disable(false);
    assert_eq!(token_statuses(&w, &after_reset), [401, 401, 401, 401]);
    let signin = anon_client()
        .post(format!("{}/common/oauth2/v2.0/token", w.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sp.app.as_str()),
            ("client_secret", sp.secret.as_str()),
            ("scope", ARM_SCOPE),
        ])
        .send()
        .unwrap();
    assert_eq!(signin.status(), 401);
    disable(true);
    assert_eq!(token_statuses(&w, &after_reset), [401, 401, 401, 401]);
    let fresh = tokens_of(&w, &sp);
    assert_eq!(token_statuses(&w, &fresh), [200, 200, 200, 200]);
    // Revoked without a reset (Graph's revokeSignInSessions): the secret still signs in.
    let r = w.graph_client().post(format!("{sp_path}/revokeSignInSessions")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(token_statuses(&w, &fresh), [401, 401, 401, 401]);
    let fresh = tokens_of(&w, &sp);

    // Deleted: gone, and its tokens with it.
    assert!(cli(&w, &["ad", "sp", "delete", "--id", &sp.app]).ok);
    assert_eq!(token_statuses(&w, &fresh), [401, 401, 401, 401]);

    // A user changes their own password; an administrator sets another: each time the
    // tokens issued before stop working.
    cli(
        &w,
        &[
            "ad",
            "user",
            "create",
            "--user-principal-name",
            "dana",
            "--password",
            "dana-first-password",
        ],
    )
    .ok_json();
    let dana = w.token_for("dana", "dana-first-password");
    let graph = w.graph_token_for("dana", "dana-first-password");
    let me = |token: &str| arm_as(&w, Some(token), Method::GET, "/subscriptions", None).0;
    assert_eq!(me(&dana), 200);
    let change = |current: &str, new: &str| {
        anon_client()
            .post(format!("{}/v1.0/me/changePassword", w.url()))
            .bearer_auth(&graph)
            .json(&json!({"currentPassword": current, "newPassword": new}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(change("not-the-password", "dana-second-password"), 400);
    assert_eq!(change("dana-first-password", "short"), 400);
    assert_eq!(change("dana-first-password", "dana-second-password"), 204);
    assert_eq!(me(&dana), 401);
    let dana = w.token_for("dana", "dana-second-password");
    assert!(
        cli(&w, &["ad", "user", "update", "--id", "dana", "--password", "dana-third-password"]).ok
    );
    assert_eq!(me(&dana), 401);
    assert_eq!(me(&w.token_for("dana", "dana-third-password")), 200);
    let refused =
        cli(&w, &["ad", "user", "update", "--id", "dana", "--password", "short"]).err_line();
    assert!(refused.contains("12 to 256"), "{refused}");

    // A registry token's access tokens end when it is disabled or deleted.
    let reg = registry_id("default");
    let (s, v) = arm(
        &w,
        Method::PUT,
        &format!("{reg}/tokens/revokable"),
        Some(json!({"properties": {"scopeMapId": format!("{reg}/scopeMaps/_repositories_pull")}})),
    );
    assert_eq!(s, 201, "{v}");
    let (_, v) = arm(
        &w,
        Method::POST,
        &format!("{reg}/generateCredentials"),
        Some(json!({"tokenId": format!("{reg}/tokens/revokable"), "name": "password1"})),
    );
    let password = v["passwords"][0]["value"].as_str().unwrap().to_owned();
    let token_access = || {
        let r = anon_client()
            .get(format!("{}/oauth2/token?service=x&scope=repository:app:pull", w.url()))
            .header("authorization", basic("revokable", &password))
            .send()
            .unwrap();
        r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_owned()
    };
    let v2_with = |t: &str| {
        anon_client()
            .get(format!("{}/v2/", w.url()))
            .bearer_auth(t)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let t = token_access();
    assert_eq!(v2_with(&t), 200);
    let (s, _) = arm(
        &w,
        Method::PATCH,
        &format!("{reg}/tokens/revokable"),
        Some(json!({"properties": {"status": "disabled"}})),
    );
    assert_eq!(s, 200);
    assert_eq!(v2_with(&t), 401);
    arm(
        &w,
        Method::PATCH,
        &format!("{reg}/tokens/revokable"),
        Some(json!({"properties": {"status": "enabled"}})),
    );
    let t = token_access();
    assert_eq!(v2_with(&t), 200);
    arm(&w, Method::DELETE, &format!("{reg}/tokens/revokable"), None);
    assert_eq!(v2_with(&t), 401);

    // Someone always keeps the keys to everything: the last Owner of `/` can't be disabled
    // or deleted.
    let admin_path = format!("{}/v1.0/users/admin", w.url());
    let r =
        w.graph_client().patch(&admin_path).json(&json!({"accountEnabled": false})).send().unwrap();
    assert_eq!(r.status(), 409, "{}", r.text().unwrap());
    assert_eq!(me(&w.token_for("admin", ADMIN_PASSWORD)), 200);
    // Signing keys: a token signed before a rotation works until its key is pruned; a
    // default prune keeps keys a valid token may need, --all-retired doesn't.
    let old = w.admin_token();
    let keys = cli(&w, &["keys", "rotate"]).ok_json();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert_eq!(me(&old), 200);
    assert_eq!(cli(&w, &["keys", "prune"]).ok_json()["pruned"], 0);
    assert_eq!(me(&old), 200);
    assert_eq!(cli(&w, &["keys", "prune", "--all-retired"]).ok_json()["pruned"], 1);
    assert_eq!(me(&old), 401);
    let keys = cli(&w, &["keys", "list"]).ok_json();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["signing"], true);

    for secret in [&sp.secret, &password] {
        assert!(!w.log().contains(secret.as_str()));
    }
}

/// The last two principals holding Owner and Directory Administrator at `/`, each disabled
/// at the same moment by one of them: one change goes through and the other is refused, so
/// someone enabled keeps the keys (checked one at a time: before, each check could see the
/// other still enabled and both went through).
#[test]
fn the_last_two_keepers_cannot_both_be_disabled_at_once() {
    let w = Wharf::start();
    let a = create_sp(&w, "keeper-a");
    let b = create_sp(&w, "keeper-b");
    for sp in [&a, &b] {
        assign(&w, &sp.id, "Directory Administrator", "");
        assign(&w, &sp.id, "Owner", "");
    }
    // admin steps down (Directory Administrator first: taking it away needs Owner).
    let admin = cli(&w, &["ad", "user", "show", "--id", "admin"]).ok_json();
    let filter = format!("$filter=principalId eq '{}'", admin["id"].as_str().unwrap());
    let path = "/providers/Microsoft.Authorization/roleAssignments";
    let (s, listed) = arm(&w, Method::GET, &format!("{path}?{filter}"), None);
    assert_eq!(s, 200, "{listed}");
    for role in ["Directory Administrator", "Owner"] {
        let role = role_id(&w, role);
        let held = listed["value"].as_array().unwrap().iter().find(|a| {
            a["properties"]["roleDefinitionId"] == role.as_str() && a["properties"]["scope"] == "/"
        });
        let id = held.unwrap_or_else(|| panic!("admin holds {role} at /: {listed}"))["id"]
            .as_str()
            .unwrap();
        let (s, v) = arm(&w, Method::DELETE, id, None);
        assert_eq!(s, 200, "{v}");
    }
    let token = w.graph_token_for_app(&a.app, &a.secret);
    let barrier = std::sync::Barrier::new(2);
    let mut statuses: Vec<u16> = std::thread::scope(|s| {
        let disable = |sp: &Sp| {
            let (token, barrier, url) = (&token, &barrier, w.url());
            let id = sp.id.clone();
            s.spawn(move || {
                barrier.wait();
                anon_client()
                    .patch(format!("{url}/v1.0/servicePrincipals/{id}"))
                    .bearer_auth(token)
                    .json(&json!({"accountEnabled": false}))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        let both = [disable(&a), disable(&b)];
        both.map(|h| h.join().unwrap()).to_vec()
    });
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 409]);
}
