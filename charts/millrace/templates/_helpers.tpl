{{- define "millrace.name" -}}millrace-operator{{- end }}

{{- define "millrace.labels" -}}
app.kubernetes.io/name: {{ include "millrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "millrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "millrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "millrace.fullname" -}}
{{- if eq .Release.Name "millrace" -}}millrace-operator{{- else -}}{{ printf "%s-millrace-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end }}

{{/* The rules on namespaced resources; in a ClusterRole or in one Role per watched namespace. */}}
{{- define "millrace.namespacedRules" -}}
# The custom resources: watch them, add/remove the finalizer, write status.
- apiGroups: [millrace.io]
  resources: [clusters, topics, mirrormakers]
  verbs: [get, list, watch, patch, update]
- apiGroups: [millrace.io]
  resources: [clusters/status, topics/status, mirrormakers/status]
  verbs: [get, patch, update]
# What the operator creates with server-side apply (an apply that creates needs create).
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [statefulsets, deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch]
# Broker pods: readiness feeds the status.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# storage.deleteClaim: the brokers' claims are deleted with their Cluster.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, delete, deletecollection]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
