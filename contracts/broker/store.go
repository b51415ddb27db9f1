package broker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/resilience-lab/lab/services/platform"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// migrations are applied in order on start; PRAGMA user_version records how many have run.
var migrations = []string{
	`CREATE TABLE pacticipants (
		id             INTEGER PRIMARY KEY,
		name           TEXT NOT NULL UNIQUE,
		display_name   TEXT NOT NULL DEFAULT '',
		main_branch    TEXT NOT NULL DEFAULT '',
		repository_url TEXT NOT NULL DEFAULT '',
		created_at     INTEGER NOT NULL, -- unix milliseconds
		updated_at     INTEGER NOT NULL
	);
	CREATE TABLE versions (
		id             INTEGER PRIMARY KEY, -- also the version order
		pacticipant_id INTEGER NOT NULL REFERENCES pacticipants (id),
		number         TEXT NOT NULL,
		build_url      TEXT NOT NULL DEFAULT '',
		created_at     INTEGER NOT NULL,
		UNIQUE (pacticipant_id, number)
	);
	CREATE TABLE branch_versions (
		id             INTEGER PRIMARY KEY,
		version_id     INTEGER NOT NULL REFERENCES versions (id),
		pacticipant_id INTEGER NOT NULL REFERENCES pacticipants (id),
		branch         TEXT NOT NULL,
		created_at     INTEGER NOT NULL,
		UNIQUE (version_id, branch)
	);
	CREATE INDEX branch_versions_by_pacticipant ON branch_versions (pacticipant_id, branch);
	CREATE TABLE tags (
		id             INTEGER PRIMARY KEY,
		version_id     INTEGER NOT NULL REFERENCES versions (id),
		pacticipant_id INTEGER NOT NULL REFERENCES pacticipants (id),
		name           TEXT NOT NULL,
		created_at     INTEGER NOT NULL,
		UNIQUE (version_id, name)
	);
	CREATE INDEX tags_by_pacticipant ON tags (pacticipant_id, name);
	-- pact_versions holds each distinct pact content once, keyed by its hash (the Pact Broker's "pact version").
	CREATE TABLE pact_versions (
		sha         TEXT PRIMARY KEY,
		consumer_id INTEGER NOT NULL REFERENCES pacticipants (id),
		provider_id INTEGER NOT NULL REFERENCES pacticipants (id),
		content     TEXT NOT NULL,
		created_at  INTEGER NOT NULL
	);
	-- pact_publications: which content a consumer version published for a provider; a merge adds a revision.
	CREATE TABLE pact_publications (
		id                  INTEGER PRIMARY KEY,
		consumer_version_id INTEGER NOT NULL REFERENCES versions (id),
		provider_id         INTEGER NOT NULL REFERENCES pacticipants (id),
		pact_sha            TEXT NOT NULL REFERENCES pact_versions (sha),
		revision            INTEGER NOT NULL,
		created_at          INTEGER NOT NULL,
		UNIQUE (consumer_version_id, provider_id, revision)
	);
	CREATE INDEX pact_publications_by_provider ON pact_publications (provider_id);
	CREATE TABLE verifications (
		id                  INTEGER PRIMARY KEY,
		pact_sha            TEXT NOT NULL REFERENCES pact_versions (sha),
		provider_version_id INTEGER NOT NULL REFERENCES versions (id),
		success             INTEGER NOT NULL,
		build_url           TEXT NOT NULL DEFAULT '',
		test_results        TEXT NOT NULL DEFAULT 'null',
		verified_by         TEXT NOT NULL DEFAULT 'null',
		created_at          INTEGER NOT NULL
	);
	CREATE INDEX verifications_by_sha ON verifications (pact_sha);
	CREATE TABLE environments (
		id           INTEGER PRIMARY KEY,
		uuid         TEXT NOT NULL UNIQUE,
		name         TEXT NOT NULL UNIQUE,
		display_name TEXT NOT NULL DEFAULT '',
		production   INTEGER NOT NULL,
		contacts     TEXT NOT NULL DEFAULT 'null',
		created_at   INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL
	);
	CREATE TABLE deployed_versions (
		id                   INTEGER PRIMARY KEY,
		uuid                 TEXT NOT NULL UNIQUE,
		version_id           INTEGER NOT NULL REFERENCES versions (id),
		pacticipant_id       INTEGER NOT NULL REFERENCES pacticipants (id),
		environment_id       INTEGER NOT NULL REFERENCES environments (id),
		application_instance TEXT NOT NULL DEFAULT '',
		created_at           INTEGER NOT NULL,
		undeployed_at        INTEGER -- NULL while currently deployed
	);
	CREATE INDEX deployed_versions_current ON deployed_versions (environment_id, pacticipant_id, undeployed_at);`,
}

// store keeps the broker's data in SQLite. Every write goes through one connection with BEGIN
// IMMEDIATE, so concurrent writers queue in Go instead of failing with SQLITE_BUSY; reads use a separate
// pool, which WAL lets run beside the writer.
type store struct {
	write *sql.DB
	read  *sql.DB
}

// querier is what both *sql.DB and *sql.Tx offer, so reads can run inside or outside a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func openStore(ctx context.Context, path string) (*store, error) {
	if path == "" {
		return nil, errors.New("broker store: empty database path")
	}
	pragmas := "_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	write, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("broker store: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	s := &store{write: write}
	if err := s.migrate(ctx); err != nil {
		write.Close()
		return nil, err
	}
	// The reader pool opens after migrate, so WAL mode is already set on the file.
	read, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("broker store: %w", err)
	}
	read.SetMaxOpenConns(4)
	read.SetMaxIdleConns(4)
	s.read = read
	return s, nil
}

func (s *store) Close() error { return errors.Join(s.read.Close(), s.write.Close()) }

// Ping checks that the database answers a query.
func (s *store) Ping(ctx context.Context) error {
	var one int
	return s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func (s *store) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("database schema version %d is newer than this binary knows (%d)", version, len(migrations))
		}
		for i := version; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		// PRAGMA takes no bound parameters; the value is an integer we control.
		_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)))
		return err
	})
}

// inTx runs fn in a write transaction on the single writer (see platform.InTx for why fn gets its own
// context).
func (s *store) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return platform.InTx(ctx, s.write, fn)
}

func millis(t time.Time) int64      { return t.UnixMilli() }
func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
func placeholders(n int) string     { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }
func int64Args(ids []int64) []any   { return anyArgs(ids) }
func anyArgs[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// ---- pacticipants --------------------------------------------------------------------------------

const pacticipantCols = "id, name, display_name, main_branch, repository_url, created_at, updated_at"

func scanPacticipant(row interface{ Scan(...any) error }) (*Pacticipant, error) {
	var p Pacticipant
	var created, updated int64
	if err := row.Scan(&p.ID, &p.Name, &p.DisplayName, &p.MainBranch, &p.RepositoryURL, &created, &updated); err != nil {
		return nil, err
	}
	p.CreatedAt, p.UpdatedAt = fromMillis(created), fromMillis(updated)
	return &p, nil
}

// getPacticipant returns the pacticipant called name, or nil when there is none.
func getPacticipant(ctx context.Context, q querier, name string) (*Pacticipant, error) {
	p, err := scanPacticipant(q.QueryRowContext(ctx, "SELECT "+pacticipantCols+" FROM pacticipants WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return p, err
}

func listPacticipants(ctx context.Context, q querier) ([]*Pacticipant, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+pacticipantCols+" FROM pacticipants ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Pacticipant
	for rows.Next() {
		p, err := scanPacticipant(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// ensurePacticipant returns the pacticipant called name, creating it when missing.
func ensurePacticipant(ctx context.Context, tx *sql.Tx, name string, now time.Time) (*Pacticipant, bool, error) {
	p, err := getPacticipant(ctx, tx, name)
	if err != nil || p != nil {
		return p, false, err
	}
	res, err := tx.ExecContext(ctx, "INSERT INTO pacticipants (name, created_at, updated_at) VALUES (?, ?, ?)",
		name, millis(now), millis(now))
	if err != nil {
		return nil, false, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, false, err
	}
	return &Pacticipant{ID: id, Name: name, CreatedAt: now.UTC(), UpdatedAt: now.UTC()}, true, nil
}

func updatePacticipant(ctx context.Context, tx *sql.Tx, p *Pacticipant) error {
	_, err := tx.ExecContext(ctx, `UPDATE pacticipants SET display_name = ?, main_branch = ?, repository_url = ?, updated_at = ?
		WHERE id = ?`, p.DisplayName, p.MainBranch, p.RepositoryURL, millis(p.UpdatedAt), p.ID)
	return err
}

// ---- versions ------------------------------------------------------------------------------------

const versionCols = "v.id, v.pacticipant_id, p.name, v.number, v.build_url, v.created_at"

func scanVersion(row interface{ Scan(...any) error }) (*Version, error) {
	var v Version
	var created int64
	if err := row.Scan(&v.ID, &v.PacticipantID, &v.Pacticipant, &v.Number, &v.BuildURL, &created); err != nil {
		return nil, err
	}
	v.CreatedAt = fromMillis(created)
	return &v, nil
}

func queryVersions(ctx context.Context, q querier, where string, args ...any) ([]*Version, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+versionCols+" FROM versions v JOIN pacticipants p ON p.id = v.pacticipant_id WHERE "+
		where+" ORDER BY v.id", args...)
	if err != nil {
		return nil, err
	}
	var out []*Version
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, loadLabels(ctx, q, out)
}

// loadLabels fills the branches and tags of versions, each in the order they were added.
func loadLabels(ctx context.Context, q querier, vs []*Version) error {
	if len(vs) == 0 {
		return nil
	}
	byID := make(map[int64]*Version, len(vs))
	ids := make([]int64, 0, len(vs))
	for _, v := range vs {
		byID[v.ID] = v
		ids = append(ids, v.ID)
	}
	for _, table := range []string{"branch_versions", "tags"} {
		col := "branch"
		if table == "tags" {
			col = "name"
		}
		for chunk := range chunks(ids, 500) {
			rows, err := q.QueryContext(ctx, fmt.Sprintf("SELECT version_id, %s FROM %s WHERE version_id IN (%s) ORDER BY id",
				col, table, placeholders(len(chunk))), int64Args(chunk)...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				var label string
				if err := rows.Scan(&id, &label); err != nil {
					rows.Close()
					return err
				}
				if table == "tags" {
					byID[id].Tags = append(byID[id].Tags, label)
				} else {
					byID[id].Branches = append(byID[id].Branches, label)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// chunks yields xs in pieces of at most n, keeping IN lists under SQLite's parameter limit.
func chunks[T any](xs []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(xs) > 0 {
			k := min(n, len(xs))
			if !yield(xs[:k]) {
				return
			}
			xs = xs[k:]
		}
	}
}

// getVersion returns version number of pacticipant p with its labels, or nil when there is none.
func getVersion(ctx context.Context, q querier, pacticipantID int64, number string) (*Version, error) {
	vs, err := queryVersions(ctx, q, "v.pacticipant_id = ? AND v.number = ?", pacticipantID, number)
	if err != nil || len(vs) == 0 {
		return nil, err
	}
	return vs[0], nil
}

// ensureVersion returns version number of p, creating it when missing; a non-empty buildURL replaces
// the stored one.
func ensureVersion(ctx context.Context, tx *sql.Tx, p *Pacticipant, number, buildURL string, now time.Time) (*Version, bool, error) {
	v, err := getVersion(ctx, tx, p.ID, number)
	if err != nil {
		return nil, false, err
	}
	if v != nil {
		if buildURL != "" && buildURL != v.BuildURL {
			if _, err := tx.ExecContext(ctx, "UPDATE versions SET build_url = ? WHERE id = ?", buildURL, v.ID); err != nil {
				return nil, false, err
			}
			v.BuildURL = buildURL
		}
		return v, false, nil
	}
	res, err := tx.ExecContext(ctx, "INSERT INTO versions (pacticipant_id, number, build_url, created_at) VALUES (?, ?, ?, ?)",
		p.ID, number, buildURL, millis(now))
	if err != nil {
		return nil, false, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, false, err
	}
	return &Version{ID: id, PacticipantID: p.ID, Pacticipant: p.Name, Number: number, BuildURL: buildURL, CreatedAt: now.UTC()}, true, nil
}

// mainBranchCandidates are the branch names that become a pacticipant's main branch when it has none
// yet, as the Pact Broker's auto-detection does.
var mainBranchCandidates = []string{"main", "master", "develop"}

// addBranch puts v on branch; it reports whether that is new. The first version on a main-branch
// candidate sets the pacticipant's main branch when it has none.
func addBranch(ctx context.Context, tx *sql.Tx, p *Pacticipant, v *Version, branch string, now time.Time) (bool, error) {
	if v.hasBranch(branch) {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO branch_versions (version_id, pacticipant_id, branch, created_at) VALUES (?, ?, ?, ?)",
		v.ID, p.ID, branch, millis(now)); err != nil {
		return false, err
	}
	v.Branches = append(v.Branches, branch)
	if p.MainBranch == "" {
		for _, c := range mainBranchCandidates {
			if branch == c {
				p.MainBranch, p.UpdatedAt = branch, now.UTC()
				if err := updatePacticipant(ctx, tx, p); err != nil {
					return false, err
				}
			}
		}
	}
	return true, nil
}

// addTag tags v; it reports whether the tag is new.
func addTag(ctx context.Context, tx *sql.Tx, v *Version, tag string, now time.Time) (bool, error) {
	if v.hasTag(tag) {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO tags (version_id, pacticipant_id, name, created_at) VALUES (?, ?, ?, ?)",
		v.ID, v.PacticipantID, tag, millis(now)); err != nil {
		return false, err
	}
	v.Tags = append(v.Tags, tag)
	return true, nil
}

func deleteTag(ctx context.Context, tx *sql.Tx, v *Version, tag string) (bool, error) {
	res, err := tx.ExecContext(ctx, "DELETE FROM tags WHERE version_id = ? AND name = ?", v.ID, tag)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ---- pacts ---------------------------------------------------------------------------------------

// PactContent is one stored pact content (a "pact version").
type PactContent struct {
	Sha        string
	ConsumerID int64
	ProviderID int64
	Content    []byte
	CreatedAt  time.Time
}

func getPactContent(ctx context.Context, q querier, sha string) (*PactContent, error) {
	var pc PactContent
	var content string
	var created int64
	err := q.QueryRowContext(ctx, "SELECT sha, consumer_id, provider_id, content, created_at FROM pact_versions WHERE sha = ?", sha).
		Scan(&pc.Sha, &pc.ConsumerID, &pc.ProviderID, &content, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pc.Content, pc.CreatedAt = []byte(content), fromMillis(created)
	return &pc, nil
}

const publicationCols = "pp.id, v.pacticipant_id, pp.provider_id, pp.consumer_version_id, pp.pact_sha, pp.revision, pp.created_at"

// latestRevision restricts pact_publications pp to the latest revision of each consumer version and provider.
const latestRevision = `pp.revision = (SELECT MAX(p2.revision) FROM pact_publications p2
	WHERE p2.consumer_version_id = pp.consumer_version_id AND p2.provider_id = pp.provider_id)`

func queryPublications(ctx context.Context, q querier, where string, args ...any) ([]*Publication, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+publicationCols+` FROM pact_publications pp
		JOIN versions v ON v.id = pp.consumer_version_id WHERE `+latestRevision+" AND "+where+" ORDER BY pp.consumer_version_id, pp.id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Publication
	for rows.Next() {
		var p Publication
		var created int64
		if err := rows.Scan(&p.ID, &p.ConsumerID, &p.ProviderID, &p.ConsumerVersionID, &p.Sha, &p.Revision, &created); err != nil {
			return nil, err
		}
		p.CreatedAt = fromMillis(created)
		out = append(out, &p)
	}
	return out, rows.Err()
}

// latestPublication returns the pact consumer version cv holds for provider, or nil.
func latestPublication(ctx context.Context, q querier, consumerVersionID, providerID int64) (*Publication, error) {
	ps, err := queryPublications(ctx, q, "pp.consumer_version_id = ? AND pp.provider_id = ?", consumerVersionID, providerID)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	return ps[0], nil
}

// insertPublication stores content (once per sha) and makes it the next revision of cv's pact for provider.
func insertPublication(ctx context.Context, tx *sql.Tx, cv *Version, providerID int64, sha string, content []byte, now time.Time) (*Publication, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO pact_versions (sha, consumer_id, provider_id, content, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha) DO NOTHING`, sha, cv.PacticipantID, providerID, string(content), millis(now)); err != nil {
		return nil, err
	}
	var revision int
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(revision), 0) + 1 FROM pact_publications WHERE consumer_version_id = ? AND provider_id = ?",
		cv.ID, providerID).Scan(&revision); err != nil {
		return nil, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO pact_publications (consumer_version_id, provider_id, pact_sha, revision, created_at)
		VALUES (?, ?, ?, ?, ?)`, cv.ID, providerID, sha, revision, millis(now))
	if err != nil {
		return nil, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	return &Publication{ID: id, ConsumerID: cv.PacticipantID, ProviderID: providerID, ConsumerVersionID: cv.ID, Sha: sha,
		Revision: revision, CreatedAt: now.UTC()}, nil
}

// ---- verifications -------------------------------------------------------------------------------

// VerificationRecord is a verification with everything the provider sent.
type VerificationRecord struct {
	Verification
	Consumer        string
	Provider        string
	ProviderVersion string
	TestResults     json.RawMessage
	VerifiedBy      json.RawMessage
}

func insertVerification(ctx context.Context, tx *sql.Tx, sha string, pv *Version, success bool, buildURL string,
	testResults, verifiedBy json.RawMessage, now time.Time) (int64, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO verifications (pact_sha, provider_version_id, success, build_url, test_results, verified_by, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, sha, pv.ID, success, buildURL, jsonOrNull(testResults), jsonOrNull(verifiedBy), millis(now))
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func jsonOrNull(m json.RawMessage) string {
	if len(m) == 0 {
		return "null"
	}
	return string(m)
}

// getVerification returns verification id of pact content sha; id 0 means the latest one. Nil when none.
func getVerification(ctx context.Context, q querier, sha string, id int64) (*VerificationRecord, error) {
	query := `SELECT ve.id, ve.pact_sha, pv.pacticipant_id, ve.provider_version_id, ve.success, ve.build_url, ve.created_at,
			c.name, p.name, pv.number, ve.test_results, ve.verified_by
		FROM verifications ve
		JOIN versions pv ON pv.id = ve.provider_version_id
		JOIN pacticipants p ON p.id = pv.pacticipant_id
		JOIN pact_versions pc ON pc.sha = ve.pact_sha
		JOIN pacticipants c ON c.id = pc.consumer_id
		WHERE ve.pact_sha = ?`
	args := []any{sha}
	if id != 0 {
		query += " AND ve.id = ?"
		args = append(args, id)
	}
	query += " ORDER BY ve.id DESC LIMIT 1"
	var r VerificationRecord
	var created int64
	var results, by string
	err := q.QueryRowContext(ctx, query, args...).Scan(&r.ID, &r.Sha, &r.ProviderID, &r.ProviderVersionID, &r.Success, &r.BuildURL,
		&created, &r.Consumer, &r.Provider, &r.ProviderVersion, &results, &by)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r.CreatedAt, r.TestResults, r.VerifiedBy = fromMillis(created), json.RawMessage(results), json.RawMessage(by)
	return &r, nil
}

// ---- environments and deployments ----------------------------------------------------------------

// Environment is a place versions are deployed to.
type Environment struct {
	ID          int64
	UUID        string
	Name        string
	DisplayName string
	Production  bool
	Contacts    json.RawMessage
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

const environmentCols = "id, uuid, name, display_name, production, contacts, created_at, updated_at"

func queryEnvironments(ctx context.Context, q querier, where string, args ...any) ([]*Environment, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+environmentCols+" FROM environments WHERE "+where+" ORDER BY name", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Environment
	for rows.Next() {
		var e Environment
		var contacts string
		var created, updated int64
		if err := rows.Scan(&e.ID, &e.UUID, &e.Name, &e.DisplayName, &e.Production, &contacts, &created, &updated); err != nil {
			return nil, err
		}
		e.Contacts, e.CreatedAt, e.UpdatedAt = json.RawMessage(contacts), fromMillis(created), fromMillis(updated)
		out = append(out, &e)
	}
	return out, rows.Err()
}

func getEnvironment(ctx context.Context, q querier, column, value string) (*Environment, error) {
	if column != "uuid" && column != "name" {
		return nil, fmt.Errorf("environments have no unique column %q", column)
	}
	es, err := queryEnvironments(ctx, q, column+" = ?", value)
	if err != nil || len(es) == 0 {
		return nil, err
	}
	return es[0], nil
}

func insertEnvironment(ctx context.Context, tx *sql.Tx, e *Environment) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO environments (uuid, name, display_name, production, contacts, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, e.UUID, e.Name, e.DisplayName, e.Production, jsonOrNull(e.Contacts), millis(e.CreatedAt), millis(e.UpdatedAt))
	if err != nil {
		return err
	}
	e.ID, err = res.LastInsertId()
	return err
}

func updateEnvironment(ctx context.Context, tx *sql.Tx, e *Environment) error {
	_, err := tx.ExecContext(ctx, `UPDATE environments SET name = ?, display_name = ?, production = ?, contacts = ?, updated_at = ? WHERE id = ?`,
		e.Name, e.DisplayName, e.Production, jsonOrNull(e.Contacts), millis(e.UpdatedAt), e.ID)
	return err
}

// DeploymentRecord is a deployment with the names it refers to.
type DeploymentRecord struct {
	Deployment
	Pacticipant     string
	Version         string
	EnvironmentUUID string
	UndeployedAt    *time.Time
}

func queryDeployments(ctx context.Context, q querier, where string, args ...any) ([]*DeploymentRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT d.id, d.uuid, d.version_id, d.pacticipant_id, d.environment_id, e.name, d.application_instance,
			d.created_at, p.name, v.number, e.uuid, d.undeployed_at
		FROM deployed_versions d
		JOIN environments e ON e.id = d.environment_id
		JOIN versions v ON v.id = d.version_id
		JOIN pacticipants p ON p.id = d.pacticipant_id
		WHERE `+where+" ORDER BY d.id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*DeploymentRecord
	for rows.Next() {
		var d DeploymentRecord
		var created int64
		var undeployed sql.NullInt64
		if err := rows.Scan(&d.ID, &d.UUID, &d.VersionID, &d.PacticipantID, &d.EnvironmentID, &d.Environment, &d.ApplicationInstance,
			&created, &d.Pacticipant, &d.Version, &d.EnvironmentUUID, &undeployed); err != nil {
			return nil, err
		}
		d.CreatedAt = fromMillis(created)
		if undeployed.Valid {
			t := fromMillis(undeployed.Int64)
			d.UndeployedAt = &t
		}
		out = append(out, &d)
	}
	return out, rows.Err()
}

// recordDeployment marks v as deployed to e (for one application instance), ending the deployment of
// whichever version of the same pacticipant and instance was there before.
func recordDeployment(ctx context.Context, tx *sql.Tx, v *Version, e *Environment, instance, uuid string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE deployed_versions SET undeployed_at = ?
		WHERE pacticipant_id = ? AND environment_id = ? AND application_instance = ? AND undeployed_at IS NULL`,
		millis(now), v.PacticipantID, e.ID, instance); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO deployed_versions (uuid, version_id, pacticipant_id, environment_id, application_instance, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, uuid, v.ID, v.PacticipantID, e.ID, instance, millis(now))
	return err
}

// ---- graphs --------------------------------------------------------------------------------------

// integrations returns every consumer→provider pair that has a pact, as [consumer id, provider id].
func integrations(ctx context.Context, q querier) ([][2]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT v.pacticipant_id, pp.provider_id FROM pact_publications pp
		JOIN versions v ON v.id = pp.consumer_version_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][2]int64
	for rows.Next() {
		var pair [2]int64
		if err := rows.Scan(&pair[0], &pair[1]); err != nil {
			return nil, err
		}
		out = append(out, pair)
	}
	return out, rows.Err()
}

// loadGraph loads the graph of the given pacticipants: their versions, the pacts between them, the
// verifications of those pacts and their current deployments.
func loadGraph(ctx context.Context, q querier, ids []int64) (*Graph, error) {
	if len(ids) == 0 {
		return NewGraph(nil, nil, nil, nil, nil), nil
	}
	in := "(" + placeholders(len(ids)) + ")"
	args := int64Args(ids)

	rows, err := q.QueryContext(ctx, "SELECT "+pacticipantCols+" FROM pacticipants WHERE id IN "+in, args...)
	if err != nil {
		return nil, err
	}
	var ps []*Pacticipant
	for rows.Next() {
		p, err := scanPacticipant(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		ps = append(ps, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	vs, err := queryVersions(ctx, q, "v.pacticipant_id IN "+in, args...)
	if err != nil {
		return nil, err
	}
	pubs, err := queryPublications(ctx, q, "v.pacticipant_id IN "+in+" AND pp.provider_id IN "+in, append(args, args...)...)
	if err != nil {
		return nil, err
	}

	rows, err = q.QueryContext(ctx, `SELECT ve.id, ve.pact_sha, pv.pacticipant_id, ve.provider_version_id, ve.success, ve.build_url, ve.created_at
		FROM verifications ve JOIN versions pv ON pv.id = ve.provider_version_id
		WHERE pv.pacticipant_id IN `+in+" ORDER BY ve.id", args...)
	if err != nil {
		return nil, err
	}
	var vers []*Verification
	for rows.Next() {
		var v Verification
		var created int64
		if err := rows.Scan(&v.ID, &v.Sha, &v.ProviderID, &v.ProviderVersionID, &v.Success, &v.BuildURL, &created); err != nil {
			rows.Close()
			return nil, err
		}
		v.CreatedAt = fromMillis(created)
		vers = append(vers, &v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	recs, err := queryDeployments(ctx, q, "d.undeployed_at IS NULL AND d.pacticipant_id IN "+in, args...)
	if err != nil {
		return nil, err
	}
	deps := make([]*Deployment, len(recs))
	for i, r := range recs {
		deps[i] = &r.Deployment
	}
	return NewGraph(ps, vs, pubs, vers, deps), nil
}
