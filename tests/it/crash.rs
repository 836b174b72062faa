//! kill -9 in the middle of pushes, many times: no blob file ever holds other bytes than
//! its name says, no tag points at anything missing, nothing acknowledged is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// A tiny deterministic PRNG so that a failing round can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Push one image, its blobs monolithic or chunked; `Err` if the server went away.
fn push_image(
    reg: &Reg,
    rng: &mut Lcg,
    repo: &str,
    tag: &str,
    seed: u64,
) -> Result<String, String> {
    let mut layers = Vec::new();
    for i in 0..(1 + rng.next(3)) {
        layers.push(bytes(seed * 10 + i, 1024 + rng.next(3 << 20) as usize));
    }
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    for blob in std::iter::once(&config).chain(layers.iter()) {
        let parts = if rng.next(2) == 0 { 1 } else { 3 };
        reg.try_push_blob(repo, blob, parts)?;
    }
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    reg.try_put_manifest(repo, tag, &image_manifest(&config, &refs))
}

/// Every tag resolves to a manifest whose bytes match its digest and whose blobs are
/// all there with the right bytes; every acknowledged push is still there.
fn verify(w: &Wharf, acknowledged: &HashMap<(String, String), String>) -> usize {
    let files = assert_blob_files_match_names(&w.data);
    let reg = w.reg();
    let catalog: Value = reg.get("/v2/_catalog").json().unwrap();
    let mut tags_seen = 0;
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags: Value = reg.get(&format!("/v2/{repo}/tags/list")).json().unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let r = reg.get(&format!("/v2/{repo}/manifests/{tag}"));
            assert_eq!(r.status(), 200, "{repo}:{tag} is listed but doesn't resolve");
            let header_digest = header(r.headers(), "docker-content-digest").to_owned();
            let body = r.bytes().unwrap();
            assert_eq!(digest_of(&body), header_digest);
            let m: Value = serde_json::from_slice(&body).unwrap();
            let blobs = std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap());
            for b in blobs {
                let d = b["digest"].as_str().unwrap();
                let r = reg.get(&format!("/v2/{repo}/blobs/{d}"));
                assert_eq!(r.status(), 200, "{repo}:{tag} needs {d}");
                assert_eq!(digest_of(&r.bytes().unwrap()), d);
            }
            tags_seen += 1;
        }
    }
    for ((repo, tag), digest) in acknowledged {
        let r = reg.head(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!(r.status(), 200, "acknowledged push {repo}:{tag} was lost");
        assert_eq!(header(r.headers(), "docker-content-digest"), digest);
    }
    assert!(files > 0 || acknowledged.is_empty());
    tags_seen
}

#[test]
fn kill_9_during_pushes_never_corrupts_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wharf::start_in(&tmp.path().join("data"), &[]);
    let acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let mut rng = Lcg(0x5eed);
    for round in 0..8u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let (stop, acked, base) = (stop.clone(), acknowledged.clone(), w.url());
                std::thread::spawn(move || {
                    let reg = Reg { base, http: client() };
                    let mut rng = Lcg(round * 100 + t);
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let (repo, tag) = (format!("crash/t{t}"), format!("r{round}-{i}"));
                        match push_image(&reg, &mut rng, &repo, &tag, round * 1000 + t * 100 + i) {
                            Ok(d) => {
                                acked.lock().unwrap().insert((repo, tag), d);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + rng.next(600)));
        w.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in workers {
            h.join().unwrap();
        }
        w.restart();
        let acked = acknowledged.lock().unwrap().clone();
        verify(&w, &acked);
    }
    assert!(acknowledged.lock().unwrap().len() >= 8, "pushes did get through between kills");
}
