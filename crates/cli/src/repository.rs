//! `wharf repository list|show-tags|show-manifests|show|delete|untag`, with `az acr
//! repository`'s flags and JSON output.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{GlobalArgs, Output, RegistryRef, RepositoryCommand};
use crate::client::{Client, login_server};
use crate::output::{confirm, print};

const PAGE: u32 = 100;

fn orderby(o: Option<&str>) -> anyhow::Result<&'static str> {
    match o.map(|s| s.to_ascii_lowercase()) {
        None => Ok(""),
        Some(o) if o == "time_desc" || o == "timedesc" => Ok("timedesc"),
        Some(o) if o == "time_asc" || o == "timeasc" => Ok("timeasc"),
        Some(o) => bail!("--orderby must be time_asc or time_desc, not '{o}'"),
    }
}

/// The query of a listing: pages of `PAGE` by name, or — in time order, which doesn't page —
/// the first `--top` (or all).
fn page_query(top: Option<u32>, o: Option<&str>) -> anyhow::Result<String> {
    Ok(match orderby(o)? {
        "" => format!("n={PAGE}&orderby="),
        time => match top {
            Some(t) => format!("n={t}&orderby={time}"),
            None => format!("orderby={time}"),
        },
    })
}

/// `repo:tag` or `repo@digest`.
fn split_image(image: &str) -> anyhow::Result<(&str, &str, bool)> {
    if let Some((repo, digest)) = image.split_once('@') {
        return Ok((repo, digest, true));
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => Ok((repo, tag, false)),
        _ => bail!("--image must be repo:tag or repo@digest, not '{image}'"),
    }
}

/// Every item of a paginated list, following `Link` headers.
async fn paged(
    client: &Client,
    login: &str,
    first: String,
    key: &str,
    top: Option<u32>,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = Some(first);
    while let Some(path) = next.take() {
        let a = client.data(Method::GET, login, &path).await?;
        out.extend(a.body[key].as_array().into_iter().flatten().cloned());
        if top.is_some_and(|t| out.len() >= t as usize) {
            out.truncate(top.unwrap_or(0) as usize);
            break;
        }
        next = a
            .headers
            .get(reqwest::header::LINK)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split(';').next())
            .map(|l| l.trim().trim_start_matches('<').trim_end_matches('>').to_owned());
    }
    Ok(out)
}

pub(crate) async fn run(global: &GlobalArgs, cmd: RepositoryCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    let out = global.output;
    match cmd {
        RepositoryCommand::List { registry, top } => list(&client, out, &registry, top).await,
        RepositoryCommand::ShowTags { registry, repository, detail, top, orderby: o } => {
            show_tags(&client, out, &registry, &repository, detail, top, o.as_deref()).await
        }
        RepositoryCommand::ShowManifests { registry, repository, detail, top, orderby: o } => {
            show_manifests(&client, out, &registry, &repository, detail, top, o.as_deref()).await
        }
        RepositoryCommand::Show { registry, repository, image } => {
            show(&client, out, &registry, repository.as_deref(), image.as_deref()).await
        }
        RepositoryCommand::Delete { registry, repository, image, yes } => {
            delete(&client, out, &registry, repository.as_deref(), image.as_deref(), yes).await
        }
        RepositoryCommand::Untag { registry, image } => untag(&client, &registry, &image).await,
    }
}

async fn list(
    client: &Client,
    out: Output,
    registry: &RegistryRef,
    top: Option<u32>,
) -> anyhow::Result<()> {
    let login = login_server(&client.registry(registry).await?)?;
    let repos =
        paged(client, &login, format!("/v2/_catalog?n={PAGE}"), "repositories", top).await?;
    print(out, &Value::Array(repos), &[("RESULT", "")]);
    Ok(())
}

async fn show_tags(
    client: &Client,
    out: Output,
    registry: &RegistryRef,
    repository: &str,
    detail: bool,
    top: Option<u32>,
    orderby: Option<&str>,
) -> anyhow::Result<()> {
    let login = login_server(&client.registry(registry).await?)?;
    let path = format!("/acr/v1/{repository}/_tags?{}", page_query(top, orderby)?);
    let tags = paged(client, &login, path, "tags", top).await?;
    if detail {
        print(
            out,
            &Value::Array(tags),
            &[("NAME", "/name"), ("DIGEST", "/digest"), ("LAST UPDATE TIME", "/lastUpdateTime")],
        );
    } else {
        let names: Vec<Value> = tags.iter().map(|t| t["name"].clone()).collect();
        print(out, &Value::Array(names), &[("RESULT", "")]);
    }
    Ok(())
}

async fn show_manifests(
    client: &Client,
    out: Output,
    registry: &RegistryRef,
    repository: &str,
    detail: bool,
    top: Option<u32>,
    orderby: Option<&str>,
) -> anyhow::Result<()> {
    let login = login_server(&client.registry(registry).await?)?;
    let path = format!("/acr/v1/{repository}/_manifests?{}", page_query(top, orderby)?);
    let manifests = paged(client, &login, path, "manifests", top).await?;
    let shown: Vec<Value> = if detail {
        manifests
    } else {
        manifests
            .iter()
            .map(|m| json!({"digest": m["digest"], "tags": m["tags"], "timestamp": m["lastUpdateTime"]}))
            .collect()
    };
    print(
        out,
        &Value::Array(shown),
        &[
            ("DIGEST", "/digest"),
            ("TAGS", "/tags"),
            ("TIMESTAMP", "/timestamp"),
            ("ARCHITECTURE", "/architecture"),
            ("OS", "/os"),
        ],
    );
    Ok(())
}

async fn show(
    client: &Client,
    out: Output,
    registry: &RegistryRef,
    repository: Option<&str>,
    image: Option<&str>,
) -> anyhow::Result<()> {
    let login = login_server(&client.registry(registry).await?)?;
    let path = match (repository, image) {
        (_, Some(image)) => {
            let (repo, reference, digest) = split_image(image)?;
            if digest {
                format!("/acr/v1/{repo}/_manifests/{reference}")
            } else {
                format!("/acr/v1/{repo}/_tags/{reference}")
            }
        }
        (Some(repo), None) => format!("/acr/v1/{repo}"),
        (None, None) => bail!("give --repository or --image"),
    };
    let a = client.data(Method::GET, &login, &path).await?;
    print(out, &a.body, &[("NAME", "/imageName"), ("REGISTRY", "/registry")]);
    Ok(())
}

/// An image (`--image`: its manifest and every tag on it), else a whole repository.
async fn delete(
    client: &Client,
    out: Output,
    registry: &RegistryRef,
    repository: Option<&str>,
    image: Option<&str>,
    yes: bool,
) -> anyhow::Result<()> {
    let login = login_server(&client.registry(registry).await?)?;
    match (repository, image) {
        (_, Some(image)) => delete_image(client, &login, image, yes).await,
        (Some(repo), None) => delete_repository(client, out, &login, repo, yes).await,
        (None, None) => bail!("give --repository or --image"),
    }
}

async fn delete_image(client: &Client, login: &str, image: &str, yes: bool) -> anyhow::Result<()> {
    let (repo, reference, _) = split_image(image)?;
    if !yes && !confirm(&format!("Delete {image}, its manifest and every tag on it?"))? {
        bail!("not deleted");
    }
    let head =
        client.data(Method::HEAD, login, &format!("/v2/{repo}/manifests/{reference}")).await?;
    let digest = head
        .headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .context("the registry did not say the manifest's digest")?
        .to_owned();
    client.data(Method::DELETE, login, &format!("/v2/{repo}/manifests/{digest}")).await?;
    Ok(())
}

async fn delete_repository(
    client: &Client,
    out: Output,
    login: &str,
    repo: &str,
    yes: bool,
) -> anyhow::Result<()> {
    if !yes && !confirm(&format!("Delete repository {repo} and everything in it?"))? {
        bail!("not deleted");
    }
    let a = client.data(Method::DELETE, login, &format!("/acr/v1/{repo}")).await?;
    print(
        out,
        &a.body,
        &[("MANIFESTS DELETED", "/manifestsDeleted"), ("TAGS DELETED", "/tagsDeleted")],
    );
    Ok(())
}

async fn untag(client: &Client, registry: &RegistryRef, image: &str) -> anyhow::Result<()> {
    let login = login_server(&client.registry(registry).await?)?;
    let (repo, tag, digest) = split_image(image)?;
    if digest {
        bail!("--image must be repo:tag to untag");
    }
    client.data(Method::DELETE, &login, &format!("/acr/v1/{repo}/_tags/{tag}")).await?;
    Ok(())
}
