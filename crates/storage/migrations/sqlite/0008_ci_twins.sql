-- Case-insensitive names get the `<col>_ci` twins PostgreSQL's schema has (lower(<col>),
-- virtual here), with the same unique indexes: the SQL the two stores share
-- (`src/sql/`) looks names up, orders them and resolves upsert conflicts through the twin
-- in both. The columns keep COLLATE NOCASE and their constraints; lower() folds ASCII as
-- NOCASE does, so no name that was one name before becomes two, or the reverse.
ALTER TABLE subscriptions ADD COLUMN id_ci TEXT GENERATED ALWAYS AS (lower(id)) VIRTUAL;
CREATE UNIQUE INDEX subscriptions_id_ci ON subscriptions(id_ci);

ALTER TABLE resource_groups ADD COLUMN subscription_ci TEXT GENERATED ALWAYS AS (lower(subscription_id)) VIRTUAL;
ALTER TABLE resource_groups ADD COLUMN name_ci TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
CREATE UNIQUE INDEX resource_groups_ci ON resource_groups(subscription_ci, name_ci);

ALTER TABLE registries ADD COLUMN name_ci TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
ALTER TABLE registries ADD COLUMN subscription_ci TEXT GENERATED ALWAYS AS (lower(subscription_id)) VIRTUAL;
ALTER TABLE registries ADD COLUMN resource_group_ci TEXT GENERATED ALWAYS AS (lower(resource_group)) VIRTUAL;
CREATE UNIQUE INDEX registries_name_ci ON registries(name_ci);
CREATE INDEX registries_group_ci ON registries(subscription_ci, resource_group_ci);

ALTER TABLE tenants ADD COLUMN id_ci TEXT GENERATED ALWAYS AS (lower(id)) VIRTUAL;
CREATE UNIQUE INDEX tenants_id_ci ON tenants(id_ci);

ALTER TABLE principals ADD COLUMN id_ci TEXT GENERATED ALWAYS AS (lower(id)) VIRTUAL;
ALTER TABLE principals ADD COLUMN tenant_ci TEXT GENERATED ALWAYS AS (lower(tenant)) VIRTUAL;
ALTER TABLE principals ADD COLUMN name_ci TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
ALTER TABLE principals ADD COLUMN app_id_ci TEXT GENERATED ALWAYS AS (lower(app_id)) VIRTUAL;
CREATE UNIQUE INDEX principals_id_ci ON principals(id_ci);
CREATE UNIQUE INDEX principals_app_id_ci ON principals(app_id_ci);
CREATE UNIQUE INDEX principals_name_ci ON principals(tenant_ci, kind, name_ci);

ALTER TABLE credentials ADD COLUMN principal_ci TEXT GENERATED ALWAYS AS (lower(principal)) VIRTUAL;
CREATE INDEX credentials_principal_ci ON credentials(principal_ci);

ALTER TABLE role_definitions ADD COLUMN id_ci TEXT GENERATED ALWAYS AS (lower(id)) VIRTUAL;
ALTER TABLE role_definitions ADD COLUMN name_ci TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
CREATE UNIQUE INDEX role_definitions_id_ci ON role_definitions(id_ci);
CREATE UNIQUE INDEX role_definitions_name_ci ON role_definitions(name_ci);

ALTER TABLE role_assignments ADD COLUMN id_ci TEXT GENERATED ALWAYS AS (lower(id)) VIRTUAL;
ALTER TABLE role_assignments ADD COLUMN scope_ci TEXT GENERATED ALWAYS AS (lower(scope)) VIRTUAL;
ALTER TABLE role_assignments ADD COLUMN role_definition_id_ci TEXT GENERATED ALWAYS AS (lower(role_definition_id)) VIRTUAL;
ALTER TABLE role_assignments ADD COLUMN principal_id_ci TEXT GENERATED ALWAYS AS (lower(principal_id)) VIRTUAL;
CREATE UNIQUE INDEX role_assignments_id_ci ON role_assignments(id_ci);
CREATE UNIQUE INDEX role_assignments_triple_ci
    ON role_assignments(scope_ci, role_definition_id_ci, principal_id_ci);
CREATE INDEX role_assignments_principal_ci ON role_assignments(principal_id_ci);

ALTER TABLE scope_maps ADD COLUMN name_ci TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
CREATE UNIQUE INDEX scope_maps_ci ON scope_maps(registry_id, name_ci);

ALTER TABLE registry_tokens ADD COLUMN name_ci TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
CREATE UNIQUE INDEX registry_tokens_ci ON registry_tokens(registry_id, kind, name_ci);

ALTER TABLE registry_token_passwords ADD COLUMN token_ci TEXT GENERATED ALWAYS AS (lower(token)) VIRTUAL;
CREATE UNIQUE INDEX registry_token_passwords_ci
    ON registry_token_passwords(registry_id, kind, token_ci, slot);
