//! `wharf registry create|list|show|update|delete`, `wharf registry credential show|renew`

use anyhow::bail;
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{
    GlobalArgs, NetworkRuleCommand, RegistryCommand, RegistryCredentialCommand, RegistryRef,
    RegistryUpdateArgs,
};
use crate::client::{API_VERSION, Client, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION};
use crate::output::{confirm, print, print_credentials};

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("RESOURCE GROUP", "/id"),
    ("LOCATION", "/location"),
    ("SKU", "/sku/name"),
    ("LOGIN SERVER", "/properties/loginServer"),
    ("CREATION DATE", "/properties/creationDate"),
];

fn table_rows(v: &Value) -> Value {
    // The resource group column is read from the ID, as az shows it.
    let fix = |r: &Value| {
        let mut r = r.clone();
        let rg = r["id"].as_str().and_then(|id| id.split('/').nth(4)).unwrap_or("").to_owned();
        r["id"] = json!(rg);
        r
    };
    match v {
        Value::Array(a) => a.iter().map(fix).collect(),
        other => fix(other),
    }
}

pub(crate) async fn run(global: &GlobalArgs, cmd: RegistryCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    match cmd {
        RegistryCommand::Create { registry, location, sku, admin_enabled } => {
            create(&client, global, &registry, &location, &sku, admin_enabled).await
        }
        RegistryCommand::List { resource_group, subscription } => {
            list(&client, global, resource_group, subscription).await
        }
        RegistryCommand::Show { registry } => show(&client, global, &registry).await,
        RegistryCommand::Delete { registry, yes } => delete(&client, &registry, yes).await,
        RegistryCommand::Update(args) => update(&client, global, args).await,
        RegistryCommand::NetworkRule(cmd) => network_rule(&client, global, cmd).await,
        RegistryCommand::Credential(cmd) => credential(&client, global, cmd).await,
    }
}

async fn create(
    client: &Client,
    global: &GlobalArgs,
    registry: &RegistryRef,
    location: &str,
    sku: &str,
    admin_enabled: bool,
) -> anyhow::Result<()> {
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
    let existing =
        client.send(Method::GET, &format!("{path}?api-version={API_VERSION}"), None, None).await?;
    if existing.status.is_success() {
        bail!(
            "(AlreadyExists) The registry '{}' already exists in resource group '{rg}'.",
            registry.name
        );
    }
    let body = json!({"location": location, "sku": {"name": sku}, "properties": {"adminUserEnabled": admin_enabled}});
    let created = client.arm(Method::PUT, &path, Some(&body)).await?;
    print(global.output, &table_rows_or(global, created.body), COLUMNS);
    Ok(())
}

async fn list(
    client: &Client,
    global: &GlobalArgs,
    resource_group: Option<String>,
    subscription: Option<String>,
) -> anyhow::Result<()> {
    let list = match (&subscription, &resource_group) {
        (None, None) => Value::Array(client.all_registries().await?),
        (sub, rg) => {
            let sub = sub.as_deref().unwrap_or(DEFAULT_SUBSCRIPTION);
            let path = match rg {
                Some(rg) => format!(
                    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries"
                ),
                None => {
                    format!("/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries")
                }
            };
            client.arm(Method::GET, &path, None).await?.body["value"].clone()
        }
    };
    print(global.output, &table_rows_or(global, list), COLUMNS);
    Ok(())
}

async fn show(client: &Client, global: &GlobalArgs, registry: &RegistryRef) -> anyhow::Result<()> {
    let r = client.registry(registry).await?;
    print(global.output, &table_rows_or(global, r), COLUMNS);
    Ok(())
}

async fn delete(client: &Client, registry: &RegistryRef, yes: bool) -> anyhow::Result<()> {
    let r = client.registry(registry).await?;
    if !yes && !confirm(&format!("Delete registry '{}' and everything in it?", registry.name))? {
        bail!("not deleted");
    }
    let id = r["id"].as_str().unwrap_or_default().to_owned();
    client.arm(Method::DELETE, &id, None).await?;
    Ok(())
}

async fn update(
    client: &Client,
    global: &GlobalArgs,
    args: RegistryUpdateArgs,
) -> anyhow::Result<()> {
    let r = client.registry(&args.registry).await?;
    let props = update_properties(&r, args);
    if props.is_empty() {
        bail!("nothing to update: give at least one setting (see --help)");
    }
    let id = r["id"].as_str().unwrap_or_default().to_owned();
    let updated = client.arm(Method::PATCH, &id, Some(&json!({ "properties": props }))).await?;
    print(global.output, &table_rows_or(global, updated.body), COLUMNS);
    Ok(())
}

/// The properties `registry update` changes on the registry `r`, in ARM's terms.
fn update_properties(r: &Value, args: RegistryUpdateArgs) -> serde_json::Map<String, Value> {
    let mut props = serde_json::Map::new();
    if let Some(v) = args.public_network_enabled {
        props.insert("publicNetworkAccess".into(), json!(if v { "Enabled" } else { "Disabled" }));
    }
    if let Some(v) = args.allow_trusted_services {
        props.insert(
            "networkRuleBypassOptions".into(),
            json!(if v { "AzureServices" } else { "None" }),
        );
    }
    if let Some(a) = args.default_action {
        let mut set = r["properties"]["networkRuleSet"].clone();
        if !set.is_object() {
            set = json!({"ipRules": []});
        }
        set["defaultAction"] = json!(a);
        props.insert("networkRuleSet".into(), set);
    }
    if let Some(v) = args.allow_exports {
        props.insert(
            "policies".into(),
            json!({"exportPolicy": {"status": if v { "enabled" } else { "disabled" }}}),
        );
    }
    if let Some(v) = args.admin_enabled {
        props.insert("adminUserEnabled".into(), json!(v));
    }
    if let Some(v) = args.anonymous_pull_enabled {
        props.insert("anonymousPullEnabled".into(), json!(v));
    }
    props
}

async fn network_rule(
    client: &Client,
    global: &GlobalArgs,
    cmd: NetworkRuleCommand,
) -> anyhow::Result<()> {
    let (registry, change) = match &cmd {
        NetworkRuleCommand::Add { registry, ip_address } => (registry, Some((true, ip_address))),
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
            let mut rules: Vec<Value> = set["ipRules"].as_array().cloned().unwrap_or_default();
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
    Ok(())
}

async fn credential(
    client: &Client,
    global: &GlobalArgs,
    cmd: RegistryCredentialCommand,
) -> anyhow::Result<()> {
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
    Ok(())
}

fn table_rows_or(global: &GlobalArgs, v: Value) -> Value {
    match global.output {
        crate::args::Output::Table => table_rows(&v),
        crate::args::Output::Json => v,
    }
}
