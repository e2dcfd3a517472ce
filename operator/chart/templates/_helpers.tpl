{{/*
Names shared with the Python code: cachecluster/operator/naming.py holds the
same values (CSI_DRIVER, RUNTIME_MOUNT_ROOT); tests/operator/test_chart.py
fails when they differ. They are not values: the operator writes them into
every PersistentVolume and FUSE DaemonSet it creates.
*/}}
{{- define "cachecluster.csiDriver" -}}
csi.cachecluster.io
{{- end }}

{{- define "cachecluster.runtimeMountRoot" -}}
/runtime-mnt/cachecluster
{{- end }}

{{- define "cachecluster.fullname" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- end }}

{{- define "cachecluster.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "cachecluster.labels" -}}
app.kubernetes.io/name: cachecluster
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "cachecluster.selector" -}}
app.kubernetes.io/name: cachecluster
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
