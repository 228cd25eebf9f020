-- Why: the expert pool (评标专家库), the intermediary pool (中介超市) and verifiable draws
-- over them, with their notifications, confirmations and the pairing history behind the
-- repeat-pairing cap and the familiar-faces metric. Personal data the draw does not need in
-- clear (ID numbers, who was drawn) is sealed with the platform's data key.

-- The hierarchical specialty code tree: "A" > "A01" > "A0102" > "A010203" (two digits a level).
-- Service categories of intermediaries use the same tree under their own letters. Codes are
-- in the C collation so that "everything under A01" is the plain index range ['A01', 'A01~').
CREATE TABLE specialties (
    code text COLLATE "C" PRIMARY KEY,
    name text NOT NULL,
    parent text REFERENCES specialties (code),
    CONSTRAINT specialties_code_check CHECK (code ~ '^[A-Z]([0-9]{2}){0,4}$'),
    CONSTRAINT specialties_name_check CHECK (length(name) BETWEEN 1 AND 100),
    CONSTRAINT specialties_parent_check CHECK (
        (length(code) = 1 AND parent IS NULL) OR (length(code) > 1 AND parent = left(code, length(code) - 2)))
);

CREATE TABLE experts (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    id_number_sealed bytea NOT NULL,     -- DataKey.seal("expert-id-number", expert id, number)
    id_number_index bytea NOT NULL,      -- DataKey.blind_index("expert-id-number", number)
    id_number_masked text NOT NULL,      -- 110105********123X
    phone text NOT NULL,
    email text,
    employer_name text NOT NULL,
    employer_code text NOT NULL,         -- unified social credit code of the employer
    region text NOT NULL,                -- six-digit administrative division code
    title text NOT NULL,
    status text NOT NULL DEFAULT 'active',
    credit_score integer NOT NULL DEFAULT 100,
    user_id uuid REFERENCES users (id),  -- the expert's login, for in-app prompts
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT experts_id_number_key UNIQUE (id_number_index),
    CONSTRAINT experts_user_key UNIQUE (user_id),
    CONSTRAINT experts_name_check CHECK (length(name) BETWEEN 1 AND 50),
    CONSTRAINT experts_phone_check CHECK (phone ~ '^1[3-9][0-9]{9}$'),
    CONSTRAINT experts_email_check CHECK (email IS NULL OR email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
    CONSTRAINT experts_region_check CHECK (region ~ '^[1-9][0-9]{5}$'),
    CONSTRAINT experts_status_check CHECK (status IN ('active', 'suspended', 'retired')),
    CONSTRAINT experts_title_check CHECK (length(title) BETWEEN 1 AND 50),
    CONSTRAINT experts_employer_check CHECK (length(employer_name) BETWEEN 1 AND 200 AND employer_code ~ '^[0-9A-HJ-NPQRTUWXY]{18}$')
);
-- What the draw's candidate query reads of each expert, so it can answer from the index alone.
CREATE INDEX experts_draw_idx ON experts (id) INCLUDE (status, credit_score, region, employer_code, employer_name);
CREATE INDEX experts_region_idx ON experts (region);
CREATE INDEX experts_employer_code_idx ON experts (employer_code);
CREATE INDEX experts_name_idx ON experts (name);

CREATE TABLE expert_specialties (
    expert_id uuid NOT NULL REFERENCES experts (id) ON DELETE CASCADE,
    specialty text COLLATE "C" NOT NULL REFERENCES specialties (code),
    PRIMARY KEY (expert_id, specialty)
);
-- The draw asks for everyone under a code: a range scan.
CREATE INDEX expert_specialties_specialty_idx ON expert_specialties (specialty, expert_id);

-- The leave calendar: days the expert cannot serve.
CREATE TABLE expert_leave (
    expert_id uuid NOT NULL REFERENCES experts (id) ON DELETE CASCADE,
    day date NOT NULL,
    PRIMARY KEY (expert_id, day)
);
CREATE INDEX expert_leave_day_idx ON expert_leave (day);

-- Declared relations (回避关系): organisations (by credit code) or platform users (agents,
-- bidders' representatives) the expert must never evaluate for.
CREATE TABLE expert_avoidances (
    id uuid PRIMARY KEY,
    expert_id uuid NOT NULL REFERENCES experts (id) ON DELETE CASCADE,
    organisation_code text,
    user_id uuid REFERENCES users (id),
    note text NOT NULL DEFAULT '',
    declared_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT expert_avoidances_target_check CHECK ((organisation_code IS NULL) <> (user_id IS NULL)),
    CONSTRAINT expert_avoidances_code_check CHECK (organisation_code IS NULL OR organisation_code ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),
    CONSTRAINT expert_avoidances_note_check CHECK (length(note) <= 500)
);
CREATE INDEX expert_avoidances_expert_idx ON expert_avoidances (expert_id);
CREATE INDEX expert_avoidances_code_idx ON expert_avoidances (organisation_code) WHERE organisation_code IS NOT NULL;
CREATE INDEX expert_avoidances_user_idx ON expert_avoidances (user_id) WHERE user_id IS NOT NULL;

-- The intermediary pool of the 中介超市: agencies with service categories.
CREATE TABLE intermediaries (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    credit_code text NOT NULL,
    region text NOT NULL,
    contact_name text NOT NULL,
    phone text NOT NULL,
    email text,
    status text NOT NULL DEFAULT 'active',
    credit_score integer NOT NULL DEFAULT 100,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT intermediaries_credit_code_key UNIQUE (credit_code),
    CONSTRAINT intermediaries_name_check CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT intermediaries_code_check CHECK (credit_code ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),
    CONSTRAINT intermediaries_region_check CHECK (region ~ '^[1-9][0-9]{5}$'),
    CONSTRAINT intermediaries_phone_check CHECK (phone ~ '^1[3-9][0-9]{9}$'),
    CONSTRAINT intermediaries_status_check CHECK (status IN ('active', 'suspended', 'retired'))
);

CREATE TABLE intermediary_categories (
    intermediary_id uuid NOT NULL REFERENCES intermediaries (id) ON DELETE CASCADE,
    category text COLLATE "C" NOT NULL REFERENCES specialties (code),
    PRIMARY KEY (intermediary_id, category)
);
CREATE INDEX intermediary_categories_category_idx ON intermediary_categories (category, intermediary_id);

-- Credit (信用) changes of experts and intermediaries: deductions (扣分) and commendations,
-- with reason and evidence; the score after the change is kept so the history reads alone.
CREATE TABLE credit_events (
    id bigserial PRIMARY KEY,
    expert_id uuid REFERENCES experts (id),
    intermediary_id uuid REFERENCES intermediaries (id),
    delta integer NOT NULL,
    score_after integer NOT NULL,
    reason text NOT NULL,
    evidence text NOT NULL DEFAULT '',
    recorded_by uuid NOT NULL REFERENCES users (id),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    log_index bigint,
    CONSTRAINT credit_events_subject_check CHECK ((expert_id IS NULL) <> (intermediary_id IS NULL)),
    CONSTRAINT credit_events_delta_check CHECK (delta <> 0 AND delta BETWEEN -100 AND 100),
    CONSTRAINT credit_events_reason_check CHECK (length(reason) BETWEEN 1 AND 500),
    CONSTRAINT credit_events_evidence_check CHECK (length(evidence) <= 2000)
);
CREATE INDEX credit_events_expert_idx ON credit_events (expert_id, recorded_at) WHERE expert_id IS NOT NULL;
CREATE INDEX credit_events_intermediary_idx ON credit_events (intermediary_id, recorded_at) WHERE intermediary_id IS NOT NULL;

-- A draw: scheduled with a commitment, run when the secret is revealed. `subject` says what it
-- is for: {"tender_id"} (evaluation), {"purchaser_name", "purchaser_code", "project"}
-- (intermediary), {"tender_ids": [...]} (inspection of awarded projects).
CREATE TABLE draws (
    id uuid PRIMARY KEY,
    purpose text NOT NULL,
    tender_id uuid REFERENCES tenders (id),
    subject jsonb NOT NULL,
    title text NOT NULL,
    spec jsonb NOT NULL,
    needed_at timestamptz NOT NULL,          -- evaluation (or inspection, service) date and time
    draw_after timestamptz NOT NULL,         -- the secret may be revealed from then on
    commitment text NOT NULL,
    requested_by uuid NOT NULL REFERENCES users (id),
    parent_id uuid REFERENCES draws (id),    -- an extension draws again for the seats left empty
    status text NOT NULL DEFAULT 'scheduled',
    reply_minutes integer NOT NULL,
    avoidance jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the rules applied (counts per rule), filled at draw time
    -- The published tenderhall-draw/1 record (pseudonyms, never names) as JSON text: thousands
    -- of candidates that are served and re-verified whole, never queried inside.
    record text,
    scheduled_log_index bigint NOT NULL,
    drawn_log_index bigint,
    drawn_at timestamptz,
    unsealed_at timestamptz,
    unsealed_by uuid REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT draws_purpose_check CHECK (purpose IN ('evaluation', 'intermediary', 'inspection')),
    CONSTRAINT draws_status_check CHECK (status IN ('scheduled', 'drawn', 'cancelled')),
    CONSTRAINT draws_commitment_check CHECK (commitment ~ '^[0-9a-f]{64}$'),
    CONSTRAINT draws_title_check CHECK (length(title) BETWEEN 1 AND 200),
    CONSTRAINT draws_reply_minutes_check CHECK (reply_minutes BETWEEN 1 AND 1440),
    CONSTRAINT draws_evaluation_tender_check CHECK (purpose <> 'evaluation' OR tender_id IS NOT NULL),
    CONSTRAINT draws_drawn_check CHECK ((status = 'drawn') = (record IS NOT NULL)),
    CONSTRAINT draws_times_check CHECK (draw_after < needed_at)
);
-- Records are written once per draw on its critical path and read rarely: out of line, uncompressed.
ALTER TABLE draws ALTER COLUMN record SET STORAGE EXTERNAL;
CREATE INDEX draws_tender_idx ON draws (tender_id) WHERE tender_id IS NOT NULL;
CREATE INDEX draws_created_idx ON draws (created_at);

-- Everyone a draw picked, members then backups in draw order per group. Who it is stays
-- sealed (`person_sealed`: the expert or intermediary id under the data key, bound to the
-- draw and position) until the names are unsealed; the pseudonym is what the public record shows.
CREATE TABLE draw_seats (
    draw_id uuid NOT NULL REFERENCES draws (id),
    position integer NOT NULL,
    group_index integer NOT NULL,
    specialty text NOT NULL,
    backup_rank integer,                     -- NULL: drawn as a member; 1, 2, ...: the ordered backups
    pseudonym text NOT NULL,
    person_sealed bytea NOT NULL,
    status text NOT NULL,
    notified_at timestamptz,
    reply_by timestamptz,
    replied_at timestamptz,
    decline_reason text,
    token_hash bytea,                        -- SHA-256 of the one-time confirmation link's token
    PRIMARY KEY (draw_id, position),
    CONSTRAINT draw_seats_status_check CHECK (status IN ('standby', 'notified', 'confirmed', 'declined', 'expired', 'unused')),
    CONSTRAINT draw_seats_token_key UNIQUE (token_hash),
    CONSTRAINT draw_seats_reason_check CHECK (decline_reason IS NULL OR length(decline_reason) <= 500)
);
CREATE INDEX draw_seats_waiting_idx ON draw_seats (reply_by) WHERE status = 'notified';

-- Messages to drawn people, sent after commit by the notifier (log, SMTP or webhook). The
-- message holds a one-time link, so it is sealed until sent and erased once sent.
CREATE TABLE draw_notifications (
    id bigserial PRIMARY KEY,
    draw_id uuid NOT NULL REFERENCES draws (id),
    position integer NOT NULL,
    message_sealed bytea,
    channel text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    CONSTRAINT draw_notifications_status_check CHECK (status IN ('pending', 'sent', 'failed')),
    CONSTRAINT draw_notifications_sealed_check CHECK ((status = 'pending') = (message_sealed IS NOT NULL)),
    FOREIGN KEY (draw_id, position) REFERENCES draw_seats (draw_id, position)
);
CREATE INDEX draw_notifications_pending_idx ON draw_notifications (id) WHERE status = 'pending';

-- Who saw the drawn names, when (also in the transparency log).
CREATE TABLE draw_name_access (
    id bigserial PRIMARY KEY,
    draw_id uuid NOT NULL REFERENCES draws (id),
    user_id uuid NOT NULL REFERENCES users (id),
    at timestamptz NOT NULL DEFAULT now(),
    ip text
);
CREATE INDEX draw_name_access_draw_idx ON draw_name_access (draw_id, at);

-- Who served with whom: written when a drawn committee's names are unsealed (its sign-in),
-- never earlier, so the history gives nothing away before the evaluation. Counterparts are
-- keyed as text: 'tenderer:<name>', 'agent:<organisation or user id>', 'expert:<id>'.
CREATE TABLE pairings (
    id bigserial PRIMARY KEY,
    draw_id uuid NOT NULL REFERENCES draws (id),
    expert_id uuid NOT NULL REFERENCES experts (id),
    counterpart text NOT NULL,
    met_at timestamptz NOT NULL,
    CONSTRAINT pairings_counterpart_check CHECK (counterpart ~ '^(tenderer|agent|expert):.+'),
    CONSTRAINT pairings_unique_key UNIQUE (draw_id, expert_id, counterpart)
);
CREATE INDEX pairings_expert_idx ON pairings (expert_id, counterpart, met_at);
CREATE INDEX pairings_met_idx ON pairings (met_at);

-- Services of intermediaries per purchaser, for their repeat cap; written when a drawn
-- intermediary confirms.
CREATE TABLE intermediary_services (
    id bigserial PRIMARY KEY,
    draw_id uuid NOT NULL REFERENCES draws (id),
    intermediary_id uuid NOT NULL REFERENCES intermediaries (id),
    purchaser text NOT NULL,
    served_at timestamptz NOT NULL,
    CONSTRAINT intermediary_services_unique_key UNIQUE (draw_id, intermediary_id)
);
CREATE INDEX intermediary_services_idx ON intermediary_services (intermediary_id, purchaser, served_at);
