//! `ManagementStore`: subscriptions, resource groups, registries as ARM resources, and
//! import jobs with their leases and fences, on SQLite and PostgreSQL.

use std::time::Duration;

use wharf_oci::{Digest, Tag};
use wharf_storage::*;

use crate::{manifest, repo};

contract_tests!([sqlite, postgres] [
    subscription_ids_are_case_insensitive,
    resource_groups_are_found_case_insensitively,
    a_registry_keeps_its_groups_casing_and_a_unique_name,
    registries_are_found_and_updated,
    deleting_a_group_takes_its_registries_but_never_the_default,
    a_leased_job_runs_on_one_node,
    a_restarted_node_takes_its_jobs_back_under_a_new_epoch,
    a_lapsed_lease_goes_to_another_node,
    a_cancel_asked_anywhere_reaches_the_owner,
    finished_jobs_are_deleted_once_old_enough,
    a_lost_jobs_commit_is_fenced,
]);

async fn subscription_ids_are_case_insensitive(m: &dyn ManagementStore) {
    assert!(m.subscription(DEFAULT_SUBSCRIPTION).await.unwrap().is_some());
    assert!(m.put_subscription("s1", "one").await.unwrap());
    assert!(!m.put_subscription("S1", "renamed").await.unwrap(), "ids are case-insensitive");
}

/// Subscription `s1` and its group `RG`.
fn group() -> ResourceGroupRecord {
    ResourceGroupRecord {
        subscription: "s1".into(),
        name: "RG".into(),
        location: "here".into(),
        tags: "{}".into(),
        created_at: 1,
    }
}

async fn resource_groups_are_found_case_insensitively(m: &dyn ManagementStore) {
    m.put_subscription("s1", "one").await.unwrap();
    let rg = group();
    assert!(m.put_resource_group(&rg).await.unwrap());
    assert!(m.resource_group("s1", "rg").await.unwrap().is_some());
}

/// `MyReg1` in group `RG` of subscription `s1`, as asked for and as created.
async fn my_registry(m: &dyn ManagementStore) -> (RegistryRecord, RegistryRecord) {
    m.put_subscription("s1", "one").await.unwrap();
    m.put_resource_group(&group()).await.unwrap();
    let reg = RegistryRecord {
        id: RegistryId(0),
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
    (reg, created)
}

async fn a_registry_keeps_its_groups_casing_and_a_unique_name(m: &dyn ManagementStore) {
    let (reg, created) = my_registry(m).await;
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
}

async fn registries_are_found_and_updated(m: &dyn ManagementStore) {
    let (_, created) = my_registry(m).await;
    assert_eq!(m.registry_in("S1", "rg", "myreg1").await.unwrap().unwrap().id, created.id);
    assert_eq!(m.registries(Some("s1"), None).await.unwrap().len(), 1);
    m.update_registry(&RegistryRecord { sku: "Premium".into(), ..created.clone() }).await.unwrap();
    assert_eq!(m.registry(created.id).await.unwrap().unwrap().sku, "Premium");
}

async fn deleting_a_group_takes_its_registries_but_never_the_default(m: &dyn ManagementStore) {
    let (_, created) = my_registry(m).await;
    assert!(m.delete_resource_group("s1", "rg").await.unwrap());
    assert!(m.registry(created.id).await.unwrap().is_none(), "the group took its registry");
    assert!(
        !m.delete_registry(m.registries(None, None).await.unwrap()[0].id).await.unwrap(),
        "the default registry stays"
    );
}

/// Job `registries-1` of `MyReg1`, accepted and leased to node-a for a minute.
pub(crate) async fn job(m: &dyn ManagementStore) {
    let (_, created) = my_registry(m).await;
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
}

/// No progress yet.
fn empty() -> JobProgress {
    JobProgress::default()
}

/// Some progress: a message.
fn noted() -> JobProgress {
    JobProgress { message: Some("n".into()), ..JobProgress::default() }
}

pub(crate) fn fence(owner: &str, epoch: i64) -> JobFence {
    JobFence { id: "registries-1".into(), owner: owner.into(), epoch }
}

/// Leases, by the database's clock: a job runs on one node; another takes it only once
/// the lease has run out. Every claim moves the epoch, and a node's writes name the
/// epoch it holds: one that lost the job writes nothing.
async fn a_leased_job_runs_on_one_node(m: &dyn ManagementStore) {
    job(m).await;
    assert_eq!(m.unfinished_jobs().await.unwrap().len(), 1);
    assert!(m.claim_jobs("node-b", 1_000, false, &[]).await.unwrap().is_empty(), "leased");
    assert_eq!(
        m.heartbeat_job(&fence("node-a", 0), &noted(), 60_000).await.unwrap(),
        Some(JobState::Accepted)
    );
    assert_eq!(m.heartbeat_job(&fence("node-b", 0), &empty(), 60_000).await.unwrap(), None);
}

/// node-a restarts: its own jobs come back to it at once, under a new epoch, and what
/// its previous run would still write is refused.
async fn a_restarted_node_takes_its_jobs_back_under_a_new_epoch(m: &dyn ManagementStore) {
    job(m).await;
    m.heartbeat_job(&fence("node-a", 0), &noted(), 60_000).await.unwrap();
    let mine = m.claim_jobs("node-a", 200, true, &[]).await.unwrap();
    assert_eq!((mine.len(), mine[0].lease_epoch), (1, 1));
    // A node's own sweep never takes back what it runs (that would move its epoch).
    assert!(m.claim_jobs("node-a", 200, false, &[]).await.unwrap().is_empty());
    assert_eq!(mine[0].progress, noted());
    assert_eq!(m.heartbeat_job(&fence("node-a", 0), &empty(), 60_000).await.unwrap(), None);
    assert!(!m.update_job(&fence("node-a", 0), JobState::Succeeded, &empty(), None).await.unwrap());
}

/// `job`, restarted on node-a under a lease of 200 ms (epoch 1), past that lease.
async fn lapsed(m: &dyn ManagementStore) {
    job(m).await;
    m.claim_jobs("node-a", 200, true, &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
}

async fn a_lapsed_lease_goes_to_another_node(m: &dyn ManagementStore) {
    lapsed(m).await;
    // Past its lease, a node's own sweep leaves a job it still runs alone.
    let running = ["registries-1".to_owned()];
    assert!(m.claim_jobs("node-a", 200, false, &running).await.unwrap().is_empty());
    // node-a stops renewing; past the lease, node-b takes the job, and node-a has lost it.
    let taken = m.claim_jobs("node-b", 60_000, false, &[]).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].owner.as_deref(), taken[0].lease_epoch), (Some("node-b"), 2));
    assert_eq!(m.heartbeat_job(&fence("node-a", 1), &empty(), 60_000).await.unwrap(), None);
    assert!(!m.update_job(&fence("node-a", 1), JobState::Succeeded, &empty(), None).await.unwrap());
    assert_eq!(m.job("registries-1").await.unwrap().unwrap().status, JobState::Accepted);
}

/// A cancel asked anywhere is seen by the owner's next heartbeat.
async fn a_cancel_asked_anywhere_reaches_the_owner(m: &dyn ManagementStore) {
    lapsed(m).await;
    m.claim_jobs("node-b", 60_000, false, &[]).await.unwrap();
    assert!(m.request_job_cancel("registries-1").await.unwrap());
    assert_eq!(
        m.heartbeat_job(&fence("node-b", 2), &empty(), 60_000).await.unwrap(),
        Some(JobState::Canceling)
    );
    let error = JobError { code: "X".into(), message: "m".into() };
    assert!(
        m.update_job(&fence("node-b", 2), JobState::Failed, &empty(), Some(&error)).await.unwrap()
    );
    assert!(m.unfinished_jobs().await.unwrap().is_empty());
    assert!(!m.request_job_cancel("registries-1").await.unwrap(), "finished");
    assert!(m.claim_jobs("node-c", 1_000, true, &[]).await.unwrap().is_empty());
    assert_eq!(m.job("registries-1").await.unwrap().unwrap().error, Some(error));
}

async fn finished_jobs_are_deleted_once_old_enough(m: &dyn ManagementStore) {
    job(m).await;
    let owner = fence("node-a", 0);
    let error = JobError { code: "X".into(), message: "m".into() };
    let progress = empty();
    let failed = m.update_job(&owner, JobState::Failed, &progress, Some(&error));
    assert!(failed.await.unwrap());
    assert_eq!(m.delete_finished_jobs(0).await.unwrap(), 0, "too recent");
    assert_eq!(m.delete_finished_jobs(now_millis() + 1000).await.unwrap(), 1);
    assert!(m.job("registries-1").await.unwrap().is_none());
}

/// An import's tag-moving commit is fenced like its other writes: after another node took
/// the job over, the old owner's batch stores nothing.
async fn a_lost_jobs_commit_is_fenced(db: &(impl MetadataStore + ManagementStore)) {
    let (meta, m): (&dyn MetadataStore, &dyn ManagementStore) = (db, db);
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
