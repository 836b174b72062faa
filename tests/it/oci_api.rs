//! The OCI distribution API, session by session, as a client uses it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

#[test]
fn push_and_pull_a_blob_every_way() {
    let w = Wharf::start();
    let reg = w.reg();

    // Monolithic POST ?digest=
    let a = bytes(1, 100_000);
    let da = reg.push_blob("app", &a);
    // POST, then PUT with the body
    let b = bytes(2, 5000);
    let db = digest_of(&b);
    let loc = reg.start_upload("app");
    let r = reg.http.put(format!("{loc}?digest={db}")).body(b.clone()).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(r.headers()), format!("/v2/app/blobs/{db}"));
    assert_eq!(header(r.headers(), "docker-content-digest"), db);

    for (d, content) in [(&da, &a), (&db, &b)] {
        let r = reg.head(&format!("/v2/app/blobs/{d}"));
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "content-length"), content.len().to_string());
        assert_eq!(header(r.headers(), "docker-content-digest"), d.as_str());
        let r = reg.get(&format!("/v2/app/blobs/{d}"));
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "docker-distribution-api-version"), "registry/2.0");
        assert_eq!(r.bytes().unwrap().as_ref(), content.as_slice());
    }

    // Ranges: 206 with Content-Range, suffix ranges, 416 past the end.
    let r = reg
        .http
        .get(reg.url(&format!("/v2/app/blobs/{da}")))
        .header("range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(r.headers(), "content-range"), "bytes 10-19/100000");
    assert_eq!(r.bytes().unwrap().as_ref(), &a[10..20]);
    let r = reg
        .http
        .get(reg.url(&format!("/v2/app/blobs/{da}")))
        .header("range", "bytes=-5")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &a[a.len() - 5..]);
    let r = reg
        .http
        .get(reg.url(&format!("/v2/app/blobs/{da}")))
        .header("range", "bytes=99990-")
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), &a[99990..]);
    let r = reg
        .http
        .get(reg.url(&format!("/v2/app/blobs/{da}")))
        .header("range", "bytes=100000-")
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(r.headers(), "content-range"), "bytes */100000");

    // Another repository doesn't see it.
    assert_eq!(reg.head(&format!("/v2/other/blobs/{da}")).status(), 404);
    assert_eq!(error_code(reg.get(&format!("/v2/other/blobs/{da}"))), "BLOB_UNKNOWN");
}

#[test]
fn chunked_upload_with_status_and_out_of_order_chunks() {
    let w = Wharf::start();
    let reg = w.reg();
    let blob = bytes(3, 3000);
    let d = digest_of(&blob);
    let loc = reg.start_upload("chunky");

    let r = reg.http.get(&loc).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(r.headers(), "range"), "0-0");

    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "0-999")
        .header("content-type", "application/octet-stream")
        .body(blob[..1000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(r.headers(), "range"), "0-999");
    let loc = reg.url(location(r.headers()));

    // A chunk that skips ahead is refused with where the upload stands; nothing is kept.
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "2000-2999")
        .body(blob[2000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(r.headers(), "range"), "0-999");
    // A retried chunk that starts before the end is refused too.
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "0-999")
        .body(blob[..1000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);

    // A chunk without Content-Range is appended (streamed PATCH).
    let r = reg.http.patch(&loc).body(blob[1000..2000].to_vec()).send().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(r.headers(), "range"), "0-1999");

    // Last chunk with the closing PUT.
    let r = reg.http.put(format!("{loc}?digest={d}")).body(blob[2000..].to_vec()).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        reg.get(&format!("/v2/chunky/blobs/{d}")).bytes().unwrap().as_ref(),
        blob.as_slice()
    );
    // The session is gone.
    assert_eq!(error_code(reg.http.get(&loc).send().unwrap()), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn chunked_upload_survives_a_restart() {
    let mut w = Wharf::start();
    let blob = bytes(4, 200_000);
    let d = digest_of(&blob);
    let loc = w.reg().start_upload("resumable");
    let r = w
        .reg()
        .http
        .patch(&loc)
        .header("content-range", "0-99999")
        .body(blob[..100_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    w.restart();

    let reg = w.reg();
    let r = reg.http.get(&loc).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(r.headers(), "range"), "0-99999");
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "100000-199999")
        .body(blob[100_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = reg.http.put(format!("{loc}?digest={d}")).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    assert_eq!(
        reg.get(&format!("/v2/resumable/blobs/{d}")).bytes().unwrap().as_ref(),
        blob.as_slice()
    );
}

#[test]
fn cancelled_upload_is_gone() {
    let w = Wharf::start();
    let reg = w.reg();
    let loc = reg.start_upload("cancel");
    reg.http.patch(&loc).body(vec![1u8; 10]).send().unwrap();
    assert_eq!(reg.http.delete(&loc).send().unwrap().status(), 204);
    assert_eq!(error_code(reg.http.get(&loc).send().unwrap()), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(reg.http.delete(&loc).send().unwrap().status(), 404);
    let uploads = std::fs::read_dir(w.data.join("uploads")).unwrap().count();
    assert_eq!(uploads, 0, "the upload's data is removed");
}

#[test]
fn cross_repository_mount() {
    let w = Wharf::start();
    let reg = w.reg();
    let blob = bytes(5, 4096);
    let d = reg.push_blob("source/repo", &blob);

    let r = reg
        .http
        .post(reg.url(&format!("/v2/target/blobs/uploads/?mount={d}&from=source/repo")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(r.headers()), format!("/v2/target/blobs/{d}"));
    assert_eq!(
        reg.get(&format!("/v2/target/blobs/{d}")).bytes().unwrap().as_ref(),
        blob.as_slice()
    );

    // Not in `from`: a plain upload session instead (202).
    let r = reg
        .http
        .post(reg.url(&format!("/v2/target2/blobs/uploads/?mount={d}&from=nothere")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(location(r.headers()).starts_with("/v2/target2/blobs/uploads/"));
    // No `from`: never mounted automatically (OCI_AUTOMATIC_CROSSMOUNT=0).
    let r =
        reg.http.post(reg.url(&format!("/v2/target3/blobs/uploads/?mount={d}"))).send().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(reg.head(&format!("/v2/target3/blobs/{d}")).status(), 404);
}

#[test]
fn manifests_are_served_byte_for_byte() {
    let w = Wharf::start();
    let reg = w.reg();
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    let layer = bytes(6, 1000);
    reg.push_blob("bytes", &config);
    reg.push_blob("bytes", &layer);
    // Odd key order, whitespace, unknown fields, a trailing newline: all kept.
    let manifest = format!(
        "{{\n  \"layers\" : [ {{\"size\":1000, \"digest\":\"{}\", \"mediaType\":\"{OCI_LAYER}\"}} ],\n\t\"config\":{{\"mediaType\":\"{OCI_CONFIG}\",\"size\":{},\"digest\":\"{}\"}},\n  \"x-unknown\": {{\"kept\": true}},\n  \"schemaVersion\":2, \"mediaType\": \"{OCI_MANIFEST}\" }}\n",
        digest_of(&layer),
        config.len(),
        digest_of(&config)
    );
    let d = digest_of(manifest.as_bytes());
    let r = reg.put_manifest("bytes", "v1", OCI_MANIFEST, manifest.as_bytes());
    assert_eq!(r.status(), 201);
    assert_eq!(header(r.headers(), "docker-content-digest"), d);
    assert_eq!(location(r.headers()), format!("/v2/bytes/manifests/{d}"));

    for reference in ["v1", d.as_str()] {
        let r = reg
            .http
            .get(reg.url(&format!("/v2/bytes/manifests/{reference}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "content-type"), OCI_MANIFEST);
        assert_eq!(header(r.headers(), "docker-content-digest"), d);
        assert_eq!(r.bytes().unwrap().as_ref(), manifest.as_bytes());
        let r = reg.head(&format!("/v2/bytes/manifests/{reference}"));
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "content-length"), manifest.len().to_string());
    }

    // PUT by digest: the digest must be of the bytes.
    let r = reg.put_manifest("bytes", &d, OCI_MANIFEST, manifest.as_bytes());
    assert_eq!(r.status(), 201);
    let wrong = digest_of(b"something else");
    let r = reg.put_manifest("bytes", &wrong, OCI_MANIFEST, manifest.as_bytes());
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r), "DIGEST_INVALID");
}

#[test]
fn accept_negotiation() {
    let w = Wharf::start();
    let reg = w.reg();
    let config = b"{}".to_vec();
    reg.push_blob("neg", &config);
    let docker = json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest_of(&config), "size": 2},
        "layers": []
    });
    let docker = serde_json::to_vec(&docker).unwrap();
    assert_eq!(reg.put_manifest("neg", "d", DOCKER_MANIFEST, &docker).status(), 201);
    let get = |accept: Option<&str>| {
        let mut req = reg.http.get(reg.url("/v2/neg/manifests/d"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        req.send().unwrap()
    };
    let r = get(Some(&format!("{OCI_MANIFEST}, {DOCKER_MANIFEST};q=0.9")));
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "content-type"), DOCKER_MANIFEST);
    assert_eq!(get(None).status(), 200);
    assert_eq!(get(Some("*/*")).status(), 200);
    let r = get(Some(OCI_MANIFEST));
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");

    // Any artifact media type is stored and served as pushed.
    let artifact = br#"{"schemaVersion":2,"kind":"custom"}"#;
    let r = reg.put_manifest("neg", "custom", "application/vnd.example.custom+json", artifact);
    assert_eq!(r.status(), 201);
    let r = reg.get("/v2/neg/manifests/custom");
    assert_eq!(header(r.headers(), "content-type"), "application/vnd.example.custom+json");
    assert_eq!(r.bytes().unwrap().as_ref(), artifact);
}

#[test]
fn manifests_need_their_content_but_not_their_subject() {
    let w = Wharf::start();
    let reg = w.reg();
    let config = b"{}".to_vec();
    let layer = bytes(7, 100);
    let manifest = image_manifest(&config, &[&layer]);
    // Nothing pushed yet: the config is missing.
    let r = reg.put_manifest("deps", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r), "MANIFEST_BLOB_UNKNOWN");
    reg.push_blob("deps", &config);
    let r = reg.put_manifest("deps", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(error_code(r), "MANIFEST_BLOB_UNKNOWN");
    // A blob in another repository doesn't count.
    reg.push_blob("elsewhere", &layer);
    assert_eq!(
        error_code(reg.put_manifest("deps", "v1", OCI_MANIFEST, &manifest)),
        "MANIFEST_BLOB_UNKNOWN"
    );
    reg.push_blob("deps", &layer);
    assert_eq!(reg.put_manifest("deps", "v1", OCI_MANIFEST, &manifest).status(), 201);

    // An index whose child isn't in the repository.
    let child = image_manifest(&config, &[]);
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(&child), "size": child.len(), "platform": {"architecture": "arm64", "os": "linux"}}
    ]});
    let index = serde_json::to_vec(&index).unwrap();
    let r = reg.put_manifest("deps", "multi", OCI_INDEX, &index);
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");
    assert_eq!(reg.put_manifest("deps", &digest_of(&child), OCI_MANIFEST, &child).status(), 201);
    assert_eq!(reg.put_manifest("deps", "multi", OCI_INDEX, &index).status(), 201);

    // A subject may be missing; the answer names it.
    let missing = digest_of(b"not pushed");
    let referrer = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(&config), "size": 2}, "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}});
    let referrer = serde_json::to_vec(&referrer).unwrap();
    let r = reg.put_manifest("deps", &digest_of(&referrer), OCI_MANIFEST, &referrer);
    assert_eq!(r.status(), 201);
    assert_eq!(header(r.headers(), "oci-subject"), missing);
}

#[test]
fn tags_and_catalog_paginate_with_link_headers() {
    let w = Wharf::start();
    let reg = w.reg();
    let (_, d) = reg.push_image("pages/app", "t0", &[b"layer"]);
    let manifest = reg.get(&format!("/v2/pages/app/manifests/{d}")).bytes().unwrap();
    for t in ["b", "a", "c", "a.1", "Z"] {
        assert_eq!(reg.put_manifest("pages/app", t, OCI_MANIFEST, &manifest).status(), 201);
    }
    let all: Value = reg.get("/v2/pages/app/tags/list").json().unwrap();
    assert_eq!(all, json!({"name": "pages/app", "tags": ["Z", "a", "a.1", "b", "c", "t0"]}));

    let r = reg.get("/v2/pages/app/tags/list?n=2");
    assert_eq!(header(r.headers(), "link"), "</v2/pages/app/tags/list?n=2&last=a>; rel=\"next\"");
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["Z", "a"]));
    let r = reg.get("/v2/pages/app/tags/list?n=2&last=a");
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["a.1", "b"]));
    let r = reg.get("/v2/pages/app/tags/list?n=10&last=b");
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["c", "t0"]));
    assert_eq!(reg.get("/v2/pages/app/tags/list?n=0").json::<Value>().unwrap()["tags"], json!([]));
    assert_eq!(error_code(reg.get("/v2/nothing/tags/list")), "NAME_UNKNOWN");

    for repo in ["pages/b", "pages/c", "a/b/c/d"] {
        reg.push_image(repo, "v1", &[b"x"]);
    }
    let all: Value = reg.get("/v2/_catalog").json().unwrap();
    assert_eq!(all["repositories"], json!(["a/b/c/d", "pages/app", "pages/b", "pages/c"]));
    let r = reg.get("/v2/_catalog?n=3");
    assert_eq!(header(r.headers(), "link"), "</v2/_catalog?n=3&last=pages%2Fb>; rel=\"next\"");
    let r = reg.get("/v2/_catalog?n=3&last=pages%2Fb");
    assert_eq!(r.json::<Value>().unwrap()["repositories"], json!(["pages/c"]));
}

/// A listing never holds more than a page (1000, distribution's default) in memory: a
/// request without `n`, or with a larger one, gets that page and a `Link` to the next.
#[test]
fn listings_are_paged_at_a_thousand_whatever_n_says() {
    let w = Wharf::start();
    let reg = w.reg();
    let (manifest, _) = reg.push_image("many/tags", "t0000", &[b"layer"]);
    let tags: Vec<String> = (1..1005).map(|i| format!("t{i:04}")).collect();
    std::thread::scope(|scope| {
        for chunk in tags.chunks(251) {
            let (reg, manifest) = (&reg, &manifest);
            scope.spawn(move || {
                for t in chunk {
                    assert_eq!(
                        reg.put_manifest("many/tags", t, OCI_MANIFEST, manifest).status(),
                        201
                    );
                }
            });
        }
    });
    for query in ["", "?n=100000"] {
        let r = reg.get(&format!("/v2/many/tags/tags/list{query}"));
        assert_eq!(
            header(r.headers(), "link"),
            "</v2/many/tags/tags/list?n=1000&last=t0999>; rel=\"next\""
        );
        let page: Value = r.json().unwrap();
        assert_eq!(page["tags"].as_array().unwrap().len(), 1000);
    }
    let r = reg.get("/v2/many/tags/tags/list?n=1000&last=t0999");
    assert!(r.headers().get("link").is_none());
    assert_eq!(
        r.json::<Value>().unwrap()["tags"],
        json!(["t1000", "t1001", "t1002", "t1003", "t1004"])
    );
    // ACR's tag details likewise.
    let r = reg.get("/acr/v1/many/tags/_tags?n=5000");
    assert!(header(r.headers(), "link").contains("last=t0999"));
    assert_eq!(r.json::<Value>().unwrap()["tags"].as_array().unwrap().len(), 1000);
}

#[test]
fn referrers_are_listed_and_filtered() {
    let w = Wharf::start();
    let reg = w.reg();
    let (subject, sd) = reg.push_image("refs", "v1", &[b"app"]);
    let empty = reg.push_blob("refs", b"{}");
    let mut pushed = Vec::new();
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ]
    .iter()
    .enumerate()
    {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}, "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": sd, "size": subject.len()},
            "annotations": {"n": i.to_string()}});
        let m = serde_json::to_vec(&m).unwrap();
        let d = digest_of(&m);
        let r = reg.put_manifest("refs", &d, OCI_MANIFEST, &m);
        assert_eq!(header(r.headers(), "oci-subject"), sd);
        pushed.push((d, m.len(), at.to_string()));
    }
    let r = reg.get(&format!("/v2/refs/referrers/{sd}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "content-type"), OCI_INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index: Value = r.json().unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (d, size, at) in &pushed {
        let entry = listed.iter().find(|e| e["digest"] == *d).expect("each referrer is listed");
        assert_eq!(entry["size"], *size);
        assert_eq!(entry["artifactType"], *at);
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
    }

    let r = reg.get(&format!("/v2/refs/referrers/{sd}?artifactType=application/vnd.example.sig"));
    assert_eq!(header(r.headers(), "oci-filters-applied"), "artifactType");
    let index: Value = r.json().unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["annotations"]["n"], "1");

    // Paged with `Link`, the filter carried along: the two SBOMs one at a time.
    let mut url = format!("/v2/refs/referrers/{sd}?n=1&artifactType=application/vnd.example.sbom");
    let mut seen = Vec::new();
    loop {
        let r = reg.get(&url);
        let link = r.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
        let index: Value = r.json().unwrap();
        let page = index["manifests"].as_array().unwrap();
        assert!(page.len() <= 1);
        seen.extend(page.iter().map(|m| m["annotations"]["n"].as_str().unwrap().to_owned()));
        match link {
            Some(l) => url = l.trim_start_matches('<').split('>').next().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["0", "2"]);

    // Unknown subject: an empty index, not an error.
    let r = reg.get(&format!("/v2/refs/referrers/{}", digest_of(b"none")));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["manifests"], json!([]));
}

#[test]
fn deleting_tags_manifests_and_blobs() {
    let w = Wharf::start();
    let reg = w.reg();
    let layer = bytes(8, 500);
    let (manifest, d) = reg.push_image("del", "v1", &[&layer]);
    assert_eq!(reg.put_manifest("del", "v2", OCI_MANIFEST, &manifest).status(), 201);

    // Deleting a tag leaves the manifest and the other tag.
    assert_eq!(reg.delete("/v2/del/manifests/v1").status(), 202);
    assert_eq!(reg.get("/v2/del/manifests/v1").status(), 404);
    assert_eq!(reg.get("/v2/del/manifests/v2").status(), 200);
    assert_eq!(reg.get("/v2/del/tags/list").json::<Value>().unwrap()["tags"], json!(["v2"]));

    // Deleting by digest removes the manifest and every tag on it.
    assert_eq!(reg.delete(&format!("/v2/del/manifests/{d}")).status(), 202);
    assert_eq!(error_code(reg.get(&format!("/v2/del/manifests/{d}"))), "MANIFEST_UNKNOWN");
    assert_eq!(reg.get("/v2/del/manifests/v2").status(), 404);
    assert_eq!(reg.delete(&format!("/v2/del/manifests/{d}")).status(), 404);

    let ld = digest_of(&layer);
    assert_eq!(reg.delete(&format!("/v2/del/blobs/{ld}")).status(), 202);
    assert_eq!(reg.get(&format!("/v2/del/blobs/{ld}")).status(), 404);
    assert_eq!(error_code(reg.delete(&format!("/v2/del/blobs/{ld}"))), "BLOB_UNKNOWN");
}

#[test]
fn names_of_any_depth_up_to_255_characters() {
    let w = Wharf::start();
    let reg = w.reg();
    let deep = "a/b/c/d/e/f/g/h";
    reg.push_image(deep, "v1", &[b"deep"]);
    assert_eq!(reg.get(&format!("/v2/{deep}/manifests/v1")).status(), 200);
    // Path segments that look like API words are still names.
    let tricky = "x/manifests/blobs/tags/uploads/referrers";
    reg.push_image(tricky, "latest", &[b"tricky"]);
    assert_eq!(
        reg.get(&format!("/v2/{tricky}/tags/list")).json::<Value>().unwrap()["tags"],
        json!(["latest"])
    );

    let long = format!("{}/{}", "n".repeat(127), "m".repeat(127));
    assert_eq!(long.len(), 255);
    reg.push_image(&long, "v1", &[b"long"]);
    assert_eq!(reg.get(&format!("/v2/{long}/manifests/v1")).status(), 200);
}

#[test]
fn other_hosts_are_the_default_registry_unknown_registry_names_are_404() {
    let w = Wharf::start();
    let reg = w.reg();
    reg.push_image("hosted", "v1", &[b"h"]);
    for host in [
        "localhost",
        "127.0.0.1",
        "registry.example.com:443",
        &format!("default.localhost:{}", w.port),
    ] {
        let r =
            reg.http.get(reg.url("/v2/hosted/manifests/v1")).header("host", host).send().unwrap();
        assert_eq!(r.status(), 200, "host {host}");
    }
    // A login server naming no registry: never the default (a typo must not push elsewhere).
    let host = format!("nosuchregistry.localhost:{}", w.port);
    for path in ["/v2/", "/v2/hosted/manifests/v1"] {
        let r = reg.http.get(reg.url(path)).header("host", &host).send().unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(error_code(r), "NAME_UNKNOWN");
    }
    let r = reg.http.post(reg.url("/v2/x/blobs/uploads/")).header("host", &host).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn http2_clients_push_and_pull_with_streamed_bodies() {
    let w = Wharf::start();
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert("authorization", admin_basic().parse().unwrap());
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .default_headers(auth)
        .build()
        .unwrap();
    let blob = bytes(90, 300_000);
    let d = digest_of(&blob);
    let r = h2.post(format!("{}/v2/h2/blobs/uploads/", w.url())).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 202);
    let loc = format!("{}{}", w.url(), location(r.headers()));
    let r = h2.patch(&loc).body(blob[..100_000].to_vec()).send().unwrap();
    assert_eq!(r.status(), 202);
    let loc = format!("{}{}", w.url(), location(r.headers()));
    // The last chunk rides on the closing PUT as a stream: no Content-Length on HTTP/2.
    let rest = std::io::Cursor::new(blob[100_000..].to_vec());
    let r = h2
        .put(format!("{loc}?digest={d}"))
        .body(reqwest::blocking::Body::new(rest))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let got = h2.get(format!("{}/v2/h2/blobs/{d}", w.url())).send().unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), blob.as_slice());
}

#[test]
fn a_closing_put_whose_body_is_cut_short_can_be_sent_again() {
    let w = Wharf::start();
    let session = w.reg().start_upload("cut/short");
    let path = &session[session.find("/v2/").unwrap()..];
    let blob = bytes(50, 300_000);
    let digest = digest_of(&blob);
    let sep = if path.contains('?') { '&' } else { '?' };
    // The whole blob announced in the closing PUT, half of it sent, then the connection goes.
    let head = format!(
        "PUT {path}{sep}digest={digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n{ADMIN_AUTH_LINE}\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        blob.len()
    );
    raw_request(w.port, &head, &blob[..150_000], true);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.reg().head(&format!("/v2/cut/short/blobs/{digest}")).status(), 404);
    // The session is still there, empty: the same PUT again, whole, publishes the blob.
    let r = w
        .reg()
        .http
        .put(format!("{session}{sep}digest={digest}"))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    assert!(w.reg().get(&format!("/v2/cut/short/blobs/{digest}")).bytes().unwrap()[..] == blob[..]);
}
