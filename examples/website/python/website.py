"""The Website example plugin in Python: a Deployment, a Service and an
Ingress per Website, and the Website's status from the observed Deployment.

The same plugin is written in Rust (../rust) and TypeScript (../typescript);
all three render identically (host/tests/render_examples.rs).
"""

from dataclasses import dataclass, field

from trellis_sdk import Condition, InvalidSpec, PluginInfo, Reconciler, Request, Response

MAX_REPLICAS = 20


@dataclass
class WebsiteSpec:
    """A web site served by replicas of an image behind an Ingress."""

    image: str = field(metadata={"description": "The image serving the site."})
    host: str = field(metadata={"description": "The host name the Ingress routes to the site."})
    replicas: int = field(default=1, metadata={"minimum": 0, "maximum": MAX_REPLICAS})
    port: int = field(default=8080, metadata={"minimum": 1, "maximum": 65535, "description": "The container's port."})
    path: str = field(default="/", metadata={"pattern": "^/", "description": "The path prefix of the site."})


@dataclass
class WebsiteStatus:
    """What the host last saw of the site."""

    url: str = ""
    replicas: int = 0
    ready_replicas: int = 0
    conditions: list[dict] = field(default_factory=list)


def _int(spec: dict, key: str, default: int, low: int, high: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSpec(f"spec.{key} must be an integer from {low} to {high}")
    return value


def _text(spec: dict, key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidSpec(f"spec.{key} is required")
    return value


class Website(Reconciler):
    # The CRD (../crd.yaml) is generated from these: `trellis-py crd website:Website`.
    spec_type = WebsiteSpec
    status_type = WebsiteStatus

    def info(self) -> PluginInfo:
        return (
            PluginInfo("website", "samples.trellis.dev/v1alpha1", "Website")
            .child("apps/v1", "Deployment")
            .child("v1", "Service")
            .child("networking.k8s.io/v1", "Ingress")
        )

    def reconcile(self, req: Request) -> Response:
        spec = req.spec
        image = _text(spec, "image")
        host = _text(spec, "host")
        replicas = _int(spec, "replicas", 1, 0, MAX_REPLICAS)
        port = _int(spec, "port", 8080, 1, 65535)
        path = spec.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidSpec("spec.path must start with /")

        selector = {"app.kubernetes.io/name": "website", "app.kubernetes.io/instance": req.name}
        labels = {**selector, "app.kubernetes.io/component": "web"}
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": req.child_meta(req.name, labels),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": image, "ports": [{"name": "http", "containerPort": port}]}
                        ]
                    },
                },
            },
        }
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": req.child_meta(req.name, labels),
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        }
        ingress = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": req.child_meta(req.name, labels),
            "spec": {
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {
                                    "path": path,
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": req.name, "port": {"name": "http"}}},
                                }
                            ]
                        },
                    }
                ]
            },
        }

        observed = req.child("apps/v1", "Deployment", req.name)
        observed_status = (observed or {}).get("status") or {}
        ready = observed_status.get("readyReplicas", 0)
        available = observed_status.get("availableReplicas", 0)
        if observed is None:
            condition = Condition.ready(False, "Pending", "the Deployment is not created yet")
        elif available >= replicas:
            condition = Condition.ready(True, "Available", f"{ready}/{replicas} replicas ready")
        else:
            condition = Condition.ready(False, "Progressing", f"{ready}/{replicas} replicas ready")
        return (
            Response()
            .child(deployment)
            .child(service)
            .child(ingress)
            .status({"url": f"http://{host}{path}", "replicas": replicas, "readyReplicas": ready})
            .condition(condition)
        )
