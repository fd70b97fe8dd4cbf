package bolt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"io"
	"slices"

	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent snapshot of the whole file (a read
// transaction's copy) while the file keeps serving. The snapshot holds
// the generated signing keys: keep it as safe as the file.
func (s *File) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := s.view(ctx, "backup", func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// exportRecord is one line of an export.
type exportRecord struct {
	Bucket string          `json:"bucket"`
	Key    []byte          `json:"key"` // base64 in JSON
	Value  json.RawMessage `json:"value"`
}

// notExported are the buckets an export leaves out: the schema marker,
// and the signing keys, which are private keys in the clear (a file
// imported elsewhere generates its own).
var notExported = [][]byte{bucketMeta, bucketKeys}

// Export writes every record of the file as JSON lines, in key order.
// Secrets stay as they are stored: hashed. It reports how many records it
// wrote.
func (s *File) Export(ctx context.Context, w io.Writer) (int, error) {
	n := 0
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	err := s.view(ctx, "export", func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if slices.ContainsFunc(notExported, func(b []byte) bool { return bytes.Equal(b, name) }) {
				continue
			}
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				if len(v) == 0 {
					v = []byte("null") // index entries carry no value
				}
				n++
				return enc.Encode(exportRecord{Bucket: string(name), Key: k, Value: v})
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = bw.Flush()
	}
	return n, err
}

// maxImportLine bounds one line of an import.
const maxImportLine = 1 << 20

// Import adds the records of an export, in one transaction: a record
// already stored identically is skipped; one that differs refuses the
// whole import (storage.ErrImportConflict), so nothing is ever overwritten. It
// reports how many records it added.
func (s *File) Import(ctx context.Context, r io.Reader) (int, error) {
	var records []exportRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxImportLine)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var rec exportRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || len(rec.Key) == 0 || len(rec.Value) == 0 {
			return 0, fmt.Errorf("line %d: not an export record", line)
		}
		known := slices.ContainsFunc(allBuckets, func(b []byte) bool { return string(b) == rec.Bucket })
		excluded := slices.ContainsFunc(notExported, func(b []byte) bool { return string(b) == rec.Bucket })
		if !known || excluded {
			return 0, fmt.Errorf("line %d: %q is not a bucket records are imported into", line, rec.Bucket)
		}
		if string(rec.Value) == "null" {
			rec.Value = nil
		} else if !json.Valid(rec.Value) {
			return 0, fmt.Errorf("line %d: the value is not JSON", line)
		}
		records = append(records, rec)
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading the import: %v", err)
	}
	added := 0
	err := s.update(ctx, "import", func(tx *bbolt.Tx) error {
		added = 0
		for i, rec := range records {
			b := tx.Bucket([]byte(rec.Bucket))
			value := compact(rec.Value)
			if old := b.Get(rec.Key); old != nil {
				if !bytes.Equal(compact(old), value) {
					return fmt.Errorf("record %d (%s): %w", i+1, rec.Bucket, storage.ErrImportConflict)
				}
				continue
			}
			if err := b.Put(rec.Key, value); err != nil {
				return err
			}
			added++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.revocations.Add(1) // imported revocations take effect at once
	return added, nil
}

// compact is a JSON value without insignificant spaces (nil stays nil).
func compact(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return v
	}
	return b.Bytes()
}
