package endpoints

import "testing"

func TestEqualSecrets(t *testing.T) {
	const iat = "initial-access-token-0123456789"
	for presented, want := range map[string]bool{
		iat:                               true,
		iat + "x":                         false,
		iat[:len(iat)-1]:                  false,
		"":                                false,
		"Initial-access-token-0123456789": false,
	} {
		if got := equalSecrets(presented, iat); got != want {
			t.Errorf("equalSecrets(%q) = %v, want %v", presented, got, want)
		}
	}
	if equalSecrets("", "") {
		t.Error("two empty secrets are equal")
	}
}
