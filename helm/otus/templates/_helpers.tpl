{{/* Names and labels shared by every template. */}}
{{- define "otus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "otus.operatorName" -}}{{ include "otus.fullname" . }}-operator{{- end -}}
{{- define "otus.peeringName" -}}{{ include "otus.fullname" . }}{{- end -}}
{{- define "otus.webhookConfig" -}}{{ include "otus.fullname" . }}-sidecar.otus.io{{- end -}}
{{- define "otus.webhookService" -}}{{ include "otus.fullname" . }}-webhook{{- end -}}

{{- define "otus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: otus
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "otus.operatorSelector" -}}
app.kubernetes.io/name: otus-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "otus.operatorImage" -}}
{{ .Values.operator.image.repository }}:{{ .Values.operator.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "otus.agentImage" -}}
{{ .Values.agent.image.repository }}:{{ .Values.agent.image.tag | default .Chart.AppVersion }}
{{- end -}}
