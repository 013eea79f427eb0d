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
{{- $preStopMs := mul (include "edge-gateway.preStopSeconds" . | int) 1000 -}}
{{- if .Values.ingress.deregistrationDelaySeconds -}}
{{- /* The drain sends its reconnect frames over up to 2 s after DRAIN_DELAY_MS. */ -}}
{{- if le (mul (int .Values.ingress.deregistrationDelaySeconds) 1000) (add $preStopMs .Values.drain.delayMs 2000) -}}
{{- fail (printf "ingress.deregistrationDelaySeconds (%v) must exceed preStop (%d s) + drain.delayMs (%v ms) + 2 s: the ALB would close WebSockets before the drain's reconnect frame" .Values.ingress.deregistrationDelaySeconds (div $preStopMs 1000) .Values.drain.delayMs) -}}
{{- end -}}
{{- .Values.ingress.deregistrationDelaySeconds -}}
{{- else -}}
{{- add (div $preStopMs 1000) (div .Values.drain.delayMs 1000) 5 -}}
{{- end -}}
{{- end -}}

{{/*
The ALB's idle timeout: past the gateway's WebSocket pings and event-stream
comments (their defaults, 30 s and 10 s, unless config sets them), which are
all an idle WebSocket or stream sends; the ALB closes a connection idle longer.
*/}}
{{- define "edge-gateway.idleTimeoutSeconds" -}}
{{- $ping := int (default 30000 .Values.config.WS_PING_INTERVAL_MS) -}}
{{- $heartbeat := int (default 10000 .Values.config.SSE_HEARTBEAT_MS) -}}
{{- if le (mul (int .Values.ingress.idleTimeoutSeconds) 1000) (max $ping $heartbeat) -}}
{{- fail (printf "ingress.idleTimeoutSeconds (%v) must exceed WS_PING_INTERVAL_MS (%d ms) and SSE_HEARTBEAT_MS (%d ms): the ALB would close idle WebSockets and event streams" .Values.ingress.idleTimeoutSeconds $ping $heartbeat) -}}
{{- end -}}
{{- .Values.ingress.idleTimeoutSeconds -}}
{{- end -}}

{{- define "edge-gateway.gracePeriodSeconds" -}}
{{- $preStopMs := mul (include "edge-gateway.preStopSeconds" . | int) 1000 -}}
{{- if .Values.drain.terminationGracePeriodSeconds -}}
{{- /* Past it the kubelet kills the pod mid-drain: queued records and reconnect frames are lost. */ -}}
{{- if le (mul (int .Values.drain.terminationGracePeriodSeconds) 1000) (add $preStopMs .Values.drain.timeoutMs) -}}
{{- fail (printf "drain.terminationGracePeriodSeconds (%v) must exceed preStop (%d s) + drain.timeoutMs (%v ms): the kubelet would kill pods mid-drain" .Values.drain.terminationGracePeriodSeconds (div $preStopMs 1000) .Values.drain.timeoutMs) -}}
{{- end -}}
{{- .Values.drain.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (div $preStopMs 1000) (div .Values.drain.timeoutMs 1000) 10 -}}
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

{{- /* resources.limits.memory in MiB (a Kubernetes quantity: 1.5Gi, 512Mi, 2G, bytes), for the render's memory checks. */ -}}
{{- define "edge-gateway.memoryLimitMiB" -}}
{{- $limit := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $limit -}}
{{- $suffix := trimPrefix $number $limit -}}
{{- $bytes := dict "" 1.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- if or (eq $number "") (not (hasKey $bytes $suffix)) -}}
{{- fail (printf "resources.limits.memory (%s): write it as a number with Ki, Mi, Gi, Ti, k, M, G, T or none (bytes), so the chart can check the memory budget against it" $limit) -}}
{{- end -}}
{{- floor (divf (mulf (float64 $number) (get $bytes $suffix)) 1048576.0) | int -}}
{{- end -}}

{{- /*
The PodMonitor's scrape interval. GatewayDrainStuck fires on a drain seen past its threshold
(files/alerts.yml): a stuck drain is cut at drain.timeoutMs, so a scrape must fall between the
two, or the alert never sees the drains it is for. Checked when the chart ships the rule.
*/ -}}
{{- define "edge-gateway.podMonitorInterval" -}}
{{- $interval := toString .Values.monitoring.podMonitor.interval -}}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $interval) -}}
{{- fail (printf "monitoring.podMonitor.interval (%s): write it as a Prometheus duration (15s, 1m, 1m30s)" $interval) -}}
{{- end -}}
{{- $intervalMs := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" $interval -1 -}}
{{- $n := regexFind "^[0-9]+" . | int -}}
{{- $unit := trimPrefix (toString $n) . -}}
{{- $intervalMs = add $intervalMs (mul $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit)) -}}
{{- end -}}
{{- /* The PodMonitor's scrapeTimeout: Prometheus refuses a scrape config whose timeout exceeds its interval. */ -}}
{{- if lt $intervalMs 10000 -}}
{{- fail (printf "monitoring.podMonitor.interval (%s) must be at least the PodMonitor's scrapeTimeout (10s): Prometheus refuses the scrape config otherwise" $interval) -}}
{{- end -}}
{{- if .Values.monitoring.prometheusRule.enabled -}}
{{- $thresholdS := 0 -}}
{{- range (.Files.Get "files/alerts.yml" | fromYaml).groups -}}
{{- range .rules -}}
{{- if eq (toString .alert) "GatewayDrainStuck" -}}
{{- $thresholdS = regexFind "[0-9]+$" (trim .expr) | int -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if gt (add (mul $thresholdS 1000) $intervalMs) (int .Values.drain.timeoutMs) -}}
{{- fail (printf "monitoring.podMonitor.interval (%s) + GatewayDrainStuck's threshold (%d s) must not exceed drain.timeoutMs (%v ms): a stuck drain would be cut before any scrape saw it past the threshold, and the alert would not fire" $interval $thresholdS .Values.drain.timeoutMs) -}}
{{- end -}}
{{- end -}}
{{- $interval -}}
{{- end -}}
