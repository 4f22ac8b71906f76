// A minimal headless Backstage backend for pltf's end-to-end test: the catalog
// (with the scaffolder entity model, so `kind: Template` is accepted), the
// scaffolder, the proxy and Roadie's http:backstage:request action. No frontend.
// PLTF_BACKSTAGE_MODULES lists more backend modules to add, by directory: the test
// installs pltf's scaffolder module from its packed tarball and passes it here.
//
//   node backend.js --config app-config.yaml --config <test overlay>.yaml
//
// The config loader reads every `--config` argument, later files winning.
'use strict';

const path = require('node:path');
const { createBackend } = require('@backstage/backend-defaults');

const backend = createBackend();
backend.add(require('@backstage/plugin-catalog-backend'));
backend.add(require('@backstage/plugin-catalog-backend-module-scaffolder-entity-model'));
backend.add(require('@backstage/plugin-scaffolder-backend'));
backend.add(require('@backstage/plugin-proxy-backend'));
backend.add(require('@roadiehq/scaffolder-backend-module-http-request'));
for (const modulePath of (process.env.PLTF_BACKSTAGE_MODULES || '').split(path.delimiter).filter(Boolean)) {
  backend.add(require(modulePath));
}
backend.start().catch(error => {
  console.error(error);
  process.exit(1);
});
