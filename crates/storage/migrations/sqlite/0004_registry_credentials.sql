-- Credentials that belong to one registry rather than to a principal: its admin user and its
-- repository-scoped tokens, with the scope maps tokens use. They go with their registry.
CREATE TABLE scope_maps (
    registry_id  INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,
    name         TEXT NOT NULL COLLATE NOCASE,
    description  TEXT,
    actions      TEXT NOT NULL,          -- JSON array of "repositories/<repo>/<content|metadata>/<verb>"
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (registry_id, name)
);

CREATE TABLE registry_tokens (
    registry_id  INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,
    name         TEXT NOT NULL COLLATE NOCASE,   -- the user name it signs in with
    kind         TEXT NOT NULL,                  -- admin | token
    scope_map    TEXT COLLATE NOCASE,            -- a token's scope map
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (registry_id, kind, name)
);

CREATE TABLE registry_token_passwords (
    registry_id  INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    token        TEXT NOT NULL COLLATE NOCASE,
    slot         TEXT NOT NULL,                  -- password1|password2 (the admin user: password|password2)
    hash         TEXT NOT NULL,                  -- argon2id
    sealed       BLOB,                           -- the admin user's password, encrypted (listCredentials shows it)
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (registry_id, kind, token, slot),
    FOREIGN KEY (registry_id, kind, token) REFERENCES registry_tokens(registry_id, kind, name) ON DELETE CASCADE
);
