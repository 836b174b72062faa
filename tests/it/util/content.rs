//! Test content: reproducible bytes, image manifests, and checks of stored blob files.

use super::*;

/// The OCI manifest for a config and layers (bytes as a client would write them).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": OCI_LAYER, "digest": digest_of(l), "size": l.len()})).collect::<Vec<_>>(),
    });
    serde_json::to_vec_pretty(&m).unwrap()
}

/// Every file under `<data>/blobs/sha256` hashes to its name; how many there are.
pub fn assert_blob_files_match_names(data: &Path) -> usize {
    let mut n = 0;
    let root = data.join("blobs/sha256");
    let Ok(shards) = std::fs::read_dir(&root) else { return 0 };
    for shard in shards {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let bytes = std::fs::read(f.path()).unwrap();
            let name = f.file_name().into_string().unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                name,
                "blob file {} holds other bytes",
                f.path().display()
            );
            n += 1;
        }
    }
    n
}

/// Pseudo-random bytes from a seed (reproducible test content).
/// (splitmix64: a test needs bytes that don't compress, not a CSPRNG.)
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The manifest bytes a registry serves (any host; `host` picks a wharf registry).
pub fn manifest_bytes(
    base: &str,
    host: Option<&str>,
    repo: &str,
    reference: &str,
) -> Option<Vec<u8>> {
    let mut req = client().get(format!("{base}/v2/{repo}/manifests/{reference}")).header(
        "accept",
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, */*",
    );
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let r = req.send().unwrap();
    (r.status() == 200).then(|| r.bytes().unwrap().to_vec())
}
