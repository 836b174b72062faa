-- Blobs a source was seen to serve, shared by every node: an import on one node needn't
-- download a blob again only to prove that the same source (and credential) serves it,
-- when another node's import saw it do so. Keys are hashes of (digest, source identity);
-- proofs expire (the source's content or access may change).
CREATE TABLE download_proofs (
    key        TEXT PRIMARY KEY,
    proven_ms  BIGINT NOT NULL
);
CREATE INDEX download_proofs_proven ON download_proofs(proven_ms);
