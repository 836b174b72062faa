//! Server-side import, end to end through the CLI (and the ARM API where its shapes
//! matter), from real registries: the CNCF distribution registry (anonymous, with basic
//! auth, behind a docker.io mirror, behind a fault-injecting proxy) and other wharf
//! registries on the same server.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::util::*;

/// A distribution registry with the harness images, and a wharf allowed to read it.
struct Env {
    dist: Distribution,
    summary: Value,
    wharf: Wharf,
    _work: tempfile::TempDir,
}

fn env_with(only: &str, extra_wharf_args: &[&str]) -> Env {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    let summary = make_images(&dist.host(), work.path(), &["--only", only]);
    let mut args = vec!["--insecure-source", "127.0.0.1"];
    args.extend_from_slice(extra_wharf_args);
    let wharf = Wharf::start_with(&args);
    Env { dist, summary, wharf, _work: work }
}

fn env(only: &str) -> Env {
    env_with(only, &[])
}

impl Env {
    fn digest(&self, reference: &str) -> String {
        self.summary["items"].as_array().unwrap().iter().find(|i| i["ref"] == reference).unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn login(&self, registry: &str) -> String {
        format!("{registry}.localhost:{}", self.wharf.port)
    }

    /// The manifest a wharf registry serves.
    fn manifest(&self, registry: &str, repo: &str, reference: &str) -> Option<Vec<u8>> {
        manifest_bytes(&self.wharf.url(), Some(&self.login(registry)), repo, reference)
    }

    fn create(&self, name: &str) {
        cli(&self.wharf, &["registry", "create", "-n", name]).ok_json();
    }

    fn import(&self, args: &[&str]) -> CliRun {
        cli(&self.wharf, &[&["import"], args].concat())
    }
}

/// Every blob of an image in a wharf registry is there, byte for byte.
fn assert_complete(e: &Env, registry: &str, repo: &str, reference: &str) {
    let bytes = e
        .manifest(registry, repo, reference)
        .unwrap_or_else(|| panic!("{repo}:{reference} missing"));
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    let reg = e.wharf.reg();
    if let Some(children) = m["manifests"].as_array() {
        for c in children {
            assert_complete(e, registry, repo, c["digest"].as_str().unwrap());
        }
        return;
    }
    for b in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        let d = b["digest"].as_str().unwrap();
        let r = reg
            .http
            .get(reg.url(&format!("/v2/{repo}/blobs/{d}")))
            .header("host", e.login(registry))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{repo} blob {d}");
        assert_eq!(digest_of(&r.bytes().unwrap()), d);
    }
}

#[test]
fn import_by_tag_from_a_public_registry() {
    let e = env("single,referrers");
    e.create("target01");
    let out = e
        .import(&["-n", "target01", "--source", &format!("{}/harness/single:10m", e.dist.host())])
        .ok_json();
    assert_eq!(out["status"], "Succeeded");
    assert_eq!(
        out["progress"]["blobsTotal"], 8,
        "5 layers, a config, and the SBOM referrer's two blobs"
    );
    // The default target is the source's repository and tag; the digest is the source's.
    let want = e.digest("harness/single:10m");
    assert_eq!(digest_of(&e.manifest("target01", "harness/single", "10m").unwrap()), want);
    assert_complete(&e, "target01", "harness/single", "10m");
    let tags = cli(
        &e.wharf,
        &["repository", "show-tags", "-n", "target01", "--repository", "harness/single"],
    )
    .ok_json();
    assert_eq!(tags, json!(["10m"]));
    assert_blob_files_match_names(&e.wharf.data);
}

#[test]
fn import_by_digest_untagged() {
    let e = env("single");
    e.create("target02");
    let d = e.digest("harness/single:10m");
    let source = format!("{}/harness/single@{d}", e.dist.host());
    e.import(&["-n", "target02", "--source", &source, "--repository", "pinned"]).ok_json();
    assert!(e.manifest("target02", "pinned", &d).is_some());
    let tags =
        cli(&e.wharf, &["repository", "show-tags", "-n", "target02", "--repository", "pinned"])
            .ok_json();
    assert_eq!(tags, json!([]), "an untagged copy");
    // The CLI without a target, like az: the source repository, tagged `latest`.
    e.import(&["-n", "target02", "--source", &source]).ok_json();
    assert_eq!(digest_of(&e.manifest("target02", "harness/single", "latest").unwrap()), d);
    // The API without a target: no tag, in the source's repository.
    let body = json!({"source": {"registryUri": e.dist.host(), "sourceImage": format!("harness/api@{d}")}});
    run(std::process::Command::new("skopeo").args([
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/harness/single:10m", e.dist.host()),
        &format!("docker://{}/harness/api:v1", e.dist.host()),
    ]));
    let r = e
        .wharf
        .arm_client()
        .post(format!("{}{}/importImage?{API}", e.wharf.url(), registry_id("target02")))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(e.manifest("target02", "harness/api", &d).is_some());
    assert_eq!(
        cli(
            &e.wharf,
            &["repository", "show-tags", "-n", "target02", "--repository", "harness/api"]
        )
        .ok_json(),
        json!([])
    );
    // By digest with a tag.
    e.import(&["-n", "target02", "--source", &source, "-t", "pinned:v1"]).ok_json();
    assert_eq!(digest_of(&e.manifest("target02", "pinned", "v1").unwrap()), d);
}

#[test]
fn multi_arch_images_come_with_every_platform() {
    let e = env("multiarch");
    e.create("target03");
    for (tag, media) in [
        ("oci", "application/vnd.oci.image.index.v1+json"),
        ("docker", "application/vnd.docker.distribution.manifest.list.v2+json"),
    ] {
        let out = e
            .import(&[
                "-n",
                "target03",
                "--source",
                &format!("{}/harness/multiarch:{tag}", e.dist.host()),
                "-t",
                &format!("multi:{tag}"),
            ])
            .ok_json();
        assert_eq!(
            out["progress"]["platforms"],
            json!(["linux/amd64", "linux/arm64", "linux/arm/v7"])
        );
        let want = e.digest(&format!("harness/multiarch:{tag}"));
        let index = e.manifest("target03", "multi", tag).unwrap();
        assert_eq!(digest_of(&index), want);
        let v: Value = serde_json::from_slice(&index).unwrap();
        assert_eq!(v["mediaType"], media);
        assert_complete(&e, "target03", "multi", tag);
    }
    let manifests = cli(
        &e.wharf,
        &["repository", "show-manifests", "-n", "target03", "--repository", "multi", "--detail"],
    )
    .ok_json();
    let manifests = manifests.as_array().unwrap();
    // Two indexes and 2 x 3 platform manifests (OCI and Docker flavours differ).
    assert_eq!(manifests.len(), 8);
    let index = manifests.iter().find(|m| m["tags"] == json!(["oci"])).unwrap();
    let refs = index["references"].as_array().unwrap();
    assert_eq!(refs.len(), 3);
    for r in refs {
        let platform = manifests
            .iter()
            .find(|m| m["digest"] == r["digest"])
            .expect("every platform manifest is listed");
        assert_eq!(platform["architecture"], r["architecture"]);
        assert_eq!(platform["os"], "linux");
    }
    let archs: Vec<&str> = refs.iter().map(|r| r["architecture"].as_str().unwrap()).collect();
    assert_eq!(archs, ["amd64", "arm64", "arm"]);
}

#[test]
fn a_helm_chart_imported_is_a_chart_helm_can_use() {
    let e = env("helm");
    // Into the default registry, which answers on 127.0.0.1 for helm.
    e.import(&[
        "-n",
        "default",
        "--source",
        &format!("{}/harness/charts/harness-chart:0.1.0", e.dist.host()),
    ])
    .ok_json();
    let want = e.digest("harness/charts/harness-chart:0.1.0");
    assert_eq!(
        digest_of(
            &manifest_bytes(&e.wharf.url(), None, "harness/charts/harness-chart", "0.1.0").unwrap()
        ),
        want
    );
    let tools = std::env::var("TOOLS").unwrap_or_else(|_| "/tmp/harness-tools".into());
    let home = tempfile::tempdir().unwrap();
    let helm = || {
        let mut c = std::process::Command::new(format!("{tools}/helm3/helm/helm"));
        c.env("HOME", home.path())
            .env("HELM_CACHE_HOME", home.path().join("c"))
            .env("HELM_CONFIG_HOME", home.path().join("f"))
            .env("HELM_DATA_HOME", home.path().join("d"));
        c
    };
    run(helm().args([
        "registry",
        "login",
        &e.wharf.host(),
        "--username",
        "admin",
        "--password",
        ADMIN_PASSWORD,
        "--plain-http",
    ]));
    let out = run(helm().args([
        "template",
        "rel",
        &format!("oci://{}/harness/charts/harness-chart", e.wharf.host()),
        "--version",
        "0.1.0",
        "--plain-http",
    ]));
    assert!(out.contains("name: rel-cm"), "{out}");
}

#[test]
fn referrers_come_along_unless_the_request_opts_out() {
    let e = env("single,multiarch,referrers");
    e.create("target04");
    e.import(&[
        "-n",
        "target04",
        "--source",
        &format!("{}/harness/multiarch:oci", e.dist.host()),
        "-t",
        "signed:v1",
    ])
    .ok_json();
    let subject = e.digest("harness/multiarch:oci");
    let sig = e.summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "referrer" && i["subject"] == subject)
        .unwrap();
    let reg = e.wharf.reg();
    let refs: Value = reg
        .http
        .get(reg.url(&format!("/v2/signed/referrers/{subject}")))
        .header("host", e.login("target04"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(refs["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(refs["manifests"][0]["digest"], sig["digest"]);
    assert_eq!(refs["manifests"][0]["artifactType"], "application/vnd.example.signature");
    // (distribution 2.8 has no referrers API: these came through the sha256-<hex> tag.)
    assert!(sig["fallback_tag"].is_string());

    e.import(&[
        "-n",
        "target04",
        "--source",
        &format!("{}/harness/single:10m", e.dist.host()),
        "-t",
        "plain:v1",
        "--no-referrers",
    ])
    .ok_json();
    let single = e.digest("harness/single:10m");
    let refs: Value = reg
        .http
        .get(reg.url(&format!("/v2/plain/referrers/{single}")))
        .header("host", e.login("target04"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(refs["manifests"], json!([]));
}

#[test]
fn force_moves_tags_no_force_fails_before_copying() {
    let e = env("single,multiarch");
    e.create("target05");
    let single = format!("{}/harness/single:10m", e.dist.host());
    let multi = format!("{}/harness/multiarch:oci", e.dist.host());
    e.import(&["-n", "target05", "--source", &single, "-t", "app:v1"]).ok_json();
    let files_before = assert_blob_files_match_names(&e.wharf.data);
    let err = e.import(&["-n", "target05", "--source", &multi, "-t", "app:v1"]).err_line();
    assert!(err.contains("Tag app:v1 already exists in target registry."), "{err}");
    assert!(err.contains("TagAlreadyExists"), "{err}");
    assert_eq!(assert_blob_files_match_names(&e.wharf.data), files_before, "nothing was copied");
    assert_eq!(
        digest_of(&e.manifest("target05", "app", "v1").unwrap()),
        e.digest("harness/single:10m")
    );
    // The same image again fails too, as ACR documents NoForce ("any existing target tags
    // will fail the operation"): scripts use it to learn that the tag exists.
    let err = e.import(&["-n", "target05", "--source", &single, "-t", "app:v1"]).err_line();
    assert!(err.contains("Tag app:v1 already exists in target registry."), "{err}");
    // --force moves it.
    e.import(&["-n", "target05", "--source", &multi, "-t", "app:v1", "--force"]).ok_json();
    assert_eq!(
        digest_of(&e.manifest("target05", "app", "v1").unwrap()),
        e.digest("harness/multiarch:oci")
    );
}

#[test]
fn several_tags_and_untagged_repositories_at_once() {
    let e = env("single");
    e.create("target06");
    let out = e.import(&[
        "-n",
        "target06",
        "--source",
        &format!("{}/harness/single:10m", e.dist.host()),
        "-t",
        "a/app:v1",
        "-t",
        "a/app:latest",
        "-t",
        "b/app:v1",
        "--repository",
        "c/app",
    ]);
    out.ok_json();
    let d = e.digest("harness/single:10m");
    for (repo, tag) in
        [("a/app", "v1"), ("a/app", "latest"), ("b/app", "v1"), ("c/app", d.as_str())]
    {
        assert_eq!(digest_of(&e.manifest("target06", repo, tag).unwrap()), d, "{repo}:{tag}");
    }
    let repos = cli(&e.wharf, &["repository", "list", "-n", "target06"]).ok_json();
    assert_eq!(repos, json!(["a/app", "b/app", "c/app"]));
}

#[test]
fn no_wait_returns_at_once_and_the_operation_can_be_polled() {
    let e = env_with("single", &["--import-sync-wait", "0s"]);
    e.create("target07");
    let run = e.import(&[
        "-n",
        "target07",
        "--source",
        &format!("{}/harness/single:10m", e.dist.host()),
        "--no-wait",
    ]);
    let started = run.ok_json();
    assert!(
        run.stderr
            .contains("Import has started. Due to no-wait option, failures will not be reflected."),
        "{}",
        run.stderr
    );
    let op = started["operationId"].as_str().unwrap().to_owned();
    assert!(op.starts_with("registries-"), "{op}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cli(&e.wharf, &["operation", "show", &op]).ok_json();
        if status["status"] == "Succeeded" {
            assert_eq!(status["progress"]["blobsDone"], status["progress"]["blobsTotal"]);
            break;
        }
        assert_eq!(status["status"], "Accepted");
        assert!(Instant::now() < deadline, "the import never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_complete(&e, "target07", "harness/single", "10m");
}

#[test]
fn re_import_of_an_image_already_present_downloads_nothing() {
    let e = env("single");
    e.create("target08");
    let proxy = FaultProxy::start(&e.dist.host(), &[]);
    let source = format!("{}/harness/single:10m", proxy.host());
    e.import(&["-n", "target08", "--source", &source]).ok_json();
    let fetched = proxy.stats()["blob_bytes"].as_u64().unwrap();
    // --no-wait answers the same shape when the server is done within its wait.
    let quick = e
        .import(&["-n", "target08", "--source", &source, "-t", "nowait:v1", "--no-wait"])
        .ok_json();
    assert_eq!(quick["status"], "Succeeded");
    assert!(quick["operationId"].as_str().unwrap().starts_with("registries-"));
    let again = e.import(&["-n", "target08", "--source", &source, "-t", "again:v1"]).ok_json();
    assert_eq!(again["progress"]["blobsReused"], again["progress"]["blobsTotal"]);
    assert_eq!(
        proxy.stats()["blob_bytes"].as_u64().unwrap(),
        fetched,
        "no blob was downloaded again"
    );
    // Another registry, the same source: what this source served is not fetched again.
    let files = assert_blob_files_match_names(&e.wharf.data);
    e.create("target09");
    e.import(&["-n", "target09", "--source", &source]).ok_json();
    assert_eq!(proxy.stats()["blob_bytes"].as_u64().unwrap(), fetched);
    assert_complete(&e, "target09", "harness/single", "10m");
    // Another source naming the same digests must prove it serves the bytes: they are
    // fetched and hashed, but not written again (one copy per digest on disk).
    let other = FaultProxy::start(&e.dist.host(), &[]);
    e.create("target18");
    e.import(&["-n", "target18", "--source", &format!("{}/harness/single:10m", other.host())])
        .ok_json();
    assert!(other.stats()["blob_bytes"].as_u64().unwrap() >= fetched - fetched / 10);
    assert_eq!(assert_blob_files_match_names(&e.wharf.data), files);
    assert_complete(&e, "target18", "harness/single", "10m");
}

#[test]
fn a_source_cannot_claim_blobs_it_does_not_serve() {
    // Another tenant's private layer, in its own registry on this server.
    let w = Wharf::start_with(&["--insecure-source", "127.0.0.1"]);
    cli(&w, &["registry", "create", "-n", "victim1"]).ok_json();
    cli(&w, &["registry", "create", "-n", "attacker1"]).ok_json();
    let secret = bytes(80, 30_000);
    let victim = format!("victim1.localhost:{}", w.port);
    let reg = w.reg();
    for b in [&secret, &b"{}".to_vec()] {
        let r = reg
            .http
            .post(reg.url(&format!("/v2/private/blobs/uploads/?digest={}", digest_of(b))))
            .header("host", &victim)
            .body(b.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // A source that names the secret's digest (and size) in a manifest but can't serve it:
    // the image is pushed, then the layer's bytes are removed from its storage.
    let dist = Distribution::start(None);
    let src = Reg { base: dist.url(), http: client() };
    src.push_blob("bait", b"{}");
    src.push_blob("bait", &secret);
    let m = image_manifest(b"{}", &[&secret]);
    assert_eq!(src.put_manifest("bait", "v1", OCI_MANIFEST, &m).status(), 201);
    let hex = digest_of(&secret).trim_start_matches("sha256:").to_owned();
    std::fs::remove_dir_all(dist.storage().join(format!("blobs/sha256/{}/{hex}", &hex[..2])))
        .unwrap();

    let err =
        cli(&w, &["import", "-n", "attacker1", "--source", &format!("{}/bait:v1", dist.host())])
            .err_line();
    assert!(err.contains("Source"), "{err}");
    assert!(!err.contains("30000"), "the stored size is not revealed: {err}");
    let attacker = format!("attacker1.localhost:{}", w.port);
    let r = reg
        .http
        .get(reg.url(&format!("/v2/bait/blobs/{}", digest_of(&secret))))
        .header("host", &attacker)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "the secret was not linked into the attacker's registry");
    assert!(manifest_bytes(&w.url(), Some(&attacker), "bait", "v1").is_none());
}

#[test]
fn private_registries_with_basic_auth() {
    let dist = Distribution::start(Some(("alice", "s3cret-pass")));
    let work = tempfile::tempdir().unwrap();
    make_images(
        &dist.host(),
        work.path(),
        &["--only", "single", "--user", "alice", "--password", "s3cret-pass"],
    );
    let w = Wharf::start_with(&["--insecure-source", "127.0.0.1"]);
    cli(&w, &["registry", "create", "-n", "private1"]).ok_json();
    let source = format!("{}/harness/single:10m", dist.host());

    let err = cli(&w, &["import", "-n", "private1", "--source", &source]).err_line();
    assert!(err.contains("SourceUnauthorized"), "{err}");
    let err =
        cli(&w, &["import", "-n", "private1", "--source", &source, "-u", "alice", "-p", "wrong"])
            .err_line();
    assert!(err.contains("SourceUnauthorized") && err.contains("401"), "{err}");
    assert!(!err.contains("wrong"), "the password never appears: {err}");
    let err = cli(&w, &["import", "-n", "private1", "--source", &source, "-u", "alice"]).err_line();
    assert_eq!(err, "wharf: error: Authentication failed. Please provide password.");

    cli(&w, &["import", "-n", "private1", "--source", &source, "-u", "alice", "-p", "s3cret-pass"])
        .ok_json();
    assert!(
        manifest_bytes(
            &w.url(),
            Some(&format!("private1.localhost:{}", w.port)),
            "harness/single",
            "10m"
        )
        .is_some()
    );
    // Credentials never reach the log, the job record or the database.
    for file in [w.data.with_extension("log"), w.data.join("wharf.db"), w.data.join("wharf.db-wal")]
    {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains("s3cret-pass"),
                "{} holds the password",
                file.display()
            );
        }
    }
}

#[test]
fn docker_hub_names_go_through_the_configured_mirror() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), work.path(), &["--only", "single"]);
    // A `library/` image, as Docker Hub's official images are.
    run(std::process::Command::new("skopeo").args([
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/harness/single:10m", dist.host()),
        &format!("docker://{}/library/hello-world:latest", dist.host()),
    ]));
    let mirror = format!("docker.io={}", dist.url());
    let w = Wharf::start_with(&["--registry-mirror", &mirror, "--insecure-source", &dist.host()]);
    cli(&w, &["registry", "create", "-n", "mirrored"]).ok_json();
    let login = format!("mirrored.localhost:{}", w.port);
    for (source, repo, tag) in [
        ("docker.io/library/hello-world:latest", "library/hello-world", "latest"),
        ("registry.hub.docker.com/harness/single:10m", "harness/single", "10m"),
        ("index.docker.io/hello-world", "hello-world", "latest"),
    ] {
        cli(&w, &["import", "-n", "mirrored", "--source", source, "--force"]).ok_json();
        assert!(manifest_bytes(&w.url(), Some(&login), repo, tag).is_some(), "{source}");
    }
}

#[test]
fn same_server_sources_by_login_server_resource_id_and_name() {
    let w = Wharf::start();
    let other_sub = "22222222-0000-0000-0000-000000000000";
    arm(
        &w,
        Method::PUT,
        &format!("/subscriptions/{other_sub}/resourcegroups/srcrg"),
        Some(json!({"location": "local"})),
    );
    let src_id = format!(
        "/subscriptions/{other_sub}/resourceGroups/srcrg/providers/Microsoft.ContainerRegistry/registries/sourcereg"
    );
    assert_eq!(
        arm(
            &w,
            Method::PUT,
            &src_id,
            Some(json!({"location": "local", "sku": {"name": "Standard"}}))
        )
        .0,
        201
    );
    cli(&w, &["registry", "create", "-n", "targetreg"]).ok_json();
    // Push an image into the source registry.
    let src_login = format!("sourcereg.localhost:{}", w.port);
    let reg = w.reg();
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    let layer = bytes(50, 200_000);
    for b in [&config, &layer] {
        let r = reg
            .http
            .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={}", digest_of(b))))
            .header("host", &src_login)
            .body(b.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let m = image_manifest(&config, &[&layer]);
    let r = reg
        .http
        .put(reg.url("/v2/app/manifests/v1"))
        .header("host", &src_login)
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let d = digest_of(&m);
    let target = |repo: &str, tag: &str| {
        manifest_bytes(&w.url(), Some(&format!("targetreg.localhost:{}", w.port)), repo, tag)
            .map(|b| digest_of(&b))
    };

    // By login server in --source.
    cli(
        &w,
        &[
            "import",
            "-n",
            "targetreg",
            "--source",
            &format!("{src_login}/app:v1"),
            "-t",
            "by-login:v1",
        ],
    )
    .ok_json();
    // By --registry <resourceId> (another subscription), --source as repo:tag only.
    cli(
        &w,
        &[
            "import",
            "-n",
            "targetreg",
            "--registry",
            &src_id,
            "--source",
            "app:v1",
            "-t",
            "by-id:v1",
        ],
    )
    .ok_json();
    // By --registry <name>, with the login server repeated in --source (stripped, warned).
    let run = cli(
        &w,
        &[
            "import",
            "-n",
            "targetreg",
            "-r",
            "sourcereg",
            "--source",
            &format!("{src_login}/app:v1"),
            "-t",
            "by-name:v1",
        ],
    );
    run.ok_json();
    assert!(run.stderr.contains("will be ignored"), "{}", run.stderr);
    // Within the same registry: a server-side re-tag.
    cli(
        &w,
        &[
            "import",
            "-n",
            "targetreg",
            "--source",
            &format!("targetreg.localhost:{}/by-id:v1", w.port),
            "-t",
            "retagged:v2",
        ],
    )
    .ok_json();
    for (repo, tag) in [("by-login", "v1"), ("by-id", "v1"), ("by-name", "v1"), ("retagged", "v2")]
    {
        assert_eq!(target(repo, tag).as_deref(), Some(d.as_str()), "{repo}:{tag}");
    }
    // Nothing went over HTTP: one copy of the layer on disk.
    assert_eq!(assert_blob_files_match_names(&w.data), 2);

    // An import into the registry of another subscription, polled by id alone.
    let op = cli(
        &w,
        &[
            "import",
            "-n",
            "sourcereg",
            "--source",
            &format!("targetreg.localhost:{}/by-id:v1", w.port),
            "-t",
            "back:v1",
            "--no-wait",
        ],
    )
    .ok_json();
    let status = cli(&w, &["operation", "show", op["operationId"].as_str().unwrap()]).ok_json();
    assert_eq!(status["status"], "Succeeded");
    let err =
        cli(&w, &["import", "-n", "targetreg", "-r", "nosuchreg", "--source", "app:v1"]).err_line();
    assert!(
        err.contains("The source container registry can not be found in the current subscription."),
        "{err}"
    );
    let err = cli(&w, &["import", "-n", "targetreg", "--source", "app:v1"]).err_line();
    assert!(err.contains("Source cannot be found. Please provide a valid image and source registry or a fully qualified source."), "{err}");
}

#[test]
fn the_arm_import_api_answers_like_acr() {
    let e = env_with("single,multiarch", &["--import-sync-wait", "0s"]);
    // Served slowly, so that polls see the import running.
    let slow = FaultProxy::start(&e.dist.host(), &["--rate", "4000000"]);
    let (s, _) = arm(
        &e.wharf,
        Method::PUT,
        &registry_id("armtarget"),
        Some(json!({"location": "westus", "sku": {"name": "Premium"}})),
    );
    assert_eq!(s, 201);
    let url =
        format!("{}{}/importImage?api-version=2019-05-01", e.wharf.url(), registry_id("armtarget"));
    let body = json!({"source": {"registryUri": slow.host(), "sourceImage": "harness/single:10m"}, "targetTags": ["app:v1"], "mode": "NoForce"});
    let r = e.wharf.arm_client().post(&url).json(&body).send().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(r.headers(), "retry-after"), "1");
    let location = header(r.headers(), "location").to_owned();
    assert!(
        location.contains(
            "/providers/Microsoft.ContainerRegistry/locations/WESTUS/operationResults/registries-"
        ),
        "{location}"
    );
    assert!(location.ends_with("?api-version=2019-05-01"));
    assert_eq!(r.text().unwrap(), "null");
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = format!("harness/single@{}", e.digest("harness/single:10m"));
    let mut saw_pending = false;
    let final_status = loop {
        let r = e.wharf.arm_client().get(&location).send().unwrap();
        let code = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let v: Value = r.json().unwrap();
        if code == 200 {
            break v;
        }
        // Running: 202, ACR's status map with each manifest Pending, and Retry-After.
        assert_eq!(code, 202);
        assert_eq!(v["status"], "Accepted");
        assert_eq!(retry_after.as_deref(), Some("1"));
        saw_pending |= v[&key] == "Pending";
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(saw_pending, "polls showed the manifest Pending while the import ran");
    assert_eq!(final_status["status"], "Succeeded");
    assert_eq!(final_status[&key], "Succeeded", "{final_status}");

    let poll_to_end = |r: reqwest::blocking::Response| {
        let location = header(r.headers(), "location").to_owned();
        loop {
            let r = e.wharf.arm_client().get(&location).send().unwrap();
            if r.status() != 202 {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The same image again under NoForce: the tag exists, so it fails.
    let r = e.wharf.arm_client().post(&url).json(&json!({"source": {"registryUri": e.dist.host(), "sourceImage": "harness/single:10m"}, "targetTags": ["app:v1"]})).send().unwrap();
    assert_eq!(poll_to_end(r).status(), 409);
    // Another image onto the tag under NoForce: ARM's error, when polled.
    let r = e.wharf.arm_client().post(&url).json(&json!({"source": {"registryUri": e.dist.host(), "sourceImage": "harness/multiarch:oci"}, "targetTags": ["app:v1"]})).send().unwrap();
    let polled = poll_to_end(r);
    assert_eq!(polled.status(), 409);
    let v: Value = polled.json().unwrap();
    assert_eq!(v["error"]["code"], "TagAlreadyExists");
    assert_eq!(v["error"]["message"], "Tag app:v1 already exists in target registry.");
    // An operation is found only under its registry's subscription.
    let elsewhere = location.replace(
        "/subscriptions/00000000-0000-0000-0000-000000000000/",
        "/subscriptions/99999999-0000-0000-0000-000000000000/",
    );
    let r = e.wharf.arm_client().get(&elsewhere).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "OperationNotFound");

    // Bad bodies fail at once with the ARM envelope.
    for (body, code) in [
        (json!({"source": {"sourceImage": "x"}}), "InvalidParameters"),
        (
            json!({"source": {"registryUri": e.dist.host(), "sourceImage": "x"}, "mode": "Maybe"}),
            "InvalidParameters",
        ),
        (
            json!({"source": {"resourceId": registry_id("nosuchregistry"), "sourceImage": "x"}}),
            "SourceRegistryNotFound",
        ),
        (
            json!({"source": {"registryUri": "10.1.2.3", "sourceImage": "x"}}),
            "SourceAddressNotAllowed",
        ),
    ] {
        let r = e.wharf.arm_client().post(&url).json(&body).send().unwrap();
        assert!(r.status().is_client_error(), "{body}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    let r = e
        .wharf
        .arm_client()
        .post(format!("{}{}/importImage", e.wharf.url(), registry_id("armtarget")))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "MissingApiVersionParameter");
    let r = e
        .wharf
        .arm_client()
        .post(format!("{}{}/importImage?{API}", e.wharf.url(), registry_id("nosuchtarget")))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn unknown_tags_and_repositories_are_named_in_the_error() {
    let e = env("single");
    e.create("target10");
    let err = e
        .import(&["-n", "target10", "--source", &format!("{}/harness/single:nope", e.dist.host())])
        .err_line();
    assert!(err.contains("SourceImageNotFound") && err.contains("harness/single:nope"), "{err}");
    let err = e
        .import(&["-n", "target10", "--source", &format!("{}/no/such/repo:v1", e.dist.host())])
        .err_line();
    assert!(err.contains("SourceImageNotFound"), "{err}");
    assert_eq!(cli(&e.wharf, &["repository", "list", "-n", "target10"]).ok_json(), json!([]));
}

#[test]
fn private_and_loopback_addresses_are_refused_unless_allowed() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), work.path(), &["--only", "single"]);
    let w = Wharf::start(); // no --insecure-source
    cli(&w, &["registry", "create", "-n", "strict1"]).ok_json();
    for source in [
        format!("{}/harness/single:10m", dist.host()),
        format!("localhost:{}/harness/single:10m", dist.port),
        "169.254.169.254/latest/meta-data:x".to_owned(),
        "10.0.0.1:5000/x:y".to_owned(),
        "[::1]:5000/x:y".to_owned(),
    ] {
        let err = cli(&w, &["import", "-n", "strict1", "--source", &source]).err_line();
        assert!(err.contains("SourceAddressNotAllowed"), "{source}: {err}");
    }
    // Allowing the host allows it (plain HTTP too), by name and port as well.
    let by_name = Wharf::start_with(&["--insecure-source", &format!("localhost:{}", dist.port)]);
    cli(
        &by_name,
        &[
            "import",
            "-n",
            "default",
            "--source",
            &format!("localhost:{}/harness/single:10m", dist.port),
        ],
    )
    .ok_json();
    let w = Wharf::start_with(&["--insecure-source", &dist.host()]);
    cli(&w, &["registry", "create", "-n", "strict2"]).ok_json();
    cli(
        &w,
        &["import", "-n", "strict2", "--source", &format!("{}/harness/single:10m", dist.host())],
    )
    .ok_json();
}

#[test]
fn a_source_killed_mid_import_changes_nothing_and_a_retry_succeeds() {
    let e = env_with("single", &["--import-sync-wait", "0s"]);
    e.create("target11");
    // An older image under the target tag, which must survive the failed import.
    let old = format!("{}/harness/single:10m", e.dist.host());
    e.import(&["-n", "target11", "--source", &old, "-t", "app:v1"]).ok_json();
    let old_digest = e.digest("harness/single:10m");
    // A bigger image, served slowly, so that the kill lands mid-transfer.
    let work = tempfile::tempdir().unwrap();
    let big = make_images(
        &e.dist.host(),
        work.path(),
        &["--only", "single", "--sizes", "40M", "--gzip-level", "0"],
    );
    let big_digest = big["items"][0]["digest"].as_str().unwrap().to_owned();
    let proxy = FaultProxy::start(&e.dist.host(), &["--rate", "8000000"]);
    let source = format!("{}/harness/single:40m", proxy.host());
    let started = e
        .import(&["-n", "target11", "--source", &source, "-t", "app:v1", "--force", "--no-wait"])
        .ok_json();
    let op = started["operationId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Some layers are in (the config, the smallest layer), the big ones still coming.
    while cli(&e.wharf, &["operation", "show", &op]).ok_json()["progress"]["blobsDone"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The source goes away: the registry and the proxy in front of it.
    e.dist.stop_keep();
    let proxy_port = proxy.port;
    drop(proxy);
    let failed = loop {
        let r = cli(&e.wharf, &["operation", "show", &op]);
        if !r.ok {
            break r.err_line();
        }
        assert!(Instant::now() < deadline + Duration::from_secs(30), "the import never ended");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(failed.contains("SourceUnreachable"), "{failed}");
    // No tag moved; nothing half-copied is visible.
    assert_eq!(digest_of(&e.manifest("target11", "app", "v1").unwrap()), old_digest);
    assert!(e.manifest("target11", "app", &big_digest).is_none());
    assert_blob_files_match_names(&e.wharf.data);

    // The same source again: what it served before the kill is not fetched again.
    e.dist.restart_keep();
    let _proxy = FaultProxy::start_on(proxy_port, &e.dist.host(), &[]);
    let again =
        e.import(&["-n", "target11", "--source", &source, "-t", "app:v1", "--force"]).ok_json();
    assert!(
        again["progress"]["blobsReused"].as_u64().unwrap() >= 1,
        "layers fetched before the kill are kept: {again}"
    );
    assert_eq!(digest_of(&e.manifest("target11", "app", "v1").unwrap()), big_digest);
    assert_complete(&e, "target11", "app", "v1");
}

#[test]
fn a_source_that_lies_about_a_digest_stores_nothing() {
    let e = env("single");
    e.create("target12");
    let m: Value = serde_json::from_slice(
        &manifest_bytes(&e.dist.url(), None, "harness/single", "10m").unwrap(),
    )
    .unwrap();
    let layer = m["layers"][1]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let data = e.dist.storage().join(format!("blobs/sha256/{}/{layer}/data", &layer[..2]));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let err = e
        .import(&["-n", "target12", "--source", &format!("{}/harness/single:10m", e.dist.host())])
        .err_line();
    assert!(err.contains("SourceDigestMismatch") && err.contains(&layer), "{err}");
    assert!(e.manifest("target12", "harness/single", "10m").is_none());
    let hex = &layer;
    assert!(
        !e.wharf.data.join(format!("blobs/sha256/{}/{hex}", &hex[..2])).exists(),
        "the lying bytes were not stored"
    );
    assert_blob_files_match_names(&e.wharf.data);
}

#[test]
fn a_rate_limited_source_is_waited_for() {
    let e = env("single");
    e.create("target13");
    let proxy = FaultProxy::start(&e.dist.host(), &["--first-429", "3", "--retry-after", "1"]);
    let t0 = Instant::now();
    e.import(&["-n", "target13", "--source", &format!("{}/harness/single:10m", proxy.host())])
        .ok_json();
    assert_eq!(proxy.stats()["served_429"], 3);
    assert!(t0.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert_complete(&e, "target13", "harness/single", "10m");
    assert!(e.wharf.log().contains("source rate limit"), "the pause is logged");
}

#[test]
fn broken_downloads_resume_with_range() {
    let e = env("single");
    e.create("target14");
    let proxy = FaultProxy::start(&e.dist.host(), &["--break-after", "100000"]);
    e.import(&["-n", "target14", "--source", &format!("{}/harness/single:10m", proxy.host())])
        .ok_json();
    let stats = proxy.stats();
    assert!(stats["broken"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats["range_requests"].as_u64().unwrap() >= 5, "resumed with Range: {stats}");
    assert_complete(&e, "target14", "harness/single", "10m");
}

#[test]
fn two_imports_of_the_same_source_share_one_download() {
    let e = env_with("single", &["--import-sync-wait", "0s"]);
    e.create("target15");
    e.create("target16");
    let proxy = FaultProxy::start(&e.dist.host(), &["--rate", "4000000"]);
    let source = format!("{}/harness/single:10m", proxy.host());
    let a = e.import(&["-n", "target15", "--source", &source, "--no-wait"]).ok_json();
    let b = e.import(&["-n", "target16", "--source", &source, "--no-wait"]).ok_json();
    // Both run at the same time (the download takes seconds at this rate).
    for op in [&a["operationId"], &b["operationId"]] {
        let s = cli(&e.wharf, &["operation", "show", op.as_str().unwrap()]).ok_json();
        assert_eq!(s["status"], "Accepted", "{s}");
    }
    for op in [&a["operationId"], &b["operationId"]] {
        let op = op.as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while cli(&e.wharf, &["operation", "show", op]).ok_json()["status"] != "Succeeded" {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let fetched = proxy.stats()["blob_bytes"].as_u64().unwrap();
    let size = e.summary["items"][0]["total_bytes"].as_u64().unwrap();
    assert!(fetched < size + size / 10, "fetched {fetched} bytes for a {size}-byte image");
    assert_complete(&e, "target15", "harness/single", "10m");
    assert_complete(&e, "target16", "harness/single", "10m");
}

#[test]
fn imports_survive_a_server_restart() {
    let e = env_with("single", &["--import-sync-wait", "0s"]);
    let mut w = e.wharf;
    cli(&w, &["registry", "create", "-n", "target17"]).ok_json();
    let work = tempfile::tempdir().unwrap();
    let big = make_images(
        &e.dist.host(),
        work.path(),
        &["--only", "single", "--sizes", "30M", "--gzip-level", "0"],
    );
    let proxy = FaultProxy::start(&e.dist.host(), &["--rate", "10000000"]);
    let started = cli(
        &w,
        &[
            "import",
            "-n",
            "target17",
            "--source",
            &format!("{}/harness/single:30m", proxy.host()),
            "--no-wait",
        ],
    )
    .ok_json();
    let op = started["operationId"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(500));
    w.restart(); // kill -9, start again
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = cli(&w, &["operation", "show", &op]).ok_json();
        if s["status"] == "Succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the import hangs after the restart: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let want = big["items"][0]["digest"].as_str().unwrap();
    let got = manifest_bytes(
        &w.url(),
        Some(&format!("target17.localhost:{}", w.port)),
        "harness/single",
        "30m",
    )
    .unwrap();
    assert_eq!(digest_of(&got), want);
    assert_blob_files_match_names(&w.data);
}

#[test]
fn an_index_with_hundreds_of_manifests() {
    let dist = Distribution::start(None);
    let reg = Reg { base: dist.url(), http: client() };
    let shared = bytes(60, 10_000);
    reg.push_blob("big/index", &shared);
    let mut entries = Vec::new();
    for i in 0..300 {
        let config =
            format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":{i}}}").into_bytes();
        reg.push_blob("big/index", &config);
        let m = image_manifest(&config, &[&shared]);
        let d = digest_of(&m);
        assert_eq!(reg.put_manifest("big/index", &d, OCI_MANIFEST, &m).status(), 201);
        entries.push(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux", "os.version": format!("10.0.{i}")}}));
    }
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    assert_eq!(reg.put_manifest("big/index", "v1", OCI_INDEX, &index).status(), 201);
    let w = Wharf::start_with(&["--insecure-source", "127.0.0.1"]);
    let out =
        cli(&w, &["import", "-n", "default", "--source", &format!("{}/big/index:v1", dist.host())])
            .ok_json();
    assert_eq!(out["progress"]["manifestsTotal"], 301);
    assert_eq!(out["progress"]["blobsTotal"], 301);
    assert_eq!(
        digest_of(&manifest_bytes(&w.url(), None, "big/index", "v1").unwrap()),
        digest_of(&index)
    );
    let listed =
        cli(&w, &["repository", "show-manifests", "-n", "default", "--repository", "big/index"])
            .ok_json();
    assert_eq!(listed.as_array().unwrap().len(), 301);
}

#[test]
fn windows_images_keep_foreign_layers_byte_for_byte() {
    // A second wharf is the source: distribution 2.8 refuses foreign layers by default.
    let source = Wharf::start();
    let src = source.reg();
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1234", "rootfs": {"type": "layers", "diff_ids": []}})).unwrap();
    let own = bytes(70, 50_000);
    let served_foreign = bytes(71, 20_000);
    src.push_blob("win/app", &config);
    src.push_blob("win/app", &own);
    src.push_blob("win/app", &served_foreign);
    let foreign = |d: &str, size: usize| {
        json!({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": size, "digest": d,
               "urls": [format!("https://mcr.microsoft.com/v2/windows/servercore/blobs/{d}")]})
    };
    let absent = digest_of(b"never pushed anywhere");
    let manifest = |foreign_layer: Value| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": digest_of(&config)},
            "layers": [foreign_layer, {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": own.len(), "digest": digest_of(&own)}]}))
        .unwrap()
    };
    let not_served = manifest(foreign(&absent, 12345));
    let served = manifest(foreign(&digest_of(&served_foreign), served_foreign.len()));
    assert_eq!(src.put_manifest("win/app", "ltsc2019", DOCKER_MANIFEST, &not_served).status(), 201);
    assert_eq!(src.put_manifest("win/app", "served", DOCKER_MANIFEST, &served).status(), 201);

    let w = Wharf::start_with(&["--insecure-source", &source.host()]);
    cli(
        &w,
        &[
            "import",
            "-n",
            "default",
            "--source",
            &format!("{}/win/app:ltsc2019", source.host()),
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
        ],
    )
    .ok_json();
    cli(
        &w,
        &[
            "import",
            "-n",
            "default",
            "--source",
            &format!("{}/win/app:served", source.host()),
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
        ],
    )
    .ok_json();
    assert_eq!(manifest_bytes(&w.url(), None, "win/app", "ltsc2019").unwrap(), not_served);
    assert_eq!(manifest_bytes(&w.url(), None, "win/app", "served").unwrap(), served);
    let reg = w.reg();
    assert_eq!(reg.head(&format!("/v2/win/app/blobs/{absent}")).status(), 404, "left to its URLs");
    assert_eq!(
        reg.get(&format!("/v2/win/app/blobs/{}", digest_of(&served_foreign)))
            .bytes()
            .unwrap()
            .as_ref(),
        served_foreign.as_slice(),
        "copied: the source served it"
    );
    let listed = cli(
        &w,
        &["repository", "show-manifests", "-n", "default", "--repository", "win/app", "--detail"],
    )
    .ok_json();
    assert!(listed.as_array().unwrap().iter().all(|m| m["os"] == "windows"), "{listed}");
}

#[test]
fn an_import_with_credentials_cut_by_a_restart_fails_cleanly() {
    let dist = Distribution::start(Some(("bob", "pw-1234")));
    let work = tempfile::tempdir().unwrap();
    let args = [
        "--only",
        "single",
        "--sizes",
        "30M",
        "--gzip-level",
        "0",
        "--user",
        "bob",
        "--password",
        "pw-1234",
    ];
    make_images(&dist.host(), work.path(), &args);
    let proxy = FaultProxy::start(&dist.host(), &["--rate", "5000000"]);
    let mut w = Wharf::start_with(&["--insecure-source", "127.0.0.1", "--import-sync-wait", "0s"]);
    let source = format!("{}/harness/single:30m", proxy.host());
    let started = cli(
        &w,
        &[
            "import",
            "-n",
            "default",
            "--source",
            &source,
            "-u",
            "bob",
            "-p",
            "pw-1234",
            "--no-wait",
        ],
    )
    .ok_json();
    let op = started["operationId"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(300));
    w.restart();
    // Credentials are never stored, so the job can't resume: it fails, it doesn't hang.
    let err = cli(&w, &["operation", "show", &op]).err_line();
    assert!(err.contains("ImportInterrupted"), "{err}");
    assert!(manifest_bytes(&w.url(), None, "harness/single", "30m").is_none());
    assert!(
        !String::from_utf8_lossy(&std::fs::read(w.data.join("wharf.db")).unwrap())
            .contains("pw-1234")
    );
}

#[test]
fn the_docker_token_flow_get_post_and_password_only() {
    let e = env("single");
    e.create("tokens1");
    let image = "harness/single:10m";
    // GET on the token service with Basic credentials.
    let get = FaultProxy::start(&e.dist.host(), &["--token-auth", "alice:tok-pass-1"]);
    let source = format!("{}/{image}", get.host());
    let err = e.import(&["-n", "tokens1", "--source", &source]).err_line();
    assert!(err.contains("SourceUnauthorized"), "{err}");
    let err =
        e.import(&["-n", "tokens1", "--source", &source, "-u", "alice", "-p", "nope"]).err_line();
    assert!(err.contains("SourceUnauthorized") && err.contains("token service"), "{err}");
    e.import(&[
        "-n",
        "tokens1",
        "--source",
        &source,
        "-u",
        "alice",
        "-p",
        "tok-pass-1",
        "-t",
        "get:v1",
    ])
    .ok_json();
    assert!(get.stats()["tokens_get"].as_u64().unwrap() >= 1);

    // A token service that only takes the OAuth2 POST: the password grant, and a password
    // alone (a refresh token, as ACR takes an Entra token).
    let post = FaultProxy::start(
        &e.dist.host(),
        &["--token-auth", "alice:tok-pass-1", "--token-post-only"],
    );
    let source = format!("{}/{image}", post.host());
    e.import(&[
        "-n",
        "tokens1",
        "--source",
        &source,
        "-u",
        "alice",
        "-p",
        "tok-pass-1",
        "-t",
        "post:v1",
    ])
    .ok_json();
    e.import(&["-n", "tokens1", "--source", &source, "-p", "tok-pass-1", "-t", "refresh:v1"])
        .ok_json();
    assert!(post.stats()["tokens_post"].as_u64().unwrap() >= 2);

    // Anonymous tokens, as Docker Hub hands out.
    let anonymous = FaultProxy::start(&e.dist.host(), &["--token-anonymous"]);
    e.import(&[
        "-n",
        "tokens1",
        "--source",
        &format!("{}/{image}", anonymous.host()),
        "-t",
        "anon:v1",
    ])
    .ok_json();
    assert!(anonymous.stats()["tokens_get"].as_u64().unwrap() >= 1);
    for tag in ["get", "post", "refresh", "anon"] {
        assert_eq!(digest_of(&e.manifest("tokens1", tag, "v1").unwrap()), e.digest(image));
    }
}

#[test]
fn server_errors_from_the_source_are_retried() {
    let e = env("single");
    e.create("retries1");
    let proxy = FaultProxy::start(&e.dist.host(), &["--first-503", "3"]);
    e.import(&["-n", "retries1", "--source", &format!("{}/harness/single:10m", proxy.host())])
        .ok_json();
    assert_eq!(proxy.stats()["served_503"], 3);
    assert_complete(&e, "retries1", "harness/single", "10m");
}
