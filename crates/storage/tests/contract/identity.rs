//! `IdentityStore`: names compare case-insensitively where ARM's and Entra's do (and keep
//! the casing they were created with), keys are unique, deletes cascade. On SQLite and
//! PostgreSQL; a registry's own credentials need the `ManagementStore` for their registry.

use wharf_storage::*;

contract_tests!([sqlite, postgres] [
    tenant_ids_are_case_insensitive_and_a_put_renames,
    principals_are_unique_whatever_their_casing,
    principals_are_found_by_id_name_and_app_id,
    a_credential_reset_replaces_them_all,
    resets_and_revocations_end_earlier_tokens,
    credential_ids_are_unique_and_need_their_principal,
    role_definitions_are_updated_by_id_whatever_its_casing,
    role_definition_names_are_unique,
    role_definitions_list_by_name_and_delete,
    role_assignments_are_unique_per_id_and_grant,
    role_assignments_are_found_by_id_and_principal,
    deleting_a_principal_takes_its_credentials_and_assignments,
    scope_maps_are_replaced_by_name_whatever_its_casing,
    scope_maps_list_by_name_and_delete,
    registry_tokens_are_replaced_by_kind_and_name,
    registry_tokens_list_by_kind,
    token_passwords_fill_one_slot_each,
    the_admin_users_sealed_password_is_kept_as_given,
    a_password_needs_its_credential,
    deleting_a_token_takes_its_passwords,
    deleting_a_registry_takes_its_credentials,
    retiring_signing_keys_keeps_one,
    signing_key_ids_are_unique,
]);

const TENANT: &str = "7A1D0000-0000-0000-0000-00000000000A";

/// Tenants: ids are case-insensitive; putting one again renames it.
async fn tenant_ids_are_case_insensitive_and_a_put_renames(ids: &dyn IdentityStore) {
    let tenant = TENANT;
    ids.put_tenant(&TenantRecord { id: tenant.into(), name: "Contoso".into(), created_at: 1 })
        .await
        .unwrap();
    ids.put_tenant(&TenantRecord {
        id: tenant.to_lowercase(),
        name: "Contoso Ltd".into(),
        created_at: 2,
    })
    .await
    .unwrap();
    assert_eq!(
        ids.tenants().await.unwrap(),
        [TenantRecord { id: tenant.into(), name: "Contoso Ltd".into(), created_at: 1 }]
    );
}

fn user(id: &str, name: &str) -> PrincipalRecord {
    PrincipalRecord {
        id: id.into(),
        tenant: TENANT.to_lowercase(),
        kind: "User".into(),
        name: name.into(),
        app_id: None,
        enabled: true,
        created_at: 10,
        token_generation: 0,
    }
}

/// The service principal `builder`, app `APP-0001`.
fn builder() -> PrincipalRecord {
    PrincipalRecord {
        token_generation: 0,
        id: "dddd0001".into(),
        kind: "ServicePrincipal".into(),
        name: "builder".into(),
        app_id: Some("APP-0001".into()),
        ..user("", "")
    }
}

/// A service principal named like the user Alice.
fn namesake() -> PrincipalRecord {
    PrincipalRecord {
        id: "ffff0001".into(),
        name: "alice@contoso.com".into(),
        app_id: Some("app-0002".into()),
        ..builder()
    }
}

/// The tenant with users Alice, Bob and Carol, the service principal `builder` and
/// Alice's namesake.
async fn directory(ids: &dyn IdentityStore) {
    ids.put_tenant(&TenantRecord { id: TENANT.into(), name: "Contoso".into(), created_at: 1 })
        .await
        .unwrap();
    for p in [
        user("AAAA0001", "Alice@Contoso.com"),
        user("bbbb0001", "bob@contoso.com"),
        user("cccc0001", "Carol@contoso.com"),
        builder(),
        namesake(),
    ] {
        assert!(ids.create_principal(&p).await.unwrap(), "{p:?}");
    }
}

/// Principals: ids, names within a tenant and kind, and app ids are unique, whatever
/// their casing.
async fn principals_are_unique_whatever_their_casing(ids: &dyn IdentityStore) {
    ids.put_tenant(&TenantRecord { id: TENANT.into(), name: "Contoso".into(), created_at: 1 })
        .await
        .unwrap();
    let alice = user("AAAA0001", "Alice@Contoso.com");
    assert!(ids.create_principal(&alice).await.unwrap());
    assert!(!ids.create_principal(&user("aaaa0001", "x@contoso.com")).await.unwrap(), "same id");
    assert!(!ids.create_principal(&user("bbbb0001", "ALICE@contoso.com")).await.unwrap());
    assert!(ids.create_principal(&user("bbbb0001", "bob@contoso.com")).await.unwrap());
    assert!(ids.create_principal(&user("cccc0001", "Carol@contoso.com")).await.unwrap());
    let sp = builder();
    assert!(ids.create_principal(&sp).await.unwrap());
    let same_app =
        PrincipalRecord { id: "eeee0001".into(), app_id: Some("app-0001".into()), ..sp.clone() };
    assert!(!ids.create_principal(&same_app).await.unwrap(), "app ids are unique");
    // A service principal may be named like a user; the user wins a sign-in by name.
    let namesake = namesake();
    assert!(ids.create_principal(&namesake).await.unwrap());
}

async fn principals_are_found_by_id_name_and_app_id(ids: &dyn IdentityStore) {
    directory(ids).await;
    let (tenant, alice, sp) = (TENANT, user("AAAA0001", "Alice@Contoso.com"), builder());
    assert_eq!(ids.principal("aaaa0001").await.unwrap(), Some(alice.clone()));
    assert_eq!(
        ids.principal_named(tenant, "alice@CONTOSO.com").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(ids.principal_named(tenant, "app-0001").await.unwrap(), Some(sp.clone()));
    assert_eq!(ids.principal_named("another-tenant", "bob@contoso.com").await.unwrap(), None);
    assert_eq!(ids.principal_by_app_id("App-0001").await.unwrap(), Some(sp.clone()));
    let users: Vec<String> =
        ids.principals(tenant, "User").await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(users, ["Alice@Contoso.com", "bob@contoso.com", "Carol@contoso.com"]);
    assert_eq!(ids.principals(&tenant.to_lowercase(), "ServicePrincipal").await.unwrap().len(), 2);
}

/// Alice's credential `id`, created at `at`.
pub(crate) fn cred(id: &str, at: i64) -> CredentialRecord {
    CredentialRecord {
        id: id.into(),
        principal: "aaaa0001".into(),
        hash: format!("$argon2id$v=19$m=19456,t=2,p=1${id}"),
        hint: "abc".into(),
        display_name: "password".into(),
        expires_at: Some(1_000 + at),
        created_at: at,
    }
}

/// Credentials, by principal (case-insensitively); a reset replaces them all.
async fn a_credential_reset_replaces_them_all(ids: &dyn IdentityStore) {
    directory(ids).await;
    ids.add_credential(&cred("c1", 1)).await.unwrap();
    ids.add_credential(&cred("c2", 2)).await.unwrap();
    assert_eq!(ids.credentials("AAAA0001").await.unwrap(), [cred("c1", 1), cred("c2", 2)]);
    ids.replace_credentials(&cred("c3", 3)).await.unwrap();
    assert_eq!(ids.credentials("aaaa0001").await.unwrap(), [cred("c3", 3)]);
}

/// A reset ends the tokens issued before it; so does a revocation; disabling is kept.
async fn resets_and_revocations_end_earlier_tokens(ids: &dyn IdentityStore) {
    directory(ids).await;
    ids.add_credential(&cred("c1", 1)).await.unwrap();
    ids.replace_credentials(&cred("c3", 3)).await.unwrap();
    let generation = |p: Option<PrincipalRecord>| p.map(|p| (p.enabled, p.token_generation));
    assert_eq!(generation(ids.principal("aaaa0001").await.unwrap()), Some((true, 1)));
    assert!(ids.update_principal("AAAA0001", Some(false), true).await.unwrap());
    assert_eq!(generation(ids.principal("aaaa0001").await.unwrap()), Some((false, 2)));
    assert!(ids.update_principal("aaaa0001", Some(true), false).await.unwrap());
    assert_eq!(generation(ids.principal("aaaa0001").await.unwrap()), Some((true, 2)));
    assert!(!ids.update_principal("nobody", Some(true), true).await.unwrap());
}

async fn credential_ids_are_unique_and_need_their_principal(ids: &dyn IdentityStore) {
    directory(ids).await;
    ids.replace_credentials(&cred("c3", 3)).await.unwrap();
    assert!(ids.add_credential(&cred("c3", 4)).await.is_err(), "credential ids are unique");
    let orphan = CredentialRecord { id: "c9".into(), principal: "nobody".into(), ..cred("", 1) };
    assert!(ids.add_credential(&orphan).await.is_err(), "a credential needs its principal");
}

/// The custom role `Pusher`, id `DEF-1`.
fn pusher() -> RoleDefinitionRecord {
    RoleDefinitionRecord {
        id: "DEF-1".into(),
        name: "Pusher".into(),
        body: r#"{"permissions":[]}"#.into(),
        created_at: 5,
    }
}

/// Custom role definitions: ids and names case-insensitive, names unique.
async fn role_definitions_are_updated_by_id_whatever_its_casing(ids: &dyn IdentityStore) {
    let def = pusher();
    assert!(ids.put_role_definition(&def).await.unwrap());
    let updated = RoleDefinitionRecord { id: "def-1".into(), body: "{}".into(), ..def.clone() };
    assert!(!ids.put_role_definition(&updated).await.unwrap(), "an update");
    assert_eq!(
        ids.role_definition("Def-1").await.unwrap(),
        Some(RoleDefinitionRecord { body: "{}".into(), ..def.clone() })
    );
}

async fn role_definition_names_are_unique(ids: &dyn IdentityStore) {
    let def = pusher();
    ids.put_role_definition(&def).await.unwrap();
    let clash = RoleDefinitionRecord { id: "def-2".into(), name: "PUSHER".into(), ..def.clone() };
    match ids.put_role_definition(&clash).await {
        // wharf-auth answers 409 for exactly this.
        Err(StorageError::Database(e)) => assert!(e.to_string().contains("UNIQUE"), "{e}"),
        other => panic!("a taken role name: {other:?}"),
    }
}

async fn role_definitions_list_by_name_and_delete(ids: &dyn IdentityStore) {
    let def = pusher();
    ids.put_role_definition(&def).await.unwrap();
    let reader =
        RoleDefinitionRecord { id: "def-3".into(), name: "artifact reader".into(), ..def.clone() };
    assert!(ids.put_role_definition(&reader).await.unwrap());
    let names: Vec<String> =
        ids.role_definitions().await.unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["artifact reader", "Pusher"]);
    assert!(ids.delete_role_definition("DEF-3").await.unwrap());
    assert!(!ids.delete_role_definition("def-3").await.unwrap());
}

/// Alice's conditional assignment of `Pusher` on subscription `S1`.
fn alices_assignment() -> RoleAssignmentRecord {
    RoleAssignmentRecord {
        id: "RA-1".into(),
        scope: "/subscriptions/S1".into(),
        role_definition_id: "DEF-1".into(),
        principal_id: "AAAA0001".into(),
        principal_type: "User".into(),
        condition: Some("@Resource[x] StringEquals 'y'".into()),
        description: Some("pushes".into()),
        created_at: 7,
    }
}

/// Bob's assignment of `Pusher` at the root.
fn bobs_assignment() -> RoleAssignmentRecord {
    RoleAssignmentRecord {
        id: "RA-3".into(),
        scope: "/".into(),
        principal_id: "bbbb0001".into(),
        condition: None,
        description: None,
        ..alices_assignment()
    }
}

/// Role assignments: one per id, and one per (scope, role, principal).
async fn role_assignments_are_unique_per_id_and_grant(ids: &dyn IdentityStore) {
    directory(ids).await;
    ids.put_role_definition(&pusher()).await.unwrap();
    let assignment = alices_assignment();
    assert!(ids.create_role_assignment(&assignment).await.unwrap());
    let same_id =
        RoleAssignmentRecord { id: "ra-1".into(), scope: "/".into(), ..assignment.clone() };
    assert!(!ids.create_role_assignment(&same_id).await.unwrap());
    let same_grant = RoleAssignmentRecord {
        id: "RA-2".into(),
        scope: "/SUBSCRIPTIONS/s1".into(),
        role_definition_id: "def-1".into(),
        principal_id: "aaaa0001".into(),
        ..assignment.clone()
    };
    assert!(!ids.create_role_assignment(&same_grant).await.unwrap());
}

/// The directory, `Pusher`, and Alice's and Bob's assignments of it.
pub(crate) async fn assigned(ids: &dyn IdentityStore) {
    directory(ids).await;
    ids.put_role_definition(&pusher()).await.unwrap();
    ids.create_role_assignment(&alices_assignment()).await.unwrap();
    ids.create_role_assignment(&bobs_assignment()).await.unwrap();
}

async fn role_assignments_are_found_by_id_and_principal(ids: &dyn IdentityStore) {
    directory(ids).await;
    ids.put_role_definition(&pusher()).await.unwrap();
    let assignment = alices_assignment();
    ids.create_role_assignment(&assignment).await.unwrap();
    let bobs = bobs_assignment();
    assert!(ids.create_role_assignment(&bobs).await.unwrap());
    assert_eq!(ids.role_assignment("ra-1").await.unwrap(), Some(assignment.clone()));
    assert_eq!(ids.role_assignments_of("aaaa0001").await.unwrap(), vec![assignment.clone()]);
    assert_eq!(ids.role_assignments().await.unwrap(), [bobs.clone(), assignment.clone()]);
}

/// Deleting a principal takes its credentials and role assignments.
async fn deleting_a_principal_takes_its_credentials_and_assignments(ids: &dyn IdentityStore) {
    assigned(ids).await;
    ids.replace_credentials(&cred("c3", 3)).await.unwrap();
    let bobs = bobs_assignment();
    assert!(ids.delete_principal("aaaa0001").await.unwrap());
    assert_eq!(ids.principal("AAAA0001").await.unwrap(), None);
    assert!(ids.credentials("AAAA0001").await.unwrap().is_empty());
    assert!(ids.role_assignments_of("AAAA0001").await.unwrap().is_empty());
    assert_eq!(ids.role_assignments().await.unwrap(), vec![bobs.clone()]);
    assert!(!ids.delete_principal("AAAA0001").await.unwrap());
    assert!(ids.delete_role_assignment("ra-3").await.unwrap());
    assert!(!ids.delete_role_assignment("RA-3").await.unwrap());
}

/// Registry credentials live in a registry: `idsreg`, and the id of the default one.
async fn ids_registry(m: &dyn ManagementStore) -> (RegistryRecord, RegistryId) {
    m.put_subscription("ids-sub", "identity").await.unwrap();
    m.put_resource_group(&ResourceGroupRecord {
        subscription: "ids-sub".into(),
        name: "ids-rg".into(),
        location: "here".into(),
        tags: "{}".into(),
        created_at: 1,
    })
    .await
    .unwrap();
    let reg = match m
        .create_registry(&RegistryRecord {
            id: RegistryId(0),
            name: "idsreg".into(),
            is_default: false,
            subscription: "ids-sub".into(),
            resource_group: "ids-rg".into(),
            location: "here".into(),
            sku: "Basic".into(),
            properties: "{}".into(),
            tags: "{}".into(),
            created_at: 1,
        })
        .await
        .unwrap()
    {
        CreateRegistryOutcome::Created(r) => r,
        other => panic!("{other:?}"),
    };
    let other_registry = m.registries(None, None).await.unwrap()[0].id;
    assert_ne!(other_registry, reg.id);
    (reg, other_registry)
}

/// The scope map `Pullers` as first put, and as replaced by a put of `PULLERS`.
fn pullers(registry_id: RegistryId) -> (ScopeMapRecord, ScopeMapRecord) {
    let map = ScopeMapRecord {
        registry_id,
        name: "Pullers".into(),
        description: Some("read".into()),
        actions: vec!["repositories/app/content/read".into()],
        created_at: 3,
    };
    let actions = vec![
        "repositories/app/content/read".to_owned(),
        "repositories/app/metadata/read".to_owned(),
    ];
    let replaced = ScopeMapRecord { description: None, actions, ..map.clone() };
    (map, replaced)
}

/// `pullers`, put and replaced.
async fn put_pullers(ids: &dyn IdentityStore, registry_id: RegistryId) -> ScopeMapRecord {
    let (map, replaced) = pullers(registry_id);
    ids.put_scope_map(&map).await.unwrap();
    ids.put_scope_map(&ScopeMapRecord {
        name: "PULLERS".into(),
        created_at: 4,
        ..replaced.clone()
    })
    .await
    .unwrap();
    replaced
}

/// Scope maps: created or replaced (the name keeps its first casing), by name
/// case-insensitively.
async fn scope_maps_are_replaced_by_name_whatever_its_casing(
    db: &(impl IdentityStore + ManagementStore),
) {
    let (ids, m): (&dyn IdentityStore, &dyn ManagementStore) = (db, db);
    let (reg, other_registry) = ids_registry(m).await;
    let (map, replaced) = pullers(reg.id);
    ids.put_scope_map(&map).await.unwrap();
    ids.put_scope_map(&ScopeMapRecord {
        name: "PULLERS".into(),
        description: None,
        actions: replaced.actions.clone(),
        created_at: 4,
        ..map.clone()
    })
    .await
    .unwrap();
    assert_eq!(ids.scope_map(reg.id, "pullers").await.unwrap(), Some(replaced.clone()));
    assert_eq!(ids.scope_map(other_registry, "pullers").await.unwrap(), None);
}

async fn scope_maps_list_by_name_and_delete(db: &(impl IdentityStore + ManagementStore)) {
    let (ids, m): (&dyn IdentityStore, &dyn ManagementStore) = (db, db);
    let (reg, _) = ids_registry(m).await;
    let replaced = put_pullers(ids, reg.id).await;
    let admins = ScopeMapRecord { name: "admins".into(), ..pullers(reg.id).0 };
    ids.put_scope_map(&admins).await.unwrap();
    assert_eq!(ids.scope_maps(reg.id).await.unwrap(), [admins.clone(), replaced.clone()]);
    assert!(ids.delete_scope_map(reg.id, "ADMINS").await.unwrap());
    assert!(!ids.delete_scope_map(reg.id, "admins").await.unwrap());
}

/// The token `CI-Token`, scoped to `pullers`.
fn ci_token(registry_id: RegistryId) -> RegistryTokenRecord {
    RegistryTokenRecord {
        registry_id,
        kind: "token".into(),
        name: "CI-Token".into(),
        scope_map: Some("pullers".into()),
        enabled: true,
        created_at: 4,
    }
}

/// The registry's admin user.
pub(crate) fn admin(registry_id: RegistryId) -> RegistryTokenRecord {
    RegistryTokenRecord {
        kind: "admin".into(),
        name: "idsreg".into(),
        scope_map: None,
        ..ci_token(registry_id)
    }
}

/// `idsreg` with `pullers` and `CI-Token`.
pub(crate) async fn with_token(db: &(impl IdentityStore + ManagementStore)) -> RegistryRecord {
    let (reg, _) = ids_registry(db).await;
    put_pullers(db, reg.id).await;
    db.put_registry_token(&ci_token(reg.id)).await.unwrap();
    reg
}

/// Tokens and the admin user, by kind and name (case-insensitively).
async fn registry_tokens_are_replaced_by_kind_and_name(
    db: &(impl IdentityStore + ManagementStore),
) {
    let (ids, m): (&dyn IdentityStore, &dyn ManagementStore) = (db, db);
    let (reg, _) = ids_registry(m).await;
    put_pullers(ids, reg.id).await;
    let token = ci_token(reg.id);
    ids.put_registry_token(&token).await.unwrap();
    ids.put_registry_token(&RegistryTokenRecord {
        name: "ci-token".into(),
        enabled: false,
        ..token.clone()
    })
    .await
    .unwrap();
    let disabled = RegistryTokenRecord { enabled: false, ..token.clone() };
    assert_eq!(
        ids.registry_token(reg.id, "token", "CI-TOKEN").await.unwrap(),
        Some(disabled.clone())
    );
    assert_eq!(ids.registry_token(reg.id, "admin", "ci-token").await.unwrap(), None);
}

async fn registry_tokens_list_by_kind(db: &(impl IdentityStore + ManagementStore)) {
    let (ids, m): (&dyn IdentityStore, &dyn ManagementStore) = (db, db);
    let (reg, _) = ids_registry(m).await;
    put_pullers(ids, reg.id).await;
    let token = ci_token(reg.id);
    let disabled = RegistryTokenRecord { enabled: false, ..token.clone() };
    ids.put_registry_token(&disabled).await.unwrap();
    let early = RegistryTokenRecord { name: "a-token".into(), ..token.clone() };
    ids.put_registry_token(&early).await.unwrap();
    assert_eq!(ids.registry_tokens(reg.id, "token").await.unwrap(), [early, disabled]);
    let admin = admin(reg.id);
    ids.put_registry_token(&admin).await.unwrap();
    assert_eq!(ids.registry_tokens(reg.id, "admin").await.unwrap(), [admin]);
}

/// `CI-Token`'s password in `slot`.
pub(crate) fn pw(registry_id: RegistryId, slot: &str, hash: &str, at: i64) -> TokenPasswordRecord {
    TokenPasswordRecord {
        registry_id,
        kind: "token".into(),
        token: "ci-token".into(),
        slot: slot.into(),
        hash: hash.into(),
        sealed: None,
        expires_at: Some(100),
        created_at: at,
    }
}

/// The admin user's password, with its sealed bytes.
pub(crate) fn sealed(registry_id: RegistryId) -> TokenPasswordRecord {
    TokenPasswordRecord {
        kind: "admin".into(),
        token: "IDSREG".into(),
        slot: "password".into(),
        sealed: Some(vec![0, 1, 2, 255, 0]),
        expires_at: None,
        ..pw(registry_id, "", "h", 5)
    }
}

/// Passwords: one per slot, set or replaced.
async fn token_passwords_fill_one_slot_each(db: &(impl IdentityStore + ManagementStore)) {
    let reg = with_token(db).await;
    let ids: &dyn IdentityStore = db;
    let pw = |slot: &str, hash: &str, at: i64| pw(reg.id, slot, hash, at);
    ids.put_token_password(&pw("password2", "h2", 1)).await.unwrap();
    ids.put_token_password(&pw("password1", "h1", 1)).await.unwrap();
    ids.put_token_password(&pw("password1", "h1b", 2)).await.unwrap();
    assert_eq!(
        ids.token_passwords(reg.id, "token", "CI-TOKEN").await.unwrap(),
        [pw("password1", "h1b", 2), pw("password2", "h2", 1)]
    );
}

/// The admin user's sealed bytes are kept as given.
async fn the_admin_users_sealed_password_is_kept_as_given(
    db: &(impl IdentityStore + ManagementStore),
) {
    let (reg, _) = ids_registry(db).await;
    let ids: &dyn IdentityStore = db;
    ids.put_registry_token(&admin(reg.id)).await.unwrap();
    let sealed = sealed(reg.id);
    ids.put_token_password(&sealed).await.unwrap();
    assert_eq!(ids.token_passwords(reg.id, "admin", "idsreg").await.unwrap(), vec![sealed.clone()]);
}

async fn a_password_needs_its_credential(db: &(impl IdentityStore + ManagementStore)) {
    let reg = with_token(db).await;
    let ids: &dyn IdentityStore = db;
    let nobody = TokenPasswordRecord { token: "nobody".into(), ..pw(reg.id, "password1", "h", 1) };
    assert!(ids.put_token_password(&nobody).await.is_err(), "a password needs its credential");
}

/// Deleting a token takes its passwords.
async fn deleting_a_token_takes_its_passwords(db: &(impl IdentityStore + ManagementStore)) {
    let reg = with_token(db).await;
    let ids: &dyn IdentityStore = db;
    ids.put_token_password(&pw(reg.id, "password1", "h1", 1)).await.unwrap();
    let token = ci_token(reg.id);
    assert!(ids.delete_registry_token(reg.id, "token", "Ci-Token").await.unwrap());
    assert!(!ids.delete_registry_token(reg.id, "token", "ci-token").await.unwrap());
    assert_eq!(ids.registry_token(reg.id, "token", "ci-token").await.unwrap(), None);
    ids.put_registry_token(&token).await.unwrap();
    assert!(ids.token_passwords(reg.id, "token", "ci-token").await.unwrap().is_empty());
}

/// Deleting the registry takes its scope maps, tokens and passwords.
async fn deleting_a_registry_takes_its_credentials(db: &(impl IdentityStore + ManagementStore)) {
    let reg = with_token(db).await;
    let (ids, m): (&dyn IdentityStore, &dyn ManagementStore) = (db, db);
    ids.put_registry_token(&admin(reg.id)).await.unwrap();
    ids.put_token_password(&sealed(reg.id)).await.unwrap();
    ids.put_token_password(&pw(reg.id, "password1", "h1", 1)).await.unwrap();
    assert!(m.delete_registry(reg.id).await.unwrap());
    assert!(ids.scope_maps(reg.id).await.unwrap().is_empty());
    assert!(ids.registry_tokens(reg.id, "token").await.unwrap().is_empty());
    assert!(ids.registry_tokens(reg.id, "admin").await.unwrap().is_empty());
    assert!(ids.token_passwords(reg.id, "token", "ci-token").await.unwrap().is_empty());
    assert!(ids.token_passwords(reg.id, "admin", "idsreg").await.unwrap().is_empty());
}

/// Signing keys `k1`, `k2` and `k3`.
pub(crate) async fn keys(ids: &dyn IdentityStore) {
    for (kid, at) in [("k1", 1), ("k2", 2), ("k3", 3)] {
        ids.add_signing_key(&SigningKeyRecord {
            kid: kid.into(),
            pkcs8: vec![at as u8, 0, 255],
            created_at: at,
            retired_at: None,
        })
        .await
        .unwrap();
    }
}

/// Signing keys: retiring keeps one, and a retired key keeps its first retirement.
async fn retiring_signing_keys_keeps_one(ids: &dyn IdentityStore) {
    keys(ids).await;
    ids.retire_signing_keys("k3", 10).await.unwrap();
    ids.add_signing_key(&SigningKeyRecord {
        kid: "k4".into(),
        pkcs8: vec![4],
        created_at: 4,
        retired_at: None,
    })
    .await
    .unwrap();
    ids.retire_signing_keys("k4", 20).await.unwrap();
    let keys = ids.signing_keys().await.unwrap();
    let state: Vec<(&str, Option<i64>)> =
        keys.iter().map(|k| (k.kid.as_str(), k.retired_at)).collect();
    assert_eq!(state, [("k1", Some(10)), ("k2", Some(10)), ("k3", Some(20)), ("k4", None)]);
    assert_eq!(keys[2].pkcs8, [3, 0, 255]);
}

async fn signing_key_ids_are_unique(ids: &dyn IdentityStore) {
    keys(ids).await;
    let again =
        SigningKeyRecord { kid: "k1".into(), pkcs8: vec![], created_at: 4, retired_at: None };
    assert!(ids.add_signing_key(&again).await.is_err(), "key ids are unique");
}
