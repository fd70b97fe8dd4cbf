// Command build-caddy builds a release Caddy binary with xcaddy from the
// recipe in xcaddy.json (Caddy version and modules). Official xcaddy reads
// no config file; this is the one program that reads xcaddy.json.
//
//	go run ./cmd/build-caddy [path/to/xcaddy.json]
//
// It runs `xcaddy build <caddy_version> --output <output> --with …` and
// uses xcaddy from PATH, or `go run` of a pinned xcaddy when there is none.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// xcaddyVersion is used when xcaddy is not on PATH.
const xcaddyVersion = "v0.4.5"

type recipe struct {
	CaddyVersion string   `json:"caddy_version"`
	Output       string   `json:"output"`
	Modules      []module `json:"modules"`
}

type module struct {
	Module  string `json:"module"`
	Version string `json:"version"`
	// Replace, when set, builds the module from this folder (relative to
	// the recipe) instead of fetching it.
	Replace string `json:"replace"`
}

func main() {
	path := "xcaddy.json"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	if err := build(path); err != nil {
		fmt.Fprintln(os.Stderr, "build-caddy:", err)
		os.Exit(1)
	}
}

func build(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r recipe
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("reading %s: %v", path, err)
	}
	if r.CaddyVersion == "" || len(r.Modules) == 0 {
		return fmt.Errorf("%s: caddy_version and at least one module are required", path)
	}
	if r.Output == "" {
		r.Output = "caddy"
	}
	dir := filepath.Dir(path)
	args := []string{"build", r.CaddyVersion, "--output", filepath.Join(dir, r.Output)}
	for _, m := range r.Modules {
		with := m.Module
		if m.Version != "" {
			with += "@" + m.Version
		}
		if m.Replace != "" {
			abs, err := filepath.Abs(filepath.Join(dir, m.Replace))
			if err != nil {
				return err
			}
			with += "=" + abs
		}
		args = append(args, "--with", with)
	}
	cmd := exec.Command("xcaddy", args...)
	if _, err := exec.LookPath("xcaddy"); err != nil {
		cmd = exec.Command("go", append([]string{"run", "github.com/caddyserver/xcaddy/cmd/xcaddy@" + xcaddyVersion}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Fprintln(os.Stderr, "build-caddy:", cmd.String())
	return cmd.Run()
}
