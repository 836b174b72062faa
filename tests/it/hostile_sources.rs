//! Hostile and broken sources for import: endless answers, drips, huge or looping manifest
//! graphs, redirects to refused addresses; and the job controls that bound them (queue,
//! deadline, cancel, a retry budget that counts only attempts without progress).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::util::*;

/// Start an import into the default registry through the ARM API; its operation URL.
fn submit(w: &Wharf, registry_uri: &str, image: &str, tag: &str) -> String {
    let url = format!("{}{}/importImage?{API}", w.url(), registry_id("default"));
    let body =
        json!({"source": {"registryUri": registry_uri, "sourceImage": image}, "targetTags": [tag]});
    let r = w.arm_client().post(&url).json(&body).send().unwrap();
    assert!(r.status() == 202 || r.status() == 200, "{}: {}", r.status(), r.text().unwrap());
    header(r.headers(), "location").to_owned()
}

/// Poll an operation to its end; the final status code and body.
fn outcome(w: &Wharf, location: &str, within: Duration) -> (u16, Value) {
    let deadline = Instant::now() + within;
    let http = w.arm_client();
    loop {
        let r = http.get(location).send().unwrap();
        let code = r.status().as_u16();
        let v: Value = r.json().unwrap_or(Value::Null);
        if code != 202 {
            return (code, v);
        }
        assert!(Instant::now() < deadline, "the import is still running: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn error_code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn malicious_sources_each_fail_typed_and_in_bounds_while_a_healthy_import_goes_on() {
    let evil = EvilSource::start();
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), work.path(), &["--only", "single", "--sizes", "50m"]);
    let w = Wharf::start_with_config(
        r#"
[import]
insecure_sources = ["127.0.0.1"]
sync_wait = "0s"
max_running = 32
deadline = "30s"
request_timeout = "5s"
read_timeout = "3s"
min_throughput = "1KiB"
throughput_window = "6s"
"#,
        &[],
    );
    // Alone first, for the comparison below.
    let t = Instant::now();
    let (code, _) = outcome(
        &w,
        &submit(&w, &dist.host(), "harness/single:50m", "alone:v1"),
        Duration::from_secs(60),
    );
    assert_eq!(code, 200);
    let alone = t.elapsed();

    // A source that always answers 429 pauses every request to it: it gets a host of its own.
    let throttling = EvilSource::start();
    let expected = [
        ("endless404", "SourceImageNotFound"),
        ("endless401", "SourceResponseTooLarge"),
        ("endless500", "SourceUnreachable"),
        ("always429", "ImportDeadlineExceeded"),
        ("endlessmanifest", "SourceResponseTooLarge"),
        ("endlessreferrers", "SourceResponseTooLarge"),
        ("endlessblob", "SourceDigestMismatch"),
        ("dripmanifest", "SourceTooSlow"),
        ("dripblob", "SourceTooSlow"),
        ("wideindex", "ImportLimitExceeded"),
        ("cycle", "SourceDigestMismatch"),
        ("referrerloop", "SourceReferrerLoop"),
        ("overflow", "ImportLimitExceeded"),
        ("redirect", "SourceAddressNotAllowed"),
    ];
    let started = Instant::now();
    let ops: Vec<(&str, &str, String)> = expected
        .iter()
        .map(|(scenario, code)| {
            let host = if *scenario == "always429" { throttling.host() } else { evil.host() };
            (
                *scenario,
                *code,
                submit(&w, &host, &format!("{scenario}/img:v1"), &format!("{scenario}:v1")),
            )
        })
        .collect();
    // The healthy import, at the same time, and the server's memory all along.
    let peak = std::sync::Mutex::new(0.0f64);
    let done = std::sync::atomic::AtomicBool::new(false);
    let w = &w;
    let (healthy, healthy_time) = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = w.rss_mib();
                let mut p = peak.lock().unwrap();
                *p = p.max(rss);
                drop(p);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Each operation polled on its own, so that each one's end is seen when it comes.
        let polls: Vec<_> = ops
            .iter()
            .map(|(scenario, want, op)| {
                s.spawn(move || {
                    let (code, v) = outcome(w, op, Duration::from_secs(60));
                    (*scenario, *want, code, v, started.elapsed())
                })
            })
            .collect();
        let t = Instant::now();
        let r = outcome(
            w,
            &submit(w, &dist.host(), "harness/single:50m", "healthy:v1"),
            Duration::from_secs(60),
        );
        let took = t.elapsed();
        let results: Vec<_> = polls.into_iter().map(|p| p.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        ((r, results), took)
    });
    let ((code, _), results) = healthy;
    assert_eq!(code, 200, "the healthy import succeeds");
    let peak = *peak.lock().unwrap();
    println!(
        "a healthy 50 MiB import: {alone:?} alone, {healthy_time:?} beside 14 hostile sources; server peak RSS {peak:.1} MiB"
    );
    for (scenario, _, code, v, at) in &results {
        println!(
            "{scenario:18} {code} {:26} after {:>5.1} s: {}",
            error_code_of(v),
            at.as_secs_f64(),
            v["error"]["message"]
        );
    }
    for (scenario, want, code, v, at) in &results {
        assert_eq!(error_code_of(v), *want, "{scenario}: {code} {v}");
        assert!(
            *at < Duration::from_secs(34),
            "{scenario} ended after {at:?}, past its 30 s deadline"
        );
    }
    assert!(peak <= 128.0, "hostile sources took the server to {peak:.1} MiB");
    // The wide index was refused before any of its 20 000 children was fetched.
    let stats = evil.stats();
    assert_eq!(stats["wideindex/manifests"], 1, "{stats}");
    // A signed redirect URL is never shown, stored or logged.
    let redirect = results.iter().find(|r| r.0 == "redirect").unwrap();
    assert!(!redirect.3.to_string().contains("SECRETSIGNATURE"), "{}", redirect.3);
    assert!(!w.log().contains("SECRETSIGNATURE"), "the signed URL reached the log");
    // Nothing of the failed imports became visible.
    let catalog: Value = w.reg().get("/v2/_catalog").json().unwrap();
    assert_eq!(catalog["repositories"], json!(["alone", "healthy"]));
}

#[test]
fn jobs_wait_for_a_slot_can_be_cancelled_and_end_at_their_deadline() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    make_images(&dist.host(), work.path(), &["--only", "single", "--sizes", "20m,24m"]);
    // 20 MiB at 1 MB/s: a job that runs long enough to be watched.
    let slow = FaultProxy::start(&dist.host(), &["--rate", "1000000"]);
    let w = Wharf::start_with_config(
        "[import]\ninsecure_sources = [\"127.0.0.1\"]\nsync_wait = \"0s\"\nmax_running = 1\ndeadline = \"6s\"\n",
        &[],
    );
    let first = submit(&w, &slow.host(), "harness/single:20m", "first:v1");
    std::thread::sleep(Duration::from_millis(500));
    let second = submit(&w, &dist.host(), "harness/single:20m", "second:v1");
    // The second waits for the only slot, and says so.
    let r = w.arm_client().get(&second).send().unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], "Accepted");
    assert_eq!(v["progress"]["phase"], "Queued", "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("import.max_running")), "{v}");
    // Cancelling the first frees the slot: it ends Canceled, the second runs and succeeds.
    let id = first.split("/operationResults/").nth(1).unwrap().split('?').next().unwrap();
    let out = cli(&w, &["operation", "cancel", id]).ok_json();
    assert_eq!(out["status"], "Canceling");
    let (code, v) = outcome(&w, &first, Duration::from_secs(15));
    assert_eq!((code, error_code_of(&v)), (400, "ImportCanceled"), "{v}");
    assert_eq!(outcome(&w, &second, Duration::from_secs(30)).0, 200);
    // Cancelling a finished one is a conflict; an unknown one is 404.
    let err = cli(&w, &["operation", "cancel", id]).err_line();
    assert!(err.contains("OperationNotCancelable"), "{err}");
    let err = cli(&w, &["operation", "cancel", "registries-00000000-0000-0000-0000-000000000000"])
        .err_line();
    assert!(err.contains("OperationNotFound"), "{err}");
    // A job slower than its deadline ends ImportDeadlineExceeded, leaving nothing behind.
    let t = Instant::now();
    let (code, v) = outcome(
        &w,
        &submit(&w, &slow.host(), "harness/single:24m", "late:v1"),
        Duration::from_secs(30),
    );
    assert_eq!((code, error_code_of(&v)), (400, "ImportDeadlineExceeded"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(20));
    let r = w.reg().get("/v2/late/tags/list");
    assert_eq!(r.status(), 404);
    let r = w.reg().get("/v2/first/tags/list");
    assert_eq!(r.status(), 404);
}

#[test]
fn a_source_that_cuts_every_answer_still_finishes_because_each_break_made_progress() {
    let dist = Distribution::start(None);
    let work = tempfile::tempdir().unwrap();
    let summary = make_images(
        &dist.host(),
        work.path(),
        &["--only", "single", "--sizes", "40m", "--layers", "1"],
    );
    // Every blob answer is cut after 2 MB: a 40 MiB layer takes 20 resumed requests,
    // more than the 8 breaks without progress a download may have.
    let cutting = FaultProxy::start(&dist.host(), &["--break-every", "2000000"]);
    let w = Wharf::start_with(&["--insecure-source", "127.0.0.1", "--import-sync-wait", "0s"]);
    let (code, v) = outcome(
        &w,
        &submit(&w, &cutting.host(), "harness/single:40m", "app:v1"),
        Duration::from_secs(120),
    );
    assert_eq!(code, 200, "{v}");
    let stats = cutting.stats();
    assert!(stats["broken"].as_u64().unwrap() >= 20, "{stats}");
    let digest = summary["items"].as_array().unwrap()[0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest_of(&manifest_bytes(&w.url(), None, "app", "v1").unwrap()), digest);
}

#[test]
fn an_insecure_host_port_entry_holds_for_https_too() {
    let evil = EvilSource::start();
    // Listed by name and port: the resolver lets its loopback address through, so only
    // the port holds the entry to its word.
    let listed = format!("localhost:{}", evil.port);
    let w = Wharf::start_with(&["--insecure-source", &listed, "--import-sync-wait", "0s"]);
    let url = format!("{}{}/importImage?{API}", w.url(), registry_id("default"));
    for other in [format!("https://localhost:{}", evil.port + 1), "https://localhost".to_owned()] {
        let body = json!({"source": {"registryUri": other, "sourceImage": "x/img:v1"}, "targetTags": ["x:v1"]});
        let r = w.arm_client().post(&url).json(&body).send().unwrap();
        assert_eq!(r.status(), 400, "{other}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"]["code"], "SourceAddressNotAllowed", "{other}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("only on the ports listed"),
            "{v}"
        );
    }
    // The listed port itself is reached (and its endless 404 body read only in part).
    let (code, v) =
        outcome(&w, &submit(&w, &listed, "endless404/img:v1", "x:v1"), Duration::from_secs(30));
    assert_eq!((code, error_code_of(&v)), (400, "SourceImageNotFound"), "{v}");
    // Too many imports queued: refused until some finish.
    let _ = arm(&w, Method::GET, "/subscriptions", None);
}
