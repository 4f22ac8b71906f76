#!/usr/bin/env node
// Validates Kubernetes objects with the Ajv schemas of kubernetes-models (built-in
// kinds), @kubernetes-models/prometheus-operator, @kubernetes-models/argo-cd and
// @kubernetes-models/external-secrets (ES modules only, hence `import()`).
// They catch what kubernetes-validate misses: bad enums, quantities, formats and
// missing required fields.
//
// Input on stdin: JSON [{"source": "...", "object": {...}}, ...]
// Output on stdout: JSON [{"source", "kind", "name", "ok", "message"}, ...]
'use strict';

const PACKAGES = [
  'kubernetes-models',
  '@kubernetes-models/prometheus-operator',
  '@kubernetes-models/argo-cd',
  '@kubernetes-models/external-secrets',
];

const NOT_IN_PACKAGE = new Set(['MODULE_NOT_FOUND', 'ERR_PACKAGE_PATH_NOT_EXPORTED', 'ERR_MODULE_NOT_FOUND']);

async function load(specifier) {
  try {
    return require(specifier);
  } catch (err) {
    // An ES-module-only package exports no `require` entry; `import()` reaches it.
    if (err.code !== 'ERR_REQUIRE_ESM' && err.code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw err;
    return import(specifier);
  }
}

async function modelFor(apiVersion, kind) {
  for (const pkg of PACKAGES) {
    let mod;
    try {
      mod = await load(`${pkg}/${apiVersion}`);
    } catch (err) {
      if (NOT_IN_PACKAGE.has(err.code)) continue;
      throw err;
    }
    if (mod && typeof mod[kind] === 'function') return mod[kind];
  }
  return null;
}

async function main() {
  const fs = require('fs');
  const path = require('path');
  for (const pkg of PACKAGES) {
    // Not require.resolve: an ES-module-only package has no CommonJS entry to resolve.
    if (!fs.existsSync(path.join(__dirname, 'node_modules', pkg, 'package.json'))) {
      process.stderr.write(`${pkg} is not installed: run \`npm ci\` in ${__dirname}\n`);
      process.exit(3);
    }
  }
  const items = JSON.parse(fs.readFileSync(0, 'utf8'));
  const results = await Promise.all(items.map(async ({ source, object }) => {
    const kind = object && object.kind;
    const name = object && object.metadata && object.metadata.name;
    const result = { source, kind, name, ok: false, message: '' };
    if (!object || typeof object.apiVersion !== 'string' || typeof kind !== 'string') {
      result.message = 'not a Kubernetes object: apiVersion and kind are required';
      return result;
    }
    const Model = await modelFor(object.apiVersion, kind);
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
  }));
  process.stdout.write(JSON.stringify(results));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(2);
});
