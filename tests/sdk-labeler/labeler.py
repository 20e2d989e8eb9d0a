"""The PodLabeler test plugin in Python (see README.md): it asks only for
the Pods its selector matches and labels each with ``spec.label``."""

from trellis_sdk import Condition, Decoration, InvalidSpec, PluginInfo, Reconciler, RelatedSelector, Response


class Labeler(Reconciler):
    def info(self) -> PluginInfo:
        return PluginInfo("labeler", "samples.trellis.dev/v1alpha1", "PodLabeler").related("v1", "Pod")

    def related(self, parent: dict) -> list[RelatedSelector]:
        selector = (parent.get("spec") or {}).get("selector") or {}
        return [RelatedSelector("v1", "Pod").matching(selector)]

    def reconcile(self, req) -> Response:
        label, value, remove = req.spec.get("label"), req.spec.get("value"), req.spec.get("remove")
        if not isinstance(label, str) or not label:
            raise InvalidSpec("spec.label is required")
        response = Response()
        for pod in req.related_of("v1", "Pod"):
            decoration = Decoration("v1", "Pod", pod["metadata"]["name"]).label(label, str(value or "true"))
            if isinstance(remove, str):
                decoration.label(remove, None)
            response.decorate(decoration)
        labelled = len(response.decorations)
        return (
            response.status({"labelled": labelled})
            .condition(Condition.ready(True, "Labelled", f"{labelled} pods labelled"))
        )
