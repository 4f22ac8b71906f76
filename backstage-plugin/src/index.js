'use strict';

/**
 * The scaffolder backend module: every pltf action as template action `pltf:<id>`.
 *
 *   backend.add(import('@pltf/backstage-plugin-scaffolder-backend-module-pltf'));
 *
 * app-config.yaml:
 *   pltf:
 *     baseUrl: https://pltf.example.com
 *     token: ${PLTF_API_TOKEN}
 *     actions: ['service:*', 'cookiecutter:*']   # optional; default all
 *     refreshSeconds: 300                         # optional
 */

const { coreServices, createBackendModule } = require('@backstage/backend-plugin-api');
const { scaffolderActionsExtensionPoint } = require('@backstage/plugin-scaffolder-node');
const { PltfClient } = require('./client');
const { createPltfActions, refreshActions } = require('./actions');

const STARTUP_ATTEMPTS = 10;

/** @param {number} ms */
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

const scaffolderModulePltf = createBackendModule({
  pluginId: 'scaffolder',
  moduleId: 'pltf',
  register(env) {
    env.registerInit({
      deps: {
        scaffolder: scaffolderActionsExtensionPoint,
        config: coreServices.rootConfig,
        logger: coreServices.logger,
        lifecycle: coreServices.lifecycle,
      },
      async init({ scaffolder, config, logger, lifecycle }) {
        const client = new PltfClient({
          baseUrl: config.getString('pltf.baseUrl'),
          token: config.getString('pltf.token'),
        });
        const patterns = config.getOptionalStringArray('pltf.actions') ?? ['*'];
        const refreshSeconds = config.getOptionalNumber('pltf.refreshSeconds') ?? 300;
        let described;
        for (let attempt = 1; ; attempt += 1) {
          try {
            described = await client.listActions();
            break;
          } catch (error) {
            if (attempt >= STARTUP_ATTEMPTS) {
              // Backstage starts anyway; templates that use pltf:* fail with "not registered" until a restart.
              logger.error(`pltf at ${client.baseUrl} did not list its actions; no pltf:* actions registered: ${error}`);
              return;
            }
            await sleep(Math.min(500 * attempt, 3000));
          }
        }
        const actions = createPltfActions(described, client, patterns);
        scaffolder.addActions(...actions);
        logger.info(`registered ${actions.map(action => action.id).join(', ')} from pltf at ${client.baseUrl}`);
        if (refreshSeconds > 0) {
          const timer = setInterval(async () => {
            try {
              const added = refreshActions(actions, await client.listActions(), patterns);
              if (added.length) {
                logger.warn(
                  `pltf has new actions (${added.join(', ')}); restart Backstage to offer them as pltf:*, or list pltf in backend.actions.pluginSources`,
                );
              }
            } catch (error) {
              logger.warn(`could not refresh pltf's actions: ${error}`);
            }
          }, refreshSeconds * 1000);
          timer.unref();
          lifecycle.addShutdownHook(() => clearInterval(timer));
        }
      },
    });
  },
});

module.exports = scaffolderModulePltf;
module.exports.default = scaffolderModulePltf;
