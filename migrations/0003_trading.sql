-- Why: tenders with their lots and custodians, and sealed bids with their resumable uploads.
-- The server stores ciphertext, signed manifests and receipts; never a key able to open a bid.

CREATE TABLE tenders (
    id uuid PRIMARY KEY,
    code text NOT NULL,
    name text NOT NULL,
    tenderer text NOT NULL,
    agent_id uuid NOT NULL REFERENCES users (id),
    budget numeric(18, 2) NOT NULL,
    control_price numeric(18, 2),
    evaluation_method text NOT NULL,
    deadline timestamptz NOT NULL,
    decryption_minutes integer NOT NULL,
    decryption_rule text NOT NULL,
    threshold integer NOT NULL,
    status text NOT NULL DEFAULT 'draft',
    version integer NOT NULL DEFAULT 1,
    summary_fields jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    CONSTRAINT tenders_code_key UNIQUE (code),
    CONSTRAINT tenders_budget_check CHECK (budget > 0),
    CONSTRAINT tenders_control_price_check CHECK (control_price IS NULL OR (control_price > 0 AND control_price <= budget)),
    CONSTRAINT tenders_decryption_minutes_check CHECK (decryption_minutes BETWEEN 5 AND 240),
    CONSTRAINT tenders_decryption_rule_check CHECK (decryption_rule IN ('custodians', 'void')),
    CONSTRAINT tenders_status_check CHECK (status IN ('draft', 'published', 'cancelled')),
    CONSTRAINT tenders_threshold_check CHECK (threshold >= 0),
    CONSTRAINT tenders_evaluation_method_check CHECK (
        evaluation_method IN ('lowest_evaluated_price', 'comprehensive_scoring', 'reasonable_price')),
    -- Rule "void" needs no custodians; rule "custodians" needs k >= 2 (a Shamir split of K).
    CONSTRAINT tenders_rule_threshold_check CHECK (
        (decryption_rule = 'void' AND threshold = 0) OR (decryption_rule = 'custodians' AND threshold >= 2)),
    CONSTRAINT tenders_published_check CHECK ((status = 'draft') = (published_at IS NULL))
);
CREATE INDEX tenders_deadline_idx ON tenders (deadline);

CREATE TABLE lots (
    tender_id uuid NOT NULL REFERENCES tenders (id) ON DELETE CASCADE,
    code text NOT NULL,
    name text NOT NULL,
    budget numeric(18, 2) NOT NULL,
    position integer NOT NULL,
    PRIMARY KEY (tender_id, code),
    CONSTRAINT lots_code_check CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    CONSTRAINT lots_budget_check CHECK (budget > 0)
);

-- Custodian i of a tender, with the key set frozen at publication (position = share index).
CREATE TABLE tender_custodians (
    tender_id uuid NOT NULL REFERENCES tenders (id) ON DELETE CASCADE,
    position integer NOT NULL,
    custodian_id uuid NOT NULL REFERENCES users (id),
    key_set_id uuid REFERENCES key_sets (id),
    PRIMARY KEY (tender_id, position),
    CONSTRAINT tender_custodians_unique_key UNIQUE (tender_id, custodian_id)
);

CREATE TABLE tender_changes (
    id bigserial PRIMARY KEY,
    tender_id uuid NOT NULL REFERENCES tenders (id),
    version integer NOT NULL,
    kind text NOT NULL,
    detail jsonb NOT NULL,
    changed_by uuid NOT NULL REFERENCES users (id),
    changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tender_changes_kind_check CHECK (kind IN ('clarification', 'deadline_extension', 'cancellation')),
    CONSTRAINT tender_changes_version_key UNIQUE (tender_id, version)
);

CREATE TABLE uploads (
    id uuid NOT NULL,                 -- the client-chosen upload_id of the manifest
    tender_id uuid NOT NULL,
    lot_code text NOT NULL,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    user_id uuid NOT NULL REFERENCES users (id),
    manifest jsonb NOT NULL,
    manifest_sha256 text NOT NULL,
    signature text NOT NULL,
    key_set_id uuid NOT NULL REFERENCES key_sets (id),
    length bigint NOT NULL,
    "offset" bigint NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'receiving',
    failure text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tender_id, lot_code) REFERENCES lots (tender_id, code),
    CONSTRAINT uploads_upload_id_key PRIMARY KEY (id),
    CONSTRAINT uploads_manifest_sha256_key UNIQUE (manifest_sha256),
    CONSTRAINT uploads_status_check CHECK (status IN ('receiving', 'complete', 'failed')),
    CONSTRAINT uploads_offset_check CHECK ("offset" >= 0 AND "offset" <= length)
);

CREATE TABLE bids (
    id uuid PRIMARY KEY,
    upload_id uuid NOT NULL REFERENCES uploads (id),
    tender_id uuid NOT NULL,
    lot_code text NOT NULL,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    submitted_by uuid NOT NULL REFERENCES users (id),
    ciphertext_sha256 text NOT NULL,
    size bigint NOT NULL,
    manifest_sha256 text NOT NULL,
    status text NOT NULL DEFAULT 'active',
    tender_version integer NOT NULL,
    received_at timestamptz NOT NULL,
    log_index bigint NOT NULL,
    receipt jsonb NOT NULL,
    withdrawn_at timestamptz,
    FOREIGN KEY (tender_id, lot_code) REFERENCES lots (tender_id, code),
    CONSTRAINT bids_upload_key UNIQUE (upload_id),
    CONSTRAINT bids_status_check CHECK (status IN ('active', 'superseded', 'withdrawn'))
);
-- The latest valid submission counts: at most one active bid per organisation and lot.
CREATE INDEX bids_organisation_idx ON bids (organisation_id, tender_id);
CREATE UNIQUE INDEX bids_one_active_key ON bids (tender_id, lot_code, organisation_id) WHERE status = 'active';

CREATE TABLE bid_confirmations (
    bid_id uuid NOT NULL REFERENCES bids (id),
    tender_version integer NOT NULL,
    signature text NOT NULL,
    confirmed_by uuid NOT NULL REFERENCES users (id),
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bid_id, tender_version)
);
