//! A node's `/readyz` follows its stores: not ready within seconds of PostgreSQL or the
//! object store going away, ready again once they are back; `/livez` unmoved.

use std::time::Duration;

use serde_json::Value;

use super::OwnBackends;
use crate::util::*;

#[test]
fn a_node_is_not_ready_while_a_store_is_away() {
    let Some(own) = OwnBackends::start("s3") else {
        assert!(std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none());
        eprintln!("SKIPPED: no backends (scripts/test.sh starts them)");
        return;
    };
    let (metadata, blobs) = (&own.env["WHARF_TEST_POSTGRES"], &own.env["WHARF_TEST_S3"]);
    let shared = Shared::on(metadata, blobs);
    let health = "[health]\ninterval = \"1s\"\ntimeout = \"1s\"\nfailure_threshold = 2";
    let w = Wharf::start_with_config(&shared.config("http://127.0.0.1:1", health), &[]);
    let get = |path: &str| {
        let r = w.anon().get(format!("{}{path}", w.url())).send().unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    let ready = || {
        let (status, body) = get("/readyz");
        (status, serde_json::from_str::<Value>(&body).unwrap_or_default(), body)
    };
    assert_eq!(ready().0, 200, "{}", ready().2);

    for (backend, check, other) in [("postgres", "metadata", "blobs"), ("s3", "blobs", "metadata")]
    {
        own.pause(backend);
        let mut last = ready();
        let failed = eventually(Duration::from_secs(10), || {
            last = ready();
            last.0 == 503 && last.1["checks"][check]["status"] == "failed"
        });
        assert!(failed, "{backend} paused, /readyz still says {} {}", last.0, last.2);
        assert_eq!(last.1["status"], "unavailable", "{}", last.2);
        assert_eq!(last.1["checks"][other]["status"], "ok", "{}", last.2);
        assert!(last.1["checks"][check]["error"].as_str().is_some_and(|e| !e.is_empty()));
        // What the body says names no store address (it may carry credentials).
        assert!(!last.2.contains("://") && !last.2.contains(metadata.as_str()), "{}", last.2);
        assert_eq!(get("/livez").0, 200, "the process still answers");

        own.resume(backend);
        let back = eventually(Duration::from_secs(10), || {
            last = ready();
            last.0 == 200
        });
        assert!(back, "{backend} back, /readyz still says {} {}", last.0, last.2);
        assert_eq!(last.1["checks"][check]["status"], "ok", "{}", last.2);
    }
}
