//! GC's queries on a `MetadataStore`: links no manifest uses go after their grace period,
//! then blobs nothing references; a pass sees what changed — a link too young waits, a
//! deleted repository's blobs become collectable — and garbage stays listed until
//! forgotten. On SQLite and PostgreSQL.

use wharf_oci::Digest;
use wharf_storage::*;

use crate::metadata::{TeamApp, imported, team_app};
use crate::{manifest, repo};

contract_tests!([sqlite, postgres] [
    gc_unlinks_what_no_manifest_uses,
    gc_lists_the_blobs_no_manifest_references,
    gc_forgets_only_unused_blobs_past_their_grace_period,
    a_young_link_waits_for_its_grace_period,
    garbage_stays_listed_until_forgotten,
    a_deleted_repositorys_blobs_become_collectable,
    a_blob_pushed_again_before_it_is_forgotten_is_kept,
]);

/// `team_app` and its import, with `m2` (the only user of the config) deleted: `m1`
/// (untagged) still uses the layer, and `m3` the staged blob. Returns the staged blob.
async fn m2_deleted(meta: &dyn MetadataStore) -> (TeamApp, Digest) {
    let app = team_app(meta).await;
    let staged = imported(meta, &app).await;
    assert!(meta.delete_manifest(&app.r, &app.m2.record.digest).await.unwrap());
    (app, staged)
}

async fn gc_unlinks_what_no_manifest_uses(meta: &dyn MetadataStore) {
    let (TeamApp { other, layer, .. }, _) = m2_deleted(meta).await;
    let future = now_millis() + 1000;
    assert!(meta.unlink_stale_blobs(future).await.unwrap() >= 1);
    assert_eq!(
        meta.linked_blob_size(&other, &layer).await.unwrap(),
        None,
        "team/other never used the layer"
    );
}

async fn gc_lists_the_blobs_no_manifest_references(meta: &dyn MetadataStore) {
    let (TeamApp { r, layer, config, m1, .. }, _) = m2_deleted(meta).await;
    let future = now_millis() + 1000;
    meta.unlink_stale_blobs(future).await.unwrap();
    // m2 (deleted) used the config; m1 (untagged) still uses the layer.
    assert_eq!(meta.unreferenced_blobs(future).await.unwrap(), vec![config.clone()]);
    assert!(!meta.forget_blob_if_unreferenced(&layer, future).await.unwrap());
    let m1_digest = m1.record.digest.clone();
    assert!(meta.delete_manifest(&r, &m1_digest).await.unwrap());
    meta.unlink_stale_blobs(future).await.unwrap();
    let mut unreferenced = meta.unreferenced_blobs(future).await.unwrap();
    unreferenced.sort();
    let mut want = vec![layer.clone(), config.clone()];
    want.sort();
    assert_eq!(unreferenced, want);
}

async fn gc_forgets_only_unused_blobs_past_their_grace_period(meta: &dyn MetadataStore) {
    let (TeamApp { r, layer, config, m1, .. }, staged) = m2_deleted(meta).await;
    let future = now_millis() + 1000;
    assert!(meta.delete_manifest(&r, &m1.record.digest).await.unwrap());
    meta.unlink_stale_blobs(future).await.unwrap();
    assert!(
        !meta.forget_blob_if_unreferenced(&layer, now_millis() - 60_000).await.unwrap(),
        "within the grace period"
    );
    assert!(meta.touch_blob(&config).await.unwrap());
    assert!(meta.forget_blob_if_unreferenced(&layer, future).await.unwrap());
    assert_eq!(meta.blob_size(&layer).await.unwrap(), None);
    assert!(!meta.forget_blob_if_unreferenced(&staged, future).await.unwrap(), "m3 uses it");
}

/// `gc/young`'s blob, linked now.
async fn young(meta: &dyn MetadataStore) -> (RepoKey, Digest) {
    let default = meta.default_registry().await.unwrap();
    let young = repo(default.id, "gc/young");
    let x = Digest::sha256_of(b"gc young blob");
    meta.add_blob(&x, 13, Some(&young)).await.unwrap();
    (young, x)
}

async fn a_young_link_waits_for_its_grace_period(meta: &dyn MetadataStore) {
    let (young, x) = young(meta).await;
    let past = now_millis() - 60_000;
    assert_eq!(meta.unlink_stale_blobs(past).await.unwrap(), 0, "within its grace period");
    assert!(!meta.unreferenced_blobs(past).await.unwrap().contains(&x));
    assert_eq!(meta.linked_blob_size(&young, &x).await.unwrap(), Some(13));
    let future = now_millis() + 1000;
    assert!(meta.unlink_stale_blobs(future).await.unwrap() >= 1);
    assert_eq!(meta.linked_blob_size(&young, &x).await.unwrap(), None);
}

/// Listed by every pass until forgotten.
async fn garbage_stays_listed_until_forgotten(meta: &dyn MetadataStore) {
    let (_, x) = young(meta).await;
    let future = now_millis() + 1000;
    meta.unlink_stale_blobs(future).await.unwrap();
    assert!(meta.unreferenced_blobs(future).await.unwrap().contains(&x));
    assert!(meta.unreferenced_blobs(future + 1).await.unwrap().contains(&x));
    assert!(meta.forget_blob_if_unreferenced(&x, future).await.unwrap());
    assert!(!meta.unreferenced_blobs(future + 2).await.unwrap().contains(&x));
}

/// `gc/doomed`, with a tagged manifest using its blob. Returns the repository and blob.
async fn doomed(meta: &dyn MetadataStore) -> (RepoKey, Digest) {
    let default = meta.default_registry().await.unwrap();
    let doomed = repo(default.id, "gc/doomed");
    let y = Digest::sha256_of(b"gc doomed blob");
    meta.add_blob(&y, 14, Some(&doomed)).await.unwrap();
    let m = manifest(b"gc doomed manifest", vec![BlobRef::new(y.clone(), 14)], Some("v1"), &doomed);
    assert_eq!(meta.put_manifest(&m).await.unwrap(), PutManifestOutcome::Stored);
    (doomed, y)
}

/// A repository deleted with its manifests: what they used becomes collectable.
async fn a_deleted_repositorys_blobs_become_collectable(meta: &dyn MetadataStore) {
    let (doomed, y) = doomed(meta).await;
    let future = now_millis() + 1000;
    meta.unlink_stale_blobs(future).await.unwrap();
    assert!(!meta.unreferenced_blobs(future).await.unwrap().contains(&y), "in use");
    assert!(meta.delete_repository(&doomed).await.unwrap().is_some());
    meta.unlink_stale_blobs(future).await.unwrap();
    assert!(meta.unreferenced_blobs(future).await.unwrap().contains(&y));
}

async fn a_blob_pushed_again_before_it_is_forgotten_is_kept(meta: &dyn MetadataStore) {
    let (young, _) = young(meta).await;
    let (doomed, y) = doomed(meta).await;
    let future = now_millis() + 1000;
    meta.delete_repository(&doomed).await.unwrap().unwrap();
    meta.unlink_stale_blobs(future).await.unwrap();
    meta.add_blob(&y, 14, Some(&young)).await.unwrap();
    assert!(!meta.forget_blob_if_unreferenced(&y, future).await.unwrap());
    meta.unlink_blob(&young, &y).await.unwrap();
}
