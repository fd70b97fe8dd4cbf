package storage

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"time"
)

// An export is JSON lines of ExportRecord, the same for every backend, so
// that it moves the state of a bbolt file into PostgreSQL and back. Each
// line is a record in OAuth terms; records kept under a hash carry it.
// Secrets stay as they are stored (hashed); signing keys are left out.
type ExportRecord struct {
	Type string `json:"type"`
	// Hash is the key of a code, refresh token, session, pending consent
	// or upstream sign-in.
	Hash   []byte          `json:"hash,omitempty"`
	Record json.RawMessage `json:"record"`
}

// Types of exported records, in the order an export writes them (a
// refresh token after its family).
const (
	ExportClient             = "client"
	ExportFamily             = "refresh_family"
	ExportRefreshToken       = "refresh_token"
	ExportCode               = "authorization_code"
	ExportConsent            = "consent"
	ExportSession            = "session"
	ExportPending            = "pending_authorization"
	ExportUpstreamSignIn     = "upstream_sign_in"
	ExportRevokedAccessToken = "revoked_access_token"
	ExportTokenRevocation    = "token_revocation"
)

// ExportTypes are the record types, in export order.
var ExportTypes = []string{ExportClient, ExportFamily, ExportRefreshToken, ExportCode, ExportConsent, ExportSession,
	ExportPending, ExportUpstreamSignIn, ExportRevokedAccessToken, ExportTokenRevocation}

// RevokedAccessToken is a denied access token, until it expires.
type RevokedAccessToken struct {
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Kinds of TokenRevocation.
const (
	RevokedClient  = "client"
	RevokedSubject = "sub"
	RevokedGrant   = "grant"
)

// TokenRevocation denies every access token of a client, a user or a
// grant (Kind) issued until RevokedAt; it is kept until they expired.
type TokenRevocation struct {
	Issuer    string    `json:"iss"`
	Kind      string    `json:"kind"`
	Subject   string    `json:"sub,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	Resource  string    `json:"resource,omitempty"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ExportWriter writes export records.
type ExportWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
	N   int
}

// NewExportWriter writes to w; call Flush at the end.
func NewExportWriter(w io.Writer) *ExportWriter {
	bw := bufio.NewWriter(w)
	return &ExportWriter{w: bw, enc: json.NewEncoder(bw)}
}

// Write writes one record: v is marshalled unless it is raw JSON already.
func (e *ExportWriter) Write(typ string, hash []byte, v any) error {
	raw, ok := v.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return err
		}
	}
	e.N++
	return e.enc.Encode(ExportRecord{Type: typ, Hash: hash, Record: raw})
}

// Flush writes what is buffered.
func (e *ExportWriter) Flush() error { return e.w.Flush() }

// maxImportLine bounds one line of an import.
const maxImportLine = 1 << 20

// ReadExport reads and checks every record of an export.
func ReadExport(r io.Reader) ([]ExportRecord, error) {
	var out []ExportRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxImportLine)
	known := map[string]bool{}
	for _, t := range ExportTypes {
		known[t] = true
	}
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec ExportRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || len(rec.Record) == 0 {
			return nil, fmt.Errorf("line %d: not an export record", line)
		}
		if !known[rec.Type] {
			return nil, fmt.Errorf("line %d: %q is not a record type of an export", line, rec.Type)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the import: %w", err)
	}
	return out, nil
}

// SameClient reports whether two JSON client records are the same client:
// SameRecord, apart from how the client came to be (an import labels its
// clients imported, and importing an export into the file it came from
// adds nothing).
func SameClient(a, b []byte) bool {
	var x, y map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	for _, m := range []map[string]any{x, y} {
		delete(m, "origin")
		delete(m, "registered_with_token")
	}
	return reflect.DeepEqual(x, y)
}

// SameRecord reports whether two JSON records say the same thing (key
// order and spacing aside: backends store JSON differently).
func SameRecord(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// Issuers lists the issuers whose records a backend holds, read from its
// export (a tool's question, not a server's: it reads every record).
func Issuers(ctx context.Context, b Backend) ([]string, error) {
	r, w := io.Pipe()
	go func() {
		_, err := b.Export(ctx, w)
		w.CloseWithError(err)
	}()
	defer r.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxImportLine)
	for sc.Scan() {
		var rec struct {
			Record struct {
				Issuer string `json:"iss"`
			} `json:"record"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Record.Issuer != "" {
			seen[rec.Record.Issuer] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the records: %w", err)
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
