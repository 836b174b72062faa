//! What `wharf serve` keeps in its data directory besides the stores: the lock that makes
//! it the directory's one server, its node id, the sealing key, the admin's first password.

use anyhow::Context;

use super::ServeConfig;

/// One server per data directory: a second one would break the in-process locks that
/// keep blob commits and GC apart.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("wharf.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("data directory {} is in use by another wharf server", dir.display())
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// This server's node id (`<data-dir>/node-id`, made on first start): the owner of the
/// import jobs it runs, the same after a restart, so that it takes its own jobs back at once.
pub(super) fn node_id(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            write_secret_file(&path, &id)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A secret for one `purpose`, derived from the sealing key (HMAC-SHA256): every node of a
/// cluster has the same, and none of them can be turned back into the key.
pub(super) fn derived_secret(sealing_key: &[u8; 32], purpose: &str) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, sealing_key);
    let tag = ring::hmac::sign(&key, format!("wharf/{purpose}").as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The key that seals registry admin users' passwords: `[auth] sealing_key_file`, else
/// `<data-dir>/sealing-key` (0600), made on first start. Nodes sharing PostgreSQL must share
/// it too, so with PostgreSQL it is never made: a node with a key of its own would seal
/// passwords the others can't open.
pub(super) fn sealing_key(config: &ServeConfig) -> anyhow::Result<[u8; 32]> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let path =
        config.sealing_key_file.clone().unwrap_or_else(|| config.data_dir.join("sealing-key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = b64.decode(text.trim()).ok().filter(|b| b.len() == 32);
            let bytes = bytes.with_context(|| {
                format!("{} is not a sealing key (32 bytes, base64)", path.display())
            })?;
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.metadata.is_some() => {
            anyhow::bail!(
                "{} does not exist: nodes sharing PostgreSQL share one sealing key; make it \
                 once (`head -c 32 /dev/urandom | base64 > FILE`), give every node the same \
                 file ([auth] sealing_key_file)",
                path.display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = wharf_auth::registry_credentials::Sealer::generate_key()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            write_secret_file(&path, &b64.encode(key))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Write a secret to a new file only its owner can read.
pub(super) fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
