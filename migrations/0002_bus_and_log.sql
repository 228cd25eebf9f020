-- Why: the transactional outbox that carries domain events to every server instance, and
-- the append-only Merkle-tree transparency log (RFC 9162 style) with its signed tree heads.

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_topic_idx ON events (topic, id);

CREATE TABLE log_entries (
    idx bigint PRIMARY KEY,
    kind text NOT NULL,
    body text NOT NULL,            -- canonical JSON, exactly the bytes that were hashed
    leaf_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT log_entries_idx_check CHECK (idx >= 0)
);

-- Every perfect subtree's hash, stored once when it completes (level 0 = leaves).
CREATE TABLE log_nodes (
    level smallint NOT NULL,
    idx bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE log_tree_heads (
    tree_size bigint PRIMARY KEY,
    root_hash bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    signature bytea NOT NULL,
    key_id text NOT NULL
);

-- Rows are never updated or deleted; the trigger makes an accident loud (an insider with
-- superuser rights can still disable it, which is what `tenderhall audit verify` is for).
CREATE FUNCTION refuse_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the transparency log is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER log_entries_append_only BEFORE UPDATE OR DELETE ON log_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_log_change();
CREATE TRIGGER log_nodes_append_only BEFORE UPDATE OR DELETE ON log_nodes
    FOR EACH ROW EXECUTE FUNCTION refuse_log_change();
CREATE TRIGGER log_tree_heads_append_only BEFORE UPDATE OR DELETE ON log_tree_heads
    FOR EACH ROW EXECUTE FUNCTION refuse_log_change();
