//! Garbage collection: what nothing uses goes, what anything uses stays — also while
//! pushes go on.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

fn blob_file(w: &Wharf, d: &str) -> std::path::PathBuf {
    let hex = d.trim_start_matches("sha256:");
    w.data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn wharf_gc(w: &Wharf) -> Value {
    serde_json::from_str(&cli(w, &["gc"]).stdout).unwrap()
}

#[test]
fn gc_removes_only_what_nothing_references() {
    let w = Wharf::start_with(&["--gc-grace", "0s", "--gc-interval", "0"]);
    let reg = w.reg();
    let (own_a, own_b, shared) = (bytes(30, 3000), bytes(31, 3000), bytes(32, 3000));
    let (_, da) = reg.push_image("gc/a", "v1", &[&own_a, &shared]);
    reg.push_image("gc/b", "v1", &[&own_b, &shared]);
    // A blob pushed and never used.
    let stray = reg.push_blob("gc/a", &bytes(33, 100));

    assert_eq!(reg.delete(&format!("/v2/gc/a/manifests/{da}")).status(), 202);
    let report = wharf_gc(&w);
    // a's layer, a's config and the stray blob.
    assert_eq!(report["blobsDeleted"], 3, "{report}");
    assert!(!blob_file(&w, &digest_of(&own_a)).exists());
    assert!(!blob_file(&w, &stray).exists());
    assert!(blob_file(&w, &digest_of(&shared)).exists());
    assert!(blob_file(&w, &digest_of(&own_b)).exists());
    // b is whole; a's blobs are no longer served.
    for l in [&own_b, &shared] {
        assert_eq!(
            reg.get(&format!("/v2/gc/b/blobs/{}", digest_of(l))).bytes().unwrap().as_ref(),
            l.as_slice()
        );
    }
    assert_eq!(reg.get(&format!("/v2/gc/a/blobs/{}", digest_of(&own_a))).status(), 404);
    assert_blob_files_match_names(&w.data);
    // Nothing more to do the second time.
    assert_eq!(wharf_gc(&w)["blobsDeleted"], 0);
}

#[test]
fn gc_keeps_recent_blobs_within_the_grace_period() {
    let w = Wharf::start_with(&["--gc-interval", "0"]); // default grace: 1h
    let reg = w.reg();
    let d = reg.push_blob("grace", &bytes(34, 100));
    assert_eq!(wharf_gc(&w)["blobsDeleted"], 0);
    assert!(blob_file(&w, &d).exists());
}

#[test]
fn gc_removes_abandoned_uploads() {
    let w = Wharf::start_with(&["--upload-ttl", "0s", "--gc-interval", "0"]);
    let reg = w.reg();
    let loc = reg.start_upload("abandoned");
    reg.http.patch(&loc).body(vec![7u8; 1000]).send().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(wharf_gc(&w)["uploadsRemoved"], 1);
    assert_eq!(error_code(reg.http.get(&loc).send().unwrap()), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(std::fs::read_dir(w.data.join("uploads")).unwrap().count(), 0);
}

#[test]
fn background_gc_runs_on_its_interval() {
    // A grace of 2 s, not 0: with none, a pass may fall between the blob's push and its
    // manifest's (then the push fails cleanly, which is another test's subject).
    let w = Wharf::start_with(&["--gc-grace", "2s", "--gc-interval", "500ms"]);
    let reg = w.reg();
    let layer = bytes(35, 1000);
    let (_, d) = reg.push_image("bg", "v1", &[&layer]);
    reg.delete(&format!("/v2/bg/manifests/{d}"));
    let file = blob_file(&w, &digest_of(&layer));
    for _ in 0..300 {
        if !file.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the background GC didn't remove {}", file.display());
}

#[test]
fn gc_while_pushing_keeps_every_pushed_image_whole() {
    // Grace 0: GC may take a blob between its push and its manifest; the manifest PUT
    // then fails cleanly (MANIFEST_BLOB_UNKNOWN) and the client pushes again. What must
    // never happen is a stored manifest with a missing blob.
    let w = Wharf::start_with(&["--gc-grace", "0s", "--gc-interval", "0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let gc = {
        let (stop, url, token) = (stop.clone(), w.url(), w.admin_token());
        std::thread::spawn(move || {
            let mut passes = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = anon_client()
                    .post(format!("{url}/_wharf/gc"))
                    .bearer_auth(&token)
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
                passes += 1;
                // A pass every few milliseconds, as a busy schedule would run them (back to
                // back, no push could ever get its manifest in between).
                std::thread::sleep(Duration::from_millis(50));
            }
            passes
        })
    };
    let reg = w.reg();
    let mut tagged = Vec::new();
    let shared = bytes(40, 50_000);
    for i in 0..40u64 {
        let own = bytes(100 + i, 20_000 + i as usize);
        let config = format!("{{\"i\":{i}}}").into_bytes();
        let manifest = image_manifest(&config, &[&own, &shared]);
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 50, "could never push image {i}");
            for b in [&config, &own, &shared] {
                reg.push_blob("busy", b);
            }
            let r = reg.put_manifest("busy", &format!("v{i}"), OCI_MANIFEST, &manifest);
            match r.status().as_u16() {
                201 => break,
                400 => assert_eq!(error_code(r), "MANIFEST_BLOB_UNKNOWN"),
                s => panic!("unexpected {s}"),
            }
        }
        tagged.push((format!("v{i}"), manifest));
        if i % 5 == 4 {
            // Delete an older image so that GC has real work.
            let (tag, m) = tagged.remove(0);
            assert_eq!(
                reg.delete(&format!("/v2/busy/manifests/{}", digest_of(&m))).status(),
                202,
                "{tag}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(gc.join().unwrap() > 5, "GC ran during the pushes");
    for (tag, m) in &tagged {
        let r = reg.get(&format!("/v2/busy/manifests/{tag}"));
        assert_eq!(r.bytes().unwrap().as_ref(), m.as_slice());
        let v: Value = serde_json::from_slice(m).unwrap();
        for b in std::iter::once(&v["config"]).chain(v["layers"].as_array().unwrap()) {
            let d = b["digest"].as_str().unwrap();
            let r = reg.get(&format!("/v2/busy/blobs/{d}"));
            assert_eq!(r.status(), 200, "{tag} lost {d}");
            assert_eq!(digest_of(&r.bytes().unwrap()), d);
        }
    }
    assert_blob_files_match_names(&w.data);
}

#[test]
fn gc_cli_reports_an_unreachable_server_in_one_line() {
    let out = Command::new(wharf_bin())
        .args(["gc", "--server", &format!("http://127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the wharf server"), "{err}");
}

#[test]
fn bytes_left_without_a_row_are_collected_in_one_pass() {
    // What a crash between a blob's publication and its row leaves: files nothing records.
    let w = Wharf::start_with(&["--gc-grace", "0s", "--gc-interval", "0"]);
    let (_, kept) = w.reg().push_image("gc/kept", "v1", &[&bytes(40, 2000)]);
    // Spread over the digest space, so that wherever the pass's scan starts some lie before
    // it and some after.
    let orphans: Vec<Vec<u8>> = (0..12).map(|i| bytes(100 + i, 500)).collect();
    for o in &orphans {
        let path = blob_file(&w, &digest_of(o));
        std::fs::write(&path, o).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let report = wharf_gc(&w);
    assert_eq!(report["blobsDeleted"], 12, "{report}");
    for o in &orphans {
        assert!(!blob_file(&w, &digest_of(o)).exists());
    }
    assert_eq!(w.reg().get("/v2/gc/kept/manifests/v1").status(), 200);
    assert_eq!(w.reg().head(&format!("/v2/gc/kept/manifests/{kept}")).status(), 200);
    assert_eq!(wharf_gc(&w)["blobsDeleted"], 0);
}
