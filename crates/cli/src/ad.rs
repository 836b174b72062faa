//! `wharf ad sp …` and `wharf ad user …`: the directory, as `az ad` manages it.

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{AdCommand, GlobalArgs, SpCommand, SpCredentialCommand, UserCommand};
use crate::client::Client;
use crate::output::print;

const SP_COLUMNS: &[(&str, &str)] =
    &[("DISPLAY NAME", "/displayName"), ("APP ID", "/appId"), ("OBJECT ID", "/id")];
const USER_COLUMNS: &[(&str, &str)] =
    &[("USER PRINCIPAL NAME", "/userPrincipalName"), ("OBJECT ID", "/id")];

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
                if role.is_some() == scopes.is_empty() {
                    anyhow::bail!("--role and --scopes go together");
                }
                let body = json!({"displayName": name, "endDateTime": end_date(years)});
                let sp = client
                    .directory(Method::POST, "/v1.0/servicePrincipals", Some(&body))
                    .await?
                    .body;
                let secret =
                    sp.pointer("/passwordCredentials/0/secretText").cloned().unwrap_or(Value::Null);
                if let Some(role) = role {
                    let id = sp["id"].as_str().context("the answer has no id")?;
                    for scope in &scopes {
                        crate::role::assign(&client, id, &role, scope, None, None).await?;
                    }
                }
                print(
                    out,
                    &secret_json(&sp, &secret),
                    &[("APP ID", "/appId"), ("PASSWORD", "/password"), ("TENANT", "/tenant")],
                );
            }
            SpCommand::List => {
                let v = client.directory(Method::GET, "/v1.0/servicePrincipals", None).await?.body;
                print(out, &v["value"], SP_COLUMNS);
            }
            SpCommand::Show { id } => {
                let v = client
                    .directory(Method::GET, &path("servicePrincipals", &id), None)
                    .await?
                    .body;
                print(out, &v, SP_COLUMNS);
            }
            SpCommand::Delete { id } => {
                client.directory(Method::DELETE, &path("servicePrincipals", &id), None).await?;
            }
            SpCommand::Update { id, account_enabled } => {
                let body = json!({ "accountEnabled": account_enabled });
                client
                    .directory(Method::PATCH, &path("servicePrincipals", &id), Some(&body))
                    .await?;
            }
            SpCommand::RevokeSessions { id } => {
                let url = format!("{}/revokeSignInSessions", path("servicePrincipals", &id));
                client.directory(Method::POST, &url, None).await?;
            }
            SpCommand::Credential(SpCredentialCommand::Reset { id, append, years }) => {
                let sp = client
                    .directory(Method::GET, &path("servicePrincipals", &id), None)
                    .await?
                    .body;
                let oid = sp["id"].as_str().context("the answer has no id")?;
                let secret = if append {
                    let body = json!({"passwordCredential": {"displayName": "rbac", "endDateTime": end_date(years)}});
                    let v = client
                        .directory(
                            Method::POST,
                            &format!("{}/addPassword", path("servicePrincipals", oid)),
                            Some(&body),
                        )
                        .await?
                        .body;
                    v["secretText"].clone()
                } else {
                    let body = json!({"endDateTime": end_date(years)});
                    let v = client
                        .directory(
                            Method::POST,
                            &format!("{}/resetPassword", path("servicePrincipals", oid)),
                            Some(&body),
                        )
                        .await?
                        .body;
                    v.pointer("/passwordCredentials/0/secretText").cloned().unwrap_or(Value::Null)
                };
                print(
                    out,
                    &secret_json(&sp, &secret),
                    &[("APP ID", "/appId"), ("PASSWORD", "/password"), ("TENANT", "/tenant")],
                );
            }
        },
        AdCommand::User(user) => match user {
            UserCommand::Create { user_principal_name, display_name, password } => {
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
            }
            UserCommand::List => {
                let v = client.directory(Method::GET, "/v1.0/users", None).await?.body;
                print(out, &v["value"], USER_COLUMNS);
            }
            UserCommand::Show { id } => {
                let v = client.directory(Method::GET, &path("users", &id), None).await?.body;
                print(out, &v, USER_COLUMNS);
            }
            UserCommand::Delete { id } => {
                client.directory(Method::DELETE, &path("users", &id), None).await?;
            }
            UserCommand::Update { id, password, account_enabled } => {
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
                client.directory(Method::PATCH, &path("users", &id), Some(&body)).await?;
            }
            UserCommand::RevokeSessions { id } => {
                let url = format!("{}/revokeSignInSessions", path("users", &id));
                client.directory(Method::POST, &url, None).await?;
            }
        },
    }
    Ok(())
}
