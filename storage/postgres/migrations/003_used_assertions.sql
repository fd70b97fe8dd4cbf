-- The assertions used (a client's private_key_jwt assertion, an identity
-- provider's grant), under storage.AssertionKey, until they expire: each
-- is accepted once across every node.
CREATE TABLE used_assertions (
	hash       bytea PRIMARY KEY,
	issuer     text NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX used_assertions_expires_at ON used_assertions (expires_at);
