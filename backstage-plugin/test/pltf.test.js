'use strict';

// The module against a real `pltf serve` (the repository's own, on the test templates): the
// actions it registers, a step's run, its log, its outputs, retries, dry runs, errors and cancel.
// Only the scaffolder's side of the step context is stood in for; the end-to-end test in
// tests/e2e runs the module inside a real Backstage backend.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { createPltfActions } = require('../src/actions');
const { PltfClient } = require('../src/client');

const REPO = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.PLTF_PYTHON ?? path.join(REPO, '.venv', 'bin', 'python');
const TOKEN = 'module-test-token-0123456789';

async function freePort() {
  const server = net.createServer();
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  await new Promise(resolve => server.close(resolve));
  return port;
}

async function startPltf() {
  const data = await fsp.mkdtemp(path.join(os.tmpdir(), 'pltf-module-data-'));
  // Runs' workspaces go here, where the test can see what a hook leaves in its own directory.
  const runs = path.join(data, 'runs');
  await fsp.mkdir(runs);
  const port = await freePort();
  const log = fs.openSync(path.join(data, 'pltf.log'), 'a');
  const child = spawn(PYTHON, ['-m', 'actions_server.cli', 'serve'], {
    cwd: REPO,
    env: {
      ...process.env,
      PLTF_PORT: String(port),
      PLTF_DATA_DIR: path.join(data, 'data'),
      PLTF_TEMPLATES_DIR: path.join(REPO, 'tests', 'fixtures', 'templates'),
      PLTF_API_TOKEN: TOKEN,
      PLTF_HOOK_TIMEOUT_SECONDS: '30',
      TMPDIR: runs,
      PLTF_SCRATCH_DIR: runs,
    },
    stdio: ['ignore', log, log],
    detached: true,
  });
  const url = `http://127.0.0.1:${port}`;
  for (const started = Date.now(); Date.now() - started < 30000; ) {
    if (child.exitCode !== null) throw new Error(`pltf exited: ${fs.readFileSync(path.join(data, 'pltf.log'), 'utf8')}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  return {
    url,
    data,
    runs,
    stop() {
      try {
        process.kill(-(/** @type {number} */ (child.pid)), 'SIGTERM');
      } catch {
        // gone already
      }
    },
  };
}

function context(workspacePath, input, overrides = {}) {
  const logs = [];
  const outputs = {};
  const checkpoints = new Map();
  const ctx = {
    input,
    workspacePath,
    task: { id: 'task-1' },
    step: { id: 'render', name: 'Render' },
    isDryRun: false,
    logs,
    outputs,
    checkpoints,
    logger: {
      info: message => logs.push(['info', message, Date.now()]),
      warn: message => logs.push(['warn', message, Date.now()]),
      error: message => logs.push(['error', message, Date.now()]),
    },
    output: (name, value) => {
      outputs[name] = value;
    },
    // As the scaffolder's: a key's first result is stored, and a recovered task gets it back.
    async checkpoint({ key, fn }) {
      if (!checkpoints.has(key)) checkpoints.set(key, await fn());
      return checkpoints.get(key);
    },
    ...overrides,
  };
  return ctx;
}

const python = fs.existsSync(PYTHON);
if (!python && process.env.CI) throw new Error(`the module's tests need pltf's Python at ${PYTHON}`);

test('the module against a real pltf', { skip: !python && `no pltf Python at ${PYTHON}` }, async t => {
  const pltf = await startPltf();
  t.after(() => pltf.stop());
  const client = new PltfClient({ baseUrl: pltf.url, token: TOKEN });
  const actions = createPltfActions(await client.listActions(), client);
  const byId = new Map(actions.map(action => [action.id, action]));
  const render = /** @type {any} */ (byId.get('pltf:cookiecutter:render'));
  const runs = async () => (await (await client.request('/v1/runs?limit=500')).json()).runs;

  await t.test('every pltf action is registered as pltf:<id> with its schemas and examples', async () => {
    const listed = await client.listActions();
    assert.deepEqual([...byId.keys()].sort(), listed.map(action => `pltf:${action.id}`).sort());
    assert.equal(render.schema.input.properties.template.type, 'string');
    assert.equal(render.schema.input.properties.intoWorkspace.type, 'boolean');
    assert.ok(render.schema.output.properties.runUrl && render.schema.output.properties.files);
    assert.match(render.examples[0].example, /action: pltf:cookiecutter:render\n/);
    assert.ok(createPltfActions(listed, client, ['service:*']).every(action => action.id.startsWith('pltf:service:')));
  });

  await t.test('a step runs, logs as it goes, writes files into the workspace and sets outputs', async () => {
    const workspace = await fsp.mkdtemp(path.join(os.tmpdir(), 'pltf-ws-'));
    const ctx = context(workspace, { template: 'demo', values: { name: 'users-api' }, intoWorkspace: true });
    await render.handler(ctx);
    assert.equal(ctx.outputs.directory, 'users-api');
    assert.match(ctx.outputs.runUrl, new RegExp(`^${pltf.url}/v1/runs/${ctx.outputs.runId}$`));
    assert.ok(ctx.outputs.workspaceId);
    assert.ok(ctx.logs.some(([, message]) => /rendered \d+ files into users-api/.test(message)), JSON.stringify(ctx.logs));
    assert.match(await fsp.readFile(path.join(workspace, 'README.md'), 'utf8'), /users-api/);
    const script = await fsp.stat(path.join(workspace, 'run.sh'));
    const source = await fsp.stat(path.join(REPO, 'tests/fixtures/templates/demo/{{cookiecutter.name}}/run.sh'));
    assert.equal(script.mode & 0o111, source.mode & 0o111, 'the executable bit survives');
    const mine = (await runs()).filter(run => run.id === ctx.outputs.runId);
    assert.equal(mine[0].input.intoWorkspace, undefined, "the module's own inputs do not go to pltf");

    // The retried task (same task and step ids, checkpoint lost or not) gets the same run back.
    const again = context(workspace, { template: 'demo', values: { name: 'users-api' }, intoWorkspace: true });
    await render.handler(again);
    assert.equal(again.outputs.runId, ctx.outputs.runId);
    assert.equal(ctx.outputs.replayed, false);
    assert.equal(again.outputs.replayed, true, 'a template can tell that the run did its work before');
    assert.ok(again.logs.some(([, message]) => message.startsWith(`pltf already had run ${ctx.outputs.runId}`)));
  });

  await t.test('a dry run writes the rendered files and stores nothing', async () => {
    const workspace = await fsp.mkdtemp(path.join(os.tmpdir(), 'pltf-ws-'));
    const ctx = context(workspace, { template: 'demo', values: { name: 'dry-api' } }, { isDryRun: true, task: { id: 'dry-1' } });
    await render.handler(ctx);
    assert.equal(ctx.outputs.workspaceId, undefined);
    assert.equal(ctx.outputs.directoryContents, undefined, 'the files are in the workspace, not in the output');
    assert.match(await fsp.readFile(path.join(workspace, 'README.md'), 'utf8'), /dry-api/);
    const run = (await runs()).find(item => item.id === ctx.outputs.runId);
    assert.equal(run.dryRun, true);
  });

  await t.test('dryRun: true makes one step of a real task a pltf dry run (a plan step)', async () => {
    assert.equal(render.schema.input.properties.dryRun.type, 'boolean');
    const ctx = context(os.tmpdir(), { template: 'demo', values: { name: 'plan-api' }, dryRun: true }, { task: { id: 'plan-1' } });
    await render.handler(ctx);
    assert.equal(ctx.outputs.workspaceId, undefined, 'a dry run stores no workspace');
    const run = (await runs()).find(item => item.id === ctx.outputs.runId);
    assert.equal(run.dryRun, true);
    assert.equal(run.input.dryRun, undefined, "the module's own input does not go to pltf");
  });

  await t.test("pltf's refusal is the step's error, in one line", async () => {
    const ctx = context(os.tmpdir(), { template: 'demo', values: { name: 'x', port: 'not-a-port' } }, { task: { id: 'bad-1' } });
    await assert.rejects(render.handler(ctx), error => {
      assert.doesNotMatch(error.message, /[{}]/, 'no dumped response');
      assert.match(error.message, /port/);
      return true;
    });
  });

  await t.test('cancelling the step cancels the run', async () => {
    // The template's hook leaves `hook-started` in its own directory (hooks have no network) and waits for
    // `hook-go` beside it: the run is certainly going while the step is cancelled, and goes on (to notice
    // the cancel) when let go.
    const started = () => {
      try {
        return fs
          .readdirSync(pltf.runs, { recursive: true })
          .map(String)
          .filter(name => path.basename(name) === 'hook-started')
          .map(name => path.join(pltf.runs, name));
      } catch {
        return []; // a run's directory went while it was read: look again
      }
    };
    const controller = new AbortController();
    const ctx = context(os.tmpdir(), { template: 'blocking-hook', values: { name: 'slow', gate: 'files' } }, {
      task: { id: 'cancel-1' },
      signal: controller.signal,
    });
    const running = render.handler(ctx);
    for (const since = Date.now(); !started().length && Date.now() - since < 20000; ) {
      await new Promise(resolve => setTimeout(resolve, 20));
    }
    const waiting = started();
    assert.ok(waiting.length && ctx.outputs.runId, 'the run is in its hook');
    controller.abort();
    await assert.rejects(running, new RegExp(`cancelled pltf run ${ctx.outputs.runId}`));
    for (const marker of waiting) fs.writeFileSync(path.join(path.dirname(marker), 'hook-go'), 'go\n');
    let run = await client.getRun(ctx.outputs.runId);
    for (const since = Date.now(); run.status === 'running' && Date.now() - since < 20000; ) {
      await new Promise(resolve => setTimeout(resolve, 50));
      run = await client.getRun(ctx.outputs.runId);
    }
    assert.equal(run.status, 'cancelled', JSON.stringify(run));
  });
});
