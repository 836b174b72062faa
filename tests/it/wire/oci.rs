//! The OCI distribution API (`/v2/…`): the challenge, every error code a client can
//! meet, and the headers of each success.

use http::Method;
use serde_json::json;

use super::*;

const ZERO: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn sign_in_answers_and_challenges() {
    let app = App::start().await;
    let r = app.call(Method::GET, "/v2/").send().await;
    app.snap("oci_base_anonymous_401_challenge", &r);
    let r = app.call(Method::GET, "/v2/").auth(&app.basic()).send().await;
    app.snap("oci_base_signed_in_200", &r);
    let r = app.call(Method::GET, "/v2/").auth(&basic("admin", "wrong-password-0")).send().await;
    app.snap("oci_base_wrong_password_401_invalid_token", &r);
    let r = app.call(Method::GET, "/v2/").auth("Digest abc").send().await;
    app.snap("oci_base_malformed_authorization_401_invalid_request", &r);
    let r = app.call(Method::GET, "/v2/team/app/tags/list").send().await;
    app.snap("oci_pull_anonymous_401_challenge_with_scope", &r);
    let r = app.call(Method::POST, "/v2/team/app/blobs/uploads/").send().await;
    app.snap("oci_push_anonymous_401_challenge_with_scope", &r);
    let r = app.call(Method::GET, "/v2/_catalog").send().await;
    app.snap("oci_catalog_anonymous_401_challenge", &r);
    let r = app.call(Method::GET, "/v2/").host("nosuchreg.localhost:5000").send().await;
    app.snap("oci_unknown_registry_host_404_name_unknown", &r);
    let password = app.create_user("nobody").await;
    let r = app
        .call(Method::GET, "/v2/team/app/tags/list")
        .auth(&basic("nobody", &password))
        .send()
        .await;
    app.snap("oci_signed_in_without_rights_401_denied", &r);
}

#[tokio::test]
async fn errors_of_names_manifests_and_routes() {
    let app = App::start().await;
    let admin = app.basic();
    let get = |path: &str| app.call(Method::GET, path).auth(&admin);
    app.push_image(HOST, "team/app", "v1", b"layer one").await;
    app.snap("oci_tags_of_unknown_repository_404", &get("/v2/team/nothere/tags/list").send().await);
    app.snap("oci_name_invalid_400", &get("/v2/Team/App/tags/list").send().await);
    app.snap("oci_manifest_unknown_tag_404", &get("/v2/team/app/manifests/nope").send().await);
    let bad_ref = get("/v2/team/app/manifests/-bad-").send().await;
    app.snap("oci_manifest_invalid_reference_on_get_404", &bad_ref);
    let r = get("/v2/team/app/manifests/v1").header("accept", "application/x-other").send().await;
    app.snap("oci_manifest_not_in_accept_404", &r);
    let r = app.put_manifest(HOST, "team/app", "v2", OCI_MANIFEST, b"{not json").await;
    app.snap("oci_manifest_invalid_400", &r);
    let missing = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": ZERO, "size": 2},
        "layers": [],
    }))
    .unwrap();
    let r = app.put_manifest(HOST, "team/app", "v2", OCI_MANIFEST, &missing).await;
    app.snap("oci_manifest_blob_unknown_400", &r);
    let r = app.put_manifest(HOST, "team/app", "bad!tag", OCI_MANIFEST, &missing).await;
    app.snap("oci_tag_invalid_400", &r);
    let r = app.put_manifest(HOST, "team/app", "v3", OCI_MANIFEST, &vec![b' '; 5 << 20]).await;
    app.snap("oci_manifest_too_large_413", &r);
    app.snap("oci_unknown_route_404_unsupported", &get("/v2/team/app/unknown/x").send().await);
    let r = app.call(Method::POST, "/v2/team/app/manifests/v1").auth(&admin).send().await;
    app.snap("oci_manifest_method_not_allowed_405", &r);
    let r = app.call(Method::POST, "/v2/_catalog").auth(&admin).send().await;
    app.snap("oci_catalog_method_not_allowed_405", &r);
    app.snap("oci_catalog_bad_n_400_unsupported", &get("/v2/_catalog?n=abc").send().await);
    let r = app.call(Method::DELETE, "/v2/team/app/manifests/v1").auth(&admin).send().await;
    app.snap("oci_manifest_delete_by_tag_202", &r);
}

#[tokio::test]
async fn errors_of_blobs_and_uploads() {
    let app = App::start().await;
    let admin = app.basic();
    let call = |m: Method, path: &str| app.call(m, path).auth(&admin);
    let d = app.push_blob(HOST, "team/app", b"0123456789").await;
    let r = call(Method::GET, &format!("/v2/team/app/blobs/{ZERO}")).send().await;
    app.snap("oci_blob_unknown_404", &r);
    let r = call(Method::HEAD, &format!("/v2/team/app/blobs/{ZERO}")).send().await;
    app.snap("oci_blob_unknown_head_404_no_body", &r);
    let r = call(Method::GET, "/v2/team/app/blobs/sha256:xyz").send().await;
    app.snap("oci_blob_digest_invalid_400", &r);
    let r = call(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .header("range", "bytes=100-")
        .send()
        .await;
    app.snap("oci_blob_range_not_satisfiable_416", &r);
    let r = call(Method::GET, "/v2/team/app/blobs/uploads/not-a-uuid").send().await;
    app.snap("oci_upload_unknown_bad_id_404", &r);
    let r = call(Method::GET, "/v2/team/app/blobs/uploads/3f1a9b2c-1d2e-4f30-8a4b-5c6d7e8f9a0b")
        .send()
        .await;
    app.snap("oci_upload_unknown_404", &r);
    let r = call(Method::POST, &format!("/v2/team/app/blobs/uploads/?digest={ZERO}"))
        .body(b"not zero".to_vec())
        .send()
        .await;
    app.snap("oci_monolithic_push_digest_mismatch_400", &r);
    let start = call(Method::POST, "/v2/team/app/blobs/uploads/").send().await;
    let location = start.header("location").to_owned();
    let r = call(Method::PATCH, &location).header("content-range", "abc").body("x").send().await;
    app.snap("oci_upload_bad_content_range_400", &r);
    let r = call(Method::PATCH, &location).header("content-range", "5-6").body("xy").send().await;
    app.snap("oci_upload_chunk_out_of_order_416", &r);
    let r = call(Method::PUT, &location).send().await;
    app.snap("oci_upload_finish_without_digest_400", &r);
    let r = call(Method::PUT, &format!("{location}?digest={ZERO}")).body("abc").send().await;
    app.snap("oci_upload_finish_digest_mismatch_400", &r);
}

#[tokio::test]
async fn uploads_and_blobs_succeed_with_their_headers() {
    let app = App::start().await;
    let admin = app.basic();
    let call = |m: Method, path: &str| app.call(m, path).auth(&admin);
    let start = call(Method::POST, "/v2/team/app/blobs/uploads/").send().await;
    app.snap("oci_upload_start_202", &start);
    let location = start.header("location").to_owned();
    let r = call(Method::PATCH, &location).body("01234").send().await;
    app.snap("oci_upload_patch_202", &r);
    let r =
        call(Method::PATCH, &location).header("content-range", "5-9").body("56789").send().await;
    app.snap("oci_upload_patch_with_content_range_202", &r);
    app.snap("oci_upload_status_204", &call(Method::GET, &location).send().await);
    let d = digest_of(b"0123456789abc");
    let r = call(Method::PUT, &format!("{location}?digest={d}")).body("abc").send().await;
    app.snap("oci_upload_finish_201", &r);
    let r = call(Method::HEAD, &format!("/v2/team/app/blobs/{d}")).send().await;
    app.snap("oci_blob_head_200", &r);
    app.snap(
        "oci_blob_get_200",
        &call(Method::GET, &format!("/v2/team/app/blobs/{d}")).send().await,
    );
    let r = call(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .header("range", "bytes=2-5")
        .send()
        .await;
    app.snap("oci_blob_get_range_206", &r);
    let mono = digest_of(b"monolithic");
    let r = call(Method::POST, &format!("/v2/team/app/blobs/uploads/?digest={mono}"))
        .body("monolithic")
        .send()
        .await;
    app.snap("oci_monolithic_push_201", &r);
    let r =
        call(Method::POST, &format!("/v2/team/other/blobs/uploads/?mount={mono}&from=team/app"))
            .send()
            .await;
    app.snap("oci_mount_201", &r);
    let r =
        call(Method::POST, &format!("/v2/team/other/blobs/uploads/?mount={ZERO}&from=team/app"))
            .send()
            .await;
    app.snap("oci_mount_of_missing_blob_falls_back_to_session_202", &r);
    let cancel = r.header("location").to_owned();
    app.snap("oci_upload_cancel_204", &call(Method::DELETE, &cancel).send().await);
    let r = call(Method::DELETE, &format!("/v2/team/app/blobs/{mono}")).send().await;
    app.snap("oci_blob_delete_202", &r);
}

#[tokio::test]
async fn manifests_tags_catalog_and_referrers() {
    let app = App::start().await;
    let admin = app.basic();
    let get = |path: &str| app.call(Method::GET, path).auth(&admin);
    let (manifest, d) = app.push_image(HOST, "team/app", "v1", b"layer one").await;
    let r = app.put_manifest(HOST, "team/app", "v2", OCI_MANIFEST, &manifest).await;
    app.snap("oci_manifest_put_201", &r);
    app.push_image(HOST, "team/zeta", "latest", b"layer two").await;
    app.snap("oci_manifest_get_200", &get("/v2/team/app/manifests/v1").send().await);
    let r =
        app.call(Method::HEAD, &format!("/v2/team/app/manifests/{d}")).auth(&admin).send().await;
    app.snap("oci_manifest_head_by_digest_200", &r);
    app.snap("oci_tags_list_200", &get("/v2/team/app/tags/list").send().await);
    app.snap("oci_tags_list_paged_with_link", &get("/v2/team/app/tags/list?n=1").send().await);
    let r = get("/v2/team/app/tags/list?n=1&last=v1").send().await;
    app.snap("oci_tags_list_last_page_without_link", &r);
    app.snap("oci_catalog_200", &get("/v2/_catalog").send().await);
    app.snap("oci_catalog_paged_with_link", &get("/v2/_catalog?n=1").send().await);

    // Two artifacts refer to the image: a signature and an SBOM.
    let empty = app.push_blob(HOST, "team/app", b"{}").await;
    for (kind, tag) in
        [("application/vnd.example.signature", "sig"), ("application/spdx+json", "sbom")]
    {
        let artifact = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
            "layers": [{"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d, "size": manifest.len()},
            "annotations": {"org.example.kind": tag},
        }))
        .unwrap();
        let r = app.put_manifest(HOST, "team/app", tag, OCI_MANIFEST, &artifact).await;
        if tag == "sig" {
            app.snap("oci_manifest_put_with_subject_201", &r);
        }
    }
    app.snap("oci_referrers_200", &get(&format!("/v2/team/app/referrers/{d}")).send().await);
    let r = get(&format!("/v2/team/app/referrers/{d}?artifactType=application/spdx%2Bjson"))
        .send()
        .await;
    app.snap("oci_referrers_filtered_200", &r);
    let r = get(&format!("/v2/team/app/referrers/{d}?n=1")).send().await;
    app.snap("oci_referrers_paged_with_link", &r);
    app.snap(
        "oci_referrers_none_200",
        &get(&format!("/v2/team/app/referrers/{ZERO}")).send().await,
    );
    let r = get("/v2/team/app/referrers/sha256:nothex").send().await;
    app.snap("oci_referrers_digest_invalid_400", &r);
}

#[tokio::test]
async fn a_client_past_its_transfer_cap_is_told_to_come_back() {
    let app = App::start_with("[limits]\nmax_transfers_per_client = 1\n", &[]).await;
    let d = app.push_blob(HOST, "team/app", b"held").await;
    let path = format!("/v2/team/app/blobs/{d}");
    // The first download holds the client's one slot while its body is unread.
    let held = app.call(Method::GET, &path).auth(&app.basic()).start().await;
    assert_eq!(held.status(), 200);
    let r = app.call(Method::GET, &path).auth(&app.basic()).send().await;
    app.snap("oci_too_many_downloads_from_a_client_429", &r);
    drop(held);
}

#[tokio::test]
async fn registries_by_login_server_and_their_network_rules() {
    let app = App::start().await;
    let base = format!(
        "/subscriptions/{SUB}/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries"
    );
    let walled = json!({"location": "westus", "sku": {"name": "Premium"}, "properties": {
        "networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "203.0.113.0/24"}]}}});
    assert_eq!(app.arm(Method::PUT, &format!("{base}/walled1"), Some(walled)).await.status, 201);
    let closed = json!({"location": "westus", "sku": {"name": "Premium"}, "properties": {"publicNetworkAccess": "Disabled"}});
    assert_eq!(app.arm(Method::PUT, &format!("{base}/closed1"), Some(closed)).await.status, 201);
    let walled = "walled1.localhost:5000";
    let r = app.call(Method::GET, "/v2/").host(walled).send().await;
    app.snap("oci_network_rules_deny_403", &r);
    let r = app.call(Method::GET, "/v2/").host(walled).from("203.0.113.9").send().await;
    app.snap("oci_named_registry_challenge_401", &r);
    let r = app
        .call(Method::GET, "/v2/")
        .host("closed1.localhost:5000")
        .auth(&app.basic())
        .send()
        .await;
    app.snap("oci_public_access_disabled_403", &r);
    let r = app
        .call(Method::GET, &format!("/oauth2/token?service={walled}"))
        .host(walled)
        .auth(&app.basic())
        .send()
        .await;
    app.snap("oauth2_token_network_rules_deny_403", &r);
    let r = app.call(Method::GET, "/acr/v1/_catalog").host(walled).auth(&app.basic()).send().await;
    app.snap("acr_network_rules_deny_403", &r);
}
