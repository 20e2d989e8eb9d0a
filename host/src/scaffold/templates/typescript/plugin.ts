/**
 * The __KIND__ plugin (__GROUP__/__VERSION__), in TypeScript.
 *
 * Each __KIND__ gets a ConfigMap holding its message, repeated `replicas`
 * times; its status says what was written. `make test` runs the scenarios
 * of tests/ through the built module. crd.yaml is the schema of
 * `__KIND__Spec` below: keep the two in step.
 */
import { Condition, InvalidSpec, PluginInfo, Response, type Reconciler, type Request } from "@trellis/sdk";

/** What a __KIND__ asks for. */
export interface __KIND__Spec {
  /** The message the ConfigMap holds. */
  message: string;
  /** How often (1 to 10, default 1). */
  replicas: number;
}

/** What the plugin last wrote. */
export interface __KIND__Status {
  message: string;
}

/** The parent's spec, checked field by field. */
function specOf(req: Request): __KIND__Spec {
  const { message, replicas = 1 } = req.spec;
  if (typeof message !== "string" || message === "") throw new InvalidSpec("spec.message is required");
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 10) {
    throw new InvalidSpec("spec.replicas must be an integer from 1 to 10");
  }
  return { message, replicas };
}

const plugin: Reconciler = {
  info: () => new PluginInfo("__NAME__", "__GROUP__/__VERSION__", "__KIND__").child("v1", "ConfigMap"),

  reconcile(req: Request) {
    const spec = specOf(req);
    const message = Array(spec.replicas).fill(spec.message).join(" ");
    const status: __KIND__Status = { message };
    return new Response()
      .child({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: req.childMeta(req.name, req.appLabels("__NAME__", "message")),
        data: { message },
      })
      .status(status)
      .condition(Condition.ready(true, "Configured", `ConfigMap ${req.name} holds the message`));
  },
};
export default plugin;
