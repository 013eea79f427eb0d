import { expect, test } from "bun:test";
import asyncapiSchema from "@asyncapi/specs/schemas/3.0.0.json";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv from "ajv";
import addFormats from "ajv-formats";
import { asyncapi, at, openapi } from "../support/api-documents.ts";

// The documents against the specifications' own JSON Schemas: what the
// structural checks in documents.test.ts do not know (every member's place and type).

function asyncapiValidator() {
  // The schema bundles draft-07's meta-schema under its usual $id: ajv must not add its own.
  const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, meta: false });
  addFormats(ajv);
  return ajv.compile(asyncapiSchema);
}

test("openapi.yaml is valid against the OpenAPI 3.1 schema", async () => {
  const result = await new Validator().validate(structuredClone(openapi));
  expect(result.errors ?? []).toEqual([]);
  expect(result.valid).toBe(true);
});

test("asyncapi.yaml is valid against the AsyncAPI 3.0.0 schema", () => {
  const validate = asyncapiValidator();
  expect(validate(asyncapi) ? [] : validate.errors).toEqual([]);
});

test("the checks catch a broken document", async () => {
  const openapiBroken = structuredClone(openapi);
  delete (at(openapiBroken, "/paths/~1health/get/responses/200") as { description?: string }).description;
  expect((await new Validator().validate(openapiBroken)).valid).toBe(false);
  const asyncapiBroken = structuredClone(asyncapi);
  (at(asyncapiBroken, "/operations/subscribe") as { action: string }).action = "listen";
  expect(asyncapiValidator()(asyncapiBroken)).toBe(false);
});
