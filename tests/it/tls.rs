//! TLS: a server with its development CA (`--tls-self-signed`) speaking HTTP/2 and 1.1,
//! the registry clients and a standard Entra ID client library (MSAL, azure-identity)
//! trusting that CA, and a certificate from files swapped on SIGHUP.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::util::*;

fn venv_python() -> String {
    crate::clients::get_clients();
    let venv = std::env::var("VENV").unwrap_or_else(|_| "/tmp/harness-venv".into());
    format!("{venv}/bin/python")
}

#[test]
fn over_tls_registry_clients_and_entra_client_libraries_sign_in_and_work() {
    let w = Wharf::start_with(&["--tls-self-signed"]);
    let host = format!("localhost:{}", w.port);
    // HTTP/2 by ALPN, and HTTP/1.1 for clients that only speak it; the challenge's realm
    // says https.
    let r = w.anon().get(format!("{}/v2/", w.url())).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        header(r.headers(), "www-authenticate"),
        format!("Bearer realm=\"https://{host}/oauth2/token\",service=\"{host}\"")
    );
    let h1 = w.builder().http1_only().build().unwrap();
    let r =
        h1.get(format!("{}/v2/", w.url())).header("authorization", admin_basic()).send().unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_11));
    // A client that doesn't trust the CA is refused by its own TLS stack.
    assert!(anon_client().get(format!("{}/v2/", w.url())).send().is_err());
    // Each registry's login server gets a certificate for its own name.
    cli(&w, &["registry", "create", "-n", "secure1"]).ok_json();
    let r = w
        .builder()
        .resolve("secure1.localhost", ([127, 0, 0, 1], w.port).into())
        .build()
        .unwrap()
        .get(format!("https://secure1.localhost:{}/v2/", w.port))
        .header("authorization", admin_basic())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // skopeo pushes and pulls with a service principal, trusting the CA by its cert dir.
    let sp = cli(
        &w,
        &[
            "ad",
            "sp",
            "create-for-rbac",
            "-n",
            "tls-ci",
            "--role",
            "AcrPush",
            "--scopes",
            &registry_id("default"),
        ],
    )
    .ok_json();
    let (app, secret, tenant) = (
        sp["appId"].as_str().unwrap().to_owned(),
        sp["password"].as_str().unwrap().to_owned(),
        sp["tenant"].as_str().unwrap().to_owned(),
    );
    let certs = w.data.with_extension("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(w.ca(), certs.join("ca.crt")).unwrap();
    let layout = w.data.with_extension("layout");
    make_images(&w.host(), &layout, &["--no-push", "--only", "single", "--sizes", "1m"]);
    let oci = format!("oci:{}:single-1m", layout.join("layout").display());
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-cert-dir", certs.to_str().unwrap()])
        .args(["--dest-creds", &format!("{app}:{secret}")])
        .arg(&oci)
        .arg(format!("docker://{host}/tls/app:v1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir", certs.to_str().unwrap()])
        .args(["--creds", &format!("{app}:{secret}")])
        .arg(format!("docker://{host}/tls/app:v1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // podman pulls with a repository-scoped token and pushes with the service principal.
    let token = cli(
        &w,
        &[
            "token",
            "create",
            "-n",
            "tls-puller",
            "-r",
            "default",
            "--scope-map",
            "_repositories_pull",
        ],
    )
    .ok_json();
    let token_pw =
        token["properties"]["credentials"]["passwords"][0]["value"].as_str().unwrap().to_owned();
    let storage = tempfile::tempdir().unwrap();
    let certs_arg = certs.to_str().unwrap();
    run(crate::clients::podman(storage.path()).args([
        "pull",
        "--cert-dir",
        certs_arg,
        "--creds",
        &format!("tls-puller:{token_pw}"),
        &format!("{host}/tls/app:v1"),
    ]));
    run(crate::clients::podman(storage.path()).args([
        "push",
        "--cert-dir",
        certs_arg,
        "--creds",
        &format!("{app}:{secret}"),
        &format!("{host}/tls/app:v1"),
        &format!("{host}/tls/podman:v1"),
    ]));
    assert!(manifest_over_tls(&w, "tls/podman", "v1"));
    let refused = crate::clients::podman(storage.path())
        .args(["push", "--cert-dir", certs_arg, "--creds", &format!("tls-puller:{token_pw}")])
        .args([&format!("{host}/tls/app:v1"), &format!("{host}/tls/by-token:v1")])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a pull token pushed");

    // Helm 3 pushes a chart as the service principal, Helm 4 reads it back as the registry's
    // admin user, both trusting the CA by --ca-file.
    cli(&w, &["registry", "update", "-n", "default", "--admin-enabled", "true"]).ok_json();
    let admin_user = cli(&w, &["registry", "credential", "show", "-n", "default"]).ok_json();
    let admin_pw = admin_user["passwords"][0]["value"].as_str().unwrap().to_owned();
    let tools = std::env::var("TOOLS").unwrap_or_else(|_| "/tmp/harness-tools".into());
    let home = tempfile::tempdir().unwrap();
    let helm = |version: &str| {
        let mut c = Command::new(format!("{tools}/{version}/helm/helm"));
        c.current_dir(home.path())
            .env("HOME", home.path())
            .env("HELM_CACHE_HOME", home.path().join(format!("{version}-cache")))
            .env("HELM_CONFIG_HOME", home.path().join(format!("{version}-config")))
            .env("HELM_DATA_HOME", home.path().join(format!("{version}-data")));
        c
    };
    let ca = w.ca();
    let ca = ca.to_str().unwrap();
    run(helm("helm3").args(["create", "tlschart"]));
    run(helm("helm3").args(["package", "tlschart"]));
    run(helm("helm3").args([
        "registry",
        "login",
        &host,
        "--ca-file",
        ca,
        "--username",
        &app,
        "--password",
        &secret,
    ]));
    run(helm("helm3").args([
        "push",
        "tlschart-0.1.0.tgz",
        &format!("oci://{host}/charts"),
        "--ca-file",
        ca,
    ]));
    run(helm("helm4").args([
        "registry",
        "login",
        &host,
        "--ca-file",
        ca,
        "--username",
        "default",
        "--password",
        &admin_pw,
    ]));
    let out = run(helm("helm4").args([
        "template",
        "r",
        &format!("oci://{host}/charts/tlschart"),
        "--version",
        "0.1.0",
        "--ca-file",
        ca,
    ]));
    assert!(out.contains("tlschart"), "{out}");

    // MSAL and azure-identity get tokens with the service principal's secret from wharf's
    // Entra-shaped endpoints; the token works on the management API and, exchanged, on the
    // registry.
    let script = r#"
import json, sys, msal, requests
from azure.identity import ClientSecretCredential
base, tenant, app, secret, repo = sys.argv[1:6]
scope = "https://management.azure.com/.default"
cca = msal.ConfidentialClientApplication(app, client_credential=secret,
        authority=f"{base}/{tenant}", instance_discovery=False)
r = cca.acquire_token_for_client(scopes=[scope])
assert "access_token" in r, r
token = r["access_token"]
cred = ClientSecretCredential(tenant, app, secret, authority=base, disable_instance_discovery=True)
azure_token = cred.get_token(scope).token
out = {}
reg = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/default"
for name, t in [("msal", token), ("azure_identity", azure_token)]:
    g = requests.get(f"{base}{reg}?api-version=2025-11-01", headers={"Authorization": f"Bearer {t}"})
    out[name + "_arm"] = g.status_code
    login = base.split("://")[1]
    x = requests.post(f"{base}/oauth2/exchange", data={"grant_type": "access_token", "service": login, "tenant": tenant, "access_token": t})
    refresh = x.json()["refresh_token"]
    a = requests.post(f"{base}/oauth2/token", data={"grant_type": "refresh_token", "service": login, "scope": f"repository:{repo}:pull", "refresh_token": refresh})
    access = a.json()["access_token"]
    m = requests.get(f"{base}/v2/{repo}/manifests/v1", headers={"Authorization": f"Bearer {access}", "Accept": "application/vnd.oci.image.manifest.v1+json"})
    out[name + "_pull"] = m.status_code
print(json.dumps(out))
"#;
    let out = Command::new(venv_python())
        .args(["-c", script, &w.url(), &tenant, &app, &secret, "tls/app"])
        .env("REQUESTS_CA_BUNDLE", w.ca())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // AcrPush has no `registries/read`: the management call is refused — with ARM's 403,
    // which proves the token was accepted; the registry pull works.
    assert_eq!(
        v,
        json!({"msal_arm": 403, "msal_pull": 200, "azure_identity_arm": 403, "azure_identity_pull": 200})
    );
    let (s, _) = arm(&w, Method::GET, &registry_id("default"), None);
    assert_eq!(s, 200, "the admin reads it over TLS");

    // oras-py pushes over TLS with the CA trusted through REQUESTS_CA_BUNDLE.
    let dir = w.data.with_extension("oras");
    std::fs::create_dir_all(&dir).unwrap();
    let push = r#"
import sys, oras.client
reg, user, password = sys.argv[1:4]
c = oras.client.OrasClient(hostname=reg, auth_backend="basic")
c.login(username=user, password=password, hostname=reg)
open("note.txt", "w").write("over tls\n")
print(c.push(files=["note.txt"], target=f"{reg}/tls/note:v1").status_code)
"#;
    let out = Command::new(venv_python())
        .current_dir(&dir)
        .args(["-c", push, &host, &app, &secret])
        .env("REQUESTS_CA_BUNDLE", w.ca())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim().lines().last(), Some("201"));
    for secret in [&secret, &token_pw, &admin_pw] {
        assert!(!w.log().contains(secret.as_str()), "a secret is in the log");
    }
}

/// Whether the server holds `repo:tag` (read over TLS as the admin).
fn manifest_over_tls(w: &Wharf, repo: &str, tag: &str) -> bool {
    w.anon()
        .get(format!("{}/v2/{repo}/manifests/{tag}", w.url()))
        .header("authorization", admin_basic())
        .header("accept", "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .unwrap()
        .status()
        == 200
}

#[test]
fn a_certificate_from_files_is_swapped_on_sighup_and_a_bad_one_keeps_the_old() {
    // Two certificates for localhost, each from its own CA, made with openssl.
    let tmp = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str], dir: &std::path::Path| {
        run(Command::new("openssl").current_dir(dir).args(args));
    };
    let mut pairs = Vec::new();
    for i in 0..2 {
        let d = tmp.path().join(format!("ca{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca-key.pem"], &d);
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca-key.pem",
                "-subj",
                &format!("/CN=test CA {i}"),
                "-days",
                "30",
                "-out",
                "ca.pem",
            ],
            &d,
        );
        openssl(
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "leaf-key.pem"],
            &d,
        );
        openssl(
            &["req", "-new", "-key", "leaf-key.pem", "-subj", "/CN=localhost", "-out", "leaf.csr"],
            &d,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-days",
                "30",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-extfile",
                "ext.cnf",
                "-out",
                "leaf.pem",
            ],
            &d,
        );
        pairs.push((d.join("leaf.pem"), d.join("leaf-key.pem"), d.join("ca.pem")));
    }
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let (cert, key) = (served.join("tls.pem"), served.join("tls-key.pem"));
    std::fs::copy(&pairs[0].0, &cert).unwrap();
    std::fs::copy(&pairs[0].1, &key).unwrap();
    std::fs::copy(&pairs[0].2, served.join("ca.pem")).unwrap();
    let w = Wharf::start_in(
        &tmp.path().join("data"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let url = format!("https://localhost:{}/v2/", w.port);
    let works = |ca: &std::path::Path| {
        let pem = std::fs::read(ca).unwrap();
        reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
            .get(&url)
            .send()
            .is_ok_and(|r| r.status() == 401)
    };
    assert!(works(&pairs[0].2) && !works(&pairs[1].2));
    // Renewed: the new pair is served after SIGHUP, without a restart.
    std::fs::copy(&pairs[1].0, &cert).unwrap();
    std::fs::copy(&pairs[1].1, &key).unwrap();
    signal(w.pid(), "HUP");
    assert!(eventually(std::time::Duration::from_secs(5), || works(&pairs[1].2)));
    assert!(!works(&pairs[0].2));
    // A broken file: the server says so and keeps serving what it had.
    std::fs::write(&cert, "not a certificate").unwrap();
    signal(w.pid(), "HUP");
    assert!(eventually(std::time::Duration::from_secs(5), || {
        w.log().contains("kept the old TLS certificate")
    }));
    assert!(works(&pairs[1].2));
    // A key that doesn't match its certificate is refused at start, in one line.
    let out = Command::new(wharf_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data2"))
        .arg("--tls-cert")
        .arg(&pairs[0].0)
        .arg("--tls-key")
        .arg(&pairs[1].1)
        .env("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("don't make a usable pair"), "{err}");
}

#[test]
fn containerd_pulls_and_pushes_over_tls_with_a_refresh_token_and_a_service_principal() {
    let Some(containerd) = Containerd::start() else { return };
    let w = Wharf::start_with(&["--tls-self-signed"]);
    let host = format!("localhost:{}", w.port);
    let sp = cli(
        &w,
        &[
            "ad",
            "sp",
            "create-for-rbac",
            "-n",
            "ctr-ci",
            "--role",
            "AcrPush",
            "--scopes",
            &registry_id("default"),
        ],
    )
    .ok_json();
    let (app, secret) = (sp["appId"].as_str().unwrap(), sp["password"].as_str().unwrap());
    // Content to pull, pushed by skopeo.
    let layout = w.data.with_extension("layout");
    make_images(&w.host(), &layout, &["--no-push", "--only", "single", "--sizes", "1m"]);
    let certs = w.data.with_extension("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(w.ca(), certs.join("ca.crt")).unwrap();
    run(Command::new("skopeo")
        .args(["copy", "-q", "--dest-cert-dir", certs.to_str().unwrap()])
        .args(["--dest-creds", &format!("{app}:{secret}")])
        .arg(format!("oci:{}:single-1m", layout.join("layout").display()))
        .arg(format!("docker://{host}/ctr/app:v1")));
    // containerd takes `localhost` for plain HTTP unless its hosts.toml says otherwise.
    let hosts = w.data.with_extension("hosts");
    std::fs::create_dir_all(hosts.join(&host)).unwrap();
    std::fs::write(
        hosts.join(&host).join("hosts.toml"),
        format!(
            "server = \"https://{host}\"\n[host.\"https://{host}\"]\n  ca = \"{}\"\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n",
            w.ca().display()
        ),
    )
    .unwrap();
    let hosts_dir = hosts.to_str().unwrap();
    // Pull (and unpack) with a registry refresh token, as `az acr login --expose-token` gives.
    let refresh = {
        let identity = w.token_for_app(app, secret);
        let r = w
            .anon()
            .post(format!("{}/oauth2/exchange", w.url()))
            .form(&[
                ("grant_type", "access_token"),
                ("service", host.as_str()),
                ("access_token", identity.as_str()),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().unwrap()["refresh_token"].as_str().unwrap().to_owned()
    };
    let reference = format!("{host}/ctr/app:v1");
    run(containerd
        .ctr()
        .args(["images", "pull", "--snapshotter", "native", "--hosts-dir", hosts_dir])
        .args(["--user", &format!("00000000-0000-0000-0000-000000000000:{refresh}"), &reference]));
    let listed = run(containerd.ctr().args(["images", "ls", "-q"]));
    assert!(listed.contains(&reference), "{listed}");
    // Push under another name with the service principal; without credentials it's refused.
    let pushed = format!("{host}/ctr/pushed:v1");
    run(containerd.ctr().args(["images", "tag", &reference, &pushed]));
    let anonymous = containerd
        .ctr()
        .args(["images", "push", "--hosts-dir", hosts_dir, &pushed])
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "pushed anonymously");
    run(containerd.ctr().args(["images", "push", "--hosts-dir", hosts_dir]).args([
        "--user",
        &format!("{app}:{secret}"),
        &pushed,
    ]));
    assert!(manifest_over_tls(&w, "ctr/pushed", "v1"));
    assert!(!w.log().contains(secret) && !w.log().contains(&refresh));
}

#[test]
fn import_reads_another_wharf_over_tls_when_its_ca_is_trusted() {
    let source = Wharf::start_with(&["--tls-self-signed"]);
    let host = format!("localhost:{}", source.port);
    // Content in the source, pushed over TLS as its admin.
    let layout = source.data.with_extension("layout");
    make_images(&source.host(), &layout, &["--no-push", "--only", "single", "--sizes", "1m"]);
    let certs = source.data.with_extension("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(source.ca(), certs.join("ca.crt")).unwrap();
    run(Command::new("skopeo")
        .args(["copy", "-q", "--dest-cert-dir", certs.to_str().unwrap()])
        .args(["--dest-creds", &format!("admin:{ADMIN_PASSWORD}")])
        .arg(format!("oci:{}:single-1m", layout.join("layout").display()))
        .arg(format!("docker://{host}/team/app:v1")));
    let reader = cli(
        &source,
        &[
            "ad",
            "sp",
            "create-for-rbac",
            "-n",
            "reader",
            "--role",
            "AcrPull",
            "--scopes",
            &registry_id("default"),
        ],
    )
    .ok_json();
    let (app, secret) = (reader["appId"].as_str().unwrap(), reader["password"].as_str().unwrap());
    // An insecure source is reached over plain HTTP unless its URI says https.
    let import = |w: &Wharf| {
        let body = json!({"source": {"registryUri": format!("https://{host}"), "sourceImage": "team/app:v1",
            "credentials": {"username": app, "password": secret}}, "targetTags": ["app:v1"]});
        arm(w, Method::POST, &format!("{}/importImage", registry_id("default")), Some(body))
    };
    // Without the source's CA the TLS handshake fails, and the import says so.
    let untrusting = Wharf::start_with(&["--insecure-source", &host, "--import-sync-wait", "120s"]);
    let (s, v) = import(&untrusting);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("SourceUnreachable")), "{v}");
    // With it, the import goes through.
    let config = format!(
        "[import]\ninsecure_sources = [\"{host}\"]\nca_files = [\"{}\"]\n",
        source.ca().display()
    );
    let trusting = Wharf::start_with_config(&config, &["--import-sync-wait", "120s"]);
    let (s, v) = import(&trusting);
    assert_eq!(s, 200, "{v}");
    assert!(manifest_bytes(&trusting.url(), None, "app", "v1").is_some());
    assert!(!trusting.log().contains(secret) && !source.log().contains(secret));
}
