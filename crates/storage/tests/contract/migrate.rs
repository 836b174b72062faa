//! `wharf migrate`'s metadata half: an embedded store copied into PostgreSQL.

use wharf_oci::{Digest, Reference};
use wharf_storage::*;

use crate::backends::PgDatabase;
use crate::{identity, management, manifest, metadata, repo};

/// `wharf migrate`'s metadata half: everything an embedded store holds arrives in a fresh
/// PostgreSQL database as it was (ids, timestamps, bytes), once.
#[tokio::test]
async fn an_embedded_store_copied_into_postgres_reads_back_the_same() {
    let Some(db) = PgDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteMetadataStore::open(&dir.path().join("wharf.db")).await.unwrap();
    // Whatever the contract behaviours leave behind: registries, manifests, tags,
    // referrers, jobs, principals, credentials, roles, keys, scope maps and tokens.
    leftovers(&lite).await;
    populate(&lite).await;
    let counts = lite.table_counts().await.unwrap();
    assert!(counts["manifests"] > 0 && counts["tags"] > 0 && counts["import_jobs"] > 0);
    assert!(counts["principals"] > 0 && counts["registry_token_passwords"] > 0);

    let pg = db.open().await;
    match migrate::copy_metadata(&lite, &pg).await.unwrap() {
        migrate::CopyOutcome::Copied(copied) => assert_eq!(copied, counts),
        other => panic!("{other:?}"),
    }

    // The management plane.
    assert_eq!(pg.subscriptions().await.unwrap(), lite.subscriptions().await.unwrap());
    for s in lite.subscriptions().await.unwrap() {
        assert_eq!(
            pg.resource_groups(&s.id).await.unwrap(),
            lite.resource_groups(&s.id).await.unwrap()
        );
    }
    let registries = lite.registries(None, None).await.unwrap();
    assert_eq!(pg.registries(None, None).await.unwrap(), registries);
    assert_eq!(pg.default_registry().await.unwrap(), lite.default_registry().await.unwrap());
    let jobs = lite.unfinished_jobs().await.unwrap();
    assert_eq!(pg.unfinished_jobs().await.unwrap(), jobs);
    for id in ["registries-done", "registries-running"] {
        assert_eq!(pg.job(id).await.unwrap(), lite.job(id).await.unwrap());
    }
    // Every repository: tags with their times, manifests byte for byte, referrers.
    let mut manifests = 0;
    for reg in &registries {
        let repos = lite.repositories(reg.id, None, None).await.unwrap();
        assert_eq!(pg.repositories(reg.id, None, None).await.unwrap(), repos);
        for name in repos {
            let r = repo(reg.id, &name);
            assert_eq!(
                pg.tag_records(&r, None, None, ListOrder::Name).await.unwrap(),
                lite.tag_records(&r, None, None, ListOrder::Name).await.unwrap()
            );
            let listing =
                lite.manifest_listing(&r, None, None, ListOrder::Name).await.unwrap().unwrap();
            assert_eq!(
                pg.manifest_listing(&r, None, None, ListOrder::Name).await.unwrap().unwrap(),
                listing
            );
            assert_eq!(
                pg.repository_summary(&r).await.unwrap(),
                lite.repository_summary(&r).await.unwrap()
            );
            for m in listing {
                let by = Reference::Digest(m.digest.clone());
                let (a, b) = (
                    lite.manifest(&r, &by).await.unwrap().unwrap(),
                    pg.manifest(&r, &by).await.unwrap().unwrap(),
                );
                assert_eq!(a.content, b.content);
                assert_eq!(
                    (a.media_type, a.subject, a.created_at),
                    (b.media_type, b.subject, b.created_at)
                );
                assert_eq!(
                    pg.referrers(&r, &m.digest, None, None, 1000).await.unwrap(),
                    lite.referrers(&r, &m.digest, None, None, 1000).await.unwrap()
                );
                manifests += 1;
            }
        }
        for kind in ["admin", "token"] {
            let tokens = lite.registry_tokens(reg.id, kind).await.unwrap();
            assert_eq!(pg.registry_tokens(reg.id, kind).await.unwrap(), tokens);
            for t in tokens {
                assert_eq!(
                    pg.token_passwords(reg.id, kind, &t.name).await.unwrap(),
                    lite.token_passwords(reg.id, kind, &t.name).await.unwrap()
                );
            }
        }
        assert_eq!(pg.scope_maps(reg.id).await.unwrap(), lite.scope_maps(reg.id).await.unwrap());
    }
    assert_eq!(manifests as u64, counts["manifests"]);
    // The directory.
    let tenants = lite.tenants().await.unwrap();
    assert_eq!(pg.tenants().await.unwrap(), tenants);
    for t in &tenants {
        for kind in ["User", "ServicePrincipal"] {
            let principals = lite.principals(&t.id, kind).await.unwrap();
            assert_eq!(pg.principals(&t.id, kind).await.unwrap(), principals);
            for p in principals {
                assert_eq!(
                    pg.credentials(&p.id).await.unwrap(),
                    lite.credentials(&p.id).await.unwrap()
                );
            }
        }
    }
    assert_eq!(pg.role_definitions().await.unwrap(), lite.role_definitions().await.unwrap());
    assert_eq!(pg.role_assignments().await.unwrap(), lite.role_assignments().await.unwrap());
    assert_eq!(pg.signing_keys().await.unwrap(), lite.signing_keys().await.unwrap());

    // Run again: already there, nothing written twice.
    assert_eq!(
        migrate::copy_metadata(&lite, &pg).await.unwrap(),
        migrate::CopyOutcome::AlreadyCopied
    );
    // New records continue after the copied ids: a new registry and repository collide
    // with nothing.
    let highest = registries.iter().map(|r| r.id).max().unwrap();
    let reg = RegistryRecord {
        id: RegistryId(0),
        name: "aftermove".into(),
        is_default: false,
        subscription: DEFAULT_SUBSCRIPTION.into(),
        resource_group: DEFAULT_RESOURCE_GROUP.into(),
        location: "here".into(),
        sku: "Basic".into(),
        properties: "{}".into(),
        tags: "{}".into(),
        created_at: 1,
    };
    let CreateRegistryOutcome::Created(created) = pg.create_registry(&reg).await.unwrap() else {
        panic!("not created")
    };
    assert!(created.id > highest);
    let fresh = repo(created.id, "after/move");
    let layer = Digest::sha256_of(b"after the move");
    pg.add_blob(&layer, 14, Some(&fresh)).await.unwrap();
    let m = manifest(b"moved", vec![BlobRef::new(layer, 14)], Some("v1"), &fresh);
    assert_eq!(pg.put_manifest(&m).await.unwrap(), PutManifestOutcome::Stored);
    // A database that has data of its own is left alone.
    match migrate::copy_metadata(&lite, &pg).await.unwrap() {
        migrate::CopyOutcome::TargetNotEmpty(rows) => {
            assert!(rows["registries"] > counts["registries"])
        }
        other => panic!("{other:?}"),
    }
    pg.close().await;
    db.drop().await;
}

/// What the contract behaviours leave in a store, all in one: `team/app`'s manifests and
/// tags, with an index and a referrer still naming `m2` after it was deleted, an import
/// into `team/other`, a blob no manifest uses; a subscription, group and registry of their
/// own with a failed job; a directory with a principal deleted (it took its credentials and
/// role assignment) and one revoked, a role and another's assignment of it, retired
/// signing keys; a registry's scope map, token, admin user and passwords.
async fn leftovers(s: &SqliteMetadataStore) {
    let app = metadata::team_app(s).await;
    metadata::imported(s, &app).await;
    let (m1, m2) = (app.m1.record.digest.clone(), app.m2.record.digest.clone());
    let mut index = manifest(b"idx", vec![], None, &app.r);
    index.record.media_type = "application/vnd.oci.image.index.v1+json".into();
    index.children = vec![BlobRef::new(m2.clone(), 2), BlobRef::new(m1, 2)];
    let mut referrer = manifest(b"sig", vec![], None, &app.r);
    referrer.record.subject = Some(m2.clone());
    referrer.record.artifact_type = Some("application/vnd.example.sig".into());
    for m in [&index, &referrer] {
        assert_eq!(s.put_manifest(m).await.unwrap(), PutManifestOutcome::Stored);
    }
    assert!(s.delete_manifest(&app.r, &m2).await.unwrap());

    management::job(s).await;
    let owner = management::fence("node-a", 0);
    let error = JobError { code: "X".into(), message: "m".into() };
    let progress = JobProgress::default();
    let failed = s.update_job(&owner, JobState::Failed, &progress, Some(&error));
    assert!(failed.await.unwrap());

    identity::assigned(s).await;
    s.replace_credentials(&identity::cred("c3", 3)).await.unwrap();
    assert!(s.update_principal("bbbb0001", Some(false), true).await.unwrap());
    assert!(s.delete_principal("aaaa0001").await.unwrap());
    identity::keys(s).await;
    s.retire_signing_keys("k3", 10).await.unwrap();
    let reg = identity::with_token(s).await;
    s.put_registry_token(&identity::admin(reg.id)).await.unwrap();
    s.put_token_password(&identity::sealed(reg.id)).await.unwrap();
    s.put_token_password(&identity::pw(reg.id, "password1", "h1", 1)).await.unwrap();
}

/// Content of every kind in a repository of the default registry: a tagged image, an
/// untagged one, a referrer of the first, an index of both; and a finished and a running
/// import job.
async fn populate(s: &SqliteMetadataStore) {
    let default = s.default_registry().await.unwrap();
    let r = repo(default.id, "moved/app");
    let layer = Digest::sha256_of(b"moved layer");
    s.add_blob(&layer, 11, Some(&r)).await.unwrap();
    let tagged = manifest(b"tagged", vec![BlobRef::new(layer.clone(), 11)], Some("v1"), &r);
    let untagged = manifest(b"untagged", vec![BlobRef::new(layer.clone(), 11)], None, &r);
    let mut referrer = manifest(b"sbom", vec![BlobRef::new(layer.clone(), 11)], None, &r);
    referrer.record.subject = Some(tagged.record.digest.clone());
    referrer.record.artifact_type = Some("application/vnd.example.sbom".into());
    referrer.record.annotations = Some(r#"{"org.example":"x"}"#.into());
    let mut index = manifest(b"index", vec![], Some("multi"), &r);
    index.record.media_type = "application/vnd.oci.image.index.v1+json".into();
    index.children = [&tagged, &untagged]
        .iter()
        .map(|m| BlobRef {
            platform: Some(r#"{"os":"linux","architecture":"arm64"}"#.into()),
            ..BlobRef::new(m.record.digest.clone(), m.record.content.len() as u64)
        })
        .collect();
    for m in [&tagged, &untagged, &referrer, &index] {
        assert_eq!(s.put_manifest(m).await.unwrap(), PutManifestOutcome::Stored);
    }
    // The directory and the registry's own credentials.
    s.put_tenant(&TenantRecord { id: "t-moved".into(), name: "moved".into(), created_at: 3 })
        .await
        .unwrap();
    let sp = PrincipalRecord {
        token_generation: 0,
        id: "P-Moved".into(),
        tenant: "t-moved".into(),
        kind: "ServicePrincipal".into(),
        name: "ci-bot".into(),
        app_id: Some("APP-1".into()),
        enabled: true,
        created_at: 4,
    };
    assert!(s.create_principal(&sp).await.unwrap());
    s.add_credential(&CredentialRecord {
        id: "c1".into(),
        principal: sp.id.clone(),
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        hint: "abc".into(),
        display_name: "secret".into(),
        expires_at: Some(9_999_999_999_999),
        created_at: 5,
    })
    .await
    .unwrap();
    let role = RoleDefinitionRecord {
        id: "role-1".into(),
        name: "Puller".into(),
        body: r#"{"permissions":[]}"#.into(),
        created_at: 6,
    };
    s.put_role_definition(&role).await.unwrap();
    assert!(
        s.create_role_assignment(&RoleAssignmentRecord {
            id: "ra-1".into(),
            scope: "/subscriptions/x".into(),
            role_definition_id: role.id.clone(),
            principal_id: sp.id.clone(),
            principal_type: "ServicePrincipal".into(),
            condition: Some("@Resource[x] StringEquals 'y'".into()),
            description: None,
            created_at: 7,
        })
        .await
        .unwrap()
    );
    s.add_signing_key(&SigningKeyRecord {
        kid: "moved-key".into(),
        pkcs8: vec![0, 1, 2, 255],
        created_at: 8,
        retired_at: Some(9),
    })
    .await
    .unwrap();
    s.put_scope_map(&ScopeMapRecord {
        registry_id: default.id,
        name: "pull-app".into(),
        description: Some("pull".into()),
        actions: vec!["repositories/moved/app/content/read".into()],
        created_at: 10,
    })
    .await
    .unwrap();
    s.put_registry_token(&RegistryTokenRecord {
        registry_id: default.id,
        kind: "token".into(),
        name: "Puller-Token".into(),
        scope_map: Some("pull-app".into()),
        enabled: false,
        created_at: 11,
    })
    .await
    .unwrap();
    s.put_token_password(&TokenPasswordRecord {
        registry_id: default.id,
        kind: "token".into(),
        token: "Puller-Token".into(),
        slot: "password1".into(),
        hash: "$argon2id$hash".into(),
        sealed: Some(vec![9, 8, 7]),
        expires_at: None,
        created_at: 12,
    })
    .await
    .unwrap();
    for (id, status) in
        [("registries-done", JobState::Succeeded), ("registries-running", JobState::Running)]
    {
        s.create_job(
            &JobRecord {
                id: id.into(),
                registry_id: default.id,
                request: r#"{"source":{"sourceImage":"x:1"}}"#.into(),
                resumable: true,
                status,
                progress: JobProgress {
                    manifests: [("x@sha256:00".to_owned(), ManifestState::Pending)].into(),
                    ..JobProgress::default()
                },
                error: None,
                created_at: 5,
                updated_at: 6,
                owner: Some("node-a".into()),
                lease_until: 0,
                lease_epoch: 0,
            },
            7_000,
        )
        .await
        .unwrap();
    }
}
