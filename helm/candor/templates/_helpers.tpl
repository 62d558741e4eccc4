{{- define "candor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "candor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "candor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "candor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "member") */}}
{{- define "candor.selector" -}}
app.kubernetes.io/name: {{ include "candor.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "candor.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "candor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "candor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "candor.keysSecret" -}}
{{- default (printf "%s-keys" (include "candor.fullname" .)) .Values.keys.existingSecret -}}
{{- end -}}

{{- define "candor.headless" -}}
{{- printf "%s-headless" (include "candor.fullname" .) -}}
{{- end -}}

{{/* The stable DNS suffix of member pods: .<headless>.<ns>.svc.<domain> */}}
{{- define "candor.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "candor.headless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
The member sets. Returns a list of dicts (as YAML) with set name, StatefulSet name,
role, replicas, node id base, resources and persistence for the topology.
*/}}
{{- define "candor.memberSets" -}}
{{- $full := include "candor.fullname" . -}}
{{- if eq .Values.topology "embedded" -}}
- key: member
  name: {{ $full }}
  role: all
  replicas: {{ .Values.members.replicas }}
  base: 1
  resources: {{ toJson .Values.members.resources }}
  size: {{ .Values.members.persistence.size | quote }}
{{- else -}}
- key: shard
  name: {{ printf "%s-shard" $full }}
  role: shard
  replicas: {{ .Values.foundationdb.shards.replicas }}
  base: {{ .Values.foundationdb.shards.nodeIdBase }}
  resources: {{ toJson .Values.foundationdb.shards.resources }}
  size: {{ .Values.foundationdb.shards.persistence.size | quote }}
- key: sequencer
  name: {{ printf "%s-sequencer" $full }}
  role: sequencer
  replicas: {{ .Values.foundationdb.sequencers.replicas }}
  base: {{ .Values.foundationdb.sequencers.nodeIdBase }}
  resources: {{ toJson .Values.foundationdb.sequencers.resources }}
  size: {{ .Values.foundationdb.sequencers.persistence.size | quote }}
{{- end -}}
{{- end -}}

{{/*
Seed members of one set: ordinals 0..min(replicas,3)-1. They are the bootstrap member
list and the --join targets; pods added by scaling up join through them. Keeping them
independent of larger replica counts means scaling does not change the pod template.
Call with (dict "ctx" $ "set" $set); prints "id=host:port@role" lines.
*/}}
{{- define "candor.seeds" -}}
{{- $n := int .set.replicas -}}
{{- if gt $n 3 }}{{ $n = 3 }}{{ end -}}
{{- range $i := until $n }}
{{ add (int $.set.base) $i }}={{ $.set.name }}-{{ $i }}.{{ include "candor.podDomain" $.ctx }}:{{ $.ctx.Values.ports.raft }}@{{ $.set.role }}
{{- end -}}
{{- end -}}

{{- define "candor.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "candor.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Scheduling for a component: (dict "ctx" $ "component" "member" "values" .Values.members) */}}
{{- define "candor.scheduling" -}}
{{- $sel := include "candor.selector" (dict "ctx" .ctx "component" .component) | fromYaml -}}
{{- with .values.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .ctx.Values.topologySpread.zones }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ .ctx.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels: {{ toYaml $sel | nindent 8 }}
{{- end }}
affinity:
  podAntiAffinity:
{{- if eq .ctx.Values.topologySpread.antiAffinity "required" }}
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels: {{ toYaml $sel | nindent 12 }}
{{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels: {{ toYaml $sel | nindent 14 }}
{{- end }}
{{- end -}}

{{- define "candor.tlsEnabled" -}}
{{- if or .Values.tls.enabled .Values.tls.certManager.enabled -}}true{{- end -}}
{{- end -}}

{{/*
checkov skips, each with its reason, rendered only when the setting that causes them
is in effect: (dict "ctx" $ "extra" (list "CKV_..=reason") "images" (list image...)).
*/}}
{{- define "candor.checkovSkips" -}}
{{- $skips := list -}}
{{- $undigested := not .ctx.Values.image.digest -}}
{{- range .images }}{{ if not (contains "@sha256:" .) }}{{ $undigested = true }}{{ end }}{{ end -}}
{{- if $undigested }}{{ $skips = append $skips "CKV_K8S_43=this profile runs images by tag (image.digest / keys.generate.kubectlImage without a digest); the production profile pins digests" }}{{ end -}}
{{- if ne .ctx.Values.image.pullPolicy "Always" }}{{ $skips = append $skips (printf "CKV_K8S_15=image.pullPolicy is %s in this profile (images loaded into the nodes for trials); the default and production use Always" .ctx.Values.image.pullPolicy) }}{{ end -}}
{{- range .extra }}{{ $skips = append $skips . }}{{ end -}}
{{- range $i, $s := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $s | quote }}
{{- end -}}
{{- end -}}

{{/*
The memory budget of a container (CANDOR_MEMORY__BUDGET_BYTES), from its
resources: three quarters of its memory limit, the rest for what the budget
leaves out (Raft snapshot transfers, compaction, allocator slack). Accepts
integer quantities in bytes or with Ki, Mi, Gi, M or G.
*/}}
{{- define "candor.memoryBudget" -}}
{{- $q := toString (required "resources.limits.memory is required" .limits.memory) -}}
{{- $units := list (list "Gi" 1073741824) (list "Mi" 1048576) (list "Ki" 1024) (list "G" 1000000000) (list "M" 1000000) -}}
{{- $n := 0 -}}
{{- $matched := false -}}
{{- range $u := $units -}}
{{- if and (not $matched) (hasSuffix (index $u 0) $q) -}}
{{- $n = mul (trimSuffix (index $u 0) $q | int64) (index $u 1) -}}
{{- $matched = true -}}
{{- end -}}
{{- end -}}
{{- if not $matched -}}{{- $n = $q | int64 -}}{{- end -}}
{{- if le (int64 $n) 0 -}}
{{- fail (printf "resources.limits.memory %q: use an integer with Ki, Mi, Gi, M or G" $q) -}}
{{- end -}}
{{- div (mul $n 3) 4 -}}
{{- end -}}
