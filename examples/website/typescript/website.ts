// The Website example plugin in TypeScript: a Deployment, a Service and an
// Ingress per Website, and the Website's status from the observed
// Deployment. The same plugin is written in Rust (../rust) and Python
// (../python); all three render identically (host/tests/render_examples.rs).
import { Condition, InvalidSpec, PluginInfo, Response, type KubeObject, type Reconciler, type Request } from "@trellis/sdk";

const MAX_REPLICAS = 20;

function integer(spec: KubeObject, key: string, fallback: number, low: number, high: number): number {
  const value = spec[key] ?? fallback;
  if (!Number.isInteger(value) || value < low || value > high) {
    throw new InvalidSpec(`spec.${key} must be an integer from ${low} to ${high}`);
  }
  return value;
}

function text(spec: KubeObject, key: string): string {
  const value = spec[key];
  if (typeof value !== "string" || value === "") throw new InvalidSpec(`spec.${key} is required`);
  return value;
}

const website: Reconciler = {
  info: () =>
    new PluginInfo("website", "samples.trellis.dev/v1alpha1", "Website")
      .child("apps/v1", "Deployment")
      .child("v1", "Service")
      .child("networking.k8s.io/v1", "Ingress"),

  reconcile(req: Request): Response {
    const spec = req.spec;
    const image = text(spec, "image");
    const host = text(spec, "host");
    const replicas = integer(spec, "replicas", 1, 0, MAX_REPLICAS);
    const port = integer(spec, "port", 8080, 1, 65535);
    const path = spec.path ?? "/";
    if (typeof path !== "string" || !path.startsWith("/")) throw new InvalidSpec("spec.path must start with /");

    const selector = { "app.kubernetes.io/name": "website", "app.kubernetes.io/instance": req.name };
    const labels = { ...selector, "app.kubernetes.io/component": "web" };
    const deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: req.childMeta(req.name, labels),
      spec: {
        replicas,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels },
          spec: { containers: [{ name: "web", image, ports: [{ name: "http", containerPort: port }] }] },
        },
      },
    };
    const service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: req.childMeta(req.name, labels),
      spec: { selector, ports: [{ name: "http", port: 80, targetPort: "http" }] },
    };
    const ingress = {
      apiVersion: "networking.k8s.io/v1",
      kind: "Ingress",
      metadata: req.childMeta(req.name, labels),
      spec: {
        rules: [
          {
            host,
            http: {
              paths: [{ path, pathType: "Prefix", backend: { service: { name: req.name, port: { name: "http" } } } }],
            },
          },
        ],
      },
    };

    const observed = req.child("apps/v1", "Deployment", req.name);
    const ready: number = observed?.status?.readyReplicas ?? 0;
    const available: number = observed?.status?.availableReplicas ?? 0;
    const condition =
      observed === undefined
        ? Condition.ready(false, "Pending", "the Deployment is not created yet")
        : available >= replicas
          ? Condition.ready(true, "Available", `${ready}/${replicas} replicas ready`)
          : Condition.ready(false, "Progressing", `${ready}/${replicas} replicas ready`);
    return new Response()
      .child(deployment)
      .child(service)
      .child(ingress)
      .status({ url: `http://${host}${path}`, replicas, readyReplicas: ready })
      .condition(condition);
  },
};

export default website;
