-- GC's work list: what may have become garbage since GC last looked, so that a pass costs
-- what changed rather than everything stored. repo_id 0: a blob that may now be linked and
-- referenced nowhere; otherwise a link that no manifest of its repository may reference.
-- `since`: when it became a candidate (a link's linked_at, a blob's touched_at, 0 when a
-- reference went); a pass looks at candidates older than its grace period's cutoff.
CREATE TABLE gc_candidates (
    repo_id  INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    since    INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX gc_candidates_since ON gc_candidates(repo_id, since, digest);

-- Kept by triggers, so that every path feeds it: pushes, mounts, imports, deletes, and the
-- cascades of deleting a manifest, a repository or a registry.
CREATE TRIGGER gc_link_made AFTER INSERT ON repo_blobs BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (NEW.repo_id, NEW.digest, NEW.linked_at)
        ON CONFLICT (repo_id, digest) DO UPDATE SET since = excluded.since;
END;
CREATE TRIGGER gc_link_renewed AFTER UPDATE OF linked_at ON repo_blobs BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (NEW.repo_id, NEW.digest, NEW.linked_at)
        ON CONFLICT (repo_id, digest) DO UPDATE SET since = excluded.since;
END;
CREATE TRIGGER gc_link_dropped AFTER DELETE ON repo_blobs BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (0, OLD.digest, 0)
        ON CONFLICT (repo_id, digest) DO NOTHING;
END;
CREATE TRIGGER gc_blob_added AFTER INSERT ON blobs BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (0, NEW.digest, NEW.touched_at)
        ON CONFLICT (repo_id, digest) DO UPDATE SET since = excluded.since;
END;
CREATE TRIGGER gc_blob_touched AFTER UPDATE OF touched_at ON blobs BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (0, NEW.digest, NEW.touched_at)
        ON CONFLICT (repo_id, digest) DO UPDATE SET since = excluded.since;
END;
CREATE TRIGGER gc_blob_forgotten AFTER DELETE ON blobs BEGIN
    DELETE FROM gc_candidates WHERE repo_id = 0 AND digest = OLD.digest;
END;
-- A manifest gone (deleted, or with its repository): the blobs it named may be garbage now,
-- in its repository and anywhere.
CREATE TRIGGER gc_reference_dropped AFTER DELETE ON manifest_refs WHEN OLD.kind = 0 BEGIN
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (OLD.repo_id, OLD.target, 0)
        ON CONFLICT (repo_id, digest) DO NOTHING;
    INSERT INTO gc_candidates (repo_id, digest, since) VALUES (0, OLD.target, 0)
        ON CONFLICT (repo_id, digest) DO NOTHING;
END;

-- What is stored already is looked at once.
INSERT INTO gc_candidates (repo_id, digest, since) SELECT repo_id, digest, linked_at FROM repo_blobs WHERE true
    ON CONFLICT (repo_id, digest) DO NOTHING;
INSERT INTO gc_candidates (repo_id, digest, since) SELECT 0, digest, touched_at FROM blobs WHERE true
    ON CONFLICT (repo_id, digest) DO NOTHING;
