"""Templates: compile a dataset's parts in Jinja2's sandbox, check them, and render one row.

Called by ``batchops.sources.render``. Jinja2 is imported here only, and this module only when a
source is rendered, so start-up pays nothing for it. The environment is ``SandboxedEnvironment``
(templates come from pull requests: no attribute access to Python internals) with
``StrictUndefined`` (a misspelt column is an error, never an empty string). Every problem is
located in the template's own text, mapped back to the manifest line or template file line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import SandboxedEnvironment

from batchops.errors import Diagnostic
from batchops.sources.decls import PartLike


def environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def locate(part: PartLike, line: int, col: int = 0) -> tuple[int, int]:
    """Template line ``line`` (1-based; ``col`` 0 = unknown) -> (line, col) in the origin file."""
    origin = part.origin
    if part.block:
        return origin.line + line, origin.col + col
    if line <= 1:
        return origin.line, origin.col + col
    return origin.line + line - 1, 1 + col


def at(part: PartLike, line: int, message: str, col: int = 0) -> Diagnostic:
    return Diagnostic(part.origin.path, *locate(part, line, col), message)


def where_text(part: PartLike) -> str:
    line, col = locate(part, 1)
    return f"{part.origin.path}:{line}:{col}"


@dataclass
class Compiled:
    """One part: a constant (no variables: rendered once) or a template to render per row."""

    part: PartLike
    constant: str | None
    render: Callable[[dict[str, Any]], str] | None
    variables: frozenset[str]
    template: jinja2.Template | None = None
    simple: bool = False  # rendered by str.format_map, not by Jinja2 (see _simple)


def compile_part(
    env: SandboxedEnvironment, part: PartLike, names: Sequence[str], diags: list[Diagnostic]
) -> Compiled | None:
    """None (with the problems in ``diags``) when it does not compile or uses unknown names."""
    try:
        ast = env.parse(part.text)
        # Compiles the template: an unknown filter or test (TemplateAssertionError, a syntax
        # error) is found here, not by the parser.
        used = frozenset(jinja2.meta.find_undeclared_variables(ast)) - set(env.globals)
    except jinja2.TemplateSyntaxError as exc:
        diags.append(at(part, exc.lineno, f"template syntax error: {exc.message}"))
        return None
    unknown = sorted(used - set(names)) if names else []
    for name in unknown:
        line, col = name_position(env, part.text, name)
        diags.append(at(part, line, undefined_message(name, names), col))
    if unknown:
        return None
    if not used and not any(mark in part.text for mark in ("{{", "{%", "{#")):
        return Compiled(part, part.text.removesuffix("\n"), None, used)
    template = env.from_string(ast)
    simple = _simple(ast)
    if simple is not None:
        return Compiled(part, None, simple, used, template, simple=True)
    return Compiled(part, None, _renderer(template), used, template)


def unrendered(env: SandboxedEnvironment, part: PartLike, names: Sequence[str]) -> Compiled:
    """A part that did not compile, standing in so that the table is still checked: the columns
    it names (those that exist) must not be empty; it renders nothing."""
    try:
        used = frozenset(jinja2.meta.find_undeclared_variables(env.parse(part.text)))
    except jinja2.TemplateSyntaxError:  # an unknown filter or test is one too
        used = frozenset()
    return Compiled(part, "", None, used & frozenset(names))


def _simple(ast: jinja2.nodes.Template) -> Callable[[dict[str, Any]], str] | None:
    """Text and ``{{ name }}`` only (most templates): rendered by ``str.format_map``, in C.
    Exactly what Jinja2 renders: it outputs ``str(value)``, and ``format(value, "")`` is
    ``str(value)`` for every built-in type; a missing column raises, as StrictUndefined would."""
    pieces: list[str] = []
    for node in ast.body:
        if not isinstance(node, jinja2.nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, jinja2.nodes.TemplateData):
                pieces.append(child.data.replace("{", "{{").replace("}", "}}"))
            elif isinstance(child, jinja2.nodes.Name) and child.ctx == "load":
                pieces.append("{" + child.name + "}")
            else:
                return None
    return "".join(pieces).format_map


def _renderer(template: jinja2.Template) -> Callable[[dict[str, Any]], str]:
    """``Template.render`` with one Context reused for every row: building a Context (it merges
    the globals into a new mapping) cost more than rendering (bench/render.py). Each row gets
    its own copy of the row as the context's variables, which is all a render reads or writes
    at the top level; loops, macros and blocks keep their own frames."""
    root, context = template.root_render_func, template.new_context({})

    def render(row: dict[str, Any]) -> str:
        context.vars = dict(row)
        return "".join(root(context))

    return render


SEPARATOR = "\x00"  # between the parts of a combined template; no text of ours contains it


def combine(
    env: SandboxedEnvironment, compiled: Sequence[Compiled]
) -> Callable[[dict[str, Any]], list[str]] | None:
    """All parts as one template, rendered once per row and split: half the per-row cost of a
    two-message template. Each part compiled alone first, so they are self-contained; each loses
    one trailing newline, as it would alone. None when there is nothing to gain. The caller
    renders the parts one by one when this raises (to say which part failed) or returns the
    wrong number of texts (a cell holding the separator)."""
    if sum(c.render is not None and not c.simple for c in compiled) < 2:
        return None  # one Jinja2 render or none per row already
    text = SEPARATOR.join(c.part.text.removesuffix("\n") for c in compiled)
    try:
        render = _renderer(env.from_string(text))
    except jinja2.TemplateError:
        return None

    def texts(row: dict[str, Any]) -> list[str]:
        return render(row).split(SEPARATOR)

    return texts


def undefined_message(name: str, names: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    hint = f"; did you mean '{match[0]}'?" if match else f"; columns: {', '.join(names)}"
    return f"template uses undefined variable '{name}'{hint}"


def name_position(env: SandboxedEnvironment, text: str, name: str) -> tuple[int, int]:
    """(template line, 0-based column) of the first use of ``name``; (1, 0) if not found."""
    for lineno, kind, value in env.lex(text):
        if kind == "name" and value == name:
            found = re.search(rf"\b{re.escape(name)}\b", text.splitlines()[lineno - 1])
            return lineno, found.start() if found else 0
    return 1, 0


def runtime_line(exc: BaseException, compiled: Compiled) -> int:
    """The template line a render error happened on: the innermost frame of the compiled
    template's code, mapped back through its debug info."""
    tb, line = exc.__traceback__, 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>" and compiled.template is not None:
            line = compiled.template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def compile_where(
    env: SandboxedEnvironment,
    expression: str,
    names: Sequence[str],
    origin: tuple[str, int, int],
    diags: list[Diagnostic],
) -> Callable[[dict[str, Any]], Any] | None:
    path, line, col = origin
    try:
        ast = env.parse(f"{{{{ {expression} }}}}")
        found = set(jinja2.meta.find_undeclared_variables(ast))  # compiles: unknown filters
        check = env.compile_expression(expression, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        diags.append(Diagnostic(path, line, col, f"where: syntax error: {exc.message}"))
        return None
    unknown = sorted(found - set(env.globals))
    unknown = [n for n in unknown if names and n not in names]
    for name in unknown:
        use = re.search(rf"\b{re.escape(name)}\b", expression)
        at_name = col + use.start() if use is not None and "\n" not in expression else col
        diags.append(Diagnostic(path, line, at_name, "where: " + undefined_message(name, names)))
    return None if unknown else check
