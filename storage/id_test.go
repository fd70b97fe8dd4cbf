package storage

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestNewRefreshFamilyIDSortsByCreation(t *testing.T) {
	start := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	var ids []string
	seen := map[string]bool{}
	for i := range 2000 {
		id := NewRefreshFamilyID(start.Add(time.Duration(i) * time.Millisecond))
		if !regexp.MustCompile(`^[0-9a-v]{9}[A-Za-z0-9_-]{13}$`).MatchString(id) {
			t.Fatalf("id %q: want 9 base-32 time characters and 13 base64url ones", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Error("ids of families started one after another do not sort in that order")
	}
	// The time part: the milliseconds of the creation time, and the same
	// width in 3084 as in 1970.
	if got := NewRefreshFamilyID(time.UnixMilli(1))[:9]; got != "000000001" {
		t.Errorf("1 ms after 1970: time part %q, want 000000001", got)
	}
	if got := NewRefreshFamilyID(time.Date(3084, 1, 1, 0, 0, 0, 0, time.UTC))[:9]; len(NewRefreshFamilyID(time.Date(3084, 1, 1, 0, 0, 0, 0, time.UTC))) != 22 || got > "vvvvvvvvv" {
		t.Errorf("in 3084: time part %q", got)
	}
	// Two families in one millisecond differ in their random part.
	if a, b := NewRefreshFamilyID(start), NewRefreshFamilyID(start); a == b || a[:9] != b[:9] {
		t.Errorf("same millisecond: %q and %q", a, b)
	}
}
