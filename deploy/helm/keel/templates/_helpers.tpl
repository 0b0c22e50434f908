{{/* Names and labels. */}}
{{- define "keel.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keel.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "keel.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keel.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{/* Checks: scale mode needs its Secrets named; embedded mode has exactly one replica. */}}
{{- define "keel.validate" -}}
{{- if not (has .Values.mode (list "embedded" "scale")) -}}
{{- fail (printf "mode must be embedded or scale, not %q" .Values.mode) -}}
{{- end -}}
{{- if eq .Values.mode "scale" -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "scale mode: set database.existingSecret to a Secret holding the PostgreSQL URL (never the URL itself)" -}}
{{- end -}}
{{- if not (hasPrefix "s3://" .Values.artifacts.url) -}}
{{- fail "scale mode: set artifacts.url to s3://BUCKET/PREFIX (replicas share no disk)" -}}
{{- end -}}
{{- else -}}
{{- if or (gt (int .Values.serve.replicas) 1) .Values.autoscaling.enabled -}}
{{- fail "embedded mode runs one replica (SQLite on a ReadWriteOnce volume): use values-scale.yaml for more" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The environment every Keel container gets: where state is, secrets by reference only. */}}
{{- define "keel.env" -}}
- name: KEEL_HOME
  value: /var/lib/keel
- name: KEEL_CONFIG
  value: /etc/keel/keel.toml
{{- if eq .Values.mode "scale" }}
- name: KEEL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
- name: KEEL_DB_POOL_SIZE
  value: {{ .Values.database.poolSize | quote }}
- name: KEEL_ARTIFACT_URL
  value: {{ .Values.artifacts.url | quote }}
{{- if .Values.artifacts.endpoint }}
- name: KEEL_S3_ENDPOINT
  value: {{ .Values.artifacts.endpoint | quote }}
{{- end }}
- name: KEEL_S3_REGION
  value: {{ .Values.artifacts.region | quote }}
{{- if .Values.artifacts.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.artifacts.existingSecret }}
      key: {{ .Values.artifacts.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.artifacts.existingSecret }}
      key: {{ .Values.artifacts.secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "keel.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
