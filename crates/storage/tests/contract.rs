#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The contract every storage backend keeps, written once and run against each
//! implementation: the embedded ones here; a scale-out backend adds one line per trait.

use bytes::Bytes;
use futures::StreamExt;
use uuid::Uuid;
use wharf_oci::{Digest, Reference, RepositoryName, Tag};
use wharf_storage::*;

fn stream(parts: &[&'static [u8]]) -> ByteStream {
    Box::pin(futures::stream::iter(
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>(),
    ))
}

async fn read_all(s: ByteStream) -> Vec<u8> {
    s.map(|c| c.unwrap()).collect::<Vec<_>>().await.concat()
}

fn repo(registry: i64, name: &str) -> RepoKey {
    RepoKey { registry, name: RepositoryName::parse(name).unwrap() }
}

fn manifest(digest_of: &[u8], blobs: Vec<BlobRef>, tag: Option<&str>, r: &RepoKey) -> PutManifest {
    PutManifest {
        repo: r.clone(),
        record: ManifestRecord {
            digest: Digest::sha256_of(digest_of),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: Bytes::copy_from_slice(digest_of),
            artifact_type: None,
            subject: None,
            annotations: None,
            platform: None,
            config_media_type: None,
            blob_bytes: blobs.iter().map(|b| b.size).sum(),
            created_at: now_millis(),
        },
        blobs,
        children: vec![],
        tag: tag.map(|t| Tag::parse(t).unwrap()),
    }
}

async fn blob_store_contract(store: &dyn BlobStore) {
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.read(&d, None).await.unwrap().is_none());

    let id = Uuid::new_v4();
    store.create_upload(id).await.unwrap();
    assert_eq!(store.append_upload(id, 0, stream(&[b"hello", b" "])).await.unwrap().len, 6);
    assert_eq!(store.append_upload(id, 6, stream(&[b"world"])).await.unwrap().len, 11);
    assert_eq!(store.list_uploads().await.unwrap().len(), 1);
    store.commit_upload(id, 11, &d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(11));
    assert_eq!(read_all(store.read(&d, None).await.unwrap().unwrap()).await, b"hello world");
    let part = store.read(&d, Some(ByteRange { start: 6, end: 10 })).await.unwrap().unwrap();
    assert_eq!(read_all(part).await, b"world");
    assert!(store.list_uploads().await.unwrap().is_empty());

    // Chunks of a session are written beside it, then attached at its end, in order.
    let session = Uuid::new_v4();
    store.create_upload(session).await.unwrap();
    let first = store.write_part(session, stream(&[b"hello", b" "])).await.unwrap();
    assert!(first.input_error.is_none());
    let loser = store.write_part(session, stream(&[b"HELLO "])).await.unwrap();
    let listed = store.list_uploads().await.unwrap();
    assert_eq!(listed.iter().filter(|u| u.id == session && u.part.is_some()).count(), 2);
    assert_eq!(store.attach_part(session, 0, &first.part).await.unwrap(), 6);
    store.drop_part(session, loser.part.id).await.unwrap();
    let second = store.write_part(session, stream(&[b"world"])).await.unwrap();
    assert_eq!(store.attach_part(session, 6, &second.part).await.unwrap(), 11);
    // A chunk attached but never recorded (a crash in between) is dropped by the next one.
    let stray = store.write_part(session, stream(&[b"!!!"])).await.unwrap();
    assert_eq!(store.attach_part(session, 11, &stray.part).await.unwrap(), 14);
    let again = store.write_part(session, stream(&[b"?"])).await.unwrap();
    assert_eq!(store.attach_part(session, 11, &again.part).await.unwrap(), 12);
    assert!(store.list_uploads().await.unwrap().iter().all(|u| u.part.is_none()));
    let twelve = Digest::sha256_of(b"hello world?");
    store.commit_upload(session, 12, &twelve).await.unwrap();
    assert_eq!(read_all(store.read(&twelve, None).await.unwrap().unwrap()).await, b"hello world?");
    store.delete(&twelve).await.unwrap();
    // A chunk attached but never recorded, then a commit of what was recorded: the blob is
    // the recorded bytes only.
    let cut = Uuid::new_v4();
    store.create_upload(cut).await.unwrap();
    let first = store.write_part(cut, stream(&[b"hello"])).await.unwrap();
    store.attach_part(cut, 0, &first.part).await.unwrap();
    let unrecorded = store.write_part(cut, stream(&[b" world"])).await.unwrap();
    store.attach_part(cut, 5, &unrecorded.part).await.unwrap();
    let hello = Digest::sha256_of(b"hello");
    store.commit_upload(cut, 5, &hello).await.unwrap();
    assert_eq!(read_all(store.read(&hello, None).await.unwrap().unwrap()).await, b"hello");
    store.delete(&hello).await.unwrap();
    // An empty upload commits as the empty blob even if its file is gone.
    let empty = Uuid::new_v4();
    store.create_upload(empty).await.unwrap();
    store.abort_upload(empty).await.unwrap();
    let nothing = Digest::sha256_of(b"");
    store.commit_upload(empty, 0, &nothing).await.unwrap();
    assert_eq!(store.stat(&nothing).await.unwrap(), Some(0));
    store.delete(&nothing).await.unwrap();

    // A part whose input broke off keeps what came before, and is dropped.
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"xyz")),
        Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "gone")),
    ]));
    let torn = store.write_part(Uuid::new_v4(), failing).await.unwrap();
    assert!(torn.input_error.is_some());
    assert_eq!(torn.part.len, 3);
    let listed: Vec<Digest> = store.list().await.unwrap().into_iter().map(|b| b.digest).collect();
    assert_eq!(listed, vec![d.clone()]);

    // Committing content that is already stored keeps one copy.
    let again = Uuid::new_v4();
    store.create_upload(again).await.unwrap();
    store.append_upload(again, 0, stream(&[b"hello world"])).await.unwrap();
    store.commit_upload(again, 11, &d).await.unwrap();
    assert_eq!(store.list().await.unwrap().len(), 1);

    // An input that fails keeps what it delivered; appending at the old length drops it.
    let torn = Uuid::new_v4();
    store.create_upload(torn).await.unwrap();
    store.append_upload(torn, 0, stream(&[b"ab"])).await.unwrap();
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"XX")),
        Err(std::io::Error::other("client went away")),
    ]));
    let a = store.append_upload(torn, 2, failing).await.unwrap();
    assert!(a.input_error.is_some());
    assert_eq!(a.len, 4);
    assert_eq!(store.append_upload(torn, 2, stream(&[b"cd"])).await.unwrap().len, 4);
    let abcd = Digest::sha256_of(b"abcd");
    store.commit_upload(torn, 4, &abcd).await.unwrap();
    assert_eq!(read_all(store.read(&abcd, None).await.unwrap().unwrap()).await, b"abcd");

    let gone = Uuid::new_v4();
    store.create_upload(gone).await.unwrap();
    store.abort_upload(gone).await.unwrap();
    store.abort_upload(gone).await.unwrap();
    store.delete(&abcd).await.unwrap();
    assert_eq!(store.stat(&abcd).await.unwrap(), None);
    store.delete(&abcd).await.unwrap();
}

fn staged_absent() -> Digest {
    Digest::sha256_of(b"never stored")
}

async fn metadata_contract(meta: &dyn MetadataStore) {
    let default = meta.default_registry().await.unwrap();
    assert!(default.is_default);
    let r = repo(default.id, "team/app");
    let other = repo(default.id, "team/other");
    let (layer, config) = (Digest::sha256_of(b"layer"), Digest::sha256_of(b"config"));

    // A manifest needs its blobs in its repository; nothing is stored otherwise.
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

    // Tags move in one step; listings are lexical with `last` and limits.
    meta.add_blob(&config, 6, Some(&r)).await.unwrap();
    let m2 = manifest(b"m2", vec![BlobRef::new(config.clone(), 6)], Some("v1"), &r);
    meta.put_manifest(&m2).await.unwrap();
    let v1 = meta.manifest(&r, &Reference::Tag(Tag::parse("v1").unwrap())).await.unwrap().unwrap();
    assert_eq!(v1.content.as_ref(), b"m2");
    for t in ["b", "a", "c"] {
        meta.put_manifest(&PutManifest { tag: Some(Tag::parse(t).unwrap()), ..m2.clone() })
            .await
            .unwrap();
    }
    assert_eq!(meta.tags(&r, None, None).await.unwrap().unwrap(), ["a", "b", "c", "v1"]);
    assert_eq!(meta.tags(&r, Some("a"), Some(2)).await.unwrap().unwrap(), ["b", "c"]);
    assert_eq!(meta.repositories(default.id, None, None).await.unwrap(), ["team/app"]);
    let listed = meta.manifest_listing(&r, None, None, ListOrder::Name).await.unwrap().unwrap();
    assert_eq!(listed.len(), 2);
    let m2_digest = m2.record.digest.clone();
    assert_eq!(listed.iter().find(|l| l.digest == m2_digest).unwrap().tags, ["a", "b", "c", "v1"]);
    // One item is one lookup, with the same answer as the listing.
    let one = meta.manifest_summary(&r, &m2_digest).await.unwrap().unwrap().unwrap();
    assert_eq!(Some(&one), listed.iter().find(|l| l.digest == m2_digest));
    assert_eq!(one.size, 2);
    assert_eq!(one.blob_bytes, 6);
    assert_eq!(meta.manifest_summary(&r, &staged_absent()).await.unwrap(), Some(None));
    assert_eq!(meta.manifest_summary(&repo(default.id, "none"), &m2_digest).await.unwrap(), None);
    let tag = meta.tag_record(&r, &Tag::parse("b").unwrap()).await.unwrap().unwrap().unwrap();
    assert_eq!(tag.digest, m2_digest);
    assert_eq!(meta.tag_record(&r, &Tag::parse("zz").unwrap()).await.unwrap(), Some(None));
    let summary = meta.repository_summary(&r).await.unwrap().unwrap();
    assert_eq!((summary.manifest_count, summary.tag_count), (2, 4));
    assert!(summary.updated_at >= summary.created_at);
    assert_eq!(meta.repository_summary(&repo(default.id, "none")).await.unwrap(), None);

    // An index lists its children with their platforms, in index order.
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

    // Referrers.
    let mut referrer = manifest(b"sig", vec![], None, &r);
    referrer.record.subject = Some(v1.digest.clone());
    referrer.record.artifact_type = Some("application/vnd.example.sig".into());
    meta.put_manifest(&referrer).await.unwrap();
    let refs = meta.referrers(&r, &v1.digest).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].artifact_type.as_deref(), Some("application/vnd.example.sig"));

    // A batch is all or nothing.
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
    };
    assert_eq!(meta.commit_batch(&ok).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(meta.tags(&other, None, None).await.unwrap().unwrap(), ["imported"]);

    // Deleting a manifest takes its tags.
    assert!(meta.delete_manifest(&r, &v1.digest).await.unwrap());
    assert_eq!(meta.tags(&r, None, None).await.unwrap().unwrap(), Vec::<String>::new());
    assert!(!meta.delete_tag(&r, &Tag::parse("a").unwrap()).await.unwrap());

    // Uploads.
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

    // GC: links no manifest uses go after the cutoff, then unreferenced blobs.
    let future = now_millis() + 1000;
    assert!(meta.unlink_stale_blobs(future).await.unwrap() >= 1);
    assert_eq!(
        meta.linked_blob_size(&other, &layer).await.unwrap(),
        None,
        "team/other never used the layer"
    );
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
    assert!(
        !meta.forget_blob_if_unreferenced(&layer, now_millis() - 60_000).await.unwrap(),
        "within the grace period"
    );
    assert!(meta.touch_blob(&config).await.unwrap());
    assert!(meta.forget_blob_if_unreferenced(&layer, future).await.unwrap());
    assert_eq!(meta.blob_size(&layer).await.unwrap(), None);
    assert!(!meta.forget_blob_if_unreferenced(&staged, future).await.unwrap(), "m3 uses it");
    // A repository goes with everything in it.
    let (deleted, tags) = meta.delete_repository(&other).await.unwrap().unwrap();
    assert_eq!((deleted.len(), tags), (1, vec!["imported".to_owned()]));
    assert!(meta.delete_repository(&other).await.unwrap().is_none());
}

async fn management_contract(m: &dyn ManagementStore) {
    assert!(m.subscription(DEFAULT_SUBSCRIPTION).await.unwrap().is_some());
    assert!(m.put_subscription("s1", "one").await.unwrap());
    assert!(!m.put_subscription("S1", "renamed").await.unwrap(), "ids are case-insensitive");
    let rg = ResourceGroupRecord {
        subscription: "s1".into(),
        name: "RG".into(),
        location: "here".into(),
        tags: "{}".into(),
        created_at: 1,
    };
    assert!(m.put_resource_group(&rg).await.unwrap());
    assert!(m.resource_group("s1", "rg").await.unwrap().is_some());
    let reg = RegistryRecord {
        id: 0,
        name: "MyReg1".into(),
        is_default: false,
        subscription: "s1".into(),
        resource_group: "rg".into(),
        location: "here".into(),
        sku: "Basic".into(),
        properties: "{}".into(),
        tags: "{}".into(),
        created_at: 1,
    };
    let created = match m.create_registry(&reg).await.unwrap() {
        CreateRegistryOutcome::Created(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(created.resource_group, "RG", "the group's own casing");
    assert_eq!(
        m.create_registry(&RegistryRecord { name: "myreg1".into(), ..reg.clone() }).await.unwrap(),
        CreateRegistryOutcome::NameTaken
    );
    assert_eq!(
        m.create_registry(&RegistryRecord {
            name: "other1".into(),
            resource_group: "nope".into(),
            ..reg.clone()
        })
        .await
        .unwrap(),
        CreateRegistryOutcome::NoResourceGroup
    );
    assert_eq!(m.registry_in("S1", "rg", "myreg1").await.unwrap().unwrap().id, created.id);
    assert_eq!(m.registries(Some("s1"), None).await.unwrap().len(), 1);
    m.update_registry(&RegistryRecord { sku: "Premium".into(), ..created.clone() }).await.unwrap();
    assert_eq!(m.registry(created.id).await.unwrap().unwrap().sku, "Premium");

    let job = JobRecord {
        id: "registries-1".into(),
        registry_id: created.id,
        request: "{}".into(),
        resumable: true,
        status: "Accepted".into(),
        progress: "{}".into(),
        error: None,
        created_at: 1,
        updated_at: 1,
    };
    m.create_job(&job).await.unwrap();
    assert_eq!(m.unfinished_jobs().await.unwrap().len(), 1);
    m.update_job("registries-1", "Failed", "{}", Some("{\"code\":\"X\"}")).await.unwrap();
    assert!(m.unfinished_jobs().await.unwrap().is_empty());
    assert_eq!(
        m.job("registries-1").await.unwrap().unwrap().error.as_deref(),
        Some("{\"code\":\"X\"}")
    );
    assert_eq!(m.delete_finished_jobs(0).await.unwrap(), 0, "too recent");
    assert_eq!(m.delete_finished_jobs(now_millis() + 1000).await.unwrap(), 1);
    assert!(m.job("registries-1").await.unwrap().is_none());

    assert!(m.delete_resource_group("s1", "rg").await.unwrap());
    assert!(m.registry(created.id).await.unwrap().is_none(), "the group took its registry");
    assert!(
        !m.delete_registry(m.registries(None, None).await.unwrap()[0].id).await.unwrap(),
        "the default registry stays"
    );
}

#[tokio::test]
async fn fs_blob_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    blob_store_contract(&FsBlobStore::open(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_metadata_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(&dir.path().join("wharf.db")).await.unwrap();
    metadata_contract(&store).await;
    management_contract(&store).await;
}
