/**
 * Unit tests of the SDK and of the bridge to the WIT exports (no component
 * is built): the values `worldOf` hands componentize-js for selections,
 * decorations and defaulting. Run with `node sdk-js/test/run.mjs`.
 */
import { Decoration, PluginInfo, RelatedSelector, Request, Response, type KubeObject } from "../src/index.ts";
import { worldOf } from "../src/world.ts";

export const tests: [string, () => void][] = [];
const test = (name: string, body: () => void) => tests.push([name, body]);

function equal(actual: unknown, expected: unknown, what: string) {
  const [a, e] = [JSON.stringify(actual), JSON.stringify(expected)];
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

const pod = (name: string): KubeObject => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace: "web" } });

const plugin = {
  info: () => new PluginInfo("scraper", "example.com/v1", "Scraper").relatedKind("v1", "Pod").defaultingRelated("v1", "Pod"),
  related: (parent: KubeObject) =>
    parent.spec?.all
      ? undefined
      : [
          new RelatedSelector("v1", "Pod").matching({ matchLabels: { app: "web" } }),
          new RelatedSelector("v1", "Pod").named("a", "b"),
          new RelatedSelector("v1", "Pod").inNamespace("other"),
          new RelatedSelector("v1", "Pod").inNamespacesLabelled({}),
        ],
  reconcile: (req: Request) =>
    new Response().decorate(
      new Decoration("v1", "Pod", req.related[0].metadata.name).label("scraped", "true").annotation("old", null),
    ),
  defaultRelated: (obj: KubeObject, parents: KubeObject[]) => ({ ...obj, metadata: { ...obj.metadata, labels: { parents: String(parents.length) } } }),
};
const world = worldOf(plugin);

test("related selections become WIT selectors, each scope its variant case", () => {
  equal(world.related(JSON.stringify({ spec: {} })), [
    { kind: { apiVersion: "v1", kind: "Pod" }, labels: '{"matchLabels":{"app":"web"}}', scope: { tag: "parent-namespace" } },
    { kind: { apiVersion: "v1", kind: "Pod" }, scope: { tag: "names", val: ["a", "b"] } },
    { kind: { apiVersion: "v1", kind: "Pod" }, scope: { tag: "namespace", val: "other" } },
    { kind: { apiVersion: "v1", kind: "Pod" }, scope: { tag: "namespace-selector", val: "{}" } },
  ], "selectors");
  equal(world.related(JSON.stringify({ spec: { all: true } })), undefined, "no answer: every related object");
  equal(worldOf({ info: plugin.info, reconcile: plugin.reconcile }).related("{}"), undefined, "no related method");
});

test("decorations cross as key and value tuples, a removed key without a value", () => {
  const response = world.reconcile({ parent: "{}", children: [], related: [JSON.stringify(pod("web-0"))], finalizing: false });
  equal(response.decorations, [
    {
      target: { kind: { apiVersion: "v1", kind: "Pod" }, name: "web-0" },
      labels: [["scraped", "true"]],
      annotations: [["old", undefined]],
    },
  ], "decorations");
  const [removed] = response.decorations[0].annotations;
  if (removed.length !== 2 || removed[1] !== undefined) throw new Error("a removal is [key, undefined]");
});

test("a defaulting-related kind is also a related kind, and defaultRelated sees the parents", () => {
  const info = world.info();
  equal(info.related, [{ apiVersion: "v1", kind: "Pod" }], "related kinds");
  equal(info.defaultRelated, [{ apiVersion: "v1", kind: "Pod" }], "default-related kinds");
  const filled = JSON.parse(world.defaultRelated(JSON.stringify(pod("web-0")), ["{}", "{}"]));
  equal(filled.metadata.labels, { parents: "2" }, "filled in");
  const unchanged = worldOf({ info: plugin.info, reconcile: plugin.reconcile }).defaultRelated('{"a":1}', []);
  equal(JSON.parse(unchanged), { a: 1 }, "no defaultRelated method: unchanged");
});
