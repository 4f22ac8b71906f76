{{- define "pltf.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pltf.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pltf.labels" -}}
{{ include "pltf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "pltf.claimName" -}}
{{- .Values.sharedVolume.existingClaim | default (printf "%s-data" (include "pltf.fullname" .)) -}}
{{- end -}}

{{/* SQLite is one process's database: replicas must share PostgreSQL. */}}
{{- define "pltf.checkValues" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.database.existingSecret) -}}
{{- fail "replicaCount > 1 needs database.existingSecret: replicas share the run queue in PostgreSQL, not in SQLite" -}}
{{- end -}}
{{- end -}}
