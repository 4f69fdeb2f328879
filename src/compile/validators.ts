// Route schemas are compiled once per route with ajv. The body is validated
// exactly as sent, with no type coercion: the client's bytes are what goes
// upstream, so `"qty": "2"` must fail an integer schema rather than pass as
// 2 and reach the service as a string. Querystring, params and headers are
// text by nature, so there "2" may satisfy an integer.

import AjvModule from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifySchemaCompiler } from 'fastify'

const Ajv = AjvModule.default

function makeAjv (coerceTypes: false | 'array'): InstanceType<typeof Ajv> {
  const ajv = new Ajv({ allErrors: true, coerceTypes, removeAdditional: false, useDefaults: false, strict: false })
  addFormats.default(ajv)
  return ajv
}

const exact = makeAjv(false)
const coercing = makeAjv('array')

export const compileRouteValidator: FastifySchemaCompiler<object> = ({ schema, httpPart }) => {
  return (httpPart === 'body' ? exact : coercing).compile(schema)
}
