//! Health probes (`/livez`, `/startupz`, `/readyz`): no authentication, any host.

use http::Method;

use super::*;

#[tokio::test]
async fn health_probes_answer_anyone_on_any_host() {
    let app = App::start().await;
    let r = app.call(Method::GET, "/livez").send().await;
    app.snap("health_livez_200", &r);
    let r = app.call(Method::GET, "/startupz").send().await;
    app.snap("health_startupz_200", &r);
    let r = app.call(Method::GET, "/readyz").send().await;
    app.snap("health_readyz_200_every_check_ok", &r);
    // A registry's login server, an unknown host, a bad credential: the same answers.
    for host in ["default.localhost:5000", "nosuchreg.localhost:5000", "10.1.2.3"] {
        let r = app.call(Method::GET, "/readyz").host(host).send().await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.text());
    }
    let r = app.call(Method::GET, "/livez").auth(&basic("admin", "wrong-password-0")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn readyz_names_the_failed_check_and_recovers() {
    let app = App::start().await;
    // Uploads can't be written where a file stands in for their directory (even as root).
    let uploads = app._tmp.path().join("data/uploads");
    std::fs::remove_dir_all(&uploads).unwrap();
    std::fs::write(&uploads, b"in the way").unwrap();
    // One failure is below the threshold (2): still ready.
    app.state.health.probe().await;
    let r = app.call(Method::GET, "/readyz").send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.state.health.probe().await;
    let r = app.call(Method::GET, "/readyz").send().await;
    app.snap("health_readyz_503_blob_store_failed", &r);
    let r = app.call(Method::GET, "/livez").send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The first success makes the node ready again.
    std::fs::remove_file(&uploads).unwrap();
    std::fs::create_dir(&uploads).unwrap();
    app.state.health.probe().await;
    let r = app.call(Method::GET, "/readyz").send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}
