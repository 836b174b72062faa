-- The identity provider: tenants, principals and their hashed secrets, custom roles, role
-- assignments, and the keys that sign tokens. Secrets are stored only as argon2id hashes.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY COLLATE NOCASE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE principals (
    id          TEXT PRIMARY KEY COLLATE NOCASE,
    tenant      TEXT NOT NULL COLLATE NOCASE REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                 -- User | ServicePrincipal
    name        TEXT NOT NULL COLLATE NOCASE,
    app_id      TEXT UNIQUE COLLATE NOCASE,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant, kind, name)
);

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,
    principal     TEXT NOT NULL COLLATE NOCASE REFERENCES principals(id) ON DELETE CASCADE,
    hash          TEXT NOT NULL,
    hint          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL
);
CREATE INDEX credentials_principal ON credentials(principal);

CREATE TABLE role_definitions (
    id          TEXT PRIMARY KEY COLLATE NOCASE,
    name        TEXT NOT NULL COLLATE NOCASE UNIQUE,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE role_assignments (
    id                  TEXT PRIMARY KEY COLLATE NOCASE,
    scope               TEXT NOT NULL COLLATE NOCASE,
    role_definition_id  TEXT NOT NULL COLLATE NOCASE,
    principal_id        TEXT NOT NULL COLLATE NOCASE,
    principal_type      TEXT NOT NULL,
    condition           TEXT,
    description         TEXT,
    created_at          INTEGER NOT NULL,
    UNIQUE (scope, role_definition_id, principal_id)
);
CREATE INDEX role_assignments_principal ON role_assignments(principal_id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    pkcs8       BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
