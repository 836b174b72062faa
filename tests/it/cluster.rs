//! Several wharf nodes sharing PostgreSQL and an S3-compatible store, as an operator runs a
//! cluster: one configuration, N stateless nodes behind a load balancer. Each test gets a
//! database and a bucket prefix of its own on the servers `scripts/backends.sh` started.

use std::io::Write;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;

use crate::util::*;

mod health;

#[test]
fn any_node_serves_what_another_stored() {
    let Some(c) = Cluster::start(3, "", &[]) else { return };
    let [a, b, third] = [&c.nodes[0], &c.nodes[1], &c.nodes[2]];
    let big: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 251) as u8).collect();
    let (manifest, digest) = a.reg().push_image("team/app", "v1", &[b"layer one", &big]);

    // Pulled through the other nodes, byte for byte.
    for node in [b, third] {
        let r = node.reg().get("/v2/team/app/manifests/v1");
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "docker-content-digest"), digest);
        assert_eq!(r.bytes().unwrap().to_vec(), manifest);
        let r = node.reg().get(&format!("/v2/team/app/blobs/{}", digest_of(&big)));
        assert_eq!(r.status(), 200);
        assert!(r.bytes().unwrap()[..] == big[..], "the blob read through another node differs");
        let tags: serde_json::Value = node.reg().get("/v2/team/app/tags/list").json().unwrap();
        assert_eq!(tags["tags"], json!(["v1"]));
    }
    // A range, through the third node.
    let r = third
        .reg()
        .http
        .get(third.reg().url(&format!("/v2/team/app/blobs/{}", digest_of(&big))))
        .header("range", "bytes=10485755-10485764")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap()[..], big[10485755..=10485764]);

    // A chunked upload whose requests go to three different nodes.
    let session = a.reg().start_upload("team/chunked");
    let path =
        session.split_once(&format!(":{}", a.port)).map_or(session.clone(), |(_, p)| p.to_owned());
    let blob: Vec<u8> = (0..(7u32 << 20)).map(|i| (i % 241) as u8).collect();
    let (one, two) = blob.split_at(3 << 20);
    let patch = |node: &Wharf, start: usize, bytes: &[u8]| {
        let r = node
            .reg()
            .http
            .patch(node.reg().url(&path))
            .header("content-range", format!("{}-{}", start, start + bytes.len() - 1))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "PATCH: {}", r.text().unwrap());
    };
    patch(b, 0, one);
    // The session's state is the database's: a chunk out of order is refused on any node.
    let r = third
        .reg()
        .http
        .patch(third.reg().url(&path))
        .header("content-range", "0-9")
        .body(vec![0u8; 10])
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    patch(third, one.len(), two);
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = a
        .reg()
        .http
        .put(a.reg().url(&format!("{path}{sep}digest={}", digest_of(&blob))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "PUT: {}", r.text().unwrap());
    let r = b.reg().get(&format!("/v2/team/chunked/blobs/{}", digest_of(&blob)));
    assert!(r.bytes().unwrap()[..] == blob[..]);

    // Management: a registry made through one node answers on another.
    let arm = b.arm_client();
    let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/clustered";
    let r = arm
        .put(format!("{}{id}?api-version=2023-07-01", b.url()))
        .json(&json!({"location": "local", "sku": {"name": "Standard"}}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let r = third
        .arm_client()
        .get(format!("{}{id}?api-version=2023-07-01", third.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A token issued by one node is accepted by the others (one signing key, shared).
    let token = a.admin_token();
    let r = third
        .anon()
        .get(format!("{}/subscriptions?api-version=2022-12-01", third.url()))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Through the balancer, as clients see the cluster.
    let r = client().get(format!("{}/v2/team/app/manifests/v1", c.balancer.url())).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn two_nodes_pushing_one_tag_at_once_leave_one_winner() {
    let Some(c) = Cluster::start(2, "", &[]) else { return };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    a.reg().push_blob("race/app", config);
    for round in 0..20 {
        let la = format!("layer a {round}").into_bytes();
        let lb = format!("layer b {round}").into_bytes();
        a.reg().push_blob("race/app", &la);
        b.reg().push_blob("race/app", &lb);
        let ma = image_manifest(config, &[&la]);
        let mb = image_manifest(config, &[&lb]);
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<(u16, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = [(a, &ma), (b, &mb)]
                .into_iter()
                .map(|(node, m)| {
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        barrier.wait();
                        let r = node.reg().put_manifest("race/app", "latest", OCI_MANIFEST, m);
                        (r.status().as_u16(), r.text().unwrap_or_default())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let codes: Vec<u16> = results.iter().map(|r| r.0).collect();
        assert_eq!(codes, vec![201, 201], "round {round}: {results:?}");
        // One of them won, the same seen from both nodes, and its bytes are whole.
        let got_a = a.reg().get("/v2/race/app/manifests/latest").bytes().unwrap().to_vec();
        let got_b = b.reg().get("/v2/race/app/manifests/latest").bytes().unwrap().to_vec();
        assert_eq!(got_a, got_b);
        assert!(got_a == ma || got_a == mb, "round {round}: the tag points at neither");
        // Both manifests are stored by digest.
        for m in [&ma, &mb] {
            assert_eq!(
                a.reg().head(&format!("/v2/race/app/manifests/{}", digest_of(m))).status(),
                200
            );
        }
    }
}

#[test]
fn gc_on_one_node_while_others_push_keeps_every_image_whole() {
    gc_on_one_node_while_others_push("WHARF_TEST_S3");
}

#[test]
fn gc_on_one_node_while_others_push_on_azure_blob_storage() {
    gc_on_one_node_while_others_push("WHARF_TEST_AZURE");
}

fn gc_on_one_node_while_others_push(blobs_var: &str) {
    let args = ["--gc-grace", "2s", "--gc-interval", "0s"];
    let Some(c) = Cluster::start_on(blobs_var, 3, "", &args) else { return };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pushed: Vec<(String, Vec<u8>)> = std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let mut passes = 0;
            let arm = c.nodes[0].arm_client();
            while !stop.load(Ordering::Relaxed) {
                let r = arm.post(format!("{}/_wharf/gc", c.nodes[0].url())).send().unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().unwrap());
                passes += 1;
            }
            passes
        });
        let mut pushed = Vec::new();
        for i in 0..12 {
            let node = &c.nodes[1 + i % 2];
            let layer = format!("gc layer {i}").into_bytes();
            let tag = format!("t{i}");
            let (m, _) = node.reg().push_image("gc/app", &tag, &[&layer]);
            pushed.push((tag, m));
            std::thread::sleep(Duration::from_millis(300));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(collector.join().unwrap() > 1, "GC ran while pushes went on");
        pushed
    });
    // Everything pushed is whole: each manifest and each blob it names, from any node.
    for (tag, m) in pushed {
        let manifest: serde_json::Value = serde_json::from_slice(&m).unwrap();
        for node in &c.nodes {
            let r = node.reg().get(&format!("/v2/gc/app/manifests/{tag}"));
            assert_eq!(r.status(), 200);
            for d in
                std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap())
            {
                let d = d["digest"].as_str().unwrap();
                let r = node.reg().get(&format!("/v2/gc/app/blobs/{d}"));
                assert_eq!(r.status(), 200, "{tag}: blob {d} lost");
                assert_eq!(digest_of(&r.bytes().unwrap()), d);
            }
        }
    }
}

#[test]
fn the_conformance_suite_passes_against_a_cluster_node() {
    let Some(c) = Cluster::start(2, "", &[]) else { return };
    crate::conformance::run_suite(&c.nodes[1].url());
}

#[test]
fn real_clients_use_a_different_node_each_step() {
    let Some(c) = Cluster::start(3, "", &[]) else { return };
    let work = tempfile::tempdir().unwrap();
    // skopeo pushes a multi-platform index through node 0 …
    make_images(&c.nodes[0].host(), work.path(), &["--only", "multiarch", "--pusher", "skopeo"]);
    // … podman pulls one platform of it through node 1 …
    let storage = tempfile::tempdir().unwrap();
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let src = format!("{}/harness/multiarch:oci", c.nodes[1].host());
    run(crate::clients::podman(storage.path()).args([
        "pull",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--arch",
        "arm64",
        &src,
    ]));
    // … and pushes it back through node 2, which node 0 then serves.
    let dst = format!("{}/podman/copied:v1", c.nodes[2].host());
    run(crate::clients::podman(storage.path()).args([
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        &src,
        &dst,
    ]));
    let r = c.nodes[0].reg().get("/v2/podman/copied/manifests/v1");
    assert_eq!(r.status(), 200);
    // skopeo reads the whole index back through node 1, every platform with its digest.
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{}/harness/multiarch:oci", c.nodes[1].host()),
    ]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // helm and oras against the third node.
    crate::clients::get_clients();
    let out = run(Command::new(tools_dir().join("clients-smoke.sh"))
        .arg(c.nodes[2].host())
        .arg("admin")
        .arg(ADMIN_PASSWORD));
    assert!(out.trim_end().ends_with("11 passed, 0 failed"), "{out}");
    let _ = std::io::stdout().flush();
}

#[test]
fn an_import_whose_node_dies_is_finished_by_another() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    let summary = make_images(&dist.host(), work.path(), &["--only", "single"]);
    let digest = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ref"] == "harness/single:10m")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // Served slowly (10 MB at 2 MB/s), so that the node can be killed mid-import.
    let slow = FaultProxy::start(&dist.host(), &["--rate", "2000000"]);
    let Some(mut c) = Cluster::start(
        2,
        "[import]\njob_lease = \"3s\"",
        &["--insecure-source", "127.0.0.1", "--import-sync-wait", "0s"],
    ) else {
        return;
    };
    let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/default";
    let r = c.nodes[0]
        .arm_client()
        .post(format!("{}{id}/importImage?api-version=2019-05-01", c.nodes[0].url()))
        .json(&json!({"source": {"registryUri": slow.host(), "sourceImage": "harness/single:10m"}, "targetTags": ["moved:v1"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let location = header(r.headers(), "location").to_owned();
    // The other node reports the job running, with the progress its owner's heartbeat
    // recorded.
    let poller = c.nodes[1].arm_client();
    let node1 = c.nodes[1].url();
    let poll = |url: &str| {
        // The same operation URL, asked of node 1.
        let path = &url[url.find("/subscriptions/").unwrap()..];
        let url = format!("{node1}{path}");
        let r = poller.get(url).send().unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap())
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let (code, v) = poll(&location);
            code == 202 && v["status"] == "Accepted" && v.as_object().unwrap().len() > 1
        }),
        "node 1 never saw the running job's progress"
    );
    c.nodes[0].kill9();
    // Within a lease and a sweep, node 1 takes the job over and finishes it.
    let started = std::time::Instant::now();
    let (code, v) = loop {
        let (code, v) = poll(&location);
        if code != 202 {
            break (code, v);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the import never ended: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "Succeeded", "{v}");
    let r = c.nodes[1].reg().get("/v2/moved/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "docker-content-digest"), digest);
    assert!(c.nodes[1].log().contains("resuming an import"), "{}", c.nodes[1].log());
}

/// PostgreSQL and an object store (`s3`: s3s-fs, `azure`: Azurite) of this test's own
/// (`scripts/backends.sh`), to stop and restart.
struct OwnBackends {
    dir: std::path::PathBuf,
    env: std::collections::HashMap<String, String>,
    _tmp: tempfile::TempDir,
}

impl OwnBackends {
    fn start(store: &str) -> Option<OwnBackends> {
        std::env::var("WHARF_TEST_POSTGRES").ok()?;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("backends");
        run(Command::new("bash").arg(script()).arg("start").arg(&dir).args(["postgres", store]));
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        Some(OwnBackends { dir, env, _tmp: tmp })
    }

    fn pause(&self, which: &str) {
        run(Command::new("bash").arg(script()).arg("pause").arg(&self.dir).arg(which));
    }

    fn resume(&self, which: &str) {
        run(Command::new("bash").arg(script()).arg("resume").arg(&self.dir).arg(which));
    }
}

impl Drop for OwnBackends {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
    }
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/backends.sh")
}

/// A 503 with the OCI error body and Retry-After: what a client retries.
fn assert_unavailable(r: reqwest::blocking::Response, what: &str) {
    assert_eq!(r.status(), 503, "{what}");
    assert!(r.headers().contains_key("retry-after"), "{what}: no Retry-After");
    let v: serde_json::Value = r.json().unwrap_or_default();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE", "{what}: {v}");
}

#[test]
fn a_store_that_goes_away_answers_503_and_loses_nothing() {
    stores_going_away("s3", "WHARF_TEST_S3");
}

#[test]
fn azure_blob_storage_going_away_answers_503_and_loses_nothing() {
    stores_going_away("azure", "WHARF_TEST_AZURE");
}

fn stores_going_away(store: &str, blobs_var: &str) {
    let Some(own) = OwnBackends::start(store) else {
        assert!(std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none());
        eprintln!("SKIPPED: no backends (scripts/test.sh starts them)");
        return;
    };
    let shared = Shared::on(&own.env["WHARF_TEST_POSTGRES"], &own.env[blobs_var]);
    let w = Wharf::start_with_config(&shared.config("http://127.0.0.1:1", ""), &[]);
    let layer: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 239) as u8).collect();
    let (manifest, _) = w.reg().push_image("faults/app", "v1", &[&layer]);
    let layer_path = format!("/v2/faults/app/blobs/{}", digest_of(&layer));

    // PostgreSQL stops: reads and writes answer 503, never 404 for what exists, never 500.
    own.pause("postgres");
    assert_unavailable(w.reg().get("/v2/faults/app/manifests/v1"), "GET manifest");
    let r = w.reg().head(&layer_path);
    assert_eq!(r.status(), 503, "HEAD blob (no body: HEAD)");
    assert!(r.headers().contains_key("retry-after"));
    let r = w
        .reg()
        .http
        .post(w.reg().url(&format!("/v2/faults/app/blobs/uploads/?digest={}", digest_of(b"new"))))
        .body(b"new".to_vec())
        .send()
        .unwrap();
    assert_unavailable(r, "monolithic push");
    let r = w.reg().put_manifest("faults/app", "v2", OCI_MANIFEST, &manifest);
    assert_unavailable(r, "manifest push");
    // Back: everything as it was, and pushes work again.
    own.resume("postgres");
    assert!(
        eventually(Duration::from_secs(20), || {
            w.reg().get("/v2/faults/app/manifests/v1").status() == 200
        }),
        "the node didn't recover from PostgreSQL's restart"
    );
    assert_eq!(w.reg().get("/v2/faults/app/manifests/v1").bytes().unwrap().to_vec(), manifest);
    assert_eq!(w.reg().put_manifest("faults/app", "v2", OCI_MANIFEST, &manifest).status(), 201);

    // The object store stops mid-upload: the chunk fails with 503, stored blobs read 503
    // (not 404), and the upload goes on from where it was once the store is back.
    let session = w.reg().start_upload("faults/chunked");
    let blob: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 233) as u8).collect();
    let (one, two) = blob.split_at(1 << 20);
    let patch = |start: usize, bytes: &[u8]| {
        w.reg()
            .http
            .patch(&session)
            .header("content-range", format!("{}-{}", start, start + bytes.len() - 1))
            .body(bytes.to_vec())
            .send()
            .unwrap()
    };
    assert_eq!(patch(0, one).status(), 202);
    own.pause(store);
    assert_unavailable(patch(one.len(), two), "PATCH with the store down");
    assert_unavailable(w.reg().get(&layer_path), "GET blob with the store down");
    own.resume(store);
    assert_eq!(patch(one.len(), two).status(), 202, "the same chunk again");
    let sep = if session.contains('?') { '&' } else { '?' };
    let r = w.reg().http.put(format!("{session}{sep}digest={}", digest_of(&blob))).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let got =
        w.reg().get(&format!("/v2/faults/chunked/blobs/{}", digest_of(&blob))).bytes().unwrap();
    assert!(got[..] == blob[..]);
    assert!(w.reg().get(&layer_path).bytes().unwrap()[..] == layer[..]);
}

#[test]
fn an_upstream_that_says_slow_down_to_one_node_is_left_alone_by_all() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), work.path(), &["--only", "single", "--sizes", "1m,2m"]);
    // The upstream answers its first blob GET with 429, "come back in 6 s".
    let proxy = FaultProxy::start(&dist.host(), &["--first-429", "1", "--retry-after", "6"]);
    let Some(c) =
        Cluster::start(2, "", &["--insecure-source", "127.0.0.1", "--import-sync-wait", "0s"])
    else {
        return;
    };
    let import = |node: &Wharf, image: &str, tag: &str| {
        let source = format!("{}/harness/single:{image}", proxy.host());
        cli(node, &["import", "-n", "default", "--source", &source, "-t", tag, "--no-wait"])
            .ok_json()["operationId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = import(&c.nodes[0], "1m", "first:v1");
    assert!(
        eventually(Duration::from_secs(20), || proxy.stats()["served_429"] == 1),
        "the upstream never said 429"
    );
    // Node 0 recorded the pause in the database; node 1's import of another image from the
    // same upstream waits it out too, sending nothing meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let before = proxy.stats()["requests"].as_u64().unwrap();
    let second = import(&c.nodes[1], "2m", "second:v1");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        proxy.stats()["requests"].as_u64().unwrap(),
        before,
        "a node sent requests to an upstream the cluster was asked to leave alone"
    );
    // Both finish once the pause is over.
    for (node, op) in [(&c.nodes[0], &first), (&c.nodes[1], &second)] {
        assert!(
            eventually(Duration::from_secs(30), || {
                cli(node, &["operation", "show", op]).ok_json()["status"] == "Succeeded"
            }),
            "{op} never finished"
        );
    }
    assert!(proxy.stats()["requests"].as_u64().unwrap() > before);
}

#[test]
fn a_node_killed_mid_commit_leaves_nothing_half_visible() {
    let Some(mut c) = Cluster::start(2, "", &[]) else { return };
    // A chunked upload through node 0: three 48 MiB chunks, so that the commit (the pieces
    // composed into the blob in the object store) takes a while.
    let blob: Vec<u8> =
        (0..(144u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let digest = digest_of(&blob);
    let node0 = c.nodes[0].reg();
    let session = node0.start_upload("kill/commit");
    for (i, chunk) in blob.chunks(48 << 20).enumerate() {
        let start = i * (48 << 20);
        let r = node0
            .http
            .patch(&session)
            .header("content-range", format!("{}-{}", start, start + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // The commit starts; node 0 dies in the middle of it.
    let sep = if session.contains('?') { '&' } else { '?' };
    let commit = format!("{session}{sep}digest={digest}");
    let http = node0.http.clone();
    let committing = std::thread::spawn(move || http.put(commit).send().map(|r| r.status()));
    std::thread::sleep(Duration::from_millis(200));
    c.nodes[0].kill9();
    let answered = committing.join().unwrap();
    // Through node 1: the blob is either absent or whole — never a part of it.
    let path = format!("/v2/kill/commit/blobs/{digest}");
    let node1 = c.nodes[1].reg();
    match node1.head(&path).status().as_u16() {
        404 => {
            assert!(
                !matches!(answered, Ok(s) if s == 201),
                "the commit was acknowledged but its blob is missing"
            )
        }
        200 => assert!(node1.get(&path).bytes().unwrap()[..] == blob[..], "a partial blob"),
        other => panic!("HEAD answered {other}"),
    }
    // Pushed again through node 1, it is whole.
    let again = node1.push_blob("kill/commit", &blob);
    assert_eq!(again, digest);
    assert!(node1.get(&path).bytes().unwrap()[..] == blob[..]);
}

#[test]
fn a_cluster_on_azure_blob_storage_serves_what_another_node_stored() {
    let Some(shared) = Shared::new_on("WHARF_TEST_AZURE") else { return };
    // Two nodes on PostgreSQL and Azure Blob Storage (Azurite).
    let config = shared.config("http://127.0.0.1:1", "");
    let (a, b) = (Wharf::start_with_config(&config, &[]), Wharf::start_with_config(&config, &[]));
    let big: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 247) as u8).collect();
    let (manifest, digest) = a.reg().push_image("azure/app", "v1", &[b"small layer", &big]);
    let r = b.reg().get("/v2/azure/app/manifests/v1");
    assert_eq!(header(r.headers(), "docker-content-digest"), digest);
    assert_eq!(r.bytes().unwrap().to_vec(), manifest);
    let r = b.reg().get(&format!("/v2/azure/app/blobs/{}", digest_of(&big)));
    assert!(r.bytes().unwrap()[..] == big[..], "the blob read through the other node differs");
    // A chunked upload begun on one node and finished on the other.
    let session = a.reg().start_upload("azure/chunked");
    let path = &session[session.find("/v2/").unwrap()..];
    let blob: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 241) as u8).collect();
    let (one, two) = blob.split_at(6 << 20);
    for (node, start, bytes) in [(&a, 0, one), (&b, one.len(), two)] {
        let r = node
            .reg()
            .http
            .patch(node.reg().url(path))
            .header("content-range", format!("{}-{}", start, start + bytes.len() - 1))
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "PATCH: {}", r.text().unwrap());
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = a
        .reg()
        .http
        .put(a.reg().url(&format!("{path}{sep}digest={}", digest_of(&blob))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "PUT: {}", r.text().unwrap());
    let r = b.reg().get(&format!("/v2/azure/chunked/blobs/{}", digest_of(&blob)));
    assert!(r.bytes().unwrap()[..] == blob[..]);
}

#[test]
fn blob_downloads_redirect_to_the_object_store_when_asked() {
    let Some(shared) = Shared::new() else { return };
    // Node `a` redirects blobs of 1 MiB or more, node `b` every blob.
    let redirecting = |min: &str| {
        let storage = format!("[storage]\nredirect_downloads = true\nredirect_min_size = {min}\n");
        shared.config("http://127.0.0.1:1", "").replace("[storage]\n", &storage)
    };
    let a = Wharf::start_with_config(&redirecting("\"1MiB\""), &[]);
    let b = Wharf::start_with_config(&redirecting("0"), &[]);
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 239) as u8).collect();
    let (_, digest) = a.reg().push_image("team/app", "v1", &[b"small layer", &big]);
    let big_path = format!("/v2/team/app/blobs/{}", digest_of(&big));

    // A large blob's GET is a 307 to the object store, naming the digest.
    let no_follow = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow.get(a.reg().url(&big_path)).header("authorization", admin_basic()).send();
    let r = r.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(header(r.headers(), "docker-content-digest"), digest_of(&big));
    let location = header(r.headers(), "location").to_owned();
    let s3 = std::env::var("WHARF_TEST_S3").unwrap();
    let endpoint = s3.split("endpoint=").nth(1).unwrap().split('&').next().unwrap();
    assert!(location.starts_with(endpoint), "{location} is not on the store {endpoint}");
    // Anyone holding the URL reads the blob, whole or a range, without credentials.
    let bytes = client().get(&location).send().unwrap().bytes().unwrap();
    assert!(bytes[..] == big[..], "the redirected download differs");
    let r = client().get(&location).header("range", "bytes=5-14").send().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap()[..], big[5..15]);
    // A client that follows redirects sees the blob, and its range, as before.
    let r = a.reg().get(&big_path);
    assert!(r.bytes().unwrap()[..] == big[..]);
    let r = a.reg().http.get(a.reg().url(&big_path)).header("range", "bytes=-3").send().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap()[..], big[big.len() - 3..]);
    // A range the blob can't satisfy is the node's 416, not a redirect.
    let r = no_follow
        .get(a.reg().url(&big_path))
        .header("authorization", admin_basic())
        .header("range", format!("bytes={}-", big.len() + 10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert!(r.headers().get("location").is_none());
    // HEAD, and blobs under the size, are answered by the node itself.
    let r = no_follow.head(a.reg().url(&big_path)).header("authorization", admin_basic()).send();
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "content-length"), big.len().to_string());
    let small = format!("/v2/team/app/blobs/{}", digest_of(b"small layer"));
    let r = no_follow.get(a.reg().url(&small)).header("authorization", admin_basic()).send();
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap()[..], b"small layer"[..]);
    // No URL before access control and the repository's own blobs have had their say.
    let r = no_follow.get(a.reg().url(&big_path)).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    let r = no_follow
        .get(a.reg().url(&format!("/v2/team/other/blobs/{}", digest_of(&big))))
        .header("authorization", admin_basic())
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("BLOB_UNKNOWN"));

    // Node `b` redirects even the smallest blob: skopeo copies the image out through it,
    // every digest verified, and the conformance suite passes against it.
    let r = no_follow.get(b.reg().url(&small)).header("authorization", admin_basic()).send();
    assert_eq!(r.unwrap().status(), 307);
    let out = tempfile::tempdir().unwrap();
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &format!("admin:{ADMIN_PASSWORD}"),
        &format!("docker://{}/team/app:v1", b.host()),
        &format!("dir:{}", out.path().display()),
    ]));
    let copied = std::fs::read(out.path().join(digest_of(&big).trim_start_matches("sha256:")));
    assert!(copied.unwrap() == big, "skopeo's copy of the layer differs");
    assert_eq!(digest_of(&std::fs::read(out.path().join("manifest.json")).unwrap()), digest);
    // Another wharf imports the image from it (as ACR imports from ACR, whose blob GETs
    // redirect to storage): its engine follows the 307s, every digest checked.
    let importer = Wharf::start_with(&["--insecure-source", "127.0.0.1"]);
    let src = format!("{}/team/app:v1", b.host());
    let done = cli(
        &importer,
        &["import", "-n", "default", "--source", &src, "-u", "admin", "-p", ADMIN_PASSWORD],
    )
    .ok_json();
    assert_eq!(done["status"], "Succeeded", "{done}");
    let r = importer.reg().get(&big_path);
    assert!(r.bytes().unwrap()[..] == big[..], "the imported layer differs");
    crate::conformance::run_suite(&b.url());
    // A signed URL is a credential for its lifetime: never in a log.
    for node in [&a, &b] {
        assert!(!node.log().contains("Signature="), "a signed URL reached the log");
    }
}

#[test]
fn nodes_starting_together_on_an_empty_database_make_one_admin() {
    let Some(shared) = Shared::new() else { return };
    let config = shared.config("http://127.0.0.1:1", "");
    let go = Arc::new(Barrier::new(3));
    let starting: Vec<_> = (0..3)
        .map(|_| {
            let (config, go) = (config.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                Wharf::start_with_config(&config, &[])
            })
        })
        .collect();
    let nodes: Vec<Wharf> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    // One tenant, one signing key, one admin user — not one each.
    for query in [
        "SELECT count(*) FROM tenants",
        "SELECT count(*) FROM signing_keys",
        "SELECT count(*) FROM principals WHERE name_ci = 'admin'",
        // Owner and Directory Administrator, once each.
        "SELECT count(*) / 2 FROM role_assignments",
    ] {
        let n = run(Command::new("psql").args([&shared.metadata, "-tAc", query]));
        assert_eq!(n.trim(), "1", "{query}");
    }
    // Each node signs the admin in, and a token one node issued is good on the others.
    let token = nodes[0].admin_token();
    for node in &nodes {
        assert_eq!(node.reg().get("/v2/").status(), 200);
        let r = node
            .anon()
            .get(format!("{}/subscriptions?api-version=2022-12-01", node.url()))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn sign_in_failures_and_revocations_hold_on_every_node() {
    use crate::access::{assign, create_sp};
    let Some(shared) = Shared::new() else { return };
    let config = shared
        .config("http://127.0.0.1:1", "")
        .replace("[auth]\n", "[auth]\nmax_failed_sign_ins = 4\n");
    let (a, b) = (Wharf::start_with_config(&config, &[]), Wharf::start_with_config(&config, &[]));
    a.reg().push_image("team/app", "v1", &[b"layer"]);
    let pull = |w: &Wharf, user: &str, password: &str| {
        anon_client()
            .get(format!("{}/v2/team/app/manifests/v1", w.url()))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .header("authorization", basic(user, password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // Within a few seconds on the other node, not when its caches expire (30 s for grants,
    // 5 minutes for a checked secret).
    let soon = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "{what}: not seen by the other node");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // A role removed through one node stops working on the other, which had it cached.
    let sp = create_sp(&a, "puller");
    let assignment = assign(&a, &sp.id, "AcrPull", &registry_id("default"));
    assert_eq!(pull(&b, &sp.app, &sp.secret), 200);
    let (s, v) = arm(
        &a,
        reqwest::Method::DELETE,
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{assignment}",
            registry_id("default")
        ),
        None,
    );
    assert_eq!(s, 200, "{v}");
    // (A caller without the right is asked to sign in with more: 401, as ACR answers.)
    soon("a removed role", &|| pull(&b, &sp.app, &sp.secret) == 401);

    // A secret reset through one node: the old one stops working on the other, and so
    // does every token issued with it — identity, registry refresh and access tokens —
    // within a second, though the other node had checked each just before.
    assign(&a, &sp.id, "AcrPull", &registry_id("default"));
    soon("a new role", &|| pull(&b, &sp.app, &sp.secret) == 200);
    let identity = a.token_for_app(&sp.app, &sp.secret);
    let host = b.host();
    let form = |w: &Wharf, path: &str, fields: &[(&str, &str)]| {
        anon_client().post(format!("{}{path}", w.url())).form(fields).send().unwrap()
    };
    let r = form(
        &a,
        "/oauth2/exchange",
        &[("grant_type", "access_token"), ("service", &host), ("access_token", &identity)],
    );
    let refresh =
        r.json::<serde_json::Value>().unwrap()["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = |w: &Wharf| {
        let r = form(
            w,
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("service", &host),
                ("scope", "repository:team/app:pull"),
                ("refresh_token", &refresh),
            ],
        );
        (r.status().as_u16(), r.json::<serde_json::Value>().ok())
    };
    let access = refreshed(&a).1.unwrap()["access_token"].as_str().unwrap().to_owned();
    let on_b = || {
        let management =
            arm_as(&b, Some(&identity), reqwest::Method::GET, &registry_id("default"), None).0;
        let exchanged = form(
            &b,
            "/oauth2/exchange",
            &[("grant_type", "access_token"), ("service", &host), ("access_token", &identity)],
        )
        .status()
        .as_u16();
        let pulled = anon_client()
            .get(format!("{}/v2/team/app/manifests/v1", b.url()))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .bearer_auth(&access)
            .send()
            .unwrap()
            .status()
            .as_u16();
        [management, exchanged, refreshed(&b).0, pulled]
    };
    let reader = assign(&a, &sp.id, "Reader", &registry_id("default"));
    soon("a reader", &|| on_b()[0] == 200);
    assert_eq!(on_b(), [200, 200, 200, 200]);
    let _ = reader;
    let r = a
        .graph_client()
        .post(format!("{}/v1.0/servicePrincipals/{}/resetPassword", a.url(), sp.id))
        .json(&json!({}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let v: serde_json::Value = r.json().unwrap();
    let new_secret = v["passwordCredentials"][0]["secretText"].as_str().unwrap().to_owned();
    let reset = std::time::Instant::now();
    while on_b() != [401, 401, 401, 401] {
        assert!(
            reset.elapsed() < Duration::from_secs(1),
            "tokens still work on the other node: {:?}",
            on_b()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    soon("a reset secret", &|| pull(&b, &sp.app, &sp.secret) == 401);
    assert_eq!(pull(&b, &sp.app, &new_secret), 200);

    // Failed sign-ins count on every node: two guesses on each of two nodes lock the name
    // (4 a minute) on both, for the right secret too.
    let target = create_sp(&a, "target");
    assign(&a, &target.id, "AcrPull", &registry_id("default"));
    for node in [&a, &b, &a, &b] {
        assert_eq!(pull(node, &target.app, "guess"), 401);
    }
    assert_eq!(pull(&a, &target.app, &target.secret), 429);
    assert_eq!(pull(&b, &target.app, &target.secret), 429);
    // A name nobody has is throttled the same way: a 429 doesn't tell which names exist.
    for node in [&a, &b, &a, &b] {
        assert_eq!(pull(node, "nobody-at-all", "guess"), 401);
    }
    assert_eq!(pull(&a, "nobody-at-all", "guess"), 429);
    // Others are not locked out by it.
    assert_eq!(pull(&b, "admin", ADMIN_PASSWORD), 200);
}

#[test]
fn a_blob_one_node_saw_a_source_serve_is_not_fetched_again_by_another() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), work.path(), &["--only", "single", "--sizes", "3m"]);
    let proxy = FaultProxy::start(&dist.host(), &[]);
    let Some(c) = Cluster::start(2, "", &["--insecure-source", "127.0.0.1"]) else { return };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let source = format!("{}/harness/single:3m", proxy.host());
    cli(a, &["registry", "create", "-n", "first"]).ok_json();
    cli(a, &["registry", "create", "-n", "second"]).ok_json();
    let done = cli(a, &["import", "-n", "first", "--source", &source]).ok_json();
    assert_eq!(done["status"], "Succeeded", "{done}");
    let fetched = proxy.stats()["blob_bytes"].as_u64().unwrap();
    assert!(fetched >= 3_000_000, "{fetched}");
    // Node B imports the same image from the same source into another registry: node A's
    // proof that the source serves those blobs stands, so nothing is downloaded again.
    let done = cli(b, &["import", "-n", "second", "--source", &source]).ok_json();
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(proxy.stats()["blob_bytes"].as_u64().unwrap(), fetched);
    assert_layers_served(b, "second", "3m");
    // Another source naming the same digests still has to prove it serves them.
    let other = FaultProxy::start(&dist.host(), &[]);
    cli(b, &["registry", "create", "-n", "third"]).ok_json();
    let done = cli(
        b,
        &["import", "-n", "third", "--source", &format!("{}/harness/single:3m", other.host())],
    )
    .ok_json();
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert!(other.stats()["blob_bytes"].as_u64().unwrap() >= 3_000_000);
}

#[test]
fn two_nodes_importing_one_source_at_once_download_it_once() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    let summary = make_images(&dist.host(), work.path(), &["--only", "single", "--sizes", "10m"]);
    let size = summary["items"][0]["total_bytes"].as_u64().unwrap();
    // 10 MB at 4 MB/s: both imports run at the same time.
    let proxy = FaultProxy::start(&dist.host(), &["--rate", "4000000"]);
    let args = ["--insecure-source", "127.0.0.1", "--import-sync-wait", "0s"];
    let Some(c) = Cluster::start(2, "", &args) else { return };
    let source = format!("{}/harness/single:10m", proxy.host());
    let mut ops = Vec::new();
    for (node, registry) in [(&c.nodes[0], "leftside"), (&c.nodes[1], "rightside")] {
        cli(node, &["registry", "create", "-n", registry]).ok_json();
    }
    for (node, registry) in [(&c.nodes[0], "leftside"), (&c.nodes[1], "rightside")] {
        let op = cli(node, &["import", "-n", registry, "--source", &source, "--no-wait"]).ok_json();
        ops.push((node, op["operationId"].as_str().unwrap().to_owned()));
    }
    for (node, op) in &ops {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = cli(node, &["operation", "show", op]).ok_json();
            if s["status"] == "Succeeded" {
                break;
            }
            assert!(s["status"] == "Accepted" && std::time::Instant::now() < deadline, "{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let fetched = proxy.stats()["blob_bytes"].as_u64().unwrap();
    assert!(fetched < size + size / 10, "fetched {fetched} bytes for a {size}-byte image");
    assert_layers_served(&c.nodes[1], "leftside", "10m");
    assert_layers_served(&c.nodes[0], "rightside", "10m");
}

/// `registry` serves `harness/single:<tag>` through `node`, every layer whole.
fn assert_layers_served(node: &Wharf, registry: &str, tag: &str) {
    let login = format!("{registry}.localhost:{}", node.port);
    let m = manifest_bytes(&node.url(), Some(&login), "harness/single", tag).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    for d in m["layers"].as_array().unwrap() {
        let d = d["digest"].as_str().unwrap();
        let r = node
            .reg()
            .http
            .get(node.reg().url(&format!("/v2/harness/single/blobs/{d}")))
            .header("host", &login)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(digest_of(&r.bytes().unwrap()), d);
    }
}

/// Many clients finishing chunked uploads at once on one node: the session and digest
/// locks are taken one after the other (never nested) and held only for short database
/// and store calls, so 32 finishes share a node's 16 database connections without one
/// failing.
#[test]
fn thirty_two_chunked_uploads_finishing_at_once_on_one_node_all_succeed() {
    let Some(c) = Cluster::start(1, "", &[]) else { return };
    let reg = c.nodes[0].reg();
    let uploads: Vec<(String, Vec<u8>)> = (0..32)
        .map(|i| {
            let data = bytes(100 + i, 256 << 10);
            let loc = reg.start_upload(&format!("busy/app{i}"));
            let r = reg
                .http
                .patch(&loc)
                .header("content-range", format!("0-{}", data.len() - 1))
                .body(data.clone())
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
            (reg.url(location(r.headers())), data)
        })
        .collect();
    let barrier = Barrier::new(uploads.len());
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let finishing: Vec<_> = uploads
            .iter()
            .map(|(loc, data)| {
                let (reg, barrier) = (&reg, &barrier);
                scope.spawn(move || {
                    let sep = if loc.contains('?') { '&' } else { '?' };
                    barrier.wait();
                    let url = format!("{loc}{sep}digest={}", digest_of(data));
                    reg.http.put(url).send().unwrap().status().as_u16()
                })
            })
            .collect();
        finishing.into_iter().map(|f| f.join().unwrap()).collect()
    });
    assert!(codes.iter().all(|c| *c == 201), "{codes:?}");
    for (i, (_, data)) in uploads.iter().enumerate() {
        let r = reg.get(&format!("/v2/busy/app{i}/blobs/{}", digest_of(data)));
        assert_eq!(r.bytes().unwrap().as_ref(), data.as_slice());
    }
}

/// A node that lost an import's lease (stopped, not killed: a long pause, a partition)
/// and comes back after another node finished the job changes nothing: its writes and
/// its tag-moving commit name a lease epoch that is no longer the job's.
#[test]
fn an_imports_old_owner_coming_back_after_a_takeover_changes_nothing() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), work.path(), &["--only", "single"]);
    let slow = FaultProxy::start(&dist.host(), &["--rate", "2000000"]);
    let Some(c) = Cluster::start(
        2,
        "[import]\njob_lease = \"3s\"",
        &["--insecure-source", "127.0.0.1", "--import-sync-wait", "0s"],
    ) else {
        return;
    };
    let r = c.nodes[0]
        .arm_client()
        .post(format!("{}{}/importImage?api-version=2019-05-01", c.nodes[0].url(), registry_id("default")))
        .json(&json!({"source": {"registryUri": slow.host(), "sourceImage": "harness/single:10m"}, "targetTags": ["fenced:v1"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let location = header(r.headers(), "location").to_owned();
    let path = location[location.find("/subscriptions/").unwrap()..].to_owned();
    let status_on_1 = || {
        let r = c.nodes[1].arm_client().get(format!("{}{path}", c.nodes[1].url())).send().unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap_or_default())
    };
    assert!(eventually(Duration::from_secs(10), || status_on_1().0 == 202));
    // Node 0 freezes mid-download; node 1 takes the job over and finishes it: after the job's
    // lease (3 s), the download claim node 0 held (30 s) and, if node 0 froze holding a blob's
    // lock, until PostgreSQL ends node 0's idle lock session (30 s; before that bound, node 1
    // waited as long as node 0 stayed frozen).
    signal(c.nodes[0].pid(), "STOP");
    assert!(
        eventually(Duration::from_secs(120), || status_on_1().0 == 200),
        "node 1 never finished the job: {:?}\n{}",
        status_on_1(),
        c.nodes[1].log()
    );
    assert_eq!(status_on_1().1["status"], "Succeeded");
    // The tag is taken away; were node 0's commit to go through, it would be back.
    let r = c.nodes[1]
        .reg()
        .http
        .delete(c.nodes[1].reg().url("/acr/v1/fenced/_tags/v1"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    signal(c.nodes[0].pid(), "CONT");
    assert!(
        eventually(Duration::from_secs(30), || c.nodes[0].log().contains("stopping it here")),
        "node 0 went on as if it held the job: {}",
        c.nodes[0].log()
    );
    // Its run winds down (recording nothing): then nothing it did may show.
    assert!(eventually(Duration::from_secs(30), || {
        let log = c.nodes[0].log();
        log.contains("import failed") || log.contains("import succeeded")
    }));
    assert_eq!(c.nodes[1].reg().get("/v2/fenced/manifests/v1").status(), 404);
    assert_eq!(status_on_1().1["status"], "Succeeded");
}
