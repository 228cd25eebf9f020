-- Why: the platform's people. Organisations (bidders, tenderers, agencies, the centre),
-- users with roles, server-side sessions, login attempts for rate limiting, and the public
-- keys that bidder organisations and custodians generated on their own machines.

CREATE TABLE organisations (
    id uuid PRIMARY KEY,
    credit_code text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organisations_credit_code_key UNIQUE (credit_code),
    CONSTRAINT organisations_kind_check CHECK (kind IN ('bidder', 'tenderer', 'agency', 'centre', 'authority')),
    CONSTRAINT organisations_name_check CHECK (length(name) BETWEEN 1 AND 200)
);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    username text NOT NULL,
    display_name text NOT NULL,
    password_hash text NOT NULL,
    roles text[] NOT NULL,
    organisation_id uuid REFERENCES organisations (id),
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_username_check CHECK (username ~ '^[a-z0-9][a-z0-9._-]{2,63}$'),
    CONSTRAINT users_roles_check CHECK (
        cardinality(roles) >= 1
        AND roles <@ ARRAY['admin', 'agent', 'bidder', 'expert', 'supervisor', 'custodian']::text[]
    ),
    -- A bidder acts for exactly one bidder organisation.
    CONSTRAINT users_bidder_organisation_check CHECK (NOT ('bidder' = ANY (roles)) OR organisation_id IS NOT NULL),
    -- Experts and supervisors judge bidders; they may not also act for one.
    CONSTRAINT users_role_conflict_check CHECK (
        NOT ('bidder' = ANY (roles) AND (roles && ARRAY['expert', 'supervisor', 'agent', 'admin', 'custodian']::text[]))
    )
);

CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ip text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE login_attempts (
    id bigserial PRIMARY KEY,
    username text NOT NULL,
    ip text NOT NULL,
    succeeded boolean NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_username_idx ON login_attempts (username, at);
CREATE INDEX login_attempts_ip_idx ON login_attempts (ip, at);

-- A key set is one ECDSA P-256 signing key plus one ECDH P-256 decryption key, owned by a
-- bidder organisation or by a custodian user. Only SubjectPublicKeyInfo DER is stored.
CREATE TABLE key_sets (
    id uuid PRIMARY KEY,
    organisation_id uuid REFERENCES organisations (id),
    custodian_id uuid REFERENCES users (id),
    registered_by uuid NOT NULL REFERENCES users (id),
    sign_spki bytea NOT NULL,
    sign_key_id text NOT NULL,
    decrypt_spki bytea NOT NULL,
    decrypt_key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT key_sets_owner_check CHECK ((organisation_id IS NULL) <> (custodian_id IS NULL)),
    CONSTRAINT key_sets_sign_key_id_key UNIQUE (sign_key_id),
    CONSTRAINT key_sets_decrypt_key_id_key UNIQUE (decrypt_key_id)
);
-- One active key set per owner; rotating revokes the old one first.
CREATE UNIQUE INDEX key_sets_active_organisation_key ON key_sets (organisation_id) WHERE revoked_at IS NULL AND organisation_id IS NOT NULL;
CREATE UNIQUE INDEX key_sets_active_custodian_key ON key_sets (custodian_id) WHERE revoked_at IS NULL AND custodian_id IS NOT NULL;

-- Acts that matter but belong to no public record (logins, account changes): who, what, when.
CREATE TABLE audit_events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_id uuid REFERENCES users (id),
    action text NOT NULL,
    subject text,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip text
);
CREATE INDEX audit_events_at_idx ON audit_events (at);
