// Package fakecoder is a Coder deployment for tests: an httptest server
// that answers the coderd routes `push` uses, with codersdk's own request
// and response types, session-token authentication (header or cookie, as
// coderd takes it), file uploads deduplicated by hash, template versions
// whose provisioner job runs in the background and streams its logs over a
// websocket, and templates per organization.
package fakecoder

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/coder/coder/v2/codersdk"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/google/uuid"
)

// SignedOut is coderd's message for a missing or bad session token.
const SignedOut = "You are signed out or your session has expired. Please sign in again to continue."

// Job decides a provisioner job's outcome from the uploaded files and the
// variables: the log lines it writes, and an error message ("" = success).
type Job func(files map[string][]byte, vars []codersdk.VariableValue) (logs []string, errMsg string)

// Server is a fake Coder deployment.
type Server struct {
	*httptest.Server
	// Token is the one session token it accepts.
	Token string
	// Version is what /buildinfo reports; AppHost what /applications/host does.
	Version, AppHost string
	// Job runs every template version's provisioner job; nil: DefaultJob.
	Job Job
	// Provisioners is how many provisioner daemons match and are available
	// (reported with a new version); New sets 1.
	Provisioners int

	mu        sync.Mutex
	orgs      []codersdk.Organization
	files     map[uuid.UUID][]byte
	fileBySum map[[32]byte]uuid.UUID
	versions  map[uuid.UUID]*version
	templates map[uuid.UUID]*template
	// Requests counts requests by "METHOD pattern".
	requests map[string]int
}

type version struct {
	v    codersdk.TemplateVersion
	vars []codersdk.VariableValue
	logs []codersdk.ProvisionerJobLog
	done chan struct{}
}

type template struct {
	t codersdk.Template
	// hidden templates exist but the user cannot read them (coderd answers
	// 404 to a lookup and 409 to a create with the same name).
	hidden bool
}

// New starts a fake deployment with one default organization, "coder".
func New() *Server {
	s := &Server{
		Token: "valid-token", Version: "v2.30.0", AppHost: "*.coder.example.com", Provisioners: 1,
		files: map[uuid.UUID][]byte{}, fileBySum: map[[32]byte]uuid.UUID{},
		versions: map[uuid.UUID]*version{}, templates: map[uuid.UUID]*template{}, requests: map[string]int{},
	}
	s.AddOrganization("coder", true)
	mux := http.NewServeMux()
	handle := func(pattern string, auth bool, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.requests[pattern]++
			s.mu.Unlock()
			if auth && !s.authenticated(r) {
				write(w, http.StatusUnauthorized, codersdk.Response{Message: SignedOut, Detail: "API key is invalid."})
				return
			}
			h(w, r)
		})
	}
	handle("GET /api/v2/buildinfo", false, s.buildInfo)
	handle("GET /api/v2/applications/host", true, s.appHost)
	handle("GET /api/v2/users/{user}/organizations", true, s.organizations)
	handle("GET /api/v2/users/{user}/organizations/{name}", true, s.organizationByName)
	handle("GET /api/v2/organizations/{org}/templates/{name}", true, s.templateByName)
	handle("POST /api/v2/organizations/{org}/templates", true, s.createTemplate)
	handle("POST /api/v2/organizations/{org}/templateversions", true, s.createVersion)
	handle("POST /api/v2/files", true, s.upload)
	handle("GET /api/v2/templateversions/{id}", true, s.version)
	handle("GET /api/v2/templateversions/{id}/logs", true, s.logs)
	handle("PATCH /api/v2/templates/{id}/versions", true, s.activate)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusNotFound, codersdk.Response{Message: "Route not found."})
	})
	s.Server = httptest.NewServer(mux)
	return s
}

// AddOrganization adds an organization the user belongs to.
func (s *Server) AddOrganization(name string, isDefault bool) codersdk.Organization {
	s.mu.Lock()
	defer s.mu.Unlock()
	org := codersdk.Organization{MinimalOrganization: codersdk.MinimalOrganization{ID: uuid.New(), Name: name, DisplayName: name}, IsDefault: isDefault}
	s.orgs = append(s.orgs, org)
	return org
}

// AddHiddenTemplate adds a template the user cannot see.
func (s *Server) AddHiddenTemplate(org uuid.UUID, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := uuid.New()
	s.templates[id] = &template{t: codersdk.Template{ID: id, Name: name, OrganizationID: org}, hidden: true}
}

// Template returns the visible template name in org.
func (s *Server) Template(org uuid.UUID, name string) (codersdk.Template, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.findTemplate(org, name)
	if t == nil || t.hidden {
		return codersdk.Template{}, false
	}
	return t.t, true
}

// TemplateVersion returns a template version, its variables and its files.
func (s *Server) TemplateVersion(id uuid.UUID) (codersdk.TemplateVersion, []codersdk.VariableValue, map[string][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.versions[id]
	if v == nil {
		return codersdk.TemplateVersion{}, nil, nil
	}
	files, _ := untar(s.files[v.v.Job.FileID])
	return v.v, v.vars, files
}

// Requests is how many requests a route pattern got.
func (s *Server) Requests(pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[pattern]
}

// DefaultJob succeeds when the archive has a main.tf and every variable
// has a value, like a template import that finds nothing wrong.
func DefaultJob(files map[string][]byte, vars []codersdk.VariableValue) ([]string, string) {
	logs := []string{"Setting up", "Parsing template parameters", "Detecting persistent resources"}
	if _, ok := files["main.tf"]; !ok {
		return logs, "no main.tf in the template"
	}
	for _, v := range vars {
		if v.Value == "" {
			return logs, fmt.Sprintf("required template variables need values: %s", v.Name)
		}
	}
	return append(logs, "Detecting ephemeral resources", "Cleaning Up"), ""
}

func (s *Server) authenticated(r *http.Request) bool {
	token := r.Header.Get(codersdk.SessionTokenHeader)
	if c, err := r.Cookie(codersdk.SessionTokenCookie); token == "" && err == nil {
		token = c.Value
	}
	return token == s.Token
}

func write(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func read(w http.ResponseWriter, r *http.Request, into any) bool {
	if err := json.NewDecoder(r.Body).Decode(into); err != nil {
		write(w, http.StatusBadRequest, codersdk.Response{Message: "Request body must be valid JSON.", Detail: err.Error()})
		return false
	}
	return true
}

func (s *Server) buildInfo(w http.ResponseWriter, _ *http.Request) {
	write(w, http.StatusOK, codersdk.BuildInfoResponse{Version: s.Version, ExternalURL: "https://github.com/coder/coder/releases/tag/" + s.Version})
}

func (s *Server) appHost(w http.ResponseWriter, _ *http.Request) {
	write(w, http.StatusOK, codersdk.AppHostResponse{Host: s.AppHost})
}

func (s *Server) organizations(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("user") != codersdk.Me {
		notFound(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	write(w, http.StatusOK, s.orgs)
}

// notFound is coderd's answer for what does not exist or may not be seen.
func notFound(w http.ResponseWriter) {
	write(w, http.StatusNotFound, codersdk.Response{Message: "Resource not found or you do not have access to this resource"})
}

// orgParam is the organization named by the {org} path value (id or
// name); it answers 404 itself when there is none.
func (s *Server) orgParam(w http.ResponseWriter, r *http.Request) *codersdk.Organization {
	org := s.org(r.PathValue("org"))
	if org == nil {
		notFound(w)
	}
	return org
}

func (s *Server) org(id string) *codersdk.Organization {
	for i := range s.orgs {
		if s.orgs[i].ID.String() == id || s.orgs[i].Name == id {
			return &s.orgs[i]
		}
	}
	return nil
}

func (s *Server) organizationByName(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if org := s.org(r.PathValue("name")); org != nil {
		write(w, http.StatusOK, org)
		return
	}
	notFound(w)
}

func (s *Server) findTemplate(org uuid.UUID, name string) *template {
	for _, t := range s.templates {
		if t.t.OrganizationID == org && t.t.Name == name {
			return t
		}
	}
	return nil
}

func (s *Server) templateByName(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	org := s.orgParam(w, r)
	if org == nil {
		return
	}
	if t := s.findTemplate(org.ID, r.PathValue("name")); t != nil && !t.hidden {
		write(w, http.StatusOK, t.t)
		return
	}
	notFound(w)
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != codersdk.ContentTypeTar && ct != codersdk.ContentTypeZip {
		write(w, http.StatusBadRequest, codersdk.Response{Message: fmt.Sprintf("Unsupported content type header %q.", ct)})
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 10<<20))
	if err != nil {
		write(w, http.StatusBadRequest, codersdk.Response{Message: "Failed to read file from request.", Detail: err.Error()})
		return
	}
	sum := sha256.Sum256(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.fileBySum[sum]; ok {
		write(w, http.StatusOK, codersdk.UploadResponse{ID: id})
		return
	}
	id := uuid.New()
	s.files[id], s.fileBySum[sum] = data, id
	write(w, http.StatusCreated, codersdk.UploadResponse{ID: id})
}

func (s *Server) createVersion(w http.ResponseWriter, r *http.Request) {
	var req codersdk.CreateTemplateVersionRequest
	if !read(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	org := s.orgParam(w, r)
	if org == nil {
		return
	}
	data, ok := s.files[req.FileID]
	if !ok || req.StorageMethod != codersdk.ProvisionerStorageMethodFile {
		write(w, http.StatusNotFound, codersdk.Response{Message: fmt.Sprintf("File %q not found.", req.FileID)})
		return
	}
	if req.Provisioner != codersdk.ProvisionerTypeTerraform {
		write(w, http.StatusBadRequest, codersdk.Response{Message: fmt.Sprintf("Provisioner %q is not supported.", req.Provisioner)})
		return
	}
	now := time.Now()
	v := &version{done: make(chan struct{}), vars: req.UserVariableValues}
	v.v = codersdk.TemplateVersion{
		ID: uuid.New(), OrganizationID: org.ID, CreatedAt: now, UpdatedAt: now,
		Name: fmt.Sprintf("v%d", len(s.versions)+1), Message: req.Message,
		Job: codersdk.ProvisionerJob{ID: uuid.New(), CreatedAt: now, Status: codersdk.ProvisionerJobPending, FileID: req.FileID,
			OrganizationID: org.ID, Type: codersdk.ProvisionerJobTypeTemplateVersionImport},
	}
	if req.TemplateID != uuid.Nil {
		id := req.TemplateID
		v.v.TemplateID = &id
	}
	s.versions[v.v.ID] = v
	reply := v.v
	reply.MatchedProvisioners = &codersdk.MatchedProvisioners{Count: s.Provisioners, Available: s.Provisioners}
	files, err := untar(data)
	job := s.Job
	if job == nil {
		job = DefaultJob
	}
	go s.run(v, files, err, job)
	write(w, http.StatusCreated, reply)
}

// run is the provisioner: it takes the job, writes its logs and ends it.
func (s *Server) run(v *version, files map[string][]byte, untarErr error, job Job) {
	s.mu.Lock()
	v.v.Job.Status = codersdk.ProvisionerJobRunning
	s.mu.Unlock()
	var logs []string
	errMsg := ""
	if untarErr != nil {
		errMsg = "unpack the template: " + untarErr.Error()
	} else {
		logs, errMsg = job(files, v.vars)
	}
	for i, line := range logs {
		s.mu.Lock()
		v.logs = append(v.logs, codersdk.ProvisionerJobLog{ID: int64(i + 1), CreatedAt: time.Now(),
			Source: codersdk.LogSourceProvisioner, Level: codersdk.LogLevelInfo, Output: line})
		s.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	done := time.Now()
	v.v.Job.CompletedAt = &done
	if errMsg != "" {
		v.v.Job.Status, v.v.Job.Error = codersdk.ProvisionerJobFailed, errMsg
	} else {
		v.v.Job.Status = codersdk.ProvisionerJobSucceeded
	}
	s.mu.Unlock()
	close(v.done)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.lookupVersion(r.PathValue("id"))
	if v == nil {
		notFound(w)
		return
	}
	write(w, http.StatusOK, v.v)
}

func (s *Server) lookupVersion(id string) *version {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil
	}
	return s.versions[u]
}

// logs streams a job's logs over a websocket (?follow) until it ends, then
// closes normally, as coderd does.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v := s.lookupVersion(r.PathValue("id"))
	s.mu.Unlock()
	if v == nil {
		notFound(w)
		return
	}
	if !r.URL.Query().Has("follow") {
		s.mu.Lock()
		logs := append([]codersdk.ProvisionerJobLog{}, v.logs...)
		s.mu.Unlock()
		write(w, http.StatusOK, logs)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	sent := 0
	for {
		s.mu.Lock()
		pending := append([]codersdk.ProvisionerJobLog{}, v.logs[sent:]...)
		s.mu.Unlock()
		for _, l := range pending {
			if err := wsjson.Write(r.Context(), conn, l); err != nil {
				return
			}
			sent++
		}
		select {
		case <-v.done:
			s.mu.Lock()
			rest := len(v.logs) - sent
			s.mu.Unlock()
			if rest == 0 {
				_ = conn.Close(websocket.StatusNormalClosure, "job done")
				return
			}
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request) {
	var req codersdk.CreateTemplateRequest
	if !read(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	org := s.orgParam(w, r)
	if org == nil {
		return
	}
	if s.findTemplate(org.ID, req.Name) != nil {
		write(w, http.StatusConflict, codersdk.Response{
			Message:     fmt.Sprintf("Template with name %q already exists.", req.Name),
			Validations: []codersdk.ValidationError{{Field: "name", Detail: "This value is already in use and should be unique."}},
		})
		return
	}
	v := s.versions[req.VersionID]
	if v == nil || v.v.Job.Status != codersdk.ProvisionerJobSucceeded {
		write(w, http.StatusBadRequest, codersdk.Response{Message: "The provided template version is not valid or its import has not succeeded."})
		return
	}
	id := uuid.New()
	t := codersdk.Template{ID: id, Name: req.Name, Description: req.Description, OrganizationID: org.ID, OrganizationName: org.Name,
		ActiveVersionID: req.VersionID, Provisioner: codersdk.ProvisionerTypeTerraform, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	s.templates[id] = &template{t: t}
	v.v.TemplateID = &id
	write(w, http.StatusCreated, t)
}

func (s *Server) activate(w http.ResponseWriter, r *http.Request) {
	var req codersdk.UpdateActiveTemplateVersion
	if !read(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := uuid.Parse(r.PathValue("id"))
	t := s.templates[id]
	if err != nil || t == nil || t.hidden {
		notFound(w)
		return
	}
	v := s.versions[req.ID]
	if v == nil || v.v.TemplateID == nil || *v.v.TemplateID != id {
		write(w, http.StatusNotFound, codersdk.Response{Message: "Template version not found."})
		return
	}
	if v.v.Job.Status != codersdk.ProvisionerJobSucceeded {
		write(w, http.StatusBadRequest, codersdk.Response{Message: "The provided template version has not finished importing."})
		return
	}
	t.t.ActiveVersionID = req.ID
	write(w, http.StatusOK, codersdk.Response{Message: "Updated the active template version!"})
}

// untar reads a template archive into its regular files.
func untar(data []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			files[h.Name] = b
		}
	}
}
