-- Revocation: tokens carry the principal's token generation they were issued under, and stop
-- working when it moves (a secret reset, a password change, a revocation).
ALTER TABLE principals ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;

-- The directory has its own roles: a resource role's `*` (Owner, Contributor) no longer
-- reaches it. Whoever owned everything administered the directory too, and still does.
INSERT OR IGNORE INTO role_assignments
    (id, scope, role_definition_id, principal_id, principal_type, condition, description, created_at)
SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
           || substr(lower(hex(randomblob(2))), 2) || '-8' || substr(lower(hex(randomblob(2))), 2)
           || '-' || lower(hex(randomblob(6))),
       '/', '5f1b7a3c-8d2e-4c6a-9b0f-2e7d4a1c3b58', principal_id, principal_type, NULL,
       'Owners of / administered the directory before it had roles of its own.', created_at
  FROM role_assignments
 WHERE scope IN ('/', '') AND role_definition_id = '8e3af657-a8ff-443c-a75c-2fe8c4bcb635'
   AND condition IS NULL;

-- Import jobs are fenced: each claim moves the lease epoch, and the owner's every write
-- (progress, outcome, the tag-moving commit) names the epoch it holds.
ALTER TABLE import_jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
