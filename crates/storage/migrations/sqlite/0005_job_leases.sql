-- Import jobs are leased by the server running them, which renews the lease while it runs;
-- a job whose lease ran out is taken over by another server (or the same one restarted).
ALTER TABLE import_jobs ADD COLUMN owner TEXT;
ALTER TABLE import_jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
