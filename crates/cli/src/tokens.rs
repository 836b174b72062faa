//! `wharf token …` and `wharf scope-map …`: a registry's repository-scoped tokens and the
//! scope maps that say what they may do, with `az acr token` / `az acr scope-map` flags.

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{
    GlobalArgs, Output, OwnerRegistry, ScopeMapCommand, TokenCommand, TokenCreateArgs,
    TokenCredentialCommand,
};
use crate::client::{API_VERSION, Client};
use crate::output::{confirm, print, print_credentials};

const TOKEN_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("SCOPE MAP", "/properties/scopeMapId"),
    ("STATUS", "/properties/status"),
    ("CREATION DATE", "/properties/creationDate"),
];
const MAP_COLUMNS: &[(&str, &str)] =
    &[("NAME", "/name"), ("TYPE", "/properties/type"), ("DESCRIPTION", "/properties/description")];
/// The actions a scope map may name.
const ACTIONS: &[&str] =
    &["content/read", "content/write", "content/delete", "metadata/read", "metadata/write"];

/// `--repository REPO ACTION… [--repository REPO ACTION…]` → `repositories/REPO/ACTION`.
/// clap hands over the values of every occurrence in one list; a value that isn't an action
/// starts the next repository.
fn actions(values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut repo: Option<(&str, usize)> = None;
    for v in values {
        if ACTIONS.contains(&v.as_str()) {
            let Some((r, n)) = repo.as_mut() else {
                bail!("--repository: give the repository before its actions");
            };
            out.push(format!("repositories/{r}/{v}"));
            *n += 1;
        } else {
            if let Some((r, 0)) = repo {
                bail!("--repository {r}: give at least one action ({})", ACTIONS.join(", "));
            }
            repo = Some((v, 0));
        }
    }
    if let Some((r, 0)) = repo {
        bail!("--repository {r}: give at least one action ({})", ACTIONS.join(", "));
    }
    Ok(out)
}

async fn registry_id(client: &Client, owner: &OwnerRegistry) -> anyhow::Result<String> {
    let r = client.registry(&owner.as_ref()).await?;
    r["id"].as_str().map(str::to_owned).context("the registry has no id")
}

fn expiry(days: Option<u32>) -> Option<String> {
    days.map(|d| {
        (chrono::Utc::now() + chrono::Duration::days(i64::from(d)))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
}

async fn generate(
    client: &Client,
    reg: &str,
    token: &str,
    slot: Option<&str>,
    days: Option<u32>,
) -> anyhow::Result<Value> {
    let mut body = json!({ "tokenId": format!("{reg}/tokens/{token}") });
    if let Some(s) = slot {
        body["name"] = json!(s);
    }
    if let Some(e) = expiry(days) {
        body["expiry"] = json!(e);
    }
    Ok(client.arm(Method::POST, &format!("{reg}/generateCredentials"), Some(&body)).await?.body)
}

pub(crate) async fn token(global: &GlobalArgs, cmd: TokenCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    match cmd {
        TokenCommand::Create(args) => token_create(&client, global, args).await,
        TokenCommand::List { owner } => token_list(&client, global, &owner).await,
        TokenCommand::Show { name, owner } => token_show(&client, global, &name, &owner).await,
        TokenCommand::Update { name, owner, scope_map, status } => {
            token_update(&client, global, &name, &owner, scope_map, status).await
        }
        TokenCommand::Delete { name, owner, yes } => {
            token_delete(&client, &name, &owner, yes).await
        }
        TokenCommand::Credential(TokenCredentialCommand::Generate {
            name,
            owner,
            password1,
            password2,
            expiration_in_days,
        }) => {
            token_generate(
                &client,
                global,
                &name,
                &owner,
                (password1, password2),
                expiration_in_days,
            )
            .await
        }
    }
}

async fn token_create(
    client: &Client,
    global: &GlobalArgs,
    args: TokenCreateArgs,
) -> anyhow::Result<()> {
    let TokenCreateArgs {
        name,
        owner,
        scope_map,
        repository,
        status,
        expiration_in_days,
        no_passwords,
    } = args;
    let reg = registry_id(client, &owner).await?;
    let map = match (scope_map, repository.is_empty()) {
        (Some(m), true) => m,
        (None, false) => {
            // As az does: a scope map of the token's own, named after it.
            let m = format!("{name}-scope-map");
            let body = json!({"properties": {
                "description": format!("Token {name}'s scope map"),
                "actions": actions(&repository)?,
            }});
            client.arm(Method::PUT, &format!("{reg}/scopeMaps/{m}"), Some(&body)).await?;
            m
        }
        _ => bail!("give either --scope-map or --repository"),
    };
    let body = json!({"properties": {
        "scopeMapId": format!("{reg}/scopeMaps/{map}"),
        "status": status,
    }});
    let mut created =
        client.arm(Method::PUT, &format!("{reg}/tokens/{name}"), Some(&body)).await?.body;
    if no_passwords {
        print(global.output, &created, TOKEN_COLUMNS);
        return Ok(());
    }
    let creds = generate(client, &reg, &name, None, expiration_in_days).await?;
    created["properties"]["credentials"]["username"] = creds["username"].clone();
    created["properties"]["credentials"]["passwords"] = creds["passwords"].clone();
    match global.output {
        Output::Json => print(global.output, &created, &[]),
        Output::Table => print_credentials(global, &creds),
    }
    Ok(())
}

/// GET `path` under the owner registry and print it (a list's `value`, or one resource).
async fn show(
    client: &Client,
    global: &GlobalArgs,
    owner: &OwnerRegistry,
    path: &str,
    list: bool,
    columns: &[(&str, &str)],
) -> anyhow::Result<()> {
    let reg = registry_id(client, owner).await?;
    let body = client.arm(Method::GET, &format!("{reg}/{path}"), None).await?.body;
    print(global.output, if list { &body["value"] } else { &body }, columns);
    Ok(())
}

async fn token_list(
    client: &Client,
    global: &GlobalArgs,
    owner: &OwnerRegistry,
) -> anyhow::Result<()> {
    show(client, global, owner, "tokens", true, TOKEN_COLUMNS).await
}

async fn token_show(
    client: &Client,
    global: &GlobalArgs,
    name: &str,
    owner: &OwnerRegistry,
) -> anyhow::Result<()> {
    show(client, global, owner, &format!("tokens/{name}"), false, TOKEN_COLUMNS).await
}

async fn token_update(
    client: &Client,
    global: &GlobalArgs,
    name: &str,
    owner: &OwnerRegistry,
    scope_map: Option<String>,
    status: Option<String>,
) -> anyhow::Result<()> {
    let reg = registry_id(client, owner).await?;
    let mut props = serde_json::Map::new();
    if let Some(m) = scope_map {
        props.insert("scopeMapId".into(), json!(format!("{reg}/scopeMaps/{m}")));
    }
    if let Some(s) = status {
        props.insert("status".into(), json!(s));
    }
    if props.is_empty() {
        bail!("nothing to update: give --scope-map or --status");
    }
    let t = client
        .arm(Method::PATCH, &format!("{reg}/tokens/{name}"), Some(&json!({"properties": props})))
        .await?
        .body;
    print(global.output, &t, TOKEN_COLUMNS);
    Ok(())
}

async fn token_delete(
    client: &Client,
    name: &str,
    owner: &OwnerRegistry,
    yes: bool,
) -> anyhow::Result<()> {
    if !yes && !confirm(&format!("Delete token '{name}'?"))? {
        bail!("not deleted");
    }
    let reg = registry_id(client, owner).await?;
    let a = client.arm(Method::DELETE, &format!("{reg}/tokens/{name}"), None).await?;
    if a.status == reqwest::StatusCode::NO_CONTENT {
        bail!("(ResourceNotFound) The token '{name}' could not be found.");
    }
    Ok(())
}

/// `token credential generate`: new passwords, both unless `(--password1, --password2)`
/// names one.
async fn token_generate(
    client: &Client,
    global: &GlobalArgs,
    name: &str,
    owner: &OwnerRegistry,
    only: (bool, bool),
    expiration_in_days: Option<u32>,
) -> anyhow::Result<()> {
    let reg = registry_id(client, owner).await?;
    let slot = match only {
        (true, false) => Some("password1"),
        (false, true) => Some("password2"),
        _ => None,
    };
    let creds = generate(client, &reg, name, slot, expiration_in_days).await?;
    print_credentials(global, &creds);
    Ok(())
}

pub(crate) async fn scope_map(global: &GlobalArgs, cmd: ScopeMapCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    match cmd {
        ScopeMapCommand::Create { name, owner, repository, description } => {
            scope_map_create(&client, global, &name, &owner, &repository, description).await
        }
        ScopeMapCommand::List { owner } => scope_map_list(&client, global, &owner).await,
        ScopeMapCommand::Show { name, owner } => {
            scope_map_show(&client, global, &name, &owner).await
        }
        ScopeMapCommand::Update { name, owner, add_repository, remove_repository, description } => {
            let (add, remove) = (&add_repository, &remove_repository);
            scope_map_update(&client, global, &name, &owner, add, remove, description).await
        }
        ScopeMapCommand::Delete { name, owner, yes } => {
            scope_map_delete(&client, &name, &owner, yes).await
        }
    }
}

async fn scope_map_create(
    client: &Client,
    global: &GlobalArgs,
    name: &str,
    owner: &OwnerRegistry,
    repository: &[String],
    description: Option<String>,
) -> anyhow::Result<()> {
    let reg = registry_id(client, owner).await?;
    let path = format!("{reg}/scopeMaps/{name}");
    let existing =
        client.send(Method::GET, &format!("{path}?api-version={API_VERSION}"), None, None).await?;
    if existing.status.is_success() {
        bail!("(AlreadyExists) The scope map '{name}' already exists.");
    }
    let body = json!({"properties": {"description": description, "actions": actions(repository)?}});
    let m = client.arm(Method::PUT, &path, Some(&body)).await?.body;
    print(global.output, &m, MAP_COLUMNS);
    Ok(())
}

async fn scope_map_list(
    client: &Client,
    global: &GlobalArgs,
    owner: &OwnerRegistry,
) -> anyhow::Result<()> {
    show(client, global, owner, "scopeMaps", true, MAP_COLUMNS).await
}

async fn scope_map_show(
    client: &Client,
    global: &GlobalArgs,
    name: &str,
    owner: &OwnerRegistry,
) -> anyhow::Result<()> {
    show(client, global, owner, &format!("scopeMaps/{name}"), false, MAP_COLUMNS).await
}

async fn scope_map_update(
    client: &Client,
    global: &GlobalArgs,
    name: &str,
    owner: &OwnerRegistry,
    add: &[String],
    remove: &[String],
    description: Option<String>,
) -> anyhow::Result<()> {
    let reg = registry_id(client, owner).await?;
    let path = format!("{reg}/scopeMaps/{name}");
    let current = client.arm(Method::GET, &path, None).await?.body;
    let remove = actions(remove)?;
    let mut list: Vec<String> = current["properties"]["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|a| !remove.iter().any(|r| r.eq_ignore_ascii_case(a)))
        .map(str::to_owned)
        .collect();
    for a in actions(add)? {
        if !list.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
            list.push(a);
        }
    }
    let mut props = json!({ "actions": list });
    if let Some(d) = description {
        props["description"] = json!(d);
    }
    let m = client.arm(Method::PATCH, &path, Some(&json!({ "properties": props }))).await?.body;
    print(global.output, &m, MAP_COLUMNS);
    Ok(())
}

async fn scope_map_delete(
    client: &Client,
    name: &str,
    owner: &OwnerRegistry,
    yes: bool,
) -> anyhow::Result<()> {
    if !yes && !confirm(&format!("Delete scope map '{name}'?"))? {
        bail!("not deleted");
    }
    let reg = registry_id(client, owner).await?;
    let a = client.arm(Method::DELETE, &format!("{reg}/scopeMaps/{name}"), None).await?;
    if a.status == reqwest::StatusCode::NO_CONTENT {
        bail!("(ResourceNotFound) The scope map '{name}' could not be found.");
    }
    Ok(())
}
