/**
 * The PodLabeler test plugin in TypeScript (see README.md): it asks only
 * for the Pods its selector matches and labels each with `spec.label`.
 */
import { Condition, Decoration, InvalidSpec, PluginInfo, RelatedSelector, Response, type KubeObject, type Request } from "../../sdk-js/src/index.ts";

export default {
  info: () => new PluginInfo("labeler", "samples.trellis.dev/v1alpha1", "PodLabeler").relatedKind("v1", "Pod"),
  related: (parent: KubeObject) => [new RelatedSelector("v1", "Pod").matching(parent.spec?.selector ?? {})],
  reconcile(req: Request) {
    const { label, value, remove } = req.spec;
    if (typeof label !== "string" || !label) throw new InvalidSpec("spec.label is required");
    const response = new Response();
    for (const pod of req.relatedOf("v1", "Pod")) {
      const decoration = new Decoration("v1", "Pod", pod.metadata.name).label(label, String(value ?? "true"));
      if (typeof remove === "string") decoration.label(remove, null);
      response.decorate(decoration);
    }
    const labelled = response.decorations.length;
    return response
      .status({ labelled })
      .condition(Condition.ready(true, "Labelled", `${labelled} pods labelled`));
  },
};
