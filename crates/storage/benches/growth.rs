//! What the metadata stores cost as a registry grows: SQLite and PostgreSQL, at
//! 10 000 repositories holding 10 k, 100 k and 1 M manifests (each tagged, each with a
//! config blob of its own and its repository's base layer).
//!
//!   cargo bench -p wharf-storage --bench growth -- [--steps 10000,100000,1000000] [--ops 200]
//!
//! PostgreSQL is measured when `WHARF_TEST_POSTGRES` names a server (bench/growth.sh starts
//! one). The fill is written by SQL, in the rows a push writes (a million pushes through the
//! API would take hours here); every figure is then measured through the store's API, the
//! calls the registry makes:
//!   push      - a blob committed into a repository, then a manifest naming it, tagged
//!   tag move  - a manifest PUT under a tag that points at another manifest
//!   tags page - 100 tags of a repository after a `last`
//!   catalog   - 100 repositories after a `last`
//!   gc        - a GC pass (the three metadata steps) after `--ops` manifests were deleted:
//!               what it removes, and how long it took
//! Each size is measured in 3 rounds of `--ops` calls: a latency is the best round's median
//! (and the best single call), a GC pass the median round's; the ratios are to the empty
//! store (the 10 000 repositories, no manifests yet).

#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::{AssertSqlSafe, Connection};
use wharf_oci::{Digest, RepositoryName, Tag};
use wharf_storage::*;

const REPOS: u64 = 10_000;

struct Args {
    steps: Vec<u64>,
    ops: usize,
}

fn args() -> Args {
    let mut a = Args { steps: vec![10_000, 100_000, 1_000_000], ops: 200 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--steps" => {
                a.steps = it.next().unwrap().split(',').map(|s| s.parse().unwrap()).collect()
            }
            "--ops" => a.ops = it.next().unwrap().parse().unwrap(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// The SQL dialect of a backend's fill.
#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A 64-hex-digit digest from an integer expression, with a leading kind digit.
    fn digest(self, kind: char, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("('sha256:{kind}' || printf('%063x', {expr}))"),
            Dialect::Postgres => format!("('sha256:{kind}' || lpad(to_hex({expr}), 63, '0'))"),
        }
    }
    fn repo_name(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("('bench/repo-' || printf('%05d', {expr}))"),
            Dialect::Postgres => format!("('bench/repo-' || lpad(({expr})::text, 5, '0'))"),
        }
    }
    fn tag(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("('t' || printf('%07d', {expr}))"),
            Dialect::Postgres => format!("('t' || lpad(({expr})::text, 7, '0'))"),
        }
    }
    fn series(self, from: u64, to: u64) -> String {
        match self {
            Dialect::Sqlite => format!(
                "WITH RECURSIVE s(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {to}) "
            ),
            Dialect::Postgres => {
                format!("WITH s(i) AS (SELECT generate_series({from}::bigint, {to}::bigint - 1)) ")
            }
        }
    }
    fn content(self) -> &'static str {
        match self {
            Dialect::Sqlite => "zeroblob(400)",
            Dialect::Postgres => "decode(repeat('00', 400), 'hex')",
        }
    }
}

/// The statements that add manifests `from..to`: manifest i is in repository i % REPOS
/// (whose id is `first_repo` + that), tagged `t<i / REPOS>`.
fn fill_sql(d: Dialect, first_repo: i64, from: u64, to: u64) -> Vec<String> {
    let s = d.series(from, to);
    let repo = format!("({first_repo} + i % {REPOS})");
    let config = d.digest('c', "i");
    let manifest = d.digest('a', "i");
    let base = d.digest('e', &format!("i % {REPOS}"));
    let media = "'application/vnd.oci.image.manifest.v1+json'";
    vec![
        // Each repository's base layer comes with its first manifest.
        format!(
            "{s} INSERT INTO blobs (digest, size, touched_at) SELECT {base}, 1000, 0 FROM s WHERE i < {REPOS}"
        ),
        format!(
            "{s} INSERT INTO repo_blobs (repo_id, digest, linked_at) SELECT {repo}, {base}, 0 FROM s WHERE i < {REPOS}"
        ),
        format!("{s} INSERT INTO blobs (digest, size, touched_at) SELECT {config}, 1000, 0 FROM s"),
        format!(
            "{s} INSERT INTO repo_blobs (repo_id, digest, linked_at) SELECT {repo}, {config}, 0 FROM s"
        ),
        format!(
            "{s} INSERT INTO manifests (repo_id, digest, media_type, blob_bytes, size, content, created_at, config_media_type)
             SELECT {repo}, {manifest}, {media}, 2000, 400, {}, i, 'application/vnd.oci.image.config.v1+json' FROM s",
            d.content()
        ),
        format!(
            "{s} INSERT INTO manifest_refs (repo_id, manifest_digest, target, kind, position)
             SELECT {repo}, {manifest}, {config}, 0, 0 FROM s"
        ),
        format!(
            "{s} INSERT INTO manifest_refs (repo_id, manifest_digest, target, kind, position)
             SELECT {repo}, {manifest}, {base}, 0, 1 FROM s"
        ),
        format!(
            "{s} INSERT INTO tags (repo_id, name, digest, created_at, updated_at)
             SELECT {repo}, {}, {manifest}, i, i FROM s",
            d.tag(&format!("i / {REPOS}"))
        ),
    ]
}

/// The 10 000 repositories.
fn repos_sql(d: Dialect, registry: RegistryId) -> Vec<String> {
    vec![format!(
        "{} INSERT INTO repositories (registry_id, name, created_at) SELECT {registry}, {}, 0 FROM s",
        d.series(0, REPOS),
        d.repo_name("i")
    )]
}

/// Run `sql` in transactions of at most `CHUNK` manifests.
const CHUNK: u64 = 100_000;

enum Conn {
    Lite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Conn {
    async fn exec_all(&mut self, statements: Vec<String>) {
        match self {
            Conn::Lite(c) => {
                let mut tx = c.begin().await.unwrap();
                for s in statements {
                    sqlx::query(AssertSqlSafe(s)).execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            Conn::Pg(c) => {
                let mut tx = c.begin().await.unwrap();
                for s in statements {
                    sqlx::query(AssertSqlSafe(s)).execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        }
    }

    async fn first_repo(&mut self) -> i64 {
        let q = "SELECT min(id) FROM repositories WHERE name LIKE 'bench/repo-%'";
        match self {
            Conn::Lite(c) => sqlx::query_scalar(q).fetch_one(c).await.unwrap(),
            Conn::Pg(c) => sqlx::query_scalar(q).fetch_one(c).await.unwrap(),
        }
    }

    /// What a database that has lived a while has: its planner's statistics, its dead rows
    /// vacuumed and its log checkpointed (what autovacuum and the checkpointer do in the
    /// months a million pushes take, and the fill did in minutes).
    async fn settle(&mut self) {
        match self {
            Conn::Pg(c) => {
                sqlx::query("VACUUM ANALYZE").execute(&mut *c).await.unwrap();
                sqlx::query("CHECKPOINT").execute(&mut *c).await.unwrap();
            }
            Conn::Lite(c) => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *c).await.unwrap();
            }
        }
    }
}

/// Median and best of some timings, in ms.
fn stats(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(t[t.len() / 2]), ms(t[0]))
}

fn repo_key(registry: RegistryId, r: u64) -> RepoKey {
    RepoKey { registry, name: RepositoryName::parse(&format!("bench/repo-{r:05}")).unwrap() }
}

struct Figures {
    size: u64,
    push: (f64, f64),
    tag_move: (f64, f64),
    tags_page: (f64, f64),
    catalog: (f64, f64),
    gc_ms: f64,
    gc_removed: (u64, u64),
}

/// Measure at the current size; `round` keeps each round's pushes apart.
async fn measure(
    meta: &dyn MetadataStore,
    registry: RegistryId,
    size: u64,
    ops: usize,
    round: u32,
) -> Figures {
    let mut push = Vec::new();
    let mut pushed = Vec::new();
    for j in 0..ops as u64 {
        // Pairs of pushes into one repository, for the tag moves below.
        let r = ((j / 2) * 7919 + u64::from(round) * 13) % REPOS;
        let repo = repo_key(registry, r);
        let config = Digest::sha256_of(format!("config {round} {j}").as_bytes());
        let content = format!("{{\"bench\":\"{round} {j}\"}}");
        let record = ManifestRecord {
            digest: Digest::sha256_of(content.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: Bytes::from(content),
            artifact_type: None,
            subject: None,
            annotations: None,
            platform: Some(r#"{"os":"linux","architecture":"amd64"}"#.into()),
            config_media_type: Some("application/vnd.oci.image.config.v1+json".into()),
            blob_bytes: 2000,
            created_at: now_millis(),
        };
        let put = PutManifest {
            repo: repo.clone(),
            record,
            blobs: vec![BlobRef::new(config.clone(), 1000)],
            children: vec![],
            tag: Some(Tag::parse(&format!("push-{round}-{j}")).unwrap()),
        };
        let t = Instant::now();
        meta.add_blob(&config, 1000, Some(&repo)).await.unwrap();
        assert_eq!(meta.put_manifest(&put).await.unwrap(), PutManifestOutcome::Stored);
        push.push(t.elapsed());
        pushed.push(put);
    }
    // Tag moves: the two manifests of each pair swap tags (each PUT moves a tag that
    // points at the other manifest).
    let mut moves = Vec::new();
    for pair in pushed.chunks(2) {
        let [a, b] = pair else { continue };
        for (m, other) in [(a, b), (b, a)] {
            let put = PutManifest { tag: other.tag.clone(), ..m.clone() };
            let t = Instant::now();
            assert_eq!(meta.put_manifest(&put).await.unwrap(), PutManifestOutcome::Stored);
            moves.push(t.elapsed());
        }
    }
    let per_repo = size / REPOS;
    let mut tags = Vec::new();
    let mut catalog = Vec::new();
    for j in 0..ops as u64 {
        let r = (j * 104_729) % REPOS;
        let last = format!("t{:07}", per_repo / 2);
        let t = Instant::now();
        let page = meta.tags(&repo_key(registry, r), Some(&last), Some(100)).await.unwrap();
        tags.push(t.elapsed());
        std::hint::black_box(page);
        let last = format!("bench/repo-{:05}", (j * 31) % REPOS);
        let t = Instant::now();
        let page = meta.repositories(registry, Some(&last), Some(100)).await.unwrap();
        catalog.push(t.elapsed());
        std::hint::black_box(page);
    }
    // GC after deleting what this round pushed: `ops` links and blobs to remove.
    for put in &pushed {
        assert!(meta.delete_manifest(&put.repo, &put.record.digest).await.unwrap());
    }
    let t = Instant::now();
    let (links, blobs) = gc(meta).await;
    let gc_ms = t.elapsed().as_secs_f64() * 1000.0;
    Figures {
        size,
        push: stats(push),
        tag_move: stats(moves),
        tags_page: stats(tags),
        catalog: stats(catalog),
        gc_ms,
        gc_removed: (links, blobs),
    }
}

/// A GC pass's metadata steps (what `RegistryService::gc` calls), everything old enough:
/// links and blobs removed.
async fn gc(meta: &dyn MetadataStore) -> (u64, u64) {
    let cutoff = now_millis() + 1;
    let links = meta.unlink_stale_blobs(cutoff).await.unwrap();
    let mut blobs = 0;
    for d in meta.unreferenced_blobs(cutoff).await.unwrap() {
        if meta.forget_blob_if_unreferenced(&d, cutoff).await.unwrap() {
            blobs += 1;
        }
    }
    (links, blobs)
}

/// Rounds of [`measure`] per size: disk flushes and the database's housekeeping make any
/// one round noisy.
const ROUNDS: u32 = 3;

/// [`measure`] `ROUNDS` times: each latency is the lowest round's median (and the best
/// call), the GC pass the median round's.
async fn measure_rounds(
    meta: &dyn MetadataStore,
    registry: RegistryId,
    size: u64,
    ops: usize,
    step: u32,
) -> Figures {
    let mut rounds = Vec::new();
    for k in 0..ROUNDS {
        rounds.push(measure(meta, registry, size, ops, step * ROUNDS + k).await);
    }
    let best = |f: fn(&Figures) -> (f64, f64)| {
        let median = rounds.iter().map(|r| f(r).0).fold(f64::INFINITY, f64::min);
        let best = rounds.iter().map(|r| f(r).1).fold(f64::INFINITY, f64::min);
        (median, best)
    };
    let mut gcs: Vec<(f64, (u64, u64))> = rounds.iter().map(|r| (r.gc_ms, r.gc_removed)).collect();
    gcs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (gc_ms, gc_removed) = gcs[gcs.len() / 2];
    Figures {
        size,
        push: best(|r| r.push),
        tag_move: best(|r| r.tag_move),
        tags_page: best(|r| r.tags_page),
        catalog: best(|r| r.catalog),
        gc_ms,
        gc_removed,
    }
}

async fn run(name: &str, meta: &dyn MetadataStore, mut conn: Conn, d: Dialect, args: &Args) {
    let registry = meta.default_registry().await.unwrap().id;
    conn.exec_all(repos_sql(d, registry)).await;
    let first = conn.first_repo().await;
    let mut rows = Vec::new();
    conn.settle().await;
    rows.push(measure_rounds(meta, registry, 0, args.ops, 0).await);
    let mut size = 0;
    for (round, step) in args.steps.iter().enumerate() {
        let started = Instant::now();
        while size < *step {
            let to = (size + CHUNK).min(*step);
            conn.exec_all(fill_sql(d, first, size, to)).await;
            size = to;
        }
        conn.settle().await;
        eprintln!("{name}: filled to {size} in {:.1} s", started.elapsed().as_secs_f64());
        // The GC pass that follows the pushes: it looks at each pushed link and blob once.
        let t = Instant::now();
        let (links, blobs) = gc(meta).await;
        eprintln!(
            "{name}: first GC pass after the fill: {:.1} s (removed {links} links, {blobs} blobs)",
            t.elapsed().as_secs_f64()
        );
        conn.settle().await;
        rows.push(measure_rounds(meta, registry, size, args.ops, round as u32 + 1).await);
    }
    println!(
        "\n{name} — 10 000 repositories; ms: the best of {ROUNDS} rounds' medians / the best call \
         ({} calls a round); gc: the median round",
        args.ops
    );
    println!(
        "{:>10}  {:>15}  {:>15}  {:>15}  {:>15}  {:>22}",
        "manifests", "push", "tag move", "tags page", "catalog page", "gc pass (links, blobs)"
    );
    let empty = &rows[0];
    for f in &rows {
        let cell = |(m, b): (f64, f64), base: (f64, f64)| {
            if f.size == 0 {
                format!("{m:.2} / {b:.2}")
            } else {
                format!("{m:.2} / {b:.2} ({:.2}×)", m / base.0)
            }
        };
        println!(
            "{:>10}  {:>15}  {:>15}  {:>15}  {:>15}  {:>10.1} ({}, {})",
            f.size,
            cell(f.push, empty.push),
            cell(f.tag_move, empty.tag_move),
            cell(f.tags_page, empty.tags_page),
            cell(f.catalog, empty.catalog),
            f.gc_ms,
            f.gc_removed.0,
            f.gc_removed.1
        );
    }
}

#[tokio::main]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.db");
    let lite = SqliteMetadataStore::open(&path).await.unwrap();
    let conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    run("SQLite", &lite, Conn::Lite(conn), Dialect::Sqlite, &args).await;

    let Ok(server) = std::env::var("WHARF_TEST_POSTGRES") else {
        println!("\nPostgreSQL: skipped (WHARF_TEST_POSTGRES not set; bench/growth.sh sets it)");
        return;
    };
    let name = format!("wharf_growth_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = match server.rsplit_once('/') {
        Some((root, _)) => format!("{root}/{name}"),
        None => panic!("WHARF_TEST_POSTGRES has no database"),
    };
    let pg = PostgresMetadataStore::open(&url, PostgresOptions::default()).await.unwrap();
    let conn = sqlx::PgConnection::connect(&url).await.unwrap();
    run("PostgreSQL", &pg, Conn::Pg(conn), Dialect::Postgres, &args).await;
    pg.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
