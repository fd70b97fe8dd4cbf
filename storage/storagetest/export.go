package storagetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// TestExportImport: an export imports into an empty file with every record
// (signing keys excepted); importing it again adds nothing; a differing
// record refuses the whole import.
func testExportImport(t *testing.T, open Opener) {
	ctx := context.Background()
	srcFile := open(t)
	src := srcFile.ForIssuer(testIssuer)
	if err := src.PutClient(ctx, &storage.Client{ID: "c1", Name: "App", SecretHash: storage.Hash("secret-of-c1")}); err != nil {
		t.Fatal(err)
	}
	GrantFamily(t, src, "fam", "alice", "c1", "https://r/mcp")
	if err := src.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Resource: "https://r/mcp", Scope: "mcp:read", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.EnsureSigningKey(ctx, func() (*storage.SigningKey, error) {
		return &storage.SigningKey{ID: "k1", Algorithm: "ES256", PKCS8: []byte("PRIVATE-KEY-BYTES"), CreatedAt: t0}, nil
	}); err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	n, err := srcFile.Export(ctx, &export)
	if err != nil || n == 0 {
		t.Fatalf("export: %d %v", n, err)
	}
	for _, secret := range []string{"secret-of-c1", "fam-rt", "PRIVATE-KEY-BYTES", base64.StdEncoding.EncodeToString([]byte("PRIVATE-KEY-BYTES"))} {
		if strings.Contains(export.String(), secret) {
			t.Errorf("the export holds %q", secret)
		}
	}

	dstFile := open(t)
	dst := dstFile.ForIssuer(testIssuer)
	added, err := dstFile.Import(ctx, bytes.NewReader(export.Bytes()))
	if err != nil || added != n {
		t.Fatalf("import: %d of %d, %v", added, n, err)
	}
	if c, err := dst.GetClient(ctx, "c1", time.Now()); err != nil || !bytes.Equal(c.SecretHash, storage.Hash("secret-of-c1")) {
		t.Fatalf("imported client: %+v %v", c, err)
	}
	if gs, _ := dst.Grants(ctx, storage.GrantFilter{Subject: "alice"}, t0); len(gs) != 1 || len(gs[0].Families) != 1 {
		t.Fatalf("imported grants: %+v", gs)
	}
	if keys, _ := dst.SigningKeys(ctx); len(keys) != 0 {
		t.Fatal("signing keys were imported")
	}
	if again, err := dstFile.Import(ctx, bytes.NewReader(export.Bytes())); err != nil || again != 0 {
		t.Fatalf("importing twice: %d %v", again, err)
	}
	if _, _, err := dst.RotateRefreshToken(ctx, storage.Rotation{Presented: "fam-rt", ClientID: "c1", NextToken: "fam-rt2", Now: t0.Add(time.Minute),
		Next: storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)}}); err != nil {
		t.Fatalf("the imported refresh token: %v", err)
	}
	// A record that differs: nothing is imported.
	if err := dst.PutClient(ctx, &storage.Client{ID: "c1", Name: "Changed"}); err != nil {
		t.Fatal(err)
	}
	otherFile := open(t)
	other := otherFile.ForIssuer(testIssuer)
	other.PutClient(ctx, &storage.Client{ID: "c1", Name: "Other"})
	if _, err := otherFile.Import(ctx, bytes.NewReader(export.Bytes())); !errors.Is(err, storage.ErrImportConflict) {
		t.Fatalf("import over a different record: %v", err)
	}
	if gs, _ := other.Grants(ctx, storage.GrantFilter{}, t0); len(gs) != 0 {
		t.Fatal("a refused import wrote records")
	}
	for name, bad := range map[string]string{"not JSON": "{", "unknown type": `{"type":"nope","record":{}}`, "keys": `{"type":"signing_key","record":{}}`,
		"code without hash": `{"type":"authorization_code","record":{}}`} {
		if _, err := otherFile.Import(ctx, strings.NewReader(bad)); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
}
