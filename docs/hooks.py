"""MkDocs hook: show the docstrings' doctest examples as code blocks.

The docstrings are plain prose with ``>>>`` examples (they run as tests). Rendered as
Markdown, an example's output such as ``[[1, 2]]`` would read as a link; this hook adds a
Markdown preprocessor that fences every run of doctest lines as a ``pycon`` block, and shows
the Sphinx roles of the prose (``:func:`name```) as code.
"""
import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_PROMPT = re.compile(r"^(\s*)>>> ")
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


class _DoctestFence(Preprocessor):
    def run(self, lines):
        out, i, fence = [], 0, False
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
            m = None if fence else _PROMPT.match(line)
            if m is None:
                out.append(line if fence else _ROLE.sub(r"`\1`", line))
                i += 1
                continue
            indent = m.group(1)
            out += ["", indent + "```pycon"]
            while i < len(lines) and lines[i].strip():  # the example runs until a blank line
                out.append(lines[i])
                i += 1
            out += [indent + "```", ""]
        return out


class DoctestFenceExtension(Extension):
    def extendMarkdown(self, md):
        md.preprocessors.register(_DoctestFence(md), "doctest_fence", 35)


@event_priority(100)  # before mkdocstrings reads the extension list
def on_config(config):
    config.markdown_extensions.append(DoctestFenceExtension())
    return config
