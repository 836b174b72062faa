-- What listings show, kept in columns so that a listing or a detail never loads (or parses)
-- manifest bytes: the config's media type of an image manifest, and for each child of an
-- index its platform and its position in the index.
ALTER TABLE manifests ADD COLUMN config_media_type TEXT;
ALTER TABLE manifest_refs ADD COLUMN platform TEXT;
ALTER TABLE manifest_refs ADD COLUMN position INTEGER NOT NULL DEFAULT 0;

UPDATE manifests
   SET config_media_type = json_extract(CAST(content AS TEXT), '$.config.mediaType')
 WHERE json_valid(CAST(content AS TEXT));

UPDATE manifest_refs
   SET (platform, position) = (
       SELECT json_extract(j.value, '$.platform'), CAST(j.key AS INTEGER)
         FROM manifests m, json_each(CAST(m.content AS TEXT), '$.manifests') j
        WHERE m.repo_id = manifest_refs.repo_id
          AND m.digest = manifest_refs.manifest_digest
          AND json_extract(j.value, '$.digest') = manifest_refs.target
        LIMIT 1)
 WHERE kind = 1;

CREATE INDEX manifests_created ON manifests(repo_id, created_at);
CREATE INDEX tags_updated ON tags(repo_id, updated_at);
