"""The kinds the mesh reads and writes, as the API serves them: the
Gateway API's and netplane's AuthorizationPolicy (both from the
CustomResourceDefinitions in this package)."""

from __future__ import annotations

from netplane.api.resources import Resource
from netplane.mesh.config import GATEWAY_GROUP

GATEWAYCLASS = Resource("GatewayClass", "gatewayclasses", "gatewayclass", GATEWAY_GROUP, "v1",
                        False, ("gc",))
GATEWAY = Resource("Gateway", "gateways", "gateway", GATEWAY_GROUP, "v1", True, ("gtw",))
HTTPROUTE = Resource("HTTPRoute", "httproutes", "httproute", GATEWAY_GROUP, "v1", True)
REFERENCEGRANT = Resource("ReferenceGrant", "referencegrants", "referencegrant", GATEWAY_GROUP,
                          "v1beta1", True, ("refgrant",))
AUTHORIZATIONPOLICY = Resource("AuthorizationPolicy", "authorizationpolicies",
                               "authorizationpolicy", "security.netplane.io", "v1", True)

# On what the Gateway API's controllers make for a Gateway (GEP-1762).
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"

# A namespace whose pods are in the mesh carries this label with this value.
ENROLLED_LABEL, ENROLLED = "netplane.io/mesh", "enabled"
