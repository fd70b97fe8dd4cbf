-- The authorization servers' state, one schema per storage. Records are
-- the storage package's structs as jsonb; the columns beside them are
-- what queries select, lock and sweep on.

CREATE TABLE clients (
	issuer     text NOT NULL,
	id         text NOT NULL,
	doc        jsonb NOT NULL,
	expires_at timestamptz,
	PRIMARY KEY (issuer, id)
);

CREATE TABLE authorization_codes (
	hash       bytea PRIMARY KEY,
	issuer     text NOT NULL,
	doc        jsonb NOT NULL,
	used       boolean NOT NULL DEFAULT false,
	expires_at timestamptz NOT NULL
);

CREATE TABLE refresh_families (
	id         text PRIMARY KEY,
	issuer     text NOT NULL,
	subject    text NOT NULL,
	client_id  text NOT NULL,
	resource   text NOT NULL,
	doc        jsonb NOT NULL,
	revoked    boolean NOT NULL DEFAULT false,
	expires_at timestamptz NOT NULL
);
CREATE INDEX refresh_families_by_grant ON refresh_families (issuer, subject, client_id, resource);
CREATE INDEX refresh_families_by_client ON refresh_families (issuer, client_id);

CREATE TABLE refresh_tokens (
	hash       bytea PRIMARY KEY,
	family_id  text NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
	doc        jsonb NOT NULL,
	rotated    boolean NOT NULL DEFAULT false,
	expires_at timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

CREATE TABLE revoked_access_tokens (
	jti        text PRIMARY KEY,
	expires_at timestamptz NOT NULL
);

CREATE TABLE token_revocations (
	issuer     text NOT NULL,
	kind       text NOT NULL,
	subject    text NOT NULL DEFAULT '',
	client_id  text NOT NULL DEFAULT '',
	resource   text NOT NULL DEFAULT '',
	revoked_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (issuer, kind, subject, client_id, resource)
);

CREATE TABLE consents (
	issuer    text NOT NULL,
	subject   text NOT NULL,
	client_id text NOT NULL,
	resource  text NOT NULL,
	doc       jsonb NOT NULL,
	PRIMARY KEY (issuer, subject, client_id, resource)
);
CREATE INDEX consents_by_client ON consents (issuer, client_id);

CREATE TABLE pending_authorizations (
	hash       bytea PRIMARY KEY,
	issuer     text NOT NULL,
	doc        jsonb NOT NULL,
	expires_at timestamptz NOT NULL
);

CREATE TABLE sessions (
	hash       bytea PRIMARY KEY,
	issuer     text NOT NULL,
	doc        jsonb NOT NULL,
	expires_at timestamptz NOT NULL
);

CREATE TABLE upstream_sign_ins (
	hash       bytea PRIMARY KEY,
	issuer     text NOT NULL,
	doc        jsonb NOT NULL,
	expires_at timestamptz NOT NULL
);

-- doc's pkcs8 is sealed with storage_key when one is configured.
CREATE TABLE signing_keys (
	kid          text PRIMARY KEY,
	doc          jsonb NOT NULL,
	created_at   timestamptz NOT NULL,
	verify_until timestamptz
);


-- Rate-limited events (failed sign-ins, registrations) of every node, so
-- a throttle holds across the cluster; key is a hash naming the issuer,
-- the limit and the account or address.
CREATE TABLE rate_events (
	key        bytea NOT NULL,
	at         timestamptz NOT NULL DEFAULT clock_timestamp(),
	expires_at timestamptz NOT NULL
);
CREATE INDEX rate_events_key_at ON rate_events (key, at);
CREATE INDEX rate_events_expires_at ON rate_events (expires_at);
