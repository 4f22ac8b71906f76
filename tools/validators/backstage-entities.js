// Backstage's own entity checks, shared by validate-catalog.js and
// validate-entities.js: the catalog's default entity policies, then the schema
// of the entity's kind (Templates with @backstage/plugin-scaffolder-common when
// it is installed).
'use strict';

const model = require('@backstage/catalog-model');

let templateValidator = null;
try {
  templateValidator = require('@backstage/plugin-scaffolder-common').templateEntityV1beta3Validator;
} catch (err) {
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
