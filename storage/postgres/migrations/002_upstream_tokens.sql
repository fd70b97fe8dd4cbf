-- The sealed tokens an upstream identity provider issued for a grant
-- (pass_upstream_token); client_id '' is a sign-in's, waiting for its grant.
CREATE TABLE upstream_tokens (
	issuer     text NOT NULL,
	subject    text NOT NULL,
	client_id  text NOT NULL,
	resource   text NOT NULL,
	doc        jsonb NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (issuer, subject, client_id, resource)
);
CREATE INDEX upstream_tokens_expires_at ON upstream_tokens (expires_at);
