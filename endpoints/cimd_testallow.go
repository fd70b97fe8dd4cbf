//go:build oauth2test

package endpoints

import (
	"crypto/x509"
	"os"
	"strings"
)

// In builds with the oauth2test tag (e2e/run builds Caddy so), the client
// ID metadata document fetcher may reach the host:port pairs listed in
// OAUTH2_TEST_CIMD_ALLOW, trusting the PEM certificates in
// OAUTH2_TEST_CIMD_CA. Release builds do not contain this file.
func init() {
	for _, hp := range strings.Split(os.Getenv("OAUTH2_TEST_CIMD_ALLOW"), ",") {
		if hp = strings.TrimSpace(hp); hp != "" {
			if testAllowedHosts == nil {
				testAllowedHosts = map[string]bool{}
			}
			testAllowedHosts[hp] = true
		}
	}
	if path := os.Getenv("OAUTH2_TEST_CIMD_CA"); path != "" {
		if pem, err := os.ReadFile(path); err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				testRootCAs = pool
			}
		}
	}
}
