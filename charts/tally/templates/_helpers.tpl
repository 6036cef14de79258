{{/*
Names are fixed, not derived from the release name: the operator renders tally-ingest, tally-forwarder
and tally-config in its namespace, so there is one Tally per namespace and every name is predictable.
*/}}

{{/* Labels of every object; pass (dict "ctx" $ "component" "operator"). */}}
{{- define "tally.labels" -}}
app.kubernetes.io/name: tally
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* The labels a component's pods carry, whoever renders them (the chart, or the operator). */}}
{{- define "tally.selector" -}}
app.kubernetes.io/name: tally
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "tally.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* The Secret holding DATABASE_URL: the one given, or the bundled PostgreSQL's. */}}
{{- define "tally.databaseSecret" -}}
{{- .Values.database.existingSecret | default "tally-database" -}}
{{- end }}

{{- define "tally.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}
{{ .Values.database.existingSecretKey }}
{{- else -}}
url
{{- end -}}
{{- end }}

{{/* The base of the webhook URLs: webhook.publicBaseUrl, else the Ingress host. */}}
{{- define "tally.publicBaseUrl" -}}
{{- if .Values.webhook.publicBaseUrl -}}
{{ trimSuffix "/" .Values.webhook.publicBaseUrl }}
{{- else if and .Values.webhook.ingress.enabled .Values.webhook.ingress.host -}}
{{ ternary "https" "http" (gt (len .Values.webhook.ingress.tls) 0) }}://{{ .Values.webhook.ingress.host }}
{{- end -}}
{{- end }}
