package endpoints

import (
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// accessTokenClaims are the claims of an RFC 9068 access token.
type accessTokenClaims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	AuthTime int64  `json:"auth_time,omitempty"`
}

// accessToken is a signed access token and what the response says of it.
type accessToken struct {
	token     string
	id        string
	expiresAt time.Time
}

// mintAccessToken signs an access token for subject, audience-bound to
// resource.
func (s *Server) mintAccessToken(jti, clientID, subject, scope, resource string, authTime, now time.Time) (accessToken, error) {
	exp := now.Add(s.cfg.AccessTokenLifetime)
	claims := accessTokenClaims{
		Claims: jwt.Claims{
			Issuer:    s.cfg.Issuer,
			Subject:   subject,
			Audience:  jwt.Audience{resource},
			Expiry:    jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		ClientID: clientID,
		Scope:    scope,
	}
	if !authTime.IsZero() {
		claims.AuthTime = authTime.Unix()
	}
	token, err := s.cfg.Keys.Sign("at+jwt", claims)
	return accessToken{token: token, id: jti, expiresAt: exp}, err
}
