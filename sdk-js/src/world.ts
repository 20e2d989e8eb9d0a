/**
 * The bridge between a {@link Reconciler} and the exports componentize-js
 * expects for `trellis:reconciler@0.2.0`: the text that crosses the
 * boundary is parsed into objects, and responses and thrown errors are
 * turned back into WIT values. `trellis-js build` generates the entry module
 * that re-exports these.
 */
import {
  type Decoration,
  InvalidSpec,
  PluginError,
  type RelatedSelector,
  Request,
  Response,
  Transient,
  type Reconciler,
} from "./index.ts";

const dumps = (value: unknown) => JSON.stringify(value);

/** A WIT `result` error: componentize-js turns a thrown value with a `payload` into `err(payload)`. */
class WitError extends Error {
  constructor(public payload: unknown) {
    super(typeof payload === "string" ? payload : JSON.stringify(payload));
  }
}

function reconcileError(e: unknown): WitError {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof InvalidSpec) return new WitError({ tag: "invalid-spec", val: message });
  if (e instanceof Transient) return new WitError({ tag: "transient", val: message });
  if (e instanceof PluginError) return new WitError({ tag: "fatal", val: message });
  const name = e instanceof Error ? e.name : "Error";
  return new WitError({ tag: "fatal", val: `${name}: ${message}` });
}

/** A `related-selector`: option and variant values as componentize-js
 * takes them (`undefined` for `none`, `{tag, val}` for a case). */
export function witSelector(s: RelatedSelector) {
  let scope;
  if (s.names !== undefined) scope = { tag: "names", val: s.names };
  else if (s.namespaceSelector !== undefined) scope = { tag: "namespace-selector", val: dumps(s.namespaceSelector) };
  else if (s.namespace !== undefined) scope = { tag: "namespace", val: s.namespace };
  else scope = { tag: "parent-namespace" };
  return {
    kind: { apiVersion: s.apiVersion, kind: s.kind },
    labels: s.labels === undefined ? undefined : dumps(s.labels),
    scope,
  };
}

/** A `decoration`: each label and annotation a `[key, value]` tuple, a
 * removed one's value `undefined`. */
export function witDecoration(d: Decoration) {
  const fields = (map: Record<string, string | null>) =>
    Object.entries(map).map(([key, value]) => [key, value ?? undefined]);
  return {
    target: { kind: { apiVersion: d.apiVersion, kind: d.kind }, namespace: d.namespace, name: d.name },
    labels: fields(d.labels),
    annotations: fields(d.annotations),
  };
}

function messages(e: unknown): WitError {
  return new WitError([e instanceof Error ? e.message : String(e)]);
}

/** The world's exports for `plugin`. */
export function worldOf(plugin: Reconciler) {
  return {
    info() {
      const i = plugin.info();
      return {
        name: i.name,
        version: i.version,
        parent: { apiVersion: i.apiVersion, kind: i.kind },
        children: i.children,
        related: i.related,
        finalizer: i.finalizer,
        admission: { validate: i.validate, default: i.default },
        defaultRelated: i.defaultRelated,
      };
    },
    related(parent: string) {
      const answer = plugin.related?.(JSON.parse(parent));
      return answer == null ? undefined : answer.map(witSelector);
    },
    reconcile(req: { parent: string; children: string[]; related: string[]; config?: string; finalizing: boolean }) {
      let r: Response;
      try {
        const request = new Request(
          JSON.parse(req.parent),
          req.children.map((c) => JSON.parse(c)),
          req.related.map((o) => JSON.parse(o)),
          req.config === undefined ? undefined : JSON.parse(req.config),
          req.finalizing,
        );
        r = plugin.reconcile(request);
        if (!(r instanceof Response)) throw new PluginError("reconcile did not return a Response");
      } catch (e) {
        throw reconcileError(e);
      }
      return {
        children: r.children.map(dumps),
        status: r.statusValue === undefined ? undefined : dumps(r.statusValue),
        conditions: r.conditions.map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message })),
        events: r.events.map((e) => ({ severity: e.warning ? "warning" : "normal", reason: e.reason, message: e.message })),
        requeueAfterSeconds: r.requeueAfterSeconds,
        finalized: r.isFinalized,
        decorations: r.decorations.map(witDecoration),
      };
    },
    validate(req: any) {
      let problems: string[] = [];
      try {
        problems =
          plugin.validate?.({
            operation: req.operation,
            object: req.object === undefined ? undefined : JSON.parse(req.object),
            oldObject: req.oldObject === undefined ? undefined : JSON.parse(req.oldObject),
            username: req.user.username,
            groups: req.user.groups,
            related: req.related.map((o: string) => JSON.parse(o)),
            config: req.config === undefined ? undefined : JSON.parse(req.config),
          }) ?? [];
      } catch (e) {
        throw messages(e);
      }
      if (problems.length > 0) throw new WitError(problems.map(String));
    },
    default(obj: string) {
      try {
        return dumps(plugin.default ? plugin.default(JSON.parse(obj)) : JSON.parse(obj));
      } catch (e) {
        throw messages(e);
      }
    },
    defaultRelated(obj: string, parents: string[]) {
      try {
        const object = JSON.parse(obj);
        return dumps(plugin.defaultRelated ? plugin.defaultRelated(object, parents.map((p) => JSON.parse(p))) : object);
      } catch (e) {
        throw messages(e);
      }
    },
  };
}
