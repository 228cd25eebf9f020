-- Why: the evaluation area as a closed floor (issue 6). Floor plans (GeoJSON in local metres),
-- the people who carry badges and positioning tags, the access rules and every door decision,
-- door events and positions, and the alerts the rules raise. Decisions are made from memory
-- (venue/engine.py); these tables are the record and what the memory is rebuilt from.

CREATE TABLE floors (
    id uuid PRIMARY KEY,
    venue_id uuid NOT NULL REFERENCES venues (id),
    code text NOT NULL,                      -- what positioning systems and door controllers call it
    level integer NOT NULL,
    name text NOT NULL,
    plan jsonb NOT NULL,                     -- the validated GeoJSON FeatureCollection (venue/floorplan.py)
    transform jsonb NOT NULL,                -- positioning system -> local metres (venue/floorplan.py)
    version integer NOT NULL DEFAULT 1,
    updated_by uuid NOT NULL REFERENCES users (id),
    updated_at timestamptz NOT NULL,
    CONSTRAINT floors_code_key UNIQUE (code),
    CONSTRAINT floors_level_key UNIQUE (venue_id, level),
    CONSTRAINT floors_code_check CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$')
);

-- The plan's units and doors, extracted when a plan is saved (the plan stays the source).
CREATE TABLE zones (
    floor_id uuid NOT NULL REFERENCES floors (id) ON DELETE CASCADE,
    zone_id text NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    capacity integer,
    room_id uuid REFERENCES venue_rooms (id),  -- an evaluation room zone is a bookable room
    closed_area boolean NOT NULL,              -- inside the evaluation area's closed perimeter
    PRIMARY KEY (floor_id, zone_id),
    CONSTRAINT zones_kind_check CHECK (kind IN ('entrance', 'opening_hall', 'waiting_area', 'evaluation_room',
        'isolation_corridor', 'phone_lockers', 'supervision_room', 'archive', 'corridor', 'office'))
);

CREATE TABLE doors (
    reader_id text PRIMARY KEY,
    floor_id uuid NOT NULL REFERENCES floors (id) ON DELETE CASCADE,
    door_id text NOT NULL,
    outside_zone text,                         -- NULL: the outside of the floor
    inside_zone text NOT NULL,                 -- the zone a grant lets one into
    capacity integer NOT NULL DEFAULT 1,       -- people one grant admits (tailgating above)
    CONSTRAINT doors_reader_check CHECK (reader_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$')
);

CREATE TABLE venue_people (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL,
    user_id uuid REFERENCES users (id),
    organisation_id uuid REFERENCES organisations (id),
    expert_id uuid REFERENCES experts (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT venue_people_role_check CHECK (role IN ('expert', 'bidder', 'agent', 'supervisor', 'staff', 'visitor')),
    CONSTRAINT venue_people_user_key UNIQUE (user_id)
);

-- A badge (card number) or an RTLS tag bound to a person for a period.
CREATE TABLE credentials (
    id bigserial PRIMARY KEY,
    person_id uuid NOT NULL REFERENCES venue_people (id),
    kind text NOT NULL,
    value text NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_until timestamptz,
    CONSTRAINT credentials_kind_check CHECK (kind IN ('badge', 'tag')),
    CONSTRAINT credentials_period_check CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX credentials_value_idx ON credentials (kind, value);

-- Who may be where when. A rule names a person or a role, and a zone or a zone kind.
CREATE TABLE access_rules (
    id bigserial PRIMARY KEY,
    person_id uuid REFERENCES venue_people (id),
    role text,
    floor_id uuid REFERENCES floors (id) ON DELETE CASCADE,
    zone_id text,
    zone_kind text,
    valid_from timestamptz NOT NULL,
    valid_until timestamptz,
    enter_within_seconds integer,              -- must enter within this long of valid_from
    no_reentry boolean NOT NULL DEFAULT false,
    source text NOT NULL DEFAULT 'manual',     -- manual | session (derived from the workflow)
    session_id uuid REFERENCES eval_sessions (id),
    created_by uuid REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT access_rules_who_check CHECK ((person_id IS NULL) <> (role IS NULL)),
    CONSTRAINT access_rules_where_check CHECK ((zone_id IS NULL) <> (zone_kind IS NULL)),
    CONSTRAINT access_rules_source_check CHECK (source IN ('manual', 'session'))
);
CREATE INDEX access_rules_person_idx ON access_rules (person_id) WHERE revoked_at IS NULL;

-- 代理码: a per-project code for an agent's staff member, valid on one day.
CREATE TABLE agent_codes (
    id uuid PRIMARY KEY,
    tender_id uuid NOT NULL REFERENCES tenders (id),
    person_id uuid NOT NULL REFERENCES venue_people (id),
    code_hash bytea NOT NULL,
    valid_on date NOT NULL,
    created_by uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    CONSTRAINT agent_codes_hash_key UNIQUE (code_hash)
);

CREATE TABLE agent_code_scans (
    id bigserial PRIMARY KEY,
    code_id uuid REFERENCES agent_codes (id),
    tender_id uuid REFERENCES tenders (id),
    scanned_by uuid NOT NULL REFERENCES users (id),
    at timestamptz NOT NULL,
    accepted boolean NOT NULL,
    reason text NOT NULL
);

-- Every door decision and door event; log_index is set when its batch reaches the log.
CREATE TABLE access_decisions (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    reader_id text NOT NULL,
    credential text NOT NULL,
    person_id uuid REFERENCES venue_people (id),
    granted boolean NOT NULL,
    reason text NOT NULL,
    log_index bigint
);
CREATE INDEX access_decisions_unlogged_idx ON access_decisions (id) WHERE log_index IS NULL;
CREATE INDEX access_decisions_person_idx ON access_decisions (person_id, at);

CREATE TABLE door_events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    reader_id text NOT NULL,
    kind text NOT NULL,
    log_index bigint,
    CONSTRAINT door_events_kind_check CHECK (kind IN ('opened', 'closed', 'forced', 'held_open'))
);
CREATE INDEX door_events_unlogged_idx ON door_events (id) WHERE log_index IS NULL;

-- Position batches already taken (a re-sent batch is answered from here, not counted twice).
CREATE TABLE position_batches (
    batch_id text PRIMARY KEY,
    received_at timestamptz NOT NULL,
    accepted integer NOT NULL,
    rejected integer NOT NULL
);

-- Positions, partitioned by day (venue/ingest.py creates partitions; retention drops old ones).
CREATE TABLE positions (
    tag_id text NOT NULL,
    t timestamptz NOT NULL,
    floor_code text NOT NULL,
    x double precision NOT NULL,
    y double precision NOT NULL,
    quality real
) PARTITION BY RANGE (t);
CREATE INDEX positions_tag_time_idx ON positions (tag_id, t);

CREATE TABLE venue_alerts (
    id bigserial PRIMARY KEY,
    rule text NOT NULL,
    severity text NOT NULL,
    at timestamptz NOT NULL,
    people uuid[] NOT NULL,
    floor_code text,
    zone_id text,
    message text NOT NULL,
    evidence jsonb NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by uuid REFERENCES users (id),
    note text,
    log_index bigint,
    CONSTRAINT venue_alerts_severity_check CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT venue_alerts_ack_check CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
CREATE INDEX venue_alerts_open_idx ON venue_alerts (at DESC) WHERE acknowledged_at IS NULL;

-- access control: a credential is revoked, not deleted (its decisions name it); grants are
-- replayed by time to rebuild the anti-passback and re-entry memory after a restart.
ALTER TABLE credentials ADD COLUMN revoked_at timestamptz;
CREATE INDEX access_decisions_granted_idx ON access_decisions (at) WHERE granted;

-- positions: a re-sent batch gets the same report as the first (its per-record errors too);
-- batches are forgotten after a while (venue/position_jobs.py), by the time they came.
ALTER TABLE position_batches ADD COLUMN errors jsonb NOT NULL DEFAULT '[]';
CREATE INDEX position_batches_received_idx ON position_batches (received_at);
