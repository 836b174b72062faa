//! Real clients against wharf, with the CNCF distribution registry as the other side:
//! skopeo, podman, helm 3 and 4, oras-py.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// skopeo's `user:password` for the test wharf's admin.
fn admin_creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

fn skopeo_raw_digest(reference: &str, creds: Option<&str>) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--creds", c]);
    }
    let raw = cmd
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo (run scripts/test.sh to install it)");
    assert!(
        raw.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&raw.stderr)
    );
    digest_of(&raw.stdout)
}

fn skopeo_copy(all: bool, from: (&str, Option<&str>), to: (&str, Option<&str>)) {
    let mut cmd = Command::new("skopeo");
    cmd.arg("copy");
    if all {
        cmd.arg("--all");
    }
    if let Some(c) = from.1 {
        cmd.args(["--src-creds", c]);
    }
    if let Some(c) = to.1 {
        cmd.args(["--dest-creds", c]);
    }
    let (from, to) = (from.0, to.0);
    cmd.args(["--src-tls-verify=false", "--dest-tls-verify=false", "-q"]);
    cmd.arg(format!("docker://{from}")).arg(format!("docker://{to}"));
    run(&mut cmd);
}

fn item<'a>(summary: &'a Value, reference: &str) -> &'a Value {
    summary["items"].as_array().unwrap().iter().find(|i| i["ref"] == reference).unwrap()
}

#[test]
fn skopeo_copies_multi_platform_images_both_ways_keeping_digests() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    let summary = make_images(&dist.host(), work.path(), &["--only", "single,multiarch"]);
    let w = Wharf::start();

    for (reference, all) in [
        ("harness/multiarch:oci", true),
        ("harness/multiarch:docker", true),
        ("harness/single:10m", false),
    ] {
        let want = item(&summary, reference)["digest"].as_str().unwrap().to_owned();
        let creds = admin_creds();
        let wharf = Some(creds.as_str());
        assert_eq!(skopeo_raw_digest(&format!("{}/{reference}", dist.host()), None), want);
        // distribution -> wharf
        let into_wharf =
            format!("{}/copied/{}", w.host(), reference.trim_start_matches("harness/"));
        skopeo_copy(all, (&format!("{}/{reference}", dist.host()), None), (&into_wharf, wharf));
        assert_eq!(skopeo_raw_digest(&into_wharf, wharf), want, "{reference} in wharf");
        // wharf -> wharf, another repository
        let within = format!("{}/again/{}", w.host(), reference.trim_start_matches("harness/"));
        skopeo_copy(all, (&into_wharf, wharf), (&within, wharf));
        assert_eq!(skopeo_raw_digest(&within, wharf), want);
        // wharf -> a fresh distribution
        let back = format!("{}/back/{}", dist.host(), reference.trim_start_matches("harness/"));
        skopeo_copy(all, (&into_wharf, wharf), (&back, None));
        assert_eq!(skopeo_raw_digest(&back, None), want, "{reference} back in distribution");
    }

    // Every platform manifest of the index came along, byte for byte.
    let reg = w.reg();
    let index: Value = reg
        .http
        .get(reg.url("/v2/copied/multiarch/manifests/oci"))
        .header("accept", OCI_INDEX)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let platforms = index["manifests"].as_array().unwrap();
    assert_eq!(platforms.len(), 3);
    for p in platforms {
        let d = p["digest"].as_str().unwrap();
        let r = reg
            .http
            .get(reg.url(&format!("/v2/copied/multiarch/manifests/{d}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(digest_of(&r.bytes().unwrap()), d);
    }
    assert!(assert_blob_files_match_names(&w.data) > 10);
}

pub(crate) fn podman(storage: &Path) -> Command {
    let conf = storage.join("storage.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/root\"\n",
                storage.display()
            ),
        )
        .unwrap();
    }
    std::fs::create_dir_all(storage.join("xdg")).unwrap();
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_STORAGE_CONF", conf).env("XDG_RUNTIME_DIR", storage.join("xdg")).args([
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]);
    cmd
}

#[test]
fn podman_pushes_and_pulls() {
    let w = Wharf::start();
    let work = tempfile::tempdir().unwrap();
    make_images(&w.host(), work.path(), &["--only", "single"]);
    let storage = tempfile::tempdir().unwrap();
    let src = format!("{}/harness/single:10m", w.host());
    let creds = admin_creds();
    run(podman(storage.path()).args(["pull", "--tls-verify=false", "--creds", &creds, &src]));
    let dst = format!("{}/podman/pushed:v1", w.host());
    run(podman(storage.path()).args(["push", "--tls-verify=false", "--creds", &creds, &src, &dst]));
    // What podman pushed is a complete image: pull it back into fresh storage.
    let fresh = tempfile::tempdir().unwrap();
    run(podman(fresh.path()).args(["pull", "--tls-verify=false", "--creds", &creds, &dst]));
    // Without credentials, podman is refused.
    let anonymous = podman(fresh.path())
        .args(["pull", "--tls-verify=false", &format!("{}/podman/pushed:v1", w.host())])
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    let images = run(podman(fresh.path()).args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(images.contains("podman/pushed:v1"), "{images}");
}

pub(crate) fn get_clients() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let tools = std::env::var("TOOLS").unwrap_or_else(|_| "/tmp/harness-tools".into());
        let venv = std::env::var("VENV").unwrap_or_else(|_| "/tmp/harness-venv".into());
        let have = Path::new(&tools).join("helm3/helm/helm").exists()
            && Path::new(&tools).join("helm4/helm/helm").exists()
            && Path::new(&venv).join("bin/python").exists();
        if !have {
            run(&mut Command::new(tools_dir().join("get-clients.sh")));
        }
    });
}

#[test]
fn helm_3_and_4_and_oras_smoke() {
    get_clients();
    let w = Wharf::start();
    // Each helm logs in first (`helm registry login`); oras-py logs in too.
    let out = run(Command::new(tools_dir().join("clients-smoke.sh"))
        .arg(w.host())
        .arg("admin")
        .arg(ADMIN_PASSWORD));
    assert!(out.trim_end().ends_with("11 passed, 0 failed"), "{out}");
}

#[test]
fn helm_pulls_a_chart_pushed_by_distribution_harness() {
    get_clients();
    let w = Wharf::start();
    let work = tempfile::tempdir().unwrap();
    let summary = make_images(&w.host(), work.path(), &["--only", "helm"]);
    let helm =
        std::env::var("TOOLS").unwrap_or_else(|_| "/tmp/harness-tools".into()) + "/helm3/helm/helm";
    let home = tempfile::tempdir().unwrap();
    let helm_cmd = || {
        let mut c = Command::new(&helm);
        c.env("HOME", home.path())
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data"));
        c
    };
    run(helm_cmd().args([
        "registry",
        "login",
        &w.host(),
        "--username",
        "admin",
        "--password",
        ADMIN_PASSWORD,
        "--plain-http",
    ]));
    let out = run(helm_cmd().args([
        "template",
        "r",
        &format!("oci://{}/harness/charts/harness-chart", w.host()),
        "--version",
        "0.1.0",
        "--plain-http",
    ]));
    assert!(out.contains("name: r-cm"), "{out}");
    assert_eq!(
        item(&summary, "harness/charts/harness-chart:0.1.0")["digest"],
        skopeo_raw_digest(
            &format!("{}/harness/charts/harness-chart:0.1.0", w.host()),
            Some(&admin_creds())
        )
    );
}

#[test]
fn oras_pushes_an_artifact_attaches_a_referrer_and_discovers_it() {
    get_clients();
    let w = Wharf::start();
    let venv = std::env::var("VENV").unwrap_or_else(|_| "/tmp/harness-venv".into());
    let work = tempfile::tempdir().unwrap();
    let script = r#"
import json, sys, oras.client, oras.oci, oras.provider
reg, user, password = sys.argv[1:4]
c = oras.client.OrasClient(hostname=reg, insecure=True, auth_backend="basic")
c.login(username=user, password=password, hostname=reg)
open("artifact.txt", "w").write("the artifact\n")
open("sbom.json", "w").write('{"spdxVersion":"SPDX-2.3"}')
r = c.push(files=["artifact.txt"], target=f"{reg}/oras/app:v1", do_chunked=True, chunk_size=4)
assert r.status_code == 201, r.status_code
container = c.get_container(f"{reg}/oras/app:v1")
manifest = c.get_manifest(container)
subject = oras.oci.Subject.from_manifest(manifest)
r = c.push(files=["sbom.json:application/spdx+json"], target=f"{reg}/oras/app:sbom", subject=subject,
           manifest_annotations={"org.example.kind": "sbom"})
assert r.status_code == 201, r.status_code
assert r.headers.get("OCI-Subject") == subject.digest, r.headers
found = c.do_request(f"http://{reg}/v2/oras/app/referrers/{subject.digest}", "GET").json()
print(json.dumps({"subject": subject.digest, "referrers": found}))
"#;
    let out = run(Command::new(format!("{venv}/bin/python"))
        .current_dir(work.path())
        .arg("-c")
        .arg(script)
        .arg(w.host())
        .arg("admin")
        .arg(ADMIN_PASSWORD));
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let referrers = v["referrers"]["manifests"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{v}");
    assert_eq!(referrers[0]["annotations"]["org.example.kind"], "sbom");
    // The referrer really is what the tag points to.
    let reg = w.reg();
    let tagged = reg
        .http
        .get(reg.url("/v2/oras/app/manifests/sbom"))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(
        header(tagged.headers(), "docker-content-digest"),
        referrers[0]["digest"].as_str().unwrap()
    );
}
