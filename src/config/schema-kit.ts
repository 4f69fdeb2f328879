// The building blocks every config schema fragment is written with. They are
// TypeBox types (so a fragment's raw type is `Static<typeof Fragment>`), and
// each emits exactly the JSON Schema the ajv validator and its messages were
// built around: `duration`/`size` custom keywords, `enum` (not anyOf of
// consts) and plain `additionalProperties` maps, with `x-message` where a
// keyword's own message would read like a regular expression.

import { Type, type SchemaOptions, type Static, type TProperties, type TSchema, type TUnsafe } from '@sinclair/typebox'

export { Type, type Static }

/** `500ms`, `2s`, `1m`, `1h` or milliseconds (checked by the `duration` keyword, parsed by units.ts). */
export const Duration = (): TUnsafe<string | number> => Type.Unsafe<string | number>({ duration: true })

/** `64kb`, `1mb` or bytes (the `size` keyword). */
export const Size = (): TUnsafe<string | number> => Type.Unsafe<string | number>({ size: true })

/** An object with only the listed keys: an unknown key is an error ("did you mean …?"). */
export const Strict = <P extends TProperties>(properties: P, options: SchemaOptions = {}) =>
  Type.Object(properties, { additionalProperties: false, ...options })

/** One of the listed values, as a JSON Schema `enum` ("must be one of: a, b" unless `x-message` says otherwise). */
export const Enum = <const T extends readonly string[]>(values: T, options: SchemaOptions = {}): TUnsafe<T[number]> =>
  Type.Unsafe<T[number]>({ ...options, enum: values })

/** A single constant (`{ const }`, without the `type` TypeBox's Literal adds). */
export const Const = <const T extends string>(value: T): TUnsafe<T> => Type.Unsafe<T>({ const: value })

/** A map of names to `value`s (`additionalProperties`, not TypeBox's patternProperties). */
export const Dict = <V extends TSchema>(value: V, options: SchemaOptions = {}): TUnsafe<Record<string, Static<V>>> =>
  Type.Unsafe<Record<string, Static<V>>>({ type: 'object', ...options, additionalProperties: value })

/** An object whose content someone else checks (a JSON Schema, a plugin's settings). */
export const AnyObject = <T extends object = Record<string, unknown>>(): TUnsafe<T> => Type.Unsafe<T>({ type: 'object' })

/** A raw JSON Schema the helpers above do not cover, typed as `T`. */
export const Raw = <T>(schema: Record<string, unknown>): TUnsafe<T> => Type.Unsafe<T>(schema)

// Shared leaf schemas.

/** A name used as a key or an id (policies, services, routes, parts). */
export const Name = () => Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })

/** An HTTP header name; `x-message` keeps the error readable. */
export const HeaderName = () => Type.String({ pattern: '^[A-Za-z0-9-]+$', 'x-message': 'must be a header name' })

/** An absolute path ("must start with \"/\""). */
export const AbsolutePath = () => Type.String({ pattern: '^/' })

export const HttpUrl = () => Type.String({ pattern: '^https?://' })

export const StringList = () => Type.Array(Type.String({ minLength: 1 }))

export const Port = () => Type.Integer({ minimum: 0, maximum: 65535 })
