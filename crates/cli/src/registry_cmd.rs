//! `wharf registry create|list|show|update|delete`, `wharf registry credential show|renew`

use anyhow::bail;
use reqwest::Method;
use serde_json::json;

use crate::args::{GlobalArgs, NetworkRuleCommand, RegistryCommand, RegistryCredentialCommand};
use crate::client::{Client, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION};
use crate::output::{confirm, print, print_credentials};

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("RESOURCE GROUP", "/id"),
    ("LOCATION", "/location"),
    ("SKU", "/sku/name"),
    ("LOGIN SERVER", "/properties/loginServer"),
    ("CREATION DATE", "/properties/creationDate"),
];

fn table_rows(v: &serde_json::Value) -> serde_json::Value {
    // The resource group column is read from the ID, as az shows it.
    let fix = |r: &serde_json::Value| {
        let mut r = r.clone();
        let rg = r["id"].as_str().and_then(|id| id.split('/').nth(4)).unwrap_or("").to_owned();
        r["id"] = json!(rg);
        r
    };
    match v {
        serde_json::Value::Array(a) => a.iter().map(fix).collect(),
        other => fix(other),
    }
}

pub(crate) async fn run(global: &GlobalArgs, cmd: RegistryCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    match cmd {
        RegistryCommand::Create { registry, location, sku, admin_enabled } => {
            let sub = registry.subscription.as_deref().unwrap_or(DEFAULT_SUBSCRIPTION);
            let rg = registry.resource_group.as_deref().unwrap_or(DEFAULT_RESOURCE_GROUP);
            if registry.resource_group.is_some() {
                // Like `az group create` before `az acr create`: make sure the group exists.
                let path = format!("/subscriptions/{sub}/resourcegroups/{rg}");
                if client.arm(Method::GET, &path, None).await.is_err() {
                    client.arm(Method::PUT, &path, Some(&json!({"location": location}))).await?;
                }
            }
            let path = format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{}",
                registry.name
            );
            let existing = client
                .send(
                    Method::GET,
                    &format!("{path}?api-version={}", crate::client::API_VERSION),
                    None,
                    None,
                )
                .await?;
            if existing.status.is_success() {
                bail!(
                    "(AlreadyExists) The registry '{}' already exists in resource group '{rg}'.",
                    registry.name
                );
            }
            let body = json!({"location": location, "sku": {"name": sku}, "properties": {"adminUserEnabled": admin_enabled}});
            let created = client.arm(Method::PUT, &path, Some(&body)).await?;
            print(global.output, &table_rows_or(global, created.body), COLUMNS);
        }
        RegistryCommand::List { resource_group, subscription } => {
            let list = match (&subscription, &resource_group) {
                (None, None) => serde_json::Value::Array(client.all_registries().await?),
                (sub, rg) => {
                    let sub = sub.as_deref().unwrap_or(DEFAULT_SUBSCRIPTION);
                    let path = match rg {
                        Some(rg) => format!(
                            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries"
                        ),
                        None => format!(
                            "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries"
                        ),
                    };
                    client.arm(Method::GET, &path, None).await?.body["value"].clone()
                }
            };
            print(global.output, &table_rows_or(global, list), COLUMNS);
        }
        RegistryCommand::Show { registry } => {
            let r = client.registry(&registry).await?;
            print(global.output, &table_rows_or(global, r), COLUMNS);
        }
        RegistryCommand::Delete { registry, yes } => {
            let r = client.registry(&registry).await?;
            if !yes
                && !confirm(&format!("Delete registry '{}' and everything in it?", registry.name))?
            {
                bail!("not deleted");
            }
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            client.arm(Method::DELETE, &id, None).await?;
        }
        RegistryCommand::Update {
            registry,
            admin_enabled,
            anonymous_pull_enabled,
            public_network_enabled,
            allow_trusted_services,
            default_action,
            allow_exports,
        } => {
            let r = client.registry(&registry).await?;
            let mut props = serde_json::Map::new();
            if let Some(v) = public_network_enabled {
                props.insert(
                    "publicNetworkAccess".into(),
                    json!(if v { "Enabled" } else { "Disabled" }),
                );
            }
            if let Some(v) = allow_trusted_services {
                props.insert(
                    "networkRuleBypassOptions".into(),
                    json!(if v { "AzureServices" } else { "None" }),
                );
            }
            if let Some(a) = default_action {
                let mut set = r["properties"]["networkRuleSet"].clone();
                if !set.is_object() {
                    set = json!({"ipRules": []});
                }
                set["defaultAction"] = json!(a);
                props.insert("networkRuleSet".into(), set);
            }
            if let Some(v) = allow_exports {
                props.insert(
                    "policies".into(),
                    json!({"exportPolicy": {"status": if v { "enabled" } else { "disabled" }}}),
                );
            }
            if let Some(v) = admin_enabled {
                props.insert("adminUserEnabled".into(), json!(v));
            }
            if let Some(v) = anonymous_pull_enabled {
                props.insert("anonymousPullEnabled".into(), json!(v));
            }
            if props.is_empty() {
                bail!("nothing to update: give at least one setting (see --help)");
            }
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            let updated =
                client.arm(Method::PATCH, &id, Some(&json!({ "properties": props }))).await?;
            print(global.output, &table_rows_or(global, updated.body), COLUMNS);
        }
        RegistryCommand::NetworkRule(cmd) => {
            let (registry, change) = match &cmd {
                NetworkRuleCommand::Add { registry, ip_address } => {
                    (registry, Some((true, ip_address)))
                }
                NetworkRuleCommand::Remove { registry, ip_address } => {
                    (registry, Some((false, ip_address)))
                }
                NetworkRuleCommand::List { registry } => (registry, None),
            };
            let r = client.registry(registry).await?;
            let mut set = r["properties"]["networkRuleSet"].clone();
            if !set.is_object() {
                set = json!({"defaultAction": "Allow", "ipRules": []});
            }
            let result = match change {
                None => set,
                Some((add, ip)) => {
                    let mut rules: Vec<serde_json::Value> =
                        set["ipRules"].as_array().cloned().unwrap_or_default();
                    let present = rules.iter().any(|x| x["value"].as_str() == Some(ip.as_str()));
                    match (add, present) {
                        (true, true) => bail!("the IP rule {ip} is already there"),
                        (false, false) => bail!("there is no IP rule {ip}"),
                        (true, false) => rules.push(json!({"action": "Allow", "value": ip})),
                        (false, true) => rules.retain(|x| x["value"].as_str() != Some(ip.as_str())),
                    }
                    set["ipRules"] = json!(rules);
                    let id = r["id"].as_str().unwrap_or_default().to_owned();
                    let body = json!({"properties": {"networkRuleSet": set}});
                    let updated = client.arm(Method::PATCH, &id, Some(&body)).await?;
                    updated.body["properties"]["networkRuleSet"].clone()
                }
            };
            print(
                global.output,
                &result,
                &[("DEFAULT ACTION", "/defaultAction"), ("IP RULES", "/ipRules")],
            );
        }
        RegistryCommand::Credential(cmd) => {
            let (registry, body, action) = match &cmd {
                RegistryCredentialCommand::Show { registry } => (registry, None, "listCredentials"),
                RegistryCredentialCommand::Renew { registry, password_name } => {
                    (registry, Some(json!({ "name": password_name })), "regenerateCredential")
                }
            };
            let r = client.registry(registry).await?;
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            let creds = client.arm(Method::POST, &format!("{id}/{action}"), body.as_ref()).await?;
            // The passwords are the point of this command: shown in both formats.
            print_credentials(global, &creds.body);
        }
    }
    Ok(())
}

fn table_rows_or(global: &GlobalArgs, v: serde_json::Value) -> serde_json::Value {
    match global.output {
        crate::args::Output::Table => table_rows(&v),
        crate::args::Output::Json => v,
    }
}
