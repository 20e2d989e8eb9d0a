"""Unit tests of the SDK's plain-Python side (no component is built):
requests, responses and the example plugin's logic. Run with
``python3 -m unittest discover -s sdk-python/tests``."""

import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk-python/src"))
sys.path.insert(0, str(ROOT / "examples/website/python"))

from trellis_sdk import CREATE_ONLY, Condition, InvalidSpec, PluginInfo, Request, Response  # noqa: E402
from website import Website  # noqa: E402


def website(spec: dict) -> dict:
    return {
        "apiVersion": "samples.trellis.dev/v1alpha1",
        "kind": "Website",
        "metadata": {"name": "docs", "namespace": "web"},
        "spec": spec,
    }


class RequestTest(unittest.TestCase):
    def test_finds_a_child_by_kind_and_name(self):
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "docs"}}
        other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "docs"}}
        req = Request(parent=website({}), children=[other, deployment])
        self.assertIs(req.child("apps/v1", "Deployment", "docs"), deployment)
        self.assertIsNone(req.child("apps/v1", "Deployment", "api"))
        self.assertEqual(req.children_of("v1", "Service"), [other])

    def test_child_meta_is_in_the_parents_namespace(self):
        req = Request(parent=website({}))
        self.assertEqual(req.child_meta("x", {"a": "b"}), {"name": "x", "namespace": "web", "labels": {"a": "b"}})
        cluster = Request(parent={"metadata": {"name": "n"}})
        self.assertEqual(cluster.child_meta("x"), {"name": "x"})


class ResponseTest(unittest.TestCase):
    def test_builds_fluently(self):
        r = (
            Response()
            .child({"kind": "A"})
            .child_once({"kind": "B"})
            .status({"x": 1})
            .condition(Condition.ready(False, "Waiting", "not yet"))
            .warning("Slow", "it is slow")
            .requeue_after(30)
        )
        self.assertEqual(len(r.children), 2)
        self.assertEqual(r.children[1]["metadata"]["annotations"][CREATE_ONLY], "true")
        self.assertEqual(r.conditions[0].status, "False")
        self.assertTrue(r.events[0].warning)
        self.assertEqual(r.requeue_after_seconds, 30)

    def test_info_lists_children(self):
        info = PluginInfo("p", "g/v1", "K").child("v1", "Service").validating()
        self.assertEqual([k.kind for k in info.children], ["Service"])
        self.assertTrue(info.validate)


class WebsiteTest(unittest.TestCase):
    def test_three_children_and_pending_without_a_deployment(self):
        r = Website().reconcile(Request(parent=website({"image": "nginx", "host": "a.example.com"})))
        self.assertEqual([c["kind"] for c in r.children], ["Deployment", "Service", "Ingress"])
        self.assertEqual(r.children[0]["spec"]["replicas"], 1)
        self.assertEqual(r.conditions[0].reason, "Pending")
        self.assertEqual(r.status_value["url"], "http://a.example.com/")

    def test_a_bad_replica_count_is_an_invalid_spec(self):
        for replicas in (21, -1, "2", True, 1.5):
            with self.assertRaises(InvalidSpec) as caught:
                Website().reconcile(Request(parent=website({"image": "i", "host": "h", "replicas": replicas})))
            self.assertEqual(caught.exception.message, "spec.replicas must be an integer from 0 to 20")


if __name__ == "__main__":
    unittest.main()


class SchemaTest(unittest.TestCase):
    def test_a_dataclass_gives_the_crd_schema(self):
        from dataclasses import dataclass, field
        from typing import Optional

        from trellis_sdk.schema import crd, openapi_schema

        @dataclass
        class Port:
            """A port of the site."""

            number: int

        @dataclass
        class Spec:
            image: str
            node_port: Optional[int] = None
            replicas: int = field(default=1, metadata={"minimum": 0, "maximum": 20})
            ports: list[Port] = field(default_factory=list)
            labels: dict[str, str] = field(default_factory=dict)

        schema = openapi_schema(Spec)
        self.assertEqual(schema["required"], ["image"])
        self.assertEqual(schema["properties"]["nodePort"], {"type": "integer"})
        self.assertEqual(
            schema["properties"]["replicas"], {"type": "integer", "minimum": 0, "maximum": 20, "default": 1}
        )
        self.assertEqual(schema["properties"]["ports"]["items"]["description"], "A port of the site.")
        self.assertEqual(schema["properties"]["labels"]["additionalProperties"], {"type": "string"})
        doc = crd(PluginInfo("site", "example.com/v1", "Site"), Spec)
        self.assertEqual(doc["metadata"]["name"], "sites.example.com")
        version = doc["spec"]["versions"][0]
        self.assertEqual(version["name"], "v1")
        self.assertEqual(version["schema"]["openAPIV3Schema"]["properties"]["spec"], schema)

    def test_a_type_without_a_schema_is_refused(self):
        from trellis_sdk.schema import SchemaError, openapi_schema

        with self.assertRaises(SchemaError):
            openapi_schema(set[int])

    def test_the_yaml_reads_back(self):
        import json

        from trellis_sdk.schema import to_yaml

        value = {"a": [{"b": 1, "c": ["x", "y: z"]}, {"d": {}}], "e": True, "f": None, "g": []}
        text = to_yaml(value)
        try:
            import yaml  # noqa: F401
        except ImportError:
            self.assertIn('- b: 1\n    c:\n    - "x"\n    - "y: z"\n', text)
            return
        self.assertEqual(yaml.safe_load(text), json.loads(json.dumps(value)))


class ExampleCrdTest(unittest.TestCase):
    def test_the_website_crd_is_generated_from_the_plugins_types(self):
        from trellis_sdk.build import crd_yaml

        committed = (ROOT / "examples/website/crd.yaml").read_text()
        generated = crd_yaml("website:Website", [ROOT / "examples/website/python"])
        self.assertEqual(
            committed,
            generated,
            "examples/website/crd.yaml is stale: cd examples/website/python && trellis-py crd website:Website > ../crd.yaml",
        )


class LoadTest(unittest.TestCase):
    def test_a_spec_loads_into_its_dataclass_and_back(self):
        from dataclasses import dataclass, field
        from typing import Optional

        from trellis_sdk.schema import dump, load

        @dataclass
        class Spec:
            image: str
            node_port: Optional[int] = None
            replicas: int = 1
            tags: list[str] = field(default_factory=list)

        spec = load(Spec, {"image": "nginx", "nodePort": 30080, "tags": ["a"]})
        self.assertEqual(spec, Spec(image="nginx", node_port=30080, replicas=1, tags=["a"]))
        self.assertEqual(dump(spec), {"image": "nginx", "nodePort": 30080, "replicas": 1, "tags": ["a"]})
        for bad, message in [
            ({}, "spec.image is required"),
            ({"image": 3}, "spec.image must be a string"),
            ({"image": "x", "replicas": True}, "spec.replicas must be an integer"),
            ({"image": "x", "tags": ["a", 1]}, "spec.tags[1] must be a string"),
        ]:
            with self.assertRaises(InvalidSpec) as caught:
                load(Spec, bad)
            self.assertEqual(str(caught.exception), message)
