//! ACR's data-plane extras (`/acr/v1/…`) and a registry's token service (`/oauth2/…`).

use http::Method;

use super::*;

#[tokio::test]
async fn repository_details_and_their_errors() {
    let app = App::start().await;
    let admin = app.basic();
    let call = |m: Method, path: &str| app.call(m, path).auth(&admin);
    let (manifest, d) = app.push_image(HOST, "team/app", "v1", b"layer one").await;
    // Apart in time, so that time order is not a tie.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.put_manifest(HOST, "team/app", "v2", OCI_MANIFEST, &manifest).await;
    app.push_image(HOST, "team/zeta", "latest", b"layer two").await;
    app.snap("acr_catalog_200", &call(Method::GET, "/acr/v1/_catalog").send().await);
    app.snap(
        "acr_catalog_paged_with_link",
        &call(Method::GET, "/acr/v1/_catalog?n=1").send().await,
    );
    app.snap("acr_repository_200", &call(Method::GET, "/acr/v1/team/app").send().await);
    app.snap("acr_tags_200", &call(Method::GET, "/acr/v1/team/app/_tags").send().await);
    let r = call(Method::GET, "/acr/v1/team/app/_tags?n=1").send().await;
    app.snap("acr_tags_paged_with_link", &r);
    let r = call(Method::GET, &format!("/acr/v1/team/app/_tags?digest={d}&orderby=timedesc"))
        .send()
        .await;
    app.snap("acr_tags_by_digest_time_desc_200", &r);
    app.snap("acr_tag_200", &call(Method::GET, "/acr/v1/team/app/_tags/v1").send().await);
    app.snap("acr_manifests_200", &call(Method::GET, "/acr/v1/team/app/_manifests").send().await);
    let r = call(Method::GET, &format!("/acr/v1/team/app/_manifests/{d}")).send().await;
    app.snap("acr_manifest_200", &r);

    let r = app.call(Method::GET, "/acr/v1/_catalog").send().await;
    app.snap("acr_catalog_anonymous_401_challenge", &r);
    let r = app.call(Method::GET, "/acr/v1/team/app/_tags").send().await;
    app.snap("acr_tags_anonymous_401_challenge", &r);
    app.snap("acr_repository_unknown_404", &call(Method::GET, "/acr/v1/team/nothere").send().await);
    app.snap("acr_name_invalid_400", &call(Method::GET, "/acr/v1/Team/_tags").send().await);
    app.snap("acr_tag_invalid_404", &call(Method::GET, "/acr/v1/team/app/_tags/-x-").send().await);
    let r = call(Method::GET, "/acr/v1/team/app/_tags/nope").send().await;
    app.snap("acr_tag_unknown_404", &r);
    let r = call(Method::GET, "/acr/v1/team/app/_manifests/sha256:abc").send().await;
    app.snap("acr_digest_invalid_400", &r);
    app.snap("acr_method_not_allowed_405", &call(Method::PUT, "/acr/v1/team/app").send().await);
    app.snap("acr_bad_n_400", &call(Method::GET, "/acr/v1/team/app/_tags?n=-1").send().await);

    let r = call(Method::DELETE, "/acr/v1/team/app/_tags/v2").send().await;
    app.snap("acr_tag_delete_202", &r);
    let r = call(Method::DELETE, &format!("/acr/v1/team/app/_manifests/{d}")).send().await;
    app.snap("acr_manifest_delete_202", &r);
    let r = call(Method::DELETE, "/acr/v1/team/zeta").send().await;
    app.snap("acr_repository_delete_202", &r);
}

#[tokio::test]
async fn the_token_service_answers_and_refuses() {
    let app = App::start().await;
    let scope = "scope=repository:team/app:pull,push";
    let r = app
        .call(Method::GET, &format!("/oauth2/token?service={HOST}&{scope}"))
        .auth(&app.basic())
        .send()
        .await;
    app.snap("oauth2_token_get_basic_200", &r);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = app.call(Method::GET, "/v2/").bearer(&access).send().await;
    app.snap("oci_base_with_registry_access_token_200", &r);
    let r = app.call(Method::GET, &format!("/oauth2/token?service={HOST}&{scope}")).send().await;
    app.snap("oauth2_token_get_anonymous_401", &r);
    let r = app
        .call(Method::GET, &format!("/oauth2/token?service={HOST}&{scope}"))
        .bearer("abc")
        .send()
        .await;
    app.snap("oauth2_token_get_bearer_401", &r);
    let r = app
        .call(Method::GET, &format!("/oauth2/token?service={HOST}&{scope}"))
        .auth(&basic("admin", "wrong-password-0"))
        .send()
        .await;
    app.snap("oauth2_token_get_wrong_password_401", &r);

    let password = form(&[
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", &app.password),
        ("service", HOST),
        ("scope", "repository:team/app:pull"),
        ("access_type", "offline"),
    ]);
    let r = app.call(Method::POST, "/oauth2/token").form(&password).send().await;
    app.snap("oauth2_token_post_password_offline_200", &r);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();
    let r = app
        .call(Method::POST, "/oauth2/token")
        .form(&form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", HOST),
            ("scope", "repository:team/app:pull"),
        ]))
        .send()
        .await;
    app.snap("oauth2_token_post_refresh_200", &r);
    for (name, body) in [
        ("oauth2_token_post_no_grant_400", form(&[("service", HOST)])),
        ("oauth2_token_post_refresh_missing_400", form(&[("grant_type", "refresh_token")])),
        ("oauth2_token_post_password_missing_400", form(&[("grant_type", "password")])),
        (
            "oauth2_token_post_bad_refresh_token_401",
            form(&[("grant_type", "refresh_token"), ("refresh_token", "abc")]),
        ),
    ] {
        app.snap(name, &app.call(Method::POST, "/oauth2/token").form(&body).send().await);
    }

    let arm = app.token(ARM_SCOPE).await;
    let exchange = |f: String| app.call(Method::POST, "/oauth2/exchange").form(&f).send();
    let r = exchange(form(&[
        ("grant_type", "access_token"),
        ("service", HOST),
        ("access_token", &arm),
    ]))
    .await;
    app.snap("oauth2_exchange_200", &r);
    let r = exchange(form(&[("grant_type", "refresh_token"), ("access_token", &arm)])).await;
    app.snap("oauth2_exchange_other_grant_400", &r);
    let r = exchange(form(&[("grant_type", "access_token")])).await;
    app.snap("oauth2_exchange_no_token_400", &r);
    let r = exchange(form(&[
        ("grant_type", "access_token"),
        ("access_token", &arm),
        ("tenant", "other"),
    ]))
    .await;
    app.snap("oauth2_exchange_other_tenant_401", &r);
    let r = exchange(form(&[("grant_type", "access_token"), ("access_token", "abc")])).await;
    app.snap("oauth2_exchange_bad_token_401", &r);
    let r = exchange(form(&[("grant_type", "access_token"), ("access_token", &refresh)])).await;
    app.snap("oauth2_exchange_refresh_token_refused_401", &r);
}
