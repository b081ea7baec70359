"""Editions that differ only in who gets them are rendered once.

Every trending reader, and every reader of the same keywords, gets the same edition on a
day but for a few personal values: the address, the name, the signed links. Jinja was most
of a send's CPU, so the templates are rendered once per distinct edition with a placeholder
for each personal value, and each reader's copy is that output with their values put in,
escaped as autoescape would have escaped them. The result is byte for byte what rendering
for that reader gives (tests/test_shared_render.py compares them). An edition's first
reader gets it rendered as is (most similar-profile editions have one reader); a second
reader soon after makes the shared copy (readers of it far apart would only churn the cache).

Only a template that prints those values plainly (`{{ name }}`) or tests them
(`{% if view_url %}`) is shared: `shareable` reads its syntax tree. One that filters,
slices or passes a personal value on is rendered per reader, as before.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable

from jinja2 import nodes

# the context's values that are one reader's own (render.Renderer.context), and an item's
PERSONAL = ("subject", "email", "name", "first_name", "greeting", "why_you_get_this", "unsubscribe_url",
            "profile_url", "view_url", "archive_url")
PERSONAL_ITEM = ("more_url", "fewer_url")
CACHED_EDITIONS = 128  # distinct editions kept; each is about 70 KB
SEEN_EDITIONS = 4096  # editions seen lately: a second reader soon after makes the shared copy

# render(context) -> (html, text): the templates over one context
RenderParts = Callable[[dict], tuple[str, str]]


def shareable(tree: nodes.Template) -> bool:
    """Whether a template's output is the same for two readers but where it prints their personal values."""
    if any(tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends,
                          nodes.EvalContextModifier, nodes.ContextReference))):
        return False
    loop_names = {target.name for loop in tree.find_all(nodes.For)
                  if isinstance(loop.iter, nodes.Name) and loop.iter.name == "items"
                  for target in [loop.target, *loop.target.find_all(nodes.Name)] if isinstance(target, nodes.Name)}
    return _plain(tree, loop_names, printed=False, tested=False)


def _plain(node: nodes.Node, loop_names: set[str], *, printed: bool, tested: bool) -> bool:
    """No personal value under `node` is used but printed whole or tested for truth."""
    if isinstance(node, nodes.Name):
        if node.name in PERSONAL:
            return node.ctx == "load" and (printed or tested)
        if node.name == "items":  # printed whole it would show each item's links
            return node.ctx == "load" and tested
        return node.name not in loop_names or node.ctx != "load"  # an item passed whole would carry its links
    if isinstance(node, nodes.Const):
        return node.value not in PERSONAL_ITEM  # item["more_url"], map(attribute="more_url")
    if isinstance(node, nodes.Getattr) and node.attr in PERSONAL_ITEM:
        return printed or tested
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in loop_names:
        return True  # item.title and the like
    if isinstance(node, nodes.Output):
        return all(_plain(child, loop_names, printed=True, tested=False) for child in node.nodes)
    if isinstance(node, nodes.For) and isinstance(node.iter, nodes.Name) and node.iter.name == "items":
        children = [*node.body, *node.else_, *([node.test] if node.test else [])]
        return all(_plain(child, loop_names, printed=False, tested=False) for child in children)
    if isinstance(node, nodes.If | nodes.CondExpr):
        return all(_plain(child, loop_names, printed=False, tested=child is node.test)
                   for child in node.iter_child_nodes())
    if isinstance(node, nodes.Not):
        return _plain(node.node, loop_names, printed=False, tested=True)
    if isinstance(node, nodes.And | nodes.Or):
        return all(_plain(child, loop_names, printed=False, tested=tested) for child in node.iter_child_nodes())
    if isinstance(node, nodes.Filter) and node.name in ("length", "count") and isinstance(node.node, nodes.Name) \
            and node.node.name == "items":
        return True
    return all(_plain(child, loop_names, printed=False, tested=False) for child in node.iter_child_nodes())


class SharedRenders:
    """The rendered editions of a run with placeholders for the personal values, by what they show."""

    def __init__(self, wrap: Callable[..., str], size: int = CACHED_EDITIONS):
        """`wrap` makes the text part's lines (render.wrap_text): done once for the lines no value is put in,
        per reader (and not remembered) for the others."""
        self.wrap = wrap
        self.size = size
        self._parts: OrderedDict[tuple, tuple[list, list, list]] = OrderedDict()
        self._seen: OrderedDict[tuple, int] = OrderedDict()  # -> when it was last rendered as is (a count of renders)
        self._renders = 0
        nonce = secrets.token_hex(6)  # a paper's text cannot spell a placeholder it cannot guess
        self._placeholder = "\ue000" + nonce + "{}\ue001"
        self._found = re.compile("\ue000" + nonce + "(\\d+)\ue001")

    def render(self, templates: tuple, context: dict, render: RenderParts) -> tuple[str, str, bytes | None]:
        """(html, wrapped text, the html's UTF-8 or None) of `context` through `render`, from the shared copy of
        this edition when there is one (then the UTF-8 too: joining encoded parts is a tenth of encoding the whole).

        `templates` are the compiled templates `render` uses: a recompiled one shares nothing older.
        """
        values = [context[key] for key in PERSONAL]
        for item in context["items"]:
            values += (item.more_url, item.fewer_url)
        if any(isinstance(value, str) and ("\ue000" in value or "\ue001" in value) for value in values):
            html, text = render(context)  # a value holding the placeholder's marks is not put in blind
            return html, self.wrap(text, remember=False), None
        key = (templates, _shape(context))
        parts = self._parts.get(key)
        self._renders += 1
        last = self._seen.get(key)
        # rendered as is: the first reader of an edition (perhaps its only one: a library's picks), and one whose
        # previous reader came too long ago for a shared copy to have stayed cached (it would never be used)
        if parts is None and (last is None or self._renders - last > self.size):
            self._seen[key] = self._renders
            self._seen.move_to_end(key)
            if len(self._seen) > SEEN_EDITIONS:
                self._seen.popitem(last=False)
            html, text = render(context)
            return html, self.wrap(text), None
        if parts is None:
            del self._seen[key]
            html, text = render(self._placeholders(context))
            html_parts = self._split(html)
            utf8_parts = [part.encode("utf-8") if type(part) is str else part for part in html_parts]
            parts = self._parts[key] = (html_parts, self._text_lines(text), utf8_parts)
            if len(self._parts) > self.size:
                self._parts.popitem(last=False)
        else:
            self._parts.move_to_end(key)
        html_parts, text_lines, utf8_parts = parts
        escaped = [escape(value) for value in values]
        html = _fill(html_parts, escaped)
        utf8 = b"".join([part if type(part) is bytes else escaped[part].encode("utf-8") for part in utf8_parts])
        plain = [str(value) for value in values]
        text = "\n".join([line if type(line) is str else self.wrap(_fill(line, plain), remember=False) for line in text_lines])
        return html, text, utf8

    def _placeholders(self, context: dict) -> dict:
        """`context` with each truthy personal value replaced by its numbered placeholder."""
        shared = dict(context)
        for slot, key in enumerate(PERSONAL):
            if context[key]:
                shared[key] = self._placeholder.format(slot)
        slot = len(PERSONAL)
        items = []
        for item in context["items"]:
            links = {name: self._placeholder.format(slot + n) if getattr(item, name) else getattr(item, name)
                     for n, name in enumerate(PERSONAL_ITEM)}
            items.append(dataclasses.replace(item, **links))
            slot += len(PERSONAL_ITEM)
        shared["items"] = items
        return shared

    def _split(self, rendered: str) -> list:
        """`rendered` as literal text and slot numbers, in turn: [text, slot, text, …, text]."""
        pieces = self._found.split(rendered)
        return [piece if n % 2 == 0 else int(piece) for n, piece in enumerate(pieces)]

    def _text_lines(self, text: str) -> list:
        """The text part by line: runs of lines without a placeholder wrapped now (one string),
        and each line with one as its parts (filled, then wrapped, per reader)."""
        lines: list = []
        for line in text.split("\n"):
            if "\ue000" in line and self._found.search(line):
                lines.append(self._split(line))
            elif lines and type(lines[-1]) is str:
                lines[-1] += "\n" + self.wrap(line)
            else:
                lines.append(self.wrap(line))
        return lines


def escape(value) -> str:
    """`value` as autoescape prints it (markupsafe's escaping, without making a Markup object)."""
    text = str(value)
    if "&" in text or "<" in text or ">" in text or "'" in text or '"' in text:
        text = text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace("'", "&#39;").replace('"', "&#34;")
    return text


def _fill(parts: list, values: list[str]) -> str:
    return "".join([part if type(part) is str else values[part] for part in parts])


def _shape(context: dict) -> tuple:
    """What an edition shows but the personal values: whether each is there, and everything else."""
    return tuple(
        (True if value else value) if key in PERSONAL
        else tuple(map(_item_shape, value)) if key == "items"
        else tuple(value) if type(value) is list
        else value
        for key, value in context.items()
    )


def _item_shape(item) -> tuple:
    return (*_item_fields(type(item))(item), *[True if getattr(item, name) else getattr(item, name) for name in PERSONAL_ITEM])


@functools.cache
def _item_fields(kind: type) -> Callable:
    """A getter of an item's fields but its links, as a tuple."""
    return operator.attrgetter(*[f.name for f in dataclasses.fields(kind) if f.name not in PERSONAL_ITEM])
