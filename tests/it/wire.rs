//! Every wire shape, pinned. The whole application is built in-process as `wharf serve`
//! builds it (`wharf_cli::in_process`: a temporary data directory, the embedded SQLite
//! store, filesystem blobs, the first start's admin), requests go to
//! `wharf_server::router` through `tower::ServiceExt::oneshot`, and each answer — status,
//! headers, body — is an insta snapshot named for what it shows (`snapshots/it__wire__*`).
//! What differs from run to run (time stamps, random ids, tokens, secrets) is replaced by
//! a placeholder; content is made deterministic where it can be (so digests are real).
//!
//! These are the safety net of refactors that must not change the wire: a changed
//! snapshot is a changed wire, never to be accepted as a matter of course.

mod acr;
mod arm;
mod cli;
mod health;
mod identity;
mod metrics;
mod oci;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, Method, Request, StatusCode};
use regex::Regex;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;

/// The address the in-process server is taken to listen on (nothing binds it): what its
/// login servers, realms and token issuer name.
pub(super) const HOST: &str = "127.0.0.1:5000";

/// The default subscription and resource group (the first start makes them).
pub(super) const SUB: &str = "00000000-0000-0000-0000-000000000000";

/// Scopes of identity tokens: the management API, the directory.
pub(super) const ARM_SCOPE: &str = "https://management.azure.com/.default";
pub(super) const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The api-version the management calls send.
pub(super) const API: &str = "api-version=2025-11-01";

/// One server, in-process.
pub(super) struct App {
    router: axum::Router,
    pub(super) state: wharf_server::AppState,
    /// The first start's admin password (from `<data-dir>/admin-password`).
    pub(super) password: String,
    /// Values that vary between runs, and what snapshots show instead.
    named: std::sync::Mutex<Vec<(String, String)>>,
    /// The admin's identity tokens by scope.
    tokens: std::sync::Mutex<HashMap<String, String>>,
    /// Ids that look random but are fixed (the built-in role definitions').
    fixed: HashSet<String>,
    _server: wharf_cli::InProcess,
    _tmp: tempfile::TempDir,
}

impl App {
    pub(super) async fn start() -> App {
        App::start_with("", &[]).await
    }

    /// A server with a configuration file holding `toml`, and more `wharf serve` flags.
    pub(super) async fn start_with(toml: &str, flags: &[&str]) -> App {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let config = tmp.path().join("wharf.toml");
        std::fs::write(&config, toml).unwrap();
        let mut args = vec![
            "--listen",
            HOST,
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--gc-interval",
            "0s",
        ];
        args.extend_from_slice(flags);
        let server = wharf_cli::in_process(&args).await.unwrap();
        let password = std::fs::read_to_string(data.join("admin-password")).unwrap();
        let state = server.state.clone();
        let mut app = App {
            router: wharf_server::router(state.clone()),
            state,
            password: password.trim().to_owned(),
            named: std::sync::Mutex::new(Vec::new()),
            tokens: std::sync::Mutex::new(HashMap::new()),
            fixed: HashSet::new(),
            _server: server,
            _tmp: tmp,
        };
        app.learn_fixed_values().await;
        app
    }

    /// The run's tenant and admin get names; the built-in roles' ids are kept as they are.
    async fn learn_fixed_values(&mut self) {
        let tenant = self.state.identity.default_tenant().to_owned();
        self.name(&tenant, "[tenant]");
        let admin = self.state.identity.principal("admin").await.unwrap();
        self.name(&admin.id, "[admin-id]");
        self.name(&self.password.clone(), "[admin-password]");
        let token = self.token(ARM_SCOPE).await;
        let roles = self
            .call(Method::GET, &format!("/providers/Microsoft.Authorization/roleDefinitions?{API}"))
            .bearer(&token)
            .send()
            .await
            .json();
        for r in roles["value"].as_array().unwrap() {
            self.fixed.insert(r["name"].as_str().unwrap().to_owned());
        }
    }

    /// Show `value` as `label` in snapshots (a random id a test learned).
    pub(super) fn name(&self, value: &str, label: &str) {
        self.named.lock().unwrap().push((value.to_owned(), label.to_owned()));
    }

    /// A request to the server, from 127.0.0.1, addressed to [`HOST`].
    pub(super) fn call(&self, method: Method, path: &str) -> Call<'_> {
        // Queries as tests write them (`$filter=name eq 'x'`), encoded as clients send them.
        let uri = path.replace(' ', "%20").replace('\'', "%27");
        Call {
            app: self,
            request: Request::builder().method(method).uri(uri).header("host", HOST),
            peer: IpAddr::from([127, 0, 0, 1]),
            body: Vec::new(),
        }
    }

    /// The admin's identity token for `scope` (management or directory), fetched once.
    pub(super) async fn token(&self, scope: &str) -> String {
        if let Some(t) = self.tokens.lock().unwrap().get(scope) {
            return t.clone();
        }
        let t = self.token_of("admin", &self.password, scope).await;
        self.tokens.lock().unwrap().insert(scope.to_owned(), t.clone());
        t
    }

    /// The admin's `Basic` credentials.
    pub(super) fn basic(&self) -> String {
        basic("admin", &self.password)
    }

    /// Replace what varies from run to run in `v` by placeholders.
    pub(super) fn normalize(&self, v: Value) -> Value {
        let named = self.named.lock().unwrap().clone();
        Normalizer::new(named, &self.fixed).value(v, None)
    }

    /// Snapshot a reply as `name`.
    pub(super) fn snap(&self, name: &str, reply: &Reply) {
        snap_json(name, self.normalize(reply.shape()));
    }

    /// Run `ARM_SCOPE`-signed management calls as the admin.
    pub(super) async fn arm(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let token = self.token(ARM_SCOPE).await;
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut call = self.call(method, &format!("{path}{sep}{API}")).bearer(&token);
        if let Some(b) = body {
            call = call.json(&b);
        }
        call.send().await
    }
}

/// A form body (`application/x-www-form-urlencoded`) of `pairs`.
pub(super) fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// Snapshot a JSON value (already normalized) as `name`, beside the other wire shapes.
pub(super) fn snap_json(name: &str, v: Value) {
    insta::assert_json_snapshot!(name, v);
}

/// Snapshot text (a CLI's output) as `name`.
pub(super) fn snap_text(name: &str, text: &str) {
    insta::assert_snapshot!(name, text);
}

/// `Basic` credentials as an `Authorization` value.
pub(super) fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// A request being built.
pub(super) struct Call<'a> {
    app: &'a App,
    request: http::request::Builder,
    peer: IpAddr,
    body: Vec<u8>,
}

impl Call<'_> {
    pub(super) fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Addressed to another host (a registry's login server).
    pub(super) fn host(mut self, host: &str) -> Self {
        if let Some(h) = self.request.headers_mut() {
            h.insert("host", host.parse().unwrap());
        }
        self
    }

    pub(super) fn auth(self, value: &str) -> Self {
        self.header("authorization", value)
    }

    pub(super) fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// From another client address (network rules, per-client caps and throttles read it).
    pub(super) fn from(mut self, ip: &str) -> Self {
        self.peer = ip.parse().unwrap();
        self
    }

    pub(super) fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub(super) fn json(self, v: &Value) -> Self {
        self.header("content-type", "application/json").body(v.to_string())
    }

    pub(super) fn form(self, form: &str) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded").body(form.to_owned())
    }

    /// Send, and read the whole answer.
    pub(super) async fn send(self) -> Reply {
        let res = self.start().await;
        let (parts, body) = res.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
        Reply { status: parts.status, headers: parts.headers, body: body.to_vec() }
    }

    /// Send, and hand back the answer with its body unread (a transfer still holding its
    /// slot).
    pub(super) async fn start(self) -> http::Response<Body> {
        let mut req = self.request.body(Body::from(self.body)).unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(self.peer, 40000)));
        self.app.router.clone().oneshot(req).await.unwrap()
    }
}

/// An answer, read whole.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    pub(super) fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Status, every header (sorted by name) and the body: JSON when it parses, else text.
    pub(super) fn shape(&self) -> Value {
        let mut headers = BTreeMap::new();
        for (k, v) in &self.headers {
            headers.insert(k.as_str().to_owned(), json!(v.to_str().unwrap_or("<binary>")));
        }
        let body = if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&self.body).unwrap_or_else(|_| json!(self.text()))
        };
        json!({"status": self.status.as_u16(), "headers": headers, "body": body})
    }
}

/// What replaces the parts of an answer that differ between runs.
pub(super) struct Normalizer<'a> {
    named: Vec<(String, String)>,
    fixed: &'a HashSet<String>,
    /// Random UUIDs met so far, numbered in order of appearance.
    seen: HashMap<String, usize>,
}

/// Keys whose string values are secrets, tokens or signing keys made fresh on every run.
const SECRET_KEYS: &[&str] =
    &["access_token", "token", "refresh_token", "secretText", "password", "hint", "kid", "x", "y"];

fn patterns() -> &'static [(Regex, &'static str); 2] {
    static P: std::sync::OnceLock<[(Regex, &str); 2]> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        [
            (Regex::new(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+").unwrap(), "[jwt]"),
            (
                Regex::new(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)").unwrap(),
                "[time]",
            ),
        ]
    })
}

fn uuid_pattern() -> &'static Regex {
    static P: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        Regex::new(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}",
        )
        .unwrap()
    })
}

impl<'a> Normalizer<'a> {
    /// `named` values are shown as their labels, `fixed` ids as they are; other random
    /// UUIDs are numbered in order of appearance.
    pub(super) fn new(named: Vec<(String, String)>, fixed: &'a HashSet<String>) -> Self {
        Normalizer { named, fixed, seen: HashMap::new() }
    }

    pub(super) fn value(&mut self, v: Value, key: Option<&str>) -> Value {
        match v {
            Value::String(s) if key.is_some_and(|k| SECRET_KEYS.contains(&k)) && !s.is_empty() => {
                json!("[secret]")
            }
            Value::String(s) => json!(self.string(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|i| self.value(i, None)).collect())
            }
            Value::Object(map) => {
                // A registry credential's password: `{"name": "password1", "value": "…"}`.
                let password = map.get("name").and_then(Value::as_str).is_some_and(|n| {
                    n.starts_with("password") && map.get("value").is_some_and(Value::is_string)
                });
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    let v = if password && k == "value" { json!("[secret]") } else { v };
                    let v = self.value(v, Some(&k));
                    out.insert(k, v);
                }
                Value::Object(out)
            }
            other => other,
        }
    }

    pub(super) fn string(&mut self, s: &str) -> String {
        let mut s = s.to_owned();
        for (value, label) in &self.named {
            if !value.is_empty() {
                s = s.replace(value.as_str(), label);
            }
        }
        for (re, label) in patterns() {
            s = re.replace_all(&s, *label).into_owned();
        }
        let fixed = self.fixed;
        let seen = &mut self.seen;
        uuid_pattern()
            .replace_all(&s, |c: &regex::Captures<'_>| {
                let id = c[0].to_ascii_lowercase();
                if fixed.contains(&id) {
                    return id;
                }
                let next = seen.len() + 1;
                format!("[uuid-{}]", seen.entry(id).or_insert(next))
            })
            .into_owned()
    }
}

/// `sha256:<hex>` of bytes.
pub(super) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(super) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(super) const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

impl App {
    /// Push a blob monolithically (admin, to `host`); its digest.
    pub(super) async fn push_blob(&self, host: &str, repo: &str, bytes: &[u8]) -> String {
        let d = digest_of(bytes);
        let r = self
            .call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={d}"))
            .host(host)
            .auth(&self.basic())
            .body(bytes.to_vec())
            .send()
            .await;
        assert_eq!(r.status, 201, "push blob: {}", r.text());
        d
    }

    /// Push an image (a config and one layer, fixed content) under `repo:tag`; the manifest
    /// bytes and digest.
    pub(super) async fn push_image(
        &self,
        host: &str,
        repo: &str,
        tag: &str,
        layer: &[u8],
    ) -> (Vec<u8>, String) {
        let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
        let config = serde_json::to_vec(&config).unwrap();
        self.push_blob(host, repo, &config).await;
        self.push_blob(host, repo, layer).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(&config), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(layer), "size": layer.len()}],
        }))
        .unwrap();
        let r = self.put_manifest(host, repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status, 201, "push manifest: {}", r.text());
        let d = digest_of(&manifest);
        (manifest, d)
    }

    pub(super) async fn put_manifest(
        &self,
        host: &str,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Reply {
        self.call(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .host(host)
            .auth(&self.basic())
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
    }
}

impl App {
    /// A user with no role anywhere (made through the directory); its password.
    pub(super) async fn create_user(&self, name: &str) -> String {
        let password = format!("{name}-password-0");
        let token = self.token(GRAPH_SCOPE).await;
        let r = self
            .call(Method::POST, "/v1.0/users")
            .bearer(&token)
            .json(&json!({"userPrincipalName": name, "passwordProfile": {"password": password}}))
            .send()
            .await;
        assert_eq!(r.status, 201, "create user: {}", r.text());
        self.name(r.json()["id"].as_str().unwrap(), &format!("[{name}-id]"));
        password
    }

    /// An identity token of a user for `scope`.
    pub(super) async fn token_of(&self, user: &str, password: &str, scope: &str) -> String {
        let form = form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("scope", scope),
        ]);
        let r = self.call(Method::POST, "/common/oauth2/v2.0/token").form(&form).send().await;
        assert_eq!(r.status, 200, "sign in: {}", r.text());
        r.json()["access_token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn the_harness_names_what_varies() {
    let app = App::start().await;
    app.name("9f6c2e64-0000-4000-8000-000000000001", "[learned]");
    let v = app.normalize(json!({
        "id": "9f6c2e64-0000-4000-8000-000000000001",
        "other": "/x/3e0e6b1a-1111-4222-8333-444455556666/y",
        "again": "3E0E6B1A-1111-4222-8333-444455556666",
        "when": "2025-01-02T03:04:05.123Z",
        "token": "abc",
        "tenant": app.state.identity.default_tenant(),
    }));
    assert_eq!(
        v,
        json!({"id": "[learned]", "other": "/x/[uuid-1]/y", "again": "[uuid-1]",
               "when": "[time]", "token": "[secret]", "tenant": "[tenant]"})
    );
}
