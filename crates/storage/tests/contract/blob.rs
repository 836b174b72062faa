//! `BlobStore`: content-addressed bytes and resumable upload sessions, on the filesystem,
//! S3 (s3s-fs) and Azure Blob (Azurite).

use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;
use wharf_oci::Digest;
use wharf_storage::*;

use crate::{read_all, stream};

contract_tests!([fs, s3, azure] [
    a_missing_blob_reads_none,
    appended_uploads_commit_and_read_back,
    parts_are_attached_in_order,
    a_commit_keeps_only_the_recorded_bytes,
    an_empty_upload_commits_without_its_file,
    a_torn_part_keeps_what_came_before,
    committing_stored_content_keeps_one_copy,
    a_torn_append_is_dropped_by_the_next,
    aborts_and_deletes_are_idempotent,
    a_written_blob_is_published_whole_or_not_at_all,
    listing_pages_in_digest_order,
    large_uploads_are_multipart,
    a_health_probe_reads_back_what_it_wrote_and_leaves_nothing,
]);

contract_tests!([s3, azure][presigned_downloads]);

contract_tests!([fs][the_filesystem_has_no_download_url]);

/// "hello world", stored by an upload in two appends.
async fn hello_world(store: &dyn BlobStore) -> Digest {
    let d = Digest::sha256_of(b"hello world");
    let id = Uuid::new_v4();
    store.create_upload(id).await.unwrap();
    store.append_upload(id, 0, stream(&[b"hello", b" "])).await.unwrap();
    store.append_upload(id, 6, stream(&[b"world"])).await.unwrap();
    store.commit_upload(id, 11, &d).await.unwrap();
    d
}

/// "abcd", stored by an upload.
async fn abcd(store: &dyn BlobStore) -> Digest {
    let abcd = Digest::sha256_of(b"abcd");
    let id = Uuid::new_v4();
    store.create_upload(id).await.unwrap();
    store.append_upload(id, 0, stream(&[b"abcd"])).await.unwrap();
    store.commit_upload(id, 4, &abcd).await.unwrap();
    abcd
}

async fn a_missing_blob_reads_none(store: &dyn BlobStore) {
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.read(&d, None).await.unwrap().is_none());
}

async fn appended_uploads_commit_and_read_back(store: &dyn BlobStore) {
    let d = Digest::sha256_of(b"hello world");
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
}

/// Chunks of a session are written beside it, then attached at its end, in order.
async fn parts_are_attached_in_order(store: &dyn BlobStore) {
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
    assert!(store.list(None, 100).await.unwrap().is_empty(), "deleted");
}

/// A chunk attached but never recorded, then a commit of what was recorded: the blob is
/// the recorded bytes only.
async fn a_commit_keeps_only_the_recorded_bytes(store: &dyn BlobStore) {
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
    assert!(store.list(None, 100).await.unwrap().is_empty(), "deleted");
}

/// An empty upload commits as the empty blob even if its file is gone.
async fn an_empty_upload_commits_without_its_file(store: &dyn BlobStore) {
    let empty = Uuid::new_v4();
    store.create_upload(empty).await.unwrap();
    store.abort_upload(empty).await.unwrap();
    let nothing = Digest::sha256_of(b"");
    store.commit_upload(empty, 0, &nothing).await.unwrap();
    assert_eq!(store.stat(&nothing).await.unwrap(), Some(0));
    store.delete(&nothing).await.unwrap();
    assert!(store.list(None, 100).await.unwrap().is_empty(), "deleted");
}

/// A part whose input broke off keeps what came before, and is dropped.
async fn a_torn_part_keeps_what_came_before(store: &dyn BlobStore) {
    let d = hello_world(store).await;
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
}

/// Committing content that is already stored keeps one copy.
async fn committing_stored_content_keeps_one_copy(store: &dyn BlobStore) {
    let d = hello_world(store).await;
    let again = Uuid::new_v4();
    store.create_upload(again).await.unwrap();
    store.append_upload(again, 0, stream(&[b"hello world"])).await.unwrap();
    store.commit_upload(again, 11, &d).await.unwrap();
    assert_eq!(store.list(None, 100).await.unwrap().len(), 1);
}

/// An input that fails keeps what it delivered; appending at the old length drops it.
async fn a_torn_append_is_dropped_by_the_next(store: &dyn BlobStore) {
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
}

async fn aborts_and_deletes_are_idempotent(store: &dyn BlobStore) {
    let abcd = abcd(store).await;
    let gone = Uuid::new_v4();
    store.create_upload(gone).await.unwrap();
    store.abort_upload(gone).await.unwrap();
    store.abort_upload(gone).await.unwrap();
    store.delete(&abcd).await.unwrap();
    assert_eq!(store.stat(&abcd).await.unwrap(), None);
    store.delete(&abcd).await.unwrap();
}

/// A small blob written under its name: published whole, or not at all.
async fn a_written_blob_is_published_whole_or_not_at_all(store: &dyn BlobStore) {
    let abcd = Digest::sha256_of(b"abcd");
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
}

/// Listing in pages, in digest order, each after the last one's end.
async fn listing_pages_in_digest_order(store: &dyn BlobStore) {
    let mut all = vec![hello_world(store).await];
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

/// The data directory has no URL a client could reach: its blobs are streamed.
async fn the_filesystem_has_no_download_url(store: &dyn BlobStore) {
    let d = Digest::sha256_of(b"x");
    assert_eq!(store.download_url(&d, Duration::from_secs(60)).await.unwrap(), None);
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

/// `/readyz`'s blob probe: a few bytes appended, read back, the session dropped — no blob,
/// and no upload left for GC to find.
async fn a_health_probe_reads_back_what_it_wrote_and_leaves_nothing(store: &dyn BlobStore) {
    let id = probe_upload_id();
    store.create_upload(id).await.unwrap();
    assert_eq!(store.append_upload(id, 0, stream(&[b"probe"])).await.unwrap().len, 5);
    assert_eq!(store.read_probe(id).await.unwrap().as_deref(), Some(&b"probe"[..]));
    store.abort_upload(id).await.unwrap();
    assert!(store.list_uploads().await.unwrap().iter().all(|u| u.id != id));
    assert!(store.list(None, 10).await.unwrap().is_empty());
}
