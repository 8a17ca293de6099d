// Runs extension.js's activate() under node, outside VS Code: a stand-in `vscode` module (the real one exists only
// inside VS Code) and the real vscode-languageclient. Used by tests/test_editor_grammar.py.
//
// argv[2]: a JSON scenario {settings: {"vtc.server.path": ..., "vtc.server.args": [...]}, folder: the workspace
// folder, handshake: bool}. PATH comes from
// the environment. Prints a JSON report: the errors shown to the user, whether a client was built, its server
// options and document selector, whether start() was called; with handshake, the real client's own transport is
// opened (it spawns the configured command) and an `initialize` request goes through it: the reply is printed.
'use strict';
const Module = require('module');

const scenario = JSON.parse(process.argv[2] || '{}');
const shown = [];
const disposable = { dispose() {} };
const event = () => disposable;
// What the client touches while it loads and builds (classes it extends, enums, event sources) is answered by
// `anything`: a class whose unknown members are more of the same; the members the extension uses are real stand-ins.
const cache = new Map();
function anything(name) {
  if (!cache.has(name)) {
    const cls = class { constructor(...args) { this.args = args; } };
    cache.set(name, new Proxy(cls, {
      get: (target, prop) => (prop in target ? target[prop] : typeof prop === 'string' ? anything(`${name}.${prop}`) : undefined),
    }));
  }
  return cache.get(name);
}
// A namespace (workspace, window, languages, ...): its unknown members are functions that return a disposable, as
// every event and registration does.
const namespace = (members) => new Proxy(members, {
  get: (target, prop) => (prop in target ? target[prop] : () => disposable),
});
const known = {
  version: '1.95.0',
  workspace: namespace({
    getConfiguration: (section) => ({
      get: (key, dflt) => {
        const v = (scenario.settings || {})[`${section}.${key}`];
        return v === undefined ? dflt : v;
      },
    }),
    createFileSystemWatcher: () => ({ onDidCreate: event, onDidChange: event, onDidDelete: event, dispose() {} }),
    onDidChangeConfiguration: event,
    workspaceFolders: scenario.folder ? [{ uri: { fsPath: scenario.folder } }] : undefined,
  }),
  window: namespace({
    showErrorMessage: (m) => { shown.push(m); return Promise.resolve(undefined); },
    createOutputChannel: (name) => ({ name, append() {}, appendLine() {}, show() {}, dispose() {} }),
  }),
  commands: { registerCommand: () => disposable },
  EventEmitter: class {
    constructor() { this.listeners = []; this.event = (f) => { this.listeners.push(f); return disposable; }; }
    fire(e) { this.listeners.forEach((f) => f(e)); }
    dispose() { this.listeners = []; }
  },
  Disposable: class { constructor(f) { this.dispose = f; } static from() { return disposable; } },
};
const vscodeStandIn = new Proxy(known, {
  get: (target, prop) => {
    if (prop in target) return target[prop];
    if (typeof prop !== 'string') return undefined;
    return /^[A-Z]/.test(prop) ? anything(prop) : namespace({});
  },
});
const realLoad = Module._load;
Module._load = function (request, parent, isMain) {
  return request === 'vscode' ? vscodeStandIn : realLoad.apply(this, arguments);
};

const { LanguageClient } = require('vscode-languageclient/node');
let started = 0;
LanguageClient.prototype.start = async function () { started += 1; };
LanguageClient.prototype.stop = async function () {};

function handshake(client) {
  return client.createMessageTransports('utf-8').then(({ reader, writer }) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply to initialize in 20 s')), 20000);
    reader.listen((msg) => {
      if (msg.id === 1) {
        clearTimeout(timer);
        writer.write({ jsonrpc: '2.0', id: 2, method: 'shutdown' });
        writer.write({ jsonrpc: '2.0', method: 'exit' });
        resolve(msg);
      }
    });
    writer.write({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { processId: process.pid, rootUri: null, capabilities: {} } });
  }));
}

(async () => {
  const ext = require('../extension.js');
  const context = { subscriptions: [] };
  const api = await ext.activate(context);
  const client = api.client();
  const report = {
    shown,
    started,
    client: Boolean(client),
    isLanguageClient: client instanceof LanguageClient,
    serverOptions: client ? client._serverOptions : null,
    documentSelector: client ? client.clientOptions.documentSelector : null,
  };
  if (client && scenario.handshake) {
    report.initialize = await handshake(client);
  }
  process.stdout.write(JSON.stringify(report));
  process.exit(0);
})().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
