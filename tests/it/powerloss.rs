//! Power loss: wharf's data directory on `powerfs`, a filesystem that forgets everything
//! not made durable by fsync when the "power" is cut. Rounds of: start wharf, push and
//! import under load, kill it at a random moment, cut the power, remount, restart — then
//! every blob, tag and upload session acknowledged before the cut must be there, whole.
//! (`kill -9` alone keeps the page cache, so it can't show a missing fsync; this can.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::powerfs::PowerFs;
use crate::util::*;

/// What the server acknowledged (a 201/202 reached the client) and must keep.
#[derive(Default)]
struct Acked {
    /// `(repo, digest, bytes)` of blobs.
    blobs: Vec<(String, String, Vec<u8>)>,
    /// `(repo, tag, manifest digest)`.
    tags: Vec<(String, String, String)>,
    /// Upload sessions with an acknowledged chunk: `(location path, bytes acked, all bytes)`.
    sessions: Vec<(String, usize, Vec<u8>)>,
    /// Imports that succeeded: `(repo, tag, manifest digest)`.
    imports: Vec<(String, String, String)>,
    /// How many of each were already checked after a cut (once durable, data stays so;
    /// the last check goes over everything again).
    checked: (usize, usize, usize),
}

/// A tiny deterministic generator (splitmix64): rounds are reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn power_cuts_never_lose_what_was_acknowledged() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "this test needs FUSE (/dev/fuse, and fusermount3 from Debian's fuse3); scripts/test.sh installs it"
    );
    let rounds: u64 =
        std::env::var("WHARF_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let seed: u64 =
        std::env::var("WHARF_POWER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        });
    println!("power-loss test: {rounds} cuts, seed {seed} (WHARF_POWER_SEED to replay)");
    let mut rng = Rng(seed);

    // An import source off the power-cut filesystem, with images of a few sizes.
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    let summary = make_images(
        &dist.host(),
        work.path(),
        &["--only", "single", "--sizes", "1m,2m,3m,4m,5m", "--layers", "2"],
    );
    let sources: Vec<(String, String)> = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| Some((i["ref"].as_str()?.to_owned(), i["digest"].as_str()?.to_owned())))
        .filter(|(r, _)| r.starts_with("harness/single:"))
        .collect();
    assert!(!sources.is_empty());

    let fs = PowerFs::new();
    let mnt = tempfile::tempdir().unwrap();
    let data = mnt.path().join("data");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let args = ["--gc-interval", "0", "--insecure-source", "127.0.0.1", "--import-sync-wait", "0s"];
    let (mut lost, mut corrupt) = (Vec::new(), 0usize);
    for round in 0..rounds {
        let mount = fs.mount(mnt.path()).expect("mount powerfs");
        let mut w = Wharf::start_in(&data, &args);
        // What the last cut must not have taken.
        lost.extend(check(&w, &mut acked.lock().unwrap(), round));
        resume_sessions(&w, &mut acked.lock().unwrap(), &mut lost);

        // Load: pushers of every kind, an import, and a cut at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for t in 0..3u64 {
            let (reg, acked, stop) = (w.reg(), acked.clone(), stop.clone());
            let port = w.port;
            let salt = rng.next();
            workers.push(std::thread::spawn(move || {
                push_until_stopped(&reg, port, &acked, &stop, round, t, salt)
            }));
        }
        let (src, digest) = &sources[(round as usize) % sources.len()];
        let import = {
            let (w_url, acked, stop) = (w.url(), acked.clone(), stop.clone());
            let (src, digest, host) = (src.clone(), digest.clone(), dist.host());
            let token = w.admin_token();
            std::thread::spawn(move || {
                import_once(&w_url, &token, &host, &src, &digest, round, &acked, &stop)
            })
        };
        std::thread::sleep(Duration::from_millis(50 + rng.below(1000)));
        w.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in workers {
            h.join().unwrap();
        }
        import.join().unwrap();
        drop(w);
        mount.unmount();
        fs.cut();
    }
    // After the last cut: everything, once more.
    let mount = fs.mount(mnt.path()).unwrap();
    let w = Wharf::start_in(&data, &args);
    let mut a = acked.lock().unwrap();
    a.checked = (0, 0, 0);
    lost.extend(check(&w, &mut a, rounds));
    corrupt += check_files(&data);
    let stats = fs.stats();
    println!(
        "{rounds} power cuts: {} blobs, {} tags, {} sessions, {} imports acknowledged; {} lost, {corrupt} corrupt blob files; {} file fsyncs, {} directory fsyncs, {} bytes lost at the last cut",
        a.blobs.len(),
        a.tags.len(),
        a.sessions.len(),
        a.imports.len(),
        lost.len(),
        stats.file_fsyncs,
        stats.dir_fsyncs,
        stats.last_cut_bytes_lost,
    );
    drop(w);
    mount.unmount();
    assert!(lost.is_empty(), "acknowledged data lost (seed {seed}):\n{}", lost.join("\n"));
    assert_eq!(corrupt, 0, "corrupt blob files (seed {seed})");
    assert!(
        a.tags.len() > rounds as usize && !a.imports.is_empty(),
        "the load did too little to prove anything"
    );
}

/// Every acknowledged blob and tag not checked yet is served whole, byte for byte.
fn check(w: &Wharf, a: &mut Acked, round: u64) -> Vec<String> {
    let reg = w.reg();
    let mut lost = Vec::new();
    let (b0, t0, i0) = a.checked;
    for (repo, digest, bytes) in &a.blobs[b0..] {
        match read(&reg, &format!("/v2/{repo}/blobs/{digest}")) {
            Ok(body) if body == *bytes => {}
            Ok(body) => lost.push(format!(
                "round {round}: blob {repo}@{digest} has other bytes ({} of {})",
                body.len(),
                bytes.len()
            )),
            Err(e) => lost.push(format!("round {round}: blob {repo}@{digest}: {e}")),
        }
    }
    for (repo, tag, digest) in a.tags[t0..].iter().chain(&a.imports[i0..]) {
        match manifest_bytes(&w.url(), None, repo, tag) {
            Some(m) if digest_of(&m) == *digest => {
                let v: Value = serde_json::from_slice(&m).unwrap();
                let mut blobs: Vec<&Value> =
                    v["layers"].as_array().map(|l| l.iter().collect()).unwrap_or_default();
                blobs.push(&v["config"]);
                for b in blobs {
                    let d = b["digest"].as_str().unwrap_or_default();
                    match read(&reg, &format!("/v2/{repo}/blobs/{d}")) {
                        Ok(body) if digest_of(&body) == d => {}
                        Ok(_) => {
                            lost.push(format!("round {round}: {repo}:{tag} has a corrupt blob {d}"))
                        }
                        Err(e) => {
                            lost.push(format!("round {round}: {repo}:{tag} lost blob {d}: {e}"))
                        }
                    }
                }
            }
            Some(m) => {
                lost.push(format!("round {round}: {repo}:{tag} now points at {}", digest_of(&m)))
            }
            None => lost.push(format!("round {round}: tag {repo}:{tag} is gone")),
        }
    }
    a.checked = (a.blobs.len(), a.tags.len(), a.imports.len());
    lost
}

/// A whole 200 answer, or what went wrong.
fn read(reg: &Reg, path: &str) -> Result<Vec<u8>, String> {
    let r = reg.http.get(reg.url(path)).send().map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(r.status().to_string());
    }
    r.bytes().map(|b| b.to_vec()).map_err(|e| format!("the body broke off: {e}"))
}

/// Blob files that don't hash to their names.
fn check_files(data: &Path) -> usize {
    let mut bad = 0;
    let Ok(shards) = std::fs::read_dir(data.join("blobs/sha256")) else { return 0 };
    for shard in shards.flatten() {
        for f in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            let bytes = std::fs::read(f.path()).unwrap_or_default();
            if digest_of(&bytes) != format!("sha256:{}", f.file_name().to_string_lossy()) {
                eprintln!("corrupt blob file {} ({} bytes)", f.path().display(), bytes.len());
                bad += 1;
            }
        }
    }
    bad
}

/// Sessions acknowledged before the cut go on from where the server says they are (at
/// least where they were acknowledged) and finish as the blob they were meant to be.
fn resume_sessions(w: &Wharf, a: &mut Acked, lost: &mut Vec<String>) {
    let reg = w.reg();
    for (path, acked_len, bytes) in std::mem::take(&mut a.sessions) {
        let Ok(r) = reg.http.get(reg.url(&path)).send() else {
            lost.push(format!("upload session {path}: the server did not answer"));
            continue;
        };
        if r.status() != 204 {
            lost.push(format!(
                "upload session {path} with {acked_len} bytes acknowledged: {}",
                r.status()
            ));
            continue;
        }
        let range = header(r.headers(), "range").to_owned();
        let held: usize =
            range.split('-').nth(1).and_then(|e| e.parse::<usize>().ok()).map_or(0, |e| e + 1);
        if held < acked_len {
            lost.push(format!(
                "upload session {path} holds {held} bytes, {acked_len} were acknowledged"
            ));
            continue;
        }
        let digest = digest_of(&bytes);
        let Ok(r) = reg
            .http
            .put(reg.url(&format!("{path}?digest={digest}")))
            .header("content-range", format!("{held}-{}", bytes.len() - 1))
            .body(bytes[held..].to_vec())
            .send()
        else {
            lost.push(format!("upload session {path}: the server did not answer the last chunk"));
            continue;
        };
        if r.status() != 201 {
            lost.push(format!(
                "upload session {path} could not finish: {} {}",
                r.status(),
                r.text().unwrap_or_default()
            ));
            continue;
        }
        let repo =
            path.trim_start_matches("/v2/").split("/blobs/").next().unwrap_or_default().to_owned();
        a.blobs.push((repo, digest, bytes));
    }
}

/// Push until told to stop (or the server is gone): images by monolithic and chunked
/// uploads, sessions left open after an acknowledged chunk, and sessions finished right
/// after a chunk that broke off.
fn push_until_stopped(
    reg: &Reg,
    port: u16,
    acked: &Mutex<Acked>,
    stop: &AtomicBool,
    round: u64,
    thread: u64,
    salt: u64,
) {
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert("authorization", admin_basic().parse().unwrap());
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(auth)
        .build()
        .unwrap();
    let reg = Reg { base: reg.base.clone(), http: quick };
    let mut rng = Rng(salt);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let repo = format!("r{round}/t{thread}");
        let seed = salt ^ i;
        let ok = match rng.below(4) {
            0 | 1 => push_image(&reg, acked, &repo, &format!("v{i}"), seed),
            2 => leave_session_open(&reg, acked, &repo, seed),
            _ => finish_after_torn_chunk(&reg, port, acked, &repo, seed),
        };
        if !ok {
            return; // killed
        }
    }
}

fn push_image(reg: &Reg, acked: &Mutex<Acked>, repo: &str, tag: &str, seed: u64) -> bool {
    let layers: Vec<Vec<u8>> = (0..2)
        .map(|k| bytes(seed.wrapping_mul(3).wrapping_add(k), 1000 + (seed as usize % 60_000)))
        .collect();
    let config = bytes(seed.wrapping_mul(3).wrapping_add(2), 200);
    for blob in layers.iter().chain([&config]) {
        let d = digest_of(blob);
        // Alternate monolithic and two-chunk uploads.
        let done =
            reg.try_push_blob(repo, blob, if seed.is_multiple_of(2) { 1 } else { 2 }).is_ok();
        if !done {
            return false;
        }
        acked.lock().unwrap().blobs.push((repo.to_owned(), d, blob.clone()));
    }
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let Ok(digest) = reg.try_put_manifest(repo, tag, &image_manifest(&config, &refs)) else {
        return false;
    };
    acked.lock().unwrap().tags.push((repo.to_owned(), tag.to_owned(), digest));
    true
}

/// POST and one acknowledged PATCH; the session is resumed after the next cut.
fn leave_session_open(reg: &Reg, acked: &Mutex<Acked>, repo: &str, seed: u64) -> bool {
    let blob = bytes(seed, 20_000 + (seed as usize % 40_000));
    let Ok(r) = reg.http.post(reg.url(&format!("/v2/{repo}/blobs/uploads/"))).send() else {
        return false;
    };
    if r.status() != 202 {
        return false;
    }
    let loc = location(r.headers()).to_owned();
    let half = blob.len() / 2;
    let Ok(r) = reg
        .http
        .patch(reg.url(&loc))
        .header("content-range", format!("0-{}", half - 1))
        .body(blob[..half].to_vec())
        .send()
    else {
        return false;
    };
    if r.status() != 202 {
        return false;
    }
    let path = location(r.headers()).to_owned();
    let path = path.split('?').next().unwrap_or(&path).to_owned();
    acked.lock().unwrap().sessions.push((path, half, blob));
    true
}

/// A session whose second chunk breaks off (the connection drops mid-body), finished with
/// the first chunk alone: what the broken chunk left on disk must not end up in the blob.
fn finish_after_torn_chunk(
    reg: &Reg,
    port: u16,
    acked: &Mutex<Acked>,
    repo: &str,
    seed: u64,
) -> bool {
    let blob = bytes(seed, 10_000 + (seed as usize % 30_000));
    let Ok(r) = reg.http.post(reg.url(&format!("/v2/{repo}/blobs/uploads/"))).send() else {
        return false;
    };
    if r.status() != 202 {
        return false;
    }
    let loc = reg.url(location(r.headers()));
    let Ok(r) = reg
        .http
        .patch(&loc)
        .header("content-range", format!("0-{}", blob.len() - 1))
        .body(blob.clone())
        .send()
    else {
        return false;
    };
    if r.status() != 202 {
        return false;
    }
    let next = location(r.headers()).to_owned();
    let path = next.strip_prefix(&reg.base).unwrap_or(&next).to_owned();
    // The torn chunk: 40 000 bytes promised, 25 000 sent, then the connection closes.
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Range: {}-{}\r\nContent-Length: 40000\r\n\r\n",
        blob.len(),
        blob.len() + 39_999
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&bytes(seed ^ 0xdead, 25_000));
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.read_to_end(&mut sink);
    let next = reg.url(&path);
    let sep = if next.contains('?') { '&' } else { '?' };
    let Ok(r) = reg.http.put(format!("{next}{sep}digest={}", digest_of(&blob))).send() else {
        return false;
    };
    if r.status() != 201 {
        return false;
    }
    acked.lock().unwrap().blobs.push((repo.to_owned(), digest_of(&blob), blob));
    true
}

/// One import from the distribution registry; acknowledged when its operation succeeded.
#[allow(clippy::too_many_arguments)]
fn import_once(
    wharf: &str,
    token: &str,
    source: &str,
    image: &str,
    digest: &str,
    round: u64,
    acked: &Mutex<Acked>,
    stop: &AtomicBool,
) {
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(auth)
        .build()
        .unwrap();
    let url = format!("{wharf}{}/importImage?{API}", registry_id("default"));
    let tag = format!("v{round}");
    let body = serde_json::json!({"source": {"registryUri": source, "sourceImage": image}, "targetTags": [format!("imported:{tag}")]});
    let Ok(r) = quick.post(&url).json(&body).send() else { return };
    let Some(location) =
        r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned)
    else {
        return;
    };
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
        let Ok(r) = quick.get(&location).send() else { return };
        let code = r.status().as_u16();
        if code == 200 {
            acked.lock().unwrap().imports.push(("imported".into(), tag, digest.to_owned()));
            return;
        }
        if code != 202 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
