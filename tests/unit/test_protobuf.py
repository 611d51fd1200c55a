"""Protobuf request bodies (kubectl's ``application/vnd.kubernetes.protobuf``)
decode to the JSON kubectl would have sent.

The captured bodies below are what kubectl 1.32 sent for each command (from
``-v=9``); the expected objects are ``kubectl ... --dry-run=client -o json``
of the same command, nulls removed (for the review and token commands, which
have no dry run, the JSON Go writes for the same object). The other inputs are built by the small
encoder here, with field numbers written out from Kubernetes' generated.proto
files, not read from netplane's own table."""

from __future__ import annotations

import base64
import random
import re
import time
from typing import Any

import pytest

from netplane.api import protobuf, protoschema
from netplane.api.protobuf import ProtobufError, UnsupportedField, decode

# -- a tiny protobuf encoder --


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64 go out as ten bytes, as Go writes them
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def num(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def ld(field: int, data: bytes | str) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    raw = data.encode() if isinstance(data, str) else data
    return varint(field << 3 | 2) + varint(len(raw)) + raw


def msg(field: int, *parts: bytes) -> bytes:
    return ld(field, b"".join(parts))


def entry(field: int, key: str, value: bytes | str) -> bytes:
    return msg(field, ld(1, key), ld(2, value))


def envelope(api_version: str, kind: str, obj: bytes, *extra: bytes) -> bytes:
    """``k8s\\x00`` + runtime.Unknown {1 typeMeta {1 apiVersion, 2 kind}, 2 raw, ...}."""
    return b"k8s\x00" + msg(1, ld(1, api_version), ld(2, kind)) + ld(2, obj) + b"".join(extra)


def meta(name: str, *parts: bytes) -> bytes:
    """ObjectMeta as field 1 of its object, with Go's zero creationTimestamp (8)."""
    return msg(1, ld(1, name), ld(2, ""), ld(3, ""), num(7, 0), msg(8), *parts)


def pod_template(*spec: bytes) -> bytes:
    """PodTemplateSpec {1 metadata, 2 spec} as DeploymentSpec field 3."""
    return msg(3, msg(1), msg(2, *spec))


def container(*parts: bytes) -> bytes:
    """PodSpec field 2: one Container, with Go's empty resources (8)."""
    return msg(2, ld(1, "c"), ld(2, "img"), msg(8), *parts)


def deployment(*template_spec: bytes) -> dict[str, Any]:
    body = envelope("apps/v1", "Deployment",
                    meta("d") + msg(2, msg(2, entry(1, "app", "d")), pod_template(*template_spec)))
    return decode(body)


def template_spec(obj: dict[str, Any]) -> Any:
    return obj["spec"]["template"]["spec"]


# -- captured from kubectl --

CAPTURED = {
    # kubectl create deployment web --image=netplane/echo --replicas=2 --port=8080
    "deployment": (
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412c0010a1f0a0377656212001a0022002a"
        "003200380042005a0a0a036170701203776562128e010802120c0a0a0a0361707012037765621a740a1c0a00"
        "12001a0022002a003200380042005a0a0a036170701203776562125412360a046563686f120d6e6574706c61"
        "6e652f6563686f2a00320b0a00100018903f22002a0042006a007200800100880100900100a201001a003200"
        "42004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c08001000180020002800"
        "38001a002200",
        {"kind": "Deployment",
         "apiVersion": "apps/v1",
         "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"replicas": 2,
                  "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "echo",
                                                        "image": "netplane/echo",
                                                        "ports": [{"containerPort": 8080}],
                                                        "resources": {}}]}},
                  "strategy": {}},
         "status": {}}),
    # kubectl create deployment idle --image=busybox --replicas=0 -- sleep 3600
    "deployment_zero": (
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412c1010a210a0469646c6512001a002200"
        "2a003200380042005a0b0a03617070120469646c65128d010800120d0a0b0a03617070120469646c651a720a"
        "1d0a0012001a0022002a003200380042005a0b0a03617070120469646c65125112330a0762757379626f7812"
        "0762757379626f781a05736c6565701a04333630302a0042006a007200800100880100900100a201001a0032"
        "0042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c080010001800200028"
        "0038001a002200",
        {"kind": "Deployment",
         "apiVersion": "apps/v1",
         "metadata": {"name": "idle", "labels": {"app": "idle"}},
         "spec": {"replicas": 0,
                  "selector": {"matchLabels": {"app": "idle"}},
                  "template": {"metadata": {"labels": {"app": "idle"}},
                               "spec": {"containers": [{"name": "busybox",
                                                        "image": "busybox",
                                                        "command": ["sleep", "3600"],
                                                        "resources": {}}]}},
                  "strategy": {}},
         "status": {}}),
    # kubectl create service clusterip web --tcp=80:8080
    "service_clusterip": (
        "6b3873000a0d0a02763112075365727669636512690a1f0a0377656212001a0022002a003200380042005a0a"
        "0a03617070120377656212420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a"
        "0361707012037765621a002209436c757374657249503a00420052005a00600068001a020a001a002200",
        {"kind": "Service",
         "apiVersion": "v1",
         "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"ports": [{"name": "80-8080",
                             "protocol": "TCP",
                             "port": 80,
                             "targetPort": 8080}],
                  "selector": {"app": "web"},
                  "type": "ClusterIP"},
         "status": {"loadBalancer": {}}}),
    # kubectl create service nodeport np --tcp=80:8080
    "service_nodeport": (
        "6b3873000a0d0a02763112075365727669636512650a1d0a026e7012001a0022002a003200380042005a090a"
        "0361707012026e7012400a1b0a0738302d38303830120354435018502207080010903f1a00280012090a0361"
        "707012026e701a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200",
        {"kind": "Service",
         "apiVersion": "v1",
         "metadata": {"name": "np", "labels": {"app": "np"}},
         "spec": {"ports": [{"name": "80-8080",
                             "protocol": "TCP",
                             "port": 80,
                             "targetPort": 8080}],
                  "selector": {"app": "np"},
                  "type": "NodePort"},
         "status": {"loadBalancer": {}}}),
    # kubectl create service clusterip headless --clusterip=None
    "service_headless": (
        "6b3873000a0d0a027631120753657276696365125f0a290a08686561646c65737312001a0022002a00320038"
        "0042005a0f0a036170701208686561646c657373122e120f0a036170701208686561646c6573731a044e6f6e"
        "652209436c757374657249503a00420052005a00600068001a020a001a002200",
        {"kind": "Service",
         "apiVersion": "v1",
         "metadata": {"name": "headless", "labels": {"app": "headless"}},
         "spec": {"selector": {"app": "headless"}, "clusterIP": "None", "type": "ClusterIP"},
         "status": {"loadBalancer": {}}}),
    # kubectl create service externalname ext --external-name=example.com
    "service_externalname": (
        "6b3873000a0d0a027631120753657276696365125a0a1f0a0365787412001a0022002a003200380042005a0a"
        "0a0361707012036578741233120a0a0361707012036578741a00220c45787465726e616c4e616d653a004200"
        "520b6578616d706c652e636f6d5a00600068001a020a001a002200",
        {"kind": "Service",
         "apiVersion": "v1",
         "metadata": {"name": "ext", "labels": {"app": "ext"}},
         "spec": {"selector": {"app": "ext"},
                  "type": "ExternalName",
                  "externalName": "example.com"},
         "status": {"loadBalancer": {}}}),
    # kubectl create namespace team-a
    "namespace": (
        "6b3873000a0f0a02763112094e616d657370616365121e0a160a067465616d2d6112001a0022002a00320038"
        "00420012001a020a001a002200",
        {"kind": "Namespace",
         "apiVersion": "v1",
         "metadata": {"name": "team-a"},
         "spec": {},
         "status": {}}),
    # kubectl create configmap cfg --from-literal=a=1 --from-literal=b=two
    "configmap": (
        "6b3873000a0f0a0276311209436f6e6669674d617012270a130a0363666712001a0022002a00320038004200"
        "12060a016112013112080a0162120374776f1a002200",
        {"kind": "ConfigMap",
         "apiVersion": "v1",
         "metadata": {"name": "cfg"},
         "data": {"a": "1", "b": "two"}}),
    # kubectl create secret generic s --from-literal=password=hunter2
    "secret": (
        "6b3873000a0c0a0276311206536563726574122a0a110a017312001a0022002a0032003800420012130a0870"
        "617373776f7264120768756e746572321a001a002200",
        {"kind": "Secret",
         "apiVersion": "v1",
         "metadata": {"name": "s"},
         "data": {"password": "aHVudGVyMg=="}}),
    # kubectl create serviceaccount robot
    "serviceaccount": (
        "6b3873000a140a027631120e536572766963654163636f756e7412170a150a05726f626f7412001a0022002a"
        "003200380042001a002200",
        {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "robot"}}),
    # kubectl create job j --image=busybox -- echo hi
    "job": (
        "6b3873000a0f0a0862617463682f763112034a6f621282010a110a016a12001a0022002a0032003800420012"
        "6332610a100a0012001a0022002a00320038004200124d122a0a016a120762757379626f781a046563686f1a"
        "0268692a0042006a007200800100880100900100a201001a054e65766572320042004a005200580060006800"
        "8201008a01009a0100c201001a082000280030003a001a002200",
        {"kind": "Job",
         "apiVersion": "batch/v1",
         "metadata": {"name": "j"},
         "spec": {"template": {"metadata": {},
                               "spec": {"containers": [{"name": "j",
                                                        "image": "busybox",
                                                        "command": ["echo", "hi"],
                                                        "resources": {}}],
                                        "restartPolicy": "Never"}}},
         "status": {}}),
    # kubectl create cronjob cj --image=busybox --schedule=@hourly -- echo hi
    "cronjob": (
        "6b3873000a130a0862617463682f7631120743726f6e4a6f6212a4010a120a02636a12001a0022002a003200"
        "38004200128b010a0740686f75726c791a002a7e0a120a02636a12001a0022002a0032003800420012683266"
        "0a100a0012001a0022002a003200380042001252122b0a02636a120762757379626f781a046563686f1a0268"
        "692a0042006a007200800100880100900100a201001a094f6e4661696c757265320042004a00520058006000"
        "68008201008a01009a0100c201001a001a002200",
        {"kind": "CronJob",
         "apiVersion": "batch/v1",
         "metadata": {"name": "cj"},
         "spec": {"schedule": "@hourly",
                  "jobTemplate": {"metadata": {"name": "cj"},
                                  "spec": {"template": {"metadata": {},
                                                        "spec": {"containers": [{"name": "cj",
                                                                                 "image": "busybox",
                                                                                 "command": ["echo",
                                                                                             "hi"],
                                                                                 "resources": {}}],
                                                                 "restartPolicy": "OnFailure"}}}}},
         "status": {}}),
    # kubectl create role r --verb=get,list --resource=pods
    "role": (
        "6b3873000a240a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311204526f6c651228"
        "0a110a017212001a0022002a0032003800420012130a036765740a046c69737412001a04706f64731a002200",
        {"kind": "Role",
         "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "r"},
         "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
    # kubectl create clusterrole agg
    #   --aggregation-rule=rbac.example.com/aggregate-to-monitoring=true
    "clusterrole_aggregate": (
        "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b436c75737465"
        "72526f6c65124b0a130a0361676712001a0022002a003200380042001a340a320a300a28726261632e657861"
        "6d706c652e636f6d2f6167677265676174652d746f2d6d6f6e69746f72696e671204747275651a002200",
        {"kind": "ClusterRole",
         "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "agg"},
         "aggregationRule": {"clusterRoleSelectors": [
             {"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}}),
    # kubectl create clusterrole nonres --verb=get --non-resource-url=/healthz
    "clusterrole_nonresource": (
        "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b436c75737465"
        "72526f6c6512290a160a066e6f6e72657312001a0022002a00320038004200120f0a036765742a082f686561"
        "6c74687a1a002200",
        {"kind": "ClusterRole",
         "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "nonres"},
         "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
    # kubectl create rolebinding rb --role=r --serviceaccount=default:robot
    "rolebinding": (
        "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b526f6c654269"
        "6e64696e67125e0a120a02726212001a0022002a0032003800420012220a0e536572766963654163636f756e"
        "7412001a05726f626f74220764656661756c741a240a19726261632e617574686f72697a6174696f6e2e6b38"
        "732e696f1204526f6c651a01721a002200",
        {"kind": "RoleBinding",
         "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "rb"},
         "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}}),
    # kubectl create rolebinding rb2 --clusterrole=view --user=alice --group=devs
    "rolebinding_users": (
        "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b526f6c654269"
        "6e64696e67129d010a130a0372623212001a0022002a00320038004200122a0a04557365721219726261632e"
        "617574686f72697a6174696f6e2e6b38732e696f1a05616c6963652200122a0a0547726f7570121972626163"
        "2e617574686f72697a6174696f6e2e6b38732e696f1a046465767322001a2e0a19726261632e617574686f72"
        "697a6174696f6e2e6b38732e696f120b436c7573746572526f6c651a04766965771a002200",
        {"kind": "RoleBinding",
         "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "rb2"},
         "subjects": [{"kind": "User",
                       "apiGroup": "rbac.authorization.k8s.io",
                       "name": "alice"},
                      {"kind": "Group",
                       "apiGroup": "rbac.authorization.k8s.io",
                       "name": "devs"}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                     "kind": "ClusterRole",
                     "name": "view"}}),
    # kubectl create clusterrolebinding crb --clusterrole=cr --serviceaccount=default:robot
    "clusterrolebinding": (
        "6b3873000a320a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311212436c75737465"
        "72526f6c6542696e64696e6712670a130a0363726212001a0022002a0032003800420012220a0e5365727669"
        "63654163636f756e7412001a05726f626f74220764656661756c741a2c0a19726261632e617574686f72697a"
        "6174696f6e2e6b38732e696f120b436c7573746572526f6c651a0263721a002200",
        {"kind": "ClusterRoleBinding",
         "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "crb"},
         "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                     "kind": "ClusterRole",
                     "name": "cr"}}),
    # kubectl auth can-i get pods
    "access_review": (
        "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a656374"
        "416363657373526576696577123c0a100a0012001a0022002a00320038004200121e0a1c0a0764656661756c"
        "7412036765741a0022002a04706f647332003a001a08080012001a0020001a002200",
        {"kind": "SelfSubjectAccessReview",
         "apiVersion": "authorization.k8s.io/v1",
         "metadata": {},
         "spec": {"resourceAttributes": {"namespace": "default", "verb": "get",
                                         "resource": "pods"}},
         "status": {"allowed": False}}),
    # kubectl certificate approve c (a request the admin made with kubectl create -f)
    "csr_approval": (
        "6b3873000a330a166365727469666963617465732e6b38732e696f2f76311219436572746966696361746553"
        "69676e696e675265717565737412d6060a8c020a016312001a0022002a2439303638333031632d653161362d"
        "346334302d393838322d306462333264343835626365320233313800420808bfe6dbd80610008a01c9010a0e"
        "6b75626563746c2d63726561746512065570646174651a166365727469666963617465732e6b38732e696f2f"
        "7631220808bfe6dbd806100032084669656c647356313a80010a7e7b22663a73706563223a207b22663a6578"
        "7069726174696f6e5365636f6e6473223a207b7d2c2022663a67726f757073223a207b7d2c2022663a726571"
        "75657374223a207b7d2c2022663a7369676e65724e616d65223a207b7d2c2022663a757361676573223a207b"
        "7d2c2022663a757365726e616d65223a207b7d7d7d420012dd030adb022d2d2d2d2d424547494e2043455254"
        "4946494341544520524551554553542d2d2d2d2d0a4d4948484d473443415141774444454b4d416747413155"
        "4541777742626a425a4d424d4742797147534d34394167454743437147534d343941774548413049410a4243"
        "62767a72304f36654e4b5a704748345973366b534b79397a4f555732536379666e3549656e35327467536b43"
        "4f4c33707a48757a4d4e4651786e634533530a5775634655675630533238787630427764466879304f616741"
        "44414b42676771686b6a4f5051514441674e4a414442474169454138725236674b374f382b714f0a756b6838"
        "4641584675704e714f4a336152355a366c384d6669363063564177434951433151725559565a6e326d532b79"
        "316d62456556554e445558466e7149580a5174654b684344414273383152673d3d0a2d2d2d2d2d454e442043"
        "4552544946494341544520524551554553542d2d2d2d2d0a120561646d696e1a00220e73797374656d3a6d61"
        "7374657273221473797374656d3a61757468656e746963617465642a116469676974616c207369676e617475"
        "72652a0b636c69656e7420617574683a2b6b756265726e657465732e696f2f6b7562652d6170697365727665"
        "722d636c69656e742d6b7562656c657440901c1a650a630a08417070726f766564120e4b75626563746c4170"
        "70726f76651a3554686973204353522077617320617070726f766564206279206b75626563746c2063657274"
        "6966696361746520617070726f76652e220808bfe6dbd80610002a003204547275651a002200",
        {"kind": "CertificateSigningRequest",
         "apiVersion": "certificates.k8s.io/v1",
         "metadata": {"name": "c", "uid": "9068301c-e1a6-4c40-9882-0db32d485bce",
                      "resourceVersion": "31", "creationTimestamp": "2026-12-07T17:56:15Z",
                      "managedFields": [{
                          "manager": "kubectl-create", "operation": "Update",
                          "apiVersion": "certificates.k8s.io/v1", "time": "2026-12-07T17:56:15Z",
                          "fieldsType": "FieldsV1",
                          "fieldsV1": {"f:spec": {"f:expirationSeconds": {}, "f:groups": {},
                                                  "f:request": {}, "f:signerName": {},
                                                  "f:usages": {}, "f:username": {}}}}]},
         "spec": {"request": (
                      "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlISE1HNENBUUF3RERFS01BZ0dB"
                      "MVVFQXd3QmJqQlpNQk1HQnlxR1NNNDlBZ0VHQ0NxR1NNNDlBd0VIQTBJQQpCQ2J2enIwTzZlTkta"
                      "cEdINFlzNmtTS3k5ek9VVzJTY3lmbjVJZW41MnRnU2tDT0wzcHpIdXpNTkZReG5jRTNTCld1Y0ZV"
                      "Z1YwUzI4eHYwQndkRmh5ME9hZ0FEQUtCZ2dxaGtqT1BRUURBZ05KQURCR0FpRUE4clI2Z0s3Tzgr"
                      "cU8KdWtoOEZBWEZ1cE5xT0ozYVI1WjZsOE1maTYwY1ZBd0NJUUMxUXJVWVZabjJtUyt5MW1iRWVW"
                      "VU5EVVhGbnFJWApRdGVLaENEQUJzODFSZz09Ci0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1Qt"
                      "LS0tLQo="),
                  "username": "admin",
                  "groups": ["system:masters", "system:authenticated"],
                  "usages": ["digital signature", "client auth"],
                  "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                  "expirationSeconds": 3600},
         "status": {"conditions": [{
             "type": "Approved", "status": "True", "reason": "KubectlApprove",
             "message": "This CSR was approved by kubectl certificate approve.",
             "lastUpdateTime": "2026-12-07T17:56:15Z"}]}}),
    # kubectl auth can-i --list
    "rules_review": (
        "6b3873000a310a17617574686f72697a6174696f6e2e6b38732e696f2f7631121653656c665375626a656374"
        "52756c657352657669657712230a100a0012001a0022002a0032003800420012090a0764656661756c741a04"
        "180022001a002200",
        {"kind": "SelfSubjectRulesReview",
         "apiVersion": "authorization.k8s.io/v1",
         "metadata": {},
         "spec": {"namespace": "default"},
         "status": {"incomplete": False}}),
    # kubectl auth whoami
    "whoami": (
        "6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a6563"
        "74526576696577121a0a100a0012001a0022002a0032003800420012060a040a0012001a002200",
        {"kind": "SelfSubjectReview",
         "apiVersion": "authentication.k8s.io/v1",
         "metadata": {},
         "status": {"userInfo": {}}}),
    # kubectl create token default --duration=10m --audience=a,b
    "token_request": (
        "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e5265717565"
        "737412220a100a0012001a0022002a0032003800420012080a03612c6220d8041a040a0012001a002200",
        {"kind": "TokenRequest",
         "apiVersion": "authentication.k8s.io/v1",
         "metadata": {},
         "spec": {"audiences": ["a,b"], "expirationSeconds": 600},
         "status": {"token": ""}}),
}


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_kubectl_bodies_decode_to_the_json_kubectl_would_send(name: str) -> None:
    body, want = CAPTURED[name]
    assert decode(bytes.fromhex(body)) == want


def test_every_kind_names_a_message_of_the_table() -> None:
    messages = protoschema.messages()
    assert all(m in messages for m in protoschema.KINDS.values())
    assert {"core.PodSpec", "meta.ObjectMeta", "rbac.PolicyRule"} <= set(messages)


# -- special types --


def test_time_is_rfc3339_and_a_zero_time_is_left_out() -> None:
    when = msg(8, num(1, 1704164645), num(2, 999_000_000))  # 2024-01-02T03:04:05.999Z
    body = envelope("v1", "ConfigMap", msg(1, ld(1, "c"), when, msg(9, num(1, 0))))
    assert decode(body)["metadata"] == {"name": "c", "creationTimestamp": "2024-01-02T03:04:05Z",
                                        "deletionTimestamp": "1970-01-01T00:00:00Z"}


def test_micro_time_keeps_microseconds() -> None:
    event = msg(1, ld(1, "e")) + msg(10, num(1, 1704164645), num(2, 123_456_789))
    assert decode(envelope("v1", "Event", event))["eventTime"] == "2024-01-02T03:04:05.123456Z"


def test_a_time_out_of_range_is_refused() -> None:
    body = envelope("v1", "ConfigMap", msg(1, msg(8, num(1, 10**12))))
    with pytest.raises(ProtobufError, match="out of range"):
        decode(body)


def test_int_or_string_and_pointer_zeros() -> None:
    """IntOrString {1 type, 2 intVal, 3 strVal}: maxSurge 0 is data (a pointer)."""
    rolling = msg(2, msg(1, num(1, 1), num(2, 0), ld(3, "25%")), msg(2, num(1, 0), num(2, 0)))
    spec = msg(2, num(1, 0), msg(2), msg(3, msg(1), msg(2)), msg(4, ld(1, "RollingUpdate"),
                                                                rolling), num(5, 0))
    obj = decode(envelope("apps/v1", "Deployment", meta("d") + spec))
    assert obj["spec"] == {"replicas": 0, "selector": {}, "template": {"metadata": {}, "spec": {}},
                           "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                               "maxUnavailable": "25%", "maxSurge": 0}}}


def test_service_ports_by_name_and_number() -> None:
    ports = (msg(1, ld(1, "http"), ld(2, "TCP"), num(3, 80), msg(4, num(1, 1), ld(3, "web")),
                 num(5, 0))
             + msg(1, ld(1, ""), ld(2, "UDP"), num(3, 53), msg(4, num(1, 0), num(2, 0), ld(3, ""))))
    spec = msg(2, ports, entry(2, "app", "web"), ld(4, "NodePort"))
    obj = decode(envelope("v1", "Service", meta("s") + spec + msg(3, msg(1))))
    assert obj["spec"] == {"ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                      "targetPort": "web"},
                                     {"protocol": "UDP", "port": 53}],
                           "selector": {"app": "web"}, "type": "NodePort"}
    assert obj["status"] == {"loadBalancer": {}}


def test_quantities_volumes_env_and_probes() -> None:
    resources = msg(8, entry(1, "cpu", ld(1, "500m")), entry(2, "memory", ld(1, "64Mi")))
    env = msg(7, ld(1, "LEVEL"), msg(3, msg(3, msg(1, ld(1, "cfg")), ld(2, "level"))))
    probe = msg(10, msg(1, msg(2, ld(1, "/healthz"), msg(2, num(1, 1), ld(3, "http")))),
                num(2, 3), num(4, 0))
    mount = msg(9, ld(1, "data"), num(2, 1), ld(3, "/data"))
    volumes = (msg(1, ld(1, "data"), msg(2, msg(2, ld(1, ""))))
               + msg(1, ld(1, "conf"), msg(2, msg(19, msg(1, ld(1, "cfg")), num(3, 0o644))))
               + msg(1, ld(1, "host"), msg(2, msg(1, ld(1, "/var/log")))))
    spec = template_spec(deployment(volumes, msg(2, ld(1, "c"), ld(2, "img"), resources, env,
                                                  probe, mount)))
    assert spec["volumes"] == [{"name": "data", "emptyDir": {}},
                               {"name": "conf", "configMap": {"name": "cfg",
                                                              "defaultMode": 0o644}},
                               {"name": "host", "hostPath": {"path": "/var/log"}}]
    c = spec["containers"][0]
    assert c["resources"] == {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}}
    assert c["env"] == [{"name": "LEVEL", "valueFrom": {
        "configMapKeyRef": {"name": "cfg", "key": "level"}}}]
    assert c["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"},
                                  "initialDelaySeconds": 3}
    assert c["volumeMounts"] == [{"name": "data", "readOnly": True, "mountPath": "/data"}]


def test_security_context_and_tolerations() -> None:
    sc = msg(15, msg(1, ld(1, "NET_ADMIN")), num(2, 0), num(4, 0), num(5, 1))
    toleration = msg(22, ld(1, "node.kubernetes.io/not-ready"), ld(2, "Exists"),
                     ld(4, "NoExecute"), num(5, 300))
    spec = template_spec(deployment(container(sc), toleration))
    assert spec["containers"][0]["securityContext"] == {
        "capabilities": {"add": ["NET_ADMIN"]}, "privileged": False, "runAsUser": 0,
        "runAsNonRoot": True}
    assert spec["tolerations"] == [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                    "effect": "NoExecute", "tolerationSeconds": 300}]


def test_negative_numbers_and_repeated_map_keys() -> None:
    spec = template_spec(deployment(container(), num(25, -1), entry(7, "zone", "a"),
                                    entry(7, "zone", "b")))
    assert spec["priority"] == -1
    assert spec["nodeSelector"] == {"zone": "b"}


def test_secret_bytes_are_base64_as_in_json() -> None:
    secret = meta("s") + entry(2, "bin", b"\xff\x00\x01") + entry(4, "plain", "text")
    obj = decode(envelope("v1", "Secret", secret + ld(3, "Opaque")))
    assert obj["data"] == {"bin": base64.b64encode(b"\xff\x00\x01").decode()}
    assert obj["stringData"] == {"plain": "text"}
    assert obj["type"] == "Opaque"


def test_go_durations() -> None:
    cases = {0: "0s", 1: "1ns", 1500: "1.5µs", 2_000_000: "2ms", 1_500_000_000: "1.5s",
             60_000_000_000: "1m0s", 3_723_000_000_000: "1h2m3s", -90_000_000_000: "-1m30s"}
    assert {ns: protobuf.go_duration(ns) for ns in cases} == cases


# -- what is refused --


def test_data_in_an_unknown_field_is_415_naming_message_and_field() -> None:
    body = envelope("v1", "ConfigMap", meta("c") + ld(99, "surprise"))
    with pytest.raises(UnsupportedField, match=r"field 99 of ConfigMap \(core/v1\)"):
        decode(body)
    nested = envelope("v1", "ConfigMap", meta("c", num(40, 7)))
    with pytest.raises(UnsupportedField, match=r"field 40 of ObjectMeta \(meta/v1\)"):
        decode(nested)


def test_an_empty_unknown_field_is_skipped() -> None:
    body = envelope("v1", "ConfigMap", meta("c", num(40, 0), ld(41, "")) + entry(2, "a", "1"))
    assert decode(body) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                            "data": {"a": "1"}}


@pytest.mark.parametrize(("body", "message"), [
    (b"", "magic"),
    (b"{\"kind\": \"Pod\"}", "magic"),
    (envelope("v1", "Gadget", b""), "v1/Gadget"),
    (envelope("", "", b""), "?/?"),
    (b"k8s\x00" + b"\x0a\x05\x0a\x02v1", "malformed"),  # length past the end
    (b"k8s\x00" + b"\x08\xff\xff", "malformed"),  # truncated varint
    (b"k8s\x00" + b"\x0f", "malformed"),  # wire type 7
    (envelope("v1", "ConfigMap", num(1, 5)), "wire type 0"),  # metadata is a message
    (envelope("v1", "ConfigMap", msg(1, ld(1, b"\xff\xfe"))), "UTF-8"),
    (envelope("v1", "ConfigMap", b"\x0b\x0c"), "wire type 3"),  # a group
])
def test_malformed_bodies_are_protobuf_errors(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=re.escape(message)) as e:
        decode(body)
    assert not isinstance(e.value, UnsupportedField)


def test_a_compressed_envelope_is_unsupported() -> None:
    with pytest.raises(UnsupportedField, match="gzip"):
        decode(envelope("v1", "ConfigMap", meta("c"), ld(3, "gzip")))


def _mutations(rng: random.Random, seeds: list[bytes]) -> bytes:
    body = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        op, at = rng.randrange(4), rng.randrange(len(body) + 1)
        if op == 0 and at < len(body):
            body[at] = rng.randrange(256)
        elif op == 1:
            body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == 2:
            del body[at:at + rng.randint(1, 8)]
        else:
            body = body[:at]
    return bytes(body)


def test_fuzzed_bodies_raise_protobuf_error_or_decode() -> None:
    rng = random.Random(20241201)
    seeds = [bytes.fromhex(b) for b, _ in CAPTURED.values()]
    started, outcomes = time.monotonic(), {"decoded": 0, "refused": 0}
    for i in range(5000):
        if i % 4 == 0:
            body = b"k8s\x00" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            body = _mutations(rng, seeds)
        try:
            assert isinstance(decode(body), dict)
            outcomes["decoded"] += 1
        except ProtobufError:
            outcomes["refused"] += 1
    assert outcomes["decoded"] > 20 and outcomes["refused"] > 1000, outcomes
    assert time.monotonic() - started < 60
