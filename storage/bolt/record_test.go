package bolt

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

var recordFamily = storage.RefreshFamily{
	Issuer:     "https://auth.example.com",
	ID:         "0fa3k2b7cQx9Lm2Pz8wVb4n",
	ClientID:   "c1",
	Subject:    "corp:ålice",
	Profile:    storage.Profile{Provider: "corp", Email: "alice@example.com", Name: "Ålice", PreferredUsername: "alice"},
	Scope:      "mcp:read mcp:write",
	Resource:   "https://mcp.example.com/mcp",
	AuthTime:   time.Date(2026, 12, 1, 12, 0, 0, 1, time.UTC),
	CreatedAt:  time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC),
	ExpiresAt:  time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	LastUsedAt: time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC),
}

// TestRecordsRoundTrip: every field of the compact records comes back,
// zero and far times included; a family's id is its key, not in the
// record; and a token's scope and resource are left to its family only
// when they are the family's.
func TestRecordsRoundTrip(t *testing.T) {
	var f storage.RefreshFamily
	raw := appendFamily(nil, &recordFamily)
	if err := decodeFamily([]byte(recordFamily.ID), raw, &f); err != nil || !reflect.DeepEqual(f, recordFamily) {
		t.Fatalf("family: %+v %v\nwant %+v", f, err, recordFamily)
	}
	if bytes.Contains(raw, []byte(recordFamily.ID)) {
		t.Error("the family record holds its id, which is its key")
	}
	// A family written by schema 3 held its id (format 1), which is read
	// from the record.
	schema3 := append([]byte{recordFormat}, appendString(appendString(nil, recordFamily.Issuer), recordFamily.ID)...)
	schema3 = append(schema3, raw[1+len(appendString(nil, recordFamily.Issuer)):]...)
	if err := decodeFamily([]byte("key"), schema3, &f); err != nil || !reflect.DeepEqual(f, recordFamily) {
		t.Fatalf("schema 3 family: %+v %v\nwant %+v", f, err, recordFamily)
	}
	for _, tok := range []storage.RefreshToken{
		{FamilyID: "f1", Scope: recordFamily.Scope, Resource: recordFamily.Resource, IssuedAt: recordFamily.AuthTime, ExpiresAt: recordFamily.ExpiresAt},
		{FamilyID: "f1", Scope: "mcp:read", Resource: recordFamily.Resource, RotatedAt: recordFamily.AuthTime,
			Successors: [][]byte{storage.Hash("a"), storage.Hash("b")}},
		{FamilyID: "f1", Scope: "", Resource: "https://other.example.com"},
	} {
		raw := appendRefreshToken(nil, &tok, &recordFamily)
		var got storage.RefreshToken
		in, err := decodeRefreshToken(raw, &got)
		if err != nil {
			t.Fatal(err)
		}
		in.from(&got, &recordFamily)
		if !reflect.DeepEqual(got, tok) {
			t.Errorf("token: %+v\nwant %+v", got, tok)
		}
	}
	shared := appendRefreshToken(nil, &storage.RefreshToken{FamilyID: "f1", Scope: recordFamily.Scope, Resource: recordFamily.Resource}, &recordFamily)
	if want := 1 + 1 + 3 + 3 + 1; len(shared) != want {
		t.Errorf("a token sharing its family's scope and resource takes %d bytes, want %d", len(shared), want)
	}
}

// TestMalformedRecords: truncated, padded or unknown records are
// refused, never guessed at.
func TestMalformedRecords(t *testing.T) {
	fam := appendFamily(nil, &recordFamily)
	tok := appendRefreshToken(nil, &storage.RefreshToken{FamilyID: "f1", Successors: [][]byte{storage.Hash("a")}}, &recordFamily)
	nsec := binaryUvarint(1e9)
	for name, raw := range map[string][]byte{
		"empty": {}, "format 2, nothing after": {familyFormat}, "format 3": {3}, "truncated": fam[:len(fam)-1], "padded": append(fam[:len(fam):len(fam)], 0),
		"nanoseconds out of range": append([]byte{recordFormat, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, nsec...),
	} {
		var f storage.RefreshFamily
		if err := decodeFamily([]byte("f1"), raw, &f); err == nil {
			t.Errorf("family %s: decoded", name)
		}
	}
	for name, raw := range map[string][]byte{
		"empty": {}, "a family's format": {familyFormat, 0, 0, 0, 0, 0, 0}, "truncated": tok[:len(tok)-1], "padded": append(tok[:len(tok):len(tok)], 0),
		"unknown flag": {recordFormat, 4, 0, 0, 0, 0, 0}, "huge successor count": {recordFormat, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"nanoseconds out of range": append([]byte{recordFormat, 0, 0, 1}, append(nsec, 0, 0, 0)...),
	} {
		var rt storage.RefreshToken
		if _, err := decodeRefreshToken(raw, &rt); err == nil {
			t.Errorf("token %s: decoded", name)
		}
	}
	// What the cases above are cut from decodes whole.
	var f storage.RefreshFamily
	var rt storage.RefreshToken
	_, terr := decodeRefreshToken(append([]byte{recordFormat, 0, 0, 1}, append(binaryUvarint(999999999), 0, 0, 0)...), &rt)
	if err := decodeFamily([]byte("f1"), fam, &f); err != nil || terr != nil {
		t.Fatalf("valid records: %v %v", err, terr)
	}
}

func binaryUvarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

// TestRecordExtensions: a record written by a later build with an
// optional extension (even tag) decodes as before; one with a required
// extension this build does not know (odd tag), or a truncated one, is
// refused.
func TestRecordExtensions(t *testing.T) {
	fam := appendFamily(nil, &recordFamily)
	tok := storage.RefreshToken{FamilyID: "f1", Scope: "mcp:read", Resource: recordFamily.Resource, Successors: [][]byte{storage.Hash("a")}}
	rawTok := appendRefreshToken(nil, &tok, &recordFamily)
	ext := func(raw []byte, tag uint64, value string) []byte {
		return appendString(binary.AppendUvarint(raw[:len(raw):len(raw)], tag), value)
	}
	for _, tc := range []struct {
		name   string
		suffix func([]byte) []byte
		ok     bool
	}{
		{"optional", func(b []byte) []byte { return ext(b, 2, "a hint") }, true},
		{"two optional", func(b []byte) []byte { return ext(ext(b, 2, "x"), 1000, "") }, true},
		{"required", func(b []byte) []byte { return ext(b, 5, "a binding") }, false},
		{"optional, then required", func(b []byte) []byte { return ext(ext(b, 2, "x"), 3, "y") }, false},
		{"truncated", func(b []byte) []byte { return ext(b, 2, "value")[:len(b)+3] }, false},
	} {
		var f storage.RefreshFamily
		err := decodeFamily([]byte(recordFamily.ID), tc.suffix(fam), &f)
		if (err == nil) != tc.ok || tc.ok && !reflect.DeepEqual(f, recordFamily) {
			t.Errorf("family, %s: %v", tc.name, err)
		}
		var got storage.RefreshToken
		in, err := decodeRefreshToken(tc.suffix(rawTok), &got)
		if err == nil {
			in.from(&got, &recordFamily)
		}
		if (err == nil) != tc.ok || tc.ok && !reflect.DeepEqual(got, tok) {
			t.Errorf("token, %s: %v %+v", tc.name, err, got)
		}
	}
}

// TestFamilyKeyBinding: a family's DPoP binding is its required
// extension tagJKT: it round-trips, and a build reading a refresh token
// (which has no such field) refuses the tag.
func TestFamilyKeyBinding(t *testing.T) {
	bound := recordFamily
	bound.JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	var f storage.RefreshFamily
	if err := decodeFamily([]byte(bound.ID), appendFamily(nil, &bound), &f); err != nil || !reflect.DeepEqual(f, bound) {
		t.Fatalf("a bound family: %+v %v", f, err)
	}
	if err := decodeFamily([]byte(recordFamily.ID), appendFamily(nil, &recordFamily), &f); err != nil || f.JKT != "" {
		t.Fatalf("an unbound family: %+v %v", f, err)
	}
	tok := storage.RefreshToken{FamilyID: "f1", Scope: recordFamily.Scope, Resource: recordFamily.Resource}
	raw := appendString(binary.AppendUvarint(appendRefreshToken(nil, &tok, &recordFamily), tagJKT), bound.JKT)
	var got storage.RefreshToken
	if _, err := decodeRefreshToken(raw, &got); err == nil {
		t.Error("a refresh token with tag 1 was read")
	}
}

// FuzzDecodeRecord: no input makes the decoders panic, and what they
// accept encodes back to the same record.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendFamily(nil, &recordFamily))
	f.Add(appendRefreshToken(nil, &storage.RefreshToken{FamilyID: "f1", Scope: "x", Successors: [][]byte{storage.Hash("a")}}, &recordFamily))
	f.Add([]byte(`{"id":"f1","expires_at":"2026-12-01T12:00:00Z"}`))
	f.Add(appendString(binary.AppendUvarint(appendFamily(nil, &recordFamily), 2), "an optional extension"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fam, fam2 storage.RefreshFamily
		if decodeFamily([]byte("f1"), raw, &fam) == nil && !isJSON(raw) {
			if err := decodeFamily([]byte(fam.ID), appendFamily(nil, &fam), &fam2); err != nil || !reflect.DeepEqual(fam, fam2) {
				t.Fatalf("family %+v re-encoded: %+v %v", fam, fam2, err)
			}
		}
		var tok, tok2 storage.RefreshToken
		if in, err := decodeRefreshToken(raw, &tok); err == nil && !isJSON(raw) {
			var owner storage.RefreshFamily
			in.from(&tok, &owner)
			in2, err := decodeRefreshToken(appendRefreshToken(nil, &tok, &owner), &tok2)
			if err == nil {
				in2.from(&tok2, &owner)
			}
			if err != nil || !reflect.DeepEqual(tok, tok2) {
				t.Fatalf("token %+v re-encoded: %+v %v", tok, tok2, err)
			}
		}
	})
}
