//! Upgrades lose nothing: what an earlier release wrote — an embedded data directory, and a
//! PostgreSQL database — opens with this one and serves every registry, tag and manifest
//! byte for byte, every identity, role, token and job. The fixtures were made once with
//! that release's binary (`tests/fixtures/upgrade/make.py`); each later schema change is
//! checked against them the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::util::*;

/// A release whose data is kept as a fixture.
const RELEASES: &[&str] = &["c6b6334"];

fn fixture(release: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade").join(release)
}

fn expect(release: &str, file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(release).join(file)).unwrap()).unwrap()
}

/// A copy of a fixture directory to run a server on (the fixture itself stays as made).
fn copy_dir(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn an_embedded_store_of_an_earlier_release_opens_and_serves_everything() {
    for release in RELEASES {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        copy_dir(&fixture(release).join("data"), &data);
        let w = Wharf::start_in(&data, &[]);
        serves_everything(&w, &expect(release, "expect.json"));
    }
}

#[test]
fn a_postgres_database_of_an_earlier_release_opens_and_serves_everything() {
    let Ok(server) = std::env::var("WHARF_TEST_POSTGRES") else {
        assert!(std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none(), "no WHARF_TEST_POSTGRES");
        eprintln!("SKIPPED: no PostgreSQL (scripts/test.sh starts one)");
        return;
    };
    for release in RELEASES {
        let name = format!("wharf_upgrade_{}", std::process::id());
        run(Command::new("psql").args([&server, "-q", "-c", &format!("CREATE DATABASE {name}")]));
        let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        run(Command::new("psql").args([
            &url,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            fixture(release).join("postgres.sql").to_str().unwrap(),
        ]));
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        copy_dir(&fixture(release).join("pg-data"), &data);
        let config = tmp.path().join("wharf.toml");
        std::fs::write(
            &config,
            format!(
                "public_url = \"http://127.0.0.1:1\"\n[storage]\nmetadata = \"{url}\"\n[auth]\nsealing_key_file = \"{}\"\n",
                data.join("sealing-key").display()
            ),
        )
        .unwrap();
        {
            let w = Wharf::start_in(&data, &["--config", config.to_str().unwrap()]);
            serves_everything(&w, &expect(release, "expect-postgres.json"));
        }
        run(Command::new("psql").args([&server, "-q", "-c", &format!("DROP DATABASE {name}")]));
    }
}

/// Everything the fixture's `expect` lists is there and works as it did.
fn serves_everything(w: &Wharf, expect: &Value) {
    let admin_password = expect["admin_password"].as_str().unwrap();
    let admin = basic("admin", admin_password);
    let token = w.token_for("admin", admin_password);
    let login = |registry: &str| match registry {
        "default" => w.host(),
        r => format!("{r}.localhost:{}", w.port),
    };
    let get = |registry: &str, path: &str, auth: &str| {
        w.anon()
            .get(format!("{}{path}", w.url()))
            .header("host", login(registry))
            .header("authorization", auth)
            .header(
                "accept",
                [
                    OCI_MANIFEST,
                    OCI_INDEX,
                    DOCKER_MANIFEST,
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                ]
                .join(","),
            )
            .send()
            .unwrap()
    };
    // Registries, as ARM resources.
    for r in expect["registries"].as_array().unwrap() {
        let id = format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}",
            r["resourceGroup"].as_str().unwrap(),
            r["name"].as_str().unwrap()
        );
        let (s, v) = arm_as(w, Some(&token), reqwest::Method::GET, &id, None);
        assert_eq!(s, 200, "{id}: {v}");
        assert_eq!(v["properties"]["roleAssignmentMode"], r["mode"], "{v}");
    }
    // Every tag, every manifest under it, byte for byte.
    for image in expect["images"].as_array().unwrap() {
        let (registry, repo) =
            (image["registry"].as_str().unwrap(), image["repository"].as_str().unwrap());
        let r = get(
            registry,
            &format!("/v2/{repo}/manifests/{}", image["tag"].as_str().unwrap()),
            &admin,
        );
        assert_eq!(r.status(), 200, "{image}");
        let bytes = r.bytes().unwrap();
        assert_eq!(digest_of(&bytes), image["digest"].as_str().unwrap(), "{image}");
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        let children = manifest["manifests"].as_array().cloned().unwrap_or_default();
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        for child in
            children.iter().chain(layers.iter()).chain(std::iter::once(&manifest["config"]))
        {
            let Some(d) = child["digest"].as_str() else { continue };
            let kind = if child.get("platform").is_some() { "manifests" } else { "blobs" };
            let r = get(registry, &format!("/v2/{repo}/{kind}/{d}"), &admin);
            assert_eq!(r.status(), 200, "{repo}/{kind}/{d}");
            assert_eq!(digest_of(&r.bytes().unwrap()), d);
        }
    }
    // Identities sign in with the secrets they had; roles and assignments still grant.
    for u in expect["users"].as_array().unwrap() {
        w.token_for(u["name"].as_str().unwrap(), u["password"].as_str().unwrap());
    }
    let dana = expect["users"][0]["name"].as_str().unwrap();
    let dana_password = expect["users"][0]["password"].as_str().unwrap();
    let sp = &expect["service_principals"][0];
    let (app, secret) = (sp["appId"].as_str().unwrap(), sp["secret"].as_str().unwrap());
    let sp_token = w.token_for_app(app, secret);
    let alpha = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/teams/providers/Microsoft.ContainerRegistry/registries/alpharegistry";
    // The custom role ("Importer", at the resource group) lets the service principal read it.
    let (s, _) = arm_as(w, Some(&sp_token), reqwest::Method::GET, alpha, None);
    assert_eq!(s, 200);
    for a in expect["assignments"].as_array().unwrap() {
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            a["scope"].as_str().unwrap(),
            a["id"].as_str().unwrap()
        );
        let (s, v) = arm_as(w, Some(&token), reqwest::Method::GET, &path, None);
        assert_eq!(s, 200, "{path}: {v}");
        assert_eq!(v["properties"]["principalId"], a["principal"]);
    }
    for role in expect["custom_roles"].as_array().unwrap() {
        let path = format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/teams/providers/Microsoft.Authorization/roleDefinitions/{}",
            role["id"].as_str().unwrap()
        );
        let (s, v) = arm_as(w, Some(&token), reqwest::Method::GET, &path, None);
        assert_eq!((s, &v["properties"]["roleName"]), (200, &role["name"]), "{v}");
    }
    // AcrPull on alpharegistry (dana), its repository token, its admin user.
    let pulled = "/v2/imported/multiarch/manifests/oci";
    assert_eq!(get("alpharegistry", pulled, &basic(dana, dana_password)).status(), 200);
    let t = &expect["tokens"][0];
    let token_auth = basic(t["name"].as_str().unwrap(), t["password"].as_str().unwrap());
    assert_eq!(get("alpharegistry", pulled, &token_auth).status(), 200);
    let admin_user = expect["admin_user"]["password"].as_str().unwrap();
    assert_eq!(get("alpharegistry", pulled, &basic("alpharegistry", admin_user)).status(), 200);
    // The admin user's password, sealed by the old release, still opens.
    let (s, v) =
        arm_as(w, Some(&token), reqwest::Method::POST, &format!("{alpha}/listCredentials"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["passwords"][0]["value"], admin_user);
    // Settings kept as they were.
    let (_, v) = arm_as(w, Some(&token), reqwest::Method::GET, alpha, None);
    assert_eq!(v["properties"]["networkRuleSet"]["ipRules"][0]["value"], "203.0.113.0/24");
    assert_eq!(v["tags"], json!({"team": "alph"}));
    // Finished import jobs are still on record.
    for job in expect["jobs"].as_array().unwrap() {
        let path = format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.ContainerRegistry/locations/LOCAL/operationResults/{}",
            job["id"].as_str().unwrap()
        );
        let (s, v) = arm_as(w, Some(&token), reqwest::Method::GET, &path, None);
        assert_eq!((s, &v["status"]), (200, &job["status"]), "{v}");
    }
    // Whoever owned everything administers the directory (its roles are new).
    let graph = w.graph_token_for("admin", admin_password);
    let r = w
        .anon()
        .post(format!("{}/v1.0/servicePrincipals", w.url()))
        .bearer_auth(&graph)
        .json(&json!({"displayName": "after-upgrade"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
}
