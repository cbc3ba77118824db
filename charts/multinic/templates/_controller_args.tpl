{{/*
The controller's command line, one argument per line: every controller.*, job.* and agent.* value
reaches the program here (a test runs the built binary's own parser over the rendered list).
*/}}
{{- define "multinic.controllerArgs" -}}
{{- $c := .Values.controller }}
{{- $j := .Values.job }}
controller
--log={{ .Values.log.level }}
--log-format={{ .Values.log.format }}
--namespace={{ include "multinic.watchNamespace" . }}
--mode={{ $c.mode }}
{{- if eq $c.mode "poll" }}
--poll-interval={{ $c.pollIntervalSeconds | int64 }}s
{{- end }}
--max-jobs-in-flight={{ $c.maxJobsInFlight | int64 }}
--max-failures={{ $c.maxFailures }}
--concurrency={{ $c.concurrency | int64 }}
--retry-max-attempts={{ $c.retry.maxAttempts | int64 }}
--retry-base-delay={{ $c.retry.baseDelaySeconds | int64 }}s
--retry-max-delay={{ $c.retry.maxDelaySeconds | int64 }}s
--node-missing-recheck={{ $c.nodeMissingRecheckSeconds | int64 }}s
--http-addr=0.0.0.0:{{ $c.httpPort | int64 }}
{{- if $c.leaderElection.enabled }}
--leader-election
--lease-name={{ $c.leaderElection.leaseName }}
--lease-duration={{ $c.leaderElection.leaseDurationSeconds | int64 }}s
--renew-interval={{ $c.leaderElection.renewIntervalSeconds | int64 }}s
--renew-deadline={{ $c.leaderElection.renewDeadlineSeconds | int64 }}s
{{- end }}
--job-image={{ include "multinic.image" . }}
--job-pull-policy={{ .Values.image.pullPolicy }}
{{- range .Values.imagePullSecrets }}
--job-pull-secret={{ .name }}
{{- end }}
--job-backoff-limit={{ $j.backoffLimit | int64 }}
--job-active-deadline={{ $j.activeDeadlineSeconds | int64 }}
--job-ttl={{ $j.ttlSecondsAfterFinished | int64 }}
{{- range $j.tolerations }}
--job-toleration={{ include "multinic.tolerationArg" . }}
{{- end }}
{{- with $j.resources.requests }}
--job-requests={{ include "multinic.quantities" . }}
{{- end }}
{{- with $j.resources.limits }}
--job-limits={{ include "multinic.quantities" . }}
{{- end }}
{{- if $j.privileged }}
--job-privileged
{{- end }}
{{- with $j.priorityClassName }}
--job-priority-class={{ . }}
{{- end }}
{{- with $j.seLinuxType }}
--job-selinux-type={{ . }}
{{- end }}
--job-dbus-socket={{ $j.dbusSocket | default "off" }}
{{- range (include "multinic.agentEnv" . | splitList "\n") }}
{{- if . }}
--agent-env={{ . }}
{{- end }}
{{- end }}
{{- end }}
