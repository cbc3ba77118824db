{{/*
Names, labels and the small translations from values to the program's command-line syntax.
*/}}

{{- define "multinic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "multinic.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "multinic.controllerName" -}}
{{- printf "%s-controller" (include "multinic.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "multinic.agentName" -}}
{{- printf "%s-agent" (include "multinic.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "multinic.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass (dict "ctx" $ "component" "controller"). */}}
{{- define "multinic.labels" -}}
helm.sh/chart: {{ include "multinic.chart" .ctx }}
{{ include "multinic.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: multinic
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select a component's Pods; pass (dict "ctx" $ "component" "controller"). */}}
{{- define "multinic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "multinic.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "multinic.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "multinic.controllerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The one image; a pinned digest decides what runs, the tag stays for people to read. */}}
{{- define "multinic.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* Namespace of the MultiNicNodeConfigs and their Jobs. */}}
{{- define "multinic.watchNamespace" -}}
{{- default .Release.Namespace .Values.controller.watchNamespace }}
{{- end }}

{{/*
A Kubernetes toleration as the controller's `key[=value][:Effect]` syntax (`*` tolerates all).
*/}}
{{- define "multinic.tolerationArg" -}}
{{- if hasKey . "tolerationSeconds" }}
{{- fail "job.tolerations: tolerationSeconds is not supported for agent Jobs" }}
{{- end }}
{{- $op := default "Equal" .operator }}
{{- if and (not .key) (eq $op "Exists") (not .effect) }}*
{{- else }}
{{- if not .key }}{{ fail "job.tolerations: a toleration without a key must be operator: Exists with no effect" }}{{ end }}
{{- .key }}
{{- if eq $op "Equal" }}={{ default "" .value }}{{ end }}
{{- with .effect }}:{{ . }}{{ end }}
{{- end }}
{{- end }}

{{/* A resource map ({cpu: 10m, memory: 32Mi}) as `cpu=10m,memory=32Mi`. */}}
{{- define "multinic.quantities" -}}
{{- $pairs := list }}
{{- range $name, $qty := . }}
{{- $pairs = append $pairs (printf "%s=%v" $name $qty) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
The agent's options as NAME=value pairs of the environment the agent reads (its clap `env`
names). The single place that maps `agent.*` values to the program; used for the Jobs (through
the controller) and the DaemonSet alike. One pair per line.
*/}}
{{- define "multinic.agentEnv" -}}
{{- $a := .Values.agent }}
{{- with $a.os }}
MULTINIC_OS={{ . }}
{{- end }}
MULTINIC_POLICY_ROUTING={{ $a.policyRouting }}
MULTINIC_ROUTE_TABLE_BASE={{ $a.routeTableBase | int64 }}
MULTINIC_ROUTE_METRIC_BASE={{ $a.routeMetricBase | int64 }}
MULTINIC_RULE_PRIORITY_BASE={{ $a.rulePriorityBase | int64 }}
MULTINIC_NOPREFIXROUTE={{ $a.noprefixroute }}
MULTINIC_SYSCTLS={{ $a.sysctls }}
MULTINIC_ALLOW_PRIMARY={{ $a.allowPrimary }}
{{- with $a.protectAddresses }}
MULTINIC_PROTECTED_ADDRESSES={{ join "," . }}
{{- end }}
{{- with $a.probe }}
{{- if eq . "none" }}
MULTINIC_NO_PROBE=true
{{- else }}
MULTINIC_PROBE={{ . }}
{{- end }}
{{- end }}
MULTINIC_HANDOFF={{ $a.handoff }}
{{- end }}
