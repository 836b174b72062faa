-- Blobs a source was seen to serve, shared by every node: an import on one node needn't
-- download a blob again only to prove that the same source (and credential) serves it,
-- when another node's import saw it do so. Keys are hashes of (digest, source identity);
-- proofs expire (the source's content or access may change).
CREATE TABLE download_proofs (
    key        TEXT PRIMARY KEY,
    proven_ms  BIGINT NOT NULL
);
CREATE INDEX download_proofs_proven ON download_proofs(proven_ms);

-- Downloads in progress, so that two nodes importing the same blob from the same source at
-- once download it once: the node holding a live claim downloads, the other waits for its
-- proof. A claim is a lease (renewed while the download runs), so a node that dies
-- mid-download holds nobody up for longer than the lease.
CREATE TABLE download_claims (
    key       TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    until_ms  BIGINT NOT NULL
);
CREATE INDEX download_claims_until ON download_claims(until_ms);
