//! `wharf import`: the flags of `az acr import`, its rules for reading `--source` and
//! `--registry` (relaxed where wharf's is better), then one `importImage` call and, unless
//! `--no-wait`, polling with a live progress bar.

use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{GlobalArgs, ImportArgs};
use crate::client::{API_VERSION, Client};
use crate::output::print;

/// What the command will do, resolved from the flags and the server's registries.
#[derive(Debug, PartialEq)]
pub(crate) struct ResolvedImport {
    /// The target registry's resource ID.
    pub(crate) target: String,
    /// The `ImportImageParameters` body.
    pub(crate) body: Value,
    pub(crate) warnings: Vec<String>,
}

fn host_of(login_server: &str) -> &str {
    login_server.split(':').next().unwrap_or(login_server)
}

/// The registry whose name or login server is `s` (login servers compare with or without
/// their port).
fn find<'a>(registries: &'a [Value], s: &str) -> Vec<&'a Value> {
    registries
        .iter()
        .filter(|r| {
            let name = r["name"].as_str().unwrap_or_default();
            let login = r["properties"]["loginServer"].as_str().unwrap_or_default();
            name.eq_ignore_ascii_case(s)
                || login.eq_ignore_ascii_case(s)
                || host_of(login).eq_ignore_ascii_case(s)
        })
        .collect()
}

/// Apply `az acr import`'s rules (spec §2.2) to the flags.
pub(crate) fn resolve(args: &ImportArgs, registries: &[Value]) -> anyhow::Result<ResolvedImport> {
    if args.username.is_some() && args.password.is_none() {
        bail!("Authentication failed. Please provide password.");
    }
    let mut warnings = Vec::new();
    let target = target_id(args, registries)?;
    let credentials = args.password.as_ref().map(|p| match &args.username {
        Some(u) => json!({"username": u, "password": p}),
        None => json!({"password": p}),
    });
    let source = if let Some(reg) = &args.registry {
        let source = source_in_registry(args, reg, registries, &mut warnings)?;
        if credentials.is_some() {
            warnings.push("--username/--password are not used with --registry: a registry on this server is read on behalf of the caller.".into());
        }
        source
    } else {
        source_by_uri(&args.source, registries, credentials)?
    };
    Ok(ResolvedImport { target, body: body(args, source), warnings })
}

/// The target registry's resource ID (`--name`, in `--resource-group` if given).
fn target_id(args: &ImportArgs, registries: &[Value]) -> anyhow::Result<String> {
    Ok(registries
        .iter()
        .find(|r| {
            r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(&args.target.name))
                && args.target.resource_group.as_deref().is_none_or(|rg| {
                    r["id"].as_str().is_some_and(|id| {
                        id.to_ascii_lowercase()
                            .contains(&format!("/resourcegroups/{}/", rg.to_ascii_lowercase()))
                    })
                })
        })
        .and_then(|r| r["id"].as_str())
        .with_context(|| format!("The registry '{}' could not be found.", args.target.name))?
        .to_owned())
}

/// `--registry` (a resource ID, a name or a login server): the source is an image in it,
/// and a `--source` prefixed with its login server loses the prefix.
fn source_in_registry(
    args: &ImportArgs,
    reg: &str,
    registries: &[Value],
    warnings: &mut Vec<String>,
) -> anyhow::Result<Value> {
    let (id, login) = if reg.to_ascii_lowercase().starts_with("/subscriptions/") {
        let login = registries
            .iter()
            .find(|r| r["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(reg)))
            .and_then(|r| r["properties"]["loginServer"].as_str())
            .map(str::to_owned);
        (reg.to_owned(), login)
    } else {
        let found = find(registries, reg);
        if found.len() > 1 {
            warnings.push(format!("More than one registries were found by '{reg}'."));
        }
        match found.as_slice() {
            [one] => (
                one["id"].as_str().unwrap_or_default().to_owned(),
                one["properties"]["loginServer"].as_str().map(str::to_owned),
            ),
            _ => bail!(
                "The source container registry can not be found in the current subscription. Please provide a valid address and/or credentials."
            ),
        }
    };
    let mut image = args.source.clone();
    if let Some(login) = login {
        for prefix in [format!("{login}/"), format!("{}/", host_of(&login))] {
            if image.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()) {
                warnings.push(format!(
                    "The login server name of \"{login}\" in the \"--source\" argument will be ignored as \"--registry\" already supplies the same information"
                ));
                image = image[prefix.len()..].to_owned();
                break;
            }
        }
    }
    Ok(json!({"resourceId": id, "sourceImage": image}))
}

/// A fully qualified `--source`: a registry on this server when one has that login server
/// (and no credentials are given), else a registry elsewhere.
fn source_by_uri(
    source: &str,
    registries: &[Value],
    credentials: Option<Value>,
) -> anyhow::Result<Value> {
    let slash = source.find('/');
    let (registry, image) = match slash {
        Some(i) if i > 0 => (&source[..i], &source[i + 1..]),
        _ => bail!(
            "Source cannot be found. Please provide a valid image and source registry or a fully qualified source."
        ),
    };
    // Relaxed from az: `localhost[:port]` and `host:port` are registries too.
    let looks_like_host = registry.contains('.')
        || registry.contains(':')
        || registry.eq_ignore_ascii_case("localhost");
    if !looks_like_host {
        bail!(
            "Login server of the registry is not valid because it is not a fully qualified domain name."
        );
    }
    let ours = find(registries, registry);
    Ok(match (credentials, ours.as_slice()) {
        (None, [one]) => json!({"resourceId": one["id"], "sourceImage": image}),
        (Some(c), _) => json!({"registryUri": registry, "sourceImage": image, "credentials": c}),
        (None, _) => json!({"registryUri": registry, "sourceImage": image}),
    })
}

/// The `ImportImageParameters` body: the source, the targets, the mode.
fn body(args: &ImportArgs, source: Value) -> Value {
    let mut body = json!({"source": source, "mode": if args.force { "Force" } else { "NoForce" }});
    if !args.images.is_empty() {
        body["targetTags"] = json!(args.images);
    } else if args.repositories.is_empty() {
        // az's default target: the source image without its digest (the service then
        // uses the source's tag, or `latest`).
        let image = body["source"]["sourceImage"].as_str().unwrap_or_default();
        let without_digest = image.split('@').next().unwrap_or(image).to_owned();
        body["targetTags"] = json!([without_digest]);
    }
    if !args.repositories.is_empty() {
        body["untaggedTargetRepositories"] = json!(args.repositories);
    }
    if args.no_referrers {
        body["includeReferrers"] = json!(false);
    }
    body
}

fn arm_error(body: &Value) -> String {
    let e = &body["error"];
    format!(
        "({}) {}",
        e["code"].as_str().unwrap_or("ImportFailed"),
        e["message"].as_str().unwrap_or("the import failed")
    )
}

pub(crate) async fn run(global: &GlobalArgs, args: ImportArgs) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    let registries = client.all_registries().await?;
    let resolved = resolve(&args, &registries)?;
    for w in &resolved.warnings {
        eprintln!("WARNING: {w}");
    }
    let url = format!("{}/importImage?api-version={API_VERSION}", resolved.target);
    let a = client.send(Method::POST, &url, None, Some(&resolved.body)).await?;
    let location =
        a.headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let fail = |msg: String| -> anyhow::Result<()> {
        if args.registry.is_some()
            && let Some(login) = registries
                .iter()
                .find(|r| r["id"] == resolved.body["source"]["resourceId"])
                .and_then(|r| r["properties"]["loginServer"].as_str())
            && args.source.contains(login)
        {
            eprintln!(
                "WARNING: Import from source failed.\n\tsource image: '{login}/{}'\nAttention: When source registry is specified with `--registry`, `--source` is considered to be a source image name. Do not prefix `--source` with the registry login server name.",
                args.source
            );
        }
        // The server names the setting; the command that changes it is the CLI's to give
        // (on the error's line: scripts read one).
        if msg.starts_with("(NetworkRestricted)") {
            bail!(
                "{msg} (wharf registry update -n {} --allow-trusted-services true)",
                args.target.name
            );
        }
        bail!("{msg}")
    };
    let operation_id = |location: &str| {
        location.split('/').next_back().unwrap_or("").split('?').next().unwrap_or("").to_owned()
    };
    match a.status.as_u16() {
        200 | 202 if args.no_wait => {
            // The same answer whether or not the import already finished.
            let location =
                location.context("the server accepted the import but gave no Location")?;
            eprintln!(
                "WARNING: Import has started. Due to no-wait option, failures will not be reflected."
            );
            let status = if a.status.as_u16() == 200 { "Succeeded" } else { "Accepted" };
            print(
                global.output,
                &json!({"status": status, "operationId": operation_id(&location), "location": location}),
                &[("STATUS", "/status"), ("OPERATION", "/operationId")],
            );
            Ok(())
        }
        200 => {
            let status = match &location {
                Some(l) => client.send(Method::GET, l, None, None).await?.body,
                None => json!({"status": "Succeeded"}),
            };
            print_result(global, &status);
            Ok(())
        }
        202 => {
            let location =
                location.context("the server accepted the import but gave no Location")?;
            match wait(&client, &location).await? {
                Ok(status) => {
                    print_result(global, &status);
                    Ok(())
                }
                Err(e) => fail(e),
            }
        }
        _ => fail(arm_error(&a.body)),
    }
}

fn print_result(global: &GlobalArgs, status: &Value) {
    print(
        global.output,
        status,
        &[
            ("STATUS", "/status"),
            ("BYTES", "/progress/bytesTotal"),
            ("BLOBS", "/progress/blobsTotal"),
            ("REUSED", "/progress/blobsReused"),
            ("MANIFESTS", "/progress/manifestsTotal"),
            ("PLATFORMS", "/progress/platforms"),
        ],
    );
}

/// Poll the operation until it ends, showing progress on a terminal.
async fn wait(client: &Client, location: &str) -> anyhow::Result<Result<Value, String>> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} Importing {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let outcome = loop {
        let a = client.send(Method::GET, location, None, None).await?;
        let p = &a.body["progress"];
        bar.set_length(p["bytesTotal"].as_u64().unwrap_or(0));
        bar.set_position(p["bytesDone"].as_u64().unwrap_or(0));
        let platforms: Vec<&str> =
            p["platforms"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        bar.set_message(format!(
            "{} · blobs {}/{}{}",
            p["phase"].as_str().unwrap_or("Accepted"),
            p["blobsDone"].as_u64().unwrap_or(0),
            p["blobsTotal"].as_u64().unwrap_or(0),
            if platforms.is_empty() {
                String::new()
            } else {
                format!(" · {}", platforms.join(", "))
            }
        ));
        match a.status.as_u16() {
            202 => tokio::time::sleep(Duration::from_millis(200)).await,
            200 => break Ok(a.body),
            _ => break Err(arm_error(&a.body)),
        }
    };
    bar.finish_and_clear();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::RegistryRef;

    fn registries() -> Vec<Value> {
        vec![
            json!({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/target", "name": "target", "properties": {"loginServer": "target.localhost:5000"}}),
            json!({"id": "/subscriptions/s2/resourceGroups/other/providers/Microsoft.ContainerRegistry/registries/source", "name": "source", "properties": {"loginServer": "source.localhost:5000"}}),
        ]
    }

    fn args(source: &str) -> ImportArgs {
        ImportArgs {
            target: RegistryRef { name: "target".into(), resource_group: None, subscription: None },
            source: source.into(),
            registry: None,
            username: None,
            password: None,
            images: vec![],
            repositories: vec![],
            force: false,
            no_wait: false,
            no_referrers: false,
        }
    }

    #[test]
    fn fully_qualified_sources() {
        let r = resolve(&args("docker.io/library/hello-world:latest"), &registries()).unwrap();
        assert!(r.target.ends_with("/registries/target"));
        assert_eq!(
            r.body["source"],
            json!({"registryUri": "docker.io", "sourceImage": "library/hello-world:latest"})
        );
        assert_eq!(r.body["mode"], "NoForce");
        // Relaxed: localhost:5000 is a registry.
        let r = resolve(&args("localhost:5000/x:1"), &registries()).unwrap();
        assert_eq!(r.body["source"]["registryUri"], "localhost:5000");
        // One of ours by login server: read by resource ID.
        let r = resolve(&args("source.localhost:5000/app:v1"), &registries()).unwrap();
        assert!(r.body["source"]["resourceId"].as_str().unwrap().ends_with("/registries/source"));
        for (bad, msg) in [
            ("hello-world", "Source cannot be found"),
            ("/x", "Source cannot be found"),
            ("library/hello-world", "not a fully qualified"),
        ] {
            assert!(
                resolve(&args(bad), &registries()).unwrap_err().to_string().contains(msg),
                "{bad}"
            );
        }
    }

    #[test]
    fn registry_flag_and_credentials() {
        let mut a = args("source.localhost:5000/app:v1");
        a.registry = Some("source".into());
        a.images = vec!["copy:v2".into()];
        a.force = true;
        let r = resolve(&a, &registries()).unwrap();
        assert_eq!(r.body["source"]["sourceImage"], "app:v1");
        assert_eq!(r.warnings.len(), 1, "the login server prefix is stripped with a warning");
        assert_eq!(r.body["targetTags"], json!(["copy:v2"]));
        assert_eq!(r.body["mode"], "Force");
        a.registry = Some("/subscriptions/s2/resourceGroups/other/providers/Microsoft.ContainerRegistry/registries/source".into());
        assert_eq!(resolve(&a, &registries()).unwrap().body["source"]["sourceImage"], "app:v1");
        a.registry = Some("nosuch".into());
        assert!(resolve(&a, &registries()).unwrap_err().to_string().contains("can not be found"));

        let mut a = args("private.example.com/app:v1");
        a.username = Some("u".into());
        assert_eq!(
            resolve(&a, &registries()).unwrap_err().to_string(),
            "Authentication failed. Please provide password."
        );
        a.password = Some("p".into());
        assert_eq!(
            resolve(&a, &registries()).unwrap().body["source"]["credentials"],
            json!({"username": "u", "password": "p"})
        );
        a.username = None;
        assert_eq!(
            resolve(&a, &registries()).unwrap().body["source"]["credentials"],
            json!({"password": "p"})
        );
    }
}
