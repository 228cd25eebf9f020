-- Why: the online opening hall (不见面开标). One opening per tender, a state machine driven by
-- the host, kept entirely in the database so that a reload, a reconnect or a restart of any
-- server instance lands exactly where the opening stands. Rows of record (read-outs,
-- objections, confirmations, released shares) are only ever added to, never rewritten.

ALTER TABLE tenders
    ADD COLUMN min_bidders integer NOT NULL DEFAULT 3,
    ADD COLUMN show_bid_count boolean NOT NULL DEFAULT true,
    ADD COLUMN hall_opens_minutes integer NOT NULL DEFAULT 30,
    ADD COLUMN confirm_minutes integer NOT NULL DEFAULT 30,
    ADD CONSTRAINT tenders_min_bidders_check CHECK (min_bidders BETWEEN 1 AND 1000),
    ADD CONSTRAINT tenders_hall_opens_minutes_check CHECK (hall_opens_minutes BETWEEN 5 AND 1440),
    ADD CONSTRAINT tenders_confirm_minutes_check CHECK (confirm_minutes BETWEEN 5 AND 1440);

CREATE TABLE openings (
    tender_id uuid PRIMARY KEY REFERENCES tenders (id),
    step text NOT NULL,
    step_at timestamptz NOT NULL,
    window_ends_at timestamptz,
    record jsonb,
    record_sha256 text,
    record_at timestamptz,
    confirm_deadline timestamptz,
    resumption_at timestamptz,
    failure_reason text,
    lot_outcomes jsonb NOT NULL DEFAULT '{}',
    next_read_order integer NOT NULL DEFAULT 1,
    CONSTRAINT openings_step_check CHECK (step IN (
        'waiting', 'sign_in', 'bidder_list', 'decryption', 'custodians', 'reading', 'record', 'closed', 'failed')),
    CONSTRAINT openings_record_check CHECK ((record IS NULL) = (record_sha256 IS NULL))
);

CREATE TABLE opening_bidders (
    tender_id uuid NOT NULL REFERENCES openings (tender_id),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    signed_in_by uuid REFERENCES users (id),
    signed_in_at timestamptz,
    deposit text NOT NULL DEFAULT 'unchecked',
    deposit_note text NOT NULL DEFAULT '',
    deposit_checked_at timestamptz,
    PRIMARY KEY (tender_id, organisation_id),
    CONSTRAINT opening_bidders_deposit_check CHECK (deposit IN ('unchecked', 'confirmed', 'missing'))
);

-- The active bids frozen when submissions close, with their fate in the opening.
CREATE TABLE opening_bids (
    bid_id uuid PRIMARY KEY REFERENCES bids (id),
    tender_id uuid NOT NULL REFERENCES openings (tender_id),
    lot_code text NOT NULL,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    status text NOT NULL DEFAULT 'listed',
    reason text,
    attempts integer NOT NULL DEFAULT 0,
    last_failure text,
    opened_by text,
    opened_at timestamptz,
    summary jsonb,
    -- After the opening the content key is kept for the evaluation, which decrypts documents
    -- on demand (each view logged): no plaintext copy of a bid ever rests on disk.
    content_key bytea,
    files jsonb,
    read_order integer,
    read_at timestamptz,
    CONSTRAINT opening_bids_status_check CHECK (status IN (
        'listed', 'excluded', 'awaiting_custodians', 'opened', 'void')),
    CONSTRAINT opening_bids_opened_check CHECK (
        (status = 'opened') = (opened_by IS NOT NULL AND summary IS NOT NULL AND content_key IS NOT NULL)),
    CONSTRAINT opening_bids_key_size_check CHECK (content_key IS NULL OR octet_length(content_key) = 32),
    CONSTRAINT opening_bids_opened_by_check CHECK (opened_by IS NULL OR opened_by IN ('bidder', 'custodians')),
    CONSTRAINT opening_bids_read_order_key UNIQUE (tender_id, read_order)
);
CREATE INDEX opening_bids_tender_idx ON opening_bids (tender_id);

CREATE TABLE opening_shares (
    bid_id uuid NOT NULL REFERENCES opening_bids (bid_id),
    position integer NOT NULL,
    custodian_id uuid NOT NULL REFERENCES users (id),
    share bytea NOT NULL,
    released_at timestamptz NOT NULL,
    PRIMARY KEY (bid_id, position),
    CONSTRAINT opening_shares_size_check CHECK (octet_length(share) = 33)
);

CREATE TABLE opening_objections (
    id bigserial PRIMARY KEY,
    tender_id uuid NOT NULL REFERENCES openings (tender_id),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    raised_by uuid NOT NULL REFERENCES users (id),
    text text NOT NULL,
    raised_at timestamptz NOT NULL,
    answer text,
    answered_by uuid REFERENCES users (id),
    answered_at timestamptz,
    CONSTRAINT opening_objections_answer_check CHECK ((answer IS NULL) = (answered_at IS NULL))
);
CREATE INDEX opening_objections_tender_idx ON opening_objections (tender_id, id);

CREATE TABLE opening_chat (
    id bigserial PRIMARY KEY,
    tender_id uuid NOT NULL REFERENCES openings (tender_id),
    author_id uuid NOT NULL REFERENCES users (id),
    organisation_id uuid REFERENCES organisations (id),
    from_host boolean NOT NULL,
    text text NOT NULL,
    sent_at timestamptz NOT NULL,
    hidden_at timestamptz,
    hidden_by uuid REFERENCES users (id)
);
CREATE INDEX opening_chat_tender_idx ON opening_chat (tender_id, id);

CREATE TABLE opening_confirmations (
    tender_id uuid NOT NULL REFERENCES openings (tender_id),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    record_sha256 text NOT NULL,
    signature text NOT NULL,
    confirmed_by uuid NOT NULL REFERENCES users (id),
    confirmed_at timestamptz NOT NULL,
    PRIMARY KEY (tender_id, organisation_id)
);
