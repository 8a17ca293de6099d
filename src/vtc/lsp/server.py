"""`vtc lsp`: the language server for .vt recipes, pygls over stdio.

The wiring only: each request is answered by a pure function of vtc.lsp.analysis on the buffer's text and path.
Diagnostics are published on open, on every change and on save, without a debounce: a keystroke's full compile of
a recipe in recipes/ takes a few milliseconds (bench/lsp_latency.py; docs/editors.md has the figures).
"""

from __future__ import annotations

import os

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from vtc import __version__
from vtc.lsp import analysis

_CONVERTER = get_converter()


def _structure(data, kind):
    """A plain LSP-shaped dict (what vtc.lsp.analysis returns) as an lsprotocol object."""
    return _CONVERTER.structure(data, kind)


def _unstructure(value):
    """An lsprotocol object as the plain dict it is on the wire."""
    return _CONVERTER.unstructure(value)


def _path(uri: str) -> str:
    """The file a document URI names; an unsaved buffer (untitled:) is a recipe in the current folder."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return os.path.abspath(path) if path else os.path.join(os.getcwd(), "untitled.vt")


def build_server() -> LanguageServer:
    """The server with every feature registered (started by `vtc lsp` with start_io)."""
    server = LanguageServer("vtc", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)

    def encoding() -> str:
        """The position encoding agreed at initialize (pygls takes the client's first of utf-8, utf-16, utf-32)."""
        try:
            agreed = server.server_capabilities.position_encoding
        except AttributeError:  # before initialize: LSP's default
            agreed = None
        return str(getattr(agreed, "value", agreed) or "utf-16")

    def publish(uri: str) -> None:
        document = server.workspace.get_text_document(uri)
        found = analysis.diagnostics(document.source, _path(uri), encoding())
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, version=document.version, diagnostics=[_structure(d, types.Diagnostic) for d in found]))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        analysis.forget(_path(params.text_document.uri))  # a data folder or an include may have changed on disk
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri,
                                                                                diagnostics=[]))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=[" ", ",", "/", '"']))
    def completion(ls: LanguageServer, params: types.CompletionParams) -> types.CompletionList:
        document = server.workspace.get_text_document(params.text_document.uri)
        items = analysis.completion(document.source, _path(params.text_document.uri), params.position.line,
                                    params.position.character, encoding())
        return types.CompletionList(is_incomplete=False, items=[_structure(i, types.CompletionItem) for i in items])

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: LanguageServer, params: types.HoverParams) -> types.Hover | None:
        document = server.workspace.get_text_document(params.text_document.uri)
        found = analysis.hover(document.source, _path(params.text_document.uri), params.position.line,
                               params.position.character, encoding())
        return _structure(found, types.Hover) if found else None

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: LanguageServer, params: types.DefinitionParams) -> types.Location | None:
        document = server.workspace.get_text_document(params.text_document.uri)
        target = analysis.definition(document.source, _path(params.text_document.uri), params.position.line,
                                     params.position.character, encoding())
        if target is None:
            return None
        start = types.Position(line=0, character=0)
        return types.Location(uri=analysis.uri_of(target), range=types.Range(start=start, end=start))

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: LanguageServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        document = server.workspace.get_text_document(params.text_document.uri)
        edits = analysis.formatting(document.source, _path(params.text_document.uri), encoding())
        return [_structure(e, types.TextEdit) for e in edits]

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
    def code_action(ls: LanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        sent = [_unstructure(d) for d in params.context.diagnostics]
        return [_structure(a, types.CodeAction) for a in analysis.code_actions(params.text_document.uri, sent)]

    return server


def serve() -> None:
    """Serve one client over stdin and stdout until it says exit."""
    build_server().start_io()
