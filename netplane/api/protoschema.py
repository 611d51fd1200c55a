"""The protobuf wire facts of the Kubernetes kinds netplane can read.

kubectl's typed generators (``kubectl create deployment``, ``create secret``...)
send ``application/vnd.kubernetes.protobuf`` bodies. Protobuf carries field
numbers, not names, so reading them needs each message's numbering; the
network is closed at run time, so the facts live here, in a compact form
taken from the Kubernetes 1.32 type definitions (``k8s.io/api`` and
``k8s.io/apimachinery``).

One message per entry: ``package.Message: field; field; ...`` (continuation
lines are indented). A field is ``NUMBER jsonName[:type][!]`` or
``NUMBER ^package.Message`` for an inlined struct whose fields join the
parent's JSON object (``json:",inline"``). Types: none for a string, ``b``
bytes (base64 in JSON), ``bool``, ``i32``, ``i64``, ``f64``, ``time``
(metav1.Time), ``mtime`` (MicroTime), ``dur`` (metav1.Duration), ``ios``
(IntOrString), ``qty`` (resource.Quantity), ``raw`` (RawExtension), ``fv1``
(FieldsV1), ``strs`` (ExtraValue: a user's extra values, a list of strings),
a message name, ``[T]`` a list, ``{T}`` a map from string to T.
``!`` marks a field whose zero value is still data: a Go pointer, or a field
without ``omitempty``. Go's protobuf marshaller writes every non-pointer
field, so a zero without ``!`` is the same as absent.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Where each package prefix of the table comes from, for messages to users.
PACKAGES = {
    "core": "core/v1", "apps": "apps/v1", "batch": "batch/v1", "rbac": "rbac/v1",
    "discovery": "discovery/v1", "meta": "meta/v1", "runtime": "runtime",
    "intstr": "util/intstr", "resource": "api/resource",
    "authentication": "authentication/v1", "authorization": "authorization/v1",
    "networking": "networking/v1", "coordination": "coordination/v1",
    "scheduling": "scheduling/v1", "policy": "policy/v1", "autoscaling": "autoscaling/v2",
    "autoscalingv1": "autoscaling/v1", "certificates": "certificates/v1",
}

# The message a ``runtime.Unknown`` envelope's apiVersion and kind name.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "core.Namespace",
    ("v1", "Node"): "core.Node",
    ("v1", "Pod"): "core.Pod",
    ("v1", "Service"): "core.Service",
    ("v1", "Endpoints"): "core.Endpoints",
    ("v1", "ConfigMap"): "core.ConfigMap",
    ("v1", "Secret"): "core.Secret",
    ("v1", "ServiceAccount"): "core.ServiceAccount",
    ("v1", "Event"): "core.Event",
    ("apps/v1", "Deployment"): "apps.Deployment",
    ("apps/v1", "ReplicaSet"): "apps.ReplicaSet",
    ("batch/v1", "Job"): "batch.Job",
    ("batch/v1", "CronJob"): "batch.CronJob",
    ("discovery.k8s.io/v1", "EndpointSlice"): "discovery.EndpointSlice",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networking.NetworkPolicy",
    ("coordination.k8s.io/v1", "Lease"): "coordination.Lease",
    ("scheduling.k8s.io/v1", "PriorityClass"): "scheduling.PriorityClass",
    ("policy/v1", "PodDisruptionBudget"): "policy.PodDisruptionBudget",
    ("policy/v1", "Eviction"): "policy.Eviction",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "autoscaling.HorizontalPodAutoscaler",
    ("autoscaling/v1", "HorizontalPodAutoscaler"): "autoscalingv1.HorizontalPodAutoscaler",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"):
        "certificates.CertificateSigningRequest",
    ("rbac.authorization.k8s.io/v1", "Role"): "rbac.Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rbac.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac.ClusterRoleBinding",
    ("authentication.k8s.io/v1", "TokenRequest"): "authentication.TokenRequest",
    ("authentication.k8s.io/v1", "TokenReview"): "authentication.TokenReview",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "authentication.SelfSubjectReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "authorization.SubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"):
        "authorization.SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"):
        "authorization.LocalSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "authorization.SelfSubjectRulesReview",
}

# Options kinds that every group-version serves (client-go's typed clients
# send DeleteOptions under their own group-version, as metav1.AddToGroupVersion
# registers it there): the message by kind alone.
OPTIONS: dict[str, str] = {"DeleteOptions": "meta.DeleteOptions"}

SCHEMA = """\
runtime.Unknown: 1 typeMeta:runtime.TypeMeta!; 2 raw:b; 3 contentEncoding; 4 contentType
runtime.TypeMeta: 1 apiVersion; 2 kind
runtime.RawExtension: 1 raw:b
meta.Time: 1 seconds:i64!; 2 nanos:i32!
meta.MicroTime: 1 seconds:i64!; 2 nanos:i32!
meta.Duration: 1 duration:i64!
meta.FieldsV1: 1 raw:b
intstr.IntOrString: 1 type:i64!; 2 intVal:i32!; 3 strVal!
resource.Quantity: 1 string!
authorization.ExtraValue: 1 items:[s]
core.Namespace: 1 metadata:meta.ObjectMeta; 2 spec:core.NamespaceSpec;
    3 status:core.NamespaceStatus
meta.ObjectMeta: 1 name; 2 generateName; 3 namespace; 4 selfLink; 5 uid; 6 resourceVersion;
    7 generation:i64; 8 creationTimestamp:time; 9 deletionTimestamp:time!;
    10 deletionGracePeriodSeconds:i64!; 11 labels:{s}; 12 annotations:{s};
    13 ownerReferences:[meta.OwnerReference]; 14 finalizers:[s];
    17 managedFields:[meta.ManagedFieldsEntry]
meta.OwnerReference: 1 kind!; 3 name!; 4 uid!; 5 apiVersion!; 6 controller:bool!;
    7 blockOwnerDeletion:bool!
meta.DeleteOptions: 1 gracePeriodSeconds:i64!; 2 preconditions:meta.Preconditions;
    3 orphanDependents:bool!; 4 propagationPolicy!; 5 dryRun:[s];
    6 ignoreStoreReadErrorWithClusterBreakingPotential:bool!
meta.Preconditions: 1 uid!; 2 resourceVersion!
meta.ManagedFieldsEntry: 1 manager; 2 operation; 3 apiVersion; 4 time:time!; 6 fieldsType;
    7 fieldsV1:fv1!; 8 subresource
core.NamespaceSpec: 1 finalizers:[s]
core.NamespaceStatus: 1 phase; 2 conditions:[core.NamespaceCondition]
core.NamespaceCondition: 1 type!; 2 status!; 4 lastTransitionTime:time; 5 reason; 6 message
core.ConfigMap: 1 metadata:meta.ObjectMeta; 2 data:{s}; 3 binaryData:{b}; 4 immutable:bool!
core.Secret: 1 metadata:meta.ObjectMeta; 2 data:{b}; 3 type; 4 stringData:{s};
    5 immutable:bool!
core.Service: 1 metadata:meta.ObjectMeta; 2 spec:core.ServiceSpec;
    3 status:core.ServiceStatus
core.ServiceSpec: 1 ports:[core.ServicePort]; 2 selector:{s}; 3 clusterIP; 4 type;
    5 externalIPs:[s]; 7 sessionAffinity; 8 loadBalancerIP; 9 loadBalancerSourceRanges:[s];
    10 externalName; 11 externalTrafficPolicy; 12 healthCheckNodePort:i32;
    13 publishNotReadyAddresses:bool; 14 sessionAffinityConfig:core.SessionAffinityConfig!;
    17 ipFamilyPolicy!; 18 clusterIPs:[s]; 19 ipFamilies:[s];
    20 allocateLoadBalancerNodePorts:bool!; 21 loadBalancerClass!;
    22 internalTrafficPolicy!; 23 trafficDistribution!
core.ServicePort: 1 name; 2 protocol; 3 port:i32!; 4 targetPort:ios; 5 nodePort:i32;
    6 appProtocol!
core.SessionAffinityConfig: 1 clientIP:core.ClientIPConfig!
core.ClientIPConfig: 1 timeoutSeconds:i32!
core.ServiceStatus: 1 loadBalancer:core.LoadBalancerStatus; 2 conditions:[meta.Condition]
core.LoadBalancerStatus: 1 ingress:[core.LoadBalancerIngress]
core.LoadBalancerIngress: 1 ip; 2 hostname; 3 ipMode!; 4 ports:[core.PortStatus]
core.PortStatus: 1 port:i32!; 2 protocol!; 3 error!
meta.Condition: 1 type!; 2 status!; 3 observedGeneration:i64; 4 lastTransitionTime:time!;
    5 reason!; 6 message!
core.ServiceAccount: 1 metadata:meta.ObjectMeta; 2 secrets:[core.ObjectReference];
    3 imagePullSecrets:[core.LocalObjectReference]; 4 automountServiceAccountToken:bool!
core.ObjectReference: 1 kind; 2 namespace; 3 name; 4 uid; 5 apiVersion; 6 resourceVersion;
    7 fieldPath
core.LocalObjectReference: 1 name
core.Pod: 1 metadata:meta.ObjectMeta; 2 spec:core.PodSpec; 3 status:core.PodStatus
core.PodSpec: 1 volumes:[core.Volume]; 2 containers:[core.Container]!; 3 restartPolicy;
    4 terminationGracePeriodSeconds:i64!; 5 activeDeadlineSeconds:i64!; 6 dnsPolicy;
    7 nodeSelector:{s}; 8 serviceAccountName; 9 serviceAccount; 10 nodeName;
    11 hostNetwork:bool; 12 hostPID:bool; 13 hostIPC:bool;
    14 securityContext:core.PodSecurityContext!;
    15 imagePullSecrets:[core.LocalObjectReference]; 16 hostname; 17 subdomain;
    18 affinity:core.Affinity!; 19 schedulerName; 20 initContainers:[core.Container];
    21 automountServiceAccountToken:bool!; 22 tolerations:[core.Toleration];
    23 hostAliases:[core.HostAlias]; 24 priorityClassName; 25 priority:i32!;
    26 dnsConfig:core.PodDNSConfig!; 27 shareProcessNamespace:bool!;
    28 readinessGates:[core.PodReadinessGate]; 29 runtimeClassName!;
    30 enableServiceLinks:bool!; 31 preemptionPolicy!; 32 overhead:{qty};
    33 topologySpreadConstraints:[core.TopologySpreadConstraint];
    34 ephemeralContainers:[core.EphemeralContainer]; 35 setHostnameAsFQDN:bool!;
    36 os:core.PodOS!; 37 hostUsers:bool!; 38 schedulingGates:[core.PodSchedulingGate];
    39 resourceClaims:[core.PodResourceClaim]; 40 resources:core.ResourceRequirements!
core.Volume: 1 name!; 2 ^core.VolumeSource
core.VolumeSource: 1 hostPath:core.HostPathVolumeSource!;
    2 emptyDir:core.EmptyDirVolumeSource!;
    3 gcePersistentDisk:core.GCEPersistentDiskVolumeSource!;
    4 awsElasticBlockStore:core.AWSElasticBlockStoreVolumeSource!;
    5 gitRepo:core.GitRepoVolumeSource!; 6 secret:core.SecretVolumeSource!;
    7 nfs:core.NFSVolumeSource!; 8 iscsi:core.ISCSIVolumeSource!;
    9 glusterfs:core.GlusterfsVolumeSource!;
    10 persistentVolumeClaim:core.PersistentVolumeClaimVolumeSource!;
    11 rbd:core.RBDVolumeSource!; 12 flexVolume:core.FlexVolumeSource!;
    13 cinder:core.CinderVolumeSource!; 14 cephfs:core.CephFSVolumeSource!;
    15 flocker:core.FlockerVolumeSource!; 16 downwardAPI:core.DownwardAPIVolumeSource!;
    17 fc:core.FCVolumeSource!; 18 azureFile:core.AzureFileVolumeSource!;
    19 configMap:core.ConfigMapVolumeSource!;
    20 vsphereVolume:core.VsphereVirtualDiskVolumeSource!;
    21 quobyte:core.QuobyteVolumeSource!; 22 azureDisk:core.AzureDiskVolumeSource!;
    23 photonPersistentDisk:core.PhotonPersistentDiskVolumeSource!;
    24 portworxVolume:core.PortworxVolumeSource!; 25 scaleIO:core.ScaleIOVolumeSource!;
    26 projected:core.ProjectedVolumeSource!; 27 storageos:core.StorageOSVolumeSource!;
    28 csi:core.CSIVolumeSource!; 29 ephemeral:core.EphemeralVolumeSource!;
    30 image:core.ImageVolumeSource!
core.HostPathVolumeSource: 1 path!; 2 type!
core.EmptyDirVolumeSource: 1 medium; 2 sizeLimit:qty!
core.GCEPersistentDiskVolumeSource: 1 pdName!; 2 fsType; 3 partition:i32; 4 readOnly:bool
core.AWSElasticBlockStoreVolumeSource: 1 volumeID!; 2 fsType; 3 partition:i32;
    4 readOnly:bool
core.GitRepoVolumeSource: 1 repository!; 2 revision; 3 directory
core.SecretVolumeSource: 1 secretName; 2 items:[core.KeyToPath]; 3 defaultMode:i32!;
    4 optional:bool!
core.KeyToPath: 1 key!; 2 path!; 3 mode:i32!
core.NFSVolumeSource: 1 server!; 2 path!; 3 readOnly:bool
core.ISCSIVolumeSource: 1 targetPortal!; 2 iqn!; 3 lun:i32!; 4 iscsiInterface; 5 fsType;
    6 readOnly:bool; 7 portals:[s]; 8 chapAuthDiscovery:bool;
    10 secretRef:core.LocalObjectReference!; 11 chapAuthSession:bool; 12 initiatorName!
core.GlusterfsVolumeSource: 1 endpoints!; 2 path!; 3 readOnly:bool
core.PersistentVolumeClaimVolumeSource: 1 claimName!; 2 readOnly:bool
core.RBDVolumeSource: 1 monitors:[s]!; 2 image!; 3 fsType; 4 pool; 5 user; 6 keyring;
    7 secretRef:core.LocalObjectReference!; 8 readOnly:bool
core.FlexVolumeSource: 1 driver!; 2 fsType; 3 secretRef:core.LocalObjectReference!;
    4 readOnly:bool; 5 options:{s}
core.CinderVolumeSource: 1 volumeID!; 2 fsType; 3 readOnly:bool;
    4 secretRef:core.LocalObjectReference!
core.CephFSVolumeSource: 1 monitors:[s]!; 2 path; 3 user; 4 secretFile;
    5 secretRef:core.LocalObjectReference!; 6 readOnly:bool
core.FlockerVolumeSource: 1 datasetName; 2 datasetUUID
core.DownwardAPIVolumeSource: 1 items:[core.DownwardAPIVolumeFile]; 2 defaultMode:i32!
core.DownwardAPIVolumeFile: 1 path!; 2 fieldRef:core.ObjectFieldSelector!;
    3 resourceFieldRef:core.ResourceFieldSelector!; 4 mode:i32!
core.ObjectFieldSelector: 1 apiVersion; 2 fieldPath!
core.ResourceFieldSelector: 1 containerName; 2 resource!; 3 divisor:qty
core.FCVolumeSource: 1 targetWWNs:[s]; 2 lun:i32!; 3 fsType; 4 readOnly:bool; 5 wwids:[s]
core.AzureFileVolumeSource: 1 secretName!; 2 shareName!; 3 readOnly:bool
core.ConfigMapVolumeSource: 1 ^core.LocalObjectReference; 2 items:[core.KeyToPath];
    3 defaultMode:i32!; 4 optional:bool!
core.VsphereVirtualDiskVolumeSource: 1 volumePath!; 2 fsType; 3 storagePolicyName;
    4 storagePolicyID
core.QuobyteVolumeSource: 1 registry!; 2 volume!; 3 readOnly:bool; 4 user; 5 group; 6 tenant
core.AzureDiskVolumeSource: 1 diskName!; 2 diskURI!; 3 cachingMode!; 4 fsType!;
    5 readOnly:bool!; 6 kind!
core.PhotonPersistentDiskVolumeSource: 1 pdID!; 2 fsType
core.ProjectedVolumeSource: 1 sources:[core.VolumeProjection]!; 2 defaultMode:i32!
core.VolumeProjection: 1 secret:core.SecretProjection!;
    2 downwardAPI:core.DownwardAPIProjection!; 3 configMap:core.ConfigMapProjection!;
    4 serviceAccountToken:core.ServiceAccountTokenProjection!;
    5 clusterTrustBundle:core.ClusterTrustBundleProjection!
core.SecretProjection: 1 ^core.LocalObjectReference; 2 items:[core.KeyToPath];
    4 optional:bool!
core.DownwardAPIProjection: 1 items:[core.DownwardAPIVolumeFile]
core.ConfigMapProjection: 1 ^core.LocalObjectReference; 2 items:[core.KeyToPath];
    4 optional:bool!
core.ServiceAccountTokenProjection: 1 audience; 2 expirationSeconds:i64!; 3 path!
core.ClusterTrustBundleProjection: 1 name!; 2 signerName!;
    3 labelSelector:meta.LabelSelector!; 4 path!; 5 optional:bool!
meta.LabelSelector: 1 matchLabels:{s}; 2 matchExpressions:[meta.LabelSelectorRequirement]
meta.LabelSelectorRequirement: 1 key!; 2 operator!; 3 values:[s]
core.PortworxVolumeSource: 1 volumeID!; 2 fsType; 3 readOnly:bool
core.ScaleIOVolumeSource: 1 gateway!; 2 system!; 3 secretRef:core.LocalObjectReference!;
    4 sslEnabled:bool; 5 protectionDomain; 6 storagePool; 7 storageMode; 8 volumeName;
    9 fsType; 10 readOnly:bool
core.StorageOSVolumeSource: 1 volumeName; 2 volumeNamespace; 3 fsType; 4 readOnly:bool;
    5 secretRef:core.LocalObjectReference!
core.CSIVolumeSource: 1 driver!; 2 readOnly:bool!; 3 fsType!; 4 volumeAttributes:{s};
    5 nodePublishSecretRef:core.LocalObjectReference!
core.EphemeralVolumeSource: 1 volumeClaimTemplate:core.PersistentVolumeClaimTemplate!
core.PersistentVolumeClaimTemplate: 1 metadata:meta.ObjectMeta;
    2 spec:core.PersistentVolumeClaimSpec!
core.PersistentVolumeClaimSpec: 1 accessModes:[s];
    2 resources:core.VolumeResourceRequirements; 3 volumeName;
    4 selector:meta.LabelSelector!; 5 storageClassName!; 6 volumeMode!;
    7 dataSource:core.TypedLocalObjectReference!;
    8 dataSourceRef:core.TypedObjectReference!; 9 volumeAttributesClassName!
core.VolumeResourceRequirements: 1 limits:{qty}; 2 requests:{qty}
core.TypedLocalObjectReference: 1 apiGroup!; 2 kind!; 3 name!
core.TypedObjectReference: 1 apiGroup!; 2 kind!; 3 name!; 4 namespace!
core.ImageVolumeSource: 1 reference; 2 pullPolicy
core.Container: 1 name!; 2 image; 3 command:[s]; 4 args:[s]; 5 workingDir;
    6 ports:[core.ContainerPort]; 7 env:[core.EnvVar];
    8 resources:core.ResourceRequirements; 9 volumeMounts:[core.VolumeMount];
    10 livenessProbe:core.Probe!; 11 readinessProbe:core.Probe!;
    12 lifecycle:core.Lifecycle!; 13 terminationMessagePath; 14 imagePullPolicy;
    15 securityContext:core.SecurityContext!; 16 stdin:bool; 17 stdinOnce:bool; 18 tty:bool;
    19 envFrom:[core.EnvFromSource]; 20 terminationMessagePolicy;
    21 volumeDevices:[core.VolumeDevice]; 22 startupProbe:core.Probe!;
    23 resizePolicy:[core.ContainerResizePolicy]; 24 restartPolicy!
core.ContainerPort: 1 name; 2 hostPort:i32; 3 containerPort:i32!; 4 protocol; 5 hostIP
core.EnvFromSource: 1 prefix; 2 configMapRef:core.ConfigMapEnvSource!;
    3 secretRef:core.SecretEnvSource!
core.ConfigMapEnvSource: 1 ^core.LocalObjectReference; 2 optional:bool!
core.SecretEnvSource: 1 ^core.LocalObjectReference; 2 optional:bool!
core.EnvVar: 1 name!; 2 value; 3 valueFrom:core.EnvVarSource!
core.EnvVarSource: 1 fieldRef:core.ObjectFieldSelector!;
    2 resourceFieldRef:core.ResourceFieldSelector!;
    3 configMapKeyRef:core.ConfigMapKeySelector!; 4 secretKeyRef:core.SecretKeySelector!
core.ConfigMapKeySelector: 1 ^core.LocalObjectReference; 2 key!; 3 optional:bool!
core.SecretKeySelector: 1 ^core.LocalObjectReference; 2 key!; 3 optional:bool!
core.ResourceRequirements: 1 limits:{qty}; 2 requests:{qty}; 3 claims:[core.ResourceClaim]
core.ResourceClaim: 1 name!; 2 request
core.ContainerResizePolicy: 1 resourceName!; 2 restartPolicy!
core.VolumeMount: 1 name!; 2 readOnly:bool; 3 mountPath!; 4 subPath; 5 mountPropagation!;
    6 subPathExpr; 7 recursiveReadOnly!
core.VolumeDevice: 1 name!; 2 devicePath!
core.Probe: 1 ^core.ProbeHandler; 2 initialDelaySeconds:i32; 3 timeoutSeconds:i32;
    4 periodSeconds:i32; 5 successThreshold:i32; 6 failureThreshold:i32;
    7 terminationGracePeriodSeconds:i64!
core.ProbeHandler: 1 exec:core.ExecAction!; 2 httpGet:core.HTTPGetAction!;
    3 tcpSocket:core.TCPSocketAction!; 4 grpc:core.GRPCAction!
core.ExecAction: 1 command:[s]
core.HTTPGetAction: 1 path; 2 port:ios!; 3 host; 4 scheme; 5 httpHeaders:[core.HTTPHeader]
core.HTTPHeader: 1 name!; 2 value!
core.TCPSocketAction: 1 port:ios!; 2 host
core.GRPCAction: 1 port:i32!; 2 service!
core.Lifecycle: 1 postStart:core.LifecycleHandler!; 2 preStop:core.LifecycleHandler!
core.LifecycleHandler: 1 exec:core.ExecAction!; 2 httpGet:core.HTTPGetAction!;
    3 tcpSocket:core.TCPSocketAction!; 4 sleep:core.SleepAction!
core.SleepAction: 1 seconds:i64!
core.SecurityContext: 1 capabilities:core.Capabilities!; 2 privileged:bool!;
    3 seLinuxOptions:core.SELinuxOptions!; 4 runAsUser:i64!; 5 runAsNonRoot:bool!;
    6 readOnlyRootFilesystem:bool!; 7 allowPrivilegeEscalation:bool!; 8 runAsGroup:i64!;
    9 procMount!; 10 windowsOptions:core.WindowsSecurityContextOptions!;
    11 seccompProfile:core.SeccompProfile!; 12 appArmorProfile:core.AppArmorProfile!
core.Capabilities: 1 add:[s]; 2 drop:[s]
core.SELinuxOptions: 1 user; 2 role; 3 type; 4 level
core.WindowsSecurityContextOptions: 1 gmsaCredentialSpecName!; 2 gmsaCredentialSpec!;
    3 runAsUserName!; 4 hostProcess:bool!
core.SeccompProfile: 1 type!; 2 localhostProfile!
core.AppArmorProfile: 1 type!; 2 localhostProfile!
core.EphemeralContainer: 1 ^core.EphemeralContainerCommon; 2 targetContainerName
core.EphemeralContainerCommon: 1 name!; 2 image; 3 command:[s]; 4 args:[s]; 5 workingDir;
    6 ports:[core.ContainerPort]; 7 env:[core.EnvVar];
    8 resources:core.ResourceRequirements; 9 volumeMounts:[core.VolumeMount];
    10 livenessProbe:core.Probe!; 11 readinessProbe:core.Probe!;
    12 lifecycle:core.Lifecycle!; 13 terminationMessagePath; 14 imagePullPolicy;
    15 securityContext:core.SecurityContext!; 16 stdin:bool; 17 stdinOnce:bool; 18 tty:bool;
    19 envFrom:[core.EnvFromSource]; 20 terminationMessagePolicy;
    21 volumeDevices:[core.VolumeDevice]; 22 startupProbe:core.Probe!;
    23 resizePolicy:[core.ContainerResizePolicy]; 24 restartPolicy!
core.PodSecurityContext: 1 seLinuxOptions:core.SELinuxOptions!; 2 runAsUser:i64!;
    3 runAsNonRoot:bool!; 4 supplementalGroups:[i64]; 5 fsGroup:i64!; 6 runAsGroup:i64!;
    7 sysctls:[core.Sysctl]; 8 windowsOptions:core.WindowsSecurityContextOptions!;
    9 fsGroupChangePolicy!; 10 seccompProfile:core.SeccompProfile!;
    11 appArmorProfile:core.AppArmorProfile!; 12 supplementalGroupsPolicy!;
    13 seLinuxChangePolicy!
core.Sysctl: 1 name!; 2 value!
core.Affinity: 1 nodeAffinity:core.NodeAffinity!; 2 podAffinity:core.PodAffinity!;
    3 podAntiAffinity:core.PodAntiAffinity!
core.NodeAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution:core.NodeSelector!;
    2 preferredDuringSchedulingIgnoredDuringExecution:[core.PreferredSchedulingTerm]
core.NodeSelector: 1 nodeSelectorTerms:[core.NodeSelectorTerm]!
core.NodeSelectorTerm: 1 matchExpressions:[core.NodeSelectorRequirement];
    2 matchFields:[core.NodeSelectorRequirement]
core.NodeSelectorRequirement: 1 key!; 2 operator!; 3 values:[s]
core.PreferredSchedulingTerm: 1 weight:i32!; 2 preference:core.NodeSelectorTerm!
core.PodAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution:[core.PodAffinityTerm];
    2 preferredDuringSchedulingIgnoredDuringExecution:[core.WeightedPodAffinityTerm]
core.PodAffinityTerm: 1 labelSelector:meta.LabelSelector!; 2 namespaces:[s]; 3 topologyKey!;
    4 namespaceSelector:meta.LabelSelector!; 5 matchLabelKeys:[s]; 6 mismatchLabelKeys:[s]
core.WeightedPodAffinityTerm: 1 weight:i32!; 2 podAffinityTerm:core.PodAffinityTerm!
core.PodAntiAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution:[core.PodAffinityTerm];
    2 preferredDuringSchedulingIgnoredDuringExecution:[core.WeightedPodAffinityTerm]
core.Toleration: 1 key; 2 operator; 3 value; 4 effect; 5 tolerationSeconds:i64!
core.HostAlias: 1 ip!; 2 hostnames:[s]
core.PodDNSConfig: 1 nameservers:[s]; 2 searches:[s]; 3 options:[core.PodDNSConfigOption]
core.PodDNSConfigOption: 1 name; 2 value!
core.PodReadinessGate: 1 conditionType!
core.TopologySpreadConstraint: 1 maxSkew:i32!; 2 topologyKey!; 3 whenUnsatisfiable!;
    4 labelSelector:meta.LabelSelector!; 5 minDomains:i32!; 6 nodeAffinityPolicy!;
    7 nodeTaintsPolicy!; 8 matchLabelKeys:[s]
core.PodOS: 1 name!
core.PodSchedulingGate: 1 name!
core.PodResourceClaim: 1 name!; 3 resourceClaimName!; 4 resourceClaimTemplateName!
core.PodStatus: 1 phase; 2 conditions:[core.PodCondition]; 3 message; 4 reason; 5 hostIP;
    6 podIP; 7 startTime:time!; 8 containerStatuses:[core.ContainerStatus]; 9 qosClass;
    10 initContainerStatuses:[core.ContainerStatus]; 11 nominatedNodeName;
    12 podIPs:[core.PodIP]; 13 ephemeralContainerStatuses:[core.ContainerStatus]; 14 resize;
    15 resourceClaimStatuses:[core.PodResourceClaimStatus]; 16 hostIPs:[core.HostIP]
core.PodCondition: 1 type!; 2 status!; 3 lastProbeTime:time; 4 lastTransitionTime:time;
    5 reason; 6 message
core.HostIP: 1 ip!
core.PodIP: 1 ip!
core.ContainerStatus: 1 name!; 2 state:core.ContainerState; 3 lastState:core.ContainerState;
    4 ready:bool!; 5 restartCount:i32!; 6 image!; 7 imageID!; 8 containerID;
    9 started:bool!; 10 allocatedResources:{qty}; 11 resources:core.ResourceRequirements!;
    12 volumeMounts:[core.VolumeMountStatus]; 13 user:core.ContainerUser!;
    14 allocatedResourcesStatus:[core.ResourceStatus]
core.ContainerState: 1 waiting:core.ContainerStateWaiting!;
    2 running:core.ContainerStateRunning!; 3 terminated:core.ContainerStateTerminated!
core.ContainerStateWaiting: 1 reason; 2 message
core.ContainerStateRunning: 1 startedAt:time
core.ContainerStateTerminated: 1 exitCode:i32!; 2 signal:i32; 3 reason; 4 message;
    5 startedAt:time; 6 finishedAt:time; 7 containerID
core.VolumeMountStatus: 1 name!; 2 mountPath!; 3 readOnly:bool; 4 recursiveReadOnly!
core.ContainerUser: 1 linux:core.LinuxContainerUser!
core.LinuxContainerUser: 1 uid:i64!; 2 gid:i64!; 3 supplementalGroups:[i64]
core.ResourceStatus: 1 name!; 2 resources:[core.ResourceHealth]
core.ResourceHealth: 1 resourceID!; 2 health
core.PodResourceClaimStatus: 1 name!; 2 resourceClaimName!
core.Endpoints: 1 metadata:meta.ObjectMeta; 2 subsets:[core.EndpointSubset]
core.EndpointSubset: 1 addresses:[core.EndpointAddress];
    2 notReadyAddresses:[core.EndpointAddress]; 3 ports:[core.EndpointPort]
core.EndpointAddress: 1 ip!; 2 targetRef:core.ObjectReference!; 3 hostname; 4 nodeName!
core.EndpointPort: 1 name; 2 port:i32!; 3 protocol; 4 appProtocol!
core.Event: 1 metadata:meta.ObjectMeta!; 2 involvedObject:core.ObjectReference!; 3 reason;
    4 message; 5 source:core.EventSource; 6 firstTimestamp:time; 7 lastTimestamp:time;
    8 count:i32; 9 type; 10 eventTime:mtime; 11 series:core.EventSeries!; 12 action;
    13 related:core.ObjectReference!; 14 reportingComponent!; 15 reportingInstance!
core.EventSource: 1 component; 2 host
core.EventSeries: 1 count:i32; 2 lastObservedTime:mtime
core.Node: 1 metadata:meta.ObjectMeta; 2 spec:core.NodeSpec; 3 status:core.NodeStatus
core.NodeSpec: 1 podCIDR; 2 externalID; 3 providerID; 4 unschedulable:bool;
    5 taints:[core.Taint]; 6 configSource:core.NodeConfigSource!; 7 podCIDRs:[s]
core.Taint: 1 key!; 2 value; 3 effect!; 4 timeAdded:time!
core.NodeConfigSource: 2 configMap:core.ConfigMapNodeConfigSource!
core.ConfigMapNodeConfigSource: 1 namespace!; 2 name!; 3 uid; 4 resourceVersion;
    5 kubeletConfigKey!
core.NodeStatus: 1 capacity:{qty}; 2 allocatable:{qty}; 3 phase;
    4 conditions:[core.NodeCondition]; 5 addresses:[core.NodeAddress];
    6 daemonEndpoints:core.NodeDaemonEndpoints; 7 nodeInfo:core.NodeSystemInfo;
    8 images:[core.ContainerImage]; 9 volumesInUse:[s];
    10 volumesAttached:[core.AttachedVolume]; 11 config:core.NodeConfigStatus!;
    12 runtimeHandlers:[core.NodeRuntimeHandler]; 13 features:core.NodeFeatures!
core.NodeCondition: 1 type!; 2 status!; 3 lastHeartbeatTime:time; 4 lastTransitionTime:time;
    5 reason; 6 message
core.NodeAddress: 1 type!; 2 address!
core.NodeDaemonEndpoints: 1 kubeletEndpoint:core.DaemonEndpoint
core.DaemonEndpoint: 1 Port:i32!
core.NodeSystemInfo: 1 machineID!; 2 systemUUID!; 3 bootID!; 4 kernelVersion!; 5 osImage!;
    6 containerRuntimeVersion!; 7 kubeletVersion!; 8 kubeProxyVersion!; 9 operatingSystem!;
    10 architecture!
core.ContainerImage: 1 names:[s]!; 2 sizeBytes:i64
core.AttachedVolume: 1 name!; 2 devicePath!
core.NodeConfigStatus: 1 assigned:core.NodeConfigSource!; 2 active:core.NodeConfigSource!;
    3 lastKnownGood:core.NodeConfigSource!; 4 error
core.NodeRuntimeHandler: 1 name!; 2 features:core.NodeRuntimeHandlerFeatures!
core.NodeRuntimeHandlerFeatures: 1 recursiveReadOnlyMounts:bool!; 2 userNamespaces:bool!
core.NodeFeatures: 1 supplementalGroupsPolicy:bool!
apps.Deployment: 1 metadata:meta.ObjectMeta; 2 spec:apps.DeploymentSpec;
    3 status:apps.DeploymentStatus
apps.DeploymentSpec: 1 replicas:i32!; 2 selector:meta.LabelSelector!;
    3 template:core.PodTemplateSpec!; 4 strategy:apps.DeploymentStrategy;
    5 minReadySeconds:i32; 6 revisionHistoryLimit:i32!; 7 paused:bool;
    9 progressDeadlineSeconds:i32!
core.PodTemplateSpec: 1 metadata:meta.ObjectMeta; 2 spec:core.PodSpec
apps.DeploymentStrategy: 1 type; 2 rollingUpdate:apps.RollingUpdateDeployment!
apps.RollingUpdateDeployment: 1 maxUnavailable:ios!; 2 maxSurge:ios!
apps.DeploymentStatus: 1 observedGeneration:i64; 2 replicas:i32; 3 updatedReplicas:i32;
    4 availableReplicas:i32; 5 unavailableReplicas:i32;
    6 conditions:[apps.DeploymentCondition]; 7 readyReplicas:i32; 8 collisionCount:i32!
apps.DeploymentCondition: 1 type!; 2 status!; 4 reason; 5 message; 6 lastUpdateTime:time;
    7 lastTransitionTime:time
apps.ReplicaSet: 1 metadata:meta.ObjectMeta; 2 spec:apps.ReplicaSetSpec;
    3 status:apps.ReplicaSetStatus
apps.ReplicaSetSpec: 1 replicas:i32!; 2 selector:meta.LabelSelector!;
    3 template:core.PodTemplateSpec; 4 minReadySeconds:i32
apps.ReplicaSetStatus: 1 replicas:i32!; 2 fullyLabeledReplicas:i32;
    3 observedGeneration:i64; 4 readyReplicas:i32; 5 availableReplicas:i32;
    6 conditions:[apps.ReplicaSetCondition]
apps.ReplicaSetCondition: 1 type!; 2 status!; 3 lastTransitionTime:time; 4 reason; 5 message
batch.Job: 1 metadata:meta.ObjectMeta; 2 spec:batch.JobSpec; 3 status:batch.JobStatus
batch.JobSpec: 1 parallelism:i32!; 2 completions:i32!; 3 activeDeadlineSeconds:i64!;
    4 selector:meta.LabelSelector!; 5 manualSelector:bool!;
    6 template:core.PodTemplateSpec!; 7 backoffLimit:i32!; 8 ttlSecondsAfterFinished:i32!;
    9 completionMode!; 10 suspend:bool!; 11 podFailurePolicy:batch.PodFailurePolicy!;
    12 backoffLimitPerIndex:i32!; 13 maxFailedIndexes:i32!; 14 podReplacementPolicy!;
    15 managedBy!; 16 successPolicy:batch.SuccessPolicy!
batch.PodFailurePolicy: 1 rules:[batch.PodFailurePolicyRule]!
batch.PodFailurePolicyRule: 1 action!;
    2 onExitCodes:batch.PodFailurePolicyOnExitCodesRequirement!;
    3 onPodConditions:[batch.PodFailurePolicyOnPodConditionsPattern]
batch.PodFailurePolicyOnExitCodesRequirement: 1 containerName!; 2 operator!; 3 values:[i32]!
batch.PodFailurePolicyOnPodConditionsPattern: 1 type!; 2 status!
batch.SuccessPolicy: 1 rules:[batch.SuccessPolicyRule]!
batch.SuccessPolicyRule: 1 succeededIndexes!; 2 succeededCount:i32!
batch.JobStatus: 1 conditions:[batch.JobCondition]; 2 startTime:time!;
    3 completionTime:time!; 4 active:i32; 5 succeeded:i32; 6 failed:i32; 7 completedIndexes;
    8 uncountedTerminatedPods:batch.UncountedTerminatedPods!; 9 ready:i32!;
    10 failedIndexes!; 11 terminating:i32!
batch.JobCondition: 1 type!; 2 status!; 3 lastProbeTime:time; 4 lastTransitionTime:time;
    5 reason; 6 message
batch.UncountedTerminatedPods: 1 succeeded:[s]; 2 failed:[s]
batch.CronJob: 1 metadata:meta.ObjectMeta; 2 spec:batch.CronJobSpec;
    3 status:batch.CronJobStatus
batch.CronJobSpec: 1 schedule!; 2 startingDeadlineSeconds:i64!; 3 concurrencyPolicy;
    4 suspend:bool!; 5 jobTemplate:batch.JobTemplateSpec!;
    6 successfulJobsHistoryLimit:i32!; 7 failedJobsHistoryLimit:i32!; 8 timeZone!
batch.JobTemplateSpec: 1 metadata:meta.ObjectMeta; 2 spec:batch.JobSpec
batch.CronJobStatus: 1 active:[core.ObjectReference]; 4 lastScheduleTime:time!;
    5 lastSuccessfulTime:time!
rbac.Role: 1 metadata:meta.ObjectMeta; 2 rules:[rbac.PolicyRule]!
rbac.PolicyRule: 1 verbs:[s]!; 2 apiGroups:[s]; 3 resources:[s]; 4 resourceNames:[s];
    5 nonResourceURLs:[s]
rbac.ClusterRole: 1 metadata:meta.ObjectMeta; 2 rules:[rbac.PolicyRule]!;
    3 aggregationRule:rbac.AggregationRule!
rbac.AggregationRule: 1 clusterRoleSelectors:[meta.LabelSelector]
rbac.RoleBinding: 1 metadata:meta.ObjectMeta; 2 subjects:[rbac.Subject];
    3 roleRef:rbac.RoleRef!
rbac.Subject: 1 kind!; 2 apiGroup; 3 name!; 4 namespace
rbac.RoleRef: 1 apiGroup!; 2 kind!; 3 name!
rbac.ClusterRoleBinding: 1 metadata:meta.ObjectMeta; 2 subjects:[rbac.Subject];
    3 roleRef:rbac.RoleRef!
discovery.EndpointSlice: 1 metadata:meta.ObjectMeta; 2 endpoints:[discovery.Endpoint]!;
    3 ports:[discovery.EndpointPort]!; 4 addressType!
discovery.Endpoint: 1 addresses:[s]!; 2 conditions:discovery.EndpointConditions;
    3 hostname!; 4 targetRef:core.ObjectReference!; 5 deprecatedTopology:{s}; 6 nodeName!;
    7 zone!; 8 hints:discovery.EndpointHints!
discovery.EndpointConditions: 1 ready:bool!; 2 serving:bool!; 3 terminating:bool!
discovery.EndpointHints: 1 forZones:[discovery.ForZone]
discovery.ForZone: 1 name!
discovery.EndpointPort: 1 name!; 2 protocol!; 3 port:i32!; 4 appProtocol!
networking.NetworkPolicy: 1 metadata:meta.ObjectMeta; 2 spec:networking.NetworkPolicySpec
networking.NetworkPolicySpec: 1 podSelector:meta.LabelSelector!;
    2 ingress:[networking.NetworkPolicyIngressRule];
    3 egress:[networking.NetworkPolicyEgressRule]; 4 policyTypes:[s]
networking.NetworkPolicyIngressRule: 1 ports:[networking.NetworkPolicyPort];
    2 from:[networking.NetworkPolicyPeer]
networking.NetworkPolicyEgressRule: 1 ports:[networking.NetworkPolicyPort];
    2 to:[networking.NetworkPolicyPeer]
networking.NetworkPolicyPort: 1 protocol!; 2 port:ios!; 3 endPort:i32!
networking.NetworkPolicyPeer: 1 podSelector:meta.LabelSelector!;
    2 namespaceSelector:meta.LabelSelector!; 3 ipBlock:networking.IPBlock!
networking.IPBlock: 1 cidr!; 2 except:[s]
coordination.Lease: 1 metadata:meta.ObjectMeta; 2 spec:coordination.LeaseSpec
coordination.LeaseSpec: 1 holderIdentity!; 2 leaseDurationSeconds:i32!;
    3 acquireTime:mtime!; 4 renewTime:mtime!; 5 leaseTransitions:i32!; 6 strategy!;
    7 preferredHolder!
scheduling.PriorityClass: 1 metadata:meta.ObjectMeta; 2 value:i32!; 3 globalDefault:bool;
    4 description; 5 preemptionPolicy!
policy.PodDisruptionBudget: 1 metadata:meta.ObjectMeta; 2 spec:policy.PodDisruptionBudgetSpec;
    3 status:policy.PodDisruptionBudgetStatus
policy.PodDisruptionBudgetSpec: 1 minAvailable:ios!; 2 selector:meta.LabelSelector!;
    3 maxUnavailable:ios!; 4 unhealthyPodEvictionPolicy!
policy.PodDisruptionBudgetStatus: 1 observedGeneration:i64; 2 disruptedPods:{time};
    3 disruptionsAllowed:i32!; 4 currentHealthy:i32!; 5 desiredHealthy:i32!;
    6 expectedPods:i32!; 7 conditions:[meta.Condition]
policy.Eviction: 1 metadata:meta.ObjectMeta; 2 deleteOptions:meta.DeleteOptions!
autoscaling.HorizontalPodAutoscaler: 1 metadata:meta.ObjectMeta;
    2 spec:autoscaling.HorizontalPodAutoscalerSpec;
    3 status:autoscaling.HorizontalPodAutoscalerStatus
autoscaling.HorizontalPodAutoscalerSpec: 1 scaleTargetRef:autoscaling.CrossVersionObjectReference;
    2 minReplicas:i32!; 3 maxReplicas:i32!; 4 metrics:[autoscaling.MetricSpec];
    5 behavior:autoscaling.HorizontalPodAutoscalerBehavior!
autoscaling.CrossVersionObjectReference: 1 kind!; 2 name!; 3 apiVersion
autoscaling.MetricSpec: 1 type!; 2 object:autoscaling.ObjectMetricSource!;
    3 pods:autoscaling.PodsMetricSource!; 4 resource:autoscaling.ResourceMetricSource!;
    5 external:autoscaling.ExternalMetricSource!;
    7 containerResource:autoscaling.ContainerResourceMetricSource!
autoscaling.ObjectMetricSource: 1 describedObject:autoscaling.CrossVersionObjectReference;
    2 target:autoscaling.MetricTarget; 3 metric:autoscaling.MetricIdentifier
autoscaling.PodsMetricSource: 1 metric:autoscaling.MetricIdentifier;
    2 target:autoscaling.MetricTarget
autoscaling.ResourceMetricSource: 1 name!; 2 target:autoscaling.MetricTarget
autoscaling.ContainerResourceMetricSource: 1 name!; 2 target:autoscaling.MetricTarget;
    3 container!
autoscaling.ExternalMetricSource: 1 metric:autoscaling.MetricIdentifier;
    2 target:autoscaling.MetricTarget
autoscaling.MetricIdentifier: 1 name!; 2 selector:meta.LabelSelector!
autoscaling.MetricTarget: 1 type!; 2 value:qty!; 3 averageValue:qty!; 4 averageUtilization:i32!
autoscaling.HorizontalPodAutoscalerBehavior: 1 scaleUp:autoscaling.HPAScalingRules!;
    2 scaleDown:autoscaling.HPAScalingRules!
autoscaling.HPAScalingRules: 3 stabilizationWindowSeconds:i32!; 1 selectPolicy!;
    2 policies:[autoscaling.HPAScalingPolicy]
autoscaling.HPAScalingPolicy: 1 type!; 2 value:i32!; 3 periodSeconds:i32!
autoscaling.HorizontalPodAutoscalerStatus: 1 observedGeneration:i64!; 2 lastScaleTime:time!;
    3 currentReplicas:i32; 4 desiredReplicas:i32!; 5 currentMetrics:[autoscaling.MetricStatus];
    6 conditions:[autoscaling.HorizontalPodAutoscalerCondition]
autoscaling.HorizontalPodAutoscalerCondition: 1 type!; 2 status!; 3 lastTransitionTime:time;
    4 reason; 5 message
autoscaling.MetricStatus: 1 type!; 2 object:autoscaling.ObjectMetricStatus!;
    3 pods:autoscaling.PodsMetricStatus!; 4 resource:autoscaling.ResourceMetricStatus!;
    5 external:autoscaling.ExternalMetricStatus!;
    7 containerResource:autoscaling.ContainerResourceMetricStatus!
autoscaling.ObjectMetricStatus: 1 metric:autoscaling.MetricIdentifier;
    2 current:autoscaling.MetricValueStatus;
    3 describedObject:autoscaling.CrossVersionObjectReference
autoscaling.PodsMetricStatus: 1 metric:autoscaling.MetricIdentifier;
    2 current:autoscaling.MetricValueStatus
autoscaling.ResourceMetricStatus: 1 name!; 2 current:autoscaling.MetricValueStatus
autoscaling.ContainerResourceMetricStatus: 1 name!; 2 current:autoscaling.MetricValueStatus;
    3 container!
autoscaling.ExternalMetricStatus: 1 metric:autoscaling.MetricIdentifier;
    2 current:autoscaling.MetricValueStatus
autoscaling.MetricValueStatus: 1 value:qty!; 2 averageValue:qty!; 3 averageUtilization:i32!
autoscalingv1.HorizontalPodAutoscaler: 1 metadata:meta.ObjectMeta;
    2 spec:autoscalingv1.HorizontalPodAutoscalerSpec;
    3 status:autoscalingv1.HorizontalPodAutoscalerStatus
autoscalingv1.HorizontalPodAutoscalerSpec:
    1 scaleTargetRef:autoscaling.CrossVersionObjectReference; 2 minReplicas:i32!;
    3 maxReplicas:i32!; 4 targetCPUUtilizationPercentage:i32!
autoscalingv1.HorizontalPodAutoscalerStatus: 1 observedGeneration:i64!; 2 lastScaleTime:time!;
    3 currentReplicas:i32!; 4 desiredReplicas:i32!; 5 currentCPUUtilizationPercentage:i32!
certificates.CertificateSigningRequest: 1 metadata:meta.ObjectMeta;
    2 spec:certificates.CertificateSigningRequestSpec;
    3 status:certificates.CertificateSigningRequestStatus
certificates.CertificateSigningRequestSpec: 1 request:b!; 7 signerName!;
    8 expirationSeconds:i32!; 5 usages:[s]; 2 username; 3 uid; 4 groups:[s]; 6 extra:{strs}
certificates.CertificateSigningRequestStatus:
    1 conditions:[certificates.CertificateSigningRequestCondition]; 2 certificate:b
certificates.CertificateSigningRequestCondition: 1 type!; 6 status!; 2 reason; 3 message;
    4 lastUpdateTime:time; 5 lastTransitionTime:time
authentication.TokenRequest: 1 metadata:meta.ObjectMeta;
    2 spec:authentication.TokenRequestSpec!; 3 status:authentication.TokenRequestStatus
authentication.TokenRequestSpec: 1 audiences:[s]!;
    3 boundObjectRef:authentication.BoundObjectReference!; 4 expirationSeconds:i64!
authentication.BoundObjectReference: 1 kind; 2 apiVersion; 3 name; 4 uid
authentication.TokenRequestStatus: 1 token!; 2 expirationTimestamp:time!
authentication.TokenReview: 1 metadata:meta.ObjectMeta;
    2 spec:authentication.TokenReviewSpec!; 3 status:authentication.TokenReviewStatus
authentication.TokenReviewSpec: 1 token; 2 audiences:[s]
authentication.TokenReviewStatus: 1 authenticated:bool; 2 user:authentication.UserInfo;
    3 error; 4 audiences:[s]
authentication.UserInfo: 1 username; 2 uid; 3 groups:[s]; 4 extra:{strs}
authentication.SelfSubjectReview: 1 metadata:meta.ObjectMeta;
    2 status:authentication.SelfSubjectReviewStatus
authentication.SelfSubjectReviewStatus: 1 userInfo:authentication.UserInfo
authorization.SubjectAccessReview: 1 metadata:meta.ObjectMeta;
    2 spec:authorization.SubjectAccessReviewSpec!;
    3 status:authorization.SubjectAccessReviewStatus
authorization.SubjectAccessReviewSpec: 1 resourceAttributes:authorization.ResourceAttributes!;
    2 nonResourceAttributes:authorization.NonResourceAttributes!; 3 user; 4 groups:[s];
    5 extra:{strs}; 6 uid
authorization.ResourceAttributes: 1 namespace; 2 verb; 3 group; 4 version; 5 resource;
    6 subresource; 7 name; 8 fieldSelector:authorization.FieldSelectorAttributes!;
    9 labelSelector:authorization.LabelSelectorAttributes!
authorization.FieldSelectorAttributes: 1 rawSelector;
    2 requirements:[meta.FieldSelectorRequirement]
meta.FieldSelectorRequirement: 1 key!; 2 operator!; 3 values:[s]
authorization.LabelSelectorAttributes: 1 rawSelector;
    2 requirements:[meta.LabelSelectorRequirement]
authorization.NonResourceAttributes: 1 path; 2 verb
authorization.SubjectAccessReviewStatus: 1 allowed:bool!; 2 reason; 3 evaluationError;
    4 denied:bool
authorization.SelfSubjectAccessReview: 1 metadata:meta.ObjectMeta;
    2 spec:authorization.SelfSubjectAccessReviewSpec!;
    3 status:authorization.SubjectAccessReviewStatus
authorization.SelfSubjectAccessReviewSpec: 1 resourceAttributes:authorization.ResourceAttributes!;
    2 nonResourceAttributes:authorization.NonResourceAttributes!
authorization.LocalSubjectAccessReview: 1 metadata:meta.ObjectMeta;
    2 spec:authorization.SubjectAccessReviewSpec!;
    3 status:authorization.SubjectAccessReviewStatus
authorization.SelfSubjectRulesReview: 1 metadata:meta.ObjectMeta;
    2 spec:authorization.SelfSubjectRulesReviewSpec!;
    3 status:authorization.SubjectRulesReviewStatus
authorization.SelfSubjectRulesReviewSpec: 1 namespace
authorization.SubjectRulesReviewStatus: 1 resourceRules:[authorization.ResourceRule]!;
    2 nonResourceRules:[authorization.NonResourceRule]!; 3 incomplete:bool!;
    4 evaluationError
authorization.ResourceRule: 1 verbs:[s]!; 2 apiGroups:[s]; 3 resources:[s];
    4 resourceNames:[s]
authorization.NonResourceRule: 1 verbs:[s]!; 2 nonResourceURLs:[s]
"""

SCALARS = frozenset({"s", "b", "bool", "i32", "i64", "f64"})
# Types with their own JSON form, and the message each is on the wire.
SPECIALS = {
    "time": "meta.Time", "mtime": "meta.MicroTime", "dur": "meta.Duration",
    "ios": "intstr.IntOrString", "qty": "resource.Quantity", "raw": "runtime.RawExtension",
    "fv1": "meta.FieldsV1", "strs": "authorization.ExtraValue",
}
_FIELD = re.compile(r"(\d+) (?:\^([\w.]+)|(\w+)(?::(\[|\{)?([\w.]+)[\]}]?)?(!)?)$")


@dataclass(frozen=True)
class Field:
    """One numbered field: where it goes in JSON and how to read it."""

    number: int
    json: str  # "" for an inlined struct
    type: str  # a scalar, a special or a message name
    repeated: bool = False
    mapped: bool = False
    keep_zero: bool = False

    @property
    def inline(self) -> bool:
        return not self.json

    @property
    def is_message(self) -> bool:
        return self.type not in SCALARS and self.type not in SPECIALS


Message = dict[int, Field]


def _field(text: str, where: str) -> Field:
    m = _FIELD.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"protoschema: cannot read field {text!r} of {where}")
    number, inlined, name, shape, ftype, bang = m.groups()
    if inlined:
        return Field(int(number), "", inlined)
    return Field(int(number), name, ftype or "s", repeated=shape == "[", mapped=shape == "{",
                 keep_zero=bool(bang))


def entries(text: str) -> list[str]:
    """Entries of a table in this form, with their continuation lines joined."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(" ") and out:
            out[-1] += line
        elif line.strip():
            out.append(line)
    return out


@functools.cache
def messages() -> dict[str, Message]:
    """Every message of the table, checked: each field type it names exists."""
    out: dict[str, Message] = {}
    for entry in entries(SCHEMA):
        name, _, body = entry.partition(":")
        parsed = [_field(f, name) for f in body.split(";") if f.strip()]
        out[name] = {f.number: f for f in parsed}
    for name, fields in out.items():
        for f in fields.values():
            if f.type not in SCALARS and f.type not in out and SPECIALS.get(f.type) not in out:
                raise ValueError(f"protoschema: {name} field {f.number} names unknown {f.type}")
    return out


def display(message: str) -> str:
    """``core.PodSpec`` as users know it: ``PodSpec (core/v1)``."""
    package, _, name = message.partition(".")
    return f"{name} ({PACKAGES.get(package, package)})"
