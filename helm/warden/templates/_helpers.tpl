{{/* The chart name, or nameOverride. */}}
{{- define "warden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<name>, or fullnameOverride; the release name alone when it holds the name. */}}
{{- define "warden.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "warden.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "warden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable across upgrades (a Deployment's selector cannot change). */}}
{{- define "warden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "warden.labels" -}}
helm.sh/chart: {{ include "warden.chart" . }}
{{ include "warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: warden
{{- end -}}

{{/* A component's selector labels: (dict "root" $ "component" "api"). */}}
{{- define "warden.componentSelector" -}}
{{ include "warden.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "warden.componentLabels" -}}
{{ include "warden.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "warden.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "warden.secretName" -}}
{{- default (printf "%s-secrets" (include "warden.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "warden.redisHost" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s-redis" (include "warden.fullname" .) -}}
{{- else -}}
{{- required "redis.external.host is required when redis.enabled is false" .Values.redis.external.host -}}
{{- end -}}
{{- end -}}

{{- define "warden.redisPort" -}}
{{- if .Values.redis.enabled -}}6379{{- else -}}{{ .Values.redis.external.port }}{{- end -}}
{{- end -}}

{{/* Whether Redis has a password: always in-chart (generated if not given). */}}
{{- define "warden.redisAuth" -}}
{{- if or .Values.redis.enabled .Values.secrets.redisPassword .Values.secrets.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* WARDEN_REDIS_URL, with the password from the Secret through $(REDIS_PASSWORD). */}}
{{- define "warden.redisUrl" -}}
{{- $scheme := ternary "rediss" "redis" (and (not .Values.redis.enabled) .Values.redis.external.tls) -}}
{{- $db := ternary 0 .Values.redis.external.db .Values.redis.enabled -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (eq (include "warden.redisAuth" .) "true") -}}
{{- printf "%s://%s%s:%s/%v" $scheme $auth (include "warden.redisHost" .) (include "warden.redisPort" .) $db -}}
{{- end -}}

{{/* The env every Warden container has: settings from the ConfigMap, secrets by ref. */}}
{{- define "warden.env" -}}
{{- if eq (include "warden.redisAuth" .) "true" }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "warden.secretName" . }}
      key: redis-password
{{- end }}
- name: WARDEN_REDIS_URL
  value: {{ include "warden.redisUrl" . | quote }}
{{- end -}}

{{/* Every Warden container: nothing beyond what `warden` needs. */}}
{{- define "warden.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "warden.podScheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A ScaledObject for workers when KEDA is asked for, or is there and `auto`. */}}
{{- define "warden.keda" -}}
{{- $mode := toString .Values.workers.autoscaling.keda -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) -}}true{{- end -}}
{{- end -}}

{{- define "warden.serviceMonitor" -}}
{{- $mode := toString .Values.metrics.serviceMonitor -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}true{{- end -}}
{{- end -}}

{{/* The worker pools this release runs: name -> values. */}}
{{- define "warden.pools" -}}
{{- $pools := dict "sandbox" .Values.workers.sandbox -}}
{{- if .Values.workers.jail.enabled -}}
{{- $_ := set $pools "jail" .Values.workers.jail -}}
{{- end -}}
{{- toYaml $pools -}}
{{- end -}}

{{/* Egress every Warden pod needs: Redis and the cluster DNS. */}}
{{- define "warden.egressRedisDns" -}}
- to:
    {{- if .Values.redis.enabled }}
    - podSelector:
        matchLabels: {{- include "warden.componentSelector" (dict "root" . "component" "redis") | nindent 10 }}
    {{- else if .Values.redis.external.egressTo }}
    {{- toYaml .Values.redis.external.egressTo | nindent 4 }}
    {{- else }}
    - ipBlock: {cidr: "0.0.0.0/0"}
    - ipBlock: {cidr: "::/0"}
    {{- end }}
  ports:
    - {port: {{ include "warden.redisPort" . }}, protocol: TCP}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
  {{- with .Values.networkPolicy.dnsTo }}
  to: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* A seccomp or AppArmor profile: localhostProfile only with type Localhost (values merge). */}}
{{- define "warden.profile" -}}
type: {{ .type }}
{{- if eq .type "Localhost" }}
localhostProfile: {{ required "a Localhost profile needs localhostProfile" .localhostProfile }}
{{- end }}
{{- end -}}
