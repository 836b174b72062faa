//! `wharf migrate`: move a stopped embedded server's data to the scale-out stores.
//!
//! Order matters for resuming: blobs first (each written under its name and published only
//! after its digest is checked, and skipped on a later run when the target already has it),
//! then the metadata
//! in one PostgreSQL transaction (`wharf_storage::migrate`). An interrupted run is run
//! again; the metadata never names a blob the target doesn't hold.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use wharf_oci::{Digest, Sha256Hasher};
use wharf_storage::migrate::{CopyOutcome, RowCounts, TargetState};
use wharf_storage::{
    BlobStore, FsBlobStore, ObjectBlobStore, ObjectStoreUrl, PostgresMetadataStore,
    PostgresOptions, SqliteMetadataStore,
};

use crate::args::MigrateArgs;

/// What happened to one blob.
enum Copied {
    /// Already in the target with its size (copied by an earlier run).
    Present,
    /// Copied now, this many bytes.
    Bytes(u64),
    /// Not in the source blob store although the metadata records it.
    Missing,
}

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = &args.from;
    if !dir.join("wharf.db").is_file() {
        bail!("{} is not a wharf data directory (it has no wharf.db)", dir.display());
    }
    let _lock = crate::serve::lock_data_dir(dir)
        .context("stop the server before migrating its data directory")?;
    let source = SqliteMetadataStore::open(&dir.join("wharf.db"))
        .await
        .context("cannot open the data directory's metadata")?;
    let counts = source.table_counts().await?;
    let recorded = source.recorded_blobs().await?;

    // Check every target before any time goes into copying.
    let target_meta_state = target_metadata_state(&args, &counts).await?;
    let blob_copy = blob_stores(&args).await?;

    let total_bytes: u64 = recorded.iter().map(|(_, s)| s).sum();
    let mut report = json!({
        "dryRun": args.dry_run,
        "from": dir.display().to_string(),
        "blobs": {"recorded": recorded.len(), "recordedBytes": total_bytes},
        "tables": counts,
    });
    if let Some((from, to)) = &blob_copy {
        migrate_blobs(from, to, &recorded, &args, &mut report).await?;
    }
    if let (Some(url), Some(state)) = (&args.to_metadata, &target_meta_state) {
        report["metadata"] = json!(migrate_metadata(&source, url, state, args.dry_run).await?);
    }
    print_report(report, &args, started)
}

/// The target database's state, if there is one; refused if it holds data of its own.
async fn target_metadata_state(
    args: &MigrateArgs,
    counts: &RowCounts,
) -> anyhow::Result<Option<TargetState>> {
    let target_meta_state = match &args.to_metadata {
        Some(url) => Some(
            wharf_storage::migrate::target_state(url, counts)
                .await
                .context("cannot reach the target PostgreSQL database")?,
        ),
        None => None,
    };
    if let Some(TargetState::Holds(rows)) = &target_meta_state {
        bail!(
            "the target database already holds data of its own ({}): migrate into a fresh \
             database, before any node has run on it",
            nonzero(rows)
        );
    }
    Ok(target_meta_state)
}

/// The blob stores to copy from and to, if blobs move.
async fn blob_stores(
    args: &MigrateArgs,
) -> anyhow::Result<Option<(Arc<dyn BlobStore>, Arc<dyn BlobStore>)>> {
    let Some(to) = &args.to_blobs else { return Ok(None) };
    let dir = &args.from;
    let target = open_object_store(to, "--to-blobs").await?;
    let source_blobs: Arc<dyn BlobStore> = match &args.from_blobs {
        Some(url) => open_object_store(url, "--from-blobs").await?,
        None => Arc::new(
            FsBlobStore::open(dir)
                .await
                .with_context(|| format!("cannot open the blob store in {}", dir.display()))?,
        ),
    };
    Ok(Some((source_blobs, target)))
}

/// Copy (or in a dry run, count) the blobs the target lacks, and verify them if asked.
async fn migrate_blobs(
    from: &Arc<dyn BlobStore>,
    to: &Arc<dyn BlobStore>,
    recorded: &[(Digest, u64)],
    args: &MigrateArgs,
    report: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let outcome = copy_blobs(from, to, recorded, args).await?;
    report["blobs"]["alreadyInTarget"] = json!(outcome.present);
    report["blobs"][if args.dry_run { "toCopy" } else { "copied" }] = json!(outcome.copied);
    report["blobs"][if args.dry_run { "bytesToCopy" } else { "bytesCopied" }] =
        json!(outcome.bytes);
    if !outcome.missing.is_empty() {
        bail!(
            "{} blob(s) recorded in the metadata are missing from the source blob store \
             (the first: {}); nothing of the metadata was copied",
            outcome.missing.len(),
            outcome.missing[0]
        );
    }
    if args.verify && !args.dry_run {
        verify_blobs(to, recorded, args.parallel.into()).await?;
        report["blobs"]["verified"] = json!(recorded.len());
    }
    Ok(())
}

/// Copy the metadata in one transaction (in a dry run, say whether it would be); what
/// happened, as the report names it.
async fn migrate_metadata(
    source: &SqliteMetadataStore,
    url: &str,
    state: &TargetState,
    dry_run: bool,
) -> anyhow::Result<&'static str> {
    Ok(match (dry_run, state) {
        (true, TargetState::SameAsSource) => "alreadyCopied",
        (true, _) => "wouldCopy",
        (false, _) => {
            let target = PostgresMetadataStore::open(url, PostgresOptions::default())
                .await
                .context("cannot open the target PostgreSQL database")?;
            let outcome = wharf_storage::migrate::copy_metadata(source, &target).await;
            target.close().await;
            match outcome.context("copying the metadata failed; nothing of it was stored")? {
                CopyOutcome::Copied(_) => "copied",
                CopyOutcome::AlreadyCopied => "alreadyCopied",
                CopyOutcome::TargetNotEmpty(rows) => bail!(
                    "the target database already holds data of its own ({}); nothing \
                     of the metadata was copied",
                    nonzero(&rows)
                ),
            }
        }
    })
}

/// The report on stdout, with the sealing key every node needs named (and noted on stderr).
fn print_report(
    mut report: serde_json::Value,
    args: &MigrateArgs,
    started: Instant,
) -> anyhow::Result<()> {
    let sealing_key = args.from.join("sealing-key");
    if args.to_metadata.is_some() && sealing_key.is_file() {
        // Registries' admin passwords are sealed under this key: every node needs it.
        report["sealingKeyFile"] = json!(sealing_key.display().to_string());
    }
    report["seconds"] = json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.get("sealingKeyFile").is_some() && !args.dry_run {
        eprintln!(
            "wharf: note: give every node a copy of {} as [auth] sealing_key_file (it seals \
             the registries' admin passwords)",
            sealing_key.display()
        );
    }
    Ok(())
}

async fn open_object_store(url: &str, flag: &str) -> anyhow::Result<Arc<dyn BlobStore>> {
    let parsed: ObjectStoreUrl = url.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(Arc::new(
        ObjectBlobStore::open(&parsed)
            .await
            .with_context(|| format!("{flag}: cannot open the object store"))?,
    ))
}

#[derive(Default)]
struct BlobOutcome {
    present: u64,
    copied: u64,
    bytes: u64,
    missing: Vec<Digest>,
}

/// Copy every recorded blob the target lacks, `--parallel` at a time (in a dry run, only
/// find out which).
async fn copy_blobs(
    from: &Arc<dyn BlobStore>,
    to: &Arc<dyn BlobStore>,
    recorded: &[(Digest, u64)],
    args: &MigrateArgs,
) -> anyhow::Result<BlobOutcome> {
    let total = recorded.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results = futures::stream::iter(recorded.iter().map(|(digest, size)| {
        let done = &done;
        async move {
            let copied = copy_blob(from, to, digest, *size, args.dry_run).await?;
            if let Copied::Bytes(n) = copied
                && !args.dry_run
            {
                let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                eprintln!("wharf: copied {digest} ({}) [{k} of {total} to copy]", mib(n));
            }
            anyhow::Ok((digest, copied))
        }
    }))
    .buffer_unordered(args.parallel.into())
    .try_collect::<Vec<_>>()
    .await?;
    let mut outcome = BlobOutcome::default();
    for (digest, copied) in results {
        match copied {
            Copied::Present => outcome.present += 1,
            Copied::Bytes(n) => {
                outcome.copied += 1;
                outcome.bytes += n;
            }
            Copied::Missing => outcome.missing.push(digest.clone()),
        }
    }
    Ok(outcome)
}

async fn copy_blob(
    from: &Arc<dyn BlobStore>,
    to: &Arc<dyn BlobStore>,
    digest: &Digest,
    size: u64,
    dry_run: bool,
) -> anyhow::Result<Copied> {
    if to.stat(digest).await? == Some(size) {
        return Ok(Copied::Present);
    }
    if dry_run {
        return Ok(match from.stat(digest).await? {
            Some(_) => Copied::Bytes(size),
            None => Copied::Missing,
        });
    }
    let Some(data) = from.read(digest, None).await? else {
        return Ok(Copied::Missing);
    };
    // Hashed as it streams through, once; published under its name only if it matches.
    let hasher = Arc::new(Mutex::new(Sha256Hasher::new()));
    let h = hasher.clone();
    // Copied out of the source's chunks: a filesystem store reads its next chunk only once
    // the last one is dropped (its memory bound), and an object store keeps chunks until a
    // whole part has filled — holding them would stall both.
    let data = data.map_ok(move |chunk| {
        h.lock().unwrap_or_else(|e| e.into_inner()).update(&chunk);
        bytes::Bytes::copy_from_slice(&chunk)
    });
    // Straight under its name (an object store: a multipart upload completed only on
    // publish), published only once its bytes proved to be what the metadata says.
    let mut writer = to.write_blob(digest).await?;
    let written = match writer.write(Box::pin(data)).await {
        Ok(w) => w,
        Err(e) => {
            let _ = writer.abort().await;
            return Err(e).with_context(|| format!("writing {digest} to the target"));
        }
    };
    let (got, len) = {
        let h = hasher.lock().unwrap_or_else(|e| e.into_inner());
        (h.digest(), h.len())
    };
    let problem = match written.input_error {
        Some(e) => Some(format!("reading it from the source failed: {e}")),
        None if len != size || written.len != len => {
            Some(format!("the source holds {len} bytes, not {size}"))
        }
        None if &got != digest => Some(format!("the source's bytes hash to {got}")),
        None => None,
    };
    if let Some(problem) = problem {
        let _ = writer.abort().await;
        bail!("blob {digest}: {problem}; it was not copied");
    }
    writer.publish().await?;
    Ok(Copied::Bytes(len))
}

/// Read every blob back from the target and hash it again.
async fn verify_blobs(
    to: &Arc<dyn BlobStore>,
    recorded: &[(Digest, u64)],
    parallel: usize,
) -> anyhow::Result<()> {
    futures::stream::iter(recorded.iter().map(|(digest, size)| async move {
        let Some(mut data) = to.read(digest, None).await? else {
            bail!("verify: {digest} is not in the target");
        };
        let mut h = Sha256Hasher::new();
        while let Some(chunk) = data.try_next().await? {
            h.update(&chunk);
        }
        if h.len() != *size || &h.digest() != digest {
            bail!(
                "verify: {digest} in the target holds {} bytes hashing to {}",
                h.len(),
                h.digest()
            );
        }
        anyhow::Ok(())
    }))
    .buffer_unordered(parallel)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(())
}

fn nonzero(rows: &RowCounts) -> String {
    rows.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
