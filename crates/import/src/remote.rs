//! A client for one source registry: the distribution API with Docker's token flow, retries,
//! and a per-host pause on 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use tokio::sync::Mutex;
use url::Url;
use wharf_oci::manifest::Descriptor;
use wharf_oci::{Digest, Reference, RepositoryName, media_type};
use wharf_registry::{ByteStream, MAX_MANIFEST_SIZE};
use wharf_storage::Coordination;

use crate::ImportError;
use crate::policy::{EgressPolicy, EgressRefused, Endpoint};
use crate::request::Credentials;

/// Tries of one request on connection errors and 5xx answers.
const MAX_ATTEMPTS: u32 = 6;
/// How long 429 answers may hold a request up in all, before the import gives up.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(900);
/// The most of an error answer (401, 404, 429, 5xx…) read for its message; the rest is
/// dropped with the connection.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// The largest token-service answer read.
const TOKEN_BODY_LIMIT: usize = 1 << 20;
/// The longest an error answer's body is read for.
const ERROR_BODY_TIME: Duration = Duration::from_secs(10);

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.artifact.manifest.v1+json, */*;q=0.1";

/// Pauses every request to one host after it answered 429, for as long as it asked. In a
/// cluster the pause is shared: recorded in the database for the other nodes, and theirs
/// read back (at most once per [`SHARED_READ`]) before a request goes out.
#[derive(Default)]
pub(crate) struct HostLimiter {
    paused_until: StdMutex<Option<Instant>>,
    /// Time requests spent held back here, in all (ms).
    held_ms: std::sync::atomic::AtomicU64,
    /// The cluster's record of pauses, and this upstream's name in it.
    shared: Option<(Arc<dyn Coordination>, String)>,
    /// When the cluster's record was last read.
    read_at: StdMutex<Option<Instant>>,
}

/// How stale a node's view of the cluster's pauses may be.
const SHARED_READ: Duration = Duration::from_secs(1);

impl HostLimiter {
    /// A limiter whose pauses the other nodes of `cluster` share.
    pub(crate) fn shared(cluster: Arc<dyn Coordination>, upstream: String) -> Self {
        HostLimiter { shared: Some((cluster, upstream)), ..HostLimiter::default() }
    }

    async fn wait(&self) {
        let start = Instant::now();
        self.read_shared().await;
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => break,
            }
        }
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.held_ms.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Take in a pause another node recorded. Best effort: the database unreachable, the
    /// request goes out and the upstream's own 429 says the rest.
    async fn read_shared(&self) {
        let Some((cluster, upstream)) = &self.shared else { return };
        {
            let mut at = self.read_at.lock().unwrap_or_else(PoisonError::into_inner);
            if at.is_some_and(|t| t.elapsed() < SHARED_READ) {
                return;
            }
            *at = Some(Instant::now());
        }
        match cluster.upstream_paused_until(upstream).await {
            Ok(Some(until)) => {
                let left = until.saturating_sub(wharf_storage::now_millis());
                if left > 0 {
                    self.pause_here(Duration::from_millis(left.unsigned_abs()));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the cluster's upstream pauses"),
        }
    }

    fn held(&self) -> Duration {
        Duration::from_millis(self.held_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn pause(&self, d: Duration) {
        self.pause_here(d);
        if let Some((cluster, upstream)) = &self.shared {
            let (cluster, upstream) = (cluster.clone(), upstream.clone());
            let until = wharf_storage::now_millis()
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            tokio::spawn(async move {
                if let Err(e) = cluster.pause_upstream(&upstream, until).await {
                    tracing::warn!(error = %e, "cannot share an upstream's pause with the cluster");
                }
            });
        }
    }

    fn pause_here(&self, d: Duration) {
        let mut slot = self.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        let until = Instant::now() + d;
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
    }
}

/// A manifest fetched from a source, verified against its digest.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    pub(crate) bytes: Bytes,
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
}

#[derive(Default)]
struct AuthState {
    basic: bool,
    bearer: Option<(String, Option<String>)>, // realm, service
    tokens: HashMap<String, String>,
}

pub(crate) struct RemoteRegistry {
    http: reqwest::Client,
    endpoint: Endpoint,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
    limiter: Arc<HostLimiter>,
    policy: Arc<EgressPolicy>,
    /// The whole of a small request (token, manifest, referrers), answer body included.
    request_timeout: Duration,
}

/// The OCI (or any JSON) error of an answer, for messages: `404 MANIFEST_UNKNOWN "…"`.
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (code, message) = if let Some(e) = v.pointer("/errors/0") {
        (e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""))
    } else if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        (e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""))
    } else {
        ("", "")
    };
    let text;
    let message = if message.is_empty() && code.is_empty() {
        text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned();
        text.as_str()
    } else {
        message
    };
    let mut out = status.as_u16().to_string();
    if !code.is_empty() {
        out.push(' ');
        out.push_str(code);
    }
    if !message.is_empty() {
        out.push_str(&format!(" \"{message}\""));
    }
    out
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(8))
}

/// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
fn parse_challenge(v: &str) -> Option<(String, HashMap<String, String>)> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key, value.to_owned());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_ascii_lowercase(), params))
}

impl RemoteRegistry {
    pub(crate) fn new(
        http: reqwest::Client,
        endpoint: Endpoint,
        credentials: Option<Credentials>,
        limiter: Arc<HostLimiter>,
        policy: Arc<EgressPolicy>,
        request_timeout: Duration,
    ) -> Self {
        RemoteRegistry {
            http,
            endpoint,
            credentials,
            auth: Mutex::new(AuthState::default()),
            limiter,
            policy,
            request_timeout,
        }
    }

    pub(crate) fn display(&self) -> &str {
        &self.endpoint.display
    }

    /// Time this source's requests were held back by its 429s.
    pub(crate) fn paused(&self) -> Duration {
        self.limiter.held()
    }

    pub(crate) fn base(&self) -> &str {
        self.endpoint.base.as_str()
    }

    /// A one-way fingerprint of the credentials (kept in memory only), so that imports with
    /// different credentials never share what one of them could read.
    pub(crate) fn credential_fingerprint(&self) -> String {
        match &self.credentials {
            None => "anonymous".into(),
            Some(c) => {
                let raw = format!("{}\0{}", c.username.as_deref().unwrap_or(""), c.password);
                Digest::sha256_of(raw.as_bytes()).hex()[..16].to_owned()
            }
        }
    }

    fn url(&self, path: &str) -> Result<Url, ImportError> {
        self.endpoint.base.join(path).map_err(ImportError::internal)
    }

    fn connect_error(&self, e: reqwest::Error) -> ImportError {
        if e.is_timeout() {
            return ImportError::SourceTooSlow(format!(
                "The source registry {} did not answer in time.",
                self.display()
            ));
        }
        // The URL (perhaps a CDN's, signed in its query) stays out of the message.
        let e = e.without_url();
        let mut chain = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        let mut refused = None;
        while let Some(err) = source {
            if let Some(r) = err.downcast_ref::<EgressRefused>() {
                refused = Some(r.to_string());
            }
            let s = err.to_string();
            if !chain.contains(&s) {
                if !chain.is_empty() {
                    chain.push_str(": ");
                }
                chain.push_str(&s);
            }
            source = err.source();
        }
        match refused {
            Some(r) => ImportError::SourceAddressNotAllowed(format!(
                "The source registry {} is not allowed: {r}.",
                self.display()
            )),
            None => ImportError::SourceUnreachable(format!(
                "The source registry {} could not be reached: {chain}.",
                self.display()
            )),
        }
    }

    async fn auth_header(&self, scope: &str) -> Option<String> {
        let auth = self.auth.lock().await;
        if let Some(t) = auth.tokens.get(scope) {
            return Some(format!("Bearer {t}"));
        }
        if auth.basic {
            let c = self.credentials.as_ref()?;
            return Some(basic(c));
        }
        None
    }

    /// Learn the auth scheme from a 401 and get what it asks for. `false` if there is
    /// nothing more to try.
    async fn authenticate(
        &self,
        challenge: Option<&str>,
        scope: &str,
    ) -> Result<bool, ImportError> {
        let Some((scheme, params)) = challenge.and_then(parse_challenge) else {
            return Ok(false);
        };
        match scheme.as_str() {
            "basic" => {
                let mut auth = self.auth.lock().await;
                if auth.basic || self.credentials.is_none() {
                    return Ok(false);
                }
                auth.basic = true;
                Ok(true)
            }
            "bearer" => {
                let realm = params.get("realm").cloned().ok_or_else(|| {
                    ImportError::SourceUnauthorized(format!(
                        "The source registry {} asked for a token without naming its token service.",
                        self.display()
                    ))
                })?;
                let service = params.get("service").cloned();
                let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
                let mut auth = self.auth.lock().await;
                if auth.tokens.get(scope) == Some(&token) {
                    return Ok(false); // the same token was just refused
                }
                auth.bearer = Some((realm, service));
                auth.tokens.insert(scope.to_owned(), token);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Docker's token flow: GET with Basic credentials, or the OAuth2 POST form (the
    /// password grant, or a refresh token when only a password is given).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ImportError> {
        let mut url = Url::parse(realm).map_err(|_| {
            ImportError::SourceUnauthorized(format!(
                "The token service '{realm}' of {} is not a URL.",
                self.display()
            ))
        })?;
        self.policy.check_url(&url).map_err(ImportError::SourceAddressNotAllowed)?;
        let mut base = url.clone();
        base.set_query(None);
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let creds = self.credentials.as_ref();
        let use_post_first = creds.is_some_and(|c| c.username.is_none());
        let mut last = String::new();
        for post in if use_post_first { [true, false] } else { [false, true] } {
            let req = if post {
                let Some(c) = creds else { break };
                self.token_post(&base, c, service, scope)
            } else {
                let mut r = self.http.get(url.clone()).timeout(self.request_timeout);
                if let Some(c) = creds.filter(|c| c.username.is_some()) {
                    r = r.header(AUTHORIZATION, basic(c));
                }
                r
            };
            let res = self.send_retrying(req, "the token service").await?;
            let status = res.status();
            let body = if status.is_success() {
                self.read_limited(res, TOKEN_BODY_LIMIT, "the token service's answer").await?
            } else {
                snippet(res).await
            };
            if status.is_success() {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if let Some(t) = v["token"].as_str().or(v["access_token"].as_str()) {
                    return Ok(t.to_owned());
                }
                last = format!("the token service answered without a token ({status})");
                continue;
            }
            last = describe_error(status, &body);
            if status.is_server_error() {
                return Err(ImportError::SourceUnreachable(format!(
                    "The token service of the source registry {} failed: it answered {last}.",
                    self.display()
                )));
            }
            // The other way is only worth trying where this one isn't supported.
            if !matches!(status.as_u16(), 400 | 404 | 405) || creds.is_none() {
                break;
            }
        }
        Err(ImportError::SourceUnauthorized(format!(
            "The source registry {} refused the credentials: its token service answered {last}.",
            self.display()
        )))
    }

    /// The OAuth2 form of a token request: a password grant with a username, a refresh
    /// token grant without.
    fn token_post(
        &self,
        base: &Url,
        c: &Credentials,
        service: Option<&str>,
        scope: &str,
    ) -> reqwest::RequestBuilder {
        let mut form = vec![
            ("service", service.unwrap_or("").to_owned()),
            ("scope", scope.to_owned()),
            ("client_id", "wharf".to_owned()),
        ];
        match &c.username {
            Some(u) => {
                form.push(("grant_type", "password".into()));
                form.push(("username", u.clone()));
                form.push(("password", c.password.clone()));
            }
            None => {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", c.password.clone()));
            }
        }
        self.http.post(base.clone()).form(&form).timeout(self.request_timeout)
    }

    /// Send a request, retrying connection errors and 5xx answers with backoff and waiting
    /// out 429s (pausing every request to this host). The last answer, whatever it is.
    async fn send_retrying(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, ImportError> {
        let mut attempt = 0;
        let mut rate_waited = Duration::ZERO;
        loop {
            self.limiter.wait().await;
            let this =
                req.try_clone().ok_or_else(|| ImportError::internal("request not clonable"))?;
            let res = match this.send().await {
                Ok(r) => r,
                Err(e) => {
                    let err = self.connect_error(e);
                    attempt += 1;
                    if matches!(err, ImportError::SourceAddressNotAllowed(_))
                        || attempt >= MAX_ATTEMPTS
                    {
                        return Err(err);
                    }
                    tracing::debug!(
                        source = self.display(),
                        attempt,
                        "retrying after a connection error"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            let status = res.status();
            match status.as_u16() {
                429 => {
                    let wait = retry_after(res.headers())
                        .unwrap_or(Duration::from_secs(1))
                        .clamp(Duration::from_millis(100), Duration::from_secs(120));
                    rate_waited += wait;
                    if rate_waited > MAX_RATE_LIMIT_WAIT {
                        let body = snippet(res).await;
                        return Err(ImportError::SourceRateLimited(format!(
                            "The source registry {} kept answering {} from {what} for {} s; try again later or pass credentials.",
                            self.display(),
                            describe_error(status, &body),
                            rate_waited.as_secs()
                        )));
                    }
                    tracing::info!(
                        source = self.display(),
                        wait_ms = wait.as_millis() as u64,
                        "source rate limit: pausing this host"
                    );
                    self.limiter.pause(wait);
                }
                500 | 502 | 503 | 504 if attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    let wait = retry_after(res.headers())
                        .unwrap_or_else(|| backoff(attempt))
                        .min(Duration::from_secs(30));
                    tokio::time::sleep(wait).await;
                }
                _ => return Ok(res),
            }
        }
    }

    /// One registry request with auth (on a 401, learn the challenge and answer it once),
    /// through [`send_retrying`](Self::send_retrying).
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        scope: &str,
        small: bool,
    ) -> Result<reqwest::Response, ImportError> {
        let url = self.url(path)?;
        self.policy.check_url(&url).map_err(ImportError::SourceAddressNotAllowed)?;
        let mut auth_rounds = 0;
        loop {
            let mut req = self.http.request(method.clone(), url.clone()).headers(headers.clone());
            if small {
                // A manifest or a list: the whole answer is due within the request timeout
                // (blobs are held to a minimum throughput instead).
                req = req.timeout(self.request_timeout);
            }
            if let Some(a) = self.auth_header(scope).await {
                req = req.header(AUTHORIZATION, a);
            }
            let res = self.send_retrying(req, "the registry").await?;
            if res.status() == StatusCode::UNAUTHORIZED && auth_rounds < 2 {
                auth_rounds += 1;
                let challenge = res
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if self.authenticate(challenge.as_deref(), scope).await? {
                    continue;
                }
            }
            return Ok(res);
        }
    }

    /// Map a failed answer to the import error it means.
    async fn failure(&self, res: reqwest::Response, what: &str) -> ImportError {
        let status = res.status();
        let body = snippet(res).await;
        let detail = describe_error(status, &body);
        let src = self.display();
        match status.as_u16() {
            401 => ImportError::SourceUnauthorized(format!(
                "The source registry {src} requires valid credentials for {what}: it answered {detail}."
            )),
            403 => ImportError::SourceForbidden(format!(
                "The source registry {src} denied access to {what}: it answered {detail}."
            )),
            404 => ImportError::SourceImageNotFound(format!(
                "{what} was not found in the source registry {src}: it answered {detail}."
            )),
            429 => ImportError::SourceRateLimited(format!(
                "The source registry {src} rate-limited {what}: {detail}."
            )),
            s if s >= 500 => ImportError::SourceUnreachable(format!(
                "The source registry {src} failed to serve {what}: it answered {detail}."
            )),
            _ => ImportError::SourceInvalidManifest(format!(
                "The source registry {src} answered {detail} for {what}."
            )),
        }
    }

    fn scope(repo: &RepositoryName) -> String {
        format!("repository:{repo}:pull")
    }

    /// A manifest by tag or digest, its bytes checked against the digest asked for (and
    /// against `size`, the size its descriptor gives, when there is one).
    pub(crate) async fn manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        size: Option<u64>,
    ) -> Result<Option<Fetched>, ImportError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, http::HeaderValue::from_static(MANIFEST_ACCEPT));
        let res = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
                h,
                &Self::scope(repo),
                true,
            )
            .await?;
        if res.status() == StatusCode::NOT_FOUND {
            let body = snippet(res).await;
            tracing::debug!(source = self.display(), %repo, %reference, answer = describe_error(StatusCode::NOT_FOUND, &body), "manifest not found");
            return Ok(None);
        }
        if !res.status().is_success() {
            return Err(self.failure(res, &format!("manifest {repo}:{reference}")).await);
        }
        let content_type =
            res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media_type::essence);
        let limit = size.map_or(MAX_MANIFEST_SIZE, |s| {
            usize::try_from(s).unwrap_or(usize::MAX).min(MAX_MANIFEST_SIZE)
        });
        let what = format!("the manifest {repo}:{reference}");
        let bytes = self.read_limited(res, limit, &what).await?;
        if let Some(want) = size
            && want != bytes.len() as u64
        {
            return Err(ImportError::SourceDigestMismatch(format!(
                "The source registry {} served {} bytes for {what}, whose descriptor says {want}; nothing was stored.",
                self.display(),
                bytes.len()
            )));
        }
        let digest = Digest::sha256_of(&bytes);
        if let Reference::Digest(want) = reference
            && want != &digest
        {
            return Err(ImportError::SourceDigestMismatch(format!(
                "The source registry {} served a manifest for {repo}@{want} whose bytes hash to {digest}; nothing was stored.",
                self.display()
            )));
        }
        let media_type = match content_type {
            Some(t)
                if !t.is_empty()
                    && t != "application/json"
                    && t != "application/octet-stream"
                    && t != "text/plain" =>
            {
                t
            }
            _ => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned()),
        };
        Ok(Some(Fetched { bytes, media_type, digest }))
    }

    /// A blob's bytes from `offset` on (resuming with `Range`).
    pub(crate) async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        offset: u64,
    ) -> Result<Option<ByteStream>, ImportError> {
        let mut h = HeaderMap::new();
        if offset > 0 {
            h.insert(
                RANGE,
                http::HeaderValue::from_str(&format!("bytes={offset}-"))
                    .map_err(ImportError::internal)?,
            );
        }
        let res = self
            .send(Method::GET, &format!("/v2/{repo}/blobs/{digest}"), h, &Self::scope(repo), false)
            .await?;
        match res.status().as_u16() {
            404 => return Ok(None),
            200 | 206 => {}
            _ => return Err(self.failure(res, &format!("blob {digest} of {repo}")).await),
        }
        let partial = res.status() == StatusCode::PARTIAL_CONTENT;
        if partial {
            let start = res
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(ImportError::SourceUnreachable(format!(
                    "The source registry {} answered a range request for {digest} with another range; it may not be RFC 7233 compliant.",
                    self.display()
                )));
            }
        }
        // Errors without the URL: after a redirect it is a CDN's, signed in its query.
        let stream = res.bytes_stream().map_err(|e| std::io::Error::other(e.without_url()));
        // A server that ignores Range sends everything again: skip what we have.
        let skip = if partial { 0 } else { offset };
        Ok(Some(Box::pin(skip_bytes(stream, skip))))
    }

    /// The referrers of a manifest: the referrers API, else the `sha256-<hex>` tag scheme.
    pub(crate) async fn referrers(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ImportError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, http::HeaderValue::from_static(media_type::OCI_INDEX));
        let res = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/referrers/{digest}"),
                h,
                &Self::scope(repo),
                true,
            )
            .await?;
        let api = res.status().is_success()
            && res
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| media_type::essence(v) == media_type::OCI_INDEX);
        if api {
            let what = format!("the referrers of {repo}@{digest}");
            let body = self.read_limited(res, MAX_MANIFEST_SIZE, &what).await?;
            return Ok(index_entries(&body));
        }
        if !matches!(res.status().as_u16(), 200 | 400 | 404 | 405) {
            return Err(self.failure(res, &format!("referrers of {repo}@{digest}")).await);
        }
        let fallback = format!("{}-{}", digest.algorithm().as_str(), digest.hex());
        let Ok(tag) = wharf_oci::Tag::parse(&fallback) else { return Ok(Vec::new()) };
        match self.manifest(repo, &Reference::Tag(tag), None).await? {
            Some(f) if media_type::is_index(&f.media_type) => Ok(index_entries(&f.bytes)),
            _ => Ok(Vec::new()),
        }
    }
}

fn index_entries(bytes: &[u8]) -> Vec<Descriptor> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("manifests").cloned())
        .and_then(|m| serde_json::from_value::<Vec<Descriptor>>(m).ok())
        .unwrap_or_default()
}

fn basic(c: &Credentials) -> String {
    use base64::Engine as _;
    let raw = format!("{}:{}", c.username.as_deref().unwrap_or(""), c.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

impl RemoteRegistry {
    /// Read an answer's body whole, refusing it past `limit` bytes (checked against
    /// `Content-Length` first, then as bytes arrive: an endless body costs `limit`).
    async fn read_limited(
        &self,
        res: reqwest::Response,
        limit: usize,
        what: &str,
    ) -> Result<Bytes, ImportError> {
        let too_large = || {
            ImportError::SourceResponseTooLarge(format!(
                "The source registry {} sent more than {limit} bytes for {what}.",
                self.display()
            ))
        };
        if res.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.connect_error(e))?;
            if out.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }
}

/// The start of an error answer, for its message: at most [`ERROR_BODY_LIMIT`] bytes, and
/// whatever arrived if it broke off (the status says what happened; the body only adds
/// detail).
async fn snippet(res: reqwest::Response) -> Bytes {
    let mut out = Vec::new();
    let mut stream = res.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            let room = ERROR_BODY_LIMIT - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= ERROR_BODY_LIMIT {
                break;
            }
        }
    };
    // A drip of an error body is cut short too.
    let _ = tokio::time::timeout(ERROR_BODY_TIME, read).await;
    Bytes::from(out)
}

fn skip_bytes(
    stream: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    mut skip: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    stream.filter_map(move |item| {
        let out = match item {
            Ok(mut b) if skip > 0 => {
                let n = (b.len() as u64).min(skip);
                skip -= n;
                let rest = b.split_off(n as usize);
                (!rest.is_empty()).then_some(Ok(rest))
            }
            other => Some(other),
        };
        futures::future::ready(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#).unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let (s, p) = parse_challenge(r#"Basic realm="harness-realm""#).unwrap();
        assert_eq!((s.as_str(), p["realm"].as_str()), ("basic", "harness-realm"));
    }

    #[test]
    fn error_descriptions() {
        let d = describe_error(
            StatusCode::NOT_FOUND,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(d, "404 MANIFEST_UNKNOWN \"manifest unknown\"");
        assert_eq!(describe_error(StatusCode::BAD_GATEWAY, b"oops"), "502 \"oops\"");
    }

    #[tokio::test]
    async fn skipping() {
        let s = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"defg")),
        ]);
        let out: Vec<Bytes> = skip_bytes(s, 4).map(|r| r.unwrap()).collect().await;
        assert_eq!(out.concat(), b"efg");
    }
}
