{{/* Labels of every object: the one deploy/ gives them, and Helm's own. */}}
{{- define "trellis.labels" -}}
app.kubernetes.io/name: trellis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The host's ServiceAccount as a binding's subject. */}}
{{- define "trellis.hostSubject" -}}
subjects:
- kind: ServiceAccount
  name: trellis
  namespace: {{ .Release.Namespace }}
{{- end }}
