//! Bad input gets the OCI error code it deserves, and stores nothing.

use serde_json::{Value, json};

use crate::util::*;

fn uploads_left(w: &Wharf) -> usize {
    std::fs::read_dir(w.data.join("uploads")).unwrap().count()
}

#[test]
fn wrong_digest_stores_nothing() {
    let w = Wharf::start();
    let reg = w.reg();
    let blob = bytes(10, 10_000);
    let claimed = digest_of(b"other bytes");
    let r = reg
        .http
        .post(reg.url(&format!("/v2/bad/blobs/uploads/?digest={claimed}")))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r), "DIGEST_INVALID");
    assert_eq!(reg.head(&format!("/v2/bad/blobs/{claimed}")).status(), 404);
    assert_eq!(reg.head(&format!("/v2/bad/blobs/{}", digest_of(&blob))).status(), 404);

    // The same through an upload session: the session is gone afterwards.
    let loc = reg.start_upload("bad");
    reg.http.patch(&loc).body(blob.clone()).send().unwrap();
    let r = reg.http.put(format!("{loc}?digest={claimed}")).send().unwrap();
    assert_eq!(error_code(r), "DIGEST_INVALID");
    assert_eq!(error_code(reg.http.get(&loc).send().unwrap()), "BLOB_UPLOAD_UNKNOWN");

    // Malformed and unsupported digests.
    let r = reg
        .http
        .post(reg.url("/v2/bad/blobs/uploads/?digest=sha256:xyz"))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(error_code(r), "DIGEST_INVALID");
    let r = reg
        .http
        .post(reg.url(&format!("/v2/bad/blobs/uploads/?digest=sha512:{}", "a".repeat(128))))
        .body(blob)
        .send()
        .unwrap();
    assert_eq!(error_code(r), "UNSUPPORTED");
    let r = reg.http.put(format!("{}?", reg.start_upload("bad"))).send().unwrap();
    assert_eq!(error_code(r), "DIGEST_INVALID");

    assert_eq!(crate::util::assert_blob_files_match_names(&w.data), 0);
    // Only the session opened for the missing-digest PUT remains.
    assert_eq!(uploads_left(&w), 1);
}

#[test]
fn truncated_bodies_store_nothing() {
    let w = Wharf::start();
    let blob = bytes(11, 1000);
    let d = digest_of(&blob);
    // Monolithic: Content-Length says 1000, 500 arrive, the client hangs up.
    let head = format!(
        "POST /v2/trunc/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    raw_request(w.port, &head, &blob[..500], true);
    // A chunk that breaks off leaves the session where it was.
    let reg = w.reg();
    let loc = reg.start_upload("trunc");
    let path = loc.trim_start_matches(&reg.base).to_owned();
    reg.http.patch(&loc).body(blob[..100].to_vec()).send().unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Length: 900\r\nContent-Range: 100-999\r\n\r\n"
    );
    raw_request(w.port, &head, &blob[100..400], true);
    std::thread::sleep(std::time::Duration::from_millis(300));

    assert_eq!(reg.head(&format!("/v2/trunc/blobs/{d}")).status(), 404);
    let r = reg.http.get(&loc).send().unwrap();
    assert_eq!(header(r.headers(), "range"), "0-99");
    // The upload continues cleanly from there.
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "100-999")
        .body(blob[100..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(reg.http.put(format!("{loc}?digest={d}")).send().unwrap().status(), 201);
    assert_eq!(reg.get(&format!("/v2/trunc/blobs/{d}")).bytes().unwrap().as_ref(), blob.as_slice());
    assert_eq!(uploads_left(&w), 0, "the broken monolithic push left no data behind");
}

#[test]
fn bad_content_range() {
    let w = Wharf::start();
    let reg = w.reg();
    let loc = reg.start_upload("cr");
    let r = reg
        .http
        .patch(&loc)
        .header("content-range", "bytes=abc")
        .body(vec![0u8; 10])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r), "BLOB_UPLOAD_INVALID");
    // The range says 20 bytes, the body has 10.
    let r =
        reg.http.patch(&loc).header("content-range", "0-19").body(vec![0u8; 10]).send().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r), "SIZE_INVALID");
    let r = reg.http.get(&loc).send().unwrap();
    assert_eq!(header(r.headers(), "range"), "0-0", "nothing was recorded");
}

#[test]
fn invalid_names_and_tags() {
    let w = Wharf::start();
    let reg = w.reg();
    let long = "a".repeat(256);
    for name in ["UPPER", "a//b", "-lead", "trail-", "a..b", "a%2fb", long.as_str()] {
        let r = reg.get(&format!("/v2/{name}/tags/list"));
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(error_code(r), "NAME_INVALID", "{name}");
        let r = reg.http.post(reg.url(&format!("/v2/{name}/blobs/uploads/"))).send().unwrap();
        assert_eq!(error_code(r), "NAME_INVALID", "{name}");
    }
    let config = reg.push_blob("tags", b"{}");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2}, "layers": []});
    let m = serde_json::to_vec(&m).unwrap();
    for tag in [".dot", "-dash", &"t".repeat(129)] {
        let r = reg.put_manifest("tags", tag, OCI_MANIFEST, &m);
        assert_eq!(r.status(), 400, "{tag}");
        assert_eq!(error_code(r), "TAG_INVALID", "{tag}");
    }
    assert_eq!(error_code(reg.get("/v2/tags/tags/list")), "NAME_UNKNOWN", "nothing was stored");
}

#[test]
fn malformed_and_oversized_manifests() {
    let w = Wharf::start();
    let reg = w.reg();
    for body in [
        &b"{not json"[..],
        b"[]",
        br#"{"schemaVersion":1,"name":"x"}"#,
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
    ] {
        let r = reg.put_manifest("mf", "v1", OCI_MANIFEST, body);
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(error_code(r), "MANIFEST_INVALID");
    }
    // mediaType in the body disagrees with Content-Type.
    let config = reg.push_blob("mf", b"{}");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2}, "layers": []});
    let m = serde_json::to_vec(&m).unwrap();
    assert_eq!(error_code(reg.put_manifest("mf", "v1", DOCKER_MANIFEST, &m)), "MANIFEST_INVALID");
    // A descriptor whose size disagrees with the stored blob.
    let wrong_size = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 3}, "layers": []}))
    .unwrap();
    assert_eq!(
        error_code(reg.put_manifest("mf", "v1", OCI_MANIFEST, &wrong_size)),
        "MANIFEST_INVALID"
    );
    assert_eq!(error_code(reg.get("/v2/mf/tags/list")), "NAME_UNKNOWN");

    // 4 MiB is the limit: a manifest of exactly 4 MiB is taken, one byte more is 413.
    let limit = 4 << 20;
    let padded = |len: usize| {
        let base = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2}, "layers": [],
            "annotations": {"pad": ""}}))
        .unwrap();
        let pad = "p".repeat(len - base.len());
        let s =
            String::from_utf8(base).unwrap().replace("\"pad\":\"\"", &format!("\"pad\":\"{pad}\""));
        assert_eq!(s.len(), len);
        s.into_bytes()
    };
    let r = reg.put_manifest("mf", "big", OCI_MANIFEST, &padded(limit + 1));
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r), "SIZE_INVALID");
    assert_eq!(reg.get("/v2/mf/manifests/big").status(), 404);
    assert_eq!(reg.put_manifest("mf", "big", OCI_MANIFEST, &padded(limit)).status(), 201);
}

#[test]
fn unknown_uploads() {
    let w = Wharf::start();
    let reg = w.reg();
    let random = "/v2/up/blobs/uploads/6f9619ff-8b86-d011-b42d-00cf4fc964ff";
    assert_eq!(error_code(reg.get(random)), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        error_code(reg.http.patch(reg.url(random)).body(vec![1]).send().unwrap()),
        "BLOB_UPLOAD_UNKNOWN"
    );
    let r = reg.http.put(reg.url(&format!("{random}?digest={}", digest_of(b"")))).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(error_code(reg.get("/v2/up/blobs/uploads/not-a-uuid")), "BLOB_UPLOAD_UNKNOWN");
    // A session belongs to its repository.
    let loc = reg.start_upload("up");
    let other = loc.replace("/v2/up/", "/v2/other/");
    assert_eq!(error_code(reg.http.get(&other).send().unwrap()), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn path_traversal_is_refused() {
    let w = Wharf::start();
    let reg = w.reg();
    let d = digest_of(b"x");
    for path in [
        "/v2/../../etc/passwd/tags/list".to_owned(),
        "/v2/a/%2e%2e/%2e%2e/b/tags/list".to_owned(),
        format!("/v2/a/..%2f..%2fetc/blobs/{d}"),
        "/v2/a/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd".to_owned(),
        "/v2/a/manifests/..%2f..%2fx".to_owned(),
        "/v2/a/blobs/uploads/..%2f..%2fwharf.db".to_owned(),
    ] {
        // Sent as-is: reqwest would normalise `..` away.
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Connection: close\r\n\r\n");
        let res = raw_request(w.port, &head, b"", false);
        let status: u16 = res[9..12].parse().unwrap();
        assert!(status == 400 || status == 404, "{path}: {res}");
        let body = res.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{path}: OCI error body, got {body:?}"));
        assert!(v["errors"][0]["code"].is_string(), "{path}: {body}");
    }
    // Nothing outside the data directory was created or read; the server is fine.
    assert_eq!(reg.get("/v2/").status(), 200);
}
