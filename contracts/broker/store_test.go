package broker

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMigrationsRunOnceAndRefuseANewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "broker.db")
	for i := 0; i < 2; i++ { // the second open finds the schema current and changes nothing
		st, err := openStore(ctx, path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		var v int
		if err := st.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
			t.Fatalf("user_version = %d (%v), want %d", v, err, len(migrations))
		}
		st.Close()
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if st, err := openStore(ctx, path); err == nil {
		st.Close()
		t.Fatal("a database from a newer broker opened without error")
	}
}

func TestStoreGraphLoadsLatestRevisionsAndCurrentDeployments(t *testing.T) {
	ctx := context.Background()
	st, err := openStore(ctx, filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var web, catalog *Pacticipant
	var v1, c1, c2 *Version
	env := &Environment{UUID: newUUID(), Name: "production", Production: true, CreatedAt: now, UpdatedAt: now}
	err = st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if web, _, err = ensurePacticipant(ctx, tx, "web", now); err != nil {
			return err
		}
		if catalog, _, err = ensurePacticipant(ctx, tx, "catalog", now); err != nil {
			return err
		}
		if v1, _, err = ensureVersion(ctx, tx, web, "1", "", now); err != nil {
			return err
		}
		if _, err = addBranch(ctx, tx, web, v1, "main", now); err != nil {
			return err
		}
		if _, err = addTag(ctx, tx, v1, "prod", now); err != nil {
			return err
		}
		if _, err = insertPublication(ctx, tx, v1, catalog.ID, "a", []byte(`{}`), now); err != nil {
			return err
		}
		if _, err = insertPublication(ctx, tx, v1, catalog.ID, "b", []byte(`{}`), now); err != nil { // a merge: revision 2
			return err
		}
		if c1, _, err = ensureVersion(ctx, tx, catalog, "c1", "", now); err != nil {
			return err
		}
		if c2, _, err = ensureVersion(ctx, tx, catalog, "c2", "", now); err != nil {
			return err
		}
		if _, err = insertVerification(ctx, tx, "b", c1, true, "", json.RawMessage(`[]`), nil, now); err != nil {
			return err
		}
		if err = insertEnvironment(ctx, tx, env); err != nil {
			return err
		}
		if err = recordDeployment(ctx, tx, c1, env, "", newUUID(), now); err != nil {
			return err
		}
		return recordDeployment(ctx, tx, c2, env, "", newUUID(), now.Add(time.Minute)) // replaces c1
	})
	if err != nil {
		t.Fatal(err)
	}
	if web.MainBranch != "main" {
		t.Errorf("main branch not auto-detected: %q", web.MainBranch)
	}
	g, err := loadGraph(ctx, st.read, []int64{web.ID, catalog.ID})
	if err != nil {
		t.Fatal(err)
	}
	gv := g.Versions(g.Pacticipant("web"), VersionSpec{Number: "1"}, nil)
	if len(gv) != 1 || !gv[0].hasBranch("main") || !gv[0].hasTag("prod") {
		t.Fatalf("web versions = %+v", gv)
	}
	pub := g.Publication(v1.ID, catalog.ID)
	if pub == nil || pub.Sha != "b" || pub.Revision != 2 {
		t.Fatalf("publication = %+v, want the latest revision (b, 2)", pub)
	}
	if vs := g.Verifications("b"); len(vs) != 1 || !vs[0].Success || vs[0].ProviderVersionID != c1.ID {
		t.Errorf("verifications = %+v", vs)
	}
	deployed := g.Versions(g.Pacticipant("catalog"), VersionSpec{Environment: "production"}, nil)
	if len(deployed) != 1 || deployed[0].Number != "c2" {
		t.Errorf("deployed to production = %+v, want only c2", deployed)
	}
	if g.Pacticipant("web").MainBranch != "main" {
		t.Errorf("stored main branch = %q", g.Pacticipant("web").MainBranch)
	}
}

func TestPactShaAndMerge(t *testing.T) {
	parse := func(s string) pactDoc {
		d, err := parsePact([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	base := parse(`{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"a","request":{"path":"/a"}}],
		"metadata":{"pactSpecification":{"version":"3.0.0"},"pactRust":{"ffi":"0.4.28"}}}`)
	regenerated := parse(`{"provider":{"name":"p"},"interactions":[{"request":{"path":"/a"},"description":"a"}],"consumer":{"name":"c"},
		"metadata":{"pactSpecification":{"version":"3.0.0"},"pactRust":{"ffi":"0.4.29"}}}`)
	if base.sha() != regenerated.sha() {
		t.Error("key order and library metadata changed the sha")
	}
	if base.sha() == parse(strings.Replace(string(base.canonical()), `"3.0.0"`, `"4.0"`, 1)).sha() {
		t.Error("the specification version does not change the sha")
	}
	if base.sha() == parse(strings.Replace(string(base.canonical()), `"/a"`, `"/b"`, 1)).sha() {
		t.Error("a changed interaction does not change the sha")
	}

	merged, err := base.merge(parse(`{"interactions":[{"description":"b","request":{"path":"/b"}},{"description":"a","request":{"path":"/a"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(merged["interactions"].([]any)); n != 2 {
		t.Errorf("merged interactions = %d, want 2", n)
	}
	if _, err := base.merge(parse(`{"interactions":[{"description":"a","request":{"path":"/changed"}}]}`)); err == nil {
		t.Error("merging a changed interaction with the same description and state did not conflict")
	}
	for _, bad := range []string{`nope`, `[1]`, `{"a":1} {"b":2}`} {
		if _, err := parsePact([]byte(bad)); err == nil {
			t.Errorf("parsePact(%q): no error", bad)
		}
	}
}
