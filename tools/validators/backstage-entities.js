// Backstage's own entity checks, shared by validate-catalog.js and
// validate-entities.js: the catalog's default entity policies, then the schema
// of the entity's kind (Templates with @backstage/plugin-scaffolder-common when
// it is installed).
'use strict';

const model = require('@backstage/catalog-model');

const SCAFFOLDER_COMMON = '@backstage/plugin-scaffolder-common';

// True only when the package itself is not installed. A package that is there
// but cannot load (a missing dependency of its own, a bad `main`) is a broken
// install, and hiding it would quietly check Templates less than we claim.
function notInstalled(err, name) {
  return err.code === 'MODULE_NOT_FOUND' && String(err.message).startsWith(`Cannot find module '${name}'`);
}

let templateValidator = null;
try {
  templateValidator = require(SCAFFOLDER_COMMON).templateEntityV1beta3Validator;
  if (!templateValidator) {
    throw new Error(`${SCAFFOLDER_COMMON} has no templateEntityV1beta3Validator: is it a version this file knows?`);
  }
} catch (err) {
  if (!notInstalled(err, SCAFFOLDER_COMMON)) throw err;
  templateValidator = null;
}

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
if (templateValidator) kindValidators.push(templateValidator);

// Resolves to true when the kind's schema checked the entity, false for a
// Template that no validator here can check; throws with Backstage's message.
async function checkEntity(raw) {
  const entity = await policy.enforce(raw);
  const known = await Promise.all(kindValidators.map((v) => v.check(entity)));
  if (known.some(Boolean)) return true;
  if (!templateValidator && raw.kind === 'Template') return false;
  throw new Error(`unknown kind ${raw.apiVersion}/${raw.kind}`);
}

module.exports = { checkEntity, hasTemplateValidator: Boolean(templateValidator) };
