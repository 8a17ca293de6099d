// The vtc extension: starts the language server `vtc lsp --stdio` for .vt files through vscode-languageclient.
// Highlighting needs no server: it is the TextMate grammar in syntaxes/vt.tmLanguage.json.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

const INSTALL_HINT =
  "Install it with `pip install 'vtc[lsp]'` (in the environment that has vtc), then set `vtc.server.path` " +
  'to that `vtc` (for example /path/to/.venv/bin/vtc) if it is not on PATH.';

let client;
let watcher; // .vt files changed on disk (an included base recipe): the server hears of them

/** Where `command` is: itself when it names a file, else the first match on PATH (PATHEXT on Windows); or null. */
function findCommand(command, env = process.env, platform = process.platform) {
  const exts = platform === 'win32' ? ['', ...(env.PATHEXT || '.EXE;.CMD;.BAT').split(';')] : [''];
  const usable = (file) => {
    try {
      fs.accessSync(file, platform === 'win32' ? fs.constants.F_OK : fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (command.includes('/') || (platform === 'win32' && command.includes('\\'))) {
    return exts.map((e) => command + e).find(usable) || null;
  }
  for (const dir of (env.PATH || '').split(path.delimiter).filter(Boolean)) {
    const hit = exts.map((e) => path.join(dir, command + e)).find(usable);
    if (hit) return hit;
  }
  return null;
}

/**
 * The server's command and arguments from the settings `vtc.server.path` and `vtc.server.args`. `~/` and
 * `${workspaceFolder}` in the path are expanded (spawn would take them literally); `folder` is the first workspace
 * folder's path, if any.
 */
function serverCommand(config, folder) {
  let command = (config.get('server.path') || 'vtc').trim();
  if (command.startsWith('~/')) command = path.join(os.homedir(), command.slice(2));
  if (folder) command = command.split('${workspaceFolder}').join(folder);
  const args = config.get('server.args') || ['lsp', '--stdio'];
  return { command, args };
}

/** Builds the client; `null` (after telling the user what to do) when the command cannot be found. */
function createClient() {
  const config = vscode.workspace.getConfiguration('vtc');
  const folders = vscode.workspace.workspaceFolders;
  const { command, args } = serverCommand(config, folders && folders.length ? folders[0].uri.fsPath : undefined);
  const found = findCommand(command);
  if (!found) {
    vscode.window.showErrorMessage(`vtc: the language server command \`${command}\` was not found. ${INSTALL_HINT}`);
    return null;
  }
  // No `transport` on purpose: vscode-languageclient would append a second `--stdio` to the arguments; the
  // process's stdin and stdout are the channel either way.
  const serverOptions = { command: found, args };
  const clientOptions = {
    documentSelector: [{ language: 'vt' }],
    synchronize: { fileEvents: watcher },
  };
  return new LanguageClient('vtc', 'vtc language server', serverOptions, clientOptions);
}

async function start() {
  client = createClient();
  if (!client) return;
  try {
    await client.start();
  } catch (err) {
    vscode.window.showErrorMessage(`vtc: the language server did not start (${err && err.message}). ${INSTALL_HINT}`);
    client = undefined;
  }
}

async function stop() {
  const running = client;
  client = undefined;
  if (running) await running.stop();
}

/** Called by VS Code when a .vt file opens (activationEvents: onLanguage:vt). */
async function activate(context) {
  watcher = vscode.workspace.createFileSystemWatcher('**/*.vt');
  context.subscriptions.push(
    watcher,
    vscode.commands.registerCommand('vtc.restartServer', async () => {
      await stop();
      await start();
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('vtc.server')) {
        await stop();
        await start();
      }
    }),
  );
  await start();
  return { client: () => client };
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate, findCommand, serverCommand, INSTALL_HINT };
