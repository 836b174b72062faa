-- GC's work list (as SQLite's 0006): what may have become garbage since GC last looked, so
-- that a pass costs what changed rather than everything stored. repo_id 0: a blob that may
-- now be linked and referenced nowhere; otherwise a link that no manifest of its repository
-- may reference. `since`: when it became a candidate (a link's linked_at, a blob's
-- touched_at, 0 when a reference went); a pass looks at candidates older than its cutoff.
CREATE TABLE gc_candidates (
    repo_id  BIGINT NOT NULL,
    digest   TEXT COLLATE "C" NOT NULL,
    since    BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX gc_candidates_since ON gc_candidates(repo_id, since, digest);

-- Kept by triggers, so that every path feeds it, cascades included.
CREATE FUNCTION gc_link_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (NEW.repo_id, NEW.digest, NEW.linked_at)
        ON CONFLICT (repo_id, digest) DO UPDATE SET since = excluded.since;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_link_changed AFTER INSERT OR UPDATE OF linked_at ON repo_blobs
    FOR EACH ROW EXECUTE FUNCTION gc_link_changed();

CREATE FUNCTION gc_link_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (0, OLD.digest, 0)
        ON CONFLICT (repo_id, digest) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_link_dropped AFTER DELETE ON repo_blobs
    FOR EACH ROW EXECUTE FUNCTION gc_link_dropped();

CREATE FUNCTION gc_blob_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (0, NEW.digest, NEW.touched_at)
        ON CONFLICT (repo_id, digest) DO UPDATE SET since = excluded.since;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_blob_changed AFTER INSERT OR UPDATE OF touched_at ON blobs
    FOR EACH ROW EXECUTE FUNCTION gc_blob_changed();

CREATE FUNCTION gc_blob_forgotten() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM gc_candidates WHERE repo_id = 0 AND digest = OLD.digest;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_blob_forgotten AFTER DELETE ON blobs
    FOR EACH ROW EXECUTE FUNCTION gc_blob_forgotten();

-- A manifest gone (deleted, or with its repository): the blobs it named may be garbage now,
-- in its repository and anywhere.
CREATE FUNCTION gc_reference_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (OLD.repo_id, OLD.target, 0), (0, OLD.target, 0)
        ON CONFLICT (repo_id, digest) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_reference_dropped AFTER DELETE ON manifest_refs
    FOR EACH ROW WHEN (OLD.kind = 0) EXECUTE FUNCTION gc_reference_dropped();

-- What is stored already is looked at once.
INSERT INTO gc_candidates (repo_id, digest, since) SELECT repo_id, digest, linked_at FROM repo_blobs
    ON CONFLICT (repo_id, digest) DO NOTHING;
INSERT INTO gc_candidates (repo_id, digest, since) SELECT 0, digest, touched_at FROM blobs
    ON CONFLICT (repo_id, digest) DO NOTHING;
