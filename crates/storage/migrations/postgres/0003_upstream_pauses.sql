-- Pauses an upstream registry asked for (429 Too Many Requests with Retry-After), shared by
-- every node, so that one node's "slow down" holds the whole cluster back from that host.
CREATE TABLE upstream_pauses (
    upstream  TEXT PRIMARY KEY,        -- the source's base URL
    until_ms  BIGINT NOT NULL
);
