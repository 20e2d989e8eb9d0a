"""``trellis-py build MODULE:CLASS -o plugin.wasm``: builds a plugin into a
WebAssembly component with componentize-py, against the WIT shipped in this
package.

``MODULE`` is found on ``--path`` (default: the current folder). The build
writes a one-line entry module exporting ``CLASS`` through
:func:`trellis_sdk._world.world_of`, then runs::

    componentize-py -d <trellis_sdk>/wit -w reconciler componentize <entry> \\
        -p <entry folder> -p <path>... -p <trellis_sdk's parent> -o plugin.wasm

componentize-py pre-initialises the interpreter at build time (the modules
are imported then), so each call of the component starts from a ready
interpreter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WIT_DIR = Path(__file__).resolve().parent / "wit"
"""The WIT package ``trellis:reconciler@0.2.0``."""

WORLD = "reconciler"
ENTRY_MODULE = "trellis_plugin_entry"


class BuildError(Exception):
    """A build that cannot start or that componentize-py refused."""


def entry_source(module: str, class_name: str) -> str:
    """The entry module componentize-py wraps."""
    return (
        "from trellis_sdk._world import world_of\n"
        f"from {module} import {class_name} as _Plugin\n"
        "WitWorld = world_of(_Plugin)\n"
    )


def parse_target(target: str) -> tuple[str, str]:
    """``module:Class`` into its two parts."""
    module, sep, class_name = target.partition(":")
    if not sep or not module or not class_name.isidentifier():
        raise BuildError(f"{target!r} is not MODULE:CLASS (e.g. website:Website)")
    return module, class_name


def build(target: str, output: Path, paths: list[Path]) -> None:
    """Builds ``target`` into the component ``output``."""
    module, class_name = parse_target(target)
    sdk_root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="trellis-py-") as entry_dir:
        Path(entry_dir, f"{ENTRY_MODULE}.py").write_text(entry_source(module, class_name))
        command = [
            sys.executable,
            "-c",
            "import sys; from componentize_py import script; sys.exit(script())",
            "-d",
            str(WIT_DIR),
            "-w",
            WORLD,
            "componentize",
            ENTRY_MODULE,
            "-p",
            entry_dir,
        ]
        for path in paths:
            command += ["-p", str(path.resolve())]
        command += ["-p", str(sdk_root), "-o", str(output)]
        # componentize-py also reads VIRTUAL_ENV's site-packages; the SDK's
        # own folder is given explicitly so an editable install works too.
        env = dict(os.environ)
        done = subprocess.run(command, env=env)
        if done.returncode != 0:
            raise BuildError(f"componentize-py failed (exit {done.returncode}) building {target}")


def crd_yaml(target: str, paths: list[Path]) -> str:
    """The CRD of ``target``'s kind as YAML: its ``info()`` names the kind,
    its ``spec_type`` and ``status_type`` dataclasses give the schema."""
    import importlib

    from .schema import crd, to_yaml

    module, class_name = parse_target(target)
    sys.path[:0] = [str(p.resolve()) for p in paths]
    plugin = getattr(importlib.import_module(module), class_name, None)
    if plugin is None:
        raise BuildError(f"{module} has no class {class_name}")
    spec_type = getattr(plugin, "spec_type", None)
    if spec_type is None:
        raise BuildError(f"{target} names no spec_type (the dataclass of its spec)")
    return to_yaml(crd(plugin().info(), spec_type, getattr(plugin, "status_type", None)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trellis-py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a plugin into a component")
    b.add_argument("target", help="MODULE:CLASS, the Reconciler to export")
    b.add_argument("-o", "--output", type=Path, required=True, help="the component (.wasm) to write")
    b.add_argument(
        "-p", "--path", type=Path, action="append", default=[], help="folder holding MODULE (default: .)"
    )
    sub.add_parser("wit", help="print the folder of the WIT this SDK builds against")
    c = sub.add_parser("crd", help="print the CRD of a plugin's kind, from its spec_type and status_type")
    c.add_argument("target", help="MODULE:CLASS, the Reconciler")
    c.add_argument(
        "-p", "--path", type=Path, action="append", default=[], help="folder holding MODULE (default: .)"
    )
    args = parser.parse_args(argv)
    if args.command == "wit":
        print(WIT_DIR)
        return 0
    if args.command == "crd":
        try:
            print(crd_yaml(args.target, args.path or [Path(".")]), end="")
        except (BuildError, TypeError) as e:
            print(f"trellis-py: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        build(args.target, args.output, args.path or [Path(".")])
    except BuildError as e:
        print(f"trellis-py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
