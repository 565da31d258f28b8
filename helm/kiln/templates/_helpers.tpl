{{/* Name of the chart's objects: the release name, with "kiln" unless it already says so. */}}
{{- define "kiln.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "kiln" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kiln" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "kiln.selector" (list . "gateway") */}}
{{- define "kiln.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "kiln.componentLabels" -}}
{{ include "kiln.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* image reference: include "kiln.image" (list . .Values.gateway.image) */}}
{{- define "kiln.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- $tag := $img.tag | default $root.Chart.AppVersion -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}

{{- define "kiln.routerAddress" -}}
{{- printf "%s-router:%d" (include "kiln.fullname" .) (int .Values.router.port) -}}
{{- end -}}

{{/* Where the model lives inside the pods (KILN_MODEL): a Hub repo id, or a directory on the PVC. */}}
{{- define "kiln.modelRef" -}}
{{- if eq .Values.model.source "pvc" -}}
{{- printf "/models/%s" (.Values.model.pvc.subPath | default "") | trimSuffix "/" -}}
{{- else -}}
{{- .Values.model.repoId -}}
{{- end -}}
{{- end -}}

{{- define "kiln.servedName" -}}
{{- .Values.model.servedName | default (ternary (base (include "kiln.modelRef" .)) .Values.model.repoId (eq .Values.model.source "pvc")) -}}
{{- end -}}

{{/* Seconds a pod needs to stop cleanly: preStop sleep + drain + a margin, or more if asked. */}}
{{- define "kiln.terminationGrace" -}}
{{- $min := add .Values.drain.preStopSleepSeconds .Values.drain.timeoutSeconds 10 -}}
{{- max $min (.Values.drain.terminationGracePeriodSeconds | default 0) -}}
{{- end -}}

{{/* Environment every Kiln container shares: model, cache, tracing, extra env. */}}
{{- define "kiln.commonEnv" -}}
- name: KILN_MODEL
  value: {{ include "kiln.modelRef" . | quote }}
- name: KILN_CACHE_DIR
  value: /cache/hub
- name: KILN_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- if and (eq .Values.model.source "hub") .Values.model.hfTokenSecret.name }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.model.hfTokenSecret.name }}
      key: {{ .Values.model.hfTokenSecret.key }}
{{- end }}
{{- if .Values.model.hfEndpoint }}
- name: HF_ENDPOINT
  value: {{ .Values.model.hfEndpoint | quote }}
{{- end }}
{{- if .Values.lora.modules }}
- name: KILN_LORA_MODULES
  value: {{ include "kiln.loraModules" . | quote }}
- name: KILN_MAX_LORAS
  value: {{ .Values.lora.maxLoras | quote }}
{{- end }}
{{- if .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.otlpEndpoint | quote }}
{{- end }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* KILN_LORA_MODULES: name=source pairs, comma-separated (source: a directory or a Hub repo id). */}}
{{- define "kiln.loraModules" -}}
{{- $pairs := list -}}
{{- range .Values.lora.modules -}}
{{- $pairs = append $pairs (printf "%s=%s" .name .source) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* Volumes every Kiln pod mounts: the model cache (and the model PVC). */}}
{{- define "kiln.modelVolumes" -}}
- name: model-cache
  {{- if .Values.modelCache.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.modelCache.existingClaim | default (printf "%s-model-cache" (include "kiln.fullname" .)) }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if eq .Values.model.source "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ .Values.model.pvc.claimName }}
    readOnly: true
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "kiln.modelMounts" -}}
- name: model-cache
  mountPath: /cache
{{- if eq .Values.model.source "pvc" }}
- name: model
  mountPath: /models
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "kiln.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kiln.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
