//! `wharf migrate`: an embedded server's whole state moved to PostgreSQL and an
//! S3-compatible store, then read back through a cluster node — as an operator outgrowing
//! one machine does it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// Everything a registry serves, read through `node`: for each repository every tag's and
/// every stored manifest's bytes (by digest, tagged or not), every blob and child they
/// name (checked against its digest) and the referrers of each manifest.
fn snapshot(node: &Wharf, registry_host: &str) -> BTreeMap<String, String> {
    let http = node.reg().http;
    let get = |path: &str| {
        let r = http
            .get(format!("{}{path}", node.url()))
            .header("host", registry_host)
            .header("accept", [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", "))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path} on {registry_host}");
        r.bytes().unwrap().to_vec()
    };
    let mut seen = BTreeMap::new();
    let catalog: Value = serde_json::from_slice(&get("/v2/_catalog?n=1000")).unwrap();
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags: Value = serde_json::from_slice(&get(&format!("/v2/{repo}/tags/list"))).unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let bytes = get(&format!("/v2/{repo}/manifests/{tag}"));
            seen.insert(format!("{repo}:{tag}"), digest_of(&bytes));
        }
        let listing: Value =
            serde_json::from_slice(&get(&format!("/acr/v1/{repo}/_manifests?n=1000"))).unwrap();
        for m in listing["manifests"].as_array().unwrap() {
            let digest = m["digest"].as_str().unwrap();
            let bytes = get(&format!("/v2/{repo}/manifests/{digest}"));
            assert_eq!(digest_of(&bytes), digest, "{repo}@{digest} served other bytes");
            seen.insert(format!("{repo}@{digest}"), m["tags"].to_string());
            let parsed: Value = serde_json::from_slice(&bytes).unwrap();
            let blobs = parsed["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(parsed.get("config"))
                .chain(parsed.get("blobs").and_then(Value::as_array).into_iter().flatten());
            for b in blobs {
                let d = b["digest"].as_str().unwrap();
                assert_eq!(digest_of(&get(&format!("/v2/{repo}/blobs/{d}"))), d);
                seen.insert(format!("{repo} blob {d}"), b["size"].to_string());
            }
            let referrers: Value =
                serde_json::from_slice(&get(&format!("/v2/{repo}/referrers/{digest}"))).unwrap();
            if !referrers["manifests"].as_array().unwrap().is_empty() {
                seen.insert(
                    format!("{repo}@{digest} referrers"),
                    referrers["manifests"].to_string(),
                );
            }
        }
    }
    seen
}

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `wharf migrate --from data …`; its outcome.
fn migrate(data: &std::path::Path, extra: &[&str]) -> CliRun {
    let out = Command::new(wharf_bin())
        .arg("migrate")
        .arg("--from")
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    CliRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_embedded_server_moves_to_a_cluster_whole() {
    let Some(shared) = Shared::new() else { return };
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    let mut w = Wharf::start_with(&["--insecure-source", "127.0.0.1"]);

    // Multi-platform images, a chart, referrers, images of several sizes …
    make_images(
        &w.host(),
        work.path(),
        &["--only", "single,multiarch,helm,referrers", "--sizes", "1m,24m"],
    );
    // … an untagged manifest, by digest only …
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = bytes(7, 300_000);
    w.reg().push_blob("loose/app", config);
    w.reg().push_blob("loose/app", &layer);
    let loose = image_manifest(config, &[&layer]);
    let r = w.reg().put_manifest("loose/app", &digest_of(&loose), OCI_MANIFEST, &loose);
    assert_eq!(r.status(), 201);
    // … a second registry holding an import (its operation is history to keep) and an admin
    // user (its password sealed under the server's key).
    let src_work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), src_work.path(), &["--only", "single", "--sizes", "1m"]);
    cli(&w, &["registry", "create", "-n", "second"]).ok_json();
    let source = format!("{}/harness/single:1m", dist.host());
    let imported = cli(&w, &["import", "-n", "second", "--source", &source, "--no-wait"]).ok_json();
    let operation = imported["operationId"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(30), || {
            cli(&w, &["operation", "show", &operation]).ok_json()["status"] == "Succeeded"
        }),
        "the import never finished"
    );
    cli(&w, &["registry", "update", "-n", "second", "--admin-enabled", "true"]).ok_json();
    let creds = cli(&w, &["registry", "credential", "show", "-n", "second"]).ok_json();
    let second_password = creds["passwords"][0]["value"].as_str().unwrap().to_owned();

    let second_host = |port: u16| format!("second.localhost:{port}");
    let before = (snapshot(&w, &w.host()), snapshot(&w, &second_host(w.port)));
    assert!(before.0.contains_key(&format!("loose/app@{}", digest_of(&loose))));
    assert!(before.0.keys().any(|k| k.starts_with("harness/charts/")));
    assert!(before.0.keys().any(|k| k.ends_with(" referrers")));
    assert!(before.1.contains_key("harness/single:1m"));

    // Not while the server runs: its data would change under the copy.
    let busy = migrate(&w.data, &["--to-blobs", &shared.blobs]);
    assert!(!busy.ok);
    assert!(busy.err_line().contains("in use by another wharf server"), "{}", busy.stderr);
    w.terminate();

    // A dry run says what it would do and writes nothing: the database stays without a schema.
    let dry = migrate(
        &w.data,
        &["--to-blobs", &shared.blobs, "--to-metadata", &shared.metadata, "--dry-run"],
    )
    .ok_json();
    let recorded = dry["blobs"]["recorded"].as_u64().unwrap();
    assert!(recorded >= 15, "{dry}");
    assert_eq!(dry["blobs"]["toCopy"], recorded);
    assert_eq!(dry["metadata"], "wouldCopy");
    assert!(dry["tables"]["manifests"].as_u64().unwrap() >= 10, "{dry}");
    let schema = run(Command::new("psql").args([
        &shared.metadata,
        "-tAc",
        "SELECT coalesce(to_regclass('registries')::text, 'none')",
    ]));
    assert_eq!(schema.trim(), "none");

    // Killed part-way: the blobs it published stay, whole; nothing half-written is visible.
    let mut child = Command::new(wharf_bin())
        .args(["migrate", "--parallel", "1", "--from"])
        .arg(&w.data)
        .args(["--to-blobs", &shared.blobs, "--to-metadata", &shared.metadata])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("wharf: copied sha256:"), "{first}");
    let _ = child.kill();
    let killed = child.wait().unwrap();

    // Run again (blobs only): what the first run published is skipped, the rest copied.
    let blobs_only = migrate(&w.data, &["--to-blobs", &shared.blobs]).ok_json();
    let already = blobs_only["blobs"]["alreadyInTarget"].as_u64().unwrap();
    let copied = blobs_only["blobs"]["copied"].as_u64().unwrap();
    assert_eq!(already + copied, recorded, "{blobs_only}");
    if !killed.success() {
        assert!(already >= 1, "{blobs_only}");
    }
    assert!(blobs_only.get("metadata").is_none());

    // The whole move: every blob already there (read back and hashed again), the metadata
    // in one transaction.
    let moved = migrate(
        &w.data,
        &["--to-blobs", &shared.blobs, "--to-metadata", &shared.metadata, "--verify"],
    );
    let report = moved.ok_json();
    assert_eq!(report["blobs"]["alreadyInTarget"], recorded, "{report}");
    assert_eq!(report["blobs"]["verified"], recorded, "{report}");
    assert_eq!(report["metadata"], "copied", "{report}");
    let key = w.data.join("sealing-key");
    assert_eq!(report["sealingKeyFile"], key.display().to_string());
    assert!(moved.stderr.contains("sealing_key_file"), "{}", moved.stderr);
    // Once is enough: a second run finds the copy and changes nothing.
    let again = migrate(&w.data, &["--to-blobs", &shared.blobs, "--to-metadata", &shared.metadata])
        .ok_json();
    assert_eq!(again["metadata"], "alreadyCopied");
    assert_eq!(again["blobs"]["copied"], 0);

    // A cluster node on the moved data, with the old server's sealing key.
    let balancer = Balancer::start();
    let config = format!(
        "public_url = \"{}\"\n[storage]\nmetadata = \"{}\"\nblobs = \"{}\"\n[auth]\nsealing_key_file = \"{}\"\n",
        balancer.url(),
        shared.metadata,
        shared.blobs,
        key.display()
    );
    let node = Wharf::start_with_config(&config, &[]);
    *balancer.backends.lock().unwrap() = vec![node.port];
    let after = (snapshot(&node, &node.host()), snapshot(&node, &second_host(node.port)));
    assert_eq!(after.0, before.0, "the default registry differs after the move");
    assert_eq!(after.1, before.1, "registry `second` differs after the move");
    // The import's operation is still there to poll, the admin user's password is the same
    // and signs in.
    let status = cli(&node, &["operation", "show", &operation]).ok_json();
    assert_eq!(status["status"], "Succeeded", "{status}");
    let creds = cli(&node, &["registry", "credential", "show", "-n", "second"]).ok_json();
    assert_eq!(creds["passwords"][0]["value"], second_password.as_str());
    let r = anon_client()
        .get(format!("{}/v2/harness/single/manifests/1m", node.url()))
        .header("host", second_host(node.port))
        .header("authorization", basic("second", &second_password))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The node goes on where the old server stopped: a new push next to the moved content.
    let (_, pushed) = node.reg().push_image("after/move", "v1", &[b"pushed after the move"]);
    assert_eq!(node.reg().head(&format!("/v2/after/move/manifests/{pushed}")).status(), 200);
}

#[test]
fn migrate_refuses_what_it_cannot_do_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(wharf_bin()).arg("migrate").args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let dir = tmp.path().to_str().unwrap();
    // Nothing to move to.
    let (code, err) = run(&["--from", dir]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with("wharf: error: ") && err.lines().count() == 1, "{err}");
    // Not a data directory.
    let (code, err) = run(&["--from", dir, "--to-blobs", "s3://bucket"]);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a wharf data directory"), "{err}");
    // A bad object-store URL, named by its flag; a secret in it is refused, never echoed.
    let mut w = Wharf::start();
    w.terminate();
    let data = w.data.clone();
    let (code, err) = run(&["--from", data.to_str().unwrap(), "--to-blobs", "ftp://x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--to-blobs"), "{err}");
    let (_, err) = run(&[
        "--from",
        data.to_str().unwrap(),
        "--to-blobs",
        "s3://b?endpoint=http://127.0.0.1:1&secret_access_key=hunter2",
    ]);
    assert!(!err.contains("hunter2") && err.contains("--to-blobs"), "{err}");
}
