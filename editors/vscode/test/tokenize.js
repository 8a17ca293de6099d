// Tokenizes .vt text with VS Code's own TextMate engine (vscode-textmate + vscode-oniguruma) and the grammar in
// syntaxes/vt.tmLanguage.json. Used by tests/test_editor_grammar.py.
//
// stdin: a JSON array of documents, each an array of lines. stdout: the same shape, each line an array of tokens
// [text, [scope, ...]]. The lines of a document are tokenized in order, carrying the rule stack from line to line,
// as the editor does.
'use strict';
const fs = require('fs');
const path = require('path');
const oniguruma = require('vscode-oniguruma');
const vsctm = require('vscode-textmate');

async function main() {
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve('vscode-oniguruma')), 'onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const grammarPath = path.join(__dirname, '..', 'syntaxes', 'vt.tmLanguage.json');
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === 'source.vt'
        ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, 'utf8'), grammarPath)
        : null,
  });
  const grammar = await registry.loadGrammar('source.vt');
  const docs = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = docs.map((lines) => {
    let stack = vsctm.INITIAL;
    return lines.map((line) => {
      const r = grammar.tokenizeLine(line, stack);
      stack = r.ruleStack;
      return r.tokens.map((t) => [line.substring(t.startIndex, t.endIndex), t.scopes]);
    });
  });
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
