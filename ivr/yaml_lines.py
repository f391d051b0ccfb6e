"""YAML files whose errors name their line: a key path is turned into the line it is on."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """The file cannot be read, is not YAML, or is not a mapping; the message names it."""


class LocatedYaml:
    """YAML nodes by key path, to turn a path into a line number."""

    def __init__(self, node: yaml.Node | None):
        self.node = node

    def line(self, path: Iterable[str | int]) -> int | None:
        """The line of the deepest key (or list item) of `path` that exists in the file."""
        node, best = self.node, None
        for key in path:
            if node is None:
                break
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if str(k.value) == str(key):
                        best, node = k.start_mark.line + 1, v
                        break
                else:
                    return best or node.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if key >= len(node.value):
                    return best or node.start_mark.line + 1
                node = node.value[key]
                best = node.start_mark.line + 1
            else:
                return best or node.start_mark.line + 1
        if best is None and node is not None:
            return node.start_mark.line + 1
        return best


def read_yaml_mapping(path: Path) -> tuple[dict[str, Any], LocatedYaml]:
    """The file's data (a mapping) and its nodes for line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{path}: cannot read: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise YamlFileError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise YamlFileError(f"{path}:1: the file must be a mapping of sections "
                            "(schedules, desks, menus, entries)")
    return data, LocatedYaml(node)
