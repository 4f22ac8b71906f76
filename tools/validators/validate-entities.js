#!/usr/bin/env node
// Validates catalog entity files with Backstage's own code, many files in one
// process (the catalog tests compare our Python validator with this one on
// every fixture; one Node start per file would take most of a minute).
//
// Each file is parsed with the `yaml` package, as Backstage reads catalog
// files, then checked with @backstage/catalog-model's default entity policies
// and kind validators. Template entities are checked with
// @backstage/plugin-scaffolder-common when it is installed; without it they get
// the policies only and "kindChecked": false.
//
// Usage: node validate-entities.js FILE...
// Output on stdout: JSON [{"file", "index", "kind", "name", "ok", "kindChecked", "message"}, ...]
'use strict';

const fs = require('fs');
const YAML = require('yaml');
const { checkEntity, hasTemplateValidator } = require('./backstage-entities');

async function main() {
  const results = [];
  for (const file of process.argv.slice(2)) {
    const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
    let index = 0;
    for (const doc of docs) {
      const result = { file, index, kind: null, name: null, ok: false, kindChecked: true, message: '' };
      index += 1;
      if (doc.errors.length) {
        result.message = doc.errors.map((e) => e.message).join('; ');
        results.push(result);
        continue;
      }
      const raw = doc.toJS();
      if (raw === null) continue;
      result.kind = raw && raw.kind;
      result.name = raw && raw.metadata && raw.metadata.name;
      try {
        result.kindChecked = await checkEntity(raw);
        result.ok = true;
      } catch (err) {
        result.message = err.message;
      }
      results.push(result);
    }
  }
  process.stdout.write(JSON.stringify({ templateValidator: hasTemplateValidator, results }));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(2);
});
