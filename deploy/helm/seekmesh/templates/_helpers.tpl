{{/* Names, labels and the pieces every seekmesh pod shares. */}}

{{- define "seekmesh.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix: the release name, or release-chart */}}
{{- define "seekmesh.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "seekmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
app.kubernetes.io/name: {{ include "seekmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: seekmesh
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "router") */}}
{{- define "seekmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "seekmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "seekmesh.componentLabels" -}}
{{ include "seekmesh.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "seekmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "seekmesh.secretName" -}}
{{- default (include "seekmesh.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Where each service's admin port (/healthz, /readyz, /metrics) is */}}
{{/* The CURVE key lines one role gets: its own line whole, the other roles'
     public keys only: (dict "root" $ "role" "router") */}}
{{- define "seekmesh.curveFor" -}}
{{- $text := .root.Values.curve.keys | default (.root.Files.Get "files/dev-curve-keys") -}}
{{- $role := .role -}}
{{- $own := false -}}
{{- range $line := splitList "\n" $text -}}
{{- $f := regexSplit "\\s+" (trim $line) -1 -}}
{{- if and (ge (len $f) 2) (not (hasPrefix "#" (first $f))) -}}
{{- if eq (first $f) $role -}}
{{- if lt (len $f) 3 -}}
{{- fail (printf "curve.keys: the %s line has no secret key" $role) -}}
{{- end -}}
{{- $own = true -}}
{{ join " " (slice $f 0 3) }}
{{ else -}}
{{ first $f }} {{ index $f 1 }}
{{ end -}}
{{- end -}}
{{- end -}}
{{- if not $own -}}
{{- fail (printf "curve.keys: no line for %s" $role) -}}
{{- end -}}
{{- end -}}

{{- define "seekmesh.curveSecretName" -}}
{{- default (printf "%s-curve" (include "seekmesh.fullname" .)) .Values.curve.existingSecret -}}
{{- end -}}

{{- define "seekmesh.adminPort" -}}
{{- get (dict "ingress" 9080 "router" 9081 "connector" 9082 "cache" 9083 "audit" 9084 "mock" 9109) . -}}
{{- end -}}

{{- define "seekmesh.redisUrl" -}}
{{- if .Values.redis.external.url -}}
{{- .Values.redis.external.url -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:6379" (include "seekmesh.fullname" .) -}}
{{- else -}}
{{- fail "redis: set redis.enabled or redis.external.url" -}}
{{- end -}}
{{- end -}}

{{/* The models: the values', else the mock's or DeepSeek's */}}
{{- define "seekmesh.models" -}}
{{- $models := .Values.models -}}
{{- if not $models -}}
{{- $auth := dict "type" "api_key" "key_name" "Authorization" "key_env" "SEEKMESH_UPSTREAM_API_KEY" -}}
{{- if .Values.mock.enabled -}}
{{- $mock := printf "%s-mock:9100/v1/chat/completions" (include "seekmesh.fullname" .) -}}
{{- $models = list
  (dict "name" "deepseek-chat" "type" "llm" "endpoint" (printf "http://%s" $mock) "auth" $auth "max_concurrency" 64 "aliases" (list "deepseek-v4-flash"))
  (dict "name" "deepseek-reasoner" "type" "llm" "endpoint" (printf "http://%s" $mock) "auth" $auth "max_concurrency" 64 "aliases" (list "deepseek-v4-pro"))
  (dict "name" "deepseek-chat-ws" "type" "llm" "endpoint" (printf "ws://%s" $mock) "upstream_model" "deepseek-chat" "auth" $auth "max_concurrency" 64 "stream_config" (dict "chunk_size" 64 "delimiter" "\n\n")) -}}
{{- else -}}
{{- $url := "https://api.deepseek.com/chat/completions" -}}
{{- $models = list
  (dict "name" "deepseek-chat" "type" "llm" "endpoint" $url "auth" $auth "max_concurrency" 64)
  (dict "name" "deepseek-reasoner" "type" "llm" "endpoint" $url "auth" $auth "max_concurrency" 64)
  (dict "name" "deepseek-v4-flash" "type" "llm" "endpoint" $url "auth" $auth "max_concurrency" 64)
  (dict "name" "deepseek-v4-pro" "type" "llm" "endpoint" $url "auth" $auth "max_concurrency" 64) -}}
{{- end -}}
{{- end -}}
{{- toJson $models -}}
{{- end -}}

{{/* The clients' keys, with plain keys replaced by their SHA-256 */}}
{{- define "seekmesh.keys" -}}
{{- $keys := list -}}
{{- range .Values.keys -}}
{{- $key := omit . "key" -}}
{{- if .key -}}
{{- $_ := set $key "key_sha256" (sha256sum .key) -}}
{{- end -}}
{{- $keys = append $keys $key -}}
{{- end -}}
{{- toJson $keys -}}
{{- end -}}

{{/* config.json: the mesh's addresses on Kubernetes (names of the headless
     Services, everything listening on every interface), then the values'
     config over it.  The ingress's reply address comes from its pod IP
     (SEEKMESH_INGRESS_REPLY_ADVERTISE in the Deployment). */}}
{{- define "seekmesh.config" -}}
{{- $full := include "seekmesh.fullname" . -}}
{{- $router := printf "%s-router" $full -}}
{{- $config := dict
  "mesh" (dict "drain_ms" (mul .Values.drainSeconds 1000) "port_stride" 10)
  "redis" (dict "url" (include "seekmesh.redisUrl" .))
  "ingress" (dict
    "listen" "0.0.0.0:8080"
    "admin_listen" "0.0.0.0:9080"
    "reply_endpoint" "tcp://0.0.0.0:5559"
    "routers" (list (printf "tcp://%s:5555" $router))
    "audit_endpoint" (printf "tcp://%s-audit:5558" $full))
  "router" (dict
    "listen" "tcp://0.0.0.0:5555"
    "connector_listen" "tcp://0.0.0.0:5556"
    "admin_listen" "0.0.0.0:9081"
    "admin_token_env" "SEEKMESH_ADMIN_TOKEN"
    "replicas" .Values.router.replicas)
  "connector" (dict
    "admin_listen" "0.0.0.0:9082"
    "routers" (list (printf "tcp://%s:5556" $router)))
  "audit" (dict
    "listen" "tcp://0.0.0.0:5558"
    "admin_listen" "0.0.0.0:9084"
    "dir" "/var/lib/seekmesh/audit"
    "keys_env" "")
  "models" (include "seekmesh.models" . | fromJsonArray)
  "keys" (include "seekmesh.keys" . | fromJsonArray) -}}
{{- if or .Values.secrets.auditKeys .Values.secrets.existingSecret -}}
{{- $_ := set $config.audit "key_file" "/etc/seekmesh/secrets/audit_keys" -}}
{{- end -}}
{{- if .Values.cache.enabled -}}
{{- $cache := printf "tcp://%s-cache:5557" $full -}}
{{- $_ := set $config "cache" (dict
    "listen" "tcp://0.0.0.0:5557"
    "admin_listen" "0.0.0.0:9083"
    "l1_max_bytes" (int64 .Values.cache.l1MaxBytes)
    "keys_env" "") -}}
{{- if or .Values.secrets.cacheKeys .Values.secrets.existingSecret -}}
{{- $_ := set $config.cache "key_file" "/etc/seekmesh/secrets/cache_keys" -}}
{{- end -}}
{{- $_ := set $config.router "caches" (list $cache) -}}
{{- $_ := set $config.connector "caches" (list $cache) -}}
{{- else -}}
{{- $_ := set $config.router "caches" (list) -}}
{{- $_ := set $config.connector "caches" (list) -}}
{{- end -}}
{{- if .Values.mock.enabled -}}
{{- $_ := set $config "mock" (dict "listen" "0.0.0.0:9100" "admin_listen" "0.0.0.0:9109" "api_key_env" "SEEKMESH_UPSTREAM_API_KEY") -}}
{{- end -}}
{{- toPrettyJson (mergeOverwrite $config (deepCopy .Values.config)) -}}
{{- end -}}

{{/* The container pieces every seekmesh service shares:
     (dict "root" $ "component" "router" "secrets" (list "SEEKMESH_ADMIN_TOKEN")) */}}
{{- define "seekmesh.env" -}}
- name: SEEKMESH_CONFIG
  value: /etc/seekmesh/config/config.json
- name: SEEKMESH_SECRETS_DIR
  value: /etc/seekmesh/secrets
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "seekmesh.volumeMounts" -}}
- name: config
  mountPath: /etc/seekmesh/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if or .secrets .curve }}
- name: secrets
  mountPath: /etc/seekmesh/secrets
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes: the config, /tmp, and the secrets this service reads, from
     the chart's (or your) Secret, and its CURVE keys from the curve Secret,
     together in /etc/seekmesh/secrets.  (dict "root" $ "component" C
     "secrets" (list KEY...) "curve" true) */}}
{{- define "seekmesh.volumes" -}}
- name: config
  configMap:
    name: {{ include "seekmesh.fullname" .root }}-config
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if or .secrets .curve }}
- name: secrets
  projected:
    defaultMode: 288    # 0440
    sources:
    {{- if .secrets }}
      - secret:
          name: {{ include "seekmesh.secretName" .root }}
          optional: true
          items:
          {{- range .secrets }}
            - key: {{ . }}
              path: {{ . }}
          {{- end }}
    {{- end }}
    {{- if .curve }}
      - secret:
          name: {{ include "seekmesh.curveSecretName" .root }}
          items:
            - key: curve_{{ .component }}
              path: SEEKMESH_CURVE_KEYS
    {{- end }}
{{- end }}
{{- end -}}

{{- define "seekmesh.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 2
{{- end -}}

{{/* preStop: a pause before SIGTERM, so that Services and peers stop
     sending here before the service starts draining */}}
{{- define "seekmesh.lifecycle" -}}
lifecycle:
  preStop:
    exec:
      command: ["sleep", {{ .Values.preStopSeconds | quote }}]
{{- end -}}

{{- define "seekmesh.podSpec" -}}
{{- $root := .root -}}
{{- if lt (int $root.Values.terminationGracePeriodSeconds) (int (add $root.Values.preStopSeconds $root.Values.drainSeconds 1)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSeconds + drainSeconds (%v + %v)" $root.Values.terminationGracePeriodSeconds $root.Values.preStopSeconds $root.Values.drainSeconds) -}}
{{- end -}}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
securityContext:
{{ toYaml $root.Values.podSecurityContext | indent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{- define "seekmesh.podAnnotations" -}}
checksum/config: {{ include "seekmesh.config" .root | sha256sum }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
