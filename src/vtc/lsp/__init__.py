"""`vtc lsp`, the language server for .vt recipes (docs/editors.md, "The language server").

vtc.lsp.analysis answers every request from a buffer's text and path (no pygls); vtc.lsp.server is the pygls
wiring. pygls comes with the `lsp` extra: ``pip install 'vtc[lsp]'``.
"""

from __future__ import annotations

from vtc.diagnostics import Diagnostic, error


def missing_server() -> Diagnostic | None:
    """VT566 when pygls (and its lsprotocol) cannot be imported, else None."""
    try:
        import lsprotocol.types  # noqa: F401
        import pygls.lsp.server  # noqa: F401
    except ImportError as exc:
        return error("VT566", f"`vtc lsp` needs pygls, which is not installed here ({exc})",
                     help="install the language server's extra: pip install 'vtc[lsp]' (in the environment whose "
                          "`vtc` your editor starts)")
    return None
