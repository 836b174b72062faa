//! `GET /metrics`: who may read it, that counters move by exactly what was done, that
//! labels stay bounded, and that `promtool` accepts the exposition.

use std::collections::BTreeSet;

use http::Method;

use super::{ARM_SCOPE, App, HOST, OCI_MANIFEST};

const ALLOW_LOOPBACK: &str = "[metrics]\nallow = [\"127.0.0.0/8\"]\n";

/// A scrape from an allowed address.
async fn scrape(app: &App) -> String {
    let r = app.call(Method::GET, "/metrics").send().await;
    assert_eq!(r.status, 200, "scrape: {}", r.text());
    assert!(r.header("content-type").starts_with("text/plain; version=0.0.4"));
    r.text()
}

/// The value of the one series named `name` carrying every label of `labels`, 0 if none.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let series: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(series.len() <= 1, "{name} {labels:?} names several series: {series:?}");
    series.first().copied().unwrap_or(0.0)
}

fn requests(text: &str, route: &str, method: &str, code: &str) -> f64 {
    let labels = [("route", route), ("method", method), ("code", code)];
    value(text, "wharf_http_requests_total", &labels)
}

/// Every series (name and labels, without the value).
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect()
}

#[tokio::test]
async fn counters_move_by_exactly_the_requests_made() {
    let app = App::start_with(ALLOW_LOOPBACK, &[]).await;
    let (manifest, _) = app.push_image(HOST, "team/app", "v1", b"layer one").await;
    let before = scrape(&app).await;
    let put = app.put_manifest(HOST, "team/app", "v2", OCI_MANIFEST, &manifest).await;
    assert_eq!(put.status, 201);
    let get = app.call(Method::GET, "/v2/team/app/manifests/v2").auth(&app.basic()).send().await;
    assert_eq!(get.status, 200);
    let missing =
        app.call(Method::GET, "/v2/team/app/manifests/nope").auth(&app.basic()).send().await;
    assert_eq!(missing.status, 404);
    let layer = super::digest_of(b"layer one");
    let blob = app.call(Method::GET, &format!("/v2/team/app/blobs/{layer}")).auth(&app.basic());
    assert_eq!(blob.send().await.body, b"layer one");
    app.push_blob(HOST, "team/app", b"twelve bytes").await;
    let after = scrape(&app).await;

    let moved = |route, method, code| {
        requests(&after, route, method, code) - requests(&before, route, method, code)
    };
    assert_eq!(moved("PutManifest", "PUT", "201"), 1.0);
    assert_eq!(moved("GetManifest", "GET", "200"), 1.0);
    assert_eq!(moved("GetManifest", "GET", "404"), 1.0);
    // The scrape before is counted once it is answered, so it shows in this one.
    assert_eq!(moved("metrics", "GET", "200"), 1.0);
    let timed = |text| {
        let labels = [("route", "GetManifest"), ("method", "GET")];
        value(text, "wharf_http_request_duration_seconds_count", &labels)
    };
    assert_eq!(timed(&after) - timed(&before), 2.0);
    let le = [("route", "GetManifest"), ("method", "GET"), ("le", "60")];
    assert_eq!(value(&after, "wharf_http_request_duration_seconds_bucket", &le), timed(&after));
    assert_eq!(value(&after, "wharf_http_requests_in_flight", &[("route", "GetManifest")]), 0.0);
    // The scrape itself is in flight while it renders.
    assert_eq!(value(&after, "wharf_http_requests_in_flight", &[("route", "metrics")]), 1.0);
    let bytes =
        |text, direction| value(text, "wharf_registry_bytes_total", &[("direction", direction)]);
    assert_eq!(bytes(&after, "out") - bytes(&before, "out"), 9.0);
    assert_eq!(bytes(&after, "in") - bytes(&before, "in"), 12.0);
    let build =
        [("db", "sqlite"), ("storage", "filesystem"), ("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(value(&after, "wharf_build_info", &build), 1.0);
}

#[tokio::test]
async fn new_repositories_add_no_series() {
    let app = App::start_with(ALLOW_LOOPBACK, &[]).await;
    app.push_image(HOST, "warm/repo", "v1", b"layer").await;
    scrape(&app).await;
    let before = series(&scrape(&app).await);
    for i in 0..50 {
        app.push_image(HOST, &format!("many/repo-{i}"), "v1", b"layer").await;
    }
    let after = scrape(&app).await;
    assert_eq!(series(&after), before, "pushing to new repositories added series");
    assert!(!after.contains("repo-"), "a repository name is a label value:\n{after}");
}

#[tokio::test]
async fn only_allowed_addresses_and_callers_may_scrape() {
    let app = App::start_with(ALLOW_LOOPBACK, &[]).await;
    let refused = app.call(Method::GET, "/metrics").from("10.1.2.3").send().await;
    assert!(matches!(refused.status.as_u16(), 401 | 403), "{}", refused.status);
    assert!(!refused.text().contains("wharf_"), "a refusal shows metrics");
    let token = app.token(ARM_SCOPE).await;
    let owner = app.call(Method::GET, "/metrics").from("10.1.2.3").bearer(&token).send().await;
    assert_eq!(owner.status, 200, "the admin (Owner at /) may scrape: {}", owner.text());
    scrape(&app).await;

    let user = app.create_user("watcher").await;
    let no_role = app.token_of("watcher", &user, ARM_SCOPE).await;
    let r = app.call(Method::GET, "/metrics").from("10.1.2.3").bearer(&no_role).send().await;
    assert_eq!(r.status, 403, "a caller without Wharf/metrics/read: {}", r.text());

    // Without `[metrics] allow`, loopback is no exception.
    let closed = App::start().await;
    let r = closed.call(Method::GET, "/metrics").send().await;
    assert!(matches!(r.status.as_u16(), 401 | 403), "{}", r.status);
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let Ok(out) = std::process::Command::new("promtool").arg("--version").output() else {
        assert!(
            std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none(),
            "promtool is not installed (Debian: apt-get install prometheus)"
        );
        eprintln!("SKIPPED: promtool is not installed (Debian: apt-get install prometheus)");
        return;
    };
    assert!(out.status.success());
    let app = App::start_with(ALLOW_LOOPBACK, &[]).await;
    app.push_image(HOST, "team/app", "v1", b"layer one").await;
    scrape(&app).await;
    let text = scrape(&app).await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
}
