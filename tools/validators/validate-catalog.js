#!/usr/bin/env node
// Validates Backstage catalog entities with @backstage/catalog-model, as the
// catalog does when it ingests them: the default entity policies, then the
// schema of the entity's kind.  $text/$json/$yaml placeholders are resolved
// against files next to the catalog file first, as the catalog's placeholder
// processor would, so a definition pointing at a missing file fails too.
//
// Usage: node validate-catalog.js catalog-info.yaml
// Output on stdout: JSON [{"kind", "name", "ok", "message"}, ...]
'use strict';

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const model = require('@backstage/catalog-model');

const policy = model.EntityPolicies.allOf([
  new model.DefaultNamespaceEntityPolicy(),
  new model.NoForeignRootFieldsEntityPolicy(),
  new model.FieldFormatEntityPolicy(),
  new model.SchemaValidEntityPolicy(),
]);
const kindValidators = [
  model.componentEntityV1alpha1Validator,
  model.apiEntityV1alpha1Validator,
  model.systemEntityV1alpha1Validator,
  model.domainEntityV1alpha1Validator,
  model.resourceEntityV1alpha1Validator,
  model.groupEntityV1alpha1Validator,
  model.userEntityV1alpha1Validator,
  model.locationEntityV1alpha1Validator,
];

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
      const entity = await policy.enforce(resolvePlaceholders(raw, path.dirname(file)));
      const known = await Promise.all(kindValidators.map((v) => v.check(entity)));
      if (!known.some(Boolean)) throw new Error(`unknown kind ${raw.apiVersion}/${raw.kind}`);
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
