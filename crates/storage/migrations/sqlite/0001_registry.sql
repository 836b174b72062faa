-- The management plane, shaped like Azure Resource Manager: subscriptions hold resource
-- groups, which hold registries. ARM names are case-insensitive.
CREATE TABLE subscriptions (
    id            TEXT PRIMARY KEY COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE resource_groups (
    subscription_id  TEXT NOT NULL COLLATE NOCASE REFERENCES subscriptions(id) ON DELETE CASCADE,
    name             TEXT NOT NULL COLLATE NOCASE,
    location         TEXT NOT NULL,
    tags             TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, name)
);

-- Registries hosted by this server; exactly one has is_default = 1 and answers any host.
-- `properties` and `tags` are the ARM resource's JSON, owned by the management crate.
CREATE TABLE registries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: jobs hold ids
    name             TEXT NOT NULL COLLATE NOCASE UNIQUE,
    is_default       INTEGER NOT NULL DEFAULT 0,
    subscription_id  TEXT NOT NULL COLLATE NOCASE,
    resource_group   TEXT NOT NULL COLLATE NOCASE,
    location         TEXT NOT NULL,
    sku              TEXT NOT NULL,
    properties       TEXT NOT NULL DEFAULT '{}',
    tags             TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    FOREIGN KEY (subscription_id, resource_group) REFERENCES resource_groups(subscription_id, name)
);
CREATE UNIQUE INDEX registries_one_default ON registries(is_default) WHERE is_default = 1;

-- What exists on a fresh server: the default subscription, resource group and registry.
INSERT INTO subscriptions (id, display_name, created_at)
    VALUES ('00000000-0000-0000-0000-000000000000', 'default', CAST(strftime('%s','now') AS INTEGER) * 1000);
INSERT INTO resource_groups (subscription_id, name, location, created_at)
    VALUES ('00000000-0000-0000-0000-000000000000', 'default', 'local', CAST(strftime('%s','now') AS INTEGER) * 1000);
INSERT INTO registries (name, is_default, subscription_id, resource_group, location, sku, created_at)
    VALUES ('default', 1, '00000000-0000-0000-0000-000000000000', 'default', 'local', 'Standard',
            CAST(strftime('%s','now') AS INTEGER) * 1000);

CREATE TABLE repositories (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    registry_id  INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (registry_id, name)
);

-- One row per stored blob, whatever the number of repositories it is in.
-- touched_at starts the GC grace period (set when the blob is committed).
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    touched_at  INTEGER NOT NULL
);

-- Which blobs are visible in which repository (pushed or mounted there).
CREATE TABLE repo_blobs (
    repo_id    INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest     TEXT NOT NULL REFERENCES blobs(digest),
    linked_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);

-- Manifests, byte for byte as pushed.
CREATE TABLE manifests (
    repo_id        INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    platform       TEXT,               -- JSON: os/architecture of an image manifest's config
    blob_bytes     INTEGER NOT NULL,   -- total size of the blobs it references
    size           INTEGER NOT NULL,
    content        BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;

-- What each manifest points to: kind 0 = blob (config, layer), 1 = child manifest.
CREATE TABLE manifest_refs (
    repo_id          INTEGER NOT NULL,
    manifest_digest  TEXT NOT NULL,
    target           TEXT NOT NULL,
    kind             INTEGER NOT NULL,
    PRIMARY KEY (repo_id, manifest_digest, target),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_target ON manifest_refs(target, repo_id);

CREATE TABLE tags (
    repo_id     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_digest ON tags(repo_id, digest);

CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repo_id     INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    size        INTEGER NOT NULL,
    hash_state  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Import jobs (long-running operations). Source credentials are never stored: a job that
-- had some can't be resumed after a restart, and is failed instead.
CREATE TABLE import_jobs (
    id           TEXT PRIMARY KEY,
    registry_id  INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,
    request      TEXT NOT NULL,
    resumable    INTEGER NOT NULL,
    status       TEXT NOT NULL,
    progress     TEXT NOT NULL DEFAULT '{}',
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX import_jobs_status ON import_jobs(status);
