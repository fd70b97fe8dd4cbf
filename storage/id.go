package storage

import (
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// familyIDTime is how many characters of a family id give its creation
// time: the milliseconds since 1970 in base 32 (0-9a-v), which sort as
// the times do, up to the year 3084.
const familyIDTime = 9

// NewRefreshFamilyID returns the id of a refresh family started at now:
// 22 characters, the creation time (familyIDTime characters) and then 78
// random bits (base64url). Families started one after another have ids
// that sort one after another, so a backend's family table and indexes
// grow at their end and fill their pages, where random ids would scatter
// them. The id names a family in logs, audit events and the admin API;
// it is not a credential (the refresh token is).
func NewRefreshFamilyID(now time.Time) string {
	var random [10]byte
	rand.Read(random[:]) // never fails (crypto/rand panics instead)
	ms := strconv.FormatUint(uint64(max(now.UnixMilli(), 0)), 32)
	return strings.Repeat("0", max(familyIDTime-len(ms), 0)) + ms + base64.RawURLEncoding.EncodeToString(random[:])[:22-familyIDTime]
}

// accessTokenIDTime is how many characters of an access token id give its
// issue time: the microseconds since 1970 in base 32, up to the year 3084.
const accessTokenIDTime = 11

// NewAccessTokenID returns the id (jti) of an access token issued at now:
// its issue time to the microsecond (accessTokenIDTime characters), a dot,
// and 96 random bits (base64url). The token's iat has whole seconds; the
// id tells a token issued just after a revocation from one issued just
// before it in the same second (see AccessTokenIDTime).
func NewAccessTokenID(now time.Time) string {
	var random [12]byte
	rand.Read(random[:]) // never fails (crypto/rand panics instead)
	us := strconv.FormatUint(uint64(max(now.UnixMicro(), 0)), 32)
	return strings.Repeat("0", max(accessTokenIDTime-len(us), 0)) + us + "." + base64.RawURLEncoding.EncodeToString(random[:])
}

// AccessTokenIDTime is the issue time an access token id made by
// NewAccessTokenID carries; ok is false for any other id (those of earlier
// releases are random).
func AccessTokenIDTime(id string) (time.Time, bool) {
	prefix, rest, found := strings.Cut(id, ".")
	if !found || len(prefix) != accessTokenIDTime || len(rest) != 16 {
		return time.Time{}, false
	}
	us, err := strconv.ParseUint(prefix, 32, 63)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(int64(us)), true
}
