"""Offline validation of Kubernetes objects against the API schema.

There is no API server here and Debian packages no Go API types, but Debian's
python3-kubernetes carries a model class for every API type, generated from
the Kubernetes OpenAPI spec (22.6: Kubernetes 1.22): its field names, their
types, which fields are required and the allowed values of enums.  An object
is walked against those models strictly: an unknown field, a value of the
wrong type (a number where a string is due, a label value that is not a
string), a missing required field or a value outside an enum is an error
naming the path, as an API server in strict field validation would refuse it.

autoscaling/v2 HorizontalPodAutoscaler (GA in 1.23, after the client was
generated) is checked against autoscaling/v2beta2's model, which it kept
field for field.  The custom resources the chart makes (ServiceMonitor,
PrometheusRule, KEDA's ScaledObject) have no models; they are checked
against JSON Schemas below written from those projects' CRD documentation,
for the fields the chart uses, unknown fields refused."""
import re

import jsonschema
import kubernetes.client as k8s
from kubernetes.client.configuration import Configuration

MODELS = {
    ("v1", "ConfigMap"): k8s.V1ConfigMap,
    ("v1", "Secret"): k8s.V1Secret,
    ("v1", "Service"): k8s.V1Service,
    ("v1", "ServiceAccount"): k8s.V1ServiceAccount,
    ("apps/v1", "Deployment"): k8s.V1Deployment,
    ("apps/v1", "StatefulSet"): k8s.V1StatefulSet,
    ("policy/v1", "PodDisruptionBudget"): k8s.V1PodDisruptionBudget,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.V2beta2HorizontalPodAutoscaler,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.V1NetworkPolicy,
}

_CONFIG = Configuration()
_CONFIG.client_side_validation = True

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _check_type(value, type_name, path, errors):
    """Checks value against an openapi type name of the python client:
    str, int, bool, float, object, datetime, date, list[X], dict(str, X), V1Foo."""
    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            errors.append("%s: expected a list, got %s" % (path, type(value).__name__))
            return
        for i, item in enumerate(value):
            _check_type(item, type_name[5:-1], "%s[%d]" % (path, i), errors)
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            errors.append("%s: expected a map, got %s" % (path, type(value).__name__))
            return
        inner = type_name[type_name.index(",") + 1:-1].strip()
        for k, v in value.items():
            if not isinstance(k, str):
                errors.append("%s: map key %r is not a string" % (path, k))
            _check_type(v, inner, "%s.%s" % (path, k), errors)
        return
    if type_name == "str":
        if not isinstance(value, str):
            errors.append("%s: expected a string, got %s %r" % (path, type(value).__name__, value))
    elif type_name == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append("%s: expected an integer, got %r" % (path, value))
    elif type_name == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append("%s: expected a number, got %r" % (path, value))
    elif type_name == "bool":
        if not isinstance(value, bool):
            errors.append("%s: expected true or false, got %r" % (path, value))
    elif type_name in ("datetime", "date"):
        if not isinstance(value, str):
            errors.append("%s: expected a timestamp string, got %r" % (path, value))
    elif type_name == "object":
        # IntOrString and free-form fields
        pass
    else:
        model = getattr(k8s, type_name, None)
        if model is None:
            errors.append("%s: unknown model %s" % (path, type_name))
            return
        _check_model(value, model, path, errors)


def _check_model(obj, model, path, errors):
    if not isinstance(obj, dict):
        errors.append("%s: expected an object (%s), got %r" % (path, model.__name__, obj))
        return
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, value in obj.items():
        if key not in by_json:
            errors.append("%s.%s: unknown field (%s has %s)" % (path, key, model.__name__,
                                                               ", ".join(sorted(by_json))))
            continue
        _check_type(value, model.openapi_types[by_json[key]], "%s.%s" % (path, key), errors)
    # Required fields and enums: the model's setters check them
    kwargs = {attr: obj.get(json_name) for attr, json_name in model.attribute_map.items()}
    try:
        model(local_vars_configuration=_CONFIG, **kwargs)
    except ValueError as e:
        errors.append("%s: %s" % (path, e))


def _check_metadata(obj, path, errors):
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    kind = obj.get("kind")
    # Services and most names are DNS-1123 labels; ConfigMaps, Secrets may be subdomains
    pattern = DNS1123_LABEL if kind in ("Service", "Deployment", "StatefulSet") else DNS1123_SUBDOMAIN
    if not pattern.match(name) or len(name) > (63 if pattern is DNS1123_LABEL else 253):
        errors.append("%s.metadata.name: %r is not a valid %s name" % (path, name, kind))
    for where in ("labels",):
        for k, v in (meta.get(where) or {}).items():
            if not QUALIFIED_NAME.match(k) or len(k.split("/")[-1]) > 63:
                errors.append("%s.metadata.%s: bad key %r" % (path, where, k))
            if not isinstance(v, str) or not LABEL_VALUE.match(v) or len(v) > 63:
                errors.append("%s.metadata.%s.%s: bad value %r" % (path, where, k, v))


_STR = {"type": "string"}
_INT = {"type": "integer"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"type": "object", "required": ["name"], "additionalProperties": False,
         "properties": {"name": _STR, "namespace": _STR, "labels": _LABELS, "annotations": _LABELS}}
_SELECTOR = {"type": "object", "additionalProperties": False,
             "properties": {"matchLabels": _LABELS, "matchExpressions": {"type": "array"}}}

CRD_SCHEMAS = {
    # monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator API docs)
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": _STR, "kind": _STR, "metadata": _META,
            "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                     "properties": {
                         "selector": _SELECTOR,
                         "jobLabel": _STR,
                         "namespaceSelector": {"type": "object", "additionalProperties": False,
                                               "properties": {"any": {"type": "boolean"},
                                                              "matchNames": {"type": "array", "items": _STR}}},
                         "endpoints": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False,
                             "properties": {"port": _STR, "targetPort": {"type": ["string", "integer"]},
                                            "path": _STR, "scheme": {"enum": ["http", "https"]},
                                            "interval": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                                            "scrapeTimeout": {"type": "string",
                                                              "pattern": r"^(\d+(ms|s|m|h))+$"},
                                            "honorLabels": {"type": "boolean"}}}}}}}},
    # monitoring.coreos.com/v1 PrometheusRule
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": _STR, "kind": _STR, "metadata": _META,
            "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
                "groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                    "properties": {
                        "name": _STR, "interval": _STR,
                        "rules": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["expr"], "additionalProperties": False,
                            "properties": {"alert": _STR, "record": _STR, "expr": {"type": ["string", "integer"]},
                                           "for": {"type": "string", "pattern": r"^(\d+(ms|s|m|h|d|w|y))+$"},
                                           "labels": _LABELS, "annotations": _LABELS}}}}}}}}}},
    # keda.sh/v1alpha1 ScaledObject (KEDA's docs)
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": _STR, "kind": _STR, "metadata": _META,
            "spec": {"type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
                     "properties": {
                         "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                            "properties": {"apiVersion": _STR, "kind": _STR, "name": _STR,
                                                           "envSourceContainerName": _STR}},
                         "pollingInterval": _INT, "cooldownPeriod": _INT, "idleReplicaCount": _INT,
                         "minReplicaCount": _INT, "maxReplicaCount": _INT,
                         "triggers": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                             "properties": {"type": _STR, "name": _STR, "metricType": _STR,
                                            "metadata": {"type": "object",
                                                         "additionalProperties": {"type": "string"}}}}}}}}},
}


def validate(obj, where="object"):
    """The errors of one object (an empty list when it is valid)."""
    errors = []
    if not isinstance(obj, dict):
        return ["%s: not an object" % where]
    key = (obj.get("apiVersion"), obj.get("kind"))
    path = "%s %s/%s" % (where, key[1], (obj.get("metadata") or {}).get("name"))
    if key in MODELS:
        _check_model(obj, MODELS[key], path, errors)
    elif key in CRD_SCHEMAS:
        validator = jsonschema.Draft7Validator(CRD_SCHEMAS[key])
        for e in validator.iter_errors(obj):
            errors.append("%s.%s: %s" % (path, ".".join(str(p) for p in e.absolute_path), e.message))
    else:
        errors.append("%s: no schema for apiVersion %s kind %s" % (path, key[0], key[1]))
    _check_metadata(obj, path, errors)
    return errors
