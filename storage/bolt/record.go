package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Refresh families and refresh tokens are the records a file holds most
// of (one token per rotation until it expires), and the ones every
// rotation reads and writes, so they are kept in a compact binary format
// rather than JSON: a format byte, then each field in a fixed order, a
// string as its length (uvarint) and bytes, a time as described at
// appendTime. A refresh token's scope and resource are usually its
// family's (they never change); the record then leaves them out and
// reading fills them in from the family. A family leaves out its id,
// which is its key. Schema 2 files held both as JSON; opening one
// re-encodes them (see compactRecords).
//
// After its fixed fields a record may carry extensions, so that a field
// added later needs no schema upgrade: each a tag (uvarint) and a value
// (a string). A reader skips an extension whose tag it does not know when
// the tag is even (optional: a hint it may ignore), and refuses the record
// when it is odd (required: a field whose loss would change a decision,
// such as a key binding), so that a build that does not know a binding
// never ignores it. A family's DPoP key binding (its JKT) is extension
// tagJKT.
const (
	// recordFormat is the first byte of a compact record: a refresh
	// token, or a refresh family written by schema 3, which held its id.
	// A JSON record starts with '{', so the formats are told apart.
	recordFormat = 1
	// familyFormat is the first byte of a refresh family from schema 4
	// on: the fields of recordFormat but the id.
	familyFormat = 2

	// tagJKT is the extension of a family's DPoP key thumbprint: odd, a
	// binding no build may ignore.
	tagJKT = 1

	// Flags of a refresh token record: which fields it holds itself.
	ownScope    = 1 << 0
	ownResource = 1 << 1
)

var errRecordFormat = errors.New("not a record of a known format")

// appendFamily encodes a refresh family, to be stored under its id.
func appendFamily(b []byte, f *storage.RefreshFamily) []byte {
	strs := [...]string{f.Issuer, f.ClientID, f.Subject, f.Profile.Provider, f.Profile.Email,
		f.Profile.Name, f.Profile.PreferredUsername, f.Scope, f.Resource}
	size := 1 + 5*maxTime
	for _, s := range strs {
		size += binary.MaxVarintLen64 + len(s)
	}
	b = append(slices.Grow(b, size), familyFormat)
	for _, s := range strs {
		b = appendString(b, s)
	}
	for _, t := range []time.Time{f.AuthTime, f.CreatedAt, f.ExpiresAt, f.RevokedAt, f.LastUsedAt} {
		b = appendTime(b, t)
	}
	if f.JKT != "" {
		b = appendString(binary.AppendUvarint(b, tagJKT), f.JKT)
	}
	return b
}

// decodeFamily decodes a refresh family stored under the key id:
// compact, without (schema 4) or with (schema 3) its id, or (schema 2)
// JSON.
func decodeFamily(id, raw []byte, f *storage.RefreshFamily) error {
	*f = storage.RefreshFamily{}
	if isJSON(raw) {
		return json.Unmarshal(raw, f)
	}
	d, err := newDecoder(raw)
	if err != nil {
		return err
	}
	f.Issuer = d.string()
	if d.format == familyFormat {
		f.ID = string(id)
	} else {
		f.ID = d.string()
	}
	for _, s := range []*string{&f.ClientID, &f.Subject, &f.Profile.Provider, &f.Profile.Email,
		&f.Profile.Name, &f.Profile.PreferredUsername, &f.Scope, &f.Resource} {
		*s = d.string()
	}
	for _, t := range []*time.Time{&f.AuthTime, &f.CreatedAt, &f.ExpiresAt, &f.RevokedAt, &f.LastUsedAt} {
		*t = d.time()
	}
	d.extensions(map[uint64]*string{tagJKT: &f.JKT})
	return d.done()
}

// appendRefreshToken encodes a refresh token of the family fam, leaving
// out the scope and resource it shares with fam.
func appendRefreshToken(b []byte, t *storage.RefreshToken, fam *storage.RefreshFamily) []byte {
	var flags byte
	if t.Scope != fam.Scope {
		flags |= ownScope
	}
	if t.Resource != fam.Resource {
		flags |= ownResource
	}
	size := 2 + 4*binary.MaxVarintLen64 + len(t.FamilyID) + len(t.Scope) + len(t.Resource) + 3*maxTime
	for _, s := range t.Successors {
		size += binary.MaxVarintLen64 + len(s)
	}
	b = append(slices.Grow(b, size), recordFormat, flags)
	b = appendString(b, t.FamilyID)
	if flags&ownScope != 0 {
		b = appendString(b, t.Scope)
	}
	if flags&ownResource != 0 {
		b = appendString(b, t.Resource)
	}
	for _, at := range []time.Time{t.IssuedAt, t.ExpiresAt, t.RotatedAt} {
		b = appendTime(b, at)
	}
	b = binary.AppendUvarint(b, uint64(len(t.Successors)))
	for _, s := range t.Successors {
		b = appendString(b, string(s))
	}
	return b
}

// inherited says which fields a refresh token record leaves to its
// family.
type inherited byte

// from fills in the fields t inherits from its family.
func (in inherited) from(t *storage.RefreshToken, fam *storage.RefreshFamily) {
	if in&ownScope != 0 {
		t.Scope = fam.Scope
	}
	if in&ownResource != 0 {
		t.Resource = fam.Resource
	}
}

// decodeRefreshToken decodes a refresh token, compact or (schema 2)
// JSON. The scope and resource a compact record leaves to its family
// are empty until the answer's from fills them in.
func decodeRefreshToken(raw []byte, t *storage.RefreshToken) (inherited, error) {
	*t = storage.RefreshToken{}
	if isJSON(raw) {
		return 0, json.Unmarshal(raw, t)
	}
	d, err := newDecoder(raw)
	if err != nil || d.format != recordFormat {
		return 0, errRecordFormat
	}
	flags := d.byte()
	if flags&^(ownScope|ownResource) != 0 {
		d.err = errRecordFormat
	}
	t.FamilyID = d.string()
	if flags&ownScope != 0 {
		t.Scope = d.string()
	}
	if flags&ownResource != 0 {
		t.Resource = d.string()
	}
	t.IssuedAt, t.ExpiresAt, t.RotatedAt = d.time(), d.time(), d.time()
	n := d.uvarint()
	if n > uint64(len(d.rest)) {
		d.err = errRecordFormat // each successor takes a byte at least
	}
	if n > 0 && d.err == nil {
		t.Successors = make([][]byte, n)
		for i := range t.Successors {
			t.Successors[i] = []byte(d.string())
		}
	}
	d.extensions(nil)
	if err := d.done(); err != nil {
		return 0, err
	}
	return inherited(^flags & (ownScope | ownResource)), nil
}

func isJSON(raw []byte) bool { return len(raw) > 0 && raw[0] == '{' }

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// maxTime is the most bytes appendTime writes.
const maxTime = 2 * binary.MaxVarintLen64

// appendTime encodes a time to the nanosecond, in any year: 0 for the
// zero time, otherwise its Unix seconds (zigzag, plus one) and then its
// nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	sec := t.Unix()
	b = binary.AppendUvarint(b, uint64(sec<<1^sec>>63)+1)
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads the fields of a compact record; the first malformed one
// sets err, and the rest then read as zero.
type decoder struct {
	format byte
	// all is the record as one string: the decoded strings are slices of
	// it, one allocation per record.
	all  string
	rest []byte
	err  error
}

func newDecoder(raw []byte) (decoder, error) {
	if len(raw) == 0 || (raw[0] != recordFormat && raw[0] != familyFormat) {
		return decoder{}, errRecordFormat
	}
	return decoder{format: raw[0], all: string(raw), rest: raw[1:]}, nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.rest)
	if n <= 0 {
		d.err = errRecordFormat
		return 0
	}
	d.rest = d.rest[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.rest) == 0 {
		d.err = errRecordFormat
		return 0
	}
	c := d.rest[0]
	d.rest = d.rest[1:]
	return c
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.rest)) {
		d.err = errRecordFormat
		return ""
	}
	start := len(d.all) - len(d.rest)
	d.rest = d.rest[n:]
	return d.all[start : start+int(n)]
}

func (d *decoder) time() time.Time {
	z := d.uvarint()
	if z == 0 {
		return time.Time{}
	}
	z--
	sec := int64(z>>1) ^ -int64(z&1)
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.err = errRecordFormat
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// extensions reads the extensions after a record's fixed fields into
// known (by tag); an unknown optional (even) one is skipped and an
// unknown required (odd) one refuses the record.
func (d *decoder) extensions(known map[uint64]*string) {
	for d.err == nil && len(d.rest) > 0 {
		tag := d.uvarint()
		v := d.string()
		switch field, ok := known[tag]; {
		case ok:
			*field = v
		case tag%2 == 1:
			d.err = errRecordFormat
		}
	}
}

// done reports the first malformed field, or bytes left over.
func (d *decoder) done() error {
	if d.err == nil && len(d.rest) > 0 {
		d.err = errRecordFormat
	}
	if d.err != nil {
		return fmt.Errorf("%w (%d bytes)", d.err, len(d.all))
	}
	return nil
}
