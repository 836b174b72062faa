//! Signing in: `wharf login`/`logout`, the credentials every other command sends, and the
//! HTTP client they go over.
//!
//! A command is signed in, first match wins, by `WHARF_USERNAME`/`WHARF_PASSWORD` (a user,
//! or a service principal's app id and secret — for scripts), or by the token `wharf login`
//! cached for that server in `<config dir>/tokens.json` (0600; the config dir is
//! `$WHARF_CONFIG_DIR`, else `$XDG_CONFIG_HOME/wharf`, else `~/.config/wharf`). Only tokens
//! are cached, never a password.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::{GlobalArgs, LoginArgs};

/// The audience of the management API's tokens (ARM's).
pub(crate) const MANAGEMENT: &str = "https://management.azure.com/.default";
/// The audience of the directory's (Microsoft Graph's): a token for one surface is refused
/// by the other, so `wharf login` gets one of each.
pub(crate) const DIRECTORY: &str = "https://graph.microsoft.com/.default";

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct Cached {
    access_token: String,
    /// Unix seconds.
    expires_on: i64,
    user: String,
    tenant: Option<String>,
    /// The directory token (absent in caches written before it existed).
    #[serde(default)]
    directory_token: Option<String>,
}

fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WHARF_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(d).join("wharf"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/wharf"))
}

fn cache_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join("tokens.json"))
}

fn read_cache() -> BTreeMap<String, Cached> {
    cache_path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Write the cache readable by this user only (temp file + rename).
fn write_cache(cache: &BTreeMap<String, Cached>) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = cache_path().context("no config directory: set WHARF_CONFIG_DIR or HOME")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(cache)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn key(server: &str) -> String {
    server.trim_end_matches('/').to_ascii_lowercase()
}

/// Ask the server's identity endpoint for a token: `client_credentials` when `user` is an
/// app id (a GUID) or `service_principal` says so, else `password`.
async fn sign_in(
    http: &reqwest::Client,
    server: &str,
    tenant: Option<&str>,
    (user, password): (&str, &str),
    service_principal: bool,
    scope: &str,
) -> anyhow::Result<(String, i64, Option<String>)> {
    let app = service_principal || uuid_like(user);
    let tenant = tenant.unwrap_or("common");
    let form: Vec<(&str, &str)> = if app {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", user),
            ("client_secret", password),
            ("scope", scope),
        ]
    } else {
        vec![
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("scope", scope),
        ]
    };
    let url = format!("{}/{tenant}/oauth2/v2.0/token", server.trim_end_matches('/'));
    let res = http
        .post(&url)
        .form(&form)
        .send()
        .await
        .with_context(|| format!("cannot reach the wharf server at {server}"))?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why = body["error_description"].as_str().unwrap_or("sign-in refused");
        bail!("sign-in as '{user}' failed: {why}");
    }
    let token = body["access_token"].as_str().context("the token answer has no access_token")?;
    let expires_in = body["expires_in"].as_i64().unwrap_or(3600);
    let tid = claim(token, "tid");
    Ok((token.to_owned(), now() + expires_in, tid))
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A string claim of a JWT (read, not verified: the CLI only shows it).
fn claim(token: &str, name: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v[name].as_str().map(str::to_owned)
}

/// The CLI's HTTP client: the system's trusted CAs, plus the one in `WHARF_CA_FILE` (PEM),
/// e.g. a development server's `<data-dir>/tls/ca.pem`.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut b =
        reqwest::Client::builder().user_agent(concat!("wharf-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = std::env::var_os("WHARF_CA_FILE").filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read WHARF_CA_FILE {}", path.to_string_lossy()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!("WHARF_CA_FILE {} holds no PEM certificate", path.to_string_lossy())
        })?;
        b = b.tls_certs_merge(certs);
    }
    b.build().context("cannot build the HTTP client")
}

/// The token a command sends for `scope` ([`MANAGEMENT`] or [`DIRECTORY`]), if it can be
/// had: from the environment's credentials, else from `wharf login`'s cache.
pub(crate) async fn token(
    http: &reqwest::Client,
    server: &str,
    scope: &str,
) -> anyhow::Result<Option<String>> {
    let user = std::env::var("WHARF_USERNAME").ok().filter(|u| !u.is_empty());
    if let Some(user) = user {
        let password = std::env::var("WHARF_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .context("WHARF_USERNAME is set but WHARF_PASSWORD is not")?;
        let tenant = std::env::var("WHARF_TENANT").ok();
        let signed = sign_in(http, server, tenant.as_deref(), (&user, &password), false, scope);
        return Ok(Some(signed.await?.0));
    }
    match read_cache().get(&key(server)) {
        Some(c) if c.expires_on > now() + 30 => match (scope == DIRECTORY, &c.directory_token) {
            (false, _) => Ok(Some(c.access_token.clone())),
            (true, Some(t)) => Ok(Some(t.clone())),
            (true, None) => bail!(
                "the sign-in to {server} has no directory token (it predates them): run `wharf login` again"
            ),
        },
        Some(_) => bail!("the sign-in to {server} has expired: run `wharf login` again"),
        None => Ok(None),
    }
}

/// `wharf login`: sign in and cache the token for this server.
pub(crate) async fn login(global: &GlobalArgs, args: LoginArgs) -> anyhow::Result<()> {
    let http = http_client()?;
    let user = match args.username.or_else(|| std::env::var("WHARF_USERNAME").ok()) {
        Some(u) if !u.is_empty() => u,
        _ => bail!("give a user name: --username/-u (or WHARF_USERNAME)"),
    };
    let password = match args.password.or_else(|| std::env::var("WHARF_PASSWORD").ok()) {
        Some(p) if !p.is_empty() => p,
        _ => read_password(&user)?,
    };
    let sign_in_for = |scope| {
        let tenant = args.tenant.as_deref();
        sign_in(&http, &global.server, tenant, (&user, &password), args.service_principal, scope)
    };
    let (token, expires_on, tid) = sign_in_for(MANAGEMENT).await?;
    let (directory, directory_expires, _) = sign_in_for(DIRECTORY).await?;
    let mut cache = read_cache();
    cache.insert(
        key(&global.server),
        Cached {
            access_token: token,
            expires_on: expires_on.min(directory_expires),
            user: user.clone(),
            tenant: tid.clone(),
            directory_token: Some(directory),
        },
    );
    write_cache(&cache)?;
    crate::output::print(
        global.output,
        &serde_json::json!([{
            "cloudName": "wharf",
            "server": global.server,
            "tenantId": tid,
            "user": {"name": user, "type": if args.service_principal || uuid_like(&user) { "servicePrincipal" } else { "user" }},
        }]),
        &[("SERVER", "/server"), ("USER", "/user/name"), ("TENANT", "/tenantId")],
    );
    Ok(())
}

/// A password from the terminal (not echoed), or the first line of stdin in a pipe.
fn read_password(user: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password(format!("Password for {user}: "))
            .context("cannot read the password")?;
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("give a password: --password/-p, WHARF_PASSWORD, or on stdin");
    }
    Ok(p)
}

/// `wharf logout`: forget this server's token.
pub(crate) fn logout(global: &GlobalArgs) -> anyhow::Result<()> {
    let mut cache = read_cache();
    if cache.remove(&key(&global.server)).is_none() {
        bail!("not signed in to {}", global.server);
    }
    write_cache(&cache)
}
