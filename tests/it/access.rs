//! Access control as users meet it: every kind of caller against every kind of route, and
//! the attacks a registry on the internet sees.

use std::collections::BTreeMap;
use std::process::Command;

use reqwest::Method;
use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};

use crate::util::*;

const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/authz";

fn reg_id(name: &str) -> String {
    format!("{RG}/providers/Microsoft.ContainerRegistry/registries/{name}")
}

/// A service principal: its object id, app id and secret.
struct Sp {
    id: String,
    app: String,
    secret: String,
}

fn create_sp(w: &Wharf, name: &str) -> Sp {
    let r = w
        .arm_client()
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

fn assign(w: &Wharf, principal: &str, role: &str, scope: &str) -> String {
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
    data: Option<String>,
}

/// The test's world: a server, two registries (classic and ABAC) in one resource group.
struct World {
    w: Wharf,
    legacy: String,
    abac: String,
    manifest: Vec<u8>,
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
    for (name, mode) in
        [("legacyreg", "LegacyRegistryPermissions"), ("abacreg", "AbacRepositoryPermissions")]
    {
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
        let r = w.arm_client().get(format!("{}/v1.0/users/admin", w.url())).send().unwrap();
        r.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned()
    };
    assign(&w, &admin_id, "Container Registry Repository Contributor", &reg_id("abacreg"));

    let legacy = format!("legacyreg.localhost:{}", w.port);
    let abac = format!("abacreg.localhost:{}", w.port);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = bytes(7, 1000);
    let manifest = image_manifest(&config, &[&layer]);
    let world = World { w, legacy: legacy.clone(), abac: abac.clone(), manifest };
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

    // The callers.
    let mut who: Vec<Who> =
        vec![Who { name: "anonymous".into(), arm: None, arm_na: false, data: None }];
    let pull = create_sp(w, "puller");
    assign(w, &pull.id, "AcrPull", RG);
    who.push(Who {
        name: "wrong-password".into(),
        arm: Some("Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into()),
        arm_na: false,
        data: Some(basic(&pull.app, "not-the-secret")),
    });
    let expired = create_sp(w, "expired");
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
        assign(w, &sp.id, role, RG);
        who.push(Who {
            name: role.into(),
            arm: Some(format!("Bearer {}", w.token_for_app(&sp.app, &sp.secret))),
            arm_na: false,
            data: Some(basic(&sp.app, &sp.secret)),
        });
    }
    let nobody = create_sp(w, "no-role");
    who.push(Who {
        name: "no role assignment".into(),
        arm: Some(format!("Bearer {}", w.token_for_app(&nobody.app, &nobody.secret))),
        arm_na: false,
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
    assign(w, &importer.id, "Importer only", RG);
    who.push(Who {
        name: "custom: import only".into(),
        arm: Some(format!("Bearer {}", w.token_for_app(&importer.app, &importer.secret))),
        arm_na: false,
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
        data: Some(format!("Bearer {}", other["access_token"].as_str().unwrap())),
    });

    // Each row for each caller; a refusal changes nothing.
    let mut table: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let rows = rows();
    for (i, row) in rows.iter().enumerate() {
        for caller in &who {
            let before = world.fingerprint();
            let cell = (row.run)(&world, caller);
            let ok = cell.as_deref().is_some_and(|c| c.starts_with('2'));
            if ok {
                (row.undo)(&world);
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
    insta::assert_snapshot!("authorization_matrix", out);
}
