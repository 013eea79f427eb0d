{{- define "edge-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The alerts and the PodMonitor's job label rely on app.kubernetes.io/name being edge-gateway. */}}
{{- define "edge-gateway.selectorLabels" -}}
app.kubernetes.io/name: edge-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "edge-gateway.labels" -}}
{{ include "edge-gateway.selectorLabels" . }}
app.kubernetes.io/part-of: edge-gateway
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "edge-gateway.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "edge-gateway.fullname" .) -}}
{{- end -}}

{{- define "edge-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "edge-gateway.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "edge-gateway.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .Values.image.digest) -}}
{{- fail "image.digest must be sha256:<64 hex digits>" -}}
{{- end -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- $tag := .Values.image.tag -}}
{{- if ne .Values.image.target "bun" -}}
{{- $tag = printf "%s-%s" .Values.image.tag .Values.image.target -}}
{{- end -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* preStop: with the Ingress, long enough for the ALB to stop routing to the pod. */}}
{{- define "edge-gateway.preStopSeconds" -}}
{{- if .Values.drain.preStopSeconds -}}
{{- .Values.drain.preStopSeconds -}}
{{- else if .Values.ingress.enabled -}}
25
{{- else -}}
5
{{- end -}}
{{- end -}}

{{/*
The ALB's deregistration delay: past preStop + DRAIN_DELAY_MS + 5 s, so the
drain's reconnect frame and 1001 reach the WebSockets still open through the
ALB before it closes them.
*/}}
{{- define "edge-gateway.deregistrationDelaySeconds" -}}
{{- if .Values.ingress.deregistrationDelaySeconds -}}
{{- .Values.ingress.deregistrationDelaySeconds -}}
{{- else -}}
{{- add (include "edge-gateway.preStopSeconds" . | int) (div .Values.drain.delayMs 1000) 5 -}}
{{- end -}}
{{- end -}}

{{- define "edge-gateway.gracePeriodSeconds" -}}
{{- if .Values.drain.terminationGracePeriodSeconds -}}
{{- .Values.drain.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (include "edge-gateway.preStopSeconds" . | int) (div .Values.drain.timeoutMs 1000) 10 -}}
{{- end -}}
{{- end -}}

{{- define "edge-gateway.trustProxy" -}}
{{- if ne (toString .Values.trustProxy) "" -}}
{{- .Values.trustProxy -}}
{{- else if .Values.ingress.enabled -}}
1
{{- else -}}
0
{{- end -}}
{{- end -}}
