//! The HTTP client the CLI's commands use to talk to a wharf server: the management API
//! (ARM shapes), and the data plane of one registry (by its login server as `Host`).

use std::collections::HashMap;

use anyhow::{Context, bail};
use reqwest::header::{HOST, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::args::RegistryRef;
use crate::session;

/// The api-version the CLI sends (any well-formed one works with wharf).
pub(crate) const API_VERSION: &str = "2025-11-01";
/// Where `wharf registry create` puts a registry without `-g`.
pub(crate) const DEFAULT_SUBSCRIPTION: &str = wharf_storage::DEFAULT_SUBSCRIPTION;
pub(crate) const DEFAULT_RESOURCE_GROUP: &str = wharf_storage::DEFAULT_RESOURCE_GROUP;

/// An answer: status, headers, JSON body (`Null` when empty or not JSON).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

/// A client for one wharf server, signed in as [`crate::session`] decides.
pub(crate) struct Client {
    http: reqwest::Client,
    pub(crate) base: String,
    /// The management token (`Authorization: Bearer`), if signed in.
    token: Option<String>,
    /// The directory's token (`/v1.0/…`), fetched when first needed.
    directory_token: tokio::sync::OnceCell<Option<String>>,
    /// Registry refresh tokens, per login server (exchanged for the management token once).
    registry_tokens: tokio::sync::Mutex<HashMap<String, String>>,
}

/// The message of an error answer: ARM's `(Code) message` or the OCI `CODE: message`.
fn error_message(a: &Answer) -> String {
    if let Some(e) = a.body.get("error").filter(|e| e.is_object()) {
        return format!(
            "({}) {}",
            e["code"].as_str().unwrap_or("Error"),
            e["message"].as_str().unwrap_or("")
        );
    }
    if let Some(e) = a.body.pointer("/errors/0") {
        return format!(
            "{}: {}",
            e["code"].as_str().unwrap_or("ERROR"),
            e["message"].as_str().unwrap_or("")
        );
    }
    if a.status == StatusCode::UNAUTHORIZED {
        return "not signed in: run `wharf login` (or set WHARF_USERNAME and WHARF_PASSWORD)"
            .into();
    }
    format!("the server answered {}", a.status)
}

impl Client {
    /// A client for `server`, signed in with the environment's credentials or a cached
    /// `wharf login`.
    pub(crate) async fn new(server: &str) -> anyhow::Result<Client> {
        let http = session::http_client()?;
        let base = server.trim_end_matches('/').to_owned();
        let token = session::token(&http, &base, session::MANAGEMENT).await?;
        Ok(Client {
            http,
            base,
            token,
            directory_token: Default::default(),
            registry_tokens: Default::default(),
        })
    }

    /// Whether `url` is on this client's server (only there is the token sent).
    fn same_server(&self, url: &str) -> bool {
        let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
        origin(url).is_some_and(|o| Some(o) == origin(&self.base))
    }

    /// A registry refresh token for `login_server`, from `/oauth2/exchange`.
    async fn registry_token(&self, login_server: &str) -> anyhow::Result<Option<String>> {
        let Some(token) = &self.token else { return Ok(None) };
        let mut cache = self.registry_tokens.lock().await;
        if let Some(t) = cache.get(login_server) {
            return Ok(Some(t.clone()));
        }
        let res = self
            .http
            .post(format!("{}/oauth2/exchange", self.base))
            .header(HOST, login_server)
            .form(&[
                ("grant_type", "access_token"),
                ("service", login_server),
                ("access_token", token.as_str()),
            ])
            .send()
            .await
            .with_context(|| format!("cannot reach the wharf server at {}", self.base))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let a = Answer { status, headers: HeaderMap::new(), body };
            bail!("cannot sign in to {login_server}: {}", error_message(&a));
        }
        let refresh = body["refresh_token"]
            .as_str()
            .context("the exchange answer has no refresh_token")?
            .to_owned();
        cache.insert(login_server.to_owned(), refresh.clone());
        Ok(Some(refresh))
    }

    /// The token for a request to this server: the directory's under `/v1.0/`, else the
    /// management token.
    async fn token_for(&self, url: &str) -> anyhow::Result<Option<&String>> {
        let path = reqwest::Url::parse(url).map(|u| u.path().to_owned()).unwrap_or_default();
        if !path.starts_with("/v1.0/") {
            return Ok(self.token.as_ref());
        }
        let token = self
            .directory_token
            .get_or_try_init(|| session::token(&self.http, &self.base, session::DIRECTORY))
            .await?;
        Ok(token.as_ref())
    }

    /// Any request; `host` sets the `Host` header (a registry's login server).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        host: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url =
            if url.starts_with("http") { url.to_owned() } else { format!("{}{url}", self.base) };
        let mut req = self.http.request(method, &url);
        match host {
            // The data plane of a registry: its refresh token as Basic (ACR's null-GUID form).
            Some(h) => {
                req = req.header(HOST, h);
                if let Some(refresh) = self.registry_token(h).await? {
                    req = req.basic_auth(wharf_auth::NULL_GUID, Some(refresh));
                }
            }
            None if self.same_server(&url) => {
                if let Some(t) = self.token_for(&url).await? {
                    req = req.bearer_auth(t);
                }
            }
            None => {}
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the wharf server at {}", self.base))?;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.context("the server's answer broke off")?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, headers, body })
    }

    /// A management call; fails with the ARM error's code and message.
    pub(crate) async fn arm(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let a =
            self.send(method, &format!("{path}{sep}api-version={API_VERSION}"), None, body).await?;
        if !a.status.is_success() {
            bail!("{}", error_message(&a));
        }
        Ok(a)
    }

    /// A data-plane call on a registry; fails with the OCI error's code and message.
    pub(crate) async fn data(
        &self,
        method: Method,
        login_server: &str,
        path: &str,
    ) -> anyhow::Result<Answer> {
        let a = self.send(method, path, Some(login_server), None).await?;
        if !a.status.is_success() {
            bail!("{}", error_message(&a));
        }
        Ok(a)
    }

    /// A call to the directory (`/v1.0/…`); fails with its error's code and message.
    pub(crate) async fn directory(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let a = self.send(method, path, None, body).await?;
        if !a.status.is_success() {
            bail!("{}", error_message(&a));
        }
        Ok(a)
    }

    /// A GET of a wharf endpoint (`/_wharf/…`); fails with its error's message.
    pub(crate) async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let a = self.send(Method::GET, path, None, None).await?;
        if !a.status.is_success() {
            bail!("{path}: {}", error_message(&a));
        }
        Ok(a.body)
    }

    pub(crate) async fn post_json(&self, path: &str) -> anyhow::Result<Value> {
        let a = self.send(Method::POST, path, None, None).await?;
        if !a.status.is_success() {
            bail!("{path}: {}", error_message(&a));
        }
        Ok(a.body)
    }

    /// Every registry on the server (names are unique per server).
    pub(crate) async fn all_registries(&self) -> anyhow::Result<Vec<Value>> {
        let subs = self.arm(Method::GET, "/subscriptions", None).await?;
        let mut out = Vec::new();
        for s in subs.body["value"].as_array().into_iter().flatten() {
            let id = s["subscriptionId"].as_str().unwrap_or_default();
            let list = self
                .arm(
                    Method::GET,
                    &format!(
                        "/subscriptions/{id}/providers/Microsoft.ContainerRegistry/registries"
                    ),
                    None,
                )
                .await?;
            out.extend(list.body["value"].as_array().into_iter().flatten().cloned());
        }
        Ok(out)
    }

    /// The registry resource a `-n/-g/--subscription` names.
    pub(crate) async fn registry(&self, r: &RegistryRef) -> anyhow::Result<Value> {
        if let Some(rg) = &r.resource_group {
            let sub = r.subscription.as_deref().unwrap_or(DEFAULT_SUBSCRIPTION);
            let path = format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{}",
                r.name
            );
            return Ok(self.arm(Method::GET, &path, None).await?.body);
        }
        let all = self.all_registries().await?;
        all.into_iter()
            .find(|v| {
                v["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(&r.name))
                    && r.subscription.as_deref().is_none_or(|s| {
                        v["id"].as_str().is_some_and(|id| id.to_ascii_lowercase().starts_with(&format!("/subscriptions/{}/", s.to_ascii_lowercase())))
                    })
            })
            .with_context(|| {
                format!("The resource with name '{}' and type 'Microsoft.ContainerRegistry/registries' could not be found on {}.", r.name, self.base)
            })
    }
}

/// A registry resource's login server.
pub(crate) fn login_server(registry: &Value) -> anyhow::Result<String> {
    registry["properties"]["loginServer"]
        .as_str()
        .map(str::to_owned)
        .context("the registry resource has no loginServer")
}
