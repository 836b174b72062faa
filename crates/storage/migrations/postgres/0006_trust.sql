-- Revocation: tokens carry the principal's token generation they were issued under, and stop
-- working when it moves (a secret reset, a password change, a revocation).
ALTER TABLE principals ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;

-- The directory has its own roles: a resource role's `*` (Owner, Contributor) no longer
-- reaches it. Whoever owned everything administered the directory too, and still does.
INSERT INTO role_assignments
    (id, scope, role_definition_id, principal_id, principal_type, condition, description, created_at)
SELECT gen_random_uuid()::text, '/', '5f1b7a3c-8d2e-4c6a-9b0f-2e7d4a1c3b58', principal_id,
       principal_type, NULL,
       'Owners of / administered the directory before it had roles of its own.', created_at
  FROM role_assignments
 WHERE scope_ci IN ('/', '') AND role_definition_id_ci = '8e3af657-a8ff-443c-a75c-2fe8c4bcb635'
   AND condition IS NULL
ON CONFLICT DO NOTHING;

-- Sign-in attempts are reserved before a secret is hashed (a burst of parallel guesses
-- meets the limit), per (name, address), name and address; a window that ends full is
-- followed by a longer one (back-off).
ALTER TABLE sign_in_failures ADD COLUMN window_ms BIGINT NOT NULL DEFAULT 60000;
DROP INDEX sign_in_failures_since;
CREATE INDEX sign_in_failures_ends ON sign_in_failures((since_ms + window_ms));

-- Import jobs are fenced: each claim moves the lease epoch, and the owner's every write
-- (progress, outcome, the tag-moving commit) names the epoch it holds. Leases are set and
-- compared by the database's clock.
ALTER TABLE import_jobs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
