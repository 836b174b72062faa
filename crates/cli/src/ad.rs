//! `wharf ad sp …` and `wharf ad user …`: the directory, as `az ad` manages it.

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{AdCommand, GlobalArgs, Output, SpCommand, SpCredentialCommand, UserCommand};
use crate::client::Client;
use crate::output::print;

const SP_COLUMNS: &[(&str, &str)] =
    &[("DISPLAY NAME", "/displayName"), ("APP ID", "/appId"), ("OBJECT ID", "/id")];
const USER_COLUMNS: &[(&str, &str)] =
    &[("USER PRINCIPAL NAME", "/userPrincipalName"), ("OBJECT ID", "/id")];
/// What `create-for-rbac` and `credential reset` show of [`secret_json`] in a table.
const SECRET_COLUMNS: &[(&str, &str)] =
    &[("APP ID", "/appId"), ("PASSWORD", "/password"), ("TENANT", "/tenant")];

/// `endDateTime` `years` from now.
fn end_date(years: u32) -> String {
    let days = i64::from(years.clamp(1, 100)) * 365;
    (chrono::Utc::now() + chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What `az ad sp create-for-rbac` and `credential reset` print.
fn secret_json(sp: &Value, secret: &Value) -> Value {
    json!({
        "appId": sp["appId"],
        "displayName": sp["displayName"],
        "password": secret,
        "tenant": sp["appOwnerOrganizationId"],
    })
}

fn path(segment: &str, id: &str) -> String {
    format!("/v1.0/{segment}/{}", urlencode(id))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) async fn run(global: &GlobalArgs, cmd: AdCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    let out = global.output;
    match cmd {
        AdCommand::Sp(sp) => match sp {
            SpCommand::CreateForRbac { name, role, scopes, years } => {
                sp_create_for_rbac(&client, out, &name, role, &scopes, years).await
            }
            SpCommand::List => sp_list(&client, out).await,
            SpCommand::Show { id } => sp_show(&client, out, &id).await,
            SpCommand::Delete { id } => delete(&client, "servicePrincipals", &id).await,
            SpCommand::Update { id, account_enabled } => {
                sp_update(&client, &id, account_enabled).await
            }
            SpCommand::RevokeSessions { id } => {
                revoke_sessions(&client, "servicePrincipals", &id).await
            }
            SpCommand::Credential(SpCredentialCommand::Reset { id, append, years }) => {
                sp_credential_reset(&client, out, &id, append, years).await
            }
        },
        AdCommand::User(user) => match user {
            UserCommand::Create { user_principal_name, display_name, password } => {
                user_create(&client, out, user_principal_name, display_name, password).await
            }
            UserCommand::List => user_list(&client, out).await,
            UserCommand::Show { id } => user_show(&client, out, &id).await,
            UserCommand::Delete { id } => delete(&client, "users", &id).await,
            UserCommand::Update { id, password, account_enabled } => {
                user_update(&client, &id, password, account_enabled).await
            }
            UserCommand::RevokeSessions { id } => revoke_sessions(&client, "users", &id).await,
        },
    }
}

/// A service principal with a secret, and (with `--role`) that role at each of `scopes`.
async fn sp_create_for_rbac(
    client: &Client,
    out: Output,
    name: &str,
    role: Option<String>,
    scopes: &[String],
    years: u32,
) -> anyhow::Result<()> {
    if role.is_some() == scopes.is_empty() {
        anyhow::bail!("--role and --scopes go together");
    }
    let body = json!({"displayName": name, "endDateTime": end_date(years)});
    let sp = client.directory(Method::POST, "/v1.0/servicePrincipals", Some(&body)).await?.body;
    let secret = sp.pointer("/passwordCredentials/0/secretText").cloned().unwrap_or(Value::Null);
    if let Some(role) = role {
        let id = sp["id"].as_str().context("the answer has no id")?;
        for scope in scopes {
            crate::role::assign(client, id, &role, scope, None, None).await?;
        }
    }
    print(out, &secret_json(&sp, &secret), SECRET_COLUMNS);
    Ok(())
}

async fn sp_list(client: &Client, out: Output) -> anyhow::Result<()> {
    let v = client.directory(Method::GET, "/v1.0/servicePrincipals", None).await?.body;
    print(out, &v["value"], SP_COLUMNS);
    Ok(())
}

async fn sp_show(client: &Client, out: Output, id: &str) -> anyhow::Result<()> {
    let v = client.directory(Method::GET, &path("servicePrincipals", id), None).await?.body;
    print(out, &v, SP_COLUMNS);
    Ok(())
}

async fn sp_update(client: &Client, id: &str, account_enabled: bool) -> anyhow::Result<()> {
    let body = json!({ "accountEnabled": account_enabled });
    client.directory(Method::PATCH, &path("servicePrincipals", id), Some(&body)).await?;
    Ok(())
}

/// A new secret: added beside the others with `--append`, else replacing them.
async fn sp_credential_reset(
    client: &Client,
    out: Output,
    id: &str,
    append: bool,
    years: u32,
) -> anyhow::Result<()> {
    let sp = client.directory(Method::GET, &path("servicePrincipals", id), None).await?.body;
    let oid = sp["id"].as_str().context("the answer has no id")?;
    let secret = if append {
        let body =
            json!({"passwordCredential": {"displayName": "rbac", "endDateTime": end_date(years)}});
        let url = format!("{}/addPassword", path("servicePrincipals", oid));
        let v = client.directory(Method::POST, &url, Some(&body)).await?.body;
        v["secretText"].clone()
    } else {
        let body = json!({"endDateTime": end_date(years)});
        let url = format!("{}/resetPassword", path("servicePrincipals", oid));
        let v = client.directory(Method::POST, &url, Some(&body)).await?.body;
        v.pointer("/passwordCredentials/0/secretText").cloned().unwrap_or(Value::Null)
    };
    print(out, &secret_json(&sp, &secret), SECRET_COLUMNS);
    Ok(())
}

async fn user_create(
    client: &Client,
    out: Output,
    user_principal_name: String,
    display_name: Option<String>,
    password: Option<String>,
) -> anyhow::Result<()> {
    let mut body = json!({
        "userPrincipalName": user_principal_name,
        "displayName": display_name.unwrap_or_else(|| user_principal_name.clone()),
        "accountEnabled": true,
    });
    if let Some(p) = password {
        body["passwordProfile"] = json!({"password": p});
    }
    let v = client.directory(Method::POST, "/v1.0/users", Some(&body)).await?.body;
    print(out, &v, USER_COLUMNS);
    Ok(())
}

async fn user_list(client: &Client, out: Output) -> anyhow::Result<()> {
    let v = client.directory(Method::GET, "/v1.0/users", None).await?.body;
    print(out, &v["value"], USER_COLUMNS);
    Ok(())
}

async fn user_show(client: &Client, out: Output, id: &str) -> anyhow::Result<()> {
    let v = client.directory(Method::GET, &path("users", id), None).await?.body;
    print(out, &v, USER_COLUMNS);
    Ok(())
}

async fn user_update(
    client: &Client,
    id: &str,
    password: Option<String>,
    account_enabled: Option<bool>,
) -> anyhow::Result<()> {
    if password.is_none() && account_enabled.is_none() {
        anyhow::bail!("give --password and/or --account-enabled");
    }
    let mut body = json!({});
    if let Some(p) = password {
        body["passwordProfile"] = json!({ "password": p });
    }
    if let Some(e) = account_enabled {
        body["accountEnabled"] = json!(e);
    }
    client.directory(Method::PATCH, &path("users", id), Some(&body)).await?;
    Ok(())
}

/// Delete a user or service principal (`kind`: its Graph collection).
async fn delete(client: &Client, kind: &str, id: &str) -> anyhow::Result<()> {
    client.directory(Method::DELETE, &path(kind, id), None).await?;
    Ok(())
}

/// Revoke every token of a user or service principal (`kind`: its Graph collection).
async fn revoke_sessions(client: &Client, kind: &str, id: &str) -> anyhow::Result<()> {
    let url = format!("{}/revokeSignInSessions", path(kind, id));
    client.directory(Method::POST, &url, None).await?;
    Ok(())
}
