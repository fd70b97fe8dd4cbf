package endpoints

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"

	"go.uber.org/zap"
)

//go:embed templates/*.html
var embeddedTemplates embed.FS

// pageNames are the templates an operator may replace.
var pageNames = []string{"login.html", "consent.html", "error.html", "logout.html", "account.html"}

// loadPages parses the embedded pages, then any of login.html,
// consent.html, error.html, logout.html and account.html found in dir (which may use the
// embedded "head" and "foot" blocks).
// pages renders the HTML pages (sign-in, consent, account, errors) from
// the embedded templates or the operator's.
type pages struct {
	*core
	templates map[string]*template.Template
}

// loadPages parses the templates, the operator's from dir where there
// are.
func loadPages(c *core, dir string) (*pages, error) {
	layout, err := template.ParseFS(embeddedTemplates, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	templates := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := layout.Clone()
		if err != nil {
			return nil, err
		}
		src, err := embeddedTemplates.ReadFile("templates/" + name)
		if dir != "" {
			if custom, cerr := os.ReadFile(filepath.Join(dir, name)); cerr == nil {
				src, err = custom, nil
			} else if !os.IsNotExist(cerr) {
				return nil, fmt.Errorf("reading template %s: %v", name, cerr)
			}
		}
		if err != nil {
			return nil, err
		}
		if _, err := t.New(name).Parse(string(src)); err != nil {
			return nil, fmt.Errorf("parsing template %s: %v", name, err)
		}
		templates[name] = t
	}
	return &pages{core: c, templates: templates}, nil
}

// pageSecurityHeaders are set on every HTML page: no framing, no script,
// no referrer leaking the query (which may hold state), no caching.
func pageSecurityHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// renderPage writes an HTML page. Everything reflected is escaped by
// html/template.
func (s *pages) renderPage(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.templates[name].ExecuteTemplate(&buf, name, data); err != nil {
		s.cfg.Logger.Error("rendering page", zap.String("page", name), zap.Error(err))
		buf.Reset()
		buf.WriteString("<!doctype html><title>Error</title><p>Something went wrong.</p>")
		status = http.StatusInternalServerError
	}
	pageSecurityHeaders(w.Header())
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage is the data of error.html. BackURL, when set, is the
// client's validated redirect URI carrying access_denied: the user may
// choose to go back.
type errorPage struct {
	Title   string
	Message string
	BackURL template.URL
}

// renderError shows an error to the user, never redirecting anywhere.
func (s *pages) renderError(w http.ResponseWriter, status int, title, message string) {
	s.renderPage(w, status, "error.html", errorPage{Title: title, Message: message})
}
