//! The filesystem store's own rules, beside the contract suite every store passes.

use super::*;

fn stream(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))))
}

async fn read_all(s: ByteStream) -> Vec<u8> {
    let chunks: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
    chunks.concat()
}

#[tokio::test]
async fn upload_append_commit_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    let id = Uuid::new_v4();
    store.create_upload(id).await.unwrap();
    let n = store.append_upload(id, 0, stream(vec![b"hello ", b"wor"])).await.unwrap().len;
    assert_eq!(n, 9);
    let n = store.append_upload(id, 9, stream(vec![b"ld"])).await.unwrap().len;
    let digest = Digest::sha256_of(b"hello world");
    store.commit_upload(id, n, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
    let all = store.read(&digest, None).await.unwrap().unwrap();
    assert_eq!(read_all(all).await, b"hello world");
    let part = store.read(&digest, Some(ByteRange { start: 6, end: 10 })).await.unwrap().unwrap();
    assert_eq!(read_all(part).await, b"world");
    assert!(store.list_uploads().await.unwrap().is_empty());
    assert_eq!(store.list(None, 10).await.unwrap()[0].digest, digest);
}

#[tokio::test]
async fn torn_append_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    let id = Uuid::new_v4();
    store.create_upload(id).await.unwrap();
    store.append_upload(id, 0, stream(vec![b"abc"])).await.unwrap();
    // A failing body: some bytes arrive, then the client disconnects.
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"XYZ")),
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "gone")),
    ]));
    let appended = store.append_upload(id, 3, failing).await.unwrap();
    assert!(appended.input_error.is_some());
    assert_eq!(appended.len, 6, "what arrived before the failure is kept");
    // A caller that discards them appends at its recorded length again.
    assert_eq!(store.append_upload(id, 3, stream(vec![b"def"])).await.unwrap().len, 6);
    let digest = Digest::sha256_of(b"abcdef");
    store.commit_upload(id, 6, &digest).await.unwrap();
    assert_eq!(read_all(store.read(&digest, None).await.unwrap().unwrap()).await, b"abcdef");
}

#[tokio::test]
async fn missing_blob_reads_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    let d = Digest::sha256_of(b"nope");
    assert!(store.read(&d, None).await.unwrap().is_none());
    assert_eq!(store.stat(&d).await.unwrap(), None);
    store.delete(&d).await.unwrap();
}
