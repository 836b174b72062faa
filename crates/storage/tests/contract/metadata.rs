//! `MetadataStore`: repositories, blob links, manifests, tags, referrers, batches and
//! upload records, on SQLite and PostgreSQL.

use uuid::Uuid;
use wharf_oci::{Digest, Reference, Tag};
use wharf_storage::*;

use crate::{manifest, repo};

contract_tests!([sqlite, postgres] [
    a_manifest_needs_its_blobs_in_its_repository,
    tags_move_and_list,
    a_manifest_summary_is_its_listing_item,
    tag_records_name_their_manifest,
    repository_summaries_count_manifests_and_tags,
    an_index_lists_its_children_in_order,
    referrers_filter_by_type_and_page,
    a_batch_is_all_or_nothing,
    deleting_a_manifest_takes_its_tags,
    upload_records_are_updated_and_expire,
    deleting_a_repository_takes_everything_in_it,
]);

fn staged_absent() -> Digest {
    Digest::sha256_of(b"never stored")
}

/// What `team_app` stores: in `team/app` of the default registry, `m1` (the layer, 5
/// bytes; untagged once `m2` took its tag) and `m2` (the config, 6 bytes; tagged `a`, `b`,
/// `c` and `v1`). The layer was also pushed to `team/other`, which no manifest there uses.
pub(crate) struct TeamApp {
    pub(crate) default: RegistryRecord,
    pub(crate) r: RepoKey,
    pub(crate) other: RepoKey,
    pub(crate) layer: Digest,
    pub(crate) config: Digest,
    pub(crate) m1: PutManifest,
    pub(crate) m2: PutManifest,
}

pub(crate) async fn team_app(meta: &dyn MetadataStore) -> TeamApp {
    let default = meta.default_registry().await.unwrap();
    let r = repo(default.id, "team/app");
    let other = repo(default.id, "team/other");
    let (layer, config) = (Digest::sha256_of(b"layer"), Digest::sha256_of(b"config"));
    meta.add_blob(&layer, 5, Some(&other)).await.unwrap();
    assert!(meta.link_blob(&r, &layer).await.unwrap());
    let m1 = manifest(b"m1", vec![BlobRef::new(layer.clone(), 5)], Some("v1"), &r);
    assert_eq!(meta.put_manifest(&m1).await.unwrap(), PutManifestOutcome::Stored);
    meta.add_blob(&config, 6, Some(&r)).await.unwrap();
    let m2 = manifest(b"m2", vec![BlobRef::new(config.clone(), 6)], Some("v1"), &r);
    meta.put_manifest(&m2).await.unwrap();
    for t in ["b", "a", "c"] {
        meta.put_manifest(&PutManifest { tag: Some(Tag::parse(t).unwrap()), ..m2.clone() })
            .await
            .unwrap();
    }
    TeamApp { default, r, other, layer, config, m1, m2 }
}

/// `team_app`, and an import into `team/other`: `m3` (a staged blob, 6 bytes), tagged
/// `imported`. Returns the staged blob.
pub(crate) async fn imported(meta: &dyn MetadataStore, app: &TeamApp) -> Digest {
    let staged = Digest::sha256_of(b"staged");
    meta.add_blob(&staged, 6, None).await.unwrap();
    let m3 = manifest(b"m3", vec![BlobRef::new(staged.clone(), 6)], None, &app.other);
    let ok = CommitBatch {
        links: vec![(app.other.clone(), staged.clone())],
        manifests: vec![m3.clone()],
        tags: vec![(app.other.clone(), Tag::parse("imported").unwrap(), m3.record.digest)],
        force: false,
        fence: None,
    };
    assert_eq!(meta.commit_batch(&ok).await.unwrap(), CommitOutcome::Committed);
    staged
}

/// A manifest needs its blobs in its repository; nothing is stored otherwise.
async fn a_manifest_needs_its_blobs_in_its_repository(meta: &dyn MetadataStore) {
    let default = meta.default_registry().await.unwrap();
    assert!(default.is_default);
    let r = repo(default.id, "team/app");
    let other = repo(default.id, "team/other");
    let layer = Digest::sha256_of(b"layer");
    let m1 = manifest(b"m1", vec![BlobRef::new(layer.clone(), 5)], Some("v1"), &r);
    assert_eq!(
        meta.put_manifest(&m1).await.unwrap(),
        PutManifestOutcome::BlobUnknown(layer.clone())
    );
    assert_eq!(meta.tags(&r, None, None).await.unwrap(), None);
    meta.add_blob(&layer, 5, Some(&other)).await.unwrap();
    assert_eq!(
        meta.put_manifest(&m1).await.unwrap(),
        PutManifestOutcome::BlobUnknown(layer.clone())
    );
    assert!(meta.link_blob(&r, &layer).await.unwrap());
    assert_eq!(meta.linked_blob_size(&r, &layer).await.unwrap(), Some(5));
    let wrong = manifest(b"m0", vec![BlobRef::new(layer.clone(), 6)], None, &r);
    assert!(matches!(
        meta.put_manifest(&wrong).await.unwrap(),
        PutManifestOutcome::SizeMismatch { .. }
    ));
    assert_eq!(meta.put_manifest(&m1).await.unwrap(), PutManifestOutcome::Stored);
    let by_tag =
        meta.manifest(&r, &Reference::Tag(Tag::parse("v1").unwrap())).await.unwrap().unwrap();
    assert_eq!(by_tag.content.as_ref(), b"m1");
    assert_eq!(
        meta.manifest_meta(&r, &Reference::Digest(by_tag.digest.clone()))
            .await
            .unwrap()
            .unwrap()
            .size,
        2
    );
}

/// Tags move in one step; listings are lexical with `last` and limits.
async fn tags_move_and_list(meta: &dyn MetadataStore) {
    let TeamApp { default, r, m2, .. } = team_app(meta).await;
    let v1 = meta.manifest(&r, &Reference::Tag(Tag::parse("v1").unwrap())).await.unwrap().unwrap();
    assert_eq!(v1.content.as_ref(), b"m2");
    assert_eq!(meta.tags(&r, None, None).await.unwrap().unwrap(), ["a", "b", "c", "v1"]);
    assert_eq!(meta.tags(&r, Some("a"), Some(2)).await.unwrap().unwrap(), ["b", "c"]);
    assert_eq!(meta.repositories(default.id, None, None).await.unwrap(), ["team/app"]);
    let listed = meta.manifest_listing(&r, None, None, ListOrder::Name).await.unwrap().unwrap();
    assert_eq!(listed.len(), 2);
    let m2_digest = m2.record.digest.clone();
    assert_eq!(listed.iter().find(|l| l.digest == m2_digest).unwrap().tags, ["a", "b", "c", "v1"]);
}

/// One item is one lookup, with the same answer as the listing.
async fn a_manifest_summary_is_its_listing_item(meta: &dyn MetadataStore) {
    let TeamApp { default, r, m2, .. } = team_app(meta).await;
    let listed = meta.manifest_listing(&r, None, None, ListOrder::Name).await.unwrap().unwrap();
    let m2_digest = m2.record.digest.clone();
    let one = meta.manifest_summary(&r, &m2_digest).await.unwrap().unwrap().unwrap();
    assert_eq!(Some(&one), listed.iter().find(|l| l.digest == m2_digest));
    assert_eq!(one.size, 2);
    assert_eq!(one.blob_bytes, 6);
    assert_eq!(meta.manifest_summary(&r, &staged_absent()).await.unwrap(), Some(None));
    assert_eq!(meta.manifest_summary(&repo(default.id, "none"), &m2_digest).await.unwrap(), None);
}

async fn tag_records_name_their_manifest(meta: &dyn MetadataStore) {
    let TeamApp { r, m2, .. } = team_app(meta).await;
    let m2_digest = m2.record.digest.clone();
    let tag = meta.tag_record(&r, &Tag::parse("b").unwrap()).await.unwrap().unwrap().unwrap();
    assert_eq!(tag.digest, m2_digest);
    assert_eq!(meta.tag_record(&r, &Tag::parse("zz").unwrap()).await.unwrap(), Some(None));
}

async fn repository_summaries_count_manifests_and_tags(meta: &dyn MetadataStore) {
    let TeamApp { default, r, .. } = team_app(meta).await;
    let summary = meta.repository_summary(&r).await.unwrap().unwrap();
    assert_eq!((summary.manifest_count, summary.tag_count), (2, 4));
    assert!(summary.updated_at >= summary.created_at);
    assert_eq!(meta.repository_summary(&repo(default.id, "none")).await.unwrap(), None);
}

/// An index lists its children with their platforms, in index order.
async fn an_index_lists_its_children_in_order(meta: &dyn MetadataStore) {
    let TeamApp { r, m1, m2, .. } = team_app(meta).await;
    let m2_digest = m2.record.digest.clone();
    let mut index = manifest(b"idx", vec![], None, &r);
    index.record.media_type = "application/vnd.oci.image.index.v1+json".into();
    index.children = vec![
        BlobRef {
            platform: Some(r#"{"architecture":"arm64","os":"linux"}"#.into()),
            ..BlobRef::new(m2_digest.clone(), 2)
        },
        BlobRef::new(m1.record.digest.clone(), 2),
    ];
    assert_eq!(meta.put_manifest(&index).await.unwrap(), PutManifestOutcome::Stored);
    let idx = meta.manifest_summary(&r, &index.record.digest).await.unwrap().unwrap().unwrap();
    assert_eq!(
        idx.references,
        [
            (m2_digest.clone(), Some(r#"{"architecture":"arm64","os":"linux"}"#.to_owned())),
            (m1.record.digest.clone(), None)
        ]
    );
    let listed = meta.manifest_listing(&r, None, None, ListOrder::Name).await.unwrap().unwrap();
    assert_eq!(listed.iter().find(|l| l.digest == index.record.digest), Some(&idx));
}

/// Referrers: filtered by artifact type, and never more than asked for.
async fn referrers_filter_by_type_and_page(meta: &dyn MetadataStore) {
    let TeamApp { r, .. } = team_app(meta).await;
    let v1 = meta.manifest(&r, &Reference::Tag(Tag::parse("v1").unwrap())).await.unwrap().unwrap();
    let mut referrer = manifest(b"sig", vec![], None, &r);
    referrer.record.subject = Some(v1.digest.clone());
    referrer.record.artifact_type = Some("application/vnd.example.sig".into());
    meta.put_manifest(&referrer).await.unwrap();
    let refs = meta.referrers(&r, &v1.digest, None, None, 10).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].artifact_type.as_deref(), Some("application/vnd.example.sig"));
    let mut sbom = manifest(b"sbom", vec![], None, &r);
    sbom.record.subject = Some(v1.digest.clone());
    sbom.record.artifact_type = Some("application/vnd.example.sbom".into());
    meta.put_manifest(&sbom).await.unwrap();
    assert_eq!(meta.referrers(&r, &v1.digest, None, None, 10).await.unwrap().len(), 2);
    // A page of one, and the next after it.
    let first = meta.referrers(&r, &v1.digest, None, None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let next = meta.referrers(&r, &v1.digest, None, Some(&first[0].digest), 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].digest, first[0].digest);
    let sboms = meta.referrers(&r, &v1.digest, Some("application/vnd.example.sbom"), None, 10);
    assert_eq!(sboms.await.unwrap()[0].digest, sbom.record.digest);
}

/// A batch is all or nothing.
async fn a_batch_is_all_or_nothing(meta: &dyn MetadataStore) {
    let TeamApp { r, other, .. } = team_app(meta).await;
    let staged = Digest::sha256_of(b"staged");
    meta.add_blob(&staged, 6, None).await.unwrap();
    assert_eq!(
        meta.linked_blob_size(&other, &staged).await.unwrap(),
        None,
        "staged blobs are visible nowhere"
    );
    let m3 = manifest(b"m3", vec![BlobRef::new(staged.clone(), 6)], None, &other);
    let conflicting = CommitBatch {
        links: vec![(other.clone(), staged.clone())],
        manifests: vec![m3.clone()],
        tags: vec![(r.clone(), Tag::parse("v1").unwrap(), m3.record.digest.clone())],
        force: false,
        fence: None,
    };
    assert!(matches!(
        meta.commit_batch(&conflicting).await.unwrap(),
        CommitOutcome::TagExists { .. }
    ));
    assert_eq!(
        meta.linked_blob_size(&other, &staged).await.unwrap(),
        None,
        "the failed batch linked nothing"
    );
    assert!(
        meta.manifest(&other, &Reference::Digest(m3.record.digest.clone()))
            .await
            .unwrap()
            .is_none()
    );
    let missing = CommitBatch {
        links: vec![(other.clone(), Digest::sha256_of(b"nope"))],
        ..Default::default()
    };
    assert!(matches!(meta.commit_batch(&missing).await.unwrap(), CommitOutcome::BlobMissing(_)));
    let ok = CommitBatch {
        links: vec![(other.clone(), staged.clone())],
        manifests: vec![m3.clone()],
        tags: vec![(other.clone(), Tag::parse("imported").unwrap(), m3.record.digest.clone())],
        force: false,
        fence: None,
    };
    assert_eq!(meta.commit_batch(&ok).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(meta.tags(&other, None, None).await.unwrap().unwrap(), ["imported"]);
}

/// Deleting a manifest takes its tags.
async fn deleting_a_manifest_takes_its_tags(meta: &dyn MetadataStore) {
    let TeamApp { r, .. } = team_app(meta).await;
    let v1 = meta.manifest(&r, &Reference::Tag(Tag::parse("v1").unwrap())).await.unwrap().unwrap();
    assert!(meta.delete_manifest(&r, &v1.digest).await.unwrap());
    assert_eq!(meta.tags(&r, None, None).await.unwrap().unwrap(), Vec::<String>::new());
    assert!(!meta.delete_tag(&r, &Tag::parse("a").unwrap()).await.unwrap());
}

async fn upload_records_are_updated_and_expire(meta: &dyn MetadataStore) {
    let default = meta.default_registry().await.unwrap();
    let r = repo(default.id, "team/app");
    let up = UploadRecord {
        id: Uuid::new_v4(),
        repo: r.clone(),
        size: 0,
        hash_state: vec![1, 2],
        created_at: 0,
        updated_at: 0,
    };
    meta.create_upload(&up).await.unwrap();
    meta.update_upload(up.id, 10, &[3]).await.unwrap();
    let got = meta.upload(up.id).await.unwrap().unwrap();
    assert_eq!((got.size, got.hash_state, got.repo), (10, vec![3], r.clone()));
    assert!(meta.idle_uploads(now_millis() + 1000).await.unwrap().contains(&up.id));
    meta.delete_upload(up.id).await.unwrap();
    assert!(meta.upload(up.id).await.unwrap().is_none());
}

/// A repository goes with everything in it.
async fn deleting_a_repository_takes_everything_in_it(meta: &dyn MetadataStore) {
    let app = team_app(meta).await;
    imported(meta, &app).await;
    let other = app.other;
    let (deleted, tags) = meta.delete_repository(&other).await.unwrap().unwrap();
    assert_eq!((deleted.len(), tags), (1, vec!["imported".to_owned()]));
    assert!(meta.delete_repository(&other).await.unwrap().is_none());
}
