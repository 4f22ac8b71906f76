// A minimal headless Backstage backend for pltf's end-to-end test: the catalog
// (with the scaffolder entity model, so `kind: Template` is accepted), the
// scaffolder, the proxy and Roadie's http:backstage:request action. No frontend.
//
//   node backend.js --config app-config.yaml --config <test overlay>.yaml
//
// The config loader reads every `--config` argument, later files winning.
'use strict';

const { createBackend } = require('@backstage/backend-defaults');

const backend = createBackend();
backend.add(require('@backstage/plugin-catalog-backend'));
backend.add(require('@backstage/plugin-catalog-backend-module-scaffolder-entity-model'));
backend.add(require('@backstage/plugin-scaffolder-backend'));
backend.add(require('@backstage/plugin-proxy-backend'));
backend.add(require('@roadiehq/scaffolder-backend-module-http-request'));
backend.start().catch(error => {
  console.error(error);
  process.exit(1);
});
