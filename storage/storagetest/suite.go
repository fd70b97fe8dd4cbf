// Package storagetest is the conformance suite every storage backend runs:
// the same answers for every Store method and every rotation rule, on
// bbolt and on PostgreSQL alike.
package storagetest

import (
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Opener returns a new, empty backend, closed when the test ends.
type Opener func(t *testing.T) storage.Backend

// Run runs the suite against a backend, and the tests of the optional
// capabilities it implements.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"ClientRoundTrip", testClientRoundTrip},
		{"RedeemAuthorizationCodeExactlyOnce", testRedeemAuthorizationCodeExactlyOnce},
		{"RotateRefreshToken", testRotateRefreshToken},
		{"RotateOutsideGraceRevokes", testRotateOutsideGraceRevokes},
		{"ParallelRotationsWithinGrace", testParallelRotationsWithinGrace},
		{"FamilyLifetimeCapsTokens", testFamilyLifetimeCapsTokens},
		{"RevokeRefreshFamilyAndAccessTokens", testRevokeRefreshFamilyAndAccessTokens},
		{"ConsentsAndSessions", testConsentsAndSessions},
		{"SigningKeysEnsureAndRotate", testSigningKeysEnsureAndRotate},
		{"SigningKeysReplaceAndRetire", testSigningKeysReplaceAndRetire},
		{"DeleteExpired", testDeleteExpired},
		{"CancelledContext", testCancelledContext},
		{"PendingAuthorizationIsAnsweredOnce", testPendingAuthorizationIsAnsweredOnce},
		{"RotateBurstToleratesUsedSuccessor", testRotateBurstToleratesUsedSuccessor},
		{"IssuersShareAFileButNothingElse", testIssuersShareAFileButNothingElse},
		{"DeleteClientRevokesWhatItHolds", testDeleteClientRevokesWhatItHolds},
		{"SweptClientLosesItsFamilies", testSweptClientLosesItsFamilies},
		{"UpstreamSignInIsTakenOnce", testUpstreamSignInIsTakenOnce},
		{"GrantsListAndRevoke", testGrantsListAndRevoke},
		{"ExportImport", testExportImport},
		{"StrictRotation", testStrictRotation},
		{"UpstreamTokens", testUpstreamTokens},
		{"RotationNarrow", testRotationNarrow},
		{"AssertionUsedOnce", testAssertionUsedOnce},
		{"FamilyKeyBinding", testFamilyKeyBinding},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
	runCapabilities(t, open)
}

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

const testIssuer = "https://auth.test"
