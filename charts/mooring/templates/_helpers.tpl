{{- define "mooring.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mooring.selectorLabels" -}}
app.kubernetes.io/name: mooring-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mooring.labels" -}}
{{ include "mooring.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mooring.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mooring.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mooring.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mooring.inferenceServerImage" -}}
{{- printf "%s:%s" .Values.inferenceServerImage.repository (default .Chart.AppVersion .Values.inferenceServerImage.tag) -}}
{{- end -}}

{{- define "mooring.chatServerImage" -}}
{{- printf "%s:%s" .Values.chatServerImage.repository (default .Chart.AppVersion .Values.chatServerImage.tag) -}}
{{- end -}}

{{- /* The metrics Service's own labels, which the ServiceMonitor selects. */}}
{{- define "mooring.metricsSelectorLabels" -}}
{{ include "mooring.selectorLabels" . }}
app.kubernetes.io/component: metrics
{{- end -}}
