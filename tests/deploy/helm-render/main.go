// helm-render: renders a Helm chart the way `helm template` does, for
// machines without helm.  Go's text/template with sprig's functions and the
// ones Helm adds, written to behave as Helm's engine does:
//
//   - values: the chart's values.yaml, then each -f file merged over it (maps
//     merged key by key, a null deletes the key); numbers are float64, as
//     Helm's YAML-through-JSON reading makes them
//   - the template data: .Values .Release .Chart .Capabilities .Files
//     .Template, and missingkey=zero with "<no value>" removed afterwards
//   - include, tpl, required, fail, toYaml (sigs.k8s.io/yaml's style:
//     yaml.v2 of the value's JSON form, trailing newline cut), fromYaml,
//     fromYamlArray, toJson, fromJson, fromJsonArray, toToml (unsupported:
//     an error), lookup (empty, as in `helm template`); sprig's env and
//     expandenv removed
//   - files whose name starts with "_" are parsed but not rendered; NOTES.txt
//     is rendered (its errors count) but not printed; a file rendering to
//     whitespace only is left out
//
// Output: every rendered document as `---\n# Source: CHART/templates/FILE`
// then the YAML, each checked to parse as YAML (duplicate keys refused).
//
//	helm-render [-f values.yaml]... [--name RELEASE] [--namespace NS]
//	            [--kube-version 1.27.0] [--api-versions group/version[/Kind]]... CHART_DIR
//
// Built in GOPATH mode from Debian's packages (golang-go,
// golang-github-masterminds-sprig-dev, golang-gopkg-yaml.v2-dev and .v3-dev).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml2 "gopkg.in/yaml.v2"
	yaml3 "gopkg.in/yaml.v3"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// --- values ------------------------------------------------------------------

// jsonish turns what yaml.v3 decoded into what Helm's values hold after
// sigs.k8s.io/yaml: map[string]interface{}, []interface{}, float64, string,
// bool, nil.
func jsonish(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case map[string]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, e := range t {
			c, err := jsonish(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, e := range t {
			c, err := jsonish(e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = c
		}
		return out, nil
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, e := range t {
			c, err := jsonish(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case int:
		return float64(t), nil
	case int64:
		return float64(t), nil
	case uint64:
		return float64(t), nil
	case float64, string, bool, nil:
		return t, nil
	default:
		// Timestamps and binary: what JSON would carry, a string
		b, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		var s interface{}
		err = json.Unmarshal(b, &s)
		return s, err
	}
}

func readValues(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var raw interface{}
	if err := yaml3.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	v, err := jsonish(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: values must be a map", file)
	}
	return m, nil
}

// coalesce merges src over dst as Helm merges a values file over the
// chart's: maps key by key, anything else replaced, null deletes.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := dst[k].(map[string]interface{})
		if sok && dok {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = v
		}
	}
	return dst
}

// --- the objects templates see -------------------------------------------------

type versionSet []string

// Has is .Capabilities.APIVersions.Has "apps/v1" (or "apps/v1/Deployment").
func (v versionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type kubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions versionSet
	HelmVersion map[string]string
}

// Files is .Files: the chart's files outside templates/, by path.
type Files map[string][]byte

func (f Files) Get(name string) string     { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }

func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

func (f Files) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func (f Files) sortedNames() []string {
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// AsConfig is the files as a ConfigMap's data (base names as keys).
func (f Files) AsConfig() string {
	m := map[string]string{}
	for _, name := range f.sortedNames() {
		m[path.Base(name)] = string(f[name])
	}
	return toYAML(m)
}

// --- the functions Helm adds -------------------------------------------------------

func toYAML(v interface{}) string {
	// sigs.k8s.io/yaml: the JSON form, then yaml.v2
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := yaml2.Unmarshal(j, &generic); err != nil {
		return ""
	}
	data, err := yaml2.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	var raw interface{}
	if err := yaml3.Unmarshal([]byte(s), &raw); err != nil {
		m["Error"] = err.Error()
		return m
	}
	v, err := jsonish(raw)
	if err != nil {
		m["Error"] = err.Error()
		return m
	}
	if mm, ok := v.(map[string]interface{}); ok {
		return mm
	}
	if v != nil {
		m["Error"] = "not a map"
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var raw interface{}
	if err := yaml3.Unmarshal([]byte(s), &raw); err != nil {
		return []interface{}{err.Error()}
	}
	v, err := jsonish(raw)
	if err != nil {
		return []interface{}{err.Error()}
	}
	if a, ok := v.([]interface{}); ok {
		return a
	}
	return []interface{}{"not an array"}
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// --- the engine ---------------------------------------------------------------------

type chart struct {
	dir       string
	name      string
	meta      map[string]interface{}
	values    map[string]interface{}
	templates map[string]string // "CHART/templates/x.yaml" -> text
	files     Files
}

func loadChart(dir string) (*chart, error) {
	c := &chart{dir: dir, templates: map[string]string{}, files: Files{}}
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	var meta map[string]interface{}
	if err := yaml3.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	c.meta = meta
	name, _ := meta["name"].(string)
	if name == "" {
		return nil, errors.New("Chart.yaml: no name")
	}
	c.name = name
	if _, err := os.Stat(filepath.Join(dir, "values.yaml")); err == nil {
		if c.values, err = readValues(filepath.Join(dir, "values.yaml")); err != nil {
			return nil, err
		}
	} else {
		c.values = map[string]interface{}{}
	}
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			if rel == "charts" || strings.HasPrefix(info.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			c.templates[c.name+"/"+rel] = string(body)
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" ||
			strings.HasPrefix(path.Base(rel), "."):
		default:
			c.files[rel] = body
		}
		return nil
	})
	return c, err
}

// metadata as .Chart shows it (Helm's chart.Metadata field names)
func (c *chart) metadata() map[string]interface{} {
	names := map[string]string{"apiVersion": "APIVersion", "appVersion": "AppVersion",
		"kubeVersion": "KubeVersion"}
	m := map[string]interface{}{}
	for k, v := range c.meta {
		key, ok := names[k]
		if !ok {
			key = strings.ToUpper(k[:1]) + k[1:]
		}
		m[key] = v
	}
	return m
}

type engine struct {
	tmpl     *template.Template
	included map[string]int
}

func (e *engine) funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["toToml"] = func(interface{}) (string, error) {
		return "", errors.New("toToml is not supported by this renderer")
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		if e.included[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		e.included[name]++
		defer func() { e.included[name]-- }()
		var buf strings.Builder
		err := e.tmpl.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := e.tmpl.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf strings.Builder
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	f["fail"] = func(msg string) (string, error) {
		return "", errors.New(msg)
	}
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

func checkYAML(name, text string) error {
	dec := yaml3.NewDecoder(strings.NewReader(text))
	for i := 0; ; i++ {
		var node yaml3.Node
		err := dec.Decode(&node)
		if err != nil {
			if err.Error() == "EOF" {
				return nil
			}
			return fmt.Errorf("%s: document %d is not valid YAML: %v", name, i+1, err)
		}
		var v interface{}
		if err := node.Decode(&v); err != nil {
			return fmt.Errorf("%s: document %d: %v", name, i+1, err)
		}
	}
}

func main() {
	var valueFiles, apiVersions listFlag
	flag.Var(&valueFiles, "f", "a values file merged over the chart's (repeatable)")
	flag.Var(&apiVersions, "api-versions", "an API version the cluster has, for .Capabilities (repeatable)")
	release := flag.String("name", "seekmesh", "the release name")
	namespace := flag.String("namespace", "default", "the release namespace")
	kube := flag.String("kube-version", "1.27.0", "the Kubernetes version for .Capabilities")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [-f values.yaml]... [--name R] [--namespace NS] CHART_DIR")
		os.Exit(2)
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	c, err := loadChart(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	values := c.values
	for _, f := range valueFiles {
		over, err := readValues(f)
		if err != nil {
			fail(err)
		}
		values = coalesce(values, over)
	}
	parts := strings.SplitN(strings.TrimPrefix(*kube, "v"), ".", 3)
	if len(parts) < 2 {
		fail(fmt.Errorf("--kube-version %q: expected MAJOR.MINOR[.PATCH]", *kube))
	}
	builtin := []string{"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
		"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1"}
	caps := capabilities{
		KubeVersion: kubeVersion{Version: "v" + strings.TrimPrefix(*kube, "v"), Major: parts[0], Minor: parts[1],
			GitVersion: "v" + strings.TrimPrefix(*kube, "v")},
		APIVersions: append(versionSet(builtin), apiVersions...),
		HelmVersion: map[string]string{"Version": "v3-compatible (helm-render)"},
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{"Name": *release, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart":        c.metadata(),
		"Capabilities": caps,
		"Files":        c.files,
		"Subcharts":    map[string]interface{}{},
	}

	e := &engine{included: map[string]int{}}
	e.tmpl = template.New("gotpl").Option("missingkey=zero")
	e.tmpl.Funcs(e.funcs())
	names := make([]string, 0, len(c.templates))
	for name := range c.templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := e.tmpl.New(name).Parse(c.templates[name]); err != nil {
			fail(fmt.Errorf("parse error in %s", err))
		}
	}
	var out bytes.Buffer
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		data := make(map[string]interface{}, len(top)+1)
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": c.name + "/templates"}
		var buf strings.Builder
		if err := e.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
			fail(fmt.Errorf("execution error at (%s): %v", name, err))
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if path.Base(name) == "NOTES.txt" || strings.TrimSpace(text) == "" {
			continue
		}
		if err := checkYAML(name, text); err != nil {
			fail(err)
		}
		// One document per Source, as helm template prints them
		for _, doc := range strings.Split("\n"+text, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			body := strings.TrimLeft(doc, "\n")
			if strings.TrimSpace(stripComments(body)) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimRight(body, "\n"))
		}
	}
	os.Stdout.Write(out.Bytes())
}

// stripComments drops whole-line comments, to tell an empty document.
func stripComments(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
