//! The identity provider shaped like Entra ID (discovery, the token endpoint and its
//! OAuth errors with AADSTS codes, ARM's cloud metadata) and its Graph-like directory.

use http::Method;
use serde_json::json;

use super::*;

#[tokio::test]
async fn discovery_and_cloud_metadata() {
    let app = App::start().await;
    let get = |path: &str| app.call(Method::GET, path).send();
    let r = get("/common/v2.0/.well-known/openid-configuration").await;
    app.snap("identity_openid_configuration_200", &r);
    app.snap("identity_jwks_200", &get("/common/discovery/v2.0/keys").await);
    let r = get("/common/discovery/instance?api-version=1.1&authorization_endpoint=http://127.0.0.1:5000/common/oauth2/v2.0/authorize").await;
    app.snap("identity_instance_discovery_200", &r);
    app.snap(
        "identity_unknown_tenant_400",
        &get("/other-tenant/v2.0/.well-known/openid-configuration").await,
    );
    app.snap("metadata_endpoints_old_shape_200", &get("/metadata/endpoints").await);
    app.snap(
        "metadata_endpoints_array_200",
        &get("/metadata/endpoints?api-version=2022-09-01").await,
    );
    app.snap(
        "metadata_endpoints_double_slash_200",
        &get("//metadata/endpoints?api-version=2022-09-01").await,
    );
}

#[tokio::test]
async fn the_token_endpoint_answers_in_oauth_terms() {
    let app = App::start().await;
    let token = |f: String| app.call(Method::POST, "/common/oauth2/v2.0/token").form(&f).send();
    let user = |password: &str| {
        form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", password),
            ("scope", ARM_SCOPE),
        ])
    };
    app.snap("identity_token_password_200", &token(user(&app.password.clone())).await);
    app.snap("identity_token_wrong_password_400", &token(user("wrong-password-0")).await);
    app.snap("identity_token_no_scope_400", &token(form(&[("grant_type", "password")])).await);
    let r =
        token(form(&[("grant_type", "password"), ("scope", "https://example.com/.default")])).await;
    app.snap("identity_token_unknown_scope_400", &r);
    app.snap("identity_token_no_grant_400", &token(form(&[("scope", ARM_SCOPE)])).await);
    let r = token(form(&[("grant_type", "device_code"), ("scope", ARM_SCOPE)])).await;
    app.snap("identity_token_unsupported_grant_400", &r);
    let r = token(form(&[("grant_type", "password"), ("scope", ARM_SCOPE)])).await;
    app.snap("identity_token_password_fields_missing_400", &r);
    let r = token(form(&[("grant_type", "client_credentials"), ("scope", ARM_SCOPE)])).await;
    app.snap("identity_token_client_fields_missing_400", &r);
    let r = app
        .call(Method::POST, "/other-tenant/oauth2/v2.0/token")
        .form(&user("wrong-password-0"))
        .send()
        .await;
    app.snap("identity_token_unknown_tenant_400", &r);

    let graph = app.token(GRAPH_SCOPE).await;
    let r = app
        .call(Method::POST, "/v1.0/servicePrincipals")
        .bearer(&graph)
        .json(&json!({"displayName": "ci-bot"}))
        .send()
        .await;
    let sp = r.json();
    let (app_id, secret) = (
        sp["appId"].as_str().unwrap(),
        sp["passwordCredentials"][0]["secretText"].as_str().unwrap(),
    );
    app.name(sp["id"].as_str().unwrap(), "[sp-id]");
    app.name(app_id, "[sp-app-id]");
    let client = |secret: &str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app_id),
            ("client_secret", secret),
            ("scope", GRAPH_SCOPE),
        ])
    };
    app.snap("identity_token_client_credentials_200", &token(client(secret)).await);
    app.snap("identity_token_wrong_client_secret_401", &token(client("wrong-secret")).await);
    let r = app
        .call(Method::POST, "/common/oauth2/v2.0/token")
        .auth(&basic(app_id, secret))
        .form(&form(&[("grant_type", "client_credentials"), ("scope", ARM_SCOPE)]))
        .send()
        .await;
    app.snap("identity_token_client_secret_basic_200", &r);
}

#[tokio::test]
async fn repeated_failures_are_throttled_on_every_surface() {
    let app = App::start_with("[auth]\nmax_failed_sign_ins = 1\n", &[]).await;
    let wrong = form(&[
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", "wrong-password-0"),
        ("scope", ARM_SCOPE),
    ]);
    let token = || {
        app.call(Method::POST, "/common/oauth2/v2.0/token").form(&wrong).from("127.0.0.7").send()
    };
    assert_eq!(token().await.status, 400);
    let mut r = token().await;
    r.headers.remove("retry-after").expect("Retry-After");
    app.snap("identity_token_throttled_429", &r);
    let wrong = basic("admin", "wrong-password-0");
    let mut r = app.call(Method::GET, "/v2/").auth(&wrong).from("127.0.0.7").send().await;
    r.headers.remove("retry-after").expect("Retry-After");
    app.snap("oci_sign_in_throttled_429", &r);
    let mut r = app
        .call(Method::GET, &format!("/oauth2/token?service={HOST}"))
        .auth(&wrong)
        .from("127.0.0.7")
        .send()
        .await;
    r.headers.remove("retry-after").expect("Retry-After");
    app.snap("oauth2_token_throttled_429", &r);
}

#[tokio::test]
async fn the_directory_reads_and_writes_principals() {
    let app = App::start().await;
    let graph = app.token(GRAPH_SCOPE).await;
    let call = |m: Method, path: &str| app.call(m, path).bearer(&graph);
    app.snap("graph_me_200", &call(Method::GET, "/v1.0/me").send().await);
    let r =
        call(Method::POST, "/v1.0/users").json(&json!({"userPrincipalName": "alice"})).send().await;
    app.name(r.json()["id"].as_str().unwrap(), "[alice-id]");
    app.snap("graph_user_create_generated_password_201", &r);
    let r = call(Method::POST, "/v1.0/users").json(&json!({"userPrincipalName": "bob", "passwordProfile": {"password": "bob-password-00"}})).send().await;
    app.name(r.json()["id"].as_str().unwrap(), "[bob-id]");
    app.snap("graph_user_create_201", &r);
    app.snap("graph_users_200", &call(Method::GET, "/v1.0/users").send().await);
    app.snap("graph_user_200", &call(Method::GET, "/v1.0/users/alice").send().await);
    let r = call(Method::PATCH, "/v1.0/users/alice")
        .json(&json!({"accountEnabled": false}))
        .send()
        .await;
    app.snap("graph_user_patch_204", &r);
    let r = call(Method::PATCH, "/v1.0/users/alice")
        .json(&json!({"accountEnabled": "no"}))
        .send()
        .await;
    app.snap("graph_user_patch_bad_value_400", &r);
    app.snap("graph_user_missing_404", &call(Method::GET, "/v1.0/users/nobody").send().await);
    app.snap(
        "graph_user_create_without_name_400",
        &call(Method::POST, "/v1.0/users").json(&json!({})).send().await,
    );
    app.snap("graph_users_method_not_allowed_405", &call(Method::PUT, "/v1.0/users").send().await);
    let r = call(Method::POST, "/v1.0/users")
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await;
    app.snap("graph_body_not_json_400", &r);

    let r = call(Method::POST, "/v1.0/servicePrincipals")
        .json(&json!({"displayName": "ci-bot"}))
        .send()
        .await;
    let sp = r.json();
    app.name(sp["id"].as_str().unwrap(), "[sp-id]");
    app.name(sp["appId"].as_str().unwrap(), "[sp-app-id]");
    app.snap("graph_service_principal_create_201", &r);
    app.snap(
        "graph_service_principals_200",
        &call(Method::GET, "/v1.0/servicePrincipals").send().await,
    );
    app.snap(
        "graph_service_principal_200",
        &call(Method::GET, "/v1.0/servicePrincipals/ci-bot").send().await,
    );
    let r = call(Method::POST, "/v1.0/servicePrincipals/ci-bot/addPassword")
        .json(&json!({"passwordCredential": {"displayName": "second"}}))
        .send()
        .await;
    app.snap("graph_add_password_200", &r);
    let r = call(Method::POST, "/v1.0/servicePrincipals/ci-bot/resetPassword")
        .json(&json!({}))
        .send()
        .await;
    app.snap("graph_reset_password_200", &r);
    let r = call(Method::POST, "/v1.0/servicePrincipals/ci-bot/revokeSignInSessions").send().await;
    app.snap("graph_revoke_sessions_200", &r);
    let r = call(Method::POST, "/v1.0/servicePrincipals")
        .json(&json!({"displayName": "x", "endDateTime": "2001-01-01T00:00:00Z"}))
        .send()
        .await;
    app.snap("graph_service_principal_end_in_past_400", &r);
    app.snap(
        "graph_service_principal_missing_404",
        &call(Method::GET, "/v1.0/servicePrincipals/alice").send().await,
    );
    app.snap(
        "graph_service_principal_delete_204",
        &call(Method::DELETE, "/v1.0/servicePrincipals/ci-bot").send().await,
    );
}

#[tokio::test]
async fn the_directory_refuses() {
    let app = App::start().await;
    app.snap("graph_no_token_401", &app.call(Method::GET, "/v1.0/users").send().await);
    let arm = app.token(ARM_SCOPE).await;
    app.snap(
        "graph_management_token_401",
        &app.call(Method::GET, "/v1.0/users").bearer(&arm).send().await,
    );
    let password = app.create_user("nobody").await;
    let nobody = app.token_of("nobody", &password, GRAPH_SCOPE).await;
    app.snap(
        "graph_without_directory_role_403",
        &app.call(Method::GET, "/v1.0/users").bearer(&nobody).send().await,
    );
    app.snap(
        "graph_me_of_user_without_role_200",
        &app.call(Method::GET, "/v1.0/me").bearer(&nobody).send().await,
    );
    let r = app
        .call(Method::POST, "/v1.0/me/changePassword")
        .bearer(&nobody)
        .json(&json!({"currentPassword": "not-it-at-all", "newPassword": "a-new-password-1"}))
        .send()
        .await;
    app.snap("graph_change_password_wrong_current_400", &r);
    let r = app
        .call(Method::POST, "/v1.0/me/changePassword")
        .bearer(&nobody)
        .json(&json!({"currentPassword": password}))
        .send()
        .await;
    app.snap("graph_change_password_missing_field_400", &r);
    let r = app
        .call(Method::POST, "/v1.0/me/changePassword")
        .bearer(&nobody)
        .json(&json!({"currentPassword": password, "newPassword": "a-new-password-1"}))
        .send()
        .await;
    app.snap("graph_change_password_204", &r);
    let graph = app.token(GRAPH_SCOPE).await;
    let r = app.call(Method::DELETE, "/v1.0/users/admin").bearer(&graph).send().await;
    app.snap("graph_delete_last_keeper_409", &r);
}
