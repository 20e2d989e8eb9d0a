/**
 * Write a Trellis reconciler plugin in TypeScript.
 *
 * A plugin is one object implementing {@link Reconciler}, the default export
 * of its module:
 *
 * ```ts
 * import { PluginInfo, Response, Condition, InvalidSpec, type Request } from "@trellis/sdk";
 *
 * export default {
 *   info: () => new PluginInfo("hello", "example.com/v1", "Hello").child("v1", "ConfigMap"),
 *   reconcile(req: Request) {
 *     if (!req.spec.greeting) throw new InvalidSpec("spec.greeting is required");
 *     return new Response()
 *       .child({ apiVersion: "v1", kind: "ConfigMap", metadata: req.childMeta(req.name), data: { greeting: req.spec.greeting } })
 *       .condition(Condition.ready(true, "Configured", "done"));
 *   },
 * };
 * ```
 *
 * Build it with `trellis-js build hello.ts -o hello.wasm` (componentize-js
 * against the WIT shipped in this package, `wit/reconciler.wit`). Objects
 * are plain JSON values, as the Kubernetes API serialises them, so a plugin
 * can be unit tested without building it.
 */

/** A Kubernetes object (or any JSON object). */
export type KubeObject = { [key: string]: any };

/** A kind of object: `apps/v1` + `Deployment`. */
export interface KindRef {
  apiVersion: string;
  kind: string;
}

/** Base of the errors the host understands. */
export class PluginError extends Error {}
/** The parent's spec is wrong; the host does not retry until it changes. */
export class InvalidSpec extends PluginError {}
/** A temporary failure; the host retries with backoff. */
export class Transient extends PluginError {}
/** The plugin cannot work; the host retries with its longest backoff. */
export class Fatal extends PluginError {}

const isKind = (o: KubeObject, apiVersion: string, kind: string) => o.apiVersion === apiVersion && o.kind === kind;

/** What a plugin is, built fluently. */
export class PluginInfo {
  version = "0.1.0";
  children: KindRef[] = [];
  related: KindRef[] = [];
  finalizer = false;
  validate = false;
  default = false;
  defaultRelated: KindRef[] = [];

  constructor(
    public name: string,
    public apiVersion: string,
    public kind: string,
  ) {}

  /** Sets the plugin's own version (semver). */
  withVersion(version: string): this {
    this.version = version;
    return this;
  }
  /** Allows children of this kind. */
  child(apiVersion: string, kind: string): this {
    this.children.push({ apiVersion, kind });
    return this;
  }
  /** Reads objects of this kind (handed to every reconcile). */
  relatedKind(apiVersion: string, kind: string): this {
    this.related.push({ apiVersion, kind });
    return this;
  }
  /** Asks for a finalizer (reconcile is called with `finalizing` set). */
  withFinalizer(): this {
    this.finalizer = true;
    return this;
  }
  /** Has the host call `validate` before a parent is stored. */
  validating(): this {
    this.validate = true;
    return this;
  }
  /** Has the host call `default` before a parent is stored. */
  defaulting(): this {
    this.default = true;
    return this;
  }
  /** Has the host call `defaultRelated` on new objects of this related
   * kind before they are stored (added to the related kinds if missing). */
  defaultingRelated(apiVersion: string, kind: string): this {
    if (!this.related.some((k) => isKind(k, apiVersion, kind))) this.related.push({ apiVersion, kind });
    this.defaultRelated.push({ apiVersion, kind });
    return this;
  }
}

/** A label selector, as in a Deployment's `spec.selector`. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

/**
 * Objects of one related kind that a parent needs, narrowed by labels and a
 * scope: the parent's namespace unless {@link RelatedSelector.inNamespace},
 * {@link RelatedSelector.inNamespacesLabelled} or
 * {@link RelatedSelector.named} says otherwise.
 */
export class RelatedSelector {
  labels: LabelSelector | undefined = undefined;
  namespace: string | undefined = undefined;
  namespaceSelector: LabelSelector | undefined = undefined;
  names: string[] | undefined = undefined;

  constructor(
    public apiVersion: string,
    public kind: string,
  ) {}

  /** Only objects whose labels match `selector`. */
  matching(selector: LabelSelector): this {
    this.labels = selector;
    return this;
  }
  /** Objects of another namespace (cluster-wide registrations only). */
  inNamespace(namespace: string): this {
    this.namespace = namespace;
    return this;
  }
  /** Objects of every namespace whose labels match `selector` (`{}`: all). */
  inNamespacesLabelled(selector: LabelSelector): this {
    this.namespaceSelector = selector;
    return this;
  }
  /** Only the objects of these names in the parent's namespace. */
  named(...names: string[]): this {
    this.names = names;
    return this;
  }
}

/**
 * Labels and annotations for the host to keep on an object the plugin does
 * not own, of one of its related kinds. A value of `null` removes the key.
 */
export class Decoration {
  labels: Record<string, string | null> = {};
  annotations: Record<string, string | null> = {};

  /** `namespace` left out: the parent's (or a cluster-scoped object). */
  constructor(
    public apiVersion: string,
    public kind: string,
    public name: string,
    public namespace?: string,
  ) {}

  /** Sets label `key` (`null`: removes it). */
  label(key: string, value: string | null): this {
    this.labels[key] = value;
    return this;
  }
  /** Sets annotation `key` (`null`: removes it). */
  annotation(key: string, value: string | null): this {
    this.annotations[key] = value;
    return this;
  }
}

/** Metadata for a child `name` in `namespace` (left out when empty). */
export function childMeta(name: string, namespace = "", labels?: Record<string, string>): KubeObject {
  const meta: KubeObject = { name };
  if (namespace) meta.namespace = namespace;
  if (labels && Object.keys(labels).length > 0) meta.labels = { ...labels };
  return meta;
}

/** The recommended `app.kubernetes.io/*` labels of a child. */
export function appLabels(app: string, instance: string, component: string): Record<string, string> {
  return {
    "app.kubernetes.io/name": app,
    "app.kubernetes.io/instance": instance,
    "app.kubernetes.io/component": component,
  };
}


/** One reconcile's input, parsed from JSON. */
export class Request {
  constructor(
    public parent: KubeObject,
    public children: KubeObject[] = [],
    public related: KubeObject[] = [],
    public config: unknown = undefined,
    public finalizing = false,
  ) {}

  /** The parent's metadata. */
  get metadata(): KubeObject {
    return this.parent.metadata ?? {};
  }
  /** The parent's name. */
  get name(): string {
    return this.metadata.name ?? "";
  }
  /** The parent's namespace (empty for a cluster-scoped parent). */
  get namespace(): string {
    return this.metadata.namespace ?? "";
  }
  /** The parent's spec (an empty object when it has none). */
  get spec(): KubeObject {
    return this.parent.spec ?? {};
  }
  /** Metadata for a child called `name` in the parent's namespace. */
  childMeta(name: string, labels?: Record<string, string>): KubeObject {
    return childMeta(name, this.namespace, labels);
  }
  /** The `app.kubernetes.io/*` labels of a child of this parent. */
  appLabels(app: string, component: string): Record<string, string> {
    return appLabels(app, this.name, component);
  }
  /** The observed children of one kind. */
  childrenOf(apiVersion: string, kind: string): KubeObject[] {
    return this.children.filter((c) => isKind(c, apiVersion, kind));
  }
  /** The observed child of this kind and name, if any. */
  child(apiVersion: string, kind: string, name: string): KubeObject | undefined {
    return this.childrenOf(apiVersion, kind).find((c) => c.metadata?.name === name);
  }
  /** The related objects of one kind. */
  relatedOf(apiVersion: string, kind: string): KubeObject[] {
    return this.related.filter((r) => isKind(r, apiVersion, kind));
  }
}

/** A status condition; the host adds `lastTransitionTime` and `observedGeneration`. */
export class Condition {
  constructor(
    public type: string,
    public status: string,
    public reason: string,
    public message: string,
  ) {}
  /** A condition of `type` that is `True` when `isTrue`. */
  static of(type: string, isTrue: boolean, reason: string, message: string): Condition {
    return new Condition(type, isTrue ? "True" : "False", reason, message);
  }
  /** The `Ready` condition. */
  static ready(isReady: boolean, reason: string, message: string): Condition {
    return Condition.of("Ready", isReady, reason, message);
  }
}

/** An event recorded on the parent. */
export interface Event {
  reason: string;
  message: string;
  warning: boolean;
}

/** Annotation the host reads on a desired child: create it if missing, never update it. */
export const CREATE_ONLY = "trellis.dev/create-only";

/** What one reconcile wants, built fluently. */
export class Response {
  children: KubeObject[] = [];
  statusValue: KubeObject | undefined = undefined;
  conditions: Condition[] = [];
  events: Event[] = [];
  requeueAfterSeconds: number | undefined = undefined;
  isFinalized = false;
  decorations: Decoration[] = [];

  /** Adds a desired child (an object with apiVersion, kind and metadata). */
  child(obj: KubeObject): this {
    this.children.push(obj);
    return this;
  }
  /** Adds a child the host creates if missing and never updates. */
  childOnce(obj: KubeObject): this {
    obj.metadata ??= {};
    obj.metadata.annotations = { ...(obj.metadata.annotations ?? {}), [CREATE_ONLY]: "true" };
    return this.child(obj);
  }
  /** Sets the parent's status (without `conditions`). */
  status(status: KubeObject): this {
    this.statusValue = status;
    return this;
  }
  /** Sets a condition on the parent's status. */
  condition(condition: Condition): this {
    this.conditions.push(condition);
    return this;
  }
  /** Records a Normal event on the parent. */
  event(reason: string, message: string): this {
    this.events.push({ reason, message, warning: false });
    return this;
  }
  /** Records a Warning event on the parent. */
  warning(reason: string, message: string): this {
    this.events.push({ reason, message, warning: true });
    return this;
  }
  /** Reconciles the parent again after `seconds` even if nothing changes. */
  requeueAfter(seconds: number): this {
    this.requeueAfterSeconds = Math.floor(seconds);
    return this;
  }
  /** While finalizing: cleanup is done, the finalizer may come off. */
  finalized(): this {
    this.isFinalized = true;
    return this;
  }
  /** Keeps labels and annotations set on an object the plugin does not own. */
  decorate(decoration: Decoration): this {
    this.decorations.push(decoration);
    return this;
  }
}

/** A parent about to be stored, for `validate`. */
export interface AdmissionRequest {
  operation: "create" | "update" | "delete";
  object?: KubeObject;
  oldObject?: KubeObject;
  username: string;
  groups: string[];
  related: KubeObject[];
  config?: unknown;
}

/** A reconciler plugin: the default export of the plugin's module. */
export interface Reconciler {
  /** What the plugin reconciles and which kinds it may emit or read. */
  info(): PluginInfo;
  /** The desired children and status of one parent; throw an
   * {@link InvalidSpec}, {@link Transient} or {@link Fatal} to fail (any
   * other exception is reported as fatal). */
  reconcile(req: Request): Response;
  /** Problems with a parent about to be stored, one sentence each. */
  validate?(req: AdmissionRequest): string[];
  /** The parent with its defaults filled in. */
  default?(obj: KubeObject): KubeObject;
  /** Which related objects `parent` needs; `undefined` (or no method)
   * hands every object of the related kinds in its namespace. */
  related?(parent: KubeObject): RelatedSelector[] | undefined;
  /** A new object of one of the `defaultingRelated` kinds, filled in before
   * it is stored; `parents` are this plugin's parents in its namespace. */
  defaultRelated?(obj: KubeObject, parents: KubeObject[]): KubeObject;
}
