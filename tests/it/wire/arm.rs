//! The management API, shaped like ARM: resources, their errors in ARM's envelope,
//! imports and their operations, role definitions and assignments.

use http::Method;
use serde_json::json;

use super::*;

const OTHER_SUB: &str = "11111111-2222-3333-4444-555555555555";

fn rg(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

fn reg(sub: &str, group: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.ContainerRegistry/registries/{name}", rg(sub, group))
}

#[tokio::test]
async fn api_version_and_authentication_errors() {
    let app = App::start().await;
    let token = app.token(ARM_SCOPE).await;
    let r = app.call(Method::GET, "/subscriptions").bearer(&token).send().await;
    app.snap("arm_api_version_missing_400", &r);
    let r = app.call(Method::GET, "/subscriptions?api-version=latest").bearer(&token).send().await;
    app.snap("arm_api_version_invalid_400", &r);
    let r = app.call(Method::GET, &format!("/subscriptions?{API}")).send().await;
    app.snap("arm_no_token_401", &r);
    let r = app.call(Method::GET, &format!("/subscriptions?{API}")).auth(&app.basic()).send().await;
    app.snap("arm_basic_credentials_401", &r);
    let r = app.call(Method::GET, &format!("/subscriptions?{API}")).bearer("abc").send().await;
    app.snap("arm_bad_token_401", &r);
    let graph = app.token(GRAPH_SCOPE).await;
    let r = app.call(Method::GET, &format!("/subscriptions?{API}")).bearer(&graph).send().await;
    app.snap("arm_graph_token_401", &r);
    let r = app
        .arm(Method::GET, &format!("/subscriptions/{SUB}/providers/Microsoft.Storage/x"), None)
        .await;
    app.snap("arm_unknown_path_404", &r);
    let r = app.arm(Method::POST, &format!("/subscriptions/{SUB}"), None).await;
    app.snap("arm_method_not_allowed_405", &r);
    let password = app.create_user("nobody").await;
    let nobody = app.token_of("nobody", &password, ARM_SCOPE).await;
    let r = app
        .call(Method::GET, &format!("{}?{API}", reg(SUB, "default", "default")))
        .bearer(&nobody)
        .send()
        .await;
    app.snap("arm_registry_forbidden_403", &r);
    let r = app
        .call(Method::GET, &format!("/subscriptions/{SUB}/resourcegroups?{API}"))
        .bearer(&nobody)
        .send()
        .await;
    app.snap("arm_resource_groups_forbidden_403", &r);
    let r = app.call(Method::GET, &format!("/subscriptions?{API}")).bearer(&nobody).send().await;
    app.snap("arm_subscriptions_of_caller_without_roles_200", &r);
}

#[tokio::test]
async fn subscriptions_groups_and_registries() {
    let app = App::start().await;
    app.snap("arm_tenants_200", &app.arm(Method::GET, "/tenants", None).await);
    app.snap("arm_subscriptions_200", &app.arm(Method::GET, "/subscriptions", None).await);
    app.snap(
        "arm_subscription_200",
        &app.arm(Method::GET, &format!("/subscriptions/{SUB}"), None).await,
    );
    let r = app
        .arm(
            Method::PUT,
            &rg(OTHER_SUB, "teamRG"),
            Some(json!({"location": "westus", "tags": {"team": "a"}})),
        )
        .await;
    app.snap("arm_resource_group_put_201", &r);
    let r =
        app.arm(Method::PUT, &rg(OTHER_SUB, "teamrg"), Some(json!({"location": "westus"}))).await;
    app.snap("arm_resource_group_put_again_200", &r);
    let r =
        app.arm(Method::PUT, &rg(OTHER_SUB, "teamrg"), Some(json!({"location": "eastus"}))).await;
    app.snap("arm_resource_group_other_location_409", &r);
    let r = app.arm(Method::PUT, &rg(OTHER_SUB, "norg"), Some(json!({}))).await;
    app.snap("arm_resource_group_without_location_400", &r);
    let r = app.arm(Method::PUT, &rg(OTHER_SUB, "norg"), None).await;
    app.snap("arm_resource_group_without_body_400", &r);
    app.snap(
        "arm_resource_group_head_204",
        &app.arm(Method::HEAD, &rg(OTHER_SUB, "teamRG"), None).await,
    );
    app.snap(
        "arm_resource_group_head_missing_404",
        &app.arm(Method::HEAD, &rg(OTHER_SUB, "none"), None).await,
    );
    app.snap(
        "arm_resource_group_missing_404",
        &app.arm(Method::GET, &rg(OTHER_SUB, "none"), None).await,
    );
    let r = app.arm(Method::GET, &format!("/subscriptions/{OTHER_SUB}/resourceGroups"), None).await;
    app.snap("arm_resource_groups_200", &r);
    let r = app
        .arm(
            Method::GET,
            "/subscriptions/22222222-0000-0000-0000-000000000000/resourceGroups",
            None,
        )
        .await;
    app.snap("arm_subscription_missing_404", &r);

    let id = reg(OTHER_SUB, "teamRG", "TeamReg1");
    let body = json!({"location": "westus", "sku": {"name": "Premium"}, "properties": {"adminUserEnabled": true}, "tags": {"env": "test"}});
    app.snap("arm_registry_put_201", &app.arm(Method::PUT, &id, Some(body.clone())).await);
    app.snap("arm_registry_put_again_200", &app.arm(Method::PUT, &id, Some(body)).await);
    let r = app
        .arm(
            Method::PUT,
            &reg(SUB, "default", "teamreg1"),
            Some(json!({"location": "westus", "sku": {"name": "Basic"}})),
        )
        .await;
    app.snap("arm_registry_name_taken_409", &r);
    let r = app
        .arm(
            Method::PUT,
            &reg(OTHER_SUB, "teamRG", "bad-name"),
            Some(json!({"location": "westus", "sku": {"name": "Basic"}})),
        )
        .await;
    app.snap("arm_registry_name_invalid_400", &r);
    let r = app
        .arm(Method::PUT, &reg(OTHER_SUB, "teamRG", "nosku1"), Some(json!({"location": "westus"})))
        .await;
    app.snap("arm_registry_without_sku_400", &r);
    let r = app.arm(Method::PATCH, &id, Some(json!({"sku": {"name": "Basic"}, "properties": {"networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "203.0.113.0/24"}]}, "anonymousPullEnabled": true}}))).await;
    app.snap("arm_registry_patch_200", &r);
    app.snap("arm_registry_get_200", &app.arm(Method::GET, &id, None).await);
    app.snap(
        "arm_registry_missing_404",
        &app.arm(Method::GET, &reg(OTHER_SUB, "teamRG", "nothere1"), None).await,
    );
    let r = app
        .arm(
            Method::GET,
            &format!("/subscriptions/{OTHER_SUB}/providers/Microsoft.ContainerRegistry/registries"),
            None,
        )
        .await;
    app.snap("arm_registries_in_subscription_200", &r);
    let r = app
        .arm(
            Method::GET,
            &format!(
                "{}/resources?$filter=resourceType eq 'Microsoft.ContainerRegistry/registries'",
                rg(OTHER_SUB, "teamRG")
            ),
            None,
        )
        .await;
    app.snap("arm_resources_filtered_200", &r);
    let r = app
        .arm(
            Method::GET,
            &format!("/subscriptions/{OTHER_SUB}/resources?$filter=name eq 'x'"),
            None,
        )
        .await;
    app.snap("arm_resources_bad_filter_400", &r);
    let check =
        format!("/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/checkNameAvailability");
    for (snap, name) in [
        ("arm_check_name_taken_200", "teamreg1"),
        ("arm_check_name_free_200", "fresh123"),
        ("arm_check_name_invalid_200", "no-dash"),
    ] {
        let r = app
            .arm(
                Method::POST,
                &check,
                Some(json!({"name": name, "type": "Microsoft.ContainerRegistry/registries"})),
            )
            .await;
        app.snap(snap, &r);
    }
    app.snap(
        "arm_list_credentials_200",
        &app.arm(Method::POST, &format!("{id}/listCredentials"), None).await,
    );
    app.snap("arm_scope_maps_200", &app.arm(Method::GET, &format!("{id}/scopeMaps"), None).await);
    app.snap("arm_tokens_200", &app.arm(Method::GET, &format!("{id}/tokens"), None).await);
    let r = app.arm(Method::DELETE, &reg(SUB, "default", "default"), None).await;
    app.snap("arm_default_registry_delete_409", &r);
    app.snap("arm_registry_delete_200", &app.arm(Method::DELETE, &id, None).await);
    app.snap("arm_registry_delete_again_204", &app.arm(Method::DELETE, &id, None).await);
}

#[tokio::test]
async fn role_definitions_and_assignments() {
    let app = App::start().await;
    let defs = "/providers/Microsoft.Authorization/roleDefinitions";
    let r = app.arm(Method::GET, &format!("{defs}?$filter=roleName eq 'AcrPull'"), None).await;
    app.snap("arm_role_definitions_filtered_200", &r);
    let acr_pull = r.json()["value"][0]["name"].as_str().unwrap().to_owned();
    let r = app.arm(Method::GET, &format!("{}{defs}/{acr_pull}", rg(SUB, "default")), None).await;
    app.snap("arm_role_definition_200", &r);
    let r =
        app.arm(Method::GET, &format!("{defs}/00000000-0000-0000-0000-00000000beef"), None).await;
    app.snap("arm_role_definition_missing_404", &r);
    let r = app.arm(Method::GET, &format!("{defs}?$filter=roleName eq"), None).await;
    app.snap("arm_role_definitions_bad_filter_400", &r);
    let custom = "5c4a1e2e-0000-1000-8000-00000000c001";
    let body = json!({"properties": {"roleName": "Tag Reader", "description": "reads tags", "type": "CustomRole",
        "permissions": [{"actions": ["Microsoft.ContainerRegistry/registries/read"], "notActions": [],
            "dataActions": ["Microsoft.ContainerRegistry/registries/repositories/metadata/read"], "notDataActions": []}],
        "assignableScopes": [format!("/subscriptions/{SUB}")]}});
    let path = format!("/subscriptions/{SUB}{defs}/{custom}");
    app.snap("arm_custom_role_put_201", &app.arm(Method::PUT, &path, Some(body)).await);

    let password = app.create_user("reader").await;
    let user = app.state.identity.principal("reader").await.unwrap().id;
    let scope = reg(SUB, "default", "default");
    let assignments = format!("{scope}/providers/Microsoft.Authorization/roleAssignments");
    let name = "5c4a1e2e-0000-1000-8000-00000000a001";
    let role_id = format!("/subscriptions/{SUB}{defs}/{acr_pull}");
    let assign = json!({"properties": {"roleDefinitionId": role_id, "principalId": user}});
    let r = app.arm(Method::PUT, &format!("{assignments}/{name}"), Some(assign.clone())).await;
    app.snap("arm_role_assignment_put_201", &r);
    let r = app.arm(Method::PUT, &format!("{assignments}/{name}"), Some(assign)).await;
    app.snap("arm_role_assignment_put_same_200", &r);
    let other = json!({"properties": {"roleDefinitionId": format!("/subscriptions/{SUB}{defs}/{custom}"), "principalId": user}});
    let r = app.arm(Method::PUT, &format!("{assignments}/{name}"), Some(other)).await;
    app.snap("arm_role_assignment_update_409", &r);
    let unknown = json!({"properties": {"roleDefinitionId": format!("{defs}/00000000-0000-0000-0000-00000000beef"), "principalId": user}});
    let r = app
        .arm(
            Method::PUT,
            &format!("{assignments}/5c4a1e2e-0000-1000-8000-00000000a002"),
            Some(unknown),
        )
        .await;
    app.snap("arm_role_assignment_unknown_role_400", &r);
    let r =
        app.arm(Method::GET, &format!("{assignments}?$filter=principalId eq '{user}'"), None).await;
    app.snap("arm_role_assignments_filtered_200", &r);
    app.snap(
        "arm_role_assignment_get_200",
        &app.arm(Method::GET, &format!("{assignments}/{name}"), None).await,
    );
    let reader = app.token_of("reader", &password, ARM_SCOPE).await;
    let r = app
        .call(Method::DELETE, &format!("{assignments}/{name}?{API}"))
        .bearer(&reader)
        .send()
        .await;
    app.snap("arm_role_assignment_delete_forbidden_403", &r);
    app.snap(
        "arm_role_assignment_delete_200",
        &app.arm(Method::DELETE, &format!("{assignments}/{name}"), None).await,
    );
    app.snap(
        "arm_role_assignment_delete_again_204",
        &app.arm(Method::DELETE, &format!("{assignments}/{name}"), None).await,
    );
    app.snap("arm_custom_role_delete_200", &app.arm(Method::DELETE, &path, None).await);
}

/// `importImage` from a registry on this server into another.
async fn import(app: &App, target: &str, image: &str, tags: &[&str], mode: &str) -> Reply {
    let source = reg(SUB, "default", "default");
    let body = json!({"source": {"resourceId": source, "sourceImage": image}, "targetTags": tags, "mode": mode});
    app.arm(Method::POST, &format!("{target}/importImage"), Some(body)).await
}

#[tokio::test]
async fn imports_answered_at_once() {
    let app = App::start().await;
    app.push_image(HOST, "team/app", "v1", b"layer one").await;
    let target = reg(SUB, "default", "target1");
    app.arm(Method::PUT, &target, Some(json!({"location": "westus", "sku": {"name": "Basic"}})))
        .await;
    let r = import(&app, &target, "team/app:v1", &["copy:v1"], "NoForce").await;
    app.snap("arm_import_done_200", &r);
    let r = import(&app, &target, "team/app:v1", &["copy:v1"], "NoForce").await;
    app.snap("arm_import_tag_exists_409", &r);
    let r = import(&app, &target, "team/app:nope", &["copy:v2"], "Force").await;
    app.snap("arm_import_source_missing", &r);
    let r =
        app.arm(Method::POST, &format!("{target}/importImage"), Some(json!({"source": {}}))).await;
    app.snap("arm_import_invalid_parameters_400", &r);
    let r = import(&app, &reg(SUB, "default", "nothere1"), "team/app:v1", &[], "Force").await;
    app.snap("arm_import_into_missing_registry_404", &r);
    let op = format!(
        "/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/locations/WESTUS/operationResults/registries-3f1a9b2c-1d2e-4f30-8a4b-5c6d7e8f9a0b"
    );
    app.snap("arm_operation_missing_404", &app.arm(Method::GET, &op, None).await);
}

#[tokio::test]
async fn imports_running_and_their_operation_status() {
    let app = App::start_with("", &["--import-sync-wait", "0s"]).await;
    app.push_image(HOST, "team/app", "v1", b"layer one").await;
    let target = reg(SUB, "default", "target1");
    app.arm(Method::PUT, &target, Some(json!({"location": "westus", "sku": {"name": "Basic"}})))
        .await;
    let r = import(&app, &target, "team/app:v1", &["copy:v1"], "Force").await;
    app.snap("arm_import_running_202", &r);
    let done = poll(&app, r.header("location")).await;
    app.snap("arm_operation_succeeded_200", &done);
    let r = import(&app, &target, "team/app:nope", &["copy:v2"], "Force").await;
    assert_eq!(r.status, 202);
    let failed = poll(&app, r.header("location")).await;
    app.snap("arm_operation_failed", &failed);
}

/// Poll an operation's Location until it stops answering 202.
async fn poll(app: &App, location: &str) -> Reply {
    let path = location.strip_prefix(&format!("http://{HOST}")).unwrap();
    let token = app.token(ARM_SCOPE).await;
    for _ in 0..400 {
        let r = app.call(Method::GET, path).bearer(&token).send().await;
        if r.status != 202 {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the import did not finish");
}

#[tokio::test]
async fn admin_endpoints() {
    let app = App::start().await;
    let token = app.token(ARM_SCOPE).await;
    let r = app.call(Method::POST, "/_wharf/gc").bearer(&token).send().await;
    app.snap("admin_gc_200", &r);
    app.snap("admin_keys_200", &app.call(Method::GET, "/_wharf/keys").bearer(&token).send().await);
    let r =
        app.call(Method::POST, "/_wharf/keys/prune?allRetired=maybe").bearer(&token).send().await;
    app.snap("admin_keys_prune_bad_parameter_400", &r);
    app.snap("admin_gc_no_token_401", &app.call(Method::POST, "/_wharf/gc").send().await);
    let password = app.create_user("nobody").await;
    let nobody = app.token_of("nobody", &password, ARM_SCOPE).await;
    let r = app.call(Method::POST, "/_wharf/gc").bearer(&nobody).send().await;
    app.snap("admin_gc_forbidden_403", &r);
}
