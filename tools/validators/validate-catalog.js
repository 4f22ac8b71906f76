#!/usr/bin/env node
// Validates one catalog file's entities with Backstage's own checks
// (backstage-entities.js), as the catalog does when it ingests them.  $text/$json/$yaml placeholders are resolved
// against files next to the catalog file first, as the catalog's placeholder
// processor would, so a definition pointing at a missing file fails too.
//
// Usage: node validate-catalog.js catalog-info.yaml
// Output on stdout: JSON [{"kind", "name", "ok", "message"}, ...]
'use strict';

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const { checkEntity } = require('./backstage-entities');

function resolvePlaceholders(value, baseDir) {
  if (Array.isArray(value)) return value.map((v) => resolvePlaceholders(v, baseDir));
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && ['$text', '$json', '$yaml'].includes(keys[0])) {
    const target = value[keys[0]];
    if (typeof target !== 'string') throw new Error(`${keys[0]} must be a string`);
    if (/^[a-z]+:\/\//i.test(target)) return keys[0] === '$text' ? `<fetched from ${target}>` : {};
    const file = path.resolve(baseDir, target);
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`${keys[0]}: cannot read ${target}: ${err.code || err.message}`);
    }
    if (keys[0] === '$text') return text;
    return keys[0] === '$json' ? JSON.parse(text) : YAML.parse(text);
  }
  return Object.fromEntries(keys.map((k) => [k, resolvePlaceholders(value[k], baseDir)]));
}

async function main() {
  const file = process.argv[2];
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
  const results = [];
  for (const doc of docs) {
    if (doc.errors.length) {
      results.push({ kind: null, name: null, ok: false, message: doc.errors.map((e) => e.message).join('; ') });
      continue;
    }
    const raw = doc.toJS();
    if (raw === null) continue;
    const result = { kind: raw.kind, name: raw.metadata && raw.metadata.name, ok: false, message: '' };
    try {
      if (!(await checkEntity(resolvePlaceholders(raw, path.dirname(file))))) {
        throw new Error('Template entities need @backstage/plugin-scaffolder-common');
      }
      result.ok = true;
    } catch (err) {
      result.message = err.message;
    }
    results.push(result);
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(2);
});
