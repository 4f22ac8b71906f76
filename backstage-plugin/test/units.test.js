'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { matcher } = require('../src/actions');
const { errorMessage, readEvents } = require('../src/client');
const { extractWorkspace, writeDirectoryContents } = require('../src/files');

test('pltf.actions globs select action ids', () => {
  const wanted = matcher(['service:*', 'cookiecutter:render']);
  assert.deepEqual(
    ['service:create', 'service:policies', 'cookiecutter:render', 'cookiecutter:renderx', 'preview:create'].filter(wanted),
    ['service:create', 'service:policies', 'cookiecutter:render'],
  );
  assert.equal(matcher(['a.b'])('axb'), false, 'a dot is a dot, not any character');
});

test("pltf's error body becomes one readable line", () => {
  const body = {
    code: 'invalid_input',
    message: 'invalid values',
    status: 422,
    fields: [{ field: 'values.system', message: "must match '^[a-z]+$'" }],
  };
  assert.equal(errorMessage(body, 'x'), "invalid values (values.system: must match '^[a-z]+$')");
  assert.equal(errorMessage({ message: 'repository platform-team/users-api already exists' }, 'x'), 'repository platform-team/users-api already exists');
  assert.equal(errorMessage(undefined, 'pltf answered 502'), 'pltf answered 502');
});

test('server-sent events split across chunks, with pings and CRLF', async () => {
  const text = ': ping\r\n\r\nevent: log\r\nid: 1\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: completion\ndata: {}\n\n';
  const bytes = new TextEncoder().encode(text);
  const stream = new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.subarray(i, i + 7));
      controller.close();
    },
  });
  const events = [];
  for await (const event of readEvents(stream)) events.push(event);
  assert.deepEqual(events, [
    { event: 'log', id: '1', data: '{"a":\n1}' },
    { event: 'completion', id: '', data: '{}' },
  ]);
});

/** A ustar archive of one entry, as a hostile template could make it. */
function tarOf(name, content) {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write('0000644\0', 100);
  header.write(content.length.toString(8).padStart(11, '0') + '\0', 124);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const body = Buffer.alloc(Math.ceil(content.length / 512) * 512);
  body.write(content);
  return zlib.gzipSync(Buffer.concat([header, body, Buffer.alloc(1024)]));
}

test('files never land outside the workspace', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pltf-module-'));
  await assert.rejects(extractWorkspace(root, tarOf('svc/../../escape.txt', 'x'), 'svc'), /outside the workspace/);
  await assert.rejects(
    writeDirectoryContents(root, [{ path: '/etc/escape', base64Content: '' }]),
    /outside the workspace/,
  );
  assert.deepEqual(await extractWorkspace(root, tarOf('svc/ok.txt', 'fine'), 'svc'), ['ok.txt']);
  assert.equal(await fs.readFile(path.join(root, 'ok.txt'), 'utf8'), 'fine');
  await assert.rejects(fs.stat(path.join(root, '..', 'escape.txt')));
});

test('a refresh updates registered actions in place and names the new ones', () => {
  const { createPltfActions, refreshActions } = require('../src/actions');
  const first = [
    { id: 'cookiecutter:render', description: 'old', schema: { input: { type: 'object', properties: { template: { type: 'string' } } }, output: {} } },
  ];
  const registered = createPltfActions(first, /** @type {any} */ ({}));
  const later = [
    { id: 'cookiecutter:render', description: 'new', schema: { input: { type: 'object', properties: { template: { enum: ['a'] } } }, output: {} } },
    { id: 'repo:create', description: 'repos', schema: { input: {}, output: {} } },
  ];
  assert.deepEqual(refreshActions(registered, later), ['repo:create']);
  assert.equal(registered[0].description, 'new');
  assert.deepEqual(registered[0].schema.input.properties.template, { enum: ['a'] });
  assert.ok(registered[0].schema.input.properties.intoWorkspace, "the module's own inputs stay");
  assert.deepEqual(refreshActions(registered, later, ['cookiecutter:*']), [], 'filtered-out actions are not new ones');
});
