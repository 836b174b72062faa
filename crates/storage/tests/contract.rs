#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The contract every storage backend keeps, written once and run against each
//! implementation: the embedded ones here; a scale-out backend adds one line per trait.

use std::time::Duration;

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

/// Everything a read yields. Each chunk is copied out and dropped at once: a store may
/// read ahead only as far as its chunks come back (the filesystem store's memory bound).
async fn read_all(mut s: ByteStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = s.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    all
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
    let listed: Vec<Digest> =
        store.list(None, 100).await.unwrap().into_iter().map(|b| b.digest).collect();
    assert_eq!(listed, vec![d.clone()]);

    // Committing content that is already stored keeps one copy.
    let again = Uuid::new_v4();
    store.create_upload(again).await.unwrap();
    store.append_upload(again, 0, stream(&[b"hello world"])).await.unwrap();
    store.commit_upload(again, 11, &d).await.unwrap();
    assert_eq!(store.list(None, 100).await.unwrap().len(), 1);

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

    // A small blob written under its name: published whole, or not at all.
    let mut writer = store.write_blob(&abcd).await.unwrap();
    assert_eq!(writer.write(stream(&[b"ab", b"cd"])).await.unwrap().len, 4);
    assert_eq!(store.stat(&abcd).await.unwrap(), None);
    writer.publish().await.unwrap();
    assert_eq!(read_all(store.read(&abcd, None).await.unwrap().unwrap()).await, b"abcd");
    store.delete(&abcd).await.unwrap();
    let mut writer = store.write_blob(&abcd).await.unwrap();
    writer.write(stream(&[b"abcd"])).await.unwrap();
    writer.abort().await.unwrap();
    assert_eq!(store.stat(&abcd).await.unwrap(), None);

    // Listing in pages, in digest order, each after the last one's end.
    let mut all = vec![d.clone()];
    for i in 0..7u8 {
        let content: &'static [u8] = Box::leak(vec![b'p', i].into_boxed_slice());
        let id = Uuid::new_v4();
        store.create_upload(id).await.unwrap();
        store.append_upload(id, 0, stream(&[content])).await.unwrap();
        let digest = Digest::sha256_of(content);
        store.commit_upload(id, 2, &digest).await.unwrap();
        all.push(digest);
    }
    all.sort_by_key(|d| d.to_string());
    let mut paged = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list(after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        paged.extend(page.iter().map(|b| b.digest.clone()));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(last.digest.clone()),
            _ => break,
        }
    }
    assert_eq!(paged, all);
    for d in all {
        store.delete(&d).await.unwrap();
    }
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
    let refs = meta.referrers(&r, &v1.digest, None, None, 10).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].artifact_type.as_deref(), Some("application/vnd.example.sig"));
    // Filtered by artifact type, and never more than asked for.
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
        status: JobState::Accepted,
        progress: JobProgress::default(),
        error: None,
        created_at: 1,
        updated_at: 1,
        owner: Some("node-a".into()),
        lease_until: 0,
        lease_epoch: 0,
    };
    m.create_job(&job, 60_000).await.unwrap();
    assert_eq!(m.unfinished_jobs().await.unwrap().len(), 1);

    // Leases, by the database's clock: a job runs on one node; another takes it only once
    // the lease has run out. Every claim moves the epoch, and a node's writes name the
    // epoch it holds: one that lost the job writes nothing.
    let fence =
        |owner: &str, epoch| JobFence { id: "registries-1".into(), owner: owner.into(), epoch };
    let empty = JobProgress::default();
    let noted = JobProgress { message: Some("n".into()), ..JobProgress::default() };
    assert!(m.claim_jobs("node-b", 1_000, false, &[]).await.unwrap().is_empty(), "leased");
    assert_eq!(
        m.heartbeat_job(&fence("node-a", 0), &noted, 60_000).await.unwrap(),
        Some(JobState::Accepted)
    );
    assert_eq!(m.heartbeat_job(&fence("node-b", 0), &empty, 60_000).await.unwrap(), None);
    // node-a restarts: its own jobs come back to it at once, under a new epoch, and what
    // its previous run would still write is refused.
    let mine = m.claim_jobs("node-a", 200, true, &[]).await.unwrap();
    assert_eq!((mine.len(), mine[0].lease_epoch), (1, 1));
    // A node's own sweep never takes back what it runs (that would move its epoch).
    assert!(m.claim_jobs("node-a", 200, false, &[]).await.unwrap().is_empty());
    assert_eq!(mine[0].progress, noted);
    assert_eq!(m.heartbeat_job(&fence("node-a", 0), &empty, 60_000).await.unwrap(), None);
    assert!(!m.update_job(&fence("node-a", 0), JobState::Succeeded, &empty, None).await.unwrap());
    // Past its lease, a node's own sweep leaves a job it still runs alone.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let running = ["registries-1".to_owned()];
    assert!(m.claim_jobs("node-a", 200, false, &running).await.unwrap().is_empty());
    // node-a stops renewing; past the lease, node-b takes the job, and node-a has lost it.
    let taken = m.claim_jobs("node-b", 60_000, false, &[]).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].owner.as_deref(), taken[0].lease_epoch), (Some("node-b"), 2));
    assert_eq!(m.heartbeat_job(&fence("node-a", 1), &empty, 60_000).await.unwrap(), None);
    assert!(!m.update_job(&fence("node-a", 1), JobState::Succeeded, &empty, None).await.unwrap());
    assert_eq!(m.job("registries-1").await.unwrap().unwrap().status, JobState::Accepted);
    // A cancel asked anywhere is seen by the owner's next heartbeat.
    assert!(m.request_job_cancel("registries-1").await.unwrap());
    assert_eq!(
        m.heartbeat_job(&fence("node-b", 2), &empty, 60_000).await.unwrap(),
        Some(JobState::Canceling)
    );
    let error = JobError { code: "X".into(), message: "m".into() };
    assert!(
        m.update_job(&fence("node-b", 2), JobState::Failed, &empty, Some(&error)).await.unwrap()
    );
    assert!(m.unfinished_jobs().await.unwrap().is_empty());
    assert!(!m.request_job_cancel("registries-1").await.unwrap(), "finished");
    assert!(m.claim_jobs("node-c", 1_000, true, &[]).await.unwrap().is_empty());
    assert_eq!(m.job("registries-1").await.unwrap().unwrap().error, Some(error));
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
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    blob_store_contract(&store).await;
    large_uploads_are_multipart(&store).await;
    // The data directory has no URL a client could reach: its blobs are streamed.
    let d = Digest::sha256_of(b"x");
    assert_eq!(store.download_url(&d, Duration::from_secs(60)).await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_metadata_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(&dir.path().join("wharf.db")).await.unwrap();
    metadata_contract(&store).await;
    management_contract(&store).await;
}

/// An object store named by `var` (a `--blobs` URL; credentials in the usual environment
/// variables), under a prefix of its own so that tests don't see each other's objects.
async fn object_store_from_env(var: &str) -> Option<ObjectBlobStore> {
    let Ok(url) = std::env::var(var) else {
        assert!(
            std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none(),
            "{var} is not set but WHARF_REQUIRE_BACKENDS is"
        );
        eprintln!("SKIPPED: {var} is not set (scripts/test.sh starts the server and sets it)");
        return None;
    };
    let mut url: ObjectStoreUrl = url.parse().unwrap();
    let unique = format!("contract-{}", Uuid::new_v4().simple());
    match &mut url {
        ObjectStoreUrl::S3 { prefix, .. } | ObjectStoreUrl::Azure { prefix, .. } => {
            *prefix = unique
        }
    }
    Some(ObjectBlobStore::open(&url).await.unwrap())
}

#[tokio::test]
async fn s3_blob_store_keeps_the_contract() {
    if let Some(store) = object_store_from_env("WHARF_TEST_S3").await {
        blob_store_contract(&store).await;
        large_uploads_are_multipart(&store).await;
        presigned_downloads(&store).await;
    }
}

#[tokio::test]
async fn azure_blob_store_keeps_the_contract() {
    if let Some(store) = object_store_from_env("WHARF_TEST_AZURE").await {
        blob_store_contract(&store).await;
        large_uploads_are_multipart(&store).await;
        presigned_downloads(&store).await;
    }
}

/// An object store signs URLs that anyone may GET a blob from, whole or a range of it,
/// until they expire — and that read nothing else.
async fn presigned_downloads(store: &dyn BlobStore) {
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&content);
    let mut writer = store.write_blob(&digest).await.unwrap();
    writer.write(stream(&[Box::leak(content.clone().into_boxed_slice())])).await.unwrap();
    writer.publish().await.unwrap();

    let http = reqwest::Client::new();
    let url = store.download_url(&digest, Duration::from_secs(60)).await.unwrap().unwrap();
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), content.as_slice());
    let res = http.get(&url).header("range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &content[1000..2000]);
    // The signature covers the path: another blob's key under it is refused.
    let other = Digest::sha256_of(b"abcd").hex().to_owned();
    let forged = url.replace(digest.hex(), &other);
    assert!(http.get(&forged).send().await.unwrap().status().is_client_error());

    let short = store.download_url(&digest, Duration::from_secs(1)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = http.get(&short).send().await.unwrap();
    assert!(res.status().is_client_error(), "an expired URL still reads: {}", res.status());
    store.delete(&digest).await.unwrap();
}

/// Large blobs: uploads bigger than one part go out as multipart uploads (on an object
/// store), sessions made of several large pieces are composed in order, and blobs written
/// under their name are readable only once published.
async fn large_uploads_are_multipart(store: &dyn BlobStore) {
    let chunk = |seed: u8, len: usize| -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    };
    let a = chunk(1, (9 << 20) + 17);
    let b = chunk(2, (3 << 20) + 5);
    let whole = [a.clone(), b.clone()].concat();
    let digest = Digest::sha256_of(&whole);
    let owned = |v: Vec<u8>| -> ByteStream {
        let pieces: Vec<std::io::Result<Bytes>> =
            v.chunks(64 << 10).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures::stream::iter(pieces))
    };
    let id = Uuid::new_v4();
    store.create_upload(id).await.unwrap();
    let first = store.append_upload(id, 0, owned(a.clone())).await.unwrap();
    assert_eq!(first.len, a.len() as u64);
    let part = store.write_part(id, owned(b)).await.unwrap();
    let len = store.attach_part(id, first.len, &part.part).await.unwrap();
    assert_eq!(len, whole.len() as u64);
    store.commit_upload(id, len, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(whole.len() as u64));
    assert!(read_all(store.read(&digest, None).await.unwrap().unwrap()).await == whole);
    let range = ByteRange { start: (9 << 20) - 3, end: (9 << 20) + 40 };
    let got = read_all(store.read(&digest, Some(range)).await.unwrap().unwrap()).await;
    assert!(got[..] == whole[range.start as usize..=range.end as usize]);
    // Large ranges, as the registry asks for whole blobs (an object store reads them as
    // several ranged GETs at once): every byte, in order, whatever the alignment.
    for (start, end) in [(0, whole.len() - 1), (1, whole.len() - 2), (5 << 20, (11 << 20) + 1)] {
        let r = ByteRange { start: start as u64, end: end as u64 };
        let got = read_all(store.read(&digest, Some(r)).await.unwrap().unwrap()).await;
        assert!(got[..] == whole[start..=end], "range {start}-{end} differs");
    }
    let missing = Digest::sha256_of(b"never stored");
    let r = ByteRange { start: 0, end: whole.len() as u64 - 1 };
    assert!(store.read(&missing, Some(r)).await.unwrap().is_none());
    // One large piece: committed by a copy, same bytes.
    let single = Uuid::new_v4();
    store.create_upload(single).await.unwrap();
    store.append_upload(single, 0, owned(a.clone())).await.unwrap();
    let da = Digest::sha256_of(&a);
    store.commit_upload(single, a.len() as u64, &da).await.unwrap();
    assert!(read_all(store.read(&da, None).await.unwrap().unwrap()).await == a);
    store.delete(&da).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert!(store.list_uploads().await.unwrap().iter().all(|u| u.id != id && u.id != single));

    // Written under its name in one go: nothing readable before it is published.
    let mut writer = store.write_blob(&digest).await.unwrap();
    writer.write(owned(whole[..5 << 20].to_vec())).await.unwrap();
    let written = writer.write(owned(whole[5 << 20..].to_vec())).await.unwrap();
    assert_eq!(written.len, whole.len() as u64);
    assert_eq!(store.stat(&digest).await.unwrap(), None, "readable before it was published");
    writer.publish().await.unwrap();
    assert!(read_all(store.read(&digest, None).await.unwrap().unwrap()).await == whole);
    store.delete(&digest).await.unwrap();
    // Aborted, or dropped half-written: never readable.
    let mut writer = store.write_blob(&digest).await.unwrap();
    writer.write(owned(whole.clone())).await.unwrap();
    writer.abort().await.unwrap();
    let mut writer = store.write_blob(&digest).await.unwrap();
    writer.write(owned(whole[..3 << 20].to_vec())).await.unwrap();
    drop(writer);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

/// What an identity store keeps: names compare case-insensitively where ARM's and Entra's
/// do (and keep the casing they were created with), keys are unique, deletes cascade.
/// `m` is the same store, for the registry its registry credentials belong to.
async fn identity_contract(ids: &dyn IdentityStore, m: &dyn ManagementStore) {
    // Tenants: ids are case-insensitive; putting one again renames it.
    let tenant = "7A1D0000-0000-0000-0000-00000000000A";
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

    // Principals: ids, names within a tenant and kind, and app ids are unique, whatever
    // their casing.
    let user = |id: &str, name: &str| PrincipalRecord {
        id: id.into(),
        tenant: tenant.to_lowercase(),
        kind: "User".into(),
        name: name.into(),
        app_id: None,
        enabled: true,
        created_at: 10,
        token_generation: 0,
    };
    let alice = user("AAAA0001", "Alice@Contoso.com");
    assert!(ids.create_principal(&alice).await.unwrap());
    assert!(!ids.create_principal(&user("aaaa0001", "x@contoso.com")).await.unwrap(), "same id");
    assert!(!ids.create_principal(&user("bbbb0001", "ALICE@contoso.com")).await.unwrap());
    assert!(ids.create_principal(&user("bbbb0001", "bob@contoso.com")).await.unwrap());
    assert!(ids.create_principal(&user("cccc0001", "Carol@contoso.com")).await.unwrap());
    let sp = PrincipalRecord {
        token_generation: 0,
        id: "dddd0001".into(),
        kind: "ServicePrincipal".into(),
        name: "builder".into(),
        app_id: Some("APP-0001".into()),
        ..user("", "")
    };
    assert!(ids.create_principal(&sp).await.unwrap());
    let same_app =
        PrincipalRecord { id: "eeee0001".into(), app_id: Some("app-0001".into()), ..sp.clone() };
    assert!(!ids.create_principal(&same_app).await.unwrap(), "app ids are unique");
    // A service principal may be named like a user; the user wins a sign-in by name.
    let namesake = PrincipalRecord {
        id: "ffff0001".into(),
        name: "alice@contoso.com".into(),
        app_id: Some("app-0002".into()),
        ..sp.clone()
    };
    assert!(ids.create_principal(&namesake).await.unwrap());
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

    // Credentials, by principal (case-insensitively); a reset replaces them all.
    let cred = |id: &str, at: i64| CredentialRecord {
        id: id.into(),
        principal: "aaaa0001".into(),
        hash: format!("$argon2id$v=19$m=19456,t=2,p=1${id}"),
        hint: "abc".into(),
        display_name: "password".into(),
        expires_at: Some(1_000 + at),
        created_at: at,
    };
    ids.add_credential(&cred("c1", 1)).await.unwrap();
    ids.add_credential(&cred("c2", 2)).await.unwrap();
    assert_eq!(ids.credentials("AAAA0001").await.unwrap(), [cred("c1", 1), cred("c2", 2)]);
    ids.replace_credentials(&cred("c3", 3)).await.unwrap();
    assert_eq!(ids.credentials("aaaa0001").await.unwrap(), [cred("c3", 3)]);
    // A reset ends the tokens issued before it; so does a revocation; disabling is kept.
    let generation = |p: Option<PrincipalRecord>| p.map(|p| (p.enabled, p.token_generation));
    assert_eq!(generation(ids.principal("aaaa0001").await.unwrap()), Some((true, 1)));
    assert!(ids.update_principal("AAAA0001", Some(false), true).await.unwrap());
    assert_eq!(generation(ids.principal("aaaa0001").await.unwrap()), Some((false, 2)));
    assert!(ids.update_principal("aaaa0001", Some(true), false).await.unwrap());
    assert_eq!(generation(ids.principal("aaaa0001").await.unwrap()), Some((true, 2)));
    assert!(!ids.update_principal("nobody", Some(true), true).await.unwrap());
    assert!(ids.add_credential(&cred("c3", 4)).await.is_err(), "credential ids are unique");
    let orphan = CredentialRecord { id: "c9".into(), principal: "nobody".into(), ..cred("", 1) };
    assert!(ids.add_credential(&orphan).await.is_err(), "a credential needs its principal");

    // Custom role definitions: ids and names case-insensitive, names unique.
    let def = RoleDefinitionRecord {
        id: "DEF-1".into(),
        name: "Pusher".into(),
        body: r#"{"permissions":[]}"#.into(),
        created_at: 5,
    };
    assert!(ids.put_role_definition(&def).await.unwrap());
    let updated = RoleDefinitionRecord { id: "def-1".into(), body: "{}".into(), ..def.clone() };
    assert!(!ids.put_role_definition(&updated).await.unwrap(), "an update");
    assert_eq!(
        ids.role_definition("Def-1").await.unwrap(),
        Some(RoleDefinitionRecord { body: "{}".into(), ..def.clone() })
    );
    let clash = RoleDefinitionRecord { id: "def-2".into(), name: "PUSHER".into(), ..def.clone() };
    match ids.put_role_definition(&clash).await {
        // wharf-auth answers 409 for exactly this.
        Err(StorageError::Database(e)) => assert!(e.to_string().contains("UNIQUE"), "{e}"),
        other => panic!("a taken role name: {other:?}"),
    }
    let reader =
        RoleDefinitionRecord { id: "def-3".into(), name: "artifact reader".into(), ..def.clone() };
    assert!(ids.put_role_definition(&reader).await.unwrap());
    let names: Vec<String> =
        ids.role_definitions().await.unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["artifact reader", "Pusher"]);
    assert!(ids.delete_role_definition("DEF-3").await.unwrap());
    assert!(!ids.delete_role_definition("def-3").await.unwrap());

    // Role assignments: one per id, and one per (scope, role, principal).
    let assignment = RoleAssignmentRecord {
        id: "RA-1".into(),
        scope: "/subscriptions/S1".into(),
        role_definition_id: "DEF-1".into(),
        principal_id: "AAAA0001".into(),
        principal_type: "User".into(),
        condition: Some("@Resource[x] StringEquals 'y'".into()),
        description: Some("pushes".into()),
        created_at: 7,
    };
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
    let bobs = RoleAssignmentRecord {
        id: "RA-3".into(),
        scope: "/".into(),
        principal_id: "bbbb0001".into(),
        condition: None,
        description: None,
        ..assignment.clone()
    };
    assert!(ids.create_role_assignment(&bobs).await.unwrap());
    assert_eq!(ids.role_assignment("ra-1").await.unwrap(), Some(assignment.clone()));
    assert_eq!(ids.role_assignments_of("aaaa0001").await.unwrap(), vec![assignment.clone()]);
    assert_eq!(ids.role_assignments().await.unwrap(), [bobs.clone(), assignment.clone()]);

    // Deleting a principal takes its credentials and role assignments.
    assert!(ids.delete_principal("aaaa0001").await.unwrap());
    assert_eq!(ids.principal("AAAA0001").await.unwrap(), None);
    assert!(ids.credentials("AAAA0001").await.unwrap().is_empty());
    assert!(ids.role_assignments_of("AAAA0001").await.unwrap().is_empty());
    assert_eq!(ids.role_assignments().await.unwrap(), vec![bobs.clone()]);
    assert!(!ids.delete_principal("AAAA0001").await.unwrap());
    assert!(ids.delete_role_assignment("ra-3").await.unwrap());
    assert!(!ids.delete_role_assignment("RA-3").await.unwrap());

    // Registry credentials live in a registry.
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
            id: 0,
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

    // Scope maps: created or replaced (the name keeps its first casing), by name
    // case-insensitively.
    let map = ScopeMapRecord {
        registry_id: reg.id,
        name: "Pullers".into(),
        description: Some("read".into()),
        actions: vec!["repositories/app/content/read".into()],
        created_at: 3,
    };
    ids.put_scope_map(&map).await.unwrap();
    let actions = vec![
        "repositories/app/content/read".to_owned(),
        "repositories/app/metadata/read".to_owned(),
    ];
    ids.put_scope_map(&ScopeMapRecord {
        name: "PULLERS".into(),
        description: None,
        actions: actions.clone(),
        created_at: 4,
        ..map.clone()
    })
    .await
    .unwrap();
    let replaced = ScopeMapRecord { description: None, actions, ..map.clone() };
    assert_eq!(ids.scope_map(reg.id, "pullers").await.unwrap(), Some(replaced.clone()));
    assert_eq!(ids.scope_map(other_registry, "pullers").await.unwrap(), None);
    let admins = ScopeMapRecord { name: "admins".into(), ..map.clone() };
    ids.put_scope_map(&admins).await.unwrap();
    assert_eq!(ids.scope_maps(reg.id).await.unwrap(), [admins.clone(), replaced.clone()]);
    assert!(ids.delete_scope_map(reg.id, "ADMINS").await.unwrap());
    assert!(!ids.delete_scope_map(reg.id, "admins").await.unwrap());

    // Tokens and the admin user, by kind and name (case-insensitively).
    let token = RegistryTokenRecord {
        registry_id: reg.id,
        kind: "token".into(),
        name: "CI-Token".into(),
        scope_map: Some("pullers".into()),
        enabled: true,
        created_at: 4,
    };
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
    let early = RegistryTokenRecord { name: "a-token".into(), ..token.clone() };
    ids.put_registry_token(&early).await.unwrap();
    assert_eq!(ids.registry_tokens(reg.id, "token").await.unwrap(), [early, disabled]);
    let admin = RegistryTokenRecord {
        kind: "admin".into(),
        name: "idsreg".into(),
        scope_map: None,
        ..token.clone()
    };
    ids.put_registry_token(&admin).await.unwrap();
    assert_eq!(ids.registry_tokens(reg.id, "admin").await.unwrap(), [admin]);

    // Passwords: one per slot, set or replaced; the admin user's sealed bytes as given.
    let pw = |slot: &str, hash: &str, at: i64| TokenPasswordRecord {
        registry_id: reg.id,
        kind: "token".into(),
        token: "ci-token".into(),
        slot: slot.into(),
        hash: hash.into(),
        sealed: None,
        expires_at: Some(100),
        created_at: at,
    };
    ids.put_token_password(&pw("password2", "h2", 1)).await.unwrap();
    ids.put_token_password(&pw("password1", "h1", 1)).await.unwrap();
    ids.put_token_password(&pw("password1", "h1b", 2)).await.unwrap();
    assert_eq!(
        ids.token_passwords(reg.id, "token", "CI-TOKEN").await.unwrap(),
        [pw("password1", "h1b", 2), pw("password2", "h2", 1)]
    );
    let sealed = TokenPasswordRecord {
        kind: "admin".into(),
        token: "IDSREG".into(),
        slot: "password".into(),
        sealed: Some(vec![0, 1, 2, 255, 0]),
        expires_at: None,
        ..pw("", "h", 5)
    };
    ids.put_token_password(&sealed).await.unwrap();
    assert_eq!(ids.token_passwords(reg.id, "admin", "idsreg").await.unwrap(), vec![sealed.clone()]);
    let nobody = TokenPasswordRecord { token: "nobody".into(), ..pw("password1", "h", 1) };
    assert!(ids.put_token_password(&nobody).await.is_err(), "a password needs its credential");

    // Deleting a token takes its passwords.
    assert!(ids.delete_registry_token(reg.id, "token", "Ci-Token").await.unwrap());
    assert!(!ids.delete_registry_token(reg.id, "token", "ci-token").await.unwrap());
    assert_eq!(ids.registry_token(reg.id, "token", "ci-token").await.unwrap(), None);
    ids.put_registry_token(&token).await.unwrap();
    assert!(ids.token_passwords(reg.id, "token", "ci-token").await.unwrap().is_empty());

    // Deleting the registry takes its scope maps, tokens and passwords.
    ids.put_token_password(&pw("password1", "h1", 1)).await.unwrap();
    assert!(m.delete_registry(reg.id).await.unwrap());
    assert!(ids.scope_maps(reg.id).await.unwrap().is_empty());
    assert!(ids.registry_tokens(reg.id, "token").await.unwrap().is_empty());
    assert!(ids.registry_tokens(reg.id, "admin").await.unwrap().is_empty());
    assert!(ids.token_passwords(reg.id, "token", "ci-token").await.unwrap().is_empty());
    assert!(ids.token_passwords(reg.id, "admin", "idsreg").await.unwrap().is_empty());

    // Signing keys: retiring keeps one, and a retired key keeps its first retirement.
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
    let again =
        SigningKeyRecord { kid: "k1".into(), pkcs8: vec![], created_at: 4, retired_at: None };
    assert!(ids.add_signing_key(&again).await.is_err(), "key ids are unique");
}

#[tokio::test]
async fn sqlite_identity_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(&dir.path().join("wharf.db")).await.unwrap();
    identity_contract(&store, &store).await;
}

use sqlx::Connection as _;

/// A database of its own on the PostgreSQL server `WHARF_TEST_POSTGRES` names (the URL of
/// a user that may `CREATE DATABASE`), so that tests run in parallel and start empty.
struct PgDatabase {
    server: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// `None` (the test skips, loudly) without `WHARF_TEST_POSTGRES`, unless
    /// `WHARF_REQUIRE_BACKENDS` is set.
    async fn create() -> Option<PgDatabase> {
        let Ok(server) = std::env::var("WHARF_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none(),
                "WHARF_TEST_POSTGRES is not set but WHARF_REQUIRE_BACKENDS is"
            );
            eprintln!("SKIPPED: no PostgreSQL: set WHARF_TEST_POSTGRES (scripts/test.sh does)");
            return None;
        };
        let name = format!("wharf_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&server, &name);
        Some(PgDatabase { server, name, url })
    }

    async fn open(&self) -> PostgresMetadataStore {
        PostgresMetadataStore::open(&self.url, PostgresOptions::default()).await.unwrap()
    }

    async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }

    /// Drop the database (a failed test leaves it behind for a look).
    async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&self.server).await.unwrap();
        let name = &self.name;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// `url` naming database `db` instead of its own.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    format!("{root}/{db}{query}")
}

#[tokio::test]
async fn postgres_metadata_store_keeps_the_contract() {
    let Some(db) = PgDatabase::create().await else { return };
    let store = db.open().await;
    metadata_contract(&store).await;
    management_contract(&store).await;
    identity_contract(&store, &store).await;
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nodes_starting_together_migrate_once() {
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
async fn postgres_nodes_moving_one_tag_all_succeed() {
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
async fn postgres_gc_racing_pushes_never_forgets_a_blob_in_use() {
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
async fn postgres_unavailable_is_busy() {
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
async fn postgres_nodes_creating_one_registry_name_one_wins() {
    let Some(db) = PgDatabase::create().await else { return };
    let (a, b) = (db.open().await, db.open().await);
    for i in 0..20 {
        let reg = RegistryRecord {
            id: 0,
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

/// `wharf migrate`'s metadata half: everything an embedded store holds arrives in a fresh
/// PostgreSQL database as it was (ids, timestamps, bytes), once.
#[tokio::test]
async fn an_embedded_store_copied_into_postgres_reads_back_the_same() {
    let Some(db) = PgDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteMetadataStore::open(&dir.path().join("wharf.db")).await.unwrap();
    // Whatever the contracts leave behind: registries, manifests, tags, referrers, jobs,
    // principals, credentials, roles, keys, scope maps and tokens.
    metadata_contract(&lite).await;
    management_contract(&lite).await;
    identity_contract(&lite, &lite).await;
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
        id: 0,
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

/// GC's work list: a pass sees what changed — a link too young waits for its grace period,
/// a deleted repository's blobs become collectable — and garbage stays listed until forgotten.
async fn gc_worklist_contract(meta: &dyn MetadataStore) {
    let default = meta.default_registry().await.unwrap();
    let young = repo(default.id, "gc/young");
    let x = Digest::sha256_of(b"gc young blob");
    meta.add_blob(&x, 13, Some(&young)).await.unwrap();
    let past = now_millis() - 60_000;
    assert_eq!(meta.unlink_stale_blobs(past).await.unwrap(), 0, "within its grace period");
    assert!(!meta.unreferenced_blobs(past).await.unwrap().contains(&x));
    assert_eq!(meta.linked_blob_size(&young, &x).await.unwrap(), Some(13));
    let future = now_millis() + 1000;
    assert!(meta.unlink_stale_blobs(future).await.unwrap() >= 1);
    assert_eq!(meta.linked_blob_size(&young, &x).await.unwrap(), None);
    // Listed by every pass until forgotten.
    assert!(meta.unreferenced_blobs(future).await.unwrap().contains(&x));
    assert!(meta.unreferenced_blobs(future + 1).await.unwrap().contains(&x));
    assert!(meta.forget_blob_if_unreferenced(&x, future).await.unwrap());
    assert!(!meta.unreferenced_blobs(future + 2).await.unwrap().contains(&x));

    // A repository deleted with its manifests: what they used becomes collectable.
    let doomed = repo(default.id, "gc/doomed");
    let y = Digest::sha256_of(b"gc doomed blob");
    meta.add_blob(&y, 14, Some(&doomed)).await.unwrap();
    let m = manifest(b"gc doomed manifest", vec![BlobRef::new(y.clone(), 14)], Some("v1"), &doomed);
    assert_eq!(meta.put_manifest(&m).await.unwrap(), PutManifestOutcome::Stored);
    let future = now_millis() + 1000;
    meta.unlink_stale_blobs(future).await.unwrap();
    assert!(!meta.unreferenced_blobs(future).await.unwrap().contains(&y), "in use");
    assert!(meta.delete_repository(&doomed).await.unwrap().is_some());
    meta.unlink_stale_blobs(future).await.unwrap();
    assert!(meta.unreferenced_blobs(future).await.unwrap().contains(&y));
    // A blob pushed again before it is forgotten is kept.
    meta.add_blob(&y, 14, Some(&young)).await.unwrap();
    assert!(!meta.forget_blob_if_unreferenced(&y, future).await.unwrap());
    meta.unlink_blob(&young, &y).await.unwrap();
}

#[tokio::test]
async fn sqlite_gc_looks_at_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(&dir.path().join("wharf.db")).await.unwrap();
    gc_worklist_contract(&store).await;
}

#[tokio::test]
async fn postgres_gc_looks_at_what_changed() {
    let Some(db) = PgDatabase::create().await else { return };
    let store = db.open().await;
    gc_worklist_contract(&store).await;
    store.close().await;
    db.drop().await;
}

/// What cluster nodes share besides locks: sign-in failures, counted per key in windows;
/// an access version that moves with every change to who may do what — and only then;
/// proofs that a source serves a blob, and claims on downloads in progress.
#[tokio::test]
async fn postgres_shares_failures_access_changes_and_download_proofs() {
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
async fn postgres_a_lost_lock_is_noticed_and_many_holders_get_through() {
    let Some(db) = PgDatabase::create().await else { return };
    let (one, other) = (db.open().await, db.open().await);
    let mut held = one.lock("blob/sha256:x").await.unwrap();
    held.verify().await.unwrap();
    assert!(other.try_lock("blob/sha256:x").await.unwrap().is_none());
    let mut admin = db.connect().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
          WHERE locktype = 'advisory' AND pid <> pg_backend_pid()",
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

/// An import's tag-moving commit is fenced like its other writes: after another node took
/// the job over, the old owner's batch stores nothing.
async fn commit_fencing_contract(meta: &dyn MetadataStore, m: &dyn ManagementStore) {
    let registry = m.registries(None, None).await.unwrap()[0].id;
    let job = JobRecord {
        id: "registries-fenced".into(),
        registry_id: registry,
        request: "{}".into(),
        resumable: true,
        status: JobState::Running,
        progress: JobProgress::default(),
        error: None,
        created_at: 1,
        updated_at: 1,
        owner: Some("node-a".into()),
        lease_until: 0,
        lease_epoch: 0,
    };
    m.create_job(&job, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let taken = m.claim_jobs("node-b", 60_000, false, &[]).await.unwrap();
    assert_eq!(taken.len(), 1);
    let r = repo(registry, "fenced/app");
    let layer = Digest::sha256_of(b"fenced layer");
    meta.add_blob(&layer, 12, None).await.unwrap();
    let m1 = manifest(b"fenced", vec![BlobRef::new(layer.clone(), 12)], None, &r);
    let batch = |owner: &str, epoch| CommitBatch {
        links: vec![(r.clone(), layer.clone())],
        manifests: vec![m1.clone()],
        tags: vec![(r.clone(), Tag::parse("v1").unwrap(), m1.record.digest.clone())],
        force: false,
        fence: Some(JobFence { id: job.id.clone(), owner: owner.into(), epoch }),
    };
    assert_eq!(meta.commit_batch(&batch("node-a", 0)).await.unwrap(), CommitOutcome::Fenced);
    assert!(meta.tags(&r, None, None).await.unwrap().is_none(), "nothing was stored");
    assert_eq!(meta.commit_batch(&batch("node-b", 1)).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(meta.tags(&r, None, None).await.unwrap().unwrap(), ["v1"]);
}

#[tokio::test]
async fn sqlite_fences_a_lost_jobs_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(&dir.path().join("m.db")).await.unwrap();
    commit_fencing_contract(&store, &store).await;
}

#[tokio::test]
async fn postgres_fences_a_lost_jobs_commit() {
    let Some(db) = PgDatabase::create().await else { return };
    let store = db.open().await;
    commit_fencing_contract(&store, &store).await;
    store.close().await;
    db.drop().await;
}
