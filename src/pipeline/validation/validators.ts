// Route schemas are compiled once per route with ajv. The body is validated
// exactly as sent, with no type coercion: the client's bytes are what goes
// upstream, so `"qty": "2"` must fail an integer schema rather than pass as
// 2 and reach the service as a string. Querystring, params and headers are
// text by nature, so there "2" may satisfy an integer.
//
// Listing every failing field helps a client fix its request in one go, but
// ajv's allErrors mode keeps walking after the first failure and makes one
// error object per bad value: a 4 MB array of a million wrong items is a
// million errors and seconds of a blocked event loop. So each schema is
// compiled twice: a first-error validator decides (it stops at the first
// failure, whatever the input's size), and only a failing input small enough
// to walk cheaply is walked again for the full list. At most
// MAX_VALIDATION_ERRORS are ever reported.

import AjvModule, { type ErrorObject, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifySchemaCompiler } from 'fastify'

const Ajv = AjvModule.default

/** Most validation errors one answer lists. */
export const MAX_VALIDATION_ERRORS = 10
/**
 * Inputs with more values (objects, arrays, scalars) than this get only the
 * first-error validator's answer; below it the full walk costs microseconds.
 */
const FULL_LIST_UP_TO_VALUES = 1000

function makeAjv (coerceTypes: false | 'array', allErrors: boolean): InstanceType<typeof Ajv> {
  const ajv = new Ajv({ allErrors, coerceTypes, removeAdditional: false, useDefaults: false, strict: false })
  addFormats.default(ajv)
  return ajv
}

const exactFirst = makeAjv(false, false)
const exactAll = makeAjv(false, true)
const coercingFirst = makeAjv('array', false)
const coercingAll = makeAjv('array', true)

type Validate = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null }

export const compileRouteValidator: FastifySchemaCompiler<object> = ({ schema, httpPart }) => {
  const body = httpPart === 'body'
  return boundedValidator((body ? exactFirst : coercingFirst).compile(schema), (body ? exactAll : coercingAll).compile(schema))
}

/** A client can send a megabyte-long key; an error names the field, it need not echo all of it. */
const MAX_FIELD_LENGTH = 200

export function boundedField (field: string): string {
  return field.length > MAX_FIELD_LENGTH ? `${field.slice(0, MAX_FIELD_LENGTH)}…` : field
}

/** Decides with `first`; lists with `all` only for small inputs; never more than MAX_VALIDATION_ERRORS. */
export function boundedValidator (first: ValidateFunction, all: ValidateFunction): Validate {
  const validate: Validate = function validateBounded (data: unknown): boolean {
    if (first(data)) { validate.errors = null; return true }
    let errors = first.errors ?? []
    // With coercion (querystring) the first walk may have converted values in place; converting
    // again is a no-op, so the second walk reaches the same verdict.
    if (fewValues(data, FULL_LIST_UP_TO_VALUES) && !all(data)) errors = all.errors ?? errors
    validate.errors = errors.length > MAX_VALIDATION_ERRORS ? errors.slice(0, MAX_VALIDATION_ERRORS) : errors
    return false
  }
  return validate
}

/** Does `data` hold at most `budget` values? Stops counting as soon as it is over. */
function fewValues (data: unknown, budget: number): boolean {
  const pending: unknown[] = [data]
  let seen = 0
  while (pending.length > 0) {
    const v = pending.pop()
    if (++seen > budget) return false
    if (typeof v !== 'object' || v === null) continue
    if (Array.isArray(v)) {
      if (seen + v.length > budget) return false
      for (const item of v) pending.push(item)
    } else {
      for (const key in v) {
        pending.push((v as Record<string, unknown>)[key])
        if (seen + pending.length > budget) return false
      }
    }
  }
  return true
}
