"""Run Python code as if some distributions were not installed, as in an image built without them.

`python -m tests.support.uninstalled matplotlib,scipy,sklearn "import worker.serving.tasks"`

Third-party libraries may try such imports and do without (Keras tries matplotlib and
scikit-learn); our own code must not even try, so each of our modules that asks is reported and
the run fails, whether or not that module caught the ImportError.
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec
from types import FrameType

OUR_PACKAGES = ("shared", "gateway", "worker", "client", "bench")


def importing_module(frame: FrameType | None) -> str:
    """The module whose import statement reached the finder: the first frame outside importlib."""
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
        ("importlib", "_frozen_importlib")
    ):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame is not None else ""


class NotInstalled:
    """A meta-path finder that answers "not found" for `hidden` and notes who of ours asked."""

    def __init__(self, hidden: set[str]):
        self.hidden = hidden
        self.asked_by_us: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name.split(".")[0] not in self.hidden:
            return None  # the next finder's to answer
        importer = importing_module(sys._getframe(1))
        if importer.split(".")[0] in OUR_PACKAGES:
            self.asked_by_us.append(f"{importer} imports {name}")
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def main(hidden: str, code: str) -> None:
    finder = NotInstalled(set(hidden.split(",")))
    sys.meta_path.insert(0, finder)
    exec(compile(code, "<probe>", "exec"), {"__name__": "__probe__"})
    if finder.asked_by_us:
        sys.exit("Imports of uninstalled distributions:\n" + "\n".join(finder.asked_by_us))


if __name__ == "__main__":
    main(*sys.argv[1:])
