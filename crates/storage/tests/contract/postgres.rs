//! PostgreSQL as a cluster's shared database: nodes migrating together, racing on one tag,
//! one registry name and GC; what nodes share besides locks; locks lost with their
//! connection; a server that is locked, gone or unreachable.

use sqlx::Connection as _;
use wharf_oci::{Digest, Reference, Tag};
use wharf_storage::*;

use crate::backends::PgDatabase;
use crate::{manifest, repo};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_migrate_once() {
    let Some(db) = PgDatabase::create().await else { return };
    let (a, b, c) = tokio::join!(db.open(), db.open(), db.open());
    assert_eq!(a.registries(None, None).await.unwrap().len(), 1, "one default registry");
    assert!(b.default_registry().await.unwrap().is_default);
    assert!(c.subscription(DEFAULT_SUBSCRIPTION).await.unwrap().is_some());
    let mut conn = db.connect().await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, files);
    // A node starting later finds the schema in place.
    db.open().await.close().await;
    for store in [a, b, c] {
        store.close().await;
    }
    conn.close().await.unwrap();
    db.drop().await;
}

/// Two nodes (two pools) push to one tag at once: every push succeeds, and the tag ends on
/// the last push of one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_moving_one_tag_all_succeed() {
    let Some(db) = PgDatabase::create().await else { return };
    let (a, b) = (db.open().await, db.open().await);
    let default = a.default_registry().await.unwrap();
    let r = repo(default.id, "race/tags");
    let layer = Digest::sha256_of(b"shared layer");
    a.add_blob(&layer, 12, Some(&r)).await.unwrap();
    let node = |store: PostgresMetadataStore, name: &'static str| {
        let (r, layer) = (r.clone(), layer.clone());
        tokio::spawn(async move {
            let mut last = None;
            for i in 0..50 {
                let content = format!("{name}-{i}");
                let blobs = vec![BlobRef::new(layer.clone(), 12)];
                let m = manifest(content.as_bytes(), blobs, Some("latest"), &r);
                assert_eq!(store.put_manifest(&m).await.unwrap(), PutManifestOutcome::Stored);
                last = Some(m.record.digest);
            }
            last.unwrap()
        })
    };
    let (from_a, from_b) = (node(a.clone(), "a"), node(b.clone(), "b"));
    let (last_a, last_b) = (from_a.await.unwrap(), from_b.await.unwrap());
    let latest = a.tag_record(&r, &Tag::parse("latest").unwrap()).await.unwrap().unwrap().unwrap();
    assert!(latest.digest == last_a || latest.digest == last_b, "{latest:?}");
    let summary = b.repository_summary(&r).await.unwrap().unwrap();
    assert_eq!((summary.manifest_count, summary.tag_count), (100, 1));
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// GC on one node races pushes on another, blob by blob: whatever the interleaving, a
/// forgotten blob is linked nowhere and no manifest references it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_racing_pushes_never_forgets_a_blob_in_use() {
    let Some(db) = PgDatabase::create().await else { return };
    let (pusher, gc) = (db.open().await, db.open().await);
    let default = pusher.default_registry().await.unwrap();
    let r = repo(default.id, "race/gc");
    let (mut pushed, mut forgotten) = (0, 0);
    for i in 0..40 {
        let blob = Digest::sha256_of(format!("blob {i}").as_bytes());
        // Staged (linked nowhere), so that GC may take it once past its grace period.
        pusher.add_blob(&blob, 7, None).await.unwrap();
        let m =
            manifest(format!("uses {i}").as_bytes(), vec![BlobRef::new(blob.clone(), 7)], None, &r);
        let cutoff = now_millis() + 60_000;
        let collect = {
            let (gc, blob) = (gc.clone(), blob.clone());
            tokio::spawn(async move {
                gc.unlink_stale_blobs(cutoff).await.unwrap();
                gc.forget_blob_if_unreferenced(&blob, cutoff).await.unwrap()
            })
        };
        let push = {
            let (pusher, r, blob, m) = (pusher.clone(), r.clone(), blob.clone(), m.clone());
            tokio::spawn(async move {
                if !pusher.link_blob(&r, &blob).await.unwrap() {
                    return None;
                }
                Some(pusher.put_manifest(&m).await.unwrap())
            })
        };
        let (forgot, outcome) = (collect.await.unwrap(), push.await.unwrap());
        let stored = pusher.blob_size(&blob).await.unwrap().is_some();
        let linked = pusher.linked_blob_size(&r, &blob).await.unwrap().is_some();
        let has_manifest = pusher
            .manifest(&r, &Reference::Digest(m.record.digest.clone()))
            .await
            .unwrap()
            .is_some();
        assert_eq!(forgot, !stored, "round {i}");
        assert_eq!(has_manifest, outcome == Some(PutManifestOutcome::Stored), "round {i}");
        if forgot {
            forgotten += 1;
            assert!(!linked && !has_manifest, "round {i}: a forgotten blob is still in use");
        }
        if has_manifest {
            pushed += 1;
            assert!(stored && linked, "round {i}: a stored manifest lost its blob");
        }
    }
    // No reference anywhere to a blob that isn't stored, nor one that isn't linked.
    let mut conn = db.connect().await;
    let dangling: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM manifest_refs m
          WHERE m.kind = 0 AND (
                NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = m.target)
             OR NOT EXISTS (SELECT 1 FROM repo_blobs l
                             WHERE l.repo_id = m.repo_id AND l.digest = m.target))",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(dangling, 0);
    eprintln!("gc race: {pushed} pushes stored, {forgotten} blobs forgotten, of 40");
    conn.close().await.unwrap();
    pusher.close().await;
    gc.close().await;
    db.drop().await;
}

/// A lock held too long and an unreachable server are "busy" (503, try again), never an
/// internal error; a server that dropped the store's connections is reconnected to.
#[tokio::test]
async fn unavailable_is_busy() {
    let Some(db) = PgDatabase::create().await else { return };
    let options = PostgresOptions {
        statement_timeout: std::time::Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let store = PostgresMetadataStore::open(&db.url, options).await.unwrap();
    let mut other = db.connect().await;
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("LOCK TABLE blobs IN ACCESS EXCLUSIVE MODE").execute(&mut other).await.unwrap();
    let d = Digest::sha256_of(b"x");
    let err = store.add_blob(&d, 1, None).await.unwrap_err();
    assert!(err.is_busy(), "{err}");
    let err = store.blob_size(&d).await.unwrap_err();
    assert!(err.is_busy(), "{err}");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    store.add_blob(&d, 1, None).await.unwrap();

    // The server ends every session of the store (a restart, a failover).
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut other)
    .await
    .unwrap();
    match store.blob_size(&d).await {
        Ok(size) => assert_eq!(size, Some(1)),
        Err(e) => assert!(e.is_busy(), "{e}"),
    }
    assert_eq!(store.blob_size(&d).await.unwrap(), Some(1));

    // Nothing listens there.
    let options = PostgresOptions {
        acquire_timeout: std::time::Duration::from_millis(500),
        ..PostgresOptions::default()
    };
    let err = PostgresMetadataStore::open("postgres://wharf@127.0.0.1:9/none", options)
        .await
        .unwrap_err();
    assert!(err.is_busy(), "{err}");
    other.close().await.unwrap();
    store.close().await;
    db.drop().await;
}

/// Two nodes create a registry of the same name at once: one gets it, the other is told
/// the name is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_creating_one_registry_name_one_wins() {
    let Some(db) = PgDatabase::create().await else { return };
    let (a, b) = (db.open().await, db.open().await);
    for i in 0..20 {
        let reg = RegistryRecord {
            id: RegistryId(0),
            name: format!("race{i}"),
            is_default: false,
            subscription: DEFAULT_SUBSCRIPTION.into(),
            resource_group: DEFAULT_RESOURCE_GROUP.into(),
            location: "here".into(),
            sku: "Basic".into(),
            properties: "{}".into(),
            tags: "{}".into(),
            created_at: 1,
        };
        let upper = RegistryRecord { name: reg.name.to_uppercase(), ..reg.clone() };
        let (x, y) = tokio::join!(a.create_registry(&reg), b.create_registry(&upper));
        let mut outcomes = [x.unwrap(), y.unwrap()];
        outcomes.sort_by_key(|o| matches!(o, CreateRegistryOutcome::NameTaken));
        assert!(matches!(outcomes[0], CreateRegistryOutcome::Created(_)), "{outcomes:?}");
        assert_eq!(outcomes[1], CreateRegistryOutcome::NameTaken);
    }
    assert_eq!(a.registries(None, None).await.unwrap().len(), 21);
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// What cluster nodes share besides locks: sign-in failures, counted per key in windows;
/// an access version that moves with every change to who may do what — and only then;
/// proofs that a source serves a blob, and claims on downloads in progress.
#[tokio::test]
async fn shares_failures_access_changes_and_download_proofs() {
    let Some(db) = PgDatabase::create().await else { return };
    let (one, other) = (db.open().await, db.open().await);
    // Sign-in attempts are reserved on every key or none, against each key's limit,
    // whichever node asks; a success gives its slot back.
    let keys = [("name:x".to_owned(), 3), ("ip:10.0.0.1".to_owned(), 2)];
    let (base, max) = (60_000, 240_000);
    assert_eq!(one.reserve_sign_in(&keys, 1_000, base, max).await.unwrap(), None);
    assert_eq!(other.reserve_sign_in(&keys[..1], 2_000, base, max).await.unwrap(), None);
    assert_eq!(other.reserve_sign_in(&keys, 3_000, base, max).await.unwrap(), None);
    // The address is full (2): refused until its window ends, and the name not counted.
    assert_eq!(one.reserve_sign_in(&keys, 4_000, base, max).await.unwrap(), Some(61_000));
    assert_eq!(one.reserve_sign_in(&keys[..1], 4_000, base, max).await.unwrap(), Some(61_000));
    other.release_sign_in(&["ip:10.0.0.1".to_owned()]).await.unwrap();
    assert_eq!(one.reserve_sign_in(&keys[1..], 5_000, base, max).await.unwrap(), None);
    // A window that ended full is followed by one twice as long (back-off); one that
    // didn't, by the base window again.
    assert_eq!(one.reserve_sign_in(&keys, 61_000, base, max).await.unwrap(), None);
    for at in [62_000, 63_000] {
        one.reserve_sign_in(&keys[..1], at, base, max).await.unwrap();
    }
    assert_eq!(
        one.reserve_sign_in(&keys[..1], 64_000, base, max).await.unwrap(),
        Some(61_000 + 120_000)
    );
    assert_eq!(one.reserve_sign_in(&keys[1..], 121_000, base, max).await.unwrap(), None);

    let before = one.access_version().await.unwrap();
    // Registry content isn't access: pushing leaves the version alone.
    let default = one.registries(None, None).await.unwrap()[0].id;
    let layer = Digest::sha256_of(b"layer");
    one.add_blob(&layer, 5, Some(&repo(default, "team/app"))).await.unwrap();
    let m = manifest(b"m", vec![BlobRef::new(layer, 5)], Some("v1"), &repo(default, "team/app"));
    one.put_manifest(&m).await.unwrap();
    assert_eq!(other.access_version().await.unwrap(), before);
    // A change to a principal, through either node, moves it for both.
    let tenant = TenantRecord { id: "t1".into(), name: "Contoso".into(), created_at: 1 };
    other.put_tenant(&tenant).await.unwrap();
    let after = one.access_version().await.unwrap();
    assert!(after > before);

    // Download proofs: seen by every node until they expire.
    assert!(!other.download_proven("k1", 0).await.unwrap());
    one.prove_download("k1", 10_000, 3_600_000).await.unwrap();
    assert!(other.download_proven("k1", 9_999).await.unwrap());
    assert!(!other.download_proven("k1", 10_000).await.unwrap(), "older than asked for");
    other.prove_download("k2", 3_700_000, 3_600_000).await.unwrap();
    assert!(!one.download_proven("k1", 0).await.unwrap(), "an expired proof is dropped");

    // Download claims: one owner at a time, renewable, taken over once run out or released.
    assert!(one.claim_download("d", "node-1", 0, 30_000).await.unwrap());
    assert!(!other.claim_download("d", "node-2", 10_000, 40_000).await.unwrap());
    assert!(one.claim_download("d", "node-1", 20_000, 50_000).await.unwrap(), "renewed");
    assert!(!other.claim_download("d", "node-2", 45_000, 75_000).await.unwrap());
    assert!(other.claim_download("d", "node-2", 50_000, 80_000).await.unwrap(), "ran out");
    one.release_download("d", "node-1").await.unwrap(); // not its claim any more: no effect
    assert!(!one.claim_download("d", "node-1", 60_000, 90_000).await.unwrap());
    other.release_download("d", "node-2").await.unwrap();
    assert!(one.claim_download("d", "node-1", 61_000, 91_000).await.unwrap(), "released");
    db.drop().await;
}

/// A cluster lock lives with its connection: cut the connection (a failover, a network
/// partition) and the holder is told so before it publishes, while another node takes the
/// lock. Locks are not nested and never wait on one another, so many holders at once on a
/// small pool all get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_lock_is_noticed_and_many_holders_get_through() {
    let Some(db) = PgDatabase::create().await else { return };
    let (one, other) = (db.open().await, db.open().await);
    let mut held = one.lock("blob/sha256:x").await.unwrap();
    held.verify().await.unwrap();
    assert!(other.try_lock("blob/sha256:x").await.unwrap().is_none());
    let mut admin = db.connect().await;
    sqlx::query(
        // This database's sessions only: other tests' (their migrations hold advisory
        // locks too) share the server.
        "SELECT pg_terminate_backend(pid) FROM pg_locks
          WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(held.verify().await.unwrap_err().is_busy(), "a lost lock reads as lost");
    drop(held);
    let taken =
        tokio::time::timeout(std::time::Duration::from_secs(5), other.lock("blob/sha256:x"));
    assert!(taken.await.is_ok(), "the lock went with its connection");

    let small = PostgresMetadataStore::open(
        &db.url,
        PostgresOptions { max_connections: 4, ..PostgresOptions::default() },
    )
    .await
    .unwrap();
    let holders = (0..32).map(|i| {
        let small = small.clone();
        tokio::spawn(async move {
            let mut a = small.lock(&format!("upload/{i}")).await?;
            a.verify().await?;
            drop(a);
            let mut b = small.lock(&format!("blob/{}", i % 4)).await?;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            b.verify().await
        })
    });
    for h in futures::future::join_all(holders).await {
        h.unwrap().unwrap();
    }
    admin.close().await.unwrap();
    for s in [one, other, small] {
        s.close().await;
    }
    db.drop().await;
}
