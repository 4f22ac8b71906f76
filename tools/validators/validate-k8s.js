#!/usr/bin/env node
// Validates Kubernetes objects with the Ajv schemas of kubernetes-models (built-in
// kinds), @kubernetes-models/prometheus-operator and @kubernetes-models/argo-cd.
// They catch what kubernetes-validate misses: bad enums, quantities, formats and
// missing required fields.
//
// Input on stdin: JSON [{"source": "...", "object": {...}}, ...]
// Output on stdout: JSON [{"source", "kind", "name", "ok", "message"}, ...]
'use strict';

const PACKAGES = ['kubernetes-models', '@kubernetes-models/prometheus-operator', '@kubernetes-models/argo-cd'];

const NOT_IN_PACKAGE = new Set(['MODULE_NOT_FOUND', 'ERR_PACKAGE_PATH_NOT_EXPORTED']);

function modelFor(apiVersion, kind) {
  for (const pkg of PACKAGES) {
    let mod;
    try {
      mod = require(`${pkg}/${apiVersion}`);
    } catch (err) {
      if (NOT_IN_PACKAGE.has(err.code)) continue;
      throw err;
    }
    if (mod && typeof mod[kind] === 'function') return mod[kind];
  }
  return null;
}

function main() {
  for (const pkg of PACKAGES) {
    try {
      require.resolve(pkg);
    } catch (err) {
      process.stderr.write(`${pkg} is not installed: run \`npm ci\` in ${__dirname}\n`);
      process.exit(3);
    }
  }
  const items = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const results = items.map(({ source, object }) => {
    const kind = object && object.kind;
    const name = object && object.metadata && object.metadata.name;
    const result = { source, kind, name, ok: false, message: '' };
    if (!object || typeof object.apiVersion !== 'string' || typeof kind !== 'string') {
      result.message = 'not a Kubernetes object: apiVersion and kind are required';
      return result;
    }
    const Model = modelFor(object.apiVersion, kind);
    if (!Model) {
      result.message = `no schema for ${object.apiVersion} ${kind}`;
      return result;
    }
    try {
      new Model(object).validate();
      result.ok = true;
    } catch (err) {
      result.message = err.message;
    }
    return result;
  });
  process.stdout.write(JSON.stringify(results));
}

main();
