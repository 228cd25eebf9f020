-- Why: remote cross-region evaluation (远程异地评标). A session belongs to a tender whose opening
-- has closed; its committee comes from the tender's evaluation draw, whose names are unsealed
-- when sign-in opens. Everything the committee does is a row added (never rewritten) and a
-- log entry, so the evaluation can be replayed and the report checked against what was done.

-- Trading centres and their evaluation rooms. The venue issue adds floors and zones to these.
CREATE TABLE venues (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    region_code text NOT NULL,
    address text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT venues_name_key UNIQUE (name),
    CONSTRAINT venues_name_check CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT venues_region_code_check CHECK (region_code ~ '^[0-9]{6}$')
);

CREATE TABLE venue_rooms (
    id uuid PRIMARY KEY,
    venue_id uuid NOT NULL REFERENCES venues (id),
    name text NOT NULL,
    seats integer NOT NULL,
    CONSTRAINT venue_rooms_name_key UNIQUE (venue_id, name),
    CONSTRAINT venue_rooms_name_check CHECK (length(name) BETWEEN 1 AND 100),
    CONSTRAINT venue_rooms_seats_check CHECK (seats BETWEEN 1 AND 50)
);

CREATE TABLE eval_sessions (
    id uuid PRIMARY KEY,
    tender_id uuid NOT NULL REFERENCES tenders (id),
    lot_code text NOT NULL,
    draw_id uuid NOT NULL REFERENCES draws (id),
    main_venue_id uuid NOT NULL REFERENCES venues (id),
    scheme jsonb NOT NULL,
    step text NOT NULL DEFAULT 'scheduled',
    step_at timestamptz NOT NULL,
    scheduled_start timestamptz NOT NULL,
    start_delay_max interval NOT NULL DEFAULT '2 hours',
    rejoin_window interval NOT NULL DEFAULT '4 hours',
    election_round integer NOT NULL DEFAULT 1,
    chair_id uuid REFERENCES users (id),
    opened_at timestamptz,
    report jsonb,
    report_sha256 text,
    decision text,
    decision_rooms uuid[],
    decided_by uuid REFERENCES users (id),
    decided_at timestamptz,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    CONSTRAINT eval_sessions_step_check CHECK (step IN (
        'scheduled', 'sign_in', 'declarations', 'chair_election', 'initial_review', 'detailed_review',
        'consolidation', 'report', 'closed', 'suspended', 'failed')),
    CONSTRAINT eval_sessions_report_check CHECK ((report IS NULL) = (report_sha256 IS NULL)),
    CONSTRAINT eval_sessions_decision_check CHECK (decision IS NULL OR decision IN ('continue_without', 'postpone'))
);
-- One live session per lot; a failed or suspended one may be followed by a new committee.
CREATE UNIQUE INDEX eval_sessions_live_lot_key ON eval_sessions (tender_id, lot_code)
    WHERE step NOT IN ('failed', 'suspended');

CREATE TABLE session_rooms (
    session_id uuid NOT NULL REFERENCES eval_sessions (id),
    room_id uuid NOT NULL REFERENCES venue_rooms (id),
    is_main boolean NOT NULL,
    staff_id uuid NOT NULL REFERENCES users (id),
    ready_at timestamptz,
    down_since timestamptz,
    left_out boolean NOT NULL DEFAULT false,
    PRIMARY KEY (session_id, room_id)
);
CREATE INDEX session_rooms_staff_idx ON session_rooms (staff_id);

CREATE TABLE session_supervisors (
    session_id uuid NOT NULL REFERENCES eval_sessions (id),
    user_id uuid NOT NULL REFERENCES users (id),
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX session_supervisors_user_idx ON session_supervisors (user_id);

-- The committee as it sits: an expert of the draw who signed in, in the room they signed in at,
-- with the P-256 key their browser made for this session (declarations and the report are
-- signed with it).
CREATE TABLE session_members (
    session_id uuid NOT NULL REFERENCES eval_sessions (id),
    user_id uuid NOT NULL REFERENCES users (id),
    expert_id uuid NOT NULL REFERENCES experts (id),
    room_id uuid NOT NULL,
    public_key bytea NOT NULL,
    signed_in_at timestamptz NOT NULL,
    replaced_at timestamptz,
    PRIMARY KEY (session_id, user_id),
    FOREIGN KEY (session_id, room_id) REFERENCES session_rooms (session_id, room_id),
    CONSTRAINT session_members_key_size_check CHECK (octet_length(public_key) BETWEEN 80 AND 200)
);
CREATE INDEX session_members_user_idx ON session_members (user_id);

CREATE TABLE session_declarations (
    session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    conflict boolean NOT NULL,
    statement text NOT NULL,
    signature text NOT NULL,
    signed_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, user_id),
    FOREIGN KEY (session_id, user_id) REFERENCES session_members (session_id, user_id)
);

CREATE TABLE session_ballots (
    session_id uuid NOT NULL,
    round integer NOT NULL,
    voter_id uuid NOT NULL,
    candidate_id uuid NOT NULL,
    cast_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, round, voter_id),
    FOREIGN KEY (session_id, voter_id) REFERENCES session_members (session_id, user_id),
    FOREIGN KEY (session_id, candidate_id) REFERENCES session_members (session_id, user_id)
);

CREATE TABLE session_verdicts (
    session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    criterion text NOT NULL,
    passed boolean NOT NULL,
    reason text NOT NULL DEFAULT '',
    given_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, user_id, organisation_id, criterion),
    FOREIGN KEY (session_id, user_id) REFERENCES session_members (session_id, user_id),
    CONSTRAINT session_verdicts_reason_check CHECK (passed OR length(reason) > 0)
);

CREATE TABLE session_scores (
    session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    criterion text NOT NULL,
    score numeric NOT NULL,
    given_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, user_id, organisation_id, criterion),
    FOREIGN KEY (session_id, user_id) REFERENCES session_members (session_id, user_id)
);

CREATE TABLE session_deviation_reasons (
    session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    criterion text NOT NULL,
    reason text NOT NULL,
    given_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, user_id, organisation_id, criterion),
    FOREIGN KEY (session_id, user_id) REFERENCES session_members (session_id, user_id)
);

CREATE TABLE session_clarifications (
    id bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES eval_sessions (id),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    asked_by uuid NOT NULL REFERENCES users (id),
    question text NOT NULL,
    asked_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'draft',
    reviewed_by uuid REFERENCES users (id),
    reviewed_at timestamptz,
    deadline timestamptz,
    answer text,
    answered_by uuid REFERENCES users (id),
    answered_at timestamptz,
    CONSTRAINT session_clarifications_status_check CHECK (status IN ('draft', 'approved', 'rejected', 'answered')),
    CONSTRAINT session_clarifications_answer_check CHECK ((status = 'answered') = (answer IS NOT NULL))
);
CREATE INDEX session_clarifications_session_idx ON session_clarifications (session_id, id);
CREATE INDEX session_clarifications_org_idx ON session_clarifications (organisation_id, id);

CREATE TABLE session_signatures (
    session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    report_sha256 text NOT NULL,
    signature text NOT NULL,
    dissent text,
    signed_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, user_id),
    FOREIGN KEY (session_id, user_id) REFERENCES session_members (session_id, user_id)
);

CREATE TABLE session_document_views (
    id bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES eval_sessions (id),
    user_id uuid NOT NULL REFERENCES users (id),
    bid_id uuid NOT NULL REFERENCES bids (id),
    document text NOT NULL,
    viewed_at timestamptz NOT NULL
);
CREATE INDEX session_document_views_session_idx ON session_document_views (session_id, id);

-- Marks dropped on the recording timeline ("deviation flagged", "clarification sent").
CREATE TABLE session_marks (
    id bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES eval_sessions (id),
    user_id uuid NOT NULL REFERENCES users (id),
    room_id uuid,
    label text NOT NULL,
    marked_at timestamptz NOT NULL,
    CONSTRAINT session_marks_label_check CHECK (length(label) BETWEEN 1 AND 200)
);
CREATE INDEX session_marks_session_idx ON session_marks (session_id, id);

-- Each closed recording segment of a session's room, with its entry in the transparency log.
CREATE TABLE session_segments (
    id bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES eval_sessions (id),
    room_id uuid NOT NULL,
    file_name text NOT NULL,
    timing_name text NOT NULL,
    sha256 text NOT NULL,
    bytes bigint NOT NULL,
    tracks text[] NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    log_index bigint NOT NULL,
    CONSTRAINT session_segments_file_key UNIQUE (session_id, file_name)
);

-- Faults and their recovery as they happened, for the record (the session row holds the state).
CREATE TABLE session_room_events (
    id bigserial PRIMARY KEY,
    session_id uuid NOT NULL,
    room_id uuid NOT NULL,
    kind text NOT NULL,
    at timestamptz NOT NULL,
    FOREIGN KEY (session_id, room_id) REFERENCES session_rooms (session_id, room_id),
    CONSTRAINT session_room_events_kind_check CHECK (kind IN ('ready', 'joined', 'dropped', 'rejoined', 'left_out',
                                                              'recording_stalled'))
);
CREATE INDEX session_room_events_session_idx ON session_room_events (session_id, id);
