-- Sign-in failures counted for every node at once (per name, per client address), so that a
-- cluster of N nodes allows no more guesses than one server does.
CREATE TABLE sign_in_failures (
    key       TEXT PRIMARY KEY,   -- name:<name> | ip:<address>
    count     INTEGER NOT NULL,
    since_ms  BIGINT NOT NULL     -- when its current window began
);
CREATE INDEX sign_in_failures_since ON sign_in_failures(since_ms);

-- A number that moves with every change to who may do what. Nodes cache a caller's grants
-- and checked secrets; they read this at most once a second and drop those caches when it
-- moved, so a change made through one node holds on all of them within about a second.
-- Triggers keep it: no code path that changes access can forget to. They are deferred, row
-- level: the row is updated at commit, after every other lock the transaction takes (no
-- deadlock through it, the shortest hold), visible together with the change, and not at all
-- by a statement that changed nothing.
CREATE TABLE access_version (
    only_row  BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    version   BIGINT NOT NULL
);
INSERT INTO access_version VALUES (true, 0);

CREATE FUNCTION bump_access_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_version SET version = version + 1;
    RETURN NULL;
END $$;

DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'principals', 'credentials', 'role_definitions',
                             'role_assignments', 'scope_maps', 'registry_tokens',
                             'registry_token_passwords', 'registries'] LOOP
        EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'DEFERRABLE INITIALLY DEFERRED '
                       'FOR EACH ROW EXECUTE FUNCTION bump_access_version()',
                       t || '_access_version', t);
    END LOOP;
END $$;
